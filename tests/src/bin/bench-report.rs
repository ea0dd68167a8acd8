//! Turns one benchmark run (the directory `tests/bench/run.sh` fills) into the report:
//!
//! ```text
//! bench-report RESULTS_DIR OUT.md [--notes NOTES.md]
//! ```
//!
//! RESULTS_DIR holds hyperfine's `--export-json` files, `GROUP+PART.json` (the parts of a
//! group are merged: other commands measured apart, or more rounds of the same commands,
//! whose runs are pooled), `rss.tsv` (peak RSS
//! per command), `sizes.tsv` (the images), `unavailable.tsv` (tools that did not work, and
//! why) and `meta.tsv` (the machine). It writes OUT.md with the ratio table (the targets
//! beside), every measurement, the scaling figures, the machine, and the notes; and two
//! SVG charts beside it (`STEM.svg`, `STEM-scaling.svg`). The ratio table also goes to
//! stdout.
//!
//! Ratios are medians of this project's tool over the peer's, both measured in the same
//! run: below 1 is faster. Absolute times on a shared machine are noise; ratios are not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, out, notes) = match args.as_slice() {
        [dir, out] => (dir, out, None),
        [dir, out, flag, notes] if flag == "--notes" => (dir, out, Some(notes)),
        _ => {
            eprintln!("usage: bench-report RESULTS_DIR OUT.md [--notes NOTES.md]");
            return ExitCode::from(2);
        }
    };
    match run(Path::new(dir), Path::new(out), notes.map(Path::new)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-report: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path, out: &Path, notes: Option<&Path>) -> Result<(), String> {
    let results = Results::load(dir)?;
    let notes = match notes {
        Some(path) if path.exists() => Some(
            fs::read_to_string(path)
                .map_err(|e| format!("cannot read '{}': {e}", path.display()))?,
        ),
        _ => None,
    };
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "benchmarks".to_owned());
    let chart_name = format!("{stem}.svg");
    let scaling_name = format!("{stem}-scaling.svg");
    let rows = comparison_rows(&results);
    let doc = markdown(
        &results,
        &rows,
        notes.as_deref(),
        &chart_name,
        &scaling_name,
    );

    let write = |path: PathBuf, text: String| {
        fs::write(&path, text).map_err(|e| format!("cannot write '{}': {e}", path.display()))
    };
    let out_dir = out.parent().unwrap_or(Path::new("."));
    write(out_dir.join(&chart_name), ratio_chart(&results))?;
    write(out_dir.join(&scaling_name), scaling_chart(&results))?;
    write(out.to_path_buf(), doc)?;
    print!("{}", ratio_table(&rows));
    for (tool, reason) in &results.unavailable {
        println!("not available: {tool}: {reason}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Loading

/// One command's timings (seconds) from a hyperfine export.
#[derive(Clone, Debug, Deserialize)]
struct Measure {
    command: String,
    median: f64,
    min: f64,
    max: f64,
    times: Vec<f64>,
    /// One per run; `null` for a run ended by a signal. (`hyperfine --ignore-failure` keeps
    /// timing a command that fails, so a failure must be looked for here.)
    #[serde(default)]
    exit_codes: Vec<Option<i64>>,
}

impl Measure {
    /// Adds the runs of another round of the same command; median, min and max are
    /// computed again over all the runs.
    fn merge(&mut self, other: Measure) {
        self.times.extend(other.times);
        self.exit_codes.extend(other.exit_codes);
        let mut sorted = self.times.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n > 0 {
            self.min = sorted[0];
            self.max = sorted[n - 1];
            self.median = if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
        }
    }

    fn failed_runs(&self) -> usize {
        self.exit_codes.iter().filter(|c| **c != Some(0)).count()
    }
}

#[derive(Deserialize)]
struct Export {
    results: Vec<Measure>,
}

/// An image the benchmarks used.
struct Size {
    shape: String,
    compressed: u64,
    tar: u64,
    files: u64,
}

#[derive(Default)]
struct Results {
    /// group -> the measured commands, in the order measured.
    groups: BTreeMap<String, Vec<Measure>>,
    /// (group, command) -> peak RSS in KiB.
    rss: BTreeMap<(String, String), u64>,
    unavailable: BTreeMap<String, String>,
    sizes: Vec<Size>,
    meta: Vec<(String, String)>,
}

impl Results {
    fn load(dir: &Path) -> Result<Results, String> {
        let mut results = Results::default();
        let entries =
            fs::read_dir(dir).map_err(|e| format!("cannot read '{}': {e}", dir.display()))?;
        let mut jsons: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        jsons.sort();
        for path in jsons {
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
            let export: Export = serde_json::from_str(&text)
                .map_err(|e| format!("'{}' is not a hyperfine export: {e}", path.display()))?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let group = stem.split('+').next().unwrap_or(&stem).to_owned();
            let measures = results.groups.entry(group).or_default();
            for m in export.results {
                match measures.iter_mut().find(|have| have.command == m.command) {
                    Some(have) => have.merge(m),
                    None => measures.push(m),
                }
            }
        }
        for row in read_tsv(&dir.join("rss.tsv"))? {
            if let [group, name, kib] = row.as_slice() {
                if let Ok(kib) = kib.parse() {
                    results.rss.insert((group.clone(), name.clone()), kib);
                }
            }
        }
        for row in read_tsv(&dir.join("unavailable.tsv"))? {
            if let [tool, reason] = row.as_slice() {
                results.unavailable.insert(tool.clone(), reason.clone());
            }
        }
        for row in read_tsv(&dir.join("sizes.tsv"))? {
            if let [shape, compressed, tar, files] = row.as_slice() {
                let num = |s: &String| s.parse().unwrap_or(0);
                results.sizes.push(Size {
                    shape: shape.clone(),
                    compressed: num(compressed),
                    tar: num(tar),
                    files: num(files),
                });
            }
        }
        for row in read_tsv_all(&dir.join("meta.tsv"))? {
            if let [key, value] = row.as_slice() {
                results.meta.push((key.clone(), value.clone()));
            }
        }
        results.sizes.sort_by_key(|s| s.compressed);
        Ok(results)
    }

    /// The command's timings in `group`, when every run of it succeeded.
    fn measure(&self, group: &str, command: &str) -> Option<&Measure> {
        self.timing(group, command).ok()
    }

    /// The command's timings in `group`, or why there are none to use.
    fn timing(&self, group: &str, command: &str) -> Result<&Measure, String> {
        let found = self
            .groups
            .get(group)
            .and_then(|g| g.iter().find(|m| m.command == command));
        match found {
            Some(m) if m.failed_runs() == 0 => Ok(m),
            Some(m) => Err(format!(
                "`{command}` failed in {} of {} runs",
                m.failed_runs(),
                m.exit_codes.len()
            )),
            None => Err(self.why_missing(command)),
        }
    }

    fn meta(&self, key: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn main_shape(&self) -> &str {
        self.meta("main shape").unwrap_or("realistic")
    }

    /// The snapshot sizes measured, in MiB, smallest first.
    fn snapshot_sizes(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = self
            .groups
            .keys()
            .filter_map(|g| {
                g.strip_prefix("snapshot-")?
                    .strip_suffix("MiB")?
                    .parse()
                    .ok()
            })
            .collect();
        sizes.sort_unstable();
        sizes
    }

    /// Why a command has no figure: "`TOOL` not available" when its tool's probe failed
    /// (the tool is the command's name or its first words: `btrfs-snap` for
    /// `btrfs-snap snapshot`; the reasons are listed below the table), else "not measured".
    fn why_missing(&self, command: &str) -> String {
        let tool = self
            .unavailable
            .keys()
            .filter(|tool| command == tool.as_str() || command.starts_with(&format!("{tool} ")))
            .max_by_key(|tool| tool.len());
        match tool {
            Some(tool) => format!("`{tool}` not available"),
            None => "not measured".to_owned(),
        }
    }
}

/// A tab-separated file without its header line; missing means empty.
fn read_tsv(path: &Path) -> Result<Vec<Vec<String>>, String> {
    Ok(read_tsv_all(path)?.into_iter().skip(1).collect())
}

fn read_tsv_all(path: &Path) -> Result<Vec<Vec<String>>, String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read '{}': {e}", path.display())),
    }
}

// ---------------------------------------------------------------------------------------
// Comparisons

/// One line of the ratio table.
struct Row {
    what: String,
    ours: String,
    peer: String,
    /// Both figures, when both sides were measured: (ours, peer) medians, or the
    /// quantities being compared.
    figures: Result<(Figure, Figure), String>,
    target: Option<f64>,
}

#[derive(Clone, Copy)]
enum Figure {
    Seconds(f64),
    Kib(u64),
}

impl Figure {
    fn value(self) -> f64 {
        match self {
            Figure::Seconds(s) => s,
            Figure::Kib(k) => k as f64,
        }
    }
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Figure::Seconds(s) => f.write_str(&seconds(s)),
            Figure::Kib(k) => write!(f, "{:.1} MiB", k as f64 / 1024.0),
        }
    }
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let (ours, peer) = self.figures.as_ref().ok()?;
        Some(ours.value() / peer.value())
    }

    fn verdict(&self) -> String {
        match (self.ratio(), self.target) {
            (None, _) => String::new(),
            (Some(_), None) => "(shown for scale)".to_owned(),
            (Some(r), Some(t)) if r <= t => "met".to_owned(),
            (Some(r), Some(t)) => {
                let gap = (1.0 - t / r) * 100.0;
                let digits = if gap < 1.0 { 1 } else { 0 };
                format!("**missed**: needs {gap:.digits$}% less")
            }
        }
    }
}

fn time_row(
    results: &Results,
    what: &str,
    group: &str,
    ours: &str,
    peer: &str,
    target: Option<f64>,
) -> Row {
    let figure = |command: &str| {
        results
            .timing(group, command)
            .map(|m| Figure::Seconds(m.median))
    };
    Row {
        what: what.to_owned(),
        ours: ours.to_owned(),
        peer: peer.to_owned(),
        figures: figure(ours).and_then(|o| Ok((o, figure(peer)?))),
        target,
    }
}

fn rss_row(
    results: &Results,
    what: &str,
    group: &str,
    ours: &str,
    peer: &str,
    target: Option<f64>,
) -> Row {
    let figure = |command: &str| {
        results
            .rss
            .get(&(group.to_owned(), command.to_owned()))
            .map(|&k| Figure::Kib(k))
            .ok_or_else(|| results.why_missing(command))
    };
    Row {
        what: what.to_owned(),
        ours: ours.to_owned(),
        peer: peer.to_owned(),
        figures: figure(ours).and_then(|o| Ok((o, figure(peer)?))),
        target,
    }
}

/// Every comparison the project set itself a target for, and the ones shown for scale.
fn comparison_rows(results: &Results) -> Vec<Row> {
    let unpack = format!("unpack-{}", results.main_shape());
    let mut rows = vec![
        time_row(
            results,
            "fetch into a fresh layout",
            "fetch",
            "fetch-image",
            "skopeo copy",
            Some(0.8),
        ),
        time_row(
            results,
            "re-pull, image already in the layout",
            "repull",
            "fetch-image",
            "skopeo copy",
            Some(0.5),
        ),
        rss_row(
            results,
            "fetch, peak RSS",
            "fetch",
            "fetch-image",
            "skopeo copy",
            Some(1.0),
        ),
        time_row(
            results,
            "unpack to a tmpfs",
            &unpack,
            "unpack-layers",
            "umoci unpack",
            Some(0.4),
        ),
        time_row(
            results,
            "unpack to a tmpfs",
            &unpack,
            "unpack-layers",
            "tar -xzf",
            Some(1.0),
        ),
        rss_row(
            results,
            "unpack, peak RSS",
            &unpack,
            "unpack-layers",
            "umoci unpack",
            None,
        ),
    ];
    // Peak RSS must stay bounded whatever the layer size: a fixed 64 MiB.
    let rss = |command: &str| {
        results
            .rss
            .get(&(unpack.clone(), command.to_owned()))
            .map(|&k| Figure::Kib(k))
            .ok_or_else(|| results.why_missing(command))
    };
    rows.push(Row {
        what: "unpack, peak RSS".to_owned(),
        ours: "unpack-layers".to_owned(),
        peer: "bound".to_owned(),
        figures: rss("unpack-layers").map(|ours| (ours, Figure::Kib(64 * 1024))),
        target: Some(1.0),
    });
    let sizes = results.snapshot_sizes();
    let ends: Vec<u64> = match (sizes.first(), sizes.last()) {
        (Some(&a), Some(&b)) if a != b => vec![a, b],
        (Some(&a), _) => vec![a],
        _ => Vec::new(),
    };
    for &mib in &ends {
        let group = format!("snapshot-{mib}MiB");
        let what = format!("snapshot of {}", mebibytes(mib));
        let ours = "btrfs-snap snapshot";
        rows.push(time_row(
            results,
            &what,
            &group,
            ours,
            "btrfs subvolume snapshot",
            Some(1.0),
        ));
        rows.push(time_row(results, &what, &group, ours, "cp -a", None));
        rows.push(time_row(
            results,
            &what,
            &group,
            ours,
            "cp -a --reflink=always",
            None,
        ));
    }
    if let [small, large] = ends.as_slice() {
        let ours = "btrfs-snap snapshot";
        let figure = |mib: u64| {
            results
                .timing(&format!("snapshot-{mib}MiB"), ours)
                .map(|m| Figure::Seconds(m.median))
        };
        rows.push(Row {
            what: format!(
                "snapshot flat in size: {} vs {}",
                mebibytes(*large),
                mebibytes(*small)
            ),
            ours: format!("{ours} ({})", mebibytes(*large)),
            peer: format!("{ours} ({})", mebibytes(*small)),
            figures: figure(*large).and_then(|l| Ok((l, figure(*small)?))),
            target: Some(2.0),
        });
    }
    rows.extend([
        time_row(
            results,
            "start-to-exit of /bin/true",
            "start",
            "nsenter-run --bundle",
            "crun run",
            Some(0.6),
        ),
        time_row(
            results,
            "start-to-exit of /bin/true",
            "start",
            "nsenter-run --bundle",
            "runc run",
            None,
        ),
        time_row(
            results,
            "start-to-exit of /bin/true",
            "start",
            "nsenter-run --rootfs",
            "bwrap",
            Some(1.0),
        ),
        time_row(
            results,
            "start-to-exit of /bin/true",
            "start",
            "nsenter-run --rootfs",
            "unshare + chroot",
            None,
        ),
        time_row(
            results,
            "start-to-exit of /bin/true",
            "start",
            "nsenter-run --rootfs --privileged",
            "bwrap",
            None,
        ),
        time_row(
            results,
            "whole chain: registry to a container exiting",
            "chain",
            "the project's tools",
            "skopeo, umoci, btrfs, unshare",
            None,
        ),
    ]);
    rows
}

/// The ratio table in Markdown.
fn ratio_table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| what | this project | peer | ratio | target | |\n|---|---|---|---:|---:|---|\n",
    );
    for row in rows {
        let target = row.target.map(|t| format!("≤ {t:.1}×")).unwrap_or_default();
        match &row.figures {
            Ok((ours, peer)) => {
                let ratio = row.ratio().unwrap_or(f64::NAN);
                let _ = writeln!(
                    t,
                    "| {} | `{}` {} | `{}` {} | **{:.2}×** | {} | {} |",
                    row.what,
                    row.ours,
                    ours,
                    row.peer,
                    peer,
                    ratio,
                    target,
                    row.verdict()
                );
            }
            Err(why) => {
                let _ = writeln!(
                    t,
                    "| {} | `{}` | `{}` | – | {} | {} |",
                    row.what, row.ours, row.peer, target, why
                );
            }
        }
    }
    t
}

// ---------------------------------------------------------------------------------------
// The document

fn markdown(
    results: &Results,
    rows: &[Row],
    notes: Option<&str>,
    chart: &str,
    scaling: &str,
) -> String {
    let mut d = String::new();
    let date = results.meta("date").unwrap_or("an unknown date");
    let mode = results.meta("mode").unwrap_or("full");
    let _ = writeln!(d, "# Benchmarks\n");
    let _ = writeln!(
        d,
        "Each tool against the tool people use today for the same job, on the same inputs, in \
         the same run. Written by `sudo tests/bench/run.sh` ({mode} run, {date}); do not edit by \
         hand: the analysis at the end comes from `tests/bench/notes.md`.\n"
    );
    if mode == "smoke" {
        let _ = writeln!(
            d,
            "> This is a **smoke run**: tiny inputs and two runs each, only to prove the command \
             works. Its figures mean nothing.\n"
        );
    }
    let _ = writeln!(d, "## Ratios\n");
    let _ = writeln!(
        d,
        "Ratio = median wall time (or peak RSS) of this project's tool over the peer's; below \
         1 is faster (smaller). Targets are the project's own.\n"
    );
    d.push_str(&ratio_table(rows));
    if !results.unavailable.is_empty() {
        let _ = writeln!(
            d,
            "\nNot available: each tool is first run once on the tiny image and its result checked; \
             these did not pass, so they were not timed:\n"
        );
        for (tool, reason) in &results.unavailable {
            let _ = writeln!(d, "- `{tool}`: {}", escape_md(reason));
        }
    }
    let _ = writeln!(
        d,
        "\n![median time of each tool, relative to the slowest of its group]({chart})\n"
    );

    let _ = writeln!(d, "## Every measurement\n");
    let _ = writeln!(
        d,
        "| group | command | median | min | max | runs | peak RSS | |"
    );
    let _ = writeln!(d, "|---|---|---:|---:|---:|---:|---:|---|");
    for (group, measures) in &results.groups {
        for m in measures {
            let rss = results
                .rss
                .get(&(group.clone(), m.command.clone()))
                .map(|k| format!("{:.1} MiB", *k as f64 / 1024.0))
                .unwrap_or_default();
            let _ = writeln!(
                d,
                "| {group} | `{}` | {} | {} | {} | {} | {rss} | {} |",
                m.command,
                seconds(m.median),
                seconds(m.min),
                seconds(m.max),
                m.times.len(),
                match m.failed_runs() {
                    0 => String::new(),
                    n => format!("**failed in {n} runs**"),
                }
            );
        }
    }

    let _ = writeln!(d, "\n## Scaling\n");
    let _ = writeln!(
        d,
        "Unpack time against image size and file count (each image unpacked to a tmpfs):\n"
    );
    let _ = writeln!(
        d,
        "| image | gzip layers | tar bytes | files | `unpack-layers` | `umoci unpack` | `tar -xzf` | vs umoci | vs tar |"
    );
    let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in &results.sizes {
        let group = format!("unpack-{}", size.shape);
        if !results.groups.contains_key(&group) {
            continue;
        }
        let med = |c: &str| results.measure(&group, c).map(|m| m.median);
        let cell = |c: &str| med(c).map(seconds).unwrap_or_else(|| "–".to_owned());
        let ratio = |c: &str| match (med("unpack-layers"), med(c)) {
            (Some(o), Some(p)) => format!("{:.2}×", o / p),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            d,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            size.shape,
            bytes(size.compressed),
            bytes(size.tar),
            size.files,
            cell("unpack-layers"),
            cell("umoci unpack"),
            cell("tar -xzf"),
            ratio("umoci unpack"),
            ratio("tar -xzf")
        );
    }
    let _ = writeln!(
        d,
        "\nSnapshot (or copy) time against the size of the subvolume:\n"
    );
    let commands = [
        "btrfs-snap snapshot",
        "btrfs subvolume snapshot",
        "cp -a",
        "cp -a --reflink=always",
    ];
    let _ = writeln!(
        d,
        "| subvolume | {} |",
        commands.map(|c| format!("`{c}`")).join(" | ")
    );
    let _ = writeln!(d, "|---|---:|---:|---:|---:|");
    for mib in results.snapshot_sizes() {
        let group = format!("snapshot-{mib}MiB");
        let cells: Vec<String> = commands
            .iter()
            .map(|c| {
                results
                    .measure(&group, c)
                    .map(|m| seconds(m.median))
                    .unwrap_or_else(|| "–".to_owned())
            })
            .collect();
        let _ = writeln!(d, "| {} | {} |", mebibytes(mib), cells.join(" | "));
    }
    let _ = writeln!(d, "\n![unpack and snapshot time against size]({scaling})\n");

    let _ = writeln!(d, "## Method\n");
    let _ = writeln!(
        d,
        "- Inputs are built offline by `bench-image` (tests/src/bin/bench-image.rs), the same \
         bytes on every machine: three gzip layers shaped like a real image (a base \
         distribution with binaries, libraries and their `.so` symlinks, hardlinked aliases and \
         busybox; an update layer that rewrites files, whites out files and a directory and \
         makes one directory opaque; an application layer with sources and one incompressible \
         file). `{}` is the image of the ratio table; the others scale it.\n\
         - The images are served by Debian's `docker-registry` on 127.0.0.1 over plain http \
         (`skopeo --src-tls-verify=false`), from a warm page cache: the figures measure the \
         tools, not a network or a disk.\n\
         - hyperfine runs each command without a shell (`-N`) after one warm-up run (none for \
         the slow measurements, whose inputs are read into the page cache beforehand); the \
         `--prepare` step (outside the timing) removes the previous run's output and calls \
         `sync`. Unpacks write to a tmpfs; fetches to the scratch directory on the root \
         filesystem; snapshots, copies and the whole chain to a loop-mounted btrfs.\n\
         - `tar -xzf` extracts the layers one after the other with GNU tar \
         (`--numeric-owner`); it checks no digest and leaves whiteout files in place, so it \
         is the floor an unpacker that does more work is measured against.\n\
         - The runtimes start `/bin/true` from a busybox rootfs: `crun run` and `runc run` and \
         `nsenter-run --bundle` with the same `config.json` (runc's default spec: namespaces, \
         mounts, masked paths, capabilities); `bwrap --unshare-all --bind ROOTFS / --proc /proc \
         --dev /dev`, `unshare --mount --uts --ipc --net --pid --fork --mount-proc chroot` and \
         `nsenter-run --rootfs` with the rootfs alone (and once with `--privileged`: no masked \
         paths, every capability). The run happens in a mount namespace \
         where the cgroup v2 tree of this hybrid layout is unmounted, which crun needs; no \
         runtime is given a wrapper around it.\n\
         - The whole chain runs fetch, a subvolume, the unpack into it, a snapshot and the \
         container, both sides: `fetch-image`, `btrfs-snap create`, `unpack-layers \
         --rootfs-only`, `btrfs-snap snapshot`, `nsenter-run --rootfs` against `skopeo copy`, \
         `btrfs subvolume create`, `umoci unpack` into the subvolume, `btrfs subvolume \
         snapshot`, `unshare ... chroot`.\n\
         - Peak RSS is GNU time's `%M` of one extra run: the largest resident set of the \
         process or any of its children.\n",
        results.main_shape()
    );
    let _ = writeln!(d, "Images:\n");
    let _ = writeln!(
        d,
        "| image | gzip layers | tar bytes | files in the rootfs |"
    );
    let _ = writeln!(d, "|---|---:|---:|---:|");
    for size in &results.sizes {
        let _ = writeln!(
            d,
            "| {} | {} | {} | {} |",
            size.shape,
            bytes(size.compressed),
            bytes(size.tar),
            size.files
        );
    }

    let _ = writeln!(d, "\n## The machine\n");
    let _ = writeln!(d, "| | |\n|---|---|");
    for (key, value) in &results.meta {
        let _ = writeln!(d, "| {key} | {} |", escape_md(value));
    }
    if let Some(notes) = notes {
        let _ = writeln!(d, "\n{}", notes.trim_end());
    }
    d
}

// ---------------------------------------------------------------------------------------
// Charts (plain SVG, no dependency)

const OURS: &str = "#d9480f";
const PEER: &str = "#868e96";
const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";

/// Is `command` one of this project's?
fn is_ours(command: &str) -> bool {
    [
        "fetch-image",
        "unpack-layers",
        "btrfs-snap",
        "nsenter-run",
        "the project's",
    ]
    .iter()
    .any(|p| command.starts_with(p))
}

/// One panel per comparison group: each command's median as a bar (min–max as a whisker),
/// scaled to the slowest of its group, with the time written beside it.
fn ratio_chart(results: &Results) -> String {
    let unpack = format!("unpack-{}", results.main_shape());
    let mut panels: Vec<(String, String)> = vec![
        ("fetch".into(), "fetch into a fresh layout".into()),
        ("repull".into(), "re-pull, image present".into()),
        (unpack, "unpack to a tmpfs".into()),
    ];
    for mib in results.snapshot_sizes() {
        panels.push((
            format!("snapshot-{mib}MiB"),
            format!("snapshot of {}", mebibytes(mib)),
        ));
    }
    panels.push(("start".into(), "start-to-exit of /bin/true".into()));
    panels.push(("chain".into(), "whole chain, registry to exit".into()));

    let (label_w, bar_w, row_h, width) = (250.0, 480.0, 18.0, 860.0);
    let mut body = String::new();
    let mut y = 30.0;
    for (group, title) in panels {
        let Some(measures) = results.groups.get(&group) else {
            continue;
        };
        if measures.is_empty() {
            continue;
        }
        let slowest = measures.iter().map(|m| m.max).fold(f64::MIN, f64::max);
        let _ = writeln!(
            body,
            "<text x=\"10\" y=\"{y}\" {FONT} font-weight=\"bold\">{}</text>",
            xml(&title)
        );
        y += 8.0;
        for m in measures {
            let color = if is_ours(&m.command) { OURS } else { PEER };
            let scale = |t: f64| label_w + bar_w * t / slowest;
            let _ = writeln!(
                body,
                "<text x=\"{}\" y=\"{}\" {FONT} text-anchor=\"end\">{}</text>\n\
                 <rect x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"/>\n\
                 <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#212529\"/>\n\
                 <text x=\"{:.1}\" y=\"{}\" {FONT}>{}</text>",
                label_w - 8.0,
                y + 13.0,
                xml(&m.command),
                y + 2.0,
                bar_w * m.median / slowest,
                row_h - 4.0,
                scale(m.min),
                scale(m.max),
                y + row_h / 2.0,
                y + row_h / 2.0,
                scale(m.max) + 6.0,
                y + 13.0,
                seconds(m.median)
            );
            y += row_h;
        }
        y += 22.0;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{y}\" viewBox=\"0 0 {width} {y}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"16\" {FONT}>Median wall time, bars scaled to the slowest of each group \
         (whiskers: min–max). <tspan fill=\"{OURS}\">■ this project</tspan> <tspan fill=\"{PEER}\">■ peers</tspan></text>\n\
         {body}</svg>\n"
    )
}

/// A line plot of one quantity against another: one series per command.
struct Plot<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    log_x: bool,
    log_y: bool,
    series: Vec<Series>,
}

/// A command's name and its points: (x, y, what the point is).
type Series = (String, Vec<(f64, f64, String)>);

const SERIES_COLORS: [&str; 5] = ["#d9480f", "#1971c2", "#2f9e44", "#7048e8", "#868e96"];

impl Plot<'_> {
    /// The plot as SVG elements inside a `w`×`h` box at (`x0`, `y0`).
    fn svg(&self, x0: f64, y0: f64, w: f64, h: f64) -> String {
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|(x, y, _)| (*x, *y)))
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .collect();
        let mut s = format!(
            "<text x=\"{x0}\" y=\"{}\" {FONT} font-weight=\"bold\">{}</text>\n",
            y0 + 14.0,
            xml(self.title)
        );
        if points.is_empty() {
            let _ = writeln!(
                s,
                "<text x=\"{x0}\" y=\"{}\" {FONT}>nothing measured</text>",
                y0 + 40.0
            );
            return s;
        }
        let axis = |log: bool, v: f64| if log { v.log10() } else { v };
        let range = |log: bool, vals: Vec<f64>| {
            let lo = vals
                .iter()
                .copied()
                .map(|v| axis(log, v))
                .fold(f64::MAX, f64::min);
            let hi = vals
                .iter()
                .copied()
                .map(|v| axis(log, v))
                .fold(f64::MIN, f64::max);
            let lo = if log { lo.floor() } else { 0.0 };
            let hi = if log {
                hi.ceil().max(lo + 1.0)
            } else {
                nice_step(hi) * 5.0
            };
            (lo, if hi > lo { hi } else { lo + 1.0 })
        };
        let (xlo, xhi) = range(self.log_x, points.iter().map(|p| p.0).collect());
        let (ylo, yhi) = range(self.log_y, points.iter().map(|p| p.1).collect());
        let (px0, py0, pw, ph) = (x0 + 60.0, y0 + 44.0, w - 80.0, h - 94.0);
        let sx = |v: f64| px0 + pw * (axis(self.log_x, v) - xlo) / (xhi - xlo);
        let sy = |v: f64| py0 + ph - ph * (axis(self.log_y, v) - ylo) / (yhi - ylo);
        let _ = writeln!(
            s,
            "<rect x=\"{px0}\" y=\"{py0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#adb5bd\"/>"
        );
        // Ticks: decades on a log axis, five steps on a linear one.
        let ticks = |log: bool, lo: f64, hi: f64| -> Vec<f64> {
            if log {
                (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
            } else {
                (0..=5)
                    .map(|i| lo + (hi - lo) * f64::from(i) / 5.0)
                    .collect()
            }
        };
        for t in ticks(self.log_y, ylo, yhi) {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" {FONT} text-anchor=\"end\">{}</text>",
                px0 - 4.0,
                sy(t) + 4.0,
                seconds(t)
            );
        }
        for t in ticks(self.log_x, xlo, xhi) {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" {FONT} text-anchor=\"middle\">{}</text>",
                sx(t),
                py0 + ph + 16.0,
                compact(t)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" {FONT} text-anchor=\"middle\">{}</text>\n\
             <text x=\"{x0}\" y=\"{}\" {FONT}>{}</text>",
            px0 + pw / 2.0,
            py0 + ph + 34.0,
            xml(self.x_label),
            py0 - 6.0,
            xml(self.y_label)
        );
        for (i, (name, pts)) in self.series.iter().enumerate() {
            let color = if is_ours(name) {
                OURS
            } else {
                SERIES_COLORS[1 + i % 4]
            };
            let path: Vec<String> = pts
                .iter()
                .filter(|(x, y, _)| *x > 0.0 && *y > 0.0)
                .map(|(x, y, _)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
                path.join(" ")
            );
            for (x, y, label) in pts.iter().filter(|(x, y, _)| *x > 0.0 && *y > 0.0) {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{}</title></circle>",
                    sx(*x),
                    sy(*y),
                    xml(label)
                );
            }
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" {FONT} fill=\"{color}\">{}</text>",
                px0 + 8.0,
                py0 + 16.0 + 15.0 * i as f64,
                xml(name)
            );
        }
        s
    }
}

fn scaling_chart(results: &Results) -> String {
    let unpackers = ["unpack-layers", "umoci unpack", "tar -xzf"];
    let unpack = Plot {
        title: "unpack time against image size",
        x_label: "gzip layers, MB (point labels: files)",
        y_label: "median time",
        log_x: false,
        log_y: false,
        series: unpackers
            .iter()
            .map(|c| {
                let mut pts: Vec<(f64, f64, String)> = results
                    .sizes
                    .iter()
                    .filter(|s| s.shape != "manyfiles")
                    .filter_map(|s| {
                        let m = results.measure(&format!("unpack-{}", s.shape), c)?;
                        Some((
                            s.compressed as f64 / 1e6,
                            m.median,
                            format!("{}: {} files", s.shape, s.files),
                        ))
                    })
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                (c.to_string(), pts)
            })
            .collect(),
    };
    let snapshotters = [
        "btrfs-snap snapshot",
        "btrfs subvolume snapshot",
        "cp -a",
        "cp -a --reflink=always",
    ];
    let snapshot = Plot {
        title: "snapshot or copy time against subvolume size",
        x_label: "subvolume, MiB",
        y_label: "median time",
        log_x: true,
        log_y: true,
        series: snapshotters
            .iter()
            .map(|c| {
                let pts = results
                    .snapshot_sizes()
                    .into_iter()
                    .filter_map(|mib| {
                        let m = results.measure(&format!("snapshot-{mib}MiB"), c)?;
                        Some((mib as f64, m.median, mebibytes(mib)))
                    })
                    .collect();
                (c.to_string(), pts)
            })
            .collect(),
    };
    let (w, h) = (430.0, 320.0);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" viewBox=\"0 0 {} {h}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{}{}</svg>\n",
        2.0 * w,
        2.0 * w,
        unpack.svg(0.0, 0.0, w, h),
        snapshot.svg(w, 0.0, w, h)
    )
}

// ---------------------------------------------------------------------------------------
// Formatting

/// A round step (1, 2, 2.5 or 5 times a power of ten) of which five cover `max`.
fn nice_step(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let raw = max / 5.0;
    let decade = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * decade)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * decade)
}

fn seconds(s: f64) -> String {
    if s == 0.0 {
        "0".to_owned()
    } else if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.01 {
        format!("{:.0} ms", s * 1e3)
    } else if s >= 0.001 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

fn bytes(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn mebibytes(mib: u64) -> String {
    if mib >= 1024 && mib % 1024 == 0 {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// An axis tick: 10, 100, 1k, 12.5.
fn compact(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|")
}

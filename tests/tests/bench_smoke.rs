//! The benchmark command (`tests/bench/run.sh`) in its smoke mode: tiny inputs, two runs of
//! each measurement, a report written. It measures nothing worth reading; it exists so that
//! the full benchmark, run by hand, still works when someone does.

use std::path::Path;
use std::process::Command;

use tests::{bins, mountns, prereq};

/// Everything the benchmark command runs, peers included.
const COMMANDS: &[&str] = &[
    "hyperfine",
    "docker-registry",
    "skopeo",
    "umoci",
    "tar",
    "mkfs.btrfs",
    "btrfs",
    "losetup",
    "unshare",
    "chroot",
    "crun",
    "runc",
    "bwrap",
    "time",
    "ss",
];

#[test]
fn smoke_run_writes_a_report_and_leaves_nothing_behind() {
    let test = "smoke_run_writes_a_report_and_leaves_nothing_behind";
    if !prereq::require_root(test) || !prereq::require_commands(test, COMMANDS) {
        return;
    }
    // The command takes the binaries from the same target directory as this test.
    for tool in [
        "fetch-image",
        "unpack-layers",
        "btrfs-snap",
        "nsenter-run",
        "bench-image",
        "bench-report",
    ] {
        bins::bin(tool);
    }
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("report/benchmarks.md");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/run.sh");
    let cgroup2_before = mount_points().contains(&"/sys/fs/cgroup/unified".to_owned());

    let run = Command::new(&script)
        .arg("--smoke")
        .arg("--bin-dir")
        .arg(bins::profile_dir())
        .arg("--inputs")
        .arg(scratch.path().join("inputs"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "{} failed ({}):\n{stderr}",
        script.display(),
        run.status
    );

    // The ratio table on stdout and in the report, one row per comparison, each with a
    // figure or the reason it has none.
    let stdout = String::from_utf8_lossy(&run.stdout);
    let report = std::fs::read_to_string(&out).unwrap();
    for row in [
        "| fetch into a fresh layout |",
        "| re-pull, image already in the layout |",
        "| unpack to a tmpfs |",
        "| snapshot of 1 MiB |",
        "| snapshot of 4 MiB |",
        "| start-to-exit of /bin/true |",
        "| whole chain: registry to a container exiting |",
    ] {
        assert!(stdout.contains(row), "no row {row} on stdout:\n{stdout}");
        assert!(
            report.contains(row),
            "no row {row} in the report:\n{report}"
        );
    }
    let ratios = report
        .split("## Ratios")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    for line in ratios
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("` "))
    {
        assert!(
            line.contains('×') || line.contains("not available") || line.contains("not measured"),
            "a ratio row with neither a ratio nor a reason: {line}"
        );
    }
    // The peers are installed (checked above), so each of them was measured.
    for peer in [
        "`skopeo copy`",
        "`umoci unpack`",
        "`tar -xzf`",
        "`btrfs subvolume snapshot`",
        "`crun run`",
        "`runc run`",
        "`bwrap`",
    ] {
        let measured = report.lines().any(|l| {
            l.starts_with("| ") && l.contains(&format!("{peer} |")) && !l.contains("not available")
        });
        assert!(
            measured,
            "{peer} has no measurement in the report:\n{report}"
        );
    }
    assert!(report.contains("## The machine"), "{report}");
    for chart in ["benchmarks.svg", "benchmarks-scaling.svg"] {
        let svg = std::fs::read_to_string(out.with_file_name(chart)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{chart}: {svg}"
        );
    }

    // Its tmpfs, loop btrfs, registry and scratch directory are gone, and the cgroup2 tree
    // it hides from crun is hidden only in its own mount namespace. (Only the run's own
    // mounts are looked for: other tests on the machine may mount things meanwhile.)
    let mounts = mount_points();
    let left: Vec<&String> = mounts.iter().filter(|m| m.contains("/bench.")).collect();
    assert!(
        left.is_empty(),
        "mounts of the run left on the host: {left:?}"
    );
    assert_eq!(
        mounts.contains(&"/sys/fs/cgroup/unified".to_owned()),
        cgroup2_before
    );
    assert_eq!(
        registries_of_a_run(),
        Vec::<String>::new(),
        "the run's registry still runs"
    );
    let loops = Command::new("losetup").arg("--list").output().unwrap();
    let loops = String::from_utf8_lossy(&loops.stdout);
    assert!(
        !loops.contains("/bench."),
        "a loop device of the run is still attached:\n{loops}"
    );
    assert!(!stderr.contains("scratch directory kept"), "{stderr}");
}

/// Command lines of running `docker-registry` processes serving a benchmark scratch directory.
fn registries_of_a_run() -> Vec<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|p| std::fs::read(p.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("docker-registry") && c.contains("/bench."))
        .collect()
}

/// The mount points of this process' mount namespace, sorted.
fn mount_points() -> Vec<String> {
    let mut points: Vec<String> = mountns::mountinfo()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .collect();
    points.sort();
    points
}

//! demo.sh end to end: the whole chain against the project's own offline registry, with
//! each fetch/unpack peer, run twice, on btrfs and off it, killed half-way, driven through
//! a terminal, and as the README's first command in a fresh clone.
//!
//! demo.sh builds the tools in release mode when they are missing or stale. These tests
//! point it at this workspace's target directory (`CARGO_TARGET_DIR`), so the release
//! build happens once, in the first test that runs, and is shared by the rest. The tests
//! take turns (one lock): each run starts a registry, mounts a btrfs and builds.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tests::btrfs::LoopBtrfs;
use tests::{bins, mountns, prereq};

/// What every demo run needs on the machine (demo.sh installs the packages itself where
/// apt-get exists, but a test should say what is missing rather than install it).
const COMMANDS: &[&str] = &[
    "cargo",
    "docker-registry",
    "busybox",
    "mkfs.btrfs",
    "losetup",
    "unshare",
    "setpriv",
    "ss",
    "flock",
];

/// The container's view, printed by the command most tests run inside it.
const VIEW: &str = "hostname; cat /proc/1/cmdline; echo; ls -A /; mount";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes the demo lock, or returns `None` (after printing SKIP, or panicking under CI)
/// when root or a command is missing.
fn prerequisites(test: &str, extra: &[&str]) -> Option<MutexGuard<'static, ()>> {
    let commands: Vec<&str> = COMMANDS.iter().chain(extra).copied().collect();
    if !prereq::require_root(test) || !prereq::require_commands(test, &commands) {
        return None;
    }
    // A test that failed while holding the lock must not fail all the others.
    Some(
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The target directory the running tests were built in (`target/`); demo.sh builds its
/// release binaries beside them.
fn target_dir() -> PathBuf {
    let profile = bins::profile_dir();
    profile.parent().map(Path::to_path_buf).unwrap_or(profile)
}

/// `demo.sh ARGS`, with the shared target directory and no standard input.
fn demo(args: &[&str]) -> Command {
    let mut command = Command::new(workspace().join("demo.sh"));
    command
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null());
    command
}

/// Runs demo.sh to the end and returns its output, panicking with its stderr unless it
/// succeeded.
fn run_demo(args: &[&str]) -> Output {
    let output = demo(args).output().expect("run demo.sh");
    assert!(
        output.status.success(),
        "demo.sh {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A directory on a filesystem that is not btrfs, so demo.sh has to make its loop btrfs.
fn non_btrfs_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    if is_btrfs(dir.path()) {
        // /dev/shm is a tmpfs everywhere systemd or udev runs.
        return tempfile::tempdir_in("/dev/shm").expect("temp dir in /dev/shm");
    }
    dir
}

fn is_btrfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
        .unwrap_or(false)
}

/// What demo.sh may leave behind in WORKDIR after it exits: none of these.
fn assert_nothing_left(workdir: &Path) {
    let workdir = workdir.canonicalize().expect("canonical workdir");
    // The mounts were made in demo.sh's own mount namespace: once every process in it is
    // gone, so are they, and a loop device set up by `mount -o loop` detaches itself.
    // Give the kernel a moment to tear the namespace down after a kill.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leftovers = leftovers(&workdir);
        if leftovers.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "demo.sh left behind in {}: {leftovers:#?}",
                workdir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leftovers(workdir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    // Below WORKDIR, not at it: a test may hand demo.sh a workdir that is a mount point.
    let prefix = format!("{}/", workdir.display());
    for line in mountns::mountinfo().lines() {
        if let Some(point) = line.split(' ').nth(4) {
            if point.starts_with(&prefix) {
                found.push(format!("mount: {line}"));
            }
        }
    }
    let image = workdir.join("btrfs.img");
    if image.exists() {
        let attached = Command::new("losetup")
            .arg("--associated")
            .arg(&image)
            .output()
            .expect("run losetup");
        let attached = String::from_utf8_lossy(&attached.stdout);
        if !attached.trim().is_empty() {
            found.push(format!("loop device: {}", attached.trim()));
        }
    }
    // The registry runs with its working directory in WORKDIR; so would anything else
    // demo.sh started and failed to stop.
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let cwd = entry.path().join("cwd");
        if let Ok(cwd) = std::fs::read_link(&cwd) {
            if cwd.starts_with(workdir) {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                found.push(format!(
                    "process {}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// The propagation of the host's `/` (`shared:N`, `master:N` or nothing), which step 1
/// changes inside demo.sh's own mount namespace and must never change here.
fn root_propagation() -> String {
    let mountinfo = mountns::mountinfo();
    let root = mountinfo
        .lines()
        .find(|line| line.split(' ').nth(4) == Some("/"))
        .expect("/ in mountinfo");
    // Fields 7.. up to the "-" separator are the optional tags (proc(5)).
    let tags: Vec<&str> = root.split(' ').skip(6).take_while(|f| *f != "-").collect();
    tags.join(" ")
}

/// Checks the output of [`VIEW`] run in the container whose snapshot is `snapshot`.
fn assert_container_view(stdout: &str, snapshot: &Path) {
    let mut sections = stdout.splitn(3, '\n');
    let hostname = sections.next().unwrap_or_default();
    let cmdline = sections.next().unwrap_or_default();
    let rest = sections.next().unwrap_or_default();
    assert_eq!(hostname, "tutorial", "hostname in the container:\n{stdout}");
    // PID 1 is the command itself: the container has a PID namespace of its own.
    assert!(
        cmdline.starts_with("/bin/sh\0-c\0hostname;"),
        "/proc/1/cmdline in the container: {cmdline:?}"
    );

    // `ls -A /` lists exactly the snapshot's top level: the root is the snapshot, and the
    // old root is gone.
    let expected: BTreeSet<String> = std::fs::read_dir(snapshot)
        .expect("read the container snapshot")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let (listing, mounts): (Vec<&str>, Vec<&str>) =
        rest.lines().partition(|line| !line.contains(" on "));
    let listed: BTreeSet<String> = listing.iter().map(|s| s.to_string()).collect();
    assert_eq!(listed, expected, "ls -A / in the container");

    // `mount`: the container's own table, nothing of the host's.
    let targets: Vec<&str> = mounts
        .iter()
        .filter_map(|line| line.split(" on ").nth(1)?.split(' ').next())
        .collect();
    assert!(
        targets.contains(&"/"),
        "no root in the container's mounts:\n{stdout}"
    );
    assert!(
        mounts
            .iter()
            .any(|l| l.starts_with("proc on /proc type proc")),
        "no fresh /proc in the container's mounts:\n{stdout}"
    );
    for target in &targets {
        let inside = *target == "/"
            || ["/proc", "/dev", "/sys"]
                .iter()
                .any(|top| target == top || target.starts_with(&format!("{top}/")));
        assert!(
            inside,
            "a mount the container should not see: {target}\n{stdout}"
        );
    }
}

#[test]
fn offline_demo_runs_the_command_in_the_container() {
    let test = "offline_demo_runs_the_command_in_the_container";
    let Some(_turn) = prerequisites(test, LoopBtrfs::COMMANDS) else {
        return;
    };
    // A workdir already on btrfs: demo.sh uses it as it is, and the test can look at the
    // snapshot afterwards.
    let fs = LoopBtrfs::new(512);
    let workdir = fs.path().to_str().expect("utf-8 path");
    let output = run_demo(&[
        "--offline",
        "--workdir",
        workdir,
        "--",
        "/bin/sh",
        "-c",
        VIEW,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_container_view(&stdout, &fs.path().join("containers/tutorial"));

    // Each step echoed as the classic command it mirrors, then the tool.
    for classic in [
        "# mount --make-rprivate /",
        "# skopeo copy ",
        "# umoci unpack --image oci-images/busybox:latest unpacked-images/busybox",
        "# btrfs subvolume create images/busybox",
        "# btrfs subvolume snapshot images/busybox containers/tutorial",
        "# unshare --mount --uts --ipc --net --pid --fork",
    ] {
        assert!(
            stderr.contains(classic),
            "'{classic}' not echoed:\n{stderr}"
        );
    }
    assert!(
        !fs.path().join("btrfs.img").exists(),
        "a loop file on a btrfs workdir"
    );
    assert_nothing_left(fs.path());
}

#[test]
fn offline_demo_exits_with_the_commands_status() {
    let test = "offline_demo_exits_with_the_commands_status";
    let Some(_turn) = prerequisites(test, LoopBtrfs::COMMANDS) else {
        return;
    };
    let fs = LoopBtrfs::new(512);
    let workdir = fs.path().to_str().expect("utf-8 path");
    let output = demo(&[
        "--offline",
        "--workdir",
        workdir,
        "--",
        "/bin/sh",
        "-c",
        "exit 7",
    ])
    .output()
    .expect("run demo.sh");
    assert_eq!(
        output.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_nothing_left(fs.path());
}

#[test]
fn explain_reaches_every_tool() {
    let test = "explain_reaches_every_tool";
    let Some(_turn) = prerequisites(test, LoopBtrfs::COMMANDS) else {
        return;
    };
    let fs = LoopBtrfs::new(512);
    let workdir = fs.path().to_str().expect("utf-8 path");
    let output = run_demo(&[
        "--offline",
        "--explain",
        "--workdir",
        workdir,
        "--",
        "/bin/true",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // One mark of each tool's teaching output: the mount(2) flags of make-private, a
    // registry request of fetch-image, a btrfs ioctl, the pivot_root of nsenter-run.
    for (tool, mark) in [
        ("make-private", "MS_PRIVATE"),
        ("fetch-image", "/v2/"),
        ("btrfs-snap", "BTRFS_IOC_SNAP_CREATE"),
        ("nsenter-run", "pivot_root("),
    ] {
        assert!(
            stderr.contains(mark),
            "no '{mark}' from {tool} --explain:\n{stderr}"
        );
    }
}

#[test]
fn every_fetch_and_unpack_combination_gives_the_same_container() {
    let test = "every_fetch_and_unpack_combination_gives_the_same_container";
    let Some(_turn) = prerequisites(test, &["skopeo", "umoci", "mkfs.btrfs"]) else {
        return;
    };
    // Every path in the container's root filesystem with its type, mode and owner.
    let tree = "find / -xdev | sort | while read -r p; do stat -c '%n %f %u:%g %s' \"$p\"; done";
    let mut views = Vec::new();
    for fetch in ["fetch-image", "skopeo"] {
        for unpack in ["unpack-layers", "umoci"] {
            // A workdir each, so no combination reuses what another fetched or unpacked.
            let fs = LoopBtrfs::new(512);
            let workdir = fs.path().to_str().expect("utf-8 path");
            let output = run_demo(&[
                "--offline",
                "--workdir",
                workdir,
                "--fetch",
                fetch,
                "--unpack",
                unpack,
                "--",
                "/bin/sh",
                "-c",
                tree,
            ]);
            let view = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                view.contains("/bin/sh "),
                "{fetch} + {unpack}: no /bin/sh:\n{view}"
            );
            assert_nothing_left(fs.path());
            views.push((format!("{fetch} + {unpack}"), view));
        }
    }
    let (first, reference) = &views[0];
    for (combination, view) in &views[1..] {
        assert_eq!(view, reference, "{combination} differs from {first}");
    }
}

#[test]
fn a_second_run_reuses_the_blobs_and_replaces_the_container() {
    let test = "a_second_run_reuses_the_blobs_and_replaces_the_container";
    let Some(_turn) = prerequisites(test, &["btrfs"]) else {
        return;
    };
    let fs = LoopBtrfs::new(512);
    let workdir = fs.path().to_str().expect("utf-8 path");
    run_demo(&[
        "--offline",
        "--workdir",
        workdir,
        "--",
        "/bin/sh",
        "-c",
        "echo first > /marker",
    ]);
    let blobs = blob_identities(&fs.path().join("oci-images/busybox"));
    assert!(!blobs.is_empty(), "no layer blobs after the first run");
    let first_id = subvolume_id(&fs.path().join("containers/tutorial"));

    // The marker lived in the first container only: the second one is a new snapshot.
    run_demo(&[
        "--offline",
        "--workdir",
        workdir,
        "--",
        "/bin/sh",
        "-c",
        "test ! -e /marker",
    ]);
    assert_eq!(
        blob_identities(&fs.path().join("oci-images/busybox")),
        blobs,
        "the layer blobs were written again instead of reused"
    );
    assert_ne!(
        subvolume_id(&fs.path().join("containers/tutorial")),
        first_id
    );

    // Exactly the image's subvolume and the container's: the old ones were deleted.
    let list = Command::new("btrfs")
        .args(["subvolume", "list", "-o"])
        .arg(fs.path())
        .output()
        .expect("btrfs subvolume list");
    let list = String::from_utf8_lossy(&list.stdout);
    let paths: BTreeSet<&str> = list
        .lines()
        .filter_map(|l| l.split(" path ").nth(1))
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(["containers/tutorial", "images/busybox"]),
        "{list}"
    );
    assert_nothing_left(fs.path());
}

/// (path, inode, mtime) of each layer blob the layout's manifests name.
fn blob_identities(layout: &Path) -> Vec<(String, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let read = |digest: &str| -> serde_json::Value {
        let path = layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(&path).expect("read blob")).expect("json blob")
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("read index.json"))
            .expect("index.json is json");
    let mut blobs = Vec::new();
    for manifest in index["manifests"].as_array().into_iter().flatten() {
        let manifest = read(manifest["digest"].as_str().expect("digest"));
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let digest = layer["digest"].as_str().expect("layer digest");
            let path = layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"));
            let meta = std::fs::metadata(&path).expect("stat blob");
            blobs.push((digest.to_string(), meta.ino(), meta.mtime()));
        }
    }
    blobs.sort();
    blobs
}

fn subvolume_id(path: &Path) -> String {
    let show = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .output()
        .expect("btrfs subvolume show");
    let show = String::from_utf8_lossy(&show.stdout);
    show.lines()
        .find_map(|l| l.trim().strip_prefix("Subvolume ID:"))
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|| panic!("no subvolume id for {}: {show}", path.display()))
}

#[test]
fn a_workdir_off_btrfs_gets_a_loop_btrfs_that_is_cleaned_up() {
    let test = "a_workdir_off_btrfs_gets_a_loop_btrfs_that_is_cleaned_up";
    let Some(_turn) = prerequisites(test, &[]) else {
        return;
    };
    let dir = non_btrfs_dir();
    let workdir = dir.path().join("work");
    let workdir_arg = workdir.to_str().expect("utf-8 path");
    let before = root_propagation();
    let output = run_demo(&[
        "--offline",
        "--workdir",
        workdir_arg,
        "--",
        "/bin/sh",
        "-c",
        "hostname",
    ]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "tutorial\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not btrfs"),
        "the loop btrfs was not announced:\n{stderr}"
    );
    assert!(
        workdir.join("btrfs.img").is_file(),
        "no loop file in the workdir"
    );
    assert_nothing_left(&workdir);
    assert_eq!(
        root_propagation(),
        before,
        "the host's / changed propagation"
    );

    // Again, on the loop file made the first time.
    run_demo(&["--offline", "--workdir", workdir_arg, "--", "/bin/true"]);
    assert_nothing_left(&workdir);
}

/// Starts demo.sh in a process group of its own, reads its stderr until a line starts with
/// `marker`, waits `delay`, then sends `signal` to the whole group, as a terminal's Ctrl-C
/// or a hangup would. Returns whether the signal ended the run (the run may have finished
/// first: the steps are quick).
fn kill_demo_at(
    workdir: &Path,
    command: &[&str],
    marker: &str,
    delay: Duration,
    signal: nix::sys::signal::Signal,
) -> bool {
    let mut args = vec![
        "--offline",
        "--workdir",
        workdir.to_str().expect("utf-8 path"),
        "--",
    ];
    args.extend_from_slice(command);
    let mut child = demo(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start demo.sh");
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let stderr = child.stderr.take().expect("stderr pipe");
    let mut seen = String::new();
    let mut signalled = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("read demo.sh's stderr");
        seen.push_str(&line);
        seen.push('\n');
        if !signalled && line.starts_with(marker) {
            std::thread::sleep(delay);
            nix::sys::signal::kill(group, signal).expect("signal demo.sh's process group");
            signalled = true;
        }
    }
    let status = child.wait().expect("wait for demo.sh");
    assert!(
        signalled,
        "demo.sh never reached '{marker}' ({status}):\n{seen}"
    );
    eprintln!("demo.sh after {signal} at '{marker}': {status}");
    !status.success()
}

#[test]
fn a_demo_interrupted_during_the_fetch_leaves_nothing_behind() {
    let test = "a_demo_interrupted_during_the_fetch_leaves_nothing_behind";
    let Some(_turn) = prerequisites(test, &[]) else {
        return;
    };
    let before = root_propagation();
    // Ctrl-C the moment fetch-image starts. From a local registry the rest of the chain
    // takes a few milliseconds, so the signal may come too late: try again until one run
    // was cut short, checking after every run that nothing was left.
    let mut interrupted = 0;
    for _ in 0..5 {
        let dir = non_btrfs_dir();
        let workdir = dir.path().join("work");
        let signal = nix::sys::signal::Signal::SIGINT;
        if kill_demo_at(
            &workdir,
            &["/bin/true"],
            "fetch-image ",
            Duration::ZERO,
            signal,
        ) {
            interrupted += 1;
        }
        assert_nothing_left(&workdir);
        if interrupted > 0 {
            break;
        }
    }
    assert!(interrupted > 0, "no run was interrupted in 5 tries");
    assert_eq!(
        root_propagation(),
        before,
        "the host's / changed propagation"
    );
}

#[test]
fn a_demo_killed_while_the_container_runs_leaves_nothing_behind() {
    let test = "a_demo_killed_while_the_container_runs_leaves_nothing_behind";
    let Some(_turn) = prerequisites(test, &[]) else {
        return;
    };
    let dir = non_btrfs_dir();
    let workdir = dir.path().join("work");
    // SIGKILL: no trap runs. What undoes the work then is the kernel: the mount namespace
    // demo.sh runs in dies with its last process, the loop device detaches with its mount,
    // and the registry gets its parent-death signal.
    let killed = kill_demo_at(
        &workdir,
        &["/bin/sleep", "60"],
        "nsenter-run ",
        Duration::from_millis(500),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(killed, "demo.sh ran to the end despite SIGKILL");
    assert_nothing_left(&workdir);
}

/// A tmux server of its own (socket in a temp dir), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.socket);
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let output = self.command().args(args).output().expect("run tmux");
        assert!(output.status.success(), "tmux {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-S", "-200", "-t", "demo"])
    }

    /// Waits until a line of the screen, without its trailing blanks (tmux drops them),
    /// contains `text`; panics with the screen after `secs`.
    fn wait_for(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let screen = self.screen();
            if screen.lines().any(|line| line.trim_end().contains(text)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "'{text}' never showed up:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ends the server and the demo in it, if a failed assertion left it running.
        let _ = self.command().arg("kill-server").output();
    }
}

#[test]
fn an_interactive_demo_through_a_terminal() {
    let test = "an_interactive_demo_through_a_terminal";
    let Some(_turn) = prerequisites(test, &["tmux"]) else {
        return;
    };
    let dir = non_btrfs_dir();
    let workdir = dir.path().join("work");
    let status = dir.path().join("status");
    let tmux = Tmux {
        socket: dir.path().join("tmux.sock"),
    };
    let script = format!(
        "CARGO_TARGET_DIR='{}' '{}' --offline --workdir '{}'; echo \"demo-exit=$?\" > '{}'; sleep 600",
        target_dir().display(),
        workspace().join("demo.sh").display(),
        workdir.display(),
        status.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "demo",
        "-x",
        "160",
        "-y",
        "50",
        &script,
    ]);

    // The container's shell prompt (busybox sh as root: "/ # "), then a few commands typed
    // into it as a person would.
    tmux.wait_for("/ #", 600);
    tmux.run(&[
        "send-keys",
        "-t",
        "demo",
        "echo inside-$(hostname)-$((6*7))",
        "Enter",
    ]);
    tmux.wait_for("inside-tutorial-42", 30);
    tmux.run(&["send-keys", "-t", "demo", "exit 3", "Enter"]);

    // The shell in tmux writes the status after demo.sh ends: wait for the whole line, not
    // just for the file to exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let written = std::fs::read_to_string(&status).unwrap_or_default();
        if written.ends_with('\n') {
            break written;
        }
        assert!(
            Instant::now() < deadline,
            "demo.sh did not end:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.trim(), "demo-exit=3", "{}", tmux.screen());
    assert_nothing_left(&workdir);
}

#[test]
fn the_readme_first_command_in_a_fresh_clone() {
    let test = "the_readme_first_command_in_a_fresh_clone";
    let Some(_turn) = prerequisites(test, &["git", "sudo"]) else {
        return;
    };
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("read README.md");
    let first = readme
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .nth(1)
        .expect("a code block in README.md");
    let first = first.split('#').next().unwrap_or_default().trim();
    assert_eq!(
        first, "sudo ./demo.sh --offline",
        "the README's first command changed"
    );

    let dir = non_btrfs_dir();
    let clone = dir.path().join("clone");
    let cloned = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(workspace())
        .arg(&clone)
        .status()
        .expect("git clone");
    assert!(cloned.success(), "git clone of the workspace failed");
    // sudo drops CARGO_TARGET_DIR, so the clone finds this workspace's target directory
    // through a symlink, and its files are dated back to before the binaries there: what
    // was built from the same sources is reused instead of rebuilt for minutes (cargo keys
    // a workspace crate by its path, so a clone would rebuild every one). In CI the
    // workspace is itself a fresh clone, and the first demo test to run builds there.
    std::os::unix::fs::symlink(target_dir(), clone.join("target")).expect("symlink target");
    let tracked = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&clone)
        .output()
        .expect("git ls-files");
    let long_ago = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
    for file in tracked.stdout.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let path = clone.join(String::from_utf8_lossy(file).as_ref());
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(long_ago))
            .unwrap_or_else(|e| panic!("date back {}: {e}", path.display()));
    }

    // Without a COMMAND the demo opens a shell on its standard input: type into it.
    let mut child = Command::new("sh")
        .args(["-c", first])
        .current_dir(&clone)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the README's first command");
    child
        .stdin
        .take()
        .expect("stdin pipe")
        .write_all(b"echo inside-$(hostname)\nexit\n")
        .expect("type into the container's shell");
    let output = child.wait_with_output().expect("wait for the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("inside-tutorial"),
        "`{first}` in a fresh clone ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_nothing_left(&clone.join("demo-work"));
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    for (args, says) in [
        (
            &["--fetch", "wget"][..],
            "--fetch takes fetch-image or skopeo, not 'wget'",
        ),
        (
            &["--unpack", "tar"][..],
            "--unpack takes unpack-layers or umoci, not 'tar'",
        ),
        (&["--workdir"][..], "--workdir needs a directory"),
        (&["--frobnicate"][..], "unknown option '--frobnicate'"),
        (&["alpine", "debian"][..], "only one IMAGE"),
        (
            &["--offline", "alpine"][..],
            "--offline runs the project's own busybox image",
        ),
    ] {
        let output = demo(args).output().expect("run demo.sh");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "demo.sh {args:?}: {stderr}");
        assert!(stderr.contains(says), "demo.sh {args:?}: {stderr}");
    }
    let help = demo(&["--help"]).output().expect("run demo.sh --help");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--workdir DIR"));
}

#[test]
fn demo_refuses_to_run_without_root() {
    let test = "demo_refuses_to_run_without_root";
    // Root is needed to become someone else for this test.
    if !prereq::require_root(test) || !prereq::require_commands(test, &["setpriv"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(workspace().join("demo.sh"))
        .arg("--offline")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run demo.sh as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs root") && stderr.contains("sudo"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("demo-work").exists(),
        "made a workdir before refusing"
    );
}

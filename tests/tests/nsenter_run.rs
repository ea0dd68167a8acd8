//! nsenter-run for real: a busybox rootfs on a loop btrfs snapshot, launched in new
//! namespaces, looked at from inside and from the host; exit statuses, signals, an
//! interactive shell through tmux, hostile rootfs trees, and runc seeing the same bundle
//! the same way.
//!
//! Needs root, busybox-static, the loop btrfs fixture's programs; tmux and runc for their
//! tests. Build the binaries first: `cargo build --workspace --bins`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tests::btrfs::LoopBtrfs;
use tests::container::Running;
use tests::{bins, busybox, mountns, prereq};

/// Docker's default bounding set as /proc/self/status prints it.
const DOCKER_CAPS: &str = "00000000a80425fb";

/// A container rootfs: a btrfs snapshot `tutorial` of a busybox subvolume.
struct Rootfs {
    fs: LoopBtrfs,
    path: PathBuf,
}

fn ready(test: &str) -> bool {
    prereq::require_root(test)
        && prereq::require_commands(test, LoopBtrfs::COMMANDS)
        && prereq::require_commands(test, &["busybox"])
}

/// `btrfs-snap create images/busybox`, the busybox tree written in, then
/// `btrfs-snap snapshot images/busybox tutorial`: the demo's own steps.
fn busybox_snapshot() -> Rootfs {
    let fs = LoopBtrfs::new(128);
    let image = fs.path().join("busybox");
    let path = fs.path().join("tutorial");
    snap(&["create".as_ref(), image.as_os_str()]);
    busybox::busybox_rootfs(&image).unwrap();
    snap(&["snapshot".as_ref(), image.as_os_str(), path.as_os_str()]);
    Rootfs { fs, path }
}

fn snap(args: &[&std::ffi::OsStr]) {
    let out = Command::new(bins::bin("btrfs-snap"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "btrfs-snap {args:?}: {}",
        text(&out.stderr)
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn nsenter_run(root: &Path, flags: &[&str], command: &[&str]) -> Command {
    let mut cmd = Command::new(bins::bin("nsenter-run"));
    cmd.arg("--rootfs")
        .arg(root)
        .args(flags)
        .arg("--")
        .args(command);
    cmd
}

fn run_sh(root: &Path, flags: &[&str], script: &str) -> Output {
    nsenter_run(root, flags, &["/bin/sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The lines of output between `== NAME` and the next `==` marker.
fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| *l != format!("== {name}"))
        .skip(1)
        .take_while(|l| !l.starts_with("=="))
        .collect()
}

/// The host's mount table, less the loop btrfs fixtures that tests running
/// alongside mount and unmount meanwhile (their own mount points, nothing below).
fn host_mounts() -> Vec<String> {
    mountns::mountinfo()
        .lines()
        .filter(|line| {
            let point = line.split(' ').nth(4).unwrap_or("");
            let fixture = point.starts_with("/tmp/loop-btrfs-")
                && point.ends_with("/mnt")
                && point.matches('/').count() == 3;
            !fixture
        })
        .map(str::to_string)
        .collect()
}

/// Start `script` in the container; it must print `ready` before blocking on `read`.
fn start(root: &Path, flags: &[&str], script: &str) -> Running {
    Running::start(nsenter_run(root, flags, &["/bin/sh", "-c", script]))
}

#[test]
fn inside_only_the_container_is_visible() {
    if !ready("inside_only_the_container_is_visible") {
        return;
    }
    let root = busybox_snapshot();
    let script = "echo '== ps'; ps -o pid,args; \
        echo '== hostname'; hostname; \
        echo '== mounts'; cut -d' ' -f5 /proc/self/mountinfo; \
        echo '== mountinfo'; cat /proc/self/mountinfo; \
        echo '== net'; ls /sys/class/net; \
        echo '== ns'; for n in ipc uts net pid mnt; do readlink /proc/self/ns/$n; done; \
        echo '== status'; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|SigIgn)' /proc/self/status; \
        echo '== keys'; cat /proc/keys /proc/timer_list | wc -c; \
        echo '== procsys'; echo 1 > /proc/sys/kernel/ns_last_pid 2>&1 || echo refused; \
        echo '== fds'; ls /proc/$$/fd; \
        echo '=='";
    // An fd left open by the caller (7) must not reach the command.
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"exec 7</etc/hostname; exec "$@""#)
        .arg("bash")
        .arg(bins::bin("nsenter-run"))
        .arg("--rootfs")
        .arg(&root.path)
        .args(["--", "/bin/sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));

    let ps = section(&stdout, "ps");
    assert!(
        ps[1].trim_start().starts_with("1 /bin/sh -c"),
        "PID 1 is the command: {ps:?}"
    );
    assert_eq!(ps.len(), 3, "only the shell and ps: {ps:?}");

    assert_eq!(section(&stdout, "hostname"), ["tutorial"]);

    let expected = [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/proc/acpi",
        "/proc/asound",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ];
    for point in section(&stdout, "mounts") {
        assert!(
            expected.contains(&point),
            "unexpected mount point {point} in {stdout}"
        );
    }
    let host_path = root.fs.path().to_string_lossy().into_owned();
    for line in section(&stdout, "mountinfo") {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(!fields[4].contains(&host_path), "host path visible: {line}");
        assert!(!line.contains("oldroot"), "old root left: {line}");
    }
    assert_eq!(section(&stdout, "net"), ["lo"]);

    let host_ns: Vec<String> = ["ipc", "uts", "net", "pid", "mnt"]
        .iter()
        .map(|ns| {
            std::fs::read_link(format!("/proc/self/ns/{ns}"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let inside_ns = section(&stdout, "ns");
    assert_eq!(inside_ns.len(), 5);
    for (inside, host) in inside_ns.iter().zip(&host_ns) {
        assert_ne!(inside, host, "namespace shared with the host");
    }

    let status = section(&stdout, "status").join("\n");
    assert!(
        status.contains(&format!("CapBnd:\t{DOCKER_CAPS}")),
        "{status}"
    );
    assert!(
        status.contains(&format!("CapEff:\t{DOCKER_CAPS}")),
        "{status}"
    );
    assert!(status.contains("CapInh:\t0000000000000000"), "{status}");
    assert!(status.contains("CapAmb:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    // nsenter-run ignores SIGPIPE (Rust's runtime does); the command must not inherit that.
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn line: {status}"));
    assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{status}");

    assert_eq!(section(&stdout, "keys"), ["0"], "masked files read empty");
    assert!(
        section(&stdout, "procsys").join(" ").contains("refused"),
        "{stdout}"
    );
    assert_eq!(section(&stdout, "fds"), ["0", "1", "2"]);
}

#[test]
fn masked_kcore_and_read_only_proc_sys_are_mounts() {
    if !ready("masked_kcore_and_read_only_proc_sys_are_mounts") {
        return;
    }
    let root = busybox_snapshot();
    let out = run_sh(&root.path, &[], "cat /proc/self/mountinfo");
    let mounts = text(&out.stdout);
    let line = |point: &str| {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(point))
            .map(str::to_string)
    };
    if Path::new("/proc/kcore").exists() {
        let kcore = line("/proc/kcore").expect("/proc/kcore masked");
        assert!(kcore.contains(" /null "), "masked with /dev/null: {kcore}");
    }
    let sys = line("/proc/sys").expect("/proc/sys remounted");
    assert!(sys.split(' ').nth(5).unwrap().starts_with("ro"), "{sys}");
    let sysfs = line("/sys").unwrap();
    assert!(
        sysfs.split(' ').nth(5).unwrap().starts_with("ro"),
        "{sysfs}"
    );

    // --privileged turns all of it off.
    let out = run_sh(
        &root.path,
        &["--privileged"],
        "grep CapBnd /proc/self/status; cut -d' ' -f5 /proc/self/mountinfo",
    );
    let stdout = text(&out.stdout);
    assert!(!stdout.contains(DOCKER_CAPS), "{stdout}");
    assert!(!stdout.contains("/proc/sys\n"), "{stdout}");
}

#[test]
fn the_host_mount_table_is_unchanged_even_with_a_shared_root() {
    if !ready("the_host_mount_table_is_unchanged_even_with_a_shared_root") {
        return;
    }
    let root = busybox_snapshot();
    let plain_before = host_mounts();
    let (code, _, _) = start(&root.path, &[], "echo ready; read x").finish();
    assert_eq!(code, 0);
    assert_eq!(plain_before, host_mounts());

    // As systemd leaves it: `/` shared. Done in a throwaway mount namespace.
    let path = root.path.clone();
    mountns::in_private_mount_namespace(move || {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SHARED,
            None::<&str>,
        )
        .map_err(|e| format!("mount --make-rshared /: {e}"))?;
        let before = host_mounts();
        if !before.iter().any(|l| l.contains("shared:")) {
            return Err("/ did not become shared".into());
        }
        let running = start(&path, &[], "echo ready; read x");
        let during = host_mounts();
        let (code, _, _) = running.finish();
        let after = host_mounts();
        if code != 0 {
            return Err(format!("container exited {code}"));
        }
        if before != during {
            return Err(format!(
                "mounts propagated to the host while running:\n{before:#?}\n---\n{during:#?}"
            ));
        }
        if before != after {
            return Err(format!(
                "mount table changed:\n{before:#?}\n---\n{after:#?}"
            ));
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn exit_statuses_are_passed_through() {
    if !ready("exit_statuses_are_passed_through") {
        return;
    }
    let root = busybox_snapshot();
    assert_eq!(run_sh(&root.path, &[], "exit 3").status.code(), Some(3));

    let missing = nsenter_run(&root.path, &[], &["/no/such/program"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(127));
    assert!(
        text(&missing.stderr).contains("'/no/such/program': not found"),
        "{}",
        text(&missing.stderr)
    );
    let missing = nsenter_run(&root.path, &[], &["nosuchcommand"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(127));

    let not_exec = nsenter_run(&root.path, &[], &["/etc/passwd"])
        .output()
        .unwrap();
    assert_eq!(not_exec.status.code(), Some(126));
    assert!(
        text(&not_exec.stderr).contains("not executable"),
        "{}",
        text(&not_exec.stderr)
    );

    // SIGKILL to PID 1 (from the host: inside, PID 1 cannot be killed).
    let running = start(&root.path, &[], "echo ready; read x");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid1()),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let (code, _, _) = running.finish();
    assert_eq!(code, 137);
}

#[test]
fn sigterm_to_nsenter_run_reaches_pid_1() {
    if !ready("sigterm_to_nsenter_run_reaches_pid_1") {
        return;
    }
    let root = busybox_snapshot();
    let running = start(
        &root.path,
        &[],
        "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let nsenter = nix::unistd::Pid::from_raw(running.child.id() as i32);
    nix::sys::signal::kill(nsenter, nix::sys::signal::SIGTERM).unwrap();
    let mut child = running.child;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the container ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    running
        .stdout
        .into_inner()
        .read_to_string(&mut rest)
        .unwrap();
    assert_eq!(status.code(), Some(42), "{rest}");
    assert!(rest.contains("got TERM"), "{rest}");
}

/// The screen of a tmux session, polled until `want` shows (or a timeout).
fn wait_for_screen(session: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", session])
            .output()
            .unwrap();
        let screen = text(&out.stdout);
        if screen.contains(want) || Instant::now() > deadline {
            return screen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn an_interactive_shell_works_on_a_terminal() {
    if !ready("an_interactive_shell_works_on_a_terminal")
        || !prereq::require_commands("an_interactive_shell_works_on_a_terminal", &["tmux"])
    {
        return;
    }
    let root = busybox_snapshot();
    let session = TmuxSession(format!("nsenter-run-test-{}", std::process::id()));
    let shell = format!(
        "{} --rootfs {} --hostname tmuxbox; echo EXIT=$?; sleep 60",
        bins::bin("nsenter-run").display(),
        root.path.display()
    );
    let status = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session.0,
            "-x",
            "120",
            "-y",
            "40",
            &shell,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let keys = |keys: &[&str]| {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &session.0])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    };
    let screen = wait_for_screen(&session.0, "/ #");
    assert!(screen.contains("/ #"), "no prompt: {screen}");

    keys(&["echo host=$(hostname) tty=$(tty)", "Enter"]);
    let screen = wait_for_screen(&session.0, "host=tmuxbox");
    assert!(screen.contains("host=tmuxbox tty=/dev/console"), "{screen}");

    // Job control: a foreground job stopped with ^Z shows in `jobs`.
    keys(&["sleep 30", "Enter"]);
    // ^Z only stops the job once sleep runs in the foreground: retry until it shows.
    let deadline = Instant::now() + Duration::from_secs(15);
    let screen = loop {
        std::thread::sleep(Duration::from_millis(300));
        keys(&["C-z"]);
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session.0])
            .output()
            .unwrap();
        let screen = text(&out.stdout);
        if screen.contains("Stopped") || Instant::now() > deadline {
            break screen;
        }
    };
    assert!(
        screen.contains("Stopped"),
        "^Z did not stop the job: {screen}"
    );
    keys(&["kill -9 %1", "Enter"]);
    keys(&["jobs", "Enter"]);
    let screen = wait_for_screen(&session.0, "Killed");
    assert!(screen.contains("Killed"), "{screen}");

    keys(&["exit 4", "Enter"]);
    let screen = wait_for_screen(&session.0, "EXIT=");
    assert!(screen.contains("EXIT=4"), "{screen}");
}

/// A rootfs whose `name` is a symlink to a sentinel directory on the host.
fn with_symlinked(name: &str) -> (Rootfs, tempfile::TempDir) {
    let root = busybox_snapshot();
    let sentinel = tempfile::tempdir().unwrap();
    let entry = root.path.join(name);
    if entry.is_dir() {
        std::fs::remove_dir(&entry).unwrap();
    }
    std::os::unix::fs::symlink(sentinel.path(), &entry).unwrap();
    (root, sentinel)
}

#[test]
fn symlinked_proc_sys_and_dev_are_refused() {
    if !ready("symlinked_proc_sys_and_dev_are_refused") {
        return;
    }
    let before = host_mounts();
    for name in ["proc", "sys", "dev"] {
        let (root, sentinel) = with_symlinked(name);
        let out = run_sh(&root.path, &[], "echo ran");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{name}: {err}");
        assert!(
            err.contains(&format!("'/{name}'")) && err.contains("symbolic link"),
            "{err}"
        );
        assert!(!text(&out.stdout).contains("ran"));
        assert_eq!(
            std::fs::read_dir(sentinel.path()).unwrap().count(),
            0,
            "sentinel touched"
        );
    }
    assert_eq!(before, host_mounts());
}

#[test]
fn a_planted_dev_null_symlink_is_contained() {
    if !ready("a_planted_dev_null_symlink_is_contained") {
        return;
    }
    let root = busybox_snapshot();
    let dev = root.path.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    // CVE-2025-31133: masking by binding "/dev/null" would expose core_pattern.
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", dev.join("null")).unwrap();
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let out = run_sh(
        &root.path,
        &[],
        "ls -l /dev/null; echo '|/tmp/pwned' > /proc/sys/kernel/core_pattern || echo refused",
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("crw-rw-rw-"),
        "the container's own null device: {stdout}"
    );
    assert!(stdout.contains("1,   3"), "{stdout}");
    assert!(stdout.contains("refused"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        pattern
    );
    // The rootfs' own file is left as it was, under the tmpfs.
    assert!(dev.join("null").is_symlink());
}

#[test]
fn the_host_binary_is_not_reachable_through_proc_exe() {
    if !ready("the_host_binary_is_not_reachable_through_proc_exe") {
        return;
    }
    let root = busybox_snapshot();
    let binary = bins::bin("nsenter-run");
    let before = std::fs::read(&binary).unwrap();

    // --init: the init, nsenter-run's own code, stays in the container as its PID 1,
    // so nsenter-run runs from a read-only detached mount of itself (or a sealed
    // memfd). Hold that exe open, as a process in the container would, and reopen it
    // for writing once everything has exited (CVE-2019-5736): refused.
    let running = start(&root.path, &["--init"], "echo ready; read x");
    let held = std::fs::File::open(format!("/proc/{}/exe", running.pid1())).unwrap();
    let (code, _, _) = running.finish();
    assert_eq!(code, 0);
    let reopen = std::fs::OpenOptions::new()
        .write(true)
        .open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&held)
        ))
        .and_then(|mut f| f.write_all(b"pwned"));
    reopen.expect_err("the runtime's binary took a write through /proc/PID/exe");
    // Not only busy (ETXTBSY while any test still runs it): read-only, or sealed.
    let read_only = nix::sys::statvfs::fstatvfs(&held)
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    let sealed = nix::fcntl::fcntl(&held, nix::fcntl::FcntlArg::F_GET_SEALS)
        .is_ok_and(|seals| seals & libc::F_SEAL_WRITE != 0);
    assert!(read_only || sealed, "the runtime runs from a writable file");
    // (That the container cannot write to its init's /proc/1/exe is checked with
    // --init in nsenter_run_extras.)

    // A plain launch: the classic attack, a command that is a script whose
    // interpreter is /proc/self/exe, resolved while the container's PID 1 is still
    // the launcher. That last execve is made by the sealed exec stub, so the kernel
    // runs the stub again, which exits 127 without running anything; a build that
    // re-executes itself instead runs its protected copy (`--version`, 0).
    let evil = root.path.join("evil");
    std::fs::write(&evil, "#!/proc/self/exe --version\n").unwrap();
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = nsenter_run(&root.path, &[], &["/evil"]).output().unwrap();
    match out.status.code() {
        Some(0) => assert!(
            text(&out.stdout).starts_with("nsenter-run "),
            "{}",
            text(&out.stdout)
        ),
        code => assert_eq!(code, Some(127), "{}", text(&out.stderr)),
    }
    assert_eq!(
        std::fs::read(&binary).unwrap(),
        before,
        "host binary changed"
    );
}

#[test]
fn without_executable_memfds_nsenter_run_reexecutes_itself() {
    if !ready("without_executable_memfds_nsenter_run_reexecutes_itself") {
        return;
    }
    // vm.memfd_noexec=2 (Linux 6.3) forbids executing any memfd, the exec stub's
    // included: nsenter-run must fall back to running from its read-only copy. The
    // setting is per PID namespace: it is made in a throwaway one.
    if !Path::new("/proc/sys/vm/memfd_noexec").exists() {
        println!("SKIP without_executable_memfds_nsenter_run_reexecutes_itself: no vm.memfd_noexec (Linux < 6.3)");
        return;
    }
    let root = busybox_snapshot();
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--propagation",
            "private",
            "--mount-proc",
        ])
        .arg("sh")
        .arg("-c")
        .arg(r#"echo 2 > /proc/sys/vm/memfd_noexec && exec "$@""#)
        .arg("sh")
        .arg(bins::bin("nsenter-run"))
        .arg("--explain")
        .arg("--rootfs")
        .arg(&root.path)
        .args(["--", "/bin/sh", "-c", "echo inside"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(text(&out.stdout), "inside\n", "{stderr}");
    assert!(stderr.contains("open_tree"), "{stderr}");
    assert!(!stderr.contains("exec stub"), "{stderr}");
}

#[test]
fn users_come_from_the_rootfs_passwd() {
    if !ready("users_come_from_the_rootfs_passwd") {
        return;
    }
    let root = busybox_snapshot();
    let out = run_sh(
        &root.path,
        &["--user", "nobody"],
        "id -u; id -g; echo $HOME; grep CapEff /proc/self/status",
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().take(3).collect::<Vec<_>>(),
        ["65534", "65534", "/home"],
        "{stdout}"
    );
    assert!(stdout.contains("CapEff:\t0000000000000000"), "{stdout}");
    let out = run_sh(&root.path, &["--user", "mallory"], "true");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("'mallory'"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn readonly_cwd_env_and_hostname_flags_apply() {
    if !ready("readonly_cwd_env_and_hostname_flags_apply") {
        return;
    }
    let root = busybox_snapshot();
    let out = run_sh(
        &root.path,
        &[
            "--readonly",
            "--cwd",
            "/etc",
            "--env",
            "GREETING=hi",
            "--hostname",
            "box",
        ],
        "pwd; echo $GREETING; hostname; touch /x 2>/dev/null || echo read-only",
    );
    assert_eq!(
        text(&out.stdout),
        "/etc\nhi\nbox\nread-only\n",
        "{}",
        text(&out.stderr)
    );
    assert!(!root.path.join("x").exists());
}

#[test]
fn a_missing_working_directory_is_made_inside_the_root() {
    if !ready("a_missing_working_directory_is_made_inside_the_root") {
        return;
    }
    // As runc and docker do for a WORKDIR no layer made; `..` cannot climb out.
    let root = busybox_snapshot();
    let out = run_sh(&root.path, &["--cwd", "/srv/../../../app/data"], "pwd");
    assert_eq!(text(&out.stdout), "/app/data\n", "{}", text(&out.stderr));
    assert!(root.path.join("app/data").is_dir());
    // One that cannot be made: one line naming it, 125.
    let out = run_sh(&root.path, &["--cwd", "/etc/passwd/x"], "pwd");
    assert_eq!(out.status.code(), Some(125));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("'/etc/passwd/x'"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn runc_and_nsenter_run_see_a_bundle_the_same_way() {
    if !ready("runc_and_nsenter_run_see_a_bundle_the_same_way")
        || !prereq::require_commands("runc_and_nsenter_run_see_a_bundle_the_same_way", &["runc"])
    {
        return;
    }
    let root = busybox_snapshot();
    let bundle = root.fs.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let spec = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(spec.status.success(), "{}", text(&spec.stderr));
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["root"]["path"] = serde_json::json!(root.path);
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["cwd"] = serde_json::json!("/tmp");
    config["process"]["env"] = serde_json::json!(["PATH=/bin:/sbin", "TERM=xterm", "ANSWER=42"]);
    config["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "env | sort; pwd; hostname; id; cut -d' ' -f5 /proc/self/mountinfo | sort; \
         grep -E '^(Cap|NoNewPrivs)' /proc/self/status"
    ]);
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();

    let id = format!("nsenter-run-test-{}", std::process::id());
    let runc = Command::new("runc")
        .args(["run", "-b"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    assert!(runc.status.success(), "runc: {}", text(&runc.stderr));
    let ours = Command::new(bins::bin("nsenter-run"))
        .arg("--bundle")
        .arg(&bundle)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(ours.status.success(), "nsenter-run: {}", text(&ours.stderr));
    assert_eq!(text(&ours.stdout), text(&runc.stdout));
    assert!(text(&ours.stdout).contains("ANSWER=42"));
}

#[test]
fn bundle_mount_targets_stay_inside_the_rootfs() {
    if !ready("bundle_mount_targets_stay_inside_the_rootfs") {
        return;
    }
    let root = busybox_snapshot();
    let sentinel = tempfile::tempdir().unwrap();
    // An absolute symlink to a host directory on the way to a mount target.
    std::os::unix::fs::symlink(sentinel.path(), root.path.join("escape")).unwrap();
    let bundle = root.fs.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": root.path},
        "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/",
            "args": ["/bin/sh", "-c", "grep -c '/inside ' /proc/self/mountinfo"]},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/escape/inside", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}]}
    });
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let before = host_mounts();
    let launch = || {
        Command::new(bins::bin("nsenter-run"))
            .arg("--bundle")
            .arg(&bundle)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // The link's target does not exist inside the rootfs: refused, nothing made on the host.
    let out = launch();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("'/escape/inside'"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(sentinel.path()).unwrap().count(),
        0,
        "the host directory was touched"
    );

    // It exists inside: the link is followed as if the rootfs were /, the mount lands there.
    let inside = root.path.join(sentinel.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    let out = launch();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", text(&out.stderr));
    assert_eq!(stdout, "1\n", "mounted in the container");
    assert!(inside.join("inside").is_dir());
    assert_eq!(
        std::fs::read_dir(sentinel.path()).unwrap().count(),
        0,
        "the host directory was touched"
    );
    assert_eq!(before, host_mounts());
}

#[test]
fn a_hostile_passwd_cannot_hang_or_redirect_the_lookup() {
    if !ready("a_hostile_passwd_cannot_hang_or_redirect_the_lookup") {
        return;
    }
    let root = busybox_snapshot();
    let passwd = root.path.join("etc/passwd");
    std::fs::remove_file(&passwd).unwrap();
    // A FIFO would block a plain read forever.
    nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let started = Instant::now();
    // (The commands read no passwd themselves: that would be the image's own hang.)
    let out = run_sh(&root.path, &[], "grep -c Uid /proc/self/status");
    assert_eq!(text(&out.stdout), "1\n", "{}", text(&out.stderr));
    let out = run_sh(&root.path, &["--user", "nobody"], "true");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no user 'nobody'"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // A symlink out of the rootfs reads the container's file, not the host's.
    std::fs::remove_file(&passwd).unwrap();
    std::os::unix::fs::symlink("/etc/shadow-of-nothing", &passwd).unwrap();
    let out = run_sh(&root.path, &["--user", "root"], "true");
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stdout));
}

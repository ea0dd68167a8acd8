//! nsenter-run's veth network, cgroup limits, `--init` and `--enter`, for real: a busybox
//! rootfs on a loop btrfs snapshot. Every network test runs inside a network namespace the
//! test makes itself (one thread `unshare(CLONE_NEWNET)`s): the "host" end of each veth lives
//! there, and no packet reaches the machine's real network.
//!
//! Needs root, busybox-static, iproute2 (`ip`, to make bridges and inspect links), the loop
//! btrfs fixture's programs. Build the binaries first: `cargo build --workspace --bins`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tests::btrfs::LoopBtrfs;
use tests::container::Running;
use tests::{bins, busybox, mountns, prereq};

/// Tests that make cgroups run one at a time, so the soak can tell its leftovers apart.
static CGROUPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cgroup_lock() -> std::sync::MutexGuard<'static, ()> {
    CGROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Rootfs {
    _fs: LoopBtrfs,
    path: PathBuf,
}

fn ready(test: &str) -> bool {
    prereq::require_root(test)
        && prereq::require_commands(test, LoopBtrfs::COMMANDS)
        && prereq::require_commands(test, &["busybox", "ip"])
}

fn busybox_snapshot() -> Rootfs {
    let fs = LoopBtrfs::new(128);
    let image = fs.path().join("busybox");
    let path = fs.path().join("tutorial");
    for args in [
        vec!["create".as_ref(), image.as_os_str()],
        vec!["snapshot".as_ref(), image.as_os_str(), path.as_os_str()],
    ] {
        if args[0] == "snapshot" {
            busybox::busybox_rootfs(&image).unwrap();
        }
        let out = Command::new(bins::bin("btrfs-snap"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "btrfs-snap {args:?}: {}",
            text(&out.stderr)
        );
    }
    Rootfs { _fs: fs, path }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn nsenter_run(root: &Path, flags: &[&str], script: &str) -> Command {
    let mut cmd = Command::new(bins::bin("nsenter-run"));
    cmd.arg("--rootfs")
        .arg(root)
        .args(flags)
        .args(["--", "/bin/sh", "-c", script]);
    cmd
}

fn run(root: &Path, flags: &[&str], script: &str) -> Output {
    nsenter_run(root, flags, script)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `f` on a thread of its own in a new network namespace with `lo` up: the "host"
/// side of every veth the test makes is there. The namespace goes with the thread.
fn in_test_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        ip(&["link", "set", "lo", "up"]);
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// `ip ARGS` in the calling thread's network namespace; panics on failure.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Interface names in the calling thread's network namespace.
fn links() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .collect()
}

fn start(cmd: Command) -> Running {
    Running::start(cmd)
}

fn connect_retrying(addr: &str) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("connect {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn veth_carries_tcp_both_ways_and_leaves_nothing() {
    if !ready("veth_carries_tcp_both_ways_and_leaves_nothing") {
        return;
    }
    let root = busybox_snapshot();
    in_test_netns(move || {
        let before = links();
        // Host -> container is answered: a server on the host side, the client inside.
        let server = TcpListener::bind("0.0.0.0:7000").unwrap();
        let serve = std::thread::spawn(move || {
            let (mut conn, peer) = server.accept().unwrap();
            let mut line = String::new();
            BufReader::new(conn.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            conn.write_all(b"pong\n").unwrap();
            (line, peer.ip().to_string())
        });
        let out = run(
            &root.path,
            &["--net", "veth", "--ip", "10.201.0.2/24"],
            "ip -o addr show eth0; ip route; echo ping | nc -w 5 10.201.0.1 7000",
        );
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout} {}", text(&out.stderr));
        assert!(stdout.contains("inet 10.201.0.2/24"), "{stdout}");
        assert!(
            stdout.contains("default via 10.201.0.1 dev eth0"),
            "{stdout}"
        );
        assert!(stdout.contains("pong"), "{stdout}");
        let (line, peer) = serve.join().unwrap();
        assert_eq!((line.as_str(), peer.as_str()), ("ping\n", "10.201.0.2"));

        // Container -> host: a server inside, the client on the host side.
        let running = start(nsenter_run(
            &root.path,
            &["--net", "veth", "--ip", "10.201.0.2/24"],
            "echo ready; echo hello-from-inside | nc -l -p 8000",
        ));
        let conn = connect_retrying("10.201.0.2:8000");
        let mut got = String::new();
        // busybox nc keeps the connection until the other side closes it.
        BufReader::new(conn).read_line(&mut got).unwrap();
        assert_eq!(got, "hello-from-inside\n");
        let (code, _, err) = running.finish();
        assert_eq!(code, 0, "{err}");

        // The veth pair and its addresses are gone.
        assert_eq!(links(), before);
        assert!(!ip(&["-o", "addr"]).contains("10.201.0."));
    });
}

#[test]
fn two_containers_on_one_bridge_reach_each_other() {
    if !ready("two_containers_on_one_bridge_reach_each_other") {
        return;
    }
    let root = busybox_snapshot();
    in_test_netns(move || {
        ip(&["link", "add", "br-test", "type", "bridge"]);
        ip(&["addr", "add", "10.203.0.1/24", "dev", "br-test"]);
        ip(&["link", "set", "br-test", "up"]);
        let flags = |addr: &'static str| -> Vec<&'static str> {
            vec!["--net", "veth", "--ip", addr, "--bridge", "br-test"]
        };
        let server = start(nsenter_run(
            &root.path,
            &flags("10.203.0.2/24"),
            "echo ready; ip route; echo from-a | nc -l -p 9000",
        ));
        let client = {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let out = run(
                    &root.path,
                    &flags("10.203.0.3/24"),
                    "nc -w 3 10.203.0.2 9000 </dev/null",
                );
                if text(&out.stdout).contains("from-a") || Instant::now() > deadline {
                    break out;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        assert!(
            text(&client.stdout).contains("from-a"),
            "{}",
            text(&client.stderr)
        );
        let (code, out, err) = server.finish();
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("default via 10.203.0.1"),
            "gateway: the bridge's address: {out}"
        );
        assert!(
            !links().iter().any(|l| l.starts_with("veth")),
            "{:?}",
            links()
        );
    });
}

#[test]
fn bad_network_requests_are_refused_cleanly() {
    if !ready("bad_network_requests_are_refused_cleanly") {
        return;
    }
    let root = busybox_snapshot();
    in_test_netns(move || {
        let before = links();
        let cases: [(&[&str], &str); 5] = [
            (
                &["--net", "veth", "--ip", "10.205.0.300/24"],
                "'10.205.0.300/24'",
            ),
            (&["--net", "veth"], "--ip"),
            (&["--ip", "10.205.0.2/24"], "--net veth"),
            (
                &[
                    "--net",
                    "veth",
                    "--ip",
                    "10.205.0.2/24",
                    "--bridge",
                    "no-such-br",
                ],
                "'no-such-br'",
            ),
            (
                &[
                    "--net",
                    "veth",
                    "--ip",
                    "10.205.0.2/24",
                    "--host-ip",
                    "10.206.0.1/24",
                ],
                "not in",
            ),
        ];
        for (flags, needle) in cases {
            let out = run(&root.path, flags, "echo ran");
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(125), "{flags:?}: {err}");
            assert!(err.contains(needle), "{flags:?}: {err}");
            assert!(!text(&out.stdout).contains("ran"));
        }
        // An address the host side already has.
        ip(&["link", "add", "used-test", "type", "bridge"]);
        ip(&["addr", "add", "10.205.0.1/24", "dev", "used-test"]);
        let out = run(
            &root.path,
            &["--net", "veth", "--ip", "10.205.0.2/24"],
            "echo ran",
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert!(
            err.contains("10.205.0.1 is already in use") && err.contains("used-test"),
            "{err}"
        );
        ip(&["link", "del", "used-test"]);
        assert_eq!(links(), before, "a refused launch left a link behind");

        // A veth failure after the cgroup was made and joined: the cgroup goes too.
        let _cgroups = cgroup_lock();
        let out = run(
            &root.path,
            &[
                "--memory",
                "32M",
                "--net",
                "veth",
                "--ip",
                "10.205.0.2/24",
                "--bridge",
                "no-such-br",
            ],
            "echo ran",
        );
        assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
        assert_eq!(leftover_cgroups(), Vec::<PathBuf>::new());
    });
}

/// The cgroup directory of `pid` for a controller, as the host sees it.
fn cgroup_dir(pid: u32, controller: &str) -> PathBuf {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mounts = mountns::mountinfo();
    let v2 = mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup") && l.contains(" - cgroup2 "));
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let path = path.trim_start_matches('/');
        if v2 && controllers.is_empty() {
            return Path::new("/sys/fs/cgroup").join(path);
        }
        if controllers.split(',').any(|c| c == controller) {
            let point = mounts
                .lines()
                .find(|l| {
                    l.contains(" - cgroup ")
                        && l.rsplit(' ')
                            .next()
                            .unwrap()
                            .split(',')
                            .any(|o| o == controller)
                })
                .and_then(|l| l.split(' ').nth(4))
                .unwrap();
            return Path::new(point).join(path);
        }
    }
    panic!("no {controller} cgroup for {pid}: {own}");
}

fn pid_of(pid_file: &Path) -> u32 {
    std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_memory_hog_is_killed_and_reported() {
    if !ready("a_memory_hog_is_killed_and_reported") {
        return;
    }
    let _cgroups = cgroup_lock();
    let root = busybox_snapshot();
    let out = run(
        &root.path,
        &["--memory", "16M"],
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{err}");
    assert!(!text(&out.stdout).contains("survived"));
    assert!(err.contains("OOM killer"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn pids_and_cpus_limits_hold_and_the_cgroup_goes_away() {
    if !ready("pids_and_cpus_limits_hold_and_the_cgroup_goes_away") {
        return;
    }
    let _cgroups = cgroup_lock();
    let root = busybox_snapshot();
    let pid_file = root.path.parent().unwrap().join("c.pid");
    let running = start(nsenter_run(
        &root.path,
        &[
            "--pids",
            "20",
            "--cpus",
            "0.5",
            "--memory",
            "64M",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        // The loop runs in a subshell: a shell whose fork fails gives up. The count
        // uses builtins only, as the container is at its limit by then.
        "(i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; \
         n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo ready; echo tasks=$n; read x",
    ));
    let pid = pid_of(&pid_file);
    let pids = cgroup_dir(pid, "pids");
    let cpu = cgroup_dir(pid, "cpu");
    let memory = cgroup_dir(pid, "memory");
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .unwrap()
            .trim(),
        "20"
    );
    let current: u32 = std::fs::read_to_string(pids.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 20, "pids.current {current}");
    if cpu.join("cpu.max").exists() {
        assert_eq!(
            std::fs::read_to_string(cpu.join("cpu.max")).unwrap().trim(),
            "50000 100000"
        );
    } else {
        assert_eq!(
            std::fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim(),
            "50000"
        );
        assert_eq!(
            std::fs::read_to_string(cpu.join("cpu.cfs_period_us"))
                .unwrap()
                .trim(),
            "100000"
        );
    }
    let limit = if memory.join("memory.max").exists() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(
        std::fs::read_to_string(memory.join(limit)).unwrap().trim(),
        (64u64 << 20).to_string()
    );

    let (code, out, err) = running.finish();
    assert_eq!(code, 0, "the container still exits cleanly: {err}");
    let tasks: u32 = out.trim().trim_start_matches("tasks=").parse().unwrap();
    assert!(tasks <= 20, "{tasks} tasks under --pids 20");
    for dir in [pids, cpu, memory] {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(!pid_file.exists(), "the pid file outlived the container");
}

#[test]
fn init_reaps_orphans_and_passes_signals() {
    if !ready("init_reaps_orphans_and_passes_signals") {
        return;
    }
    let root = busybox_snapshot();
    // An orphan (its parent subshell exits at once) ends after 0.2 s: init must reap it.
    let out = run(
        &root.path,
        &["--init"],
        "(sleep 0.2 &); sleep 1; ps -o pid,stat,args",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.lines().nth(1).unwrap().contains("nsenter-run"),
        "PID 1 is the init: {stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|s| s.starts_with('Z'))),
        "zombie left: {stdout}"
    );

    // SIGTERM to nsenter-run reaches the command through the init, with no trap needed.
    let running = start(nsenter_run(
        &root.path,
        &["--init"],
        "echo ready; exec sleep 100",
    ));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let (code, _, err) = running.finish();
    assert_eq!(code, 128 + 15, "{err}");

    // The init is nsenter-run inside the container: its binary stays out of reach.
    let out = run(
        &root.path,
        &["--init"],
        "echo pwned >> /proc/1/exe || echo refused",
    );
    assert!(
        text(&out.stdout).contains("refused"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn enter_joins_a_running_container() {
    if !ready("enter_joins_a_running_container") {
        return;
    }
    let root = busybox_snapshot();
    let pid_file = root.path.parent().unwrap().join("enter.pid");
    let pid_arg = pid_file.clone();
    in_test_netns(move || {
        let running = start(nsenter_run(
            &root.path,
            &[
                "--hostname",
                "joinme",
                "--net",
                "veth",
                "--ip",
                "10.207.0.2/24",
                "--pid-file",
                pid_arg.to_str().unwrap(),
            ],
            "echo inside > /tmp/marker; echo ready; read x",
        ));
        let pid = pid_of(&pid_arg).to_string();
        let out = Command::new(bins::bin("nsenter-run"))
            .args(["--enter", &pid, "--", "/bin/sh", "-c"])
            .arg(
                "hostname; cat /tmp/marker; ps -o pid,args | grep '^ *1 '; ip -o addr show eth0; \
                 grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status; ls /proc/self/fd",
            )
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout} {}", text(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(&lines[..2], ["joinme", "inside"], "{stdout}");
        assert!(
            lines[2].contains("1 /bin/sh -c echo inside"),
            "the container's PID 1: {stdout}"
        );
        assert!(stdout.contains("inet 10.207.0.2/24"), "{stdout}");
        assert!(
            stdout.contains("CapBnd:\t00000000a80425fb") && stdout.contains("NoNewPrivs:\t1"),
            "{stdout}"
        );
        assert!(
            stdout.ends_with("0\n1\n2\n3\n"),
            "only 0-2 (and ls' own): {stdout}"
        );
        let (code, _, err) = running.finish();
        assert_eq!(code, 0, "{err}");

        let gone = Command::new(bins::bin("nsenter-run"))
            .args(["--enter", &pid, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(gone.status.code(), Some(125));
        assert!(text(&gone.stderr).contains(&pid), "{}", text(&gone.stderr));
    });
    assert!(!pid_file.exists());
}

/// Directories named `nsenter-run-*` anywhere in the cgroup trees.
fn leftover_cgroups() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>, depth: u32) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("nsenter-run-")
                {
                    found.push(path);
                } else if depth < 4 {
                    walk(&path, found, depth + 1);
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), &mut found, 0);
    found
}

#[test]
fn soak_two_hundred_containers_leave_the_host_as_it_was() {
    if !ready("soak_two_hundred_containers_leave_the_host_as_it_was") {
        return;
    }
    let _cgroups = cgroup_lock();
    let root = busybox_snapshot();
    in_test_netns(move || {
        let mounts = mountns::mountinfo();
        let before_links = links();
        for i in 0..200 {
            let out = run(
                &root.path,
                &["--net", "veth", "--ip", "10.208.0.2/24", "--memory", "64M"],
                "ip -o link show eth0 >/dev/null",
            );
            assert!(out.status.success(), "run {i}: {}", text(&out.stderr));
        }
        // Another test's loop btrfs may come or go meanwhile: compare ours only.
        let strip = |m: &str| -> Vec<String> {
            m.lines()
                .filter(|l| !l.contains("/tmp/loop-btrfs-") || l.contains("tutorial"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(strip(&mounts), strip(&mountns::mountinfo()));
        assert_eq!(links(), before_links);
        assert!(!ip(&["-o", "addr"]).contains("10.208.0."));
        // No process of the 200 is left holding a network namespace.
        let marker = "10.208.0.2/24";
        let holders: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| text(&c).replace('\0', " "))
            .filter(|c| c.contains(marker) || c.contains("ip -o link show eth0"))
            .collect();
        assert!(holders.is_empty(), "{holders:?}");
    });
    let leftovers: Vec<PathBuf> = leftover_cgroups();
    assert!(leftovers.is_empty(), "cgroups left: {leftovers:?}");
}

#[test]
fn net_host_shares_the_host_network() {
    if !ready("net_host_shares_the_host_network") {
        return;
    }
    let root = busybox_snapshot();
    in_test_netns(move || {
        ip(&["link", "add", "hostnet-test", "type", "bridge"]);
        let out = run(&root.path, &["--net", "host"], "ls /sys/class/net");
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(stdout.lines().any(|l| l == "hostnet-test"), "{stdout}");
        let out = run(&root.path, &[], "ls /sys/class/net");
        assert_eq!(text(&out.stdout), "lo\n", "--net none: only lo");
        ip(&["link", "del", "hostnet-test"]);
    });
}

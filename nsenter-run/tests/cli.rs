//! The binary's command line: help, usage errors and nsenter-run's own failures.
//! (Launching containers needs root: see the workspace's tests crate.)

use std::process::{Command, Output};

fn nsenter_run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsenter-run"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_explains_the_mechanism_and_the_classic_command() {
    let out = nsenter_run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("pivot_root"), "{help}");
    assert!(
        help.contains("unshare --mount --uts --ipc --net --pid --fork"),
        "{help}"
    );
    assert!(help.contains("--explain"), "{help}");
}

#[test]
fn a_root_is_required() {
    let out = nsenter_run(&["--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--rootfs"), "{}", stderr(&out));
}

#[test]
fn rootfs_and_bundle_exclude_each_other() {
    let out = nsenter_run(&["--rootfs", "/", "--bundle", "/", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_rootfs_is_its_own_failure_naming_the_path() {
    let out = nsenter_run(&["--rootfs", "/nonexistent/rootfs", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(err.starts_with("nsenter-run: "), "{err}");
    assert!(err.contains("'/nonexistent/rootfs'"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_rootfs_that_is_a_file_is_refused() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = nsenter_run(&["--rootfs", file.path().to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

#[test]
fn bad_flag_values_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    for (args, needle) in [
        (vec!["--env", "NOVALUE"], "--env 'NOVALUE'"),
        (vec!["--hostname", "has space"], "hostname 'has space'"),
        (vec!["--user", "alice:"], "--user"),
        (vec!["--cwd", "relative"], "'relative'"),
        (vec!["--memory", "lots"], "--memory 'lots'"),
        (vec!["--pids", "0"], "--pids '0'"),
        (vec!["--cpus=-1"], "--cpus"),
        (
            vec!["--net", "veth", "--ip", "10.0.0.300/24"],
            "'10.0.0.300/24'",
        ),
        (vec!["--net", "veth"], "--ip"),
        (vec!["--ip", "10.0.0.2/24"], "--net veth"),
        (vec!["--bridge", "br0"], "--net veth"),
    ] {
        let mut full = vec!["--rootfs", root];
        full.extend(args);
        full.extend(["--", "true"]);
        let out = nsenter_run(&full);
        assert_eq!(out.status.code(), Some(125), "{full:?}");
        assert!(stderr(&out).contains(needle), "{full:?}: {}", stderr(&out));
    }
}

#[test]
fn a_bundle_without_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = nsenter_run(&["--bundle", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
}

#[test]
fn a_bundle_asking_for_seccomp_is_refused_not_run_without() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    let config = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"user":{"uid":0,"gid":0},"args":["true"],"cwd":"/"},
        "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO"}}}"#;
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let out = nsenter_run(&["--bundle", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("linux.seccomp"), "{}", stderr(&out));
}

#[test]
fn enter_needs_a_live_pid_and_excludes_a_rootfs() {
    let out = nsenter_run(&["--enter", "999999999", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("999999999"), "{}", stderr(&out));
    let out = nsenter_run(&["--enter", "1", "--rootfs", "/", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
}

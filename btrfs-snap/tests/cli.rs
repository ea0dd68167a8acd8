//! The command line as a user meets it, without a btrfs: help, usage errors and the
//! errors for paths that are not on btrfs. (Real subvolumes are tested in the workspace's
//! `tests` crate, on a loop-mounted btrfs.)

use std::path::Path;
use std::process::{Command, Output};

fn btrfs_snap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_btrfs-snap"))
        .args(args)
        .output()
        .expect("run btrfs-snap")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit status 1 with `needle` in the error; returns the error.
#[track_caller]
fn assert_fails(out: &Output, needle: &str) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    err
}

fn on_btrfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
}

#[test]
fn help_explains_the_mechanism_and_the_classic_command() {
    let out = btrfs_snap(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("copy-on-write"), "{help}");
    assert!(help.contains("btrfs subvolume"), "{help}");
    for sub in ["create", "snapshot", "delete", "list", "show"] {
        assert!(help.contains(sub), "{sub} missing from: {help}");
    }
    let out = btrfs_snap(&["snapshot", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--readonly") && help.contains("btrfs subvolume snapshot"),
        "{help}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["create"][..],
        &["snapshot", "only-one"][..],
        &["delete"][..],
        &["show"][..],
        &["frobnicate"][..],
        &["create", "a", "b"][..],
    ] {
        let out = btrfs_snap(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_path_off_btrfs_names_its_filesystem_and_how_to_get_a_btrfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    if on_btrfs(dir.path()) {
        eprintln!("SKIP: the temporary directory is on btrfs");
        return;
    }
    let target = dir.path().join("sub");
    let out = btrfs_snap(&["create", target.to_str().expect("utf-8 temp path")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "btrfs-snap: cannot create subvolume '{}': '",
            target.display()
        )),
        "{err}"
    );
    assert!(err.contains(", not btrfs; "), "{err}");
    assert!(
        err.contains("mkfs.btrfs") && err.contains("mount -o loop"),
        "{err}"
    );
    assert!(!target.exists(), "nothing is created on failure");
}

#[test]
fn proc_and_tmpfs_are_named() {
    let out = btrfs_snap(&["list", "/proc"]);
    assert!(
        stderr(&out).contains("'/proc' is on proc, not btrfs"),
        "{}",
        stderr(&out)
    );
    if nix::sys::statfs::statfs("/dev/shm")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
    {
        let out = btrfs_snap(&["show", "/dev/shm"]);
        assert_fails(&out, "is on tmpfs, not btrfs");
    }
}

#[test]
fn the_root_filesystem_is_called_that() {
    if on_btrfs(Path::new("/")) {
        eprintln!("SKIP: the root filesystem is btrfs");
        return;
    }
    let out = btrfs_snap(&["show", "/"]);
    assert_fails(&out, "(the root filesystem), not btrfs");
}

#[test]
fn bad_names_are_refused_before_touching_anything() {
    let long = "x".repeat(256);
    let out = btrfs_snap(&["create", &long]);
    let err = assert_fails(&out, "longer than 255 bytes (BTRFS_VOL_NAME_MAX)");
    assert!(
        err.contains("(256 bytes)"),
        "a long name is shortened: {err}"
    );
    for path in ["/", ".", "..", "a/.."] {
        let out = btrfs_snap(&["create", path]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        assert!(
            stderr(&out).contains("names no new entry"),
            "{path}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn missing_paths_are_named() {
    let out = btrfs_snap(&["create", "/nonexistent-dir/sub"]);
    assert_fails(&out, "'/nonexistent-dir' does not exist");
    let out = btrfs_snap(&["delete", "/nonexistent-a", "/nonexistent-b"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 2, "one line per failed path: {err}");
    assert!(
        err.contains("'/nonexistent-a'") && err.contains("'/nonexistent-b'"),
        "{err}"
    );
}

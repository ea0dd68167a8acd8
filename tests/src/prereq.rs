//! Prerequisites of a test: root, and the system commands it runs.
//!
//! Run by hand, a test whose prerequisite is missing prints `SKIP <test>: <reason>` and returns.
//! Under `CI=true` the same situation is a failure: CI must never pass by skipping.

use std::path::Path;

/// Whether this run is CI (`CI=true` or `CI=1`), where a missing prerequisite fails the test.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Skips (prints why, returns `false`) or, under CI, panics with the same reason.
pub fn skip(test: &str, reason: &str) -> bool {
    if in_ci() {
        panic!("{test}: missing prerequisite under CI=true: {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

/// `true` when running as root; otherwise skips (or fails under CI) with a reason.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(test, "needs root (run with sudo)")
}

/// `true` when every command is found on `PATH`; otherwise skips (or fails under CI),
/// naming the missing commands and the script that installs them.
pub fn require_commands(test: &str, cmds: &[&str]) -> bool {
    let missing: Vec<&str> = cmds
        .iter()
        .copied()
        .filter(|c| find_command(c).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "command(s) not found: {} (tests/scripts/install-deps.sh installs them)",
        missing.join(", ")
    );
    skip(test, &reason)
}

/// The full path of `cmd` in `PATH` (plus the sbin directories, which a non-login root shell
/// may lack), if it is an executable file.
pub fn find_command(cmd: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(cmd))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

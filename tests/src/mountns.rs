//! Run a closure or a command inside its own private mount namespace, so a test that changes
//! mounts or propagation never touches the host (mount_namespaces(7)).
//!
//! Shell equivalent: `unshare --mount --propagation private -- COMMAND`.
//!
//! The closure runs in a forked child: `unshare(CLONE_NEWNS)` only affects the calling thread,
//! and a test process has many threads, so the namespace must belong to a process of its own
//! that exits when the closure is done. Its mounts vanish with it.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::Command;

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, write, ForkResult};

/// Runs `f` in a forked child that first enters a new mount namespace and makes every mount
/// in it private (`mount --make-rprivate /`), so nothing it mounts or changes propagates back.
/// Returns `f`'s result; a panic in `f`, or a failure to set up the namespace, is an `Err`.
///
/// The child is a fork of a multi-threaded process: keep `f` to plain syscalls, files and
/// `std::process::Command`; do not touch locks other threads of the test may hold.
pub fn in_private_mount_namespace(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    // O_CLOEXEC: other test threads spawn processes all the time; one that inherited the
    // write end would keep the pipe open, and the read below would wait for it to exit.
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
    // SAFETY: the child only runs the setup syscalls, the test's closure and a write to the
    // pipe, then leaves with _exit without running the parent's atexit handlers or destructors.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(read_end);
            let result = enter_private_namespace().and_then(|()| run_catching_panics(f));
            report(&write_end, &result);
            // SAFETY: _exit is async-signal-safe and ends the child without unwinding into
            // the test harness' frames, which belong to the parent.
            unsafe { libc::_exit(i32::from(result.is_err())) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let message = read_all(read_end);
            let status = waitpid(child, None).map_err(|e| format!("waitpid: {e}"))?;
            decode(&message, status)
        }
    }
}

/// A `Command` that runs `program` in a new private mount namespace through util-linux's
/// `unshare --mount --propagation private -- program`; add its arguments with `.arg(..)`.
pub fn private_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--"])
        .arg(program);
    command
}

/// The calling process' mount table as the kernel lists it (`/proc/self/mountinfo`), for
/// tests that check the host is unchanged.
pub fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// `unshare(CLONE_NEWNS)` then `mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL)`: without the
/// second step, mounts made below a shared `/` (systemd's default) would still reach the host.
fn enter_private_namespace() -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("mount --make-rprivate /: {e}"))
}

fn run_catching_panics(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".to_string());
        Err(format!("panicked: {text}"))
    })
}

/// Writes the result to the pipe: `0` for Ok, `1` followed by the message for Err.
fn report(pipe: &OwnedFd, result: &Result<(), String>) {
    let message = match result {
        Ok(()) => vec![0u8],
        Err(e) => [&[1u8][..], e.as_bytes()].concat(),
    };
    let mut rest = &message[..];
    while !rest.is_empty() {
        match write(pipe, rest) {
            Ok(n) if n > 0 => rest = &rest[n..],
            _ => break,
        }
    }
}

fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut bytes = Vec::new();
    // A read error leaves `bytes` short; `decode` then reports what the child's status says.
    let _ = std::fs::File::from(fd).read_to_end(&mut bytes);
    bytes
}

fn decode(message: &[u8], status: WaitStatus) -> Result<(), String> {
    match (message.split_first(), status) {
        (Some((0, _)), WaitStatus::Exited(_, 0)) => Ok(()),
        (Some((1, text)), _) => Err(String::from_utf8_lossy(text).into_owned()),
        (_, status) => Err(format!(
            "mount namespace child ended without a result: {status:?}"
        )),
    }
}

//! Signals: nsenter-run stays outside the container as its parent and relays
//! what it receives (INT, TERM, HUP, QUIT, USR1, USR2) to PID 1, then reports
//! its status as a shell would: the exit code, or 128+N for signal N.
//!
//! The signals are blocked before clone3 and taken synchronously with
//! sigwait(3), so none is lost between the fork and the wait; the child
//! restores the mask before execve. Note pid_namespaces(7): PID 1 only receives
//! the signals it installed a handler for (SIGKILL aside), the same as under
//! docker without `--init`.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::Error;

/// What is passed on to the container.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The forwarded signals and SIGCHLD.
pub fn watched() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Block the watched signals; returns the mask to restore in the child.
pub fn block() -> Result<SigSet, Error> {
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched()), Some(&mut old))
        .map_err(|e| Error::sys("sigprocmask", e))?;
    Ok(old)
}

/// Put back a mask, and SIGPIPE's default action (the child, right before execve).
/// Rust's runtime ignores SIGPIPE in nsenter-run, and an ignored signal stays
/// ignored across execve(2): the command would get EPIPE where it expects to die
/// (`yes | head -1` would never end `yes`).
pub fn restore(mask: &SigSet) -> Result<(), Error> {
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run from it.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .map_err(|e| Error::sys("signal(SIGPIPE, SIG_DFL)", e))?;
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None)
        .map_err(|e| Error::sys("sigprocmask", e))
}

/// The shell's exit code for a wait status.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Send a signal through a pidfd (pidfd_send_signal(2)).
pub fn send(pidfd: BorrowedFd<'_>, sig: Signal) -> Result<(), Errno> {
    // SAFETY: a valid pidfd, a valid signal number, no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// Relay signals to `pid` until it exits; returns its wait status.
/// `on_signal` sees each forwarded signal first (e.g. for `--explain`).
pub fn forward_until_exit(
    pid: Pid,
    pidfd: BorrowedFd<'_>,
    mut on_signal: impl FnMut(Signal),
) -> Result<WaitStatus, Error> {
    let set = watched();
    loop {
        // Reap first: SIGCHLD may have arrived before we started waiting.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(status),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("waitpid({pid})"), e)),
        }
        let sig = set.wait().map_err(|e| Error::sys("sigwait", e))?;
        if sig != Signal::SIGCHLD {
            on_signal(sig);
            match send(pidfd, sig) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => return Err(Error::sys(format!("pidfd_send_signal({sig})"), e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_like_a_shell() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}

//! `--init`: a minimal init as the container's PID 1, like `docker run --init`
//! (tini). PID 1 has two duties a normal program ignores (pid_namespaces(7)):
//! - orphans are re-parented to it, and their zombies stay until it reaps them;
//! - the kernel only delivers signals to PID 1 that it has a handler for, so a
//!   plain command as PID 1 shrugs off SIGTERM.
//!
//! The init runs the command as its child (PID 2), waits for any child with
//! waitpid(-1), forwards the signals it receives to the command, and exits with
//! the command's status. It has already been through the same hardening as the
//! command (capabilities, no_new_privs, user) and is not dumpable, so other
//! processes of the container cannot ptrace it or read its memory.

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::explain::Explain;
use crate::{signals, Error};

/// Fork the command off. Returns in the child, which goes on to execve; the
/// init side never returns.
pub fn fork_command(explain: Explain) -> Result<(), Error> {
    explain.call(
        "fork()  (PID 1 stays as init, the command is PID 2)",
        "docker run --init / tini --",
    );
    // SAFETY: single-threaded; the child returns into the exec path, the
    // parent never returns (it ends in _exit).
    match unsafe { fork() }.map_err(|e| Error::sys("fork (--init)", e))? {
        ForkResult::Child => Ok(()),
        ForkResult::Parent { child } => {
            // Every inherited fd goes, the setup-report pipe included: the
            // launcher's EOF must mean the command started.
            // SAFETY: closes only this process' own descriptors.
            unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
            let code = supervise(child);
            // SAFETY: ends the init without unwinding into the launcher's frames.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Reap every child, forward signals to the command, return its status.
/// The forwarded signals and SIGCHLD are still blocked (from the launch):
/// blocked signals are never ignored, even by PID 1, and sigwait takes them.
pub fn supervise(command: Pid) -> i32 {
    let set = signals::watched();
    loop {
        let mut status = None;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(s @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)))
                    if pid == command =>
                {
                    status = signals::exit_code(s);
                }
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        // When PID 1 exits the kernel kills whatever is left in the namespace.
        if let Some(code) = status {
            return code;
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(command, sig);
            }
        }
    }
}

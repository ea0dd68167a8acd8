//! Namespaces: what the container can see (namespaces(7)).
//!
//! One clone3(2) with `CLONE_NEW*` flags starts the container's first process
//! already inside fresh mount, UTS, IPC, network, PID and cgroup namespaces. It
//! is PID 1 of its PID namespace (pid_namespaces(7)); an `unshare --pid` would
//! only affect the caller's *children*, hence `--fork` in the classic command:
//! `unshare --mount --uts --ipc --net --pid --cgroup --fork`.
//!
//! The parent stays in the host's namespaces, which is what lets it do per-
//! container work from outside (join a cgroup, move a veth end into the new
//! network namespace) while the child waits on a pipe.

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::Error;

/// The namespaces a container is cloned into: all but user and time (user
/// namespaces would need id maps; see `user_namespaces(7)`), and cgroup, which
/// the child unshares itself once the parent has moved it into its cgroup, so
/// that its cgroup shows as `/` inside (cgroup_namespaces(7)).
/// `host_network` keeps the host's network namespace (`--net host`).
pub fn clone_flags(host_network: bool) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID;
    if !host_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// The unshare(1) command with the same namespaces.
pub fn unshare_command(flags: CloneFlags) -> String {
    let names = [
        (CloneFlags::CLONE_NEWNS, "--mount"),
        (CloneFlags::CLONE_NEWUTS, "--uts"),
        (CloneFlags::CLONE_NEWIPC, "--ipc"),
        (CloneFlags::CLONE_NEWNET, "--net"),
        (CloneFlags::CLONE_NEWPID, "--pid"),
        (CloneFlags::CLONE_NEWCGROUP, "--cgroup"),
    ];
    let mut cmd = String::from("unshare");
    for (flag, name) in names {
        if flags.contains(flag) {
            cmd.push(' ');
            cmd.push_str(name);
        }
    }
    if flags.contains(CloneFlags::CLONE_NEWPID) {
        cmd.push_str(" --fork");
    }
    cmd
}

/// `CLONE_NEWNS|CLONE_NEWUTS|...` for explain lines.
pub fn flag_names(flags: CloneFlags) -> String {
    let names = [
        (CloneFlags::CLONE_NEWNS, "CLONE_NEWNS"),
        (CloneFlags::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (CloneFlags::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (CloneFlags::CLONE_NEWNET, "CLONE_NEWNET"),
        (CloneFlags::CLONE_NEWPID, "CLONE_NEWPID"),
        (CloneFlags::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
    ];
    names
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("|")
}

/// The parent's handle on the container's first process.
#[derive(Debug)]
pub struct Child {
    /// As the host sees it.
    pub pid: Pid,
    /// A pidfd (pidfd_open(2)): signals through it cannot hit a recycled PID.
    pub pidfd: OwnedFd,
}

/// `struct clone_args` of clone3(2), the fields up to `tls` (CLONE_ARGS_SIZE_VER0).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Fork into new namespaces: `Ok(Some(child))` in the parent, `Ok(None)` in
/// the child, which starts with a copy of the parent's memory like after fork(2).
///
/// # Safety
/// As for fork(2): the caller must be single-threaded (nsenter-run is), and the
/// child must leave through `_exit` or `execve`, never by returning into code
/// that the parent also runs to completion.
pub unsafe fn clone_into(flags: CloneFlags) -> Result<Option<Child>, Error> {
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: flags.bits() as u64 | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed, `pidfd` outlives
    // the call; without CLONE_VM and with a zero stack the child runs on a copy
    // of this stack, exactly like fork(2). The caller upholds fork's rules.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let pid = Errno::result(rc).map_err(|e| match e {
        // Without CAP_SYS_ADMIN the kernel refuses every new namespace but a user
        // namespace (user_namespaces(7)): say what to do, not only EPERM.
        Errno::EPERM if !nix::unistd::geteuid().is_root() => Error::Invalid(
            "cannot create the container's namespaces: permission denied \
             (new mount, PID and network namespaces need CAP_SYS_ADMIN: run as root)"
                .to_string(),
        ),
        e => Error::sys(format!("clone3({})", flag_names(flags)), e),
    })?;
    if pid == 0 {
        return Ok(None);
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new, owned descriptor.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Some(Child {
        pid: Pid::from_raw(pid as libc::pid_t),
        pidfd,
    }))
}

/// `unshare --cgroup`: from now on the current cgroup is this process' `/`.
pub fn unshare_cgroup(explain: crate::explain::Explain) -> Result<(), Error> {
    explain.call("unshare(CLONE_NEWCGROUP)", "unshare --cgroup");
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| Error::sys("unshare(CLONE_NEWCGROUP)", e))
}

/// `ip link set lo up`: a new network namespace starts with `lo` down
/// (network_namespaces(7)); SIOCSIFFLAGS on any socket in it raises it.
pub fn loopback_up(explain: crate::explain::Explain) -> Result<(), Error> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;

    explain.call("ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP)", "ip link set lo up");
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("socket(AF_INET)", e))?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq we own.
    unsafe {
        Errno::result(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr))
            .map_err(|e| Error::sys("ioctl(SIOCGIFFLAGS, lo)", e))?;
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        Errno::result(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr))
            .map_err(|e| Error::sys("ip link set lo up", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_command_names_every_namespace() {
        assert_eq!(
            unshare_command(clone_flags(false)),
            "unshare --mount --uts --ipc --net --pid --fork"
        );
        assert_eq!(
            unshare_command(clone_flags(true)),
            "unshare --mount --uts --ipc --pid --fork"
        );
    }

    #[test]
    fn host_network_keeps_the_network_namespace() {
        assert!(!clone_flags(true).contains(CloneFlags::CLONE_NEWNET));
        assert!(clone_flags(false).contains(CloneFlags::CLONE_NEWNET));
        assert!(flag_names(clone_flags(false)).starts_with("CLONE_NEWNS|CLONE_NEWUTS"));
    }
}

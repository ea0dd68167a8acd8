//! `--enter PID`: run a command inside a running container, like `docker exec`
//! or `nsenter -t PID -m -u -i -n -p -C -r -w` — but with the container's
//! hardening (Docker's capabilities, no_new_privs, only fds 0-2), not the full
//! privilege nsenter keeps.
//!
//! setns(2) with a pidfd (pidfd_open(2)) joins several namespaces of one
//! process in one call, with no PID reuse race. The PID namespace only applies
//! to children, so nsenter-run joins it first and clones: the child is born in
//! the container's PID namespace, joins the others, enters the container's root
//! (`/proc/PID/root`, opened beforehand), and joins its cgroups.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::pipe2;

use crate::cgroup::{self, Layout};
use crate::exec::Via;
use crate::explain::Explain;
use crate::launch::{child_main, exec_hardened, release_and_wait, Exit};
use crate::user::UserSpec;
use crate::{caps, namespaces, signals, Container, Error, DEFAULT_PATH};

/// What to run in the container.
#[derive(Clone, Debug, Default)]
pub struct EnterOptions {
    pub pid: i32,
    pub command: Vec<OsString>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
}

/// The namespaces joined (all but user and time, as a launch makes them).
fn flags() -> CloneFlags {
    CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP
}

/// Join the container of `options.pid` and run the command there; returns its status.
pub fn enter(options: &EnterOptions, explain: Explain) -> Result<Exit, Error> {
    let pid = options.pid;
    let no_such = |e: Errno| Error::sys(format!("cannot enter the container of PID {pid}"), e);
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let raw = Errno::result(rc).map_err(no_such)?;
    // SAFETY: pidfd_open returned a new descriptor nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) };
    let root = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(no_such)?;
    let container = container_for(options)?;
    let cgroups = cgroup_dirs(pid);

    let old_mask = signals::block()?;
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;

    explain.call(
        format!("setns(pidfd of {pid}, CLONE_NEWPID)"),
        format!("nsenter --target {pid} --pid  (for the children to come)"),
    );
    setns_pidfd(&pidfd, CloneFlags::CLONE_NEWPID)
        .map_err(|e| Error::sys(format!("setns into the PID namespace of {pid}"), e))?;
    explain.call(
        "clone3()",
        "(fork: the child is born in the container's PID namespace)",
    );
    // SAFETY: single-threaded; the child leaves through execve or _exit.
    let child = match unsafe { namespaces::clone_into(CloneFlags::empty())? } {
        Some(child) => child,
        None => {
            drop(go_w);
            drop(err_r);
            let code = child_main(Some(go_r), err_w, |_report| {
                explain.call(
                    format!("setns(pidfd of {pid}, CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET|CLONE_NEWCGROUP)"),
                    format!("nsenter --target {pid} --mount --uts --ipc --net --cgroup"),
                );
                setns_pidfd(&pidfd, flags())
                    .map_err(|e| Error::sys(format!("setns into the namespaces of {pid}"), e))?;
                explain.call(
                    format!("fchdir(/proc/{pid}/root); chroot(\".\")"),
                    format!("nsenter --target {pid} --root"),
                );
                nix::unistd::fchdir(&root)
                    .map_err(|e| Error::sys("fchdir (the container's root)", e))?;
                nix::unistd::chroot(".")
                    .map_err(|e| Error::sys("chroot (the container's root)", e))?;
                // main re-ran nsenter-run from a protected copy for --enter.
                exec_hardened(&container, &old_mask, Via::Itself, explain)
            });
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
    };
    drop(go_r);
    drop(err_w);
    for dir in &cgroups {
        // Not fatal: a container may run without limits in a cgroup we cannot write.
        let _ = cgroup::write_value(&dir.join("cgroup.procs"), &child.pid.to_string(), explain);
    }
    let program = container
        .args
        .first()
        .map_or(OsStr::new(""), |a| a.as_os_str());
    let code = release_and_wait(&child, Some(go_w), err_r, None, program, explain)?;
    Ok(Exit { code, note: None })
}

/// setns(2) with a pidfd and several namespace flags at once (Linux 5.8).
fn setns_pidfd(pidfd: &OwnedFd, flags: CloneFlags) -> Result<(), Errno> {
    // SAFETY: a valid pidfd and namespace flags.
    let rc = unsafe { libc::setns(pidfd.as_fd().as_raw_fd(), flags.bits()) };
    Errno::result(rc).map(drop)
}

/// The hardened process description for the command to run.
fn container_for(options: &EnterOptions) -> Result<Container, Error> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}")];
    if let Ok(term) = std::env::var("TERM") {
        if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            env.push(format!("TERM={term}"));
        }
    }
    for kv in &options.env {
        let Some((key, _)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Error::Invalid(format!("--env '{kv}': expected KEY=VALUE")));
        };
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(kv.clone());
    }
    let user = match &options.user {
        Some(u) => UserSpec::parse(u).map_err(|e| Error::Invalid(format!("--user {e}")))?,
        None => UserSpec::root(),
    };
    let cwd = options.cwd.clone().unwrap_or_else(|| PathBuf::from("/"));
    if !cwd.is_absolute() {
        return Err(Error::Invalid(format!(
            "working directory '{}' is not absolute",
            cwd.display()
        )));
    }
    let args = if options.command.is_empty() {
        vec![OsString::from("/bin/sh")]
    } else {
        options.command.clone()
    };
    Ok(Container {
        rootfs: PathBuf::from("/"),
        args,
        env,
        cwd,
        user,
        hostname: String::new(),
        readonly: false,
        host_network: false,
        mounts: Vec::new(),
        masked: Vec::new(),
        readonly_paths: Vec::new(),
        caps: caps::CapSets::docker_default(),
        caps_from_bundle: false,
        no_new_privileges: true,
        rlimits: Vec::new(),
        umask: None,
        veth: None,
        limits: cgroup::Limits::default(),
        init: false,
        pid_file: None,
    })
}

/// The cgroup directories of `pid` (as the host sees them), to join.
fn cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let layout = Layout::current();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut dirs = Vec::new();
    for (controllers, path) in cgroup::parse_proc_cgroup(&text) {
        let dir = if controllers.is_empty() {
            layout
                .unified
                .as_ref()
                .map(|(point, root)| mount_path(point, root, &path))
        } else {
            layout
                .v1
                .iter()
                .find(|h| {
                    h.controllers.len() == controllers.len()
                        && controllers.iter().all(|c| h.controllers.contains(c))
                })
                .map(|h| mount_path(&h.point, &h.root, &path))
        };
        dirs.extend(dir.filter(|d| d.join("cgroup.procs").exists()));
    }
    dirs
}

fn mount_path(point: &Path, root: &Path, path: &Path) -> PathBuf {
    let relative = path.strip_prefix(root).unwrap_or(path);
    point.join(relative.strip_prefix("/").unwrap_or(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entered_command_gets_the_launch_hardening() {
        let c = container_for(&EnterOptions {
            pid: 1,
            command: vec![],
            env: vec!["A=1".into()],
            cwd: None,
            user: None,
        })
        .unwrap();
        assert_eq!(c.caps, caps::CapSets::docker_default());
        assert!(c.no_new_privileges);
        assert_eq!(c.args, vec![OsString::from("/bin/sh")]);
        assert!(c.env.contains(&"A=1".to_string()));
    }

    #[test]
    fn cgroup_paths_map_onto_mounts() {
        assert_eq!(
            mount_path(
                Path::new("/sys/fs/cgroup/memory"),
                Path::new("/"),
                Path::new("/a/b")
            ),
            PathBuf::from("/sys/fs/cgroup/memory/a/b")
        );
    }
}

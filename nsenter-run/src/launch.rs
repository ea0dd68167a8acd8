//! The launch, in two processes.
//!
//! The parent stays on the host: it clones the child into new namespaces, does
//! whatever must be done from outside (cgroup, veth, pid file), then writes one
//! byte on the *go* pipe; with nothing to do from outside the child does not wait.
//! The child, PID 1 of its PID namespace, builds its root, drops privileges and
//! execs the command (through the exec stub, see [`crate::stub`]). Setup errors
//! come back on a close-on-exec *error* pipe: EOF without a message means the
//! execve succeeded. The parent then relays
//! signals until the child exits and returns its status.

use std::convert::Infallible;
use std::ffi::{CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, Gid, Pid, Uid};

use crate::cgroup::Cgroup;
use crate::exec::Via;
use crate::explain::Explain;
use crate::user::{self, Identity};
use crate::veth;
use crate::{caps, exec, init, namespaces, rootfs, selfexe, signals, stub, Container, Error};

/// How the container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The command's status: its exit code, or 128+N for signal N.
    pub code: i32,
    /// A one-line remark for stderr (the OOM killer struck).
    pub note: Option<String>,
}

/// Start the container and wait for it.
pub fn run(container: &Container, explain: Explain) -> Result<Exit, Error> {
    // CVE-2019-5736: unless nsenter-run already runs from a protected copy of
    // itself (main sees to that for --init, whose init stays in the container),
    // the command's execve is made by the sealed exec stub.
    let via_stub = !selfexe::is_protected();
    if via_stub && container.init {
        return Err(Error::Invalid(
            "--init needs nsenter-run to run from a protected copy of itself \
             (selfexe::ensure_protected)"
                .to_string(),
        ));
    }
    let flags = namespaces::clone_flags(container.host_network);
    let old_mask = signals::block()?;
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let terminal = Terminal::save();
    let needs_go =
        !container.limits.is_empty() || container.veth.is_some() || container.pid_file.is_some();

    explain.call(
        format!("clone3({})", namespaces::flag_names(flags)),
        namespaces::unshare_command(flags),
    );
    // SAFETY: nsenter-run is single-threaded, and the child below never returns:
    // it leaves through execve or _exit.
    let child = match unsafe { namespaces::clone_into(flags)? } {
        Some(child) => child,
        None => {
            drop(go_w);
            drop(err_r);
            // Nothing to do from outside: no reason to make the child wait.
            let go = needs_go.then_some(go_r);
            let code = child_main(go, err_w, |report| {
                let via = if via_stub {
                    Via::Stub(report)
                } else {
                    Via::Itself
                };
                setup(container, &old_mask, via, explain)
            });
            // SAFETY: _exit ends the child without running the parent's
            // destructors or atexit handlers twice.
            unsafe { libc::_exit(code) }
        }
    };
    drop(go_r);
    drop(err_w);

    // From outside, while the child waits: its cgroup, its network cable. On a
    // failure the child is killed and reaped *before* the cgroup and the veth
    // are dropped: a cgroup still holding a process cannot be removed.
    let abort = |err: Error| {
        let _ = signals::send(child.pidfd.as_fd(), Signal::SIGKILL);
        let _ = waitpid(child.pid, None);
        terminal.restore();
        err
    };
    let cgroup = match join_cgroup(container, child.pid, explain) {
        Ok(cgroup) => cgroup,
        Err(err) => return Err(abort(err)),
    };
    let veth = match &container.veth {
        Some(plan) => match veth::setup(plan, child.pid.as_raw(), explain) {
            Ok(veth) => Some(veth),
            Err(err) => return Err(abort(err)),
        },
        None => None,
    };

    let go = needs_go.then_some(go_w);
    let program = container
        .args
        .first()
        .map_or(OsStr::new(""), |a| a.as_os_str());
    let status = release_and_wait(
        &child,
        go,
        err_r,
        container.pid_file.as_deref(),
        program,
        explain,
    );
    terminal.restore();
    let status = status?;
    let oom = cgroup.as_ref().map_or(0, Cgroup::oom_kills);
    drop(veth);
    drop(cgroup);
    let note = (oom > 0 && status == 137).then(|| {
        "the container was killed by the kernel's OOM killer: it went over its --memory limit"
            .to_string()
    });
    Ok(Exit { code: status, note })
}

/// `--memory`, `--pids`, `--cpus`: the container's cgroup, with the child in it.
fn join_cgroup(container: &Container, pid: Pid, explain: Explain) -> Result<Option<Cgroup>, Error> {
    if container.limits.is_empty() {
        return Ok(None);
    }
    let cgroup = Cgroup::create(&container.limits, &format!("nsenter-run-{pid}"), explain)?;
    cgroup.join(pid.as_raw())?;
    Ok(Some(cgroup))
}

/// Write the pid file and the go byte, wait for the setup report (EOF: the
/// command runs), then relay signals until the child exits.
pub(crate) fn release_and_wait(
    child: &namespaces::Child,
    go: Option<OwnedFd>,
    report: OwnedFd,
    pid_file: Option<&Path>,
    program: &OsStr,
    explain: Explain,
) -> Result<i32, Error> {
    // Written before the command can start, so whoever waits for the command's
    // first output finds it (runc writes it at create time too); removed on any failure.
    let _pid_file = match pid_file {
        Some(path) => match PidFile::write(path, child.pid, explain) {
            Ok(file) => Some(file),
            Err(err) => {
                let _ = signals::send(child.pidfd.as_fd(), Signal::SIGKILL);
                let _ = waitpid(child.pid, None);
                return Err(err);
            }
        },
        None => None,
    };
    let go = match go {
        Some(go) => std::fs::File::from(go).write_all(b"g"),
        None => Ok(()),
    };
    let mut text = Vec::new();
    let read = std::fs::File::from(report).read_to_end(&mut text);
    if go.is_err() || read.is_err() || !text.is_empty() {
        let _ = waitpid(child.pid, None);
        return Err(parse_report(&text, program));
    }
    let status = signals::forward_until_exit(child.pid, child.pidfd.as_fd(), |sig| {
        explain.call(
            format!("pidfd_send_signal(pidfd of {}, {sig})", child.pid),
            format!(
                "kill -{} {}",
                sig.as_str().trim_start_matches("SIG"),
                child.pid
            ),
        );
    })?;
    Ok(signals::exit_code(status).unwrap_or(crate::EXIT_OWN_FAILURE))
}

/// `--pid-file`: the container's PID as the host sees it, written whole
/// (a temporary file renamed over), removed when the container is gone.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: &Path, pid: Pid, explain: Explain) -> Result<PidFile, Error> {
        explain.call(
            format!("write({path:?}, \"{pid}\")"),
            format!("echo {pid} > {}", path.display()),
        );
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let failed = |source| Error::Path {
            what: "cannot write the pid file",
            path: path.to_path_buf(),
            source,
        };
        std::fs::write(&tmp, format!("{pid}\n")).map_err(failed)?;
        std::fs::rename(&tmp, path).map_err(failed)?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The child's side: wait for the go byte, set up, exec; report any failure.
pub(crate) fn child_main(
    go: Option<OwnedFd>,
    report: OwnedFd,
    setup: impl FnOnce(BorrowedFd<'_>) -> Result<Infallible, Error>,
) -> i32 {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if let Some(go) = go {
            let mut byte = [0u8; 1];
            match std::fs::File::from(go).read(&mut byte) {
                Ok(1) => {}
                // The parent is gone or failed: nothing to report to.
                _ => return Err(Error::Invalid("the parent process went away".to_string())),
            }
        }
        setup(report.as_fd())
    }));
    let err = match result {
        Ok(Err(err)) => err,
        Ok(Ok(never)) => match never {},
        Err(_) => Error::Invalid("internal error while setting up the container".to_string()),
    };
    let code = err.exit_code();
    let message = format!("{code}\n{}", crate::error_chain(&err));
    let _ = std::fs::File::from(report).write_all(message.as_bytes());
    code
}

/// The child's (or the exec stub's) account of a failed setup.
fn parse_report(report: &[u8], program: &OsStr) -> Error {
    if let Some(errors) = stub::parse_report(report) {
        return exec::failure(program, &errors);
    }
    let text = String::from_utf8_lossy(report);
    match text.split_once('\n') {
        Some((code, message)) => Error::Container {
            code: code.parse().unwrap_or(crate::EXIT_OWN_FAILURE),
            message: message.to_string(),
        },
        None => Error::Invalid("the container's process died during setup".to_string()),
    }
}

/// Everything inside the container, in order, ending in execve.
fn setup(
    c: &Container,
    mask: &SigSet,
    via: Via<'_>,
    explain: Explain,
) -> Result<Infallible, Error> {
    die_with_parent()?;

    // After the parent has put us in our cgroup: that cgroup becomes our `/`.
    namespaces::unshare_cgroup(explain)?;
    rootfs::make_rslave(explain)?;
    let root = rootfs::bind_rootfs(&c.rootfs, explain)?;
    for plan in &c.mounts {
        rootfs::mount_in_root(&root, &c.rootfs, plan, explain)?;
    }
    rootfs::pivot(&root, &c.rootfs, explain)?;
    drop(root);
    if !c.host_network {
        namespaces::loopback_up(explain)?;
    }
    explain.call(
        format!("sethostname({:?})", c.hostname),
        format!("hostname {}", c.hostname),
    );
    nix::unistd::sethostname(&c.hostname)
        .map_err(|e| Error::sys(format!("sethostname '{}'", c.hostname), e))?;
    rootfs::harden(&c.masked, &c.readonly_paths, explain)?;
    rootfs::make_cwd(&c.cwd, explain)?;
    if c.readonly {
        rootfs::make_root_readonly(explain)?;
    }
    exec_hardened(c, mask, via, explain)
}

/// From inside the root to the command: user, limits, capabilities, cwd,
/// no_new_privs, fds, then execve (through a minimal init with `--init`).
/// Shared by a launch and `--enter`.
pub(crate) fn exec_hardened(
    c: &Container,
    mask: &SigSet,
    via: Via<'_>,
    explain: Explain,
) -> Result<Infallible, Error> {
    let id = identity(c)?;
    let mut env = c.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    apply_rlimits(&c.rlimits, explain)?;
    if let Some(umask) = c.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            umask as libc::mode_t,
        ));
    }

    caps::drop_bounding(c.caps.bounding, caps::last_cap(), explain)?;
    let keep = c.caps_from_bundle && id.uid != 0;
    if keep {
        nix::sys::prctl::set_keepcaps(true).map_err(|e| Error::sys("prctl(PR_SET_KEEPCAPS)", e))?;
    }
    switch_user(&id, explain)?;
    let sets = if id.uid == 0 || c.caps_from_bundle {
        c.caps
    } else {
        c.caps.for_non_root()
    };
    caps::apply(&sets, explain)?;

    exec::chdir_checked(&c.cwd, explain)?;
    if c.no_new_privileges {
        explain.call("prctl(PR_SET_NO_NEW_PRIVS, 1)", "setpriv --no-new-privs");
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| Error::sys("prctl(PR_SET_NO_NEW_PRIVS)", e))?;
    }
    exec::close_fds_on_exec(explain)?;
    // setresuid cleared it.
    die_with_parent()?;
    if c.init {
        init::fork_command(explain)?;
    }
    signals::restore(mask)?;

    let args: Vec<CString> = c
        .args
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let env_c: Vec<CString> = env
        .iter()
        .map(|e| cstring(e.as_bytes()))
        .collect::<Result<_, _>>()?;
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .map(OsStr::new);
    Err(exec::exec(&args, &env_c, path_var, via, explain))
}

/// If nsenter-run dies, so does the container: SIGKILL when the parent goes
/// (prctl(2) PR_SET_PDEATHSIG). A change of user clears it; it is set again after.
fn die_with_parent() -> Result<(), Error> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| Error::sys("prctl(PR_SET_PDEATHSIG)", e))
}

fn cstring(bytes: &[u8]) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| {
        Error::Invalid(format!(
            "'{}' contains a NUL byte",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// The user, from the container's own `/etc/passwd` and `/etc/group`.
fn identity(c: &Container) -> Result<Identity, Error> {
    let passwd = user::parse_passwd(&read_small("/etc/passwd"));
    let groups = user::parse_group(&read_small("/etc/group"));
    user::resolve(&c.user, &passwd, &groups).map_err(|e| Error::Invalid(format!("user: {e}")))
}

/// A file of the container read defensively: regular files only (a FIFO would
/// block forever), at most 4 MiB; missing or odd means empty.
fn read_small(path: &str) -> String {
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let Ok(fd) = nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()) else {
        return String::new();
    };
    let regular =
        nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
    let mut text = Vec::new();
    if regular {
        let _ = std::fs::File::from(fd).take(4 << 20).read_to_end(&mut text);
    }
    String::from_utf8(text).unwrap_or_default()
}

fn switch_user(id: &Identity, explain: Explain) -> Result<(), Error> {
    let groups: Vec<String> = id.groups.iter().map(u32::to_string).collect();
    explain.call(
        format!(
            "setgroups({:?}); setresgid({2}, {2}, {2}); setresuid({1}, {1}, {1})",
            id.groups, id.uid, id.gid
        ),
        format!(
            "setpriv --reuid={} --regid={} --groups={}",
            id.uid,
            id.gid,
            groups.join(",")
        ),
    );
    let gids: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&gids).map_err(|e| Error::sys("setgroups", e))?;
    let gid = Gid::from_raw(id.gid);
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| Error::sys(format!("setresgid({})", id.gid), e))?;
    let uid = Uid::from_raw(id.uid);
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| Error::sys(format!("setresuid({})", id.uid), e))
}

fn apply_rlimits(limits: &[(String, u64, u64)], explain: Explain) -> Result<(), Error> {
    for (name, soft, hard) in limits {
        let Some(resource) = rlimit_resource(name) else {
            return Err(Error::Invalid(format!("bundle rlimit '{name}' is unknown")));
        };
        explain.call(
            format!("setrlimit({name}, {soft}, {hard})"),
            format!(
                "prlimit --{}={soft}:{hard}",
                name.trim_start_matches("RLIMIT_").to_ascii_lowercase()
            ),
        );
        nix::sys::resource::setrlimit(resource, *soft, *hard)
            .map_err(|e| Error::sys(format!("setrlimit({name})"), e))?;
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    Some(match name {
        "RLIMIT_CPU" => R::RLIMIT_CPU,
        "RLIMIT_FSIZE" => R::RLIMIT_FSIZE,
        "RLIMIT_DATA" => R::RLIMIT_DATA,
        "RLIMIT_STACK" => R::RLIMIT_STACK,
        "RLIMIT_CORE" => R::RLIMIT_CORE,
        "RLIMIT_RSS" => R::RLIMIT_RSS,
        "RLIMIT_NPROC" => R::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => R::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => R::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => R::RLIMIT_AS,
        "RLIMIT_LOCKS" => R::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => R::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => R::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => R::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => R::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => R::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// The terminal's foreground process group: an interactive shell in the
/// container takes the terminal for job control; nsenter-run takes it back.
struct Terminal {
    foreground: Option<Pid>,
}

impl Terminal {
    fn save() -> Self {
        let stdin = std::io::stdin();
        let foreground = match nix::unistd::isatty(&stdin) {
            Ok(true) => nix::unistd::tcgetpgrp(&stdin).ok(),
            _ => None,
        };
        Terminal { foreground }
    }

    fn restore(&self) {
        if let Some(pgrp) = self.foreground {
            // From a background group tcsetpgrp(3) raises SIGTTOU: block it for the call.
            let mut ttou = SigSet::empty();
            ttou.add(Signal::SIGTTOU);
            let _ = ttou.thread_block();
            let _ = nix::unistd::tcsetpgrp(std::io::stdin(), pgrp);
            let _ = ttou.thread_unblock();
        }
    }
}

//! CVE-2019-5736: a container that can reach the runtime's own binary through
//! `/proc/PID/exe` (a `#!/proc/self/exe` entrypoint, or a runtime process
//! visible in its PID namespace, as during `runc exec` or with `--init`) can
//! open it for writing once the runtime has exited, and replace the host's
//! binary with its own code.
//!
//! Where nsenter-run's own code stays inside the container (`--init`, whose
//! init is PID 1, and `--enter`, which joins a running container), it first
//! re-executes itself from a copy the container cannot write through, so that
//! `/proc/self/exe` of every nsenter-run process names that copy and never the
//! host file:
//! 1. a read-only, detached bind mount of the binary (open_tree(2) with
//!    OPEN_TREE_CLONE, then mount_setattr(2) MOUNT_ATTR_RDONLY, then
//!    execveat(2)): no data copied, and a write through the link fails with
//!    EROFS. Making it writable again needs CAP_SYS_ADMIN, which a container
//!    does not have (runc 1.1.12 used the same idea before moving to overlayfs);
//! 2. where the kernel lacks those calls (before 5.12), runc's original fix: a
//!    copy in a memfd (memfd_create(2)) sealed against every change, writes
//!    failing with EPERM. It costs a copy of the binary at each start.
//!
//! A plain launch needs less: the container holds nothing of nsenter-run but
//! the command's execve, which a sealed stub makes instead ([`crate::stub`]).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{fstatvfs, FsFlags};
use nix::unistd::fexecve;

use crate::explain::Explain;
use crate::Error;

/// Every seal: the content, the size, and the seals themselves are frozen.
fn all_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// True when this process' binary cannot be written through `/proc/self/exe`:
/// it is on a read-only mount, or a sealed memfd.
pub fn is_protected() -> bool {
    let Ok(exe) = nix::fcntl::open(
        "/proc/self/exe",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    if fstatvfs(&exe).is_ok_and(|vfs| vfs.flags().contains(FsFlags::ST_RDONLY)) {
        return true;
    }
    match fcntl(&exe, FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(all_seals()),
        Err(_) => false,
    }
}

/// Re-execute from a protected copy unless already running from one.
/// Returns only when nothing needed doing (or on error).
pub fn ensure_protected(explain: Explain) -> Result<(), Error> {
    if is_protected() {
        return Ok(());
    }
    let copy = match read_only_mount() {
        Ok(fd) => {
            explain.call(
                "open_tree(\"/proc/self/exe\", OPEN_TREE_CLONE); mount_setattr(MOUNT_ATTR_RDONLY); execveat",
                "(CVE-2019-5736: re-run from a read-only mount of the binary)",
            );
            fd
        }
        Err(_) => {
            explain.call(
                "memfd_create(\"nsenter-run\"); copy /proc/self/exe; F_ADD_SEALS; execveat",
                "(CVE-2019-5736: re-run from a sealed copy of the binary)",
            );
            sealed_copy()?
        }
    };
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.into_vec()).ok())
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect();
    let Err(err) = fexecve(copy.as_fd(), &args, &env);
    Err(Error::sys(
        "execveat (the protected copy of nsenter-run)",
        err,
    ))
}

/// A detached, read-only bind mount of the running binary: an O_PATH fd on it.
fn read_only_mount() -> Result<OwnedFd, Errno> {
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: a NUL-terminated path and integer flags; the result is a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            flags,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let attr = MountAttr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        ..MountAttr::default()
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed; "" with
    // AT_EMPTY_PATH names the mount behind `fd` itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc)?;
    Ok(fd)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn sealed_copy() -> Result<OwnedFd, Error> {
    let exe = nix::fcntl::open(
        "/proc/self/exe",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("open /proc/self/exe", e))?;
    let size = nix::sys::stat::fstat(&exe)
        .map_err(|e| Error::sys("stat /proc/self/exe", e))?
        .st_size as usize;
    sealed_memfd("nsenter-run", |memfd| {
        let mut left = size;
        while left > 0 {
            // In-kernel copy: no pass through user memory.
            // SAFETY: two valid descriptors, no offset pointer (the file positions move).
            let n = unsafe {
                libc::sendfile(
                    memfd.as_raw_fd(),
                    exe.as_raw_fd(),
                    std::ptr::null_mut(),
                    left,
                )
            };
            match Errno::result(n) {
                Ok(0) => break,
                Ok(n) => left -= n as usize,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .map_err(|e| Error::sys("copy nsenter-run into a sealed memfd", e))
}

/// A new executable memfd named `name`, filled by `fill`, then sealed against
/// every change: what a process executes from it cannot be written.
pub(crate) fn sealed_memfd(
    name: &str,
    fill: impl FnOnce(&mut std::fs::File) -> Result<(), Errno>,
) -> Result<OwnedFd, Errno> {
    // MFD_EXEC (Linux 6.3) keeps the memfd executable when vm.memfd_noexec asks
    // for non-executable memfds by default; older kernels reject the flag.
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    let memfd = match memfd_create(name, flags | MFdFlags::from_bits_retain(MFD_EXEC)) {
        Err(Errno::EINVAL) => memfd_create(name, flags),
        other => other,
    }?;
    let mut file = std::fs::File::from(memfd);
    fill(&mut file)?;
    fcntl(&file, FcntlArg::F_ADD_SEALS(all_seals()))?;
    Ok(OwnedFd::from(file))
}

const MFD_EXEC: libc::c_uint = 0x0010;

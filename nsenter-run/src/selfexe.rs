//! CVE-2019-5736: a container that can reach the runtime's own binary through
//! `/proc/PID/exe` (a `#!/proc/self/exe` entrypoint, or a runtime process
//! visible in its PID namespace) can open it for writing once the runtime has
//! exited, and replace the host's binary with its own code.
//!
//! Defence, as runc did it: before anything else nsenter-run copies itself into
//! a memfd (memfd_create(2)), seals it against every change (F_SEAL_WRITE,
//! F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL) and re-executes from it. From then on
//! `/proc/self/exe` of every nsenter-run process is that sealed anonymous copy:
//! writes fail with EPERM and the host file is never named.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::Mode;
use nix::unistd::fexecve;

use crate::explain::Explain;
use crate::Error;

/// Every seal: the content, the size, and the seals themselves are frozen.
fn all_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// True when this process already runs from a sealed copy.
pub fn is_sealed_copy() -> bool {
    let Ok(exe) = nix::fcntl::open(
        "/proc/self/exe",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    match fcntl(&exe, FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(all_seals()),
        Err(_) => false,
    }
}

/// Re-execute from a sealed memfd copy unless already running from one.
/// Returns only when nothing needed doing (or on error).
pub fn ensure_sealed(explain: Explain) -> Result<(), Error> {
    if is_sealed_copy() {
        return Ok(());
    }
    let copy = sealed_copy()?;
    explain.call(
        "memfd_create(\"nsenter-run\"), copy /proc/self/exe, F_ADD_SEALS, fexecve",
        "(runc's CVE-2019-5736 defence: run from a sealed copy of the binary)",
    );
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
    let err = fexecve(copy.as_fd(), &args, &env).unwrap_err();
    Err(Error::sys("fexecve (the sealed copy of nsenter-run)", err))
}

fn sealed_copy() -> Result<OwnedFd, Error> {
    let exe = nix::fcntl::open(
        "/proc/self/exe",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("open /proc/self/exe", e))?;
    // MFD_EXEC (Linux 6.3) keeps the copy executable when vm.memfd_noexec asks
    // for non-executable memfds by default; older kernels reject the flag.
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    let memfd = match memfd_create("nsenter-run", flags | MFdFlags::from_bits_retain(MFD_EXEC)) {
        Err(Errno::EINVAL) => memfd_create("nsenter-run", flags),
        other => other,
    }
    .map_err(|e| Error::sys("memfd_create", e))?;
    let size = nix::sys::stat::fstat(&exe)
        .map_err(|e| Error::sys("stat /proc/self/exe", e))?
        .st_size as usize;
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
            Err(e) => return Err(Error::sys("sendfile into the memfd", e)),
        }
    }
    fcntl(&memfd, FcntlArg::F_ADD_SEALS(all_seals()))
        .map_err(|e| Error::sys("fcntl(F_ADD_SEALS)", e))?;
    Ok(memfd)
}

const MFD_EXEC: libc::c_uint = 0x0010;

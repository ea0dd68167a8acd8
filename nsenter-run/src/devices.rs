//! `/dev`: a fresh tmpfs holding only the devices a process expects, made with
//! mknod(2) (runc's default device list), never the host's `/dev` with its disks.
//! Like: `mknod -m 666 /dev/null c 1 3` for each, and `ln -s /proc/self/fd /dev/fd`.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fchmodat, fstat, makedev, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::symlinkat;

use crate::explain::Explain;
use crate::Error;

/// Name, major, minor: all mode 0666.
pub const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The conventional links: `/dev/fd`, the std streams, `/dev/ptmx` into the
/// container's own devpts instance (devpts(5) `newinstance`).
pub const LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Fill a fresh `/dev` tmpfs (`dev` is its directory, `shown` its host path).
pub fn populate(dev: &OwnedFd, shown: &Path, explain: Explain) -> Result<(), Error> {
    for (name, maj, min) in DEVICES {
        let path = shown.join(name);
        explain.call(
            format!("mknodat({path:?}, S_IFCHR|0666, makedev({maj}, {min}))"),
            format!("mknod -m 666 {} c {maj} {min}", path.display()),
        );
        let failed = |e| Error::sys(format!("mknod '{}'", path.display()), e);
        mknodat(
            dev,
            name,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(maj, min),
        )
        .map_err(failed)?;
        // mknod's mode went through the umask; set it exactly.
        fchmodat(
            dev,
            name,
            Mode::from_bits_truncate(0o666),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(failed)?;
    }
    for (name, target) in LINKS {
        let path = shown.join(name);
        explain.call(
            format!("symlinkat({target:?}, {path:?})"),
            format!("ln -s {target} {}", path.display()),
        );
        symlinkat(target, dev, name)
            .map_err(|e| Error::sys(format!("ln -s '{}'", path.display()), e))?;
    }
    if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        bind_console(dev, shown, explain)?;
    }
    Ok(())
}

/// The caller's terminal as `/dev/console`, as runc does for a terminal: the
/// container's stdio *is* that terminal, and with a node for it in the
/// container's `/dev`, ttyname(3) (`tty`) can name it.
fn bind_console(dev: &OwnedFd, shown: &Path, explain: Explain) -> Result<(), Error> {
    let path = shown.join("console");
    let failed = |e| Error::sys(format!("mount --bind $(tty) '{}'", path.display()), e);
    let flags =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    drop(openat(dev, "console", flags, Mode::from_bits_truncate(0o600)).map_err(failed)?);
    let console = openat(
        dev,
        "console",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(failed)?;
    // Our fd 0 belongs to the host's mount namespace, which a bind cannot take
    // from: name the terminal by path in our copy, and check it is the same device.
    let tty = nix::unistd::ttyname(std::io::stdin()).map_err(failed)?;
    let source =
        nix::fcntl::open(&tty, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(failed)?;
    let same = match (fstat(&source), fstat(std::io::stdin())) {
        (Ok(a), Ok(b)) => a.st_rdev == b.st_rdev,
        _ => false,
    };
    if !same {
        return Err(failed(nix::errno::Errno::ENOTTY));
    }
    explain.call(
        format!("mount({tty:?}, {path:?}, NULL, MS_BIND, NULL)"),
        format!("mount --bind {} {}", tty.display(), path.display()),
    );
    mount(
        Some(&crate::rootfs::fd_path(&source)),
        &crate::rootfs::fd_path(&console),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(failed)
}

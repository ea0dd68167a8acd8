//! make-private: stop mounts from propagating between this mount namespace and others.
//!
//! Since Linux 2.6.15 every mount has a propagation type (mount_namespaces(7),
//! "Shared subtrees"). systemd makes `/` and everything below it *shared* at boot, so
//! that a mount made in one namespace appears in every namespace whose copy of that
//! mount is in the same peer group. A container's private mounts (its `/proc`, its
//! root) would then leak back into the host. The first step of the demo turns that
//! off for a whole tree:
//!
//! ```text
//! mount --make-rprivate /        # util-linux
//! mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL)   # the one system call behind it
//! ```
//!
//! `--show` reads the same information back from `/proc/self/mountinfo` (proc(5)),
//! as `findmnt -o TARGET,PROPAGATION` does.

pub mod mountinfo;
pub mod propagation;

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::mount;

pub use mountinfo::Mount;
pub use propagation::propagation_flags;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// What can go wrong, each naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot resolve '{}': {}", path.display(), describe(source))]
    Resolve { path: PathBuf, source: io::Error },
    #[error("cannot read {MOUNTINFO}: {}", describe(.0))]
    MountInfo(io::Error),
    #[error("'{}' is not a mount point (it is inside the mount at '{}'); pass that mount, or bind-mount the directory onto itself first (mount --bind DIR DIR)", path.display(), parent.display())]
    NotAMountPoint { path: PathBuf, parent: PathBuf },
    #[error("cannot make '{}' private: permission denied (changing mount propagation needs CAP_SYS_ADMIN in this mount namespace: run as root)", path.display())]
    Permission { path: PathBuf },
    #[error("cannot make '{}' private: {}", path.display(), source.desc().to_lowercase())]
    Mount { path: PathBuf, source: Errno },
}

/// An I/O error as a short lowercase phrase ("no such file or directory"), without
/// the "(os error 2)" that std appends.
fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_lowercase(),
        None => err.to_string(),
    }
}

/// What the caller asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Also every mount below PATH (MS_REC), the default.
    pub recursive: bool,
    /// Print each system call and the shell command it mirrors on stderr.
    pub explain: bool,
}

/// Makes the mount at `path` private, and every mount below it when `recursive`.
/// `path` must be a mount point: mount(2) would answer a bare EINVAL otherwise, so
/// we check first and say which mount contains it.
pub fn make_private(path: &Path, options: Options) -> Result<(), Error> {
    let target = resolve(path)?;
    let mounts = read_mountinfo(options.explain)?;
    if mountinfo::mount_at(&mounts, &target).is_none() {
        let parent = mountinfo::containing_mount(&mounts, &target)
            .map(|m| m.mount_point.clone())
            .unwrap_or_else(|| PathBuf::from("/"));
        return Err(Error::NotAMountPoint {
            path: path.to_path_buf(),
            parent,
        });
    }

    let flags = propagation_flags(options.recursive);
    if options.explain {
        eprintln!(
            "mount(NULL, \"{}\", NULL, {}, NULL)   # like: {} {}",
            target.display(),
            propagation::flag_names(flags),
            propagation::classic_command(options.recursive),
            target.display()
        );
    }
    mount(None::<&str>, &target, None::<&str>, flags, None::<&str>).map_err(|errno| match errno {
        Errno::EPERM | Errno::EACCES => Error::Permission {
            path: path.to_path_buf(),
        },
        source => Error::Mount {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// The mounts at or below `path` with their propagation, as `--show` prints them:
/// `MOUNTPOINT PROPAGATION`, the mount point escaped as in mountinfo so that each
/// mount is one line.
pub fn show(path: &Path, explain: bool) -> Result<Vec<(PathBuf, String)>, Error> {
    let target = resolve(path)?;
    let mounts = read_mountinfo(explain)?;
    let mut listed: Vec<(PathBuf, String)> = mountinfo::at_or_below(&mounts, &target)
        .into_iter()
        .map(|m| (m.mount_point.clone(), m.propagation()))
        .collect();
    // Tree order, parents before children; the sort is stable, so mounts stacked on
    // one mount point keep the kernel's order (the last is the one on top).
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(listed)
}

/// mount(2) follows symlinks and relative paths; mountinfo lists canonical absolute
/// paths. Resolving first makes the two comparable.
fn resolve(path: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(path).map_err(|source| Error::Resolve {
        path: path.to_path_buf(),
        source,
    })
}

fn read_mountinfo(explain: bool) -> Result<Vec<Mount>, Error> {
    if explain {
        eprintln!("open(\"{MOUNTINFO}\", O_RDONLY)   # like: findmnt -o TARGET,PROPAGATION");
    }
    let text = std::fs::read(MOUNTINFO).map_err(Error::MountInfo)?;
    Ok(mountinfo::parse(&text))
}

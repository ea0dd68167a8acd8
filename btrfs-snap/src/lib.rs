//! btrfs-snap: btrfs subvolumes and snapshots, straight through the btrfs ioctls.
//!
//! A btrfs subvolume is a separate tree of files inside one filesystem. A snapshot is a
//! new subvolume whose tree starts as the source's tree itself: the kernel copies one
//! root block and bumps reference counts, and from then on each side copies a block only
//! when it writes to it (copy-on-write). So a snapshot takes the same time for 10 files
//! or 10 million, and costs no space until the two sides differ. Container engines use
//! read-only snapshots as image layers and a writable snapshot per container.
//!
//! | command | ioctl (ioctl_btrfs(2), `linux/btrfs.h`) | mirrors |
//! |---|---|---|
//! | `create PATH` | `BTRFS_IOC_SUBVOL_CREATE` on the parent directory | `btrfs subvolume create PATH` |
//! | `snapshot [-r] SRC DEST` | `BTRFS_IOC_SNAP_CREATE_V2` (`BTRFS_SUBVOL_RDONLY`) | `btrfs subvolume snapshot [-r] SRC DEST` |
//! | `delete PATH...` | `BTRFS_IOC_SNAP_DESTROY_V2` by id, else `BTRFS_IOC_SNAP_DESTROY` | `btrfs subvolume delete PATH...` |
//! | `list [PATH]` | `BTRFS_IOC_TREE_SEARCH` on the root tree + `BTRFS_IOC_INO_LOOKUP` (as root), `BTRFS_IOC_GET_SUBVOL_ROOTREF` + `BTRFS_IOC_INO_LOOKUP_USER` (as a user) | `btrfs subvolume list -o PATH` |
//! | `show PATH` | `BTRFS_IOC_GET_SUBVOL_INFO` (tree search on old kernels) | `btrfs subvolume show PATH` |
//!
//! Everything is identified the way btrfs-progs identifies it (a subvolume's root
//! directory is inode 256; ids and uuids come from the root tree), so each tool works on
//! what the other made.

pub mod explain;
pub mod fsinfo;
pub mod ioctl;
pub mod rootref;
pub mod search;
pub mod subvolume;

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;

pub use explain::Explain;
pub use subvolume::{create, delete, list, show, snapshot, SubvolumeInfo};

/// How to get a btrfs to try btrfs-snap on, when a path is on something else.
pub const LOOP_RECIPE: &str = "truncate -s 1G btrfs.img && mkfs.btrfs btrfs.img && \
     mkdir -p /mnt/btrfs && mount -o loop btrfs.img /mnt/btrfs";

/// A failed btrfs-snap operation: what was being done to which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op}")]
pub struct Error {
    pub op: Op,
    #[source]
    pub reason: Reason,
}

/// The operation that failed, with the paths the user gave.
#[derive(Debug, Clone)]
pub enum Op {
    Create(PathBuf),
    Snapshot { source: PathBuf, dest: PathBuf },
    Delete(PathBuf),
    List(PathBuf),
    Show(PathBuf),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create(p) => write!(f, "create subvolume '{}'", p.display()),
            Op::Snapshot { source, dest } => {
                write!(f, "snapshot '{}' to '{}'", source.display(), dest.display())
            }
            Op::Delete(p) => write!(f, "delete subvolume '{}'", p.display()),
            Op::List(p) => write!(f, "list subvolumes under '{}'", p.display()),
            Op::Show(p) => write!(f, "show subvolume '{}'", p.display()),
        }
    }
}

/// Why an operation failed; each message names the path it is about.
#[derive(Debug, thiserror::Error)]
pub enum Reason {
    #[error("'{}' is on {fs}, not btrfs; to try btrfs-snap, make a loop-file btrfs: {LOOP_RECIPE}", path.display())]
    NotBtrfs { path: PathBuf, fs: String },
    #[error("'{}' is a plain directory, not a btrfs subvolume{hint}", path.display())]
    NotSubvolume { path: PathBuf, hint: &'static str },
    #[error("'{}' is not a directory", path.display())]
    NotDirectory { path: PathBuf },
    #[error("'{}' does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("'{}' already exists", path.display())]
    Exists { path: PathBuf },
    #[error("'{}' names no new entry (give a path ending in a name)", path.display())]
    NoName { path: PathBuf },
    #[error("invalid subvolume name '{name}': {why}")]
    BadName { name: String, why: &'static str },
    #[error("'{}' is the top-level subvolume of its filesystem (id 5), which cannot be deleted", path.display())]
    TopLevel { path: PathBuf },
    #[error("'{}' contains other subvolumes; delete them first (btrfs-snap list '{}' shows them)", path.display(), path.display())]
    HasSubvolumes { path: PathBuf },
    #[error("'{}' is on a different filesystem than '{}' (a snapshot stays inside one btrfs)", dest.display(), src.display())]
    CrossDevice { src: PathBuf, dest: PathBuf },
    #[error("'{}' is in use: {why}", path.display())]
    Busy { path: PathBuf, why: &'static str },
    #[error("'{}' is read-only (a read-only snapshot, inside one, or on a read-only mount)", path.display())]
    ReadOnly { path: PathBuf },
    #[error("{what} ({call}: {errno})")]
    Privilege {
        what: &'static str,
        call: &'static str,
        errno: Errno,
    },
    #[error("{call} on '{}': {errno}", path.display())]
    Sys {
        call: &'static str,
        path: PathBuf,
        errno: Errno,
    },
}

/// The error with its whole cause chain on one line, as the binary prints it.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_one_line_naming_the_path() {
        let err = Error {
            op: Op::Create("images/alpine".into()),
            reason: Reason::NotBtrfs {
                path: "images".into(),
                fs: "tmpfs".into(),
            },
        };
        let text = chain(&err);
        assert!(text.starts_with(
            "cannot create subvolume 'images/alpine': 'images' is on tmpfs, not btrfs; "
        ));
        assert!(text.contains("mkfs.btrfs"));
        assert!(!text.contains('\n'));
    }
}

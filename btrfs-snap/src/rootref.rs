//! Listing without privilege (Linux 4.18): walk down from a directory, asking each
//! subvolume for its direct children (`BTRFS_IOC_GET_SUBVOL_ROOTREF`) and the path to each
//! from where we stand (`BTRFS_IOC_INO_LOOKUP_USER`, which checks the caller may search
//! every directory on the way), the way libbtrfsutil's subvolume iterator does for users.
//!
//! Only what the caller can reach is found; root uses the tree search in [`crate::search`].

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

use crate::explain::Explain;
use crate::ioctl;

/// The subvolumes below the directory `dir` (opened as `shown`), as paths relative to it,
/// sorted.
pub fn subvolumes_below(
    dir: OwnedFd,
    shown: &Path,
    explain: Explain,
) -> Result<Vec<PathBuf>, Errno> {
    let mut found = Vec::new();
    let mut pending = vec![(dir, PathBuf::new())];
    while let Some((fd, here)) = pending.pop() {
        explain.step(format_args!(
            "ioctl({}, BTRFS_IOC_GET_SUBVOL_ROOTREF, {{min_treeid: 0}})",
            crate::explain::c_str(if here.as_os_str().is_empty() {
                shown.to_path_buf()
            } else {
                shown.join(&here)
            })
        ));
        for child in ioctl::get_subvol_rootref(fd.as_fd())? {
            explain.step(format_args!(
                "ioctl(fd, BTRFS_IOC_INO_LOOKUP_USER, {{dirid: {}, treeid: {}}})",
                child.dirid, child.treeid
            ));
            let (name, dir) = match ioctl::ino_lookup_user(fd.as_fd(), child.dirid, child.treeid) {
                Ok(found) => found,
                // Not below `fd`'s directory (it sits elsewhere in the same subvolume), or
                // behind a directory the caller may not search: not listed, as with `ls`.
                Err(Errno::EACCES | Errno::ENOENT) => continue,
                Err(errno) => return Err(errno),
            };
            let relative = PathBuf::from(OsStr::from_bytes(&dir)).join(OsStr::from_bytes(&name));
            let path = here.join(&relative);
            // Descend where we may; a subvolume we cannot open is still listed.
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            if let Ok(child_fd) = openat(fd.as_fd(), &relative, flags, Mode::empty()) {
                pending.push((child_fd, path.clone()));
            }
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

//! Whiteouts: how a layer deletes what lower layers made (image-spec `layer.md`).
//!
//! - `DIR/.wh.NAME` removes `DIR/NAME` of the lower layers.
//! - `DIR/.wh..wh..opq` (an opaque marker) hides everything lower layers put in `DIR`.
//!
//! Whiteouts only apply to lower layers: "files that are present in the same
//! layer as a whiteout file can only be hidden by whiteout files in subsequent
//! layers". Tar order is free, so an opaque marker may come before or after its
//! directory's new entries; [`SameLayer`] remembers every path this layer wrote
//! (and their ancestors) so that a removal skips them whichever way round.
//!
//! Removal never follows a symlink: each level is opened with `O_NOFOLLOW` and
//! entries are unlinked relative to their directory fd (`unlinkat(2)`), so a
//! symlink found inside a removed tree is unlinked, not walked.

use std::collections::HashSet;
use std::ffi::CStr;
use std::hash::{BuildHasher, RandomState};
use std::os::fd::{AsFd, BorrowedFd};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// The whiteout prefix (image-spec `layer.md`, "Whiteouts").
pub const PREFIX: &[u8] = b".wh.";
/// The opaque marker's full name.
pub const OPAQUE: &[u8] = b".wh..wh..opq";

/// What an entry's last component says.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary name.
    None,
    /// `.wh..wh..opq`: hide the lower content of the directory it is in.
    Opaque,
    /// `.wh.NAME`: remove NAME.
    Remove(&'a [u8]),
    /// `.wh.`, `.wh..`, `.wh...`, `.wh..wh.X`: names no valid whiteout has.
    Invalid,
}

/// Reads a last component (pure; unit-tested below).
pub fn classify(name: &[u8]) -> Whiteout<'_> {
    if name == OPAQUE {
        return Whiteout::Opaque;
    }
    let Some(target) = name.strip_prefix(PREFIX) else {
        return Whiteout::None;
    };
    // `.wh..wh.` is reserved for markers like the opaque one; `.wh..` and
    // `.wh...` would name the directory itself or its parent.
    if target.is_empty() || target == b"." || target == b".." || target.starts_with(PREFIX) {
        return Whiteout::Invalid;
    }
    Whiteout::Remove(target)
}

/// The paths one layer wrote, as keyed hashes (a few bytes each, whatever the
/// name length, so a layer of a million entries stays small). The hasher's key
/// is random per process, so a layer cannot craft a collision.
pub struct SameLayer {
    written: HashSet<u64>,
    hasher: RandomState,
}

impl SameLayer {
    pub fn new() -> Self {
        SameLayer {
            written: HashSet::new(),
            hasher: RandomState::new(),
        }
    }

    /// Records `a/b/c` and its ancestors `a/b` and `a`.
    pub fn insert(&mut self, path: &[u8]) {
        let mut end = path.len();
        loop {
            if !self.written.insert(self.hasher.hash_one(&path[..end])) {
                // An ancestor already recorded has its own ancestors recorded too.
                return;
            }
            match path[..end].iter().rposition(|&b| b == b'/') {
                Some(slash) => end = slash,
                None => return,
            }
        }
    }

    /// Whether this layer wrote `path` or something below it.
    pub fn contains(&self, path: &[u8]) -> bool {
        self.written.contains(&self.hasher.hash_one(path))
    }

    pub fn clear(&mut self) {
        self.written.clear();
    }
}

impl Default for SameLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// Removes `name` in `dir` whatever it is, a whole tree for a directory,
/// without following symlinks. A missing `name` is not an error.
pub fn remove_all(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let mut sub = open_dir_nofollow(dir, name)?;
    for child in children(&mut sub)? {
        remove_all(sub.as_fd(), &child)?;
    }
    drop(sub);
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Empties the directory `dir` (whose cleaned path is `path`, empty for the root)
/// of what lower layers put there, keeping what `same` says this layer wrote:
/// a kept directory is itself emptied of its lower content, recursively.
pub fn remove_lower(dir: BorrowedFd<'_>, path: &mut Vec<u8>, same: &SameLayer) -> nix::Result<()> {
    // A fresh open description of the same directory: its own read offset.
    let mut d = open_dir_nofollow(dir, c".")?;
    let names = children(&mut d)?;
    for child in names {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(child.to_bytes());
        let result = if same.contains(path) {
            match fstatat(d.as_fd(), child.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st)
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR =>
                {
                    open_dir_nofollow(d.as_fd(), &child)
                        .and_then(|sub| remove_lower(sub.as_fd(), path, same))
                }
                Ok(_) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            remove_all(d.as_fd(), &child)
        };
        path.truncate(len);
        result?;
    }
    Ok(())
}

fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<Dir> {
    Dir::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The names in a directory, read in full before any is removed (removing
/// while reading may skip entries).
fn children(dir: &mut Dir) -> nix::Result<Vec<std::ffi::CString>> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        assert_eq!(classify(b"passwd"), Whiteout::None);
        assert_eq!(classify(b".wh..wh..opq"), Whiteout::Opaque);
        assert_eq!(classify(b".wh.passwd"), Whiteout::Remove(b"passwd"));
        assert_eq!(classify(b".wh..hidden"), Whiteout::Remove(b".hidden"));
        assert_eq!(classify(b".wh.x.wh."), Whiteout::Remove(b"x.wh."));
    }

    #[test]
    fn malformed_whiteouts_are_invalid() {
        for name in [
            &b".wh."[..],
            b".wh..",
            b".wh...",
            b".wh..wh.foo",
            b".wh..wh..opq2",
        ] {
            assert_eq!(
                classify(name),
                Whiteout::Invalid,
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn same_layer_records_ancestors() {
        let mut s = SameLayer::new();
        s.insert(b"a/b/c");
        assert!(s.contains(b"a/b/c"));
        assert!(s.contains(b"a/b"));
        assert!(s.contains(b"a"));
        assert!(!s.contains(b"a/b/d"));
        assert!(!s.contains(b"b"));
        s.clear();
        assert!(!s.contains(b"a"));
    }
}

//! Path resolution inside the rootfs, as if it were `/`.
//!
//! Every write is relative to a directory fd. The parent directory of an entry
//! is reached by walking its cleaned name one component at a time with
//! `openat(dir, name, O_DIRECTORY | O_NOFOLLOW)`: a plain name can neither climb
//! (`..` never reaches here, see `entry.rs`) nor follow a link. When a component
//! is a symlink the walk hands that prefix to the kernel, `openat2(root, prefix,
//! RESOLVE_IN_ROOT)` (openat2(2)), which resolves absolute targets and `..` as
//! if the rootfs were `/`: an `etc -> /etc` link leads to the rootfs' own `etc`,
//! `up -> ../../..` stops at the rootfs root. No string check decides safety.
//! The final component is never resolved here: callers act on it with
//! `*at(2)` calls that do not follow it (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`).
//!
//! Tar entries come depth first, so the directories of the last walk are kept
//! open (`chain`) and the next entry only walks what differs: an entry in the
//! same directory as the one before costs no lookup at all. Removing anything
//! may change what a cached prefix names (a symlinked component may point into
//! what went), so every removal calls [`Root::forget`].
//!
//! Writing into a directory changes its mtime. As umoci does, a directory a
//! layer writes into keeps the times it had before (a lower layer's entry set
//! them): they are read when the walk enters it and put back when it leaves.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, futimens, mkdirat, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::entry::join;
use crate::explain::Explain;

/// Directories kept open for the current walk; deeper ones are walked uncached
/// so a hostile nesting cannot exhaust file descriptors.
const MAX_CHAIN: usize = 128;

/// Symlinks to missing directories followed in one walk (path_resolution(7)'s 40).
const MAX_LINKS: usize = 40;

/// Mode of directories a layer implies without an entry (`a/b/f` with no `a/`).
const IMPLIED_DIR_MODE: u32 = 0o755;

/// The rootfs, opened once; all paths are resolved beneath it.
pub struct Root {
    fd: OwnedFd,
    /// The kernel's name for the root (see [`real_path`]).
    real: Vec<u8>,
    chain: Vec<Link>,
    /// The root's own times before this layer first wrote into it.
    root_times: Option<Times>,
    explain: Explain,
}

struct Link {
    name: Vec<u8>,
    fd: OwnedFd,
    setgid: bool,
    via_link: bool,
    times: Times,
    /// Something was created or removed in it: put `times` back on release.
    written: bool,
}

/// A directory's atime and mtime.
#[derive(Clone, Copy)]
struct Times(TimeSpec, TimeSpec);

impl Times {
    fn of(st: &nix::sys::stat::FileStat) -> Times {
        Times(
            TimeSpec::new(st.st_atime, st.st_atime_nsec),
            TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        )
    }

    fn restore(&self, fd: BorrowedFd<'_>) {
        // Best effort: a time that cannot be put back is not worth failing for.
        let _ = futimens(fd, &self.0, &self.1);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.written {
            self.times.restore(self.fd.as_fd());
        }
    }
}

/// An open directory: from the cache, or walked past its depth.
pub struct DirFd<'a> {
    fd: Held<'a>,
    /// The directory is set-group-ID: new entries take its group, so they
    /// need an explicit chown even when the layer says gid 0.
    pub setgid: bool,
    /// The walk followed a symlink to get here, so the cleaned name is not
    /// where it is (see [`real_path`]).
    pub via_link: bool,
}

enum Held<'a> {
    Cached(BorrowedFd<'a>),
    Owned(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            Held::Cached(fd) => *fd,
            Held::Owned(fd) => fd.as_fd(),
        }
    }
}

/// What to do about a directory of the walk that does not exist.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Make it (mode 0755), and replace a non-directory standing in its way:
    /// a layer writing `f/x` over a lower file `f` turns `f` into a directory.
    Create,
    /// Report it: a whiteout below a missing directory has nothing to hide.
    Absent,
    /// Report it, and do not count this as writing into the directory.
    Lookup,
}

/// A failed step of a walk: the prefix it was at and the call that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} '{}'", String::from_utf8_lossy(path))]
pub struct WalkError {
    pub op: &'static str,
    pub path: Vec<u8>,
    #[source]
    pub source: Errno,
}

impl Root {
    /// Opens the rootfs directory itself (a path the user gave: it may be a symlink).
    pub fn open(path: &Path) -> nix::Result<Root> {
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            real: root_real_path(fd.as_fd()),
            fd,
            chain: Vec::new(),
            root_times: None,
            explain: Explain::default(),
        })
    }

    /// Says each symlinked directory the kernel resolves inside the root.
    pub fn explain(mut self, explain: Explain) -> Root {
        self.explain = explain;
        self
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Drops the cached walk; called after anything is removed or replaced.
    pub fn forget(&mut self) {
        self.chain.clear();
    }

    /// The root's times were just set by a `./` entry: those are the ones to
    /// put back when the layer ends.
    pub fn keep_root_times(&mut self) {
        if self.root_times.is_some() {
            if let Ok(st) = fstat(self.fd.as_fd()) {
                self.root_times = Some(Times::of(&st));
            }
        }
    }

    /// Ends a layer: every directory written into gets its times back.
    pub fn finish_layer(&mut self) {
        self.chain.clear();
        if let Some(times) = self.root_times.take() {
            times.restore(self.fd.as_fd());
        }
    }

    /// Opens the directory named by `components` (empty: the root), creating or
    /// reporting missing ones as `missing` says. `Ok(None)` only with `Missing::Absent`.
    pub fn dir(
        &mut self,
        components: &[&[u8]],
        missing: Missing,
    ) -> Result<Option<DirFd<'_>>, WalkError> {
        self.dir_at(components, missing, 0)
    }

    fn dir_at(
        &mut self,
        components: &[&[u8]],
        missing: Missing,
        links_followed: usize,
    ) -> Result<Option<DirFd<'_>>, WalkError> {
        let common = self
            .chain
            .iter()
            .zip(components)
            .take_while(|(link, c)| link.name == **c)
            .count();
        self.chain.truncate(common);
        let mut deep: Option<(OwnedFd, bool, bool)> = None;
        for i in common..components.len() {
            let (here, via) = match (&deep, self.chain.last()) {
                (Some((fd, _, via)), _) => (fd.as_fd(), *via),
                (None, Some(link)) => (link.fd.as_fd(), link.via_link),
                (None, None) => (self.fd.as_fd(), false),
            };
            let (fd, followed) = match step(self.fd.as_fd(), here, &components[..=i], missing)? {
                Stepped::Open(fd, followed) => {
                    if followed {
                        let prefix = String::from_utf8_lossy(&join(&components[..=i])).into_owned();
                        self.explain.say(
                            format_args!("openat2(rootfs, {prefix:?}, RESOLVE_IN_ROOT)"),
                            format_args!("chroot rootfs readlink -f /{prefix}"),
                        );
                    }
                    (fd, followed)
                }
                Stepped::Missing => return Ok(None),
                Stepped::Dangling => {
                    // A symlink to a directory that does not exist yet: make it,
                    // where the link points inside the root (umoci does the same).
                    if links_followed >= MAX_LINKS {
                        return Err(WalkError {
                            op: "follow the symlink",
                            path: join(&components[..=i]),
                            source: Errno::ELOOP,
                        });
                    }
                    let path = self.link_target_path(here, components, i)?;
                    let path: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
                    self.chain.clear();
                    let mut found = self.dir_at(&path, missing, links_followed + 1)?;
                    if let Some(dir) = &mut found {
                        dir.via_link = true;
                    }
                    return Ok(found);
                }
            };
            let via_link = via || followed;
            let st = stat(&fd, &components[..=i])?;
            let setgid = st.st_mode & libc::S_ISGID != 0;
            if deep.is_none() && self.chain.len() < MAX_CHAIN {
                self.chain.push(Link {
                    name: components[i].to_vec(),
                    fd,
                    setgid,
                    via_link,
                    times: Times::of(&st),
                    written: false,
                });
            } else {
                deep = Some((fd, setgid, via_link));
            }
        }
        let writes = missing != Missing::Lookup;
        Ok(Some(match deep {
            Some((fd, setgid, via_link)) => DirFd {
                fd: Held::Owned(fd),
                setgid,
                via_link,
            },
            None => match self.chain.last_mut() {
                Some(link) => {
                    link.written |= writes;
                    DirFd {
                        fd: Held::Cached(link.fd.as_fd()),
                        setgid: link.setgid,
                        via_link: link.via_link,
                    }
                }
                None => {
                    let st = stat(&self.fd, &[])?;
                    if writes && self.root_times.is_none() {
                        self.root_times = Some(Times::of(&st));
                    }
                    DirFd {
                        fd: Held::Cached(self.fd.as_fd()),
                        setgid: st.st_mode & libc::S_ISGID != 0,
                        via_link: false,
                    }
                }
            },
        }))
    }

    /// Where the symlink `components[i]` (in `here`) points, as components from
    /// the root, followed by the rest of `components`. `..` stops at the root,
    /// as RESOLVE_IN_ROOT does; a relative target starts from the link's real
    /// directory (see [`real_path`]), so `..` means what the kernel means.
    fn link_target_path(
        &self,
        here: BorrowedFd<'_>,
        components: &[&[u8]],
        i: usize,
    ) -> Result<Vec<Vec<u8>>, WalkError> {
        let fail = |op, source| WalkError {
            op,
            path: join(&components[..=i]),
            source,
        };
        let target =
            nix::fcntl::readlinkat(here, components[i]).map_err(|e| fail("readlink", e))?;
        let target = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()).to_vec();
        let mut path: Vec<Vec<u8>> = Vec::new();
        if !target.starts_with(b"/") {
            let base = real_path(&self.real, here).ok_or_else(|| fail("locate", Errno::ENOENT))?;
            path.extend(
                base.split(|&b| b == b'/')
                    .filter(|c| !c.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
        for part in target.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    path.pop();
                }
                _ => path.push(part.to_vec()),
            }
        }
        path.extend(components[i + 1..].iter().map(|c| c.to_vec()));
        Ok(path)
    }

    /// Caches a directory just made at `components`, when it extends the
    /// current walk, so its entries that follow need no lookup.
    pub fn adopt(&mut self, components: &[&[u8]], fd: OwnedFd, setgid: bool, via_link: bool) {
        let Ok(st) = fstat(&fd) else {
            return;
        };
        let Some((last, parent)) = components.split_last() else {
            return;
        };
        let extends = self.chain.len() == parent.len()
            && self.chain.len() < MAX_CHAIN
            && self.chain.iter().zip(parent).all(|(l, c)| l.name == *c);
        if extends {
            self.chain.push(Link {
                name: last.to_vec(),
                fd,
                setgid,
                via_link,
                times: Times::of(&st),
                written: false,
            });
        }
    }

    /// Opens `components` with the kernel resolving everything inside the root,
    /// uncached, following a final symlink too (for reading `/etc/passwd`, and
    /// the directory of a hardlink's target).
    pub fn open_beneath(&self, components: &[&[u8]], flags: OFlag) -> nix::Result<OwnedFd> {
        let path = if components.is_empty() {
            b".".to_vec()
        } else {
            join(components)
        };
        in_root(self.fd.as_fd(), &path, flags)
    }
}

/// One component of a walk: `prefix` is the path so far, its last component the
/// name to open in `here`.
fn step(
    root: BorrowedFd<'_>,
    here: BorrowedFd<'_>,
    prefix: &[&[u8]],
    missing: Missing,
) -> Result<Stepped, WalkError> {
    let name = prefix[prefix.len() - 1];
    let fail = |op, source| WalkError {
        op,
        path: join(prefix),
        source,
    };
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let follow = || match in_root(root, &join(prefix), dir_flags) {
        Ok(fd) => Ok(Stepped::Open(fd, true)),
        Err(Errno::ENOENT | Errno::ENOTDIR) if missing != Missing::Create => Ok(Stepped::Missing),
        Err(Errno::ENOENT) => Ok(Stepped::Dangling),
        Err(e) => Err(fail("follow the symlink", e)),
    };
    match openat(here, name, dir_flags | OFlag::O_NOFOLLOW, Mode::empty()) {
        Ok(fd) => Ok(Stepped::Open(fd, false)),
        Err(Errno::ELOOP) => follow(),
        // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR, like on a file.
        Err(Errno::ENOTDIR) => {
            let st =
                fstatat(here, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| fail("stat", e))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                // A symlink: the kernel resolves the whole prefix, inside the root.
                follow()
            } else if missing == Missing::Create {
                // A file, device or FIFO where a directory must be: replace it.
                unlinkat(here, name, UnlinkatFlags::NoRemoveDir).map_err(|e| fail("replace", e))?;
                make_dir(here, name).map_err(|e| fail("create directory", e))
            } else {
                Ok(Stepped::Missing)
            }
        }
        Err(Errno::ENOENT) if missing != Missing::Create => Ok(Stepped::Missing),
        Err(Errno::ENOENT) => make_dir(here, name).map_err(|e| fail("create directory", e)),
        Err(e) => Err(fail("open directory", e)),
    }
}

/// What one step of a walk found.
enum Stepped {
    /// The directory, and whether a symlink was followed to reach it.
    Open(OwnedFd, bool),
    /// Nothing there (only when not creating).
    Missing,
    /// A symlink whose target does not exist (only when creating).
    Dangling,
}

fn make_dir(here: BorrowedFd<'_>, name: &[u8]) -> nix::Result<Stepped> {
    mkdirat(here, name, Mode::from_bits_truncate(IMPLIED_DIR_MODE))?;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(here, name, flags, Mode::empty()).map(|fd| Stepped::Open(fd, false))
}

/// Where a directory reached through symlinks really is, as a cleaned name
/// inside the root (`a/b`, empty for the root): the kernel's own name for the
/// fd (`/proc/self/fd/N`, proc(5)) minus the root's. Whiteouts need it to tell
/// this layer's entries from lower ones when a path went through a link.
pub fn real_path(root_real: &[u8], dir: BorrowedFd<'_>) -> Option<Vec<u8>> {
    let real = nix::fcntl::readlink(proc_fd_path(dir).as_c_str()).ok()?;
    let real = std::os::unix::ffi::OsStrExt::as_bytes(real.as_os_str()).to_vec();
    if real == root_real {
        return Some(Vec::new());
    }
    let rest = real.strip_prefix(root_real)?.strip_prefix(b"/")?;
    Some(rest.to_vec())
}

/// The kernel's name for the root itself (see [`real_path`]).
pub fn root_real_path(root: BorrowedFd<'_>) -> Vec<u8> {
    nix::fcntl::readlink(proc_fd_path(root).as_c_str())
        .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
        .unwrap_or_default()
}

fn stat(fd: &impl AsFd, at: &[&[u8]]) -> Result<nix::sys::stat::FileStat, WalkError> {
    fstat(fd.as_fd()).map_err(|source| WalkError {
        op: "stat",
        path: join(at),
        source,
    })
}

/// openat2(2) with RESOLVE_IN_ROOT: `root` acts as `/` for absolute symlinks and
/// `..`; magic links (`/proc/self/...`) are refused outright.
pub fn in_root(root: BorrowedFd<'_>, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    loop {
        // openat2 returns EAGAIN when a concurrent rename raced the walk.
        match openat2(root, path, how) {
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// `/proc/self/fd/N`: a path for calls with no fd form (setxattr, chmod) that
/// reaches exactly the inode `fd` holds, never re-resolving a name.
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> std::ffi::CString {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // A formatted integer holds no NUL.
    std::ffi::CString::new(path).unwrap_or_default()
}

/// A component as a C string. Entry names hold no NUL (`entry.rs` rejects
/// them), so the empty fallback is never taken.
pub fn c_name(name: &[u8]) -> std::ffi::CString {
    std::ffi::CString::new(name).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("real/deeper")).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        symlink("/real", rootfs.join("abs")).unwrap();
        symlink("../../../..", rootfs.join("real/up")).unwrap();
        symlink(dir.path().join("outside"), rootfs.join("host")).unwrap();
        symlink("/made/here", rootfs.join("dangling")).unwrap();
        symlink("loop2", rootfs.join("loop1")).unwrap();
        symlink("loop1", rootfs.join("loop2")).unwrap();
        std::fs::write(rootfs.join("file"), "f").unwrap();
        let root = Root::open(&rootfs).unwrap();
        (dir, root)
    }

    /// Where `components` led, as the kernel names it, relative to the rootfs.
    fn lands(root: &mut Root, components: &[&[u8]], missing: Missing) -> Option<String> {
        let real = root_real_path(root.fd());
        let dir = root.dir(components, missing).unwrap()?;
        Some(String::from_utf8(real_path(&real, dir.as_fd()).unwrap()).unwrap())
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let (_dir, mut root) = setup();
        assert_eq!(
            lands(&mut root, &[b"abs", b"deeper"], Missing::Absent).unwrap(),
            "real/deeper"
        );
        // `..` stops at the root: `real/up` is the root itself.
        assert_eq!(
            lands(&mut root, &[b"real", b"up", b"real"], Missing::Absent).unwrap(),
            "real"
        );
        // An absolute link to a host path names that path inside the rootfs (missing there).
        assert_eq!(lands(&mut root, &[b"host"], Missing::Absent), None);
    }

    #[test]
    fn creating_walks_make_directories_and_link_targets_inside() {
        let (dir, mut root) = setup();
        assert_eq!(
            lands(&mut root, &[b"new", b"sub"], Missing::Create).unwrap(),
            "new/sub"
        );
        assert_eq!(
            lands(&mut root, &[b"dangling", b"x"], Missing::Create).unwrap(),
            "made/here/x"
        );
        // A file in the way becomes a directory.
        assert_eq!(
            lands(&mut root, &[b"file", b"y"], Missing::Create).unwrap(),
            "file/y"
        );
        assert!(std::fs::read_dir(dir.path().join("outside"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn absent_directories_are_reported_not_made() {
        let (dir, mut root) = setup();
        assert_eq!(lands(&mut root, &[b"nope", b"x"], Missing::Absent), None);
        assert_eq!(lands(&mut root, &[b"file", b"x"], Missing::Lookup), None);
        assert!(!dir.path().join("rootfs/nope").exists());
    }

    #[test]
    fn symlink_loops_fail() {
        let (_dir, mut root) = setup();
        let err = root.dir(&[b"loop1", b"x"], Missing::Create).err().unwrap();
        assert_eq!(err.source, Errno::ELOOP);
    }
}

//! Applying one layer's tar entries to the rootfs.
//!
//! Each entry is created relative to its parent directory's fd (see
//! `resolve.rs`) with the call that makes exactly that kind of file: `openat`
//! with `O_CREAT|O_EXCL|O_NOFOLLOW`, `mkdirat`, `symlinkat`, `linkat`,
//! `mknodat`. An entry whose path is already taken by another kind of file
//! replaces it (a directory merges into a directory). Metadata is then set
//! without ever following a symlink at the last component (containerd
//! CVE-2021-32760, tar crate RUSTSEC-2026-0067): through the fd of the file
//! just written (`fchown`, `fchmod`, `fsetxattr`, `futimens`), or with
//! `AT_SYMLINK_NOFOLLOW` (`fchownat`, `utimensat`), or through an
//! `O_PATH|O_NOFOLLOW` fd and its `/proc/self/fd/N` name for calls with no
//! such flag (chmod of a device node, xattrs of a symlink).
//!
//! A directory's times are set as soon as it is made. Every entry written into
//! it afterwards changes its mtime, so the walk (`resolve.rs`) puts back the
//! times a directory had when it entered it, when it leaves it: whatever the
//! entry order, a directory ends with the times its own entry gave it, and
//! memory stays proportional to the depth of the tree, not its size.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use crate::entry::{join, EntryPath, NameError};
use crate::explain::Explain;
use crate::limits::{LimitError, Limits};
use crate::resolve::{
    c_name, proc_fd_path, real_path, root_real_path, DirFd, Missing, Root, WalkError,
};
use crate::whiteout::{self, SameLayer, Whiteout};

/// Why one entry could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("refusing the name: {0}")]
    Name(NameError),
    #[error("refusing the hardlink target '{}': {reason}", String::from_utf8_lossy(.target))]
    LinkName { target: Vec<u8>, reason: NameError },
    #[error("refusing to replace the rootfs root with a {0}")]
    RootReplaced(&'static str),
    #[error("refusing a hardlink to the directory '{}'", String::from_utf8_lossy(.0))]
    HardlinkToDirectory(Vec<u8>),
    #[error("hardlink target '{}' does not exist", String::from_utf8_lossy(.0))]
    HardlinkTargetMissing(Vec<u8>),
    #[error("malformed whiteout name")]
    BadWhiteout,
    #[error("unsupported tar entry type {0:?}")]
    Unsupported(EntryType),
    #[error("bad header")]
    Header(#[source] io::Error),
    #[error("cannot read its data")]
    Data(#[source] io::Error),
    #[error("cannot write its data")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error("{op} failed: setting owners and making devices needs root")]
    NeedsRoot { op: &'static str },
    #[error("{op} failed")]
    Sys {
        op: &'static str,
        #[source]
        source: Errno,
    },
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("entry '{}'", String::from_utf8_lossy(.name))]
    Entry {
        name: Vec<u8>,
        #[source]
        source: EntryError,
    },
    #[error("cannot read the tar stream")]
    Tar(#[source] io::Error),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("interrupted by a signal")]
    Interrupted,
}

fn sys(op: &'static str) -> impl FnOnce(Errno) -> EntryError {
    move |source| match (source, op) {
        // Without CAP_CHOWN / CAP_MKNOD, say what is missing rather than EPERM.
        (Errno::EPERM, "fchown" | "fchownat" | "mknodat") => EntryError::NeedsRoot { op },
        _ => EntryError::Sys { op, source },
    }
}

/// Ownership, mode, times and xattrs of an entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// Applies layers to one rootfs, one after the other.
pub struct Applier {
    root: Root,
    /// The kernel's name for the rootfs, to place entries reached via symlinks.
    root_real: Vec<u8>,
    same: SameLayer,
    buf: Vec<u8>,
    limits: Limits,
    entries: u64,
    euid: u32,
    egid: u32,
    explain: Explain,
    xattrs: Xattrs,
}

impl Applier {
    pub fn new(root: Root, limits: Limits, explain: Explain, quiet: bool) -> Applier {
        Applier {
            root_real: root_real_path(root.fd()),
            root,
            same: SameLayer::new(),
            buf: vec![0; 256 << 10],
            limits,
            entries: 0,
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            explain,
            xattrs: Xattrs {
                quiet,
                warned: false,
            },
        }
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Applies every entry of one uncompressed layer tar read from `tar`.
    pub fn apply_layer(&mut self, tar: impl Read) -> Result<(), LayerError> {
        self.same.clear();
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().map_err(LayerError::Tar)? {
            let mut entry = entry.map_err(LayerError::Tar)?;
            if crate::interrupt::interrupted() {
                return Err(LayerError::Interrupted);
            }
            self.entries += 1;
            self.limits.check_entries(self.entries)?;
            let name = entry.path_bytes().into_owned();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            self.apply_entry(&mut entry, &name, link.as_deref())
                .map_err(|source| LayerError::Entry { name, source })?;
        }
        self.root.finish_layer();
        Ok(())
    }

    fn apply_entry(
        &mut self,
        entry: &mut tar::Entry<'_, impl Read>,
        name: &[u8],
        link: Option<&[u8]>,
    ) -> Result<(), EntryError> {
        let mut kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        // A pre-POSIX (v7) archive has no directory type: a "regular" entry of
        // type NUL whose name ends in `/` is a directory (as Go's archive/tar,
        // and so umoci, read it).
        if entry.header().as_old().linkflag[0] == 0 && name.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        let path = EntryPath::parse(name).map_err(EntryError::Name)?;
        if let Some(last) = path.file_name() {
            match whiteout::classify(last) {
                Whiteout::None => {}
                Whiteout::Opaque => return self.opaque(&path),
                Whiteout::Remove(target) => return self.whiteout(&path, target),
                Whiteout::Invalid => return Err(EntryError::BadWhiteout),
            }
        }
        let meta = read_meta(entry)?;
        if path.is_root() {
            // umoci CVE-2021-29136: `.` or `/` as anything but a directory.
            return match kind {
                EntryType::Directory => self.root_dir(&meta),
                _ => Err(EntryError::RootReplaced(kind_name(kind))),
            };
        }
        self.same.insert(&path.joined());
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(&path, &meta, entry)
            }
            EntryType::Directory => self.directory(&path, &meta),
            EntryType::Symlink => self.symlink(&path, &meta, link.unwrap_or_default()),
            EntryType::Link => self.hardlink(&path, link.unwrap_or_default()),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.special(&path, &meta, kind, entry.header())
            }
            other => Err(EntryError::Unsupported(other)),
        }
    }

    fn file(
        &mut self,
        path: &EntryPath<'_>,
        meta: &Meta,
        data: &mut impl Read,
    ) -> Result<(), EntryError> {
        let name = leaf(path);
        let parent = self
            .root
            .dir(path.parent(), Missing::Create)?
            .ok_or(Errno::ENOENT)
            .map_err(sys("open parent"))?;
        note_real(&mut self.same, &self.root_real, &parent, path.file_name());
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let perm = Mode::from_bits_truncate(meta.mode & 0o777);
        let mut replaced = false;
        let fd = loop {
            match openat(parent.as_fd(), name.as_c_str(), flags, perm) {
                Ok(fd) => break fd,
                Err(Errno::EEXIST) if !replaced => {
                    replace(parent.as_fd(), &name, &self.explain)?;
                    replaced = true;
                }
                Err(e) => return Err(sys("create file")(e)),
            }
        };
        self.explain.say(
            format_args!(
                "openat(dir, {name:?}, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW, {:04o}) + write",
                meta.mode & 0o7777
            ),
            format_args!(
                "install -m {:04o} -o {} -g {} /dev/stdin {}",
                meta.mode & 0o7777,
                meta.uid,
                meta.gid,
                display(&path.joined())
            ),
        );
        let chown = needs_chown(meta, self.euid, self.egid, &parent);
        drop(parent);
        if replaced {
            self.root.forget();
        }
        let mut file = File::from(fd);
        copy(data, &mut file, &mut self.buf)?;
        let fd = file.as_fd();
        set_owner_mode(fd, meta, chown, false)?;
        self.xattrs.set_fd(fd, meta)?;
        futimens(fd, &meta.mtime, &meta.mtime).map_err(sys("futimens"))
    }

    fn directory(&mut self, path: &EntryPath<'_>, meta: &Meta) -> Result<(), EntryError> {
        let name = leaf(path);
        let parent = self
            .root
            .dir(path.parent(), Missing::Create)?
            .ok_or(Errno::ENOENT)
            .map_err(sys("open parent"))?;
        note_real(&mut self.same, &self.root_real, &parent, path.file_name());
        let perm = Mode::from_bits_truncate(meta.mode & 0o777);
        let mut merged = false;
        let mut replaced = false;
        match mkdirat(parent.as_fd(), name.as_c_str(), perm) {
            Ok(()) => self.explain.say(
                format_args!("mkdirat(dir, {name:?}, {:04o})", meta.mode & 0o7777),
                format_args!(
                    "mkdir -m {:04o} {}",
                    meta.mode & 0o7777,
                    display(&path.joined())
                ),
            ),
            Err(Errno::EEXIST) => {
                let st = fstatat(
                    parent.as_fd(),
                    name.as_c_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(sys("fstatat"))?;
                if is_dir(st.st_mode) {
                    merged = true;
                } else {
                    // A directory over a file or symlink: the old one goes.
                    self.explain.say(
                        format_args!("unlinkat(dir, {name:?}, 0)"),
                        format_args!("rm {}", display(&path.joined())),
                    );
                    unlinkat(parent.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir)
                        .map_err(sys("unlinkat"))?;
                    mkdirat(parent.as_fd(), name.as_c_str(), perm).map_err(sys("mkdirat"))?;
                    replaced = true;
                }
            }
            Err(e) => return Err(sys("mkdirat")(e)),
        }
        let fd = openat(
            parent.as_fd(),
            name.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("open directory"))?;
        let chown = merged || needs_chown(meta, self.euid, self.egid, &parent);
        let via_link = parent.via_link;
        drop(parent);
        if replaced {
            self.root.forget();
        }
        set_owner_mode(fd.as_fd(), meta, chown, merged)?;
        self.xattrs.set_fd(fd.as_fd(), meta)?;
        futimens(fd.as_fd(), &meta.mtime, &meta.mtime).map_err(sys("futimens"))?;
        let setgid = meta.mode & 0o2000 != 0;
        self.root.adopt(&path.components, fd, setgid, via_link);
        Ok(())
    }

    fn root_dir(&mut self, meta: &Meta) -> Result<(), EntryError> {
        let fd = nix::unistd::dup(self.root.fd()).map_err(sys("dup"))?;
        set_owner_mode(fd.as_fd(), meta, true, true)?;
        self.xattrs.set_fd(fd.as_fd(), meta)?;
        futimens(fd.as_fd(), &meta.mtime, &meta.mtime).map_err(sys("futimens"))?;
        self.root.keep_root_times();
        Ok(())
    }

    fn symlink(
        &mut self,
        path: &EntryPath<'_>,
        meta: &Meta,
        target: &[u8],
    ) -> Result<(), EntryError> {
        let name = leaf(path);
        let parent = self
            .root
            .dir(path.parent(), Missing::Create)?
            .ok_or(Errno::ENOENT)
            .map_err(sys("open parent"))?;
        note_real(&mut self.same, &self.root_real, &parent, path.file_name());
        // The target is stored as it is: it is only ever followed inside the root.
        let mut replaced = false;
        loop {
            match symlinkat(target, parent.as_fd(), name.as_c_str()) {
                Ok(()) => break,
                Err(Errno::EEXIST) if !replaced => {
                    replace(parent.as_fd(), &name, &self.explain)?;
                    replaced = true;
                }
                Err(e) => return Err(sys("symlinkat")(e)),
            }
        }
        self.explain.say(
            format_args!("symlinkat({:?}, dir, {name:?})", display(target)),
            format_args!("ln -s {} {}", display(target), display(&path.joined())),
        );
        if needs_chown(meta, self.euid, self.egid, &parent) {
            fchownat(
                parent.as_fd(),
                name.as_c_str(),
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(sys("fchownat"))?;
        }
        if !meta.xattrs.is_empty() {
            let fd = open_path(parent.as_fd(), &name)?;
            self.xattrs.set_path(&proc_fd_path(fd.as_fd()), meta)?;
        }
        utimensat(
            parent.as_fd(),
            name.as_c_str(),
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(sys("utimensat"))?;
        drop(parent);
        if replaced {
            self.root.forget();
        }
        Ok(())
    }

    fn hardlink(&mut self, path: &EntryPath<'_>, target_name: &[u8]) -> Result<(), EntryError> {
        let target = EntryPath::parse(target_name).map_err(|reason| EntryError::LinkName {
            target: target_name.to_vec(),
            reason,
        })?;
        let Some(target_last) = target.file_name() else {
            return Err(EntryError::HardlinkToDirectory(target_name.to_vec()));
        };
        let target_last = c_name(target_last);
        // The target's directory, resolved inside the root; its last component
        // is not followed (linkat without AT_SYMLINK_FOLLOW): a hardlink to a
        // symlink links the symlink itself.
        let target_dir = match self
            .root
            .open_beneath(target.parent(), OFlag::O_PATH | OFlag::O_DIRECTORY)
        {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => {
                return Err(EntryError::HardlinkTargetMissing(target_name.to_vec()))
            }
            Err(e) => return Err(sys("open hardlink target directory")(e)),
        };
        let target_st = match fstatat(
            target_dir.as_fd(),
            target_last.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                return Err(EntryError::HardlinkTargetMissing(target_name.to_vec()))
            }
            Err(e) => return Err(sys("fstatat hardlink target")(e)),
        };
        if is_dir(target_st.st_mode) {
            return Err(EntryError::HardlinkToDirectory(target_name.to_vec()));
        }
        let name = leaf(path);
        let parent = self
            .root
            .dir(path.parent(), Missing::Create)?
            .ok_or(Errno::ENOENT)
            .map_err(sys("open parent"))?;
        note_real(&mut self.same, &self.root_real, &parent, path.file_name());
        let mut replaced = false;
        loop {
            match linkat(
                target_dir.as_fd(),
                target_last.as_c_str(),
                parent.as_fd(),
                name.as_c_str(),
                AtFlags::empty(),
            ) {
                Ok(()) => break,
                Err(Errno::EEXIST) if !replaced => {
                    let st = fstatat(
                        parent.as_fd(),
                        name.as_c_str(),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(sys("fstatat"))?;
                    if st.st_dev == target_st.st_dev && st.st_ino == target_st.st_ino {
                        break;
                    }
                    replace(parent.as_fd(), &name, &self.explain)?;
                    replaced = true;
                }
                Err(e) => return Err(sys("linkat")(e)),
            }
        }
        self.explain.say(
            format_args!("linkat(dir, {target_last:?}, dir, {name:?}, 0)"),
            format_args!(
                "ln {} {}",
                display(&target.joined()),
                display(&path.joined())
            ),
        );
        drop(parent);
        if replaced {
            self.root.forget();
        }
        Ok(())
    }

    fn special(
        &mut self,
        path: &EntryPath<'_>,
        meta: &Meta,
        kind: EntryType,
        header: &tar::Header,
    ) -> Result<(), EntryError> {
        let name = leaf(path);
        let (sflag, letter) = match kind {
            EntryType::Char => (SFlag::S_IFCHR, "c"),
            EntryType::Block => (SFlag::S_IFBLK, "b"),
            _ => (SFlag::S_IFIFO, "p"),
        };
        let (major, minor) = match kind {
            EntryType::Fifo => (0, 0),
            _ => (
                header
                    .device_major()
                    .map_err(EntryError::Header)?
                    .unwrap_or(0),
                header
                    .device_minor()
                    .map_err(EntryError::Header)?
                    .unwrap_or(0),
            ),
        };
        let dev = nix::sys::stat::makedev(major.into(), minor.into());
        let parent = self
            .root
            .dir(path.parent(), Missing::Create)?
            .ok_or(Errno::ENOENT)
            .map_err(sys("open parent"))?;
        note_real(&mut self.same, &self.root_real, &parent, path.file_name());
        let perm = Mode::from_bits_truncate(meta.mode & 0o777);
        let mut replaced = false;
        loop {
            match mknodat(parent.as_fd(), name.as_c_str(), sflag, perm, dev) {
                Ok(()) => break,
                Err(Errno::EEXIST) if !replaced => {
                    replace(parent.as_fd(), &name, &self.explain)?;
                    replaced = true;
                }
                Err(e) => return Err(sys("mknodat")(e)),
            }
        }
        self.explain.say(
            format_args!(
                "mknodat(dir, {name:?}, S_IF{}|{:o}, makedev({major}, {minor}))",
                match letter {
                    "c" => "CHR",
                    "b" => "BLK",
                    _ => "IFO",
                },
                meta.mode
            ),
            format_args!(
                "mknod -m {:o} {} {letter}{}",
                meta.mode,
                display(&path.joined()),
                if letter == "p" {
                    String::new()
                } else {
                    format!(" {major} {minor}")
                }
            ),
        );
        let chown = needs_chown(meta, self.euid, self.egid, &parent);
        if chown || meta.mode & 0o7000 != 0 || !meta.xattrs.is_empty() {
            // No fchmodat flag refuses to follow a symlink on every kernel, so
            // the node just made is pinned by an O_PATH fd and changed through
            // its /proc/self/fd name, which cannot be swapped.
            let fd = open_path(parent.as_fd(), &name)?;
            if chown {
                fchownat(
                    fd.as_fd(),
                    c"",
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(sys("fchownat"))?;
            }
            let proc = proc_fd_path(fd.as_fd());
            fchmodat(
                nix::fcntl::AT_FDCWD,
                proc.as_c_str(),
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(sys("chmod"))?;
            self.xattrs.set_path(&proc, meta)?;
        }
        utimensat(
            parent.as_fd(),
            name.as_c_str(),
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(sys("utimensat"))?;
        drop(parent);
        if replaced {
            self.root.forget();
        }
        Ok(())
    }

    /// `.wh.NAME`: removes NAME as lower layers left it.
    fn whiteout(&mut self, path: &EntryPath<'_>, target: &[u8]) -> Result<(), EntryError> {
        let lexical = join(path.parent());
        self.explain.say(
            format_args!(
                "unlinkat(dir, {:?}, AT_REMOVEDIR if a directory)",
                display(target)
            ),
            format_args!("rm -rf {}/{}", display(&lexical), display(target)),
        );
        let Some(dir) = self.root.dir(path.parent(), Missing::Absent)? else {
            return Ok(());
        };
        let mut target_path = if dir.via_link {
            real_path(&self.root_real, dir.as_fd()).unwrap_or(lexical)
        } else {
            lexical
        };
        if !target_path.is_empty() {
            target_path.push(b'/');
        }
        target_path.extend_from_slice(target);
        let name = c_name(target);
        let result = if self.same.contains(&target_path) {
            // This layer wrote NAME too: that stays; only what lies below it
            // from lower layers goes, if it is a directory.
            match openat(
                dir.as_fd(),
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(sub) => whiteout::remove_lower(sub.as_fd(), &mut target_path, &self.same),
                Err(_) => Ok(()),
            }
        } else {
            whiteout::remove_all(dir.as_fd(), &name)
        };
        drop(dir);
        self.root.forget();
        result.map_err(sys("remove"))
    }

    /// `.wh..wh..opq`: empties its directory of lower-layer content.
    fn opaque(&mut self, path: &EntryPath<'_>) -> Result<(), EntryError> {
        let lexical = join(path.parent());
        self.explain.say(
            format_args!("unlinkat(dir, NAME, ...) for each lower-layer entry (opaque whiteout)"),
            format_args!(
                "rm -rf {}/* except what this layer wrote",
                display(&lexical)
            ),
        );
        let Some(dir) = self.root.dir(path.parent(), Missing::Absent)? else {
            return Ok(());
        };
        let mut dir_path = if dir.via_link {
            real_path(&self.root_real, dir.as_fd()).unwrap_or(lexical)
        } else {
            lexical
        };
        let result = whiteout::remove_lower(dir.as_fd(), &mut dir_path, &self.same);
        drop(dir);
        self.root.forget();
        result.map_err(sys("remove"))
    }
}

/// Records where an entry really is when its directory was reached through a
/// symlink, so a whiteout through another path still knows it is this layer's.
fn note_real(same: &mut SameLayer, root_real: &[u8], parent: &DirFd<'_>, name: Option<&[u8]>) {
    if !parent.via_link {
        return;
    }
    if let Some(mut path) = real_path(root_real, parent.as_fd()) {
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name.unwrap_or_default());
        same.insert(&path);
    }
}

/// New files belong to the caller (and to a set-group-ID parent's group):
/// chown only when the layer wants something else.
fn needs_chown(meta: &Meta, euid: u32, egid: u32, parent: &DirFd<'_>) -> bool {
    meta.uid != euid || meta.gid != egid || parent.setgid
}

/// chown before chmod: chown(2) clears the set-user-ID and set-group-ID bits.
fn set_owner_mode(
    fd: BorrowedFd<'_>,
    meta: &Meta,
    chown: bool,
    chmod: bool,
) -> Result<(), EntryError> {
    if chown {
        fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(sys("fchown"))?;
    }
    if chmod || chown || meta.mode & 0o7000 != 0 {
        fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(sys("fchmod"))?;
    }
    Ok(())
}

/// Sets xattrs; remembers whether the filesystem refused one already.
struct Xattrs {
    quiet: bool,
    warned: bool,
}

impl Xattrs {
    fn set_fd(&mut self, fd: BorrowedFd<'_>, meta: &Meta) -> Result<(), EntryError> {
        for (key, value) in &meta.xattrs {
            // SAFETY: `fd` is open for the call; `key` is NUL-terminated;
            // `value` points to `value.len()` readable bytes.
            let rc = unsafe {
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            self.result(rc, key)?;
        }
        Ok(())
    }

    fn set_path(&mut self, path: &CStr, meta: &Meta) -> Result<(), EntryError> {
        for (key, value) in &meta.xattrs {
            // SAFETY: `path` and `key` are NUL-terminated; `value` points to
            // `value.len()` readable bytes. `path` is a /proc/self/fd magic link
            // to the inode itself, so setxattr(2) cannot reach another file.
            let rc = unsafe {
                libc::setxattr(
                    path.as_ptr(),
                    key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            self.result(rc, key)?;
        }
        Ok(())
    }

    /// A filesystem without xattrs (or without this namespace on this file
    /// type) is worth a warning, not a failed unpack; umoci does the same.
    fn result(&mut self, rc: libc::c_int, key: &CStr) -> Result<(), EntryError> {
        if rc == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::ENOTSUP | Errno::EPERM if !self.quiet => {
                if !self.warned {
                    eprintln!(
                        "unpack-layers: warning: xattr {} not kept: the filesystem refused it ({})",
                        key.to_string_lossy(),
                        Errno::last().desc()
                    );
                    self.warned = true;
                }
                Ok(())
            }
            Errno::ENOTSUP | Errno::EPERM => Ok(()),
            e => Err(EntryError::Sys {
                op: "setxattr",
                source: e,
            }),
        }
    }
}

/// Removes whatever stands at `name` so an entry of another kind can take it.
fn replace(dir: BorrowedFd<'_>, name: &CStr, explain: &Explain) -> Result<(), EntryError> {
    explain.say(
        format_args!("unlinkat(dir, {name:?}, ...)   # replaced by the entry"),
        format_args!("rm -rf {}", name.to_string_lossy()),
    );
    whiteout::remove_all(dir, name).map_err(sys("remove the existing entry"))
}

/// The entry's last component as a C string. Entries reaching the handlers
/// are never the root (`apply_entry` deals with it first).
fn leaf(path: &EntryPath<'_>) -> CString {
    c_name(path.file_name().unwrap_or_default())
}

fn open_path(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, EntryError> {
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open O_PATH"))
}

fn copy(data: &mut impl Read, file: &mut File, buf: &mut [u8]) -> Result<(), EntryError> {
    loop {
        let n = match data.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EntryError::Data(e)),
        };
        file.write_all(&buf[..n]).map_err(EntryError::Write)?;
    }
}

fn read_meta(entry: &mut tar::Entry<'_, impl Read>) -> Result<Meta, EntryError> {
    let header = entry.header();
    let raw = header.as_old();
    let mode = numeric(header.mode().map(u64::from), &raw.mode)? as u32 & 0o7777;
    // PAX uid/gid records are already folded into the header by the tar crate.
    let uid = id(numeric(header.uid(), &raw.uid)?)?;
    let gid = id(numeric(header.gid(), &raw.gid)?)?;
    let mtime = numeric(header.mtime(), &raw.mtime)?;
    let mut mtime = TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0);
    let mut xattrs = Vec::new();
    if let Some(extensions) = entry.pax_extensions().map_err(EntryError::Header)? {
        for ext in extensions {
            let ext = ext.map_err(EntryError::Header)?;
            let key = ext.key_bytes();
            if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.") {
                // An SELinux label describes the host that built the image, not
                // this one; writing it could mislabel files for the host policy.
                if attr == b"security.selinux" || attr.is_empty() {
                    continue;
                }
                if let Ok(attr) = CString::new(attr) {
                    xattrs.push((attr, ext.value_bytes().to_vec()));
                }
            } else if key == b"mtime" {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    mtime = t;
                }
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

/// A numeric header field; an empty one (all NUL or spaces) reads as 0, as Go's
/// archive/tar (and so umoci, containerd, docker) reads it.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> Result<u64, EntryError> {
    match parsed {
        Ok(value) => Ok(value),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(EntryError::Header(e)),
    }
}

fn id(value: u64) -> Result<u32, EntryError> {
    u32::try_from(value)
        .map_err(|_| EntryError::Header(io::Error::other(format!("uid/gid {value} out of range"))))
}

/// A PAX time, `SECONDS[.FRACTION]` (POSIX pax, "pax Extended Header").
pub fn parse_pax_time(text: &str) -> Option<TimeSpec> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos = 0i64;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    if secs < 0 && nanos > 0 {
        return Some(TimeSpec::new(secs - 1, 1_000_000_000 - nanos));
    }
    Some(TimeSpec::new(secs, nanos))
}

fn is_dir(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Regular | EntryType::Continuous => "regular file",
        EntryType::Symlink => "symlink",
        EntryType::Link => "hardlink",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "fifo",
        _ => "non-directory",
    }
}

fn display(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time("1700000000"),
            Some(TimeSpec::new(1_700_000_000, 0))
        );
        assert_eq!(parse_pax_time("1.5"), Some(TimeSpec::new(1, 500_000_000)));
        assert_eq!(
            parse_pax_time("1.123456789123"),
            Some(TimeSpec::new(1, 123_456_789))
        );
        assert_eq!(parse_pax_time("-1.5"), Some(TimeSpec::new(-2, 500_000_000)));
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(parse_pax_time("1.x"), None);
    }
}

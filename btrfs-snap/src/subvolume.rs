//! The five operations: each opens the directories it needs, checks what it can explain
//! better than an errno (not btrfs, not a subvolume, already there), then makes one ioctl.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode};

use crate::explain::{c_str, shell_word, Explain};
use crate::{fsinfo, ioctl, rootref, search, Error, Op, Reason};

/// `btrfs subvolume create PATH`: `BTRFS_IOC_SUBVOL_CREATE` on PATH's parent directory.
pub fn create(path: &Path, explain: Explain) -> Result<(), Error> {
    let fail = |reason| Error {
        op: Op::Create(path.to_owned()),
        reason,
    };
    let (parent, name) = split_target(path).map_err(fail)?;
    let dir = open_btrfs_dir(&parent).map_err(fail)?;
    refuse_existing(dir.as_fd(), name, path).map_err(fail)?;
    explain.call(
        format_args!(
            "ioctl({}, BTRFS_IOC_SUBVOL_CREATE, {{fd: 0, name: {}}})",
            c_str(&parent),
            c_str(name)
        ),
        format_args!("btrfs subvolume create {}", shell_word(path)),
    );
    ioctl::subvol_create(dir.as_fd(), name.as_bytes()).map_err(|errno| {
        fail(match errno {
            Errno::EEXIST => Reason::Exists { path: path.into() },
            Errno::EROFS => Reason::ReadOnly { path: parent },
            errno => Reason::Sys {
                call: "BTRFS_IOC_SUBVOL_CREATE",
                path: path.into(),
                errno,
            },
        })
    })
}

/// `btrfs subvolume snapshot [-r] SOURCE DEST`: `BTRFS_IOC_SNAP_CREATE_V2` on DEST's
/// parent directory, naming SOURCE by an open fd.
pub fn snapshot(source: &Path, dest: &Path, readonly: bool, explain: Explain) -> Result<(), Error> {
    let fail = |reason| Error {
        op: Op::Snapshot {
            source: source.to_owned(),
            dest: dest.to_owned(),
        },
        reason,
    };
    let src = open_subvolume(
        source,
        " (snapshot the subvolume that holds it, or make one with \
         `btrfs-snap create` and copy into it)",
    )
    .map_err(fail)?;
    let (parent, name) = split_target(dest).map_err(fail)?;
    let dir = open_btrfs_dir(&parent).map_err(fail)?;
    refuse_existing(dir.as_fd(), name, dest).map_err(fail)?;
    let (flags, flag_names, like_flag) = if readonly {
        (ioctl::SUBVOL_RDONLY, "BTRFS_SUBVOL_RDONLY", "-r ")
    } else {
        (0, "0", "")
    };
    explain.call(
        format_args!(
            "ioctl({}, BTRFS_IOC_SNAP_CREATE_V2, {{fd: open({}), flags: {flag_names}, name: {}}})",
            c_str(&parent),
            c_str(source),
            c_str(name)
        ),
        format_args!(
            "btrfs subvolume snapshot {like_flag}{} {}",
            shell_word(source),
            shell_word(dest)
        ),
    );
    ioctl::snap_create_v2(dir.as_fd(), src.as_fd(), name.as_bytes(), flags).map_err(|errno| {
        fail(match errno {
            Errno::EEXIST => Reason::Exists { path: dest.into() },
            Errno::EXDEV => Reason::CrossDevice {
                src: source.into(),
                dest: dest.into(),
            },
            Errno::EROFS => Reason::ReadOnly { path: parent },
            Errno::EPERM => Reason::Privilege {
                what: "only root or the owner of the source may snapshot it",
                call: "BTRFS_IOC_SNAP_CREATE_V2",
                errno,
            },
            errno => Reason::Sys {
                call: "BTRFS_IOC_SNAP_CREATE_V2",
                path: dest.into(),
                errno,
            },
        })
    })
}

/// `btrfs subvolume delete PATH`: the subvolume is opened and its id read from that fd,
/// then `BTRFS_IOC_SNAP_DESTROY_V2` deletes exactly that id through the same fd, so a
/// path swapped or mounted over in between cannot redirect the deletion. Kernels before
/// 5.7 lack V2 (`ENOTTY`), and a caller without CAP_SYS_ADMIN may not use it this way
/// (`EINVAL`); then `BTRFS_IOC_SNAP_DESTROY` deletes by name in the parent directory,
/// after checking that the name there still leads to the subvolume inspected.
///
/// A read-only snapshot needs nothing special: its flag forbids changing its contents,
/// not removing it (as root, as btrfs-progs also does).
pub fn delete(path: &Path, explain: Explain) -> Result<(), Error> {
    let fail = |reason| Error {
        op: Op::Delete(path.to_owned()),
        reason,
    };
    let subvol = open_subvolume(path, " (remove a plain directory with rm -r)").map_err(fail)?;
    let id = subvolume_id(subvol.as_fd(), path, explain).map_err(fail)?;
    if id == ioctl::FS_TREE_OBJECTID {
        return Err(fail(Reason::TopLevel { path: path.into() }));
    }
    explain.call(
        format_args!(
            "ioctl({}, BTRFS_IOC_SNAP_DESTROY_V2, {{flags: BTRFS_SUBVOL_SPEC_BY_ID, subvolid: {id}}})",
            c_str(path)
        ),
        format_args!("btrfs subvolume delete {}", shell_word(path)),
    );
    let (call, result) = match ioctl::snap_destroy_v2_by_id(subvol.as_fd(), id) {
        // ENOTTY: a kernel before 5.7. EINVAL: a caller without CAP_SYS_ADMIN (on a mount
        // with user_subvol_rm_allowed) must call from the parent directory, not the
        // subvolume itself.
        Err(Errno::ENOTTY | Errno::EINVAL) => (
            "BTRFS_IOC_SNAP_DESTROY",
            delete_by_name(path, subvol.as_fd(), explain).map_err(fail)?,
        ),
        result => ("BTRFS_IOC_SNAP_DESTROY_V2", result),
    };
    result.map_err(|errno| {
        fail(match errno {
            Errno::ENOTEMPTY => Reason::HasSubvolumes { path: path.into() },
            // Root is refused only for the filesystem's default subvolume (the one mounted
            // when no subvol= is given) or one being sent (btrfs_delete_subvolume).
            Errno::EPERM if nix::unistd::geteuid().is_root() => Reason::Busy {
                path: path.into(),
                why: "it is the filesystem's default subvolume (btrfs subvolume \
                      get-default), or a btrfs send of it is running",
            },
            Errno::EPERM => Reason::Privilege {
                what: "deleting a subvolume needs root (CAP_SYS_ADMIN), or a filesystem \
                       mounted with user_subvol_rm_allowed",
                call,
                errno,
            },
            // On a user_subvol_rm_allowed mount, a user needs what rmdir(2) would need.
            Errno::EACCES => Reason::Privilege {
                what: "without root, deleting a subvolume needs write and search permission \
                       on it and on its parent directory, as rmdir would",
                call,
                errno,
            },
            Errno::EROFS => Reason::ReadOnly { path: path.into() },
            errno => Reason::Sys {
                call,
                path: path.into(),
                errno,
            },
        })
    })
}

/// The pre-5.7 way: `BTRFS_IOC_SNAP_DESTROY` with the name, on the parent directory.
fn delete_by_name(
    path: &Path,
    subvol: BorrowedFd,
    explain: Explain,
) -> Result<Result<(), Errno>, Reason> {
    // The kernel looks the name up in the parent; resolve symlinks and `..` first so the
    // parent is the real one, then make sure the name there is what was inspected.
    let real = std::fs::canonicalize(path).map_err(|err| Reason::Sys {
        call: "realpath",
        path: path.into(),
        errno: Errno::from_raw(err.raw_os_error().unwrap_or(0)),
    })?;
    let (parent, name) = split_target(&real)?;
    let dir = open_btrfs_dir(&parent)?;
    let here = fstat(subvol).map_err(|errno| sys("fstat", path, errno))?;
    let there = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|errno| sys("fstatat", &real, errno))?;
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino) {
        return Err(Reason::Sys {
            call: "BTRFS_IOC_SNAP_DESTROY",
            path: path.into(),
            errno: Errno::EBUSY, // a mount point: the name leads elsewhere in the parent
        });
    }
    explain.call(
        format_args!(
            "ioctl({}, BTRFS_IOC_SNAP_DESTROY, {{fd: 0, name: {}}})",
            c_str(&parent),
            c_str(name)
        ),
        format_args!("btrfs subvolume delete {}", shell_word(path)),
    );
    Ok(ioctl::snap_destroy(dir.as_fd(), name.as_bytes()))
}

/// `btrfs subvolume list -o PATH`, recursively: the subvolumes at or below PATH, as paths
/// that start with PATH (bare relative paths when PATH is `.`), parents first.
///
/// As root, one search of the root tree finds every subvolume of the filesystem, and those
/// under PATH are kept. Without CAP_SYS_ADMIN (`EPERM`), a walk down from PATH finds those
/// the caller can reach.
pub fn list(path: &Path, explain: Explain) -> Result<Vec<PathBuf>, Error> {
    let fail = |reason| Error {
        op: Op::List(path.to_owned()),
        reason,
    };
    let dir = open_btrfs_dir(path).map_err(fail)?;
    let root_id = subvolume_id(dir.as_fd(), path, explain).map_err(fail)?;
    let ino = fstat(dir.as_fd())
        .map_err(|e| fail(sys("fstat", path, e)))?
        .st_ino;
    let relative = match list_from_root_tree(dir.as_fd(), path, root_id, ino, explain) {
        Ok(relative) => relative,
        Err((_, Errno::EPERM)) => {
            explain.call(
                "(no CAP_SYS_ADMIN: walking down from the path instead)",
                format_args!("btrfs subvolume list -o {}", shell_word(path)),
            );
            let mut below = rootref::subvolumes_below(dir, path, explain).map_err(|errno| {
                fail(match errno {
                    Errno::ENOTTY => Reason::Privilege {
                        what: "this kernel lacks the unprivileged subvolume ioctls (Linux \
                               4.18), and searching the root tree needs root (CAP_SYS_ADMIN)",
                        call: "BTRFS_IOC_GET_SUBVOL_ROOTREF",
                        errno,
                    },
                    errno => sys("BTRFS_IOC_GET_SUBVOL_ROOTREF", path, errno),
                })
            })?;
            if ino == ioctl::FIRST_FREE_OBJECTID && root_id != ioctl::FS_TREE_OBJECTID {
                below.insert(0, PathBuf::new()); // PATH is itself a subvolume
            }
            below
        }
        Err((call, errno)) => return Err(fail(sys(call, path, errno))),
    };
    Ok(relative.iter().map(|rel| shown_below(path, rel)).collect())
}

/// The privileged listing: every subvolume's path from the top level, and PATH's own, so
/// those below PATH can be kept, relative to it. Errors carry the ioctl that failed.
fn list_from_root_tree(
    dir: BorrowedFd,
    path: &Path,
    root_id: u64,
    ino: u64,
    explain: Explain,
) -> Result<Vec<PathBuf>, (&'static str, Errno)> {
    // Where PATH is, as a path from the top level: its subvolume's path, then its place
    // inside that subvolume.
    explain.step(format_args!(
        "ioctl({}, BTRFS_IOC_INO_LOOKUP, {{treeid: {root_id}, objectid: {ino}}})",
        c_str(path)
    ));
    let (_, inner) =
        ioctl::ino_lookup(dir, root_id, ino).map_err(|e| ("BTRFS_IOC_INO_LOOKUP", e))?;
    explain.call(
        "(root tree search and path lookups follow)",
        format_args!("btrfs subvolume list -o {}", shell_word(path)),
    );
    let subvols = search::subvolumes(dir, explain).map_err(|e| ("BTRFS_IOC_TREE_SEARCH", e))?;
    let base = if root_id == ioctl::FS_TREE_OBJECTID {
        PathBuf::new()
    } else {
        match subvols.iter().find(|s| s.id == root_id) {
            Some(s) => s.path.clone(),
            None => return Ok(Vec::new()), // PATH's own subvolume is being deleted
        }
    };
    let here = base.join(OsStr::from_bytes(&inner));
    Ok(subvols
        .iter()
        .filter_map(|s| s.path.strip_prefix(&here).ok())
        .map(Path::to_path_buf)
        .collect())
}

/// `rel` (relative to the directory `base` names) as the user would type it.
fn shown_below(base: &Path, rel: &Path) -> PathBuf {
    if base == Path::new(".") && !rel.as_os_str().is_empty() {
        rel.to_owned()
    } else if rel.as_os_str().is_empty() {
        base.to_owned()
    } else {
        base.join(rel)
    }
}

/// What `btrfs subvolume show` prints about a subvolume.
#[derive(Debug, Clone)]
pub struct SubvolumeInfo {
    pub path: PathBuf,
    pub name: Vec<u8>,
    pub id: u64,
    pub parent_id: u64,
    pub root: search::RootItem,
    /// Paths (from the top level) of the snapshots taken of it; `None` without the
    /// privilege to search the root tree.
    pub snapshots: Option<Vec<PathBuf>>,
}

impl SubvolumeInfo {
    pub fn readonly(&self) -> bool {
        self.root.flags & ioctl::ROOT_SUBVOL_RDONLY != 0
    }
}

/// The layout of `btrfs subvolume show`, field for field, so what parses one parses both.
impl std::fmt::Display for SubvolumeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.root;
        writeln!(f, "{}", self.path.display())?;
        writeln!(f, "\tName: \t\t\t{}", String::from_utf8_lossy(&self.name))?;
        writeln!(f, "\tUUID: \t\t\t{}", format_uuid(&r.uuid))?;
        writeln!(f, "\tParent UUID: \t\t{}", format_uuid(&r.parent_uuid))?;
        writeln!(f, "\tReceived UUID: \t\t{}", format_uuid(&r.received_uuid))?;
        writeln!(f, "\tCreation time: \t\t{}", format_time(r.otime.0))?;
        writeln!(f, "\tSubvolume ID: \t\t{}", self.id)?;
        writeln!(f, "\tGeneration: \t\t{}", r.generation)?;
        writeln!(f, "\tGen at creation: \t{}", r.otransid)?;
        writeln!(f, "\tParent ID: \t\t{}", self.parent_id)?;
        writeln!(f, "\tTop level ID: \t\t{}", self.parent_id)?;
        let flags = if self.readonly() { "readonly" } else { "-" };
        writeln!(f, "\tFlags: \t\t\t{flags}")?;
        writeln!(f, "\tSend transid: \t\t{}", r.stransid)?;
        writeln!(f, "\tSend time: \t\t{}", format_time(r.stime.0))?;
        writeln!(f, "\tReceive transid: \t{}", r.rtransid)?;
        writeln!(f, "\tReceive time: \t\t{}", format_time(r.rtime.0))?;
        match &self.snapshots {
            Some(snapshots) => {
                writeln!(f, "\tSnapshot(s):")?;
                for path in snapshots {
                    writeln!(f, "\t\t\t\t{}", path.display())?;
                }
                Ok(())
            }
            None => writeln!(f, "\tSnapshot(s): \t\t(listing them needs root)"),
        }
    }
}

/// A uuid as 8-4-4-4-12 hex digits, or `-` when unset (all zero), as btrfs-progs prints it.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    if uuid.iter().all(|&b| b == 0) {
        return "-".to_owned();
    }
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Seconds since the epoch as local time, `2024-05-01 12:00:00 +0200`, or `-` for 0.
pub fn format_time(secs: u64) -> String {
    if secs == 0 {
        return "-".to_owned();
    }
    let Ok(time) = libc::time_t::try_from(secs) else {
        return secs.to_string();
    };
    let mut tm = std::mem::MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: both pointers are valid for the call; localtime_r only writes into `tm`.
    let converted = unsafe { libc::localtime_r(&time, tm.as_mut_ptr()) };
    if converted.is_null() {
        return secs.to_string();
    }
    // SAFETY: localtime_r succeeded, so it initialised `tm`.
    let tm = unsafe { tm.assume_init() };
    let mut buf = [0u8; 64];
    // SAFETY: strftime writes at most `buf.len()` bytes into `buf` and reads the
    // NUL-terminated format and the initialised `tm`.
    let len = unsafe {
        libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%Y-%m-%d %H:%M:%S %z".as_ptr(),
            &tm,
        )
    };
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// `btrfs subvolume show PATH`: `BTRFS_IOC_GET_SUBVOL_INFO` (Linux 4.18, no privilege
/// needed), else the subvolume's ROOT_ITEM and ROOT_BACKREF from a root tree search.
pub fn show(path: &Path, explain: Explain) -> Result<SubvolumeInfo, Error> {
    let fail = |reason| Error {
        op: Op::Show(path.to_owned()),
        reason,
    };
    let fd = open_subvolume(path, "").map_err(fail)?;
    explain.call(
        format_args!("ioctl({}, BTRFS_IOC_GET_SUBVOL_INFO, &info)", c_str(path)),
        format_args!("btrfs subvolume show {}", shell_word(path)),
    );
    let mut info = match ioctl::get_subvol_info(fd.as_fd()) {
        Ok(args) => info_from_subvol_info(path, &args),
        // ENOTTY: a kernel before 4.18.
        Err(Errno::ENOTTY) => show_from_tree(fd.as_fd(), path, explain).map_err(fail)?,
        Err(errno) => return Err(fail(sys("BTRFS_IOC_GET_SUBVOL_INFO", path, errno))),
    };
    // Only root may search the root tree; a user sees the rest without the list.
    info.snapshots = snapshots_of(fd.as_fd(), &info.root.uuid, explain).ok();
    Ok(info)
}

/// What `BTRFS_IOC_GET_SUBVOL_INFO` answered, as [`show`] prints it.
fn info_from_subvol_info(path: &Path, args: &ioctl::GetSubvolInfoArgs) -> SubvolumeInfo {
    SubvolumeInfo {
        path: path.into(),
        // The top level has no name in the root tree; btrfs-progs calls it <FS_TREE>.
        name: match ioctl::until_nul(&args.name) {
            b"" => b"<FS_TREE>".to_vec(),
            name => name.to_vec(),
        },
        id: args.treeid,
        parent_id: args.parent_id,
        root: search::RootItem {
            generation: args.generation,
            flags: args.flags,
            uuid: args.uuid,
            parent_uuid: args.parent_uuid,
            received_uuid: args.received_uuid,
            ctransid: args.ctransid,
            otransid: args.otransid,
            stransid: args.stransid,
            rtransid: args.rtransid,
            ctime: (args.ctime.sec, args.ctime.nsec),
            otime: (args.otime.sec, args.otime.nsec),
            stime: (args.stime.sec, args.stime.nsec),
            rtime: (args.rtime.sec, args.rtime.nsec),
        },
        snapshots: None,
    }
}

/// The snapshots of the subvolume `uuid`: those whose parent uuid it is (a root tree
/// search, so root only).
fn snapshots_of(fs: BorrowedFd, uuid: &[u8; 16], explain: Explain) -> Result<Vec<PathBuf>, Errno> {
    let all = search::subvolumes(fs, explain)?;
    Ok(all
        .into_iter()
        .filter(|s| s.item.as_ref().is_some_and(|i| &i.parent_uuid == uuid))
        .map(|s| s.path)
        .collect())
}

/// [`show`] the way kernels before 4.18 need, from the subvolume's ROOT_ITEM and
/// ROOT_BACKREF in the root tree (needs CAP_SYS_ADMIN); without the snapshot list. Public
/// so the two ways can be checked against each other.
pub fn show_from_root_tree(path: &Path, explain: Explain) -> Result<SubvolumeInfo, Error> {
    let fail = |reason| Error {
        op: Op::Show(path.to_owned()),
        reason,
    };
    let fd = open_subvolume(path, "").map_err(fail)?;
    show_from_tree(fd.as_fd(), path, explain).map_err(fail)
}

fn show_from_tree(fd: BorrowedFd, path: &Path, explain: Explain) -> Result<SubvolumeInfo, Reason> {
    let id = subvolume_id(fd, path, explain)?;
    let key = ioctl::SearchKey {
        tree_id: ioctl::ROOT_TREE_OBJECTID,
        min_objectid: id,
        max_objectid: id,
        min_type: ioctl::ROOT_ITEM_KEY,
        max_type: ioctl::ROOT_BACKREF_KEY,
        max_offset: u64::MAX,
        max_transid: u64::MAX,
        ..ioctl::SearchKey::default()
    };
    let items = search::search_all(fd, key, explain).map_err(|errno| Reason::Privilege {
        what: "this kernel lacks BTRFS_IOC_GET_SUBVOL_INFO, and searching the root tree \
               instead needs root (CAP_SYS_ADMIN)",
        call: "BTRFS_IOC_TREE_SEARCH",
        errno,
    })?;
    let mut info = SubvolumeInfo {
        path: path.into(),
        name: b"<FS_TREE>".to_vec(),
        id,
        parent_id: 0,
        root: search::RootItem::default(),
        snapshots: None,
    };
    for item in items {
        match item.item_type {
            ioctl::ROOT_ITEM_KEY => {
                info.root = search::parse_root_item(&item.data).unwrap_or_default();
            }
            ioctl::ROOT_BACKREF_KEY => {
                if let Some((_, name)) = search::parse_root_ref(&item.data) {
                    (info.parent_id, info.name) = (item.offset, name);
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Splits a path to be created into its parent directory and a valid subvolume name.
pub fn split_target(path: &Path) -> Result<(PathBuf, &OsStr), Reason> {
    let name = path
        .file_name()
        .ok_or_else(|| Reason::NoName { path: path.into() })?;
    validate_name(name)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// A subvolume name is one directory entry: not `.` or `..`, no `/` or NUL, and at most
/// `BTRFS_VOL_NAME_MAX` (255) bytes.
pub fn validate_name(name: &OsStr) -> Result<(), Reason> {
    let bytes = name.as_bytes();
    let bad = |why| {
        // The whole path is in the message already; a name too long to read is cut.
        let shown = match bytes.get(..32).filter(|_| bytes.len() > 64) {
            Some(start) => format!(
                "{}... ({} bytes)",
                String::from_utf8_lossy(start),
                bytes.len()
            ),
            None => name.to_string_lossy().into_owned(),
        };
        Err(Reason::BadName { name: shown, why })
    };
    if bytes.is_empty() || bytes == b"." || bytes == b".." {
        return bad("not a name for a new entry");
    }
    if bytes.contains(&b'/') {
        return bad("a name cannot contain '/'");
    }
    if bytes.contains(&0) {
        return bad("a name cannot contain a NUL byte");
    }
    if bytes.len() > ioctl::VOL_NAME_MAX {
        return bad("longer than 255 bytes (BTRFS_VOL_NAME_MAX)");
    }
    Ok(())
}

/// Opens a directory and makes sure it is on btrfs, saying what it is on otherwise.
fn open_btrfs_dir(path: &Path) -> Result<OwnedFd, Reason> {
    let fd = open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| match errno {
        Errno::ENOENT => Reason::Missing { path: path.into() },
        Errno::ENOTDIR => Reason::NotDirectory { path: path.into() },
        errno => sys("open", path, errno),
    })?;
    match fsinfo::not_btrfs(fd.as_fd()) {
        Ok(None) => Ok(fd),
        Ok(Some(fs)) => Err(Reason::NotBtrfs {
            path: path.into(),
            fs,
        }),
        Err(errno) => Err(sys("fstatfs", path, errno)),
    }
}

/// Opens the root directory of a subvolume; `hint` ends the error when `path` is a plain
/// directory.
fn open_subvolume(path: &Path, hint: &'static str) -> Result<OwnedFd, Reason> {
    let fd = open_btrfs_dir(path)?;
    if !is_subvolume_root(fd.as_fd(), path)? {
        return Err(Reason::NotSubvolume {
            path: path.into(),
            hint,
        });
    }
    Ok(fd)
}

/// Every subvolume's root directory is inode 256 (`BTRFS_FIRST_FREE_OBJECTID`), the
/// test btrfs-progs uses too; any other directory is an ordinary one inside a subvolume.
fn is_subvolume_root(fd: BorrowedFd, path: &Path) -> Result<bool, Reason> {
    let stat = fstat(fd).map_err(|errno| sys("fstat", path, errno))?;
    Ok(stat.st_ino == ioctl::FIRST_FREE_OBJECTID)
}

/// The id of the subvolume the open directory is in: `BTRFS_IOC_INO_LOOKUP` with tree 0
/// and the subvolume root's inode, which needs no privilege.
fn subvolume_id(fd: BorrowedFd, path: &Path, explain: Explain) -> Result<u64, Reason> {
    explain.step(format_args!(
        "ioctl({}, BTRFS_IOC_INO_LOOKUP, {{treeid: 0, objectid: 256}})",
        c_str(path)
    ));
    ioctl::ino_lookup(fd, 0, ioctl::FIRST_FREE_OBJECTID)
        .map(|(id, _)| id)
        .map_err(|errno| sys("BTRFS_IOC_INO_LOOKUP", path, errno))
}

/// The kernel would say `EEXIST`; saying it first keeps the message about the path.
fn refuse_existing(dir: BorrowedFd, name: &OsStr, path: &Path) -> Result<(), Reason> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => Err(Reason::Exists { path: path.into() }),
        Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(sys("fstatat", path, errno)),
    }
}

fn sys(call: &'static str, path: &Path, errno: Errno) -> Reason {
    Reason::Sys {
        call,
        path: path.into(),
        errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_parent_and_name() {
        let (parent, name) = split_target(Path::new("images/alpine")).expect("valid");
        assert_eq!(
            (parent.as_path(), name),
            (Path::new("images"), OsStr::new("alpine"))
        );
        let (parent, name) = split_target(Path::new("alpine")).expect("valid");
        assert_eq!(
            (parent.as_path(), name),
            (Path::new("."), OsStr::new("alpine"))
        );
        let (parent, _) = split_target(Path::new("/alpine/")).expect("valid");
        assert_eq!(parent, Path::new("/"));
    }

    #[test]
    fn paths_without_a_final_name_are_refused() {
        for path in ["/", "..", "a/..", ""] {
            assert!(
                matches!(split_target(Path::new(path)), Err(Reason::NoName { .. })),
                "{path}"
            );
        }
    }

    #[test]
    fn names_are_checked_like_the_kernel_does() {
        assert!(validate_name(OsStr::new("alpine")).is_ok());
        assert!(validate_name(OsStr::new(&"x".repeat(255))).is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(validate_name(OsStr::new(bad)).is_err(), "{bad:?}");
        }
        let long = "x".repeat(256);
        let err = validate_name(OsStr::new(&long)).expect_err("too long");
        assert!(err.to_string().contains("255"));
    }

    #[test]
    fn uuids_print_like_btrfs_progs() {
        assert_eq!(format_uuid(&[0; 16]), "-");
        let uuid = [
            0xbf, 0x13, 0x62, 0x59, 0x30, 0x84, 0xfe, 0x45, 0x9a, 0xdf, 0x1f, 0x23, 0xef, 0xb9,
            0xae, 0xde,
        ];
        assert_eq!(format_uuid(&uuid), "bf136259-3084-fe45-9adf-1f23efb9aede");
        assert_eq!(format_time(0), "-");
    }

    #[test]
    fn listed_paths_start_with_the_path_given() {
        assert_eq!(
            shown_below(Path::new("."), Path::new("a/b")),
            Path::new("a/b")
        );
        assert_eq!(shown_below(Path::new("."), Path::new("")), Path::new("."));
        assert_eq!(
            shown_below(Path::new("/mnt"), Path::new("a")),
            Path::new("/mnt/a")
        );
        assert_eq!(
            shown_below(Path::new("/mnt/a"), Path::new("")),
            Path::new("/mnt/a")
        );
    }
}

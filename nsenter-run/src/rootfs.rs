//! The container's filesystem: mount propagation, the rootfs bind mount, the
//! mounts inside it, `pivot_root`, and the paths masked or made read-only.
//!
//! Order matters (mount_namespaces(7), pivot_root(2)):
//! 1. `mount --make-rslave /`: the new mount namespace starts as a copy of the
//!    host's, and with `/` shared (systemd's default) every mount below would
//!    propagate back to the host. Slave: nothing goes out, host changes still
//!    come in. This must precede every other mount.
//! 2. `mount --rbind ROOTFS ROOTFS`: pivot_root needs the new root to be a mount
//!    point.
//! 3. `/proc`, `/dev`, `/sys`, ... mounted into the rootfs. Every target is
//!    resolved inside the rootfs with openat2(RESOLVE_IN_ROOT), the last
//!    component never followed: a rootfs whose `proc` is a symlink to a host
//!    directory (CVE-2019-16884, CVE-2021-30465) is refused, not obeyed. The
//!    mount is then made on `/proc/self/fd/N`, the very directory checked.
//! 4. `pivot_root . .` then `umount -l .`: the old root (the host's whole tree)
//!    is stacked under the new one and detached. Unlike chroot(2), nothing of
//!    the host remains reachable, not even by a process that escapes a chroot
//!    with `..` or a leftover fd on a host directory.
//! 5. Masked paths (a tmpfs or `/dev/null` over them) and read-only paths, as
//!    runc does by default: kernel files a container must not read or write.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, major, minor, mkdirat, Mode, SFlag};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use nix::unistd::{chdir, fchdir, pivot_root};

use crate::explain::Explain;
use crate::mounts::{self, MountPlan};
use crate::Error;
use crate::{cgroup, devices};

/// runc's default masked paths (libcontainer/specconv `maskedPaths`, moby's
/// `oci/defaults.go`): readable kernel state that leaks host information.
pub const DEFAULT_MASKED: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths: writable kernel knobs.
pub const DEFAULT_READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `/proc/self/fd/N`: a path that names exactly the object behind an fd.
pub fn fd_path(fd: impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// Step 1: `mount --make-rslave /`.
pub fn make_rslave(explain: Explain) -> Result<(), Error> {
    explain.call(
        "mount(NULL, \"/\", NULL, MS_REC|MS_SLAVE, NULL)",
        "mount --make-rslave /",
    );
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| Error::sys("mount --make-rslave /", e))
}

/// Step 2: bind the rootfs onto itself, and return a handle on the new mount.
pub fn bind_rootfs(rootfs: &Path, explain: Explain) -> Result<OwnedFd, Error> {
    explain.call(
        format!("mount({0:?}, {0:?}, NULL, MS_BIND|MS_REC, NULL)", rootfs),
        format!("mount --rbind {0} {0}", rootfs.display()),
    );
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("mount --rbind '{}'", rootfs.display()), e))?;
    // Opened after the bind: an fd taken before would name the directory under it.
    nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open rootfs '{}'", rootfs.display()), e))
}

/// What a mount target must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    /// Masked paths: a file or a directory.
    Any,
}

/// The parent directory and last name of a container path, or why not.
pub fn split_target(dest: &Path) -> Result<(PathBuf, PathBuf), String> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in dest.components() {
        match c {
            Component::Normal(name) => parts.push(name),
            Component::ParentDir => parts.push("..".as_ref()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    match parts.pop() {
        Some(last) if last != ".." => Ok((parts.iter().collect(), PathBuf::from(last))),
        _ => Err("not a path below the root".to_string()),
    }
}

/// Resolve `dest` inside `root` as if `root` were `/`; create what is missing
/// when `create`; refuse a last component that is a symlink or of the wrong kind.
pub fn resolve_in_root(
    root: BorrowedFd<'_>,
    dest: &Path,
    kind: Kind,
    create: bool,
) -> Result<OwnedFd, Error> {
    let (parent, name) = split_target(dest).map_err(|reason| target_error(dest, reason))?;
    let dir = open_dir_in_root(root, &parent, create).map_err(|e| {
        target_error(
            dest,
            format!("cannot resolve its parent directory: {}", e.desc()),
        )
    })?;
    open_last(&dir, &name, dest, kind, create)
}

fn target_error(dest: &Path, reason: String) -> Error {
    Error::Target {
        dest: dest.to_path_buf(),
        reason,
    }
}

/// The last component `name` of `dest`, in its parent `dir`: never followed,
/// created when missing and `create`, refused when of the wrong kind.
fn open_last(
    dir: &OwnedFd,
    name: &Path,
    dest: &Path,
    kind: Kind,
    create: bool,
) -> Result<OwnedFd, Error> {
    let bad = |reason: String| target_error(dest, reason);
    let nofollow = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(dir, name, nofollow, Mode::empty()) {
        Err(Errno::ENOENT) if create => {
            match kind {
                Kind::File => {
                    let flags = OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC;
                    openat(dir, name, flags, Mode::from_bits_truncate(0o644)).map(drop)
                }
                Kind::Dir | Kind::Any => mkdirat(dir, name, Mode::from_bits_truncate(0o755)),
            }
            .map_err(|e| bad(format!("cannot create it: {}", e.desc())))?;
            openat(dir, name, nofollow, Mode::empty())
        }
        other => other,
    }
    .map_err(|e| bad(e.desc().to_string()))?;
    let st = fstat(&fd).map_err(|e| bad(e.desc().to_string()))?;
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if fmt == SFlag::S_IFLNK {
        return Err(bad(
            "is a symbolic link; mount targets are never followed (CVE-2019-16884, CVE-2021-30465)"
                .to_string(),
        ));
    }
    match (kind, fmt == SFlag::S_IFDIR) {
        (Kind::Dir, false) => Err(bad("is not a directory".to_string())),
        (Kind::File, true) => Err(bad("is a directory, the bind source is not".to_string())),
        _ => Ok(fd),
    }
}

/// `mkdir -p` inside the root, every step resolved with RESOLVE_IN_ROOT.
fn open_dir_in_root(root: BorrowedFd<'_>, rel: &Path, create: bool) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    match openat2(root, rel, how) {
        Err(Errno::ENOENT) if create => {
            let Some(parent) = rel.parent() else {
                return Err(Errno::ENOENT);
            };
            let dir = open_dir_in_root(root, parent, true)?;
            // `X/..` is there as soon as X is; any other name is made in its parent.
            if let Some(name) = rel.file_name() {
                match mkdirat(&dir, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
            }
            openat2(root, rel, how)
        }
        other => other,
    }
}

/// Step 3: one mount of the plan, into the rootfs.
pub fn mount_in_root(
    root: &OwnedFd,
    rootfs: &Path,
    plan: &MountPlan,
    explain: Explain,
) -> Result<(), Error> {
    if plan.fstype == "cgroup" || plan.fstype == "cgroup2" {
        return mount_cgroup(root, rootfs, plan, explain);
    }
    mount_one(root, rootfs, plan, explain)
}

/// A `cgroup` mount is the cgroup2 tree on a v2 host; on a v1 (or hybrid) host,
/// as runc does it, a tmpfs holding one cgroup v1 mount per hierarchy, then
/// the tmpfs made read-only. In the container's cgroup namespace each tree
/// shows the container's own cgroup as its root.
fn mount_cgroup(
    root: &OwnedFd,
    rootfs: &Path,
    plan: &MountPlan,
    explain: Explain,
) -> Result<(), Error> {
    let layout = cgroup::Layout::current();
    let hardened = plan.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if layout.is_pure_v2() {
        let v2 = MountPlan {
            fstype: "cgroup2".to_string(),
            source: PathBuf::from("cgroup2"),
            flags: hardened,
            ..plan.clone()
        };
        return mount_one(root, rootfs, &v2, explain);
    }
    let tmpfs = MountPlan {
        fstype: "tmpfs".to_string(),
        source: PathBuf::from("tmpfs"),
        flags: hardened & !MsFlags::MS_RDONLY,
        data: "mode=755".to_string(),
        ..plan.clone()
    };
    mount_one(root, rootfs, &tmpfs, explain)?;
    for (destination, controllers) in cgroup::v1_container_mounts(&layout, &plan.destination) {
        let v1 = MountPlan {
            destination,
            fstype: "cgroup".to_string(),
            source: PathBuf::from("cgroup"),
            flags: hardened,
            propagation: MsFlags::empty(),
            data: controllers,
        };
        mount_one(root, rootfs, &v1, explain)?;
    }
    if plan.flags.contains(MsFlags::MS_RDONLY) {
        let top = resolve_in_root(root.as_fd(), &plan.destination, Kind::Dir, false)?;
        let shown = rootfs.join(
            plan.destination
                .strip_prefix("/")
                .unwrap_or(&plan.destination),
        );
        let flags = (tmpfs.flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY) & !MsFlags::MS_BIND;
        explain.call(
            format!(
                "mount(NULL, {shown:?}, NULL, {}, \"mode=755\")",
                flag_names(flags)
            ),
            format!("mount -o remount,ro {}", shown.display()),
        );
        mount(
            None::<&str>,
            &fd_path(&top),
            None::<&str>,
            flags,
            Some("mode=755"),
        )
        .map_err(|e| Error::sys(format!("mount -o remount,ro '{}'", shown.display()), e))?;
    }
    Ok(())
}

/// One mount(2) (two for a bind with flags), the target resolved in the rootfs.
fn mount_one(
    root: &OwnedFd,
    rootfs: &Path,
    plan: &MountPlan,
    explain: Explain,
) -> Result<(), Error> {
    let shown = rootfs.join(
        plan.destination
            .strip_prefix("/")
            .unwrap_or(&plan.destination),
    );
    let failed = |e: Errno| Error::sys(plan.classic(&shown.display().to_string()), e);

    let source_fd = if plan.is_bind() {
        let fd = nix::fcntl::open(
            &plan.source,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("open bind source '{}'", plan.source.display()), e))?;
        Some(fd)
    } else {
        None
    };
    let kind = match &source_fd {
        Some(fd) => match fstat(fd) {
            Ok(st) if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFDIR.bits() => Kind::File,
            _ => Kind::Dir,
        },
        None => Kind::Dir,
    };
    let target = resolve_in_root(root.as_fd(), &plan.destination, kind, true)?;
    explain.call(
        format!(
            "mount({:?}, {:?}, {:?}, {}, {:?})",
            plan.source,
            shown,
            plan.fstype,
            flag_names(plan.flags),
            plan.data
        ),
        plan.classic(&shown.display().to_string()),
    );
    match &source_fd {
        Some(src) => mount(
            Some(&fd_path(src)),
            &fd_path(&target),
            None::<&str>,
            plan.flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
            None::<&str>,
        ),
        None => mount(
            Some(&plan.source),
            &fd_path(&target),
            Some(plan.fstype.as_str()),
            plan.flags,
            Some(plan.data.as_str()).filter(|d| !d.is_empty()),
        ),
    }
    .map_err(failed)?;

    // Later calls must name the new mount on top, not the directory under it.
    let top = || resolve_in_root(root.as_fd(), &plan.destination, kind, false);
    if let Some(flags) = plan.bind_remount_flags() {
        explain.call(
            format!("mount(NULL, {shown:?}, NULL, {}, NULL)", flag_names(flags)),
            format!(
                "mount -o remount,bind,{} {}",
                mounts::option_names(flags).join(","),
                shown.display()
            ),
        );
        mount(
            None::<&str>,
            &fd_path(top()?),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(failed)?;
    }
    if !plan.propagation.is_empty() {
        mount(
            None::<&str>,
            &fd_path(top()?),
            None::<&str>,
            plan.propagation,
            None::<&str>,
        )
        .map_err(failed)?;
    }
    if plan.destination == Path::new("/dev") && plan.fstype == "tmpfs" {
        devices::populate(&top()?, &shown, explain)?;
    }
    Ok(())
}

/// Step 4: `pivot_root . .` and `umount -l .`: the new root on top, the old
/// one detached from the namespace.
pub fn pivot(root: &OwnedFd, rootfs: &Path, explain: Explain) -> Result<(), Error> {
    fchdir(root).map_err(|e| Error::sys(format!("chdir '{}'", rootfs.display()), e))?;
    // pivot_root(".", ".") stacks the old root on top of the new one instead of
    // needing an `oldroot` directory inside a rootfs that may be read-only.
    explain.call("pivot_root(\".\", \".\")", "pivot_root . oldroot");
    pivot_root(".", ".")
        .map_err(|e| Error::sys(format!("pivot_root into '{}'", rootfs.display()), e))?;
    explain.call("umount2(\".\", MNT_DETACH)", "umount -l /oldroot");
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::sys("umount -l (the old root)", e))?;
    chdir("/").map_err(|e| Error::sys("chdir /", e))
}

/// After pivot_root: create the working directory when it is missing, as runc
/// and docker do for an image whose WORKDIR no layer made (`mkdir -p`, every
/// step resolved inside the root). An existing one is left to chdir, symlinks and all.
pub fn make_cwd(cwd: &Path, explain: Explain) -> Result<(), Error> {
    let root = open_root()?;
    let rel = cwd.strip_prefix("/").unwrap_or(cwd);
    if rel.as_os_str().is_empty() {
        return Ok(());
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(root.as_fd(), rel, how) {
        Err(Errno::ENOENT) => {}
        _ => return Ok(()),
    }
    explain.call(
        format!("mkdirat({cwd:?}, 0755) for each missing component"),
        format!("mkdir -p {}", cwd.display()),
    );
    open_dir_in_root(root.as_fd(), rel, true)
        .map(drop)
        .map_err(|e| {
            Error::sys(
                format!("mkdir -p '{}' (the working directory)", cwd.display()),
                e,
            )
        })
}

/// `mount -o remount,bind,ro /` (the root's other flags kept).
pub fn make_root_readonly(explain: Explain) -> Result<(), Error> {
    let root = open_root()?;
    remount_readonly(&root, Path::new("/"), explain)
}

/// Step 5: masked and read-only paths, after pivot_root (so `/proc` is ours).
pub fn harden(masked: &[PathBuf], readonly: &[PathBuf], explain: Explain) -> Result<(), Error> {
    let root = open_root()?;
    let mut lookup = Lookup::new(root.as_fd());
    let mut null = None;
    for path in masked {
        let Some(target) = lookup.existing(path)? else {
            continue;
        };
        let is_dir =
            fstat(&target).map(|s| s.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits());
        let failed = |e| Error::sys(format!("mask '{}'", path.display()), e);
        if is_dir.map_err(failed)? {
            explain.call(
                format!("mount(\"tmpfs\", {path:?}, \"tmpfs\", MS_RDONLY, NULL)"),
                format!("mount -t tmpfs -o ro tmpfs {}", path.display()),
            );
            mount(
                Some("tmpfs"),
                &fd_path(&target),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(failed)?;
        } else {
            let null = match &null {
                Some(null) => null,
                None => null.insert(dev_null(root.as_fd())?),
            };
            explain.call(
                format!("mount(\"/dev/null\", {path:?}, NULL, MS_BIND, NULL)"),
                format!("mount --bind /dev/null {}", path.display()),
            );
            mount(
                Some(&fd_path(null)),
                &fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(failed)?;
        }
        lookup.mounted(path);
    }
    for path in readonly {
        let Some(target) = lookup.existing(path)? else {
            continue;
        };
        explain.call(
            format!("mount({path:?}, {path:?}, NULL, MS_BIND|MS_REC, NULL)"),
            format!("mount --rbind {0} {0}", path.display()),
        );
        let t = fd_path(&target);
        mount(
            Some(&t),
            &t,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("mount --rbind '{}'", path.display()), e))?;
        lookup.mounted(path);
        let Some(top) = lookup.existing(path)? else {
            continue;
        };
        remount_readonly(&top, path, explain)?;
    }
    Ok(())
}

/// Paths resolved inside the root for [`harden`], whose two dozen targets share
/// a few parent directories (`/proc`, `/sys`): each parent is resolved once
/// (openat2 with RESOLVE_IN_ROOT), until a mount at or above it hides what it saw.
struct Lookup<'a> {
    root: BorrowedFd<'a>,
    parents: Vec<(PathBuf, OwnedFd)>,
}

impl<'a> Lookup<'a> {
    fn new(root: BorrowedFd<'a>) -> Self {
        Lookup {
            root,
            parents: Vec::new(),
        }
    }

    /// The path's fd if it exists (masking a path the kernel lacks is a no-op).
    fn existing(&mut self, path: &Path) -> Result<Option<OwnedFd>, Error> {
        let (parent, name) = split_target(path).map_err(|reason| target_error(path, reason))?;
        let index = match self.parents.iter().position(|(p, _)| *p == parent) {
            Some(index) => index,
            None => match open_dir_in_root(self.root, &parent, false) {
                Ok(dir) => {
                    self.parents.push((parent, dir));
                    self.parents.len() - 1
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => {
                    let reason = format!("cannot resolve its parent directory: {}", e.desc());
                    return Err(target_error(path, reason));
                }
            },
        };
        match open_last(&self.parents[index].1, &name, path, Kind::Any, false) {
            Ok(fd) => Ok(Some(fd)),
            Err(Error::Target { reason, .. }) if reason == Errno::ENOENT.desc() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Something was mounted at `path`: forget the directories at or under it.
    fn mounted(&mut self, path: &Path) {
        let path = path.strip_prefix("/").unwrap_or(path);
        self.parents.retain(|(parent, _)| !parent.starts_with(path));
    }
}

fn open_root() -> Result<OwnedFd, Error> {
    nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("open /", e))
}

/// Our own `/dev/null`, checked to be the 1:3 character device: a `/dev/null`
/// swapped for a symlink would turn masking into exposing (CVE-2025-31133).
fn dev_null(root: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    let fd = resolve_in_root(root, Path::new("/dev/null"), Kind::Any, false)?;
    let st = fstat(&fd).map_err(|e| Error::sys("stat /dev/null", e))?;
    let is_char = st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFCHR.bits();
    if !is_char || major(st.st_rdev) != 1 || minor(st.st_rdev) != 3 {
        return Err(Error::Target {
            dest: PathBuf::from("/dev/null"),
            reason: "is not the null device; refusing to mask with it (CVE-2025-31133)".to_string(),
        });
    }
    Ok(fd)
}

/// A bind remount read-only that keeps nosuid/nodev/noexec as they were.
fn remount_readonly(target: &OwnedFd, shown: &Path, explain: Explain) -> Result<(), Error> {
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    if let Ok(vfs) = fstatvfs(target) {
        let kept = [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ];
        for (st, ms) in kept {
            if vfs.flags().contains(st) {
                flags |= ms;
            }
        }
    }
    explain.call(
        format!("mount(NULL, {shown:?}, NULL, {}, NULL)", flag_names(flags)),
        format!("mount -o remount,bind,ro {}", shown.display()),
    );
    mount(
        None::<&str>,
        &fd_path(target),
        None::<&str>,
        flags,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("mount -o remount,bind,ro '{}'", shown.display()), e))
}

/// `MS_BIND|MS_REC` for explain lines.
pub fn flag_names(flags: MsFlags) -> String {
    let table = [
        (MsFlags::MS_RDONLY, "MS_RDONLY"),
        (MsFlags::MS_NOSUID, "MS_NOSUID"),
        (MsFlags::MS_NODEV, "MS_NODEV"),
        (MsFlags::MS_NOEXEC, "MS_NOEXEC"),
        (MsFlags::MS_REMOUNT, "MS_REMOUNT"),
        (MsFlags::MS_BIND, "MS_BIND"),
        (MsFlags::MS_REC, "MS_REC"),
        (MsFlags::MS_STRICTATIME, "MS_STRICTATIME"),
        (MsFlags::MS_RELATIME, "MS_RELATIME"),
        (MsFlags::MS_NOATIME, "MS_NOATIME"),
    ];
    let names: Vec<&str> = table
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_parent_and_name() {
        assert_eq!(
            split_target(Path::new("/proc")).unwrap(),
            (PathBuf::new(), PathBuf::from("proc"))
        );
        assert_eq!(
            split_target(Path::new("/dev//pts/")).unwrap(),
            (PathBuf::from("dev"), PathBuf::from("pts"))
        );
        assert_eq!(
            split_target(Path::new("/a/../b")).unwrap(),
            (PathBuf::from("a/.."), PathBuf::from("b"))
        );
    }

    #[test]
    fn the_root_itself_is_no_target() {
        assert!(split_target(Path::new("/")).is_err());
        assert!(split_target(Path::new("/a/..")).is_err());
    }

    #[test]
    fn flag_names_read_like_the_headers() {
        assert_eq!(
            flag_names(MsFlags::MS_BIND | MsFlags::MS_REC),
            "MS_BIND|MS_REC"
        );
        assert_eq!(flag_names(MsFlags::empty()), "0");
    }
}

//! A fresh btrfs filesystem for one test: a sparse file, `mkfs.btrfs`, a loop device, a mount.
//!
//! By hand, the fixture is:
//!
//! ```sh
//! truncate -s 256M fs.img && mkfs.btrfs -q fs.img
//! dev=$(losetup --find --show fs.img) && mount "$dev" mnt
//! # ... the test ...
//! umount mnt && losetup -d "$dev" && rm fs.img
//! ```
//!
//! The mount point is a throwaway directory nobody else uses, so mounting it does not
//! change anything a host relies on. Dropping the value undoes every step, also while a
//! test panics; a mount still busy is detached lazily (`umount -l`), and the loop device
//! then goes away by itself once the last user lets go (the kernel's autoclear).
//!
//! Needs root and `mkfs.btrfs`, `losetup`, `mount`, `umount` (see [`LoopBtrfs::COMMANDS`]);
//! check them with `tests::prereq` first, so a run without them skips with a reason.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Below this size `mkfs.btrfs` refuses separate data and metadata block groups, so smaller
/// filesystems are made with `--mixed` (one kind of block group for both).
const MIN_SPLIT_MIB: u64 = 110;

/// A loop-mounted btrfs, unmounted, detached and deleted on drop.
#[derive(Debug)]
pub struct LoopBtrfs {
    /// Holds `fs.img` and the mount point `mnt`; `None` once deliberately leaked.
    dir: Option<TempDir>,
    mount: PathBuf,
    device: PathBuf,
}

impl LoopBtrfs {
    /// The programs [`LoopBtrfs::new`] runs, for `tests::prereq::require_commands`.
    pub const COMMANDS: &'static [&'static str] = &["mkfs.btrfs", "losetup", "mount", "umount"];

    /// Makes and mounts a btrfs of `size_mib` MiB (a sparse file: only what is written takes
    /// space). Panics with the failing command and its output: this is a test fixture.
    pub fn new(size_mib: u64) -> LoopBtrfs {
        match LoopBtrfs::try_new(size_mib) {
            Ok(fs) => fs,
            Err(err) => panic!("cannot set up a loop-mounted btrfs of {size_mib} MiB: {err}"),
        }
    }

    /// [`LoopBtrfs::new`] that returns the error instead of panicking.
    pub fn try_new(size_mib: u64) -> io::Result<LoopBtrfs> {
        let dir = tempfile::Builder::new().prefix("loop-btrfs-").tempdir()?;
        let image = dir.path().join("fs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount)?;

        File::create(&image)?.set_len(size_mib * 1024 * 1024)?;
        let mut mkfs = Command::new("mkfs.btrfs");
        mkfs.arg("-q");
        if size_mib < MIN_SPLIT_MIB {
            mkfs.arg("--mixed");
        }
        run(mkfs.arg(&image))?;

        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image))?;
        let device = PathBuf::from(device.trim());
        if let Err(err) = run(Command::new("mount")
            .args(["-t", "btrfs"])
            .arg(&device)
            .arg(&mount))
        {
            let _ = run(Command::new("losetup").arg("-d").arg(&device));
            return Err(err);
        }
        Ok(LoopBtrfs {
            dir: Some(dir),
            mount,
            device,
        })
    }

    /// The mount point: the top level of the fresh filesystem (subvolume id 5).
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// The loop device the filesystem lives on (`/dev/loopN`).
    pub fn device(&self) -> &Path {
        &self.device
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        let unmounted = run(Command::new("umount").arg(&self.mount))
            .or_else(|_| run(Command::new("umount").arg("-l").arg(&self.mount)));
        if let Err(err) = unmounted {
            // Removing the directory now would walk into the still-mounted filesystem: leave
            // it all in place and say where it is.
            eprintln!(
                "LoopBtrfs: cannot unmount {}: {err}; leaving it",
                self.mount.display()
            );
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
            return;
        }
        // With the filesystem still busy after a lazy unmount, the kernel turns this into
        // autoclear: the device detaches when its last user is gone.
        if let Err(err) = run(Command::new("losetup").arg("-d").arg(&self.device)) {
            eprintln!("LoopBtrfs: cannot detach {}: {err}", self.device.display());
        }
        // TempDir's own drop removes fs.img and the now empty mount point.
    }
}

/// Runs a command to completion; its stdout on success, an error naming it and quoting
/// its stderr otherwise.
fn run(cmd: &mut Command) -> io::Result<String> {
    let shown = describe(cmd);
    let out = cmd
        .output()
        .map_err(|err| io::Error::new(err.kind(), format!("cannot run `{shown}`: {err}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn can_run() -> bool {
        let root = nix::unistd::geteuid().is_root();
        let mkfs = Command::new("mkfs.btrfs").arg("--version").output().is_ok();
        if !(root && mkfs) {
            eprintln!("SKIP: LoopBtrfs needs root and mkfs.btrfs");
        }
        root && mkfs
    }

    fn is_mounted(path: &Path) -> bool {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let path = path.to_string_lossy();
        mountinfo
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(&*path))
    }

    #[test]
    fn mounts_a_btrfs_and_cleans_up() {
        if !can_run() {
            return;
        }
        let fs = LoopBtrfs::new(128);
        let mount = fs.path().to_path_buf();
        let image = mount.with_file_name("fs.img");
        let stat = nix::sys::statfs::statfs(fs.path()).expect("statfs");
        assert_eq!(stat.filesystem_type(), nix::sys::statfs::BTRFS_SUPER_MAGIC);
        std::fs::write(fs.path().join("hello"), b"hi").expect("write on the new btrfs");
        let device = fs.device().to_path_buf();
        drop(fs);
        assert!(!is_mounted(&mount), "{} still mounted", mount.display());
        assert!(!image.exists(), "{} left behind", image.display());
        let loops = run(Command::new("losetup").arg("-a")).unwrap_or_default();
        assert!(
            !loops.contains(&*image.to_string_lossy()),
            "{} still attached to {}",
            image.display(),
            device.display()
        );
    }

    #[test]
    fn small_sizes_use_mixed_block_groups() {
        if !can_run() {
            return;
        }
        let fs = LoopBtrfs::new(32);
        std::fs::write(fs.path().join("x"), b"x").expect("write on a small btrfs");
    }

    #[test]
    fn cleans_up_when_the_test_panics() {
        if !can_run() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let result = std::panic::catch_unwind(move || {
            let fs = LoopBtrfs::new(128);
            tx.send(fs.path().to_path_buf()).ok();
            panic!("a failing test");
        });
        assert!(result.is_err());
        let mount = rx.recv().expect("the mount point");
        assert!(!is_mounted(&mount));
        assert!(!mount.parent().is_some_and(Path::exists));
    }

    #[test]
    fn busy_mount_is_detached_lazily() {
        if !can_run() {
            return;
        }
        let fs = LoopBtrfs::new(128);
        let mount = fs.path().to_path_buf();
        let held = File::create(fs.path().join("open")).expect("create");
        drop(fs);
        assert!(!is_mounted(&mount));
        drop(held);
    }
}

//! Which filesystem a path is on, for the "not on btrfs" error: `statfs(2)`'s `f_type`
//! magic number decides; the name comes from the mount table (`/proc/self/mountinfo`,
//! the entry whose device is the path's), since one magic can stand for several
//! filesystems (ext2, ext3 and ext4 share 0xEF53), else from a table of magic numbers.

use std::os::fd::BorrowedFd;

use nix::sys::stat::fstat;
use nix::sys::statfs::fstatfs;

/// `BTRFS_SUPER_MAGIC` from `linux/magic.h`.
pub const BTRFS_MAGIC: i64 = 0x9123_683E;

/// The name of the filesystem with statfs magic `magic`, as `/proc/mounts` shows it.
pub fn filesystem_name(magic: i64) -> Option<&'static str> {
    // linux/magic.h, the filesystems a container host is likely to have.
    Some(match magic {
        0x9123_683E => "btrfs",
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlay",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x6969 => "nfs",
        0xFF53_4D42 | 0xFE53_4D42 => "cifs",
        0x6573_5546 => "fuse",
        0x0102_1997 => "9p",
        0x8584_58F6 => "ramfs",
        0x9FA0 => "proc",
        0x6265_6572 => "sysfs",
        0x1CD1 => "devpts",
        0x4D44 => "vfat",
        0x2011_BAB0 => "exfat",
        0x5346_544E => "ntfs",
        0x7371_7368 => "squashfs",
        0xE0F5_E1E2 => "erofs",
        0x6367_7270 => "cgroup2",
        0x0027_E0EB => "cgroup",
        _ => return None,
    })
}

/// What the directory open as `fd` is on: `None` for btrfs, else a description such as
/// `tmpfs` or `ext4 (the root filesystem)`.
pub fn not_btrfs(fd: BorrowedFd) -> nix::Result<Option<String>> {
    let stat = fstatfs(fd)?;
    // f_type's width differs between architectures; the magic numbers fit in 32 bits.
    #[allow(clippy::unnecessary_cast)]
    let magic = stat.filesystem_type().0 as i64 & 0xFFFF_FFFF;
    if magic == BTRFS_MAGIC {
        return Ok(None);
    }
    let here = fstat(fd)?;
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|table| {
            let (major, minor) = (
                nix::sys::stat::major(here.st_dev),
                nix::sys::stat::minor(here.st_dev),
            );
            mount_type(&table, major, minor)
        });
    let mut name = match (mounted, filesystem_name(magic)) {
        (Some(name), _) => name,
        (None, Some(name)) => name.to_owned(),
        (None, None) => format!("a filesystem with statfs magic {magic:#x}"),
    };
    // The root filesystem is the common surprise ("isn't my disk btrfs?"): say so.
    if nix::sys::stat::stat("/").is_ok_and(|root| root.st_dev == here.st_dev) {
        name.push_str(" (the root filesystem)");
    }
    Ok(Some(name))
}

/// The filesystem type of the mount of device `major:minor` in a mountinfo table
/// (proc(5): field 3 is `major:minor`, the type follows the ` - ` separator).
pub fn mount_type(mountinfo: &str, major: u64, minor: u64) -> Option<String> {
    let device = format!("{major}:{minor}");
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        if fields.nth(2)? != device {
            return None;
        }
        let (_, after) = line.split_once(" - ")?;
        after.split(' ').next().map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_common_filesystems() {
        assert_eq!(filesystem_name(0x9123_683E), Some("btrfs"));
        assert_eq!(filesystem_name(0xEF53), Some("ext4"));
        assert_eq!(filesystem_name(0x0102_1994), Some("tmpfs"));
        assert_eq!(filesystem_name(0x794C_7630), Some("overlay"));
        assert_eq!(filesystem_name(0x1234), None);
    }

    #[test]
    fn mount_types_come_from_mountinfo() {
        let table = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                     27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                     30 27 0:45 / /tmp rw master:3 - tmpfs tmpfs rw,size=10g\n";
        assert_eq!(mount_type(table, 254, 0).as_deref(), Some("ext4"));
        assert_eq!(mount_type(table, 0, 45).as_deref(), Some("tmpfs"));
        assert_eq!(mount_type(table, 0, 4), None);
        assert_eq!(mount_type("garbage", 0, 4), None);
    }
}

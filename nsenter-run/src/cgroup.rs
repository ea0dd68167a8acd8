//! Control groups: the other half of a container. Namespaces decide what a
//! process can *see*; cgroups decide how much it can *use* (cgroups(7)).
//!
//! Two layouts exist and both are met in the wild:
//! - v2, the unified hierarchy: one tree at `/sys/fs/cgroup` (`cgroup2`), each
//!   controller enabled in `cgroup.subtree_control`, limits in `memory.max`,
//!   `pids.max`, `cpu.max`;
//! - v1: one tree per controller (`/sys/fs/cgroup/memory`, `.../pids`, ...),
//!   limits in `memory.limit_in_bytes`, `pids.max`, `cpu.cfs_quota_us`. A
//!   "hybrid" host also mounts an (often empty) cgroup2 tree at
//!   `/sys/fs/cgroup/unified`; a controller lives in exactly one of them.
//!
//! The layout is read from `/proc/self/mountinfo` (proc(5)), never guessed
//! from paths; the parsing is pure and unit-tested for both layouts.

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, the fields used here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted (octal escapes such as `\040` decoded).
    pub point: PathBuf,
    /// The root of the mount within its filesystem.
    pub root: PathBuf,
    pub fstype: String,
    /// Per-superblock options: for cgroup v1 the controllers (`memory`, `name=systemd`).
    pub super_options: Vec<String>,
}

/// Parse mountinfo (`ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS...] - TYPE SOURCE SUPEROPTS`).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                root: PathBuf::from(unescape(left.get(3)?)),
                point: PathBuf::from(unescape(left.get(4)?)),
                fstype: right.first()?.to_string(),
                super_options: right
                    .get(2)
                    .map(|o| o.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A v1 hierarchy: its mount point and the controllers bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub point: PathBuf,
    /// `memory`, `cpu`, `cpuacct`, `name=systemd`, ...
    pub controllers: Vec<String>,
}

/// The controllers a v1 mount carries (its super options minus the generic ones).
fn v1_controllers(options: &[String]) -> Vec<String> {
    const GENERIC: [&str; 6] = [
        "rw",
        "ro",
        "relatime",
        "noprefix",
        "clone_children",
        "xattr",
    ];
    options
        .iter()
        .filter(|o| !GENERIC.contains(&o.as_str()) && !o.starts_with("release_agent="))
        .cloned()
        .collect()
}

/// The cgroup layout of a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Where the cgroup2 tree is mounted, if anywhere (`/sys/fs/cgroup` on a
    /// pure v2 host, `/sys/fs/cgroup/unified` on a hybrid one).
    pub unified: Option<PathBuf>,
    /// The v1 hierarchies (empty on a pure v2 host).
    pub v1: Vec<Hierarchy>,
}

impl Layout {
    /// Read from mountinfo text.
    pub fn detect(mountinfo: &str) -> Self {
        let mut unified = None;
        let mut v1 = Vec::new();
        for m in parse_mountinfo(mountinfo) {
            match m.fstype.as_str() {
                // The first cgroup2 mount wins: a container's own view comes later.
                "cgroup2" if unified.is_none() => unified = Some(m.point),
                "cgroup" => v1.push(Hierarchy {
                    controllers: v1_controllers(&m.super_options),
                    point: m.point,
                }),
                _ => {}
            }
        }
        Layout { unified, v1 }
    }

    /// This host's layout.
    pub fn current() -> Self {
        Layout::detect(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// Only the unified hierarchy (no v1 trees).
    pub fn is_pure_v2(&self) -> bool {
        self.unified.is_some() && self.v1.is_empty()
    }

    /// The v1 hierarchy holding `controller`.
    pub fn v1_hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

/// What a container's `/sys/fs/cgroup` mount becomes on a v1 host: a tmpfs
/// holding one read-only cgroup v1 mount per hierarchy, as runc builds it. In
/// the container's cgroup namespace each shows the container's own cgroup as `/`.
pub fn v1_container_mounts(layout: &Layout, base: &Path) -> Vec<(PathBuf, String)> {
    layout
        .v1
        .iter()
        .filter_map(|h| {
            let name = h.point.file_name()?;
            Some((base.join(name), h.controllers.join(",")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kind of host: v1 controllers, an empty cgroup2 at `unified`.
    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd host of today.
    const UNIFIED: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// An older Docker host: cpu and cpuacct co-mounted.
    const COMOUNTED: &str = "\
33 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn a_hybrid_host_has_both() {
        let l = Layout::detect(HYBRID);
        assert_eq!(l.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(l.v1.len(), 4);
        assert!(!l.is_pure_v2());
        assert_eq!(
            l.v1_hierarchy("memory").unwrap().point,
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            l.v1_hierarchy("name=systemd").unwrap().controllers,
            vec!["name=systemd"]
        );
        assert!(l.v1_hierarchy("cpuset").is_none());
    }

    #[test]
    fn a_unified_host_has_only_v2() {
        let l = Layout::detect(UNIFIED);
        assert_eq!(l.unified, Some(PathBuf::from("/sys/fs/cgroup")));
        assert!(l.is_pure_v2());
        assert!(v1_container_mounts(&l, Path::new("/sys/fs/cgroup")).is_empty());
    }

    #[test]
    fn comounted_controllers_share_a_hierarchy() {
        let l = Layout::detect(COMOUNTED);
        assert_eq!(l.v1_hierarchy("cpuacct"), l.v1_hierarchy("cpu"));
        assert_eq!(
            v1_container_mounts(&l, Path::new("/sys/fs/cgroup")),
            vec![(
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                "cpu,cpuacct".to_string()
            )]
        );
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let m = parse_mountinfo("1 2 0:3 / /mnt/a\\040b rw - tmpfs tmpfs rw\n");
        assert_eq!(m[0].point, PathBuf::from("/mnt/a b"));
        assert!(parse_mountinfo("garbage line\n").is_empty());
    }
}

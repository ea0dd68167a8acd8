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

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::explain::Explain;
use crate::Error;

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
    /// The cgroup shown at `point` (not `/` when the host itself runs in a container).
    pub root: PathBuf,
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
    /// Where the cgroup2 tree is mounted and which cgroup it shows there, if
    /// anywhere (`/sys/fs/cgroup` on a pure v2 host, `/sys/fs/cgroup/unified`
    /// on a hybrid one).
    pub unified: Option<(PathBuf, PathBuf)>,
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
                "cgroup2" if unified.is_none() => unified = Some((m.point, m.root)),
                "cgroup" => v1.push(Hierarchy {
                    controllers: v1_controllers(&m.super_options),
                    point: m.point,
                    root: m.root,
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

/// `--memory`, `--pids`, `--cpus`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    /// CPUs' worth of time per period (0.5 = half of one CPU).
    pub cpus: Option<f64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none() && self.cpus.is_none()
    }
}

/// `64M`, `1g`, `512k`, `1048576`: binary units, as docker reads `--memory`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit
        .to_ascii_lowercase()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => {
            return Err(format!(
                "'{text}' is not a size (like 64M, 1G, 512k or a number of bytes)"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (like 64M, 1G, 512k or a number of bytes)"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!(
            "'{text}' is below the 1 MiB a container needs to start"
        ));
    }
    Ok(bytes)
}

/// The CFS period and the quota for `cpus` CPUs (`cpu.max` / `cpu.cfs_quota_us`).
pub fn cpu_quota(cpus: f64) -> Result<(u64, u64), String> {
    const PERIOD: u64 = 100_000;
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err(format!("--cpus {cpus}: must be a number above 0"));
    }
    let quota = (cpus * PERIOD as f64).round() as u64;
    // The kernel's floor for a quota is 1 ms.
    Ok((PERIOD, quota.max(1000)))
}

/// Where a controller lives on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the unified tree, enabled there (listed in `cgroup.controllers`).
    V2,
    /// In this v1 hierarchy.
    V1(Hierarchy),
}

/// Choose v2 when the unified hierarchy offers the controller, else the v1
/// hierarchy that has it (a hybrid host like this one: v1 for all).
pub fn place(layout: &Layout, v2_controllers: &str, controller: &str) -> Option<Placement> {
    if layout.unified.is_some() && v2_controllers.split_whitespace().any(|c| c == controller) {
        return Some(Placement::V2);
    }
    layout.v1_hierarchy(controller).cloned().map(Placement::V1)
}

/// This process' cgroup in each hierarchy, from `/proc/self/cgroup`
/// (`ID:CONTROLLERS:PATH`; `0::PATH` is the unified one): the controllers
/// (empty for v2) and the path.
pub fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, PathBuf)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((controllers, PathBuf::from(path)))
        })
        .collect()
}

/// The directory for a new cgroup `name` below `own` (a cgroup in that
/// hierarchy), under the hierarchy mounted at `point` showing `root`.
pub fn child_dir(point: &Path, root: &Path, own: &Path, name: &str) -> PathBuf {
    let relative = own.strip_prefix(root).unwrap_or(own);
    let relative = relative.strip_prefix("/").unwrap_or(relative);
    point.join(relative).join(name)
}

/// One container's cgroup: a directory per hierarchy used, removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    /// The directories made, with whether they are v2.
    dirs: Vec<(PathBuf, bool)>,
    /// Where the memory controller's files are (for the OOM count).
    memory: Option<(PathBuf, bool)>,
    explain: Explain,
}

impl Cgroup {
    /// Make the cgroup `name` with the limits (not joined yet).
    pub fn create(limits: &Limits, name: &str, explain: Explain) -> Result<Cgroup, Error> {
        let layout = Layout::current();
        let own =
            parse_proc_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
        let mut cgroup = Cgroup {
            dirs: Vec::new(),
            memory: None,
            explain,
        };
        let mut wanted = Vec::new();
        if limits.memory.is_some() {
            wanted.push("memory");
        }
        if limits.pids.is_some() {
            wanted.push("pids");
        }
        if limits.cpus.is_some() {
            wanted.push("cpu");
        }
        // v2's "no internal processes" rule: a cgroup holding processes (ours
        // does: nsenter-run is in it) cannot hand controllers to children, so
        // the container's cgroup is a sibling there. v1 has no such rule: nested.
        let v2_dir = layout.unified.as_ref().map(|(point, root)| {
            let own_v2 = own
                .iter()
                .find(|(c, _)| c.is_empty())
                .map_or(Path::new("/"), |(_, p)| p.as_path());
            child_dir(point, root, own_v2.parent().unwrap_or(Path::new("/")), name)
        });
        let v2_controllers = v2_dir
            .as_ref()
            .and_then(|d| d.parent())
            .and_then(|parent| std::fs::read_to_string(parent.join("cgroup.controllers")).ok())
            .unwrap_or_default();
        for controller in wanted {
            let dir = match place(&layout, &v2_controllers, controller) {
                Some(Placement::V2) => {
                    let dir = v2_dir
                        .clone()
                        .ok_or_else(|| Error::Invalid("no cgroup2 tree".to_string()))?;
                    if let Some(parent) = dir.parent() {
                        // cgroups(7) v2: a controller must be enabled in the
                        // parent's subtree_control for the child to have its files.
                        write_value(
                            &parent.join("cgroup.subtree_control"),
                            &format!("+{controller}"),
                            explain,
                        )?;
                    }
                    (dir, true)
                }
                Some(Placement::V1(h)) => {
                    let own_v1 = own
                        .iter()
                        .find(|(c, _)| !c.is_empty() && same_set(c, &h.controllers))
                        .map_or(PathBuf::from("/"), |(_, p)| p.clone());
                    (child_dir(&h.point, &h.root, &own_v1, name), false)
                }
                None => {
                    return Err(Error::Invalid(format!(
                        "the '{controller}' cgroup controller is not available on this host"
                    )))
                }
            };
            if !cgroup.dirs.contains(&dir) {
                explain.call(
                    format!("mkdir({:?}, 0755)", dir.0),
                    format!("mkdir {}", dir.0.display()),
                );
                std::fs::create_dir(&dir.0).map_err(|source| Error::Path {
                    what: "cannot create cgroup",
                    path: dir.0.clone(),
                    source,
                })?;
                cgroup.dirs.push(dir.clone());
            }
            let (path, v2) = &dir;
            match (controller, v2) {
                ("memory", true) => {
                    let bytes = limits.memory.unwrap_or(0).to_string();
                    write_value(&path.join("memory.max"), &bytes, explain)?;
                    // No swap: past the limit the OOM killer acts, as the user asked.
                    if path.join("memory.swap.max").exists() {
                        write_value(&path.join("memory.swap.max"), "0", explain)?;
                    }
                    cgroup.memory = Some(dir.clone());
                }
                ("memory", false) => {
                    let bytes = limits.memory.unwrap_or(0).to_string();
                    write_value(&path.join("memory.limit_in_bytes"), &bytes, explain)?;
                    // memsw (memory+swap) must not be below the memory limit: set after it.
                    if path.join("memory.memsw.limit_in_bytes").exists() {
                        write_value(&path.join("memory.memsw.limit_in_bytes"), &bytes, explain)?;
                    }
                    cgroup.memory = Some(dir.clone());
                }
                ("pids", _) => write_value(
                    &path.join("pids.max"),
                    &limits.pids.unwrap_or(0).to_string(),
                    explain,
                )?,
                ("cpu", v2) => {
                    let (period, quota) =
                        cpu_quota(limits.cpus.unwrap_or(1.0)).map_err(Error::Invalid)?;
                    if *v2 {
                        write_value(&path.join("cpu.max"), &format!("{quota} {period}"), explain)?;
                    } else {
                        write_value(
                            &path.join("cpu.cfs_period_us"),
                            &period.to_string(),
                            explain,
                        )?;
                        write_value(&path.join("cpu.cfs_quota_us"), &quota.to_string(), explain)?;
                    }
                }
                _ => {}
            }
        }
        Ok(cgroup)
    }

    /// Move a process in: `echo PID > cgroup.procs` in every directory.
    pub fn join(&self, pid: i32) -> Result<(), Error> {
        for (dir, _) in &self.dirs {
            write_value(&dir.join("cgroup.procs"), &pid.to_string(), self.explain)?;
        }
        Ok(())
    }

    /// The directories, for tests and `--explain`.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(d, _)| d.clone()).collect()
    }

    /// How many times the kernel's OOM killer struck in this cgroup
    /// (`oom_kill` in `memory.events` on v2, `memory.oom_control` on v1).
    pub fn oom_kills(&self) -> u64 {
        let Some((dir, v2)) = &self.memory else {
            return 0;
        };
        let file = if *v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    /// `rmdir` each directory; the last processes of a killed container may
    /// take a moment to leave it (EBUSY).
    fn drop(&mut self) {
        for (dir, _) in self.dirs.iter().rev() {
            self.explain.call(
                format!("rmdir({dir:?})"),
                format!("rmdir {}", dir.display()),
            );
            for _ in 0..100 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    _ => break,
                }
            }
        }
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// One value, one write(2): a v1 cgroup file takes each write as a whole new
/// value, so `echo` in two writes ("64M" then "\n") would set the limit to 0.
pub fn write_value(path: &Path, value: &str, explain: Explain) -> Result<(), Error> {
    explain.call(
        format!("write({path:?}, {value:?})"),
        format!("echo {value} > {}", path.display()),
    );
    let failed = |e: Errno| Error::sys(format!("write '{value}' to '{}'", path.display()), e);
    let fd = nix::fcntl::open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(failed)?;
    let n = nix::unistd::write(&fd, value.as_bytes()).map_err(failed)?;
    if n != value.len() {
        return Err(failed(Errno::EIO));
    }
    Ok(())
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
        assert_eq!(
            l.unified.as_ref().unwrap().0,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
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
        assert_eq!(
            l.unified.as_ref().unwrap().0,
            PathBuf::from("/sys/fs/cgroup")
        );
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
    fn sizes_read_like_docker() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("12").unwrap_err().contains("1 MiB"));
        assert!(parse_size("lots").unwrap_err().contains("'lots'"));
        assert!(parse_size("5X").is_err());
    }

    #[test]
    fn cpus_become_a_quota() {
        assert_eq!(cpu_quota(0.5).unwrap(), (100_000, 50_000));
        assert_eq!(cpu_quota(2.0).unwrap(), (100_000, 200_000));
        assert_eq!(cpu_quota(0.001).unwrap(), (100_000, 1000));
        assert!(cpu_quota(0.0).is_err());
        assert!(cpu_quota(f64::NAN).is_err());
    }

    #[test]
    fn controllers_go_where_the_host_has_them() {
        let hybrid = Layout::detect(HYBRID);
        // The unified tree here offers nothing: v1 it is.
        assert!(
            matches!(place(&hybrid, "", "memory"), Some(Placement::V1(h)) if h.point.ends_with("memory"))
        );
        assert_eq!(place(&hybrid, "", "cpuset"), None);
        let unified = Layout::detect(UNIFIED);
        assert_eq!(
            place(&unified, "cpuset cpu io memory pids", "memory"),
            Some(Placement::V2)
        );
        assert_eq!(place(&unified, "cpu io", "pids"), None);
    }

    #[test]
    fn own_cgroups_are_read_per_hierarchy() {
        let own = parse_proc_cgroup(
            "4:memory:/process_api/c42\n1:cpu,cpuacct:/\n0::/user.slice/x.scope\n",
        );
        assert_eq!(
            own[0],
            (
                vec!["memory".to_string()],
                PathBuf::from("/process_api/c42")
            )
        );
        assert_eq!(own[1].0, vec!["cpu".to_string(), "cpuacct".to_string()]);
        assert_eq!(own[2], (vec![], PathBuf::from("/user.slice/x.scope")));
    }

    #[test]
    fn a_new_cgroup_sits_beside_our_own() {
        let dir = child_dir(
            Path::new("/sys/fs/cgroup/memory"),
            Path::new("/"),
            Path::new("/a/b"),
            "c1",
        );
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/memory/a/b/c1"));
        // A hierarchy mounted from a sub-cgroup (the host itself in a container).
        let dir = child_dir(
            Path::new("/sys/fs/cgroup"),
            Path::new("/docker/x"),
            Path::new("/docker/x/y"),
            "c1",
        );
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/y/c1"));
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let m = parse_mountinfo("1 2 0:3 / /mnt/a\\040b rw - tmpfs tmpfs rw\n");
        assert_eq!(m[0].point, PathBuf::from("/mnt/a b"));
        assert!(parse_mountinfo("garbage line\n").is_empty());
    }
}

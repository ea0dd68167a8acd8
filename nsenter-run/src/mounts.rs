//! Mount entries: runtime-spec `mounts` (config.md "Mounts") turned into
//! mount(2) arguments, and the default list a container gets without a bundle
//! (the same as `runc spec`: proc, a tmpfs `/dev`, devpts, shm, mqueue, sysfs).
//!
//! Deciding only: the syscalls are in `rootfs.rs`.

use std::path::PathBuf;

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

/// One mount, ready for mount(2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPlan {
    /// Where in the container (absolute, resolved inside the rootfs).
    pub destination: PathBuf,
    /// `proc`, `tmpfs`, `sysfs`, `devpts`, `mqueue`, `cgroup`, `bind`, ...
    pub fstype: String,
    /// The source: a host path for binds, a label otherwise.
    pub source: PathBuf,
    /// Flags for the first mount(2) (MS_BIND, MS_REC, MS_NOSUID, ...).
    pub flags: MsFlags,
    /// Propagation to set afterwards (MS_PRIVATE, MS_SLAVE, ... maybe with MS_REC).
    pub propagation: MsFlags,
    /// Filesystem options that are not flags (`mode=755,size=65536k`).
    pub data: String,
}

impl MountPlan {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// A bind mount ignores every flag but MS_BIND|MS_REC on its first call:
    /// MS_RDONLY, MS_NOSUID... need a second `MS_REMOUNT|MS_BIND` call.
    pub fn bind_remount_flags(&self) -> Option<MsFlags> {
        let extra = self.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        (self.is_bind() && !extra.is_empty())
            .then_some(extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT)
    }

    /// The `mount ...` command this mirrors, for `--explain`.
    pub fn classic(&self, target: &str) -> String {
        let mut opts: Vec<String> = option_names(self.flags);
        if !self.data.is_empty() {
            opts.push(self.data.clone());
        }
        let o = if opts.is_empty() {
            String::new()
        } else {
            format!(" -o {}", opts.join(","))
        };
        if self.is_bind() {
            let kind = if self.flags.contains(MsFlags::MS_REC) {
                "--rbind"
            } else {
                "--bind"
            };
            format!("mount {kind}{o} {} {target}", self.source.display())
        } else {
            format!(
                "mount -t {}{o} {} {target}",
                self.fstype,
                self.source.display()
            )
        }
    }
}

/// Parse one runtime-spec mount. Unknown options are passed to the filesystem
/// as data, as runc does.
pub fn plan(mount: &Mount) -> Result<MountPlan, String> {
    let destination = mount.destination().clone();
    if !destination.is_absolute() {
        return Err(format!(
            "mount destination '{}' is not absolute",
            destination.display()
        ));
    }
    let mut fstype = mount.typ().clone().unwrap_or_default();
    let source = mount
        .source()
        .clone()
        .unwrap_or_else(|| PathBuf::from(&fstype));
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for opt in mount.options().iter().flatten() {
        let opt = opt.as_str();
        if let Some((set, f)) = flag_of(opt) {
            if set {
                flags |= f;
            } else {
                flags &= !f;
            }
        } else if let Some(p) = propagation_of(opt) {
            propagation = p;
        } else {
            data.push(opt.to_string());
        }
    }
    if fstype == "bind" || fstype.is_empty() && flags.contains(MsFlags::MS_BIND) {
        fstype = "bind".to_string();
        flags |= MsFlags::MS_BIND;
    }
    if flags.contains(MsFlags::MS_BIND) {
        fstype = "bind".to_string();
    }
    if fstype.is_empty() {
        return Err(format!("mount at '{}' has no type", destination.display()));
    }
    Ok(MountPlan {
        destination,
        fstype,
        source,
        flags,
        propagation,
        data: data.join(","),
    })
}

/// `(set?, flag)` for a flag option of mount(8).
fn flag_of(opt: &str) -> Option<(bool, MsFlags)> {
    Some(match opt {
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "suid" => (false, MsFlags::MS_NOSUID),
        "nodev" => (true, MsFlags::MS_NODEV),
        "dev" => (false, MsFlags::MS_NODEV),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "exec" => (false, MsFlags::MS_NOEXEC),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        "async" => (false, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (true, MsFlags::MS_DIRSYNC),
        "remount" => (true, MsFlags::MS_REMOUNT),
        "mand" => (true, MsFlags::MS_MANDLOCK),
        "nomand" => (false, MsFlags::MS_MANDLOCK),
        "atime" => (false, MsFlags::MS_NOATIME),
        "noatime" => (true, MsFlags::MS_NOATIME),
        "diratime" => (false, MsFlags::MS_NODIRATIME),
        "nodiratime" => (true, MsFlags::MS_NODIRATIME),
        "relatime" => (true, MsFlags::MS_RELATIME),
        "norelatime" => (false, MsFlags::MS_RELATIME),
        "strictatime" => (true, MsFlags::MS_STRICTATIME),
        "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
        "bind" => (true, MsFlags::MS_BIND),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        _ => return None,
    })
}

fn propagation_of(opt: &str) -> Option<MsFlags> {
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// mount(8) names of the flags set, for explain lines.
pub fn option_names(flags: MsFlags) -> Vec<String> {
    let table = [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_NOSUID, "nosuid"),
        (MsFlags::MS_NODEV, "nodev"),
        (MsFlags::MS_NOEXEC, "noexec"),
        (MsFlags::MS_STRICTATIME, "strictatime"),
        (MsFlags::MS_RELATIME, "relatime"),
        (MsFlags::MS_NOATIME, "noatime"),
        (MsFlags::MS_REMOUNT, "remount"),
    ];
    table
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| n.to_string())
        .collect()
}

/// The mounts every container gets without a bundle: `runc spec`'s list.
pub fn default_mounts() -> Vec<Mount> {
    let m = |dest: &str, typ: &str, src: &str, opts: &[&str]| {
        let mut mount = Mount::default();
        mount
            .set_destination(PathBuf::from(dest))
            .set_typ(Some(typ.to_string()))
            .set_source(Some(PathBuf::from(src)))
            .set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
        mount
    };
    vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        m(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        m(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(dest: &str, typ: Option<&str>, src: &str, opts: &[&str]) -> Mount {
        let mut m = Mount::default();
        m.set_destination(dest.into())
            .set_typ(typ.map(str::to_string))
            .set_source(Some(src.into()))
            .set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
        m
    }

    #[test]
    fn flags_and_data_are_split() {
        let p = plan(&mount(
            "/dev",
            Some("tmpfs"),
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ))
        .unwrap();
        assert_eq!(p.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(p.data, "mode=755,size=65536k");
        assert_eq!(
            p.classic("/dev"),
            "mount -t tmpfs -o nosuid,strictatime,mode=755,size=65536k tmpfs /dev"
        );
    }

    #[test]
    fn binds_need_a_remount_for_their_flags() {
        let p = plan(&mount(
            "/data",
            Some("bind"),
            "/srv/data",
            &["rbind", "ro", "rprivate"],
        ))
        .unwrap();
        assert!(p.is_bind());
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(
            p.bind_remount_flags(),
            Some(MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REMOUNT)
        );
        let plain = plan(&mount("/data", None, "/srv/data", &["bind"])).unwrap();
        assert_eq!(plain.fstype, "bind");
        assert_eq!(plain.bind_remount_flags(), None);
        assert_eq!(plain.classic("/data"), "mount --bind /srv/data /data");
    }

    #[test]
    fn later_options_win() {
        let p = plan(&mount("/x", Some("tmpfs"), "tmpfs", &["ro", "rw"])).unwrap();
        assert!(!p.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn relative_destinations_and_missing_types_are_refused() {
        assert!(plan(&mount("x", Some("tmpfs"), "tmpfs", &[]))
            .unwrap_err()
            .contains("'x'"));
        assert!(plan(&mount("/x", None, "tmpfs", &[]))
            .unwrap_err()
            .contains("no type"));
    }

    #[test]
    fn defaults_are_runcs() {
        let dests: Vec<_> = default_mounts()
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        let want: Vec<PathBuf> = [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dests, want);
        let sys = plan(&default_mounts()[5]).unwrap();
        assert!(sys.flags.contains(MsFlags::MS_RDONLY));
    }
}

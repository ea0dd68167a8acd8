//! What to run: the command line's flags over a runtime-spec bundle
//! (`config.json` + `rootfs/`, runtime-spec `bundle.md` and `config.md`) over
//! the defaults. The bundle may come from unpack-layers, umoci or `runc spec`.
//!
//! Fields that change what isolates the container and that nsenter-run does not
//! implement (user namespaces, seccomp, LSM labels, joining namespaces) are
//! refused: running without them silently would be less safe than the bundle
//! asked. Harmless ones it does not implement are listed by `--explain`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::caps::{self, CapSets};
use crate::cgroup::{cpu_quota, parse_size, Limits};
use crate::explain::Explain;
use crate::mounts::{self, MountPlan};
use crate::rootfs::{DEFAULT_MASKED, DEFAULT_READONLY};
use crate::user::UserSpec;
use crate::veth::VethPlan;
use crate::{Container, Error, NetMode, Options, DEFAULT_PATH};

/// Read `DIR/config.json`.
pub fn load(dir: &Path) -> Result<Spec, Error> {
    let path = dir.join("config.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!(
                "no config.json in bundle '{}'",
                dir.display()
            )))
        }
        Err(source) => {
            return Err(Error::Path {
                what: "cannot read bundle config",
                path,
                source,
            })
        }
    };
    serde_json::from_slice(&bytes).map_err(|source| Error::Bundle { path, source })
}

/// Merge flags, bundle and defaults into the container to start.
pub fn resolve(options: &Options, explain: Explain) -> Result<Container, Error> {
    let spec = match &options.bundle {
        Some(dir) => Some(load(dir)?),
        None => None,
    };
    let bundle_dir = options.bundle.as_deref();
    if let (Some(spec), Some(dir)) = (&spec, bundle_dir) {
        refuse_unsupported(spec, dir)?;
        list_ignored(spec, explain);
    }
    let process = spec.as_ref().and_then(|s| s.process().as_ref());

    let rootfs = match (&options.rootfs, &spec, bundle_dir) {
        (Some(r), _, _) => r.clone(),
        (None, Some(spec), Some(dir)) => {
            let p = spec
                .root()
                .as_ref()
                .map_or_else(|| PathBuf::from("rootfs"), |r| r.path().clone());
            dir.join(p)
        }
        _ => {
            return Err(Error::Invalid(
                "give --rootfs DIR or --bundle DIR".to_string(),
            ))
        }
    };
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|source| Error::Path {
        what: "cannot open rootfs",
        path: rootfs.clone(),
        source,
    })?;
    if !rootfs.is_dir() {
        return Err(Error::Invalid(format!(
            "rootfs '{}' is not a directory",
            rootfs.display()
        )));
    }

    let name_source = bundle_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| rootfs.clone());
    let hostname = match (
        &options.hostname,
        spec.as_ref().and_then(|s| s.hostname().clone()),
    ) {
        (Some(h), _) => h.clone(),
        (None, Some(h)) if !h.is_empty() => h,
        _ => std::fs::canonicalize(&name_source)
            .unwrap_or(name_source)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "container".to_string()),
    };
    check_hostname(&hostname)?;

    let args: Vec<OsString> = if !options.command.is_empty() {
        options.command.clone()
    } else if let Some(args) = process
        .and_then(|p| p.args().clone())
        .filter(|a| !a.is_empty())
    {
        args.into_iter().map(OsString::from).collect()
    } else {
        vec![OsString::from("/bin/sh")]
    };

    let mut env: Vec<String> = match process {
        Some(p) => p.env().clone().unwrap_or_default(),
        None => {
            let mut env = vec![format!("PATH={DEFAULT_PATH}")];
            if let Ok(term) = std::env::var("TERM") {
                if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
                    env.push(format!("TERM={term}"));
                }
            }
            env
        }
    };
    for kv in &options.env {
        let Some((key, _)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Error::Invalid(format!("--env '{kv}': expected KEY=VALUE")));
        };
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(kv.clone());
    }

    let cwd = options
        .cwd
        .clone()
        .or_else(|| {
            process
                .map(|p| p.cwd().clone())
                .filter(|c| !c.as_os_str().is_empty())
        })
        .unwrap_or_else(|| PathBuf::from("/"));
    if !cwd.is_absolute() {
        return Err(Error::Invalid(format!(
            "working directory '{}' is not absolute",
            cwd.display()
        )));
    }

    let user = match (&options.user, process) {
        (Some(u), _) => UserSpec::parse(u).map_err(|e| Error::Invalid(format!("--user {e}")))?,
        (None, Some(p)) => UserSpec::Ids {
            uid: p.user().uid(),
            gid: p.user().gid(),
            additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        },
        (None, None) => UserSpec::root(),
    };

    let readonly = options.readonly
        || spec
            .as_ref()
            .and_then(|s| s.root().as_ref())
            .and_then(|r| r.readonly())
            .unwrap_or(false);

    let mount_list = match spec.as_ref().and_then(|s| s.mounts().clone()) {
        Some(list) => list,
        None => mounts::default_mounts(),
    };
    let mut plans = Vec::new();
    for m in &mount_list {
        let mut plan: MountPlan =
            mounts::plan(m).map_err(|e| Error::Invalid(format!("bundle mount: {e}")))?;
        if plan.is_bind() && plan.source.is_relative() {
            // runtime-spec: a relative bind source is relative to the bundle.
            plan.source = bundle_dir.unwrap_or(Path::new(".")).join(&plan.source);
        }
        plans.push(plan);
    }

    let linux = spec.as_ref().and_then(|s| s.linux().as_ref());
    let (masked, readonly_paths) = if options.privileged {
        (Vec::new(), Vec::new())
    } else {
        match linux {
            Some(l) => (
                l.masked_paths()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(PathBuf::from)
                    .collect(),
                l.readonly_paths()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(PathBuf::from)
                    .collect(),
            ),
            None => (
                DEFAULT_MASKED.iter().map(PathBuf::from).collect(),
                DEFAULT_READONLY.iter().map(PathBuf::from).collect(),
            ),
        }
    };

    let caps = if options.privileged {
        CapSets::all(caps::current_permitted())
    } else if let Some(c) = process.and_then(|p| p.capabilities().as_ref()) {
        let set = |s: &Option<oci_spec::runtime::Capabilities>| -> Result<u64, Error> {
            let names: Vec<String> = s.iter().flatten().map(|c| format!("CAP_{c}")).collect();
            caps::mask_of(&names).map_err(|e| Error::Invalid(format!("bundle capabilities: {e}")))
        };
        CapSets {
            bounding: set(c.bounding())?,
            effective: set(c.effective())?,
            permitted: set(c.permitted())?,
            inheritable: set(c.inheritable())?,
            ambient: set(c.ambient())?,
        }
    } else {
        CapSets::docker_default()
    };
    let caps_from_bundle =
        !options.privileged && process.and_then(|p| p.capabilities().as_ref()).is_some();

    let no_new_privileges = match process {
        Some(p) => p.no_new_privileges().unwrap_or(false),
        None => !options.privileged,
    };

    let host_network = match options.net {
        Some(NetMode::Host) => true,
        Some(NetMode::None) | Some(NetMode::Veth) => false,
        None => match linux.and_then(|l| l.namespaces().as_ref()) {
            Some(ns) if spec.is_some() => {
                !ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network)
            }
            _ => false,
        },
    };

    let rlimits = process
        .and_then(|p| p.rlimits().clone())
        .unwrap_or_default()
        .iter()
        .map(|r| (r.typ().to_string(), r.soft(), r.hard()))
        .collect();

    let veth = match (options.net, &options.ip) {
        (Some(NetMode::Veth), Some(ip)) => Some(
            VethPlan::new(ip, options.host_ip.as_deref(), options.bridge.as_deref())
                .map_err(Error::Invalid)?,
        ),
        (Some(NetMode::Veth), None) => {
            return Err(Error::Invalid(
                "--net veth needs --ip CIDR (eth0's address, like 10.200.0.2/24)".to_string(),
            ))
        }
        (_, Some(_)) => return Err(Error::Invalid("--ip needs --net veth".to_string())),
        _ if options.host_ip.is_some() || options.bridge.is_some() => {
            return Err(Error::Invalid(
                "--host-ip and --bridge need --net veth".to_string(),
            ))
        }
        _ => None,
    };

    let mut limits = Limits {
        memory: options
            .memory
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| Error::Invalid(format!("--memory {e}")))?,
        pids: options
            .pids
            .as_deref()
            .map(|p| {
                p.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--pids '{p}': a number of tasks, at least 1"))
            })
            .transpose()
            .map_err(Error::Invalid)?,
        cpus: options
            .cpus
            .as_deref()
            .map(|c| {
                let n: f64 = c
                    .parse()
                    .map_err(|_| format!("--cpus '{c}': a number of CPUs, like 0.5"))?;
                cpu_quota(n).map(|_| n)
            })
            .transpose()
            .map_err(Error::Invalid)?,
    };

    // The bundle's linux.resources memory, pids and cpu quota, where no flag says otherwise.
    if let Some(r) = linux.and_then(|l| l.resources().as_ref()) {
        if limits.memory.is_none() {
            limits.memory = r
                .memory()
                .as_ref()
                .and_then(|m| m.limit())
                .filter(|l| *l > 0)
                .map(|l| l as u64);
        }
        if limits.pids.is_none() {
            limits.pids = r
                .pids()
                .as_ref()
                .map(|p| p.limit())
                .filter(|l| *l > 0)
                .map(|l| l as u64);
        }
        if limits.cpus.is_none() {
            limits.cpus = r
                .cpu()
                .as_ref()
                .and_then(|c| match (c.quota(), c.period()) {
                    (Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
                    _ => None,
                });
        }
    }

    Ok(Container {
        veth,
        limits,
        init: options.init,
        pid_file: options.pid_file.clone(),
        rootfs,
        args,
        env,
        cwd,
        user,
        hostname,
        readonly,
        host_network,
        mounts: plans,
        masked,
        readonly_paths,
        caps,
        caps_from_bundle,
        no_new_privileges,
        rlimits,
        umask: process.and_then(|p| p.user().umask()),
    })
}

/// sethostname(2) takes at most 64 bytes; keep to what a DNS label allows.
pub fn check_hostname(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "hostname '{name}': 1 to 64 letters, digits, '-', '_' or '.' (give one with --hostname)"
        )))
    }
}

fn refuse_unsupported(spec: &Spec, dir: &Path) -> Result<(), Error> {
    let refuse = |field: &str, why: &str| Error::Unsupported {
        path: dir.join("config.json"),
        field: field.to_string(),
        why: why.to_string(),
    };
    if let Some(linux) = spec.linux() {
        for ns in linux.namespaces().iter().flatten() {
            if ns.typ() == LinuxNamespaceType::User {
                return Err(refuse(
                    "linux.namespaces[user]",
                    "user namespaces are not supported",
                ));
            }
            if ns.path().is_some() {
                return Err(refuse(
                    &format!("linux.namespaces[{}].path", ns.typ()),
                    "joining existing namespaces is not supported",
                ));
            }
        }
        if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        {
            return Err(refuse(
                "linux.uidMappings",
                "user namespaces are not supported",
            ));
        }
        if linux.seccomp().is_some() {
            return Err(refuse(
                "linux.seccomp",
                "no seccomp filter would be installed; remove the field to run without one",
            ));
        }
    }
    if let Some(p) = spec.process() {
        if p.apparmor_profile().as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(refuse(
                "process.apparmorProfile",
                "AppArmor profiles are not supported",
            ));
        }
        if p.selinux_label().as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(refuse(
                "process.selinuxLabel",
                "SELinux labels are not supported",
            ));
        }
    }
    Ok(())
}

fn list_ignored(spec: &Spec, explain: Explain) {
    let mut ignored = Vec::new();
    if spec.hooks().is_some() {
        ignored.push("hooks");
    }
    if let Some(p) = spec.process() {
        if p.terminal() == Some(true) {
            ignored.push("process.terminal (the container uses nsenter-run's own stdio)");
        }
        if p.oom_score_adj().is_some() {
            ignored.push("process.oomScoreAdj");
        }
    }
    if let Some(l) = spec.linux() {
        if l.sysctl().as_ref().is_some_and(|s| !s.is_empty()) {
            ignored.push("linux.sysctl");
        }
        if let Some(r) = l.resources() {
            if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
                ignored.push(
                    "linux.resources.devices (the container's /dev holds only the default devices)",
                );
            }
            if r.block_io().is_some() || r.hugepage_limits().is_some() || r.network().is_some() {
                ignored.push("linux.resources beyond memory, pids and cpu quota");
            }
        }
        if l.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            ignored.push("linux.devices");
        }
        if l.cgroups_path().is_some() {
            ignored.push("linux.cgroupsPath");
        }
        if l.rootfs_propagation().is_some() {
            ignored.push("linux.rootfsPropagation (always rslave)");
        }
        let listed: Vec<LinuxNamespaceType> =
            l.namespaces().iter().flatten().map(|n| n.typ()).collect();
        for needed in [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
        ] {
            if !listed.contains(&needed) {
                explain.note(format!("the bundle shares the host's {needed} namespace; nsenter-run makes a new one anyway"));
            }
        }
    }
    for field in ignored {
        explain.note(format!("bundle field not applied: {field}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn a_bundle_applies_and_flags_override() {
        let dir = bundle(
            r#"{"ociVersion":"1.0.2","hostname":"box","root":{"path":"rootfs","readonly":true},
            "process":{"user":{"uid":1000,"gid":100,"additionalGids":[5]},"args":["/bin/app","-v"],
                "env":["PATH=/bin","A=1"],"cwd":"/srv","noNewPrivileges":true,
                "capabilities":{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}},
            "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"ipc"},{"type":"uts"}],
                "resources":{"memory":{"limit":33554432},"pids":{"limit":50},"cpu":{"quota":25000,"period":100000}},
                "maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys"]}}"#,
        );
        let mut options = Options {
            bundle: Some(dir.path().to_path_buf()),
            ..Options::default()
        };
        let c = resolve(&options, Explain::default()).unwrap();
        assert_eq!(c.hostname, "box");
        assert!(c.readonly);
        assert_eq!(
            c.args,
            vec![OsString::from("/bin/app"), OsString::from("-v")]
        );
        assert_eq!(c.cwd, PathBuf::from("/srv"));
        assert_eq!(
            c.user,
            UserSpec::Ids {
                uid: 1000,
                gid: 100,
                additional_gids: vec![5]
            }
        );
        assert_eq!(c.caps.bounding, 1 << 5);
        assert!(c.caps_from_bundle && c.no_new_privileges);
        assert!(c.host_network, "no network namespace listed: the host's");
        assert_eq!(c.masked, vec![PathBuf::from("/proc/kcore")]);
        assert_eq!(c.limits.memory, Some(32 << 20));
        assert_eq!(c.limits.pids, Some(50));
        assert_eq!(c.limits.cpus, Some(0.25));

        options.env = vec!["A=2".into()];
        options.hostname = Some("flag".into());
        options.memory = Some("64M".into());
        options.net = Some(NetMode::None);
        options.command = vec![OsString::from("sh")];
        let c = resolve(&options, Explain::default()).unwrap();
        assert_eq!(c.hostname, "flag");
        assert_eq!(c.env, vec!["PATH=/bin".to_string(), "A=2".to_string()]);
        assert_eq!(c.limits.memory, Some(64 << 20));
        assert!(!c.host_network);
        assert_eq!(c.args, vec![OsString::from("sh")]);
    }

    #[test]
    fn unsafe_to_ignore_fields_are_refused() {
        for (field, linux) in [
            (
                "linux.namespaces[user]",
                r#"{"namespaces":[{"type":"user"}]}"#,
            ),
            (
                "linux.namespaces[net].path",
                r#"{"namespaces":[{"type":"network","path":"/proc/1/ns/net"}]}"#,
            ),
            (
                "linux.uidMappings",
                r#"{"uidMappings":[{"containerID":0,"hostID":1000,"size":1}]}"#,
            ),
        ] {
            let dir = bundle(&format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"process":{{"user":{{"uid":0,"gid":0}},"cwd":"/"}},"linux":{linux}}}"#
            ));
            let options = Options {
                bundle: Some(dir.path().to_path_buf()),
                ..Options::default()
            };
            let err = resolve(&options, Explain::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(check_hostname("tutorial").is_ok());
        assert!(check_hostname("a.b-c_d").is_ok());
        assert!(check_hostname("").is_err());
        assert!(check_hostname(&"x".repeat(65)).is_err());
        assert!(check_hostname("has space")
            .unwrap_err()
            .to_string()
            .contains("'has space'"));
    }
}

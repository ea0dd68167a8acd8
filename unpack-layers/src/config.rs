//! The runtime bundle's `config.json` (runtime-spec `config.md`), made from the
//! image config (image-spec `config.md`, "Properties" and its conversion rules
//! in `conversion.md`): what runc needs to run the image as its author meant.

use std::collections::HashMap;

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    LinuxBuilder, LinuxDeviceCgroupBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use crate::passwd::ExecUser;

/// PATH when the image sets none (the one runc, docker and umoci use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `process.args`: Entrypoint then Cmd (conversion.md), `/bin/sh` when both are empty.
pub fn process_args(image: &ImageConfiguration) -> Vec<String> {
    let config = image.config().as_ref();
    let mut args: Vec<String> = config
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    args.extend(config.and_then(|c| c.cmd().clone()).unwrap_or_default());
    if args.is_empty() {
        args.push("/bin/sh".to_owned());
    }
    args
}

/// `process.env`: the image's Env over PATH and TERM defaults (a key the image
/// sets replaces the default in place, as umoci does), then HOME from the
/// user's passwd entry unless the image sets it.
pub fn process_env(image_env: &[String], home: Option<&str>) -> Vec<String> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), "TERM=xterm".to_owned()];
    for var in image_env {
        let key = var.split_once('=').map_or(var.as_str(), |(k, _)| k);
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(existing) => existing.clone_from(var),
            None => env.push(var.clone()),
        }
    }
    if let Some(home) = home.filter(|_| !env.iter().any(|e| e.starts_with("HOME="))) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Annotations from the image config (conversion.md, "Annotation Fields"):
/// its labels, then os, architecture and the other fields it sets.
pub fn annotations(image: &ImageConfiguration) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let config = image.config().as_ref();
    if let Some(labels) = config.and_then(|c| c.labels().as_ref()) {
        out.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out.insert("org.opencontainers.image.os".into(), image.os().to_string());
    out.insert(
        "org.opencontainers.image.architecture".into(),
        image.architecture().to_string(),
    );
    if let Some(author) = image.author() {
        out.insert("org.opencontainers.image.author".into(), author.clone());
    }
    if let Some(created) = image.created() {
        out.insert("org.opencontainers.image.created".into(), created.clone());
    }
    if let Some(signal) = config.and_then(|c| c.stop_signal().as_ref()) {
        out.insert("org.opencontainers.image.stopSignal".into(), signal.clone());
    }
    if let Some(ports) = config.and_then(|c| c.exposed_ports().as_ref()) {
        out.insert(
            "org.opencontainers.image.exposedPorts".into(),
            ports.join(","),
        );
    }
    out
}

/// The whole runtime config. Mounts, capabilities, masked and read-only paths
/// are runc's defaults (`runc spec`), as umoci writes them.
pub fn runtime_spec(
    image: &ImageConfiguration,
    user: &ExecUser,
    hostname: &str,
) -> Result<Spec, oci_spec::OciSpecError> {
    let config = image.config().as_ref();
    let image_env = config.and_then(|c| c.env().clone()).unwrap_or_default();
    let cwd = config
        .and_then(|c| c.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    let mut spec_user = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        spec_user = spec_user.additional_gids(user.additional_gids.clone());
    }
    let defaults = oci_spec::runtime::Process::default();
    let mut process = ProcessBuilder::default()
        // nsenter-run and runc callers decide about a terminal themselves.
        .terminal(false)
        .user(spec_user.build()?)
        .args(process_args(image))
        .env(process_env(&image_env, user.home.as_deref()))
        .cwd(cwd)
        .no_new_privileges(true);
    if let Some(caps) = defaults.capabilities() {
        process = process.capabilities(caps.clone());
    }
    if let Some(rlimits) = defaults.rlimits() {
        process = process.rlimits(rlimits.clone());
    }
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect::<Result<Vec<_>, _>>()?;
    let default_linux = oci_spec::runtime::Linux::default();
    let mut linux = LinuxBuilder::default().namespaces(namespaces).resources(
        LinuxResourcesBuilder::default()
            .devices(vec![LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?])
            .build()?,
    );
    if let Some(masked) = default_linux.masked_paths() {
        linux = linux.masked_paths(masked.clone());
    }
    if let Some(readonly) = default_linux.readonly_paths() {
        linux = linux.readonly_paths(readonly.clone());
    }
    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_owned())
        .set_process(Some(process.build()?))
        .set_root(Some(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()?,
        ))
        .set_hostname(Some(hostname.to_owned()))
        .set_annotations(Some(annotations(image)))
        .set_linux(Some(linux.build()?));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

    fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str]) -> ImageConfiguration {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut labels = HashMap::new();
        labels.insert("maintainer".to_owned(), "someone".to_owned());
        ImageConfigurationBuilder::default()
            .config(
                ConfigBuilder::default()
                    .entrypoint(strings(entrypoint))
                    .cmd(strings(cmd))
                    .env(strings(env))
                    .labels(labels)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn args_are_entrypoint_then_cmd() {
        assert_eq!(
            process_args(&image(&["/init"], &["-v"], &[])),
            ["/init", "-v"]
        );
        assert_eq!(
            process_args(&image(&[], &["/bin/echo", "hi"], &[])),
            ["/bin/echo", "hi"]
        );
        assert_eq!(process_args(&image(&[], &[], &[])), ["/bin/sh"]);
    }

    #[test]
    fn env_defaults_and_overrides() {
        let env = process_env(&["FOO=bar".into()], Some("/root"));
        assert_eq!(
            env,
            [
                &format!("PATH={DEFAULT_PATH}"),
                "TERM=xterm",
                "FOO=bar",
                "HOME=/root"
            ]
        );
        let env = process_env(&["PATH=/bin".into(), "HOME=/x".into()], Some("/root"));
        assert_eq!(env, ["PATH=/bin", "TERM=xterm", "HOME=/x"]);
    }

    #[test]
    fn spec_carries_the_image() {
        let user = ExecUser {
            uid: 1000,
            gid: 100,
            additional_gids: vec![10],
            home: Some("/home/app".into()),
        };
        let spec = runtime_spec(&image(&[], &["/bin/sh"], &["A=1"]), &user, "box").unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["process"]["terminal"], false);
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["process"]["user"]["additionalGids"][0], 10);
        assert_eq!(json["root"]["path"], "rootfs");
        assert_eq!(json["hostname"], "box");
        assert_eq!(json["annotations"]["maintainer"], "someone");
        assert_eq!(json["annotations"]["org.opencontainers.image.os"], "linux");
        let ns: Vec<_> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ns, ["pid", "network", "ipc", "uts", "mount"]);
        let mounts: Vec<_> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().to_owned())
            .collect();
        for want in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
        ] {
            assert!(mounts.iter().any(|m| m == want), "{want} in {mounts:?}");
        }
    }
}

//! nsenter-run: start a command in new namespaces and its own root, isolated and
//! hardened like runc does it, with nothing but system calls.
//!
//! The classic demo, by hand:
//! ```sh
//! unshare --mount --uts --ipc --net --pid --fork sh -c '
//!     mount --make-rslave /
//!     mount --rbind ROOTFS ROOTFS && cd ROOTFS
//!     mount -t proc proc proc; mount -t tmpfs tmpfs dev; ...
//!     pivot_root . oldroot && umount -l /oldroot
//!     hostname tutorial
//!     exec /bin/sh'
//! ```
//! Mechanisms, one module each: [`namespaces`] (clone3(2), namespaces(7)),
//! [`rootfs`] (mount_namespaces(7), pivot_root(2), openat2(2)), [`mounts`]
//! (runtime-spec mounts), [`devices`] (mknod(2)), [`caps`] (capabilities(7)),
//! [`user`] (the rootfs' own passwd(5)), [`exec`] (execve(2), close_range(2)),
//! [`signals`] (pid_namespaces(7)), [`selfexe`] and [`stub`] (CVE-2019-5736, memfd_create(2)),
//! [`bundle`] (runtime-spec config.json), [`explain`] (`--explain`),
//! [`cgroup`] (cgroups(7), v1 and v2), [`veth`] (rtnetlink(7)), [`init`]
//! (a minimal PID 1), [`enter`] (setns(2), like `docker exec`).

pub mod bundle;
pub mod caps;
pub mod cgroup;
pub mod devices;
pub mod enter;
pub mod exec;
pub mod explain;
pub mod init;
mod launch;
pub mod mounts;
pub mod namespaces;
pub mod rootfs;
pub mod selfexe;
pub mod signals;
pub mod stub;
pub mod user;
pub mod veth;

use std::ffi::OsString;
use std::path::PathBuf;

use nix::errno::Errno;

pub use explain::Explain;
pub use launch::{run, Exit};

/// PATH when the image or bundle sets none (the one runc and docker use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// nsenter-run's own failures (docker and podman use the same number).
pub const EXIT_OWN_FAILURE: i32 = 125;

/// `--net`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// A new network namespace with only `lo`, up.
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace joined to the host by a veth pair.
    Veth,
}

/// What the command line asked for; [`bundle::resolve`] turns it into a [`Container`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub rootfs: Option<PathBuf>,
    pub bundle: Option<PathBuf>,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub net: Option<NetMode>,
    pub readonly: bool,
    pub privileged: bool,
    pub command: Vec<OsString>,
    /// `--ip`, `--host-ip`, `--bridge` (with `--net veth`).
    pub ip: Option<String>,
    pub host_ip: Option<String>,
    pub bridge: Option<String>,
    /// `--memory`, `--pids`, `--cpus`, as typed.
    pub memory: Option<String>,
    pub pids: Option<String>,
    pub cpus: Option<String>,
    pub init: bool,
    pub pid_file: Option<PathBuf>,
}

/// Everything needed to start one container, resolved and checked.
#[derive(Clone, Debug)]
pub struct Container {
    /// Absolute host path of the root filesystem.
    pub rootfs: PathBuf,
    pub args: Vec<OsString>,
    /// `KEY=VALUE`; HOME is added from the rootfs' passwd when missing.
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub user: user::UserSpec,
    pub hostname: String,
    pub readonly: bool,
    pub host_network: bool,
    pub mounts: Vec<mounts::MountPlan>,
    pub masked: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub caps: caps::CapSets,
    /// The bundle gave the capability sets: apply them as written, also for a
    /// non-root user (otherwise a non-root user gets none, as in Docker).
    pub caps_from_bundle: bool,
    pub no_new_privileges: bool,
    /// `RLIMIT_NOFILE`-style names with soft and hard values.
    pub rlimits: Vec<(String, u64, u64)>,
    pub umask: Option<u32>,
    /// `--net veth`.
    pub veth: Option<veth::VethPlan>,
    pub limits: cgroup::Limits,
    /// A minimal init as PID 1 (`--init`).
    pub init: bool,
    pub pid_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{call}")]
    Sys {
        call: String,
        #[source]
        source: Errno,
    },
    #[error("{what} '{}'", path.display())]
    Path {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mount target '{}' in the rootfs: {reason}", dest.display())]
    Target { dest: PathBuf, reason: String },
    #[error("cannot parse bundle config '{}'", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("bundle config '{}': {field}: {why}", path.display())]
    Unsupported {
        path: PathBuf,
        field: String,
        why: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{message}")]
    Exec { code: i32, message: String },
    /// A failure inside the container's process, reported through the setup pipe.
    #[error("{message}")]
    Container { code: i32, message: String },
}

impl Error {
    pub fn sys(call: impl Into<String>, source: Errno) -> Self {
        Error::Sys {
            call: call.into(),
            source,
        }
    }

    /// 125 for nsenter-run's own failures, 126/127 when the command could not run.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec { code, .. } | Error::Container { code, .. } => *code,
            _ => EXIT_OWN_FAILURE,
        }
    }
}

/// The message and its causes on one line: `mount ...: EPERM: Operation not permitted`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

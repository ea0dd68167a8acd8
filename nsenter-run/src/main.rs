//! nsenter-run: a command in new namespaces and its own root (see the library).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use nsenter_run::{Explain, NetMode, Options};

/// Run a command in new mount, UTS, IPC, network and PID namespaces with its
/// own root filesystem: the rootfs is bind-mounted, pivot_root'ed into, given a
/// fresh /proc, /dev and read-only /sys, and the command runs as PID 1 with
/// Docker's default capabilities, masked kernel paths and no_new_privs.
///
/// Like: unshare --mount --uts --ipc --net --pid --fork, then mount --bind,
/// pivot_root . oldroot, umount -l /oldroot, mount -t proc proc /proc, exec.
/// Exit status: the command's, 128+N if killed by signal N, 125 if nsenter-run
/// failed, 126 if the command is not executable, 127 if it was not found.
#[derive(Parser, Debug)]
#[command(name = "nsenter-run", version)]
struct Cli {
    /// Root filesystem of the container (a directory, e.g. a btrfs snapshot).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "bundle",
        required_unless_present = "bundle"
    )]
    rootfs: Option<PathBuf>,

    /// OCI runtime bundle (config.json + rootfs/) from unpack-layers, umoci or runc spec.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,

    /// Hostname inside (default: the rootfs or bundle directory's name).
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,

    /// Set an environment variable inside (repeatable).
    #[arg(long, short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,

    /// Working directory inside the container.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,

    /// User to run as: UID[:GID] or NAME[:GROUP], names from the rootfs' /etc/passwd.
    #[arg(long, short = 'u', value_name = "USER")]
    user: Option<String>,

    /// Network: none (a new namespace with only lo) or host (the host's).
    #[arg(long, value_enum, value_name = "MODE")]
    net: Option<Net>,

    /// Mount the rootfs read-only.
    #[arg(long)]
    readonly: bool,

    /// Keep every capability and mask nothing (to see what the hardening does).
    #[arg(long)]
    privileged: bool,

    /// Print each system call with the shell command it mirrors, to stderr.
    #[arg(long)]
    explain: bool,

    /// The command and its arguments (default: the bundle's process.args, else /bin/sh).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Net {
    None,
    Host,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explain = Explain::new(cli.explain);
    let options = Options {
        rootfs: cli.rootfs,
        bundle: cli.bundle,
        hostname: cli.hostname,
        env: cli.env,
        cwd: cli.cwd,
        user: cli.user,
        net: cli.net.map(|n| match n {
            Net::None => NetMode::None,
            Net::Host => NetMode::Host,
        }),
        readonly: cli.readonly,
        privileged: cli.privileged,
        command: cli.command,
    };
    let result = nsenter_run::selfexe::ensure_protected(explain)
        .and_then(|()| nsenter_run::bundle::resolve(&options, explain))
        .and_then(|container| nsenter_run::run(&container, explain));
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("nsenter-run: {}", nsenter_run::error_chain(&err));
            ExitCode::from(err.exit_code().clamp(0, 255) as u8)
        }
    }
}

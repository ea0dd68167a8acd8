//! nsenter-run: a command in new namespaces and its own root (see the library).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use nsenter_run::enter::EnterOptions;
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
    #[arg(long, value_name = "DIR", conflicts_with_all = ["bundle", "enter"], required_unless_present_any = ["bundle", "enter"])]
    rootfs: Option<PathBuf>,

    /// OCI runtime bundle (config.json + rootfs/) from unpack-layers, umoci or runc spec.
    #[arg(long, value_name = "DIR", conflicts_with = "enter")]
    bundle: Option<PathBuf>,

    /// Join the namespaces, root and cgroups of a running container (its PID on
    /// the host, see --pid-file) and run COMMAND there, like docker exec.
    #[arg(long, value_name = "PID")]
    enter: Option<i32>,

    /// Hostname inside (default: the rootfs or bundle directory's name).
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,

    /// Set an environment variable inside (repeatable).
    #[arg(long, short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,

    /// Working directory inside the container (made when missing, as runc does).
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,

    /// User to run as: UID[:GID] or NAME[:GROUP], names from the rootfs' /etc/passwd.
    #[arg(long, short = 'u', value_name = "USER")]
    user: Option<String>,

    /// Network: none (a new namespace with only lo), host (the host's), or veth
    /// (a veth pair to the host: eth0 inside, veth<PID> outside).
    #[arg(long, value_enum, value_name = "MODE")]
    net: Option<Net>,

    /// With --net veth: eth0's address inside, e.g. 10.200.0.2/24.
    #[arg(long, value_name = "CIDR")]
    ip: Option<String>,

    /// With --net veth: the host end's address and the default route
    /// (default: the first address of --ip's subnet).
    #[arg(long, value_name = "CIDR")]
    host_ip: Option<String>,

    /// With --net veth: attach the host end to this existing bridge instead of addressing it.
    #[arg(long, value_name = "NAME")]
    bridge: Option<String>,

    /// Memory limit (cgroup), e.g. 64M: past it the kernel's OOM killer ends the container.
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,

    /// Most tasks (processes and threads) the container may have (cgroup).
    #[arg(long, value_name = "N")]
    pids: Option<String>,

    /// CPU time, in CPUs (cgroup CFS quota), e.g. 0.5.
    #[arg(long, value_name = "FLOAT")]
    cpus: Option<String>,

    /// Run a minimal init as PID 1: it reaps zombies and forwards signals to the command.
    #[arg(long)]
    init: bool,

    /// Write the container's PID (as the host sees it) to this file once it runs.
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,

    /// Mount the rootfs read-only.
    #[arg(long)]
    readonly: bool,

    /// Keep every capability and mask nothing (to see what the hardening does).
    #[arg(long)]
    privileged: bool,

    /// Print each system call and netlink request with the shell command it mirrors, to stderr.
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
    Veth,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explain = Explain::new(cli.explain);
    // CVE-2019-5736: with --init (its init is the container's PID 1) and with
    // --enter, nsenter-run's own code stays inside the container: re-run from a
    // copy of the binary the container cannot write through. A plain launch
    // leaves nothing of nsenter-run inside but the command's execve, which the
    // sealed exec stub makes instead (see selfexe and stub).
    if cli.init || cli.enter.is_some() || !nsenter_run::stub::usable() {
        if let Err(err) = nsenter_run::selfexe::ensure_protected(explain) {
            eprintln!("nsenter-run: {}", nsenter_run::error_chain(&err));
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    }
    let result = match cli.enter {
        Some(pid) => nsenter_run::enter::enter(
            &EnterOptions {
                pid,
                command: cli.command,
                env: cli.env,
                cwd: cli.cwd,
                user: cli.user,
            },
            explain,
        ),
        None => {
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
                    Net::Veth => NetMode::Veth,
                }),
                readonly: cli.readonly,
                privileged: cli.privileged,
                command: cli.command,
                ip: cli.ip,
                host_ip: cli.host_ip,
                bridge: cli.bridge,
                memory: cli.memory,
                pids: cli.pids,
                cpus: cli.cpus,
                init: cli.init,
                pid_file: cli.pid_file,
            };
            nsenter_run::bundle::resolve(&options, explain)
                .and_then(|c| nsenter_run::run(&c, explain))
        }
    };
    match result {
        Ok(exit) => {
            if let Some(note) = exit.note {
                eprintln!("nsenter-run: {note}");
            }
            ExitCode::from(exit.code.clamp(0, 255) as u8)
        }
        Err(err) => {
            eprintln!("nsenter-run: {}", nsenter_run::error_chain(&err));
            ExitCode::from(err.exit_code().clamp(0, 255) as u8)
        }
    }
}

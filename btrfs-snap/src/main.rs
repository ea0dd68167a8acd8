//! `btrfs-snap`: the command line; the work is in the library.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use btrfs_snap::{chain, Explain};
use clap::{Parser, Subcommand};

/// Btrfs subvolumes and snapshots through the btrfs ioctls themselves.
///
/// A subvolume is an independent tree of files inside a btrfs filesystem; a snapshot is a
/// new subvolume sharing every block with its source until either side writes
/// (copy-on-write), so it is instant whatever the size. Mirrors `btrfs subvolume
/// create|snapshot|delete|list|show`, and each works on what the other made.
#[derive(Parser)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// Print each ioctl made, and the `btrfs subvolume` command it mirrors, on stderr.
    #[arg(long, global = true)]
    explain: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty subvolume at PATH (like `btrfs subvolume create PATH`).
    Create {
        /// The new subvolume; its parent directory must exist on a btrfs.
        path: PathBuf,
    },
    /// Snapshot the subvolume SOURCE as the new subvolume DEST (like `btrfs subvolume
    /// snapshot [-r] SOURCE DEST`). DEST must not exist.
    Snapshot {
        /// Make the snapshot read-only, as an image layer is.
        #[arg(short, long)]
        readonly: bool,
        /// An existing subvolume (not a plain directory).
        source: PathBuf,
        /// The new subvolume, on the same btrfs as SOURCE.
        dest: PathBuf,
    },
    /// Delete subvolumes, with their contents (like `btrfs subvolume delete PATH...`).
    Delete {
        /// Subvolumes to delete; read-only snapshots too.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the subvolumes at or below PATH, one path per line (like `btrfs subvolume list
    /// -o PATH`, recursively).
    List {
        /// Where to look: a subvolume or any directory on a btrfs.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Print a subvolume's id, uuid, parent uuid, flags and creation time (like `btrfs
    /// subvolume show PATH`).
    Show {
        /// A subvolume (the top level of a btrfs included).
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explain = Explain::new(cli.explain);
    let ok = match cli.command {
        Command::Create { path } => done(btrfs_snap::create(&path, explain)),
        Command::Snapshot {
            readonly,
            source,
            dest,
        } => done(btrfs_snap::snapshot(&source, &dest, readonly, explain)),
        // Like `btrfs subvolume delete`: go on with the others when one fails.
        Command::Delete { paths } => {
            let failed = paths
                .iter()
                .filter(|path| !done(btrfs_snap::delete(path, explain)))
                .count();
            failed == 0
        }
        Command::List { path } => match btrfs_snap::list(&path, explain) {
            Ok(paths) => print(|out| {
                paths.iter().try_for_each(|p| {
                    out.write_all(p.as_os_str().as_bytes())?;
                    out.write_all(b"\n")
                })
            }),
            Err(err) => done(Err(err)),
        },
        Command::Show { path } => match btrfs_snap::show(&path, explain) {
            Ok(info) => print(|out| write!(out, "{info}")),
            Err(err) => done(Err(err)),
        },
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Reports a failure on stderr, the cause chain on one line; `true` on success.
fn done(result: Result<(), btrfs_snap::Error>) -> bool {
    match result {
        Ok(()) => true,
        Err(err) => {
            eprintln!("btrfs-snap: {}", chain(&err));
            false
        }
    }
}

/// Writes a result to stdout; `false` if that fails (quietly for a closed pipe, `| head`).
fn print(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> bool {
    let mut out = std::io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(err) => {
            eprintln!("btrfs-snap: cannot write to stdout: {err}");
            false
        }
    }
}

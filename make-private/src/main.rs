use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Make a mount, and every mount below it, private: mounts made later in another
/// mount namespace no longer appear here, and ours no longer appear there.
///
/// systemd makes / shared at boot, so without this step a container's mounts would
/// leak back into the host. This is `mount --make-rprivate PATH`: one mount(2) call
/// with MS_REC|MS_PRIVATE and no source or filesystem type.
#[derive(Parser, Debug)]
#[command(name = "make-private", version)]
struct Cli {
    /// The mount point to change (must be a mount point)
    #[arg(default_value = "/")]
    path: PathBuf,

    /// Change only the mount at PATH, not the mounts below it (mount --make-private)
    #[arg(long)]
    no_recursive: bool,

    /// Change nothing; print `MOUNTPOINT PROPAGATION` for each mount at or below PATH
    #[arg(long)]
    show: bool,

    /// Print each system call on stderr, with the shell command it mirrors
    #[arg(long)]
    explain: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = if cli.show {
        make_private::show(&cli.path, cli.explain).map(|mounts| print_mounts(&mounts))
    } else {
        let options = make_private::Options {
            recursive: !cli.no_recursive,
            explain: cli.explain,
        };
        make_private::make_private(&cli.path, options)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("make-private: {err}");
            ExitCode::FAILURE
        }
    }
}

fn print_mounts(mounts: &[(PathBuf, String)]) {
    let mut out = std::io::stdout().lock();
    for (mount_point, propagation) in mounts {
        // A closed stdout (`| head`) is not an error worth a message.
        if writeln!(
            out,
            "{} {propagation}",
            make_private::mountinfo::escape(mount_point)
        )
        .is_err()
        {
            return;
        }
    }
}

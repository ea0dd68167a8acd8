//! unpack-layers: apply an OCI image's layers into a runtime bundle.
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use unpack_layers::layout::{ImageRef, Platform};
use unpack_layers::limits::{parse_size, Limits};
use unpack_layers::{error_chain, unpack, Options};

/// Unpack an OCI image into a runtime bundle (config.json + rootfs/), like
/// `umoci unpack --image DIR:TAG BUNDLE`.
///
/// Each layer is a tar of changes to the one below; they are applied in order,
/// `.wh.NAME` files deleting what lower layers made, every path resolved inside
/// the rootfs as if it were `/` (openat2 RESOLVE_IN_ROOT). Each blob is checked
/// against its digest and each layer against the config's diff_ids. The
/// config.json is what runc needs to run the image.
#[derive(Parser)]
#[command(name = "unpack-layers", version, about, long_about)]
struct Cli {
    /// The image: an OCI image layout directory and a tag
    #[arg(long, value_name = "DIR[:TAG]")]
    image: OsString,

    /// Where to unpack: a new or empty directory, missing parents made (with --rootfs-only, an existing empty one)
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,

    /// Write the filesystem into BUNDLE itself, no config.json (e.g. into a fresh btrfs subvolume)
    #[arg(long)]
    rootfs_only: bool,

    /// Which manifest to take when the tag names an image index (default: this machine)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = Platform::parse)]
    platform: Option<Platform>,

    /// Stop past this many uncompressed bytes, all layers together (K, M, G, T suffixes)
    #[arg(long, value_name = "SIZE", default_value = "32G", value_parser = parse_size)]
    max_size: u64,

    /// Stop when a layer past 1 GiB inflates more than N times its compressed size
    #[arg(long, value_name = "N", default_value_t = 200)]
    max_ratio: u64,

    /// Stop past this many tar entries, all layers together
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_entries)]
    max_entries: u64,

    /// No progress bar
    #[arg(short, long)]
    quiet: bool,

    /// Print each kernel call made, with the shell command that does the same, to stderr
    #[arg(long)]
    explain: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ctrl-C mid-unpack then fails cleanly: what was written is removed.
    if let Err(e) = unpack_layers::interrupt::install() {
        eprintln!("unpack-layers: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let options = Options {
        image: ImageRef::parse(&cli.image),
        bundle: cli.bundle,
        rootfs_only: cli.rootfs_only,
        platform: cli.platform,
        limits: Limits {
            max_size: cli.max_size,
            max_ratio: cli.max_ratio,
            max_entries: cli.max_entries,
        },
        quiet: cli.quiet,
        explain: cli.explain,
    };
    match unpack(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unpack-layers: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

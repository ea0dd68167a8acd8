//! fetch-image: the command line; the work is in the library.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser};

/// Pull a container image from a registry into an OCI image layout.
///
/// Speaks the registry's HTTP API: logs in (anonymous, Basic, or the bearer
/// token dance Docker Hub uses), fetches the manifest (picking this
/// platform's from a multi-platform index), then the config and layer blobs,
/// each checked against its sha256 digest as it streams, and records the tag
/// in DIR/index.json. Prints the digest of the manifest written.
///
/// Like: skopeo copy docker://alpine:latest oci:images/alpine:latest
#[derive(Debug, Parser)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// docker://[HOST[:PORT]/]NAME[:TAG|@sha256:HEX] (docker:// may be omitted)
    source: String,
    /// oci:DIR[:TAG] (oci: may be omitted; TAG defaults to the source's tag)
    destination: OsString,
    /// Which image of a multi-platform index to take [default: this machine]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Credentials for the registry
    #[arg(long, value_name = "USER[:PASSWORD]", conflicts_with = "no_creds")]
    creds: Option<String>,
    /// Auth file to read credentials from (instead of the standard ones)
    #[arg(long, value_name = "PATH", conflicts_with = "no_creds")]
    authfile: Option<PathBuf>,
    /// Pull anonymously, ignoring auth files
    #[arg(long)]
    no_creds: bool,
    /// Require https with a verified certificate (false: accept any
    /// certificate, and plain http)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    tls_verify: bool,
    /// Directory of extra CA certificates (*.crt) for the registry
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Blobs downloaded at once
    #[arg(short, long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Retries of a failed request or broken transfer
    #[arg(long, value_name = "N", default_value_t = 3)]
    retry_times: u32,
    /// No progress bars
    #[arg(short, long)]
    quiet: bool,
    /// Print each HTTP request, and the curl command that does the same, on stderr
    #[arg(long)]
    explain: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    catch_interrupts();
    let options = fetch_image::Options {
        source: cli.source,
        destination: cli.destination,
        platform: cli.platform,
        creds: cli.creds,
        authfile: cli.authfile,
        no_creds: cli.no_creds,
        tls_verify: cli.tls_verify,
        cert_dir: cli.cert_dir,
        jobs: usize::from(cli.jobs),
        retry_times: cli.retry_times,
        quiet: cli.quiet,
        explain: cli.explain,
    };
    match fetch_image::fetch(&options) {
        Ok(digest) => {
            // Not println!: a closed stdout is an error to report, not a panic.
            let mut stdout = std::io::stdout().lock();
            match writeln!(stdout, "{digest}").and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("fetch-image: cannot write the digest to stdout: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(err) => {
            eprintln!("fetch-image: {}", chain(&err));
            match err {
                // 128 + SIGINT, as a shell reports a process killed by Ctrl-C.
                fetch_image::Error::Interrupted => ExitCode::from(130),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// The error and its causes on one line: `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// SIGINT and SIGTERM only raise a flag the downloads check between chunks,
/// so that the temporary files are removed; SA_RESETHAND makes a second
/// Ctrl-C kill at once, as usual.
fn catch_interrupts() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    extern "C" fn on_signal(_: libc::c_int) {
        fetch_image::INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESETHAND | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe (signal-safety(7)); no other handler is replaced.
        // A failure leaves the default action, which is still correct.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

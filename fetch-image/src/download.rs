//! Blob downloads: streamed into a temporary file while sha256 and the byte
//! count are computed on the fly; renamed into `blobs/sha256/` only when
//! both match the descriptor. A transfer that breaks is resumed where it
//! stopped with `Range: bytes=N-` when the server answers 206; otherwise it
//! starts over. Several blobs download at once, one thread each.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use oci_spec::image::Descriptor;
use reqwest::header::CONTENT_RANGE;
use reqwest::StatusCode;
use tempfile::NamedTempFile;

use crate::digest::{sha256_hex, Verifier};
use crate::explain::Reporter;
use crate::layout::Layout;
use crate::registry::{status_error, Registry};
use crate::Error;

const CHUNK: usize = 256 * 1024;

/// Downloads every blob not already in the layout, `jobs` at a time, and
/// returns them verified but still under temporary names: the caller
/// commits them once everything succeeded, so a failed fetch adds nothing
/// under `blobs/`. The first failure stops the other downloads.
pub fn download_all(
    registry: &Registry<'_>,
    layout: &Layout,
    blobs: &[Descriptor],
    jobs: usize,
    retry_times: u32,
    reporter: &Reporter,
) -> Result<Vec<Verified>, Error> {
    let next = AtomicUsize::new(0);
    let verified = Mutex::new(Vec::new());
    let abort = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(blobs.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(blob) = blobs.get(i) else { break };
                if abort.load(Ordering::SeqCst) || crate::interrupted() {
                    break;
                }
                let job = Download {
                    registry,
                    layout,
                    blob,
                    retry_times,
                    abort: &abort,
                    reporter,
                };
                match job.run() {
                    Ok(Some(blob)) => {
                        verified
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(blob);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        abort.store(true, Ordering::SeqCst);
                        let mut slot = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        if slot.is_none() && !matches!(e, Error::Aborted) {
                            *slot = Some(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    // Ctrl-C: the temporary files go with `verified` as it drops.
    if crate::interrupted() {
        return Err(Error::Interrupted);
    }
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(verified.into_inner().unwrap_or_else(|e| e.into_inner())),
    }
}

/// A blob whose bytes matched its descriptor, waiting in a temporary file.
pub struct Verified {
    pub file: NamedTempFile,
    pub hex: String,
}

impl Verified {
    pub fn commit(self, layout: &Layout) -> Result<(), Error> {
        Ok(layout.commit_blob(self.file, &self.hex)?)
    }
}

struct Download<'a, 'r> {
    registry: &'a Registry<'r>,
    layout: &'a Layout,
    blob: &'a Descriptor,
    retry_times: u32,
    abort: &'a AtomicBool,
    reporter: &'a Reporter,
}

/// How one attempt at a transfer ended, when not in success.
enum Attempt {
    /// The connection broke: try again from where we are.
    Broken(String),
    /// The server does not resume at the requested offset: start over.
    Restart(String),
    Fatal(Error),
}

impl Download<'_, '_> {
    /// None when the blob was already there.
    fn run(&self) -> Result<Option<Verified>, Error> {
        let digest = self.blob.digest();
        let hex = sha256_hex(digest)?;
        let size = self.blob.size();
        if self.layout.has_blob(hex, size) {
            self.reporter
                .explain(|| format!("# {digest} already in the layout, not downloading"));
            return Ok(None);
        }
        let mut file = self.layout.temp_file()?;
        let mut verifier = Verifier::default();
        let bar = self.reporter.bar(&hex[..12], size);
        let mut failures = 0;
        loop {
            match self.attempt(&mut file, &mut verifier, &bar) {
                Ok(()) => break,
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Broken(reason) | Attempt::Restart(reason))
                    if failures >= self.retry_times =>
                {
                    return Err(Error::Broken {
                        digest: digest.to_string(),
                        got: verifier.bytes(),
                        expected: size,
                        reason,
                    });
                }
                Err(Attempt::Broken(reason)) => {
                    failures += 1;
                    self.reporter.explain(|| {
                        format!(
                            "# {digest}: {reason}; resuming at byte {}",
                            verifier.bytes()
                        )
                    });
                }
                Err(Attempt::Restart(reason)) => {
                    failures += 1;
                    self.reporter
                        .explain(|| format!("# {digest}: {reason}; starting over"));
                    start_over(&mut file, &mut verifier, &bar)?;
                }
            }
            std::thread::sleep(Duration::from_millis(200u64 << failures.min(5)));
        }
        bar.finish_and_clear();

        let actual = verifier.finish();
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: "blob",
                digest: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(Some(Verified {
            file,
            hex: hex.to_owned(),
        }))
    }

    /// One GET, from byte `verifier.bytes()` on, streamed to the file.
    fn attempt(
        &self,
        file: &mut NamedTempFile,
        verifier: &mut Verifier,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), Attempt> {
        let response = self.request(file, verifier, bar)?;
        self.stream(response, file, verifier, bar)
    }

    /// The GET, answered from where `verifier` stands: 206 at exactly that offset, or 200
    /// with the whole blob again (`file` and `verifier` are then reset to match).
    fn request(
        &self,
        file: &mut NamedTempFile,
        verifier: &mut Verifier,
        bar: &indicatif::ProgressBar,
    ) -> Result<reqwest::blocking::Response, Attempt> {
        let digest = self.blob.digest();
        let start = verifier.bytes();
        let url = self
            .registry
            .blob_url(digest.as_ref())
            .map_err(|e| Attempt::Fatal(e.into()))?;
        let response = self
            .registry
            .get(&url, &[], (start > 0).then_some(start))
            .map_err(|e| Attempt::Fatal(e.into()))?;

        match response.status() {
            StatusCode::PARTIAL_CONTENT if start > 0 => {
                let offset = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_start);
                if offset != Some(start) {
                    let offset = offset.map_or("an unknown offset".into(), |o| format!("byte {o}"));
                    return Err(Attempt::Restart(format!(
                        "asked to resume at byte {start}, the server sent {offset}"
                    )));
                }
            }
            StatusCode::OK => {
                if start > 0 {
                    // No Range support: the whole blob comes again.
                    start_over(file, verifier, bar).map_err(Attempt::Fatal)?;
                }
            }
            StatusCode::NOT_FOUND => {
                return Err(Attempt::Fatal(Error::BlobNotFound {
                    digest: digest.to_string(),
                }))
            }
            _ => return Err(Attempt::Fatal(status_error(response).into())),
        }
        Ok(response)
    }

    /// Streams the body into `file` through `verifier`, never past the descriptor's size.
    fn stream(
        &self,
        mut response: reqwest::blocking::Response,
        file: &mut NamedTempFile,
        verifier: &mut Verifier,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), Attempt> {
        let digest = self.blob.digest();
        let size = self.blob.size();
        // A declared length that cannot be right fails before reading.
        let remaining = size - verifier.bytes();
        if let Some(length) = response.content_length() {
            if length > remaining {
                return Err(Attempt::Fatal(Error::TooLong {
                    digest: digest.to_string(),
                    expected: size,
                }));
            }
        }

        let mut buffer = vec![0u8; CHUNK];
        loop {
            if self.abort.load(Ordering::Relaxed) || crate::interrupted() {
                return Err(Attempt::Fatal(Error::Aborted));
            }
            let n = match response.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Every byte is in: the digest check decides.
                Err(_) if verifier.bytes() == size => break,
                Err(e) => return Err(Attempt::Broken(crate::registry::root_cause(&e))),
            };
            if verifier.bytes() + n as u64 > size {
                return Err(Attempt::Fatal(Error::TooLong {
                    digest: digest.to_string(),
                    expected: size,
                }));
            }
            let chunk = &buffer[..n];
            file.write_all(chunk).map_err(|e| {
                Attempt::Fatal(Error::Layout(crate::layout::LayoutError::Io {
                    action: "write",
                    path: file.path().to_owned(),
                    source: e,
                }))
            })?;
            verifier.update(chunk);
            bar.inc(n as u64);
        }
        if verifier.bytes() < size {
            return Err(Attempt::Broken(format!(
                "connection closed after {} of {size} bytes",
                verifier.bytes()
            )));
        }
        Ok(())
    }
}

/// Back to byte 0: the file emptied, the hash and the progress bar reset.
fn start_over(
    file: &mut NamedTempFile,
    verifier: &mut Verifier,
    bar: &indicatif::ProgressBar,
) -> Result<(), Error> {
    *verifier = Verifier::default();
    bar.set_position(0);
    rewind(file)
}

fn rewind(file: &mut NamedTempFile) -> Result<(), Error> {
    let path = file.path().to_owned();
    file.as_file_mut()
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
        .map_err(|source| {
            Error::Layout(crate::layout::LayoutError::Io {
                action: "truncate",
                path,
                source,
            })
        })
}

/// `bytes START-END/TOTAL` -> START.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}

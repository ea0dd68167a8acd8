//! A layer blob as a stream of tar bytes, decompressed on its own thread.
//!
//! One thread reads the blob file, hashes it (the blob's digest), inflates it
//! (gzip through flate2's zlib-rs backend, or zstd), hashes the result (the
//! layer's diff_id, image-spec `config.md`), counts it against the bomb limits
//! and hands it over in fixed-size chunks through a bounded channel. The caller
//! reads those chunks as a plain `Read` and writes files meanwhile, so inflating
//! and writing overlap, and memory stays at `CHUNK * (DEPTH + 2)` whatever the
//! layer size. Used buffers travel back to be refilled, not reallocated.
//!
//! Nothing here trusts the blob: its digest and length are only known good once
//! the whole file has gone through ([`Stream::finish`]), and the caller undoes
//! the whole unpack if they are not.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use crate::limits::{LimitError, Limits};

/// Bytes per chunk handed to the writer.
const CHUNK: usize = 256 << 10;
/// Chunks in flight between the two threads.
const DEPTH: usize = 8;

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression a layer media type names, OCI or Docker
    /// (image-spec `media-types.md`, and Docker's schema2 names).
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// What the whole blob turned out to be, known once it has been read to its end.
pub struct Summary {
    /// SHA-256 of the blob as stored (compare with the descriptor's digest).
    pub blob_sha256: [u8; 32],
    pub blob_len: u64,
    /// SHA-256 of the uncompressed tar (compare with the config's diff_id).
    pub diff_sha256: [u8; 32],
    pub tar_len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot read the blob")]
    Read(#[source] io::Error),
    #[error("cannot decompress the {0} stream")]
    Decompress(&'static str, #[source] io::Error),
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The reader went away (it failed first); its error is the one to report.
    #[error("the layer was abandoned")]
    Abandoned,
}

/// The decompressed tar, readable while a thread produces it.
pub struct Stream {
    chunks: Option<Receiver<Vec<u8>>>,
    spent: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    producer: Option<JoinHandle<Result<Summary, StreamError>>>,
}

/// Bytes of earlier layers and of the blob, for the bomb limits.
pub struct Budget {
    pub limits: Limits,
    pub earlier_layers: u64,
    pub blob_len: u64,
}

impl Stream {
    /// Starts inflating `blob`. `progress` is told how many blob bytes were read.
    pub fn spawn(
        blob: File,
        compression: Compression,
        budget: Budget,
        progress: impl Fn(u64) + Send + 'static,
    ) -> io::Result<Stream> {
        let (chunk_tx, chunk_rx) = sync_channel(DEPTH);
        let (spent_tx, spent_rx) = sync_channel(DEPTH + 2);
        let producer = std::thread::Builder::new()
            .name("decompress".into())
            .spawn(move || produce(blob, compression, budget, chunk_tx, spent_rx, progress))?;
        Ok(Stream {
            chunks: Some(chunk_rx),
            spent: spent_tx,
            current: Vec::new(),
            pos: 0,
            producer: Some(producer),
        })
    }

    /// Reads what is left (a tar's trailing padding still counts towards its
    /// diff_id) and returns the totals.
    pub fn finish(mut self) -> Result<Summary, StreamError> {
        while self.next_chunk() {}
        self.join()
    }

    /// Stops the producer after a failure on the reading side, and returns its
    /// own error if it had one (a corrupt stream explains a tar error better).
    pub fn abandon(mut self) -> Option<StreamError> {
        self.chunks = None;
        match self.join() {
            Err(StreamError::Abandoned) | Ok(_) => None,
            Err(e) => Some(e),
        }
    }

    fn join(&mut self) -> Result<Summary, StreamError> {
        self.chunks = None;
        match self.producer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            // The producer does not panic on input; if it did, say so plainly.
            Some(Err(_)) | None => Err(StreamError::Read(io::Error::other(
                "the decompression thread stopped unexpectedly",
            ))),
        }
    }

    /// Moves to the next chunk; false at the end of the stream.
    fn next_chunk(&mut self) -> bool {
        let Some(chunks) = &self.chunks else {
            return false;
        };
        match chunks.recv() {
            Ok(next) => {
                let done = std::mem::replace(&mut self.current, next);
                // The producer may be gone or have enough buffers; either is fine.
                let _ = self.spent.try_send(done);
                self.pos = 0;
                true
            }
            Err(_) => {
                self.chunks = None;
                false
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if !self.next_chunk() {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A reader that hashes and counts what passes through it, and reports the
/// count (blob bytes read is what the progress bar shows).
struct Hashing<R, P> {
    inner: R,
    sha: Sha256,
    len: u64,
    progress: P,
}

impl<R: Read, P: Fn(u64)> Read for Hashing<R, P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        (self.progress)(self.len);
        Ok(n)
    }
}

fn produce(
    blob: File,
    compression: Compression,
    budget: Budget,
    chunks: SyncSender<Vec<u8>>,
    spent: Receiver<Vec<u8>>,
    progress: impl Fn(u64),
) -> Result<Summary, StreamError> {
    let mut raw = Hashing {
        inner: blob,
        sha: Sha256::new(),
        len: 0,
        progress,
    };
    let mut tar_sha = Sha256::new();
    let mut tar_len = 0u64;
    {
        let name = compression.name();
        let mut decoder: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut raw),
            Compression::Gzip => Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                CHUNK, &mut raw,
            ))),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(&mut raw)
                    .map_err(|e| StreamError::Decompress(name, e))?,
            ),
        };
        loop {
            let mut buf = match spent.try_recv() {
                Ok(buf) => buf,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(CHUNK),
            };
            buf.resize(CHUNK, 0);
            let n = fill(&mut decoder, &mut buf).map_err(|e| StreamError::Decompress(name, e))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            tar_sha.update(&buf);
            tar_len += n as u64;
            budget
                .limits
                .check_bytes(budget.earlier_layers, tar_len, budget.blob_len)?;
            chunks.send(buf).map_err(|_| StreamError::Abandoned)?;
        }
    }
    // Whatever follows the compressed stream still belongs to the blob.
    io::copy(&mut raw, &mut io::sink()).map_err(StreamError::Read)?;
    Ok(Summary {
        blob_sha256: raw.sha.finalize().into(),
        blob_len: raw.len,
        diff_sha256: tar_sha.finalize().into(),
        tar_len,
    })
}

/// Reads until `buf` is full or the stream ends.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

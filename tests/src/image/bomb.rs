//! Decompression bombs and entry floods (THREATS 10): layers of tens of GiB or millions of
//! entries once inflated, made in milliseconds by repeating one compressed chunk.
//!
//! Both are a tar made of one block repeated: a bomb is a header and then only zeros (the
//! file, its padding, the two end blocks); a flood is one empty-file header repeated, then
//! the end blocks. Both formats let independently compressed pieces follow one another:
//! zstd streams may hold several frames (RFC 8878 section 3.1), and a deflate stream
//! flushed with Z_FULL_FLUSH keeps no back-reference across the flush (RFC 1951), so the
//! compressed form of 1 MiB of repeated blocks can itself be repeated.

use flate2::{Compress, Crc, FlushCompress};

use super::{Blob, Compression, MediaTypes};

/// About how much repeated content is compressed once and then repeated.
const CHUNK: usize = 1 << 20;

/// A layer blob whose tar is one regular file `name` (mode 0644) of `size` zero bytes.
///
/// The blob is small (about 1 KiB per MiB for gzip, far less for zstd) and valid to the
/// end: gzip's CRC-32 and length are right. Its `diff_id` is a placeholder of zeros, not
/// the real one: hashing tens of GiB would take minutes, and a tool under test must stop at
/// its size bound before it gets to compare. Panics for `Compression::None` (that would be
/// the whole `size` in memory).
pub fn bomb_blob(name: &str, size: u64, compression: Compression, types: MediaTypes) -> Blob {
    let header = tar_header(name, size);
    // File data padded to a block, then the two zero blocks that end an archive.
    let zero_blocks = size.div_ceil(512) + 2;
    let repeated = Repeated {
        prefix: &header,
        unit: &[0; 512],
        count: zero_blocks,
        suffix: &[],
    };
    placeholder_blob(repeated.compress(compression), compression, types)
}

/// A layer blob whose tar is `entries` entries, all the same empty file `name` (each one
/// replaces the one before). Like [`bomb_blob`], small, valid, with a placeholder diff_id.
pub fn flood_blob(name: &str, entries: u64, compression: Compression, types: MediaTypes) -> Blob {
    let header = tar_header(name, 0);
    let repeated = Repeated {
        prefix: &[],
        unit: &header,
        count: entries,
        suffix: &[0; 1024],
    };
    placeholder_blob(repeated.compress(compression), compression, types)
}

fn placeholder_blob(data: Vec<u8>, compression: Compression, types: MediaTypes) -> Blob {
    Blob {
        digest: super::sha256_digest(&data),
        media_type: types.layer(compression).to_string(),
        data,
        diff_id: format!("sha256:{}", "0".repeat(64)),
    }
}

/// A GNU header for a regular file of `size` bytes (sizes past 8 GiB are stored in base-256).
fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut header = tar::Header::new_gnu();
    let field = &mut header.as_old_mut().name;
    let len = name.len().min(field.len());
    field[..len].copy_from_slice(&name.as_bytes()[..len]);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(super::DEFAULT_MTIME);
    header.set_cksum();
    *header.as_bytes()
}

/// Content of the form `prefix`, `unit` × `count`, `suffix`.
struct Repeated<'a> {
    prefix: &'a [u8],
    unit: &'a [u8],
    count: u64,
    suffix: &'a [u8],
}

impl Repeated<'_> {
    /// The content split as: the prefix, one chunk (the unit repeated to about 1 MiB)
    /// `chunks` times, and a tail (the remaining units and the suffix).
    fn pieces(&self) -> (Vec<u8>, u64, Vec<u8>) {
        let per_chunk = (CHUNK / self.unit.len()).max(1) as u64;
        let chunk = self.unit.repeat(per_chunk as usize);
        let tail = [
            self.unit.repeat((self.count % per_chunk) as usize),
            self.suffix.to_vec(),
        ]
        .concat();
        (chunk, self.count / per_chunk, tail)
    }

    fn compress(&self, compression: Compression) -> Vec<u8> {
        match compression {
            Compression::Gzip => self.gzip(),
            Compression::Zstd => self.zstd(),
            Compression::None => panic!("an uncompressed bomb or flood would be all in memory"),
        }
    }

    /// One zstd stream of frames: prefix, chunk × chunks, tail.
    fn zstd(&self) -> Vec<u8> {
        let frame = |data: &[u8]| zstd::bulk::compress(data, 3).unwrap_or_default();
        let (chunk, chunks, tail) = self.pieces();
        let chunk = frame(&chunk);
        let mut out = frame(self.prefix);
        for _ in 0..chunks {
            out.extend_from_slice(&chunk);
        }
        out.extend_from_slice(&frame(&tail));
        out
    }

    /// One gzip member (RFC 1952): header, one deflate stream made of fully flushed pieces,
    /// then the CRC-32 and length of the whole content.
    fn gzip(&self) -> Vec<u8> {
        let (chunk, chunks, tail) = self.pieces();
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        out.extend_from_slice(&deflate(self.prefix, FlushCompress::Full));
        let compressed = deflate(&chunk, FlushCompress::Full);
        for _ in 0..chunks {
            out.extend_from_slice(&compressed);
        }
        out.extend_from_slice(&deflate(&tail, FlushCompress::Finish));
        let crc = crc_of(&[(self.prefix, 1), (&chunk, chunks), (&tail, 1)]);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32.
        let length = self.prefix.len() as u64 + chunk.len() as u64 * chunks + tail.len() as u64;
        out.extend_from_slice(&(length as u32).to_le_bytes());
        out
    }
}

/// Raw deflate of `data` by a fresh compressor, ending with `flush`.
fn deflate(data: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut compressor = Compress::new(flate2::Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    // The output has room for the worst case, so one call consumes all input; it cannot
    // fail on a fresh compressor.
    let _ = compressor.compress_vec(data, &mut out, flush);
    out
}

/// CRC-32 of each piece repeated its number of times, in order, combined without reading
/// the repeated bytes again.
fn crc_of(pieces: &[(&[u8], u64)]) -> Crc {
    let mut crc = Crc::new();
    for (bytes, times) in pieces {
        let mut piece = Crc::new();
        piece.update(bytes);
        for _ in 0..*times {
            crc.combine(&piece);
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Inflates the blob and checks it is the expected tar: one entry of `size` zeros.
    fn check(blob: &Blob, size: u64) {
        let mut plain = Vec::new();
        match blob.media_type.ends_with("zstd") {
            true => zstd::stream::read::Decoder::new(&blob.data[..])
                .unwrap()
                .read_to_end(&mut plain),
            false => flate2::read::GzDecoder::new(&blob.data[..]).read_to_end(&mut plain),
        }
        .unwrap();
        assert_eq!(plain.len() as u64, 512 + size.next_multiple_of(512) + 1024);
        let mut archive = tar::Archive::new(&plain[..]);
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.header().size().unwrap(), size);
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        assert!(data.len() as u64 == size && data.iter().all(|&b| b == 0));
        drop(entry);
        assert!(entries.next().is_none());
    }

    #[test]
    fn small_bombs_inflate_to_the_exact_tar() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let size = 3 * CHUNK as u64 + 1000;
            check(
                &bomb_blob("zeros", size, compression, MediaTypes::Oci),
                size,
            );
        }
    }

    #[test]
    fn floods_hold_that_many_entries() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let blob = flood_blob("f", 5000, compression, MediaTypes::Oci);
            let mut plain = Vec::new();
            match compression {
                Compression::Zstd => zstd::stream::read::Decoder::new(&blob.data[..])
                    .unwrap()
                    .read_to_end(&mut plain),
                _ => flate2::read::GzDecoder::new(&blob.data[..]).read_to_end(&mut plain),
            }
            .unwrap();
            let mut archive = tar::Archive::new(&plain[..]);
            assert_eq!(archive.entries().unwrap().count(), 5000);
        }
    }

    #[test]
    fn a_twenty_gib_bomb_is_small() {
        let size = 20 << 30;
        let gzip = bomb_blob("zeros", size, Compression::Gzip, MediaTypes::Oci);
        let zstd = bomb_blob("zeros", size, Compression::Zstd, MediaTypes::Oci);
        assert!(gzip.data.len() < 32 << 20, "{}", gzip.data.len());
        assert!(zstd.data.len() < 2 << 20, "{}", zstd.data.len());
    }
}

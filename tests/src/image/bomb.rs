//! Decompression bombs (THREATS 10): a layer whose tar holds one file of zeros, tens of GiB
//! once inflated, made in milliseconds by repeating one compressed chunk.
//!
//! After its 512-byte header, such a tar is nothing but zeros (the file, its padding, the
//! two end blocks). Both formats let independently compressed pieces follow one another:
//! zstd streams may hold several frames (RFC 8878 section 3.1), and a deflate stream
//! flushed with Z_FULL_FLUSH keeps no back-reference across the flush (RFC 1951), so the
//! compressed form of 1 MiB of zeros can simply be repeated.

use flate2::{Compress, Crc, FlushCompress};

use super::{Blob, Compression, MediaTypes};

/// The piece of zeros compressed once and repeated.
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
    let zeros = size.next_multiple_of(512) + 1024;
    let data = match compression {
        Compression::Gzip => gzip_bomb(&header, zeros),
        Compression::Zstd => zstd_bomb(&header, zeros),
        Compression::None => panic!("bomb_blob: an uncompressed bomb would be {size} bytes"),
    };
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

/// `header` then `zeros` zero bytes as one zstd stream of many frames.
fn zstd_bomb(header: &[u8], zeros: u64) -> Vec<u8> {
    let frame = |data: &[u8]| zstd::bulk::compress(data, 3).unwrap_or_default();
    let chunk = frame(&[0; CHUNK]);
    let mut out = frame(header);
    for _ in 0..zeros / CHUNK as u64 {
        out.extend_from_slice(&chunk);
    }
    out.extend_from_slice(&frame(&vec![0; (zeros % CHUNK as u64) as usize]));
    out
}

/// `header` then `zeros` zero bytes as one gzip member (RFC 1952): header, one deflate
/// stream made of fully flushed pieces, CRC-32 and length of the whole content.
fn gzip_bomb(header: &[u8], zeros: u64) -> Vec<u8> {
    let chunk = deflate(&[0; CHUNK], FlushCompress::Full);
    let rest = vec![0; (zeros % CHUNK as u64) as usize];
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&deflate(header, FlushCompress::Full));
    for _ in 0..zeros / CHUNK as u64 {
        out.extend_from_slice(&chunk);
    }
    out.extend_from_slice(&deflate(&rest, FlushCompress::Finish));
    let crc = crc_of_header_and_zeros(header, zeros / CHUNK as u64, &rest);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32.
    let length = header.len() as u64 + zeros;
    out.extend_from_slice(&(length as u32).to_le_bytes());
    out
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

/// CRC-32 of the header, `chunks` chunks of zeros and `rest`, combined without reading
/// tens of GiB.
fn crc_of_header_and_zeros(header: &[u8], chunks: u64, rest: &[u8]) -> Crc {
    let mut crc = Crc::new();
    crc.update(header);
    let mut chunk = Crc::new();
    chunk.update(&[0; CHUNK]);
    for _ in 0..chunks {
        crc.combine(&chunk);
    }
    let mut tail = Crc::new();
    tail.update(rest);
    crc.combine(&tail);
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
    fn a_twenty_gib_bomb_is_small() {
        let size = 20 << 30;
        let gzip = bomb_blob("zeros", size, Compression::Gzip, MediaTypes::Oci);
        let zstd = bomb_blob("zeros", size, Compression::Zstd, MediaTypes::Oci);
        assert!(gzip.data.len() < 32 << 20, "{}", gzip.data.len());
        assert!(zstd.data.len() < 2 << 20, "{}", zstd.data.len());
    }
}

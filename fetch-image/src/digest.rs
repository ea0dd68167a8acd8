//! Content addressing: every manifest and blob is named by the sha256 of its
//! bytes, and those bytes are checked against the name while they stream in.
//!
//! A digest only becomes a path (`blobs/sha256/HEX`) or a URL once it matches
//! `sha256:[0-9a-f]{64}` exactly (containers/image CVE-2024-3727 used
//! `sha256:../../x` to write outside the layout).

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256};

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("digest '{digest}' is not sha256:<64 lowercase hex digits>")]
pub struct DigestError {
    pub digest: String,
}

/// Parses a digest, accepting only the strict sha256 form.
pub fn parse_sha256(text: &str) -> Result<Digest, DigestError> {
    let fail = || DigestError {
        digest: text.chars().take(100).collect(),
    };
    let hex = text.strip_prefix("sha256:").ok_or_else(fail)?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(fail());
    }
    text.parse().map_err(|_| fail())
}

/// The hex part of a digest that has already been through [`parse_sha256`]
/// or oci-spec's parser; refuses anything else so no caller can build a path
/// from an unchecked digest.
pub fn sha256_hex(digest: &Digest) -> Result<&str, DigestError> {
    let hex = digest.digest();
    let strict = *digest.algorithm() == DigestAlgorithm::Sha256
        && hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if strict {
        Ok(hex)
    } else {
        Err(DigestError {
            digest: digest.to_string().chars().take(100).collect(),
        })
    }
}

/// The sha256 digest of some bytes.
pub fn digest_of(bytes: &[u8]) -> Digest {
    let mut verifier = Verifier::default();
    verifier.update(bytes);
    verifier.finish()
}

/// Hashes and counts bytes as they pass.
#[derive(Clone, Default)]
pub struct Verifier {
    hasher: Sha256,
    len: u64,
}

impl Verifier {
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    pub fn finish(self) -> Digest {
        let hex: String = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // A freshly computed sha256 always parses.
        match format!("sha256:{hex}").parse() {
            Ok(digest) => digest,
            Err(_) => unreachable!("sha256 output is 64 lowercase hex digits"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_syntax() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(parse_sha256(&good).is_ok());
        for bad in [
            "sha256:../../x".to_owned(),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(128)),
            format!("sha256:{}/", "a".repeat(64)),
            "a".repeat(64),
            String::new(),
        ] {
            assert!(parse_sha256(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_digest() {
        assert_eq!(
            digest_of(b"{}").to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}

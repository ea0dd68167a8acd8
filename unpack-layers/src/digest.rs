//! Content digests (image-spec `descriptor.md`, "Digests").
//!
//! A digest names a blob by the SHA-256 of its bytes. Before a digest from an
//! index, manifest or config becomes a file name under `blobs/`, it must be
//! exactly `sha256:` and 64 lowercase hex digits: anything else (`sha256:../x`,
//! upper case, another algorithm) could name a path outside the layout
//! (containers/image CVE-2024-3727).

use std::fmt::Write;

/// Why a digest string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("unsupported digest algorithm in '{0}' (only sha256)")]
    Algorithm(String),
    #[error("malformed digest '{0}' (want sha256: and 64 lowercase hex digits)")]
    Malformed(String),
}

/// The hex part of a valid `sha256:<hex>` digest.
pub fn sha256_hex(digest: &str) -> Result<&str, DigestError> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(DigestError::Malformed(digest.to_owned()));
    };
    if algorithm != "sha256" {
        return Err(DigestError::Algorithm(digest.to_owned()));
    }
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return Err(DigestError::Malformed(digest.to_owned()));
    }
    Ok(hex)
}

/// `sha256:<hex>` of a computed hash.
pub fn format_sha256(hash: &[u8]) -> String {
    let mut out = String::with_capacity(7 + 2 * hash.len());
    out.push_str("sha256:");
    for b in hash {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";

    #[test]
    fn accepts_sha256() {
        assert_eq!(sha256_hex(&format!("sha256:{HEX}")).unwrap(), HEX);
    }

    #[test]
    fn refuses_anything_that_could_become_a_strange_path() {
        for bad in [
            "sha256:../../etc/passwd".to_owned(),
            format!("sha256:{}", HEX.to_uppercase()),
            format!("sha256:{}", &HEX[1..]),
            format!("sha256:{HEX}0"),
            format!("sha256:{}/..", &HEX[..61]),
            HEX.to_owned(),
        ] {
            assert!(
                matches!(sha256_hex(&bad), Err(DigestError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            sha256_hex(&format!("sha512:{HEX}{HEX}")),
            Err(DigestError::Algorithm(_))
        ));
    }

    #[test]
    fn formats_hex() {
        assert_eq!(format_sha256(&[0, 0xab, 0xff]), "sha256:00abff");
    }
}

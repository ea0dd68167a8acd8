//! Bounds against decompression bombs and entry floods.
//!
//! A few KiB of gzip or zstd can inflate to tens of GiB, and a layer can hold
//! millions of empty entries. Real images are far below every default here;
//! past one, the unpack stops with an error and what it wrote is removed.

/// Uncompressed bytes a layer may reach before `--max-ratio` applies.
pub const RATIO_GRACE: u64 = 1 << 30;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total uncompressed bytes over all layers (`--max-size`).
    pub max_size: u64,
    /// Uncompressed / compressed size of a layer past [`RATIO_GRACE`] (`--max-ratio`).
    pub max_ratio: u64,
    /// Tar entries over all layers (`--max-entries`).
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 32 << 30,
            max_ratio: 200,
            max_entries: 2_000_000,
        }
    }
}

/// A bound that was crossed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("uncompressed size exceeds --max-size {limit} bytes")]
    Size { limit: u64 },
    #[error("layer inflates more than --max-ratio {ratio} times its compressed size of {compressed} bytes")]
    Ratio { ratio: u64, compressed: u64 },
    #[error("more than --max-entries {limit} tar entries")]
    Entries { limit: u64 },
}

impl Limits {
    /// Checks the running totals: `before` bytes from earlier layers, `layer`
    /// bytes so far from the current one, whose blob is `compressed` bytes.
    pub fn check_bytes(&self, before: u64, layer: u64, compressed: u64) -> Result<(), LimitError> {
        if before.saturating_add(layer) > self.max_size {
            return Err(LimitError::Size {
                limit: self.max_size,
            });
        }
        if layer > RATIO_GRACE && layer > compressed.saturating_mul(self.max_ratio) {
            return Err(LimitError::Ratio {
                ratio: self.max_ratio,
                compressed,
            });
        }
        Ok(())
    }

    pub fn check_entries(&self, entries: u64) -> Result<(), LimitError> {
        if entries > self.max_entries {
            return Err(LimitError::Entries {
                limit: self.max_entries,
            });
        }
        Ok(())
    }
}

/// Parses `SIZE`: a byte count with an optional binary suffix, `K`, `M`, `G`,
/// `T` (also `KiB`, `MB`...: all mean powers of 1024), as `du`/`dd` users type.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 512M, 32G)"))?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "'{text}': unknown size suffix '{suffix}' (K, M, G or T)"
            ))
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("32G").unwrap(), 32 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert!(parse_size("").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn size_bound_counts_every_layer() {
        let l = Limits {
            max_size: 100,
            ..Limits::default()
        };
        assert!(l.check_bytes(60, 40, 1).is_ok());
        assert_eq!(
            l.check_bytes(60, 41, 1),
            Err(LimitError::Size { limit: 100 })
        );
    }

    #[test]
    fn ratio_applies_only_past_the_grace() {
        let l = Limits::default();
        assert!(l.check_bytes(0, RATIO_GRACE, 1).is_ok());
        assert!(l.check_bytes(0, RATIO_GRACE + 1, 1).is_err());
        assert!(l.check_bytes(0, RATIO_GRACE + 1, RATIO_GRACE / 100).is_ok());
    }

    #[test]
    fn entry_bound() {
        let l = Limits {
            max_entries: 3,
            ..Limits::default()
        };
        assert!(l.check_entries(3).is_ok());
        assert!(l.check_entries(4).is_err());
    }
}

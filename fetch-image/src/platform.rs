//! Choosing one image out of a multi-platform index (an OCI image index or a
//! Docker manifest list), by `os/architecture[/variant]`, as containerd's
//! platform matcher does: `arm64` means `arm64/v8`, `arm` means `arm/v7`.

use std::fmt;

use oci_spec::image::Descriptor;

/// `OS/ARCH[/VARIANT]`, in the Go names the image spec uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform '{0}': expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8")]
pub struct PlatformError(pub String);

impl PlatformSpec {
    pub fn parse(text: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| valid(p)) {
            return Err(PlatformError(text.to_owned()));
        }
        Ok(PlatformSpec {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalize_arch(&parts[1].to_ascii_lowercase()).to_owned(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// This machine's platform, named as Go names it.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "loongarch64" => ("loong64", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            other => (other, None),
        };
        PlatformSpec {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry's platform is this one.
    fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let architecture = normalize_arch(architecture);
        if !os.eq_ignore_ascii_case(&self.os) || architecture != self.architecture {
            return false;
        }
        let default = default_variant(architecture);
        match (&self.variant, variant.filter(|v| !v.is_empty())) {
            // Asked for a variant: the entry must have it, or imply it.
            (Some(wanted), Some(got)) => wanted.eq_ignore_ascii_case(got),
            (Some(wanted), None) => default == Some(wanted.as_str()),
            // No variant asked: take the architecture's default, or any
            // variant where the architecture has no default (amd64 v2, v3).
            (None, Some(got)) => default.is_none_or(|d| d.eq_ignore_ascii_case(got)),
            (None, None) => true,
        }
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" => "386",
        other => other,
    }
}

fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

/// The platform an index entry declares, as `os/arch[/variant]`.
pub fn describe(descriptor: &Descriptor) -> String {
    match descriptor.platform() {
        Some(p) => {
            let mut text = format!("{}/{}", p.os(), p.architecture());
            if let Some(variant) = p.variant().as_deref().filter(|v| !v.is_empty()) {
                text.push('/');
                text.push_str(variant);
            }
            text
        }
        None => "unknown".to_owned(),
    }
}

/// Picks the first index entry for `wanted`; entries without a platform
/// (attestations, signatures) are never picked.
pub fn select_platform<'a>(
    manifests: &'a [Descriptor],
    wanted: &PlatformSpec,
) -> Option<&'a Descriptor> {
    // An exact variant match wins over an implied one (arm64/v8 over arm64).
    let candidates = manifests.iter().filter(|d| {
        d.platform().as_ref().is_some_and(|p| {
            wanted.matches(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        })
    });
    let mut first = None;
    for candidate in candidates {
        let exact = candidate
            .platform()
            .as_ref()
            .and_then(|p| p.variant().clone())
            .is_some_and(|v| Some(&v) == wanted.variant.as_ref());
        if exact {
            return Some(candidate);
        }
        first = first.or(Some(candidate));
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{DescriptorBuilder, MediaType, PlatformBuilder};

    fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        let mut platform = PlatformBuilder::default().os(os).architecture(arch);
        if let Some(v) = variant {
            platform = platform.variant(v);
        }
        DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(
                format!("sha256:{}", format!("{n:02x}").repeat(32))
                    .parse::<oci_spec::image::Digest>()
                    .unwrap(),
            )
            .size(1u64)
            .platform(platform.build().unwrap())
            .build()
            .unwrap()
    }

    fn pick(index: &[Descriptor], wanted: &str) -> Option<String> {
        select_platform(index, &PlatformSpec::parse(wanted).unwrap()).map(describe)
    }

    #[test]
    fn selects_with_variants() {
        let index = vec![
            entry("linux", "amd64", None, 1),
            entry("linux", "arm", Some("v6"), 2),
            entry("linux", "arm", Some("v7"), 3),
            entry("linux", "arm64", None, 4),
            entry("linux", "arm64", Some("v8"), 5),
            entry("windows", "amd64", None, 6),
        ];
        assert_eq!(pick(&index, "linux/amd64").as_deref(), Some("linux/amd64"));
        assert_eq!(pick(&index, "linux/x86_64").as_deref(), Some("linux/amd64"));
        assert_eq!(pick(&index, "linux/arm").as_deref(), Some("linux/arm/v7"));
        assert_eq!(
            pick(&index, "linux/arm/v6").as_deref(),
            Some("linux/arm/v6")
        );
        assert_eq!(
            pick(&index, "linux/arm64/v8").as_deref(),
            Some("linux/arm64/v8")
        );
        assert_eq!(pick(&index, "linux/arm64").as_deref(), Some("linux/arm64"));
        assert_eq!(
            pick(&index, "windows/amd64").as_deref(),
            Some("windows/amd64")
        );
        assert_eq!(pick(&index, "linux/arm/v5"), None);
        assert_eq!(pick(&index, "linux/s390x"), None);
        // arm64 without a variant in the index still serves arm64/v8.
        let plain = vec![entry("linux", "arm64", None, 7)];
        assert_eq!(
            pick(&plain, "linux/arm64/v8").as_deref(),
            Some("linux/arm64")
        );
    }

    #[test]
    fn parses_platforms() {
        let p = PlatformSpec::parse("linux/arm64/v8").unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm64"));
        assert_eq!(p.variant.as_deref(), Some("v8"));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64", ""] {
            assert!(PlatformSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(PlatformSpec::host().os, "linux");
    }
}

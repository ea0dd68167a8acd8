//! Reading an OCI image layout (image-spec `image-layout.md`): `oci-layout`,
//! `index.json`, and content-addressed `blobs/sha256/<hex>`.
//!
//! A tag is the `org.opencontainers.image.ref.name` annotation of an
//! `index.json` entry (`annotations.md`). The entry names a manifest, or an
//! image index listing one manifest per platform. Every small document read
//! here (index, manifest, config) is checked against its descriptor's size and
//! digest before it is parsed, and read with a size cap.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use sha2::{Digest, Sha256};

use crate::digest::{format_sha256, sha256_hex, DigestError};

/// Cap for index.json and manifests (the size registries enforce).
const MAX_MANIFEST: u64 = 4 << 20;
/// Cap for an image config (history can be long, not this long).
const MAX_CONFIG: u64 = 16 << 20;
/// Indexes nested deeper than this are refused.
const MAX_NESTING: usize = 4;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `DIR[:TAG]` from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub dir: PathBuf,
    pub tag: String,
}

impl ImageRef {
    /// Splits at the last `:` when what follows it is not a path (no `/`), as
    /// umoci reads `--image`; the tag defaults to `latest`.
    pub fn parse(arg: &OsStr) -> ImageRef {
        let bytes = arg.as_bytes();
        if let Some(colon) = bytes.iter().rposition(|&b| b == b':') {
            let tag = &bytes[colon + 1..];
            if !tag.is_empty() && !tag.contains(&b'/') {
                if let Ok(tag) = std::str::from_utf8(tag) {
                    return ImageRef {
                        dir: PathBuf::from(OsStr::from_bytes(&bytes[..colon])),
                        tag: tag.to_owned(),
                    };
                }
            }
        }
        ImageRef {
            dir: PathBuf::from(arg),
            tag: "latest".to_owned(),
        }
    }
}

/// `OS/ARCH[/VARIANT]` for `--platform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: (*os).to_owned(),
                    architecture: (*arch).to_owned(),
                    variant: Some((*variant).to_owned()),
                })
            }
            _ => Err(format!(
                "'{text}' is not OS/ARCH[/VARIANT] (e.g. linux/arm64)"
            )),
        }
    }

    /// This machine, in Go's names (GOOS/GOARCH), which images use.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    fn matches(&self, d: &Descriptor) -> bool {
        let Some(p) = d.platform() else {
            return false;
        };
        if p.os().to_string() != self.os || p.architecture().to_string() != self.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                // arm64 without a variant means v8 (as containerd's platforms matcher).
                let have = p.variant().clone().unwrap_or_else(|| {
                    if self.architecture == "arm64" {
                        "v8".to_owned()
                    } else {
                        String::new()
                    }
                });
                &have == want
            }
        }
    }

    fn describe(d: &Descriptor) -> String {
        match d.platform() {
            Some(p) => match p.variant() {
                Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
                None => format!("{}/{}", p.os(), p.architecture()),
            },
            None => "unknown".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("'{}' is not an OCI image layout (no oci-layout file)", .0.display())]
    NotALayout(PathBuf),
    #[error("cannot read '{}'", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("'{}' is not a valid {what}", .path.display())]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("no tag '{tag}' in index.json (tags: {})", if .tags.is_empty() { "none".to_owned() } else { .tags.join(", ") })]
    NoTag { tag: String, tags: Vec<String> },
    #[error("no manifest for platform {want} (platforms: {})", .have.join(", "))]
    NoPlatform { want: String, have: Vec<String> },
    #[error("{what} has media type '{media_type}', which is neither a manifest nor an index")]
    MediaType { what: String, media_type: String },
    #[error("image indexes nest more than {MAX_NESTING} deep")]
    TooDeep,
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("blob {digest} is {actual} bytes, its descriptor says {expected}")]
    Size {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is larger than {max} bytes")]
    TooLarge { digest: String, max: u64 },
    #[error("blob {digest} does not match its digest (its content hashes to {actual})")]
    Mismatch { digest: String, actual: String },
    #[error("the manifest lists {layers} layers but the config has {diff_ids} diff_ids")]
    LayerCount { layers: usize, diff_ids: usize },
}

/// An image found in a layout: its manifest and config, both verified.
pub struct Image {
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
}

/// Where a blob lives, once its digest is known to be well formed.
pub fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, DigestError> {
    Ok(layout
        .join("blobs")
        .join("sha256")
        .join(sha256_hex(digest)?))
}

/// Finds `image.tag` in the layout and reads its manifest and config.
pub fn open(image: &ImageRef, platform: Option<&Platform>) -> Result<Image, LayoutError> {
    let dir = &image.dir;
    let marker = dir.join("oci-layout");
    if !marker.is_file() {
        return Err(LayoutError::NotALayout(dir.clone()));
    }
    let index_path = dir.join("index.json");
    let index_bytes = read_capped(&index_path, MAX_MANIFEST)?;
    let index = parse_index(&index_bytes, &index_path)?;
    let tagged: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| ref_name(d) == Some(image.tag.as_str()))
        .collect();
    let descriptor = match tagged.as_slice() {
        [] => {
            let mut tags: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|d| ref_name(d).map(str::to_owned))
                .collect();
            tags.sort();
            tags.dedup();
            return Err(LayoutError::NoTag {
                tag: image.tag.clone(),
                tags,
            });
        }
        [one] => (*one).clone(),
        // One tag on several manifests, one per platform.
        several => pick_platform(several.iter().copied(), platform)?.clone(),
    };
    let (manifest_digest, manifest) = resolve_manifest(dir, descriptor, platform, 0)?;
    let config_digest = manifest.config().digest().to_string();
    let config_bytes = read_blob(dir, manifest.config(), MAX_CONFIG)?;
    let config: ImageConfiguration = parse_json(
        &config_bytes,
        &blob_path(dir, &config_digest)?,
        "image config",
    )?;
    let layers = manifest.layers().len();
    let diff_ids = config.rootfs().diff_ids().len();
    if layers != diff_ids {
        return Err(LayoutError::LayerCount { layers, diff_ids });
    }
    Ok(Image {
        manifest_digest,
        manifest,
        config,
    })
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn is_manifest(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.manifest.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.v2+json"
}

/// Follows a descriptor through image indexes down to one manifest.
fn resolve_manifest(
    dir: &Path,
    descriptor: Descriptor,
    platform: Option<&Platform>,
    depth: usize,
) -> Result<(String, ImageManifest), LayoutError> {
    if depth > MAX_NESTING {
        return Err(LayoutError::TooDeep);
    }
    let digest = descriptor.digest().to_string();
    let media_type = descriptor.media_type().to_string();
    let bytes = read_blob(dir, &descriptor, MAX_MANIFEST)?;
    let path = blob_path(dir, &digest)?;
    if is_index(&media_type) {
        let index = parse_index(&bytes, &path)?;
        let next = pick_platform(index.manifests().iter(), platform)?.clone();
        return resolve_manifest(dir, next, platform, depth + 1);
    }
    if !is_manifest(&media_type) {
        return Err(LayoutError::MediaType {
            what: digest,
            media_type,
        });
    }
    Ok((digest, parse_json(&bytes, &path, "image manifest")?))
}

fn pick_platform<'a>(
    candidates: impl Iterator<Item = &'a Descriptor> + Clone,
    platform: Option<&Platform>,
) -> Result<&'a Descriptor, LayoutError> {
    let want = platform.cloned().unwrap_or_else(Platform::host);
    if let Some(found) = candidates.clone().find(|d| want.matches(d)) {
        return Ok(found);
    }
    Err(LayoutError::NoPlatform {
        want: match &want.variant {
            Some(v) => format!("{}/{}/{v}", want.os, want.architecture),
            None => format!("{}/{}", want.os, want.architecture),
        },
        have: candidates.map(Platform::describe).collect(),
    })
}

/// Reads a small blob whole, checking its size and digest.
pub fn read_blob(dir: &Path, descriptor: &Descriptor, max: u64) -> Result<Vec<u8>, LayoutError> {
    let digest = descriptor.digest().to_string();
    let path = blob_path(dir, &digest)?;
    if descriptor.size() > max {
        return Err(LayoutError::TooLarge { digest, max });
    }
    let bytes = read_capped(&path, max)?;
    if bytes.len() as u64 != descriptor.size() {
        return Err(LayoutError::Size {
            digest,
            expected: descriptor.size(),
            actual: bytes.len() as u64,
        });
    }
    let actual = format_sha256(&Sha256::digest(&bytes));
    if actual != digest {
        return Err(LayoutError::Mismatch { digest, actual });
    }
    Ok(bytes)
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, LayoutError> {
    let io_err = |source| LayoutError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() as u64 > max {
        return Err(io_err(io::Error::other(format!("larger than {max} bytes"))));
    }
    Ok(bytes)
}

/// Reads an image index, taking `"manifests": null` as an empty list: that is what
/// `umoci init` writes for a new layout, and skopeo accepts it too.
fn parse_index(bytes: &[u8], path: &Path) -> Result<ImageIndex, LayoutError> {
    let mut value: serde_json::Value = parse_json(bytes, path, "image index")?;
    if let Some(manifests) = value.get_mut("manifests").filter(|m| m.is_null()) {
        *manifests = serde_json::Value::Array(Vec::new());
    }
    serde_json::from_value(value).map_err(|source| LayoutError::Json {
        path: path.to_owned(),
        what: "image index",
        source,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<T, LayoutError> {
    serde_json::from_slice(bytes).map_err(|source| LayoutError::Json {
        path: path.to_owned(),
        what,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_from_umoci_init_with_null_manifests_reads_as_empty() {
        let path = Path::new("index.json");
        let index = parse_index(br#"{"schemaVersion":2,"manifests":null}"#, path).unwrap();
        assert!(index.manifests().is_empty());
        assert!(parse_index(br#"{"schemaVersion":2,"manifests":7}"#, path).is_err());
    }

    #[test]
    fn image_refs() {
        let r = ImageRef::parse(OsStr::new("oci-images/alpine:3.20"));
        assert_eq!(
            (r.dir.to_str().unwrap(), r.tag.as_str()),
            ("oci-images/alpine", "3.20")
        );
        let r = ImageRef::parse(OsStr::new("oci-images/alpine"));
        assert_eq!(
            (r.dir.to_str().unwrap(), r.tag.as_str()),
            ("oci-images/alpine", "latest")
        );
        let r = ImageRef::parse(OsStr::new("odd:dir/alpine"));
        assert_eq!(
            (r.dir.to_str().unwrap(), r.tag.as_str()),
            ("odd:dir/alpine", "latest")
        );
        let r = ImageRef::parse(OsStr::new("dir:"));
        assert_eq!(
            (r.dir.to_str().unwrap(), r.tag.as_str()),
            ("dir:", "latest")
        );
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }

    #[test]
    fn blob_paths_only_from_valid_digests() {
        assert!(blob_path(Path::new("l"), "sha256:../../etc").is_err());
        let hex = "0".repeat(64);
        assert_eq!(
            blob_path(Path::new("l"), &format!("sha256:{hex}")).unwrap(),
            Path::new("l/blobs/sha256").join(hex)
        );
    }
}

//! The documents a registry serves for a tag (image-spec `manifest.md`,
//! `image-index.md`; Docker's "Image Manifest V2, Schema 2"):
//!
//! - an *image manifest* names one config blob and the ordered layer blobs;
//! - an *image index* (Docker: *manifest list*) names one manifest per
//!   platform.
//!
//! Both formats carry the same JSON shape with different media types, so a
//! Docker schema2 manifest becomes an OCI one by renaming media types; the
//! blobs keep their digests and only the manifest's own digest changes.
//! Schema 1 (signed, v1-compatibility history) is refused.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use crate::digest::sha256_hex;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What the manifest endpoint is asked for, best first. Schema 1 is
/// accepted only so that it can be recognised and refused by name.
pub const ACCEPT: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA1,
];

/// Manifests and indexes larger than this are refused (a hostile registry
/// could otherwise make us buffer anything).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// A parsed manifest or index.
#[derive(Debug)]
pub enum Document {
    Manifest {
        manifest: Box<ImageManifest>,
        /// Docker schema2: needs converting to OCI media types.
        docker: bool,
    },
    Index(Box<ImageIndex>),
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("Docker schema 1 manifests are not supported (deprecated since 2017; push the image again with a current tool)")]
    Schema1,
    #[error("ambiguous document: it has both 'manifests' and 'layers' or 'config'")]
    Ambiguous,
    #[error("mediaType '{body}' in the document contradicts Content-Type '{header}'")]
    Contradiction { body: String, header: String },
    #[error("unsupported manifest media type '{0}'")]
    Unsupported(String),
    #[error("no mediaType and no recognisable shape")]
    Unrecognised,
    #[error("invalid {kind}: {reason}")]
    Invalid { kind: &'static str, reason: String },
    #[error("unsupported config media type '{0}'")]
    ConfigType(String),
}

/// Parses what the manifest endpoint returned. `content_type` is the
/// response header; it must agree with the document's own `mediaType`
/// (CVE-2021-41190: a document read as an index by one tool and as a
/// manifest by another).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Document, ManifestError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    let object = value.as_object().ok_or(ManifestError::Unrecognised)?;
    if object.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(ManifestError::Schema1);
    }
    let has_manifests = object.contains_key("manifests");
    let has_image_parts = object.contains_key("layers") || object.contains_key("config");
    if has_manifests && has_image_parts {
        return Err(ManifestError::Ambiguous);
    }

    let header = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_ascii_lowercase())
        .filter(|c| {
            !matches!(
                c.as_str(),
                "" | "application/json" | "text/plain" | "application/octet-stream"
            )
        });
    let body = match object.get("mediaType") {
        Some(serde_json::Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(ManifestError::Unrecognised),
        None => None,
    };
    let media_type = match (&body, &header) {
        (Some(body), Some(header)) if body != header => {
            return Err(ManifestError::Contradiction {
                body: body.clone(),
                header: header.clone(),
            })
        }
        (Some(m), _) | (None, Some(m)) => m.clone(),
        (None, None) if has_manifests => OCI_INDEX.to_owned(),
        (None, None) if has_image_parts => OCI_MANIFEST.to_owned(),
        (None, None) => return Err(ManifestError::Unrecognised),
    };

    match media_type.as_str() {
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(ManifestError::Schema1),
        OCI_INDEX | DOCKER_LIST => {
            if has_image_parts || !has_manifests {
                return Err(invalid("index", "it has no 'manifests' list"));
            }
            let index: ImageIndex =
                serde_json::from_value(value).map_err(|e| invalid("index", e))?;
            for entry in index.manifests() {
                check_descriptor("index", entry)?;
            }
            Ok(Document::Index(Box::new(index)))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            if has_manifests || !object.contains_key("config") {
                return Err(invalid("manifest", "it has no 'config'"));
            }
            let manifest: ImageManifest =
                serde_json::from_value(value).map_err(|e| invalid("manifest", e))?;
            check_descriptor("manifest", manifest.config())?;
            for layer in manifest.layers() {
                check_descriptor("manifest", layer)?;
            }
            Ok(Document::Manifest {
                manifest: Box::new(manifest),
                docker: media_type == DOCKER_MANIFEST,
            })
        }
        other => Err(ManifestError::Unsupported(other.to_owned())),
    }
}

fn invalid(kind: &'static str, reason: impl ToString) -> ManifestError {
    ManifestError::Invalid {
        kind,
        reason: reason.to_string(),
    }
}

/// Every digest must be strict sha256 before it names a file or a URL.
fn check_descriptor(kind: &'static str, descriptor: &Descriptor) -> Result<(), ManifestError> {
    sha256_hex(descriptor.digest()).map_err(|e| invalid(kind, e))?;
    Ok(())
}

/// Whether an index entry is something we can follow.
pub fn is_manifest_type(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageManifest | MediaType::ImageIndex)
        || matches!(media_type, MediaType::Other(m) if m == DOCKER_MANIFEST || m == DOCKER_LIST)
}

/// Whether an index entry is itself an index.
pub fn is_index_type(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageIndex)
        || matches!(media_type, MediaType::Other(m) if m == DOCKER_LIST)
}

/// Docker schema2 -> OCI: the same descriptors under OCI media types, as
/// containers/image does (`manifest/docker_schema2.go`). The config blob
/// itself is kept byte for byte, so its digest (the image ID) is unchanged.
pub fn docker_to_oci(manifest: &ImageManifest) -> Result<ImageManifest, ManifestError> {
    let mut converted = manifest.clone();
    converted.set_media_type(Some(MediaType::ImageManifest));
    converted.set_schema_version(2);

    let mut config = manifest.config().clone();
    match config.media_type() {
        MediaType::Other(m) if m == DOCKER_CONFIG => {
            config.set_media_type(MediaType::ImageConfig);
        }
        MediaType::ImageConfig => {}
        other => return Err(ManifestError::ConfigType(other.to_string())),
    }
    converted.set_config(config);

    for layer in converted.layers_mut() {
        let oci = match layer.media_type() {
            MediaType::Other(m) => match m.as_str() {
                "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
                "application/vnd.docker.image.rootfs.diff.tar" => MediaType::ImageLayer,
                "application/vnd.docker.image.rootfs.diff.tar.zstd" => MediaType::ImageLayerZstd,
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                    MediaType::ImageLayerNonDistributableGzip
                }
                "application/vnd.docker.image.rootfs.foreign.diff.tar" => {
                    MediaType::ImageLayerNonDistributable
                }
                other => MediaType::Other(other.to_owned()),
            },
            oci => oci.clone(),
        };
        layer.set_media_type(oci);
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn docker_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"{DOCKER_CONFIG}","size":7,"digest":"{A}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9,"digest":"{B}"}}]}}"#
        )
    }

    #[test]
    fn converts_docker_schema2() {
        let Document::Manifest { manifest, docker } =
            parse(docker_manifest().as_bytes(), Some(DOCKER_MANIFEST)).unwrap()
        else {
            panic!("not a manifest")
        };
        assert!(docker);
        let oci = docker_to_oci(&manifest).unwrap();
        let json = serde_json::to_string(&oci).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{A}","size":7}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{B}","size":9}}]}}"#
            )
        );
    }

    #[test]
    fn refuses_hostile_or_odd_documents() {
        let cases: Vec<(String, Option<&str>, &str)> = vec![
            (
                r#"{"schemaVersion":1,"fsLayers":[]}"#.into(),
                None,
                "schema 1",
            ),
            ("{}".into(), Some(DOCKER_SCHEMA1_SIGNED), "schema 1"),
            (
                r#"{"schemaVersion":2,"manifests":[],"layers":[],"config":{}}"#.to_owned(),
                None,
                "ambiguous",
            ),
            (docker_manifest(), Some(OCI_INDEX), "contradicts"),
            (
                docker_manifest().replace(B, "sha256:../../x"),
                None,
                "invalid manifest",
            ),
            (
                docker_manifest().replace(B, &format!("sha512:{}", "b".repeat(128))),
                None,
                "sha256",
            ),
            ("[1,2]".into(), None, "no mediaType"),
            ("nope".into(), None, "not valid JSON"),
            (
                r#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#.into(),
                None,
                "unsupported manifest media type",
            ),
        ];
        for (body, content_type, needle) in cases {
            let err = parse(body.as_bytes(), content_type)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn reads_indexes_without_media_type() {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{A}","size":3,
            "platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        let Document::Index(index) = parse(index.as_bytes(), Some("application/json")).unwrap()
        else {
            panic!("not an index")
        };
        assert_eq!(index.manifests().len(), 1);
        assert!(is_manifest_type(index.manifests()[0].media_type()));
    }

    #[test]
    fn mutated_documents_never_panic() {
        let seeds = [
            docker_manifest(),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{A}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
            ),
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let content_types = [None, Some(OCI_MANIFEST), Some(OCI_INDEX), Some(DOCKER_LIST)];
        for _ in 0..20_000 {
            let seed = seeds[(next() % 2) as usize].as_bytes();
            let mut bytes = seed.to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[at] = (next() % 256) as u8,
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let content_type = content_types[(next() % 4) as usize];
            if let Ok(Document::Manifest {
                manifest,
                docker: true,
            }) = parse(&bytes, content_type)
            {
                let _ = docker_to_oci(&manifest);
            }
        }
    }
}

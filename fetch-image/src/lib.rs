//! fetch-image: pull an image from a registry into an OCI image layout, as
//! `skopeo copy docker://alpine:latest oci:images/alpine:latest` does.
//!
//! The mechanism is plain HTTP (distribution-spec, "pull"):
//!
//! ```text
//! GET /v2/                          401 + WWW-Authenticate: Bearer realm=..,service=..
//! GET REALM?service=..&scope=repository:library/alpine:pull      -> {"token": ..}
//! GET /v2/library/alpine/manifests/latest    -> an index: one manifest per platform
//! GET /v2/library/alpine/manifests/sha256:.. -> this platform's manifest
//! GET /v2/library/alpine/blobs/sha256:..     -> the config, then each layer
//! ```
//!
//! and a directory format (image-spec `image-layout.md`): every document is
//! stored under `blobs/sha256/` by the sha256 of its bytes, checked while it
//! streams, and `index.json` maps tags to manifests.
//!
//! Modules, in the order a pull uses them: [`reference`] (what to pull),
//! [`authfile`] and [`auth`] (who we are), [`registry`] (the HTTP requests),
//! [`manifest`] and [`platform`] (which image), [`download`] and [`digest`]
//! (the bytes), [`layout`] (where they go), [`explain`] (what the user sees).

pub mod auth;
pub mod authfile;
pub mod digest;
pub mod download;
pub mod explain;
pub mod layout;
pub mod manifest;
pub mod platform;
pub mod reference;
pub mod registry;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use oci_spec::image::Digest;

use crate::auth::Credentials;
use crate::digest::{digest_of, sha256_hex};
use crate::explain::Reporter;
use crate::layout::Layout;
use crate::manifest::{Document, ManifestError, MAX_MANIFEST_SIZE};
use crate::platform::PlatformSpec;
use crate::reference::{Reference, ReferenceError};
use crate::registry::{ConnectOptions, Registry, RegistryError};

/// An index may point at another index; this deep and no deeper.
const MAX_INDEX_DEPTH: usize = 4;

/// Everything the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    /// `docker://[HOST[:PORT]/]NAME[:TAG|@DIGEST]`
    pub source: String,
    /// `oci:DIR[:TAG]`
    pub destination: std::ffi::OsString,
    pub platform: Option<String>,
    pub creds: Option<String>,
    pub authfile: Option<PathBuf>,
    pub no_creds: bool,
    pub tls_verify: bool,
    pub cert_dir: Option<PathBuf>,
    pub jobs: usize,
    pub retry_times: u32,
    pub quiet: bool,
    pub explain: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("invalid destination '{destination}': {reason}")]
    Destination { destination: String, reason: String },
    #[error(transparent)]
    Platform(#[from] platform::PlatformError),
    #[error("invalid --creds: expected USER[:PASSWORD]")]
    Creds,
    #[error("--creds gave no password for '{username}' and none could be asked for on a terminal")]
    Prompt {
        username: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    AuthFile(#[from] authfile::AuthFileError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("image or tag not found: {0}")]
    NotFound(String),
    #[error("blob {digest} not found in the registry")]
    BlobNotFound { digest: String },
    #[error("invalid manifest for {reference}")]
    Manifest {
        reference: String,
        #[source]
        source: ManifestError,
    },
    #[error("no image for platform {wanted} in {reference} (available: {available})")]
    NoPlatform {
        wanted: String,
        reference: String,
        available: String,
    },
    #[error("index of {0} nests indexes more than {MAX_INDEX_DEPTH} deep")]
    TooDeep(String),
    #[error("{what} {digest} does not match its digest (content hashes to {actual})")]
    DigestMismatch {
        what: &'static str,
        digest: String,
        actual: String,
    },
    #[error("{what} {digest} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        what: &'static str,
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest}: the server sent more than the {expected} bytes of its descriptor")]
    TooLong { digest: String, expected: u64 },
    #[error("blob {digest}: transfer failed after {got} of {expected} bytes: {reason}")]
    Broken {
        digest: String,
        got: u64,
        expected: u64,
        reason: String,
    },
    #[error("index entry for {reference} has unsupported media type '{media_type}'")]
    EntryType {
        reference: String,
        media_type: String,
    },
    #[error(transparent)]
    Digest(#[from] digest::DigestError),
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("not enough space in '{}': the image needs {needed} bytes, {available} are free", dir.display())]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    /// Another download failed first; this one stopped.
    #[error("aborted")]
    Aborted,
    #[error("interrupted; nothing was added to the layout")]
    Interrupted,
}

/// Set from a SIGINT/SIGTERM handler (see main.rs): downloads stop between
/// chunks, and the temporary files are removed on the way out.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// `oci:DIR[:TAG]`: the first ':' after the transport ends DIR, as in
/// containers/image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub dir: PathBuf,
    pub tag: Option<String>,
}

impl Destination {
    pub fn parse(text: &OsStr) -> Result<Self, Error> {
        let bytes = text.as_bytes();
        let fail = |reason: &str| Error::Destination {
            destination: text.to_string_lossy().into_owned(),
            reason: reason.to_owned(),
        };
        let bytes = bytes.strip_prefix(b"oci:").unwrap_or(bytes);
        if bytes.starts_with(b"docker://") || bytes.starts_with(b"oci-archive:") {
            return Err(fail("only oci:DIR[:TAG] destinations are supported"));
        }
        let (dir, tag) = match bytes.iter().position(|&b| b == b':') {
            Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
            None => (bytes, None),
        };
        if dir.is_empty() {
            return Err(fail("no directory"));
        }
        let tag = match tag {
            None => None,
            Some(tag) => {
                let tag = std::str::from_utf8(tag).map_err(|_| fail("tag is not UTF-8"))?;
                if !valid_ref_name(tag) {
                    return Err(fail(&format!(
                        "tag '{tag}' must be letters, digits and separators (-._:@+/), not starting or ending with one"
                    )));
                }
                Some(tag.to_owned())
            }
        };
        Ok(Destination {
            dir: PathBuf::from(OsStr::from_bytes(dir)),
            tag,
        })
    }
}

/// image-spec's `org.opencontainers.image.ref.name` grammar, loosely:
/// alphanumeric components joined by `-._:@+/`.
fn valid_ref_name(tag: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !tag.is_empty()
        && tag.len() <= 255
        && tag.starts_with(alnum)
        && tag.ends_with(alnum)
        && tag
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '.' | '_' | ':' | '@' | '+' | '/'))
}

/// Pulls the image and returns the digest of the manifest written.
pub fn fetch(options: &Options) -> Result<Digest, Error> {
    // Everything the user typed is checked before the first request.
    let reference = Reference::parse(&options.source)?;
    let destination = Destination::parse(&options.destination)?;
    let platform = match &options.platform {
        Some(text) => PlatformSpec::parse(text)?,
        None => PlatformSpec::host(),
    };
    let reporter = Reporter::new(options.explain, options.quiet);
    let credentials = credentials(options, &reference, &reporter)?;

    let registry = Registry::connect(
        &reference,
        ConnectOptions {
            tls_verify: options.tls_verify,
            cert_dir: options.cert_dir.clone(),
            retry_times: options.retry_times,
            credentials,
        },
        &reporter,
    )?;

    let Resolved {
        manifest,
        bytes,
        docker,
    } = resolve_manifest(
        &registry,
        &reference,
        &platform,
        options.retry_times,
        &reporter,
    )?;

    let bytes = oci_manifest_bytes(&reference, &manifest, bytes, docker, &reporter)?;

    if interrupted() {
        return Err(Error::Interrupted);
    }
    // The layout is created once there is something to put in it.
    let layout = Layout::create(&destination.dir)?;
    let (missing, total) = missing_blobs(&manifest, &layout);
    reporter.explain(|| {
        format!(
            "# {} of {total} blobs to download, the rest are in the layout",
            missing.len()
        )
    });

    // A descriptor may claim any size; do not start what cannot fit.
    let needed = missing
        .iter()
        .fold(0u64, |sum, b| sum.saturating_add(b.size()));
    let available = layout.free_bytes()?;
    if needed > available {
        return Err(Error::NoSpace {
            dir: destination.dir.clone(),
            needed,
            available,
        });
    }
    let verified = download::download_all(
        &registry,
        &layout,
        &missing,
        options.jobs,
        options.retry_times,
        &reporter,
    )?;

    // Only now, with every byte checked, do blobs get their final names.
    for blob in verified {
        blob.commit(&layout)?;
    }
    let digest = layout.write_blob(&bytes)?;
    let tag = destination.tag.as_deref().or(reference.tag.as_deref());
    layout.set_tag(
        layout::manifest_descriptor(digest.clone(), bytes.len() as u64),
        tag,
    )?;
    reporter.explain(|| match tag {
        Some(tag) => format!("# index.json: '{tag}' -> {digest}"),
        None => format!("# index.json: (no tag) -> {digest}"),
    });
    Ok(digest)
}

/// The manifest as it goes into the layout: an OCI manifest byte for byte,
/// a Docker schema2 one rewritten with OCI media types (same blobs, new
/// digest).
fn oci_manifest_bytes(
    reference: &Reference,
    manifest: &oci_spec::image::ImageManifest,
    bytes: Vec<u8>,
    docker: bool,
    reporter: &Reporter,
) -> Result<Vec<u8>, Error> {
    if !docker {
        return Ok(bytes);
    }
    let invalid = |source| Error::Manifest {
        reference: reference.to_string(),
        source,
    };
    let converted = manifest::docker_to_oci(manifest).map_err(invalid)?;
    reporter.explain(|| "# converting the Docker schema2 manifest to OCI media types".into());
    serde_json::to_vec(&converted).map_err(|e| invalid(ManifestError::Json(e.to_string())))
}

/// The config and each distinct layer the layout lacks (an image may list
/// one layer twice; digests were checked when the manifest was parsed), and
/// how many distinct blobs the image has.
fn missing_blobs(
    manifest: &oci_spec::image::ImageManifest,
    layout: &Layout,
) -> (Vec<oci_spec::image::Descriptor>, usize) {
    let mut distinct = std::collections::HashSet::new();
    let blobs: Vec<_> = std::iter::once(manifest.config())
        .chain(manifest.layers())
        .filter(|b| distinct.insert(b.digest().clone()))
        .collect();
    let missing = blobs
        .iter()
        .filter(|b| sha256_hex(b.digest()).map_or(true, |hex| !layout.has_blob(hex, b.size())))
        .map(|b| (*b).clone())
        .collect();
    (missing, blobs.len())
}

/// `--creds`, else the auth files, unless `--no-creds`.
fn credentials(
    options: &Options,
    reference: &Reference,
    reporter: &Reporter,
) -> Result<Option<Credentials>, Error> {
    if options.no_creds {
        return Ok(None);
    }
    if let Some(text) = &options.creds {
        let (username, password) = Credentials::parse(text).ok_or(Error::Creds)?;
        let password = match password {
            Some(password) => password,
            None => auth::prompt_password(&username).map_err(|source| Error::Prompt {
                username: username.clone(),
                source,
            })?,
        };
        return Ok(Some(Credentials { username, password }));
    }
    let files = match &options.authfile {
        Some(path) => vec![path.clone()],
        None => authfile::default_auth_files(),
    };
    // An explicit --authfile must exist.
    if let Some(path) = &options.authfile {
        std::fs::metadata(path).map_err(|source| authfile::AuthFileError::Read {
            path: path.clone(),
            source,
        })?;
    }
    let found = authfile::lookup(&files, reference)?;
    reporter.explain(|| match &found {
        Some((c, path)) => format!(
            "# credentials of '{}' for {} from {}",
            c.username,
            reference.registry,
            path.display()
        ),
        None => format!(
            "# no credentials for {} in any auth file",
            reference.registry
        ),
    });
    Ok(found.map(|(credentials, _)| credentials))
}

/// The image manifest a reference resolves to.
struct Resolved {
    manifest: oci_spec::image::ImageManifest,
    /// Exactly as served: the bytes its digest is of.
    bytes: Vec<u8>,
    /// Docker schema2 (converted before it is stored), not OCI.
    docker: bool,
}

/// Fetches the manifest for `reference`, following an index to the entry
/// for `platform`.
fn resolve_manifest(
    registry: &Registry<'_>,
    reference: &Reference,
    platform: &PlatformSpec,
    retry_times: u32,
    reporter: &Reporter,
) -> Result<Resolved, Error> {
    let (mut bytes, mut content_type) =
        get_manifest(registry, reference, &reference.manifest_ref(), retry_times)?;
    if let Some(pinned) = &reference.digest {
        check_digest("manifest", pinned, None, &bytes)?;
    }
    for _ in 0..=MAX_INDEX_DEPTH {
        let document =
            manifest::parse(&bytes, content_type.as_deref()).map_err(|source| Error::Manifest {
                reference: reference.to_string(),
                source,
            })?;
        let index = match document {
            Document::Manifest { manifest, docker } => {
                return Ok(Resolved {
                    manifest: *manifest,
                    bytes,
                    docker,
                })
            }
            Document::Index(index) => index,
        };
        // This platform's manifest; else a nested index that names no
        // platform (image-spec allows indexes of indexes), followed only so
        // deep.
        let entry = platform::select_platform(index.manifests(), platform).or_else(|| {
            index
                .manifests()
                .iter()
                .find(|d| d.platform().is_none() && manifest::is_index_type(d.media_type()))
        });
        let entry = entry.ok_or_else(|| no_platform(&index, platform, reference))?;
        if !manifest::is_manifest_type(entry.media_type()) {
            return Err(Error::EntryType {
                reference: reference.to_string(),
                media_type: entry.media_type().to_string(),
            });
        }
        if entry.size() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::TooLarge {
                url: entry.digest().to_string(),
                limit: MAX_MANIFEST_SIZE,
            }
            .into());
        }
        reporter.explain(|| {
            format!(
                "# index: {} is {}",
                platform::describe(entry),
                entry.digest()
            )
        });
        // The digest goes into a URL, and later a path: sha256 in its strict form only.
        sha256_hex(entry.digest())?;
        (bytes, content_type) =
            get_manifest(registry, reference, entry.digest().as_ref(), retry_times)?;
        check_digest("manifest", entry.digest(), Some(entry.size()), &bytes)?;
    }
    Err(Error::TooDeep(reference.to_string()))
}

/// The error for an index without `platform`, listing the platforms it has.
fn no_platform(
    index: &oci_spec::image::ImageIndex,
    platform: &PlatformSpec,
    reference: &Reference,
) -> Error {
    let mut available: Vec<String> = index
        .manifests()
        .iter()
        .filter(|d| d.platform().is_some())
        .map(platform::describe)
        .collect();
    available.dedup();
    Error::NoPlatform {
        wanted: platform.to_string(),
        reference: reference.to_string(),
        available: if available.is_empty() {
            "none".to_owned()
        } else {
            available.join(", ")
        },
    }
}

/// GETs a manifest by tag or digest (at most [`MAX_MANIFEST_SIZE`] bytes), asking again
/// when the body breaks off; the bytes and the Content-Type.
fn get_manifest(
    registry: &Registry<'_>,
    reference: &Reference,
    tag_or_digest: &str,
    retry_times: u32,
) -> Result<(Vec<u8>, Option<String>), Error> {
    let url = registry.manifest_url(tag_or_digest)?;
    let mut tries = 0;
    loop {
        let response = registry.get(&url, manifest::ACCEPT, None)?;
        match response.status() {
            status if status.is_success() => {}
            reqwest::StatusCode::NOT_FOUND => return Err(Error::NotFound(reference.to_string())),
            _ => return Err(registry::status_error(response).into()),
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match registry.read_limited(response, MAX_MANIFEST_SIZE) {
            Ok(bytes) => return Ok((bytes, content_type)),
            // The connection broke in the body: ask again.
            Err(RegistryError::Transport { .. }) if tries < retry_times => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The bytes must hash to `expected` (and have its size, if known): a
/// registry's `Docker-Content-Digest` header is never trusted instead.
fn check_digest(
    what: &'static str,
    expected: &Digest,
    size: Option<u64>,
    bytes: &[u8],
) -> Result<(), Error> {
    if let Some(size) = size {
        if size != bytes.len() as u64 {
            return Err(Error::SizeMismatch {
                what,
                digest: expected.to_string(),
                expected: size,
                actual: bytes.len() as u64,
            });
        }
    }
    let actual = digest_of(bytes);
    if &actual != expected {
        return Err(Error::DigestMismatch {
            what,
            digest: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_destinations() {
        let d = Destination::parse(OsStr::new("oci:images/alpine:3.20")).unwrap();
        assert_eq!(d.dir, PathBuf::from("images/alpine"));
        assert_eq!(d.tag.as_deref(), Some("3.20"));
        let d = Destination::parse(OsStr::new("plain/dir")).unwrap();
        assert_eq!((d.dir, d.tag), (PathBuf::from("plain/dir"), None));
        let d = Destination::parse(OsStr::new("oci:d:a:b")).unwrap();
        assert_eq!(d.tag.as_deref(), Some("a:b"));
        for bad in [
            "oci:",
            "oci::tag",
            "oci:d:",
            "oci:d:-x",
            "docker://x",
            "oci:d:a b",
        ] {
            assert!(Destination::parse(OsStr::new(bad)).is_err(), "{bad}");
        }
    }
}

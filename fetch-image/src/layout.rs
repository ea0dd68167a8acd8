//! The OCI image layout (image-spec `image-layout.md`):
//!
//! ```text
//! DIR/oci-layout          {"imageLayoutVersion":"1.0.0"}
//! DIR/index.json          an image index; each tag is an entry annotated
//!                         org.opencontainers.image.ref.name=TAG
//! DIR/blobs/sha256/HEX    every manifest, config and layer, named by digest
//! ```
//!
//! Blobs are written to a temporary file in DIR and renamed to their final
//! name only once their digest has been checked, so a name under `blobs/`
//! always holds exactly its content. `index.json` is rewritten under an
//! exclusive flock(2) on DIR and replaced by rename(2), so concurrent
//! fetches into one layout all keep their tags.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};
use tempfile::NamedTempFile;

use crate::digest::{digest_of, sha256_hex};

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot {action} '{}'", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("'{}' is not an OCI image layout version 1.0.0", path.display())]
    NotALayout { path: PathBuf },
    #[error("'{}' is not a valid image index, not touching it", path.display())]
    BadIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot build index.json entry")]
    Build(#[source] oci_spec::OciSpecError),
    #[error(transparent)]
    Digest(#[from] crate::digest::DigestError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError {
    let path = path.to_owned();
    move |source| LayoutError::Io {
        action,
        path,
        source,
    }
}

/// An OCI layout directory, created if missing.
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn create(dir: &Path) -> Result<Self, LayoutError> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io("create directory", &blobs))?;
        let layout = Layout {
            dir: dir.to_owned(),
        };
        let marker = dir.join(LAYOUT_FILE);
        match fs::read(&marker) {
            Ok(content) => {
                let version = serde_json::from_slice::<serde_json::Value>(&content)
                    .ok()
                    .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_owned));
                if version.as_deref() != Some("1.0.0") {
                    return Err(LayoutError::NotALayout { path: marker });
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                layout.replace_file(&marker, LAYOUT_CONTENT.as_bytes())?;
            }
            Err(e) => return Err(io("read", &marker)(e)),
        }
        Ok(layout)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/blobs/sha256/HEX`, for a digest already checked to be strict.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex)
    }

    /// A blob is present when its file exists with the expected size; its
    /// name was only ever given after verification.
    pub fn has_blob(&self, hex: &str, size: u64) -> bool {
        fs::symlink_metadata(self.blob_path(hex)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Bytes an unprivileged writer may still put on DIR's filesystem
    /// (statvfs(3): `f_bavail * f_frsize`).
    pub fn free_bytes(&self) -> Result<u64, LayoutError> {
        let stat = nix::sys::statvfs::statvfs(&self.dir)
            .map_err(|errno| io("statvfs", &self.dir)(errno.into()))?;
        Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
    }

    /// A temporary file in DIR (same filesystem as `blobs/`, so the final
    /// rename is atomic); deleted on drop unless committed.
    pub fn temp_file(&self) -> Result<NamedTempFile, LayoutError> {
        tempfile::Builder::new()
            .prefix(".fetch-image-")
            .tempfile_in(&self.dir)
            .map_err(io("create a temporary file in", &self.dir))
    }

    /// Gives a verified temporary file its final name.
    pub fn commit_blob(&self, file: NamedTempFile, hex: &str) -> Result<(), LayoutError> {
        persist(file, &self.blob_path(hex))
    }

    /// Stores an in-memory blob (a manifest) and returns its descriptor digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<oci_spec::image::Digest, LayoutError> {
        let digest = digest_of(bytes);
        let hex = sha256_hex(&digest)?;
        if !self.has_blob(hex, bytes.len() as u64) {
            let mut file = self.temp_file()?;
            file.write_all(bytes).map_err(io("write", file.path()))?;
            self.commit_blob(file, hex)?;
        }
        Ok(digest)
    }

    /// Points `tag` (or, without one, an unnamed entry) at `manifest` in
    /// `index.json`: read, change, write a new file, rename over the old,
    /// all under an exclusive lock on DIR.
    pub fn set_tag(&self, manifest: Descriptor, tag: Option<&str>) -> Result<(), LayoutError> {
        let dir = File::open(&self.dir).map_err(io("open", &self.dir))?;
        let _lock = Flock::lock(dir, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io("lock", &self.dir)(errno.into()))?;

        let path = self.dir.join("index.json");
        let mut index = match fs::read(&path) {
            Ok(bytes) => parse_index(&bytes).map_err(|source| LayoutError::BadIndex {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == ErrorKind::NotFound => ImageIndexBuilder::default()
                .schema_version(2u32)
                .manifests(Vec::new())
                .build()
                .map_err(LayoutError::Build)?,
            Err(e) => return Err(io("read", &path)(e)),
        };

        let mut entry = manifest;
        entry
            .set_annotations(tag.map(|tag| HashMap::from([(REF_NAME.to_owned(), tag.to_owned())])));
        let manifests = update_entries(index.manifests(), entry, tag);
        if manifests == *index.manifests() {
            // Already tagged so (a re-pull): nothing to write, nothing to sync.
            return Ok(());
        }
        index.set_manifests(manifests);

        let bytes = serde_json::to_vec(&index).map_err(|e| LayoutError::Build(e.into()))?;
        self.replace_file(&path, &bytes)
    }

    /// Writes `path` through a temporary file and rename(2), so readers see
    /// the old or the new content, never a mix.
    fn replace_file(&self, path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
        let mut file = self.temp_file()?;
        file.write_all(bytes).map_err(io("write", file.path()))?;
        persist(file, path)?;
        // Make the rename itself durable.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))
    }
}

/// The entries of `index.json` after tagging: the entry of that tag (or an
/// identical unnamed one) is replaced where it stands, or the new entry is
/// appended; duplicates of it go.
pub fn update_entries(old: &[Descriptor], entry: Descriptor, tag: Option<&str>) -> Vec<Descriptor> {
    let ref_name = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME).cloned())
    };
    let same_slot = |d: &Descriptor| match tag {
        Some(tag) => ref_name(d).as_deref() == Some(tag),
        None => ref_name(d).is_none() && d.digest() == entry.digest(),
    };
    let mut entries = Vec::with_capacity(old.len() + 1);
    let mut placed = false;
    for d in old {
        if !same_slot(d) {
            entries.push(d.clone());
        } else if !placed {
            entries.push(entry.clone());
            placed = true;
        }
    }
    if !placed {
        entries.push(entry);
    }
    entries
}

/// The descriptor of a manifest in `index.json`.
pub fn manifest_descriptor(digest: oci_spec::image::Digest, size: u64) -> Descriptor {
    Descriptor::new(MediaType::ImageManifest, size, digest)
}

/// Syncs a finished temporary file, makes it world-readable (as skopeo and umoci leave
/// layouts) and renames it to `path`.
fn persist(file: NamedTempFile, path: &Path) -> Result<(), LayoutError> {
    use std::os::unix::fs::PermissionsExt as _;
    file.as_file().sync_all().map_err(io("sync", file.path()))?;
    fs::set_permissions(file.path(), fs::Permissions::from_mode(0o644))
        .map_err(io("chmod", file.path()))?;
    file.persist(path)
        .map_err(|e| io("rename a temporary file to", path)(e.error))?;
    Ok(())
}

/// Reads an `index.json`, taking `"manifests": null` as an empty list: that is what
/// `umoci init` writes for a new layout, and skopeo accepts it too.
fn parse_index(bytes: &[u8]) -> Result<ImageIndex, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(manifests) = value.get_mut("manifests").filter(|m| m.is_null()) {
        *manifests = serde_json::Value::Array(Vec::new());
    }
    serde_json::from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(n: u8) -> Descriptor {
        let hex = format!("{n:02x}").repeat(32);
        manifest_descriptor(format!("sha256:{hex}").parse().unwrap(), 10)
    }

    #[test]
    fn tags_replace_only_their_own_entry() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        layout.set_tag(descriptor(1), Some("a")).unwrap();
        layout.set_tag(descriptor(2), Some("b")).unwrap();
        layout.set_tag(descriptor(3), Some("a")).unwrap();
        layout.set_tag(descriptor(4), None).unwrap();
        layout.set_tag(descriptor(4), None).unwrap();
        let index: ImageIndex =
            serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        let names: Vec<(String, Option<String>)> = index
            .manifests()
            .iter()
            .map(|d| {
                (
                    d.digest().digest()[..2].to_owned(),
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME).cloned()),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("03".to_owned(), Some("a".to_owned())),
                ("02".to_owned(), Some("b".to_owned())),
                ("04".to_owned(), None),
            ]
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("oci-layout")).unwrap(),
            LAYOUT_CONTENT
        );
        // Nothing temporary left behind.
        let stray: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".fetch-image-"))
            .collect();
        assert!(stray.is_empty());
    }

    #[test]
    fn refuses_foreign_directories() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("oci-layout"),
            "{\"imageLayoutVersion\":\"9\"}",
        )
        .unwrap();
        assert!(matches!(
            Layout::create(dir.path()),
            Err(LayoutError::NotALayout { .. })
        ));
    }

    #[test]
    fn an_index_from_umoci_init_with_null_manifests_reads_as_empty() {
        let index = parse_index(br#"{"schemaVersion":2,"manifests":null}"#).unwrap();
        assert!(index.manifests().is_empty());
        assert!(parse_index(br#"{"schemaVersion":2,"manifests":7}"#).is_err());
    }
}

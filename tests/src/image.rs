//! Builds any layer, image and image index a test needs, byte for byte, and writes it as an
//! OCI image layout (image-spec `image-layout.md`) or pushes it to a
//! [`Registry`](crate::registry::Registry).
//!
//! Layers are written by hand, header by header: no name is ever sanitised, so a test can
//! make `../x`, `/etc/passwd` or a 4 KiB name as easily as `bin/sh`. Documents are the
//! `oci-spec` types, serialised with sorted keys so that the same input gives the same digests.
//!
//! ```no_run
//! use tests::image::{Compression, ImageBuilder, Layer};
//! let layer = Layer::new().dir("etc", 0o755).file("etc/hostname", "box\n", 0o644).owner(0, 0);
//! let image = ImageBuilder::new().layer(layer, Compression::Gzip).cmd(["/bin/sh"]).build();
//! image.write_oci_layout(std::path::Path::new("/tmp/layout"), "latest").unwrap();
//! ```

use std::io::Write;
use std::path::Path;

use oci_spec::image::{
    Arch, Config, Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, Platform, PlatformBuilder, RootFs,
};
use sha2::{Digest as _, Sha256};

use crate::registry::{RegistryError, Remote, Upload};

mod bomb;
mod layer;
pub use bomb::{bomb_blob, flood_blob};
pub use layer::{gnu_long_name, pax_header, pax_record, Layer, DEFAULT_MTIME};

/// The annotation that names a tag in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (RFC 1952), the usual layer format.
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
}

impl Compression {
    /// Compresses a whole tar archive.
    pub fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
                // Writing into a Vec cannot fail.
                let _ = gz.write_all(tar);
                gz.finish().unwrap_or_default()
            }
            Compression::Zstd => zstd::encode_all(tar, 3).unwrap_or_default(),
        }
    }
}

/// Which family of media types an image uses: OCI, or Docker's image manifest v2 schema 2
/// (the same JSON shapes with Docker's `mediaType` strings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MediaTypes {
    /// `application/vnd.oci.image.*`
    #[default]
    Oci,
    /// `application/vnd.docker.distribution.manifest.v2+json` and friends.
    Docker,
}

impl MediaTypes {
    /// The media type of a single-platform image manifest.
    pub fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => "application/vnd.oci.image.manifest.v1+json",
            MediaTypes::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    /// The media type of an image index (OCI) or manifest list (Docker).
    pub fn index(self) -> &'static str {
        match self {
            MediaTypes::Oci => "application/vnd.oci.image.index.v1+json",
            MediaTypes::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    }

    /// The media type of the image configuration.
    pub fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => "application/vnd.oci.image.config.v1+json",
            MediaTypes::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }

    /// The media type of a layer compressed with `compression`.
    pub fn layer(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (MediaTypes::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (MediaTypes::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (MediaTypes::Oci, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (MediaTypes::Docker, Compression::None) => {
                "application/vnd.docker.image.rootfs.diff.tar"
            }
            (MediaTypes::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (MediaTypes::Docker, Compression::Zstd) => {
                "application/vnd.docker.image.rootfs.diff.tar.zstd"
            }
        }
    }
}

/// `sha256:HEX` of exactly these bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A layer blob as it is stored and sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:HEX` of `data`.
    pub digest: String,
    /// The layer media type (OCI or Docker, with its compression).
    pub media_type: String,
    /// The compressed bytes.
    pub data: Vec<u8>,
    /// `sha256:HEX` of the uncompressed tar, as listed in the config's `rootfs.diff_ids`.
    pub diff_id: String,
}

impl Blob {
    /// Compresses `layer` into a blob of the given media-type family.
    pub fn from_layer(layer: &Layer, compression: Compression, types: MediaTypes) -> Blob {
        let tar = layer.to_tar();
        let data = compression.compress(&tar);
        Blob {
            digest: sha256_digest(&data),
            media_type: types.layer(compression).to_string(),
            data,
            diff_id: sha256_digest(&tar),
        }
    }

    /// The descriptor a manifest lists for this blob.
    pub fn descriptor(&self) -> Descriptor {
        descriptor(&self.media_type, &self.data, &self.digest)
    }
}

/// Builds an image: its layers, its configuration and its manifest.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    /// Each layer, with its compression when the builder made it (its media type then
    /// follows the builder's media types); `None` for a blob given as it is.
    layers: Vec<(Blob, Option<Compression>)>,
    /// The image configuration but for `rootfs` (set from the layers) and `config`.
    image: ImageConfiguration,
    /// The execution parameters (`Entrypoint`, `Cmd`, `Env`, ...).
    config: Config,
    media_types: MediaTypes,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        let mut image = ImageConfiguration::default();
        image.set_os(Os::Linux);
        image.set_architecture(Arch::from(host_architecture()));
        ImageBuilder {
            layers: Vec::new(),
            image,
            config: Config::default(),
            media_types: MediaTypes::Oci,
        }
    }
}

impl ImageBuilder {
    /// An image for linux on this machine's architecture, OCI media types, no layers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer (layers apply in the order they are added). Its media type follows the
    /// builder's media types as they are when [`build`](Self::build) runs.
    pub fn layer(mut self, layer: Layer, compression: Compression) -> Self {
        let blob = Blob::from_layer(&layer, compression, MediaTypes::Oci);
        self.layers.push((blob, Some(compression)));
        self
    }

    /// Appends a ready-made blob as it is (e.g. a bomb or a blob whose diff_id lies).
    pub fn layer_blob(mut self, blob: Blob) -> Self {
        self.layers.push((blob, None));
        self
    }

    /// The config's `Entrypoint`.
    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.config
            .set_entrypoint(Some(args.into_iter().map(Into::into).collect()));
        self
    }

    /// The config's `Cmd`.
    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.config
            .set_cmd(Some(args.into_iter().map(Into::into).collect()));
        self
    }

    /// Adds `KEY=VALUE` to the config's `Env`.
    pub fn env(mut self, key_value: impl Into<String>) -> Self {
        let mut env = self.config.env().clone().unwrap_or_default();
        env.push(key_value.into());
        self.config.set_env(Some(env));
        self
    }

    /// The config's `WorkingDir`.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.config.set_working_dir(Some(dir.into()));
        self
    }

    /// The config's `User` (`name`, `uid`, `uid:gid`, `name:group`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.config.set_user(Some(user.into()));
        self
    }

    /// Adds a label to the config's `Labels`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let labels = self
            .config
            .labels_mut()
            .get_or_insert_with(Default::default);
        labels.insert(key.into(), value.into());
        self
    }

    /// The platform the config (and an index entry) names, e.g. `("linux", "arm64", Some("v8"))`.
    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> Self {
        self.image.set_os(Os::from(os));
        self.image.set_architecture(Arch::from(architecture));
        self.image.set_variant(variant.map(str::to_string));
        self
    }

    /// OCI (default) or Docker schema 2 media types for the manifest, config and layers.
    pub fn media_types(mut self, types: MediaTypes) -> Self {
        self.media_types = types;
        self
    }

    /// Serialises the configuration and the manifest and computes their digests.
    pub fn build(self) -> Image {
        let types = self.media_types;
        let layers: Vec<Blob> = self
            .layers
            .iter()
            .map(|(blob, compression)| match compression {
                Some(compression) => Blob {
                    media_type: types.layer(*compression).into(),
                    ..blob.clone()
                },
                None => blob.clone(),
            })
            .collect();
        let config = canonical_json(&self.configuration(&layers));
        let config_digest = sha256_digest(&config);
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(types.manifest())
            .config(descriptor(types.config(), &config, &config_digest))
            .layers(layers.iter().map(Blob::descriptor).collect::<Vec<_>>())
            .build()
            .unwrap_or_else(|e| panic!("image manifest: {e}"));
        let manifest = canonical_json(&manifest);
        Image {
            manifest_digest: sha256_digest(&manifest),
            manifest,
            media_type: types.manifest().to_string(),
            config,
            config_digest,
            layers,
            platform: self.platform_descriptor(),
        }
    }

    /// The configuration document: the builder's, with `rootfs.diff_ids` from the layers.
    fn configuration(&self, layers: &[Blob]) -> ImageConfiguration {
        let mut rootfs = RootFs::default();
        rootfs.set_diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect());
        let mut image = self.image.clone();
        image.set_rootfs(rootfs);
        image.set_config(Some(self.config.clone()));
        image
    }

    fn platform_descriptor(&self) -> Platform {
        let mut platform = PlatformBuilder::default()
            .os(self.image.os().clone())
            .architecture(self.image.architecture().clone());
        if let Some(variant) = self.image.variant() {
            platform = platform.variant(variant.clone());
        }
        platform.build().unwrap_or_else(|e| panic!("platform: {e}"))
    }
}

/// This machine's architecture as OCI names it (`GOARCH` values).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A built image: every byte that goes into a layout or a registry, with its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The manifest document, exactly as stored and sent.
    pub manifest: Vec<u8>,
    /// `sha256:HEX` of `manifest`.
    pub manifest_digest: String,
    /// The manifest's media type (OCI or Docker).
    pub media_type: String,
    /// The image configuration document.
    pub config: Vec<u8>,
    /// `sha256:HEX` of `config`.
    pub config_digest: String,
    /// The layer blobs, base layer first.
    pub layers: Vec<Blob>,
    /// The platform an index lists this image under.
    pub platform: Platform,
}

impl Image {
    /// The descriptor of the manifest itself (for an index, or a layout's `index.json`).
    pub fn descriptor(&self) -> Descriptor {
        descriptor(&self.media_type, &self.manifest, &self.manifest_digest)
    }

    /// Every blob (config, layers, manifest) as `(digest, bytes)`.
    pub fn blobs(&self) -> Vec<(&str, &[u8])> {
        let mut blobs = vec![(self.config_digest.as_str(), self.config.as_slice())];
        blobs.extend(
            self.layers
                .iter()
                .map(|l| (l.digest.as_str(), l.data.as_slice())),
        );
        blobs.push((self.manifest_digest.as_str(), self.manifest.as_slice()));
        blobs
    }

    /// Writes the image into the OCI layout at `dir` (created if missing) under `tag`:
    /// the blobs, `oci-layout`, and an `index.json` entry annotated with the tag, replacing
    /// an earlier entry of the same tag and keeping the others.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> std::io::Result<()> {
        write_layout(dir, &self.blobs(), self.descriptor(), tag)
    }

    /// Pushes the layers, the config and the manifest (tagged `tag`) as `repo` to a
    /// [`Registry`](crate::registry::Registry) fixture (or any [`Remote`]), uploading each
    /// blob in one monolithic PUT.
    pub fn push(
        &self,
        to: &impl AsRef<Remote>,
        repo: &str,
        tag: &str,
    ) -> Result<(), RegistryError> {
        self.push_with(to, repo, tag, Upload::Monolithic)
    }

    /// Like [`push`](Self::push), with the given upload method for the blobs.
    pub fn push_with(
        &self,
        to: &impl AsRef<Remote>,
        repo: &str,
        tag: &str,
        upload: Upload,
    ) -> Result<(), RegistryError> {
        let remote = to.as_ref();
        remote.upload_blob(repo, &self.config_digest, &self.config, upload)?;
        for layer in &self.layers {
            remote.upload_blob(repo, &layer.digest, &layer.data, upload)?;
        }
        remote.put_manifest(repo, tag, &self.media_type, &self.manifest)
    }
}

/// Builds an image index (OCI) or manifest list (Docker) over several images.
#[derive(Clone, Debug, Default)]
pub struct IndexBuilder {
    images: Vec<Image>,
    indexes: Vec<Index>,
    media_types: Option<MediaTypes>,
}

impl IndexBuilder {
    /// An empty index; its media type follows the first image's unless set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an image, listed under its platform.
    pub fn image(mut self, image: Image) -> Self {
        self.images.push(image);
        self
    }

    /// Adds a nested index, listed after the images (image-spec allows an index to point at
    /// indexes; a chain of them is how a hostile registry makes a client recurse).
    pub fn index(mut self, index: Index) -> Self {
        self.indexes.push(index);
        self
    }

    /// Forces OCI index or Docker manifest list.
    pub fn media_types(mut self, types: MediaTypes) -> Self {
        self.media_types = Some(types);
        self
    }

    /// Serialises the index: each image's descriptor with its platform, then each nested
    /// index's descriptor.
    pub fn build(self) -> Index {
        let docker_first = self
            .images
            .first()
            .is_some_and(|i| i.media_type == MediaTypes::Docker.manifest());
        let default = if docker_first {
            MediaTypes::Docker
        } else {
            MediaTypes::Oci
        };
        let types = self.media_types.unwrap_or(default);
        let images = self.images.iter().map(|image| {
            let mut d = image.descriptor();
            d.set_platform(Some(image.platform.clone()));
            d
        });
        let manifests: Vec<Descriptor> = images
            .chain(self.indexes.iter().map(Index::descriptor))
            .collect();
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(types.index())
            .manifests(manifests)
            .build()
            .unwrap_or_else(|e| panic!("image index: {e}"));
        let manifest = canonical_json(&index);
        Index {
            manifest_digest: sha256_digest(&manifest),
            manifest,
            media_type: types.index().to_string(),
            images: self.images,
            indexes: self.indexes,
        }
    }
}

/// A built index (or manifest list) and the images it lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    /// The index document, exactly as stored and sent.
    pub manifest: Vec<u8>,
    /// `sha256:HEX` of `manifest`.
    pub manifest_digest: String,
    /// OCI index or Docker manifest list media type.
    pub media_type: String,
    /// The images, in the order the index lists them.
    pub images: Vec<Image>,
    /// The nested indexes, listed after the images.
    pub indexes: Vec<Index>,
}

impl Index {
    /// The descriptor of the index document.
    pub fn descriptor(&self) -> Descriptor {
        descriptor(&self.media_type, &self.manifest, &self.manifest_digest)
    }

    /// Every blob below and including this index (images, nested indexes, the index itself).
    pub fn blobs(&self) -> Vec<(&str, &[u8])> {
        let mut blobs: Vec<(&str, &[u8])> = self.images.iter().flat_map(Image::blobs).collect();
        blobs.extend(self.indexes.iter().flat_map(Index::blobs));
        blobs.push((&self.manifest_digest, &self.manifest));
        blobs
    }

    /// Writes every blob and the index into the OCI layout at `dir`, tagging the index `tag`
    /// in `index.json`.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> std::io::Result<()> {
        write_layout(dir, &self.blobs(), self.descriptor(), tag)
    }

    /// Pushes every image and nested index by digest, then this index tagged `tag`.
    pub fn push(
        &self,
        to: &impl AsRef<Remote>,
        repo: &str,
        tag: &str,
    ) -> Result<(), RegistryError> {
        for image in &self.images {
            image.push(to, repo, &image.manifest_digest)?;
        }
        for index in &self.indexes {
            index.push(to, repo, &index.manifest_digest)?;
        }
        to.as_ref()
            .put_manifest(repo, tag, &self.media_type, &self.manifest)
    }
}

/// A descriptor for `bytes` with `digest`.
fn descriptor(media_type: &str, bytes: &[u8], digest: &str) -> Descriptor {
    let digest: oci_spec::image::Digest = digest
        .parse()
        .unwrap_or_else(|e| panic!("digest '{digest}': {e}"));
    Descriptor::new(MediaType::from(media_type), bytes.len() as u64, digest)
}

/// JSON with keys in sorted order (through `serde_json::Value`, whose maps are sorted), so the
/// same document always has the same digest even though oci-spec keeps labels in a HashMap.
pub fn canonical_json(document: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_value(document)
        .and_then(|value| serde_json::to_vec(&value))
        .unwrap_or_else(|e| panic!("serialising an OCI document: {e}"))
}

/// Writes blobs, `oci-layout` and the tagged `index.json` entry (image-spec `image-layout.md`).
fn write_layout(
    dir: &Path,
    blobs: &[(&str, &[u8])],
    mut entry: Descriptor,
    tag: &str,
) -> std::io::Result<()> {
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir)?;
    for (digest, bytes) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(blob_dir.join(hex), bytes)?;
    }
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build();
    let layout = layout.map_err(std::io::Error::other)?;
    std::fs::write(dir.join("oci-layout"), canonical_json(&layout))?;
    entry.set_annotations(Some([(REF_NAME.to_string(), tag.to_string())].into()));
    let index = updated_index(&dir.join("index.json"), entry)?;
    std::fs::write(dir.join("index.json"), canonical_json(&index))
}

/// The layout's index with `entry` in place of any earlier entry carrying the same tag.
fn updated_index(path: &Path, entry: Descriptor) -> std::io::Result<ImageIndex> {
    let tag_of = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    let mut manifests = match ImageIndex::from_file(path) {
        Ok(index) => index.manifests().clone(),
        Err(_) if !path.exists() => Vec::new(),
        Err(e) => return Err(std::io::Error::other(format!("{}: {e}", path.display()))),
    };
    manifests.retain(|d| tag_of(d) != tag_of(&entry));
    manifests.push(entry);
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_input_gives_the_same_digest() {
        let build = || {
            ImageBuilder::new()
                .layer(Layer::new().file("a", "1", 0o644), Compression::Gzip)
                .label("b", "2")
                .label("a", "1")
                .build()
        };
        assert_eq!(build().manifest_digest, build().manifest_digest);
    }
}

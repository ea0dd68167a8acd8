//! Builds any layer, image and image index a test needs, byte for byte, and writes it as an
//! OCI image layout (image-spec `image-layout.md`) or pushes it to a [`Registry`].
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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use oci_spec::image::{
    ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndex, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, Platform, PlatformBuilder, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use crate::registry::{RegistryError, Remote, Upload};

/// The modification time every entry gets unless `.mtime()` says otherwise, so that
/// building the same layer twice gives the same digest (2023-11-14T22:13:20Z).
pub const DEFAULT_MTIME: u64 = 1_700_000_000;

/// The annotation that names a tag in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One tar entry of a [`Layer`], as the test described it.
#[derive(Clone, Debug)]
struct Entry {
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// What an entry is; the payload is what its header or data carries.
#[derive(Clone, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
    Fifo,
    /// A header taken as given (only its name is set, and its checksum).
    Raw(Box<Header>, Vec<u8>),
    /// Bytes appended to the archive as they are, e.g. a hand-made PAX header.
    Bytes(Vec<u8>),
}

/// A layer: a list of tar entries written in order, exactly as given.
///
/// Each entry method adds one entry; the modifiers (`owner`, `mode`, `mtime`, `xattr`) change
/// the entry added last. Names are bytes and go into the archive unchanged: nothing strips
/// `..` or a leading `/`. Directories get a trailing `/` as tar does, unless they have one.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    entries: Vec<Entry>,
}

impl Layer {
    /// An empty layer (an archive with only the two end-of-archive blocks).
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory with `mode` (permission bits plus setuid/setgid/sticky).
    pub fn dir(self, path: impl AsRef<[u8]>, mode: u32) -> Self {
        let mut name = path.as_ref().to_vec();
        if !name.ends_with(b"/") {
            name.push(b'/');
        }
        self.push(name, Kind::Dir, mode)
    }

    /// A regular file holding `data`.
    pub fn file(self, path: impl AsRef<[u8]>, data: impl AsRef<[u8]>, mode: u32) -> Self {
        self.push(
            path.as_ref().to_vec(),
            Kind::File(data.as_ref().to_vec()),
            mode,
        )
    }

    /// A symbolic link to `target` (stored as given, absolute or relative).
    pub fn symlink(self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.push(
            path.as_ref().to_vec(),
            Kind::Symlink(target.as_ref().to_vec()),
            0o777,
        )
    }

    /// A hard link to the earlier entry named `target`.
    pub fn hardlink(self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.push(
            path.as_ref().to_vec(),
            Kind::Hardlink(target.as_ref().to_vec()),
            0o644,
        )
    }

    /// A character device `major:minor` (e.g. 1, 3 for `/dev/null`).
    pub fn char_device(self, path: impl AsRef<[u8]>, major: u32, minor: u32) -> Self {
        self.push(
            path.as_ref().to_vec(),
            Kind::CharDevice(major, minor),
            0o666,
        )
    }

    /// A block device `major:minor`.
    pub fn block_device(self, path: impl AsRef<[u8]>, major: u32, minor: u32) -> Self {
        self.push(
            path.as_ref().to_vec(),
            Kind::BlockDevice(major, minor),
            0o660,
        )
    }

    /// A named pipe.
    pub fn fifo(self, path: impl AsRef<[u8]>) -> Self {
        self.push(path.as_ref().to_vec(), Kind::Fifo, 0o644)
    }

    /// A whiteout deleting `path` from lower layers: an empty file `DIR/.wh.NAME`
    /// (image-spec `layer.md`, "Whiteouts").
    pub fn whiteout(self, path: impl AsRef<[u8]>) -> Self {
        let name = whiteout_name(path.as_ref(), None);
        self.push(name, Kind::File(Vec::new()), 0o644)
    }

    /// An opaque whiteout: `DIR/.wh..wh..opq`, hiding everything lower layers put in `dir`.
    pub fn opaque(self, dir: impl AsRef<[u8]>) -> Self {
        let name = whiteout_name(dir.as_ref(), Some(b".wh..wh..opq"));
        self.push(name, Kind::File(Vec::new()), 0o644)
    }

    /// An entry with a header built by the test (any type, size, mode, link name) and the
    /// name bytes `name`, written with no check at all: the header's own `size` is kept even
    /// when it disagrees with `data`. Names longer than 100 bytes get a GNU long-name record.
    pub fn raw(mut self, header: Header, name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        self.entries.push(Entry {
            name: name.as_ref().to_vec(),
            kind: Kind::Raw(Box::new(header), data.as_ref().to_vec()),
            ..Entry::new(Vec::new(), Kind::Fifo, 0)
        });
        self
    }

    /// Bytes appended to the archive verbatim (they should be whole 512-byte blocks), for
    /// hand-made PAX or GNU headers that disagree with the entry after them.
    pub fn raw_bytes(mut self, bytes: impl AsRef<[u8]>) -> Self {
        let kind = Kind::Bytes(bytes.as_ref().to_vec());
        self.entries.push(Entry::new(Vec::new(), kind, 0));
        self
    }

    /// Sets the numeric owner of the last entry.
    pub fn owner(self, uid: u64, gid: u64) -> Self {
        self.modify(|e| (e.uid, e.gid) = (uid, gid))
    }

    /// Sets the mode of the last entry (permission bits plus setuid/setgid/sticky).
    pub fn mode(self, mode: u32) -> Self {
        self.modify(|e| e.mode = mode)
    }

    /// Sets the modification time (seconds since the epoch) of the last entry.
    pub fn mtime(self, secs: u64) -> Self {
        self.modify(|e| e.mtime = secs)
    }

    /// Adds an extended attribute to the last entry, as a PAX `SCHILY.xattr.KEY` record.
    pub fn xattr(self, key: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref().to_vec();
        self.modify(|e| e.xattrs.push((key.to_string(), value)))
    }

    /// The uncompressed tar archive: each entry's records, then two zero blocks.
    pub fn to_tar(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in &self.entries {
            write_entry(&mut out, entry);
        }
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn push(mut self, name: Vec<u8>, kind: Kind, mode: u32) -> Self {
        self.entries.push(Entry::new(name, kind, mode));
        self
    }

    fn modify(mut self, change: impl FnOnce(&mut Entry)) -> Self {
        match self.entries.last_mut() {
            Some(entry) => change(entry),
            None => panic!("Layer: a modifier needs an entry to modify; add one first"),
        }
        self
    }
}

impl Entry {
    fn new(name: Vec<u8>, kind: Kind, mode: u32) -> Self {
        Entry {
            name,
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: DEFAULT_MTIME,
            xattrs: Vec::new(),
        }
    }
}

/// `a/b` becomes `a/.wh.b` (or, with `marker`, `a/b/MARKER`).
fn whiteout_name(path: &[u8], marker: Option<&[u8]>) -> Vec<u8> {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    if let Some(marker) = marker {
        return [path, b"/", marker].concat();
    }
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => [&path[..=slash], b".wh.", &path[slash + 1..]].concat(),
        None => [b".wh.", path].concat(),
    }
}

/// Appends one entry: its xattr PAX header if any, GNU long-name/long-link records when a
/// name does not fit the 100-byte fields, the header, the data padded to 512 bytes.
fn write_entry(out: &mut Vec<u8>, entry: &Entry) {
    let (mut header, data) = match &entry.kind {
        Kind::Bytes(bytes) => return out.extend_from_slice(bytes),
        Kind::Raw(header, data) => (header.as_ref().clone(), data.as_slice()),
        _ => (header_for(entry), entry_data(entry)),
    };
    if !entry.xattrs.is_empty() {
        write_pax_xattrs(out, &entry.xattrs);
    }
    let link = match &entry.kind {
        Kind::Symlink(target) | Kind::Hardlink(target) => Some(target.as_slice()),
        _ => None,
    };
    if let Some(target) = link {
        set_long_field(out, &mut header, target, EntryType::GNULongLink);
    }
    set_long_field(out, &mut header, &entry.name, EntryType::GNULongName);
    header.set_cksum();
    append_record(out, header.as_bytes(), data);
}

/// The header of a described (non-raw) entry; its name and link name are set later.
fn header_for(entry: &Entry) -> Header {
    let mut header = Header::new_gnu();
    let (kind, size) = match &entry.kind {
        Kind::File(data) => (EntryType::Regular, data.len() as u64),
        Kind::Dir => (EntryType::Directory, 0),
        Kind::Symlink(_) => (EntryType::Symlink, 0),
        Kind::Hardlink(_) => (EntryType::Link, 0),
        Kind::CharDevice(..) => (EntryType::Char, 0),
        Kind::BlockDevice(..) => (EntryType::Block, 0),
        Kind::Fifo | Kind::Raw(..) | Kind::Bytes(_) => (EntryType::Fifo, 0),
    };
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(entry.mtime);
    if let Kind::CharDevice(major, minor) | Kind::BlockDevice(major, minor) = entry.kind {
        // GNU headers always have room for 8-digit octal device numbers; the calls only fail
        // for old-style (v7) headers.
        let _ = header.set_device_major(major);
        let _ = header.set_device_minor(minor);
    }
    header
}

fn entry_data(entry: &Entry) -> &[u8] {
    match &entry.kind {
        Kind::File(data) => data,
        _ => &[],
    }
}

/// Puts `value` into the header's name (or link name) field; a value longer than the field
/// first gets a GNU `././@LongLink` record of type `L` (or `K`) holding it, NUL-terminated.
fn set_long_field(out: &mut Vec<u8>, header: &mut Header, value: &[u8], kind: EntryType) {
    let old = header.as_old_mut();
    let field: &mut [u8; 100] = if kind == EntryType::GNULongLink {
        &mut old.linkname
    } else {
        &mut old.name
    };
    field.fill(0);
    let short = value.len().min(field.len());
    field[..short].copy_from_slice(&value[..short]);
    if value.len() <= field.len() {
        return;
    }
    let mut long = Header::new_gnu();
    long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    long.set_entry_type(kind);
    long.set_mode(0o644);
    long.set_size(value.len() as u64 + 1);
    long.set_cksum();
    append_record(out, long.as_bytes(), &[value, b"\0"].concat());
}

/// A PAX extended header (`x`) carrying `SCHILY.xattr.KEY=VALUE` records, the form GNU tar,
/// Docker and the tar crate read xattrs from.
fn write_pax_xattrs(out: &mut Vec<u8>, xattrs: &[(String, Vec<u8>)]) {
    let body: Vec<u8> = xattrs
        .iter()
        .flat_map(|(key, value)| pax_record(&format!("SCHILY.xattr.{key}"), value))
        .collect();
    let mut header = Header::new_ustar();
    header.as_old_mut().name[..10].copy_from_slice(b"PaxHeaders");
    header.set_entry_type(EntryType::XHeader);
    header.set_mode(0o644);
    header.set_size(body.len() as u64);
    header.set_cksum();
    append_record(out, header.as_bytes(), &body);
}

/// One PAX record, `LEN KEY=VALUE\n`, where LEN counts the whole record including itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    [format!("{len} {key}=").as_bytes(), value, b"\n"].concat()
}

/// Appends a 512-byte header and `data` padded with zeros to a whole block.
fn append_record(out: &mut Vec<u8>, header: &[u8; 512], data: &[u8]) {
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

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
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    working_dir: Option<String>,
    user: Option<String>,
    labels: BTreeMap<String, String>,
    os: String,
    architecture: String,
    variant: Option<String>,
    media_types: MediaTypes,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder {
            layers: Vec::new(),
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            working_dir: None,
            user: None,
            labels: BTreeMap::new(),
            os: "linux".to_string(),
            architecture: host_architecture().to_string(),
            variant: None,
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
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// The config's `Cmd`.
    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Adds `KEY=VALUE` to the config's `Env`.
    pub fn env(mut self, key_value: impl Into<String>) -> Self {
        self.env.push(key_value.into());
        self
    }

    /// The config's `WorkingDir`.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// The config's `User` (`name`, `uid`, `uid:gid`, `name:group`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Adds a label to the config's `Labels`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The platform the config (and an index entry) names, e.g. `("linux", "arm64", Some("v8"))`.
    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> Self {
        self.os = os.to_string();
        self.architecture = architecture.to_string();
        self.variant = variant.map(str::to_string);
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

    fn configuration(&self, layers: &[Blob]) -> oci_spec::image::ImageConfiguration {
        let mut config = ConfigBuilder::default();
        if let Some(entrypoint) = &self.entrypoint {
            config = config.entrypoint(entrypoint.clone());
        }
        if let Some(cmd) = &self.cmd {
            config = config.cmd(cmd.clone());
        }
        if !self.env.is_empty() {
            config = config.env(self.env.clone());
        }
        if let Some(dir) = &self.working_dir {
            config = config.working_dir(dir.clone());
        }
        if let Some(user) = &self.user {
            config = config.user(user.clone());
        }
        if !self.labels.is_empty() {
            config = config.labels(
                self.labels
                    .clone()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        let rootfs = RootFsBuilder::default()
            .typ("layers")
            .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
            .build()
            .unwrap_or_else(|e| panic!("image rootfs: {e}"));
        let mut image = ImageConfigurationBuilder::default()
            .os(self.os.as_str())
            .architecture(self.architecture.as_str())
            .rootfs(rootfs)
            .config(
                config
                    .build()
                    .unwrap_or_else(|e| panic!("image config: {e}")),
            );
        if let Some(variant) = &self.variant {
            image = image.variant(variant.clone());
        }
        image
            .build()
            .unwrap_or_else(|e| panic!("image configuration: {e}"))
    }

    fn platform_descriptor(&self) -> Platform {
        let mut platform = PlatformBuilder::default()
            .os(self.os.as_str())
            .architecture(self.architecture.as_str());
        if let Some(variant) = &self.variant {
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

    /// Forces OCI index or Docker manifest list.
    pub fn media_types(mut self, types: MediaTypes) -> Self {
        self.media_types = Some(types);
        self
    }

    /// Serialises the index with each image's descriptor and platform.
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
        let manifests: Vec<Descriptor> = self
            .images
            .iter()
            .map(|image| {
                let mut d = image.descriptor();
                d.set_platform(Some(image.platform.clone()));
                d
            })
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
}

impl Index {
    /// The descriptor of the index document.
    pub fn descriptor(&self) -> Descriptor {
        descriptor(&self.media_type, &self.manifest, &self.manifest_digest)
    }

    /// Writes every image's blobs and the index into the OCI layout at `dir`, tagging the
    /// index `tag` in `index.json`.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> std::io::Result<()> {
        let mut blobs: Vec<(&str, &[u8])> = self.images.iter().flat_map(Image::blobs).collect();
        blobs.push((&self.manifest_digest, &self.manifest));
        write_layout(dir, &blobs, self.descriptor(), tag)
    }

    /// Pushes every image by digest, then the index tagged `tag`.
    pub fn push(
        &self,
        to: &impl AsRef<Remote>,
        repo: &str,
        tag: &str,
    ) -> Result<(), RegistryError> {
        for image in &self.images {
            image.push(to, repo, &image.manifest_digest)?;
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
    fn pax_record_length_counts_itself() {
        let record = pax_record("path", b"a");
        assert_eq!(record, b"9 path=a\n");
        let long = pax_record("k", &[b'v'; 95]);
        assert_eq!(long.len().to_string(), String::from_utf8_lossy(&long[..3]));
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout_name(b"etc/motd", None), b"etc/.wh.motd");
        assert_eq!(whiteout_name(b"motd", None), b".wh.motd");
        assert_eq!(
            whiteout_name(b"etc/", Some(b".wh..wh..opq")),
            b"etc/.wh..wh..opq"
        );
    }

    #[test]
    fn hostile_names_reach_the_archive_unchanged() {
        let long = "d/".repeat(100) + "x";
        let tar = Layer::new()
            .file("../x", "a", 0o644)
            .file(&long, "b", 0o644)
            .to_tar();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<Vec<u8>> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect();
        assert_eq!(names, vec![b"../x".to_vec(), long.into_bytes()]);
    }

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

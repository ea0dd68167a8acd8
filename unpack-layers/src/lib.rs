//! unpack-layers: an OCI image's layers applied, in order, to a directory,
//! plus the runtime `config.json` that makes it a bundle runc can run — what
//! `umoci unpack --image DIR:TAG BUNDLE` does.
//!
//! The mechanism is the image-spec's layer model (`layer.md`): each layer is a
//! tar archive of the changes to the filesystem below it, with whiteout files
//! (`.wh.NAME`, `.wh..wh..opq`) standing for deletions. Unpacking is
//! "extract every layer on top of the last", but as root, from images made by
//! strangers, so every path is resolved inside the rootfs as if it were `/`
//! (openat2(2) `RESOLVE_IN_ROOT`, see `resolve.rs`), nothing follows a symlink
//! at the last component, and every blob is checked against its digest
//! (`digest.rs`) and every layer against its diff_id while it streams
//! (`decompress.rs`).
//!
//! Roughly the shell equivalent, minus all of the checks:
//!
//! ```sh
//! mkdir -m 0700 bundle && mkdir bundle/rootfs
//! for blob in $(jq -r '.layers[].digest' manifest.json); do
//!     tar -xzpf blobs/sha256/${blob#sha256:} -C bundle/rootfs --numeric-owner --xattrs   # + whiteouts
//! done
//! ```
//!
//! Man pages: openat2(2), path_resolution(7), mknodat(2), linkat(2),
//! symlinkat(2), fchownat(2), utimensat(2), setxattr(2), tar(5).

pub mod apply;
pub mod config;
pub mod decompress;
pub mod digest;
pub mod entry;
pub mod explain;
pub mod interrupt;
pub mod layout;
pub mod limits;
pub mod passwd;
pub mod resolve;
pub mod whiteout;

use std::fs::{self, DirBuilder, File};
use std::io::{self, IsTerminal, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::sys::stat::{umask, Mode};

use crate::apply::{Applier, LayerError};
use crate::decompress::{Budget, Compression, Stream, StreamError};
use crate::digest::{format_sha256, DigestError};
use crate::explain::Explain;
use crate::layout::{ImageRef, LayoutError, Platform};
use crate::limits::Limits;
use crate::passwd::UserError;
use crate::resolve::Root;

/// What to unpack where; the command line, parsed.
#[derive(Debug, Clone)]
pub struct Options {
    pub image: ImageRef,
    pub bundle: PathBuf,
    /// Write the filesystem into `bundle` itself (an existing empty directory).
    pub rootfs_only: bool,
    pub platform: Option<Platform>,
    pub limits: Limits,
    pub quiet: bool,
    pub explain: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open image '{image}'")]
    Image {
        image: String,
        #[source]
        source: LayoutError,
    },
    #[error("bundle '{}' already exists and is not empty", .0.display())]
    BundleNotEmpty(PathBuf),
    #[error("'{}' {reason} (--rootfs-only needs an existing empty directory)", .path.display())]
    RootfsOnly { path: PathBuf, reason: &'static str },
    #[error("cannot create '{}'", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {index} of {count} ({digest})")]
    Layer {
        index: usize,
        count: usize,
        digest: String,
        #[source]
        source: LayerFailure,
    },
    #[error("cannot resolve the image's user '{user}'")]
    User {
        user: String,
        #[source]
        source: UserError,
    },
    #[error("cannot build config.json")]
    Spec(#[source] oci_spec::OciSpecError),
    #[error("cannot write '{}'", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why one layer failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerFailure {
    #[error("unsupported layer media type '{0}'")]
    MediaType(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("cannot open blob '{}'", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob is {actual} bytes, its descriptor says {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("blob does not match its digest (its content hashes to {actual})")]
    BlobDigest { actual: String },
    #[error("uncompressed layer hashes to {actual}, but the config's diff_id is {expected}")]
    DiffId { expected: String, actual: String },
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Apply(#[from] LayerError),
}

/// Unpacks `opts.image` into `opts.bundle`. On failure, what this run created
/// is removed (or, for `--rootfs-only`, the directory emptied again).
pub fn unpack(opts: &Options) -> Result<(), Error> {
    let image =
        layout::open(&opts.image, opts.platform.as_ref()).map_err(|source| Error::Image {
            image: format!("{}:{}", opts.image.dir.display(), opts.image.tag),
            source,
        })?;
    let explain = Explain::new(opts.explain);
    explain.note(format_args!(
        "image {}: manifest {}",
        opts.image.dir.join("blobs/sha256").display(),
        image.manifest_digest
    ));
    let target = Target::prepare(&opts.bundle, opts.rootfs_only, explain)?;
    let result = unpack_into(opts, &image, &target, explain);
    if result.is_err() {
        target.undo();
    }
    result
}

/// The directories this run writes, and how to undo them.
struct Target {
    bundle: PathBuf,
    rootfs: PathBuf,
    /// The topmost directory this run created: the bundle, or its highest
    /// ancestor that did not exist (parents are made as `umoci unpack` makes them).
    created: Option<PathBuf>,
    rootfs_only: bool,
}

impl Target {
    fn prepare(bundle: &Path, rootfs_only: bool, explain: Explain) -> Result<Target, Error> {
        fn create(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
            move |source| Error::Create {
                path: path.to_owned(),
                source,
            }
        }
        let existing = match fs::metadata(bundle) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(create(bundle)(e)),
        };
        if rootfs_only {
            let reason = match &existing {
                None => Some("does not exist"),
                Some(m) if !m.is_dir() => Some("is not a directory"),
                Some(_) if !is_empty(bundle).map_err(create(bundle))? => Some("is not empty"),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                return Err(Error::RootfsOnly {
                    path: bundle.to_owned(),
                    reason,
                });
            }
            return Ok(Target {
                bundle: bundle.to_owned(),
                rootfs: bundle.to_owned(),
                created: None,
                rootfs_only: true,
            });
        }
        let created = match existing {
            None => {
                let topmost = bundle
                    .ancestors()
                    .take_while(|p| !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err())
                    .last()
                    .unwrap_or(bundle)
                    .to_owned();
                if let Some(parent) = bundle.parent().filter(|p| !p.as_os_str().is_empty()) {
                    explain.say(
                        format_args!("mkdir({parent:?}, 0755) for each missing parent"),
                        format_args!("mkdir -p {}", parent.display()),
                    );
                    if let Err(source) = fs::create_dir_all(parent) {
                        // Undo the parents made before the failure.
                        let _ = fs::remove_dir_all(&topmost);
                        return Err(create(parent)(source));
                    }
                }
                // 0700: setuid binaries and devices in the rootfs stay out of
                // reach of the host's other users (THREATS: devices and setuid).
                explain.say(
                    format_args!("mkdir({bundle:?}, 0700)"),
                    format_args!("mkdir -m 0700 {}", bundle.display()),
                );
                if let Err(source) = DirBuilder::new().mode(0o700).create(bundle) {
                    let _ = fs::remove_dir_all(&topmost);
                    return Err(create(bundle)(source));
                }
                Some(topmost)
            }
            Some(m) if m.is_dir() && is_empty(bundle).map_err(create(bundle))? => {
                fs::set_permissions(bundle, fs::Permissions::from_mode(0o700))
                    .map_err(create(bundle))?;
                None
            }
            Some(_) => return Err(Error::BundleNotEmpty(bundle.to_owned())),
        };
        let target = Target {
            bundle: bundle.to_owned(),
            rootfs: bundle.join("rootfs"),
            created,
            rootfs_only: false,
        };
        explain.say(
            format_args!("mkdir({:?}, 0755)", target.rootfs),
            format_args!("mkdir {}", target.rootfs.display()),
        );
        if let Err(source) = DirBuilder::new().mode(0o755).create(&target.rootfs) {
            target.undo();
            return Err(Error::Create {
                path: target.rootfs.clone(),
                source,
            });
        }
        Ok(target)
    }

    /// Removes what this run wrote: the bundle it made (with any parents it
    /// made), or the contents of the directory it was given. Best effort: the error being reported matters more.
    fn undo(&self) {
        let result = if let Some(created) = &self.created {
            fs::remove_dir_all(created)
        } else {
            empty_dir(if self.rootfs_only {
                &self.rootfs
            } else {
                &self.bundle
            })
        };
        if let Err(e) = result {
            eprintln!(
                "unpack-layers: warning: could not remove what was unpacked in '{}': {e}",
                self.bundle.display()
            );
        }
    }
}

fn is_empty(dir: &Path) -> io::Result<bool> {
    Ok(fs::read_dir(dir)?.next().is_none())
}

/// Removes everything inside `dir` (std's remove_dir_all does not follow symlinks).
fn empty_dir(dir: &Path) -> io::Result<()> {
    for child in fs::read_dir(dir)? {
        let path = child?.path();
        if fs::symlink_metadata(&path)?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn unpack_into(
    opts: &Options,
    image: &layout::Image,
    target: &Target,
    explain: Explain,
) -> Result<(), Error> {
    // Modes come from the layer exactly; the caller's umask must not mask them.
    explain.say(format_args!("umask(0)"), format_args!("umask 0"));
    umask(Mode::empty());
    let root = Root::open(&target.rootfs)
        .map(|root| root.explain(explain))
        .map_err(|e| Error::Create {
            path: target.rootfs.clone(),
            source: e.into(),
        })?;
    explain.say(
        format_args!("open({:?}, O_DIRECTORY)", target.rootfs),
        format_args!("cd {}", target.rootfs.display()),
    );
    let mut applier = Applier::new(root, opts.limits, explain, opts.quiet);
    let layers = image.manifest.layers();
    let diff_ids = image.config.rootfs().diff_ids();
    let total: u64 = layers.iter().map(|l| l.size()).sum();
    let show_bar = !opts.quiet && !opts.explain && io::stderr().is_terminal();
    let bar = Arc::new(if show_bar {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    });
    let mut earlier_bytes = 0u64;
    let mut done_blob_bytes = 0u64;
    for (i, (descriptor, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        let digest = descriptor.digest().to_string();
        let fail = |source: LayerFailure| Error::Layer {
            index: i + 1,
            count: layers.len(),
            digest: digest.clone(),
            source,
        };
        let media_type = descriptor.media_type().to_string();
        explain.note(format_args!(
            "layer {} of {}: {digest} ({media_type}, {} bytes)",
            i + 1,
            layers.len(),
            descriptor.size()
        ));
        bar.set_message(format!("layer {}/{}", i + 1, layers.len()));
        let compression = Compression::from_media_type(&media_type)
            .ok_or_else(|| fail(LayerFailure::MediaType(media_type.clone())))?;
        let path = layout::blob_path(&opts.image.dir, &digest).map_err(|e| fail(e.into()))?;
        let open = |source| {
            fail(LayerFailure::Open {
                path: path.clone(),
                source,
            })
        };
        let blob = File::open(&path).map_err(open)?;
        let blob_len = blob.metadata().map_err(open)?.len();
        if blob_len != descriptor.size() {
            return Err(fail(LayerFailure::Size {
                expected: descriptor.size(),
                actual: blob_len,
            }));
        }
        let progress = {
            let bar = Arc::clone(&bar);
            move |n: u64| bar.set_position(done_blob_bytes + n)
        };
        let budget = Budget {
            limits: opts.limits,
            earlier_layers: earlier_bytes,
            blob_len,
        };
        explain.say(
            format_args!(
                "read + sha256 + {} inflate on a second thread, tar entries applied with *at(2) calls",
                compression.name()
            ),
            format_args!(
                "tar {}-xpf {} -C {} --numeric-owner --xattrs   # plus whiteouts",
                match compression {
                    Compression::Gzip => "--gzip ",
                    Compression::Zstd => "--zstd ",
                    Compression::None => "",
                },
                path.display(),
                target.rootfs.display()
            ),
        );
        let mut stream = Stream::spawn(blob, compression, budget, progress)
            .map_err(|e| fail(LayerFailure::Stream(StreamError::Read(e))))?;
        if let Err(e) = applier.apply_layer(&mut stream) {
            // A corrupt or oversized stream explains a tar error better.
            return Err(fail(match stream.abandon() {
                Some(stream_error) => stream_error.into(),
                None => e.into(),
            }));
        }
        let summary = stream.finish().map_err(|e| fail(e.into()))?;
        let actual = format_sha256(&summary.blob_sha256);
        if actual != digest {
            return Err(fail(LayerFailure::BlobDigest { actual }));
        }
        let actual = format_sha256(&summary.diff_sha256);
        if &actual != diff_id {
            return Err(fail(LayerFailure::DiffId {
                expected: diff_id.clone(),
                actual,
            }));
        }
        explain.note(format_args!(
            "blob sha256 matches the manifest; the {} uncompressed bytes match diff_id {diff_id}",
            summary.tar_len
        ));
        earlier_bytes += summary.tar_len;
        done_blob_bytes += summary.blob_len;
    }
    bar.finish_and_clear();
    if !opts.rootfs_only {
        write_config(opts, image, target, applier.root(), explain)?;
    }
    Ok(())
}

fn write_config(
    opts: &Options,
    image: &layout::Image,
    target: &Target,
    root: &Root,
    explain: Explain,
) -> Result<(), Error> {
    let user_spec = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let passwd = read_rootfs_file(root, &[b"etc", b"passwd"]);
    let group = read_rootfs_file(root, &[b"etc", b"group"]);
    let user = passwd::resolve(&user_spec, &passwd, &group).map_err(|source| Error::User {
        user: user_spec.clone(),
        source,
    })?;
    let hostname = hostname_for(&opts.bundle);
    let spec = config::runtime_spec(&image.config, &user, &hostname).map_err(Error::Spec)?;
    let path = target.bundle.join("config.json");
    explain.note(format_args!(
        "user '{user_spec}' is {}:{} in the rootfs' own /etc/passwd and /etc/group",
        user.uid, user.gid
    ));
    explain.say(
        format_args!("open({path:?}, O_CREAT|O_EXCL|O_WRONLY, 0644)"),
        format_args!("runc spec   # then process args, env, cwd, user from the image config"),
    );
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Write {
        path: path.clone(),
        source: e.into(),
    })?;
    write_file(&path, &json, 0o644).map_err(|source| Error::Write { path, source })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)
}

/// A file of the rootfs (its `/etc/passwd`), read with every symlink resolved
/// inside the root. Missing, unreadable, or not a regular file: empty.
fn read_rootfs_file(root: &Root, components: &[&[u8]]) -> String {
    let Ok(fd) = root.open_beneath(
        components,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
    ) else {
        return String::new();
    };
    let file = File::from(fd);
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        _ => return String::new(),
    }
    let mut text = String::new();
    // 4 MiB is far more than any passwd file; a larger one is cut, not slurped.
    if file.take(4 << 20).read_to_string(&mut text).is_err() {
        return String::new();
    }
    text
}

/// The bundle directory's name (runtime-spec leaves the hostname to the bundle author).
fn hostname_for(bundle: &Path) -> String {
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| {
            fs::canonicalize(bundle)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_default();
    if name.is_empty() {
        "container".to_owned()
    } else {
        name
    }
}

/// The error and its causes on one line, `a: b: c`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! Builds the benchmark inputs offline, the same bytes on every machine (a seeded generator):
//!
//! ```text
//! bench-image image SHAPE DIR    OCI layout at DIR, tag `latest`; prints
//!                                SHAPE<TAB>COMPRESSED_BYTES<TAB>TAR_BYTES<TAB>FILES
//! bench-image layers DIR         the layer blobs of DIR's `latest`, base first, one path a line
//! bench-image bundle DIR         runtime bundle: DIR/config.json running /bin/true, DIR/rootfs
//! bench-image tree DIR MIB       about MIB MiB of files under the existing directory DIR
//! bench-image shapes             the image shapes, one per line
//! ```
//!
//! An image has the shape of a real one: a base layer (a small distribution: binaries,
//! libraries with their `.so` symlinks, documentation, hardlinked aliases, `/bin/busybox`
//! so a container can run), an update layer (new packages, rewritten files, whiteouts of
//! files and of a whole directory, an opaque directory) and an application layer (sources,
//! one large incompressible data file, whiteouts, hardlinks). Layers are gzip, as on every
//! registry. File sizes follow a log-uniform spread (many small files, a few large ones);
//! contents mix text and binary-like bytes so gzip compresses them about as it does real
//! files.
//!
//! A layout already built for the same shape (its `DIR.stamp` matches) is reused.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use oci_spec::image::{ImageIndex, ImageManifest, ANNOTATION_REF_NAME};
use oci_spec::runtime::{ProcessBuilder, RootBuilder, Spec};
use tests::busybox::{busybox_rootfs, BUSYBOX};
use tests::image::{sha256_digest, Blob, Compression, ImageBuilder, Layer, MediaTypes};

/// Bumped whenever the generator changes what it writes, so cached layouts are rebuilt.
const GENERATION: u32 = 1;

/// Applets linked to busybox in `/bin`.
const APPLETS: &[&str] = &["sh", "true", "echo", "ls", "cat", "env"];

const MIB: u64 = 1024 * 1024;

/// The size and file count of one benchmark image.
#[derive(Clone, Copy, Debug)]
struct Shape {
    name: &'static str,
    /// Regular files written across the three layers.
    files: usize,
    /// Bytes of compressible file contents (before gzip), spread over `files`.
    compressible: u64,
    /// Size of the one incompressible file of the application layer (0: none).
    incompressible: u64,
}

/// `realistic` is the image of the main comparisons (about 150 MB of gzip layers, ~10k
/// files, a 50 MB incompressible file); the others scale it for the scaling figures;
/// `tiny` is for the smoke run.
const SHAPES: &[Shape] = &[
    Shape {
        name: "tiny",
        files: 150,
        compressible: 2 * MIB,
        incompressible: MIB / 2,
    },
    Shape {
        name: "small",
        files: 3_300,
        compressible: 73 * MIB,
        incompressible: 17 * MIB,
    },
    Shape {
        name: "realistic",
        files: 10_000,
        compressible: 222 * MIB,
        incompressible: 50 * MIB,
    },
    Shape {
        name: "large",
        files: 33_000,
        compressible: 738 * MIB,
        incompressible: 167 * MIB,
    },
    Shape {
        name: "manyfiles",
        files: 40_000,
        compressible: 120 * MIB,
        incompressible: 0,
    },
];

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    let result = match args.as_slice() {
        [cmd, shape, dir] if *cmd == "image" => match find_shape(shape) {
            Some(shape) => image_command(shape, Path::new(dir)),
            None => return usage(&format!("unknown shape '{}'", shape.to_string_lossy())),
        },
        [cmd, dir] if *cmd == "bundle" => write_bundle(Path::new(dir)),
        [cmd, dir] if *cmd == "layers" => print_layers(Path::new(dir)),
        [cmd, dir, mib] if *cmd == "tree" => match mib.to_str().and_then(|m| m.parse().ok()) {
            Some(mib) => write_tree(Path::new(dir), mib),
            None => return usage(&format!("bad size '{}': MiB", mib.to_string_lossy())),
        },
        [cmd] if *cmd == "shapes" => {
            for s in SHAPES {
                println!("{}", s.name);
            }
            Ok(())
        }
        _ => return usage("expected a subcommand"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-image: {err}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "bench-image: {problem}\n\
         usage: bench-image image SHAPE DIR | layers DIR | bundle DIR | tree DIR MIB | shapes"
    );
    ExitCode::from(2)
}

fn find_shape(name: &std::ffi::OsStr) -> Option<Shape> {
    SHAPES.iter().copied().find(|s| name == s.name)
}

/// Builds (or reuses) the layout and prints its figures.
fn image_command(shape: Shape, dir: &Path) -> Result<(), String> {
    let mut stamp_path = dir.as_os_str().to_owned();
    stamp_path.push(".stamp");
    let stamp_path = PathBuf::from(stamp_path);
    let key = format!("generation {GENERATION} {}\t", shape.name);
    if let Ok(stamp) = fs::read_to_string(&stamp_path) {
        if let Some(figures) = stamp.strip_prefix(&key) {
            if dir.join("index.json").is_file() {
                eprintln!("bench-image: reusing {}", dir.display());
                print!("{}\t{figures}", shape.name);
                return Ok(());
            }
        }
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove '{}': {e}", dir.display()))?;
    }
    eprintln!(
        "bench-image: building the '{}' image in {}",
        shape.name,
        dir.display()
    );
    let busybox =
        fs::read(BUSYBOX).map_err(|e| format!("cannot read {BUSYBOX} (busybox-static): {e}"))?;
    let built = build_image(shape, &busybox);
    built
        .image
        .write_oci_layout(dir, "latest")
        .map_err(|e| format!("cannot write the layout '{}': {e}", dir.display()))?;
    let figures = format!(
        "{}\t{}\t{}\n",
        built.compressed, built.tar_bytes, built.files
    );
    fs::write(&stamp_path, format!("{key}{figures}"))
        .map_err(|e| format!("cannot write '{}': {e}", stamp_path.display()))?;
    print!("{}\t{figures}", shape.name);
    Ok(())
}

/// The paths of the layer blobs of the layout's `latest`, in order (what `tar -xzf` of the
/// layers one after the other reads).
fn print_layers(dir: &Path) -> Result<(), String> {
    let index = ImageIndex::from_file(dir.join("index.json"))
        .map_err(|e| format!("cannot read the index of '{}': {e}", dir.display()))?;
    let latest = index
        .manifests()
        .iter()
        .find(|d| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_REF_NAME))
                .is_some_and(|tag| tag == "latest")
        })
        .ok_or_else(|| format!("no tag 'latest' in '{}'", dir.display()))?;
    let blob = |digest: &oci_spec::image::Digest| {
        dir.join("blobs")
            .join(digest.algorithm().to_string())
            .join(digest.digest())
    };
    let manifest = ImageManifest::from_file(blob(latest.digest()))
        .map_err(|e| format!("cannot read the manifest of '{}': {e}", dir.display()))?;
    for layer in manifest.layers() {
        println!("{}", blob(layer.digest()).display());
    }
    Ok(())
}

struct Built {
    image: tests::image::Image,
    compressed: u64,
    tar_bytes: u64,
    /// Regular files in the final tree, after the whiteouts.
    files: usize,
}

fn build_image(shape: Shape, busybox: &[u8]) -> Built {
    let mut gen = Generator::new(shape.name);
    let mut tree = Tree::default();
    let sizes = gen.file_sizes(shape.files, shape.compressible);
    let (base_n, update_n) = (shape.files * 70 / 100, shape.files * 20 / 100);
    let (base_sizes, rest) = sizes.split_at(base_n);
    let (update_sizes, app_sizes) = rest.split_at(update_n);

    let base = base_layer(&mut gen, &mut tree, busybox, base_sizes);
    let update = update_layer(&mut gen, &mut tree, update_sizes);
    let app = app_layer(&mut gen, &mut tree, app_sizes, shape.incompressible);

    // Each layer gzips on its own thread: the 500 MB shape takes a while single-threaded.
    let blobs: Vec<(Blob, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = [base, update, app]
            .into_iter()
            .map(|layer| scope.spawn(move || gzip_blob(layer)))
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(blob) => blob,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    let compressed = blobs.iter().map(|(b, _)| b.data.len() as u64).sum();
    let tar_bytes = blobs.iter().map(|(_, tar)| tar).sum();
    let mut image = ImageBuilder::new()
        .cmd(["/bin/sh"])
        .env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .working_dir("/")
        .label(
            "org.opencontainers.image.title",
            format!("bench-{}", shape.name),
        );
    for (blob, _) in blobs {
        image = image.layer_blob(blob);
    }
    Built {
        image: image.build(),
        compressed,
        tar_bytes,
        files: tree.files.len(),
    }
}

fn gzip_blob(layer: Layer) -> (Blob, u64) {
    let tar = layer.to_tar();
    drop(layer);
    let data = Compression::Gzip.compress(&tar);
    let blob = Blob {
        digest: sha256_digest(&data),
        media_type: MediaTypes::Oci.layer(Compression::Gzip).to_string(),
        data,
        diff_id: sha256_digest(&tar),
    };
    (blob, tar.len() as u64)
}

/// What the layers so far leave in the rootfs, to aim whiteouts and hardlinks at real paths.
#[derive(Default)]
struct Tree {
    files: BTreeSet<String>,
}

impl Tree {
    fn remove(&mut self, path: &str) {
        self.files.remove(path);
        let prefix = format!("{path}/");
        self.files.retain(|f| !f.starts_with(&prefix));
    }
}

/// One layer being written: adds the parent directories of each entry once, as the layers
/// a build tool makes do.
struct LayerWriter<'a> {
    layer: Layer,
    tree: &'a mut Tree,
    dirs_here: BTreeSet<String>,
}

impl<'a> LayerWriter<'a> {
    fn new(tree: &'a mut Tree) -> Self {
        LayerWriter {
            layer: Layer::new(),
            tree,
            dirs_here: BTreeSet::new(),
        }
    }

    fn dir(&mut self, path: &str, mode: u32) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent, 0o755);
        }
        if self.dirs_here.insert(path.to_owned()) {
            self.layer = std::mem::take(&mut self.layer).dir(path, mode);
        }
    }

    fn parent(&mut self, path: &str) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent, 0o755);
        }
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) {
        self.parent(path);
        self.layer = std::mem::take(&mut self.layer).file(path, data, mode);
        self.tree.files.insert(path.to_owned());
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.parent(path);
        self.layer = std::mem::take(&mut self.layer).symlink(path, target);
    }

    fn hardlink(&mut self, path: &str, target: &str) {
        self.parent(path);
        self.layer = std::mem::take(&mut self.layer).hardlink(path, target);
        self.tree.files.insert(path.to_owned());
    }

    fn whiteout(&mut self, path: &str) {
        self.parent(path);
        self.layer = std::mem::take(&mut self.layer).whiteout(path);
        self.tree.remove(path);
    }

    /// `.wh..wh..opq` in `dir`: what lower layers put there is gone, this layer's stays.
    fn opaque(&mut self, dir: &str) {
        self.dir(dir, 0o755);
        let lower: Vec<String> = self
            .tree
            .files
            .iter()
            .filter(|f| f.starts_with(&format!("{dir}/")))
            .cloned()
            .collect();
        for f in lower {
            self.tree.files.remove(&f);
        }
        self.layer = std::mem::take(&mut self.layer).opaque(dir);
    }

    fn finish(self) -> Layer {
        self.layer
    }
}

fn base_layer(gen: &mut Generator, tree: &mut Tree, busybox: &[u8], sizes: &[u64]) -> Layer {
    let mut w = LayerWriter::new(tree);
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr/bin", 0o755),
        ("usr/lib", 0o755),
        ("usr/share/doc", 0o755),
        ("var/log", 0o755),
    ] {
        w.dir(dir, mode);
    }
    w.file("bin/busybox", busybox, 0o755);
    for applet in APPLETS {
        w.symlink(&format!("bin/{applet}"), "busybox");
    }
    w.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    );
    w.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644);
    w.file("etc/hostname", b"bench\n", 0o644);
    packages(gen, &mut w, "p", sizes);
    w.finish()
}

/// Files of a run of packages: per package a binary in usr/bin, libraries with their
/// `.so` symlinks in usr/lib/NAME, data and documentation; every 20th binary gets a
/// hardlinked alias, like `python3.11` and `python3`.
fn packages(gen: &mut Generator, w: &mut LayerWriter, prefix: &str, sizes: &[u64]) {
    const PER_PACKAGE: usize = 24;
    for (p, chunk) in sizes.chunks(PER_PACKAGE).enumerate() {
        let pkg = format!("{prefix}{p:04}");
        for (i, &size) in chunk.iter().enumerate() {
            match i {
                0 => {
                    let bin = format!("usr/bin/{pkg}");
                    w.file(&bin, &gen.binary(size), 0o755);
                    if p % 20 == 0 {
                        w.hardlink(&format!("usr/bin/{pkg}-alias"), &bin);
                    }
                }
                1..=5 => {
                    let lib = format!("usr/lib/{pkg}/lib{pkg}-{i}.so");
                    w.file(&format!("{lib}.1"), &gen.binary(size), 0o644);
                    w.symlink(&lib, &format!("lib{pkg}-{i}.so.1"));
                }
                6..=13 => {
                    let path = format!("usr/share/{pkg}/data/{}.dat", i - 6);
                    w.file(&path, &gen.binary(size), 0o644);
                }
                _ => {
                    let path = format!("usr/share/doc/{pkg}/{}.txt", i - 14);
                    w.file(&path, &gen.text(size), 0o644);
                }
            }
        }
    }
}

fn update_layer(gen: &mut Generator, tree: &mut Tree, sizes: &[u64]) -> Layer {
    let mut w = LayerWriter::new(tree);
    let (new_sizes, rest) = sizes.split_at(sizes.len() * 6 / 10);
    let (rewrite_sizes, opaque_sizes) = rest.split_at(rest.len() * 3 / 4);

    // Removed files (one in a hundred data files) and a removed documentation directory.
    let removed: Vec<String> = w
        .tree
        .files
        .iter()
        .filter(|p| p.ends_with(".dat"))
        .step_by(100)
        .cloned()
        .collect();
    for path in &removed {
        w.whiteout(path);
    }
    w.whiteout("usr/share/doc/p0001");
    // A directory replaced wholesale: an opaque marker and the new contents.
    w.opaque("usr/share/doc/p0000");
    for (i, &size) in opaque_sizes.iter().enumerate() {
        w.file(
            &format!("usr/share/doc/p0000/new-{i}.txt"),
            &gen.text(size),
            0o644,
        );
    }
    // Upgraded files: the same paths with new contents.
    let rewrites: Vec<String> = w
        .tree
        .files
        .iter()
        .filter(|p| p.ends_with(".so.1") || (p.ends_with(".txt") && !p.contains("/new-")))
        .step_by(3)
        .take(rewrite_sizes.len())
        .cloned()
        .collect();
    for (path, &size) in rewrites.iter().zip(rewrite_sizes) {
        let data = if path.ends_with(".txt") {
            gen.text(size)
        } else {
            gen.binary(size)
        };
        w.file(path, &data, 0o644);
    }
    packages(gen, &mut w, "u", new_sizes);
    w.finish()
}

fn app_layer(gen: &mut Generator, tree: &mut Tree, sizes: &[u64], incompressible: u64) -> Layer {
    let lower: Vec<String> = tree
        .files
        .iter()
        .filter(|p| p.contains("/u0"))
        .cloned()
        .collect();
    let mut w = LayerWriter::new(tree);
    w.dir("opt/app", 0o755);
    if incompressible > 0 {
        w.file("opt/app/model.bin", &gen.random(incompressible), 0o644);
    }
    for (i, &size) in sizes.iter().enumerate() {
        let path = format!("opt/app/src/m{:03}/f{i}.py", i / 40);
        w.file(&path, &gen.text(size), 0o644);
        if i % 100 == 0 {
            w.hardlink(&format!("opt/app/src/m{:03}/f{i}-link.py", i / 40), &path);
        }
    }
    w.symlink("opt/app/current", "src");
    for path in lower.iter().step_by(200) {
        w.whiteout(path);
    }
    w.finish()
}

/// A runtime bundle: the harness' busybox rootfs and a runtime-spec config (runc's defaults: the
/// usual mounts, namespaces, masked paths, capabilities) running `/bin/true`.
fn write_bundle(dir: &Path) -> Result<(), String> {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(&rootfs)
        .and_then(|()| busybox_rootfs(&rootfs))
        .map_err(|e| format!("cannot write '{}': {e}", rootfs.display()))?;
    let mut spec = Spec::default();
    let process = ProcessBuilder::default()
        .args(vec!["/bin/true".to_string()])
        .env(vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_string()])
        .cwd("/")
        .build()
        .map_err(|e| format!("cannot build the process: {e}"))?;
    let root = RootBuilder::default()
        .path("rootfs")
        .readonly(false)
        .build()
        .map_err(|e| format!("cannot build the root: {e}"))?;
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_hostname(Some("bench".to_string()));
    let config = dir.join("config.json");
    spec.save(&config)
        .map_err(|e| format!("cannot write '{}': {e}", config.display()))
}

/// About `mib` MiB of files, ten per MiB, twenty per directory: the content of a
/// subvolume to snapshot or copy.
fn write_tree(dir: &Path, mib: u64) -> Result<(), String> {
    let mut gen = Generator::new("tree");
    let count = (mib * 10).max(8) as usize;
    let sizes = gen.file_sizes(count, mib * MIB);
    for (i, &size) in sizes.iter().enumerate() {
        let sub = dir.join(format!("d{:04}", i / 20));
        let path = sub.join(format!("f{i}"));
        fs::create_dir_all(&sub)
            .and_then(|()| fs::write(&path, gen.binary(size)))
            .map_err(|e| format!("cannot write '{}': {e}", path.display()))?;
    }
    Ok(())
}

/// Deterministic contents: splitmix64 seeded by a name.
struct Generator {
    state: u64,
    words: Vec<Vec<u8>>,
}

impl Generator {
    fn new(seed: &str) -> Self {
        let mut gen = Generator {
            state: seed.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            }),
            words: Vec::new(),
        };
        gen.words = (0..1024)
            .map(|_| {
                let len = 2 + gen.below(9) as usize;
                (0..len).map(|_| b'a' + gen.below(26) as u8).collect()
            })
            .collect();
        gen
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `count` sizes, log-uniform between 1 and 8192 units, scaled to add up to `total`.
    fn file_sizes(&mut self, count: usize, total: u64) -> Vec<u64> {
        let weights: Vec<f64> = (0..count)
            .map(|_| (self.next() as f64 / u64::MAX as f64 * 13.0).exp2())
            .collect();
        let sum: f64 = weights.iter().sum();
        weights
            .iter()
            .map(|w| (w / sum * total as f64) as u64)
            .collect()
    }

    /// Prose-like text: words of a fixed vocabulary, lines of about ten words.
    fn text(&mut self, size: u64) -> Vec<u8> {
        let size = size as usize;
        let mut out = Vec::with_capacity(size + 16);
        while out.len() < size {
            let r = self.next();
            let word = &self.words[(r & 1023) as usize];
            out.extend_from_slice(word);
            out.push(if (r >> 10) % 10 == 0 { b'\n' } else { b' ' });
        }
        out.truncate(size);
        out
    }

    /// Machine-code-like bytes: blocks of zeros, of a few frequent byte values, and of
    /// random bytes.
    fn binary(&mut self, size: u64) -> Vec<u8> {
        const COMMON: [u8; 16] = [
            0x00, 0x48, 0x89, 0x8b, 0xe8, 0xff, 0x0f, 0x85, 0x84, 0xc0, 0x24, 0x44, 0x45, 0x31,
            0x83, 0xc3,
        ];
        let size = size as usize;
        let mut out = Vec::with_capacity(size + 64);
        while out.len() < size {
            match self.below(20) {
                0..=6 => out.extend_from_slice(&[0; 64]),
                7..=16 => {
                    for _ in 0..4 {
                        let mut r = self.next();
                        for _ in 0..16 {
                            out.push(COMMON[(r & 15) as usize]);
                            r >>= 4;
                        }
                    }
                }
                _ => {
                    for _ in 0..8 {
                        out.extend_from_slice(&self.next().to_le_bytes());
                    }
                }
            }
        }
        out.truncate(size);
        out
    }

    /// Random bytes: gzip cannot shrink them (a model, a compressed archive, a media file).
    fn random(&mut self, size: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(size as usize + 8);
        while (out.len() as u64) < size {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(size as usize);
        out
    }
}

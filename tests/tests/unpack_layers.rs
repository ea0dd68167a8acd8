//! unpack-layers for real: images built byte by byte, unpacked by the real binary, compared
//! with `umoci unpack`, run with runc, read from layouts skopeo and umoci wrote; and every
//! hostile layer class of THREATS.md, each with a sentinel directory beside the bundle that
//! must be exactly as it was afterwards.
//!
//! Needs root (ownership, devices). The peers (umoci, runc, skopeo) are required where used.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use tests::bins::bin;
use tests::busybox::busybox_image;
use tests::image::{bomb_blob, flood_blob, Blob, Compression, ImageBuilder, Layer, MediaTypes};
use tests::prereq::{require_commands, require_root};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A scratch area: `layout/` (the image), `sentinel/` (must never change), `bundle` (the
/// unpack target, inside the scratch dir so `../../sentinel` from the rootfs reaches it).
struct Scratch {
    dir: tempfile::TempDir,
    before: Tree,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let sentinel = dir.path().join("sentinel");
        fs::create_dir(&sentinel).unwrap();
        fs::write(sentinel.join("canary"), "untouched\n").unwrap();
        fs::create_dir(sentinel.join("sub")).unwrap();
        fs::write(sentinel.join("sub/file"), "also untouched\n").unwrap();
        fs::set_permissions(sentinel.join("canary"), fs::Permissions::from_mode(0o640)).unwrap();
        let before = tree(&sentinel, true);
        Scratch { dir, before }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn layout(&self) -> PathBuf {
        self.path().join("layout")
    }
    fn bundle(&self) -> PathBuf {
        self.path().join("bundle")
    }
    fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }
    /// The sentinel's absolute path, as bytes for link targets.
    fn sentinel(&self) -> String {
        self.path().join("sentinel").to_str().unwrap().to_owned()
    }

    /// The sentinel is exactly as it was, and nothing new appeared beside the bundle.
    fn assert_contained(&self) {
        let after = tree(&self.path().join("sentinel"), true);
        assert_eq!(
            self.before, after,
            "the sentinel directory beside the rootfs changed"
        );
        let mut names: Vec<String> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.retain(|n| n != "bundle" && n != "layout" && n != "sentinel");
        assert!(
            names.is_empty(),
            "files appeared beside the bundle: {names:?}"
        );
    }

    fn write_image(&self, image: &tests::image::Image) {
        image.write_oci_layout(&self.layout(), "latest").unwrap();
    }

    fn unpack(&self, extra: &[&str]) -> Output {
        let layout = format!("{}:latest", self.layout().display());
        let out = Command::new(bin("unpack-layers"))
            .args(["--quiet", "--image", &layout])
            .args(extra)
            .arg(self.bundle())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "unpack-layers panicked: {stderr}"
        );
        out
    }

    /// Builds an image of `layers` (gzip), unpacks it, checks the sentinel.
    fn run_layers(&self, layers: Vec<Layer>) -> Output {
        let mut builder = ImageBuilder::new();
        for layer in layers {
            builder = builder.layer(layer, Compression::Gzip);
        }
        self.write_image(&builder.build());
        let out = self.unpack(&[]);
        self.assert_contained();
        out
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a clean failure: exit 1, one line naming `needle`, no bundle left behind.
fn assert_refused(scratch: &Scratch, out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected failure, got {:?}: {err}",
        out.status
    );
    assert!(err.starts_with("unpack-layers: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(needle),
        "error should mention {needle:?}: {err}"
    );
    assert!(
        !scratch.bundle().exists(),
        "a failed unpack left {} behind",
        scratch.bundle().display()
    );
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "unpack-layers failed: {}",
        stderr(out)
    );
}

/// One filesystem object as a user would check it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    content: String,
    link: String,
    rdev: u64,
    mtime: Option<(i64, i64)>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// Other paths sharing the inode (hardlink group), for regular files.
    group: Vec<String>,
}

type Tree = BTreeMap<String, Node>;

/// Every object below `root` (not `root` itself). Directory mtimes are left out when
/// `dir_mtimes` is false: directories a layer implies without an entry are made "now".
fn tree(root: &Path, dir_mtimes: bool) -> Tree {
    let mut out = Tree::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes, dir_mtimes);
    for names in inodes.values() {
        if names.len() > 1 {
            for n in names {
                if let Some(node) = out.get_mut(n) {
                    node.group = names.clone();
                }
            }
        }
    }
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Tree,
    inodes: &mut BTreeMap<u64, Vec<String>>,
    dm: bool,
) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_file() {
            'f'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            '?'
        };
        let content = if kind == 'f' {
            format!("{:x}", Sha256::digest(fs::read(&path).unwrap()))
        } else {
            String::new()
        };
        let link = if kind == 'l' {
            fs::read_link(&path).unwrap().to_string_lossy().into_owned()
        } else {
            String::new()
        };
        if kind == 'f' {
            inodes.entry(meta.ino()).or_default().push(rel.clone());
        }
        out.insert(
            rel.clone(),
            Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: if kind == 'd' { 0 } else { meta.size() },
                content,
                link,
                rdev: meta.rdev(),
                mtime: (kind != 'd' || dm).then(|| (meta.mtime(), meta.mtime_nsec())),
                xattrs: xattrs(&path),
                group: Vec::new(),
            },
        );
        if kind == 'd' {
            walk(root, &path, out, inodes, dm);
        }
    }
}

/// Extended attributes of `path` itself (not following a symlink), via `getfattr`-like calls.
fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: `c` is NUL-terminated; `names` is a writable buffer of the given length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let key = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: as above; `key` is NUL-terminated, `value` writable for its length.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                key.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len >= 0 {
            value.truncate(len as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), value);
        }
    }
    out
}

fn config_json(bundle: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The images: every entry type and whiteout case, and a realistic one

/// Three layers covering every entry type, ownership, modes, xattrs, whiteouts and type
/// changes, to be unpacked identically by umoci and unpack-layers.
/// `second` is the second layer's compression (umoci 0.4 reads no zstd). `for_umoci` leaves
/// out the cases where umoci departs (see the crate README): a layer writing `f/sub/x` over a
/// lower file `f` (umoci fails with "not a directory"; here `f` becomes a directory, as
/// THREATS.md asks), and a v7 directory entry (umoci makes a file of it).
fn every_entry_type(second: Compression, for_umoci: bool) -> ImageBuilder {
    let base = Layer::new()
        .dir("./", 0o755)
        .dir("etc", 0o755)
        .file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            0o644,
        )
        .file(
            "etc/group",
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
            0o644,
        )
        .dir("bin", 0o755)
        .file("bin/suid", "#!/bin/sh\n", 0o4755)
        .file("bin/sgid", "#!/bin/sh\n", 0o2755)
        .owner(0, 50)
        .dir("tmp", 0o1777)
        .dir("home/app", 0o750)
        .owner(1000, 1000)
        .file("home/app/notes", "hello\n", 0o600)
        .owner(1000, 1000)
        .mtime(1_600_000_000)
        .symlink("bin/sh", "suid")
        .symlink("abs", "/etc/passwd")
        .hardlink("bin/suid-link", "bin/suid")
        .char_device("dev/null", 1, 3)
        .mode(0o666)
        .block_device("dev/loop9", 7, 9)
        .mode(0o660)
        .owner(0, 6)
        .fifo("run/fifo")
        .mode(0o620)
        .file("bin/ping", "ping\n", 0o755)
        .xattr(
            "security.capability",
            [
                1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        )
        .file("etc/labelled", "x\n", 0o644)
        .xattr("user.note", "kept")
        .xattr("security.selinux", "system_u:object_r:etc_t:s0")
        .dir("opaque", 0o755)
        .file("opaque/lower", "lower\n", 0o644)
        .dir("opaque/sub", 0o755)
        .file("opaque/sub/deep", "deep\n", 0o644)
        .file("gone", "bye\n", 0o644)
        .dir("gonedir/inner", 0o755)
        .file("gonedir/inner/f", "f\n", 0o644)
        .file("becomes-dir", "file\n", 0o644)
        .dir("becomes-file", 0o755)
        .file("becomes-file/x", "x\n", 0o644)
        .symlink("becomes-dir2", "etc")
        .file("replaced", "old\n", 0o644)
        // Written through a link to a directory that does not exist yet: made inside.
        .symlink("var-run", "/run/../../run")
        .file("var-run/pid", "1\n", 0o644);
    let mut second_layer = Layer::new();
    if !for_umoci {
        // A v7 directory: type NUL, name ending in `/` (umoci makes it a file).
        second_layer = second_layer
            .raw(v7_directory(), "v7dir/", "")
            .file("v7dir/f", "f\n", 0o644);
        second_layer = second_layer.file("becomes-dir/sub/x", "now a directory\n", 0o644);
    }
    let second_layer = second_layer
        .whiteout("gone")
        .whiteout("gonedir")
        // The opaque marker both before and after this layer's own entries in the directory.
        .file("opaque/early", "same layer, before the marker\n", 0o644)
        .opaque("opaque")
        .file("opaque/late", "same layer, after the marker\n", 0o644)
        .file("becomes-file", "now a file\n", 0o640)
        .dir("becomes-dir2", 0o700)
        .symlink("replaced", "etc/group")
        .file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnew:x:1001:1001::/:/bin/sh\n", 0o644)
        .hardlink("etc/passwd-link", "etc/passwd")
        .hardlink("abs-link", "abs");
    let third = Layer::new()
        .whiteout("etc/nothing-here")
        .whiteout("nowhere/at-all")
        .file("etc/hostname", "box\n", 0o644)
        .mtime(1_234_567_890);
    ImageBuilder::new()
        .layer(base, Compression::Gzip)
        .layer(second_layer, second)
        .layer(third, Compression::None)
        .env("PATH=/bin")
        .env("A=1")
        .entrypoint(["/bin/sh", "-c"])
        .cmd(["echo hi"])
        .working_dir("/home/app")
        .user("app")
        .label("org.example", "yes")
}

/// A pre-POSIX header for a directory: type NUL (no directory type existed), mode 0755.
fn v7_directory() -> tar::Header {
    let mut h = tar::Header::new_old();
    h.set_entry_type(tar::EntryType::new(0));
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_500_000_000);
    h.set_size(0);
    h
}

/// About 2000 files in three layers with whiteouts: the "realistic" differential image.
fn realistic() -> ImageBuilder {
    let mut l1 = Layer::new().dir("usr", 0o755).dir("usr/lib", 0o755);
    for d in 0..40 {
        l1 = l1.dir(format!("usr/lib/pkg{d}"), 0o755);
        for f in 0..30 {
            let data = format!("package {d} file {f}\n").repeat(f * 7 + 1);
            l1 = l1
                .file(format!("usr/lib/pkg{d}/f{f}.py"), data, 0o644)
                .mtime(1_650_000_000 + f as u64);
        }
    }
    let mut l2 = Layer::new();
    for d in 0..40 {
        if d % 5 == 0 {
            l2 = l2.whiteout(format!("usr/lib/pkg{d}"));
        } else if d % 7 == 0 {
            l2 = l2.opaque(format!("usr/lib/pkg{d}")).file(
                format!("usr/lib/pkg{d}/new.py"),
                "new\n",
                0o644,
            );
        } else {
            l2 = l2.whiteout(format!("usr/lib/pkg{d}/f3.py"));
        }
    }
    let mut l3 = Layer::new().dir("srv", 0o755);
    for f in 0..800 {
        l3 = l3.file(format!("srv/data{f}"), vec![(f % 251) as u8; f * 13], 0o644);
    }
    ImageBuilder::new()
        .layer(l1, Compression::Gzip)
        .layer(l2, Compression::Gzip)
        .layer(l3, Compression::None)
        .cmd(["/bin/sh"])
}

// ---------------------------------------------------------------------------------------------
// Differential against umoci

/// Unpacks with umoci and with unpack-layers and compares the trees and config processes.
fn differential(test: &str, image: ImageBuilder) {
    if !require_root(test) || !require_commands(test, &["umoci"]) {
        return;
    }
    let s = Scratch::new();
    s.write_image(&image.build());
    let theirs = s.path().join("umoci-bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", s.layout().display()))
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {}", stderr(&out));
    assert_ok(&s.unpack(&[]));

    let (ours_tree, theirs_tree) = (
        tree(&s.rootfs(), false),
        tree(&theirs.join("rootfs"), false),
    );
    let mut differences = Vec::new();
    for path in ours_tree
        .keys()
        .chain(theirs_tree.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (a, b) = (ours_tree.get(path), theirs_tree.get(path));
        if a != b {
            differences.push(format!("{path}:\n  ours   {a:?}\n  umoci  {b:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "trees differ:\n{}",
        differences.join("\n")
    );

    let (ours, theirs) = (config_json(&s.bundle()), config_json(&theirs));
    for key in ["args", "env", "cwd", "user"] {
        assert_eq!(
            ours["process"][key], theirs["process"][key],
            "process.{key}"
        );
    }
}

#[test]
fn same_tree_as_umoci_for_busybox() {
    if !require_commands("same_tree_as_umoci_for_busybox", &["busybox"]) {
        return;
    }
    differential("same_tree_as_umoci_for_busybox", busybox_image());
}

#[test]
fn same_tree_as_umoci_for_every_entry_type() {
    differential(
        "same_tree_as_umoci_for_every_entry_type",
        every_entry_type(Compression::Gzip, true),
    );
}

#[test]
fn same_tree_as_umoci_for_a_realistic_image() {
    differential("same_tree_as_umoci_for_a_realistic_image", realistic());
}

#[test]
fn every_entry_type_lands_as_the_spec_says() {
    if !require_root("every_entry_type_lands_as_the_spec_says") {
        return;
    }
    let s = Scratch::new();
    s.write_image(&every_entry_type(Compression::Zstd, false).build());
    assert_ok(&s.unpack(&[]));
    let t = tree(&s.rootfs(), true);
    let node = |p: &str| t.get(p).unwrap_or_else(|| panic!("{p} missing"));
    assert_eq!(node("bin/suid").mode, 0o4755);
    assert_eq!((node("bin/sgid").mode, node("bin/sgid").gid), (0o2755, 50));
    assert_eq!(node("tmp").mode, 0o1777);
    assert_eq!((node("home/app").uid, node("home/app").mode), (1000, 0o750));
    assert_eq!(node("home/app/notes").mtime, Some((1_600_000_000, 0)));
    assert_eq!(node("bin/sh").link, "suid");
    assert_eq!(node("bin/suid-link").group, ["bin/suid", "bin/suid-link"]);
    // A hardlink to a symlink links the symlink itself.
    assert_eq!(node("abs-link").kind, 'l');
    assert_eq!(node("abs-link").link, "/etc/passwd");
    assert_eq!(
        (node("dev/null").kind, node("dev/null").rdev),
        ('c', libc::makedev(1, 3))
    );
    assert_eq!(
        (
            node("dev/loop9").kind,
            node("dev/loop9").gid,
            node("dev/loop9").mode
        ),
        ('b', 6, 0o660)
    );
    assert_eq!((node("run/fifo").kind, node("run/fifo").mode), ('p', 0o620));
    assert!(node("bin/ping").xattrs.contains_key("security.capability"));
    assert_eq!(
        node("etc/labelled")
            .xattrs
            .get("user.note")
            .map(Vec::as_slice),
        Some(&b"kept"[..])
    );
    assert!(!node("etc/labelled").xattrs.contains_key("security.selinux"));
    // Whiteouts, opaque markers (same-layer entries kept whichever the order), type changes.
    for gone in ["gone", "gonedir", "opaque/lower", "opaque/sub"] {
        assert!(!t.contains_key(gone), "{gone} should be gone");
    }
    for kept in ["opaque/early", "opaque/late", "etc/hostname"] {
        assert!(t.contains_key(kept), "{kept} should exist");
    }
    assert_eq!(node("becomes-dir").kind, 'd');
    assert_eq!(node("becomes-dir/sub/x").kind, 'f');
    assert_eq!(
        (node("becomes-file").kind, node("becomes-file").mode),
        ('f', 0o640)
    );
    assert_eq!(
        (node("becomes-dir2").kind, node("becomes-dir2").mode),
        ('d', 0o700)
    );
    assert_eq!(node("replaced").kind, 'l');
    assert_eq!((node("var-run").kind, node("run/pid").kind), ('l', 'f'));
    assert_eq!((node("v7dir").kind, node("v7dir").mode), ('d', 0o755));
    assert_eq!(
        node("etc/passwd-link").group,
        ["etc/passwd", "etc/passwd-link"]
    );
    // The bundle is private to root: setuid files and devices are not exposed.
    assert_eq!(fs::metadata(s.bundle()).unwrap().mode() & 0o7777, 0o700);
    // config.json: user from the rootfs' own passwd/group, env, args, cwd.
    let c = config_json(&s.bundle());
    assert_eq!(c["process"]["user"]["uid"], 1000);
    assert_eq!(c["process"]["user"]["gid"], 1000);
    assert_eq!(c["process"]["user"]["additionalGids"][0], 10);
    assert_eq!(
        c["process"]["args"],
        serde_json::json!(["/bin/sh", "-c", "echo hi"])
    );
    assert_eq!(c["process"]["cwd"], "/home/app");
    assert_eq!(c["process"]["terminal"], false);
    let env: Vec<String> = serde_json::from_value(c["process"]["env"].clone()).unwrap();
    assert!(env.contains(&"PATH=/bin".to_owned()) && env.contains(&"A=1".to_owned()));
    assert!(env.contains(&"HOME=/home/app".to_owned()), "{env:?}");
    assert_eq!(c["hostname"], "bundle");
    assert_eq!(c["annotations"]["org.example"], "yes");
    assert_eq!(c["root"]["path"], "rootfs");
}

// ---------------------------------------------------------------------------------------------
// Interop: runc runs the bundle; layouts written by skopeo and umoci

#[test]
fn runc_runs_the_bundle() {
    let test = "runc_runs_the_bundle";
    if !require_root(test) || !require_commands(test, &["runc", "busybox"]) {
        return;
    }
    let s = Scratch::new();
    s.write_image(&busybox_image().env("GREETING=from-the-image").build());
    assert_ok(&s.unpack(&[]));
    let state = s.path().join("runc-state");
    let run = |args: &[&str], id: &str| {
        let mut c = config_json(&s.bundle());
        c["process"]["args"] = serde_json::json!(args);
        fs::write(
            s.bundle().join("config.json"),
            serde_json::to_vec(&c).unwrap(),
        )
        .unwrap();
        let out = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(s.bundle())
            .arg(id)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", id])
            .output();
        out
    };
    let id = format!("unpack-layers-test-{}", std::process::id());
    let out = run(&["/bin/true"], &id);
    assert!(out.status.success(), "runc run /bin/true: {}", stderr(&out));
    let out = run(&["/bin/sh", "-c", "env"], &id);
    assert!(out.status.success(), "runc run env: {}", stderr(&out));
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(env.contains("GREETING=from-the-image"), "{env}");
    assert!(env.contains("HOME=/root"), "{env}");
}

#[test]
fn reads_layouts_written_by_skopeo() {
    let test = "reads_layouts_written_by_skopeo";
    if !require_root(test) || !require_commands(test, &["skopeo", "busybox"]) {
        return;
    }
    let s = Scratch::new();
    let source = s.path().join("source");
    busybox_image()
        .build()
        .write_oci_layout(&source, "latest")
        .unwrap();
    for (tag, extra) in [
        ("gzip", vec![]),
        ("zstd", vec!["--dest-compress-format", "zstd"]),
    ] {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet"])
            .args(&extra)
            .arg(format!("oci:{}:latest", source.display()))
            .arg(format!("oci:{}:{tag}", s.layout().display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {}", stderr(&out));
        let bundle = s.path().join(format!("bundle-{tag}"));
        let out = Command::new(bin("unpack-layers"))
            .arg("--image")
            .arg(format!("{}:{tag}", s.layout().display()))
            .arg(&bundle)
            .output()
            .unwrap();
        assert_ok(&out);
        assert!(bundle.join("rootfs/bin/busybox").is_file());
        assert!(
            !bundle.join("rootfs/etc/motd").exists(),
            "the second layer's whiteout"
        );
        fs::remove_dir_all(&bundle).unwrap();
    }
}

#[test]
fn reads_layouts_written_by_umoci() {
    let test = "reads_layouts_written_by_umoci";
    if !require_root(test) || !require_commands(test, &["umoci", "busybox"]) {
        return;
    }
    let s = Scratch::new();
    let layout = s.layout();
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().unwrap();
        assert!(out.status.success(), "umoci {args:?}: {}", stderr(&out));
    };
    let image = format!("{}:made-by-umoci", layout.display());
    let work = s.path().join("umoci-work");
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, work.to_str().unwrap()]);
    tests::busybox::busybox_rootfs(&work.join("rootfs")).unwrap();
    umoci(&["repack", "--image", &image, work.to_str().unwrap()]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.env",
        "MADE_BY=umoci",
        "--config.cmd",
        "/bin/sh",
    ]);
    let out = Command::new(bin("unpack-layers"))
        .args(["--image", &image])
        .arg(s.bundle())
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(s.rootfs().join("bin/busybox").is_file());
    let env = config_json(&s.bundle())["process"]["env"].to_string();
    assert!(env.contains("MADE_BY=umoci"), "{env}");
}

#[test]
fn rootfs_only_fills_an_existing_empty_directory() {
    if !require_root("rootfs_only_fills_an_existing_empty_directory") {
        return;
    }
    let s = Scratch::new();
    s.write_image(
        &ImageBuilder::new()
            .layer(Layer::new().file("hello", "hi\n", 0o644), Compression::Gzip)
            .build(),
    );
    fs::create_dir(s.bundle()).unwrap();
    assert_ok(&s.unpack(&["--rootfs-only"]));
    assert_eq!(
        fs::read_to_string(s.bundle().join("hello")).unwrap(),
        "hi\n"
    );
    assert!(!s.bundle().join("config.json").exists());
    // Not empty any more: refused, and left as it is.
    let out = s.unpack(&["--rootfs-only"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    assert!(s.bundle().join("hello").exists());

    // A failure empties the directory again and leaves it in place.
    fs::remove_file(s.bundle().join("hello")).unwrap();
    s.write_image(
        &ImageBuilder::new()
            .layer(
                Layer::new()
                    .file("first", "1\n", 0o644)
                    .file("../escape", "x", 0o644),
                Compression::Gzip,
            )
            .build(),
    );
    let out = s.unpack(&["--rootfs-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(s.bundle().is_dir());
    assert_eq!(fs::read_dir(s.bundle()).unwrap().count(), 0);
    s.assert_contained();
}

#[test]
fn existing_non_empty_bundle_is_refused() {
    if !require_root("existing_non_empty_bundle_is_refused") {
        return;
    }
    let s = Scratch::new();
    s.write_image(
        &ImageBuilder::new()
            .layer(Layer::new().file("a", "a", 0o644), Compression::Gzip)
            .build(),
    );
    fs::create_dir(s.bundle()).unwrap();
    fs::write(s.bundle().join("keep"), "mine").unwrap();
    let out = s.unpack(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(s.bundle().join("keep")).unwrap(), "mine");
}

// ---------------------------------------------------------------------------------------------
// THREATS.md, layers: each class, single-layer and cross-layer

/// Names that climb above the root are refused, naming the entry.
#[test]
fn traversal_names_are_refused() {
    if !require_root("traversal_names_are_refused") {
        return;
    }
    for name in ["../x", "/../x", "..", "a/../../x", "./../sentinel/canary"] {
        let s = Scratch::new();
        let out = s.run_layers(vec![Layer::new()
            .file("ok", "1", 0o644)
            .file(name, "pwned", 0o644)]);
        assert_refused(&s, &out, &format!("entry '{name}'"));
    }
}

#[test]
fn absolute_names_land_inside_the_rootfs() {
    if !require_root("absolute_names_land_inside_the_rootfs") {
        return;
    }
    let s = Scratch::new();
    let inside = format!("{}/canary", s.sentinel());
    let out = s.run_layers(vec![Layer::new()
        .file("/etc/x", "in", 0o644)
        .file(&inside, "in", 0o644)]);
    assert_ok(&out);
    assert_eq!(fs::read_to_string(s.rootfs().join("etc/x")).unwrap(), "in");
    assert!(s.rootfs().join(inside.trim_start_matches('/')).is_file());
}

/// Layers made for a given sentinel path.
type LayersFor = dyn Fn(&str) -> Vec<Layer>;

/// Writes through symlinks (absolute, relative, chained, CVE-2021-38511) stay inside.
#[test]
fn symlink_escapes_stay_inside() {
    if !require_root("symlink_escapes_stay_inside") {
        return;
    }
    let cases: Vec<Box<LayersFor>> = vec![
        // Absolute link to the sentinel, then a file written through it.
        Box::new(|sentinel| {
            vec![Layer::new()
                .symlink("etc", sentinel)
                .file("etc/canary", "pwned", 0o644)]
        }),
        // Relative link climbing out.
        Box::new(|_| {
            vec![Layer::new()
                .symlink("etc", "../../sentinel")
                .file("etc/canary", "pwned", 0o644)]
        }),
        Box::new(|_| {
            vec![Layer::new().symlink("etc", "../../../../../../../..").file(
                "etc/pwned",
                "x",
                0o644,
            )]
        }),
        // A chain of relative links.
        Box::new(|_| {
            vec![Layer::new()
                .dir("a", 0o755)
                .symlink("a/b", "../c")
                .symlink("c", "../d")
                .symlink("d", "../../sentinel")
                .file("a/b/canary", "pwned", 0o644)]
        }),
        // The tar crate's CVE-2021-38511: inner/up -> .., then a link through it.
        Box::new(|_| {
            vec![Layer::new()
                .dir("inner", 0o755)
                .symlink("inner/up", "..")
                .symlink("inner/up/escape", "../../sentinel")
                .file("inner/up/escape/canary", "pwned", 0o644)]
        }),
        // Cross-layer: the link in one layer, the write through it in the next.
        Box::new(|sentinel| {
            vec![
                Layer::new().symlink("etc", sentinel),
                Layer::new()
                    .file("etc/canary", "pwned", 0o644)
                    .dir("etc/sub", 0o777),
            ]
        }),
        Box::new(|_| {
            vec![
                Layer::new().symlink("etc", "../../sentinel"),
                Layer::new().file("etc/new", "pwned", 0o644),
                Layer::new().hardlink("etc/canary2", "etc/new"),
            ]
        }),
    ];
    for (i, case) in cases.iter().enumerate() {
        let s = Scratch::new();
        let out = s.run_layers(case(&s.sentinel()));
        // Either refused cleanly or applied inside; the sentinel check already ran.
        if !out.status.success() {
            assert_refused(&s, &out, "entry '");
        }
        eprintln!(
            "case {i}: {}",
            if out.status.success() {
                "applied inside".into()
            } else {
                stderr(&out)
            }
        );
    }
}

/// `.`, `./` or `/` as anything but a directory (umoci CVE-2021-29136).
#[test]
fn root_replacement_is_refused() {
    if !require_root("root_replacement_is_refused") {
        return;
    }
    let s0 = Scratch::new();
    let sentinel = s0.sentinel();
    let layers = [
        Layer::new().symlink(".", &sentinel),
        Layer::new().symlink("./", "/"),
        Layer::new().file("/", "not a directory", 0o644),
        Layer::new().hardlink(".", "etc/passwd"),
        Layer::new().fifo("./"),
    ];
    for layer in layers {
        let s = Scratch::new();
        let out = s.run_layers(vec![Layer::new().file("etc/passwd", "x", 0o644), layer]);
        assert_refused(&s, &out, "refusing to replace the rootfs root");
    }
    // The root as a directory entry is fine: its metadata applies.
    let s = Scratch::new();
    let out = s.run_layers(vec![Layer::new().dir(".", 0o711).owner(0, 0)]);
    assert_ok(&out);
    assert_eq!(fs::metadata(s.rootfs()).unwrap().mode() & 0o7777, 0o711);
}

#[test]
fn hardlink_escapes_are_refused_or_stay_inside() {
    if !require_root("hardlink_escapes_are_refused_or_stay_inside") {
        return;
    }
    // Climbing names are refused outright.
    let s = Scratch::new();
    let out = s.run_layers(vec![
        Layer::new().hardlink("stolen", "../../sentinel/canary")
    ]);
    assert_refused(&s, &out, "hardlink target");
    // Absolute, or through a symlinked directory: resolved inside the rootfs, where the
    // target does not exist.
    for layers in [
        |sentinel: &str| vec![Layer::new().hardlink("stolen", format!("{sentinel}/canary"))],
        |sentinel: &str| {
            vec![Layer::new()
                .symlink("d", sentinel)
                .hardlink("stolen", "d/canary")]
        },
        |_: &str| {
            vec![
                Layer::new().symlink("d", "../../sentinel"),
                Layer::new().hardlink("stolen", "d/canary"),
            ]
        },
    ] {
        let s = Scratch::new();
        let out = s.run_layers(layers(&s.sentinel()));
        assert_refused(&s, &out, "does not exist");
    }
    // A hardlink to a directory.
    let s = Scratch::new();
    let out = s.run_layers(vec![Layer::new().dir("dir", 0o755).hardlink("h", "dir")]);
    assert_refused(&s, &out, "refusing a hardlink to the directory 'dir'");
    let s = Scratch::new();
    let out = s.run_layers(vec![Layer::new().hardlink("h", ".")]);
    assert_refused(&s, &out, "hardlink to the directory");
}

/// chmod/chown/utimes/xattrs never go through a symlink (containerd CVE-2021-32760,
/// tar RUSTSEC-2026-0067): an entry over a symlink replaces the link.
#[test]
fn metadata_never_follows_links() {
    if !require_root("metadata_never_follows_links") {
        return;
    }
    let s = Scratch::new();
    let sentinel = s.sentinel();
    let out = s.run_layers(vec![
        Layer::new()
            .symlink("f", format!("{sentinel}/canary"))
            .symlink("d", &sentinel)
            .symlink("rel", "../../sentinel/canary"),
        Layer::new()
            .file("f", "", 0o777)
            .owner(4242, 4242)
            .mtime(1)
            .xattr("user.x", "y")
            .dir("d", 0o777)
            .owner(4242, 4242)
            .mtime(1)
            .symlink("rel", "../../sentinel/canary")
            .owner(4242, 4242)
            .mtime(1)
            .fifo("rel2")
            .mode(0o4777),
        // A symlink entry with ownership and times: set on the link itself.
        Layer::new()
            .symlink("l", format!("{sentinel}/canary"))
            .owner(777, 777)
            .mtime(5),
    ]);
    assert_ok(&out);
    let t = tree(&s.rootfs(), true);
    assert_eq!((t["f"].kind, t["f"].uid, t["f"].mode), ('f', 4242, 0o777));
    assert_eq!((t["d"].kind, t["d"].uid), ('d', 4242));
    assert_eq!(
        (t["l"].kind, t["l"].uid, t["l"].mtime),
        ('l', 777, Some((5, 0)))
    );
}

#[test]
fn malformed_and_escaping_whiteouts() {
    if !require_root("malformed_and_escaping_whiteouts") {
        return;
    }
    for name in [".wh.", "etc/.wh..", "etc/.wh...", ".wh..wh.foo"] {
        let s = Scratch::new();
        let out = s.run_layers(vec![
            Layer::new().file("etc/keep", "k", 0o644),
            Layer::new().file(name, "", 0o644),
        ]);
        assert_refused(&s, &out, "malformed whiteout");
    }
    // Whiteouts and opaque markers under symlinked directories act inside the rootfs only.
    let s = Scratch::new();
    let sentinel = s.sentinel();
    let out = s.run_layers(vec![
        Layer::new()
            .symlink("abs", &sentinel)
            .symlink("rel", "../../sentinel")
            .symlink("up", "..")
            .file("keep", "k", 0o644),
        Layer::new()
            .whiteout("abs/canary")
            .whiteout("rel/canary")
            .whiteout("rel/sub")
            .opaque("abs")
            .opaque("abs/sub")
            .whiteout("up/up/sentinel"),
    ]);
    assert_ok(&out);
    // `rel` -> ../../sentinel resolves to the rootfs root, where `canary` and `sub` do not
    // exist; `up/up/sentinel` is `/sentinel` inside the rootfs.
    assert!(s.rootfs().join("keep").exists());
    // An opaque marker on a symlink to the root empties the rootfs of lower content, and
    // nothing else.
    let s = Scratch::new();
    let out = s.run_layers(vec![
        Layer::new().file("lower", "l", 0o644).symlink("root", "/"),
        Layer::new().file("upper", "u", 0o644).opaque("root"),
    ]);
    assert_ok(&out);
    assert!(!s.rootfs().join("lower").exists());
    assert!(s.rootfs().join("upper").exists());
}

#[test]
fn opaque_marker_keeps_same_layer_entries_in_any_order() {
    if !require_root("opaque_marker_keeps_same_layer_entries_in_any_order") {
        return;
    }
    let s = Scratch::new();
    let out = s.run_layers(vec![
        Layer::new()
            .dir("d", 0o755)
            .file("d/old", "o", 0o644)
            .dir("d/olddir", 0o755)
            .file("d/olddir/x", "x", 0o644),
        Layer::new()
            .file("d/a", "a", 0o644)
            .dir("d/olddir", 0o700)
            .file("d/olddir/new", "n", 0o644)
            .opaque("d")
            .file("d/b", "b", 0o644)
            .whiteout("d/a")
            .file("d/c", "c", 0o644),
    ]);
    assert_ok(&out);
    let names: Vec<String> = tree(&s.rootfs().join("d"), false).into_keys().collect();
    assert_eq!(names, ["a", "b", "c", "olddir", "olddir/new"]);
}

#[test]
fn type_changes_replace_lower_entries() {
    if !require_root("type_changes_replace_lower_entries") {
        return;
    }
    let s = Scratch::new();
    let out = s.run_layers(vec![
        Layer::new()
            .file("file", "f", 0o644)
            .symlink("link", "../../sentinel")
            .dir("dir/sub", 0o755)
            .file("dir/sub/x", "x", 0o644),
        Layer::new()
            .file("file/sub/x", "x", 0o644)
            .dir("link", 0o755)
            .file("link/canary", "inside", 0o644)
            .symlink("dir", "../../sentinel"),
        Layer::new().file("dir/canary", "through the new link", 0o644),
    ]);
    if out.status.success() {
        let t = tree(&s.rootfs(), false);
        assert_eq!(t["file"].kind, 'd');
        assert_eq!(t["link"].kind, 'd');
        assert_eq!(t["dir"].kind, 'l');
    } else {
        assert_refused(&s, &out, "entry 'dir/canary'");
    }
}

/// A PAX size record disagreeing with the ustar size, and PAX headers before a GNU long
/// name (CVE-2025-62518, CVE-2026-33055): one view of each entry, nothing outside.
#[test]
fn pax_and_gnu_header_tricks() {
    if !require_root("pax_and_gnu_header_tricks") {
        return;
    }
    // The data of an entry whose ustar size says 1536 but PAX says 0: a hidden tar entry.
    let hidden = Layer::new()
        .file("../../sentinel/canary", "pwned", 0o644)
        .to_tar();
    let mut hidden_entry = hidden[..1024].to_vec();
    hidden_entry.resize(1536, 0);
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(hidden_entry.len() as u64);
    header.set_mode(0o644);
    let pax = tests::image::pax_record("size", b"0");
    let mut pax_header = tar::Header::new_ustar();
    pax_header.set_entry_type(tar::EntryType::XHeader);
    pax_header.set_size(pax.len() as u64);
    let layer = Layer::new()
        .raw(pax_header, "pax", &pax)
        .raw(header, "smuggler", &hidden_entry)
        .file("after", "a", 0o644);
    let s = Scratch::new();
    let out = s.run_layers(vec![layer]);
    eprintln!("pax size: {:?} {}", out.status, stderr(&out));
    if out.status.success() {
        assert!(s.rootfs().join("smuggler").exists());
    } else {
        assert_refused(&s, &out, "");
    }

    // PAX path, then a GNU long name, then the entry.
    let pax = tests::image::pax_record("path", b"../../sentinel/canary");
    let mut pax_header = tar::Header::new_ustar();
    pax_header.set_entry_type(tar::EntryType::XHeader);
    pax_header.set_size(pax.len() as u64);
    let long = format!("{}/file", "d".repeat(150));
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(1);
    header.set_mode(0o644);
    let layer = Layer::new()
        .raw(pax_header, "pax", &pax)
        .raw(header, &long, "x");
    let s = Scratch::new();
    let out = s.run_layers(vec![layer]);
    eprintln!("pax+gnu: {:?} {}", out.status, stderr(&out));
    if !out.status.success() {
        assert_refused(&s, &out, "entry '");
    }
}

#[test]
fn devices_fifos_and_setuid_are_created_as_root() {
    if !require_root("devices_fifos_and_setuid_are_created_as_root") {
        return;
    }
    let s = Scratch::new();
    let out = s.run_layers(vec![Layer::new()
        .char_device("dev/null", 1, 3)
        .mode(0o666)
        .char_device("dev/tty", 5, 0)
        .mode(0o4666)
        .block_device("dev/sda", 8, 0)
        .mode(0o660)
        .owner(0, 6)
        .fifo("fifo")
        .mode(0o2640)
        .file("suid", "x", 0o4755)
        .owner(1000, 1000)
        .dir("sgid", 0o2775)
        .owner(0, 50)
        .file("sgid/inherits", "x", 0o644)]);
    assert_ok(&out);
    let t = tree(&s.rootfs(), true);
    assert_eq!(
        (t["dev/null"].kind, t["dev/null"].rdev, t["dev/null"].mode),
        ('c', libc::makedev(1, 3), 0o666)
    );
    assert_eq!(t["dev/tty"].mode, 0o4666);
    assert_eq!(
        (t["dev/sda"].kind, t["dev/sda"].gid, t["dev/sda"].mode),
        ('b', 6, 0o660)
    );
    assert_eq!((t["fifo"].kind, t["fifo"].mode), ('p', 0o2640));
    // chown before chmod, or the setuid bit would be lost.
    assert_eq!((t["suid"].mode, t["suid"].uid), (0o4755, 1000));
    assert_eq!((t["sgid"].mode, t["sgid"].gid), (0o2775, 50));
    // The layer said gid 0: the set-group-ID parent must not win.
    assert_eq!(t["sgid/inherits"].gid, 0);
    assert_eq!(fs::metadata(s.bundle()).unwrap().mode() & 0o777, 0o700);
}

// ---------------------------------------------------------------------------------------------
// Bombs and bounds

#[test]
fn gzip_bomb_stops_at_max_size() {
    if !require_root("gzip_bomb_stops_at_max_size") {
        return;
    }
    // 20 GiB of zeros in about 20 MiB of gzip.
    let blob = bomb_blob("zeros", 20 << 30, Compression::Gzip, MediaTypes::Oci);
    let s = Scratch::new();
    s.write_image(&ImageBuilder::new().layer_blob(blob).build());
    let out = s.unpack(&["--max-size", "64M"]);
    assert_refused(&s, &out, "exceeds --max-size 67108864 bytes");
    s.assert_contained();
}

#[test]
fn zstd_bomb_stops_at_the_default_max_ratio() {
    if !require_root("zstd_bomb_stops_at_the_default_max_ratio") {
        return;
    }
    // 40 GiB of zeros in a few KiB: stopped once past 1 GiB, with the default bounds.
    let blob = bomb_blob("zeros", 40 << 30, Compression::Zstd, MediaTypes::Oci);
    s_write_blob_image(blob, |s, out| {
        assert_refused(s, out, "inflates more than --max-ratio 200 times");
    });
}

fn s_write_blob_image(blob: Blob, check: impl Fn(&Scratch, &Output)) {
    let s = Scratch::new();
    s.write_image(&ImageBuilder::new().layer_blob(blob).build());
    let out = s.unpack(&[]);
    check(&s, &out);
    s.assert_contained();
}

#[test]
fn entry_flood_stops_at_max_entries() {
    if !require_root("entry_flood_stops_at_max_entries") {
        return;
    }
    let blob = flood_blob("f", 2_000_000, Compression::Gzip, MediaTypes::Oci);
    let s = Scratch::new();
    s.write_image(&ImageBuilder::new().layer_blob(blob).build());
    let out = s.unpack(&["--max-entries", "5000"]);
    assert_refused(&s, &out, "more than --max-entries 5000");
}

#[test]
fn very_long_names_are_refused() {
    if !require_root("very_long_names_are_refused") {
        return;
    }
    let s = Scratch::new();
    let name = "d/".repeat(2100) + "f";
    let out = s.run_layers(vec![Layer::new().file(&name, "x", 0o644)]);
    assert_refused(&s, &out, "longer than 4096 bytes");
}

// ---------------------------------------------------------------------------------------------
// Broken images: clear errors, nothing left behind

fn good_layer() -> Layer {
    Layer::new().file("hello", "hello\n", 0o644)
}

#[test]
fn diff_id_mismatch_is_an_error() {
    let mut blob = Blob::from_layer(&good_layer(), Compression::Gzip, MediaTypes::Oci);
    blob.diff_id = tests::image::sha256_digest(b"something else");
    s_write_blob_image(blob, |s, out| {
        assert_refused(s, out, "the config's diff_id is")
    });
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut blob = Blob::from_layer(&good_layer(), Compression::Gzip, MediaTypes::Oci);
    let middle = blob.data.len() / 2;
    blob.data[middle] ^= 0xff;
    blob.data[middle + 1] ^= 0xff;
    blob.digest = tests::image::sha256_digest(&blob.data);
    s_write_blob_image(blob, |s, out| assert_refused(s, out, "layer 1 of 1"));
}

#[test]
fn unknown_media_type_is_an_error() {
    let mut blob = Blob::from_layer(&good_layer(), Compression::Gzip, MediaTypes::Oci);
    blob.media_type = "application/x-not-a-layer".to_owned();
    s_write_blob_image(blob, |s, out| {
        assert_refused(
            s,
            out,
            "unsupported layer media type 'application/x-not-a-layer'",
        )
    });
}

#[test]
fn truncated_tampered_and_missing_blobs_are_errors() {
    let image = ImageBuilder::new()
        .layer(good_layer(), Compression::Gzip)
        .build();
    let blob_path = |s: &Scratch| {
        let hex = image.layers[0].digest.trim_start_matches("sha256:");
        s.layout().join("blobs/sha256").join(hex)
    };
    let s = Scratch::new();
    s.write_image(&image);
    let data = fs::read(blob_path(&s)).unwrap();
    fs::write(blob_path(&s), &data[..data.len() - 10]).unwrap();
    assert_refused(&s, &s.unpack(&[]), "its descriptor says");

    let s = Scratch::new();
    s.write_image(&image);
    let mut tampered = data.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    fs::write(blob_path(&s), &tampered).unwrap();
    assert_refused(&s, &s.unpack(&[]), "layer 1 of 1");

    let s = Scratch::new();
    s.write_image(&image);
    fs::remove_file(blob_path(&s)).unwrap();
    assert_refused(&s, &s.unpack(&[]), "cannot open blob");
}

#[test]
fn missing_parents_of_the_bundle_are_made_and_removed_again_on_failure() {
    if !require_root("missing_parents_of_the_bundle_are_made_and_removed_again_on_failure") {
        return;
    }
    let image = ImageBuilder::new()
        .layer(good_layer(), Compression::Gzip)
        .build();
    let s = Scratch::new();
    s.write_image(&image);
    let layout = format!("{}:latest", s.layout().display());
    let unpack = |bundle: &Path| {
        Command::new(bin("unpack-layers"))
            .args(["--quiet", "--image", &layout])
            .arg(bundle)
            .output()
            .unwrap()
    };
    // As umoci unpack does: the parents are made, the bundle itself is 0700.
    let nested = s.path().join("made/by/us/bundle");
    assert_ok(&unpack(&nested));
    assert!(nested.join("config.json").is_file());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&nested), 0o700);
    assert_eq!(mode(&s.path().join("made")), 0o755);

    // A failure takes the parents it made with it, and nothing else.
    let hex = image.layers[0].digest.trim_start_matches("sha256:");
    fs::write(s.layout().join("blobs/sha256").join(hex), b"broken").unwrap();
    let doomed = s.path().join("new/parents/bundle");
    assert!(!unpack(&doomed).status.success());
    assert!(
        !s.path().join("new").exists(),
        "the parents it made were left behind"
    );
    assert!(s.path().join("made/by/us/bundle").is_dir());
}

#[test]
fn missing_tag_lists_the_tags() {
    let s = Scratch::new();
    s.write_image(
        &ImageBuilder::new()
            .layer(good_layer(), Compression::Gzip)
            .build(),
    );
    let out = Command::new(bin("unpack-layers"))
        .arg("--image")
        .arg(format!("{}:nope", s.layout().display()))
        .arg(s.bundle())
        .output()
        .unwrap();
    assert_refused(&s, &out, "no tag 'nope' in index.json (tags: latest)");
}

// ---------------------------------------------------------------------------------------------
// Image indexes and Docker media types

#[test]
fn platform_picks_the_manifest_of_an_index() {
    if !require_root("platform_picks_the_manifest_of_an_index") {
        return;
    }
    let for_arch = |arch: &str, variant: Option<&str>| {
        ImageBuilder::new()
            .layer(Layer::new().file("arch", arch, 0o644), Compression::Gzip)
            .platform("linux", arch, variant)
            .build()
    };
    let index = tests::image::IndexBuilder::new()
        .image(for_arch("amd64", None))
        .image(for_arch("arm64", Some("v8")))
        .image(for_arch("arm", Some("v7")))
        .build();
    let s = Scratch::new();
    index.write_oci_layout(&s.layout(), "latest").unwrap();
    for (platform, want) in [
        ("linux/arm64", "arm64"),
        ("linux/arm/v7", "arm"),
        ("linux/amd64", "amd64"),
    ] {
        assert_ok(&s.unpack(&["--platform", platform]));
        assert_eq!(
            fs::read_to_string(s.rootfs().join("arch")).unwrap(),
            want,
            "{platform}"
        );
        fs::remove_dir_all(s.bundle()).unwrap();
    }
    let out = s.unpack(&["--platform", "linux/s390x"]);
    assert_refused(&s, &out, "no manifest for platform linux/s390x (platforms: linux/amd64, linux/arm64/v8, linux/arm/v7)");
}

#[test]
fn docker_media_types_are_read() {
    if !require_root("docker_media_types_are_read") {
        return;
    }
    let image = ImageBuilder::new()
        .layer(
            Layer::new().file("a", "docker gzip", 0o644),
            Compression::Gzip,
        )
        .layer(
            Layer::new().file("b", "docker tar", 0o644),
            Compression::None,
        )
        .media_types(MediaTypes::Docker)
        .cmd(["/b"])
        .build();
    let s = Scratch::new();
    s.write_image(&image);
    assert_ok(&s.unpack(&[]));
    assert_eq!(
        fs::read_to_string(s.rootfs().join("a")).unwrap(),
        "docker gzip"
    );
    assert_eq!(
        fs::read_to_string(s.rootfs().join("b")).unwrap(),
        "docker tar"
    );
    assert_eq!(config_json(&s.bundle())["process"]["args"][0], "/b");
}

#[test]
fn a_signal_mid_unpack_removes_the_bundle() {
    if !require_root("a_signal_mid_unpack_removes_the_bundle") {
        return;
    }
    let mut layer = Layer::new();
    for d in 0..100 {
        for f in 0..200 {
            layer = layer.file(format!("d{d}/f{f}"), "x", 0o644);
        }
    }
    let s = Scratch::new();
    s.write_image(&ImageBuilder::new().layer(layer, Compression::Gzip).build());
    let child = Command::new(bin("unpack-layers"))
        .args(["--quiet", "--image"])
        .arg(format!("{}:latest", s.layout().display()))
        .arg(s.bundle())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is writing, then interrupt it.
    let started = std::time::Instant::now();
    while !s.rootfs().join("d1").exists() && started.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        eprintln!(
            "SKIP a_signal_mid_unpack_removes_the_bundle: the unpack finished before the signal"
        );
        return;
    }
    assert_refused(&s, &out, "interrupted by a signal");
    s.assert_contained();
}

#[test]
fn rootfs_only_into_a_btrfs_subvolume() {
    let test = "rootfs_only_into_a_btrfs_subvolume";
    if !require_root(test) || !require_commands(test, &["mkfs.btrfs", "btrfs", "busybox"]) {
        return;
    }
    let fs = tests::btrfs::LoopBtrfs::new(256);
    let subvolume = fs.path().join("busybox");
    let out = Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(&subvolume)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "btrfs subvolume create: {}",
        stderr(&out)
    );
    let s = Scratch::new();
    s.write_image(&busybox_image().build());
    let out = Command::new(bin("unpack-layers"))
        .args(["--quiet", "--rootfs-only", "--image"])
        .arg(format!("{}:latest", s.layout().display()))
        .arg(&subvolume)
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(subvolume.join("bin/busybox").is_file());
    assert!(!subvolume.join("etc/motd").exists());
    assert!(!subvolume.join("config.json").exists());
    // Still a subvolume: btrfs-progs sees it as one.
    let out = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(&subvolume)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn opaque_root_in_successive_layers() {
    if !require_root("opaque_root_in_successive_layers") {
        return;
    }
    let s = Scratch::new();
    let out = s.run_layers(vec![
        Layer::new().file("a", "a", 0o644),
        Layer::new().file("b", "b", 0o644).raw_opaque_root(),
        Layer::new().raw_opaque_root().file("c", "c", 0o644),
    ]);
    assert_ok(&out);
    let names: Vec<String> = tree(&s.rootfs(), false).into_keys().collect();
    assert_eq!(names, ["c"]);
}

/// An opaque marker for the root directory itself: `.wh..wh..opq` at the top.
trait OpaqueRoot {
    fn raw_opaque_root(self) -> Self;
}

impl OpaqueRoot for Layer {
    fn raw_opaque_root(self) -> Self {
        self.file(".wh..wh..opq", "", 0o644)
    }
}

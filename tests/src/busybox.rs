//! A small real image made from Debian's static busybox (package `busybox-static`):
//! `/bin/busybox`, a symlink for each applet it has (`busybox --list-full`), `/etc/passwd`,
//! `/etc/group`, `/tmp` (1777), `/root` (0700) and the usual empty directories.
//!
//! Two layers, so that unpacking has real work to do: the second adds `/etc/issue` and
//! deletes `/etc/motd` with a whiteout. The config runs `/bin/sh`.
//! [`busybox_rootfs`] writes the same final tree straight into a directory.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::{Compression, ImageBuilder, Layer};

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The file the second layer deletes with a whiteout.
pub const DELETED_BY_SECOND_LAYER: &str = "etc/motd";

/// The file the second layer adds.
pub const ADDED_BY_SECOND_LAYER: &str = "etc/issue";

/// The `PATH` the image's config sets.
pub const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
                      nobody:x:65534:65534:nobody:/home:/bin/false\n";
const GROUP: &str = "root:x:0:\ndaemon:x:1:\nnobody:x:65534:\n";

/// One thing in the image's tree. Paths are relative to the root.
enum Item {
    Dir(&'static str, u32),
    File(String, Vec<u8>, u32),
    Symlink(String, &'static str),
}

/// The busybox image (two gzip layers, Cmd `["/bin/sh"]`, PATH set), ready to `.build()`;
/// a test may still change its config or platform first. Panics when `/bin/busybox` is
/// missing (install `busybox-static`; check with `prereq::require_commands(.., &["busybox"])`).
pub fn busybox_image() -> ImageBuilder {
    ImageBuilder::new()
        .layer(to_layer(base_items()), Compression::Gzip)
        .layer(
            to_layer(second_items()).whiteout(DELETED_BY_SECOND_LAYER),
            Compression::Gzip,
        )
        .env(PATH)
        .cmd(["/bin/sh"])
}

/// Writes the final tree of [`busybox_image`] (both layers applied) into `dest`, which must
/// exist. Modes are set explicitly, whatever the umask; ownership is the caller's (root in
/// the tests that chroot into it).
pub fn busybox_rootfs(dest: &Path) -> std::io::Result<()> {
    let items = base_items().into_iter().chain(second_items());
    for item in items {
        match item {
            Item::File(path, _, _) if path == DELETED_BY_SECOND_LAYER => {}
            Item::Dir(path, mode) => {
                std::fs::create_dir_all(dest.join(path))?;
                std::fs::set_permissions(dest.join(path), std::fs::Permissions::from_mode(mode))?;
            }
            Item::File(path, data, mode) => {
                std::fs::write(dest.join(&path), data)?;
                std::fs::set_permissions(dest.join(&path), std::fs::Permissions::from_mode(mode))?;
            }
            Item::Symlink(path, target) => symlink(target, dest.join(path))?,
        }
    }
    Ok(())
}

/// Everything the first layer holds.
fn base_items() -> Vec<Item> {
    let dirs = [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("home", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("var", 0o755),
        ("run", 0o755),
    ];
    let mut items: Vec<Item> = dirs.into_iter().map(|(p, m)| Item::Dir(p, m)).collect();
    items.push(Item::File("bin/busybox".into(), read_busybox(), 0o755));
    let applets = applet_paths().into_iter().filter(|p| p != "bin/busybox");
    items.extend(applets.map(|path| Item::Symlink(path, BUSYBOX)));
    items.push(Item::File("etc/passwd".into(), PASSWD.into(), 0o644));
    items.push(Item::File("etc/group".into(), GROUP.into(), 0o644));
    let motd = "This file is deleted by the image's second layer.\n";
    items.push(Item::File(
        DELETED_BY_SECOND_LAYER.into(),
        motd.into(),
        0o644,
    ));
    items
}

/// What the second layer adds (its whiteout is added in [`busybox_image`]).
fn second_items() -> Vec<Item> {
    let issue = "busybox test image (containers by hand)\n";
    vec![Item::File(
        ADDED_BY_SECOND_LAYER.into(),
        issue.into(),
        0o644,
    )]
}

fn to_layer(items: Vec<Item>) -> Layer {
    items
        .into_iter()
        .fold(Layer::new(), |layer, item| match item {
            Item::Dir(path, mode) => layer.dir(path, mode),
            Item::File(path, data, mode) => layer.file(path, data, mode),
            Item::Symlink(path, target) => layer.symlink(path, target),
        })
}

fn read_busybox() -> Vec<u8> {
    std::fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("cannot read {BUSYBOX}: {e} (install the busybox-static package)")
    })
}

/// `busybox --list-full`: each applet's install path, e.g. `bin/sh`, `usr/bin/awk`.
fn applet_paths() -> Vec<String> {
    let output = Command::new(PathBuf::from(BUSYBOX))
        .arg("--list-full")
        .output();
    let output = output.unwrap_or_else(|e| panic!("cannot run {BUSYBOX} --list-full: {e}"));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim().to_string())
        // `linuxrc` (busybox as an initrd's init) is the one applet outside a bin directory.
        .filter(|line| line.contains('/'))
        .collect()
}

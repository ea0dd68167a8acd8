//! btrfs-snap against a real, loop-mounted btrfs, checked with btrfs-progs: each
//! subcommand, the copy-on-write semantics a container engine relies on, interop in both
//! directions, and every error a user can run into.
//!
//! Needs root, `mkfs.btrfs`/`losetup` for the fixture and `btrfs` as the peer. Build the
//! binaries first: `cargo build --workspace --bins`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tests::btrfs::LoopBtrfs;
use tests::{bins, mountns, prereq};

/// Root, the fixture's programs and btrfs-progs; `false` (skip) without them.
fn ready(test: &str) -> bool {
    prereq::require_root(test)
        && prereq::require_commands(test, LoopBtrfs::COMMANDS)
        && prereq::require_commands(test, &["btrfs"])
}

/// A command's arguments, strings and paths alike: `args!["snapshot", "-r", src, dest]`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        [$(OsStr::new(&$arg)),*]
    };
}

fn snap(args: &[impl AsRef<OsStr>]) -> Output {
    Command::new(bins::bin("btrfs-snap"))
        .args(args)
        .output()
        .expect("run btrfs-snap")
}

/// `btrfs-snap create PATH`, which must succeed.
fn create(path: &Path) {
    ok(snap(&args!["create", path]));
}

/// `btrfs-snap snapshot SOURCE DEST`, which must succeed.
fn snapshot(source: &Path, dest: &Path) {
    ok(snap(&args!["snapshot", source, dest]));
}

/// `btrfs-snap snapshot -r SOURCE DEST`, which must succeed.
fn snapshot_readonly(source: &Path, dest: &Path) {
    ok(snap(&args!["snapshot", "-r", source, dest]));
}

fn progs(args: &[impl AsRef<OsStr>]) -> Output {
    Command::new("btrfs")
        .args(args)
        .output()
        .expect("run btrfs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts a one-line failure with exit status 1 and returns the message.
#[track_caller]
fn fails(out: Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.starts_with("btrfs-snap: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn is_subvolume(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.ino() == 256)
}

/// `btrfs subvolume show` output (theirs or ours) as field -> value, plus the snapshot list.
fn show_fields(output: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut snapshots = Vec::new();
    let mut in_snapshots = false;
    for line in output.lines().skip(1) {
        let line = line.trim();
        if in_snapshots {
            snapshots.push(line.to_owned());
        } else if let Some((key, value)) = line.split_once(':') {
            in_snapshots = key == "Snapshot(s)";
            fields.insert(key.to_owned(), value.trim().to_owned());
        }
    }
    snapshots.sort();
    fields.insert("Snapshot(s)".into(), snapshots.join(","));
    fields
}

/// The paths `btrfs subvolume list [-o] PATH` prints (relative to the top level).
fn progs_list(args: &[impl AsRef<OsStr>]) -> Vec<String> {
    let out = ok(progs(args));
    let mut paths: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once(" path ").map(|(_, p)| p.to_owned()))
        .collect();
    paths.sort();
    paths
}

fn lines(out: &str) -> Vec<String> {
    out.lines().map(str::to_owned).collect()
}

#[test]
fn create_makes_a_subvolume_btrfs_progs_sees() {
    if !ready("create_makes_a_subvolume_btrfs_progs_sees") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let sub = fs.path().join("images");
    let out = ok(snap(&args!["create", sub]));
    assert_eq!(out, "", "create prints nothing on success");
    assert!(is_subvolume(&sub));
    assert!(
        fs::read_dir(&sub).expect("readdir").next().is_none(),
        "a new subvolume is empty"
    );
    let shown = ok(progs(&args!["subvolume", "show", sub]));
    assert!(shown.contains("Name: \t\t\timages"), "{shown}");
    // and it is usable as a directory at once
    fs::write(sub.join("f"), b"x").expect("write into the new subvolume");
}

#[test]
fn a_snapshot_and_its_source_are_independent_both_ways() {
    if !ready("a_snapshot_and_its_source_are_independent_both_ways") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let src = fs.path().join("alpine");
    let dst = fs.path().join("container");
    create(&src);
    fs::create_dir(src.join("etc")).expect("mkdir");
    fs::write(src.join("etc/hostname"), b"alpine\n").expect("write");

    snapshot(&src, &dst);
    assert!(is_subvolume(&dst));
    assert_eq!(
        fs::read(dst.join("etc/hostname")).expect("read"),
        b"alpine\n"
    );

    fs::write(src.join("only-in-source"), b"1").expect("write in source");
    fs::write(dst.join("etc/hostname"), b"container\n").expect("write in snapshot");
    fs::write(dst.join("only-in-snapshot"), b"2").expect("write in snapshot");

    assert!(
        !dst.join("only-in-source").exists(),
        "source write leaked into the snapshot"
    );
    assert!(
        !src.join("only-in-snapshot").exists(),
        "snapshot write leaked into the source"
    );
    assert_eq!(
        fs::read(src.join("etc/hostname")).expect("read"),
        b"alpine\n"
    );
    assert_eq!(
        fs::read(dst.join("etc/hostname")).expect("read"),
        b"container\n"
    );

    let info = show_fields(&ok(snap(&args!["show", dst])));
    let src_info = show_fields(&ok(snap(&args!["show", src])));
    assert_eq!(info["Parent UUID"], src_info["UUID"]);
    assert_eq!(info["Flags"], "-");
}

#[test]
fn a_readonly_snapshot_refuses_writes() {
    if !ready("a_readonly_snapshot_refuses_writes") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let src = fs.path().join("layer");
    let ro = fs.path().join("layer-ro");
    create(&src);
    fs::write(src.join("f"), b"data").expect("write");
    snapshot_readonly(&src, &ro);

    let erofs = |result: std::io::Result<()>| {
        let err = result.expect_err("a read-only snapshot took a write");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    };
    erofs(fs::write(ro.join("f"), b"changed"));
    erofs(fs::write(ro.join("new"), b"x"));
    erofs(fs::create_dir(ro.join("dir")));
    erofs(fs::remove_file(ro.join("f")));
    assert_eq!(fs::read(ro.join("f")).expect("read"), b"data");

    let ours = show_fields(&ok(snap(&args!["show", ro])));
    assert_eq!(ours["Flags"], "readonly");
    let prop = ok(progs(&args!["property", "get", "-ts", ro, "ro"]));
    assert_eq!(prop.trim(), "ro=true");
    // The long option spelling works too.
    ok(snap(&args![
        "snapshot",
        "--readonly",
        src,
        fs.path().join("ro2")
    ]));
    assert_eq!(
        ok(progs(&args![
            "property",
            "get",
            "-ts",
            fs.path().join("ro2"),
            "ro"
        ]))
        .trim(),
        "ro=true"
    );
}

#[test]
fn delete_takes_several_paths_full_subvolumes_and_readonly_snapshots() {
    if !ready("delete_takes_several_paths_full_subvolumes_and_readonly_snapshots") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let full = fs.path().join("full");
    let ro = fs.path().join("ro");
    let other = fs.path().join("other");
    create(&full);
    fs::create_dir_all(full.join("a/b/c")).expect("mkdir");
    for i in 0..50 {
        fs::write(full.join(format!("a/b/c/f{i}")), vec![7u8; 10_000]).expect("write");
    }
    snapshot_readonly(&full, &ro);
    create(&other);

    let missing = fs.path().join("missing");
    let err = fails(snap(&args!["delete", full, missing, ro, other]));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("'{}' does not exist", missing.display())),
        "{err}"
    );
    for gone in [&full, &ro, &other] {
        assert!(!gone.exists(), "{} survived the delete", gone.display());
    }
    assert!(progs_list(&args!["subvolume", "list", fs.path()]).is_empty());
}

#[test]
fn delete_refuses_a_subvolume_holding_others() {
    if !ready("delete_refuses_a_subvolume_holding_others") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let outer = fs.path().join("outer");
    create(&outer);
    create(&outer.join("inner"));
    let err = fails(snap(&args!["delete", outer]));
    assert!(err.contains("contains other subvolumes"), "{err}");
    assert!(is_subvolume(&outer) && is_subvolume(&outer.join("inner")));
    // Children first, as `btrfs-snap list` orders them in reverse, works.
    ok(snap(&args!["delete", outer.join("inner"), outer]));
    assert!(!outer.exists());
}

#[test]
fn list_agrees_with_btrfs_progs() {
    if !ready("list_agrees_with_btrfs_progs") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let top = fs.path();
    create(&top.join("a"));
    fs::create_dir_all(top.join("a/dir/deeper")).expect("mkdir");
    create(&top.join("a/x"));
    create(&top.join("a/dir/deeper/y"));
    ok(progs(&args!["subvolume", "create", top.join("a/x/z")]));
    ok(progs(&args![
        "subvolume",
        "snapshot",
        "-r",
        top.join("a"),
        top.join("snap")
    ]));
    fs::create_dir(top.join("plain")).expect("mkdir");

    // Everything, from the top level: the same set as `btrfs subvolume list`.
    let ours = lines(&ok(snap(&args!["list", top])));
    let theirs: Vec<String> = progs_list(&args!["subvolume", "list", top])
        .iter()
        .map(|p| top.join(p).display().to_string())
        .collect();
    assert_eq!(ours, theirs);

    // Below a subvolume: itself, then what `list -o` gives for its direct children, plus
    // their children (ours is recursive).
    let ours = lines(&ok(snap(&args!["list", top.join("a")])));
    let direct: Vec<String> = progs_list(&args!["subvolume", "list", "-o", top.join("a")])
        .iter()
        .map(|p| top.join(p).display().to_string())
        .collect();
    assert_eq!(direct.len(), 2, "{direct:?}");
    for path in &direct {
        assert!(ours.contains(path), "{path} missing from {ours:?}");
    }
    assert_eq!(ours[0], top.join("a").display().to_string());
    assert!(ours.contains(&top.join("a/x/z").display().to_string()));
    assert_eq!(ours.len(), 4, "{ours:?}");

    // Below a plain directory inside a subvolume: only what is under it.
    let ours = lines(&ok(snap(&args!["list", top.join("a/dir")])));
    assert_eq!(ours, [top.join("a/dir/deeper/y").display().to_string()]);
    assert!(ok(snap(&args!["list", top.join("plain")])).is_empty());

    // Without PATH: relative to the current directory, itself included as `.`.
    let out = Command::new(bins::bin("btrfs-snap"))
        .arg("list")
        .current_dir(top.join("a"))
        .output()
        .expect("run");
    assert_eq!(lines(&ok(out)), [".", "dir/deeper/y", "x", "x/z"]);
}

#[test]
fn show_agrees_with_btrfs_progs_field_by_field() {
    if !ready("show_agrees_with_btrfs_progs_field_by_field") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let top = fs.path();
    create(&top.join("base"));
    fs::write(top.join("base/f"), b"x").expect("write");
    snapshot(&top.join("base"), &top.join("rw"));
    snapshot_readonly(&top.join("base"), &top.join("ro"));
    fs::create_dir(top.join("base/nested-dir")).expect("mkdir");
    ok(progs(&args![
        "subvolume",
        "create",
        top.join("base/nested-dir/inner")
    ]));
    // Let the generation numbers settle, as they would between a user's commands.
    ok(progs(&args!["filesystem", "sync", top]));

    for path in ["base", "rw", "ro", "base/nested-dir/inner", ""] {
        let path = top.join(path);
        let ours = show_fields(&ok(snap(&args!["show", path])));
        let theirs = show_fields(&ok(progs(&args!["subvolume", "show", path])));
        for field in [
            "Name",
            "UUID",
            "Parent UUID",
            "Received UUID",
            "Creation time",
            "Subvolume ID",
            "Generation",
            "Gen at creation",
            "Parent ID",
            "Top level ID",
            "Flags",
            "Send transid",
            "Receive transid",
            "Snapshot(s)",
        ] {
            assert_eq!(
                ours.get(field),
                theirs.get(field),
                "{field} of {} differs",
                path.display()
            );
        }
        // Not compared: btrfs-progs 6.2 prints the change time as "Send time" for a
        // subvolume never sent; btrfs-snap prints the root item's send time ("-").
    }
}

#[test]
fn btrfs_progs_sees_and_deletes_what_btrfs_snap_makes() {
    if !ready("btrfs_progs_sees_and_deletes_what_btrfs_snap_makes") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let top = fs.path();
    create(&top.join("s"));
    fs::write(top.join("s/file"), b"content").expect("write");
    snapshot(&top.join("s"), &top.join("w"));
    snapshot_readonly(&top.join("s"), &top.join("r"));
    assert_eq!(
        progs_list(&args!["subvolume", "list", top]),
        ["r", "s", "w"]
    );
    // progs snapshots ours
    ok(progs(&args![
        "subvolume",
        "snapshot",
        top.join("r"),
        top.join("from-progs")
    ]));
    assert_eq!(
        fs::read(top.join("from-progs/file")).expect("read"),
        b"content"
    );
    ok(progs(&args![
        "subvolume",
        "delete",
        top.join("w"),
        top.join("r"),
        top.join("s")
    ]));
    assert_eq!(progs_list(&args!["subvolume", "list", top]), ["from-progs"]);
}

#[test]
fn btrfs_snap_works_on_what_btrfs_progs_makes() {
    if !ready("btrfs_snap_works_on_what_btrfs_progs_makes") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let top = fs.path();
    ok(progs(&args!["subvolume", "create", top.join("p")]));
    fs::write(top.join("p/file"), b"content").expect("write");
    ok(progs(&args![
        "subvolume",
        "snapshot",
        "-r",
        top.join("p"),
        top.join("p-ro")
    ]));
    snapshot(&top.join("p"), &top.join("mine"));
    snapshot_readonly(&top.join("p-ro"), &top.join("mine-ro"));
    assert_eq!(
        fs::read(top.join("mine-ro/file")).expect("read"),
        b"content"
    );
    assert_eq!(
        lines(&ok(snap(&args!["list", top]))),
        ["mine", "mine-ro", "p", "p-ro"].map(|p| top.join(p).display().to_string())
    );
    ok(snap(&args![
        "delete",
        top.join("p-ro"),
        top.join("p"),
        top.join("mine"),
        top.join("mine-ro")
    ]));
    assert!(progs_list(&args!["subvolume", "list", top]).is_empty());
}

#[test]
fn errors_on_btrfs_name_the_path_and_the_cause() {
    if !ready("errors_on_btrfs_name_the_path_and_the_cause") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let top = fs.path();
    create(&top.join("sub"));
    fs::create_dir(top.join("plain")).expect("mkdir");
    fs::write(top.join("file"), b"").expect("write");
    snapshot_readonly(&top.join("sub"), &top.join("ro"));

    let cases: Vec<(Vec<PathBuf>, &str)> = vec![
        (vec!["create".into(), top.join("sub")], "already exists"),
        (vec!["create".into(), top.join("plain")], "already exists"),
        (vec!["create".into(), top.join("no/such")], "does not exist"),
        (
            vec!["create".into(), top.join("file/x")],
            "is not a directory",
        ),
        (
            vec!["create".into(), top.join("x".repeat(256))],
            "longer than 255 bytes",
        ),
        (vec!["create".into(), top.join("ro/inside")], "is read-only"),
        (
            vec!["snapshot".into(), top.join("plain"), top.join("s1")],
            "is a plain directory, not a btrfs subvolume",
        ),
        (
            vec!["snapshot".into(), top.join("missing"), top.join("s1")],
            "does not exist",
        ),
        (
            vec!["snapshot".into(), top.join("sub"), top.join("plain")],
            "already exists",
        ),
        (
            vec!["snapshot".into(), top.join("sub"), top.join("no/such/s1")],
            "does not exist",
        ),
        (
            vec![
                "snapshot".into(),
                top.join("sub"),
                top.join("y".repeat(300)),
            ],
            "longer than 255 bytes",
        ),
        (
            vec!["snapshot".into(), top.join("sub"), top.join("..")],
            "names no new entry",
        ),
        (
            vec!["delete".into(), top.join("plain")],
            "is a plain directory, not a btrfs subvolume",
        ),
        (
            vec!["delete".into(), top.to_path_buf()],
            "top-level subvolume",
        ),
        (
            vec!["delete".into(), top.join("file")],
            "is not a directory",
        ),
        (
            vec!["show".into(), top.join("plain")],
            "is a plain directory, not a btrfs subvolume",
        ),
        (vec!["list".into(), top.join("missing")], "does not exist"),
    ];
    for (args, expected) in cases {
        let err = fails(snap(&args));
        assert!(
            err.contains(expected),
            "{args:?}: expected '{expected}' in: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let named = args[1].display().to_string();
        assert!(
            err.contains(&named),
            "{args:?}: the error should name {named}: {err}"
        );
    }
    // The default subvolume (what a mount without subvol= shows) cannot go.
    create(&top.join("default"));
    ok(progs(&args![
        "subvolume",
        "set-default",
        top.join("default")
    ]));
    let err = fails(snap(&args!["delete", top.join("default")]));
    assert!(err.contains("default subvolume"), "{err}");
    ok(progs(&args!["subvolume", "set-default", "5", top]));
    ok(snap(&args!["delete", top.join("default")]));
    // Nothing was made by the failures.
    assert_eq!(progs_list(&args!["subvolume", "list", top]), ["ro", "sub"]);
    assert!(!top.join("s1").exists());
}

#[test]
fn a_snapshot_cannot_cross_filesystems() {
    if !ready("a_snapshot_cannot_cross_filesystems") {
        return;
    }
    let one = LoopBtrfs::new(128);
    let two = LoopBtrfs::new(128);
    create(&one.path().join("sub"));
    let err = fails(snap(&args![
        "snapshot",
        one.path().join("sub"),
        two.path().join("copy")
    ]));
    assert!(err.contains("different filesystem"), "{err}");
    assert!(!two.path().join("copy").exists());
}

#[test]
fn paths_off_btrfs_name_their_filesystem_and_the_loop_recipe() {
    if !ready("paths_off_btrfs_name_their_filesystem_and_the_loop_recipe") {
        return;
    }
    // A tmpfs, mounted in a private mount namespace so the host never sees it.
    let dir = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "mount -t tmpfs none '{0}' && mkdir '{0}/d' && exec '{1}' create '{0}/d/sub'",
        dir.path().display(),
        bins::bin("btrfs-snap").display()
    );
    let out = mountns::private_command("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run");
    let err = fails(out);
    assert!(err.contains("is on tmpfs, not btrfs"), "{err}");
    assert!(
        err.contains("mkfs.btrfs") && err.contains("mount -o loop"),
        "{err}"
    );

    // The root filesystem, said as such (unless it is itself btrfs).
    let root_is_btrfs = nix::sys::statfs::statfs("/")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC);
    if !root_is_btrfs {
        for args in [
            vec!["show", "/"],
            vec!["list", "/"],
            vec!["delete", "/usr"],
            vec!["snapshot", "/usr", "/nonexistent-snapshot"],
        ] {
            let err = fails(snap(&args));
            assert!(err.contains("(the root filesystem), not btrfs"), "{err}");
        }
        assert!(!Path::new("/nonexistent-snapshot").exists());
    }
    // And the destination side: a subvolume cannot be snapshot onto another filesystem.
    let fs = LoopBtrfs::new(128);
    create(&fs.path().join("sub"));
    let outside = tempfile::tempdir().expect("tempdir");
    if !nix::sys::statfs::statfs(outside.path())
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
    {
        let err = fails(snap(&args![
            "snapshot",
            fs.path().join("sub"),
            outside.path().join("x")
        ]));
        assert!(err.contains("not btrfs"), "{err}");
    }
}

#[test]
fn unprivileged_users_can_show_and_list_and_are_told_what_needs_root() {
    if !ready("unprivileged_users_can_show_and_list_and_are_told_what_needs_root")
        || !prereq::require_commands(
            "unprivileged_users_can_show_and_list_and_are_told_what_needs_root",
            &["setpriv"],
        )
    {
        return;
    }
    let fs = LoopBtrfs::new(128);
    // The fixture's directory is private to root; let nobody reach the mount point.
    let parent = fs.path().parent().expect("parent");
    let mode = |p: &Path, m| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
    };
    mode(parent, 0o755);
    mode(fs.path(), 0o755);
    create(&fs.path().join("rootsub"));
    // The binary may live where nobody cannot read it: copy it next to the filesystem.
    let bin = parent.join("btrfs-snap");
    fs::copy(bins::bin("btrfs-snap"), &bin).expect("copy binary");
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(args)
            .current_dir(fs.path())
            .output()
            .expect("run setpriv")
    };
    let err = fails(as_nobody(&["delete", "rootsub"]));
    assert!(err.contains("needs root (CAP_SYS_ADMIN)"), "{err}");
    assert!(err.contains("EPERM"), "{err}");
    // list without privilege walks down with GET_SUBVOL_ROOTREF / INO_LOOKUP_USER and
    // finds what root's tree search finds, where the user can search the directories.
    fs::create_dir_all(fs.path().join("rootsub/dir/deep")).expect("mkdir");
    create(&fs.path().join("rootsub/dir/deep/nested"));
    create(&fs.path().join("rootsub/inner"));
    create(&fs.path().join("rootsub/inner/innermost"));
    snapshot_readonly(&fs.path().join("rootsub"), &fs.path().join("ro"));
    for dir in [".", "rootsub", "rootsub/dir"] {
        let theirs = ok(as_nobody(&["list", dir]));
        let out = Command::new(bins::bin("btrfs-snap"))
            .args(["list", dir])
            .current_dir(fs.path())
            .output()
            .expect("run");
        assert_eq!(theirs, ok(out), "list {dir} as nobody and as root");
    }
    let err = fails(as_nobody(&["create", "mine"]));
    assert!(err.contains("EACCES"), "{err}");
    // With user_subvol_rm_allowed, users delete their own subvolumes (by name through
    // the parent: SNAP_DESTROY_V2 through the subvolume's own fd is root's way), and are
    // told what they lack for the others.
    ok(Command::new("mount")
        .args(["-o", "remount,user_subvol_rm_allowed"])
        .arg(fs.path())
        .output()
        .expect("remount"));
    let open = fs.path().join("open");
    fs::create_dir(&open).expect("mkdir");
    mode(&open, 0o777);
    create(&open.join("roots"));
    ok(as_nobody(&["create", "open/mine"]));
    let err = fails(as_nobody(&["delete", "open/mine", "open/roots"]));
    assert!(
        !open.join("mine").exists(),
        "the user's own subvolume was not deleted"
    );
    assert!(is_subvolume(&open.join("roots")));
    assert!(
        err.contains("'open/roots'") && err.contains("as rmdir would"),
        "{err}"
    );
    // show needs no privilege (GET_SUBVOL_INFO), only the snapshot list does.
    let shown = ok(as_nobody(&["show", "rootsub"]));
    assert!(shown.contains("Name: \t\t\trootsub"), "{shown}");
    assert!(is_subvolume(&fs.path().join("rootsub")));
}

#[test]
fn explain_shows_each_ioctl_and_the_btrfs_command() {
    if !ready("explain_shows_each_ioctl_and_the_btrfs_command") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let sub = fs.path().join("sub");
    let snapshot = fs.path().join("snap");
    let out = snap(&args!["--explain", "create", sub]);
    let err = text(&out.stderr);
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "explanations go to stderr");
    assert!(err.contains("BTRFS_IOC_SUBVOL_CREATE"), "{err}");
    assert!(
        err.contains(&format!("# like: btrfs subvolume create {}", sub.display())),
        "{err}"
    );

    let err = text(&snap(&args!["snapshot", "--explain", "-r", sub, snapshot]).stderr);
    assert!(
        err.contains("BTRFS_IOC_SNAP_CREATE_V2") && err.contains("BTRFS_SUBVOL_RDONLY"),
        "{err}"
    );
    assert!(err.contains("# like: btrfs subvolume snapshot -r"), "{err}");

    let out = snap(&args!["list", "--explain", fs.path()]);
    assert!(text(&out.stderr).contains("BTRFS_IOC_TREE_SEARCH"));
    assert!(text(&out.stderr).contains("# like: btrfs subvolume list"));
    assert!(
        !text(&out.stdout).contains("ioctl"),
        "stdout stays the list"
    );

    let err = text(&snap(&args!["show", "--explain", snapshot]).stderr);
    assert!(err.contains("BTRFS_IOC_GET_SUBVOL_INFO"), "{err}");

    let err = text(&snap(&args!["delete", "--explain", snapshot, sub]).stderr);
    assert!(
        err.contains("BTRFS_IOC_SNAP_DESTROY_V2") && err.contains("SPEC_BY_ID"),
        "{err}"
    );
    assert!(err.contains("# like: btrfs subvolume delete"), "{err}");
    assert!(!sub.exists() && !snapshot.exists());
}

#[test]
fn delete_follows_a_symlink_like_btrfs_progs_and_keeps_a_mount_point_safe() {
    if !ready("delete_follows_a_symlink_like_btrfs_progs_and_keeps_a_mount_point_safe") {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let other = LoopBtrfs::new(128);
    create(&fs.path().join("target"));
    std::os::unix::fs::symlink("target", fs.path().join("link")).expect("symlink");
    ok(snap(&args!["delete", fs.path().join("link")]));
    assert!(!fs.path().join("target").exists());

    // A subvolume of another filesystem mounted over a directory: deleting the mount point
    // path must delete that subvolume on its own filesystem, never the one underneath.
    create(&fs.path().join("keep"));
    create(&other.path().join("victim"));
    let result = mountns::in_private_mount_namespace(|| {
        let mnt = fs.path().join("keep");
        let status = Command::new("mount")
            .args(["--bind"])
            .arg(other.path().join("victim"))
            .arg(&mnt)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("bind mount failed".into());
        }
        // Refused or done on the mounted subvolume; either way not on the one underneath.
        let _ = snap(&args!["delete", mnt]);
        Ok(())
    });
    result.expect("namespace");
    assert!(
        is_subvolume(&fs.path().join("keep")),
        "the subvolume under the mount was deleted"
    );
}

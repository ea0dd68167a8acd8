//! The two ways `show` reads a subvolume agree: `BTRFS_IOC_GET_SUBVOL_INFO` (the kernel
//! decodes the ROOT_ITEM) and the tree search used on kernels before 4.18 (btrfs-snap
//! decodes it, at the offsets of `struct btrfs_root_item`). Needs root and mkfs.btrfs.

use std::fs;
use std::process::Command;

use btrfs_snap::{subvolume, Explain};
use tests::btrfs::LoopBtrfs;
use tests::prereq;

#[test]
fn root_items_decode_as_the_kernel_decodes_them() {
    let test = "root_items_decode_as_the_kernel_decodes_them";
    if !prereq::require_root(test) || !prereq::require_commands(test, LoopBtrfs::COMMANDS) {
        return;
    }
    let fs = LoopBtrfs::new(128);
    let top = fs.path();
    let quiet = Explain::new(false);
    btrfs_snap::create(&top.join("base"), quiet).expect("create");
    fs::write(top.join("base/f"), b"x").expect("write");
    btrfs_snap::snapshot(&top.join("base"), &top.join("rw"), false, quiet).expect("snapshot");
    btrfs_snap::snapshot(&top.join("rw"), &top.join("ro"), true, quiet).expect("snapshot");
    fs::create_dir(top.join("base/d")).expect("mkdir");
    btrfs_snap::create(&top.join("base/d/inner"), quiet).expect("create");
    let synced = Command::new("sync")
        .arg("-f")
        .arg(top)
        .status()
        .expect("sync");
    assert!(synced.success());

    for name in ["base", "rw", "ro", "base/d/inner"] {
        let path = top.join(name);
        let kernel = btrfs_snap::show(&path, quiet).expect("show");
        let ours = subvolume::show_from_root_tree(&path, quiet).expect("show from the tree");
        assert_eq!(ours.root, kernel.root, "{name}");
        assert_eq!(
            (ours.id, ours.parent_id, &ours.name),
            (kernel.id, kernel.parent_id, &kernel.name),
            "{name}"
        );
        assert_ne!(ours.root.otime.0, 0, "{name}: a creation time");
    }
    let ro = subvolume::show_from_root_tree(&top.join("ro"), quiet).expect("show");
    assert!(ro.readonly());
    let rw = subvolume::show_from_root_tree(&top.join("rw"), quiet).expect("show");
    assert_eq!(ro.root.parent_uuid, rw.root.uuid);
}

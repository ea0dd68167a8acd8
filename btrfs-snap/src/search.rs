//! Reading the root tree with `BTRFS_IOC_TREE_SEARCH`, as `btrfs subvolume list` does.
//!
//! Every subvolume has, in the tree of tree roots (tree 1), a ROOT_ITEM keyed
//! `(id, ROOT_ITEM, 0 or creation transid)` with its uuids, flags and times, and a
//! ROOT_BACKREF keyed `(id, ROOT_BACKREF, parent id)` holding the directory inode in the
//! parent subvolume and its name there. A subvolume's path from the top level is its
//! parent's path, then the directory path inside the parent (`BTRFS_IOC_INO_LOOKUP`),
//! then its name. Both ioctls need CAP_SYS_ADMIN.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::explain::Explain;
use crate::ioctl::{self, SearchKey};

/// One item of a tree search result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub objectid: u64,
    pub item_type: u32,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Splits a `BTRFS_IOC_TREE_SEARCH` result buffer into its `count` items: each a
/// `btrfs_ioctl_search_header` (native byte order) followed by `len` bytes of item.
/// Stops early, rather than reading out of bounds, if the buffer is shorter than it claims.
pub fn parse_items(buf: &[u8], count: u32) -> Vec<Item> {
    let mut items = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        let Some(header) = buf.get(at..at + ioctl::SEARCH_HEADER_SIZE) else {
            break;
        };
        let objectid = ne_u64(&header[8..16]);
        let offset = ne_u64(&header[16..24]);
        let item_type = ne_u32(&header[24..28]);
        let len = ne_u32(&header[28..32]) as usize;
        at += ioctl::SEARCH_HEADER_SIZE;
        let Some(data) = buf.get(at..at + len) else {
            break;
        };
        at += len;
        items.push(Item {
            objectid,
            item_type,
            offset,
            data: data.to_vec(),
        });
    }
    items
}

/// Moves the search's lower bound just past the last key returned, as btrfs-progs does;
/// `false` once that passes the upper bound (the search is complete).
pub fn advance(key: &mut SearchKey, last: &Item) -> bool {
    let (mut objectid, mut item_type, mut offset) = (last.objectid, last.item_type, last.offset);
    if offset < u64::MAX {
        offset += 1;
    } else if item_type < u32::MAX {
        (item_type, offset) = (item_type + 1, 0);
    } else if objectid < u64::MAX {
        (objectid, item_type, offset) = (objectid + 1, 0, 0);
    } else {
        return false;
    }
    key.min_objectid = objectid;
    key.min_type = item_type;
    key.min_offset = offset;
    (objectid, item_type, offset) <= (key.max_objectid, key.max_type, key.max_offset)
}

/// Every item of `key`'s range, batch after batch.
pub fn search_all(
    fs: BorrowedFd,
    mut key: SearchKey,
    explain: Explain,
) -> Result<Vec<Item>, Errno> {
    let mut all = Vec::new();
    loop {
        key.nr_items = 4096;
        explain.step(format_args!(
            "ioctl(fd, BTRFS_IOC_TREE_SEARCH, {{tree_id: {}, objectid: {}..={}, type: {}..={}, offset: {}..}})",
            key.tree_id, key.min_objectid, key.max_objectid, key.min_type, key.max_type, key.min_offset
        ));
        let (out, buf) = ioctl::tree_search(fs, key)?;
        let items = parse_items(&buf, out.nr_items);
        let Some(last) = items.last().cloned() else {
            break;
        };
        all.extend(items);
        if !advance(&mut key, &last) {
            break;
        }
    }
    Ok(all)
}

/// The fields of a ROOT_ITEM (`struct btrfs_root_item`, packed, little-endian) that
/// `btrfs subvolume show` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootItem {
    pub generation: u64,
    pub flags: u64,
    pub uuid: [u8; 16],
    pub parent_uuid: [u8; 16],
    pub received_uuid: [u8; 16],
    pub ctransid: u64,
    pub otransid: u64,
    pub stransid: u64,
    pub rtransid: u64,
    pub ctime: (u64, u32),
    pub otime: (u64, u32),
    pub stime: (u64, u32),
    pub rtime: (u64, u32),
}

/// `struct btrfs_root_item` offsets: a 160-byte inode item, then the root's own fields.
const ROOT_ITEM_GENERATION: usize = 160;
const ROOT_ITEM_FLAGS: usize = 208;
/// Items written by kernels before 3.5 end here, without uuids and times.
const ROOT_ITEM_GENERATION_V2: usize = 239;
const ROOT_ITEM_UUID: usize = 247;
const ROOT_ITEM_TRANSIDS: usize = 295;
const ROOT_ITEM_TIMES: usize = 327;
const ROOT_ITEM_SIZE: usize = 439;

/// Decodes a ROOT_ITEM; `None` when it is shorter than even the old format.
pub fn parse_root_item(data: &[u8]) -> Option<RootItem> {
    if data.len() < ROOT_ITEM_GENERATION_V2 {
        return None;
    }
    let mut item = RootItem {
        generation: le_u64(&data[ROOT_ITEM_GENERATION..]),
        flags: le_u64(&data[ROOT_ITEM_FLAGS..]),
        ..RootItem::default()
    };
    // The newer fields are valid only if the kernel that last wrote the item knew them:
    // it then copies `generation` into `generation_v2`.
    if data.len() < ROOT_ITEM_SIZE || le_u64(&data[ROOT_ITEM_GENERATION_V2..]) != item.generation {
        return Some(item);
    }
    let uuid = |n: usize| first(&data[ROOT_ITEM_UUID + 16 * n..]);
    item.uuid = uuid(0);
    item.parent_uuid = uuid(1);
    item.received_uuid = uuid(2);
    let transid = |n: usize| le_u64(&data[ROOT_ITEM_TRANSIDS + 8 * n..]);
    (item.ctransid, item.otransid, item.stransid, item.rtransid) =
        (transid(0), transid(1), transid(2), transid(3));
    // `struct btrfs_timespec` on disk: le64 seconds, le32 nanoseconds, packed.
    let time = |n: usize| {
        let at = ROOT_ITEM_TIMES + 12 * n;
        (le_u64(&data[at..]), le_u32(&data[at + 8..]))
    };
    (item.ctime, item.otime, item.stime, item.rtime) = (time(0), time(1), time(2), time(3));
    Some(item)
}

/// Decodes a ROOT_BACKREF (`struct btrfs_root_ref`: le64 dirid, le64 sequence, le16
/// name_len, then the name): the directory in the parent and the subvolume's name.
pub fn parse_root_ref(data: &[u8]) -> Option<(u64, Vec<u8>)> {
    let dirid = le_u64(data.get(0..8)?);
    let name_len = u16::from_le_bytes(data.get(16..18)?.try_into().ok()?) as usize;
    let name = data.get(18..18 + name_len)?;
    Some((dirid, name.to_vec()))
}

/// A subvolume as the root tree describes it.
#[derive(Debug, Clone)]
pub struct Subvolume {
    pub id: u64,
    pub parent_id: u64,
    pub dirid: u64,
    pub name: Vec<u8>,
    pub item: Option<RootItem>,
    /// From the top-level subvolume, `a/d/b`; filled in by [`subvolumes`].
    pub path: PathBuf,
}

/// Every live subvolume of the filesystem `fs` is on (the top level not included), with
/// its path from the top level, sorted by path so a parent comes before its children.
pub fn subvolumes(fs: BorrowedFd, explain: Explain) -> Result<Vec<Subvolume>, Errno> {
    let key = SearchKey {
        tree_id: ioctl::ROOT_TREE_OBJECTID,
        min_objectid: ioctl::FIRST_FREE_OBJECTID,
        max_objectid: ioctl::LAST_FREE_OBJECTID,
        min_type: ioctl::ROOT_ITEM_KEY,
        max_type: ioctl::ROOT_BACKREF_KEY,
        max_offset: u64::MAX,
        max_transid: u64::MAX,
        ..SearchKey::default()
    };
    let mut items: HashMap<u64, RootItem> = HashMap::new();
    let mut found: Vec<Subvolume> = Vec::new();
    // The range is one span of 136-bit keys, so items of the types between ROOT_ITEM and
    // ROOT_BACKREF come back too: keep only those two.
    for item in search_all(fs, key, explain)? {
        match item.item_type {
            ioctl::ROOT_ITEM_KEY => {
                if let Some(root) = parse_root_item(&item.data) {
                    items.insert(item.objectid, root);
                }
            }
            ioctl::ROOT_BACKREF_KEY => {
                // A subvolume being deleted has lost its backref already: it is not listed.
                if let Some((dirid, name)) = parse_root_ref(&item.data) {
                    found.push(Subvolume {
                        id: item.objectid,
                        parent_id: item.offset,
                        dirid,
                        name,
                        item: None,
                        path: PathBuf::new(),
                    });
                }
            }
            _ => {}
        }
    }
    for subvol in &mut found {
        subvol.item = items.remove(&subvol.id);
    }

    // Paths: parent's path + directory inside the parent + name. Each pass resolves the
    // subvolumes whose parent is resolved (a parent's id may be higher than its child's,
    // after a `mv`); a pass that resolves nothing ends it (orphans of a dying parent).
    let mut paths: HashMap<u64, PathBuf> =
        HashMap::from([(ioctl::FS_TREE_OBJECTID, PathBuf::new())]);
    let mut listed = Vec::new();
    let mut pending = found;
    while !pending.is_empty() {
        let before = pending.len();
        let mut unresolved = Vec::new();
        for mut subvol in pending {
            let Some(parent_path) = paths.get(&subvol.parent_id) else {
                unresolved.push(subvol);
                continue;
            };
            // Directly in the parent's root directory: no path in between to look up.
            let dir = if subvol.dirid == ioctl::FIRST_FREE_OBJECTID {
                Vec::new()
            } else {
                explain.step(format_args!(
                    "ioctl(fd, BTRFS_IOC_INO_LOOKUP, {{treeid: {}, objectid: {}}})",
                    subvol.parent_id, subvol.dirid
                ));
                ioctl::ino_lookup(fs, subvol.parent_id, subvol.dirid)?.1
            };
            subvol.path = parent_path
                .join(OsStr::from_bytes(&dir))
                .join(OsStr::from_bytes(&subvol.name));
            paths.insert(subvol.id, subvol.path.clone());
            listed.push(subvol);
        }
        if unresolved.len() == before {
            break;
        }
        pending = unresolved;
    }
    listed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listed)
}

/// The first `N` bytes of `b`; the callers have checked that `b` is long enough.
fn first<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}

fn ne_u64(b: &[u8]) -> u64 {
    u64::from_ne_bytes(first(b))
}

fn ne_u32(b: &[u8]) -> u32 {
    u32::from_ne_bytes(first(b))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(first(b))
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(first(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(objectid: u64, item_type: u32, offset: u64, len: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(7u64.to_ne_bytes());
        h.extend(objectid.to_ne_bytes());
        h.extend(offset.to_ne_bytes());
        h.extend(item_type.to_ne_bytes());
        h.extend(len.to_ne_bytes());
        h
    }

    #[test]
    fn items_are_split_by_their_headers() {
        let mut buf = header(256, 144, 5, 3);
        buf.extend(b"abc");
        buf.extend(header(257, 132, 0, 1));
        buf.extend(b"z");
        let items = parse_items(&buf, 2);
        assert_eq!(items.len(), 2);
        assert_eq!(
            (items[0].objectid, items[0].item_type, items[0].offset),
            (256, 144, 5)
        );
        assert_eq!(items[0].data, b"abc");
        assert_eq!(items[1].data, b"z");
    }

    #[test]
    fn a_short_buffer_is_not_overrun() {
        let mut buf = header(256, 144, 5, 100);
        buf.extend(b"abc");
        assert!(parse_items(&buf, 1).is_empty());
        assert!(parse_items(&buf[..10], 1).is_empty());
    }

    #[test]
    fn the_search_resumes_after_the_last_key() {
        let mut key = SearchKey {
            max_objectid: u64::MAX,
            max_type: u32::MAX,
            max_offset: u64::MAX,
            ..SearchKey::default()
        };
        let item = |objectid, item_type, offset| Item {
            objectid,
            item_type,
            offset,
            data: vec![],
        };
        assert!(advance(&mut key, &item(256, 144, 5)));
        assert_eq!(
            (key.min_objectid, key.min_type, key.min_offset),
            (256, 144, 6)
        );
        assert!(advance(&mut key, &item(256, 144, u64::MAX)));
        assert_eq!(
            (key.min_objectid, key.min_type, key.min_offset),
            (256, 145, 0)
        );
        assert!(advance(&mut key, &item(256, u32::MAX, u64::MAX)));
        assert_eq!(
            (key.min_objectid, key.min_type, key.min_offset),
            (257, 0, 0)
        );
        assert!(!advance(&mut key, &item(u64::MAX, u32::MAX, u64::MAX)));
        key.max_objectid = 300;
        key.max_type = 144;
        assert!(!advance(&mut key, &item(300, 144, u64::MAX)));
    }

    #[test]
    fn root_refs_decode() {
        let mut data = Vec::new();
        data.extend(258u64.to_le_bytes());
        data.extend(3u64.to_le_bytes());
        data.extend(5u16.to_le_bytes());
        data.extend(b"alpine");
        assert_eq!(parse_root_ref(&data), Some((258, b"alpin".to_vec())));
        assert_eq!(parse_root_ref(&data[..17]), None);
    }

    #[test]
    fn root_items_decode_new_fields_only_when_valid() {
        let mut data = vec![0u8; ROOT_ITEM_SIZE];
        data[ROOT_ITEM_GENERATION..][..8].copy_from_slice(&9u64.to_le_bytes());
        data[ROOT_ITEM_FLAGS..][..8].copy_from_slice(&1u64.to_le_bytes());
        data[ROOT_ITEM_UUID..][..16].copy_from_slice(&[0xab; 16]);
        data[ROOT_ITEM_TRANSIDS + 8..][..8].copy_from_slice(&7u64.to_le_bytes());
        data[ROOT_ITEM_TIMES + 12..][..8].copy_from_slice(&1_700_000_000u64.to_le_bytes());
        data[ROOT_ITEM_TIMES + 20..][..4].copy_from_slice(&5u32.to_le_bytes());

        // generation_v2 != generation: an old kernel wrote it last, the uuids are stale.
        let old = parse_root_item(&data).expect("item");
        assert_eq!((old.generation, old.flags, old.uuid), (9, 1, [0; 16]));

        data[ROOT_ITEM_GENERATION_V2..][..8].copy_from_slice(&9u64.to_le_bytes());
        let new = parse_root_item(&data).expect("item");
        assert_eq!(new.uuid, [0xab; 16]);
        assert_eq!(new.otransid, 7);
        assert_eq!(new.otime, (1_700_000_000, 5));
        assert_eq!(parse_root_item(&data[..100]), None);
    }
}

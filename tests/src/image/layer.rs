//! Tar layers written header by header, so a test gets exactly the archive it describes:
//! GNU headers, GNU long-name (`L`) and long-link (`K`) records for names past 100 bytes,
//! PAX `SCHILY.xattr.*` records for extended attributes. Nothing is sanitised on the way.

use tar::{EntryType, Header};

/// The modification time every entry gets unless `.mtime()` says otherwise, so that
/// building the same layer twice gives the same digest (2023-11-14T22:13:20Z).
pub const DEFAULT_MTIME: u64 = 1_700_000_000;

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
    pub fn raw(self, header: Header, name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        let kind = Kind::Raw(Box::new(header), data.as_ref().to_vec());
        self.push(name.as_ref().to_vec(), kind, 0)
    }

    /// Bytes appended to the archive verbatim (they should be whole 512-byte blocks), for
    /// hand-made PAX or GNU headers that disagree with the entry after them.
    pub fn raw_bytes(self, bytes: impl AsRef<[u8]>) -> Self {
        self.push(Vec::new(), Kind::Bytes(bytes.as_ref().to_vec()), 0)
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
    if value.len() > field.len() {
        out.extend_from_slice(&long_record(value, kind));
    }
}

/// A `././@LongLink` record of type `L` (name) or `K` (link name) holding `value` and a NUL.
fn long_record(value: &[u8], kind: EntryType) -> Vec<u8> {
    let mut header = Header::new_gnu();
    header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(value.len() as u64 + 1);
    header.set_cksum();
    let mut out = Vec::new();
    append_record(&mut out, header.as_bytes(), &[value, b"\0"].concat());
    out
}

/// A PAX extended header (`x`) carrying `SCHILY.xattr.KEY=VALUE` records, the form GNU tar,
/// Docker and the tar crate read xattrs from.
fn write_pax_xattrs(out: &mut Vec<u8>, xattrs: &[(String, Vec<u8>)]) {
    let records: Vec<(String, &[u8])> = xattrs
        .iter()
        .map(|(key, value)| (format!("SCHILY.xattr.{key}"), value.as_slice()))
        .collect();
    let records: Vec<(&str, &[u8])> = records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    out.extend_from_slice(&pax_header(&records));
}

/// A whole PAX extended header (type `x`) holding `records`, padded to 512-byte blocks: for
/// [`Layer::raw_bytes`], to make an entry whose PAX `path` or `size` disagrees with its own
/// header, or a PAX header followed by a GNU long name (CVE-2025-62518).
pub fn pax_header(records: &[(&str, &[u8])]) -> Vec<u8> {
    let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
    let mut header = Header::new_ustar();
    header.as_old_mut().name[..10].copy_from_slice(b"PaxHeaders");
    header.set_entry_type(EntryType::XHeader);
    header.set_mode(0o644);
    header.set_size(body.len() as u64);
    header.set_cksum();
    let mut out = Vec::new();
    append_record(&mut out, header.as_bytes(), &body);
    out
}

/// A GNU long-name record (type `L`) for `name`, for [`Layer::raw_bytes`]: the entry after
/// it takes this name whatever its own header says.
pub fn gnu_long_name(name: &[u8]) -> Vec<u8> {
    long_record(name, EntryType::GNULongName)
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

    /// The entry names as the tar crate reads them.
    fn entry_names(tar: &[u8]) -> Vec<Vec<u8>> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect()
    }

    #[test]
    fn a_pax_path_overrides_the_header_name_for_the_tar_crate() {
        let tar = Layer::new()
            .raw_bytes(pax_header(&[("path", b"from-pax")]))
            .file("from-header", "", 0o644)
            .raw_bytes(gnu_long_name(b"from-gnu"))
            .file("ignored", "", 0o644)
            .to_tar();
        let names = entry_names(&tar);
        assert_eq!(names, [b"from-pax".to_vec(), b"from-gnu".to_vec()]);
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
        let names = entry_names(&tar);
        assert_eq!(names, vec![b"../x".to_vec(), long.into_bytes()]);
    }
}

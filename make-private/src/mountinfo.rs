//! Reading `/proc/self/mountinfo`: which mounts exist in this mount namespace and
//! how each one propagates.
//!
//! Format (proc(5), "/proc/pid/mountinfo"): one mount per line,
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//! ```
//!
//! Field 7 is zero or more optional fields ended by the `-` separator. The ones that
//! matter here are `shared:N` (the mount is in peer group N), `master:N` (it is a
//! slave of peer group N), `propagate_from:N` and `unbindable`. A mount with none of
//! them is private. Paths escape space, tab, newline and backslash as octal (`\040`).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One line of mountinfo, reduced to what propagation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where the mount is attached, relative to this process's root, unescaped.
    pub mount_point: PathBuf,
    /// The optional fields (`shared:1`, `master:2`, `unbindable`...), in kernel order.
    pub optional_fields: Vec<String>,
}

impl Mount {
    /// The propagation type as `mount --make-*` would name it: `shared:N`, `master:N`,
    /// both separated by a comma for a shared slave, `unbindable`, or `private`.
    pub fn propagation(&self) -> String {
        let tags: Vec<&str> = self
            .optional_fields
            .iter()
            .map(String::as_str)
            .filter(|f| f.starts_with("shared:") || f.starts_with("master:") || *f == "unbindable")
            .collect();
        if tags.is_empty() {
            "private".to_string()
        } else {
            tags.join(",")
        }
    }

    /// True when the mount is in a peer group: mounts and unmounts below it are
    /// passed on to (and received from) its peers.
    pub fn is_shared(&self) -> bool {
        self.optional_fields
            .iter()
            .any(|f| f.starts_with("shared:"))
    }
}

/// Parses the whole of a mountinfo file. Lines that do not have the expected shape
/// are skipped: the kernel writes this file, and a future field must not break us.
pub fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

fn parse_line(line: &[u8]) -> Option<Mount> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    // (1) mount ID, (2) parent ID, (3) major:minor, (4) root, (5) mount point, (6) options.
    let mount_point = fields.nth(4)?;
    fields.next()?;
    let optional_fields = fields
        .take_while(|f| *f != b"-")
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    Some(Mount {
        mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
        optional_fields,
    })
}

/// Undoes the kernel's octal escapes (`\040` is a space) in a mountinfo path.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Escapes a path the way the kernel does in mountinfo, so that one mount is always
/// one line and the propagation is always the last space-separated word.
pub fn escape(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => out.push_str(&format!("\\{b:03o}")),
            _ => out.push(char::from(b)),
        }
    }
    out
}

/// The mount attached exactly at `path`. Where several mounts are stacked on one
/// mount point, the last one listed is the one on top, the one a path lookup sees.
pub fn mount_at<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// The mount that contains `path`: the one with the longest mount point that is
/// `path` itself or one of its ancestors.
pub fn containing_mount<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .rev()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

/// The mounts at or below `path`, in mountinfo order.
pub fn at_or_below<'a>(mounts: &'a [Mount], path: &Path) -> Vec<&'a Mount> {
    mounts
        .iter()
        .filter(|m| m.mount_point.starts_with(path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 27 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
37 27 0:40 / /srv/my\\040disk rw shared:5 master:3 - tmpfs tmpfs rw
38 27 0:41 / /srv/locked rw unbindable - tmpfs tmpfs rw
39 27 0:42 / /mnt2 rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_mount_points_and_optional_fields() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[1].mount_point, Path::new("/"));
        assert_eq!(mounts[1].optional_fields, ["shared:1"]);
        assert_eq!(mounts[0].optional_fields, Vec::<String>::new());
    }

    #[test]
    fn names_each_propagation_type() {
        let mounts = parse(SAMPLE);
        let by_point: Vec<(String, String)> = mounts
            .iter()
            .map(|m| (escape(&m.mount_point), m.propagation()))
            .collect();
        assert_eq!(
            by_point,
            [
                ("/proc", "private"),
                ("/", "shared:1"),
                ("/mnt2", "master:1"),
                ("/srv/my\\040disk", "shared:5,master:3"),
                ("/srv/locked", "unbindable"),
                ("/mnt2", "private"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn unescapes_and_escapes_octal() {
        assert_eq!(unescape(b"/a\\040b\\011c\\134d"), b"/a b\tc\\d");
        assert_eq!(unescape(b"/trailing\\04"), b"/trailing\\04");
        assert_eq!(unescape(b"/not\\999octal"), b"/not\\999octal");
        assert_eq!(
            escape(Path::new("/a b\tc\nd\\e")),
            "/a\\040b\\011c\\012d\\134e"
        );
    }

    #[test]
    fn finds_the_top_mount_of_a_stack_and_the_containing_mount() {
        let mounts = parse(SAMPLE);
        assert_eq!(
            mount_at(&mounts, Path::new("/mnt2"))
                .map(Mount::propagation)
                .as_deref(),
            Some("private")
        );
        assert!(mount_at(&mounts, Path::new("/srv")).is_none());
        let outer =
            containing_mount(&mounts, Path::new("/srv/elsewhere")).map(|m| m.mount_point.clone());
        assert_eq!(outer.as_deref(), Some(Path::new("/")));
        let disk =
            containing_mount(&mounts, Path::new("/srv/my disk/x")).map(|m| m.mount_point.clone());
        assert_eq!(disk.as_deref(), Some(Path::new("/srv/my disk")));
    }

    #[test]
    fn at_or_below_matches_whole_components() {
        let text = b"1 0 0:1 / / rw - x x rw\n2 1 0:2 / /srv rw - x x rw\n3 1 0:3 / /srvx rw - x x rw\n4 2 0:4 / /srv/a rw - x x rw\n";
        let mounts = parse(text);
        let below: Vec<&Path> = at_or_below(&mounts, Path::new("/srv"))
            .iter()
            .map(|m| m.mount_point.as_path())
            .collect();
        assert_eq!(below, [Path::new("/srv"), Path::new("/srv/a")]);
    }

    #[test]
    fn odd_lines_are_skipped_not_fatal() {
        assert!(parse(b"garbage\n\n1 2\n").is_empty());
    }
}

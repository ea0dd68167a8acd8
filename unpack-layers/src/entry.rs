//! Entry names: what a tar header's name means inside the rootfs.
//!
//! Names are taken relative to the root, the way umoci and the image-spec read
//! them: a leading `/` is dropped, `.` and empty components vanish, `..` removes
//! the previous component. A `..` with nothing left to remove would climb above
//! the root, and the entry is rejected rather than clamped (a layer that tries it
//! is hostile or broken, and quietly writing elsewhere hides that).
//!
//! This is only lexical clean-up of the name. Symlinks met while walking the
//! clean name are resolved by the kernel, inside the root (see `resolve.rs`).

use std::fmt;

/// Longest entry name accepted, in bytes (`PATH_MAX`): GNU long names can be
/// arbitrarily long, and a 1 MiB name is an attack, not a file.
pub const MAX_NAME_LEN: usize = 4096;

/// Why a name cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// `..` components climb above the root.
    Climbs,
    /// The name holds a NUL byte, which no path can.
    Nul,
    /// Longer than [`MAX_NAME_LEN`].
    TooLong,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Climbs => f.write_str("its '..' components climb above the root"),
            NameError::Nul => f.write_str("it contains a NUL byte"),
            NameError::TooLong => write!(f, "it is longer than {MAX_NAME_LEN} bytes"),
        }
    }
}

/// A cleaned name: its components, none of them empty, `.` or `..`.
/// No components at all means the root itself (`.`, `./`, `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPath<'a> {
    pub components: Vec<&'a [u8]>,
}

impl<'a> EntryPath<'a> {
    /// Cleans a raw tar name (see the module comment).
    pub fn parse(name: &'a [u8]) -> Result<Self, NameError> {
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if name.contains(&0) {
            return Err(NameError::Nul);
        }
        let mut components: Vec<&[u8]> = Vec::new();
        for part in name.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    if components.pop().is_none() {
                        return Err(NameError::Climbs);
                    }
                }
                _ => components.push(part),
            }
        }
        Ok(EntryPath { components })
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The directory holding the entry (empty for the root's children).
    pub fn parent(&self) -> &[&'a [u8]] {
        &self.components[..self.components.len().saturating_sub(1)]
    }

    /// The last component; the root has none.
    pub fn file_name(&self) -> Option<&'a [u8]> {
        self.components.last().copied()
    }

    /// The cleaned name as bytes, `a/b/c` (empty for the root).
    pub fn joined(&self) -> Vec<u8> {
        join(&self.components)
    }
}

/// `a/b/c` from its components.
pub fn join(components: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(components.iter().map(|c| c.len() + 1).sum());
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(name: &str) -> Result<Vec<String>, NameError> {
        EntryPath::parse(name.as_bytes()).map(|p| {
            p.components
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect()
        })
    }

    #[test]
    fn plain_names_split_into_components() {
        assert_eq!(parts("usr/bin/env").unwrap(), ["usr", "bin", "env"]);
        assert_eq!(parts("./etc/").unwrap(), ["etc"]);
        assert_eq!(parts("a//b/./c").unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn absolute_names_land_inside_the_root() {
        assert_eq!(parts("/etc/passwd").unwrap(), ["etc", "passwd"]);
    }

    #[test]
    fn root_spellings_have_no_components() {
        for name in [".", "./", "/", "", "//.//", "a/.."] {
            assert!(
                EntryPath::parse(name.as_bytes()).unwrap().is_root(),
                "{name}"
            );
        }
    }

    #[test]
    fn dotdot_inside_the_tree_is_resolved() {
        assert_eq!(parts("a/b/../c").unwrap(), ["a", "c"]);
    }

    #[test]
    fn dotdot_climbing_above_the_root_is_rejected() {
        for name in ["..", "../x", "/../x", "a/../../x", "./a/b/../../../etc"] {
            assert_eq!(parts(name), Err(NameError::Climbs), "{name}");
        }
    }

    #[test]
    fn nul_and_overlong_names_are_rejected() {
        assert_eq!(parts("a\0b"), Err(NameError::Nul));
        let long = "a/".repeat(MAX_NAME_LEN);
        assert_eq!(parts(&long), Err(NameError::TooLong));
    }

    #[test]
    fn parent_and_file_name() {
        let p = EntryPath::parse(b"a/b/c").unwrap();
        assert_eq!(p.parent(), [b"a".as_slice(), b"b".as_slice()]);
        assert_eq!(p.file_name(), Some(b"c".as_slice()));
        assert_eq!(p.joined(), b"a/b/c");
    }
}

//! `--explain`: each kernel call as it is made, with the `btrfs` command a person would
//! type for the same effect, on stderr.

use std::ffi::OsStr;
use std::fmt::Display;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Prints the calls when enabled; a no-op otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct Explain {
    enabled: bool,
}

impl Explain {
    pub fn new(enabled: bool) -> Explain {
        Explain { enabled }
    }

    /// One kernel call and the classic command it mirrors.
    pub fn call(&self, call: impl Display, like: impl Display) {
        if self.enabled {
            eprintln!("{call}   # like: {like}");
        }
    }

    /// One kernel call that is a step of a larger command (no shell equivalent of its own).
    pub fn step(&self, call: impl Display) {
        if self.enabled {
            eprintln!("{call}");
        }
    }
}

/// `path` quoted as a C string literal, as strace shows arguments.
pub fn c_str(path: impl AsRef<OsStr>) -> String {
    format!("{:?}", path.as_ref())
}

/// `path` as one shell word: bare when it is made of safe characters, single-quoted otherwise.
pub fn shell_word(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    let safe = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"/._-+:,@%=".contains(&b));
    let text = path.to_string_lossy();
    if safe {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word(Path::new("images/alpine")), "images/alpine");
        assert_eq!(shell_word(Path::new("my dir")), "'my dir'");
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
        assert_eq!(shell_word(Path::new("")), "''");
    }

    #[test]
    fn c_strings_look_like_strace() {
        assert_eq!(c_str("images"), "\"images\"");
    }
}

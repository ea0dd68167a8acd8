//! `--explain`: every kernel call, printed to stderr as it is made, beside the
//! classic shell command that has the same effect.
//!
//! The lines are the teaching mode of the tool: read top to bottom they are the
//! container demo typed by hand (`unshare ...`, `mount --bind ...`,
//! `pivot_root . oldroot`, `umount -l oldroot`, `exec ...`).

use std::fmt::Display;

/// Whether to print each step; cheap to copy into the forked child.
#[derive(Clone, Copy, Debug, Default)]
pub struct Explain {
    enabled: bool,
}

impl Explain {
    pub fn new(enabled: bool) -> Self {
        Explain { enabled }
    }

    pub fn enabled(self) -> bool {
        self.enabled
    }

    /// One kernel call and the command it mirrors:
    /// `pivot_root(".", ".")   # like: pivot_root . oldroot`.
    pub fn call(self, call: impl Display, like: impl Display) {
        if self.enabled {
            eprintln!("{}", line(&call.to_string(), &like.to_string()));
        }
    }

    /// A remark that is not a kernel call (a decision, a skipped field).
    pub fn note(self, text: impl Display) {
        if self.enabled {
            eprintln!("# {text}");
        }
    }
}

/// The aligned `call   # like: command` line.
pub fn line(call: &str, like: &str) -> String {
    if like.is_empty() {
        return call.to_string();
    }
    format!("{call:<58} # like: {like}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_the_classic_command() {
        let l = line("pivot_root(\".\", \".\")", "pivot_root . oldroot");
        assert!(l.starts_with("pivot_root(\".\", \".\")"));
        assert!(l.ends_with("# like: pivot_root . oldroot"));
        assert_eq!(l.find('#'), Some(59));
    }

    #[test]
    fn a_call_without_a_classic_command_stands_alone() {
        assert_eq!(
            line("close_range(3, ~0, CLOEXEC)", ""),
            "close_range(3, ~0, CLOEXEC)"
        );
    }
}

//! `--explain`: each kernel call made, with the shell command a person would
//! type for the same effect, on stderr.

use std::fmt::Arguments;

#[derive(Debug, Clone, Copy, Default)]
pub struct Explain {
    on: bool,
}

impl Explain {
    pub fn new(on: bool) -> Explain {
        Explain { on }
    }

    pub fn on(&self) -> bool {
        self.on
    }

    /// Prints `call   # like: shell`. The arguments are only formatted when on.
    pub fn say(&self, call: Arguments<'_>, like: Arguments<'_>) {
        if self.on {
            eprintln!("{call}   # like: {like}");
        }
    }

    /// A line of context (which layer, which file), as a shell comment.
    pub fn note(&self, text: Arguments<'_>) {
        if self.on {
            eprintln!("# {text}");
        }
    }
}

//! The workspace's own binaries, found in the target directory of the running test.
//!
//! A test executable lives at `target/<profile>/deps/NAME-HASH`; the binaries that
//! `cargo build --workspace --bins` made for the same profile are in `target/<profile>/`.
//! (`CARGO_BIN_EXE_*` only exists for binaries of the crate under test, hence this lookup.)

use std::path::PathBuf;

/// The path of the workspace binary `name` (e.g. `"fetch-image"`) built for the same profile
/// as the running test. Panics with the command to run when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let dir = profile_dir();
    let path = dir.join(name);
    if !path.is_file() {
        panic!(
            "binary '{name}' not found in {}: build the workspace's binaries first \
             (cargo build --workspace --bins, with the same --release/--profile as the tests)",
            dir.display()
        );
    }
    path
}

/// `target/<profile>/`: the parent of the `deps/` directory holding the running test executable.
pub fn profile_dir() -> PathBuf {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => panic!("cannot locate the running test executable: {err}"),
    };
    let deps = exe.parent().map(PathBuf::from).unwrap_or_default();
    // Test executables live in deps/; a binary of the tests crate (image-builder) sits
    // directly in the profile directory.
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().map(PathBuf::from).unwrap_or(deps)
    } else {
        deps
    }
}

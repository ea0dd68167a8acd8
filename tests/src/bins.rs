//! The workspace's own binaries, found in the target directory of the running test.
//!
//! A test executable lives at `target/<profile>/deps/NAME-HASH`; the binaries that
//! `cargo build --workspace --bins` made for the same profile are in `target/<profile>/`.
//! (`CARGO_BIN_EXE_*` only exists for binaries of the crate under test, hence this lookup.)
//!
//! `cargo test -p tests` does not rebuild the other crates' binaries, so a binary older than
//! its crate's sources is refused: a test must not pass or fail on yesterday's code.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
    refuse_if_stale(name, &path);
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

/// Panics when a source file of the binary (its crate's `src/**` except other binaries'
/// `src/bin/*`, and `Cargo.toml`) is newer than the binary.
fn refuse_if_stale(name: &str, binary: &Path) {
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = tests_crate.parent().unwrap_or(Path::new("."));
    // The tests crate's own binaries (image-builder) live in tests/; the tools in their folder.
    let crate_dir = match workspace.join(name) {
        dir if dir.join("Cargo.toml").is_file() => dir,
        _ => tests_crate.to_path_buf(),
    };
    let other_bin = |path: &Path| {
        path.parent().is_some_and(|p| p.ends_with("src/bin"))
            && path.file_stem().is_some_and(|stem| stem != name)
    };
    let sources = newest_modification(&crate_dir.join("src"), &other_bin);
    let newest = sources.max(modified(&crate_dir.join("Cargo.toml")));
    let built = modified(binary);
    if let (Some(built), Some(newest)) = (built, newest) {
        if newest > built {
            panic!(
                "binary '{}' is older than the sources in {}: rebuild it \
                 (cargo build --workspace --bins)",
                binary.display(),
                crate_dir.display()
            );
        }
    }
}

/// The newest modification time of the files under `dir`, recursively, leaving out the
/// paths `skip` accepts.
fn newest_modification(dir: &Path, skip: &dyn Fn(&Path) -> bool) -> Option<SystemTime> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| !skip(path))
        .filter_map(|path| match path.is_dir() {
            true => newest_modification(&path, skip),
            false => modified(&path),
        })
        .max()
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

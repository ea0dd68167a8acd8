//! Fixtures shared by the whole-pipeline tests: each one is the real thing.
//!
//! - [`registry`]: Debian's `docker-registry` on 127.0.0.1: anonymous, Basic (htpasswd),
//!   bearer tokens from a token server in the harness (Docker Hub's flow), each with or
//!   without TLS; [`registry::Remote`] pushes to it and reads back.
//! - [`image`]: builds any layer and image a test needs, hostile ones included, writes an
//!   OCI layout or pushes it.
//! - [`busybox`]: a small real image made from the static busybox binary (also what the
//!   `image-builder` binary writes or pushes for `demo.sh --offline`).
//! - [`btrfs`]: a loop-mounted btrfs, gone on drop.
//! - [`container`]: a container started in the background, paused until released.
//! - [`mountns`]: run a closure or command in a private mount namespace.
//! - [`bins`]: the workspace's binaries; [`prereq`]: root and system packages.
//!
//! Tests that need root or a command call [`prereq`] first: run by hand they print
//! `SKIP test: reason` and pass; under `CI=true` they fail. Build the binaries before the
//! tests: `cargo build --workspace --bins && cargo test -p tests`.

pub mod bins;
pub mod btrfs;
pub mod busybox;
pub mod container;
pub mod image;
pub mod mountns;
pub mod prereq;
pub mod registry;

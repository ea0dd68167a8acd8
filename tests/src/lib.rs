//! Fixtures shared by the whole-pipeline tests: each one is the real thing.
//!
//! - [`registry`]: Debian's `docker-registry` on 127.0.0.1, in every auth mode.
//! - [`image`]: builds any layer and image a test needs, writes an OCI layout or pushes it.
//! - [`busybox`]: a small real image made from the static busybox binary.
//! - [`btrfs`]: a loop-mounted btrfs, gone on drop.
//! - [`mountns`]: run a closure or command in a private mount namespace.
//! - [`bins`]: the workspace's binaries; [`prereq`]: root and system packages.

pub mod bins;
pub mod btrfs;
pub mod busybox;
pub mod image;
pub mod mountns;
pub mod prereq;
pub mod registry;

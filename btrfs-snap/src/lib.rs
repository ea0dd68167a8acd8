//! btrfs-snap (work in progress).

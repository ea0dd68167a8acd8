//! unpack-layers (work in progress).

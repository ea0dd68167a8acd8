//! make-private (work in progress).

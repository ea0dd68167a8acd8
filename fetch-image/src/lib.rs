//! fetch-image (work in progress).

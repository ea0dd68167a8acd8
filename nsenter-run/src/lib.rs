//! nsenter-run (work in progress).

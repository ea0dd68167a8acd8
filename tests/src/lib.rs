//! Fixtures shared by the whole-pipeline tests.

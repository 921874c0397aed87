//! Integration tests of brisk-array: every operation against ndarray's own result.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod ops;
mod recipe;
mod resources;

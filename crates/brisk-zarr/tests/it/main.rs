//! Integration tests of brisk-zarr.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod crash;
mod dataset;
mod pinned;
mod rebuilt;
mod roundtrip;
mod safety;

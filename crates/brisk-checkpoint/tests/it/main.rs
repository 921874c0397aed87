//! Integration tests of brisk-checkpoint.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod codec;
mod crash;
mod exact;
mod storage;
mod stores;

//! Integration tests of brisk-checkpoint.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod codec;
mod crash;
mod exact;
mod open_chain;
mod storage;
mod stores;

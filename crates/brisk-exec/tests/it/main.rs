//! Integration tests of brisk-exec's executors.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod handler;
mod resources;
mod source;
mod sync;
mod threaded;

//! Integration tests of brisk-checkpoint.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod codec;
mod crash;
mod storage;
mod stores;

/// An error and its sources, as `anyhow`'s `{:#}` prints them.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

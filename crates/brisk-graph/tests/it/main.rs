//! Integration tests of brisk-graph (one binary, one module per area).

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod golden;
mod graph;
mod tokens;

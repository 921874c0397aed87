//! Integration tests of brisk-graph (one binary, one module per area).

mod golden;
mod graph;
mod tokens;

//! `cargo xtask loom`: the loom model checks of brisk-exec's pool sleep/wake protocol
//! (`crates/brisk-exec/src/sleep.rs`), built with `--cfg loom` in their own target directory
//! so the normal build cache is untouched.

use std::process::Command;

use anyhow::Result;

use crate::*;

/// The command that runs the loom tests.
pub(crate) fn loom_command() -> Command {
    let mut c = cargo(&[
        "test",
        "--package",
        "brisk-exec",
        "--release",
        "--lib",
        "sleep::loom_tests",
    ]);
    c.env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", "target/loom");
    c
}

/// Runs the loom tests.
pub(crate) fn loom() -> Result<()> {
    run_ok(&mut loom_command())
}

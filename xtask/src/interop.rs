//! `cargo xtask interop`: Zarr arrays both ways between Brisk and zarr-python, and checkpoint
//! entries decoded by Python, each from its own virtualenv.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::*;

/// `cargo xtask interop`: Brisk writes every case of benches/zarr/cases.json and zarr-python
/// checks values, metadata, attributes and dimension names; then the other way round.
pub(crate) fn interop() -> Result<()> {
    let python = venv("interop", "benches/zarr/requirements.txt")?;
    build_bench_bin("zarr_interop")?;
    let root = PathBuf::from("target/interop");
    let (ours, theirs) = (root.join("brisk"), root.join("python"));
    for d in [&ours, &theirs] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
        std::fs::create_dir_all(d)?;
    }
    println!("==> Brisk writes, zarr-python reads");
    run_ok(
        Command::new("target/release/zarr_interop")
            .arg("write")
            .arg(&ours),
    )?;
    run_ok(
        Command::new(&python)
            .arg("benches/zarr/interop.py")
            .arg("check")
            .arg(&ours),
    )?;
    println!("==> zarr-python writes, Brisk reads");
    run_ok(
        Command::new(&python)
            .arg("benches/zarr/interop.py")
            .arg("write")
            .arg(&theirs),
    )?;
    run_ok(
        Command::new("target/release/zarr_interop")
            .arg("check")
            .arg(&theirs),
    )?;
    println!("interop: every case read back identically in both directions");

    println!("==> Brisk writes checkpoint entries, Python decodes them");
    let python = venv("interop-checkpoint", "benches/checkpoint/requirements.txt")?;
    build_bench_bin("checkpoint_interop")?;
    let dir = root.join("checkpoint");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    run_ok(Command::new("target/release/checkpoint_interop").arg(&dir))?;
    run_ok(
        Command::new(&python)
            .arg("benches/checkpoint/interop.py")
            .arg(&dir),
    )?;
    Ok(())
}

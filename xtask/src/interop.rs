//! `cargo xtask interop`: Zarr arrays both ways between Brisk and zarr-python, and checkpoint
//! entries decoded by Python, each from its own virtualenv.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::*;

/// Datasets both ways between Brisk and xarray, then the Zarr-writing examples' output
/// opened with `xr.open_zarr`.
fn datasets(python: &Path, root: &Path) -> Result<()> {
    build_bench_bin("dataset_interop")?;
    let (ours, theirs) = (root.join("brisk-datasets"), root.join("xarray-datasets"));
    fresh_dir(&ours)?;
    fresh_dir(&theirs)?;
    println!("==> Brisk writes datasets (v3, v2), xarray opens them");
    run_ok(
        Command::new("target/release/dataset_interop")
            .arg("write")
            .arg(&ours),
    )?;
    run_ok(
        Command::new(python)
            .arg("benches/zarr/dataset_interop.py")
            .arg("check")
            .arg(&ours),
    )?;
    println!(
        "==> xarray writes datasets (v3, v2, consolidated or not, CF-encoded), Brisk opens them"
    );
    run_ok(
        Command::new(python)
            .arg("benches/zarr/dataset_interop.py")
            .arg("write")
            .arg(&theirs),
    )?;
    run_ok(
        Command::new("target/release/dataset_interop")
            .arg("check")
            .arg(&theirs),
    )?;
    println!("==> examples/zarr_pipeline's store opened with xr.open_zarr");
    let dir = root.join("pipeline");
    let out = example("zarr_pipeline", &[])
        .args(["--quick", "--dir"])
        .arg(&dir)
        .output()
        .context("running zarr_pipeline")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "zarr_pipeline failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mean = stdout
        .lines()
        .find_map(|l| l.strip_prefix("mean of the result: "))
        .context("zarr_pipeline printed no `mean of the result:` line")?;
    run_ok(
        Command::new(python)
            .arg("benches/zarr/dataset_interop.py")
            .arg("pipeline")
            .arg(&dir)
            .arg(mean.trim()),
    )?;
    for (name, store) in [
        ("profile_report", "target/interop/profile/data.zarr"),
        ("zarr_resume", "target/interop/resume/data.zarr"),
    ] {
        let flag = if name == "profile_report" {
            "--out"
        } else {
            "--dir"
        };
        let parent = Path::new(store).parent().context("a parent directory")?;
        run_ok(example(name, &[]).args(["--quick", flag]).arg(parent))?;
        run_ok(
            Command::new(python)
                .arg("-c")
                .arg("import sys, xarray as xr; ds = xr.open_zarr(sys.argv[1]); print(sys.argv[1], dict(ds.sizes), list(ds.data_vars))")
                .arg(store),
        )?;
    }
    Ok(())
}

/// `cargo xtask interop`: Brisk writes every case of benches/zarr/cases.json and zarr-python
/// checks values, metadata, attributes and dimension names; then the other way round.
pub(crate) fn interop() -> Result<()> {
    let python = venv("interop", "benches/zarr/requirements.txt")?;
    build_bench_bin("zarr_interop")?;
    let root = PathBuf::from("target/interop");
    let (ours, theirs) = (root.join("brisk"), root.join("python"));
    fresh_dir(&ours)?;
    fresh_dir(&theirs)?;
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
    datasets(&python, &root)?;

    println!("==> Brisk writes checkpoint entries, Python decodes them");
    let python = venv("interop-checkpoint", "benches/checkpoint/requirements.txt")?;
    build_bench_bin("checkpoint_interop")?;
    let dir = root.join("checkpoint");
    remove_dir_if_present(&dir)?;
    run_ok(Command::new("target/release/checkpoint_interop").arg(&dir))?;
    run_ok(
        Command::new(&python)
            .arg("benches/checkpoint/interop.py")
            .arg(&dir),
    )?;
    Ok(())
}

//! A checkpointed analysis of a stored Zarr array that resumes instead of recomputing: the
//! array is opened with pinned reads (keys from the chunks' versions), so a rerun on
//! unchanged data loads the saved result without reading a chunk, and after one chunk is
//! rewritten only the result blocks that read it are computed again.
//!
//! ```text
//! cargo run --release -p examples --example zarr_resume -- [--shape 4000,3000]
//!     [--chunks 500,1000] [--dir DIR] [--quick]
//! ```
//! Runs the analysis three times — from scratch, again, after rewriting one chunk — checks
//! the third answer against an uncheckpointed compute of the same data, and prints what each
//! run computed and loaded.

#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use brisk::array::Array;
use brisk::checkpoint::{DirStore, Storage};
use brisk::exec::ThreadedExecutor;
use brisk::profile::{Outcome, Profiler};
use brisk::zarr::{
    ArrayOptions, IoOptions, ZarrStore, consolidate_metadata, create_group, from_zarr_with,
    open_array, to_zarr, write_tasks,
};
use clap::Parser;
use ndarray::{ArrayD, IxDyn};

/// A checkpointed analysis of a stored Zarr array, run three times.
#[derive(clap::Parser)]
struct Cli {
    /// Array shape [default: 4000,3000; 400,300 with --quick]
    #[arg(long, value_delimiter = ',', value_name = "ROWS,COLS")]
    shape: Option<Vec<usize>>,
    /// Chunk shape [default: 500,1000; 50,100 with --quick]
    #[arg(long, value_delimiter = ',', value_name = "ROWS,COLS")]
    chunks: Option<Vec<usize>>,
    /// Directory for the array and the checkpoints [default: a fresh temporary directory,
    /// removed at the end]
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Small sizes, for a smoke test
    #[arg(long)]
    quick: bool,
}

/// The analysis: per column, the mean of `x² + x³` and the largest `|x|`, checkpointed.
fn analysis(store: &ZarrStore) -> anyhow::Result<(Array<f64>, Array<f32>)> {
    let x = from_zarr_with::<f32>(store, "obs", IoOptions::new().pinned(true))?;
    let moment = (x.powi(2) + x.powi(3))
        .astype::<f64>()
        .mean(0)
        .checkpointed()?;
    let peak = x.abs().max(0).checkpointed()?;
    Ok((moment, peak))
}

/// One run of the analysis: its results, and how many tasks ran and were loaded.
fn run(
    label: &str,
    store: &ZarrStore,
    storage: &Storage,
    exec: &ThreadedExecutor,
) -> anyhow::Result<(ArrayD<f64>, ArrayD<f32>, usize, usize)> {
    let (moment, peak) = analysis(store)?;
    let profiler = Arc::new(Profiler::new());
    let options = storage.options().hook(profiler.clone());
    let t = Instant::now();
    let m = moment.compute_with_options(exec, &options)?;
    let p = peak.compute_with_options(exec, &options)?;
    let secs = t.elapsed().as_secs_f64();
    let records = profiler.records();
    let count = |o: Outcome| records.iter().filter(|r| r.outcome == o).count();
    let (ran, loaded) = (count(Outcome::Computed), count(Outcome::Loaded));
    println!("{label}: {secs:.3} s, {ran} tasks ran, {loaded} results loaded");
    Ok((m, p, ran, loaded))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (shape, chunks) = match (cli.shape, cli.chunks, cli.quick) {
        (Some(s), Some(c), _) => (s, c),
        (s, c, quick) => (
            s.unwrap_or(if quick {
                vec![400, 300]
            } else {
                vec![4000, 3000]
            }),
            c.unwrap_or(if quick {
                vec![50, 100]
            } else {
                vec![500, 1000]
            }),
        ),
    };
    if shape.len() != 2 || chunks.len() != 2 || chunks.contains(&0) {
        bail!("--shape and --chunks take two sizes each, chunks above zero");
    }
    let scratch = cli.dir.is_none();
    let dir = cli.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("brisk-zarr-resume-{}", std::process::id()))
    });
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let exec = ThreadedExecutor::new(brisk::exec::available_workers())?;
    let store = ZarrStore::directory(dir.join("data.zarr"))?;
    let storage = Storage::new(DirStore::new(dir.join("checkpoints"))?);

    let x = Array::<f32>::random_normal(&shape, &chunks, 7, 0.0, 1.0)?;
    // A dataset xarray opens (`xr.open_zarr`): a group with `obs` over `time` and `x`.
    create_group(&store, "", false, brisk::zarr::serde_json::Map::new())?;
    let opts = ArrayOptions::new().dimension_names(["time", "x"]);
    to_zarr(&x, &store, "obs", None, &opts, &exec)?;
    consolidate_metadata(&store, "")?;
    let columns = shape[1].div_ceil(chunks[1]);
    println!(
        "{}×{} f32 in {}×{} chunks; the analysis has {columns} result blocks per output",
        shape[0], shape[1], chunks[0], chunks[1]
    );

    let (m1, p1, ran1, _) = run("run 1 (from scratch)", &store, &storage, &exec)?;
    let (m2, p2, ran2, loaded2) = run("run 2 (unchanged data)", &store, &storage, &exec)?;
    if (m2 != m1) || (p2 != p1) || ran2 != 0 || loaded2 != 2 * columns {
        bail!(
            "run 2 should load all {} result blocks and run nothing",
            2 * columns
        );
    }

    // Rewrite the first chunk of the second block column (or of the only one).
    let col = chunks[1].min(shape[1] - 1) / chunks[1] * chunks[1];
    let (h, w) = (chunks[0].min(shape[0]), chunks[1].min(shape[1] - col));
    let patch = Array::from_ndarray(&ArrayD::from_elem(IxDyn(&[h, w]), 3.5f32), &[h, w])?;
    write_tasks(
        &patch,
        &open_array(&store, "obs")?,
        &[0, col],
        IoOptions::new(),
    )?
    .compute_with(&exec)?;
    println!("rewrote chunk (0, {}) with 3.5", col / chunks[1]);
    let (m3, p3, ran3, loaded3) = run("run 3 (one chunk changed)", &store, &storage, &exec)?;

    // The answer must be the new data's, whatever was loaded.
    let fresh = from_zarr_with::<f32>(&store, "obs", IoOptions::new())?;
    let m_fresh = (fresh.powi(2) + fresh.powi(3))
        .astype::<f64>()
        .mean(0)
        .compute_with(&exec)?;
    let p_fresh = fresh.abs().max(0).compute_with(&exec)?;
    if m3 != m_fresh || p3 != p_fresh {
        bail!("run 3 differs from a compute without checkpoints");
    }
    let changed = 2 * (columns - 1);
    if ran3 == 0 || loaded3 != changed {
        bail!("run 3 should load the {changed} result blocks that read no changed chunk");
    }
    println!(
        "run 3 matches a compute without checkpoints; {loaded3} of {} result blocks were loaded, {ran1} tasks ran the first time and {ran3} this time",
        2 * columns
    );
    if scratch {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

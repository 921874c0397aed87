//! Profiles the Zarr pipeline (seed 003) the way the seed does with Dask's `Profiler`,
//! `ResourceProfiler(dt=0.1)` and `CacheProfiler` (sampling every 20 ms here, as this
//! compute takes well under a second): writes a random float32 array to Zarr and
//! computes `(x**2 + x**3).mean(axis 0)` from it under all three profilers and a progress
//! bar, then writes
//!
//! - `profile.html`: one self-contained page (task Gantt per worker, CPU, memory, results
//!   held, per-task table), open it in any browser, offline;
//! - `trace.json`: Chrome trace events, for Perfetto (ui.perfetto.dev) or `chrome://tracing`;
//! - `graph.dot` (and `graph.svg` when Graphviz is installed): the reduction's task graph,
//!   coloured by measured duration;
//!
//! and prints the per-task summary.
//!
//! ```text
//! cargo run --release -p examples --example profile_report -- [--shape 8000,3000]
//!     [--chunks 500,3000] [--out DIR] [--workers N] [--quick]
//! ```

#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use brisk::array::Array;
use brisk::exec::ThreadedExecutor;
use brisk::graph::{ComputeOptions, DotOptions, Graph};
use brisk::profile::{
    CacheProfiler, GraphvizError, Profiler, ProgressBar, Report, ResourceProfiler, duration_fill,
    svg,
};
use brisk::zarr::{
    ArrayOptions, IoOptions, ZarrStore, consolidate_metadata, create_array, create_group,
    from_zarr, write_tasks,
};
use clap::Parser;

struct Args {
    shape: Vec<usize>,
    chunks: Vec<usize>,
    out: PathBuf,
    workers: usize,
}

/// Profiles the Zarr pipeline (write, then the mean of x**2 + x**3) under every profiler and
/// writes profile.html, trace.json and graph.dot/svg.
#[derive(clap::Parser)]
struct Cli {
    /// Array shape [default: 8000,3000; 800,750 with --quick]
    #[arg(long, value_delimiter = ',', value_name = "ROWS,COLS")]
    shape: Option<Vec<usize>>,
    /// Chunk shape [default: 500,3000; 100,750 with --quick]
    #[arg(long, value_delimiter = ',', value_name = "ROWS,COLS")]
    chunks: Option<Vec<usize>>,
    /// Output directory [default: brisk-profile-report in the temporary directory]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Worker threads [default: every core]
    #[arg(long)]
    workers: Option<usize>,
    /// Small default sizes, for a quick check
    #[arg(long)]
    quick: bool,
}

fn parse() -> anyhow::Result<Args> {
    let cli = Cli::parse();
    let (shape, chunks) = if cli.quick {
        (vec![800, 750], vec![100, 750])
    } else {
        (vec![8000, 3000], vec![500, 3000])
    };
    let a = Args {
        shape: cli.shape.unwrap_or(shape),
        chunks: cli.chunks.unwrap_or(chunks),
        out: cli
            .out
            .unwrap_or_else(|| std::env::temp_dir().join("brisk-profile-report")),
        workers: cli.workers.unwrap_or_else(brisk::exec::available_workers),
    };
    if a.shape.len() != 2 || a.chunks.len() != 2 {
        bail!("--shape and --chunks take two numbers each");
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let a = parse()?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("creating the output directory {}", a.out.display()))?;
    let exec = ThreadedExecutor::new(a.workers)?;
    let store = ZarrStore::directory(a.out.join("data.zarr"))?;

    let tasks = Arc::new(Profiler::new());
    let resources = Arc::new(ResourceProfiler::every(Duration::from_millis(20)));
    let cache = Arc::new(CacheProfiler::new());
    let progress = Arc::new(ProgressBar::new());
    let opts = ComputeOptions::new()
        .hook(tasks.clone())
        .hook(resources.clone())
        .hook(cache.clone())
        .hook(progress.clone());

    // 1. Random normal(2000, 1000) data, one write task per chunk.
    let x = Array::<f32>::random_normal(&a.shape, &a.chunks, 42, 2000.0, 1000.0)?;
    // The store is a dataset xarray opens (`xr.open_zarr`): a group with the array `data`
    // over the dimensions `time` and `x`, and consolidated metadata.
    let title = [(
        "title".to_owned(),
        brisk::zarr::serde_json::json!("profiled pipeline"),
    )];
    create_group(&store, "", false, title.into_iter().collect())?;
    let target = create_array::<f32>(
        &store,
        "data",
        &a.shape,
        &a.chunks,
        &ArrayOptions::new()
            .dimension_names(["time", "x"])
            .overwrite(),
    )?;
    write_tasks(&x, &target, &[0, 0], IoOptions::default())?.compute_with_options(&exec, &opts)?;
    consolidate_metadata(&store, "")?;

    // 2. Read it back lazily and reduce: one fused task per chunk, then a tree of combines.
    let x = from_zarr::<f32>(&store, "data")?;
    let mean = (x.powi(2) + x.powi(3)).mean(0);
    let m = mean.compute_with_options(&exec, &opts)?;
    println!(
        "(x**2 + x**3).mean(axis 0): {} values, mean {:.4e}",
        m.len(),
        m.mean().context("non-empty result")?
    );
    println!();
    println!("{}", tasks.summary());
    println!(
        "peak resident memory {:.0} MiB, peak results held {:.1} MiB",
        resources.peak_rss() as f64 / (1024.0 * 1024.0),
        cache.peak_bytes() as f64 / (1024.0 * 1024.0)
    );

    let html = a.out.join("profile.html");
    Report::new(&format!(
        "Zarr pipeline {}×{} float32, chunks {}×{}, {} workers",
        a.shape[0], a.shape[1], a.chunks[0], a.chunks[1], a.workers
    ))
    .tasks(&tasks)
    .resources(&resources)
    .cache(&cache)
    .write(&html)
    .with_context(|| format!("writing {}", html.display()))?;
    let trace = a.out.join("trace.json");
    std::fs::write(&trace, tasks.chrome_trace())
        .with_context(|| format!("writing {}", trace.display()))?;

    let blocks = mean.blocks()?;
    let graph = Graph::new(blocks.iter());
    let dot = graph.to_dot(&DotOptions::default().fill(duration_fill(&graph, &tasks)));
    let dot_path = a.out.join("graph.dot");
    std::fs::write(&dot_path, &dot).with_context(|| format!("writing {}", dot_path.display()))?;
    println!("wrote {}", html.display());
    println!("wrote {}", trace.display());
    println!("wrote {}", dot_path.display());
    match svg(&dot) {
        Ok(s) => {
            let p = a.out.join("graph.svg");
            std::fs::write(&p, s).with_context(|| format!("writing {}", p.display()))?;
            println!("wrote {}", p.display());
        }
        Err(e @ GraphvizError::NotInstalled { .. }) => println!("no graph.svg: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

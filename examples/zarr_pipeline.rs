//! The dask + zarr tutorial workload, end to end (seed 003): create a large float32 array,
//! write it to Zarr with attributes, write an all-zeros array and see how small it is, copy an
//! array chunk by chunk, open one lazily and compute `(x**2 + x**3).mean(axis=0)`.
//!
//! The store is an xarray dataset: `xr.open_zarr(DIR)` shows `data`, `zeros` and `copy` over
//! the dimensions `time` and `x` with their coordinates, and the group's attributes
//! (consolidated metadata, kept current as the later arrays are written).
//!
//! The same program runs on Slurm by changing one address: with `--slurm ADDRESS`, every
//! phase's chunk reads and writes run in worker processes against the store (`--dir` must be
//! on a filesystem the nodes share), and only small values — reduction partials, write
//! acknowledgements — cross the cluster's data plane. The results are bit-identical.
//!
//! ```text
//! cargo run --release -p examples --example zarr_pipeline -- [--shape 8000,7500]
//!     [--chunks 2000,7500] [--dir DIR] [--level 3] [--workers N] [--quick]
//!     [--slurm 'slurm://?store=/shared/brisk-plane&time=00:10:00']
//! ```
//! Prints each phase's time and throughput (uncompressed MB/s) and the peak memory; on
//! Slurm also each phase's job arrays and data plane bytes.

#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use brisk::array::Array;
use brisk::cluster::SlurmExecutor;
use brisk::exec::ThreadedExecutor;
use brisk::graph::Executor;
use brisk::zarr::serde_json::{self, json};
use brisk::zarr::{
    ArrayOptions, Compressor, Dataset, ZarrStore, from_zarr, open_array, open_dataset, to_zarr,
    to_zarr_dataset,
};
use clap::Parser;

struct Args {
    slurm: Option<String>,
    shape: Vec<usize>,
    chunks: Vec<usize>,
    dir: PathBuf,
    level: i32,
    workers: usize,
}

/// The seed's dask + zarr workload end to end: write a random float32 array to Zarr with
/// attributes, a zeros array, a chunk-by-chunk copy, then `(x**2 + x**3).mean(axis 0)`.
#[derive(clap::Parser)]
struct Cli {
    /// Array shape [default: 8000,7500; 800,750 with --quick]
    #[arg(long, value_delimiter = ',', value_name = "ROWS,COLS")]
    shape: Option<Vec<usize>>,
    /// Chunk shape [default: 2000,7500; 200,750 with --quick]
    #[arg(long, value_delimiter = ',', value_name = "ROWS,COLS")]
    chunks: Option<Vec<usize>>,
    /// Directory of the Zarr store [default: brisk-zarr-pipeline in the temporary directory]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// zstd compression level
    #[arg(long, default_value_t = 3)]
    level: i32,
    /// Worker threads [default: every core]
    #[arg(long)]
    workers: Option<usize>,
    /// Small default sizes, for a quick check
    #[arg(long)]
    quick: bool,
    /// Run on Slurm at this address (`slurm://?store=…`) instead of local threads
    #[arg(long, value_name = "ADDRESS")]
    slurm: Option<String>,
}

fn parse() -> anyhow::Result<Args> {
    let cli = Cli::parse();
    let (shape, chunks) = if cli.quick {
        (vec![800, 750], vec![200, 750])
    } else {
        (vec![8000, 7500], vec![2000, 7500])
    };
    let a = Args {
        slurm: cli.slurm,
        shape: cli.shape.unwrap_or(shape),
        chunks: cli.chunks.unwrap_or(chunks),
        dir: cli
            .dir
            .unwrap_or_else(|| std::env::temp_dir().join("brisk-zarr-pipeline")),
        level: cli.level,
        workers: cli.workers.unwrap_or_else(brisk::exec::available_workers),
    };
    if a.shape.len() != 2 || a.chunks.len() != 2 {
        bail!("--shape and --chunks take two numbers each");
    }
    Ok(a)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, proleptic Gregorian).
fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Where the phases run: local threads, or Slurm (whose cost per phase is reported).
enum Runner {
    Threads(ThreadedExecutor),
    Slurm(Box<SlurmExecutor>),
}

impl Runner {
    fn executor(&self) -> &dyn Executor {
        match self {
            Self::Threads(t) => t,
            Self::Slurm(s) => s.as_ref(),
        }
    }

    /// What the cluster has done so far (nothing on threads).
    fn totals(&self) -> Option<brisk::cluster::RunStats> {
        match self {
            Self::Threads(_) => None,
            Self::Slurm(s) => Some(s.totals()),
        }
    }

    /// Prints a phase that started at `t`, when the cluster had done `before`.
    fn report(
        &self,
        phase: &str,
        t: Instant,
        before: Option<brisk::cluster::RunStats>,
        bytes: usize,
    ) {
        let s = t.elapsed().as_secs_f64();
        println!(
            "{phase:<34} {s:>8.3} s  {:>8.0} MB/s",
            bytes as f64 / 1e6 / s
        );
        if let (Self::Slurm(slurm), Some(before)) = (self, before) {
            let r = slurm.totals().since(&before);
            println!(
                "  on Slurm: {} job array(s), {} tasks, {} bytes through the data plane ({:.4} % of the array); \
                 {:.3} s per job array to start, stage barriers {:.3} s ({:.1} % of the wall time)",
                r.jobs,
                r.tasks,
                r.data_plane_bytes(),
                r.data_plane_bytes() as f64 * 100.0 / bytes as f64,
                r.overhead_per_job().as_secs_f64(),
                r.stage_barrier.as_secs_f64(),
                100.0 * r.stage_barrier.as_secs_f64() / s.max(1e-9)
            );
        }
    }
}

fn main() -> anyhow::Result<()> {
    // Started by Slurm as a worker: run the unit and exit.
    brisk::cluster::init();
    let a = parse()?;
    let runner = match &a.slurm {
        Some(address) => Runner::Slurm(Box::new(SlurmExecutor::from_address(address)?)),
        None => Runner::Threads(ThreadedExecutor::new(a.workers)?),
    };
    let exec = runner.executor();
    let bytes = a.shape.iter().product::<usize>() * 4;
    println!(
        "array {:?} float32 ({:.0} MB), chunks {:?}, zstd level {}, workers: {}, in {}",
        a.shape,
        bytes as f64 / 1e6,
        a.chunks,
        a.level,
        a.slurm
            .as_ref()
            .map_or_else(|| a.workers.to_string(), |_| "Slurm".into()),
        a.dir.display()
    );
    let store = ZarrStore::directory(&a.dir)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let opts = ArrayOptions::new()
        .compressor(Compressor::Zstd {
            level: a.level,
            checksum: true,
        })
        .dimension_names(["time", "x"])
        .attribute("history", json!("created by brisk's zarr_pipeline example"))
        .attribute("creation_date", json!(iso8601(now)))
        .attribute("timestamp", json!(now))
        .overwrite();

    // 1. Random normal(2000, 1000) data, written in parallel, one task per chunk, as the
    //    variable `data` of a dataset with coordinates `time` and `x`.
    let x = Array::<f32>::random_normal(&a.shape, &a.chunks, 42, 2000.0, 1000.0)?;
    let time = Array::<f64>::arange(a.shape[0], a.shape[0])?;
    let xs = Array::<f64>::arange(a.shape[1], a.shape[1])?;
    let dataset = Dataset::new()
        .coord("time", &time)
        .coord("x", &xs)
        .variable("data", ["time", "x"], &x)
        .attribute("title", json!("seed 003: dask + zarr, in Brisk"));
    let (t, before) = (Instant::now(), runner.totals());
    to_zarr_dataset(&dataset, &store, "", &opts, exec)?;
    runner.report("write random data", t, before, bytes);
    println!("  on disk: {:.1} MB", store.size_of("data")? as f64 / 1e6);
    let z = open_array(&store, "data")?;
    println!(
        "  attributes: {}",
        serde_json::Value::Object(z.attributes())
    );

    // 2. An all-zeros array: chunks equal to the fill value are not stored.
    let zeros = Array::<f32>::zeros(&a.shape, &a.chunks)?;
    let (t, before) = (Instant::now(), runner.totals());
    to_zarr(&zeros, &store, "zeros", Some(&a.chunks), &opts, exec)?;
    runner.report("write zeros", t, before, bytes);
    println!(
        "  on disk: {} bytes (metadata only)",
        store.size_of("zeros")?
    );

    // 3. Copy one array to another, chunk by chunk.
    let (t, before) = (Instant::now(), runner.totals());
    let src = from_zarr::<f32>(&store, "data")?;
    to_zarr(&src, &store, "copy", Some(&a.chunks), &opts, exec)?;
    runner.report("copy chunk by chunk", t, before, bytes);

    // 4. Open lazily and reduce: (x**2 + x**3).mean(axis 0), fused into one task per chunk.
    let (t, before) = (Instant::now(), runner.totals());
    let x = from_zarr::<f32>(&store, "data")?;
    let m = (x.powi(2) + x.powi(3)).mean(0).compute_with(exec)?;
    runner.report("read + (x**2 + x**3).mean(axis 0)", t, before, bytes);
    let first: Vec<String> = m.iter().take(3).map(|v| format!("{v:.4e}")).collect();
    println!("  result: {} values, first {}", m.len(), first.join(", "));
    // E[x^2 + x^3] for N(2000, 1000): (mu^2 + s^2) + (mu^3 + 3 mu s^2) = 1.4005e10.
    let mean = m.mean().context("non-empty result")?;
    let expected =
        2000f64.powi(2) + 1000f64.powi(2) + 2000f64.powi(3) + 3.0 * 2000.0 * 1000f64.powi(2);
    if (mean / expected - 1.0).abs() > 0.05 {
        bail!("mean of the result {mean:.4e} is far from the expected {expected:.4e}");
    }
    println!("mean of the result: {mean:.17e}");
    let ds = open_dataset(&store, "")?;
    let names: Vec<&str> = ds.variables().keys().map(String::as_str).collect();
    if names != ["copy", "data", "time", "x", "zeros"] || !ds.is_consolidated() {
        bail!(
            "the store's dataset holds {names:?} (consolidated: {})",
            ds.is_consolidated()
        );
    }
    println!(
        "dataset: {names:?}, dims {:?} (xr.open_zarr opens it)",
        ds.dims()
    );
    if let Some(p) = peak_rss_mib() {
        println!("peak resident memory: {p:.0} MiB");
    }
    Ok(())
}

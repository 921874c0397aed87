//! The same program locally or on Slurm (seed 001, aics-dask-utils' DistributedHandler):
//! a reduction over chunks of generated data and a batched map, computed on local threads,
//! or — with `--slurm ADDRESS` — as Slurm job arrays with a shared store as the data plane.
//! Both print the same numbers.
//!
//! ```text
//! cargo run --release -p examples --example cluster_map -- [--quick]
//! cargo run --release -p examples --example cluster_map -- \
//!     --slurm 'slurm://?store=/shared/brisk&partition=debug&cpus=1&time=00:05:00'
//! ```
//! The program calls `brisk::cluster::init()` first: when Slurm starts it as a worker, that
//! runs the requested unit and exits. One `Handler` chosen by address does the rest
//! (`compute` and `batched_compute_map`); only `#[task]` functions travel (by name).

#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use anyhow::Context;
use brisk::exec::Handler;
use brisk::graph::Delayed;
use clap::Parser;

/// Sum, sum of squares and count of chunk `index` of a reproducible sequence.
#[brisk::task]
fn chunk_stats(seed: u64, index: u64, len: u64) -> (f64, f64, u64) {
    let mut x = seed ^ (index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (mut s, mut ss) = (0.0, 0.0);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = (x >> 11) as f64 / (1u64 << 53) as f64;
        s += v;
        ss += v * v;
    }
    (s, ss, len)
}

#[brisk::task]
fn combine(a: (f64, f64, u64), b: (f64, f64, u64)) -> (f64, f64, u64) {
    (a.0 + b.0, a.1 + b.1, a.2 + b.2)
}

/// Collatz stopping times of a batch of numbers.
#[brisk::task]
fn stopping_times(batch: Vec<u64>) -> Vec<u32> {
    batch
        .into_iter()
        .map(|mut n| {
            let mut steps = 0;
            while n > 1 {
                n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
                steps += 1;
            }
            steps
        })
        .collect()
}

/// A reduction and a batched map, on local threads or as Slurm job arrays.
#[derive(clap::Parser)]
struct Cli {
    /// Run on Slurm at this address (`slurm://?store=…&partition=…`) instead of local threads
    #[arg(long, value_name = "ADDRESS")]
    slurm: Option<String>,
    /// Fewer chunks and items
    #[arg(long)]
    quick: bool,
}

fn main() -> anyhow::Result<()> {
    brisk::cluster::init();
    let cli = Cli::parse();
    let slurm = cli.slurm;
    let (chunks, items) = if cli.quick {
        (8, 2_000)
    } else {
        (32u64, 20_000u64)
    };
    // One handler, local threads or Slurm: the rest of the program is the same.
    let handler = Handler::new(slurm.as_deref().unwrap_or("threads"))?;
    println!(
        "running on {}",
        slurm.as_deref().map_or("local threads", |_| "Slurm")
    );

    // A reduction: per-chunk statistics combined in a tree.
    let mut level: Vec<Delayed<(f64, f64, u64)>> =
        (0..chunks).map(|i| chunk_stats(42, i, 100_000)).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| {
                if p.len() == 2 {
                    combine(&p[0], &p[1])
                } else {
                    p[0].clone()
                }
            })
            .collect();
    }
    let total = level.pop().context("at least one chunk")?;
    let (s, ss, n) = handler.compute(&total)?;
    let mean = s / n as f64;
    let std = (ss / n as f64 - mean * mean).sqrt();
    println!("reduction over {chunks} chunks: n = {n}, mean = {mean:.12}, std = {std:.12}");

    // A batched map: one task per batch of 500 numbers, 4 batches per graph.
    let batches: Vec<Vec<u64>> = (1..=items)
        .collect::<Vec<u64>>()
        .chunks(500)
        .map(<[u64]>::to_vec)
        .collect();
    let n_batches = batches.len();
    let times: Vec<u32> = handler
        .batched_compute_map(|b: Vec<u64>| stopping_times(b), batches, 4)?
        .into_iter()
        .flatten()
        .collect();
    let (longest, at) = times
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i + 1))
        .max()
        .context("at least one item")?;
    let sum: u64 = times.iter().map(|&t| u64::from(t)).sum();
    println!(
        "batched map over {items} items in {n_batches} batches: total steps {sum}, longest {longest} (at {at})"
    );
    Ok(())
}

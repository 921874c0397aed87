//! An expensive multi-stage pipeline that resumes where it stopped: every stage is
//! checkpointed to a directory, so a run that is interrupted keeps what it finished, the next
//! run computes only the rest, and a run after a complete one does no work at all.
//!
//! ```text
//! cargo run --release -p examples --example checkpoint_resume -- --dir DIR [--abort-after K]
//!     [--samples N] [--work W]
//! cargo run --release -p examples --example checkpoint_resume -- --demo [--quick]
//! ```
//! `--abort-after K` cancels the compute once K tasks have run (as Ctrl-C or a crash would
//! stop it). `--demo` runs the pipeline three times in a fresh directory — interrupted, then
//! resumed, then once more — and checks that the answers agree and the last run did nothing.

#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use brisk::checkpoint::{DirStore, Storage};
use brisk::graph::{CancelToken, Delayed, Graph, Hooks, TaskEnd, TaskStatus};
use brisk::prelude::*;
use clap::Parser;

/// Simulates one sample: `work` rounds of a small chaotic map (the expensive stage).
#[brisk::task(save)]
fn simulate(seed: u64, work: u64) -> Vec<f64> {
    let mut x = 0.1 + (seed % 997) as f64 / 1000.0;
    let mut out = Vec::with_capacity(64);
    for i in 0..work {
        x = 3.99 * x * (1.0 - x);
        if i % (work / 64).max(1) == 0 && out.len() < 64 {
            out.push(x);
        }
    }
    out
}

/// Summary statistics of one simulation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Stats {
    mean: f64,
    max: f64,
}

/// Summarizes one simulation.
#[brisk::task(save)]
fn summarize(values: &[f64]) -> Stats {
    let n = values.len().max(1) as f64;
    Stats {
        mean: values.iter().sum::<f64>() / n,
        max: values.iter().copied().fold(f64::MIN, f64::max),
    }
}

/// The mean of the per-sample means.
#[brisk::task(save)]
fn combine(stats: Vec<Stats>) -> f64 {
    stats.iter().map(|s| s.mean).sum::<f64>() / stats.len().max(1) as f64
}

fn pipeline(samples: u64, work: u64) -> Delayed<f64> {
    let stats: Delayed<Vec<Stats>> = (0..samples).map(|s| summarize(simulate(s, work))).collect();
    combine(stats)
}

/// Counts tasks that ran and that were loaded; cancels the compute after `abort_after` runs.
struct Counter {
    ran: AtomicUsize,
    loaded: AtomicUsize,
    abort_after: Option<usize>,
    cancel: CancelToken,
}

impl Hooks for Counter {
    fn on_task_end(&self, _: &Graph, event: &TaskEnd<'_>) {
        match event.status {
            TaskStatus::Computed(_) => {
                let n = self.ran.fetch_add(1, Ordering::SeqCst) + 1;
                if self.abort_after.is_some_and(|k| n >= k) {
                    self.cancel.cancel();
                }
            }
            TaskStatus::Loaded(_) => {
                self.loaded.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// One run: returns the answer (if it finished) and how many tasks ran and were loaded.
fn run(
    dir: &std::path::Path,
    samples: u64,
    work: u64,
    abort_after: Option<usize>,
) -> anyhow::Result<(Option<f64>, usize, usize)> {
    let storage = Storage::new(DirStore::new(dir)?);
    let cancel = CancelToken::new();
    let counter = Arc::new(Counter {
        ran: AtomicUsize::new(0),
        loaded: AtomicUsize::new(0),
        abort_after,
        cancel: cancel.clone(),
    });
    let options = storage.options().hook(counter.clone()).cancel_token(cancel);
    let t = Instant::now();
    let result =
        pipeline(samples, work).compute_with_options(brisk::exec::default_executor(), &options);
    let (ran, loaded) = (
        counter.ran.load(Ordering::SeqCst),
        counter.loaded.load(Ordering::SeqCst),
    );
    let secs = t.elapsed().as_secs_f64();
    match result {
        Ok(v) => {
            println!("finished in {secs:.2} s: {ran} tasks ran, {loaded} loaded; answer {v:.12}");
            Ok((Some(v), ran, loaded))
        }
        Err(brisk::graph::Error::Cancelled) => {
            println!(
                "interrupted after {secs:.2} s: {ran} tasks ran (their checkpoints are saved), {loaded} loaded"
            );
            Ok((None, ran, loaded))
        }
        Err(e) => Err(e.into()),
    }
}

/// An expensive pipeline checkpointed stage by stage, so an interrupted run resumes where
/// it stopped.
#[derive(clap::Parser)]
struct Cli {
    /// Checkpoint directory (required unless --demo or --quick)
    #[arg(long, required_unless_present_any = ["demo", "quick"])]
    dir: Option<std::path::PathBuf>,
    /// Cancel the compute once K tasks have run, as Ctrl-C or a crash would
    #[arg(long, value_name = "K")]
    abort_after: Option<usize>,
    /// Samples in the pipeline [default: 48; 12 with --quick]
    #[arg(long)]
    samples: Option<u64>,
    /// Work per task [default: 4000000; 200000 with --quick]
    #[arg(long)]
    work: Option<u64>,
    /// Run three times in a fresh directory (interrupted, resumed, complete) and check them
    #[arg(long)]
    demo: bool,
    /// --demo with small sizes
    #[arg(long)]
    quick: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let demo = cli.demo || cli.quick;
    let abort_after = cli.abort_after;
    let samples = cli.samples.unwrap_or(if cli.quick { 12 } else { 48 });
    let work = cli
        .work
        .unwrap_or(if cli.quick { 200_000 } else { 4_000_000 });
    let dir = cli.dir;
    if !demo {
        let dir = dir.context("--dir DIR is required (or --demo)")?;
        run(&dir, samples, work, abort_after)?;
        return Ok(());
    }
    // The demo: 2 tasks per sample plus one; interrupt after about a third of them.
    let total = 2 * samples as usize + 1;
    let scratch = std::env::temp_dir().join(format!("brisk-resume-{}", std::process::id()));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    println!("run 1 (interrupted after {} tasks):", total / 3);
    let (first, ran1, _) = run(&scratch, samples, work, Some(total / 3))?;
    println!("run 2 (resumed):");
    let (second, ran2, loaded2) = run(&scratch, samples, work, None)?;
    println!("run 3 (everything stored):");
    let (third, ran3, loaded3) = run(&scratch, samples, work, None)?;
    std::fs::remove_dir_all(&scratch)?;
    let answer = second.context("the resumed run must finish")?;
    if first.is_some() || ran1 < total / 3 {
        bail!(
            "run 1 should have been interrupted after {} tasks",
            total / 3
        );
    }
    if ran2 + ran1 < total || ran2 >= total || loaded2 == 0 {
        bail!("run 2 should compute only what run 1 left ({ran1} + {ran2} of {total})");
    }
    if third != Some(answer) || ran3 != 0 || loaded3 != 1 {
        bail!("run 3 should load the final answer and run nothing ({ran3} ran, {loaded3} loaded)");
    }
    // The same answer as computing without any storage.
    let plain = pipeline(samples, work).compute()?;
    if plain.to_bits() != answer.to_bits() {
        bail!("the resumed answer {answer} differs from a plain compute {plain}");
    }
    println!("ok: same answer {answer:.12} every time; the third run did no work");
    Ok(())
}

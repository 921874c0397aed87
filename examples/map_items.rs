//! Map a function over many inputs on local threads (or on the caller's thread for
//! debugging) with one `Handler`, as aics-dask-utils' `DistributedHandler` does for Dask.
//!
//! ```text
//! cargo run --release -p examples --example map_items -- [--address threads|threads://N|sync]
//!     [--items N] [--fail-at K] [--quick]
//! ```
//! The address picks the backend; the rest of the program does not change. `--fail-at K`
//! makes item K fail, to show that the error names the item and later batches never start.

#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use std::time::Instant;

use anyhow::{Context, bail};
use brisk::exec::Handler;
use clap::Parser;

/// A small CPU-bound "analysis" of one input: the number of Collatz steps to reach 1.
fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

/// Map a function over many inputs with one handler, on local threads or the caller's.
#[derive(clap::Parser)]
struct Cli {
    /// The backend: `threads`, `threads://N` or `sync`
    #[arg(long, default_value = "threads")]
    address: String,
    /// How many inputs [default: 5000000; 20000 with --quick]
    #[arg(long)]
    items: Option<u64>,
    /// Make input K fail, to see the error name it and later batches never start
    #[arg(long, value_name = "K")]
    fail_at: Option<u64>,
    /// Fewer inputs
    #[arg(long)]
    quick: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let address = cli.address;
    let items = cli
        .items
        .unwrap_or(if cli.quick { 20_000 } else { 5_000_000 });
    let fail_at = cli.fail_at;
    let handler = Handler::new(&address)?;
    println!(
        "backend `{}` with {} worker(s)",
        handler.address(),
        handler.workers()
    );

    // A few inputs: map + gather, results in input order.
    let futures = handler.map(collatz_steps, [27, 97, 871, 6171])?;
    println!(
        "steps for 27, 97, 871, 6171: {:?}",
        handler.gather(futures)?
    );

    // Many inputs from a lazy iterator: only a batch is in flight at a time.
    let t = Instant::now();
    let batch = handler.default_batch_size();
    let steps = handler.try_batched_map(
        move |n: u64| {
            if Some(n) == fail_at {
                return Err(format!("input {n} is corrupt"));
            }
            Ok(collatz_steps(n))
        },
        1..=items,
        batch,
    );
    match steps {
        Ok(steps) => {
            // The first input with the most steps (later ones may tie it).
            let best = *steps.iter().max().context("at least one item")?;
            let n = steps
                .iter()
                .position(|&s| s == best)
                .context("the maximum is in the list")? as u64
                + 1;
            println!(
                "{items} inputs in {:.2?} (batches of {batch}): longest is {n} with {best} steps",
                t.elapsed()
            );
            // The check: the same answer from a plain loop on this thread.
            let (want_steps, want_n) =
                (1..=items)
                    .map(|i| (collatz_steps(i), i))
                    .fold(
                        (0, 0),
                        |(bs, bn), (s, i)| if s > bs { (s, i) } else { (bs, bn) },
                    );
            if (n, best) != (want_n, want_steps) {
                bail!(
                    "wrong answer: below {} the longest chain starts at {want_n} \
                     ({want_steps} steps), not {n} ({best})",
                    items + 1
                );
            }
        }
        Err(e) => {
            // Items are numbered by position in the input (0-based): input n is item n - 1.
            println!("stopped: {}", brisk::graph::chain(&e));
            if fail_at.is_none() {
                return Err(e.into());
            }
        }
    }
    handler.close();
    Ok(())
}

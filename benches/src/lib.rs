//! Scenarios shared by the criterion benchmarks and the Dask comparison binary: the same
//! trivial task graphs and futures workloads, built the same way.

pub mod limit;

use brisk::exec::Handler;
use brisk::graph::{Delayed, TaskSpec};

/// `n` independent trivial tasks (`x + 1`) summed by one task.
#[must_use]
pub fn indep(n: usize) -> Delayed<u64> {
    let inc = TaskSpec::new("inc").pure();
    let parts: Delayed<Vec<u64>> = (0..n as u64)
        .map(|i| inc.call(|x: u64| x + 1, (i,)))
        .collect();
    TaskSpec::new("sum")
        .pure()
        .call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

/// A linear chain of `n` trivial tasks.
#[must_use]
pub fn chain(n: usize) -> Delayed<u64> {
    let inc = TaskSpec::new("inc").pure();
    let mut v = inc.call(|x: u64| x + 1, (0u64,));
    for _ in 1..n {
        v = inc.call(|x: u64| x + 1, (v,));
    }
    v
}

/// A binary tree reduction (`a + b`) of `n` trivial leaves.
#[must_use]
pub fn tree(n: usize) -> Delayed<u64> {
    let leaf = TaskSpec::new("leaf").pure();
    let add = TaskSpec::new("add").pure();
    let mut level: Vec<Delayed<u64>> = (0..n as u64).map(|i| leaf.call(|x: u64| x, (i,))).collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        let mut it = level.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => add.call(|x: u64, y: u64| x + y, (a, b)),
                None => a,
            });
        }
        level = next;
    }
    level
        .pop()
        .unwrap_or_else(|| leaf.call(|x: u64| x, (0u64,)))
}

/// The expected result of each graph scenario, to check every run.
#[must_use]
pub fn expected(shape: &str, n: usize) -> u64 {
    let n = n as u64;
    match shape {
        "indep" => n * (n + 1) / 2,
        "chain" => n,
        "tree" => n.saturating_sub(1) * n / 2,
        _ => 0,
    }
}

/// `map` + `gather` of `x + 1` over `0..n`.
///
/// # Errors
/// The handler's error.
pub fn futures_map(h: &Handler, n: usize) -> Result<Vec<u64>, brisk::exec::HandlerError> {
    h.gather(h.map(|x: u64| x + 1, 0..n as u64)?)
}

/// `batched_map` of `x + 1` over `0..n` with the handler's default batch size.
///
/// # Errors
/// The handler's error.
pub fn futures_batched(h: &Handler, n: usize) -> Result<Vec<u64>, brisk::exec::HandlerError> {
    h.batched_map(|x: u64| x + 1, 0..n as u64, None)
}

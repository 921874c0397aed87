//! The two phases of a compute before it runs, each timed alone, for trivial task graphs of
//! 10k, 100k and 1M tasks shaped as an independent fan-in, a linear chain and a binary tree
//! reduction: building the lazy values, keys included (`lazy_build`), and materializing the
//! `Graph` from them: culling, merging equal keys, ordering (`graph_pass`). What a phase built
//! is dropped outside its timing.
//!
//! `cargo bench -p brisk-graph --bench build [-- <group>/<shape>/<n>]` (criterion reports time
//! per graph and tasks/s). The run is `cargo bench -p benches --bench exec`.

use std::time::Duration;

use brisk_graph::{Delayed, Graph, TaskSpec};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// `n` independent pure tasks collected by one task: n + 2 nodes.
fn fan_in(n: usize) -> Delayed<u64> {
    let leaf = TaskSpec::new("leaf").pure();
    let parts: Delayed<Vec<u64>> = (0..n as u64)
        .map(|i| leaf.call(|x: u64| x + 1, (i,)))
        .collect();
    TaskSpec::new("sum")
        .pure()
        .call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

/// A chain of `n` pure tasks.
fn chain(n: usize) -> Delayed<u64> {
    let step = TaskSpec::new("step").pure();
    let mut v = step.call(|x: u64| x + 1, (0u64,));
    for _ in 1..n {
        v = step.call(|x: u64| x + 1, (v,));
    }
    v
}

/// `n / 2` leaves reduced pairwise: about `n` nodes in all.
fn tree(n: usize) -> Delayed<u64> {
    let leaf = TaskSpec::new("leaf").pure();
    let add = TaskSpec::new("add").pure();
    let mut level: Vec<Delayed<u64>> = (0..(n / 2) as u64)
        .map(|i| leaf.call(|x: u64| x, (i,)))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| match p {
                [a, b] => add.call(|x: u64, y: u64| x + y, (a, b)),
                [a] => a.clone(),
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level.pop().expect("at least one leaf")
}

fn bench(c: &mut Criterion) {
    type Shape = fn(usize) -> Delayed<u64>;
    let shapes: [(&str, Shape); 3] = [("fan_in", fan_in), ("chain", chain), ("tree", tree)];
    for (name, build) in shapes {
        let mut group = c.benchmark_group(format!("lazy_build/{name}"));
        configure(&mut group);
        for n in SIZES {
            group.throughput(Throughput::Elements(n as u64));
            group.measurement_time(measurement_time(n));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                b.iter_with_large_drop(|| build(n));
            });
        }
        group.finish();
        let mut group = c.benchmark_group(format!("graph_pass/{name}"));
        configure(&mut group);
        for n in SIZES {
            group.throughput(Throughput::Elements(n as u64));
            group.measurement_time(measurement_time(n));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                // Built only when this benchmark runs (not for ones a filter skips).
                let out = build(n);
                b.iter_with_large_drop(|| Graph::new([&out]));
            });
        }
        group.finish();
    }
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
}

/// Enough time for ten samples of the largest graphs.
fn measurement_time(n: usize) -> Duration {
    Duration::from_secs(if n >= 1_000_000 { 20 } else { 3 })
}

criterion_group!(benches, bench);
criterion_main!(benches);

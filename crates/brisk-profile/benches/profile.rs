//! Per-task cost of the profilers: 100 000 trivial tasks on the threaded executor without
//! hooks, with a `Profiler` (target: under 200 ns per task of overhead), with a hidden
//! `ProgressBar` (counting only) and with a `CacheProfiler`.
//!
//! `cargo bench -p brisk-profile --bench profile`

use std::hint::black_box;
use std::sync::Arc;

use brisk_exec::ThreadedExecutor;
use brisk_graph::{ComputeOptions, Delayed, Graph, TaskSpec};
use brisk_profile::{CacheProfiler, Profiler, ProgressBar};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N: u64 = 100_000;

fn tasks() -> Delayed<u64> {
    let leaf = TaskSpec::new("leaf").pure();
    let parts: Delayed<Vec<u64>> = (0..N).map(|i| leaf.call(|x: u64| x + 1, (i,))).collect();
    TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

fn bench(c: &mut Criterion) {
    let exec = ThreadedExecutor::new(2).expect("a pool");
    let out = tasks();
    let graph = Arc::new(Graph::new([&out]));
    let mut g = c.benchmark_group("profiler");
    g.throughput(Throughput::Elements(N));
    g.sample_size(20);
    let plain = ComputeOptions::new().context();
    g.bench_function("no_hooks", |b| {
        b.iter(|| black_box(brisk_graph::Executor::execute(&exec, &graph, &plain).expect("run")));
    });
    g.bench_function("profiler", |b| {
        b.iter(|| {
            let p = Arc::new(Profiler::new());
            let ctx = ComputeOptions::new().hook(p).context();
            black_box(brisk_graph::Executor::execute(&exec, &graph, &ctx).expect("run"))
        });
    });
    g.bench_function("progress_bar", |b| {
        b.iter(|| {
            let p = Arc::new(ProgressBar::hidden());
            let ctx = ComputeOptions::new().hook(p).context();
            black_box(brisk_graph::Executor::execute(&exec, &graph, &ctx).expect("run"))
        });
    });
    g.bench_function("cache_profiler", |b| {
        b.iter(|| {
            let p = Arc::new(CacheProfiler::new());
            let ctx = ComputeOptions::new().hook(p).context();
            black_box(brisk_graph::Executor::execute(&exec, &graph, &ctx).expect("run"))
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

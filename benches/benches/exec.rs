//! Per-task cost of each phase of a compute, for N independent tasks summed by one, a chain
//! of N and a binary tree of N leaves: building the lazy values (`lazy_build`), materializing
//! the `Graph` from them (`graph_pass`) and running it on the threaded executor
//! (`threaded_run`, graph built once, outside the timing); the futures API over 1M items.
//! Dropping what a phase built is left out of its timing. `cargo bench -p benches --bench
//! exec [-- <group>]`; the comparison harness (`cargo xtask bench`) times the same phases
//! once per repetition, beside the limits and Dask.

use std::sync::Arc;
use std::time::Duration;

use benches::{chain, expected, futures_batched, futures_map, indep, tree};
use brisk::exec::{Handler, ThreadedExecutor, available_workers};
use brisk::graph::{ComputeOptions, Delayed, Executor, Graph};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

type Shape = fn(usize) -> Delayed<u64>;

const SHAPES: [(&str, Shape); 3] = [("indep", indep), ("chain", chain), ("tree", tree)];
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// Enough time for ten samples of the largest graphs.
fn measurement_time(n: usize) -> Duration {
    Duration::from_secs(if n >= 1_000_000 { 15 } else { 3 })
}

fn build_phases(c: &mut Criterion) {
    for (name, build) in SHAPES {
        let mut group = c.benchmark_group(format!("lazy_build/{name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
        for n in SIZES {
            let tasks = Graph::new([&build(n)]).len();
            group.throughput(Throughput::Elements(tasks as u64));
            group.measurement_time(measurement_time(n));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                b.iter_with_large_drop(|| build(n));
            });
        }
        group.finish();
        let mut group = c.benchmark_group(format!("graph_pass/{name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
        for n in SIZES {
            let out = build(n);
            let tasks = Graph::new([&out]).len();
            group.throughput(Throughput::Elements(tasks as u64));
            group.measurement_time(measurement_time(n));
            group.bench_with_input(BenchmarkId::from_parameter(n), &out, |b, out| {
                b.iter_with_large_drop(|| {
                    let g = Graph::new([out]);
                    assert_eq!(g.len(), tasks);
                    g
                });
            });
        }
        group.finish();
    }
}

fn graphs(c: &mut Criterion) {
    let exec = ThreadedExecutor::new(available_workers()).expect("threads start");
    let ctx = ComputeOptions::new().context();
    for (name, build) in SHAPES {
        let mut group = c.benchmark_group(format!("threaded_run/{name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
        for n in SIZES {
            let out = build(n);
            let graph = Arc::new(Graph::new([&out]));
            group.throughput(Throughput::Elements(graph.len() as u64));
            group.measurement_time(measurement_time(n));
            group.bench_with_input(BenchmarkId::from_parameter(n), &graph, |b, g| {
                b.iter(|| {
                    let r = exec.execute(g, &ctx).expect("runs");
                    let v = r.values[0]
                        .as_ref()
                        .and_then(|v| v.downcast_ref::<u64>().copied());
                    assert_eq!(v, Some(expected(name, n)));
                });
            });
        }
        group.finish();
    }
}

fn futures(c: &mut Criterion) {
    let h = Handler::local().expect("threads start");
    let n = 1_000_000;
    let mut group = c.benchmark_group("futures");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(n as u64));
    group.bench_function("map_gather/1000000", |b| {
        b.iter(|| assert_eq!(futures_map(&h, n).expect("runs").len(), n));
    });
    group.bench_function("batched_map/1000000", |b| {
        b.iter(|| assert_eq!(futures_batched(&h, n).expect("runs").len(), n));
    });
    group.finish();
}

criterion_group!(benches, build_phases, graphs, futures);
criterion_main!(benches);

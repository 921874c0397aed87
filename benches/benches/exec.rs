//! Per-task cost of the threaded executor (graph built once, outside the timing) for N
//! independent tasks summed by one, a chain of N and a binary tree of N leaves; the futures
//! API over 1M items. `cargo bench -p benches --bench exec`. The phases before the run
//! (building the lazy values, materializing the `Graph`) are timed alone by `cargo bench -p
//! brisk-graph --bench build`.

use std::sync::Arc;
use std::time::Duration;

use benches::{chain, expected, futures_batched, futures_map, indep, tree};
use brisk::exec::{Handler, ThreadedExecutor, available_workers};
use brisk::graph::{ComputeOptions, Delayed, Executor, Graph};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

type Shape = fn(usize) -> Delayed<u64>;

fn graphs(c: &mut Criterion) {
    let exec = ThreadedExecutor::new(available_workers()).expect("threads start");
    let ctx = ComputeOptions::new().context();
    let shapes: [(&str, Shape); 3] = [("indep", indep), ("chain", chain), ("tree", tree)];
    for (name, build) in shapes {
        let mut group = c.benchmark_group(format!("threaded_run/{name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
        for n in [10_000, 100_000, 1_000_000] {
            let out = build(n);
            let graph = Arc::new(Graph::new([&out]));
            group.throughput(Throughput::Elements(graph.len() as u64));
            group.measurement_time(Duration::from_secs(if n >= 1_000_000 { 15 } else { 3 }));
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

criterion_group!(benches, graphs, futures);
criterion_main!(benches);

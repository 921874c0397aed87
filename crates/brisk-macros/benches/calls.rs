//! Building lazy values through `#[task]` functions against the same tasks through a
//! `TaskSpec` held by the caller (the floor: one spec, many calls): 100 000 calls shaped as a
//! chain, and as checkpointed, retried tasks.
//!
//! `cargo bench -p brisk-macros --bench calls` (criterion reports time per 100 000 calls).

use std::hint::black_box;
use std::time::Duration;

use brisk_graph::{Delayed, TaskSpec};
use brisk_macros::task;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CALLS: u64 = 100_000;

#[task]
fn step(x: u64) -> u64 {
    x + 1
}

#[task(save, retries = 2)]
fn saved_step(x: u64) -> u64 {
    x + 1
}

fn task_chain() -> Delayed<u64> {
    let mut v = step(0);
    for _ in 1..CALLS {
        v = step(v);
    }
    v
}

fn saved_chain() -> Delayed<u64> {
    let mut v = saved_step(0);
    for _ in 1..CALLS {
        v = saved_step(v);
    }
    v
}

fn spec_chain() -> Delayed<u64> {
    let spec = TaskSpec::new("step").pure();
    let mut v = spec.call(|x: u64| x + 1, (0u64,));
    for _ in 1..CALLS {
        v = spec.call(|x: u64| x + 1, (v,));
    }
    v
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("calls");
    group
        .throughput(Throughput::Elements(CALLS))
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("task_fn/chain", |b| b.iter(|| black_box(task_chain())));
    group.bench_function("task_fn/save_retries/chain", |b| {
        b.iter(|| black_box(saved_chain()));
    });
    group.bench_function("task_spec/chain", |b| b.iter(|| black_box(spec_chain())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Chunk-level costs of brisk-array: generating random chunks and evaluating a fused
//! reduction over them (`cargo bench -p brisk-array --bench array`).

use brisk_array::Array;
use brisk_exec::ThreadedExecutor;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn random(c: &mut Criterion) {
    let exec = ThreadedExecutor::new(1).expect("a one-worker pool");
    let mut g = c.benchmark_group("random");
    let n = 1000 * 1000;
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("normal_f32_1000x1000", |b| {
        b.iter(|| {
            Array::<f32>::random_normal(&[1000, 1000], &[1000, 1000], 42, 2000.0, 1000.0)
                .and_then(|a| a.compute_with(&exec))
                .expect("generates")
        });
    });
    g.bench_function("uniform_f32_1000x1000", |b| {
        b.iter(|| {
            Array::<f32>::random_uniform(&[1000, 1000], &[1000, 1000], 42, 0.0, 1.0)
                .and_then(|a| a.compute_with(&exec))
                .expect("generates")
        });
    });
    g.finish();
}

fn reduction(c: &mut Criterion) {
    let exec = ThreadedExecutor::new(1).expect("a one-worker pool");
    let mut g = c.benchmark_group("reduction");
    let n = 1000 * 1000;
    g.throughput(Throughput::Elements(n as u64));
    let x = Array::<f32>::random_normal(&[1000, 1000], &[1000, 1000], 42, 2000.0, 1000.0)
        .and_then(|a| a.as_leaf())
        .expect("builds");
    let block = x.compute_with(&exec).expect("computes");
    let x = Array::from_ndarray(&block, &[1000, 1000]).expect("builds");
    g.bench_function("x2_plus_x3_mean0_1000x1000", |b| {
        b.iter(|| {
            (x.powi(2) + x.powi(3))
                .mean(0)
                .compute_with(&exec)
                .expect("computes")
        });
    });
    g.finish();
}

criterion_group!(benches, random, reduction);
criterion_main!(benches);

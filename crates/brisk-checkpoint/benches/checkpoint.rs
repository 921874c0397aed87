//! Checkpoint costs.
//!
//! - `load_hit/dir`: per-task cost of a compute whose 1000 small checkpointed tasks are all
//!   stored in a directory store (in page cache): graph build with `contains`, then read +
//!   zstd + JSON decode of each (target: under 20 µs per task).
//! - `codec/*`: encode + decode of a 64 MiB `f64` array through npy + zstd (level 3) and
//!   npy + zstd + AES-256-GCM, beside raw zstd compress + decompress of the same bytes at the
//!   same level (target: at least 80 % of raw zstd throughput), and AES-256-GCM alone over the
//!   compressed bytes (the part of the encrypted chain no codec choice can remove).
//!
//! `cargo bench -p brisk-checkpoint --bench checkpoint`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use brisk_checkpoint::{DirStore, Encoder, Encrypter, Serializer, Storage};
use brisk_exec::SequentialExecutor;
use brisk_graph::{Delayed, Graph, SaveSpec, TaskSpec, Value};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array1;

const TASKS: usize = 1000;

fn small_tasks() -> Delayed<Vec<u64>> {
    let spec = TaskSpec::new("small").pure();
    (0..TASKS as u64)
        .map(|i| spec.call(|x: u64| x * 2, (i,)).checkpointed())
        .collect()
}

fn load_hit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let storage = Storage::new(DirStore::new(dir.path()).expect("a directory store"));
    let all = small_tasks();
    let opts = storage.options();
    // Fill the store once.
    all.compute_with_options(&SequentialExecutor, &opts)
        .expect("the first compute");
    let mut g = c.benchmark_group("load_hit");
    g.throughput(Throughput::Elements(TASKS as u64));
    g.bench_function("dir", |b| {
        b.iter(|| {
            let v = all
                .compute_with_options(&SequentialExecutor, &opts)
                .expect("a loaded compute");
            black_box(v)
        });
    });
    g.finish();
}

fn spec_of_array() -> SaveSpec {
    let d = TaskSpec::new("a")
        .pure()
        .call(|| Array1::<f64>::zeros(1), ())
        .checkpointed();
    let g = Graph::new([&d]);
    *g.node(g.outputs()[0])
        .save_spec()
        .expect("a checkpointed node")
}

fn spec_of_bytes() -> SaveSpec {
    let d = TaskSpec::new("b")
        .pure()
        .call(Vec::<u8>::new, ())
        .checkpointed();
    let g = Graph::new([&d]);
    *g.node(g.outputs()[0])
        .save_spec()
        .expect("a checkpointed node")
}

fn codec(c: &mut Criterion) {
    // 64 MiB of smooth data with noise in the low bits: compressible, like real measurements.
    let n = 64 << 17;
    let a = Array1::from_shape_fn(n, |i| {
        let x = i as f64 * 1e-4;
        x.sin() * 1000.0 + f64::from((i as u32).wrapping_mul(2_654_435_761) >> 20) * 1e-3
    });
    let value: Value = Arc::new(a);
    let spec = spec_of_array();
    let bytes_len = (n * 8) as u64;
    let raw: Vec<u8> = value
        .downcast_ref::<Array1<f64>>()
        .and_then(|a| a.as_slice())
        .map(|s| s.iter().flat_map(|x| x.to_le_bytes()).collect())
        .expect("a contiguous array");
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(bytes_len));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(12));
    g.bench_function("raw_zstd3", |b| {
        b.iter(|| {
            let z = zstd::bulk::compress(&raw, 3).expect("compress");
            black_box(zstd::bulk::decompress(&z, raw.len()).expect("decompress"))
        });
    });
    // AES-256-GCM alone over the compressed bytes: the floor the encrypted chain cannot beat.
    let compressed = zstd::bulk::compress(&raw, 3).expect("compress");
    let enc_only = Encoder::new()
        .no_serializer()
        .no_compressor()
        .encrypter(Encrypter::from_key([9; 32]));
    let bytes_spec = spec_of_bytes();
    let compressed_value: Value = Arc::new(compressed);
    g.bench_function("aes256gcm_of_zstd3_output", |b| {
        b.iter(|| {
            let e = enc_only
                .encode(&bytes_spec, &compressed_value, "a/1")
                .expect("encrypt");
            black_box(enc_only.decode(&bytes_spec, &e, "a/1").expect("decrypt"))
        });
    });
    let encoders = [
        ("npy_zstd3", Encoder::new().serializer(Serializer::Npy)),
        (
            "npy_zstd3_aes256gcm",
            Encoder::new()
                .serializer(Serializer::Npy)
                .encrypter(Encrypter::from_key([9; 32])),
        ),
    ];
    for (name, enc) in encoders {
        g.bench_function(name, |b| {
            b.iter(|| {
                let e = enc.encode(&spec, &value, "a/1").expect("encode");
                black_box(enc.decode(&spec, &e, "a/1").expect("decode"))
            });
        });
    }
    g.finish();
}

criterion_group!(benches, load_hit, codec);
criterion_main!(benches);

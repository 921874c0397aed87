//! Reading 1 000 chunks of one file through the guard (one open per compute, positioned
//! reads from the shared handle) vs opening the file in every chunk task.
//!
//! `cargo bench -p brisk-guard --bench guard`

use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use brisk_exec::ThreadedExecutor;
use brisk_graph::{Delayed, TaskSpec};
use brisk_guard::FileResource;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CHUNKS: u64 = 1000;
const CHUNK: usize = 4096;

fn guarded(file: &Arc<FileResource>) -> Delayed<u64> {
    let spec = TaskSpec::new("read");
    let parts: Delayed<Vec<u64>> = (0..CHUNKS)
        .map(|i| {
            let f = Arc::clone(file);
            spec.try_call(
                move |i: u64| {
                    f.read_exact_at(i * CHUNK as u64, CHUNK)
                        .map(|b| b.iter().map(|&x| u64::from(x)).sum::<u64>())
                },
                (i,),
            )
            .requiring(file.clone())
        })
        .collect();
    TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

fn per_chunk_open(path: &std::path::Path) -> Delayed<u64> {
    let spec = TaskSpec::new("open-and-read");
    let parts: Delayed<Vec<u64>> = (0..CHUNKS)
        .map(|i| {
            let p = path.to_path_buf();
            spec.try_call(
                move |i: u64| -> std::io::Result<u64> {
                    let mut f = std::fs::File::open(&p)?;
                    f.seek(SeekFrom::Start(i * CHUNK as u64))?;
                    let mut b = vec![0u8; CHUNK];
                    f.read_exact(&mut b)?;
                    Ok(b.iter().map(|&x| u64::from(x)).sum())
                },
                (i,),
            )
        })
        .collect();
    TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("data.bin");
    let bytes: Vec<u8> = (0..CHUNKS as usize * CHUNK)
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(&path, &bytes).expect("the data file");
    let exec = ThreadedExecutor::new(2).expect("a pool");
    let file = FileResource::new(&path);
    let (g, p) = (guarded(&file), per_chunk_open(&path));
    assert_eq!(
        g.compute_with(&exec).expect("guarded"),
        p.compute_with(&exec).expect("per chunk")
    );
    let mut group = c.benchmark_group("read_1000_chunks");
    group.throughput(Throughput::Elements(CHUNKS));
    group.bench_function("guarded_one_open", |b| {
        b.iter(|| black_box(g.compute_with(&exec).expect("guarded")));
    });
    group.bench_function("open_per_chunk", |b| {
        b.iter(|| black_box(p.compute_with(&exec).expect("per chunk")));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

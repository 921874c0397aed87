//! Dynamic sources with the rest of the stack: checkpoints make a rerun process only new or
//! previously failed inputs; the progress bar shows open totals until the source is sealed.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use brisk::checkpoint::{MemoryStore, Storage};
use brisk::exec::ThreadedExecutor;
use brisk::exec::source::{Source, SourceOptions, Status};
use brisk::profile::ProgressBar;

#[derive(Debug, Clone, serde::Serialize)]
struct File(String);

/// The test's instruments, passed to the read as a handle (left out of the keys).
type Handles = (Arc<AtomicBool>, Arc<AtomicUsize>);

fn run(
    storage: &Storage,
    files: &[&str],
    broken: &Arc<AtomicBool>,
    runs: &Arc<AtomicUsize>,
) -> brisk::exec::source::SourceOutput<File, u64> {
    let (source, feed) = Source::<File>::new("files", 16);
    for f in files {
        feed.push(File((*f).to_owned())).unwrap();
    }
    feed.seal().unwrap();
    let handles = (Arc::clone(broken), Arc::clone(runs));
    source
        .try_map_using("read", handles, |f: File, (broken, runs): Handles| {
            runs.fetch_add(1, Ordering::SeqCst);
            if f.0 == "c" && broken.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("c is not readable yet"));
            }
            Ok(f.0.len() as u64 * 10)
        })
        .then(|v| v.checkpointed())
        .run(
            &ThreadedExecutor::new(2).unwrap(),
            &SourceOptions::new().tolerate().compute(storage.options()),
        )
        .unwrap()
}

#[test]
fn a_rerun_processes_only_new_and_previously_failed_inputs() {
    let storage = Storage::new(MemoryStore::new());
    let broken = Arc::new(AtomicBool::new(true));
    let runs = Arc::new(AtomicUsize::new(0));
    let first = run(&storage, &["a", "b", "c", "d"], &broken, &runs);
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!(first.report.succeeded(), 3);
    assert_eq!(first.report.failed(), 1);

    broken.store(false, Ordering::SeqCst);
    runs.store(0, Ordering::SeqCst);
    let second = run(&storage, &["d", "c", "e", "b", "a", "f"], &broken, &runs);
    // c failed before, e and f are new: only those three run.
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(second.report.loaded(), 3);
    assert_eq!(second.report.succeeded(), 6);
    let computed: Vec<&str> = second
        .report
        .partitions
        .iter()
        .filter(|p| p.status == Status::Computed)
        .map(|p| p.descriptor.as_ref().unwrap().0.as_str())
        .collect();
    let mut computed = computed;
    computed.sort_unstable();
    assert_eq!(computed, ["c", "e", "f"]);
    assert_eq!(second.results.iter().map(|(_, v)| v).sum::<u64>(), 60);
}

#[test]
fn the_progress_bar_is_open_until_the_source_is_sealed() {
    let bar = Arc::new(ProgressBar::hidden());
    let (source, feed) = Source::<u32>::new("numbers", 4);
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let b = Arc::clone(&bar);
    let producer = std::thread::spawn(move || {
        feed.push(1).unwrap();
        feed.push(2).unwrap();
        // Wait until both partitions are counted, then look at the bar before sealing.
        while b.done() < 2 * 2 {
            std::thread::yield_now();
        }
        seen_tx.send((b.is_open(), b.message())).unwrap();
        feed.push(3).unwrap();
        feed.seal().unwrap();
    });
    let opts = SourceOptions::new().compute(brisk::graph::ComputeOptions::new().hook(bar.clone()));
    let (sum, _) = source
        .map("double", |x: u32| x * 2)
        .fold(&ThreadedExecutor::new(2).unwrap(), &opts, 0, |a, x| a + x)
        .unwrap();
    producer.join().unwrap();
    assert_eq!(sum, 12);
    let (open, message) = seen_rx.recv().unwrap();
    assert!(open);
    assert_eq!(message, "4/4 tasks (open)");
    assert!(!bar.is_open());
    assert_eq!((bar.done(), bar.known()), (6, 6));
    assert_eq!(bar.message(), "6/6 tasks");
}

/// A run's size, known only when its descriptor arrives.
#[derive(Debug, Clone, serde::Serialize)]
struct Run {
    seed: u64,
    rows: usize,
}

#[test]
fn partitions_can_be_chunked_arrays_sized_by_their_descriptor() {
    use brisk::array::Array;
    let (source, feed) = Source::<Run>::new("runs", 8);
    for (seed, rows) in [(3, 400), (1, 100), (2, 250)] {
        feed.push(Run { seed, rows }).unwrap();
    }
    // A run whose size cannot make an array fails its partition, not the build of others.
    feed.push(Run { seed: 9, rows: 0 }).unwrap();
    feed.seal().unwrap();
    let out = source
        .build(|r: &Run| {
            if r.rows == 0 {
                return Err(format!("run {} has no rows", r.seed));
            }
            let x = Array::<f64>::random_normal(&[r.rows, 64], &[50, 64], r.seed, 10.0, 2.0)
                .map_err(|e| e.to_string())?;
            x.mean(0).to_delayed().map_err(|e| e.to_string())
        })
        .map("grand-mean", |m: ndarray::ArrayD<f64>| {
            m.mean().unwrap_or(f64::NAN)
        })
        .run(
            &ThreadedExecutor::new(2).unwrap(),
            &SourceOptions::new().tolerate(),
        )
        .unwrap();
    assert_eq!(out.results.len(), 3);
    for (_, m) in &out.results {
        assert!((m - 10.0).abs() < 0.2, "{m}");
    }
    let bad = out
        .report
        .partitions
        .iter()
        .find(|p| p.status == Status::Failed)
        .unwrap();
    assert!(bad.error.as_deref().unwrap().contains("run 9 has no rows"));
    assert!(bad.error.as_deref().unwrap().contains("runs-build"));
}

/// Sums of the lengths of `files` above `threshold`, with checkpoints in `storage`.
fn above(storage: &Storage, files: &[&str], threshold: usize) -> u64 {
    let (source, feed) = Source::<File>::new("files", 16);
    for f in files {
        feed.push(File((*f).to_owned())).unwrap();
    }
    feed.seal().unwrap();
    source
        .map("length", |f: File| f.0.len())
        .map_with("above", threshold, |n: usize, t: usize| {
            u64::from(n > t) * n as u64
        })
        .then(|v| v.checkpointed())
        .run(
            &ThreadedExecutor::new(2).unwrap(),
            &SourceOptions::new().compute(storage.options()),
        )
        .unwrap()
        .results
        .iter()
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn a_changed_parameter_recomputes_and_never_loads_the_old_result() {
    let files = ["a", "bb", "ccc", "dddd"];
    let storage = Storage::new(MemoryStore::new());
    assert_eq!(above(&storage, &files, 1), 9);
    // The same checkpoints, another threshold: what a fresh run gives, not the old sums.
    assert_eq!(above(&storage, &files, 3), 4);
    assert_eq!(above(&Storage::new(MemoryStore::new()), &files, 3), 4);
    // And back: the first run's checkpoints are found again.
    assert_eq!(above(&storage, &files, 1), 9);
}

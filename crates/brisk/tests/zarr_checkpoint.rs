//! Checkpoints of values computed from stored Zarr arrays: with pinned reads a rerun on
//! unchanged data loads the checkpoint without reading a chunk, and a changed chunk makes it
//! compute again from the new data — never a stale result.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use brisk::array::Array;
use brisk::checkpoint::{DirStore, Storage};
use brisk::exec::ThreadedExecutor;
use brisk::graph::{Graph, Hooks, TaskEnd, TaskStatus};
use brisk::zarr::{
    ArrayOptions, IoOptions, ZarrStore, from_zarr_with, open_array, to_zarr, write_tasks,
};
use ndarray::{ArrayD, IxDyn};

/// Counts the tasks a compute ran and the values it loaded.
#[derive(Default)]
struct Counts {
    computed: AtomicUsize,
    loaded: AtomicUsize,
}

impl Hooks for Counts {
    fn on_task_end(&self, _graph: &Graph, event: &TaskEnd<'_>) {
        match event.status {
            TaskStatus::Computed(_) => self.computed.fetch_add(1, Ordering::SeqCst),
            TaskStatus::Loaded(_) => self.loaded.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
    }
}

/// `(x² + x³).mean(0)` of the array at `/x`, checkpointed: the result, tasks run, loaded.
fn mean(store: &ZarrStore, storage: &Storage, io: IoOptions) -> (ArrayD<f64>, usize, usize) {
    let x = from_zarr_with::<f64>(store, "/x", io).unwrap();
    let m = (x.powi(2) + x.powi(3)).mean(0).checkpointed().unwrap();
    let counts = Arc::new(Counts::default());
    let options = storage
        .options()
        .hook(Arc::clone(&counts) as Arc<dyn Hooks>);
    let exec = ThreadedExecutor::new(2).unwrap();
    let v = m.compute_with_options(&exec, &options).unwrap();
    (
        v,
        counts.computed.load(Ordering::SeqCst),
        counts.loaded.load(Ordering::SeqCst),
    )
}

/// Integer data, eight rows: the sums and the mean are exact in any order.
fn expected(x: &ArrayD<f64>) -> ArrayD<f64> {
    x.mapv(|v| v * v + v * v * v)
        .mean_axis(ndarray::Axis(0))
        .unwrap()
}

#[test]
fn a_checkpoint_of_a_pinned_read_is_found_until_a_chunk_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path().join("data.zarr")).unwrap();
    let storage = Storage::new(DirStore::new(dir.path().join("checkpoints")).unwrap());
    let exec = ThreadedExecutor::new(2).unwrap();
    let mut x = ArrayD::from_shape_fn(IxDyn(&[8, 6]), |i| (i[0] * 6 + i[1]) as f64);
    let a = Array::from_ndarray(&x, &[2, 3]).unwrap();
    to_zarr(&a, &store, "/x", None, &ArrayOptions::new(), &exec).unwrap();
    let pinned = IoOptions::new().pinned(true);

    let (first, ran, loaded) = mean(&store, &storage, pinned);
    assert_eq!(first, expected(&x));
    assert!(
        ran > 0 && loaded == 0,
        "first run: {ran} ran, {loaded} loaded"
    );

    // Opened again, unchanged: both result blocks load, nothing runs, no chunk is read.
    let (second, ran, loaded) = mean(&store, &storage, pinned);
    assert_eq!(second, first);
    assert_eq!(
        (ran, loaded),
        (0, 2),
        "second run: tasks run, values loaded"
    );

    // One chunk changes: the result is computed again, from the new data.
    let target = open_array(&store, "/x").unwrap();
    let patch = ArrayD::from_elem(IxDyn(&[2, 3]), 9.0);
    write_tasks(
        &Array::from_ndarray(&patch, &[2, 3]).unwrap(),
        &target,
        &[4, 3],
        pinned,
    )
    .unwrap()
    .compute_with(&exec)
    .unwrap();
    x.slice_mut(ndarray::s![4..6, 3..6]).fill(9.0);
    let (third, ran, loaded) = mean(&store, &storage, pinned);
    assert_eq!(
        third,
        expected(&x),
        "the changed chunk is read, not a stale checkpoint"
    );
    // The block of the untouched columns reads none of the changed chunks: still found.
    assert!(
        ran > 0 && loaded == 1,
        "third run: {ran} ran, {loaded} loaded"
    );

    // Without pinning, reads are impure: the checkpoint is never found (and never stale).
    let (fourth, ran, loaded) = mean(&store, &storage, IoOptions::new());
    assert_eq!(fourth, third);
    assert!(
        ran > 0 && loaded == 0,
        "impure run: {ran} ran, {loaded} loaded"
    );
}

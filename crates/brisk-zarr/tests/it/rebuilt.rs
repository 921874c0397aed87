//! Reads and writes as a cluster worker runs them: the executor below ignores the graph it
//! is given and runs the one rebuilt from the compute's origin (a fresh build, as in another
//! process), so every chunk is read and written by rebuilt tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use brisk_array::Array;
use brisk_exec::ThreadedExecutor;
use brisk_graph::{Error, Executor, Graph, RunContext, RunOutput};
use brisk_zarr::{
    ArrayOptions, IoOptions, ZarrFormat, ZarrStore, from_zarr, from_zarr_with, open_array, to_zarr,
};

/// Runs the graph rebuilt from the origin, after checking it has the given graph's tasks.
struct Rebuilding {
    threads: ThreadedExecutor,
    rebuilt: AtomicUsize,
}

impl Rebuilding {
    fn new() -> Self {
        Self {
            threads: ThreadedExecutor::new(2).unwrap(),
            rebuilt: AtomicUsize::new(0),
        }
    }
}

impl Executor for Rebuilding {
    fn execute(&self, graph: &Arc<Graph>, ctx: &RunContext) -> Result<RunOutput, Error> {
        let origin = ctx
            .origin
            .as_ref()
            .expect("the compute says how to rebuild it");
        let outputs = origin.build().map_err(Error::Executor)?;
        let again = Graph::new(outputs);
        assert_eq!(again.len(), graph.len(), "the same number of tasks");
        let names = |g: &Graph| {
            let mut n: Vec<String> = g
                .order()
                .iter()
                .map(|&i| g.node(i).name().to_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&again), names(graph));
        self.rebuilt.fetch_add(1, Ordering::SeqCst);
        self.threads.execute(&Arc::new(again), ctx)
    }
    fn parallelism(&self) -> usize {
        2
    }
}

#[test]
fn writes_and_reads_rebuilt_from_their_origin_match_threads() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let dir = tempfile::tempdir().unwrap();
        let store = ZarrStore::directory(dir.path()).unwrap();
        assert!(store.url().is_some());
        let threads = ThreadedExecutor::new(2).unwrap();
        let rebuilding = Rebuilding::new();
        let opts = ArrayOptions::new().format(format).overwrite();
        let x = Array::<f32>::random_normal(&[300, 200], &[70, 200], 42, 2000.0, 1000.0).unwrap();
        // Written by rebuilt tasks (staged, then swapped into place by this process).
        to_zarr(&x, &store, "data", None, &opts, &rebuilding).unwrap();
        assert_eq!(rebuilding.rebuilt.load(Ordering::SeqCst), 1);
        let back = from_zarr::<f32>(&store, "data").unwrap();
        assert_eq!(
            back.compute_with(&threads).unwrap(),
            x.compute_with(&threads).unwrap()
        );
        // A copy: read and written by rebuilt tasks.
        to_zarr(&back, &store, "copy", None, &opts, &rebuilding).unwrap();
        let copy = from_zarr::<f32>(&store, "copy").unwrap();
        assert_eq!(
            copy.compute_with(&threads).unwrap(),
            x.compute_with(&threads).unwrap()
        );
        // Read + reduce: bit for bit what local threads give.
        let m = (copy.powi(2) + copy.powi(3)).mean(0);
        assert_eq!(
            m.compute_with(&rebuilding).unwrap(),
            m.compute_with(&threads).unwrap()
        );
        assert_eq!(rebuilding.rebuilt.load(Ordering::SeqCst), 3);
    }
}

#[test]
fn object_store_writes_rebuilt_from_their_origin_match_threads() {
    // Object stores have no staging directory: chunks first, metadata last.
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::object_local(dir.path()).unwrap();
    let threads = ThreadedExecutor::new(2).unwrap();
    let rebuilding = Rebuilding::new();
    let x = Array::<f64>::random_uniform(&[120, 50], &[25, 50], 8, -1.0, 1.0).unwrap();
    to_zarr(&x, &store, "g/x", None, &ArrayOptions::new(), &rebuilding).unwrap();
    assert_eq!(rebuilding.rebuilt.load(Ordering::SeqCst), 1);
    let back = from_zarr::<f64>(&store, "g/x").unwrap();
    assert_eq!(
        back.compute_with(&threads).unwrap(),
        x.compute_with(&threads).unwrap()
    );
    assert_eq!(
        back.std(0).compute_with(&rebuilding).unwrap(),
        back.std(0).compute_with(&threads).unwrap()
    );
}

#[test]
fn a_rebuilt_pinned_read_reads_the_pinned_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    let threads = ThreadedExecutor::new(2).unwrap();
    let x = Array::<f64>::random_uniform(&[40, 30], &[10, 30], 1, 0.0, 1.0).unwrap();
    to_zarr(&x, &store, "x", None, &ArrayOptions::new(), &threads).unwrap();
    let pinned = from_zarr_with::<f64>(&store, "x", IoOptions::default().pinned(true)).unwrap();
    // The array changes after it was opened: the rebuilt read must not see the new data.
    let y = Array::<f64>::full(&[40, 30], &[10, 30], 7.0).unwrap();
    to_zarr(
        &y,
        &store,
        "x",
        None,
        &ArrayOptions::new().overwrite(),
        &threads,
    )
    .unwrap();
    let err = pinned.sum(0).compute_with(&Rebuilding::new()).unwrap_err();
    let why = brisk_graph::chain(&err);
    assert!(why.contains("changed"), "{why}");
    // Opened again, the array reads the new data, rebuilt or not.
    let fresh = from_zarr_with::<f64>(&store, "x", IoOptions::default().pinned(true)).unwrap();
    let total = fresh.sum(0).compute_with(&Rebuilding::new()).unwrap();
    assert!(total.iter().all(|&v| v == 280.0), "{total:?}");
    let _ = open_array(&store, "x").unwrap();
}

#[test]
fn stores_only_this_process_sees_have_no_url() {
    assert!(ZarrStore::memory().url().is_none());
    assert!(ZarrStore::object_memory().url().is_none());
    let dir = tempfile::tempdir().unwrap();
    let durable = ZarrStore::directory_durable(dir.path()).unwrap();
    assert!(
        durable.url().is_none(),
        "a reopened store would not be durable"
    );
    let local = ZarrStore::object_local(dir.path()).unwrap();
    assert!(local.url().unwrap().starts_with("objfile:///"));
    // Arrays over them keep to local threads: no recipe.
    let store = ZarrStore::memory();
    let x = Array::<f64>::full(&[4], &[2], 1.0).unwrap();
    to_zarr(
        &x,
        &store,
        "x",
        None,
        &ArrayOptions::new(),
        &ThreadedExecutor::new(1).unwrap(),
    )
    .unwrap();
    assert!(from_zarr::<f64>(&store, "x").unwrap().recipe().is_none());
}

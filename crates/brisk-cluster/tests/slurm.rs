//! The Slurm backend against a real Slurm (`.ci/run` starts a one-node cluster and sets
//! `BRISK_TEST_SLURM=1` and `BRISK_SLURM_PREFIX`). The tests that need the cluster are
//! `#[ignore]`d, so a plain `cargo test` reports them as skipped; `cargo xtask ci` runs them
//! with `--run-ignored only` when the cluster is there, and a missing cluster then fails them.
//! This test binary is also the worker program: Slurm runs it with
//! `--exact cluster_worker_entry --ignored`, whose `init()` runs the unit and exits.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::sync::Arc;

use brisk_cluster::{SlurmExecutor, SlurmOptions};
use brisk_exec::ThreadedExecutor;
use brisk_graph::{ComputeOptions, Delayed, Error, Executor, TaskSpec};
use brisk_macros::task;

#[test]
#[ignore = "the worker program that Slurm starts (with --ignored)"]
fn cluster_worker_entry() {
    brisk_cluster::init();
}

#[task]
fn square(x: u64) -> u64 {
    x * x
}

#[task]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[task]
fn unlucky(x: u64) -> Result<u64, String> {
    Err(format!("no luck with {x}"))
}

/// Kills its own worker process the first time it runs (the marker file says it did).
#[task]
fn die_once(marker: String, x: u64) -> u64 {
    if !std::path::Path::new(&marker).exists() {
        std::fs::write(&marker, b"killed once").unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    x + 1
}

fn options(store: &str) -> SlurmOptions {
    let mut o = SlurmOptions::new(store);
    o.command_prefix = std::env::var("BRISK_SLURM_PREFIX")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    o.worker_args = [
        "--exact",
        "cluster_worker_entry",
        "--ignored",
        "--nocapture",
    ]
    .map(str::to_owned)
    .to_vec();
    o.poll = std::time::Duration::from_millis(100);
    o.stage_timeout = std::time::Duration::from_secs(180);
    o.units_per_stage = 2;
    o.time = Some("00:05:00".into());
    o
}

/// Why the cluster tests are ignored by default.
const NEEDS_SLURM: &str = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)";

/// The Slurm executor; fails the test when no cluster is configured (these tests are ignored
/// by default and run only where one is).
fn slurm(store: &str) -> SlurmExecutor {
    slurm_with(options(store))
}

/// The Slurm executor with these options (see [`slurm`]).
fn slurm_with(options: SlurmOptions) -> SlurmExecutor {
    assert_eq!(
        std::env::var("BRISK_TEST_SLURM").as_deref(),
        Ok("1"),
        "{NEEDS_SLURM}"
    );
    SlurmExecutor::new(options).unwrap()
}

/// 6 squares, added pairwise in a tree: three stages.
fn tree(offset: u64) -> Delayed<u64> {
    let mut level: Vec<Delayed<u64>> = (0..6).map(|i| square(i + offset)).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| {
                if p.len() == 2 {
                    add(&p[0], &p[1])
                } else {
                    p[0].clone()
                }
            })
            .collect();
    }
    level.pop().unwrap()
}

fn run(e: &dyn Executor, d: &Delayed<u64>) -> Result<u64, Error> {
    d.compute_with_options(e, &ComputeOptions::new())
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_multi_stage_graph_matches_threads_and_a_rerun_does_no_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let cluster = slurm(&store);
    let d = tree(1);
    let local = run(&ThreadedExecutor::new(2).unwrap(), &d).unwrap();
    assert_eq!(run(&cluster, &d).unwrap(), local);
    assert!(cluster.submissions() >= 3, "one job array per stage");
    // The store decides what is done: a new driver on the same store submits nothing.
    let again = slurm(&store);
    assert_eq!(run(&again, &d).unwrap(), local);
    assert_eq!(again.submissions(), 0);
    // Logs of every unit are on the shared filesystem.
    let logs = std::fs::read_dir(dir.path().join("logs")).unwrap().count();
    assert!(logs >= 3, "{logs} logs");
    // Stage by stage, without queueing the next stage behind the running one: the same.
    let other = tempfile::tempdir().unwrap();
    let mut o = options(&other.path().display().to_string());
    o.chain_stages = false;
    let unchained = slurm_with(o);
    assert_eq!(run(&unchained, &d).unwrap(), local);
    assert!(unchained.submissions() >= 3);
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_profile_has_remote_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = slurm(&dir.path().display().to_string());
    let profiler = Arc::new(brisk_profile::Profiler::new());
    let bar = Arc::new(brisk_profile::ProgressBar::hidden());
    let opts = ComputeOptions::new()
        .hook(profiler.clone())
        .hook(bar.clone());
    let d = tree(20);
    let local = run(&ThreadedExecutor::new(2).unwrap(), &d).unwrap();
    assert_eq!(d.compute_with_options(&cluster, &opts).unwrap(), local);
    // Every task the workers ran is on the driver's timeline, at its node and thread.
    let records = profiler.records();
    assert_eq!(records.len(), 11, "6 squares and 5 additions: {records:?}");
    // `.ci/run`'s cluster has two nodes (node1, node2), each a slurmd with one core: the
    // two units of the first stage run at once, so on both.
    let node = "/brisk-worker-";
    let mut nodes = std::collections::BTreeSet::new();
    for r in &records {
        let at = r.location.as_deref().unwrap_or_default();
        assert!(
            at.starts_with("node") && at.contains(node),
            "{} ran at {at:?}",
            r.key
        );
        nodes.insert(at.split('/').next().unwrap().to_owned());
        assert!(r.start <= r.end);
    }
    assert_eq!(nodes.len(), 2, "units on both slurmd's: {nodes:?}");
    let squares = records
        .iter()
        .filter(|r| r.name.as_str().ends_with("square"));
    assert_eq!(squares.count(), 6);
    // Stages run one after the other: every addition starts after the squares it reads end.
    let summary = profiler.summary();
    assert!(summary.busy > std::time::Duration::ZERO);
    assert!(summary.busy <= summary.wall.mul_f64(summary.workers as f64 + 0.01));
    let html = brisk_profile::Report::new("slurm")
        .tasks(&profiler)
        .to_html();
    assert!(
        html.contains(node),
        "the report has a row per node and thread"
    );
    let trace = profiler.chrome_trace();
    assert!(trace.contains(node));
    // The progress bar counted the remote tasks as they were reported.
    assert_eq!(bar.done(), 11);
    // The cost of the run: a job array per stage, every task reported, small data plane.
    let stats = cluster.last_run();
    assert!(stats.jobs >= 3, "{stats:?}");
    assert_eq!(stats.tasks, 11, "{stats:?}");
    assert!(stats.units >= 3, "{stats:?}");
    assert!(
        stats.written > 0 && stats.read >= stats.written,
        "{stats:?}"
    );
    assert!(stats.data_plane_bytes() < 64 * 1024, "{stats:?}");
    // Every stage measured (one job array each): its start-up, and the barrier between
    // stages (small here: most units of a stage wait on the previous stage's last tasks).
    assert_eq!(stats.stages, stats.jobs, "{stats:?}");
    assert!(
        stats.overhead_per_job() > std::time::Duration::ZERO,
        "{stats:?}"
    );
    assert!(stats.stage_barrier < stats.wall, "{stats:?}");
}

/// One "file" of a dynamic source: every fifth is corrupt.
#[task]
fn read_file(i: u64) -> Result<u64, String> {
    if i % 5 == 4 {
        Err(format!("file {i} is corrupt"))
    } else {
        Ok(i * i + 1)
    }
}

/// Runs a source of 14 files arriving in a shuffled order, 2 of them failing upstream and 3
/// corrupt, on `exec`; the second batch is only pushed once the first partition finished.
fn run_files(
    exec: &dyn Executor,
    options: brisk_exec::source::SourceOptions,
) -> brisk_exec::source::SourceOutput<u64, u64> {
    use brisk_exec::source::Source;
    struct Finished(std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>);
    impl brisk_graph::Hooks for Finished {
        fn on_finish(&self, _: &brisk_graph::Graph, _: Option<&Error>) {
            if let Some(tx) = self.0.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (source, feed) = Source::<u64>::counted("files", 16, 16);
    let producer = std::thread::spawn(move || {
        for i in [7, 2, 11, 0, 5, 13] {
            feed.push(i).unwrap();
        }
        feed.fail(3, "the transform service lost it").unwrap();
        // Work is submitted as inputs arrive, not at the seal.
        rx.recv_timeout(std::time::Duration::from_secs(120))
            .unwrap();
        for i in [1, 9, 12, 4, 6, 10, 8, 14] {
            feed.push(i).unwrap();
        }
        feed.fail(15, "timed out").unwrap();
        feed.seal().unwrap();
    });
    let hook = Arc::new(Finished(std::sync::Mutex::new(Some(tx))));
    let options = options.tolerate().compute(ComputeOptions::new().hook(hook));
    let out = source.then(|d| read_file(&d)).run(exec, &options).unwrap();
    producer.join().unwrap();
    out
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_dynamic_source_matches_threads() {
    use brisk_exec::source::{SourceOptions, Status};
    let local = run_files(&ThreadedExecutor::new(2).unwrap(), SourceOptions::new());
    let dir = tempfile::tempdir().unwrap();
    let cluster = slurm(&dir.path().display().to_string());
    let batched = SourceOptions::new().batch(4, std::time::Duration::from_millis(300));
    let remote = run_files(&cluster, batched);
    assert_eq!(remote.results, local.results);
    assert_eq!(remote.results.len(), 11);
    let statuses =
        |o: &brisk_exec::source::SourceOutput<u64, u64>| -> Vec<(Status, Option<String>)> {
            o.report
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.status,
                        p.error.clone().map(|e| {
                            e.split(" (worker log")
                                .next()
                                .unwrap_or_default()
                                .to_owned()
                        }),
                    )
                })
                .collect()
        };
    let (l, r) = (statuses(&local), statuses(&remote));
    assert_eq!(l.len(), 16);
    for ((ls, le), (rs, re)) in l.iter().zip(&r) {
        assert_eq!(ls, rs);
        assert_eq!(le.is_some(), re.is_some());
        if let (Some(le), Some(re)) = (le, re) {
            // The same task error, named the same way (Slurm adds the worker's log).
            let inner = le.rsplit(": ").next().unwrap();
            assert!(re.contains(inner), "threads: {le}; Slurm: {re}");
        }
    }
    assert_eq!(remote.report.failed(), 5, "3 corrupt, 2 lost upstream");
    // 14 partitions in batches of at most 4: far fewer job arrays than partitions.
    assert!(
        cluster.submissions() <= 8,
        "{} job arrays for 14 partitions",
        cluster.submissions()
    );
}

/// A graph of closures (not registered tasks) with impure leaves: `n` chunks of a sequence
/// summed in a tree, built from its parameters alone.
fn closure_tree(params: &str) -> Result<Vec<brisk_graph::AnyDelayed>, brisk_graph::BoxError> {
    let n: u64 = params.parse()?;
    let leaf = TaskSpec::new("chunk"); // impure: fresh keys in every process
    let add = TaskSpec::new("sum2").pure();
    let mut level: Vec<Delayed<Vec<f64>>> = (0..n)
        .map(|i| {
            leaf.call(
                move |k: u64| (0..100).map(|j| (k * 100 + j) as f64).collect(),
                (i,),
            )
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| match p {
                [a, b] => add.call(
                    |a: Vec<f64>, b: Vec<f64>| vec![a.iter().sum::<f64>() + b.iter().sum::<f64>()],
                    (a, b),
                ),
                [a] => a.clone(),
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    Ok(vec![level.pop().unwrap().erase()])
}
brisk_graph::graph_builder!("brisk_cluster_tests::closure_tree", closure_tree);

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_runs_closures_rebuilt_from_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = slurm(&dir.path().display().to_string());
    let origin = brisk_graph::remote::Origin::new("brisk_cluster_tests::closure_tree", "7");
    let outputs = origin.build().unwrap();
    let value = |out: brisk_graph::Computed| -> Vec<f64> {
        out.value(0)
            .unwrap()
            .downcast_ref::<Vec<f64>>()
            .unwrap()
            .clone()
    };
    let local = value(
        ComputeOptions::new()
            .run(&ThreadedExecutor::new(2).unwrap(), outputs.clone())
            .unwrap(),
    );
    assert_eq!(local, vec![(0..700).map(f64::from).sum::<f64>()]);
    // Without the origin the closures cannot go: the error names the task.
    let err = ComputeOptions::new()
        .run(&cluster, outputs.clone())
        .unwrap_err();
    assert!(
        brisk_graph::chain(&err).contains("cannot run on the cluster"),
        "{err}"
    );
    // With it, every worker rebuilds the graph and runs its nodes' own closures.
    let remote = value(
        ComputeOptions::new()
            .origin(origin)
            .run(&cluster, outputs.clone())
            .unwrap(),
    );
    assert_eq!(remote, local);
    assert_eq!(cluster.last_run().tasks, 7 + 6, "{:?}", cluster.last_run());
    // A builder that does not rebuild the same graph is an error naming the task.
    let wrong = ComputeOptions::new().origin(brisk_graph::remote::Origin::new(
        "brisk_cluster_tests::closure_tree",
        "3",
    ));
    // (a fresh data plane: the store says this graph's run is done).
    let other = tempfile::tempdir().unwrap();
    let err = wrong
        .run(&slurm(&other.path().display().to_string()), outputs)
        .unwrap_err();
    assert!(brisk_graph::chain(&err).contains("rebuilt graph"), "{err}");
}

/// The seed-003 pipeline — random data with attributes written to Zarr, a zeros array, a
/// chunk-by-chunk copy, then `(x**2 + x**3).mean(0)` — on `exec`, in `dir`.
fn zarr_pipeline(
    exec: &dyn Executor,
    dir: &std::path::Path,
) -> (
    ndarray::ArrayD<f32>,
    ndarray::ArrayD<f32>,
    ndarray::ArrayD<f64>,
) {
    use brisk_array::Array;
    use brisk_zarr::{ArrayOptions, ZarrStore, from_zarr, to_zarr};
    let store = ZarrStore::directory(dir).unwrap();
    let threads = ThreadedExecutor::new(2).unwrap();
    let opts = ArrayOptions::new()
        .attribute("history", "written on a cluster".into())
        .overwrite();
    let x = Array::<f32>::random_normal(&[4000, 300], &[500, 300], 42, 2000.0, 1000.0).unwrap();
    to_zarr(&x, &store, "data", None, &opts, exec).unwrap();
    let zeros = Array::<f32>::zeros(&[4000, 300], &[500, 300]).unwrap();
    to_zarr(&zeros, &store, "zeros", None, &opts, exec).unwrap();
    let src = from_zarr::<f32>(&store, "data").unwrap();
    to_zarr(&src, &store, "copy", None, &opts, exec).unwrap();
    let y = from_zarr::<f32>(&store, "copy").unwrap();
    let m = (y.powi(2) + y.powi(3)).mean(0).compute_with(exec).unwrap();
    // What was stored, read back on local threads.
    let read = |path: &str| {
        from_zarr::<f32>(&store, path)
            .unwrap()
            .compute_with(&threads)
            .unwrap()
    };
    assert_eq!(
        brisk_zarr::open_array(&store, "data").unwrap().attributes()["history"],
        "written on a cluster"
    );
    assert!(read("zeros").iter().all(|&v| v == 0.0));
    (read("data"), read("copy"), m)
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_zarr_pipeline_matches_threads() {
    let local_dir = tempfile::tempdir().unwrap();
    let (data, copy, mean) = zarr_pipeline(&ThreadedExecutor::new(2).unwrap(), local_dir.path());
    let plane = tempfile::tempdir().unwrap();
    let cluster = slurm(&plane.path().display().to_string());
    let remote_dir = tempfile::tempdir().unwrap();
    let (r_data, r_copy, r_mean) = zarr_pipeline(&cluster, remote_dir.path());
    assert_eq!(r_data, data);
    assert_eq!(r_copy, copy);
    assert_eq!(copy, data);
    let bits = |a: &ndarray::ArrayD<f64>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&r_mean), bits(&mean), "bit for bit");
    // The last compute (read + mean): workers read the chunks from the store themselves;
    // only partial results cross the data plane.
    let stats = cluster.last_run();
    let array_bytes = 4000 * 300 * 4;
    assert!(
        stats.data_plane_bytes() * 100 <= array_bytes,
        "{} bytes through the data plane for a {array_bytes}-byte array: {stats:?}",
        stats.data_plane_bytes()
    );
}

/// A user's block function: each block minus its own mean.
fn demean(block: ndarray::ArrayD<f64>, _offset: &[usize]) -> ndarray::ArrayD<f64> {
    let m = block.mean().unwrap_or(0.0);
    block - m
}
brisk_array::kernel!("brisk_cluster_tests::demean", demean, f64 => f64);

fn not_registered(block: ndarray::ArrayD<f64>, _offset: &[usize]) -> ndarray::ArrayD<f64> {
    block * 2.0
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_array_kernel_registered() {
    use brisk_array::Array;
    let dir = tempfile::tempdir().unwrap();
    let cluster = slurm(&dir.path().display().to_string());
    let x = Array::<f64>::random_normal(&[600, 40], &[100, 40], 9, 10.0, 2.0).unwrap();
    let y = x
        .map_kernel("brisk_cluster_tests::demean", demean)
        .unwrap()
        .powi(2)
        .sum(0);
    let local = y.compute_with(&ThreadedExecutor::new(2).unwrap()).unwrap();
    assert_eq!(y.compute_with(&cluster).unwrap(), local);
    // An unregistered kernel keeps the clear error, naming its task.
    let z = x
        .map_kernel("nowhere::double", not_registered)
        .unwrap()
        .sum(0);
    let err = brisk_graph::chain(&z.compute_with(&cluster).unwrap_err());
    assert!(
        err.contains("cannot run on the cluster")
            && err.contains(
                "the kernel `nowhere::double` is not registered (`brisk_array::kernel!`)"
            ),
        "{err}"
    );
    // So does a closure.
    let w = x.mapv(|v| v + 1.0).sum(0);
    let err = brisk_graph::chain(&w.compute_with(&cluster).unwrap_err());
    assert!(
        err.contains("cannot run on the cluster") && err.contains("`mapv`"),
        "{err}"
    );
}

/// Kills its own worker the first time it writes the block at offset 0 — after half the
/// array's chunks may be written — when `BRISK_TEST_KILL_MARKER` names a file not yet there.
fn die_once_in_block(block: ndarray::ArrayD<f32>, offset: &[usize]) -> ndarray::ArrayD<f32> {
    if let Ok(marker) = std::env::var("BRISK_TEST_KILL_MARKER")
        && offset.iter().all(|&o| o == 0)
        && !std::path::Path::new(&marker).exists()
    {
        std::fs::write(&marker, b"killed once").unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    block
}
brisk_array::kernel!("brisk_cluster_tests::die_once_in_block", die_once_in_block, f32 => f32);

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_zarr_write_survives_a_killed_worker() {
    use brisk_array::Array;
    use brisk_zarr::{ArrayOptions, ZarrStore, from_zarr, to_zarr};
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("killed");
    let mut o = options(&dir.path().join("plane").display().to_string());
    o.setup_lines.push(format!(
        "export BRISK_TEST_KILL_MARKER={}",
        marker.display()
    ));
    let cluster = slurm_with(o);
    let store = ZarrStore::directory(dir.path().join("zarr")).unwrap();
    let threads = ThreadedExecutor::new(2).unwrap();
    let x = Array::<f32>::random_normal(&[800, 100], &[100, 100], 5, 0.0, 1.0).unwrap();
    let y = x
        .map_kernel("brisk_cluster_tests::die_once_in_block", die_once_in_block)
        .unwrap();
    // An old array at the path: a write that dies half way must never leave a mix.
    to_zarr(
        &x.powi(2),
        &store,
        "a",
        None,
        &ArrayOptions::new(),
        &threads,
    )
    .unwrap();
    to_zarr(
        &y,
        &store,
        "a",
        None,
        &ArrayOptions::new().overwrite(),
        &cluster,
    )
    .unwrap();
    assert!(marker.exists(), "a worker was killed mid-write");
    let back = from_zarr::<f32>(&store, "a").unwrap();
    assert_eq!(
        back.compute_with(&threads).unwrap(),
        x.compute_with(&threads).unwrap()
    );
    assert!(cluster.submissions() > 3, "the killed unit ran again");
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_runs_with_an_object_store_data_plane() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("objfile://{}", dir.path().display());
    // No directory to put logs next to: the default would be `./brisk-slurm-logs`.
    let logs_dir = tempfile::tempdir().unwrap();
    let mut o = options(&store);
    o.log_dir = Some(logs_dir.path().join("worker-logs"));
    let cluster = slurm_with(o);
    let d = tree(10);
    let local = run(&ThreadedExecutor::new(2).unwrap(), &d).unwrap();
    assert_eq!(run(&cluster, &d).unwrap(), local);
    let logs = std::fs::read_dir(logs_dir.path().join("worker-logs"))
        .unwrap()
        .count();
    assert!(logs >= 3, "{logs} logs in the configured log_dir");
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_failing_task_names_its_key_error_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let cluster = slurm(&store);
    let bad = unlucky(7);
    let d = add(square(2), bad.clone());
    let err = run(&cluster, &d).unwrap_err();
    match &err {
        Error::Task { key, source, .. } => {
            assert_eq!(key, bad.key());
            let text = source.to_string();
            assert!(text.contains("no luck with 7"), "{text}");
            let log = text
                .rsplit("worker log: ")
                .next()
                .unwrap()
                .trim_end_matches(')');
            assert!(std::path::Path::new(log).exists(), "log {log} missing");
        }
        other => panic!("unexpected {other}"),
    }
    // A task error is not retried: one submission for the failing stage, one for the stage
    // queued behind it, which Slurm cancelled before it started (no worker log of stage 1).
    assert_eq!(cluster.submissions(), 2);
    let text = err.to_string() + &brisk_graph::chain(&err);
    let run = text
        .split("brisk-")
        .nth(1)
        .and_then(|r| r.split('-').next())
        .expect("the log path names the run");
    let logs: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.starts_with(&format!("brisk-{run}-s0-"))),
        "{logs:?}"
    );
    assert!(
        !logs
            .iter()
            .any(|l| l.starts_with(&format!("brisk-{run}-s1-"))),
        "stage 1 ran: {logs:?}"
    );
    assert!(
        queued_jobs(run).is_empty(),
        "nothing of run {run} is left queued"
    );
}

/// Fails its first `fails` runs (counted in the marker file), then returns `x + 1`.
#[task]
fn flaky(marker: String, fails: u64, x: u64) -> Result<u64, String> {
    let runs = std::fs::read_to_string(&marker).map_or(0, |t| t.len() as u64);
    std::fs::write(&marker, "r".repeat(runs as usize + 1)).map_err(|e| e.to_string())?;
    if runs < fails {
        return Err(format!("flaky run {}", runs + 1));
    }
    Ok(x + 1)
}

#[task]
fn boom(x: u64) -> u64 {
    assert!(x > 100, "boom at {x}");
    x
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_retries_tasks_as_their_annotation_says_and_panics_are_task_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let cluster = slurm(&store);
    let marker = |n: &str| dir.path().join(n).display().to_string();
    // Two failures, two retries: the third run succeeds, on the node (one submission).
    let ok = add(flaky(marker("a"), 2, 5).with_retries(2), square(3));
    assert_eq!(run(&cluster, &ok).unwrap(), 6 + 9);
    assert_eq!(std::fs::read_to_string(marker("a")).unwrap().len(), 3);
    // One retry is not enough: the error says how many attempts were made.
    let short = flaky(marker("b"), 2, 5).with_retries(1);
    match run(&cluster, &short).unwrap_err() {
        Error::Task {
            key,
            attempts,
            source,
            ..
        } => {
            assert_eq!(&key, short.key());
            assert_eq!(attempts, 2);
            assert!(source.to_string().contains("flaky run 2"), "{source}");
        }
        other => panic!("unexpected {other}"),
    }
    // A panic is the task's error (named, with its message), as on threads: its unit is
    // not submitted again as if its worker had died.
    let before = cluster.submissions();
    let bad = boom(7);
    match run(&cluster, &bad).unwrap_err() {
        Error::Task { key, source, .. } => {
            assert_eq!(&key, bad.key());
            assert!(
                source.to_string().contains("task panicked: boom at 7"),
                "{source}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(cluster.submissions() - before, 1);
}

/// The jobs of run `run` still waiting or running (`squeue` through the configured prefix).
fn queued_jobs(run: &str) -> Vec<String> {
    let mut cmd: Vec<String> = std::env::var("BRISK_SLURM_PREFIX")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    cmd.extend(["squeue", "-h", "-o", "%j %T"].map(str::to_owned));
    let out = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            // COMPLETING is a job being torn down (after scancel too): not left behind.
            let state = l.split_whitespace().nth(1).unwrap_or_default();
            l.starts_with(&format!("brisk-{run}-"))
                && matches!(
                    state,
                    "PENDING" | "RUNNING" | "CONFIGURING" | "SUSPENDED" | "REQUEUED"
                )
        })
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_reruns_a_unit_whose_worker_was_killed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let cluster = slurm(&store);
    let marker = dir.path().join("killed").display().to_string();
    let d = add(die_once(marker.clone(), 41), square(3));
    assert_eq!(run(&cluster, &d).unwrap(), 42 + 9);
    assert!(std::path::Path::new(&marker).exists());
    assert_eq!(
        cluster.submissions(),
        4,
        "stage 0 twice (killed, rerun), each with stage 1 queued behind it (the first one \
         cancelled by Slurm when the kill failed its dependency)"
    );
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_recomputes_a_corrupt_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let cluster = slurm(&store);
    let d = tree(20);
    let first = run(&cluster, &d).unwrap();
    // Corrupt every stored value of the first stage.
    let values = walk(&dir.path().join("runs"));
    let mut corrupted = 0;
    for p in values
        .iter()
        .filter(|p| p.to_string_lossy().contains("/values/"))
    {
        std::fs::write(p, b"garbage").unwrap();
        corrupted += 1;
    }
    assert!(corrupted > 0);
    let again = slurm(&store);
    assert_eq!(run(&again, &d).unwrap(), first);
    assert!(again.submissions() > 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Squares `x`, and fails if it ever runs again (the marker file says it ran).
#[task]
fn square_once(marker: String, x: u64) -> Result<u64, String> {
    if std::path::Path::new(&marker).exists() {
        return Err(format!("square_once({x}) ran twice"));
    }
    std::fs::write(&marker, b"ran").map_err(|e| e.to_string())?;
    Ok(x * x)
}

/// Compute options with a checkpoint cache in `dir`, and the marker path for `square_once`.
fn checkpoint_setup(dir: &std::path::Path) -> (ComputeOptions, String) {
    let cache: Arc<dyn brisk_graph::Cache> = Arc::new(brisk_checkpoint::Storage::new(
        brisk_checkpoint::DirStore::new(dir.join("checkpoints")).unwrap(),
    ));
    (
        ComputeOptions::new().cache(cache),
        dir.join("ran").display().to_string(),
    )
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_saves_checkpoints_and_later_computes_load_them() {
    // Checkpointed tasks run on the cluster are saved to the compute's cache; a later compute
    // on a fresh data plane loads them: an output loaded outright submits nothing, and a
    // loaded input is shipped to the tasks that read it.
    let dir = tempfile::tempdir().unwrap();
    let plane = |name: &str| dir.path().join(name).display().to_string();
    let cluster = slurm(&plane("plane-1"));
    let (with_cache, marker) = checkpoint_setup(dir.path());
    let nine = square_once(marker, 3).checkpointed();
    let total = add(&nine, square(4)).checkpointed();
    assert_eq!(
        total.compute_with_options(&cluster, &with_cache).unwrap(),
        25
    );
    assert!(cluster.submissions() >= 2);

    let fresh = slurm(&plane("plane-2"));
    assert_eq!(total.compute_with_options(&fresh, &with_cache).unwrap(), 25);
    assert_eq!(
        fresh.submissions(),
        0,
        "the output was loaded, nothing to run"
    );

    // `square_once(3)` cannot run again: its saved value must reach `add` on the cluster.
    let more = add(&nine, square(5));
    assert_eq!(more.compute_with_options(&fresh, &with_cache).unwrap(), 34);
    assert_eq!(fresh.submissions(), 2, "square(5), then add");
    // Without the cache it would have to run again, and says so.
    let bare = slurm(&plane("plane-3"));
    let err = brisk_graph::chain(&run(&bare, &more).unwrap_err());
    assert!(err.contains("ran twice"), "{err}");
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_keeps_the_checkpoints_of_finished_stages_when_a_later_stage_fails() {
    // The checkpointed stage-0 task is saved as soon as its stage is done, so the failure of
    // its consumer in stage 1 does not lose it: a later compute on a fresh data plane loads
    // it instead of running it again (which would fail: it runs only once).
    let dir = tempfile::tempdir().unwrap();
    let plane = |name: &str| dir.path().join(name).display().to_string();
    let cluster = slurm(&plane("plane-1"));
    let (with_cache, marker) = checkpoint_setup(dir.path());
    let nine = square_once(marker, 3).checkpointed();
    let err = unlucky(&nine)
        .compute_with_options(&cluster, &with_cache)
        .unwrap_err();
    assert!(brisk_graph::chain(&err).contains("no luck with 9"), "{err}");

    let fresh = slurm(&plane("plane-2"));
    assert_eq!(nine.compute_with_options(&fresh, &with_cache).unwrap(), 9);
    assert_eq!(fresh.submissions(), 0, "loaded from the checkpoint");
}

/// Sleeps `secs` seconds, then returns them.
#[task]
fn nap(secs: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_secs(secs));
    secs
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn slurm_cancels_its_jobs_when_the_compute_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = slurm(&dir.path().display().to_string());
    let token = brisk_graph::CancelToken::new();
    let canceller = {
        let token = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            token.cancel();
        })
    };
    let started = std::time::Instant::now();
    let d = add(nap(120), square(2));
    let err = d
        .compute_with_options(&cluster, &ComputeOptions::new().cancel_token(token))
        .unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "waited for the nap: {:?}",
        started.elapsed()
    );
    // The stage and the one queued behind it were cancelled, not left to run.
    let logs: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for run in logs.iter().filter_map(|l| l.split('-').nth(1)) {
        let left = queued_jobs(run);
        assert!(left.is_empty(), "run {run} left jobs queued: {left:?}");
    }
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn keep_going_on_slurm_returns_what_could_be_computed_and_a_report() {
    // Stage 0: square(2) and unlucky(7) in one unit, square(3) in another; stage 1: `blocked`
    // (needs the failure) and `fine`; stage 2: `blocked2`. Keeping going, `fine` is computed,
    // the failure is reported with its error, and what depends on it is skipped — never
    // submitted to look for an input that cannot come.
    let dir = tempfile::tempdir().unwrap();
    let cluster = slurm(&dir.path().display().to_string());
    let bad = unlucky(7);
    let blocked = add(square(2), &bad);
    let fine = add(square(2), square(3));
    let blocked2 = add(&blocked, &fine);
    let out = ComputeOptions::new()
        .keep_going()
        .run(&cluster, [fine.erase(), blocked2.erase()])
        .unwrap();
    assert_eq!(out.get(&fine).unwrap(), 13);
    assert!(
        matches!(out.get(&blocked2), Err(Error::Incomplete { .. })),
        "{:?}",
        out.get(&blocked2)
    );
    let r = out.report();
    assert_eq!(r.failed.len(), 1, "{}", r.summary());
    assert_eq!(&r.failed[0].key, bad.key());
    let why = brisk_graph::chain(&r.failed[0].error);
    assert!(
        why.contains("no luck with 7") && why.contains("worker log"),
        "{why}"
    );
    let mut skipped: Vec<_> = r
        .skipped
        .iter()
        .map(|s| (s.key.to_string(), s.because.clone()))
        .collect();
    skipped.sort();
    let mut expected = vec![
        (blocked.key().to_string(), bad.key().clone()),
        (blocked2.key().to_string(), bad.key().clone()),
    ];
    expected.sort();
    assert_eq!(skipped, expected);
    // Stage 0, stage 1 queued behind it (cancelled: a unit failed), stage 1 again with only
    // `fine`; stage 2 held nothing but `blocked2`, so it was never submitted.
    assert_eq!(cluster.submissions(), 3);
    // Fail-fast, the same graph fails with the task's error.
    let err = ComputeOptions::new()
        .run(&cluster, [fine.erase(), blocked2.erase()])
        .unwrap_err();
    assert!(brisk_graph::chain(&err).contains("no luck with 7"), "{err}");
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn closures_cannot_go_to_the_cluster_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let cluster = slurm(&store);
    let d = TaskSpec::new("closure")
        .pure()
        .call(|x: u64| x + 1, (1u64,));
    let err = run(&cluster, &d).unwrap_err();
    let text = brisk_graph::chain(&err);
    assert!(
        text.contains("not a registered `#[task]` function"),
        "{text}"
    );
    assert_eq!(cluster.submissions(), 0);
}

#[test]
fn a_missing_sbatch_is_a_clear_error() {
    let mut o = options("/tmp");
    o.command_prefix = vec!["brisk-no-such-launcher".into()];
    let err = SlurmExecutor::new(o).unwrap_err().to_string();
    assert!(
        err.contains("was not found") && err.contains("Slurm"),
        "{err}"
    );
}

#[test]
fn unit_descriptions_are_refused_when_malformed() {
    let store: Arc<dyn brisk_checkpoint::Store> = Arc::new(brisk_checkpoint::MemoryStore::new());
    let err = brisk_cluster::run_unit(&store, "no-slash")
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected `<run>/<unit>`"), "{err}");
    let err = brisk_cluster::run_unit(&store, "abc/s0-0")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no description"), "{err}");
}

#[test]
fn the_handler_reaches_slurm_by_address() {
    use brisk_exec::{Handler, HandlerError};
    // Without a Slurm client the handler says so.
    let err = Handler::new("slurm://?store=/tmp&prefix=brisk-no-such-launcher").unwrap_err();
    assert!(matches!(err, HandlerError::Backend { .. }), "{err}");
    assert!(brisk_graph::chain(&err).contains("was not found"), "{err}");
    // Other schemes list slurm among the supported ones.
    let err = Handler::new("k8s://cluster").unwrap_err().to_string();
    assert!(err.contains("`slurm://…`"), "{err}");
}

#[test]
#[ignore = "needs a Slurm cluster: BRISK_TEST_SLURM=1 (.ci/run starts one)"]
fn the_handler_reaches_slurm_by_address_on_a_cluster() {
    use brisk_exec::{Handler, HandlerError};
    assert_eq!(
        std::env::var("BRISK_TEST_SLURM").as_deref(),
        Ok("1"),
        "{NEEDS_SLURM}"
    );
    let dir = tempfile::tempdir().unwrap();
    let o = options(&dir.path().display().to_string());
    // The worker program is this test binary: its test filter goes in `args`.
    let address = format!(
        "slurm://?store={}&prefix={}&args={}&poll_ms=100&time=00:05:00",
        o.store,
        o.command_prefix.join("%20"),
        o.worker_args.join("%20")
    );
    let handler = Handler::new(&address).unwrap();
    let d = tree(30);
    let local = run(&ThreadedExecutor::new(2).unwrap(), &d).unwrap();
    assert_eq!(handler.compute(&d).unwrap(), local);
    // map/gather of a registered task, plain and batched: the same as local threads.
    let threads = Handler::new("threads://2").unwrap();
    let on_slurm = handler.compute_map(|x: u64| square(x), 0..10u64).unwrap();
    assert_eq!(
        on_slurm,
        threads.compute_map(|x: u64| square(x), 0..10u64).unwrap()
    );
    let batched = handler
        .batched_compute_map(|x: u64| square(x), 0..25u64, 10)
        .unwrap();
    assert_eq!(batched, (0..25u64).map(|x| x * x).collect::<Vec<_>>());
    let futures = handler.map(|x: u64| x + 1, [1u64, 2]).unwrap();
    let err = handler.gather(futures).unwrap_err();
    assert!(
        matches!(err, HandlerError::ClosuresNotSupported { .. }),
        "{err}"
    );
}

//! Dynamic sources: arrival order, early start, backpressure, failure policies, counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brisk_exec::source::{
    FailedInput, Order, Policy, Source, SourceError, SourceOptions, Status, TryPushError,
};
use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{ComputeOptions, Executor, Graph, Hooks, TaskEnd, TaskStatus};

/// A file-like descriptor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct File {
    name: String,
    events: u32,
}

fn file(i: u32) -> File {
    File {
        name: format!("part-{i:03}.npy"),
        events: i,
    }
}

/// Values of very different magnitudes: their float sum depends on the order.
fn values(f: File) -> Vec<f64> {
    let i = f64::from(f.events);
    (0..50)
        .map(|j| (i * 7.3 + f64::from(j)).sin() * 10f64.powi(((f.events * 7 + j) % 17) as i32 - 8))
        .collect()
}

/// A deterministic shuffle (xorshift), so each test run checks the same 20 orders.
fn shuffled(n: u32, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn produce(order: Vec<u32>, feed: brisk_exec::source::Feed<File>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for (k, i) in order.into_iter().enumerate() {
            if k % 7 == 3 {
                std::thread::sleep(Duration::from_millis(1));
            }
            feed.push(file(i)).unwrap();
        }
        feed.seal().unwrap();
    })
}

#[test]
fn results_do_not_depend_on_arrival_order() {
    let exec = ThreadedExecutor::new(2).unwrap();
    let mut sums = Vec::new();
    for seed in 0..20u64 {
        let (source, feed) = Source::<File>::new("files", 4);
        let producer = produce(shuffled(40, seed + 1), feed);
        let (sum, report) = source
            .map("read", values)
            .map("total", |v: Vec<f64>| v.iter().sum::<f64>())
            .fold(&exec, &SourceOptions::new(), 0.0f64, |a, x| a + x)
            .unwrap();
        producer.join().unwrap();
        assert_eq!(report.succeeded(), 40);
        assert!(report.is_complete());
        sums.push(sum.to_bits());
    }
    assert!(sums.windows(2).all(|w| w[0] == w[1]), "{sums:?}");

    // The per-partition results come back in id order, whatever the order of arrival.
    let (source, feed) = Source::<File>::new("files", 4);
    let producer = produce(shuffled(10, 99), feed);
    let out = source
        .map("read", values)
        .run(&exec, &SourceOptions::new())
        .unwrap();
    producer.join().unwrap();
    let ids: Vec<_> = out.results.iter().map(|(k, _)| k.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 10);
}

#[test]
fn arrival_order_folds_every_partition_once() {
    let (source, feed) = Source::<File>::new("files", 2);
    let producer = produce(shuffled(30, 5), feed);
    let (n, report) = source
        .map("count", |f: File| u64::from(f.events))
        .fold(
            &ThreadedExecutor::new(2).unwrap(),
            &SourceOptions::new().order(Order::Arrival),
            0u64,
            |a, x| a + x,
        )
        .unwrap();
    producer.join().unwrap();
    assert_eq!(n, (0..30).sum::<u64>());
    assert_eq!(report.succeeded(), 30);
}

/// Sends a message when a task named `name` has ended.
struct Notify {
    name: &'static str,
    tx: Mutex<std::sync::mpsc::Sender<String>>,
}

impl Hooks for Notify {
    fn on_task_end(&self, graph: &Graph, event: &TaskEnd<'_>) {
        if graph.node(event.id).name() == self.name
            && matches!(event.status, TaskStatus::Computed(_))
        {
            let _ = self
                .tx
                .lock()
                .unwrap()
                .send(graph.key(event.id).to_string());
        }
    }
}

#[test]
fn early_partitions_run_before_the_last_input_arrives() {
    let (tx, rx) = std::sync::mpsc::channel();
    let hook = Arc::new(Notify {
        name: "work",
        tx: Mutex::new(tx),
    });
    let (source, feed) = Source::<File>::counted("files", 4, 2);
    // The producer only pushes the second input once the first partition's task has run:
    // if partitions waited for all inputs, this would time out.
    let producer = std::thread::spawn(move || {
        feed.push(file(1)).unwrap();
        let first = rx.recv_timeout(Duration::from_secs(30));
        feed.push(file(2)).unwrap();
        feed.seal().unwrap();
        first
    });
    let opts = SourceOptions::new().compute(ComputeOptions::new().hook(hook));
    let (total, report) = source
        .map("work", |f: File| f.events)
        .fold(&ThreadedExecutor::new(2).unwrap(), &opts, 0, |a, x| a + x)
        .unwrap();
    let first = producer.join().unwrap();
    assert!(
        first.is_ok(),
        "the first partition did not run before the second input"
    );
    assert_eq!(total, 3);
    assert_eq!(report.received, 2);
}

#[test]
fn a_full_channel_pushes_back_on_the_producer() {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let started = Arc::new(AtomicUsize::new(0));
    let (source, feed) = Source::<File>::new("files", 2);
    type Gate = Arc<(Mutex<bool>, std::sync::Condvar)>;
    let handles = (Arc::clone(&gate), Arc::clone(&started));
    let pipeline = source.try_map_using(
        "blocked",
        handles,
        |f: File, (g, s): (Gate, Arc<AtomicUsize>)| {
            s.fetch_add(1, Ordering::SeqCst);
            let (lock, cv) = &*g;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            Ok::<_, std::io::Error>(f.events)
        },
    );
    let producer = std::thread::spawn(move || {
        feed.push(file(1)).unwrap();
        // Wait until the compute took the first input and runs it.
        while started.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        feed.push(file(2)).unwrap();
        feed.push(file(3)).unwrap();
        // One partition in flight, two inputs queued: the channel is full.
        let full = feed.try_push(file(4));
        let (lock, cv) = &*gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
        let back = match full {
            Err(TryPushError::Full(d)) => d,
            other => panic!("expected a full channel, got {other:?}"),
        };
        feed.push(back).unwrap(); // blocks until there is room, then succeeds
        feed.seal().unwrap();
    });
    let (total, report) = pipeline
        .fold(
            &ThreadedExecutor::new(2).unwrap(),
            &SourceOptions::new().in_flight(1),
            0,
            |a, x| a + x,
        )
        .unwrap();
    producer.join().unwrap();
    assert_eq!(total, 1 + 2 + 3 + 4);
    assert_eq!(report.succeeded(), 4);
}

fn picky(f: File) -> Result<f64, std::io::Error> {
    if f.events == 3 {
        Err(std::io::Error::other(format!("{} is corrupt", f.name)))
    } else {
        Ok(f64::from(f.events))
    }
}

#[test]
fn tolerate_returns_the_result_and_an_exact_report() {
    for exec in [
        Box::new(SequentialExecutor) as Box<dyn Executor>,
        Box::new(ThreadedExecutor::new(2).unwrap()),
    ] {
        let (source, feed) = Source::<File>::counted("files", 16, 9);
        for i in [6, 1, 3, 2, 5, 4] {
            feed.push(file(i)).unwrap();
        }
        feed.fail_id("transform-7", "the service failed this file")
            .unwrap();
        feed.fail(file(8), "download failed").unwrap();
        feed.seal().unwrap();
        let out = source
            .try_map("read", picky)
            .run(exec.as_ref(), &SourceOptions::new().tolerate())
            .unwrap();
        let report = &out.report;
        // Counts come from the partitions actually read, never from the announced 9.
        let sum: f64 = out.results.iter().map(|(_, v)| v).sum();
        assert_eq!(out.results.len(), 5);
        assert!((sum / out.results.len() as f64 - 3.6).abs() < 1e-12);
        assert_eq!(report.expected, Some(9));
        assert_eq!(report.received, 8);
        assert_eq!(report.missing(), 1);
        assert_eq!(report.succeeded(), 5);
        assert_eq!(report.failed(), 3);
        assert!(!report.is_complete());
        assert_eq!(report.partitions.len(), 8);
        let ids: Vec<_> = report.partitions.iter().map(|p| p.id.clone()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "report in id order");
        let bad = report
            .partitions
            .iter()
            .find(|p| p.descriptor.as_ref().is_some_and(|d| d.events == 3))
            .unwrap();
        assert_eq!(bad.status, Status::Failed);
        assert_eq!(bad.attempts, 1);
        assert!(
            bad.error
                .as_deref()
                .unwrap()
                .contains("part-003.npy is corrupt")
        );
        let lost = report
            .partitions
            .iter()
            .find(|p| p.failed_id.as_deref() == Some("transform-7"))
            .unwrap();
        assert_eq!(lost.status, Status::FailedUpstream);
        assert!(lost.descriptor.is_none());
        assert_eq!(lost.error.as_deref(), Some("the service failed this file"));
        let eight = report
            .partitions
            .iter()
            .find(|p| p.descriptor.as_ref().is_some_and(|d| d.events == 8))
            .unwrap();
        assert_eq!(eight.status, Status::FailedUpstream);
        assert_eq!(eight.attempts, 0);
    }
}

#[test]
fn fail_fast_aborts_and_names_the_descriptor() {
    let (source, feed) = Source::<File>::new("files", 8);
    for i in [1, 3, 2] {
        feed.push(file(i)).unwrap();
    }
    feed.seal().unwrap();
    let err = source
        .try_map("read", picky)
        .run(&ThreadedExecutor::new(2).unwrap(), &SourceOptions::new())
        .unwrap_err();
    match &err {
        SourceError::Partition {
            descriptor,
            attempts,
            source,
            ..
        } => {
            assert!(descriptor.contains("part-003.npy"), "{descriptor}");
            assert_eq!(*attempts, 1);
            assert!(brisk_graph::chain(source.as_ref()).contains("is corrupt"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("part-003.npy"));

    // An input failed upstream also stops a fail-fast run, naming it.
    let (source, feed) = Source::<File>::new("files", 8);
    feed.push(file(1)).unwrap();
    feed.fail(file(2), "404").unwrap();
    feed.seal().unwrap();
    let err = source
        .map("read", |f: File| f.events)
        .run(&SequentialExecutor, &SourceOptions::new())
        .unwrap_err();
    assert!(matches!(err, SourceError::InputFailed { .. }));
    assert!(err.to_string().contains("part-002.npy") && err.to_string().contains("404"));
}

#[test]
fn retries_rerun_a_failed_partition() {
    let tries = Arc::new(AtomicUsize::new(0));
    let (source, feed) = Source::<File>::new("files", 4);
    feed.push(file(5)).unwrap();
    feed.seal().unwrap();
    let out = source
        .try_map_using(
            "flaky",
            Arc::clone(&tries),
            |f: File, t: Arc<AtomicUsize>| {
                if t.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(std::io::Error::other("transient"))
                } else {
                    Ok(f.events)
                }
            },
        )
        .run(
            &ThreadedExecutor::new(2).unwrap(),
            &SourceOptions::new().retries(2),
        )
        .unwrap();
    assert_eq!(out.results.len(), 1);
    assert_eq!(out.report.partitions[0].attempts, 2);
    assert_eq!(tries.load(Ordering::SeqCst), 2);
}

#[test]
fn sealing_short_of_the_announced_count() {
    let run = |policy: Policy| {
        let (source, feed) = Source::<File>::counted("files", 8, 5);
        for i in 0..3 {
            feed.push(file(i)).unwrap();
        }
        feed.seal().unwrap();
        source
            .map("read", |f: File| f.events)
            .run(&SequentialExecutor, &SourceOptions::new().policy(policy))
    };
    match run(Policy::FailFast).unwrap_err() {
        SourceError::Missing {
            expected, received, ..
        } => assert_eq!((expected, received), (5, 3)),
        other => panic!("unexpected {other}"),
    }
    let out = run(Policy::Tolerate).unwrap();
    assert_eq!(out.report.missing(), 2);
    assert_eq!(out.results.len(), 3);
}

#[test]
fn producer_mistakes_are_errors_not_partial_results() {
    // More inputs than announced.
    let (source, feed) = Source::<File>::counted("files", 8, 1);
    feed.push(file(1)).unwrap();
    feed.push(file(2)).unwrap();
    feed.seal().unwrap();
    let err = source
        .map("read", |f: File| f.events)
        .run(&SequentialExecutor, &SourceOptions::new().tolerate())
        .unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::TooMany {
                expected: 1,
                received: 2,
                ..
            }
        ),
        "{err}"
    );

    // Every feed dropped without seal.
    let (source, feed) = Source::<File>::new("files", 8);
    feed.push(file(1)).unwrap();
    drop(feed);
    let err = source
        .map("read", |f: File| f.events)
        .run(&SequentialExecutor, &SourceOptions::new().tolerate())
        .unwrap_err();
    assert!(
        matches!(err, SourceError::Unsealed { received: 1, .. }),
        "{err}"
    );

    // Abort.
    let (source, feed) = Source::<File>::new("files", 8);
    feed.push(file(1)).unwrap();
    feed.abort("operator pressed ctrl-c");
    let err = source
        .map("read", |f: File| f.events)
        .run(&ThreadedExecutor::new(2).unwrap(), &SourceOptions::new())
        .unwrap_err();
    assert!(err.to_string().contains("operator pressed ctrl-c"), "{err}");

    // The feed reports a finished compute.
    let (source, feed) = Source::<File>::new("files", 8);
    drop(source);
    assert!(feed.push(file(1)).is_err());
    assert!(matches!(
        feed.try_push(file(1)),
        Err(TryPushError::Closed(_))
    ));
}

#[test]
fn duplicates_run_once() {
    let (source, feed) = Source::<File>::new("files", 8);
    for i in [1, 2, 1, 2, 2] {
        feed.push(file(i)).unwrap();
    }
    feed.fail(
        FailedInput::Descriptor(file(1)),
        "late failure of a done input",
    )
    .unwrap();
    feed.seal().unwrap();
    let out = source
        .map("read", |f: File| f.events)
        .run(&SequentialExecutor, &SourceOptions::new())
        .unwrap();
    assert_eq!(out.results.len(), 2);
    assert_eq!(out.report.received, 2);
    assert_eq!(out.report.duplicates, 4);
}

#[test]
fn partition_ids_are_stable_across_runs_and_processes() {
    let (source, _feed) = Source::<File>::new("files", 1);
    let id = source.partition_id(&file(7)).unwrap();
    // Pinned: a change here breaks every stored checkpoint of a dynamic source.
    assert_eq!(id.to_string(), PINNED_ID);
    let p = source.map("read", |f: File| f.events);
    let key = |i| p.partition(&file(i)).unwrap().key().clone();
    assert_eq!(key(7), key(7));
    assert_ne!(key(7), key(8));
}

const PINNED_ID: &str = "files/d77c0537a5ec5220f63569bb44157be3";

/// Counts the graphs an executor is given (one per job: a partition or a batch).
struct Runs<E> {
    inner: E,
    runs: AtomicUsize,
    outputs: Mutex<Vec<usize>>,
}

impl<E: Executor> Executor for Runs<E> {
    fn execute(
        &self,
        graph: &Arc<Graph>,
        ctx: &brisk_graph::RunContext,
    ) -> Result<brisk_graph::RunOutput, brisk_graph::Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.outputs.lock().unwrap().push(graph.outputs().len());
        self.inner.execute(graph, ctx)
    }
    fn parallelism(&self) -> usize {
        self.inner.parallelism()
    }
}

fn counted<E: Executor>(inner: E) -> Runs<E> {
    Runs {
        inner,
        runs: AtomicUsize::new(0),
        outputs: Mutex::new(Vec::new()),
    }
}

#[test]
fn batches_run_several_partitions_per_job_with_the_same_result() {
    let order = shuffled(20, 3);
    let reference = {
        let (source, feed) = Source::<File>::new("files", 4);
        let p = produce(order.clone(), feed);
        let out = source
            .map("read", |f: File| values(f).iter().sum::<f64>())
            .run(&ThreadedExecutor::new(2).unwrap(), &SourceOptions::new())
            .unwrap();
        p.join().unwrap();
        out
    };
    let exec = counted(ThreadedExecutor::new(2).unwrap());
    let (source, feed) = Source::<File>::new("files", 32);
    // Everything is pushed before the run starts: full batches of 6, then the rest at seal.
    for &i in &order {
        feed.push(file(i)).unwrap();
    }
    feed.seal().unwrap();
    let out = source
        .map("read", |f: File| values(f).iter().sum::<f64>())
        .run(
            &exec,
            &SourceOptions::new().batch(6, Duration::from_secs(3600)),
        )
        .unwrap();
    assert_eq!(out.results, reference.results, "same partitions, same bits");
    assert_eq!(out.report.succeeded(), 20);
    assert_eq!(exec.runs.load(Ordering::SeqCst), 4, "6 + 6 + 6 + 2");
    let mut sizes = exec.outputs.lock().unwrap().clone();
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 6, 6, 6]);
}

#[test]
fn a_batch_waits_at_most_its_window() {
    let exec = counted(ThreadedExecutor::new(2).unwrap());
    let (source, feed) = Source::<File>::new("files", 8);
    // The first two are waiting before the run starts; the third comes only after the first
    // batch finished: the window, not the seal, sent it.
    feed.push(file(1)).unwrap();
    feed.push(file(2)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let producer = std::thread::spawn(move || {
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        feed.push(file(3)).unwrap();
        feed.seal().unwrap();
    });
    struct Notify(Mutex<Option<std::sync::mpsc::Sender<()>>>);
    impl Hooks for Notify {
        fn on_finish(&self, _: &Graph, _: Option<&brisk_graph::Error>) {
            if let Some(tx) = self.0.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    }
    let opts = SourceOptions::new()
        .batch(100, Duration::from_millis(300))
        .compute(ComputeOptions::new().hook(Arc::new(Notify(Mutex::new(Some(tx))))));
    let out = source
        .map("read", |f: File| f.events)
        .run(&exec, &opts)
        .unwrap();
    producer.join().unwrap();
    assert_eq!(out.report.succeeded(), 3);
    assert_eq!(*exec.outputs.lock().unwrap(), [2, 1]);
}

#[test]
fn a_failed_partition_in_a_batch_fails_alone_and_is_retried_alone() {
    // Tolerate: the corrupt file fails with its own error; its batch-mates succeed.
    let (source, feed) = Source::<File>::new("files", 16);
    for i in 1..=6 {
        feed.push(file(i)).unwrap();
    }
    feed.seal().unwrap();
    let out = source
        .try_map("read", picky)
        .run(
            &ThreadedExecutor::new(2).unwrap(),
            &SourceOptions::new()
                .tolerate()
                .batch(6, Duration::from_secs(3600)),
        )
        .unwrap();
    assert_eq!(out.report.succeeded(), 5);
    assert_eq!(out.report.failed(), 1);
    let bad = out
        .report
        .partitions
        .iter()
        .find(|p| p.status == Status::Failed)
        .unwrap();
    assert_eq!(bad.descriptor.as_ref().unwrap().events, 3);
    assert!(
        bad.error
            .as_deref()
            .unwrap()
            .contains("part-003.npy is corrupt")
    );

    // Fail fast names the failed partition, not its batch.
    let (source, feed) = Source::<File>::new("files", 16);
    for i in 1..=6 {
        feed.push(file(i)).unwrap();
    }
    feed.seal().unwrap();
    let err = source
        .try_map("read", picky)
        .run(
            &ThreadedExecutor::new(2).unwrap(),
            &SourceOptions::new().batch(6, Duration::from_secs(3600)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("part-003.npy"), "{err}");

    // Retries run the failed partition again, alone: the others ran once.
    let tries = Arc::new(AtomicUsize::new(0));
    let exec = counted(ThreadedExecutor::new(2).unwrap());
    let (source, feed) = Source::<File>::new("files", 16);
    for i in 1..=4 {
        feed.push(file(i)).unwrap();
    }
    feed.seal().unwrap();
    let out = source
        .try_map_using(
            "flaky",
            Arc::clone(&tries),
            |f: File, t: Arc<AtomicUsize>| {
                if f.events == 2 && t.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(std::io::Error::other("transient"))
                } else {
                    Ok(f.events)
                }
            },
        )
        .run(
            &exec,
            &SourceOptions::new()
                .retries(1)
                .batch(4, Duration::from_secs(3600)),
        )
        .unwrap();
    assert_eq!(out.report.succeeded(), 4);
    let attempts: Vec<u32> = out.report.partitions.iter().map(|p| p.attempts).collect();
    assert_eq!(
        attempts.iter().filter(|&&a| a == 2).count(),
        1,
        "{attempts:?}"
    );
    assert_eq!(
        attempts.iter().filter(|&&a| a == 1).count(),
        3,
        "{attempts:?}"
    );
    assert_eq!(*exec.outputs.lock().unwrap(), [4, 1]);
}

//! The sequential executor: results, order, freeing, failures, hooks, cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use brisk_exec::{SequentialExecutor, compute_all};
use brisk_graph::{
    BoxError, Cache, CancelToken, Checkpoint, ComputeOptions, Delayed, Error, Graph, Hooks,
    TaskEnd, TaskSpec, TaskStatus, Value, delayed, lit, pure,
};
use proptest::prelude::*;

/// Records what the hooks saw.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    started: Mutex<Vec<brisk_graph::NodeId>>,
}

impl Hooks for Recorder {
    fn on_start(&self, graph: &Graph) {
        self.events
            .lock()
            .unwrap()
            .push(format!("start {}", graph.len()));
    }
    fn on_task_start(&self, graph: &Graph, id: brisk_graph::NodeId, _worker: usize) {
        self.started.lock().unwrap().push(id);
        self.events
            .lock()
            .unwrap()
            .push(format!("begin {}", graph.node(id).name()));
    }
    fn on_task_end(&self, graph: &Graph, e: &TaskEnd<'_>) {
        let what = match e.status {
            TaskStatus::Computed(_) => "ok",
            TaskStatus::Loaded(_) => "loaded",
            TaskStatus::Failed(_) => "failed",
            _ => "other",
        };
        self.events.lock().unwrap().push(format!(
            "end {} {what} size={:?}",
            graph.node(e.id).name(),
            e.result_size()
        ));
    }
    fn on_release(&self, graph: &Graph, id: brisk_graph::NodeId) {
        self.events
            .lock()
            .unwrap()
            .push(format!("release {}", graph.node(id).name()));
    }
    fn on_finish(&self, _graph: &Graph, error: Option<&Error>) {
        self.events
            .lock()
            .unwrap()
            .push(format!("finish ok={}", error.is_none()));
    }
}

#[test]
fn hooks_see_every_task_in_order() {
    let x = lit(vec![1.0f64; 4]);
    let s = pure("sum", |v: Vec<f64>| v.iter().sum::<f64>(), (&x,));
    let rec = Arc::new(Recorder::default());
    let out = s
        .compute_with_options(
            &SequentialExecutor,
            &ComputeOptions::new().hook(rec.clone()),
        )
        .unwrap();
    assert_eq!(out, 4.0);
    let events = rec.events.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            "start 2",
            "begin lit",
            "end lit ok size=Some(56)",
            "release lit",
            "begin sum",
            "end sum ok size=Some(8)",
            "finish ok=true",
        ]
    );
}

#[test]
fn intermediates_are_freed_after_their_last_consumer() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    #[derive(Clone)]
    struct Chunk(Vec<u8>);
    impl Chunk {
        fn new(n: usize) -> Self {
            let live = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
            PEAK.fetch_max(live, Ordering::SeqCst);
            Self(vec![1; n])
        }
    }
    impl Drop for Chunk {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // A tree reduction over 256 chunks of 64 KiB: the static order keeps only a few alive.
    let load = TaskSpec::new("load").pure().captures_covered_by_args();
    let mut level: Vec<Delayed<u64>> = (0..256u64)
        .map(|i| {
            let c = load.call(|_i: u64| Chunk::new(1 << 16), (i,));
            pure(
                "bytes",
                |c: Chunk| c.0.iter().map(|&b| u64::from(b)).sum::<u64>(),
                (c,),
            )
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| pure("add", |a: u64, b: u64| a + b, (&p[0], &p[1])))
            .collect();
    }
    assert_eq!(
        level[0].compute_with(&SequentialExecutor).unwrap(),
        256 * (1 << 16)
    );
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
    assert!(
        PEAK.load(Ordering::SeqCst) <= 2,
        "peak {} chunks alive",
        PEAK.load(Ordering::SeqCst)
    );
}

#[test]
fn a_task_error_names_key_task_and_cause() {
    let bad = TaskSpec::new("parse")
        .pure()
        .captures_covered_by_args()
        .try_call(|s: String| s.parse::<i64>(), (String::from("x1"),));
    let out = pure("inc", |v: i64| v + 1, (&bad,));
    let err = out.compute_with(&SequentialExecutor).unwrap_err();
    match &err {
        Error::Task {
            key,
            name,
            attempts,
            ..
        } => {
            assert_eq!(key, bad.key());
            assert_eq!(name, "parse");
            assert_eq!(*attempts, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = brisk_graph::chain(&err);
    assert!(text.contains("invalid digit"), "{text}");
    assert!(text.contains(&bad.key().to_string()), "{text}");
}

#[test]
fn panics_become_errors_and_later_computes_work() {
    let boom = pure("boom", |v: i64| -> i64 { panic!("bad value {v}") }, (7,));
    let err = boom.compute_with(&SequentialExecutor).unwrap_err();
    match err {
        Error::Panic { key, name, message } => {
            assert_eq!(&key, boom.key());
            assert_eq!(name, "boom");
            assert_eq!(message, "bad value 7");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        pure("ok", |v: i64| v, (1,))
            .compute_with(&SequentialExecutor)
            .unwrap(),
        1
    );
}

#[test]
fn fail_fast_stops_at_the_first_error() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let bad = TaskSpec::new("bad").try_call(|| Err::<i64, _>("nope"), ());
    let later: Vec<Delayed<i64>> = (0..10)
        .map(|i| {
            let r = r.clone();
            delayed(
                "count",
                move |x: i64| {
                    r.fetch_add(1, Ordering::SeqCst);
                    x
                },
                (i,),
            )
        })
        .collect();
    let mut all = vec![bad];
    all.extend(later);
    let c: Delayed<Vec<i64>> = all.into_iter().collect();
    assert!(c.compute_with(&SequentialExecutor).is_err());
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "the failing task is first in the order"
    );
}

#[test]
fn keep_going_returns_what_could_be_computed_and_a_report() {
    let good = pure("good", |v: i64| v * 2, (21,));
    let bad = TaskSpec::new("bad")
        .pure()
        .captures_covered_by_args()
        .try_call(|v: i64| Err::<i64, _>(format!("bad {v}")), (1,));
    let after_bad = pure("after", |v: i64| v + 1, (&bad,));
    let after_after = pure("after2", |v: i64| v + 1, (&after_bad,));
    let out = ComputeOptions::new()
        .keep_going()
        .run(&SequentialExecutor, [good.erase(), after_after.erase()])
        .unwrap();
    assert_eq!(out.get(&good).unwrap(), 42);
    let missing = out.get(&after_after).unwrap_err();
    assert!(matches!(missing, Error::Incomplete { .. }), "{missing:?}");
    assert!(
        missing.to_string().contains("1 task(s) failed, 2 skipped"),
        "{missing}"
    );
    let report = out.report();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(&report.failed[0].key, bad.key());
    assert!(brisk_graph::chain(&report.failed[0].error).contains("bad 1"));
    let skipped: Vec<_> = report
        .skipped
        .iter()
        .map(|s| (s.key.clone(), s.because.clone()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (after_bad.key().clone(), bad.key().clone()),
            (after_after.key().clone(), bad.key().clone())
        ]
    );
}

#[test]
fn retries_rerun_a_failing_task() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let flaky = TaskSpec::new("flaky").retries(2).try_call(
        move |v: i64| {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                Err("transient")
            } else {
                Ok(v)
            }
        },
        (5,),
    );
    assert_eq!(flaky.compute_with(&SequentialExecutor).unwrap(), 5);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let hopeless = TaskSpec::new("hopeless").retries(1).try_call(
        move || {
            c.fetch_add(1, Ordering::SeqCst);
            Err::<i64, _>("always")
        },
        (),
    );
    match hopeless.compute_with(&SequentialExecutor).unwrap_err() {
        Error::Task { attempts, .. } => assert_eq!(attempts, 2),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn cancelled_computes_start_nothing_more() {
    let token = CancelToken::new();
    let t = token.clone();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let first = delayed(
        "cancel",
        move || {
            t.cancel();
            1i64
        },
        (),
    );
    let second = delayed(
        "next",
        move |v: i64| {
            r.fetch_add(1, Ordering::SeqCst);
            v
        },
        (&first,),
    );
    let err = second
        .compute_with_options(
            &SequentialExecutor,
            &ComputeOptions::new().cancel_token(token),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn compute_all_shares_common_work() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let shared = TaskSpec::new("shared")
        .pure()
        .captures_covered_by_args()
        .call(
            move |v: i64| {
                c.fetch_add(1, Ordering::SeqCst);
                v
            },
            (3,),
        );
    let a = pure("a", |v: i64| v + 1, (&shared,));
    let b = pure("b", |v: i64| v * 2, (&shared,));
    let out = compute_all([a.erase(), b.erase(), shared.erase()]).unwrap();
    assert_eq!(
        (
            out.get(&a).unwrap(),
            out.get(&b).unwrap(),
            out.get(&shared).unwrap()
        ),
        (4, 6, 3)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// An in-memory cache of `i64` results, counting loads and saves.
#[derive(Default)]
struct MemCache {
    data: Mutex<HashMap<String, i64>>,
    loads: AtomicUsize,
    saves: AtomicUsize,
}

impl Cache for MemCache {
    fn contains(&self, e: &Checkpoint<'_>) -> Result<bool, BoxError> {
        Ok(self.data.lock().unwrap().contains_key(&e.key.to_string()))
    }
    fn load(&self, e: &Checkpoint<'_>) -> Result<Value, BoxError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let v = *self
            .data
            .lock()
            .unwrap()
            .get(&e.key.to_string())
            .ok_or("missing")?;
        Ok(Arc::new(v))
    }
    fn save(&self, e: &Checkpoint<'_>, v: &Value) -> Result<(), BoxError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        let json = serde_json_like(e, v)?;
        self.data.lock().unwrap().insert(e.key.to_string(), json);
        Ok(())
    }
}

/// Goes through the save spec, as a real cache would.
fn serde_json_like(e: &Checkpoint<'_>, v: &Value) -> Result<i64, BoxError> {
    assert!(e.spec.serializable(v).is_some());
    Ok(*v.downcast_ref::<i64>().ok_or("not an i64")?)
}

#[test]
fn checkpointed_tasks_are_saved_then_loaded_and_upstream_skipped() {
    let expensive_runs = Arc::new(AtomicUsize::new(0));
    let r = expensive_runs.clone();
    let build = move || {
        let r = r.clone();
        let raw = TaskSpec::new("expensive")
            .pure()
            .captures_covered_by_args()
            .call(
                move |v: i64| {
                    r.fetch_add(1, Ordering::SeqCst);
                    v * 10
                },
                (4,),
            );
        let saved = pure("stage", |v: i64| v + 1, (raw,)).checkpointed();
        pure("final", |v: i64| v * 2, (saved,))
    };
    let cache = Arc::new(MemCache::default());
    let opts = ComputeOptions::new().cache(cache.clone());
    assert_eq!(
        build()
            .compute_with_options(&SequentialExecutor, &opts)
            .unwrap(),
        82
    );
    assert_eq!(cache.saves.load(Ordering::SeqCst), 1);
    assert_eq!(expensive_runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        build()
            .compute_with_options(&SequentialExecutor, &opts)
            .unwrap(),
        82
    );
    assert_eq!(cache.loads.load(Ordering::SeqCst), 1);
    assert_eq!(
        expensive_runs.load(Ordering::SeqCst),
        1,
        "upstream of a stored checkpoint never runs"
    );
    // Without the cache, everything runs again.
    assert_eq!(build().compute_with(&SequentialExecutor).unwrap(), 82);
    assert_eq!(expensive_runs.load(Ordering::SeqCst), 2);
}

#[test]
fn invalid_nodes_fail_with_a_tokenize_error() {
    #[derive(Clone)]
    struct Fails;
    impl serde::Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("cannot serialize Fails"))
        }
    }
    let d = TaskSpec::new("f")
        .pure()
        .captures_covered_by_args()
        .call(|_x: Fails| 1, (Fails,));
    let err = d.compute_with(&SequentialExecutor).unwrap_err();
    assert!(matches!(err, Error::Tokenize { .. }), "{err:?}");
    assert!(brisk_graph::chain(&err).contains("cannot serialize Fails"));
}

/// A naive recursive evaluation of the random DAG, for comparison.
fn naive(
    i: usize,
    edges: &[(usize, usize)],
    memo: &mut HashMap<usize, i64>,
    visits: &mut usize,
) -> i64 {
    if let Some(&v) = memo.get(&i) {
        return v;
    }
    *visits += 1;
    let mut sum = 0i64;
    for &(a, b) in edges {
        if a == i && b < i {
            sum = sum.wrapping_add(naive(b, edges, memo, visits));
        }
    }
    let v = sum.wrapping_mul(3).wrapping_add(i as i64);
    memo.insert(i, v);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_dags_match_a_naive_evaluation_and_run_each_task_once(
        n in 1usize..40,
        edges in proptest::collection::vec((0usize..40, 0usize..40), 0..120),
        out in 0usize..40,
    ) {
        let runs = Arc::new(Mutex::new(HashMap::<usize, usize>::new()));
        let mut nodes: Vec<Delayed<i64>> = Vec::with_capacity(n);
        for i in 0..n {
            let deps: Delayed<Vec<i64>> = edges
                .iter()
                .filter(|&&(a, b)| a == i && b < i)
                .map(|&(_, b)| nodes[b].clone())
                .collect();
            let runs = runs.clone();
            nodes.push(TaskSpec::new("node").pure().captures_covered_by_args().call(
                move |v: Vec<i64>, k: i64| {
                    *runs.lock().unwrap().entry(k as usize).or_default() += 1;
                    v.iter().fold(0i64, |a, &b| a.wrapping_add(b)).wrapping_mul(3).wrapping_add(k)
                },
                (deps, i as i64),
            ));
        }
        let target = out % n;
        let rec = Arc::new(Recorder::default());
        let got = nodes[target].compute_with_options(&SequentialExecutor, &ComputeOptions::new().hook(rec.clone())).unwrap();
        let mut memo = HashMap::new();
        let mut visits = 0;
        prop_assert_eq!(got, naive(target, &edges, &mut memo, &mut visits));
        // Each reachable task ran exactly once (identical sub-expressions are merged).
        let runs = runs.lock().unwrap();
        prop_assert_eq!(runs.len(), visits);
        prop_assert!(runs.values().all(|&c| c == 1));
        // Tasks started in a topological order.
        let started = rec.started.lock().unwrap();
        let g = Graph::new([&nodes[target]]);
        let mut seen = vec![false; g.len()];
        for &id in started.iter() {
            for &d in g.dependencies(id) {
                prop_assert!(seen[d.index()]);
            }
            seen[id.index()] = true;
        }
    }
}

//! Storage semantics: explicit attachment, culling, modes, chains, nesting, failure rules,
//! single-flight, custom keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use brisk_checkpoint::{
    CheckpointError, CorruptPolicy, DirStore, Encoder, MemoryStore, Mode, SaveWith, Serializer,
    Storage, Store,
};
use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{Delayed, TaskSpec};

use brisk_graph::chain;

/// A pipeline `b = expensive(a)`, `c = b + 1` where `expensive` counts its runs and is
/// checkpointed, and its input `a` counts too.
struct Pipeline {
    runs_a: Arc<AtomicUsize>,
    runs_b: Arc<AtomicUsize>,
}

impl Pipeline {
    fn new() -> Self {
        Self {
            runs_a: Arc::default(),
            runs_b: Arc::default(),
        }
    }
    fn build(&self, x: i64, fail_a: bool) -> (Delayed<i64>, Delayed<i64>) {
        let ra = Arc::clone(&self.runs_a);
        let a = TaskSpec::new("source")
            .pure()
            .captures_covered_by_args()
            .try_call(
                move |x: i64| {
                    ra.fetch_add(1, Ordering::SeqCst);
                    if fail_a {
                        Err("the source is gone")
                    } else {
                        Ok(x)
                    }
                },
                (x,),
            );
        let rb = Arc::clone(&self.runs_b);
        let b = TaskSpec::new("expensive")
            .pure()
            .captures_covered_by_args()
            .call(
                move |v: i64| {
                    rb.fetch_add(1, Ordering::SeqCst);
                    v * 10
                },
                (a,),
            )
            .checkpointed();
        let c = TaskSpec::new("plus_one")
            .pure()
            .captures_covered_by_args()
            .call(|v: i64| v + 1, (b.clone(),));
        (b, c)
    }
    fn runs(&self) -> (usize, usize) {
        (
            self.runs_a.load(Ordering::SeqCst),
            self.runs_b.load(Ordering::SeqCst),
        )
    }
}

#[test]
fn stored_results_are_loaded_and_their_upstream_never_runs() {
    let storage = Storage::new(MemoryStore::new());
    let p = Pipeline::new();
    let (b, c) = p.build(4, false);
    // Without the storage nothing is saved (it is attached per compute, never global).
    assert_eq!(c.compute_with(&SequentialExecutor).unwrap(), 41);
    assert!(!storage.contains(&b).unwrap());
    assert_eq!(
        c.compute_with_options(&SequentialExecutor, &storage.options())
            .unwrap(),
        41
    );
    assert!(storage.contains(&b).unwrap());
    assert_eq!(p.runs(), (2, 2));
    // Loaded: neither `expensive` nor its input runs — even an input that would now fail.
    let (_, c_failing) = p.build(4, true);
    assert_eq!(
        c_failing
            .compute_with_options(&ThreadedExecutor::new(2).unwrap(), &storage.options())
            .unwrap(),
        41
    );
    assert_eq!(p.runs(), (2, 2));
    // Unmarked tasks are never saved: only `expensive` is in the store.
    let p2 = Pipeline::new();
    let store = MemoryStore::new();
    let s2 = Storage::new(store.clone());
    p2.build(1, false)
        .1
        .compute_with_options(&SequentialExecutor, &s2.options())
        .unwrap();
    let keys = store.list("").unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("expensive/"), "{keys:?}");
}

#[test]
fn load_only_writes_nothing() {
    let store = MemoryStore::new();
    let p = Pipeline::new();
    let (b, c) = p.build(2, false);
    c.compute_with_options(
        &SequentialExecutor,
        &Storage::load_only(store.clone()).options(),
    )
    .unwrap();
    assert!(store.list("").unwrap().is_empty());
    // But it loads what is there.
    c.compute_with_options(&SequentialExecutor, &Storage::new(store.clone()).options())
        .unwrap();
    assert_eq!(p.runs(), (2, 2));
    c.compute_with_options(&SequentialExecutor, &Storage::load_only(store).options())
        .unwrap();
    assert_eq!(p.runs(), (2, 2));
    let _ = b;
}

/// Which store of a combination loads an existing entry and which receives a new one.
fn where_things_go(make: impl Fn(&MemoryStore, &MemoryStore) -> Storage) -> (String, String) {
    let (a, b) = (MemoryStore::new(), MemoryStore::new());
    // Present in both with different values: the loaded value tells which one won.
    let spec = TaskSpec::new("v").pure().captures_covered_by_args();
    let stored = spec.call(|| 0i64, ()).checkpointed();
    let key = stored.storage_key();
    a.put(&key, &zstd::bulk::compress(b"1", 3).unwrap())
        .unwrap();
    b.put(&key, &zstd::bulk::compress(b"2", 3).unwrap())
        .unwrap();
    let storage = make(&a, &b);
    let loaded = stored
        .compute_with_options(&SequentialExecutor, &storage.options())
        .unwrap();
    let fresh = TaskSpec::new("w")
        .pure()
        .captures_covered_by_args()
        .call(|| 5i64, ())
        .checkpointed();
    fresh
        .compute_with_options(&SequentialExecutor, &storage.options())
        .unwrap();
    let fkey = fresh.storage_key();
    let saved_to = match (a.contains(&fkey).unwrap(), b.contains(&fkey).unwrap()) {
        (true, false) => "a",
        (false, true) => "b",
        (false, false) => "nowhere",
        (true, true) => "both",
    };
    let loaded_from = match loaded {
        1 => "a",
        2 => "b",
        0 => "computed",
        _ => "?",
    };
    (loaded_from.to_owned(), saved_to.to_owned())
}

#[test]
fn chained_and_nested_priorities_follow_the_documented_table() {
    let arc = |s: &MemoryStore| -> Arc<dyn Store> { Arc::new(s.clone()) };
    let cases: Vec<(&str, (String, String))> = vec![
        ("new(a)", where_things_go(|a, _| Storage::new(a.clone()))),
        (
            "load_only(a)",
            where_things_go(|a, _| Storage::load_only(a.clone())),
        ),
        (
            "chain(a, b)",
            where_things_go(|a, b| Storage::chain([arc(a), arc(b)])),
        ),
        (
            "chain(b, a)",
            where_things_go(|a, b| Storage::chain([arc(b), arc(a)])),
        ),
        (
            "chain(a, b) load-only",
            where_things_go(|a, b| Storage::chain([arc(a), arc(b)]).mode(Mode::LoadOnly)),
        ),
        (
            "a nested in b",
            where_things_go(|a, b| Storage::new(a.clone()).nested_in(&Storage::new(b.clone()))),
        ),
        (
            "load-only a nested in b",
            where_things_go(|a, b| {
                Storage::load_only(a.clone()).nested_in(&Storage::new(b.clone()))
            }),
        ),
        (
            "b nested in a",
            where_things_go(|a, b| Storage::new(b.clone()).nested_in(&Storage::new(a.clone()))),
        ),
    ];
    let got: Vec<(&str, &str, &str)> = cases
        .iter()
        .map(|(n, (l, s))| (*n, l.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("new(a)", "a", "a"),
            ("load_only(a)", "a", "nowhere"),
            ("chain(a, b)", "a", "a"),
            ("chain(b, a)", "b", "b"),
            ("chain(a, b) load-only", "a", "nowhere"),
            ("a nested in b", "a", "a"),
            ("load-only a nested in b", "a", "b"),
            ("b nested in a", "b", "b"),
        ]
    );
    // A hit in an outer scope is loaded, not copied into the inner one.
    let (inner, outer) = (MemoryStore::new(), MemoryStore::new());
    let v = TaskSpec::new("x")
        .pure()
        .captures_covered_by_args()
        .call(|| 3i64, ())
        .checkpointed();
    v.compute_with_options(&SequentialExecutor, &Storage::new(outer.clone()).options())
        .unwrap();
    let nested = Storage::new(inner.clone()).nested_in(&Storage::new(outer));
    assert_eq!(
        v.compute_with_options(&SequentialExecutor, &nested.options())
            .unwrap(),
        3
    );
    assert!(inner.list("").unwrap().is_empty());
}

#[test]
fn failures_store_nothing_and_corrupt_entries_are_never_wrong_values() {
    let store = MemoryStore::new();
    let storage = Storage::new(store.clone());
    // The task fails: nothing stored.
    let failing = TaskSpec::new("f")
        .pure()
        .captures_covered_by_args()
        .try_call(|| Err::<i64, _>("boom"), ())
        .checkpointed();
    assert!(
        failing
            .compute_with_options(&SequentialExecutor, &storage.options())
            .is_err()
    );
    assert!(store.list("").unwrap().is_empty());
    // The encoder fails (NaN through JSON is fine in serde_json? it writes null; use npy on a
    // non-array instead): the compute fails naming the key and stage; nothing stored.
    let bad = TaskSpec::new("g")
        .pure()
        .captures_covered_by_args()
        .call(|| 1i64, ())
        .save_with(Encoder::new().serializer(Serializer::Npy));
    let err = bad
        .compute_with_options(&SequentialExecutor, &storage.options())
        .unwrap_err();
    let msg = chain(&err);
    assert!(
        msg.contains(&bad.storage_key()) && msg.contains("serializer (npy)"),
        "{msg}"
    );
    assert!(store.list("").unwrap().is_empty());

    // A stored entry that does not decode: an error naming key and stage, entry left alone.
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    let v = TaskSpec::new("h")
        .pure()
        .captures_covered_by_args()
        .call(
            move || {
                r.fetch_add(1, Ordering::SeqCst);
                7i64
            },
            (),
        )
        .checkpointed();
    let key = v.storage_key();
    for garbage in [&b""[..], b"garbage", b"\x28\xb5\x2f\xfd\x00"] {
        store.put(&key, garbage).unwrap();
        let err = v
            .compute_with_options(&SequentialExecutor, &storage.options())
            .unwrap_err();
        let msg = chain(&err);
        assert!(
            msg.contains(&key) && msg.contains("compressor (zstd)"),
            "{msg}"
        );
        assert_eq!(
            store.get(&key).unwrap().as_deref(),
            Some(garbage),
            "left in place"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // Opt-in: recompute and overwrite.
    let healing = Storage::new(store.clone()).policy(CorruptPolicy::RecomputeOnCorrupt);
    assert_eq!(
        v.compute_with_options(&SequentialExecutor, &healing.options())
            .unwrap(),
        7
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        v.compute_with_options(&SequentialExecutor, &storage.options())
            .unwrap(),
        7
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the overwritten entry now loads"
    );
    // An entry of another type: an error at the serializer/value stage, never a wrong value.
    let s = TaskSpec::new("s")
        .pure()
        .captures_covered_by_args()
        .call(|| String::from("x"), ())
        .checkpointed();
    store
        .put(&s.storage_key(), &zstd::bulk::compress(b"42", 3).unwrap())
        .unwrap();
    let err = s
        .compute_with_options(&SequentialExecutor, &storage.options())
        .unwrap_err();
    assert!(chain(&err).contains("serializer (json)"), "{}", chain(&err));
}

#[test]
fn concurrent_computes_run_a_missing_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    #[derive(Debug)]
    struct Counting {
        inner: DirStore,
        writes: Arc<AtomicUsize>,
    }
    impl Store for Counting {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn get(&self, k: &str) -> Result<Option<Vec<u8>>, brisk_checkpoint::StoreError> {
            self.inner.get(k)
        }
        fn put(&self, k: &str, v: &[u8]) -> Result<(), brisk_checkpoint::StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.put(k, v)
        }
        fn delete(&self, k: &str) -> Result<(), brisk_checkpoint::StoreError> {
            self.inner.delete(k)
        }
        fn contains(&self, k: &str) -> Result<bool, brisk_checkpoint::StoreError> {
            self.inner.contains(k)
        }
        fn list(&self, p: &str) -> Result<Vec<String>, brisk_checkpoint::StoreError> {
            self.inner.list(p)
        }
    }
    let storage = Storage::new(Counting {
        inner: DirStore::new(dir.path()).unwrap(),
        writes: Arc::clone(&writes),
    });
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let results: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (storage, runs, barrier) =
                    (storage.clone(), Arc::clone(&runs), Arc::clone(&barrier));
                s.spawn(move || {
                    let v = TaskSpec::new("slow")
                        .pure()
                        .captures_covered_by_args()
                        .call(
                            move || {
                                runs.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(200));
                                99i64
                            },
                            (),
                        )
                        .checkpointed();
                    barrier.wait();
                    v.compute_with_options(&SequentialExecutor, &storage.options())
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results, [99; 8]);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "single-flight: one run");
    assert_eq!(writes.load(Ordering::SeqCst), 1, "single-flight: one write");
}

#[test]
fn a_failed_flight_lets_the_waiters_run_it() {
    let storage = Storage::new(MemoryStore::new());
    let attempts = Arc::new(AtomicUsize::new(0));
    let results: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (storage, attempts) = (storage.clone(), Arc::clone(&attempts));
                s.spawn(move || {
                    let v = TaskSpec::new("flaky")
                        .pure()
                        .captures_covered_by_args()
                        .try_call(
                            move || {
                                let n = attempts.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(50));
                                if n == 0 {
                                    Err("first run fails")
                                } else {
                                    Ok(1i64)
                                }
                            },
                            (),
                        )
                        .checkpointed();
                    v.compute_with_options(&SequentialExecutor, &storage.options())
                        .is_ok()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|ok| !**ok).count(), 1, "{results:?}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one failure, then one successful run"
    );
}

#[brisk_macros::task(save, key_prefix = "double-", hasher = key_on_x)]
fn double(x: i64) -> i64 {
    2 * x
}

fn key_on_x(args: &brisk_graph::Args<'_>) -> Result<String, brisk_graph::BoxError> {
    Ok(args
        .named::<i64>("x")
        .ok_or("x must be a plain i64")?
        .to_string())
}

#[brisk_macros::task(save, exclude(handle))]
fn read_with(path: String, handle: u64) -> String {
    format!("{path} via {handle}")
}

#[brisk_macros::task(save)]
fn positional(a: i64, b: String) -> Vec<String> {
    vec![a.to_string(), b]
}

#[test]
fn custom_keys_name_the_stored_entries() {
    let store = MemoryStore::new();
    let storage = Storage::new(store.clone());
    assert_eq!(
        double(21)
            .compute_with_options(&SequentialExecutor, &storage.options())
            .unwrap(),
        42
    );
    assert_eq!(store.list("").unwrap(), ["double-21"]);
    // The handle does not change the key: the second call loads the first's result.
    let first = read_with(String::from("a.tif"), 3);
    let second = read_with(String::from("a.tif"), 4);
    assert_eq!(first.storage_key(), second.storage_key());
    first
        .compute_with_options(&SequentialExecutor, &storage.options())
        .unwrap();
    assert_eq!(
        second
            .compute_with_options(&SequentialExecutor, &storage.options())
            .unwrap(),
        "a.tif via 3"
    );
    // Positional keys are pinned (stable across processes, platforms and Rust versions).
    assert_eq!(
        positional(1, String::from("b")).storage_key(),
        "positional/d3b224a27b17e7990a9392ce15d2f645"
    );
}

#[test]
fn per_task_encoders_and_literals() {
    let store = MemoryStore::new();
    let storage = Storage::new(store.clone());
    let readable = TaskSpec::new("point")
        .pure()
        .captures_covered_by_args()
        .call(
            |x: i64, y: i64| {
                std::collections::BTreeMap::from([(String::from("x"), x), (String::from("y"), y)])
            },
            (1, 2),
        )
        .save_with(Encoder::new().serializer(Serializer::Json).no_compressor());
    readable
        .compute_with_options(&SequentialExecutor, &storage.options())
        .unwrap();
    assert_eq!(
        crate::codec::payload(&store.get(&readable.storage_key()).unwrap().unwrap()),
        br#"{"x":1,"y":2}"#
    );
    // A literal marked as checkpointed is just a value: fine anywhere in the graph.
    let lit = brisk_graph::lit(5i64);
    let sum = TaskSpec::new("sum")
        .pure()
        .captures_covered_by_args()
        .call(|a: i64, b: i64| a + b, (lit, 1))
        .checkpointed();
    assert_eq!(
        sum.compute_with_options(&SequentialExecutor, &storage.options())
            .unwrap(),
        6
    );
    assert!(matches!(
        storage.contains(
            &TaskSpec::new("k")
                .key_prefix("_brisk/")
                .hasher(|_| Ok("x".into()))
                .call(|| 1i64, ())
        ),
        Err(CheckpointError::Store(
            brisk_checkpoint::StoreError::BadKey { .. }
        ))
    ));
}

//! The threaded executor: same results as the sequential one, bounded memory, failure
//! policies, cancellation, panics, retries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{
    CancelToken, ComputeOptions, Delayed, Error, Executor, Graph, Hooks, TaskEnd, TaskSpec,
    delayed, lit, pure,
};
use proptest::prelude::*;

fn exec(n: usize) -> ThreadedExecutor {
    ThreadedExecutor::new(n).unwrap()
}

/// Builds a random DAG whose node values depend on everything upstream.
fn random_dag(n: usize, edges: &[(usize, usize)]) -> Vec<Delayed<u64>> {
    let mut nodes: Vec<Delayed<u64>> = Vec::with_capacity(n);
    for i in 0..n {
        let deps: Delayed<Vec<u64>> = edges
            .iter()
            .filter(|&&(a, b)| a == i && b < i)
            .map(|&(_, b)| nodes[b].clone())
            .collect();
        nodes.push(pure(
            "node",
            |v: Vec<u64>, k: u64| {
                v.iter()
                    .fold(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), |a, &b| {
                        a.rotate_left(7) ^ b
                    })
            },
            (deps, i as u64),
        ));
    }
    nodes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn results_equal_the_sync_executor(
        n in 1usize..60,
        edges in proptest::collection::vec((0usize..60, 0usize..60), 0..200),
        outs in proptest::collection::vec(0usize..60, 1..5),
        threads in 1usize..5,
    ) {
        let nodes = random_dag(n, &edges);
        let outputs: Vec<_> = outs.iter().map(|&o| nodes[o % n].erase()).collect();
        let a = ComputeOptions::new().run(&SequentialExecutor, outputs.clone()).unwrap();
        let b = ComputeOptions::new().run(&exec(threads), outputs).unwrap();
        for &o in &outs {
            prop_assert_eq!(a.get(&nodes[o % n]).unwrap(), b.get(&nodes[o % n]).unwrap());
        }
    }
}

/// Reductions over 64 or more tasks (a worker gathers their decrements): sums over strided
/// subsets of shared leaves, some with a priority, one leaf possibly failing.
fn wide_graph(
    leaves: usize,
    wides: &[(usize, usize, usize)],
    failing: Option<usize>,
) -> Vec<Delayed<u64>> {
    let hot = TaskSpec::new("hot").pure().priority(2);
    let leaf = TaskSpec::new("leaf").pure();
    let leaf_nodes: Vec<Delayed<u64>> = (0..leaves)
        .map(|i| {
            let spec = if i % 7 == 0 { &hot } else { &leaf };
            spec.try_call(
                move |x: u64| {
                    if Some(x as usize) == failing {
                        Err(format!("leaf {x} failed"))
                    } else {
                        Ok(x * x)
                    }
                },
                (i as u64,),
            )
        })
        .collect();
    let mut outs: Vec<Delayed<u64>> = Vec::new();
    for (j, &(start, count, step)) in wides.iter().enumerate() {
        let parts: Delayed<Vec<u64>> = (0..count)
            .map(|t| leaf_nodes[(start + t * step) % leaves].clone())
            .collect();
        let before: Delayed<Vec<u64>> = outs.iter().cloned().collect();
        let spec = TaskSpec::new("wide")
            .pure()
            .priority(if j % 2 == 1 { 1 } else { 0 });
        outs.push(spec.call(
            |v: Vec<u64>, b: Vec<u64>, j: u64| {
                v.iter().chain(&b).fold(j, |a, &x| a.rotate_left(5) ^ x)
            },
            (parts, before, j as u64),
        ));
    }
    outs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn wide_reductions_equal_the_sync_executor(
        leaves in 64usize..400,
        wides in proptest::collection::vec((0usize..400, 64usize..300, 1usize..4), 1..5),
        failing in proptest::option::of(0usize..400),
        threads in 1usize..5,
    ) {
        let outs = wide_graph(leaves, &wides, failing);
        let erased: Vec<_> = outs.iter().map(Delayed::erase).collect();
        let opts = ComputeOptions::new().keep_going();
        let a = opts.run(&SequentialExecutor, erased.clone()).unwrap();
        let b = opts.run(&exec(threads), erased.clone()).unwrap();
        for o in &outs {
            prop_assert_eq!(a.get(o).ok(), b.get(o).ok());
        }
        let failed = |r: &brisk_graph::Report| {
            let mut k: Vec<String> = r.failed.iter().map(|f| f.key.to_string()).collect();
            k.sort();
            k
        };
        let skipped = |r: &brisk_graph::Report| {
            let mut k: Vec<String> = r.skipped.iter().map(|s| s.key.to_string()).collect();
            k.sort();
            k
        };
        prop_assert_eq!(failed(a.report()), failed(b.report()));
        prop_assert_eq!(skipped(a.report()), skipped(b.report()));
        // Fail-fast: the same error, or the same values.
        let a = ComputeOptions::new().run(&SequentialExecutor, erased.clone());
        let b = ComputeOptions::new().run(&exec(threads), erased);
        prop_assert_eq!(a.is_ok(), b.is_ok());
        if let (Ok(a), Ok(b)) = (a, b) {
            for o in &outs {
                prop_assert_eq!(a.get(o).unwrap(), b.get(o).unwrap());
            }
        }
    }
}

#[test]
fn a_reduction_does_not_wait_for_a_slow_task_it_does_not_need() {
    // 128 leaves feed one reduction; a slow task that the reduction does not need is the
    // last root. The roots go out in two halves: the worker with the second half runs its
    // (instant) leaves, then the slow task, while the other is still busy with the first
    // half's leaves (5 ms each) — so the first worker still owes decrements of the
    // reduction's counter when the slow task starts. The reduction must start when the
    // leaves are done, long before the slow task ends.
    let t0 = std::time::Instant::now();
    let started = Arc::new(Mutex::new(None));
    let s = Arc::clone(&started);
    let parts: Delayed<Vec<u64>> = (0..128u64)
        .map(|i| {
            pure(
                "leaf",
                |x: u64| {
                    if x < 64 {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    x
                },
                (i,),
            )
        })
        .collect();
    let reduce = TaskSpec::new("reduce").captures_covered_by_args().call(
        move |v: Vec<u64>| {
            *s.lock().unwrap() = Some(t0.elapsed());
            v.iter().sum::<u64>()
        },
        (parts,),
    );
    let slow = TaskSpec::new("slow").call(
        |x: u64| {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            x
        },
        (1u64,),
    );
    let after = pure("after", |x: u64| x + 1, (&slow,));
    let out = ComputeOptions::new()
        .run(&exec(2), vec![reduce.erase(), after.erase()])
        .unwrap();
    assert_eq!(out.get(&reduce).unwrap(), 127 * 128 / 2);
    let started = started.lock().unwrap().expect("the reduction ran");
    assert!(
        started < std::time::Duration::from_millis(1000),
        "the reduction started after {started:?}, behind the slow task"
    );
}

/// Counts task starts and checks each task's dependencies finished first.
#[derive(Default)]
struct OrderCheck {
    finished: Mutex<Vec<bool>>,
    starts: AtomicUsize,
    violations: AtomicUsize,
}

impl Hooks for OrderCheck {
    fn on_start(&self, graph: &Graph) {
        *self.finished.lock().unwrap() = vec![false; graph.len()];
    }
    fn on_task_start(&self, graph: &Graph, id: brisk_graph::NodeId, _worker: usize) {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let f = self.finished.lock().unwrap();
        if graph.dependencies(id).iter().any(|&d| !f[d.index()]) {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn on_task_end(&self, _graph: &Graph, e: &TaskEnd<'_>) {
        self.finished.lock().unwrap()[e.id.index()] = true;
    }
}

#[test]
fn every_task_runs_once_after_its_dependencies() {
    let nodes = random_dag(
        300,
        &(0..300usize)
            .flat_map(|i| [(i, i / 2), (i, i / 3), (i, i.saturating_sub(1))])
            .collect::<Vec<_>>(),
    );
    let hook = Arc::new(OrderCheck::default());
    let opts = ComputeOptions::new().hook(hook.clone());
    let out = nodes[299].compute_with_options(&exec(4), &opts).unwrap();
    assert_eq!(out, nodes[299].compute_with(&SequentialExecutor).unwrap());
    let g = Graph::new([&nodes[299]]);
    assert_eq!(hook.starts.load(Ordering::SeqCst), g.len());
    assert_eq!(hook.violations.load(Ordering::SeqCst), 0);
}

#[test]
fn a_streaming_reduction_holds_few_buffers() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    #[derive(Clone)]
    struct Buf(Vec<u8>);
    impl Buf {
        fn new() -> Self {
            let live = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
            PEAK.fetch_max(live, Ordering::SeqCst);
            Self(vec![1; 1 << 20])
        }
    }
    impl Drop for Buf {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let workers = 2;
    let make = TaskSpec::new("make").pure();
    let mut level: Vec<Delayed<u64>> = (0..10_000u64)
        .map(|i| {
            let b = make.call(|_i: u64| Buf::new(), (i,));
            pure("len", |b: Buf| b.0.len() as u64, (b,))
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| match p {
                [a, b] => pure("add", |x: u64, y: u64| x + y, (a, b)),
                [a] => a.clone(),
                _ => unreachable!(),
            })
            .collect();
    }
    let total = level[0].compute_with(&exec(workers)).unwrap();
    assert_eq!(total, 10_000 << 20);
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
    let peak = PEAK.load(Ordering::SeqCst);
    assert!(
        peak <= 4 * workers,
        "{peak} buffers of 1 MiB alive at once with {workers} workers"
    );
}

#[test]
fn fail_fast_cancels_tasks_not_yet_started() {
    let ran = Arc::new(AtomicUsize::new(0));
    let e = exec(2);
    let bad = TaskSpec::new("bad")
        .priority(1)
        .try_call(|| Err::<u64, _>("broken input"), ());
    let many: Vec<Delayed<u64>> = (0..2_000u64)
        .map(|i| {
            let r = ran.clone();
            delayed(
                "work",
                move |x: u64| {
                    r.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    x
                },
                (i,),
            )
        })
        .collect();
    let mut all = vec![bad.clone()];
    all.extend(many);
    let c: Delayed<Vec<u64>> = all.into_iter().collect();
    let err = c.compute_with(&e).unwrap_err();
    match &err {
        Error::Task { key, name, .. } => {
            assert_eq!(key, bad.key());
            assert_eq!(name, "bad");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(brisk_graph::chain(&err).contains("broken input"));
    let ran = ran.load(Ordering::SeqCst);
    assert!(ran < 100, "{ran} of 2000 tasks ran after the failure");
    // The pool keeps working.
    assert_eq!(pure("ok", |x: u64| x, (3u64,)).compute_with(&e).unwrap(), 3);
}

#[test]
fn keep_going_returns_partial_results_and_a_report() {
    let e = exec(3);
    let good: Vec<Delayed<u64>> = (0..50u64)
        .map(|i| pure("good", |x: u64| x * 2, (i,)))
        .collect();
    let bad = TaskSpec::new("bad")
        .pure()
        .try_call(|x: u64| Err::<u64, _>(format!("bad {x}")), (7u64,));
    let blocked = pure("blocked", |x: u64| x + 1, (&bad,));
    let blocked2 = pure("blocked2", |x: u64, y: u64| x + y, (&blocked, &good[0]));
    let mut outs: Vec<_> = good.iter().map(Delayed::erase).collect();
    outs.push(blocked2.erase());
    let out = ComputeOptions::new().keep_going().run(&e, outs).unwrap();
    for (i, g) in good.iter().enumerate() {
        assert_eq!(out.get(g).unwrap(), 2 * i as u64);
    }
    assert!(matches!(out.get(&blocked2), Err(Error::Incomplete { .. })));
    let r = out.report();
    assert_eq!(r.failed.len(), 1);
    assert_eq!(&r.failed[0].key, bad.key());
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
}

#[test]
fn a_panicking_task_is_an_error_and_the_pool_survives() {
    let e = exec(2);
    for round in 0..20 {
        let boom = pure(
            "boom",
            |x: u64| -> u64 { panic!("round {x}") },
            (round as u64,),
        );
        let sum = pure("sum", |a: u64, b: u64| a + b, (&boom, lit(1u64)));
        match sum.compute_with(&e).unwrap_err() {
            Error::Panic { key, name, message } => {
                assert_eq!(&key, boom.key());
                assert_eq!(name, "boom");
                assert_eq!(message, format!("round {round}"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        pure("fine", |x: u64| x + 1, (1u64,))
            .compute_with(&e)
            .unwrap(),
        2
    );
}

#[test]
fn retries_succeed_on_a_task_that_fails_twice() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let flaky = TaskSpec::new("flaky").retries(2).try_call(
        move |x: u64| {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                Err("transient")
            } else {
                Ok(x)
            }
        },
        (9u64,),
    );
    assert_eq!(flaky.compute_with(&exec(2)).unwrap(), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn a_cancel_token_stops_a_running_compute() {
    let e = exec(2);
    let token = CancelToken::new();
    let started = Arc::new(Barrier::new(2));
    let ran = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let gate = delayed(
        "gate",
        move || {
            s.wait();
            0u64
        },
        (),
    );
    let rest: Delayed<Vec<u64>> = (0..1_000u64)
        .map(|i| {
            let r = ran.clone();
            delayed(
                "slow",
                move |g: u64, x: u64| {
                    r.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    g + x
                },
                (&gate, i),
            )
        })
        .collect();
    let t = token.clone();
    let canceller = std::thread::spawn(move || {
        started.wait();
        t.cancel();
    });
    let err = rest
        .compute_with_options(&e, &ComputeOptions::new().cancel_token(token))
        .unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert!(ran.load(Ordering::SeqCst) < 1_000);
}

#[test]
fn concurrent_and_nested_computes_share_the_pool() {
    let e = Arc::new(exec(2));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                let parts: Delayed<Vec<u64>> = (0..500u64)
                    .map(|i| pure("p", |x: u64, t: u64| x * t, (i, t)))
                    .collect();
                pure("s", |v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
                    .compute_with(&*e)
                    .unwrap()
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), t as u64 * 124_750);
    }
    // A task that computes another graph on the same executor does not deadlock.
    let inner_exec = e.clone();
    let outer: Delayed<Vec<u64>> = (0..4u64)
        .map(|i| {
            let ie = inner_exec.clone();
            delayed(
                "outer",
                move |x: u64| {
                    pure("inner", |y: u64| y * 10, (x,))
                        .compute_with(&*ie)
                        .unwrap()
                },
                (i,),
            )
        })
        .collect();
    assert_eq!(outer.compute_with(&*e).unwrap(), vec![0, 10, 20, 30]);
}

#[test]
fn hooks_see_the_same_tasks_as_on_the_sync_executor() {
    // Tasks that ended and values released, by name: a value handed straight to the next
    // task of a chain is released like one taken from its slot.
    #[derive(Default)]
    struct Names(Mutex<HashMap<String, usize>>);
    impl Hooks for Names {
        fn on_task_end(&self, graph: &Graph, e: &TaskEnd<'_>) {
            *self
                .0
                .lock()
                .unwrap()
                .entry(graph.node(e.id).name().to_owned())
                .or_default() += 1;
        }
        fn on_release(&self, graph: &Graph, id: brisk_graph::NodeId) {
            *self
                .0
                .lock()
                .unwrap()
                .entry(format!("released {}", graph.node(id).name()))
                .or_default() += 1;
        }
    }
    let nodes = random_dag(80, &(0..80).map(|i| (i, i / 2)).collect::<Vec<_>>());
    let run = |ex: &dyn Executor| {
        let h = Arc::new(Names::default());
        nodes[79]
            .compute_with_options(ex, &ComputeOptions::new().hook(h.clone()))
            .unwrap();
        h.0.lock().unwrap().clone()
    };
    assert_eq!(run(&SequentialExecutor), run(&exec(3)));
}

#[test]
fn compute_hands_over_the_result_without_copying_it() {
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    struct Big(Vec<u8>);
    impl Clone for Big {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::SeqCst);
            Self(self.0.clone())
        }
    }
    let big = delayed("big", || Big(vec![7; 1 << 20]), ());
    let bigger = pure(
        "grow",
        |mut b: Big| {
            b.0.push(1);
            b
        },
        (&big,),
    );
    for ex in [&exec(2) as &dyn Executor, &SequentialExecutor] {
        let out = bigger.compute_with(ex).unwrap();
        assert_eq!(out.0.len(), (1 << 20) + 1);
    }
    assert_eq!(
        CLONES.load(Ordering::SeqCst),
        0,
        "intermediates and results are moved, not cloned"
    );
}

#[test]
fn a_value_shared_by_many_consumers_reaches_each_of_them() {
    // Consumers on different workers take their input at the same moment: each must get the
    // value, whichever of them is counted last (that one moves it out of its slot).
    let ex = exec(4);
    for round in 0..3000u64 {
        let shared = pure("shared", |r: u64| vec![r; 64], (round,));
        let users: Vec<Delayed<u64>> = (0..16u64)
            .map(|i| {
                pure(
                    "user",
                    |v: Vec<u64>, i: u64| v.iter().sum::<u64>() + i,
                    (shared.clone(), i),
                )
            })
            .collect();
        let outputs: Vec<_> = users.iter().map(Delayed::erase).collect();
        let c = ComputeOptions::new().run(&ex, outputs).unwrap();
        for (i, u) in users.iter().enumerate() {
            assert_eq!(
                c.get(u).unwrap(),
                round * 64 + i as u64,
                "round {round}, user {i}"
            );
        }
    }
}

#[test]
fn a_chain_whose_links_jump_the_queue_keeps_every_value() {
    // Each link's value goes straight to the next link when that runs next on the same
    // worker; a link with a priority is queued instead, and its input must be in its slot.
    let plain = TaskSpec::new("plain").pure();
    let urgent = TaskSpec::new("urgent").pure().priority(1);
    let mut v = plain.call(|x: u64| x + 1, (0u64,));
    for i in 1..300u64 {
        let spec = if i % 3 == 0 { &urgent } else { &plain };
        v = spec.call(move |x: u64, i: u64| x.wrapping_mul(31) ^ i, (v, i));
    }
    let want = v.compute_with(&SequentialExecutor).unwrap();
    for workers in [1, 3] {
        assert_eq!(
            v.compute_with(&exec(workers)).unwrap(),
            want,
            "{workers} workers"
        );
    }
}

#[test]
fn pairs_whose_later_half_carries_its_value_keep_every_value() {
    // The dependency that finishes last hands its value straight to the pair's sum when
    // that runs next on the same worker; a sum with a priority is queued instead and finds
    // both values in their slots. Some leaves are also read by a second task (not carried).
    let leaf = TaskSpec::new("leaf").pure();
    let add = TaskSpec::new("add").pure();
    let urgent = TaskSpec::new("add_urgent").pure().priority(1);
    let leaves: Vec<Delayed<u64>> = (0..2000u64)
        .map(|i| leaf.call(|x: u64| x.wrapping_mul(0x9E37_79B9), (i,)))
        .collect();
    let mut level = leaves.clone();
    let mut round = 0u64;
    while level.len() > 1 {
        round += 1;
        level = level
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| match pair {
                [a, b] => {
                    let spec = if (i as u64 + round).is_multiple_of(5) {
                        &urgent
                    } else {
                        &add
                    };
                    spec.call(|x: u64, y: u64| x.rotate_left(7) ^ y, (a, b))
                }
                [a] => a.clone(),
                _ => unreachable!(),
            })
            .collect();
    }
    let shared: Delayed<Vec<u64>> = leaves.iter().step_by(7).cloned().collect();
    let want = (
        level[0].compute_with(&SequentialExecutor).unwrap(),
        shared.compute_with(&SequentialExecutor).unwrap(),
    );
    for workers in [1, 2, 4] {
        for _ in 0..20 {
            let mut c = ComputeOptions::new()
                .run(&exec(workers), [level[0].erase(), shared.erase()])
                .unwrap();
            let got = (c.take(&level[0]).unwrap(), c.take(&shared).unwrap());
            assert_eq!(got, want, "{workers} workers");
        }
    }
}

#[test]
fn an_output_listed_twice_can_be_taken_twice() {
    let a = pure("x", |v: u64| vec![v; 3], (5u64,));
    for ex in [&exec(2) as &dyn Executor, &SequentialExecutor] {
        let mut c = ComputeOptions::new()
            .run(ex, [a.erase(), a.erase()])
            .unwrap();
        assert_eq!(c.take(&a).unwrap(), vec![5; 3]);
        assert_eq!(c.take(&a).unwrap(), vec![5; 3]);
        assert!(matches!(c.take(&a), Err(Error::Incomplete { .. })));
    }
}

#[test]
fn graphs_of_several_hundred_thousand_tasks_keep_every_value() {
    // The executor keeps its per-task state in pieces of 131 072 tasks: values and counts
    // cross from piece to piece (pairs split between pieces, a collect over all of them).
    let leaf = TaskSpec::new("leaf").pure();
    let add = TaskSpec::new("add").pure();
    let leaves: Vec<Delayed<u64>> = (0..150_001u64)
        .map(|i| leaf.call(|x: u64| x.wrapping_mul(0x9E37_79B9), (i,)))
        .collect();
    let mut level = leaves.clone();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => add.call(|x: u64, y: u64| x.rotate_left(7) ^ y, (a, b)),
                [a] => a.clone(),
                _ => unreachable!(),
            })
            .collect();
    }
    let all: Delayed<Vec<u64>> = leaves.iter().cloned().collect();
    let want = (
        level[0].compute_with(&SequentialExecutor).unwrap(),
        all.compute_with(&SequentialExecutor).unwrap(),
    );
    assert_eq!(want.1.len(), 150_001);
    for workers in [1, 2, 4] {
        let mut c = ComputeOptions::new()
            .run(&exec(workers), [level[0].erase(), all.erase()])
            .unwrap();
        let got = (c.take(&level[0]).unwrap(), c.take(&all).unwrap());
        assert_eq!(got, want, "{workers} workers");
    }
}

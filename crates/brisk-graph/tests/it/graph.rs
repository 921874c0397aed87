//! Materialization: culling, merging, ordering, queries, DOT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use brisk_graph::{
    BoxError, Cache, Checkpoint, Delayed, DotOptions, Graph, NodeId, Resource, TaskSpec, Value,
    delayed, lit, pure,
};
use proptest::prelude::*;

fn inc(x: &Delayed<i64>) -> Delayed<i64> {
    pure("inc", |v: i64| v + 1, (x,))
}

fn add(a: &Delayed<i64>, b: &Delayed<i64>) -> Delayed<i64> {
    pure("add", |p: i64, q: i64| p + q, (a, b))
}

/// Asserts `order` holds every node once, dependencies first.
fn assert_topological(g: &Graph) {
    let order = g.order();
    assert_eq!(order.len(), g.len());
    let mut pos = vec![usize::MAX; g.len()];
    for (p, &id) in order.iter().enumerate() {
        assert_eq!(pos[id.index()], usize::MAX, "node {id} appears twice");
        pos[id.index()] = p;
    }
    for id in NodeId::all(g.len()) {
        for &d in g.dependencies(id) {
            assert!(
                pos[d.index()] < pos[id.index()],
                "dependency {d} after {id}"
            );
            assert!(d < id, "ids are topological");
        }
    }
}

#[test]
fn unreachable_nodes_are_culled() {
    let x = lit(1i64);
    let used = inc(&x);
    let _unused = inc(&used);
    let g = Graph::new([&used]);
    assert_eq!(g.len(), 2);
    assert!(g.id_of(_unused.key()).is_none());
}

#[test]
fn equal_keys_are_merged_and_metadata_combined() {
    let x = lit(1i64);
    let a = inc(&x).with_retries(2);
    let b = inc(&x).with_retries(5).with_priority(3);
    assert_eq!(a.key(), b.key());
    let s = add(&a, &b);
    let g = Graph::new([&s]);
    assert_eq!(g.len(), 3);
    let id = g.id_of(a.key()).unwrap();
    assert_eq!(g.node(id).annotations().retries, 5);
    assert_eq!(g.node(id).annotations().priority, 3);
    // `add` lists the merged node once as a dependency, though it is both arguments.
    assert_eq!(g.dependencies(g.id_of(s.key()).unwrap()).len(), 1);
    assert_eq!(g.edge_count(), 2);
}

#[test]
fn queries_by_key() {
    let x = lit(1i64);
    let a = inc(&x);
    let b = pure("dec", |v: i64| v - 1, (&x,));
    let s = add(&a, &b);
    let g = Graph::new([&s, &a]);
    let deps: Vec<_> = g.dependencies_of(s.key()).unwrap().cloned().collect();
    assert_eq!(deps, vec![a.key().clone(), b.key().clone()]);
    let mut dependents: Vec<_> = g.dependents_of(x.key()).unwrap().cloned().collect();
    dependents.sort();
    let mut expected = vec![a.key().clone(), b.key().clone()];
    expected.sort();
    assert_eq!(dependents, expected);
    assert_eq!(g.outputs().len(), 2);
    assert_eq!(g.key(g.outputs()[1]), a.key());
    assert!(g.dependencies_of(lit(99i64).key()).is_none());
}

#[test]
fn order_starts_the_tallest_branch_first_and_finishes_branches() {
    let x = lit(0i64);
    let shallow = pure("shallow", |v: i64| v, (&x,));
    let mut deep = x.clone();
    for _ in 0..5 {
        deep = inc(&deep);
    }
    let s = add(&shallow, &deep);
    let g = Graph::new([&s]);
    assert_topological(&g);
    let names: Vec<&str> = g.order().iter().map(|&i| g.node(i).name()).collect();
    assert_eq!(
        names,
        ["lit", "inc", "inc", "inc", "inc", "inc", "shallow", "add"]
    );
}

#[test]
fn tree_reduction_order_combines_as_soon_as_possible() {
    // A binary tree of sums over 8 leaves: in the static order, each combine runs right after
    // its second child, so at most log2(8) + 1 partial results are alive at once.
    let leaves: Vec<Delayed<i64>> = (0..8).map(|i| pure("leaf", |v: i64| v, (i,))).collect();
    let mut level = leaves;
    while level.len() > 1 {
        level = level.chunks(2).map(|p| add(&p[0], &p[1])).collect();
    }
    let g = Graph::new([&level[0]]);
    assert_topological(&g);
    let mut alive = 0usize;
    let mut max_alive = 0usize;
    let mut pending: Vec<usize> = NodeId::all(g.len())
        .map(|i| g.dependents(i).len())
        .collect();
    for &id in g.order() {
        for &d in g.dependencies(id) {
            pending[d.index()] -= 1;
            if pending[d.index()] == 0 {
                alive -= 1;
            }
        }
        alive += 1;
        max_alive = max_alive.max(alive);
    }
    assert!(max_alive <= 5, "held {max_alive} results at once");
}

#[test]
fn long_chains_build_order_and_drop_without_recursion() {
    let mut v = lit(0u64);
    for _ in 0..200_000 {
        v = delayed("step", |x: u64| x + 1, (v,));
    }
    let g = Graph::new([&v]);
    assert_eq!(g.len(), 200_001);
    assert_eq!(g.order().last(), g.outputs().first());
    drop(g);
    drop(v); // a recursive drop of 200k nested nodes would overflow the stack
}

#[test]
fn run_task_moves_unshared_arguments_instead_of_cloning() {
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug)]
    struct Counted(#[allow(dead_code, reason = "payload")] Vec<u8>);
    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::SeqCst);
            Self(self.0.clone())
        }
    }
    let src = delayed("src", || Counted(vec![0; 16]), ());
    let sink = delayed(
        "sink",
        |c: Counted, d: Counted| c.0.len() + d.0.len(),
        (&src, &src),
    );
    let g = Graph::new([&sink]);
    let src_id = g.id_of(src.key()).unwrap();
    let v = g.run_task(src_id, vec![]).unwrap();
    let sink_id = g.id_of(sink.key()).unwrap();
    let out = g.run_task(sink_id, vec![v]).unwrap();
    assert_eq!(*out.downcast_ref::<usize>().unwrap(), 32);
    // Used twice by one task: one clone for the first slot, moved into the last.
    assert_eq!(CLONES.load(Ordering::SeqCst), 1);
}

#[test]
fn run_task_checks_its_inputs() {
    let s = inc(&lit(1i64));
    let g = Graph::new([&s]);
    let id = g.id_of(s.key()).unwrap();
    assert!(g.run_task(id, vec![]).is_err());
    let wrong: Value = Arc::new("not a number");
    let err = g.run_task(id, vec![wrong]).unwrap_err();
    assert!(err.to_string().contains("argument 0 is not a i64"), "{err}");
}

/// An argument whose serialization fails: a node that takes it cannot be keyed.
#[derive(Clone)]
struct Fails;

impl serde::Serialize for Fails {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no way"))
    }
}

#[test]
fn untokenizable_arguments_make_an_invalid_node() {
    let a = TaskSpec::new("f").pure().call(|_x: Fails| 1, (Fails,));
    let b = TaskSpec::new("f").pure().call(|_x: Fails| 1, (Fails,));
    assert_ne!(
        a.key(),
        b.key(),
        "invalid nodes get unique keys, never a shared one"
    );
    let g = Graph::new([&a]);
    let e = g
        .node(NodeId::from_index(0))
        .build_error()
        .expect("invalid");
    assert!(e.to_string().contains("no way"));
}

struct FakeCache {
    stored: Vec<String>,
    lookups: AtomicUsize,
}

impl Cache for FakeCache {
    fn contains(&self, entry: &Checkpoint<'_>) -> Result<bool, BoxError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(self.stored.contains(&entry.key.to_string()))
    }
    fn load(&self, _: &Checkpoint<'_>) -> Result<Value, BoxError> {
        Ok(Arc::new(0i64))
    }
    fn save(&self, _: &Checkpoint<'_>, _: &Value) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn stored_checkpoints_cull_their_upstream() {
    let raw = pure("expensive", |v: i64| v * 10, (1,));
    let mid = inc(&raw).checkpointed();
    let out = inc(&mid);
    let cache = FakeCache {
        stored: vec![mid.key().to_string()],
        lookups: AtomicUsize::new(0),
    };
    let g = Graph::with_cache([&out], &cache).unwrap();
    assert_eq!(g.len(), 2, "`expensive` is culled");
    assert!(g.node(g.id_of(mid.key()).unwrap()).is_loaded());
    assert!(g.id_of(raw.key()).is_none());
    assert_eq!(
        cache.lookups.load(Ordering::SeqCst),
        1,
        "only checkpointed nodes are looked up"
    );
    let empty = FakeCache {
        stored: vec![],
        lookups: AtomicUsize::new(0),
    };
    let g = Graph::with_cache([&out], &empty).unwrap();
    assert_eq!(g.len(), 3);
    assert!(g.node(g.id_of(mid.key()).unwrap()).save_spec().is_some());
}

#[test]
fn a_cache_is_asked_once_per_key_when_nodes_share_keys() {
    // Two separately built copies of one checkpointed value (equal keys, distinct nodes):
    // the graph merges them, and the cache hears about the key once.
    let raw = pure("expensive", |v: i64| v * 10, (1,));
    let a = inc(&raw).checkpointed();
    let b = inc(&raw).checkpointed();
    let out = add(&a, &b);
    let cache = FakeCache {
        stored: vec![a.key().to_string()],
        lookups: AtomicUsize::new(0),
    };
    let g = Graph::with_cache([&out], &cache).unwrap();
    assert_eq!(
        g.len(),
        2,
        "one loaded `inc`, the `add`; `expensive` culled"
    );
    assert_eq!(g.dependencies(g.outputs()[0]).len(), 1);
    assert!(g.node(g.id_of(b.key()).unwrap()).is_loaded());
    assert_eq!(cache.lookups.load(Ordering::SeqCst), 1);
}

struct Res(&'static str, AtomicBool);
impl Resource for Res {
    fn name(&self) -> String {
        self.0.into()
    }
    fn open(&self) -> Result<(), BoxError> {
        self.1.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn close(&self) -> Result<(), BoxError> {
        self.1.store(false, Ordering::SeqCst);
        Ok(())
    }
    fn is_open(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }
}

#[test]
fn resources_are_collected_per_node() {
    let r1: Arc<dyn Resource> = Arc::new(Res("a.tif", AtomicBool::new(false)));
    let r2: Arc<dyn Resource> = Arc::new(Res("b.tif", AtomicBool::new(false)));
    let a = pure("read", |i: i64| i, (1,)).requiring(Arc::clone(&r1));
    let b = pure("read", |i: i64| i, (2,))
        .requiring(Arc::clone(&r2))
        .requiring(Arc::clone(&r1));
    let s = add(&a, &b);
    let g = Graph::new([&s]);
    let req = g.resources();
    assert_eq!(req.len(), 2);
    assert_eq!(req[0].resource.name(), "a.tif");
    assert_eq!(req[0].nodes.len(), 2);
    assert_eq!(req[1].nodes, vec![g.id_of(b.key()).unwrap()]);
    assert!(!r1.is_open(), "building never opens anything");
}

#[test]
fn dot_export_has_every_node_and_edge() {
    let x = lit(1i64);
    let a = pure("say \"hi\"", |v: i64| v, (&x,));
    let s = add(&a, &inc(&x));
    let g = Graph::new([&s]);
    let dot = g.to_dot(&DotOptions::default().color_by_order().show_keys());
    assert!(dot.starts_with("digraph brisk {"));
    assert_eq!(dot.matches("[label=").count(), g.len());
    assert_eq!(dot.matches(" -> ").count(), g.edge_count());
    assert!(dot.contains("say \\\"hi\\\""), "quotes are escaped: {dot}");
    assert!(dot.contains(&s.key().to_string()));
    assert!(dot.contains("fillcolor=\"#"));
}

/// A random DAG: node i depends on a few of the nodes before it.
fn random_dag(n: usize, edges: &[(usize, usize)]) -> Vec<Delayed<i64>> {
    let mut nodes: Vec<Delayed<i64>> = Vec::with_capacity(n);
    for i in 0..n {
        let deps: Vec<Delayed<i64>> = edges
            .iter()
            .filter(|&&(a, b)| a == i && b < i)
            .map(|&(_, b)| nodes[b].clone())
            .collect();
        let all: Delayed<Vec<i64>> = deps.into_iter().collect();
        nodes.push(pure(
            "node",
            move |v: Vec<i64>, k: i64| v.iter().sum::<i64>() + k,
            (all, i as i64),
        ));
    }
    nodes
}

proptest! {
    #[test]
    fn random_dags_order_every_reachable_node_once(
        n in 1usize..40,
        edges in proptest::collection::vec((0usize..40, 0usize..40), 0..120),
        outs in proptest::collection::vec(0usize..40, 1..4),
    ) {
        let nodes = random_dag(n, &edges);
        let outputs: Vec<&Delayed<i64>> = outs.iter().map(|&o| &nodes[o % n]).collect();
        let g = Graph::new(outputs.iter().copied());
        assert_topological(&g);
        // Every node is reachable from an output (culling keeps nothing else).
        let mut reach = vec![false; g.len()];
        let mut stack: Vec<NodeId> = g.outputs().to_vec();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut reach[i.index()], true) {
                stack.extend(g.dependencies(i));
            }
        }
        prop_assert!(reach.iter().all(|&r| r));
        // Dependents are the exact inverse of dependencies.
        for i in NodeId::all(g.len()) {
            for &d in g.dependencies(i) {
                prop_assert!(g.dependents(d).contains(&i));
            }
        }
    }
}

#[test]
fn excluded_arguments_and_custom_hashers_shape_keys() {
    use brisk_graph::TaskSpec;
    let scale = TaskSpec::new("scale")
        .pure()
        .arg_names(&["x", "handle"])
        .exclude("handle");
    let f = |x: i64, _h: String| 3 * x;
    let a = scale.call(f, (21, String::from("fd 7")));
    let b = scale.call(f, (21, String::from("fd 9")));
    let c = scale.call(f, (22, String::from("fd 7")));
    assert_eq!(
        a.key(),
        b.key(),
        "the excluded handle must not change the key"
    );
    assert_ne!(a.key(), c.key());
    // Excluding by position is the same as by name.
    let by_pos = TaskSpec::new("scale")
        .pure()
        .arg_names(&["x", "handle"])
        .exclude_position(1);
    assert_eq!(by_pos.call(f, (21, String::from("x"))).key(), a.key());
    // Without exclusion the handle counts.
    let plain = TaskSpec::new("scale").pure();
    assert_ne!(
        plain.call(f, (21, String::from("fd 7"))).key(),
        plain.call(f, (21, String::from("fd 9"))).key()
    );
    // An unknown name is an error naming it, at compute time.
    let bad = TaskSpec::new("scale")
        .pure()
        .arg_names(&["x"])
        .exclude("hndle");
    let err = build_error(&bad.call(|x: i64| x, (1,)));
    assert!(err.contains("hndle"), "{err}");

    // A hasher keyed on `x` only; a lazy argument is seen by its key.
    let double = TaskSpec::new("double")
        .key_prefix("double-")
        .arg_names(&["x"])
        .hasher(|a| match (a.value::<i64>(0), a.key(0)) {
            (Some(x), _) => Ok(x.to_string()),
            (None, Some(k)) => Ok(format!("of-{}", k.token())),
            _ => Err("x is neither an i64 nor lazy".into()),
        });
    let d = double.call(|x: i64| 2 * x, (21,));
    assert_eq!(d.storage_key(), "double-21");
    assert_eq!(build_error(&d), "");
    let lazy = double.call(|x: i64| 2 * x, (d.clone(),));
    assert!(
        lazy.storage_key().starts_with("double-of-"),
        "{}",
        lazy.storage_key()
    );
    // A failing hasher fails the compute, naming why.
    let failing = TaskSpec::new("f").hasher(|_| Err("no key for you".into()));
    let err = build_error(&failing.call(|x: i64| x, (1,)));
    assert!(err.contains("no key for you"), "{err}");
}

/// The build error of a value's node (empty if none).
fn build_error<T>(d: &Delayed<T>) -> String {
    let g = Graph::new([d]);
    let id = g.outputs()[0];
    g.node(id)
        .build_error()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[test]
fn node_args_expose_dependencies_and_shippable_constants() {
    use brisk_graph::{Arg, Graph, TaskSpec, lit, lit_opaque};
    let a = lit(5u32);
    let handle = lit_opaque(std::sync::Arc::new(1u8));
    let spec = TaskSpec::new("f").pure();
    let f = spec.call(
        |x: u32, k: String, y: u32, _h: std::sync::Arc<u8>| x + y + k.len() as u32,
        (a.clone(), "abc".to_owned(), a.clone(), handle),
    );
    let g = Graph::new([&f]);
    let id = NodeId::all(g.len())
        .find(|&i| g.node(i).name() == "f")
        .unwrap();
    let args = g.node(id).args();
    assert_eq!(args.len(), 4);
    let lit_id = g.id_of(a.key()).unwrap();
    assert!(matches!(args[0], Arg::Node(i) if i == lit_id));
    assert!(matches!(args[2], Arg::Node(i) if i == lit_id));
    match args[1] {
        Arg::Const { value, serde } => {
            assert_eq!(value.downcast_ref::<String>().unwrap(), "abc");
            let text = serde_json::to_string(serde.unwrap()).unwrap();
            assert_eq!(text, "\"abc\"");
        }
        _ => panic!("a constant"),
    }
    // The literal node carries its serde view; an opaque one has none.
    let (v, serde) = g.node(lit_id).literal().unwrap();
    assert_eq!(v.downcast_ref::<u32>(), Some(&5));
    assert_eq!(serde_json::to_string(serde.unwrap()).unwrap(), "5");
    let op_id = NodeId::all(g.len())
        .find(|&i| g.node(i).name() == "opaque")
        .unwrap();
    assert!(g.node(op_id).literal().unwrap().1.is_none());
    assert!(g.node(lit_id).args().is_empty());
    assert_eq!(
        g.run_task(
            id,
            vec![
                std::sync::Arc::new(5u32),
                std::sync::Arc::new(std::sync::Arc::new(1u8))
            ]
        )
        .unwrap()
        .downcast_ref::<u32>(),
        Some(&13)
    );
}

#[test]
fn a_pure_task_never_hides_captured_state_from_its_key() {
    use brisk_graph::TaskSpec;
    let factor = 3i64;
    // A closure with a parameter in it: refused (its key could not tell factor 3 from 4).
    let hidden = TaskSpec::new("scale")
        .pure()
        .call(move |x: i64| x * factor, (2i64,));
    let g = Graph::new([&hidden]);
    let err = g
        .node(NodeId::from_index(0))
        .build_error()
        .unwrap()
        .to_string();
    assert!(err.contains("captures 8 bytes"), "{err}");
    // The parameter as an argument: keyed, so two factors give two keys.
    let spec = TaskSpec::new("scale").pure();
    let three = spec.call(|x: i64, f: i64| x * f, (2i64, 3i64));
    let four = spec.call(|x: i64, f: i64| x * f, (2i64, 4i64));
    assert_ne!(three.key(), four.key());
    let ok = |d: &brisk_graph::Delayed<_>| {
        Graph::new([d])
            .node(NodeId::from_index(0))
            .build_error()
            .is_none()
    };
    assert!(ok(&three));
    // A function item, and a capture the arguments are declared to determine.
    fn double(x: i64) -> i64 {
        2 * x
    }
    assert!(ok(&spec.call(double, (1i64,))));
    let label = String::from("covered");
    let covered = TaskSpec::new("label")
        .pure()
        .captures_covered_by_args()
        .call(move |_: u8| label.clone(), (0u8,));
    assert!(
        Graph::new([&covered])
            .node(NodeId::from_index(0))
            .build_error()
            .is_none()
    );
    // Impure tasks may capture anything: their keys are unique.
    let impure = TaskSpec::new("scale").call(move |x: i64| x * factor, (2i64,));
    assert!(ok(&impure));
}

/// The dependencies of every node, by key (what a graph means, whatever its ids).
fn edges_by_key(g: &Graph) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = NodeId::all(g.len())
        .map(|id| {
            let mut deps: Vec<String> = g
                .dependencies(id)
                .iter()
                .map(|&d| g.key(d).to_string())
                .collect();
            deps.sort();
            (g.key(id).to_string(), deps)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn graphs_sharing_nodes_build_alike_in_any_order_and_concurrently() {
    // Nodes remember where the last graph put them; another graph over the same nodes (in
    // another order, a subset, or built at the same time on another thread) must not be misled.
    let x = lit(1i64);
    let chain: Vec<Delayed<i64>> = std::iter::successors(Some(inc(&x)), |d| Some(inc(d)))
        .take(50)
        .collect();
    let sums: Vec<Delayed<i64>> = chain.windows(2).map(|w| add(&w[0], &w[1])).collect();
    let alone = edges_by_key(&Graph::new(sums.iter().rev().take(7)));
    let whole = Graph::new(&sums);
    let again = Graph::new(sums.iter().rev().take(7));
    assert_eq!(edges_by_key(&again), alone);
    assert_eq!(edges_by_key(&whole), edges_by_key(&Graph::new(&sums)));
    assert_topological(&again);
    // A node rebuilt with the same key but a different allocation merges with the original.
    let twin = inc(&x);
    let both = Graph::new([add(&chain[0], &twin)]);
    assert_eq!(both.len(), 3, "lit, inc (once), add");
    let expected = edges_by_key(&whole);
    std::thread::scope(|s| {
        for t in 0..4 {
            let sums = &sums;
            let expected = &expected;
            s.spawn(move || {
                for round in 0..20 {
                    let g = if (t + round) % 2 == 0 {
                        Graph::new(sums)
                    } else {
                        Graph::new(sums.iter().rev())
                    };
                    assert_eq!(&edges_by_key(&g), expected);
                    assert_topological(&g);
                }
            });
        }
    });
}

#[test]
fn a_copy_with_other_metadata_runs_the_original_body() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let flaky = TaskSpec::new("flaky").try_call(
        move |x: i64| {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                Err("first attempt fails")
            } else {
                Ok(x * 10)
            }
        },
        (lit(4i64),),
    );
    // A copy of a copy still runs the one body (and the same captured state).
    let retried = flaky.with_retries(1).with_priority(3);
    assert_eq!(retried.key(), flaky.key());
    let g = Graph::new([&retried]);
    let id = g.outputs()[0];
    assert_eq!(g.node(id).annotations().retries, 1);
    assert_eq!(g.node(id).annotations().priority, 3);
    let deps: Vec<Value> = g
        .dependencies(id)
        .iter()
        .map(|_| Arc::new(4i64) as Value)
        .collect();
    let first = g.run_task(id, deps.clone()).unwrap_err();
    assert_eq!(first.to_string(), "first attempt fails");
    let second = g.run_task(id, deps).unwrap();
    assert_eq!(second.downcast_ref::<i64>(), Some(&40));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn names_and_result_types_survive_wherever_a_node_keeps_them() {
    // A node keeps its name in its spec's metadata when the name is not its key's prefix,
    // and its result type in its body: errors and profiles show both.
    let read = TaskSpec::new("io/read").pure();
    let a = read.call(|x: u64| x.to_string(), (1u64,));
    assert_eq!(a.name(), "io/read");
    assert!(a.key().to_string().starts_with("io_read/"));
    let prefixed = TaskSpec::new("crate::double")
        .pure()
        .key_prefix("double")
        .retries(2);
    let b = prefixed.call(|x: u64| x * 2, (2u64,));
    assert_eq!((b.name(), b.key().name()), ("crate::double", "double"));
    // Setting the prefix back to the name leaves nothing to keep.
    let plain = TaskSpec::new("sq").key_prefix("x").key_prefix("sq");
    assert_eq!(plain.call(|x: u64| x * x, (3u64,)).name(), "sq");
    // Copies with other metadata, constants and nodes that failed to build.
    let copy = b.with_priority(5);
    let bad = TaskSpec::new("bad/one")
        .pure()
        .call(|_: Fails| 0.5f64, (Fails,))
        .with_retries(1);
    let g = Graph::new([a.erase(), copy.erase(), lit(7i32).erase(), bad.erase()]);
    let view = |d: &brisk_graph::AnyDelayed| g.node(g.id_of(d.key()).expect("in the graph"));
    assert_eq!(view(&a.erase()).name(), "io/read");
    assert_eq!(view(&a.erase()).output_type(), "alloc::string::String");
    assert_eq!(view(&copy.erase()).name(), "crate::double");
    assert_eq!(view(&copy.erase()).output_type(), "u64");
    assert_eq!(view(&copy.erase()).annotations().priority, 5);
    assert_eq!(view(&lit(7i32).erase()).output_type(), "i32");
    assert!(view(&lit(7i32).erase()).is_literal());
    let bad_view = view(&bad.erase());
    assert_eq!(
        (bad_view.name(), bad_view.output_type()),
        ("bad/one", "f64")
    );
    assert!(
        bad_view.build_error().is_some(),
        "a copy keeps its build error"
    );
}

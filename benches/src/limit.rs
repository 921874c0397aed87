//! The floor a graph scenario cannot beat on this machine, measured in the same process:
//!
//! - the **run limit**: the same DAG executed by a minimal work-stealing pool
//!   (`crossbeam-deque`, one LIFO deque per worker, a FIFO injector for the roots) with atomic
//!   dependency counters and nothing else: no keys, hooks, results, failure handling or
//!   freeing of intermediates;
//! - the **key limit**: one BLAKE3 call per node over as many bytes as that node's canonical
//!   key encoding has (identity, argument tags, constant values, dependency keys), on one
//!   thread, as a graph is built.
//!
//! Brisk's build + run of the scenario divided by their sum is `brisk_over_limit`.
//!
//! Beside the limits, the **node floor** (`node_floor`) prices what the key limit leaves out
//! and a lazy graph cannot: the key limit's hashing plus, per node, a fresh `Arc` of Brisk's
//! node size written with its digest and, per constant argument, a fresh `Arc<u64>` — the
//! memory a graph whose nodes a user can hold and share must allocate and first touch. Brisk's
//! lazy build divided by it is `lazy_over_floor`: how far the build is from its own layout's
//! floor, where `brisk_over_limit` says how far it is from a graph that keeps no nodes.

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use crossbeam_deque::{Injector, Steal, Worker};

/// A DAG in compressed rows: who depends on each node, and how many dependencies each has.
#[derive(Debug)]
pub struct Dag {
    dependent_start: Vec<u32>,
    dependents: Vec<u32>,
    dep_count: Vec<u32>,
    /// Bytes of each node's canonical key encoding.
    key_bytes: Vec<u32>,
    /// Constant arguments of each node (each its own value in a lazy graph).
    constants: Vec<u8>,
    sink: u32,
}

impl Dag {
    /// Number of nodes (the tasks Brisk's graph of the same scenario holds).
    #[must_use]
    pub fn len(&self) -> usize {
        self.dep_count.len()
    }

    /// Whether the DAG has no nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.dep_count.is_empty()
    }

    fn from_deps(deps: &[Vec<u32>], key_bytes: Vec<u32>) -> Self {
        // Every scenario's roots take one constant; no other node does.
        let constants = deps.iter().map(|d| u8::from(d.is_empty())).collect();
        let n = deps.len();
        let mut count = vec![0u32; n + 1];
        for ds in deps {
            for &d in ds {
                count[d as usize + 1] += 1;
            }
        }
        for i in 0..n {
            count[i + 1] += count[i];
        }
        let mut fill = count.clone();
        let mut dependents = vec![0u32; count[n] as usize];
        for (node, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[fill[d as usize] as usize] = node as u32;
                fill[d as usize] += 1;
            }
        }
        Self {
            dependent_start: count,
            dependents,
            dep_count: deps.iter().map(|d| d.len() as u32).collect(),
            key_bytes,
            constants,
            sink: n.saturating_sub(1) as u32,
        }
    }

    fn dependents_of(&self, id: u32) -> &[u32] {
        let i = id as usize;
        &self.dependents[self.dependent_start[i] as usize..self.dependent_start[i + 1] as usize]
    }
}

/// Bytes of a pure task's identity in its key encoding: format version, domain, name, key
/// prefix, version and source-hash flags, argument count (see `brisk_graph::token`).
fn identity(name: &str, domain: &str) -> u32 {
    (1 + 8 + domain.len() + 2 * (8 + name.len()) + 2 + 8) as u32
}
/// A constant `u64` argument: argument tag, value tag, 8 bytes.
const VALUE_ARG: u32 = 10;
/// A lazy argument: tag, length-prefixed key name, 16 token bytes.
fn key_arg(name: &str) -> u32 {
    (1 + 8 + name.len() + 16) as u32
}

/// The DAG of `benches::{indep, chain, tree}(n)`: the nodes Brisk's graph holds (constants
/// are arguments, not nodes), in an order where dependencies come first and the output last.
#[must_use]
pub fn dag(shape: &str, n: usize) -> Option<Dag> {
    let n32 = n as u32;
    let (deps, key_bytes): (Vec<Vec<u32>>, Vec<u32>) = match shape {
        "indep" => {
            let mut deps: Vec<Vec<u32>> = vec![Vec::new(); n];
            let mut bytes = vec![identity("inc", "brisk.task") + VALUE_ARG; n];
            deps.push((0..n32).collect());
            bytes.push((1 + 8 + "brisk.collect".len() + n * key_arg("inc") as usize + 8) as u32);
            deps.push(vec![n32]);
            bytes.push(identity("sum", "brisk.task") + key_arg("collect"));
            (deps, bytes)
        }
        "chain" => {
            let deps = (0..n32)
                .map(|i| if i == 0 { Vec::new() } else { vec![i - 1] })
                .collect();
            let mut bytes = vec![identity("inc", "brisk.task") + key_arg("inc"); n];
            if let Some(b) = bytes.first_mut() {
                *b = identity("inc", "brisk.task") + VALUE_ARG;
            }
            (deps, bytes)
        }
        "tree" => {
            let mut deps: Vec<Vec<u32>> = vec![Vec::new(); n];
            let mut bytes = vec![identity("leaf", "brisk.task") + VALUE_ARG; n];
            let mut level: Vec<u32> = (0..n32).collect();
            while level.len() > 1 {
                let mut next = Vec::with_capacity(level.len().div_ceil(2));
                for pair in level.chunks(2) {
                    if let [a, b] = pair {
                        next.push(deps.len() as u32);
                        deps.push(vec![*a, *b]);
                        bytes.push(identity("add", "brisk.task") + 2 * key_arg("add"));
                    } else {
                        next.push(pair[0]);
                    }
                }
                level = next;
            }
            (deps, bytes)
        }
        _ => return None,
    };
    Some(Dag::from_deps(&deps, key_bytes))
}

/// Seconds to hash every node's key bytes with BLAKE3 on one thread (best of three).
#[must_use]
pub fn key_limit(dag: &Dag) -> f64 {
    let longest = dag.key_bytes.iter().copied().max().unwrap_or(0) as usize;
    let buf: Vec<u8> = (0..longest).map(|i| i as u8).collect();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for &len in &dag.key_bytes {
            black_box(blake3::hash(black_box(&buf[..len as usize])));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// Bytes of a node as Brisk lays it out (`brisk_graph`'s `NodeInner`: the 32-byte key, the
/// inputs, metadata and body; held by the unit test `nodes_stay_small`).
pub const NODE_BYTES: usize = 96;

/// Words of a node after its 32-byte key.
const NODE_REST_WORDS: usize = (NODE_BYTES - 32) / 8;

/// Seconds to make the nodes of a lazy graph of this DAG on one thread (best of three, each
/// round's memory freed after its clock stops): per node, BLAKE3 over its key bytes and a
/// fresh `Arc` of [`NODE_BYTES`] holding the digest and pointing at its constants; per constant
/// argument, a fresh `Arc<u64>`.
#[must_use]
pub fn node_floor(dag: &Dag) -> f64 {
    /// A node's bytes: the digest, then room for the rest of the layout.
    struct Node {
        _key: [u8; 32],
        _rest: [u64; NODE_REST_WORDS],
    }
    let longest = dag.key_bytes.iter().copied().max().unwrap_or(0) as usize;
    let buf: Vec<u8> = (0..longest).map(|i| i as u8).collect();
    let mut best = f64::INFINITY;
    for round in 0..3u64 {
        let mut nodes: Vec<std::sync::Arc<Node>> = Vec::with_capacity(dag.len());
        let mut constants: Vec<std::sync::Arc<u64>> = Vec::new();
        let t = Instant::now();
        for (i, (&len, &k)) in dag.key_bytes.iter().zip(&dag.constants).enumerate() {
            let key = *blake3::hash(black_box(&buf[..len as usize])).as_bytes();
            let mut rest = [0u64; NODE_REST_WORDS];
            for slot in rest.iter_mut().take(usize::from(k)) {
                let c = std::sync::Arc::new(round ^ i as u64);
                *slot = std::sync::Arc::as_ptr(&c) as u64;
                constants.push(c);
            }
            nodes.push(std::sync::Arc::new(Node {
                _key: key,
                _rest: rest,
            }));
        }
        best = best.min(t.elapsed().as_secs_f64());
        black_box((&nodes, &constants));
    }
    best
}

/// Seconds for a minimal work-stealing pool of `workers` threads to run the DAG (trivial
/// tasks), threads started and waiting before the clock starts; best of three.
#[must_use]
pub fn run_limit(dag: &Dag, workers: usize) -> f64 {
    (0..3)
        .map(|_| run_once(dag, workers.max(1)).0)
        .fold(f64::INFINITY, f64::min)
}

/// One run: seconds, and how many tasks ran (every node, once).
fn run_once(dag: &Dag, workers: usize) -> (f64, usize) {
    let pending: Vec<AtomicU32> = dag.dep_count.iter().map(|&c| AtomicU32::new(c)).collect();
    let injector: Injector<u32> = Injector::new();
    let locals: Vec<Worker<u32>> = (0..workers).map(|_| Worker::new_lifo()).collect();
    let stealers: Vec<_> = locals.iter().map(Worker::stealer).collect();
    let done = AtomicBool::new(false);
    let start = Barrier::new(workers + 1);
    let mut t0 = Instant::now();
    let ran = std::thread::scope(|s| {
        let handles: Vec<_> = locals
            .into_iter()
            .enumerate()
            .map(|(index, local)| {
                let (pending, injector, stealers, done, start) =
                    (&pending, &injector, &stealers, &done, &start);
                s.spawn(move || {
                    start.wait();
                    let mut ran = 0usize;
                    // Failed looks for work in a row: an idle worker backs off (spins longer,
                    // then yields) so that its steal attempts do not slow down the worker
                    // that has the work (a chain has one ready task at a time).
                    let mut idle = 0u32;
                    loop {
                        let job = local.pop().or_else(|| {
                            std::iter::repeat_with(|| {
                                injector.steal_batch_and_pop(&local).or_else(|| {
                                    (1..stealers.len())
                                        .map(|k| stealers[(index + k) % stealers.len()].steal())
                                        .collect::<Steal<u32>>()
                                })
                            })
                            .find(|s| !s.is_retry())
                            .and_then(Steal::success)
                        });
                        let Some(id) = job else {
                            if done.load(Ordering::Acquire) {
                                return ran;
                            }
                            idle += 1;
                            if idle > 6 {
                                std::thread::yield_now();
                            } else {
                                for _ in 0..1u32 << idle {
                                    std::hint::spin_loop();
                                }
                            }
                            continue;
                        };
                        idle = 0;
                        // The task: a trivial function of its id.
                        black_box(black_box(u64::from(id)) + 1);
                        ran += 1;
                        if id == dag.sink {
                            done.store(true, Ordering::Release);
                        }
                        for &d in dag.dependents_of(id) {
                            if pending[d as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                                local.push(d);
                            }
                        }
                    }
                })
            })
            .collect();
        start.wait();
        t0 = Instant::now();
        for (id, &c) in dag.dep_count.iter().enumerate() {
            if c == 0 {
                injector.push(id as u32);
            }
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a pool worker does not panic"))
            .sum()
    });
    (t0.elapsed().as_secs_f64(), ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dags_have_the_node_counts_of_brisk_graphs() {
        for (shape, n, nodes) in [("indep", 10, 12), ("chain", 10, 10), ("tree", 10, 19)] {
            let d = dag(shape, n).expect("a known shape");
            assert_eq!(d.len(), nodes, "{shape}");
            assert_eq!(
                d.dep_count.iter().filter(|&&c| c == 0).count(),
                if shape == "chain" { 1 } else { n }
            );
        }
        assert!(dag("ring", 3).is_none());
    }

    #[test]
    fn the_pool_runs_every_shape_to_its_sink() {
        for shape in ["indep", "chain", "tree"] {
            let d = dag(shape, 1000).expect("a known shape");
            let (secs, ran) = run_once(&d, 2);
            assert_eq!(ran, d.len(), "{shape}: every task runs once");
            assert!(secs > 0.0);
            assert!(key_limit(&d) > 0.0);
            assert!(node_floor(&d) > 0.0);
        }
    }
}

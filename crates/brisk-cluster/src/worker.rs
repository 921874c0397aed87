//! Worker mode: run one unit from the store and exit.

use std::sync::Arc;

use brisk_exec::Handler;
use brisk_graph::remote::{Origin, wire_spec_named, wire_spec_of};
use brisk_graph::{Graph, NodeId, SaveSpec, Value, registry};
use brisk_store::{Store, from_url};

use crate::ClusterError;
use crate::plan::{Layout, NodeSpec, TaskEvent, UnitEvents, UnitSpec};

/// Exit code of a worker whose unit hit a task error (written to the store; not retried).
pub(crate) const EXIT_TASK_ERROR: i32 = 3;
/// Exit code of a worker that could not do its job (store unreachable, bad unit): retried.
pub(crate) const EXIT_FAILURE: i32 = 1;

/// Call this first in `main`. In a process Slurm started as a Brisk worker (the
/// `BRISK_CLUSTER_STORE` and `BRISK_CLUSTER_UNIT` variables are set), it runs that unit and
/// exits the process (0: done; 3: a task failed, reported in the store; 1: anything else,
/// which the driver retries). Anywhere else it returns at once.
pub fn init() {
    let (Ok(store), Ok(unit)) = (
        std::env::var("BRISK_CLUSTER_STORE"),
        std::env::var("BRISK_CLUSTER_UNIT"),
    ) else {
        return;
    };
    // A job array task appends its index to the unit prefix.
    let unit = match std::env::var("SLURM_ARRAY_TASK_ID") {
        Ok(i) => format!("{unit}{i}"),
        Err(_) => unit,
    };
    let code = match from_url(&store)
        .map_err(ClusterError::from)
        .and_then(|s| run_unit(&s, &unit))
    {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::TaskFailed) => EXIT_TASK_ERROR,
        Err(e) => {
            eprintln!("brisk worker: unit {unit}: {e}");
            EXIT_FAILURE
        }
    };
    std::process::exit(code);
}

/// How a unit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every node's result is stored, and the done marker.
    Done,
    /// A task failed; its error is stored for the driver.
    TaskFailed,
}

/// Runs unit `unit` (`runs/<run>/units/<name>` without `.json`, or `<run>/<name>`) from
/// `store`: returns at once if its done marker exists; otherwise runs its nodes on the local
/// thread pool, stores each result, then the marker. Public for tests and for launchers
/// other than Slurm.
///
/// # Errors
/// The store failed, or the unit description is malformed.
pub fn run_unit(store: &Arc<dyn Store>, unit: &str) -> Result<Outcome, ClusterError> {
    let (run, name) = parse_unit(unit)?;
    let layout = Layout { run: run.clone() };
    if store.contains(&layout.done(&name))? {
        return Ok(Outcome::Done);
    }
    let bytes = store
        .get(&layout.unit(&name))?
        .ok_or_else(|| ClusterError::Format {
            what: format!("unit {unit}"),
            message: format!("no description at {}", layout.unit(&name)),
        })?;
    let spec: UnitSpec = serde_json::from_slice(&bytes).map_err(|e| ClusterError::Format {
        what: format!("unit {unit}"),
        message: e.to_string(),
    })?;
    let handler = Handler::local().map_err(|e| ClusterError::Format {
        what: "the local thread pool".into(),
        message: e.to_string(),
    })?;
    let shared = Arc::clone(store);
    let rebuilt = match &spec.origin {
        Some((builder, params)) => Some(Arc::new(rebuild(builder, params, unit)?)),
        None => None,
    };
    let futures = handler
        .try_map(
            move |node: NodeSpec| match &rebuilt {
                Some(graph) => run_rebuilt_node(&shared, graph, &node),
                None => run_node(&shared, &node),
            },
            spec.nodes.clone(),
        )
        .map_err(|e| ClusterError::Format {
            what: "the local thread pool".into(),
            message: e.to_string(),
        })?;
    let mut failed: Vec<serde_json::Value> = Vec::new();
    let mut events = UnitEvents {
        node: node_name(),
        events: Vec::new(),
    };
    for (node, result) in spec.nodes.iter().zip(handler.gather_results(futures)) {
        match result {
            Ok(NodeRun { failure, event }) => {
                events.events.extend(event);
                if let Some(f) = failure {
                    failed.push(serde_json::json!({
                        "key": node.key, "task": node.task, "error": f.error, "attempts": f.attempts
                    }));
                }
            }
            Err(e) => {
                return Err(ClusterError::Format {
                    what: format!("node {} of unit {unit}", node.key),
                    message: brisk_graph::chain(&e),
                });
            }
        }
    }
    // What ran where and when, for the driver's hooks (profiler, progress bar); written
    // before the marker or the error report the driver waits for.
    if !events.events.is_empty() {
        let bytes = serde_json::to_vec(&events).map_err(|e| ClusterError::Format {
            what: format!("the task events of unit {unit}"),
            message: e.to_string(),
        })?;
        store.put(&layout.events(&name), &bytes)?;
    }
    if !failed.is_empty() {
        // Every failed task of the unit (the others' results are stored), in unit order.
        let report = serde_json::json!({ "failures": failed });
        store.put(&layout.error(&name), report.to_string().as_bytes())?;
        return Ok(Outcome::TaskFailed);
    }
    store.put(&layout.done(&name), b"done")?;
    Ok(Outcome::Done)
}

fn parse_unit(unit: &str) -> Result<(String, String), ClusterError> {
    let trimmed = unit
        .trim_start_matches("runs/")
        .trim_end_matches(".json")
        .replace("/units/", "/");
    match trimmed.split_once('/') {
        Some((run, name)) if !run.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((run.to_owned(), name.to_owned()))
        }
        _ => Err(ClusterError::Format {
            what: format!("unit `{unit}`"),
            message: "expected `<run>/<unit>`".into(),
        }),
    }
}

/// The graph of `builder(params)`, built again in this process.
fn rebuild(builder: &str, params: &str, unit: &str) -> Result<Graph, ClusterError> {
    let outputs = Origin::new(builder, params)
        .build()
        .map_err(|e| ClusterError::Format {
            what: format!("rebuilding the graph of unit {unit} with `{builder}`"),
            message: brisk_graph::chain(e.as_ref()),
        })?;
    Ok(Graph::new(outputs))
}

/// The node at `path` in `graph` (output index, then dependency indices).
fn locate(graph: &Graph, path: &[u32]) -> Option<NodeId> {
    let (&root, rest) = path.split_first()?;
    let mut id = *graph.outputs().get(usize::try_from(root).ok()?)?;
    for &k in rest {
        id = *graph.dependencies(id).get(usize::try_from(k).ok()?)?;
    }
    Some(id)
}

/// The inputs of `node`, as many as `inputs` gives: each a constant already at hand, or a
/// store key and how to decode it. A corrupt entry is removed (the driver then reruns the
/// unit that produced it — all of them at once, not one per attempt) and reported. Also
/// returns the bytes read.
fn read_inputs<'a>(
    store: &Arc<dyn Store>,
    node: &NodeSpec,
    inputs: impl Iterator<Item = Input<'a>>,
) -> Result<(Vec<Value>, u64), ClusterError> {
    let encoder = crate::data_encoder();
    let mut values = Vec::new();
    let mut corrupt = Vec::new();
    let mut read = 0u64;
    for input in inputs {
        let (key, spec) = match input {
            Input::Constant(v) => {
                values.push(v);
                continue;
            }
            Input::Stored(key, spec) => (key, spec),
        };
        let bytes = store.get(key)?.ok_or_else(|| ClusterError::Format {
            what: format!("input {key} of {}", node.key),
            message: "missing from the store".into(),
        })?;
        read += bytes.len() as u64;
        match encoder.decode(&spec, &bytes, key) {
            Ok(v) => values.push(v),
            Err(e) => {
                store.delete(key)?;
                corrupt.push(format!("{key}: {e}"));
            }
        }
    }
    if !corrupt.is_empty() {
        return Err(ClusterError::Format {
            what: format!("inputs of {}", node.key),
            message: format!(
                "corrupt, removed so the driver recomputes them: {}",
                corrupt.join("; ")
            ),
        });
    }
    Ok((values, read))
}

/// One input of a node.
enum Input<'a> {
    /// A value the worker has (a constant of its rebuilt graph).
    Constant(Value),
    /// An entry of the data plane and how to decode it.
    Stored(&'a str, SaveSpec),
}

/// Runs `call` as on local threads — a failed attempt (a panic is an error) runs again up to
/// the node's `retries` annotation — and stores the result, encoded as `spec_of` says (a
/// result that cannot be encoded fails the node). `read` is the bytes of its inputs.
fn attempts(
    store: &Arc<dyn Store>,
    node: &NodeSpec,
    read: u64,
    call: impl Fn() -> Result<Value, String>,
    spec_of: impl Fn(&Value) -> Result<SaveSpec, String>,
) -> Result<NodeRun, ClusterError> {
    let thread = std::thread::current().name().unwrap_or("thread").to_owned();
    let mut attempt = 1;
    loop {
        let start = unix_nanos();
        let result = call();
        let mut event = TaskEvent {
            key: node.key.clone(),
            thread: thread.clone(),
            start,
            end: unix_nanos(),
            attempt,
            ok: result.is_ok(),
            size: None,
            read,
            stored: 0,
        };
        let failed = |error: String, event: TaskEvent| NodeRun {
            failure: Some(TaskFailure {
                error,
                attempts: attempt,
            }),
            event: Some(event),
        };
        match result {
            Ok(value) => {
                let spec = match spec_of(&value) {
                    Ok(spec) => spec,
                    Err(e) => {
                        event.ok = false;
                        return Ok(failed(e, event));
                    }
                };
                let bytes = crate::data_encoder().encode(&spec, &value, &node.output)?;
                store.put(&node.output, &bytes)?;
                event.size = brisk_graph::size_of_value(&value);
                event.stored = bytes.len() as u64;
                return Ok(NodeRun {
                    failure: None,
                    event: Some(event),
                });
            }
            Err(e) if attempt > node.retries => return Ok(failed(e, event)),
            Err(_) => attempt += 1,
        }
    }
}

/// The inputs of `id` in a rebuilt graph: its dependencies' values from the data plane, or —
/// for constants — from the rebuilt graph itself.
fn rebuilt_inputs<'a>(
    graph: &'a Graph,
    id: NodeId,
    node: &'a NodeSpec,
) -> Result<Vec<Input<'a>>, ClusterError> {
    let deps = graph.dependencies(id);
    if deps.len() != node.args.len() {
        return Err(ClusterError::Format {
            what: format!("inputs of {}", node.key),
            message: format!(
                "the rebuilt task has {} inputs, the driver's {}",
                deps.len(),
                node.args.len()
            ),
        });
    }
    deps.iter()
        .zip(&node.args)
        .map(|(&dep, key)| {
            let dn = graph.node(dep);
            if key.is_empty() {
                let (value, _) = dn.literal().ok_or_else(|| ClusterError::Format {
                    what: format!("input {} of {}", dn.key(), node.key),
                    message: "the driver's constant is a task in the rebuilt graph".into(),
                })?;
                return Ok(Input::Constant(Arc::clone(value)));
            }
            let spec = wire_spec_named(dn.output_type()).ok_or_else(|| ClusterError::Format {
                what: format!("input {key} of {}", node.key),
                message: format!("`{}` is not a registered wire type", dn.output_type()),
            })?;
            Ok(Input::Stored(key, spec))
        })
        .collect()
}

/// Runs one node of a rebuilt graph (see `run_node`): found by its place, fed its inputs
/// from the data plane, its result encoded as its registered wire type.
fn run_rebuilt_node(
    store: &Arc<dyn Store>,
    graph: &Graph,
    node: &NodeSpec,
) -> Result<NodeRun, ClusterError> {
    if store.contains(&node.output)? {
        return Ok(NodeRun::default());
    }
    let failed = |error: String| NodeRun {
        failure: Some(TaskFailure { error, attempts: 1 }),
        event: None,
    };
    // A graph that does not rebuild the same is the program's fault, not the node's: it
    // would fail again, so it is reported like a task error (not retried).
    let Some(id) = node.path.as_deref().and_then(|p| locate(graph, p)) else {
        return Ok(failed(format!(
            "the rebuilt graph has no task at the place of {} (is its builder deterministic, \
             and the worker the driver's program?)",
            node.key
        )));
    };
    let found = graph.node(id);
    if found.name() != node.task {
        return Ok(failed(format!(
            "the rebuilt graph has task `{}` where the driver has `{}` ({})",
            found.name(),
            node.task,
            node.key
        )));
    }
    let (inputs, read) = read_inputs(store, node, rebuilt_inputs(graph, id, node)?.into_iter())?;
    let call = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            graph.run_task(id, inputs.clone())
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Err(format!("the task panicked: {message}").into())
        })
        .map_err(|e| brisk_graph::chain(e.as_ref()))
    };
    let spec_of = |value: &Value| {
        wire_spec_of(value).ok_or_else(|| {
            format!(
                "its result (`{}`) is not a registered wire type",
                found.output_type()
            )
        })
    };
    attempts(store, node, read, call, spec_of)
}

/// The Slurm node this worker runs on (`SLURMD_NODENAME`), else the host name.
fn node_name() -> String {
    std::env::var("SLURMD_NODENAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

/// Nanoseconds since the Unix epoch (0 for a clock set before 1970).
fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A task that failed on its last attempt.
struct TaskFailure {
    error: String,
    attempts: u32,
}

/// How one node went: its failure on the last attempt, if it failed, and what ran (none when
/// an earlier attempt of the unit had stored the result already).
#[derive(Default)]
struct NodeRun {
    failure: Option<TaskFailure>,
    event: Option<TaskEvent>,
}

/// Runs one node: its result stored, or the failure of its last attempt (a deterministic
/// error, or a panic); `Err` when the store or the inputs failed.
fn run_node(store: &Arc<dyn Store>, node: &NodeSpec) -> Result<NodeRun, ClusterError> {
    if store.contains(&node.output)? {
        return Ok(NodeRun::default()); // a previous, interrupted attempt got this far
    }
    let not_remote = |reason: &str| ClusterError::NotRemote {
        key: node.key.clone(),
        name: node.task.clone(),
        reason: reason.to_owned(),
    };
    let entry = registry::lookup(&node.task)
        .ok_or_else(|| not_remote("this worker program does not register it"))?;
    let invoker = entry
        .invoker()
        .ok_or_else(|| not_remote("its arguments or result are not serde types"))?;
    if invoker.params().len() != node.args.len() {
        return Err(not_remote(
            "the worker's version of the task takes other arguments",
        ));
    }
    let inputs = invoker
        .params()
        .iter()
        .zip(&node.args)
        .map(|(spec, key)| Input::Stored(key, *spec));
    let (args, read) = read_inputs(store, node, inputs)?;
    let call = || {
        invoker
            .call(args.clone())
            .map_err(|e| brisk_graph::chain(e.as_ref()))
    };
    attempts(store, node, read, call, |_| Ok(*invoker.output()))
}

//! Splitting a graph into stages and units, and the unit description workers read.

use std::collections::{HashMap, HashSet};

use brisk_graph::registry;
use brisk_graph::remote::{Origin, wire_spec_named, wire_spec_of};
use brisk_graph::{Arg, Graph, Key, NodeId, SaveSpec, Tokenize, Value};
use serde::{Deserialize, Serialize};

use crate::ClusterError;

/// Store keys of a run.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) run: String,
}

impl Layout {
    pub(crate) fn base(&self) -> String {
        format!("runs/{}", self.run)
    }
    pub(crate) fn value(&self, key: &Key) -> String {
        format!("{}/values/{}", self.base(), key.token())
    }
    pub(crate) fn constant(&self, key: &Key, position: usize) -> String {
        format!("{}/consts/{}-{position}", self.base(), key.token())
    }
    pub(crate) fn unit(&self, unit: &str) -> String {
        format!("{}/units/{unit}.json", self.base())
    }
    pub(crate) fn done(&self, unit: &str) -> String {
        format!("{}/done/{unit}", self.base())
    }
    pub(crate) fn error(&self, unit: &str) -> String {
        format!("{}/errors/{unit}.json", self.base())
    }
    pub(crate) fn events(&self, unit: &str) -> String {
        format!("{}{unit}.json", self.events_prefix())
    }
    pub(crate) fn events_prefix(&self) -> String {
        format!("{}/events/", self.base())
    }
}

/// What a unit ran, where and when (read by the driver for its hooks, then removed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UnitEvents {
    /// The Slurm node (or host) the unit ran on.
    pub(crate) node: String,
    pub(crate) events: Vec<TaskEvent>,
}

/// One task run (the last attempt) on a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskEvent {
    /// The node's key (text form).
    pub(crate) key: String,
    /// The worker thread's name.
    pub(crate) thread: String,
    /// Start and end, in nanoseconds since the Unix epoch (the node's clock).
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Which attempt (1 = first).
    pub(crate) attempt: u32,
    /// Whether it produced a result.
    pub(crate) ok: bool,
    /// The result's size in the worker's memory, when known.
    pub(crate) size: Option<usize>,
    /// Bytes of inputs read from the data plane.
    pub(crate) read: u64,
    /// Bytes of the encoded result written to the data plane.
    pub(crate) stored: u64,
}

/// The name of unit `index` of `stage`.
pub(crate) fn unit_name(stage: usize, index: usize) -> String {
    format!("s{stage}-{index}")
}

/// What a worker reads: the nodes of one unit (independent of each other) and where their
/// arguments are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UnitSpec {
    pub(crate) run: String,
    pub(crate) unit: String,
    pub(crate) nodes: Vec<NodeSpec>,
    /// How to rebuild the graph (`brisk_graph::remote::Origin`'s builder and parameters),
    /// when the nodes are found by their place in it rather than as registered tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeSpec {
    /// The node's key (text form).
    pub(crate) key: String,
    /// The registered task name.
    pub(crate) task: String,
    /// Store keys of the encoded arguments, in order. For a node found by its `path`: one
    /// per distinct dependency (in `Graph::dependencies` order), empty for a constant the
    /// worker's own rebuilt graph holds.
    pub(crate) args: Vec<String>,
    /// Where the node is in the rebuilt graph: the output's index, then at each step the
    /// index among the current node's dependencies (`None` for a registered task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<Vec<u32>>,
    /// Where the result goes.
    pub(crate) output: String,
    /// How many times the task is run again after it fails (its `retries` annotation).
    #[serde(default)]
    pub(crate) retries: u32,
}

/// A value the driver writes before the first stage: a constant argument or a literal node.
pub(crate) struct Upload {
    pub(crate) store_key: String,
    pub(crate) spec: SaveSpec,
    pub(crate) value: Value,
}

/// The whole plan of a graph.
pub(crate) struct Plan {
    pub(crate) layout: Layout,
    /// Per stage, its units.
    pub(crate) stages: Vec<Vec<UnitSpec>>,
    /// Per stage, the graph ids of its task nodes.
    pub(crate) stage_nodes: Vec<Vec<NodeId>>,
    pub(crate) uploads: Vec<Upload>,
    /// Per task node id: how its result is encoded in the data plane.
    pub(crate) codecs: HashMap<NodeId, SaveSpec>,
    /// Per value store key, the (stage, unit index) that produces it (task nodes only).
    pub(crate) producer: Producers,
    /// Per loaded node id (a checkpoint hit): its value, loaded by the driver.
    pub(crate) loaded: HashMap<NodeId, Value>,
}

/// Plans `graph`: every task node must be a registered serde task; literal nodes, nodes
/// loaded from a checkpoint (`loaded`, by graph id) and constant arguments are uploaded,
/// encoded with the consuming parameter's codec.
pub(crate) fn plan(
    graph: &Graph,
    units_per_stage: usize,
    loaded: HashMap<NodeId, Value>,
    origin: Option<&Origin>,
    why_local: Option<&str>,
) -> Result<Plan, ClusterError> {
    if let Some(origin) = origin {
        return plan_rebuilt(graph, units_per_stage, loaded, origin);
    }
    let run = run_id(graph)?;
    let layout = Layout { run };
    let n = graph.len();
    let mut depth = vec![0usize; n];
    let mut codecs = HashMap::new();
    let mut uploads: Vec<Upload> = Vec::new();
    let mut uploaded: HashSet<NodeId> = HashSet::new();
    let mut by_stage: Vec<Vec<NodeId>> = Vec::new();
    for id in graph.in_order() {
        let node = graph.node(id);
        if node.is_literal() || node.is_loaded() {
            // Uploaded by the tasks that read it, or handed back as it is when an output.
            continue;
        }
        let key = node.key().to_string();
        let not_remote = |reason: &str| ClusterError::NotRemote {
            key: key.clone(),
            name: node.name().to_owned(),
            reason: reason.to_owned(),
        };
        let entry = registry::lookup(node.name()).ok_or_else(|| {
            not_remote(&match why_local {
                Some(why) => format!(
                    "it is not a registered `#[task]` function, and its graph cannot be rebuilt \
                     on a worker: {why}"
                ),
                None => "it is not a registered `#[task]` function, and the compute does not say \
                         how to rebuild its graph"
                    .to_owned(),
            })
        })?;
        let invoker = entry.invoker().ok_or_else(|| {
            not_remote("its arguments or result are not `Serialize + DeserializeOwned`")
        })?;
        let args = node.args();
        if args.len() != invoker.params().len() {
            return Err(not_remote(
                "its arguments do not match the registered signature",
            ));
        }
        let mut d = 0;
        for (i, a) in args.iter().enumerate() {
            match *a {
                Arg::Node(dep) => {
                    let dn = graph.node(dep);
                    if dn.is_literal() || dn.is_loaded() {
                        if uploaded.insert(dep) {
                            let value = match dn.literal() {
                                Some((value, _)) => value,
                                None => loaded.get(&dep).ok_or_else(|| {
                                    not_remote("an input loaded from a checkpoint without a value")
                                })?,
                            };
                            uploads.push(Upload {
                                store_key: layout.value(dn.key()),
                                spec: invoker.params()[i],
                                value: value.clone(),
                            });
                        }
                    } else {
                        d = d.max(depth[dep.index()] + 1);
                    }
                }
                Arg::Const { value, .. } => uploads.push(Upload {
                    store_key: layout.constant(node.key(), i),
                    spec: invoker.params()[i],
                    value: value.clone(),
                }),
                _ => return Err(not_remote("an argument kind this backend does not know")),
            }
        }
        depth[id.index()] = d;
        if by_stage.len() <= d {
            by_stage.resize(d + 1, Vec::new());
        }
        by_stage[d].push(id);
        codecs.insert(id, *invoker.output());
    }
    let (stages, producer) = units(
        &by_stage,
        units_per_stage,
        &layout,
        None,
        |id| {
            let node = graph.node(id);
            let args = node
                .args()
                .iter()
                .enumerate()
                .map(|(i, a)| match *a {
                    Arg::Node(dep) => layout.value(graph.key(dep)),
                    _ => layout.constant(node.key(), i),
                })
                .collect();
            (args, None)
        },
        graph,
    );
    Ok(Plan {
        layout,
        stages,
        stage_nodes: by_stage,
        uploads,
        codecs,
        producer,
        loaded,
    })
}

/// Per value store key, the (stage, unit index) that produces it.
type Producers = HashMap<String, (usize, usize)>;

/// The units of each stage (at most `units_per_stage`, the stage's nodes split evenly) and
/// which unit produces each value; `inputs` gives a node's argument keys and its place.
fn units(
    by_stage: &[Vec<NodeId>],
    units_per_stage: usize,
    layout: &Layout,
    origin: Option<&(String, String)>,
    inputs: impl Fn(NodeId) -> (Vec<String>, Option<Vec<u32>>),
    graph: &Graph,
) -> (Vec<Vec<UnitSpec>>, Producers) {
    let mut stages = Vec::with_capacity(by_stage.len());
    let mut producer = HashMap::new();
    for (s, ids) in by_stage.iter().enumerate() {
        let units = units_per_stage.clamp(1, ids.len().max(1));
        let per = ids.len().div_ceil(units);
        let mut stage = Vec::new();
        for (u, chunk) in ids.chunks(per.max(1)).enumerate() {
            let nodes = chunk
                .iter()
                .map(|&id| {
                    let node = graph.node(id);
                    let (args, path) = inputs(id);
                    producer.insert(layout.value(node.key()), (s, u));
                    NodeSpec {
                        key: node.key().to_string(),
                        task: node.name().to_owned(),
                        args,
                        path,
                        output: layout.value(node.key()),
                        retries: node.annotations().retries,
                    }
                })
                .collect();
            stage.push(UnitSpec {
                run: layout.run.clone(),
                unit: unit_name(s, u),
                nodes,
                origin: origin.cloned(),
            });
        }
        stages.push(stage);
    }
    (stages, producer)
}

/// The run id of a graph: a hash of its output keys.
fn run_id(graph: &Graph) -> Result<String, ClusterError> {
    let outputs: Vec<String> = graph
        .outputs()
        .iter()
        .map(|&o| graph.key(o).to_string())
        .collect();
    outputs
        .token()
        .map(|t| t.to_string()[..16].to_owned())
        .map_err(|e| ClusterError::Format {
            what: "the run id".into(),
            message: e.to_string(),
        })
}

/// Per node reachable from the outputs: its path (output index, then dependency indices).
fn paths(graph: &Graph) -> HashMap<NodeId, Vec<u32>> {
    let mut paths: HashMap<NodeId, Vec<u32>> = HashMap::new();
    let mut queue = std::collections::VecDeque::new();
    let index = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
    for (i, &o) in graph.outputs().iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(e) = paths.entry(o) {
            e.insert(vec![index(i)]);
            queue.push_back(o);
        }
    }
    while let Some(id) = queue.pop_front() {
        let base = paths[&id].clone();
        for (k, &dep) in graph.dependencies(id).iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(e) = paths.entry(dep) {
                let mut p = base.clone();
                p.push(index(k));
                e.insert(p);
                queue.push_back(dep);
            }
        }
    }
    paths
}

/// Plans a graph that workers rebuild from `origin`: every task node runs there by its place
/// in the graph, so closures need not be registered; the values that cross between units
/// must be of registered wire types (checked here, before anything is submitted).
fn plan_rebuilt(
    graph: &Graph,
    units_per_stage: usize,
    loaded: HashMap<NodeId, Value>,
    origin: &Origin,
) -> Result<Plan, ClusterError> {
    let layout = Layout {
        run: run_id(graph)?,
    };
    let paths = paths(graph);
    let n = graph.len();
    let mut depth = vec![0usize; n];
    let mut codecs = HashMap::new();
    let mut uploads: Vec<Upload> = Vec::new();
    let mut uploaded: HashSet<NodeId> = HashSet::new();
    let mut by_stage: Vec<Vec<NodeId>> = Vec::new();
    for id in graph.in_order() {
        let node = graph.node(id);
        if node.is_literal() || node.is_loaded() {
            continue;
        }
        let not_remote = |reason: String| ClusterError::NotRemote {
            key: node.key().to_string(),
            name: node.name().to_owned(),
            reason,
        };
        if !node.resources().is_empty() {
            return Err(not_remote(
                "it needs a resource held open by this process".to_owned(),
            ));
        }
        let codec = wire_spec_named(node.output_type()).ok_or_else(|| {
            not_remote(format!(
                "its result type `{}` is not registered to travel between processes \
                 (`brisk_graph::wire_types!`)",
                node.output_type()
            ))
        })?;
        codecs.insert(id, codec);
        let mut d = 0;
        for &dep in graph.dependencies(id) {
            let dn = graph.node(dep);
            if dn.is_loaded() {
                if uploaded.insert(dep) {
                    let value = loaded.get(&dep).ok_or_else(|| {
                        not_remote("an input loaded from a checkpoint without a value".to_owned())
                    })?;
                    let spec = wire_spec_of(value).ok_or_else(|| {
                        not_remote(format!(
                            "its input {} (loaded from a checkpoint) is of a type not \
                             registered to travel between processes",
                            dn.key()
                        ))
                    })?;
                    uploads.push(Upload {
                        store_key: layout.value(dn.key()),
                        spec,
                        value: value.clone(),
                    });
                }
            } else if !dn.is_literal() {
                d = d.max(depth[dep.index()] + 1);
            }
        }
        depth[id.index()] = d;
        if by_stage.len() <= d {
            by_stage.resize(d + 1, Vec::new());
        }
        by_stage[d].push(id);
    }
    let origin = (origin.builder().to_owned(), origin.params().to_owned());
    let (stages, producer) = units(
        &by_stage,
        units_per_stage,
        &layout,
        Some(&origin),
        |id| {
            let args = graph
                .dependencies(id)
                .iter()
                .map(|&dep| {
                    if graph.node(dep).is_literal() {
                        String::new()
                    } else {
                        layout.value(graph.key(dep))
                    }
                })
                .collect();
            (args, paths.get(&id).cloned())
        },
        graph,
    );
    Ok(Plan {
        layout,
        stages,
        stage_nodes: by_stage,
        uploads,
        codecs,
        producer,
        loaded,
    })
}

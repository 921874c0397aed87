//! Splitting a graph into stages and units, and the unit description workers read.

use std::collections::{HashMap, HashSet};

use brisk_graph::registry::{self, Invoker};
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
        format!("{}/events/{unit}.json", self.base())
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeSpec {
    /// The node's key (text form).
    pub(crate) key: String,
    /// The registered task name.
    pub(crate) task: String,
    /// Store keys of the encoded arguments, in order.
    pub(crate) args: Vec<String>,
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
    /// Per task node id: its invoker (for decoding outputs).
    pub(crate) invokers: HashMap<NodeId, Invoker>,
    /// Per value store key, the (stage, unit index) that produces it (task nodes only).
    pub(crate) producer: HashMap<String, (usize, usize)>,
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
) -> Result<Plan, ClusterError> {
    let outputs: Vec<String> = graph
        .outputs()
        .iter()
        .map(|&o| graph.key(o).to_string())
        .collect();
    let run = outputs
        .token()
        .map(|t| t.to_string()[..16].to_owned())
        .map_err(|e| ClusterError::Format {
            what: "the run id".into(),
            message: e.to_string(),
        })?;
    let layout = Layout { run };
    let n = graph.len();
    let mut depth = vec![0usize; n];
    let mut invokers = HashMap::new();
    let mut uploads: Vec<Upload> = Vec::new();
    let mut uploaded: HashSet<NodeId> = HashSet::new();
    let mut by_stage: Vec<Vec<NodeId>> = Vec::new();
    for &id in graph.order() {
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
        let entry = registry::lookup(node.name())
            .ok_or_else(|| not_remote("it is not a registered `#[task]` function"))?;
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
        invokers.insert(id, invoker);
    }
    let mut stages = Vec::with_capacity(by_stage.len());
    let mut producer = HashMap::new();
    for (s, ids) in by_stage.iter().enumerate() {
        let units = units_per_stage.clamp(1, ids.len().max(1));
        let per = ids.len().div_ceil(units);
        let mut stage = Vec::new();
        for (u, chunk) in ids.chunks(per.max(1)).enumerate() {
            let name = unit_name(s, u);
            let nodes = chunk
                .iter()
                .map(|&id| {
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
                    producer.insert(layout.value(node.key()), (s, u));
                    NodeSpec {
                        key: node.key().to_string(),
                        task: node.name().to_owned(),
                        args,
                        output: layout.value(node.key()),
                        retries: node.annotations().retries,
                    }
                })
                .collect();
            stage.push(UnitSpec {
                run: layout.run.clone(),
                unit: name,
                nodes,
            });
        }
        stages.push(stage);
    }
    Ok(Plan {
        layout,
        stages,
        stage_nodes: by_stage,
        uploads,
        invokers,
        producer,
        loaded,
    })
}

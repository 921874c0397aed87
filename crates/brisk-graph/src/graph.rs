//! Materialized graphs: the reachable sub-graph of some outputs, merged by key and ordered.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::cache::{Cache, Checkpoint};
use crate::delayed::AnyDelayed;
use crate::error::{CacheAction, Error};
use crate::key::Key;
use crate::node::{
    Annotations, BoxError, Constant, Input, Meta, NodeInner, Op, SaveSpec, Value, const_value,
};
use crate::resource::{RequiredResource, Resource};

/// Hash-map hasher for tokens, which are already uniformly distributed.
#[derive(Default)]
pub(crate) struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type TokenMap = HashMap<u64x2, u32, BuildHasherDefault<TokenHasher>>;

/// A 128-bit token as a map key whose `Hash` feeds only its first 64 bits.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(
    non_camel_case_types,
    reason = "reads as the plain pair of words it is"
)]
struct u64x2(u64, u64);

impl std::hash::Hash for u64x2 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

fn tok(key: &Key) -> u64x2 {
    let t = key.token();
    let b = t.as_bytes();
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&b[..8]);
    hi.copy_from_slice(&b[8..]);
    u64x2(u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// A node's id in its [`Graph`]: `0..graph.len()`, dependencies before dependents.
///
/// Ids are only meaningful for the graph that gave them out.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NodeId(u32);

impl NodeId {
    /// The id as an index (`0..graph.len()`), for tables an executor or hook keeps per node.
    #[must_use]
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The id of the node at `index` (the inverse of [`index`](Self::index)), for executors
    /// that keep ids in their own tables.
    ///
    /// # Panics
    /// If `index` is not below `u32::MAX` (no graph holds that many nodes).
    #[must_use]
    #[inline]
    pub fn from_index(index: usize) -> Self {
        Self(u32::try_from(index).expect("a graph holds fewer than 2^32 nodes"))
    }

    /// All ids of a graph with `len` nodes, in id order.
    pub fn all(len: usize) -> impl ExactSizeIterator<Item = NodeId> + DoubleEndedIterator {
        (0..len).map(Self::from_index)
    }
}

impl From<NodeId> for usize {
    fn from(id: NodeId) -> usize {
        id.index()
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Arguments up to which a node looks for repeated ones among its own dependencies.
const FEW_ARGS: usize = 8;

/// Where one argument of a node comes from (see `Graph::arg_slots`).
enum Slot<'g> {
    Const(&'g Arc<dyn Constant>),
    /// A position in the node's distinct dependencies.
    Dep(u32),
}

/// Nodes a graph sizes its tables for when its outputs cannot say how many it will hold.
const SMALL_GRAPH: usize = 1024;

/// The reachable sub-graph of a set of outputs, with nodes of equal keys merged and a static
/// execution order. Built once per compute; every pass is O(V + E).
///
/// Node ids (`usize`, `0..len()`) are assigned so that every node's dependencies have smaller
/// ids (a topological order). The static [`order`](Graph::order) refines that: it finishes a
/// branch before starting a new one and starts the longest branch first, so a streaming
/// reduction holds few intermediates.
///
/// ```
/// use brisk_graph::{Graph, pure, lit};
///
/// let x = lit(1i64);
/// let a = pure("inc", |v: i64| v + 1, (&x,));
/// let b = pure("inc", |v: i64| v + 1, (&x,)); // same key as `a`: merged
/// let s = pure("add", |p: i64, q: i64| p + q, (a, b));
/// let g = Graph::new([&s]);
/// assert_eq!(g.len(), 3); // lit, inc, add
/// assert_eq!(g.dependencies_of(s.key()).unwrap().count(), 1);
/// assert!(g.to_dot(&Default::default()).contains("inc"));
/// ```
pub struct Graph {
    nodes: Vec<Arc<NodeInner>>,
    /// Nodes whose result is loaded from the cache (their inputs were culled).
    loaded: Vec<bool>,
    dep_start: Vec<u32>,
    deps: Vec<NodeId>,
    dependent_start: Vec<u32>,
    dependents: Vec<NodeId>,
    /// Per node that names a dependency in more than one argument (rare), per node argument:
    /// its position in the node's distinct dependencies. Every other node's `k`-th node
    /// argument is its `k`-th dependency, which needs no table (see `arg_slots`).
    repeats: HashMap<u32, Box<[u32]>>,
    outputs: Vec<NodeId>,
    /// The static order when it is not the ids (see `compute_order`); filled with the ids on
    /// the first call of `order()` otherwise. Executors walk `in_order()`, which needs neither.
    order: std::sync::OnceLock<Vec<NodeId>>,
    /// Positions in `order` by id (built on first use; executors do not need it).
    position: std::sync::OnceLock<Vec<u32>>,
    /// Whether the static order is the ids.
    ids_in_order: bool,
    /// Node ids by key token: filled while building when keys are merged, otherwise built
    /// on the first query by key (executors work with ids and never need it).
    index: std::sync::OnceLock<TokenMap>,
    /// Building: whether nodes are merged by key through `index` (else by identity alone).
    keyed: bool,
    /// Building by identity: the first 64 bits of every node's token, to check afterwards that
    /// no two nodes share a key.
    shorts: Vec<u64>,
    /// Metadata merged from several nodes that share a key (rare).
    merged: HashMap<u32, Meta>,
    /// Whether some node requires a resource (most graphs: none, and a compute skips the scan).
    any_resources: bool,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("tasks", &self.nodes.len())
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

/// A read-only view of one node of a [`Graph`].
#[derive(Clone, Copy)]
pub struct NodeView<'g> {
    graph: &'g Graph,
    id: NodeId,
}

impl<'g> NodeView<'g> {
    /// The node's id in its graph.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// The node's key.
    #[must_use]
    pub fn key(&self) -> &'g Key {
        &self.graph.nodes[self.id.index()].key
    }
    /// The task's name.
    #[must_use]
    pub fn name(&self) -> &'g str {
        self.graph.nodes[self.id.index()].name().as_str()
    }
    /// The task's name as a cheaply cloned [`Name`](crate::Name) (for recording it per task).
    #[must_use]
    pub fn name_ref(&self) -> &'g crate::Name {
        self.graph.nodes[self.id.index()].name()
    }
    /// The Rust type of the node's result.
    #[must_use]
    pub fn output_type(&self) -> &'static str {
        self.graph.nodes[self.id.index()].output_type()
    }
    #[inline]
    fn meta(&self) -> &'g Meta {
        self.graph
            .merged
            .get(&(self.id.0))
            .unwrap_or(&self.graph.nodes[self.id.index()].meta)
    }
    /// Retries and priority.
    #[must_use]
    #[inline]
    pub fn annotations(&self) -> Annotations {
        self.meta().annotations
    }
    /// How to (de)serialize the result, when the node is marked as checkpointed.
    #[must_use]
    pub fn save_spec(&self) -> Option<&'g SaveSpec> {
        self.meta().save.as_ref()
    }
    /// The key a custom hasher gave, if any.
    #[must_use]
    pub fn custom_key(&self) -> Option<&'g str> {
        self.meta().storage_key.as_deref()
    }
    /// Cache-specific checkpoint options, if any.
    #[must_use]
    pub fn save_options(&self) -> Option<&'g (dyn std::any::Any + Send + Sync)> {
        self.meta().save_options.as_deref()
    }
    /// Resources this node needs open while it runs.
    #[must_use]
    pub fn resources(&self) -> &'g [Arc<dyn Resource>] {
        &self.meta().resources
    }
    /// Whether the result is loaded from the cache instead of computed.
    #[must_use]
    #[inline]
    pub fn is_loaded(&self) -> bool {
        self.graph.loaded[self.id.index()]
    }
    /// The error that made the node invalid when it was built (its arguments could not be
    /// tokenized); running it fails with [`Error::Tokenize`].
    #[must_use]
    #[inline]
    pub fn build_error(&self) -> Option<&'g crate::TokenizeError> {
        self.graph.nodes[self.id.index()].build_error()
    }

    /// Whether the node is a constant.
    #[must_use]
    pub fn is_literal(&self) -> bool {
        matches!(self.graph.nodes[self.id.index()].op, Op::Literal(..))
    }

    /// The node's arguments in order: another node's result (by graph id) or a constant
    /// captured at build time, with its serde view when it has one (values passed to tasks
    /// and `lit` values are serde types; `lit_opaque` ones are not). Empty for loaded nodes
    /// and constants. This is what a backend ships to run the node in another process.
    #[must_use]
    pub fn args(&self) -> Vec<Arg<'g>> {
        let node = &self.graph.nodes[self.id.index()];
        if self.graph.loaded[self.id.index()] || node.body().is_none() {
            return Vec::new();
        }
        let deps = self.graph.deps_of(self.id.index());
        self.graph
            .arg_slots(self.id.index())
            .map(|arg| match arg {
                Slot::Const(v) => Arg::Const {
                    value: v,
                    serde: Some(v.serializable()),
                },
                Slot::Dep(s) => Arg::Node(deps[s as usize]),
            })
            .collect()
    }

    /// A constant node's value and its serde view (when it has one).
    #[must_use]
    pub fn literal(&self) -> Option<(&'g Value, Option<&'g dyn erased_serde::Serialize>)> {
        match &self.graph.nodes[self.id.index()].op {
            Op::Literal(v, ty) => Some((v, ty.shipped.and_then(|f| f(v)))),
            _ => None,
        }
    }
}

/// One argument of a node, from [`NodeView::args`].
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum Arg<'g> {
    /// The result of the node with this graph id.
    Node(NodeId),
    /// A constant.
    Const {
        /// Its value (`value.downcast_ref::<T>()`; `Arc::clone(value) as Value` to own it).
        value: &'g Arc<dyn Constant>,
        /// Its serde view (every constant argument has one).
        serde: Option<&'g dyn erased_serde::Serialize>,
    },
}

impl std::fmt::Debug for Arg<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node(id) => write!(f, "Node({id})"),
            Self::Const { serde, .. } => write!(f, "Const(serde: {})", serde.is_some()),
        }
    }
}

impl std::fmt::Debug for NodeView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeView")
            .field("id", &self.id)
            .field("key", self.key())
            .field("name", &self.name())
            .finish()
    }
}

/// How [`Graph::to_dot`] draws nodes.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DotOptions {
    /// Fill nodes with a colour ramp from their position in the static order (blue = early,
    /// red = late).
    pub color_by_order: bool,
    /// Add each node's key under its name.
    pub show_keys: bool,
    /// Explicit fill colours (`#rrggbb`) per node id; overrides `color_by_order` where set.
    pub fill: Option<Vec<Option<String>>>,
}

impl DotOptions {
    /// Colour nodes by static order.
    #[must_use]
    pub fn color_by_order(mut self) -> Self {
        self.color_by_order = true;
        self
    }
    /// Show keys in labels.
    #[must_use]
    pub fn show_keys(mut self) -> Self {
        self.show_keys = true;
        self
    }
    /// Explicit fill colours per node id (e.g. by measured duration).
    #[must_use]
    pub fn fill(mut self, colors: Vec<Option<String>>) -> Self {
        self.fill = Some(colors);
        self
    }
}

/// A node on the building pass's stack. Borrowed, not counted: every node the pass reaches is
/// held by the roots through its dependents, so the graph takes its one counted reference
/// when the node gets its id.
struct Frame<'a> {
    node: &'a Arc<NodeInner>,
    next: u32,
    load: bool,
}

impl Graph {
    /// Materializes the graph of `outputs`: collects every reachable node once (culling the
    /// rest), merges nodes with equal keys and computes the static order.
    pub fn new<I>(outputs: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<AnyDelayed>,
    {
        match Self::build(outputs, None) {
            Ok(g) => g,
            Err(e) => unreachable!("building without a cache cannot fail: {e}"),
        }
    }

    /// Like [`Graph::new`], consulting `cache` for every node marked as checkpointed: a node
    /// the cache holds is loaded instead of computed, and its whole upstream sub-graph is culled.
    ///
    /// # Errors
    /// [`Error::Cache`] when the cache cannot answer whether it holds a key.
    pub fn with_cache<I>(outputs: I, cache: &dyn Cache) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: Into<AnyDelayed>,
    {
        Self::build(outputs, Some(cache))
    }

    fn build<I>(outputs: I, cache: Option<&dyn Cache>) -> Result<Self, Error>
    where
        I: IntoIterator,
        I::Item: Into<AnyDelayed>,
    {
        let roots: Vec<Arc<NodeInner>> = outputs.into_iter().map(|d| d.into().node).collect();
        // Most graphs hold each key in one node: collect them by identity alone (each node's
        // stamp says whether this graph has it), then check that no two share a key. Only a
        // graph where distinct nodes share a key (or another thread built a graph over the
        // same nodes at the same moment) takes the second pass, which merges by key through
        // a hash map. The cache is asked about each checkpointed node once across both.
        let mut asked: HashMap<u64x2, bool> = HashMap::new();
        if let Some(g) = Self::pass(&roots, cache, false, &mut asked)? {
            return Ok(g);
        }
        Ok(Self::pass(&roots, cache, true, &mut asked)?
            .expect("a pass that merges by key always completes"))
    }

    /// One materializing pass; `None` when a pass by identity cannot finish (see `build`).
    fn pass(
        roots: &[Arc<NodeInner>],
        cache: Option<&dyn Cache>,
        keyed: bool,
        asked: &mut HashMap<u64x2, bool>,
    ) -> Result<Option<Self>, Error> {
        // Size the tables once when the nodes say how many the graph will hold (a graph of
        // one tree-shaped output: then growing them would copy every table and touch twice
        // the memory), else start small.
        let cap = match roots {
            [root] => match root.reach.get() {
                (n, true) => n,
                (n, false) => n.min(SMALL_GRAPH),
            },
            _ => SMALL_GRAPH,
        };
        let mut dep_start = Vec::with_capacity(cap + 1);
        dep_start.push(0);
        let mut g = Self {
            nodes: Vec::with_capacity(cap),
            loaded: Vec::with_capacity(cap),
            dep_start,
            deps: Vec::with_capacity(cap),
            dependent_start: Vec::new(),
            dependents: Vec::new(),
            repeats: HashMap::new(),
            outputs: Vec::with_capacity(roots.len()),
            order: std::sync::OnceLock::new(),
            position: std::sync::OnceLock::new(),
            ids_in_order: false,
            index: std::sync::OnceLock::new(),
            keyed,
            shorts: if keyed {
                Vec::new()
            } else {
                Vec::with_capacity(cap)
            },
            merged: HashMap::new(),
            any_resources: false,
        };
        if keyed {
            g.index
                .get_or_init(|| TokenMap::with_capacity_and_hasher(cap, Default::default()));
        }
        // Iterative post-order DFS in input order. Ids are post-order positions, so
        // dependencies always get smaller ids than their dependents.
        let mut stack: Vec<Frame<'_>> = Vec::with_capacity(cap);
        let mut mark: Vec<(u32, u32)> = Vec::new();
        // The ids of the finished children of the frames on the stack, in input order: a
        // node's dependencies are the last entries when it finishes, so it never looks its
        // children up again (in a wide node, a second touch of every child).
        let mut ids: Vec<u32> = Vec::with_capacity(cap.min(1 << 16));
        for root in roots {
            let id = if let Some(id) = g.visit(root) {
                id
            } else {
                stack.push(g.frame(root, cache, asked)?);
                while let Some(top) = stack.last_mut() {
                    let node: &Arc<NodeInner> = top.node;
                    if !top.load && (top.next as usize) < node.inputs.len() {
                        let i = top.next as usize;
                        top.next += 1;
                        if let Input::Node(child) = &node.inputs[i] {
                            if let Some(id) = g.visit(child) {
                                ids.push(id);
                            } else {
                                let frame = g.frame(child, cache, asked)?;
                                if !child.has_node_inputs() {
                                    // Nothing to walk below it: it gets its id now, without a
                                    // turn on the stack.
                                    let id = g.finish_node(frame, &mut mark, &mut ids);
                                    ids.push(id);
                                } else {
                                    stack.push(frame);
                                }
                            }
                        }
                        continue;
                    }
                    let frame = stack
                        .pop()
                        .expect("the loop only runs while the stack is non-empty");
                    let id = g.finish_node(frame, &mut mark, &mut ids);
                    ids.push(id);
                }
                ids.pop().expect("a finished root leaves its id")
            };
            g.outputs.push(NodeId(id));
        }
        if !keyed && has_duplicate(&std::mem::take(&mut g.shorts)) {
            return Ok(None);
        }
        g.link_dependents();
        g.compute_order();
        Ok(Some(g))
    }

    /// This graph's id of `node` (a node it holds, or, merging by key, one with its key).
    fn find(&self, node: &Arc<NodeInner>) -> Option<u32> {
        self.stamped(node).or_else(|| {
            self.keyed
                .then(|| self.index().get(&tok(&node.key)).copied())
                .flatten()
        })
    }

    /// The key index (built on first use when the graph was collected by identity).
    fn index(&self) -> &TokenMap {
        self.index.get_or_init(|| {
            let mut m = TokenMap::with_capacity_and_hasher(self.nodes.len(), Default::default());
            for (i, n) in self.nodes.iter().enumerate() {
                m.insert(tok(&n.key), i as u32);
            }
            m
        })
    }

    /// This graph's id of this very node, if the node's stamp says so (no hash lookup).
    fn stamped(&self, node: &Arc<NodeInner>) -> Option<u32> {
        let s = node.stamp.get();
        self.nodes
            .get(s as usize)
            .is_some_and(|n| Arc::ptr_eq(n, node))
            .then_some(s)
    }

    /// `node`'s id if its key is already in the graph (merging its metadata), else `None`.
    fn visit(&mut self, node: &Arc<NodeInner>) -> Option<u32> {
        let id = self.find(node)?;
        let existing = &self.nodes[id as usize];
        if !Arc::ptr_eq(existing, node) && !node.meta.is_default() {
            let current = self.merged.get(&id).unwrap_or(&existing.meta);
            let merged = current.merge(&node.meta);
            self.any_resources |= !merged.resources.is_empty();
            self.merged.insert(id, merged);
        }
        Some(id)
    }

    /// A new node's frame on the walk's stack (asking the cache whether to load it).
    fn frame<'a>(
        &self,
        node: &'a Arc<NodeInner>,
        cache: Option<&dyn Cache>,
        asked: &mut HashMap<u64x2, bool>,
    ) -> Result<Frame<'a>, Error> {
        Ok(Frame {
            node,
            next: 0,
            load: self.should_load(node, cache, asked)?,
        })
    }

    fn should_load(
        &self,
        node: &Arc<NodeInner>,
        cache: Option<&dyn Cache>,
        asked: &mut HashMap<u64x2, bool>,
    ) -> Result<bool, Error> {
        let (Some(cache), Some(spec)) = (cache, node.meta.save.as_ref()) else {
            return Ok(false);
        };
        // Once per key, across both passes (nodes that share a key share their answer).
        let token = tok(&node.key);
        if let Some(&answer) = asked.get(&token) {
            return Ok(answer);
        }
        let entry = Checkpoint {
            key: &node.key,
            name: node.name().as_str(),
            spec,
            custom_key: node.meta.storage_key.as_deref(),
            options: node.meta.save_options.as_deref(),
        };
        let answer = cache.contains(&entry).map_err(|source| Error::Cache {
            key: node.key.clone(),
            name: node.name().to_string(),
            action: CacheAction::Contains,
            source,
        })?;
        asked.insert(token, answer);
        Ok(answer)
    }

    /// Assigns the next id to a node whose inputs all have ids: the last entries of `ids`, one
    /// per node argument in order, which it takes. A node with a few arguments finds repeated
    /// ones among its own dependencies; for more, `mark[d]` remembers, per dependency `d`, the
    /// last node that listed it and at which slot, so they are found in O(1) and the whole
    /// pass stays O(V + E) (the table is only made when a graph has such a node).
    fn finish_node(
        &mut self,
        frame: Frame<'_>,
        mark: &mut Vec<(u32, u32)>,
        ids: &mut Vec<u32>,
    ) -> u32 {
        let id = self.nodes.len() as u32;
        // A node without node arguments has nothing to link.
        if !frame.load && frame.node.has_node_inputs() {
            let children = frame
                .node
                .inputs
                .iter()
                .filter(|i| matches!(i, Input::Node(_)))
                .count();
            let first = ids.len() - children;
            let mut child_ids = ids[first..].iter();
            let first_dep = self.deps.len();
            // The slot of each node argument, kept only if one repeats (see `repeats`).
            let mut slots: Vec<u32> = Vec::new();
            let mut k = 0u32;
            if children > FEW_ARGS && mark.len() < id as usize {
                mark.resize(id as usize, (u32::MAX, 0));
            }
            for input in &frame.node.inputs {
                match input {
                    Input::Const(..) => {}
                    Input::Node(_) => {
                        let dep = *child_ids.next().expect("every node argument left its id");
                        let slot = if children <= FEW_ARGS {
                            // A few arguments: look among the node's dependencies so far.
                            self.deps[first_dep..]
                                .iter()
                                .position(|d| d.0 == dep)
                                .unwrap_or_else(|| {
                                    self.deps.push(NodeId(dep));
                                    self.deps.len() - 1 - first_dep
                                }) as u32
                        } else {
                            let m = &mut mark[dep as usize];
                            if m.0 != id {
                                *m = (id, (self.deps.len() - first_dep) as u32);
                                self.deps.push(NodeId(dep));
                            }
                            m.1
                        };
                        // Until the first repeat, the `k`-th node argument is slot `k`; the
                        // first repeat writes those out and every later slot follows.
                        if slots.is_empty() && slot != k {
                            slots.extend(0..k);
                        }
                        if !slots.is_empty() {
                            slots.push(slot);
                        }
                        k += 1;
                    }
                }
            }
            if !slots.is_empty() {
                self.repeats.insert(id, slots.into_boxed_slice());
            }
            ids.truncate(first);
        }
        self.dep_start.push(self.deps.len() as u32);
        if self.keyed {
            let index = self
                .index
                .get_mut()
                .expect("a keyed pass starts with an index");
            index.insert(tok(&frame.node.key), id);
        } else {
            self.shorts.push(frame.node.key.short());
        }
        frame.node.stamp.set(id);
        self.loaded.push(frame.load);
        self.any_resources |= !frame.node.meta.resources.is_empty();
        self.nodes.push(Arc::clone(frame.node));
        id
    }

    fn link_dependents(&mut self) {
        let n = self.nodes.len();
        let mut count = vec![0u32; n + 1];
        for &d in &self.deps {
            count[d.index() + 1] += 1;
        }
        for i in 0..n {
            count[i + 1] += count[i];
        }
        self.dependent_start.clone_from(&count);
        self.dependents = vec![NodeId(0); self.deps.len()];
        let mut fill = count;
        for node in 0..n {
            for &d in &self.deps[self.dep_start[node] as usize..self.dep_start[node + 1] as usize] {
                let slot = &mut fill[d.index()];
                self.dependents[*slot as usize] = NodeId::from_index(node);
                *slot += 1;
            }
        }
    }

    /// Pass 2: post-order DFS from the outputs that visits the tallest dependency first
    /// (critical path) and the others in argument order.
    ///
    /// Ids are already the post-order of a DFS from the same outputs in argument order, so
    /// when every node's tallest dependency is its first one (chains, reductions, most
    /// graphs) the two walks agree and the order is the ids; only other graphs walk again.
    fn compute_order(&mut self) {
        let (height, first_is_tallest) = self.heights();
        self.ids_in_order = first_is_tallest;
        if !first_is_tallest {
            self.order = self.walk_order(&height).into();
        }
    }

    /// Each node's height (1 + its tallest dependency's), and whether every node's tallest
    /// dependency is its first (the first of equals counts as the tallest).
    fn heights(&self) -> (Vec<u32>, bool) {
        let n = self.nodes.len();
        let mut height = vec![0u32; n];
        let mut first_is_tallest = true;
        for i in 0..n {
            let deps = self.deps_of(i);
            let best = tallest(deps, &height);
            first_is_tallest &= best == 0;
            height[i] = 1 + deps.first().map_or(0, |_| height[deps[best].index()]);
        }
        (height, first_is_tallest)
    }

    /// The order of [`compute_order`](Self::compute_order), walked.
    fn walk_order(&self, height: &[u32]) -> Vec<NodeId> {
        let n = self.nodes.len();
        let tallest = |deps: &[NodeId]| tallest(deps, height) as u32;
        let mut seen = vec![false; n];
        let mut order = Vec::with_capacity(n);
        // (node, cursor, tallest): cursor 0 = the tallest dependency, k >= 1 = dependency k - 1.
        let mut stack: Vec<(NodeId, u32, u32)> = Vec::new();
        for &root in &self.outputs {
            if seen[root.index()] {
                continue;
            }
            seen[root.index()] = true;
            stack.push((root, 0, tallest(self.deps_of(root.index()))));
            while let Some(top) = stack.last_mut() {
                let (node, cursor, tall) = *top;
                let deps = self.deps_of(node.index());
                if cursor as usize <= deps.len() {
                    top.1 += 1;
                    let pos = if cursor == 0 {
                        if deps.is_empty() {
                            continue;
                        }
                        tall
                    } else if cursor - 1 == tall {
                        continue;
                    } else {
                        cursor - 1
                    };
                    let child = deps[pos as usize];
                    if !seen[child.index()] {
                        seen[child.index()] = true;
                        let t = tallest(self.deps_of(child.index()));
                        stack.push((child, 0, t));
                    }
                    continue;
                }
                stack.pop();
                order.push(node);
            }
        }
        order
    }

    #[inline]
    fn deps_of(&self, id: usize) -> &[NodeId] {
        &self.deps[self.dep_start[id] as usize..self.dep_start[id + 1] as usize]
    }

    /// Where each argument of node `id` comes from, in order: a constant, or a position in
    /// the node's distinct dependencies. (Not for loaded nodes: they have no dependencies.)
    fn arg_slots(&self, id: usize) -> impl Iterator<Item = Slot<'_>> {
        let repeats = self.repeats.get(&(id as u32));
        let mut k = 0usize;
        self.nodes[id].inputs.iter().map(move |input| match input {
            Input::Const(v) => Slot::Const(v),
            Input::Node(_) => {
                let slot = repeats.map_or(k as u32, |r| r[k]);
                k += 1;
                Slot::Dep(slot)
            }
        })
    }

    /// Number of tasks (nodes, constants included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Number of dependency edges (distinct per node).
    #[must_use]
    pub fn edge_count(&self) -> usize {
        self.deps.len()
    }

    /// A view of node `id`.
    ///
    /// # Panics
    /// If `id >= self.len()`.
    #[must_use]
    #[inline]
    pub fn node(&self, id: NodeId) -> NodeView<'_> {
        assert!(id.index() < self.nodes.len(), "node id {id} out of range");
        NodeView { graph: self, id }
    }

    /// The key of node `id`.
    #[must_use]
    pub fn key(&self, id: NodeId) -> &Key {
        &self.nodes[id.index()].key
    }

    /// The id of the node with this key, if the graph has one.
    #[must_use]
    pub fn id_of(&self, key: &Key) -> Option<NodeId> {
        self.index()
            .get(&tok(key))
            .map(|&i| NodeId(i))
            .filter(|&i| self.nodes[i.index()].key == *key)
    }

    /// All keys, in id order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Key> {
        self.nodes.iter().map(|n| &n.key)
    }

    /// Ids of the distinct dependencies of node `id`, in argument order.
    #[must_use]
    #[inline]
    pub fn dependencies(&self, id: NodeId) -> &[NodeId] {
        self.deps_of(id.index())
    }

    /// Ids of the nodes that depend on node `id`.
    #[must_use]
    #[inline]
    pub fn dependents(&self, id: NodeId) -> &[NodeId] {
        let id = id.index();
        &self.dependents[self.dependent_start[id] as usize..self.dependent_start[id + 1] as usize]
    }

    /// Keys of the dependencies of the node with key `key`, or `None` if it is not in the graph.
    pub fn dependencies_of(&self, key: &Key) -> Option<impl Iterator<Item = &Key>> {
        let id = self.id_of(key)?;
        Some(
            self.deps_of(id.index())
                .iter()
                .map(|&d| &self.nodes[d.index()].key),
        )
    }

    /// Keys of the dependents of the node with key `key`, or `None` if it is not in the graph.
    pub fn dependents_of(&self, key: &Key) -> Option<impl Iterator<Item = &Key>> {
        let id = self.id_of(key)?;
        Some(
            self.dependents(id)
                .iter()
                .map(|&d| &self.nodes[d.index()].key),
        )
    }

    /// Ids of the outputs, in the order they were given (repeated if given twice).
    #[must_use]
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// The static execution order: every node once, dependencies before dependents.
    #[must_use]
    pub fn order(&self) -> &[NodeId] {
        self.order
            .get_or_init(|| NodeId::all(self.nodes.len()).collect())
    }

    /// The static order as an iterator (the same ids as [`order`](Graph::order), without
    /// building a table when the order is the ids, as it is for most graphs).
    pub fn in_order(&self) -> impl ExactSizeIterator<Item = NodeId> + '_ {
        let walked = (!self.ids_in_order).then(|| self.order());
        (0..self.nodes.len()).map(move |p| walked.map_or(NodeId(p as u32), |o| o[p]))
    }

    /// Position of node `id` in [`order`](Graph::order) (lower runs earlier).
    #[must_use]
    pub fn position(&self, id: NodeId) -> usize {
        if self.ids_in_order {
            return id.index();
        }
        self.position.get_or_init(|| {
            let mut position = vec![0; self.nodes.len()];
            for (p, &id) in self.order().iter().enumerate() {
                position[id.index()] = p as u32;
            }
            position
        })[id.index()] as usize
    }

    /// Every resource required by some node, each once (identity = `Arc` pointer), in order of
    /// first appearance by node id.
    #[must_use]
    pub fn resources(&self) -> Vec<RequiredResource> {
        let mut out: Vec<RequiredResource> = Vec::new();
        if !self.any_resources {
            return out;
        }
        for id in NodeId::all(self.nodes.len()) {
            for r in self.node(id).resources() {
                match out.iter_mut().find(|x| Arc::ptr_eq(&x.resource, r)) {
                    Some(x) => x.nodes.push(id),
                    None => out.push(RequiredResource {
                        resource: Arc::clone(r),
                        nodes: vec![id],
                    }),
                }
            }
        }
        out
    }

    /// Runs the body of node `id` on the values of its distinct dependencies (in the order of
    /// [`dependencies`](Graph::dependencies)). Constants return their value.
    ///
    /// Pass the dependency values by value and drop other references to a value whose last
    /// consumer this is: the task then receives it without a copy.
    ///
    /// # Errors
    /// The task's own error; an error if the node was built from arguments that could not be
    /// tokenized, if it is a node to be loaded from a cache, or if `deps` has the wrong length.
    /// Panics inside the task propagate; executors catch them.
    pub fn run_task(&self, id: NodeId, deps: Vec<Value>) -> Result<Value, BoxError> {
        let id = id.index();
        let node = &self.nodes[id];
        if self.loaded[id] {
            return Err(format!("task {} must be loaded from the cache, not run", node.key).into());
        }
        let expected = self.deps_of(id).len();
        if deps.len() != expected {
            return Err(format!(
                "task {} needs {expected} dependency values, got {}",
                node.key,
                deps.len()
            )
            .into());
        }
        match &node.op {
            Op::Literal(v, _) => Ok(Arc::clone(v)),
            Op::Task(f) => {
                // The common cases: every argument is a distinct dependency (pass `deps` as
                // it is), or the dependencies are used once each, in order, between constants.
                if node.inputs.len() == deps.len() {
                    return f.call(deps);
                }
                if !self.repeats.contains_key(&(id as u32)) {
                    let mut deps = deps.into_iter();
                    let mut args = Vec::with_capacity(node.inputs.len());
                    for input in &node.inputs {
                        args.push(match input {
                            Input::Const(c) => const_value(c),
                            Input::Node(_) => deps.next().ok_or("argument table out of sync")?,
                        });
                    }
                    return f.call(args);
                }
                let slots: Vec<Slot<'_>> = self.arg_slots(id).collect();
                let mut deps: Vec<Option<Value>> = deps.into_iter().map(Some).collect();
                // Move each dependency into its last argument slot, clone into earlier ones.
                let mut last_use = vec![usize::MAX; deps.len()];
                for (i, slot) in slots.iter().enumerate() {
                    if let Slot::Dep(s) = slot {
                        *last_use
                            .get_mut(*s as usize)
                            .ok_or("argument table out of sync")? = i;
                    }
                }
                let mut args = Vec::with_capacity(slots.len());
                for (i, slot) in slots.iter().enumerate() {
                    let v = match *slot {
                        Slot::Const(c) => const_value(c),
                        Slot::Dep(s) if last_use[s as usize] == i => deps[s as usize]
                            .take()
                            .ok_or("dependency value used twice")?,
                        Slot::Dep(s) => Arc::clone(
                            deps[s as usize]
                                .as_ref()
                                .ok_or("dependency value missing")?,
                        ),
                    };
                    args.push(v);
                }
                drop(deps);
                f.call(args)
            }
        }
    }

    /// Graphviz DOT text of the graph: one node per task labelled with its task name, edges
    /// from dependency to dependent.
    #[must_use]
    pub fn to_dot(&self, opts: &DotOptions) -> String {
        let mut s = String::with_capacity(64 + self.nodes.len() * 48);
        s.push_str("digraph brisk {\n  rankdir=BT;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];\n");
        let n = self.nodes.len().max(1);
        for (id, node) in self.nodes.iter().enumerate() {
            let mut label = escape_dot(node.name().as_str());
            if opts.show_keys {
                label.push_str("\\n");
                label.push_str(&escape_dot(&node.key.to_string()));
            }
            let fill = opts
                .fill
                .as_ref()
                .and_then(|f| f.get(id).cloned().flatten())
                .or_else(|| {
                    opts.color_by_order.then(|| {
                        let t = self.position(NodeId::from_index(id)) as f64
                            / (n.saturating_sub(1).max(1)) as f64;
                        ramp(t)
                    })
                });
            let _ = write!(s, "  n{id} [label=\"{label}\"");
            if let Some(fill) = fill {
                let _ = write!(s, ", fillcolor=\"{}\"", escape_dot(&fill));
            }
            if self.loaded[id] {
                s.push_str(", peripheries=2");
            }
            s.push_str("];\n");
        }
        for id in 0..self.nodes.len() {
            for &d in self.deps_of(id) {
                let _ = writeln!(s, "  n{} -> n{id};", d.index());
            }
        }
        s.push_str("}\n");
        s
    }
}

/// The position of the tallest of `deps` by `height` (the first of equals); 0 when empty.
fn tallest(deps: &[NodeId], height: &[u32]) -> usize {
    let mut best = 0;
    for (p, &d) in deps.iter().enumerate() {
        if height[d.index()] > height[deps[best].index()] {
            best = p;
        }
    }
    best
}

/// Whether two of `values` are equal, for values spread uniformly (token prefixes): a bitmap
/// of 8 to 16 bits per value, indexed by the values' top bits, finds the few buckets hit
/// twice, and only the values in those are sorted. Two sequential passes instead of sorting
/// all; a bucket's "seen" and "twice" bits share a cache line (one miss per value, not two),
/// and 8 bits per value keep a million values' map at 2 MiB (a core's L2 here; at 16 bits,
/// a miss to L3 per value cost more than sorting the extra candidates: 17 → 12 ms at 1 M).
fn has_duplicate(values: &[u64]) -> bool {
    if values.len() < 2 {
        return false;
    }
    let bits = (usize::BITS - values.len().leading_zeros() + 3).min(32);
    let shift = 64 - bits;
    let words = 1usize << bits.saturating_sub(6);
    // Per word of buckets: [seen, twice].
    let mut map = vec![[0u64; 2]; words];
    let at = |v: u64| ((v >> shift) as usize >> 6, 1u64 << ((v >> shift) & 63));
    for &v in values {
        let (w, bit) = at(v);
        let e = &mut map[w];
        e[1] |= e[0] & bit;
        e[0] |= bit;
    }
    let mut candidates: Vec<u64> = values
        .iter()
        .copied()
        .filter(|&v| {
            let (w, bit) = at(v);
            map[w][1] & bit != 0
        })
        .collect();
    candidates.sort_unstable();
    candidates.windows(2).any(|w| w[0] == w[1])
}

fn escape_dot(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Blue (t = 0) to red (t = 1).
fn ramp(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let r = (70.0 + 185.0 * t) as u8;
    let b = (255.0 - 185.0 * t) as u8;
    format!("#{r:02x}a0{b:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delayed, TaskSpec};

    /// Random DAGs over shared nodes: many where every first dependency is the tallest, some
    /// where it is not.
    fn random_graph(seed: u64, n: usize) -> Graph {
        let f = TaskSpec::new("f").pure();
        let mut x = seed;
        let mut next = move |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as usize
        };
        let mut nodes: Vec<Delayed<u64>> = vec![f.call(|k: u64| k, (seed,))];
        for i in 1..n {
            let parts: Delayed<Vec<u64>> = (0..next(4)).map(|_| nodes[next(i)].clone()).collect();
            let first = nodes[if next(3) == 0 { i - 1 } else { next(i) }].clone();
            nodes.push(f.call(
                |a: u64, v: Vec<u64>, k: u64| a ^ v.iter().sum::<u64>() ^ k,
                (first, parts, i as u64),
            ));
        }
        let outs: Vec<_> = (0..1 + next(3)).map(|_| nodes[next(n)].clone()).collect();
        Graph::new(outs.iter())
    }

    #[test]
    fn repeated_arguments_share_one_dependency_and_keep_their_order() {
        // A few arguments (searched among the node's own dependencies) and many (the mark
        // table): every argument maps to the dependency of its own node.
        let f = TaskSpec::new("f").pure();
        let leaves: Vec<Delayed<u64>> = (0..5u64).map(|i| f.call(|x: u64| x, (i,))).collect();
        for n in [3usize, 7, 8, 9, 40] {
            let parts: Delayed<Vec<u64>> = (0..n).map(|i| leaves[(i * 3) % 5].clone()).collect();
            let g = Graph::new([&parts]);
            let id = g.outputs()[0];
            assert_eq!(g.dependencies(id).len(), n.min(5), "{n} arguments");
            let args = g.node(id).args();
            assert_eq!(args.len(), n);
            for (i, a) in args.iter().enumerate() {
                let Arg::Node(d) = a else {
                    panic!("argument {i} of {n} is a node");
                };
                assert_eq!(g.key(*d), leaves[(i * 3) % 5].key(), "argument {i} of {n}");
            }
        }
    }

    #[test]
    fn constants_and_repeated_dependencies_reach_the_task_in_argument_order() {
        // Each argument lands in its own position: distinct dependencies between constants
        // (no table), and dependencies named twice around constants (the `repeats` table).
        let leaf = TaskSpec::new("leaf").pure();
        let (a, b, c) = (
            leaf.call(|x: u64| x, (1u64,)),
            leaf.call(|x: u64| x, (2u64,)),
            leaf.call(|x: u64| x, (3u64,)),
        );
        let digits = |v: [u64; 8]| v.iter().fold(0, |acc, d| acc * 10 + d);
        let mixed = TaskSpec::new("mixed").pure().call(
            move |p: u64, q: u64, r: u64, s: u64, t: u64, u: u64, v: u64, w: u64| {
                digits([p, q, r, s, t, u, v, w])
            },
            (&a, 9u64, &b, 8u64, &c, 7u64, 6u64, 5u64),
        );
        let repeated = TaskSpec::new("repeated").pure().call(
            move |p: u64, q: u64, r: u64, s: u64, t: u64, u: u64, v: u64, w: u64| {
                digits([p, q, r, s, t, u, v, w])
            },
            (&a, 9u64, &a, &b, 8u64, &b, &a, &c),
        );
        for (out, want, args) in [
            (&mixed, 19_283_765u64, "n9n8n765"),
            (&repeated, 19_128_213, "n9nn8nnn"),
        ] {
            let g = Graph::new([out]);
            let mut values: Vec<Option<Value>> = vec![None; g.len()];
            for id in g.in_order() {
                let deps = g
                    .dependencies(id)
                    .iter()
                    .map(|d| values[d.index()].clone().expect("dependencies run first"))
                    .collect();
                values[id.index()] = Some(g.run_task(id, deps).unwrap());
            }
            let id = g.outputs()[0];
            let v = values[id.index()].as_ref().unwrap();
            assert_eq!(*v.downcast_ref::<u64>().unwrap(), want);
            let shape: String = g
                .node(id)
                .args()
                .iter()
                .map(|arg| match arg {
                    Arg::Node(_) => 'n',
                    Arg::Const { value, .. } => {
                        char::from(b'0' + *value.downcast_ref::<u64>().unwrap() as u8)
                    }
                })
                .collect();
            assert_eq!(shape, args);
        }
    }

    #[test]
    fn duplicates_are_found_among_spread_and_clustered_values() {
        let spread = |n: u64| -> Vec<u64> {
            (0..n)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 7))
                .collect()
        };
        for n in [0u64, 1, 2, 3, 63, 64, 65, 1000, 100_000, 300_000] {
            let mut v = spread(n);
            assert!(!has_duplicate(&v), "{n} distinct");
            if n >= 2 {
                v.push(v[(n / 2) as usize]);
                assert!(has_duplicate(&v), "{n} with a repeat");
            }
        }
        // Values sharing their top bits (one bucket), distinct, then one repeated.
        let mut close: Vec<u64> = (0..5000u64).collect();
        assert!(!has_duplicate(&close));
        close.push(4999);
        assert!(has_duplicate(&close));
        assert!(has_duplicate(&[u64::MAX, 0, u64::MAX]));
    }

    #[test]
    fn ids_are_the_walked_order_when_every_first_dependency_is_the_tallest() {
        let (mut short_cut, mut walked) = (0, 0);
        for seed in 1..400u64 {
            let g = random_graph(seed, 2 + (seed as usize % 40));
            let (height, first_is_tallest) = g.heights();
            let walk = g.walk_order(&height);
            if first_is_tallest {
                short_cut += 1;
                assert_eq!(
                    walk,
                    NodeId::all(g.len()).collect::<Vec<_>>(),
                    "seed {seed}"
                );
            } else {
                walked += 1;
            }
            assert_eq!(g.in_order().collect::<Vec<_>>(), walk, "seed {seed}");
            assert_eq!(walk, g.order(), "seed {seed}");
            for (p, &id) in walk.iter().enumerate() {
                assert_eq!(g.position(id), p, "seed {seed}");
            }
        }
        assert!(short_cut > 20 && walked > 20, "{short_cut} / {walked}");
    }
}

//! Type-erased graph nodes: what a [`Delayed`](crate::Delayed) points to.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::key::{Key, Name};
use crate::resource::Resource;
use crate::token::TokenizeError;

/// A type-erased task result, shared between the executor and the tasks that consume it.
pub type Value = Arc<dyn Any + Send + Sync>;

/// The error type tasks return: any `std::error::Error` that can cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A type-erased task body: takes its arguments in order, returns its result. Boxed, not
/// shared: a body that captures nothing (most do) then costs no allocation. Its vtable also
/// names the result type, so a node spends no word on it.
pub(crate) trait Body: Send + Sync {
    /// Runs the task on its arguments.
    fn call(&self, args: Vec<Value>) -> Result<Value, BoxError>;
    /// The Rust type of the result, for error messages.
    fn output_type(&self) -> &'static str;
    /// Why the node could not be built (its arguments could not be tokenized), if so.
    fn build_error(&self) -> Option<&TokenizeError> {
        None
    }
    /// The node whose body this one runs, for a copy of a node with other metadata.
    fn owner(&self) -> Option<&Arc<NodeInner>> {
        None
    }
}

/// A boxed [`Body`].
pub(crate) type ErasedFn = Box<dyn Body>;

/// A function as the body of a task whose result is an `R`.
struct Typed<R, F>(F, std::marker::PhantomData<fn() -> R>);

impl<R, F> Body for Typed<R, F>
where
    F: Fn(Vec<Value>) -> Result<Value, BoxError> + Send + Sync,
{
    fn call(&self, args: Vec<Value>) -> Result<Value, BoxError> {
        (self.0)(args)
    }
    fn output_type(&self) -> &'static str {
        std::any::type_name::<R>()
    }
}

/// The body of a task with result type `R` that runs `f` (no allocation when `f` captures
/// nothing).
pub(crate) fn body<R: 'static>(
    f: impl Fn(Vec<Value>) -> Result<Value, BoxError> + Send + Sync + 'static,
) -> ErasedFn {
    Box::new(Typed::<R, _>(f, std::marker::PhantomData))
}

/// The body of a node whose arguments could not be tokenized: running it reports why.
struct Invalid {
    error: TokenizeError,
    output_type: TypeName,
}

impl Body for Invalid {
    fn call(&self, _: Vec<Value>) -> Result<Value, BoxError> {
        Err(Box::new(self.error.clone()))
    }
    fn output_type(&self) -> &'static str {
        (self.output_type)()
    }
    fn build_error(&self) -> Option<&TokenizeError> {
        Some(&self.error)
    }
}

/// The body of a node that failed to build with `error`.
pub(crate) fn invalid(error: TokenizeError, output_type: TypeName) -> ErasedFn {
    Box::new(Invalid { error, output_type })
}

/// The body of another node, which has the same key and inputs (a copy of a node with other
/// metadata, see [`NodeInner::with_meta`]). Always points at a node with a body.
struct SameAs(Arc<NodeInner>);

impl Body for SameAs {
    fn call(&self, args: Vec<Value>) -> Result<Value, BoxError> {
        match &self.0.op {
            Op::Task(b) => b.call(args),
            Op::Literal(..) => Err("a copied node points at a constant".into()),
        }
    }
    fn output_type(&self) -> &'static str {
        self.0.output_type()
    }
    fn build_error(&self) -> Option<&TokenizeError> {
        self.0.body().and_then(Body::build_error)
    }
    fn owner(&self) -> Option<&Arc<NodeInner>> {
        Some(&self.0)
    }
}

/// How a constant's value is seen through serde, kept beside the value so it can travel to
/// another process (a function of the value's type: no allocation per constant).
pub(crate) type Shipped = fn(&Value) -> Option<&dyn erased_serde::Serialize>;

/// The [`Shipped`] view of values of type `T`.
pub(crate) fn shipped<T: serde::Serialize + Send + Sync + 'static>(
    v: &Value,
) -> Option<&dyn erased_serde::Serialize> {
    v.downcast_ref::<T>()
        .map(|t| t as &dyn erased_serde::Serialize)
}

/// A type's name, as a function (one word instead of two).
pub(crate) type TypeName = fn() -> &'static str;

/// What a constant node knows about its value's type: one static per type, so a constant
/// node spends one word on it.
pub(crate) struct LitType {
    /// The value's serde view, when it has one.
    pub(crate) shipped: Option<Shipped>,
    pub(crate) name: TypeName,
}

/// The [`LitType`]s of values of type `T`.
pub(crate) struct LitTypeOf<T>(std::marker::PhantomData<T>);

impl<T: Send + Sync + 'static> LitTypeOf<T> {
    /// A value that has no serde view (a handle, a computed result held in memory).
    pub(crate) const OPAQUE: LitType = LitType {
        shipped: None,
        name: std::any::type_name::<T>,
    };
}

impl<T: serde::Serialize + Send + Sync + 'static> LitTypeOf<T> {
    /// A serde value.
    pub(crate) const SHIPPED: LitType = LitType {
        shipped: Some(shipped::<T>),
        name: std::any::type_name::<T>,
    };
}

/// What a node does when it runs.
pub(crate) enum Op {
    /// A constant: the result is this value.
    Literal(Value, &'static LitType),
    /// A task body (also the body of a node that failed to build, or of a copy of a node).
    Task(ErasedFn),
}

/// A node's arguments, the first one inline: most tasks take one, and then building the node
/// is one allocation and walking a graph one pointer per node instead of two.
pub(crate) type Inputs = smallvec::SmallVec<[Input; 1]>;

/// One argument of a task: a constant captured at build time or another node's result (two
/// words: the constant's serde view comes with its vtable).
#[derive(Clone)]
pub(crate) enum Input {
    Const(Arc<dyn Constant>),
    Node(Arc<NodeInner>),
}

/// A constant argument of a task, as a graph keeps it: a serde value shared between threads
/// (every value passed to a task call is one; see [`Arg::Const`](crate::Arg::Const)).
pub trait Constant: Any + erased_serde::Serialize + Send + Sync {}

impl<T: serde::Serialize + Any + Send + Sync> Constant for T {}

impl dyn Constant {
    /// The value, if it is a `T`.
    #[must_use]
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        (self as &dyn Any).downcast_ref()
    }

    /// The value's serde view (to send it to another process).
    #[must_use]
    pub fn serializable(&self) -> &dyn erased_serde::Serialize {
        self
    }
}

/// A constant as a task argument.
pub(crate) fn const_value(c: &Arc<dyn Constant>) -> Value {
    Arc::clone(c) as Value
}

/// Per-node scheduling annotations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Annotations {
    /// How many times a failed run of this task is retried before the failure counts.
    pub retries: u32,
    /// Higher runs earlier among ready tasks; ties follow the graph's static order.
    pub priority: i32,
}

impl Annotations {
    /// The combination of two annotation sets for the same key: the larger of each.
    #[must_use]
    pub fn merge(self, other: Self) -> Self {
        Self {
            retries: self.retries.max(other.retries),
            priority: self.priority.max(other.priority),
        }
    }
}

/// How a checkpointed task's result converts to and from serde's data model.
///
/// Attached by [`Delayed::checkpointed`](crate::Delayed::checkpointed); a [`Cache`](crate::Cache)
/// uses it to serialize results with any serde format without knowing their type.
#[derive(Clone, Copy)]
pub struct SaveSpec {
    type_name: &'static str,
    type_id: fn() -> std::any::TypeId,
    ser: fn(&Value) -> Option<&dyn erased_serde::Serialize>,
    de: fn(&mut dyn erased_serde::Deserializer<'_>) -> Result<Value, erased_serde::Error>,
}

impl SaveSpec {
    /// The save spec of values of type `T`: what an encoder needs to write and read them
    /// (`brisk_checkpoint::Encoder::encode`/`decode` outside a compute).
    #[must_use]
    pub fn of<T>() -> Self
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        Self {
            type_name: std::any::type_name::<T>(),
            type_id: std::any::TypeId::of::<T>,
            ser: |v| {
                v.downcast_ref::<T>()
                    .map(|t| t as &dyn erased_serde::Serialize)
            },
            de: |d| erased_serde::deserialize::<T>(d).map(|t| Arc::new(t) as Value),
        }
    }

    /// The Rust type of the task's result.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The `TypeId` of the task's result (lets a cache pick a type-specific format, such as
    /// `.npy` for `ndarray` arrays).
    #[must_use]
    pub fn type_id(&self) -> std::any::TypeId {
        (self.type_id)()
    }

    /// The result as a serde value, or `None` if `value` is not of the task's result type.
    #[must_use]
    pub fn serializable<'v>(&self, value: &'v Value) -> Option<&'v dyn erased_serde::Serialize> {
        (self.ser)(value)
    }

    /// Reads a result of the task's type from a serde deserializer.
    ///
    /// # Errors
    /// The deserializer's error when the data does not describe a value of the result type.
    pub fn deserialize(
        &self,
        de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<Value, erased_serde::Error> {
        (self.de)(de)
    }
}

impl fmt::Debug for SaveSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaveSpec")
            .field("type_name", &self.type_name)
            .finish()
    }
}

/// Metadata of a node that does not change its result (so not part of its key).
#[derive(Clone, Default)]
pub(crate) struct Meta {
    /// The task's name when it is not its key's prefix (a function path for `#[task]`, a
    /// name with a `/`): shown in errors and profiles. Kept here, shared by the nodes of one
    /// spec, so a node spends no words on it.
    pub(crate) name: Option<Name>,
    pub(crate) annotations: Annotations,
    pub(crate) save: Option<SaveSpec>,
    /// Options a cache reads for this checkpoint (e.g. brisk-checkpoint's encoder), opaque here.
    pub(crate) save_options: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// The storage key a custom hasher gave (otherwise the node's key is the storage key).
    pub(crate) storage_key: Option<Arc<str>>,
    pub(crate) resources: Vec<Arc<dyn Resource>>,
}

impl Meta {
    /// `meta` for a node named `name` under `key`: as it is when the name is the key's
    /// prefix (or `meta` already names it), else a copy that carries the name.
    pub(crate) fn named(meta: Arc<Self>, name: &Name, key: &Key) -> Arc<Self> {
        let current = meta.name.as_ref().unwrap_or(key.name_ref());
        if current == name {
            meta
        } else {
            Arc::new(Self {
                name: Some(name.clone()),
                ..Self::clone(&meta)
            })
        }
    }

    /// The metadata of a plain node, shared by every node that has no other (one allocation
    /// per process instead of one per node).
    pub(crate) fn shared_default() -> Arc<Self> {
        static DEFAULT: std::sync::LazyLock<Arc<Meta>> =
            std::sync::LazyLock::new(|| Arc::new(Meta::default()));
        Arc::clone(&DEFAULT)
    }

    /// Whether this metadata adds nothing a graph must merge (the name does not count: nodes
    /// that share a key share their name).
    pub(crate) fn is_default(&self) -> bool {
        self.annotations == Annotations::default()
            && self.save.is_none()
            && self.save_options.is_none()
            && self.storage_key.is_none()
            && self.resources.is_empty()
    }

    /// Union of two metadata sets of nodes that share one key.
    pub(crate) fn merge(&self, other: &Self) -> Self {
        let mut resources = self.resources.clone();
        for r in &other.resources {
            if !resources.iter().any(|x| Arc::ptr_eq(x, r)) {
                resources.push(Arc::clone(r));
            }
        }
        Self {
            name: self.name.clone().or_else(|| other.name.clone()),
            annotations: self.annotations.merge(other.annotations),
            save: self.save.or(other.save),
            save_options: self
                .save_options
                .clone()
                .or_else(|| other.save_options.clone()),
            storage_key: self
                .storage_key
                .clone()
                .or_else(|| other.storage_key.clone()),
            resources,
        }
    }
}

/// A node of the lazy graph. Immutable once built, shared by `Arc`. Laid out in the order
/// building a graph reads it (after the `Arc` counts: key, stamp, reach, inputs), so a walk
/// touches the fewest cache lines.
#[repr(C)]
pub(crate) struct NodeInner {
    pub(crate) key: Key,
    /// Where the last graph built from this node put it, so that building a graph finds a
    /// node it has seen without a hash lookup (see `Graph::pass`).
    pub(crate) stamp: Stamp,
    /// How many nodes a graph of this node can hold, to size its tables up front.
    pub(crate) reach: Reach,
    pub(crate) inputs: Inputs,
    /// Shared between the nodes of one `TaskSpec` (metadata is per spec, rarely per node).
    pub(crate) meta: Arc<Meta>,
    pub(crate) op: Op,
}

/// An upper bound on the number of nodes reachable from a node (itself included), and
/// whether it is *tight*: counted over inputs that no other node had consumed before, so a
/// graph of this one node holds exactly that many nodes (fewer if a cache culls some). A
/// bound over shared inputs can overcount exponentially (every diamond doubles it), so a
/// graph trusts only a tight one to size its tables (see `Graph::pass`).
#[derive(Debug)]
pub(crate) struct Reach(std::sync::atomic::AtomicU32);

/// Set on a node once some node takes it as an input.
const CONSUMED: u32 = 1 << 31;
/// Set when the count may be too large.
const LOOSE: u32 = 1 << 30;
const COUNT: u32 = LOOSE - 1;

/// The reach of a node being built, counted input by input (see [`Reach`]).
#[derive(Clone, Copy)]
pub(crate) struct ReachCount {
    count: u32,
    loose: bool,
}

impl Default for ReachCount {
    fn default() -> Self {
        Self {
            count: 1,
            loose: false,
        }
    }
}

impl ReachCount {
    /// The reach of a node with these inputs; marks the input nodes as consumed.
    fn of(inputs: &[Input]) -> Self {
        let mut reach = Self::default();
        for input in inputs {
            if let Input::Node(n) = input {
                reach.add(n);
            }
        }
        reach
    }

    /// Counts `input` (a node's argument) and marks it consumed. A wide node counts each
    /// input while it reads the input's key, so its cache lines are touched once.
    pub(crate) fn add(&mut self, input: &NodeInner) {
        let r = input
            .reach
            .0
            .fetch_or(CONSUMED, std::sync::atomic::Ordering::Relaxed);
        self.loose |= r & (CONSUMED | LOOSE) != 0;
        self.count = self.count.saturating_add(r & COUNT).min(COUNT);
    }
}

impl Reach {
    fn counted(r: ReachCount) -> Self {
        Self::new(r.count, r.loose)
    }

    fn new(count: u32, loose: bool) -> Self {
        Self(std::sync::atomic::AtomicU32::new(
            count | if loose { LOOSE } else { 0 },
        ))
    }

    /// The bound, and whether it is tight.
    pub(crate) fn get(&self) -> (usize, bool) {
        let r = self.0.load(std::sync::atomic::Ordering::Relaxed);
        ((r & COUNT) as usize, r & LOOSE == 0 && r & COUNT < COUNT)
    }
}

/// A hint, never trusted alone: the id this node got in the graph most recently built from
/// it. A graph uses it only after checking that its node at that id is this very node, so a
/// stale stamp from another graph (or a concurrent build) only sends the build to its pass
/// that merges by key (decision record 0006).
#[derive(Debug)]
pub(crate) struct Stamp(std::sync::atomic::AtomicU32);

impl Default for Stamp {
    fn default() -> Self {
        Self(std::sync::atomic::AtomicU32::new(u32::MAX))
    }
}

impl Stamp {
    pub(crate) fn get(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub(crate) fn set(&self, id: u32) {
        self.0.store(id, std::sync::atomic::Ordering::Relaxed);
    }
}

impl NodeInner {
    /// A node (its reach counted from its inputs). `meta` names the task when its name is
    /// not the key's prefix (see [`Meta::named`]).
    pub(crate) fn new(key: Key, op: Op, inputs: Inputs, meta: Arc<Meta>) -> Arc<Self> {
        let reach = ReachCount::of(&inputs);
        Self::counted(key, op, inputs, meta, reach)
    }

    /// Whether an argument is a lazy value (another node), read from the reach without
    /// touching the inputs: a reach counts the node itself and every node it reaches, so it
    /// is one exactly when no argument is a node.
    #[inline]
    pub(crate) fn has_node_inputs(&self) -> bool {
        self.reach.get().0 > 1
    }

    /// [`new`](Self::new) for a node whose inputs were counted as they were gathered.
    pub(crate) fn counted(
        key: Key,
        op: Op,
        inputs: Inputs,
        meta: Arc<Meta>,
        reach: ReachCount,
    ) -> Arc<Self> {
        Arc::new(Self {
            reach: Reach::counted(reach),
            key,
            op,
            inputs,
            meta,
            stamp: Stamp::default(),
        })
    }

    /// A copy of this node with other metadata (same key, same body, same inputs).
    pub(crate) fn with_meta(self: &Arc<Self>, meta: Meta) -> Self {
        Self {
            key: self.key.clone(),
            op: match &self.op {
                Op::Literal(v, ty) => Op::Literal(Arc::clone(v), ty),
                Op::Task(b) => Op::Task(Box::new(SameAs(Arc::clone(b.owner().unwrap_or(self))))),
            },
            inputs: self.inputs.clone(),
            meta: Arc::new(meta),
            stamp: Stamp::default(),
            // Its inputs now have two consumers.
            reach: Reach::new(self.reach.get().0 as u32, true),
        }
    }

    /// The task's name (a function path for `#[task]`), shown in errors and profiles.
    pub(crate) fn name(&self) -> &Name {
        self.meta.name.as_ref().unwrap_or(self.key.name_ref())
    }

    /// The Rust type of the result, for error messages.
    pub(crate) fn output_type(&self) -> &'static str {
        match &self.op {
            Op::Literal(_, ty) => (ty.name)(),
            Op::Task(b) => b.output_type(),
        }
    }

    /// The task body this node runs, if it is not a constant.
    #[inline]
    pub(crate) fn body(&self) -> Option<&dyn Body> {
        match &self.op {
            Op::Task(b) => Some(&**b),
            Op::Literal(..) => None,
        }
    }

    /// Why the node could not be built, if it could not.
    #[inline]
    pub(crate) fn build_error(&self) -> Option<&TokenizeError> {
        self.body().and_then(Body::build_error)
    }
}

impl Drop for NodeInner {
    /// Drops long chains iteratively: the default recursive drop of a million-node chain
    /// would overflow the stack.
    fn drop(&mut self) {
        let mut stack: Vec<Arc<NodeInner>> = Vec::new();
        let take = |inputs: &mut Inputs, stack: &mut Vec<Arc<NodeInner>>| {
            for input in std::mem::take(inputs) {
                if let Input::Node(n) = input {
                    stack.push(n);
                }
            }
        };
        take(&mut self.inputs, &mut stack);
        while let Some(node) = stack.pop() {
            if let Some(mut inner) = Arc::into_inner(node) {
                take(&mut inner.inputs, &mut stack);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_stay_small() {
        // Memory per task is a promise (ARCHITECTURE.md): a node plus its `Arc` counts fits
        // the 128-byte class of glibc (with its 8-byte header) and jemalloc's 112-byte class,
        // with its first argument inline; an argument is two words.
        assert!(size_of::<Op>() <= 24, "{}", size_of::<Op>());
        assert!(
            size_of::<NodeInner>() + 16 <= 112,
            "{}",
            size_of::<NodeInner>()
        );
        assert!(size_of::<Input>() <= 16, "{}", size_of::<Input>());
        // The first argument lives in the node, names are two words.
        assert!(size_of::<Inputs>() <= 24, "{}", size_of::<Inputs>());
        assert!(size_of::<Name>() <= 16, "{}", size_of::<Name>());
    }
}

#[cfg(test)]
mod reach_tests {
    use crate::{Delayed, Graph, TaskSpec, lit};

    fn reach<T>(d: &Delayed<T>) -> (usize, bool) {
        d.node.reach.get()
    }

    #[test]
    fn a_tree_counts_its_graph_exactly() {
        // Graph tables are sized by this count: it must cover every node of the graph.
        let add = TaskSpec::new("add").pure();
        let leaves: Vec<Delayed<u64>> = (0..100u64).map(|i| add.call(|x: u64| x, (i,))).collect();
        let mut level = leaves;
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| match p {
                    [a, b] => add.call(|x: u64, y: u64| x + y, (a, b)),
                    [a] => a.clone(),
                    _ => unreachable!(),
                })
                .collect();
        }
        let root = &level[0];
        assert_eq!(reach(root), (Graph::new([root]).len(), true));
        let chain = (0..50).fold(lit(0u64), |v, _| add.call(|x: u64| x + 1, (v,)));
        assert_eq!(reach(&chain), (51, true));
    }

    #[test]
    fn shared_inputs_make_the_count_loose() {
        // Diamonds double the count per level: a graph must not size its tables by it.
        let f = TaskSpec::new("f").pure();
        let mut v = lit(1u64);
        for _ in 0..40 {
            let a = f.call(|x: u64, k: u64| x + k, (&v, 1u64));
            let b = f.call(|x: u64, k: u64| x * k, (&v, 2u64));
            v = f.call(|x: u64, y: u64| x ^ y, (a, b));
        }
        let (count, tight) = reach(&v);
        assert!(!tight);
        assert!(count >= Graph::new([&v]).len());
        let copy = f.call(|x: u64| x, (1u64,)).with_priority(3);
        assert!(
            !reach(&copy).1,
            "a copy with other metadata shares its inputs"
        );
    }
}

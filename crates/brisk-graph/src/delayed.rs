//! Typed lazy values and the task builder.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::key::{Key, Name};
use crate::node::{
    Annotations, BoxError, ErasedFn, Input, Inputs, LitTypeOf, Meta, NodeInner, Op, ReachCount,
    SaveSpec, Value, body, invalid,
};
use crate::resource::Resource;
use crate::token::{Token, TokenSink, Tokenize, TokenizeError, Write};

/// A lazy value of type `T`: a handle to a node of a task graph and, through it, to everything
/// the node depends on.
///
/// Cloning is cheap (an `Arc`). Nothing runs until the value is computed by an
/// [`Executor`](crate::Executor). Build one with [`lit`], [`TaskSpec::call`], [`delayed`],
/// [`pure`], by collecting `Delayed` values, or with the `#[task]` attribute of `brisk-macros`.
pub struct Delayed<T> {
    pub(crate) node: Arc<NodeInner>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Delayed<T> {
    fn clone(&self) -> Self {
        Self::from_node(Arc::clone(&self.node))
    }
}

impl<T> fmt::Debug for Delayed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Delayed({})", self.node.key)
    }
}

impl<T> Delayed<T> {
    pub(crate) fn from_node(node: Arc<NodeInner>) -> Self {
        Self {
            node,
            _type: PhantomData,
        }
    }

    /// The node's key.
    #[must_use]
    pub fn key(&self) -> &Key {
        &self.node.key
    }

    /// The task's name (for `#[task]` functions, the function's path).
    #[must_use]
    pub fn name(&self) -> &str {
        self.node.name().as_str()
    }

    /// The node's scheduling annotations.
    #[must_use]
    pub fn annotations(&self) -> Annotations {
        self.node.meta.annotations
    }

    /// Whether this value is marked as checkpointed.
    #[must_use]
    pub fn is_checkpointed(&self) -> bool {
        self.node.meta.save.is_some()
    }

    /// The key a checkpoint of this value is stored under: the custom key given by the task's
    /// [hasher](crate::TaskSpec::hasher), else the node's key.
    #[must_use]
    pub fn storage_key(&self) -> String {
        match &self.node.meta.storage_key {
            Some(k) => k.to_string(),
            None => self.node.key.to_string(),
        }
    }

    /// This value without its static type, e.g. to compute several values of different types
    /// together.
    #[must_use]
    pub fn erase(&self) -> AnyDelayed {
        AnyDelayed {
            node: Arc::clone(&self.node),
        }
    }

    fn with_meta(&self, f: impl FnOnce(&mut Meta)) -> Self {
        let mut meta = Meta::clone(&self.node.meta);
        f(&mut meta);
        Self::from_node(Arc::new(self.node.with_meta(meta)))
    }

    /// The same value (same key) whose task is retried up to `n` times after a failure.
    #[must_use]
    pub fn with_retries(&self, n: u32) -> Self {
        self.with_meta(|m| m.annotations.retries = n)
    }

    /// The same value (same key) with a scheduling priority (higher runs earlier).
    #[must_use]
    pub fn with_priority(&self, p: i32) -> Self {
        self.with_meta(|m| m.annotations.priority = p)
    }

    /// The same value (same key) whose task needs `resource` open while it runs. Requirements
    /// add up: a value can need several resources.
    #[must_use]
    pub fn requiring(&self, resource: Arc<dyn Resource>) -> Self {
        self.with_meta(|m| {
            if !m.resources.iter().any(|r| Arc::ptr_eq(r, &resource)) {
                m.resources.push(resource);
            }
        })
    }
}

impl<T> Delayed<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    /// The same value (same key) marked as checkpointed: a [`Cache`](crate::Cache) attached to
    /// the compute may load it instead of running it (culling everything upstream) and saves
    /// it after it runs. Values not marked are never loaded or saved.
    #[must_use]
    pub fn checkpointed(&self) -> Self {
        self.with_meta(|m| m.save = Some(SaveSpec::of::<T>()))
    }

    /// [`checkpointed`](Self::checkpointed) with options for the cache (for example
    /// brisk-checkpoint's encoder for this task), which the cache finds in
    /// [`Checkpoint::options`](crate::Checkpoint::options).
    #[must_use]
    pub fn checkpointed_with(&self, options: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self.with_meta(|m| {
            m.save = Some(SaveSpec::of::<T>());
            m.save_options = Some(options);
        })
    }
}

/// A lazy value whose result type is not known statically.
#[derive(Clone)]
pub struct AnyDelayed {
    pub(crate) node: Arc<NodeInner>,
}

impl AnyDelayed {
    /// The node's key.
    #[must_use]
    pub fn key(&self) -> &Key {
        &self.node.key
    }

    /// The task's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.node.name().as_str()
    }

    /// The resources this value's task needs open while it runs.
    #[must_use]
    pub fn resources(&self) -> &[Arc<dyn Resource>] {
        &self.node.meta.resources
    }

    /// The same value (same key) whose task needs `resource` open while it runs (see
    /// [`Delayed::requiring`]).
    #[must_use]
    pub fn requiring(&self, resource: Arc<dyn Resource>) -> Self {
        let mut meta = Meta::clone(&self.node.meta);
        if !meta.resources.iter().any(|r| Arc::ptr_eq(r, &resource)) {
            meta.resources.push(resource);
        }
        Self {
            node: Arc::new(self.node.with_meta(meta)),
        }
    }
}

impl fmt::Debug for AnyDelayed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyDelayed({})", self.node.key)
    }
}

impl<T> From<Delayed<T>> for AnyDelayed {
    fn from(d: Delayed<T>) -> Self {
        Self { node: d.node }
    }
}
impl<T> From<&Delayed<T>> for AnyDelayed {
    fn from(d: &Delayed<T>) -> Self {
        d.erase()
    }
}

/// A constant lazy value. Its key is a content address of the value (`lit/…`).
///
/// ```
/// use brisk_graph::lit;
/// assert_eq!(lit(21).key(), lit(21).key());
/// assert_ne!(lit(21).key(), lit(21u32).key()); // signed and unsigned integers differ
/// ```
pub fn lit<T: Tokenize + Send + Sync>(value: T) -> Delayed<T> {
    let mut sink = TokenSink::new(b"brisk.lit");
    let (op, token) = match sink.value(&value) {
        Ok(()) => (
            Op::Literal(Arc::new(value), &LitTypeOf::<T>::SHIPPED),
            sink.finish(),
        ),
        Err(e) => (
            Op::Task(invalid(e, std::any::type_name::<T>)),
            unique_token(),
        ),
    };
    Delayed::from_node(NodeInner::new(
        Key::new("lit", token),
        op,
        Inputs::new(),
        Meta::shared_default(),
    ))
}

impl<T: Send + Sync + 'static> Delayed<T> {
    /// This value's computed result `value`, held: a literal node under the same key and name
    /// (only [`persist_all`](crate::persist_all) makes these, from a compute of `self`).
    pub(crate) fn held(&self, value: crate::node::Value) -> Self {
        Delayed::from_node(NodeInner::new(
            self.key().clone(),
            Op::Literal(value, &LitTypeOf::<T>::OPAQUE),
            Inputs::new(),
            Meta::named(Meta::shared_default(), self.node.name(), self.key()),
        ))
    }
}

/// A constant lazy value for a type that cannot be tokenized (a handle, a closure): it gets a
/// unique key, so every task that uses it is impure.
pub fn lit_opaque<T: Send + Sync + 'static>(value: T) -> Delayed<T> {
    Delayed::from_node(NodeInner::new(
        Key::new("opaque", unique_token()),
        Op::Literal(Arc::new(value), &LitTypeOf::<T>::OPAQUE),
        Inputs::new(),
        Meta::shared_default(),
    ))
}

/// A token no other call in any process will produce (with overwhelming probability).
pub(crate) fn unique_token() -> Token {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    let seed = SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // OS randomness through std's randomly seeded SipHash keys; only uniqueness matters here.
        let s = std::collections::hash_map::RandomState::new();
        let mut a = s.build_hasher();
        a.write_u64(u64::from(std::process::id()));
        let mut b = s.build_hasher();
        b.write_u64(!u64::from(std::process::id()));
        [a.finish(), b.finish()]
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&(seed[0] ^ splitmix64(n)).to_le_bytes());
    out[8..].copy_from_slice(&seed[1].wrapping_add(n).to_le_bytes());
    Token::from_bytes(out)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One argument of a task whose parameter has type `T`: a plain value (tokenized into the key)
/// or a [`Delayed<T>`] (whose key enters the key: keys chain like a Merkle tree).
pub trait IntoArg<T> {
    #[doc(hidden)]
    fn into_input(self, sink: Option<&mut TokenSink>) -> Result<ArgInput, TokenizeError>;
}

/// One argument as the graph stores it (opaque).
#[doc(hidden)]
#[allow(
    unreachable_pub,
    reason = "appears in hidden methods of IntoArg; not nameable outside"
)]
pub struct ArgInput(pub(crate) Input);

/// The arguments of one call as the graph stores them (opaque).
#[doc(hidden)]
#[allow(
    unreachable_pub,
    reason = "appears in hidden methods of IntoArgs; not nameable outside"
)]
pub struct ArgInputs(pub(crate) Inputs);

impl<T: Tokenize + Send + Sync> IntoArg<T> for T {
    fn into_input(self, sink: Option<&mut TokenSink>) -> Result<ArgInput, TokenizeError> {
        if let Some(sink) = sink {
            sink.u8(b'v');
            sink.value(&self)?;
        }
        Ok(ArgInput(Input::Const(Arc::new(self))))
    }
}

impl<T> IntoArg<T> for Delayed<T> {
    fn into_input(self, sink: Option<&mut TokenSink>) -> Result<ArgInput, TokenizeError> {
        if let Some(sink) = sink {
            key_arg(sink, &self.node.key);
        }
        Ok(ArgInput(Input::Node(self.node)))
    }
}

impl<T> IntoArg<T> for &Delayed<T> {
    fn into_input(self, sink: Option<&mut TokenSink>) -> Result<ArgInput, TokenizeError> {
        self.clone().into_input(sink)
    }
}

fn key_arg(sink: &mut TokenSink, key: &Key) {
    sink.u8(b'k');
    sink.put_str_bytes(key.name().as_bytes());
    sink.token(&key.token());
}

/// The arguments of a task with parameter types `P` (a tuple): a tuple of [`IntoArg`]s.
pub trait IntoArgs<P> {
    #[doc(hidden)]
    fn into_inputs(
        self,
        sink: Option<&mut TokenSink>,
        excluded: u64,
    ) -> Result<ArgInputs, TokenizeError>;
}

/// A function usable as a task body with parameter types `P` (a tuple).
///
/// Implemented for every `Fn(A1, …, An) -> R + Send + Sync + 'static` with `n <= 8`, where each
/// parameter type is `Clone + Send + Sync + 'static`. Arguments are moved into the function
/// when this task is their last consumer, and cloned otherwise.
pub trait TaskFn<P>: Send + Sync + 'static {
    /// The function's return type.
    type Output;
    #[doc(hidden)]
    fn call_erased(&self, args: Vec<Value>) -> Result<Self::Output, BoxError>;
}

/// Takes an argument of type `T` out of a shared value (moved if unshared, cloned otherwise).
pub(crate) fn take_arg<T: Clone + Send + Sync + 'static>(
    v: Value,
    position: usize,
) -> Result<T, BoxError> {
    match v.downcast::<T>() {
        Ok(a) => Ok(Arc::unwrap_or_clone(a)),
        Err(_) => Err(format!(
            "argument {position} is not a {} (graph built from mismatched nodes)",
            std::any::type_name::<T>()
        )
        .into()),
    }
}

macro_rules! arity {
    ($n:literal; $($a:ident $x:ident $i:tt),*) => {
        impl<$($a, $x: IntoArg<$a>),*> IntoArgs<($($a,)*)> for ($($x,)*) {
            #[allow(unused_variables, unused_mut, reason = "the zero-argument case")]
            fn into_inputs(
                self,
                mut sink: Option<&mut TokenSink>,
                excluded: u64,
            ) -> Result<ArgInputs, TokenizeError> {
                if let Some(s) = sink.as_deref_mut() {
                    s.u64($n);
                }
                Ok(ArgInputs(smallvec::smallvec![$({
                    // An excluded argument leaves only a marker in the key.
                    let sink = match sink.as_deref_mut() {
                        Some(s) if excluded & (1 << $i) != 0 => {
                            s.u8(b'x');
                            None
                        }
                        other => other,
                    };
                    self.$i.into_input(sink)?.0
                }),*]))
            }
        }

        impl<Func, Ret, $($a),*> TaskFn<($($a,)*)> for Func
        where
            Func: Fn($($a),*) -> Ret + Send + Sync + 'static,
            $($a: Clone + Send + Sync + 'static,)*
        {
            type Output = Ret;
            #[allow(unused_variables, unused_mut, non_snake_case, reason = "macro-generated bindings; the zero-argument case")]
            fn call_erased(&self, args: Vec<Value>) -> Result<Ret, BoxError> {
                if args.len() != $n {
                    return Err(format!("expected {} arguments, got {}", $n, args.len()).into());
                }
                let mut it = args.into_iter();
                $(
                    let $x: $a = take_arg(it.next().ok_or("missing argument")?, $i)?;
                )*
                Ok((self)($($x),*))
            }
        }
    };
}

arity!(0;);
arity!(1; A0 X0 0);
arity!(2; A0 X0 0, A1 X1 1);
arity!(3; A0 X0 0, A1 X1 1, A2 X2 2);
arity!(4; A0 X0 0, A1 X1 1, A2 X2 2, A3 X3 3);
arity!(5; A0 X0 0, A1 X1 1, A2 X2 2, A3 X3 3, A4 X4 4);
arity!(6; A0 X0 0, A1 X1 1, A2 X2 2, A3 X3 3, A4 X4 4, A5 X5 5);
arity!(7; A0 X0 0, A1 X1 1, A2 X2 2, A3 X3 3, A4 X4 4, A5 X5 5, A6 X6 6);
arity!(8; A0 X0 0, A1 X1 1, A2 X2 2, A3 X3 3, A4 X4 4, A5 X5 5, A6 X6 6, A7 X7 7);

/// How a task is identified and scheduled; [`call`](TaskSpec::call) turns it and a function
/// into a [`Delayed`] value.
///
/// A **pure** task's key is a content address over its identity (name, key prefix, version,
/// source hash) and its arguments (values by token, lazy values by key), so equal calls share
/// one key and run once per compute. An **impure** task (the default, as with `dask.delayed`)
/// gets a fresh key on every call.
///
/// ```
/// use brisk_graph::{TaskSpec, lit};
///
/// let add = TaskSpec::new("add").pure();
/// let a = add.call(|x: i64, y: i64| x + y, (lit(1), 2));
/// let b = add.call(|x: i64, y: i64| x + y, (lit(1), 2));
/// assert_eq!(a.key(), b.key()); // same inputs, same key
/// assert!(a.key().to_string().starts_with("add/"));
///
/// let v2 = TaskSpec::new("add").pure().version("2");
/// assert_ne!(v2.call(|x: i64, y: i64| x + y, (lit(1), 2)).key(), a.key());
/// ```
#[derive(Clone)]
#[must_use]
pub struct TaskSpec {
    name: Name,
    key_prefix: Option<Name>,
    arg_names: Option<Arc<[&'static str]>>,
    excluded: u64,
    excluded_names: Vec<Cow<'static, str>>,
    hasher: Option<Hasher>,
    version: Option<Cow<'static, str>>,
    source_hash: Option<[u8; 16]>,
    pure: bool,
    /// The function may capture state: the arguments determine it (see
    /// [`TaskSpec::captures_covered_by_args`]).
    captures_covered: bool,
    meta: Arc<Meta>,
    /// Made on the first call; a builder that changes it starts afresh.
    identity: std::sync::OnceLock<Identity>,
}

/// What every key of a spec starts with: its key prefix (key-safe) and the canonical bytes of
/// its identity (name, prefix, version, source hash), written once instead of per call.
#[derive(Clone)]
struct Identity {
    prefix: Name,
    bytes: Box<[u8]>,
}

impl fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSpec")
            .field("name", &self.name)
            .field("key_prefix", &self.key_prefix)
            .field("version", &self.version)
            .field("pure", &self.pure)
            .finish_non_exhaustive()
    }
}

impl TaskSpec {
    /// An impure task named `name` (also its key prefix, with `/` replaced by `_`).
    pub fn new(name: impl Into<Name>) -> Self {
        Self {
            name: name.into(),
            key_prefix: None,
            arg_names: None,
            excluded: 0,
            excluded_names: Vec::new(),
            hasher: None,
            version: None,
            source_hash: None,
            pure: false,
            captures_covered: false,
            meta: Meta::shared_default(),
            identity: std::sync::OnceLock::new(),
        }
        .name_in_meta()
    }

    /// The spec with its metadata naming the task when the name is not the key prefix (a
    /// node keeps its name there, see [`Meta::named`]).
    fn name_in_meta(mut self) -> Self {
        let prefix = self.prefix().key_safe();
        let named = (prefix != self.name).then(|| self.name.clone());
        if self.meta.name != named {
            Arc::make_mut(&mut self.meta).name = named;
        }
        self
    }

    /// For a pure spec: its function captures state (a handle, a plan, a parameter derived
    /// from the arguments, a counter), and the **arguments determine all of it that can change
    /// the value**, so the key still covers everything that determines the value. Without it a pure spec refuses a function that
    /// captures anything (a closure with a parameter in it would share its key with the same
    /// closure over another parameter, and a checkpoint would hand back the wrong value).
    pub fn captures_covered_by_args(mut self) -> Self {
        self.captures_covered = true;
        self
    }

    /// Why a pure task's function cannot be keyed, if it cannot: it captures `size` bytes of
    /// state that no argument describes.
    fn uncovered_capture(&self, size: usize) -> Option<TokenizeError> {
        (self.pure && size != 0 && !self.captures_covered).then(|| {
            TokenizeError::custom_message(format!(
                "the pure task `{}` calls a function that captures {size} bytes of state its \
                 key cannot see: pass parameters as arguments, which the key covers \
                 (`.call(|x: T, p: P| …, (x, p))`), or use a function item; if the arguments \
                 already determine everything it captures, say so with \
                 `TaskSpec::captures_covered_by_args`",
                self.name
            ))
        })
    }

    /// Content-addressed keys: equal arguments give equal keys (and one run per compute).
    /// Only for functions whose result depends on nothing but their arguments.
    pub fn pure(mut self) -> Self {
        self.pure = true;
        self
    }

    /// A fresh key on every call (the default).
    pub fn impure(mut self) -> Self {
        self.pure = false;
        self
    }

    /// A version string that enters pure keys: bump it when the function's meaning changes.
    pub fn version(mut self, version: impl Into<Cow<'static, str>>) -> Self {
        self.version = Some(version.into());
        self.identity = std::sync::OnceLock::new();
        self
    }

    /// A hash of the function's source that enters pure keys (set by `#[task]`).
    pub fn source_hash(mut self, hash: [u8; 16]) -> Self {
        self.source_hash = Some(hash);
        self.identity = std::sync::OnceLock::new();
        self
    }

    /// The text before the `/` of keys, when it should differ from the task name (`#[task]`
    /// uses the function's bare name here and its full path as the task name).
    pub fn key_prefix(mut self, prefix: impl Into<Name>) -> Self {
        self.key_prefix = Some(prefix.into());
        self.identity = std::sync::OnceLock::new();
        self.name_in_meta()
    }

    /// The key prefix as a function of the task's name (`|name| format!("{name}-")`).
    pub fn key_prefix_with(self, f: impl FnOnce(&str) -> String) -> Self {
        let prefix = f(self.name.as_str());
        self.key_prefix(prefix)
    }

    /// The names of the parameters, in order (set by `#[task]`), so arguments can be excluded
    /// from the key and read by a custom [`hasher`](Self::hasher) by name.
    pub fn arg_names(mut self, names: &[&'static str]) -> Self {
        self.arg_names = Some(names.into());
        self
    }

    /// Leaves the argument at `position` (0-based, below 64) out of the key: for arguments
    /// that do not change the result, such as an open handle or a logger.
    pub fn exclude_position(mut self, position: usize) -> Self {
        if position < 64 {
            self.excluded |= 1 << position;
        }
        self
    }

    /// Leaves the named argument out of the key (see [`arg_names`](Self::arg_names)). A
    /// name that is not a parameter makes every call fail to build with an error naming it.
    pub fn exclude(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.excluded_names.push(name.into());
        self
    }

    /// A custom key: `f` sees the arguments and returns the text after the key prefix, and
    /// the checkpoint of the result is stored under `prefix + text` (the prefix is
    /// [`key_prefix`](Self::key_prefix), or the name and `/`). Two calls whose texts are equal
    /// share one key (and one stored result), so `f` must cover every argument that changes
    /// the result.
    ///
    /// ```
    /// use brisk_graph::TaskSpec;
    ///
    /// let double = TaskSpec::new("double")
    ///     .key_prefix("double-")
    ///     .arg_names(&["x", "verbose"])
    ///     .hasher(|args| Ok(args.named::<i64>("x").ok_or("x is not an i64 value")?.to_string()));
    /// let d = double.call(|x: i64, _verbose: bool| 2 * x, (21i64, true));
    /// assert_eq!(d.storage_key(), "double-21");
    /// assert_eq!(d.key(), double.call(|x: i64, _verbose: bool| 2 * x, (21i64, false)).key());
    /// ```
    pub fn hasher(
        mut self,
        f: impl Fn(&Args<'_>) -> Result<String, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.hasher = Some(Arc::new(f));
        self
    }

    /// Retry a failed run up to `n` times.
    pub fn retries(mut self, n: u32) -> Self {
        Arc::make_mut(&mut self.meta).annotations.retries = n;
        self
    }

    /// Scheduling priority among ready tasks (higher runs earlier).
    pub fn priority(mut self, p: i32) -> Self {
        Arc::make_mut(&mut self.meta).annotations.priority = p;
        self
    }

    /// Every value this spec makes is checkpointed as a `T` (the result type of its calls):
    /// what [`Delayed::checkpointed`] does for one value, without a copy of each node.
    /// `#[task(save)]` uses it.
    ///
    /// ```
    /// use brisk_graph::TaskSpec;
    ///
    /// let spec = TaskSpec::new("square").pure().checkpointed::<u64>();
    /// assert!(spec.call(|x: u64| x * x, (3u64,)).is_checkpointed());
    /// ```
    pub fn checkpointed<T>(mut self) -> Self
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.meta).save = Some(SaveSpec::of::<T>());
        self
    }

    /// The task needs `resource` open while it runs.
    pub fn requires(mut self, resource: Arc<dyn Resource>) -> Self {
        Arc::make_mut(&mut self.meta).resources.push(resource);
        self
    }

    /// The task's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// A lazy call of `f` on `args` (a tuple of values and [`Delayed`]s; `()` for none).
    ///
    /// Closure parameters need type annotations: `|x: i64| x + 1`.
    pub fn call<P, F, X>(&self, f: F, args: X) -> Delayed<F::Output>
    where
        F: TaskFn<P>,
        F::Output: Send + Sync + 'static,
        X: IntoArgs<P>,
    {
        if let Some(e) = self.uncovered_capture(std::mem::size_of::<F>()) {
            let prefix = self.identity().prefix.clone();
            return self.invalid(prefix, e, std::any::type_name::<F::Output>);
        }
        let body = body::<F::Output>(move |a| f.call_erased(a).map(|r| Arc::new(r) as Value));
        self.build(body, args, std::any::type_name::<F::Output>)
    }

    /// Like [`call`](TaskSpec::call) for a function returning `Result<R, E>`: an `Err` fails
    /// the task (and the compute, naming this task's key).
    pub fn try_call<P, F, X, R, E>(&self, f: F, args: X) -> Delayed<R>
    where
        F: TaskFn<P, Output = Result<R, E>>,
        R: Send + Sync + 'static,
        E: Into<BoxError>,
        X: IntoArgs<P>,
    {
        if let Some(e) = self.uncovered_capture(std::mem::size_of::<F>()) {
            let prefix = self.identity().prefix.clone();
            return self.invalid(prefix, e, std::any::type_name::<R>);
        }
        let body = body::<R>(move |a| match f.call_erased(a)? {
            Ok(r) => Ok(Arc::new(r) as Value),
            Err(e) => Err(e.into()),
        });
        self.build(body, args, std::any::type_name::<R>)
    }

    /// A task over any number of lazy inputs of any types, for libraries that build graphs
    /// programmatically (chunked arrays): `f` receives the inputs' values in order and must
    /// downcast them itself. `descriptor` is a token describing the operation (its name,
    /// parameters, …); for a pure spec the key covers the identity, the descriptor and the
    /// inputs' keys.
    ///
    /// ```
    /// use brisk_graph::{TaskSpec, Tokenize, Value, lit};
    ///
    /// let parts = vec![lit(1i64).erase(), lit(2u8).erase()];
    /// let op = ("sum_as_i64", 0u8).token().unwrap();
    /// let total = TaskSpec::new("mixed_sum").pure().call_dyn(
    ///     |v: Vec<Value>| {
    ///         let a = *v[0].downcast_ref::<i64>().ok_or("input 0 is not an i64")?;
    ///         let b = *v[1].downcast_ref::<u8>().ok_or("input 1 is not a u8")?;
    ///         Ok(a + i64::from(b))
    ///     },
    ///     &parts,
    ///     op,
    /// );
    /// assert!(total.key().to_string().starts_with("mixed_sum/"));
    /// ```
    pub fn call_dyn<R, F>(&self, f: F, inputs: &[AnyDelayed], descriptor: Token) -> Delayed<R>
    where
        R: Send + Sync + 'static,
        F: Fn(Vec<Value>) -> Result<R, BoxError> + Send + Sync + 'static,
    {
        let prefix = self.identity().prefix.clone();
        let token = if self.pure {
            let mut sink = TokenSink::new(b"brisk.dyn");
            sink.raw(&self.identity().bytes);
            sink.raw(descriptor.as_bytes());
            sink.u64(inputs.len() as u64);
            for i in inputs {
                key_arg(&mut sink, &i.node.key);
            }
            sink.finish()
        } else {
            unique_token()
        };
        let body = body::<R>(move |a| f(a).map(|r| Arc::new(r) as Value));
        Delayed::from_node(NodeInner::new(
            Key::with_safe_name(prefix, token),
            Op::Task(body),
            inputs
                .iter()
                .map(|i| Input::Node(Arc::clone(&i.node)))
                .collect(),
            self.meta.clone(),
        ))
    }

    fn build<P, X: IntoArgs<P>, R>(
        &self,
        body: ErasedFn,
        args: X,
        output_type: crate::node::TypeName,
    ) -> Delayed<R> {
        let prefix = self.identity().prefix.clone();
        let excluded = match self.excluded_mask() {
            Ok(m) => m,
            Err(e) => return self.invalid(prefix, e, output_type),
        };
        let mut storage_key = None;
        // A node whose arguments could not be keyed: a unique key, no inputs, and running it
        // reports why.
        let failed = |e: TokenizeError| {
            (
                unique_token(),
                Inputs::new(),
                Op::Task(invalid(e, output_type)),
            )
        };
        let (token, inputs, op) = if let Some(hasher) = &self.hasher {
            match args.into_inputs(None, 0) {
                Ok(inputs) => {
                    let inputs = inputs.0;
                    let view = Args {
                        names: self.arg_names.as_deref().unwrap_or(&[]),
                        inputs: &inputs[..],
                    };
                    match hasher(&view) {
                        Ok(text) => {
                            let shown = match &self.key_prefix {
                                Some(p) => format!("{p}{text}"),
                                None => format!("{}/{text}", self.name),
                            };
                            let mut sink = TokenSink::new(b"brisk.custom");
                            sink.raw(&self.identity().bytes);
                            sink.put_str_bytes(shown.as_bytes());
                            storage_key = Some(Arc::from(shown));
                            (sink.finish(), inputs, Op::Task(body))
                        }
                        Err(e) => failed(TokenizeError::custom_message(format!(
                            "the key hasher failed: {e}"
                        ))),
                    }
                }
                Err(e) => failed(e),
            }
        } else if self.pure {
            let mut sink = TokenSink::new(b"brisk.task");
            sink.raw(&self.identity().bytes);
            match args.into_inputs(Some(&mut sink), excluded) {
                Ok(inputs) => (sink.finish(), inputs.0, Op::Task(body)),
                Err(e) => failed(e),
            }
        } else {
            match args.into_inputs(None, 0) {
                Ok(inputs) => (unique_token(), inputs.0, Op::Task(body)),
                Err(e) => failed(e),
            }
        };
        let meta = match storage_key {
            None => Arc::clone(&self.meta),
            Some(k) => Arc::new(Meta {
                storage_key: Some(k),
                ..Meta::clone(&self.meta)
            }),
        };
        Delayed::from_node(NodeInner::new(
            Key::with_safe_name(prefix, token),
            op,
            inputs,
            meta,
        ))
    }

    /// The bit mask of excluded argument positions.
    fn excluded_mask(&self) -> Result<u64, TokenizeError> {
        let mut mask = self.excluded;
        for name in &self.excluded_names {
            let names = self.arg_names.as_deref().unwrap_or(&[]);
            let i = names.iter().position(|n| *n == name.as_ref()).ok_or_else(|| {
                TokenizeError::custom_message(format!(
                    "cannot exclude `{name}` from the key of `{}`: its parameters are {names:?}",
                    self.name
                ))
            })?;
            if i < 64 {
                mask |= 1 << i;
            }
        }
        Ok(mask)
    }

    /// A node that fails with `e` when run.
    fn invalid<R>(
        &self,
        prefix: Name,
        e: TokenizeError,
        output_type: crate::node::TypeName,
    ) -> Delayed<R> {
        Delayed::from_node(NodeInner::new(
            Key::with_safe_name(prefix, unique_token()),
            Op::Task(invalid(e, output_type)),
            Inputs::new(),
            self.meta.clone(),
        ))
    }

    /// The spec's key prefix and identity bytes (see [`Identity`]).
    fn identity(&self) -> &Identity {
        self.identity.get_or_init(|| {
            let prefix = self.prefix();
            let mut bytes: Vec<u8> = Vec::new();
            bytes.put_str_bytes(self.name.as_str().as_bytes());
            bytes.put_str_bytes(prefix.as_str().as_bytes());
            match &self.version {
                Some(v) => {
                    bytes.put_u8(1);
                    bytes.put_str_bytes(v.as_bytes());
                }
                None => bytes.put_u8(0),
            }
            match &self.source_hash {
                Some(h) => {
                    bytes.put_u8(1);
                    bytes.put(h);
                }
                None => bytes.put_u8(0),
            }
            Identity {
                prefix: prefix.key_safe(),
                bytes: bytes.into(),
            }
        })
    }

    /// The text before the `/` of keys, as given (the key prefix, or else the name).
    fn prefix(&self) -> &Name {
        self.key_prefix.as_ref().unwrap_or(&self.name)
    }
}

/// A custom key function; see [`TaskSpec::hasher`].
type Hasher = Arc<dyn Fn(&Args<'_>) -> Result<String, BoxError> + Send + Sync>;

/// The arguments of one call, as a custom [`TaskSpec::hasher`] sees them.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    names: &'a [&'static str],
    inputs: &'a [Input],
}

impl fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args")
            .field("names", &self.names)
            .field("len", &self.inputs.len())
            .finish()
    }
}

impl<'a> Args<'a> {
    /// The number of arguments.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inputs.len()
    }
    /// Whether there are no arguments.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
    /// The plain value at `position`, if it is a value (not a lazy input) of type `T`.
    #[must_use]
    pub fn value<T: 'static>(&self, position: usize) -> Option<&'a T> {
        match self.inputs.get(position)? {
            Input::Const(v) => v.downcast_ref::<T>(),
            Input::Node(_) => None,
        }
    }
    /// The plain value of the parameter called `name` (see [`TaskSpec::arg_names`]).
    #[must_use]
    pub fn named<T: 'static>(&self, name: &str) -> Option<&'a T> {
        self.value(self.names.iter().position(|n| *n == name)?)
    }
    /// The key of the lazy input at `position`, if it is one.
    #[must_use]
    pub fn key(&self, position: usize) -> Option<&'a Key> {
        match self.inputs.get(position)? {
            Input::Node(n) => Some(&n.key),
            Input::Const(..) => None,
        }
    }
}

/// A lazy call of `f` with a fresh key (like `dask.delayed(f)(*args)`).
///
/// ```
/// use brisk_graph::{delayed, lit};
/// let a = delayed("now", |x: u64| x + 1, (lit(1u64),));
/// let b = delayed("now", |x: u64| x + 1, (lit(1u64),));
/// assert_ne!(a.key(), b.key()); // impure: every call is a new task
/// ```
pub fn delayed<P, F, X>(name: impl Into<Name>, f: F, args: X) -> Delayed<F::Output>
where
    F: TaskFn<P>,
    F::Output: Send + Sync + 'static,
    X: IntoArgs<P>,
{
    TaskSpec::new(name).call(f, args)
}

/// A lazy call of a pure function: its key is a content address of `name` and the arguments.
/// `f` must capture nothing (a function item or a closure without captures; checked at
/// compile time): parameters are arguments, so the key covers them.
pub fn pure<P, F, X>(name: impl Into<Name>, f: F, args: X) -> Delayed<F::Output>
where
    F: TaskFn<P>,
    F::Output: Send + Sync + 'static,
    X: IntoArgs<P>,
{
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a pure task's function must capture nothing: pass parameters as arguments"
        );
    };
    TaskSpec::new(name).pure().call(f, args)
}

/// `Vec<Delayed<T>>` → `Delayed<Vec<T>>` (a pure `collect` task over the elements' keys).
impl<T: Clone + Send + Sync + 'static> FromIterator<Delayed<T>> for Delayed<Vec<T>> {
    fn from_iter<I: IntoIterator<Item = Delayed<T>>>(iter: I) -> Self {
        let mut sink = TokenSink::new(b"brisk.collect");
        let mut reach = ReachCount::default();
        let inputs: Vec<Input> = iter
            .into_iter()
            .map(|d| {
                key_arg(&mut sink, &d.node.key);
                reach.add(&d.node);
                Input::Node(d.node)
            })
            .collect();
        sink.u64(inputs.len() as u64);
        let body = body::<Vec<T>>(|args: Vec<Value>| {
            let out = args
                .into_iter()
                .enumerate()
                .map(|(i, v)| take_arg::<T>(v, i))
                .collect::<Result<Vec<T>, _>>()?;
            Ok(Arc::new(out) as Value)
        });
        Self::from_node(NodeInner::counted(
            Key::new("collect", sink.finish()),
            Op::Task(body),
            Inputs::from_vec(inputs),
            Meta::shared_default(),
            reach,
        ))
    }
}

impl<T: Clone + Send + Sync + 'static> Delayed<Vec<T>> {
    /// Collects lazy values into one lazy `Vec` (same as `.into_iter().collect()`).
    pub fn collect(items: impl IntoIterator<Item = Delayed<T>>) -> Self {
        items.into_iter().collect()
    }
}

/// Splitting a lazy tuple into lazy parts (`nout` in Dask).
pub trait Split {
    /// A tuple of `Delayed`s, one per field.
    type Parts;
    /// One lazy value per field; each part's key derives from this value's key and the index.
    fn split(&self) -> Self::Parts;
}

fn part<Tup, T, G>(parent: &Arc<NodeInner>, index: u64, get: G) -> Delayed<T>
where
    Tup: Send + Sync + 'static,
    T: Send + Sync + 'static,
    G: Fn(&Tup) -> T + Send + Sync + 'static,
{
    let mut sink = TokenSink::new(b"brisk.part");
    key_arg(&mut sink, &parent.key);
    sink.u64(index);
    let body = body::<T>(move |args: Vec<Value>| {
        let tuple = args
            .first()
            .and_then(|v| v.downcast_ref::<Tup>())
            .ok_or("split: input is not the expected tuple")?;
        Ok(Arc::new(get(tuple)) as Value)
    });
    let name = Name::from(format!("{}.{index}", parent.key.name()));
    let key = Key::new(name.clone(), sink.finish());
    let meta = Meta::named(Meta::shared_default(), &name, &key);
    Delayed::from_node(NodeInner::new(
        key,
        Op::Task(body),
        smallvec::smallvec![Input::Node(Arc::clone(parent))],
        meta,
    ))
}

macro_rules! split {
    ($tup:ty; $($t:ident $i:tt),*) => {
        impl<$($t: Clone + Send + Sync + 'static),*> Split for Delayed<$tup> {
            type Parts = ($(Delayed<$t>,)*);
            fn split(&self) -> Self::Parts {
                ($(part::<$tup, $t, _>(&self.node, $i, |t| t.$i.clone()),)*)
            }
        }
    };
}
split!((A, B); A 0, B 1);
split!((A, B, C); A 0, B 1, C 2);
split!((A, B, C, D); A 0, B 1, C 2, D 3);
split!((A, B, C, D, E); A 0, B 1, C 2, D 3, E 4);
split!((A, B, C, D, E, F); A 0, B 1, C 2, D 3, E 4, F 5);
split!((A, B, C, D, E, F, G); A 0, B 1, C 2, D 3, E 4, F 5, G 6);
split!((A, B, C, D, E, F, G, H); A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

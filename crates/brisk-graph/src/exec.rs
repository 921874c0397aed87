//! The interfaces executors, caches, hooks and resources plug into, and computing through them.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::delayed::{AnyDelayed, Delayed};
use crate::error::{Error, Report};
use crate::graph::{Graph, NodeView};
use crate::key::Key;
use crate::node::{BoxError, SaveSpec, Value};

/// Runs a materialized [`Graph`].
///
/// Every executor must give the same results for the same graph, call the [`Hooks`] of the
/// [`RunContext`] with the same meaning, honour its failure policy and cancellation token, load
/// nodes marked [`is_loaded`](NodeView::is_loaded) from the cache, save checkpointed nodes
/// after they run, and turn panics in tasks into [`Error::Panic`].
pub trait Executor: Send + Sync {
    /// Runs `graph` and returns the values of its outputs.
    ///
    /// # Errors
    /// Under [`FailurePolicy::FailFast`], the first task error (naming its key and name);
    /// [`Error::Cancelled`] when the token was cancelled. Under [`FailurePolicy::KeepGoing`]
    /// task failures are reported in [`RunOutput::report`] instead.
    fn execute(&self, graph: &Arc<Graph>, ctx: &RunContext) -> Result<RunOutput, Error>;

    /// Number of tasks this executor can run at once (1 for a sequential executor).
    fn parallelism(&self) -> usize {
        1
    }
}

impl<E: Executor + ?Sized> Executor for &E {
    fn execute(&self, graph: &Arc<Graph>, ctx: &RunContext) -> Result<RunOutput, Error> {
        (**self).execute(graph, ctx)
    }
    fn parallelism(&self) -> usize {
        (**self).parallelism()
    }
}

impl<E: Executor + ?Sized> Executor for Arc<E> {
    fn execute(&self, graph: &Arc<Graph>, ctx: &RunContext) -> Result<RunOutput, Error> {
        (**self).execute(graph, ctx)
    }
    fn parallelism(&self) -> usize {
        (**self).parallelism()
    }
}

/// What to do when a task fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Stop at the first failure: start nothing new, wait for running tasks, return the error.
    #[default]
    FailFast,
    /// Run everything that does not depend on a failure; report failures and what they
    /// blocked alongside the results that could be computed.
    KeepGoing,
}

/// A handle to stop a running compute from another thread.
///
/// Tasks not yet started are not started; the compute returns [`Error::Cancelled`].
#[derive(Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks every compute using this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Whether [`cancel`](CancelToken::cancel) was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CancelToken(cancelled: {})", self.is_cancelled())
    }
}

/// A checkpointed node as a [`Cache`] sees it.
#[derive(Clone, Copy)]
pub struct Checkpoint<'a> {
    /// The node's key.
    pub key: &'a Key,
    /// The task's name.
    pub name: &'a str,
    /// How to (de)serialize its result.
    pub spec: &'a SaveSpec,
    /// The key a custom hasher gave (see [`TaskSpec::hasher`](crate::TaskSpec::hasher)).
    pub custom_key: Option<&'a str>,
    /// Cache-specific options attached with
    /// [`Delayed::checkpointed_with`](crate::Delayed::checkpointed_with).
    pub options: Option<&'a (dyn std::any::Any + Send + Sync)>,
}

impl std::fmt::Debug for Checkpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("key", &self.storage_key())
            .field("name", &self.name)
            .field("type", &self.spec.type_name())
            .finish_non_exhaustive()
    }
}

impl<'a> Checkpoint<'a> {
    /// The checkpoint view of a graph node, if it is marked as checkpointed.
    #[must_use]
    pub fn of(node: NodeView<'a>) -> Option<Self> {
        Some(Self {
            key: node.key(),
            name: node.name(),
            spec: node.save_spec()?,
            custom_key: node.custom_key(),
            options: node.save_options(),
        })
    }

    /// The key the result is stored under: the custom key if a hasher gave one, else the
    /// node's key (`name/` + 32 hex).
    #[must_use]
    pub fn storage_key(&self) -> std::borrow::Cow<'a, str> {
        match self.custom_key {
            Some(k) => std::borrow::Cow::Borrowed(k),
            None => std::borrow::Cow::Owned(self.key.to_string()),
        }
    }
}

/// Stored results of checkpointed tasks. Only nodes marked with
/// [`Delayed::checkpointed`] are ever looked up, loaded or saved.
pub trait Cache: Send + Sync {
    /// Whether a result is stored for `entry` (called while the graph is built; a hit culls
    /// everything upstream of the node).
    ///
    /// # Errors
    /// When the store cannot be read.
    fn contains(&self, entry: &Checkpoint<'_>) -> Result<bool, BoxError>;

    /// Loads the stored result for `entry`.
    ///
    /// # Errors
    /// When the entry is missing, unreadable or cannot be decoded: never a wrong value.
    fn load(&self, entry: &Checkpoint<'_>) -> Result<Value, BoxError>;

    /// Stores the result of `entry` (before any dependent sees it).
    ///
    /// # Errors
    /// When the value cannot be encoded or written.
    fn save(&self, entry: &Checkpoint<'_>, value: &Value) -> Result<(), BoxError>;

    /// Called before a checkpointed node that was not loaded runs. A cache shared by
    /// concurrent computes may wait here while another compute runs the same key, and return
    /// `Some(value)` once it is stored: the task then does not run (single-flight). `None`
    /// (the default) lets the task run; exactly one [`save`](Cache::save) or
    /// [`abandon`](Cache::abandon) follows.
    ///
    /// # Errors
    /// When the cache cannot be consulted.
    fn begin(&self, entry: &Checkpoint<'_>) -> Result<Option<Value>, BoxError> {
        let _ = entry;
        Ok(None)
    }

    /// The task that [`begin`](Cache::begin) let run failed: nothing will be saved.
    fn abandon(&self, entry: &Checkpoint<'_>) {
        let _ = entry;
    }
}

/// Observers of a compute. Every method has an empty default; executors call them from the
/// thread that runs the task, so implementations must be cheap and thread-safe.
pub trait Hooks: Send + Sync {
    /// The compute starts; `graph` is what will run.
    fn on_start(&self, graph: &Graph) {
        let _ = graph;
    }
    /// A task is about to run (or be loaded) on `worker`.
    fn on_task_start(&self, graph: &Graph, id: usize, worker: usize) {
        let _ = (graph, id, worker);
    }
    /// A task finished (successfully or not).
    fn on_task_end(&self, graph: &Graph, event: &TaskEnd<'_>) {
        let _ = (graph, event);
    }
    /// The executor dropped its reference to the result of `id` (its last consumer ran).
    fn on_release(&self, graph: &Graph, id: usize) {
        let _ = (graph, id);
    }
    /// The compute finished; `error` is the error it returns, if any.
    fn on_finish(&self, graph: &Graph, error: Option<&Error>) {
        let _ = (graph, error);
    }
    /// A run over a dynamic source started (`open = true`: more inputs, and so more graphs,
    /// may still arrive) or its source was sealed (`open = false`: every input is known).
    /// Each partition is then an ordinary compute with its own `on_start`/`on_finish`.
    fn on_inputs_open(&self, open: bool) {
        let _ = open;
    }
}

/// How a task ended, as reported to [`Hooks::on_task_end`].
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum TaskStatus<'a> {
    /// The task ran and produced this value.
    Computed(&'a Value),
    /// The value was loaded from the cache.
    Loaded(&'a Value),
    /// The task failed (this attempt; it may be retried).
    Failed(&'a Error),
}

/// A finished task, as reported to [`Hooks::on_task_end`].
#[non_exhaustive]
pub struct TaskEnd<'a> {
    /// The node's id in the graph.
    pub id: usize,
    /// The worker that ran it (0 on a sequential executor).
    pub worker: usize,
    /// When it started, relative to the start of the compute.
    pub start: Duration,
    /// How long it ran.
    pub duration: Duration,
    /// Which attempt this was (1 = first).
    pub attempt: u32,
    /// How it ended.
    pub status: TaskStatus<'a>,
}

impl<'a> TaskEnd<'a> {
    /// A task-end event.
    #[must_use]
    pub fn new(
        id: usize,
        worker: usize,
        start: Duration,
        duration: Duration,
        attempt: u32,
        status: TaskStatus<'a>,
    ) -> Self {
        Self {
            id,
            worker,
            start,
            duration,
            attempt,
            status,
        }
    }

    /// The result's size in bytes (computed on demand, see [`size_of_value`]): `None` for a
    /// failed task or a result whose type is not one of the built-in ones.
    ///
    /// [`size_of_value`]: crate::size_of_value
    #[must_use]
    pub fn result_size(&self) -> Option<usize> {
        match self.status {
            TaskStatus::Computed(v) | TaskStatus::Loaded(v) => crate::size_of_value(v),
            TaskStatus::Failed(_) => None,
        }
    }
}

impl fmt::Debug for TaskEnd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskEnd")
            .field("id", &self.id)
            .field("worker", &self.worker)
            .field("duration", &self.duration)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// Everything an executor needs besides the graph. Cheap to clone (shared handles), so an
/// executor can hand it to its worker threads.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct RunContext {
    /// Observers to call.
    pub hooks: Arc<[Arc<dyn Hooks>]>,
    /// Where checkpointed results are loaded from and saved to.
    pub cache: Option<Arc<dyn Cache>>,
    /// What to do on failure.
    pub policy: FailurePolicy,
    /// Stops the compute when cancelled.
    pub cancel: CancelToken,
}

impl RunContext {
    /// A context from its parts.
    #[must_use]
    pub fn new(
        hooks: Vec<Arc<dyn Hooks>>,
        cache: Option<Arc<dyn Cache>>,
        policy: FailurePolicy,
        cancel: CancelToken,
    ) -> Self {
        Self {
            hooks: hooks.into(),
            cache,
            policy,
            cancel,
        }
    }
}

impl RunContext {
    /// Loads the result of `node`, which the graph marks as loaded from the cache
    /// ([`NodeView::is_loaded`]).
    ///
    /// # Errors
    /// [`Error::Cache`] naming the node: the compute has no cache, or the cache cannot load it.
    pub fn load_checkpoint(&self, node: NodeView<'_>) -> Result<Value, Error> {
        let cache_err = |source: BoxError| Error::Cache {
            key: node.key().clone(),
            name: node.name().to_owned(),
            action: crate::CacheAction::Load,
            source,
        };
        let (Some(cache), Some(entry)) = (self.cache.as_deref(), Checkpoint::of(node)) else {
            return Err(cache_err(
                "node is marked as loaded but the compute has no cache".into(),
            ));
        };
        cache.load(&entry).map_err(cache_err)
    }

    /// Saves `value` as the result of `node` when the node is checkpointed and the compute has
    /// a cache (nothing to do otherwise).
    ///
    /// # Errors
    /// [`Error::Cache`] naming the node, when the cache cannot store it.
    pub fn save_checkpoint(&self, node: NodeView<'_>, value: &Value) -> Result<(), Error> {
        let (Some(cache), Some(entry)) = (self.cache.as_deref(), Checkpoint::of(node)) else {
            return Ok(());
        };
        cache.save(&entry, value).map_err(|source| Error::Cache {
            key: node.key().clone(),
            name: node.name().to_owned(),
            action: crate::CacheAction::Save,
            source,
        })
    }
}

impl fmt::Debug for RunContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("hooks", &self.hooks.len())
            .field("cache", &self.cache.is_some())
            .field("policy", &self.policy)
            .field("cancel", &self.cancel)
            .finish()
    }
}

/// What an executor returns: one value per output (`None` for outputs that could not be
/// computed under keep-going) and the failure report.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunOutput {
    /// Values of [`Graph::outputs`], in the same order.
    pub values: Vec<Option<Value>>,
    /// Failures and skipped tasks (empty under fail-fast).
    pub report: Report,
}

impl RunOutput {
    /// A run's output.
    #[must_use]
    pub fn new(values: Vec<Option<Value>>, report: Report) -> Self {
        Self { values, report }
    }
}

/// Options of one compute: hooks, cache, failure policy and cancellation.
#[derive(Clone, Default)]
#[must_use]
pub struct ComputeOptions {
    hooks: Vec<Arc<dyn Hooks>>,
    cache: Option<Arc<dyn Cache>>,
    policy: FailurePolicy,
    cancel: CancelToken,
}

impl fmt::Debug for ComputeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputeOptions")
            .field("hooks", &self.hooks.len())
            .field("cache", &self.cache.is_some())
            .field("policy", &self.policy)
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl ComputeOptions {
    /// Default options: no hooks, no cache, fail-fast.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds an observer.
    pub fn hook(mut self, hook: Arc<dyn Hooks>) -> Self {
        self.hooks.push(hook);
        self
    }
    /// Attaches a checkpoint cache to this compute (and only to it).
    pub fn cache(mut self, cache: Arc<dyn Cache>) -> Self {
        self.cache = Some(cache);
        self
    }
    /// Sets the failure policy.
    pub fn policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Keep going after failures (see [`FailurePolicy::KeepGoing`]).
    pub fn keep_going(self) -> Self {
        self.policy(FailurePolicy::KeepGoing)
    }
    /// Uses `token` to allow cancelling the compute.
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// The executor context these options describe.
    #[must_use]
    pub fn context(&self) -> RunContext {
        RunContext::new(
            self.hooks.clone(),
            self.cache.clone(),
            self.policy,
            self.cancel.clone(),
        )
    }

    /// Materializes the graph of `outputs` (consulting the cache) and runs it on `executor`.
    ///
    /// # Errors
    /// See [`Executor::execute`]; also [`Error::Cache`] if the cache cannot be consulted.
    pub fn run<I>(&self, executor: &dyn Executor, outputs: I) -> Result<Computed, Error>
    where
        I: IntoIterator,
        I::Item: Into<AnyDelayed>,
    {
        let graph = Arc::new(match &self.cache {
            Some(c) => Graph::with_cache(outputs, c.as_ref())?,
            None => Graph::new(outputs),
        });
        let out = executor.execute(&graph, &self.context())?;
        let keys = graph
            .outputs()
            .iter()
            .map(|&id| graph.key(id as usize).clone())
            .collect();
        Ok(Computed {
            keys,
            values: out.values,
            report: out.report,
        })
    }
}

/// The results of a compute of several outputs.
#[derive(Debug)]
pub struct Computed {
    keys: Vec<Key>,
    values: Vec<Option<Value>>,
    report: Report,
}

impl Computed {
    /// The value of `output` (which must have been one of the computed outputs).
    ///
    /// # Errors
    /// [`Error::Incomplete`] if it was not computed (keep-going) or not an output;
    /// [`Error::TypeMismatch`] cannot happen for handles built through the typed API.
    pub fn get<T: Clone + Send + Sync + 'static>(&self, output: &Delayed<T>) -> Result<T, Error> {
        let value = self.slot(output.key()).and_then(|i| self.values[i].clone());
        self.typed(output.key(), value)
    }

    /// Moves the value of `output` out of the results: no copy when nothing else holds it (use
    /// this for large results; [`get`](Computed::get) clones).
    ///
    /// # Errors
    /// As [`get`](Computed::get); also when the value was already taken.
    pub fn take<T: Clone + Send + Sync + 'static>(
        &mut self,
        output: &Delayed<T>,
    ) -> Result<T, Error> {
        let value = self.slot(output.key()).and_then(|i| self.values[i].take());
        self.typed(output.key(), value)
    }

    /// The first listing of `key` that still holds a value (an output listed twice can be
    /// taken twice).
    fn slot(&self, key: &Key) -> Option<usize> {
        self.keys
            .iter()
            .zip(&self.values)
            .position(|(k, v)| k == key && v.is_some())
    }

    /// `value` as a `T` (moved out of its `Arc` when unshared), or why not.
    fn typed<T: Clone + Send + Sync + 'static>(
        &self,
        key: &Key,
        value: Option<Value>,
    ) -> Result<T, Error> {
        let Some(value) = value else {
            return Err(self.incomplete(key));
        };
        value
            .downcast::<T>()
            .map(Arc::unwrap_or_clone)
            .map_err(|_| Error::TypeMismatch {
                key: key.clone(),
                expected: std::any::type_name::<T>(),
            })
    }

    /// The type-erased value of output number `i` (in the order they were given).
    #[must_use]
    pub fn value(&self, i: usize) -> Option<&Value> {
        self.values.get(i).and_then(Option::as_ref)
    }

    /// Failures and skipped tasks (always clean under fail-fast).
    #[must_use]
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Takes the report out.
    #[must_use]
    pub fn into_report(self) -> Report {
        self.report
    }

    fn incomplete(&self, key: &Key) -> Error {
        Error::Incomplete {
            key: key.clone(),
            summary: self.report.summary(),
        }
    }
}

/// Computes `values` now, in one compute on `executor` with `options`, and returns each one
/// held in memory under its own key — dask's `persist`. A later compute of anything built on
/// a returned value uses the held result and runs nothing upstream of it, and keys derived from
/// it are the keys derived from the original (checkpoints stay valid).
///
/// # Errors
/// The compute's error (nothing is held then).
pub fn persist_all<T: Send + Sync + 'static>(
    values: &[Delayed<T>],
    executor: &dyn Executor,
    options: &ComputeOptions,
) -> Result<Vec<Delayed<T>>, Error> {
    let computed = options.run(executor, values.iter())?;
    values
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let v = computed
                .value(i)
                .cloned()
                .ok_or_else(|| computed.incomplete(d.key()))?;
            if v.downcast_ref::<T>().is_none() {
                return Err(Error::TypeMismatch {
                    key: d.key().clone(),
                    expected: std::any::type_name::<T>(),
                });
            }
            Ok(d.held(v))
        })
        .collect()
}

impl<T: Send + Sync + 'static> Delayed<T> {
    /// Computes this value now and returns it held in memory under its own key (see
    /// [`persist_all`]).
    ///
    /// # Errors
    /// The compute's error.
    pub fn persist(
        &self,
        executor: &dyn Executor,
        options: &ComputeOptions,
    ) -> Result<Self, Error> {
        let mut held = persist_all(std::slice::from_ref(self), executor, options)?;
        Ok(held.remove(0))
    }
}

impl<T: Clone + Send + Sync + 'static> Delayed<T> {
    /// Computes this value on `executor` with default options.
    ///
    /// # Errors
    /// The first failing task, naming its key and task name (see [`Error`]).
    pub fn compute_with(&self, executor: &dyn Executor) -> Result<T, Error> {
        self.compute_with_options(executor, &ComputeOptions::new())
    }

    /// Computes this value on `executor` with `options` (hooks, cache, policy, cancellation).
    ///
    /// # Errors
    /// See [`compute_with`](Delayed::compute_with); under keep-going, [`Error::Incomplete`]
    /// with the report when this value could not be computed.
    pub fn compute_with_options(
        &self,
        executor: &dyn Executor,
        options: &ComputeOptions,
    ) -> Result<T, Error> {
        options.run(executor, [self])?.take(self)
    }
}

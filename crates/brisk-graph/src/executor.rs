//! The [`Executor`] interface and what an executor gets and returns: [`RunContext`]
//! (hooks, cache, failure policy, cancellation) and [`RunOutput`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::{Cache, Checkpoint};
use crate::error::{Error, Report};
use crate::graph::{Graph, NodeView};
use crate::hooks::Hooks;
use crate::node::{BoxError, Value};

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
    /// How the graph was built, when another process can rebuild it (see
    /// [`remote`](crate::remote)): executors that run tasks in other processes use it.
    pub origin: Option<Arc<crate::remote::Origin>>,
    /// Why the graph cannot be rebuilt in another process, when whoever built it knows
    /// (for an executor's error message).
    pub why_local: Option<Arc<str>>,
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
            origin: None,
            why_local: None,
        }
    }

    /// The same context for a graph built as `origin` says.
    #[must_use]
    pub fn with_origin(mut self, origin: Option<Arc<crate::remote::Origin>>) -> Self {
        self.origin = origin;
        self
    }

    /// The same context, saying why its graph cannot be rebuilt elsewhere.
    #[must_use]
    pub fn with_why_local(mut self, why: Option<Arc<str>>) -> Self {
        self.why_local = why;
        self
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

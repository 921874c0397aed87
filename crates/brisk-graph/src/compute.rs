//! Computing lazy values through an executor: [`ComputeOptions`], the [`Computed`] results of
//! several outputs, and `persist`.

use std::fmt;
use std::sync::Arc;

use crate::cache::Cache;
use crate::delayed::{AnyDelayed, Delayed};
use crate::error::{Error, Report};
use crate::executor::{CancelToken, Executor, FailurePolicy, RunContext};
use crate::graph::Graph;
use crate::hooks::Hooks;
use crate::key::Key;
use crate::node::Value;

/// Options of one compute: hooks, cache, failure policy and cancellation.
#[derive(Clone, Default)]
#[must_use]
pub struct ComputeOptions {
    hooks: Vec<Arc<dyn Hooks>>,
    cache: Option<Arc<dyn Cache>>,
    policy: FailurePolicy,
    cancel: CancelToken,
    origin: Option<Arc<crate::remote::Origin>>,
    why_local: Option<Arc<str>>,
}

impl fmt::Debug for ComputeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputeOptions")
            .field("hooks", &self.hooks.len())
            .field("cache", &self.cache.is_some())
            .field("policy", &self.policy)
            .field("cancel", &self.cancel)
            .field("origin", &self.origin)
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

    /// Says how the computed graph was built, so that an executor running tasks in other
    /// processes (a cluster) can rebuild it there; see [`remote`](crate::remote). Library
    /// code sets it (brisk-array's `compute`, brisk-zarr's writes); local executors ignore it.
    pub fn origin(mut self, origin: crate::remote::Origin) -> Self {
        self.origin = Some(Arc::new(origin));
        self
    }

    /// Says why the computed graph cannot be rebuilt in another process (which step of an
    /// array has no recipe): an executor that needs an origin puts it in its error.
    pub fn local_only(mut self, why: impl Into<Arc<str>>) -> Self {
        self.why_local = Some(why.into());
        self
    }

    /// The origin set with [`origin`](Self::origin).
    #[must_use]
    pub fn origin_of(&self) -> Option<&crate::remote::Origin> {
        self.origin.as_deref()
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
        .with_origin(self.origin.clone())
        .with_why_local(self.why_local.clone())
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
            .map(|&id| graph.key(id).clone())
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

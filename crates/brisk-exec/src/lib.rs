//! Brisk's executors: they run the task graphs built with `brisk-graph`.
//!
//! - [`ThreadedExecutor`]: a work-stealing pool over `crossbeam-deque`, one worker per core by
//!   default; what `compute()` uses.
//! - [`SequentialExecutor`]: everything on the calling thread in the graph's static order (the
//!   debugging executor: breakpoints and prints work as in plain code).
//!
//! Both give identical results for every graph, call the same hooks and follow the same
//! failure policies.
//!
//! For plain functions over many inputs there is a futures API on a [`Handler`], whose backend
//! is chosen by an address (`"threads"`, `"threads://4"`, `"sync"`; `"slurm://…"` with brisk-cluster):
//! `submit`, `map`, `gather`, [`AsCompleted`] and `batched_map` over lazy iterators.
//!
//! ```
//! use brisk_exec::{Compute, SequentialExecutor};
//! use brisk_graph::{Delayed, TaskSpec, lit};
//!
//! let square = TaskSpec::new("square").pure();
//! let parts: Delayed<Vec<i64>> = (1..=4).map(|i| square.call(|x: i64| x * x, (lit(i),))).collect();
//! let total = TaskSpec::new("sum").pure().call(|v: Vec<i64>| v.iter().sum::<i64>(), (parts,));
//! assert_eq!(total.compute().unwrap(), 1 + 4 + 9 + 16);
//! assert_eq!(total.compute_with(&SequentialExecutor).unwrap(), 30);
//! ```
#![forbid(unsafe_code)]

mod futures;
mod handler;
mod pool;
mod sequential;
mod sleep;
pub mod source;
mod task;
mod threaded;

pub use brisk_graph::{ComputeOptions, Error, FailurePolicy, Result};
pub use futures::{AsCompleted, TaskFuture};
pub use handler::{BATCH_ITEMS_PER_WORKER, Handler, HandlerBackend, HandlerError};
pub use sequential::SequentialExecutor;
pub use threaded::{ThreadedExecutor, available_workers};

use brisk_graph::{AnyDelayed, Computed, Delayed, Executor};

/// The executor `compute()` uses: the process-wide [`ThreadedExecutor`] (one worker per
/// core), or the [`SequentialExecutor`] if the operating system refuses to start its threads.
#[must_use]
pub fn default_executor() -> &'static dyn Executor {
    match ThreadedExecutor::global() {
        Ok(e) => e,
        Err(_) => &SequentialExecutor,
    }
}

/// `compute()` on lazy values, with the [default executor](default_executor).
pub trait Compute {
    /// The computed value's type.
    type Output;

    /// Computes the value.
    ///
    /// # Errors
    /// The first failing task, naming its key and task name.
    fn compute(&self) -> Result<Self::Output>;

    /// Computes the value with options (hooks, cache, failure policy, cancellation).
    ///
    /// # Errors
    /// As [`compute`](Compute::compute); under keep-going, [`Error::Incomplete`].
    fn compute_opts(&self, options: &ComputeOptions) -> Result<Self::Output>;
}

impl<T: Clone + Send + Sync + 'static> Compute for Delayed<T> {
    type Output = T;

    fn compute(&self) -> Result<T> {
        self.compute_with(default_executor())
    }

    fn compute_opts(&self, options: &ComputeOptions) -> Result<T> {
        self.compute_with_options(default_executor(), options)
    }
}

/// Computes several values (of any types) in one graph, sharing common work.
///
/// ```
/// use brisk_exec::compute_all;
/// use brisk_graph::{lit, pure};
///
/// let a = pure("inc", |x: i64| x + 1, (lit(1),));
/// let b = pure("name", |x: i64| format!("n{x}"), (&a,));
/// let out = compute_all([a.erase(), b.erase()]).unwrap();
/// assert_eq!(out.get(&a).unwrap(), 2);
/// assert_eq!(out.get(&b).unwrap(), "n2");
/// ```
///
/// # Errors
/// The first failing task, naming its key and task name.
pub fn compute_all<I>(outputs: I) -> Result<Computed>
where
    I: IntoIterator,
    I::Item: Into<AnyDelayed>,
{
    ComputeOptions::new().run(default_executor(), outputs)
}

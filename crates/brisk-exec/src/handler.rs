//! One handle for running work locally or on a cluster, chosen by an address.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use brisk_graph::{AnyDelayed, BoxError, ComputeOptions, Computed, Delayed, Executor};

use crate::futures::{FutState, TaskFuture};
use crate::pool::Job;
use crate::sequential::SequentialExecutor;
use crate::task::panic_message;
use crate::threaded::ThreadedExecutor;

/// Items each worker gets per batch of [`Handler::batched_map`] by default: enough that the
/// barrier at the end of a batch (waiting for its slowest item) is amortized, few enough that
/// only a small window of the input is in memory.
pub const BATCH_ITEMS_PER_WORKER: usize = 64;

/// Why a handler call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The address names a scheme this build cannot run (cluster schemes are registered by
    /// their crates, e.g. `slurm` by `brisk-cluster` once it is linked).
    #[error(
        "unsupported handler scheme `{scheme}` in address `{address}` (supported: `threads`, `threads://N`, `sync`{})",
        registered_schemes()
    )]
    UnsupportedScheme {
        /// The whole address.
        address: String,
        /// Its scheme.
        scheme: String,
    },
    /// A registered backend could not start (for Slurm: `sbatch` missing, store unreachable).
    #[error("cannot start the backend for `{address}`")]
    Backend {
        /// The whole address.
        address: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Closures cannot be sent to this backend (a cluster runs registered `#[task]` functions
    /// only): use [`Handler::compute_map`] / [`Handler::batched_compute_map`] with a task, or
    /// [`Handler::compute`] on a graph of tasks.
    #[error(
        "`{address}` cannot run closures (submit, map, batched_map): use compute_map or batched_compute_map with a #[task] function, or compute() on a graph of tasks"
    )]
    ClosuresNotSupported {
        /// The whole address.
        address: String,
    },
    /// The address is malformed.
    #[error("invalid handler address `{address}`: {reason}")]
    InvalidAddress {
        /// The whole address.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Work was submitted after [`Handler::close`].
    #[error("the handler is closed")]
    Closed,
    /// `batched_map` was given a batch size of 0.
    #[error("batch size must be at least 1")]
    ZeroBatchSize,
    /// The submitted work returned an error.
    #[error("{} failed", item(*index))]
    Failed {
        /// Position of the item in the input of `map`/`batched_map` (`None` for `submit`).
        index: Option<usize>,
        /// The work's error.
        #[source]
        source: BoxError,
    },
    /// The submitted work panicked.
    #[error("{} panicked: {message}", item(*index))]
    Panicked {
        /// Position of the item in its input (`None` for `submit`).
        index: Option<usize>,
        /// The panic message.
        message: String,
    },
    /// The work was cancelled before it started.
    #[error("{} was cancelled before it started", item(*index))]
    Cancelled {
        /// Position of the item in its input (`None` for `submit`).
        index: Option<usize>,
    },
    /// The worker threads could not be started.
    #[error("cannot start worker threads")]
    Start(#[source] brisk_graph::Error),
    /// A graph compute failed.
    #[error(transparent)]
    Compute(#[from] brisk_graph::Error),
    /// An internal invariant was violated (a bug in Brisk).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A backend for [`Handler::new`] registered by another crate (`brisk-cluster` registers
/// `slurm`): `make` turns the whole address into an executor for graphs.
///
/// Register one at link time with the [`inventory`](https://docs.rs/inventory) crate:
///
/// ```ignore
/// inventory::submit! { brisk_exec::HandlerBackend::new("myscheme", make_my_executor) }
/// ```
#[derive(Debug)]
pub struct HandlerBackend {
    scheme: &'static str,
    make: fn(&str) -> Result<Arc<dyn Executor>, BoxError>,
}

impl HandlerBackend {
    /// A backend for addresses `scheme://…`.
    #[must_use]
    pub const fn new(
        scheme: &'static str,
        make: fn(&str) -> Result<Arc<dyn Executor>, BoxError>,
    ) -> Self {
        Self { scheme, make }
    }
}

inventory::collect!(HandlerBackend);

fn registered_schemes() -> String {
    inventory::iter::<HandlerBackend>
        .into_iter()
        .map(|b| format!(", `{}://…`", b.scheme))
        .collect()
}

fn item(index: Option<usize>) -> String {
    match index {
        Some(i) => format!("item {i}"),
        None => "submitted work".to_owned(),
    }
}

impl HandlerError {
    /// The input position of the item this error is about, if any.
    #[must_use]
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::Failed { index, .. }
            | Self::Panicked { index, .. }
            | Self::Cancelled { index } => *index,
            _ => None,
        }
    }
}

enum Backend {
    Threads(ThreadedExecutor),
    Sync,
    External(Arc<dyn Executor>),
}

/// Counts work submitted through one handler and not finished yet. The count is an atomic
/// (submitting and finishing an item are one atomic step each, no lock); the lock and the
/// condition variable only serve `close`, which waits for zero.
#[derive(Default)]
struct Outstanding {
    count: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Outstanding {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }
    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Under the lock, so a `wait_zero` between its check and its wait cannot miss it.
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.zero.notify_all();
        }
    }
    fn wait_zero(&self) {
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while self.count.load(Ordering::Acquire) > 0 {
            guard = self
                .zero
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// How many items of an input of known length [`Handler`] hands the pool at once (see
/// `Handler::spawn_each`).
const SPAWN_CHUNK: usize = 64;

/// How long the first item of a chunk may wait for the chunk to fill before it is handed to
/// the pool anyway.
const SPAWN_WAIT: Duration = Duration::from_micros(100);

/// Every how many items a chunk looks at the clock (see `SPAWN_WAIT`).
const SPAWN_CLOCK: usize = 8;

/// What the jobs of one chunk of items share: the function, and one count of outstanding
/// work, released when the last job is dropped (after it ran, or with the pool).
struct Chunk<F> {
    f: Arc<F>,
    _outstanding: OutstandingGuard,
}

/// One count of [`Outstanding`] work, given back on drop.
struct OutstandingGuard(Arc<Outstanding>);

impl OutstandingGuard {
    fn new(outstanding: &Arc<Outstanding>) -> Self {
        outstanding.add();
        Self(Arc::clone(outstanding))
    }
}

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.0.done();
    }
}

/// Runs one item of a future (unless it was cancelled) and completes its future; a panic
/// becomes the future's error.
fn run_item<I, T, E, F>(state: &FutState<T>, index: Option<usize>, f: &F, x: I)
where
    E: Into<BoxError>,
    F: Fn(I) -> Result<T, E>,
{
    if state.is_cancelled() {
        state.complete(Err(HandlerError::Cancelled { index }));
        return;
    }
    let r = match catch_unwind(AssertUnwindSafe(|| f(x))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(HandlerError::Failed {
            index,
            source: source.into(),
        }),
        Err(payload) => Err(HandlerError::Panicked {
            index,
            message: panic_message(payload.as_ref()),
        }),
    };
    state.complete(r);
}

/// Runs work on the backend named by an address, so the calling code never changes between a
/// laptop and a cluster (aics-dask-utils' `DistributedHandler`, done right).
///
/// | address | backend |
/// |---|---|
/// | `Handler::local()`, `"threads"`, `"local"`, `""` | the process-wide thread pool (one worker per core) |
/// | `"threads://N"` | a pool of its own with `N` workers |
/// | `"sync"` | everything on the caller's thread (breakpoints and prints work) |
/// | `"slurm://…"` | Slurm, when `brisk-cluster` is linked (call `brisk_cluster::init()` in `main`): graphs of `#[task]` functions only; closures are [`HandlerError::ClosuresNotSupported`] |
/// | other schemes | [`HandlerError::UnsupportedScheme`] |
///
/// The same calls behave the same on every backend: `map` and `submit` run every call (they
/// are **not** de-duplicated, even for equal arguments — use [`Handler::compute`] on lazy
/// values for content-addressed de-duplication); results come back in input order; errors
/// name the item's index.
///
/// [`close`](Handler::close) waits for the work already submitted; submitting afterwards is
/// [`HandlerError::Closed`]; closing twice is harmless; dropping a handler closes it.
///
/// ```
/// use brisk_exec::Handler;
///
/// let handler = Handler::local()?;
/// let futures = handler.map(|x: u64| x + 1, [1, 2, 3])?;
/// assert_eq!(handler.gather(futures)?, vec![2, 3, 4]);
///
/// // Large inputs: a lazy iterator, at most a batch of items in flight, results in order.
/// let squares = handler.batched_map(|x: u64| x * x, 0..100_000u64, 1_000)?;
/// assert_eq!(squares[99_999], 99_999 * 99_999);
/// # Ok::<(), brisk_exec::HandlerError>(())
/// ```
pub struct Handler {
    address: String,
    backend: Backend,
    closed: AtomicBool,
    outstanding: Arc<Outstanding>,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("address", &self.address)
            .field("workers", &self.workers())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Handler {
    /// A handler on the process-wide thread pool.
    ///
    /// # Errors
    /// [`HandlerError::Start`] when the pool's threads cannot be started.
    pub fn local() -> Result<Self, HandlerError> {
        Self::new("threads")
    }

    /// A handler for `address` (see the table above).
    ///
    /// # Errors
    /// [`HandlerError::UnsupportedScheme`], [`HandlerError::InvalidAddress`],
    /// [`HandlerError::Start`].
    pub fn new(address: impl AsRef<str>) -> Result<Self, HandlerError> {
        let address = address.as_ref().trim().to_owned();
        let backend = match address.as_str() {
            "" | "threads" | "local" | "threads://" => Backend::Threads(
                ThreadedExecutor::global()
                    .map_err(HandlerError::Start)?
                    .clone(),
            ),
            "sync" | "sync://" => Backend::Sync,
            other => match other.split_once("://") {
                Some(("sync", rest)) => {
                    return Err(HandlerError::InvalidAddress {
                        reason: format!(
                            "`sync` runs on the caller's thread and takes nothing after it \
                             (`{rest}`): write `sync`"
                        ),
                        address,
                    });
                }
                Some(("threads", rest)) if rest.contains(['?', '&', '#']) => {
                    return Err(HandlerError::InvalidAddress {
                        reason: "`threads://N` takes no options: write `threads://N`".into(),
                        address,
                    });
                }
                Some(("threads", n)) => {
                    let n: usize = n.parse().map_err(|_| HandlerError::InvalidAddress {
                        address: address.clone(),
                        reason: format!("`{n}` is not a number of workers"),
                    })?;
                    if n == 0 {
                        return Err(HandlerError::InvalidAddress {
                            address,
                            reason: "a pool needs at least one worker".into(),
                        });
                    }
                    Backend::Threads(ThreadedExecutor::new(n).map_err(HandlerError::Start)?)
                }
                Some((scheme, _)) => {
                    let Some(b) = inventory::iter::<HandlerBackend>
                        .into_iter()
                        .find(|b| b.scheme == scheme)
                    else {
                        return Err(HandlerError::UnsupportedScheme {
                            scheme: scheme.to_owned(),
                            address,
                        });
                    };
                    Backend::External((b.make)(&address).map_err(|source| {
                        HandlerError::Backend {
                            address: address.clone(),
                            source,
                        }
                    })?)
                }
                None => {
                    return Err(HandlerError::UnsupportedScheme {
                        scheme: other.to_owned(),
                        address,
                    });
                }
            },
        };
        Ok(Self {
            address,
            backend,
            closed: AtomicBool::new(false),
            outstanding: Arc::new(Outstanding::default()),
        })
    }

    /// A handler for an optional address: `None` is [`Handler::local`] (the seed's
    /// `DistributedHandler(None)`).
    ///
    /// # Errors
    /// As [`Handler::new`].
    pub fn from_address(address: Option<&str>) -> Result<Self, HandlerError> {
        Self::new(address.unwrap_or("threads"))
    }

    /// The address this handler was created from.
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }

    /// How many items run at once (1 for `sync`).
    #[must_use]
    pub fn workers(&self) -> usize {
        match &self.backend {
            Backend::Threads(e) => e.workers(),
            Backend::Sync => 1,
            Backend::External(e) => e.parallelism(),
        }
    }

    /// The batch size `batched_map` uses when given `None`: `workers() ×`
    /// [`BATCH_ITEMS_PER_WORKER`].
    #[must_use]
    pub fn default_batch_size(&self) -> usize {
        self.workers() * BATCH_ITEMS_PER_WORKER
    }

    /// The executor lazy values computed through this handler run on.
    #[must_use]
    pub fn executor(&self) -> &dyn Executor {
        match &self.backend {
            Backend::Threads(e) => e,
            Backend::Sync => &SequentialExecutor,
            Backend::External(e) => e.as_ref(),
        }
    }

    fn check_open(&self) -> Result<(), HandlerError> {
        if self.closed.load(Ordering::Acquire) {
            Err(HandlerError::Closed)
        } else {
            Ok(())
        }
    }

    /// Starts `f` and returns its future. `index` labels errors.
    fn spawn<T, F>(&self, index: Option<usize>, f: F) -> TaskFuture<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, BoxError> + Send + 'static,
    {
        let state = FutState::new(index);
        match &self.backend {
            Backend::Threads(e) => {
                let job_state = Arc::clone(&state);
                let outstanding = OutstandingGuard::new(&self.outstanding);
                e.pool().inject([Job::Call(Box::new(move |_worker| {
                    run_item(&job_state, index, &|f: F| f(), f);
                    drop(outstanding);
                }))]);
            }
            Backend::Sync => run_item(&state, index, &|f: F| f(), f),
            Backend::External(_) => state.complete(Err(HandlerError::ClosuresNotSupported {
                address: self.address.clone(),
            })),
        }
        TaskFuture::new(state)
    }

    /// Starts `f` on every `(index, item)`, pushing each item's future to `out` in input
    /// order. Items of an input of known length go to the pool up to [`SPAWN_CHUNK`] at a
    /// time: one injection, one wake-up and one count of outstanding work per chunk, and a
    /// chunk's items share one reference to `f` (no count that the caller's thread and every
    /// worker touch per item). Each item is still its own job, so idle workers steal single
    /// items.
    fn spawn_each<I, T, E, F>(
        &self,
        f: &Arc<F>,
        items: impl IntoIterator<Item = (usize, I)>,
        out: &mut Vec<TaskFuture<T>>,
    ) where
        I: Send + 'static,
        T: Send + 'static,
        E: Into<BoxError>,
        F: Fn(I) -> Result<T, E> + Send + Sync + 'static,
    {
        let e = match &self.backend {
            Backend::Threads(e) => e,
            Backend::External(_) => {
                for (i, _) in items {
                    let state = FutState::new(Some(i));
                    state.complete(Err(HandlerError::ClosuresNotSupported {
                        address: self.address.clone(),
                    }));
                    out.push(TaskFuture::new(state));
                }
                return;
            }
            Backend::Sync => {
                for (i, x) in items {
                    let state = FutState::new(Some(i));
                    run_item(&state, Some(i), &**f, x);
                    out.push(TaskFuture::new(state));
                }
                return;
            }
        };
        let items = items.into_iter();
        // An input of known length is in memory or made on the spot (a range, a vector, a
        // `map` over one): its items go to the pool a chunk at a time. Any other input may
        // block between items (a channel, a directory listing, pages of a remote listing), so
        // each of its items goes out as soon as it is pulled, as if submitted alone.
        let (lo, hi) = items.size_hint();
        let chunk_len = if hi == Some(lo) { SPAWN_CHUNK } else { 1 };
        let mut jobs = Vec::with_capacity(chunk_len);
        // The chunk being filled, and when its first item was pulled (only looked at in
        // chunks of more than one item: a single item goes out at once).
        let mut chunk: Option<(Arc<Chunk<F>>, Option<Instant>)> = None;
        for (i, x) in items {
            let index = Some(i);
            // Counted as outstanding until the last of its items' jobs is dropped.
            let (shared, opened) = chunk.get_or_insert_with(|| {
                let shared = Arc::new(Chunk {
                    f: Arc::clone(f),
                    _outstanding: OutstandingGuard::new(&self.outstanding),
                });
                (shared, (chunk_len > 1).then(Instant::now))
            });
            let state = FutState::new(index);
            let job_state = Arc::clone(&state);
            let shared = Arc::clone(shared);
            jobs.push(Job::Call(Box::new(move |_worker| {
                run_item(&job_state, index, &*shared.f, x);
            })));
            out.push(TaskFuture::new(state));
            // A chunk also goes out once its first item has waited `SPAWN_WAIT` (items that
            // take long to make, such as a `map` over a range that reads a file per item),
            // looked at every `SPAWN_CLOCK` items (a clock read costs a fifth of an item).
            if jobs.len() == chunk_len
                || jobs.len().is_multiple_of(SPAWN_CLOCK)
                    && opened.is_some_and(|t| t.elapsed() >= SPAWN_WAIT)
            {
                e.pool().inject(jobs.drain(..));
                chunk = None;
            }
        }
        if !jobs.is_empty() {
            e.pool().inject(jobs.drain(..));
        }
    }

    /// Runs `f` (now on the caller's thread for `sync`, else on a worker).
    ///
    /// # Errors
    /// [`HandlerError::Closed`] after [`close`](Handler::close).
    pub fn submit<T, F>(&self, f: F) -> Result<TaskFuture<T>, HandlerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.check_open()?;
        Ok(self.spawn(None, move || Ok(f())))
    }

    /// Like [`submit`](Handler::submit) for work that returns a `Result`: an `Err` completes
    /// the future with [`HandlerError::Failed`].
    ///
    /// # Errors
    /// [`HandlerError::Closed`] after [`close`](Handler::close).
    pub fn try_submit<T, E, F>(&self, f: F) -> Result<TaskFuture<T>, HandlerError>
    where
        T: Send + 'static,
        E: Into<BoxError>,
        F: FnOnce() -> Result<T, E> + Send + 'static,
    {
        self.check_open()?;
        Ok(self.spawn(None, move || f().map_err(Into::into)))
    }

    /// Starts `f` on every item; one future per item, in input order.
    ///
    /// Items of an input whose length is known (its `size_hint` is exact: a range, a vector,
    /// a `map` over one) are handed to the workers up to 64 at a time, and at the latest
    /// about 100 µs after the first of them was pulled; if such an input blocks while making
    /// an item, the few made just before wait with it. Items of any other input (a channel,
    /// a directory listing) are handed over one by one as they are pulled. Either way each
    /// item runs on whichever worker is free.
    ///
    /// # Errors
    /// [`HandlerError::Closed`] after [`close`](Handler::close).
    pub fn map<I, T, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = I>,
    ) -> Result<Vec<TaskFuture<T>>, HandlerError>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(I) -> T + Send + Sync + 'static,
    {
        self.try_map(move |x| Ok::<T, BoxError>(f(x)), items)
    }

    /// Like [`map`](Handler::map) for a function that returns a `Result`.
    ///
    /// # Errors
    /// [`HandlerError::Closed`] after [`close`](Handler::close).
    pub fn try_map<I, T, E, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = I>,
    ) -> Result<Vec<TaskFuture<T>>, HandlerError>
    where
        I: Send + 'static,
        T: Send + 'static,
        E: Into<BoxError>,
        F: Fn(I) -> Result<T, E> + Send + Sync + 'static,
    {
        self.check_open()?;
        let items = items.into_iter();
        let mut out = Vec::with_capacity(items.size_hint().0);
        self.spawn_each(&Arc::new(f), items.enumerate(), &mut out);
        Ok(out)
    }

    /// Waits for every future and returns their results in input order (never the futures).
    ///
    /// On the first error (in input order) the futures after it that have not started are
    /// cancelled and the error is returned; results already computed are dropped. Use
    /// [`gather_results`](Handler::gather_results) to keep every result.
    ///
    /// # Errors
    /// The first failing item's error, naming its index.
    pub fn gather<T>(&self, futures: Vec<TaskFuture<T>>) -> Result<Vec<T>, HandlerError> {
        let mut out = Vec::with_capacity(futures.len());
        let mut it = futures.into_iter();
        while let Some(f) = it.next() {
            match f.wait() {
                Ok(v) => out.push(v),
                Err(e) => {
                    for rest in it {
                        rest.cancel();
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Waits for every future and returns each one's result, in input order.
    #[must_use]
    pub fn gather_results<T>(&self, futures: Vec<TaskFuture<T>>) -> Vec<Result<T, HandlerError>> {
        futures.into_iter().map(TaskFuture::wait).collect()
    }

    /// Applies `f` to every item of a possibly huge or unbounded-length iterator, a batch at a
    /// time: it pulls at most `batch_size` items (`None`: [`default_batch_size`]), runs them,
    /// waits for the batch, then pulls the next. Input is never collected, only
    /// `batch_size` items are in flight, results come back in input order.
    ///
    /// When an item fails, no further batch starts, the not-yet-started items of its batch are
    /// cancelled, the others in the batch finish, and the error of the first failing item (in
    /// input order) is returned; the results computed so far are dropped. Use
    /// [`batched_map_results`](Handler::batched_map_results) to get every item's outcome.
    ///
    /// [`default_batch_size`]: Handler::default_batch_size
    ///
    /// # Errors
    /// [`HandlerError::ZeroBatchSize`], [`HandlerError::Closed`], or the failing item's error.
    pub fn batched_map<I, T, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = I>,
        batch_size: impl Into<Option<usize>>,
    ) -> Result<Vec<T>, HandlerError>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(I) -> T + Send + Sync + 'static,
    {
        self.try_batched_map(move |x| Ok::<T, BoxError>(f(x)), items, batch_size)
    }

    /// Like [`batched_map`](Handler::batched_map) for a function that returns a `Result`.
    ///
    /// # Errors
    /// As [`batched_map`](Handler::batched_map).
    pub fn try_batched_map<I, T, E, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = I>,
        batch_size: impl Into<Option<usize>>,
    ) -> Result<Vec<T>, HandlerError>
    where
        I: Send + 'static,
        T: Send + 'static,
        E: Into<BoxError>,
        F: Fn(I) -> Result<T, E> + Send + Sync + 'static,
    {
        let mut out = Vec::new();
        self.batches(f, items, batch_size, |batch| {
            out.extend(self.gather(batch)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Like [`try_batched_map`](Handler::try_batched_map) but runs every item whatever
    /// happens to the others and returns each item's result, in input order.
    ///
    /// # Errors
    /// Only [`HandlerError::ZeroBatchSize`] and [`HandlerError::Closed`].
    pub fn batched_map_results<I, T, E, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = I>,
        batch_size: impl Into<Option<usize>>,
    ) -> Result<Vec<Result<T, HandlerError>>, HandlerError>
    where
        I: Send + 'static,
        T: Send + 'static,
        E: Into<BoxError>,
        F: Fn(I) -> Result<T, E> + Send + Sync + 'static,
    {
        let mut out = Vec::new();
        self.batches(f, items, batch_size, |batch| {
            out.extend(self.gather_results(batch));
            Ok(())
        })?;
        Ok(out)
    }

    /// Feeds `items` to `f` a batch at a time; `each` consumes a batch's futures (an error
    /// stops before the next batch is pulled).
    fn batches<I, T, E, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = I>,
        batch_size: impl Into<Option<usize>>,
        mut each: impl FnMut(Vec<TaskFuture<T>>) -> Result<(), HandlerError>,
    ) -> Result<(), HandlerError>
    where
        I: Send + 'static,
        T: Send + 'static,
        E: Into<BoxError>,
        F: Fn(I) -> Result<T, E> + Send + Sync + 'static,
    {
        let batch_size = batch_size
            .into()
            .unwrap_or_else(|| self.default_batch_size());
        if batch_size == 0 {
            return Err(HandlerError::ZeroBatchSize);
        }
        self.check_open()?;
        let f = Arc::new(f);
        let mut items = items.into_iter().enumerate();
        loop {
            let mut batch = Vec::with_capacity(batch_size);
            self.spawn_each(&f, items.by_ref().take(batch_size), &mut batch);
            if batch.is_empty() {
                return Ok(());
            }
            each(batch)?;
        }
    }

    /// Computes a lazy value on this handler's executor (graph de-duplication applies).
    ///
    /// # Errors
    /// [`HandlerError::Closed`], or the compute's error.
    pub fn compute<T: Clone + Send + Sync + 'static>(
        &self,
        value: &Delayed<T>,
    ) -> Result<T, HandlerError> {
        self.check_open()?;
        Ok(value.compute_with(self.executor())?)
    }

    /// Computes several lazy values in one graph on this handler's executor.
    ///
    /// # Errors
    /// [`HandlerError::Closed`], or the compute's error.
    pub fn compute_all<I>(
        &self,
        outputs: I,
        options: &ComputeOptions,
    ) -> Result<Computed, HandlerError>
    where
        I: IntoIterator,
        I::Item: Into<AnyDelayed>,
    {
        self.check_open()?;
        Ok(options.run(self.executor(), outputs)?)
    }

    /// Applies `task` — a `#[task]` function, or any function building a lazy value — to every
    /// item and computes all the results as one graph on this handler's executor. Unlike
    /// [`map`](Handler::map) it works on every backend, Slurm included (the task travels by
    /// its registered name), and equal items are computed once. Results in input order.
    ///
    /// ```
    /// use brisk_exec::Handler;
    /// use brisk_graph::{Delayed, TaskSpec};
    ///
    /// let square = |x: u64| -> Delayed<u64> { TaskSpec::new("square").pure().call(|x: u64| x * x, (x,)) };
    /// assert_eq!(Handler::local()?.compute_map(square, [1, 2, 3, 2])?, vec![1, 4, 9, 4]);
    /// # Ok::<(), brisk_exec::HandlerError>(())
    /// ```
    ///
    /// # Errors
    /// [`HandlerError::Closed`], or the compute's error (naming the failing task's key).
    pub fn compute_map<I, T, F>(
        &self,
        task: F,
        items: impl IntoIterator<Item = I>,
    ) -> Result<Vec<T>, HandlerError>
    where
        F: Fn(I) -> Delayed<T>,
        T: Clone + Send + Sync + 'static,
    {
        self.check_open()?;
        let lazy: Vec<Delayed<T>> = items.into_iter().map(task).collect();
        let mut computed = ComputeOptions::new().run(self.executor(), lazy.iter())?;
        // Move each distinct result out once; equal items share it.
        let mut first: std::collections::HashMap<&brisk_graph::Key, usize> =
            std::collections::HashMap::new();
        let mut out: Vec<T> = Vec::with_capacity(lazy.len());
        for (i, d) in lazy.iter().enumerate() {
            match first.get(d.key()) {
                Some(&j) => {
                    let v = out[j].clone();
                    out.push(v);
                }
                None => {
                    first.insert(d.key(), i);
                    out.push(computed.take(d)?);
                }
            }
        }
        Ok(out)
    }

    /// [`compute_map`](Handler::compute_map) over a lazy iterator, `batch` items per graph,
    /// so only one batch of inputs is materialised at a time. Results in input order.
    ///
    /// # Errors
    /// [`HandlerError::ZeroBatchSize`], [`HandlerError::Closed`], or a compute's error.
    pub fn batched_compute_map<I, T, F>(
        &self,
        task: F,
        items: impl IntoIterator<Item = I>,
        batch: usize,
    ) -> Result<Vec<T>, HandlerError>
    where
        F: Fn(I) -> Delayed<T>,
        T: Clone + Send + Sync + 'static,
    {
        if batch == 0 {
            return Err(HandlerError::ZeroBatchSize);
        }
        let mut out = Vec::new();
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<I> = it.by_ref().take(batch).collect();
            out.extend(self.compute_map(&task, chunk)?);
        }
        Ok(out)
    }

    /// Stops accepting work and waits until everything submitted has finished. Closing twice
    /// is harmless.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.outstanding.wait_zero();
    }

    /// Whether [`close`](Handler::close) was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.close();
    }
}

//! Dynamic sources: partitions whose inputs arrive while the compute runs, in any order, some
//! of them failing.
//!
//! A [`Source`] is fed at run time through a [`Feed`] held by a producer on any thread (a
//! poller, a directory watcher, a socket reader). Only the *descriptors* pushed into the feed
//! enter the graph: each partition's key is derived from its descriptor's token, so the same
//! inputs give the same keys on every run and machine, whatever order they arrive in.
//!
//! The per-partition work is written once ([`Source::map`], [`Pipeline::map`],
//! [`Pipeline::then`] for any lazy graph, arrays included) and instantiated as an ordinary
//! static graph for each descriptor the moment it arrives; that partition runs on the
//! executor at once, while later inputs are still pending. Results are combined in **key
//! order**, so a reduction is bit-for-bit the same however the inputs arrived
//! ([`Order::Arrival`] trades that for folding as partitions finish).
//!
//! ```
//! use brisk_exec::{ThreadedExecutor, source::{Source, SourceOptions}};
//!
//! let (source, feed) = Source::<u32>::new("numbers", 4);
//! let producer = std::thread::spawn(move || {
//!     for i in [3u32, 1, 2] {
//!         feed.push(i)?; // blocks while 4 inputs wait to be taken
//!     }
//!     feed.seal()
//! });
//! let squares = source.map("square", |i: u32| u64::from(i) * u64::from(i));
//! let (sum, report) = squares.fold(
//!     &ThreadedExecutor::new(2)?,
//!     &SourceOptions::new(),
//!     0u64,
//!     |acc, x| acc + x,
//! )?;
//! producer.join().expect("producer thread")?;
//! assert_eq!(sum, 14);
//! assert_eq!(report.succeeded(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brisk_graph::{
    AnyDelayed, BoxError, CancelToken, ComputeOptions, Delayed, Error, Executor, Graph, Key,
    RunContext, TaskFn, TaskSpec, Token, Tokenize, TokenizeError, lit,
};
use crossbeam_channel::{Receiver, Select, Sender, TrySendError};

/// What a producer sends.
enum Event<D> {
    Push(D),
    Fail(FailedInput<D>, String),
    Seal,
    Abort(String),
}

/// An input the producer reports as failed, by descriptor or by an id when no descriptor
/// exists (the upstream service failed before naming a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedInput<D> {
    /// The input's descriptor.
    Descriptor(D),
    /// An identifier of the input (a request id, an upstream file name).
    Id(String),
}

impl<D> From<D> for FailedInput<D> {
    fn from(d: D) -> Self {
        Self::Descriptor(d)
    }
}

/// The producer's handle on a [`Source`]: `Send + Clone`, backed by a bounded channel, so a
/// producer that runs ahead of the compute blocks in [`push`](Feed::push).
pub struct Feed<D> {
    tx: Sender<Event<D>>,
}

impl<D> Clone for Feed<D> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<D> fmt::Debug for Feed<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("queued", &self.tx.len())
            .field("capacity", &self.tx.capacity())
            .finish()
    }
}

/// The compute behind a [`Feed`] has ended (it finished, failed or was dropped): the input
/// was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the dynamic source is no longer running (its compute ended or was dropped)")]
pub struct FeedClosed;

/// Why [`Feed::try_push`] did not take an input; the input is handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum TryPushError<D> {
    /// The channel is full: the compute has not caught up (backpressure).
    Full(D),
    /// The compute has ended.
    Closed(D),
}

impl<D> Feed<D> {
    fn send(&self, e: Event<D>) -> Result<(), FeedClosed> {
        self.tx.send(e).map_err(|_| FeedClosed)
    }

    /// Adds an input; blocks while the channel is full.
    ///
    /// # Errors
    /// [`FeedClosed`] when the compute has ended.
    pub fn push(&self, descriptor: D) -> Result<(), FeedClosed> {
        self.send(Event::Push(descriptor))
    }

    /// Adds an input if there is room now.
    ///
    /// # Errors
    /// [`TryPushError::Full`] (backpressure) or [`TryPushError::Closed`], with the input.
    pub fn try_push(&self, descriptor: D) -> Result<(), TryPushError<D>> {
        self.tx
            .try_send(Event::Push(descriptor))
            .map_err(|e| match e {
                TrySendError::Full(Event::Push(d)) => TryPushError::Full(d),
                TrySendError::Disconnected(Event::Push(d)) => TryPushError::Closed(d),
                _ => unreachable!("only a push was sent"),
            })
    }

    /// Reports an input that failed upstream (it counts as received, and as failed).
    ///
    /// # Errors
    /// [`FeedClosed`] when the compute has ended.
    pub fn fail(
        &self,
        input: impl Into<FailedInput<D>>,
        error: impl fmt::Display,
    ) -> Result<(), FeedClosed> {
        self.send(Event::Fail(input.into(), error.to_string()))
    }

    /// Reports an input that failed upstream before it had a descriptor, by an id (a request
    /// id, the name the service gave it). Same as `fail(FailedInput::Id(id), error)`.
    ///
    /// # Errors
    /// [`FeedClosed`] when the compute has ended.
    pub fn fail_id(
        &self,
        id: impl Into<String>,
        error: impl fmt::Display,
    ) -> Result<(), FeedClosed> {
        self.fail(FailedInput::Id(id.into()), error)
    }

    /// No more inputs will come. If the source announced a count, fewer inputs is an error
    /// under [`Policy::FailFast`] and a reported gap under [`Policy::Tolerate`].
    ///
    /// # Errors
    /// [`FeedClosed`] when the compute has ended.
    pub fn seal(&self) -> Result<(), FeedClosed> {
        self.send(Event::Seal)
    }

    /// Stops the compute: running partitions are cancelled and the compute returns
    /// [`SourceError::Aborted`] with `reason`.
    pub fn abort(&self, reason: impl fmt::Display) {
        let _ = self.send(Event::Abort(reason.to_string()));
    }
}

/// A layer of partitions fed at run time. Create it with [`Source::new`], describe the
/// per-partition work with [`map`](Source::map) / [`then`](Source::then), and run it with
/// [`Pipeline::run`] or [`Pipeline::fold`].
pub struct Source<D> {
    name: String,
    rx: Receiver<Event<D>>,
    expected: Option<usize>,
}

impl<D> fmt::Debug for Source<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

type Build<D, T> = Arc<dyn Fn(&D) -> Result<Delayed<T>, BoxError> + Send + Sync>;

impl<D> Source<D>
where
    D: Tokenize + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// A source named `name` (the prefix of its partitions' ids) whose feed holds at most
    /// `capacity` inputs not yet taken by the compute (at least 1).
    #[must_use]
    pub fn new(name: &str, capacity: usize) -> (Self, Feed<D>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        (
            Self {
                name: name.to_owned(),
                rx,
                expected: None,
            },
            Feed { tx },
        )
    }

    /// Like [`new`](Source::new) for a source whose input count is known up front:
    /// `expected` inputs (pushed or failed) will arrive.
    #[must_use]
    pub fn counted(name: &str, capacity: usize, expected: usize) -> (Self, Feed<D>) {
        let (mut source, feed) = Self::new(name, capacity);
        source.expected = Some(expected);
        (source, feed)
    }

    /// The announced input count, if any.
    #[must_use]
    pub fn expected(&self) -> Option<usize> {
        self.expected
    }

    /// The per-partition work as a lazy graph on the descriptor (as a lazy value): any graph.
    /// Its task keys must not depend on anything but the descriptor (use pure tasks) for
    /// reruns to find their checkpoints.
    pub fn then<T>(
        self,
        build: impl Fn(Delayed<D>) -> Delayed<T> + Send + Sync + 'static,
    ) -> Pipeline<D, T>
    where
        T: Clone + Send + Sync + 'static,
    {
        Pipeline {
            source: self,
            build: Arc::new(move |d: &D| Ok(build(lit(d.clone())))),
        }
    }

    /// The per-partition work built from the descriptor's *value* when it arrives: for
    /// graphs whose shape depends on it (a chunked array of the size the descriptor gives).
    /// A build error fails that partition (as a task named `<source>-build`). The same rule
    /// holds: keys must depend only on the descriptor.
    pub fn build<T, E>(
        self,
        build: impl Fn(&D) -> Result<Delayed<T>, E> + Send + Sync + 'static,
    ) -> Pipeline<D, T>
    where
        T: Clone + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        Pipeline {
            source: self,
            build: Arc::new(move |d: &D| build(d).map_err(Into::into)),
        }
    }

    /// The per-partition work as one pure task named `name` applied to the descriptor (see
    /// [`Pipeline::map`]: `f` captures nothing; parameters go through
    /// [`map_with`](Source::map_with), handles through [`try_map_using`](Source::try_map_using)).
    pub fn map<T, F>(self, name: &str, f: F) -> Pipeline<D, T>
    where
        F: TaskFn<(D,), Output = T>,
        T: Clone + Send + Sync + 'static,
    {
        self.then(|d| d).map(name, f)
    }

    /// Like [`map`](Source::map) for a fallible function: an `Err` fails the partition.
    pub fn try_map<T, E, F>(self, name: &str, f: F) -> Pipeline<D, T>
    where
        F: TaskFn<(D,), Output = Result<T, E>>,
        T: Clone + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        self.then(|d| d).try_map(name, f)
    }

    /// The per-partition work with parameters that are part of its key (see
    /// [`Pipeline::map_with`]).
    pub fn map_with<T, P, F>(self, name: &str, params: P, f: F) -> Pipeline<D, T>
    where
        F: TaskFn<(D, P), Output = T>,
        P: Tokenize + Clone + Send + Sync + 'static,
        T: Clone + Send + Sync + 'static,
    {
        self.then(|d| d).map_with(name, params, f)
    }

    /// The per-partition work with a handle left out of its key (see
    /// [`Pipeline::try_map_using`]).
    pub fn try_map_using<T, H, E, F>(self, name: &str, handle: H, f: F) -> Pipeline<D, T>
    where
        F: TaskFn<(D, H), Output = Result<T, E>>,
        H: Clone + Send + Sync + 'static,
        T: Clone + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        self.then(|d| d).try_map_using(name, handle, f)
    }

    /// The id of the partition a descriptor makes: `name/` + the descriptor's token.
    ///
    /// # Errors
    /// The descriptor cannot be tokenized (its `Serialize` failed).
    pub fn partition_id(&self, descriptor: &D) -> Result<Key, TokenizeError> {
        Ok(Key::new(self.name.clone(), descriptor.token()?))
    }
}

/// Why a pipeline's function must capture nothing.
const NO_CAPTURES: &str = "a pipeline step's key is its name and its inputs, so its function \
                           must capture nothing: pass parameters with `map_with`, handles \
                           with `try_map_using`";

/// The spec of a pipeline step: pure, keyed by its name and inputs. Its function is a shared
/// `Arc` of a zero-sized function (checked at compile time where the step is added), so it
/// captures no state.
fn keyed_spec(name: &str) -> TaskSpec {
    TaskSpec::new(name.to_owned())
        .pure()
        .captures_covered_by_args()
}

/// A task function shared between partitions (each partition's task holds an `Arc` of it).
struct Shared<F>(Arc<F>);

impl<P, F: TaskFn<P>> TaskFn<P> for Shared<F> {
    type Output = F::Output;
    fn call_erased(&self, args: Vec<brisk_graph::Value>) -> Result<Self::Output, BoxError> {
        self.0.call_erased(args)
    }
}

/// A source with its per-partition work.
pub struct Pipeline<D, T> {
    source: Source<D>,
    build: Build<D, T>,
}

impl<D, T> fmt::Debug for Pipeline<D, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What to do when a partition fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Stop at the first failed partition (after its retries), cancel the others, and return
    /// the error naming the descriptor.
    #[default]
    FailFast,
    /// Go on: the result covers the partitions that succeeded, and the report lists every
    /// partition with its status and error.
    Tolerate,
}

/// In which order partition results are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Order {
    /// By partition id: the same result bits however the inputs arrived. Results are held
    /// until the source is sealed and every partition is done.
    #[default]
    Key,
    /// As partitions finish: no result is held, but a non-associative combine (a float sum)
    /// may differ between runs in its last bits.
    Arrival,
}

/// How a source runs.
#[derive(Debug, Clone)]
#[must_use]
pub struct SourceOptions {
    policy: Policy,
    retries: u32,
    order: Order,
    in_flight: Option<usize>,
    compute: ComputeOptions,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SourceOptions {
    /// Fail fast, no retries, key order, `2 × workers` partitions in flight, default compute
    /// options.
    pub fn new() -> Self {
        Self {
            policy: Policy::FailFast,
            retries: 0,
            order: Order::Key,
            in_flight: None,
            compute: ComputeOptions::new(),
        }
    }

    /// The failure policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Shorthand for [`Policy::Tolerate`].
    pub fn tolerate(self) -> Self {
        self.policy(Policy::Tolerate)
    }

    /// Runs a failed partition up to `n` more times before it counts as failed.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// The combine order.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// At most `n` partitions run at once (at least 1); the feed's channel holds the rest,
    /// and the producer blocks when it is full.
    pub fn in_flight(mut self, n: usize) -> Self {
        self.in_flight = Some(n.max(1));
        self
    }

    /// Hooks, a checkpoint cache (finished partitions are loaded, not recomputed), the
    /// cancel token (cancelling it aborts the run). The failure policy of `compute` applies
    /// inside a partition; [`SourceOptions::policy`] decides across partitions.
    pub fn compute(mut self, compute: ComputeOptions) -> Self {
        self.compute = compute;
        self
    }
}

/// How a partition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Its graph ran and produced a result.
    Computed,
    /// Its result was loaded from a checkpoint.
    Loaded,
    /// Its graph failed (after all attempts).
    Failed,
    /// The producer reported the input as failed; nothing ran.
    FailedUpstream,
    /// The run stopped (fail-fast or abort) before it finished.
    Cancelled,
}

/// One partition in a [`SourceReport`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PartitionReport<D> {
    /// The partition id (`source/token`), or for an input failed by id, `source/` + the
    /// id's token.
    pub id: Key,
    /// The descriptor (absent for an input failed by id).
    pub descriptor: Option<D>,
    /// The id an input was failed by, if it was.
    pub failed_id: Option<String>,
    /// How it ended.
    pub status: Status,
    /// Its error, with causes, if it failed.
    pub error: Option<String>,
    /// Graph runs (0 when nothing ran).
    pub attempts: u32,
    /// Time from its first run's start to its last run's end.
    pub duration: Duration,
    /// 0-based position in arrival order (for diagnostics only: results never depend on it).
    pub arrival: usize,
}

/// Every partition of a run, in id order, plus the counts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SourceReport<D> {
    /// The partitions, in id order.
    pub partitions: Vec<PartitionReport<D>>,
    /// The count announced with [`Source::counted`].
    pub expected: Option<usize>,
    /// Inputs received (pushed or failed), duplicates not counted.
    pub received: usize,
    /// Inputs pushed again after their first arrival (ignored: one partition per id).
    pub duplicates: usize,
}

impl<D> SourceReport<D> {
    /// Partitions that produced a result (computed or loaded).
    #[must_use]
    pub fn succeeded(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| matches!(p.status, Status::Computed | Status::Loaded))
            .count()
    }

    /// Partitions loaded from checkpoints.
    #[must_use]
    pub fn loaded(&self) -> usize {
        self.count(Status::Loaded)
    }

    /// Partitions that failed, here or upstream.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| matches!(p.status, Status::Failed | Status::FailedUpstream))
            .count()
    }

    fn count(&self, s: Status) -> usize {
        self.partitions.iter().filter(|p| p.status == s).count()
    }

    /// Announced inputs that never arrived (0 without an announced count).
    #[must_use]
    pub fn missing(&self) -> usize {
        self.expected.map_or(0, |e| e.saturating_sub(self.received))
    }

    /// Whether every announced input arrived and every partition succeeded.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.missing() == 0 && self.succeeded() == self.partitions.len()
    }
}

/// Why a run over a dynamic source failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A partition's graph failed (fail-fast).
    #[error(
        "partition {id} of source `{source_name}` ({descriptor}) failed after {attempts} attempt(s)"
    )]
    Partition {
        /// The source.
        source_name: String,
        /// The partition id.
        id: Key,
        /// The descriptor, as `{:?}`.
        descriptor: String,
        /// Graph runs made.
        attempts: u32,
        /// The compute's error (names the failing task).
        #[source]
        source: Box<Error>,
    },
    /// The producer reported an input as failed (fail-fast).
    #[error("input {input} of source `{source_name}` failed upstream: {error}")]
    InputFailed {
        /// The source.
        source_name: String,
        /// The descriptor (`{:?}`) or id.
        input: String,
        /// What the producer reported.
        error: String,
    },
    /// The source was sealed with fewer inputs than announced (fail-fast).
    #[error("source `{source_name}` was sealed after {received} of {expected} announced inputs")]
    Missing {
        /// The source.
        source_name: String,
        /// Announced.
        expected: usize,
        /// Received (pushed or failed).
        received: usize,
    },
    /// More inputs arrived than announced (always an error: the count or the producer is
    /// wrong, and a result over them could not be trusted).
    #[error("source `{source_name}` received input {received} ({input}) but announced {expected}")]
    TooMany {
        /// The source.
        source_name: String,
        /// Announced.
        expected: usize,
        /// Received so far, this one included.
        received: usize,
        /// The extra input (`{:?}`).
        input: String,
    },
    /// Every feed handle was dropped without [`Feed::seal`]: the producer stopped early, so
    /// the inputs may be incomplete.
    #[error(
        "every feed of source `{source_name}` was dropped without seal() after {received} input(s); the producer stopped early"
    )]
    Unsealed {
        /// The source.
        source_name: String,
        /// Received.
        received: usize,
    },
    /// [`Feed::abort`] was called, or the compute's cancel token was cancelled.
    #[error("source `{source_name}` was aborted: {reason}")]
    Aborted {
        /// The source.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A descriptor could not be tokenized, so it has no stable id.
    #[error("descriptor {descriptor} of source `{source_name}` has no stable id")]
    Descriptor {
        /// The source.
        source_name: String,
        /// The descriptor (`{:?}`).
        descriptor: String,
        /// Why.
        #[source]
        source: TokenizeError,
    },
}

/// What [`Pipeline::run`] returns: every successful partition's result in id order, and the
/// report.
#[derive(Debug)]
#[non_exhaustive]
pub struct SourceOutput<D, T> {
    /// `(partition id, result)` in id order.
    pub results: Vec<(Key, T)>,
    /// Every partition.
    pub report: SourceReport<D>,
}

/// A partition run handed to a runner thread.
struct Job {
    slot: usize,
    graph: Arc<Graph>,
}

/// A runner's answer.
struct Done {
    slot: usize,
    result: Result<brisk_graph::RunOutput, Error>,
    loaded: bool,
    attempts: u32,
    started: Instant,
    ended: Instant,
}

struct Slot<D> {
    id: Key,
    descriptor: D,
    out: Key,
    arrival: usize,
}

impl<D, T> Pipeline<D, T>
where
    D: Tokenize + Clone + fmt::Debug + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// Adds a pure task named `name` applied to each partition's result. The task's key is
    /// its name and its input, so `f` must capture nothing (checked at compile time): pass
    /// parameters with [`map_with`](Pipeline::map_with), handles with
    /// [`try_map_using`](Pipeline::try_map_using), and give a changed function a new name.
    pub fn map<U, F>(self, name: &str, f: F) -> Pipeline<D, U>
    where
        F: TaskFn<(T,), Output = U>,
        U: Clone + Send + Sync + 'static,
    {
        const { assert!(std::mem::size_of::<F>() == 0, "{}", NO_CAPTURES) };
        let spec = keyed_spec(name);
        let f = Arc::new(f);
        self.then(move |x| spec.call(Shared(Arc::clone(&f)), (x,)))
    }

    /// Like [`map`](Pipeline::map) for a fallible function.
    pub fn try_map<U, E, F>(self, name: &str, f: F) -> Pipeline<D, U>
    where
        F: TaskFn<(T,), Output = Result<U, E>>,
        U: Clone + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        const { assert!(std::mem::size_of::<F>() == 0, "{}", NO_CAPTURES) };
        let spec = keyed_spec(name);
        let f = Arc::new(f);
        self.then(move |x| spec.try_call(Shared(Arc::clone(&f)), (x,)))
    }

    /// Adds a pure task named `name` applied to each partition's result and `params`: the
    /// parameters are part of every partition's key, so a run with other parameters never
    /// loads a checkpoint of this one (and files already read are still loaded where only
    /// later steps changed).
    pub fn map_with<U, P, F>(self, name: &str, params: P, f: F) -> Pipeline<D, U>
    where
        F: TaskFn<(T, P), Output = U>,
        P: Tokenize + Clone + Send + Sync + 'static,
        U: Clone + Send + Sync + 'static,
    {
        const { assert!(std::mem::size_of::<F>() == 0, "{}", NO_CAPTURES) };
        let spec = keyed_spec(name);
        let f = Arc::new(f);
        self.then(move |x| spec.call(Shared(Arc::clone(&f)), (x, params.clone())))
    }

    /// Like [`map_with`](Pipeline::map_with) for a fallible function.
    pub fn try_map_with<U, P, E, F>(self, name: &str, params: P, f: F) -> Pipeline<D, U>
    where
        F: TaskFn<(T, P), Output = Result<U, E>>,
        P: Tokenize + Clone + Send + Sync + 'static,
        U: Clone + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        const { assert!(std::mem::size_of::<F>() == 0, "{}", NO_CAPTURES) };
        let spec = keyed_spec(name);
        let f = Arc::new(f);
        self.then(move |x| spec.try_call(Shared(Arc::clone(&f)), (x, params.clone())))
    }

    /// A fallible pure task named `name` applied to each partition's result and `handle` (a
    /// store client, an open file): the handle is left out of the key, so it must not change
    /// what `f` returns — only how it gets it.
    pub fn try_map_using<U, H, E, F>(self, name: &str, handle: H, f: F) -> Pipeline<D, U>
    where
        F: TaskFn<(T, H), Output = Result<U, E>>,
        H: Clone + Send + Sync + 'static,
        U: Clone + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        const { assert!(std::mem::size_of::<F>() == 0, "{}", NO_CAPTURES) };
        let spec = keyed_spec(name).exclude_position(1);
        let f = Arc::new(f);
        self.then(move |x| {
            let h = brisk_graph::lit_opaque(handle.clone());
            spec.try_call(Shared(Arc::clone(&f)), (x, h))
        })
    }

    /// Adds any lazy graph on each partition's result.
    pub fn then<U>(
        self,
        next: impl Fn(Delayed<T>) -> Delayed<U> + Send + Sync + 'static,
    ) -> Pipeline<D, U>
    where
        U: Clone + Send + Sync + 'static,
    {
        let prev = self.build;
        Pipeline {
            source: self.source,
            build: Arc::new(move |d: &D| Ok(next(prev(d)?))),
        }
    }

    /// The lazy graph of one partition (what runs when `descriptor` arrives).
    ///
    /// # Errors
    /// The error of a [`Source::build`] function.
    pub fn partition(&self, descriptor: &D) -> Result<Delayed<T>, BoxError> {
        (self.build)(descriptor)
    }

    /// Runs until the source is sealed and every partition has finished, and folds the
    /// results into `init` with `combine` (in id order, or as they finish with
    /// [`Order::Arrival`]).
    ///
    /// # Errors
    /// See [`SourceError`]; under [`Policy::Tolerate`] failed partitions are only reported.
    pub fn fold<A>(
        self,
        executor: &dyn Executor,
        options: &SourceOptions,
        init: A,
        mut combine: impl FnMut(A, T) -> A,
    ) -> Result<(A, SourceReport<D>), SourceError> {
        let mut acc = Some(init);
        let order = options.order;
        let out = self.drive(executor, options, &mut |_, v| {
            if order == Order::Arrival {
                let a = acc
                    .take()
                    .expect("the accumulator is put back after each combine");
                acc = Some(combine(a, v));
                None
            } else {
                Some(v)
            }
        })?;
        let mut a = acc.expect("the accumulator is put back after each combine");
        for (_, v) in out.results {
            a = combine(a, v);
        }
        Ok((a, out.report))
    }

    /// Runs until the source is sealed and every partition has finished; returns each
    /// successful partition's result in id order and the report.
    ///
    /// # Errors
    /// See [`SourceError`].
    pub fn run(
        self,
        executor: &dyn Executor,
        options: &SourceOptions,
    ) -> Result<SourceOutput<D, T>, SourceError> {
        self.drive(executor, options, &mut |_, v| Some(v))
    }

    /// The event loop: takes inputs while fewer than `in_flight` partitions run, hands
    /// partitions to runner threads (which block in `executor.execute` while the executor's
    /// workers do the work), and collects their results. `sink` either consumes a result
    /// (arrival order) or hands it back to be kept in id order.
    #[allow(
        clippy::too_many_lines,
        reason = "one event loop, easier to follow whole"
    )]
    fn drive(
        self,
        executor: &dyn Executor,
        options: &SourceOptions,
        sink: &mut dyn FnMut(&Key, T) -> Option<T>,
    ) -> Result<SourceOutput<D, T>, SourceError> {
        let Pipeline { source, build } = self;
        let in_flight = options
            .in_flight
            .unwrap_or_else(|| 2 * executor.parallelism().max(1));
        let user = options.compute.context();
        let cancel = CancelToken::new();
        let ctx = RunContext::new(
            user.hooks.to_vec(),
            user.cache.clone(),
            user.policy,
            cancel.clone(),
        );
        for h in ctx.hooks.iter() {
            h.on_inputs_open(true);
        }
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<Job>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
        let retries = options.retries;

        let (result, sealed) = std::thread::scope(|scope| {
            let mut runners = 0;
            for i in 0..in_flight {
                let (job_rx, done_tx, ctx) = (job_rx.clone(), done_tx.clone(), ctx.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("brisk-source-{i}"))
                    .spawn_scoped(scope, move || {
                        for job in job_rx {
                            let _ = done_tx.send(run_partition(executor, &ctx, job, retries));
                        }
                    });
                if spawned.is_ok() {
                    runners += 1;
                }
            }
            drop(done_tx);
            drop(job_rx);
            if runners == 0 {
                return (
                    Err(SourceError::Aborted {
                        source_name: source.name.clone(),
                        reason: "no runner thread could be started".to_owned(),
                    }),
                    false,
                );
            }
            let mut state = Drive {
                source: &source,
                build: &build,
                ctx: &ctx,
                policy: options.policy,
                slots: Vec::new(),
                seen: HashSet::new(),
                reports: Vec::new(),
                results: BTreeMap::new(),
                received: 0,
                duplicates: 0,
                running: 0,
                sealed: false,
            };
            let outcome = state.event_loop(in_flight, &job_tx, &done_rx, &user.cancel, sink);
            // Stop the runners: no more jobs; cancel what runs on failure.
            if outcome.is_err() {
                cancel.cancel();
            }
            drop(job_tx);
            // Wait for partitions still running so nothing outlives the call.
            while state.running > 0 {
                match done_rx.recv() {
                    Ok(d) => {
                        state.running -= 1;
                        state.cancelled(d);
                    }
                    Err(_) => break,
                }
            }
            let sealed = state.sealed;
            (outcome.map(|()| state.finish()), sealed)
        });
        // A sealed source already told the hooks; an aborted or failed one tells them now.
        if !sealed {
            for h in ctx.hooks.iter() {
                h.on_inputs_open(false);
            }
        }
        result
    }
}

/// Runs one partition's graph, retrying on task errors.
fn run_partition(executor: &dyn Executor, ctx: &RunContext, job: Job, retries: u32) -> Done {
    let loaded = job
        .graph
        .outputs()
        .iter()
        .all(|&o| job.graph.node(o as usize).is_loaded());
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = executor.execute(&job.graph, ctx);
        let retry = matches!(result, Err(Error::Task { .. } | Error::Panic { .. }))
            && attempts <= retries
            && !ctx.cancel.is_cancelled();
        if !retry {
            return Done {
                slot: job.slot,
                result,
                loaded,
                attempts,
                started,
                ended: Instant::now(),
            };
        }
    }
}

struct Drive<'a, D, T> {
    source: &'a Source<D>,
    build: &'a Build<D, T>,
    ctx: &'a RunContext,
    policy: Policy,
    slots: Vec<Slot<D>>,
    /// Every partition id seen (pushed or failed upstream): later arrivals are duplicates.
    seen: HashSet<Key>,
    reports: Vec<PartitionReport<D>>,
    results: BTreeMap<Key, T>,
    received: usize,
    duplicates: usize,
    running: usize,
    sealed: bool,
}

impl<D, T> Drive<'_, D, T>
where
    D: Tokenize + Clone + fmt::Debug + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.source.name
    }

    fn event_loop(
        &mut self,
        in_flight: usize,
        job_tx: &Sender<Job>,
        done_rx: &Receiver<Done>,
        user_cancel: &CancelToken,
        sink: &mut dyn FnMut(&Key, T) -> Option<T>,
    ) -> Result<(), SourceError> {
        loop {
            if self.sealed && self.running == 0 {
                return self.check_count();
            }
            if user_cancel.is_cancelled() {
                return Err(SourceError::Aborted {
                    source_name: self.name().to_owned(),
                    reason: "the compute's cancel token was cancelled".to_owned(),
                });
            }
            let mut sel = Select::new();
            let done_idx = sel.recv(done_rx);
            let feed_idx =
                (!self.sealed && self.running < in_flight).then(|| sel.recv(&self.source.rx));
            // Wake up now and then to notice a cancelled token.
            let op = match sel.select_timeout(Duration::from_millis(50)) {
                Ok(op) => op,
                Err(_) => continue,
            };
            let i = op.index();
            if i == done_idx {
                let Ok(done) = op.recv(done_rx) else {
                    // Every runner exited (cannot happen while we hold the job sender).
                    continue;
                };
                self.running -= 1;
                self.finished(done, sink)?;
            } else if Some(i) == feed_idx {
                match op.recv(&self.source.rx) {
                    Ok(Event::Push(d)) => self.arrived(d, job_tx)?,
                    Ok(Event::Fail(input, error)) => self.failed_upstream(input, error)?,
                    Ok(Event::Seal) => {
                        self.sealed = true;
                        for h in self.ctx.hooks.iter() {
                            h.on_inputs_open(false);
                        }
                    }
                    Ok(Event::Abort(reason)) => {
                        return Err(SourceError::Aborted {
                            source_name: self.name().to_owned(),
                            reason,
                        });
                    }
                    Err(_) => {
                        return Err(SourceError::Unsealed {
                            source_name: self.name().to_owned(),
                            received: self.received,
                        });
                    }
                }
            }
        }
    }

    fn count_one(&mut self, input: &dyn fmt::Debug) -> Result<(), SourceError> {
        self.received += 1;
        if let Some(expected) = self.source.expected
            && self.received > expected
        {
            return Err(SourceError::TooMany {
                source_name: self.name().to_owned(),
                expected,
                received: self.received,
                input: format!("{input:?}"),
            });
        }
        Ok(())
    }

    fn arrived(&mut self, d: D, job_tx: &Sender<Job>) -> Result<(), SourceError> {
        let id = self
            .source
            .partition_id(&d)
            .map_err(|source| SourceError::Descriptor {
                source_name: self.name().to_owned(),
                descriptor: format!("{d:?}"),
                source,
            })?;
        if !self.seen.insert(id.clone()) {
            self.duplicates += 1;
            return Ok(());
        }
        self.count_one(&d)?;
        let built = (self.build)(&d);
        let slot = self.slots.len();
        let arrival = self.received - 1;
        self.slots.push(Slot {
            id: id.clone(),
            descriptor: d.clone(),
            out: built
                .as_ref()
                .map_or_else(|_| id.clone(), |o| o.key().clone()),
            arrival,
        });
        let graph = match built {
            Ok(out) => match &self.ctx.cache {
                Some(c) => Graph::with_cache([AnyDelayed::from(&out)], c.as_ref()),
                None => Ok(Graph::new([AnyDelayed::from(&out)])),
            },
            Err(source) => Err(Error::Task {
                key: id.clone(),
                name: format!("{}-build", self.name()),
                attempts: 1,
                source,
            }),
        };
        match graph {
            Ok(graph) => {
                self.running += 1;
                job_tx
                    .send(Job {
                        slot,
                        graph: Arc::new(graph),
                    })
                    .expect("runners live until the job sender is dropped");
                Ok(())
            }
            Err(e) => self.record_failure(slot, e, 0, Duration::ZERO),
        }
    }

    fn failed_upstream(&mut self, input: FailedInput<D>, error: String) -> Result<(), SourceError> {
        let (id, descriptor, failed_id, shown) = match input {
            FailedInput::Descriptor(d) => {
                let id =
                    self.source
                        .partition_id(&d)
                        .map_err(|source| SourceError::Descriptor {
                            source_name: self.name().to_owned(),
                            descriptor: format!("{d:?}"),
                            source,
                        })?;
                let shown = format!("{d:?}");
                (id, Some(d), None, shown)
            }
            FailedInput::Id(s) => {
                let token: Token = s.token().map_err(|source| SourceError::Descriptor {
                    source_name: self.name().to_owned(),
                    descriptor: s.clone(),
                    source,
                })?;
                let shown = format!("id {s:?}");
                (
                    Key::new(self.name().to_owned(), token),
                    None,
                    Some(s),
                    shown,
                )
            }
        };
        if !self.seen.insert(id.clone()) {
            self.duplicates += 1;
            return Ok(());
        }
        self.count_one(&shown)?;
        if self.policy == Policy::FailFast {
            return Err(SourceError::InputFailed {
                source_name: self.name().to_owned(),
                input: shown,
                error,
            });
        }
        self.reports.push(PartitionReport {
            id,
            descriptor,
            failed_id,
            status: Status::FailedUpstream,
            error: Some(error),
            attempts: 0,
            duration: Duration::ZERO,
            arrival: self.received - 1,
        });
        Ok(())
    }

    fn finished(
        &mut self,
        done: Done,
        sink: &mut dyn FnMut(&Key, T) -> Option<T>,
    ) -> Result<(), SourceError> {
        let duration = done.ended.saturating_duration_since(done.started);
        match done.result {
            Ok(mut out) => {
                let slot = &self.slots[done.slot];
                let value = out
                    .values
                    .pop()
                    .flatten()
                    .and_then(|v| v.downcast_ref::<T>().cloned());
                let Some(value) = value else {
                    let e = Error::Incomplete {
                        key: slot.out.clone(),
                        summary: "the partition's graph returned no value of the expected type"
                            .to_owned(),
                    };
                    return self.record_failure(done.slot, e, done.attempts, duration);
                };
                let id = slot.id.clone();
                self.reports.push(PartitionReport {
                    id: id.clone(),
                    descriptor: Some(slot.descriptor.clone()),
                    failed_id: None,
                    status: if done.loaded {
                        Status::Loaded
                    } else {
                        Status::Computed
                    },
                    error: None,
                    attempts: if done.loaded { 0 } else { done.attempts },
                    duration,
                    arrival: slot.arrival,
                });
                if let Some(v) = sink(&id, value) {
                    self.results.insert(id, v);
                }
                Ok(())
            }
            Err(e) => self.record_failure(done.slot, e, done.attempts, duration),
        }
    }

    fn record_failure(
        &mut self,
        slot: usize,
        error: Error,
        attempts: u32,
        duration: Duration,
    ) -> Result<(), SourceError> {
        let s = &self.slots[slot];
        if self.policy == Policy::FailFast {
            return Err(SourceError::Partition {
                source_name: self.name().to_owned(),
                id: s.id.clone(),
                descriptor: format!("{:?}", s.descriptor),
                attempts,
                source: Box::new(error),
            });
        }
        self.reports.push(PartitionReport {
            id: s.id.clone(),
            descriptor: Some(s.descriptor.clone()),
            failed_id: None,
            status: Status::Failed,
            error: Some(brisk_graph::chain(&error)),
            attempts,
            duration,
            arrival: s.arrival,
        });
        Ok(())
    }

    /// A partition that ended after the run stopped.
    fn cancelled(&mut self, done: Done) {
        let s = &self.slots[done.slot];
        self.reports.push(PartitionReport {
            id: s.id.clone(),
            descriptor: Some(s.descriptor.clone()),
            failed_id: None,
            status: Status::Cancelled,
            error: done.result.err().map(|e| brisk_graph::chain(&e)),
            attempts: done.attempts,
            duration: done.ended.saturating_duration_since(done.started),
            arrival: s.arrival,
        });
    }

    fn check_count(&self) -> Result<(), SourceError> {
        match self.source.expected {
            Some(expected) if self.received < expected && self.policy == Policy::FailFast => {
                Err(SourceError::Missing {
                    source_name: self.name().to_owned(),
                    expected,
                    received: self.received,
                })
            }
            _ => Ok(()),
        }
    }

    fn finish(mut self) -> SourceOutput<D, T> {
        self.reports.sort_by(|a, b| a.id.cmp(&b.id));
        SourceOutput {
            results: std::mem::take(&mut self.results).into_iter().collect(),
            report: SourceReport {
                partitions: self.reports,
                expected: self.source.expected,
                received: self.received,
                duplicates: self.duplicates,
            },
        }
    }
}

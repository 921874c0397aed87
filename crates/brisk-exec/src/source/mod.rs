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

use std::fmt;
use std::sync::Arc;

use brisk_graph::{BoxError, Delayed, Key, TaskFn, TaskSpec, Tokenize, TokenizeError, lit};
use crossbeam_channel::Receiver;

mod feed;
mod options;
mod report;
mod run;

pub(crate) use feed::Event;
pub use feed::{FailedInput, Feed, FeedClosed, TryPushError};
pub use options::{Order, Policy, SourceOptions};
pub use report::{PartitionReport, SourceError, SourceOutput, SourceReport, Status};

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
}

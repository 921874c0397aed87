//! Futures: results of work submitted through a [`Handler`](crate::Handler).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::handler::HandlerError;

pub(crate) struct FutState<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
    /// Set by `cancel`; checked by the job before it starts.
    cancelled: AtomicBool,
    /// Position of the item in its `map` input, if any (for errors).
    pub(crate) index: Option<usize>,
}

struct Slot<T> {
    result: Option<Result<T, HandlerError>>,
    done: bool,
    /// Whether a thread blocks in `wait` (set under the lock before it blocks): only then does
    /// `complete` notify, so the usual completion, with nobody waiting yet, makes no system
    /// call (a condition variable's notify always enters the kernel).
    waiting: bool,
    watchers: Vec<(Sender<usize>, usize)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> FutState<T> {
    pub(crate) fn new(index: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            slot: Mutex::new(Slot {
                result: None,
                done: false,
                waiting: false,
                watchers: Vec::new(),
            }),
            ready: Condvar::new(),
            cancelled: AtomicBool::new(false),
            index,
        })
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Stores the result and wakes whoever waits for it.
    pub(crate) fn complete(&self, result: Result<T, HandlerError>) {
        let (watchers, waiting) = {
            let mut slot = lock(&self.slot);
            slot.result = Some(result);
            slot.done = true;
            (std::mem::take(&mut slot.watchers), slot.waiting)
        };
        if waiting {
            self.ready.notify_all();
        }
        for (tx, id) in watchers {
            let _ = tx.send(id);
        }
    }
}

/// The result of work submitted to a [`Handler`](crate::Handler), available once it ran (Dask's
/// `Future`; named so it does not shadow [`std::future::Future`]).
///
/// Wait for one with [`TaskFuture::wait`], for many in input order with
/// [`gather`](crate::Handler::gather), or as they finish with [`AsCompleted`].
pub struct TaskFuture<T> {
    state: Arc<FutState<T>>,
}

impl<T> fmt::Debug for TaskFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskFuture")
            .field("index", &self.state.index)
            .field("done", &self.is_done())
            .finish()
    }
}

impl<T> TaskFuture<T> {
    pub(crate) fn new(state: Arc<FutState<T>>) -> Self {
        Self { state }
    }

    /// Whether the work has finished (successfully or not).
    #[must_use]
    pub fn is_done(&self) -> bool {
        lock(&self.state.slot).done
    }

    /// The position of this item in the input of `map`, if it came from one.
    #[must_use]
    pub fn index(&self) -> Option<usize> {
        self.state.index
    }

    /// Asks that the work not start. Work already running finishes; its result is kept.
    /// Returns whether the future will complete with [`HandlerError::Cancelled`] (as far as
    /// can be known: the work may be starting right now).
    pub fn cancel(&self) -> bool {
        self.state.cancelled.store(true, Ordering::Release);
        !self.is_done()
    }

    /// Blocks until the work has finished and returns its result.
    ///
    /// # Errors
    /// The work's error or panic ([`HandlerError::Failed`], [`HandlerError::Panicked`]),
    /// or [`HandlerError::Cancelled`].
    pub fn wait(self) -> Result<T, HandlerError> {
        let mut slot = lock(&self.state.slot);
        while !slot.done {
            slot.waiting = true;
            slot = self
                .state
                .ready
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
        slot.result
            .take()
            .unwrap_or(Err(HandlerError::Internal("future result taken twice")))
    }

    /// Registers `tx` to receive `id` when the work finishes (at once if it already has).
    fn watch(&self, tx: Sender<usize>, id: usize) {
        let mut slot = lock(&self.state.slot);
        if slot.done {
            drop(slot);
            let _ = tx.send(id);
        } else {
            slot.watchers.push((tx, id));
        }
    }
}

/// Yields futures' results in the order they finish; more futures can be added while
/// iterating. Each item is `(id, result)` where `id` is the future's position in the order it
/// was added (0, 1, 2, …).
///
/// ```
/// use brisk_exec::{AsCompleted, Handler};
///
/// let h = Handler::new("threads://2").unwrap();
/// let mut done = AsCompleted::new(h.map(|x: u64| x * 2, 0..4).unwrap());
/// let mut total = 0;
/// while let Some((_id, r)) = done.next() {
///     let v = r.unwrap();
///     if v == 6 {
///         done.push(h.submit(|| 100).unwrap()); // work discovered while iterating
///     }
///     total += v;
/// }
/// assert_eq!(total, 0 + 2 + 4 + 6 + 100);
/// ```
pub struct AsCompleted<T> {
    futures: Vec<Option<TaskFuture<T>>>,
    pending: usize,
    tx: Sender<usize>,
    rx: Receiver<usize>,
}

impl<T> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("added", &self.futures.len())
            .field("pending", &self.pending)
            .finish()
    }
}

impl<T> AsCompleted<T> {
    /// Watches `futures`.
    pub fn new(futures: impl IntoIterator<Item = TaskFuture<T>>) -> Self {
        let (tx, rx) = channel();
        let mut s = Self {
            futures: Vec::new(),
            pending: 0,
            tx,
            rx,
        };
        for f in futures {
            s.push(f);
        }
        s
    }

    /// Adds a future; returns its id.
    pub fn push(&mut self, future: TaskFuture<T>) -> usize {
        let id = self.futures.len();
        future.watch(self.tx.clone(), id);
        self.futures.push(Some(future));
        self.pending += 1;
        id
    }

    /// How many added futures have not been yielded yet.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = (usize, Result<T, HandlerError>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending == 0 {
            return None;
        }
        // `self.tx` keeps the channel open, so this only returns once a future finished.
        let id = self.rx.recv().ok()?;
        let future = self.futures.get_mut(id)?.take()?;
        self.pending -= 1;
        Some((id, future.wait()))
    }
}

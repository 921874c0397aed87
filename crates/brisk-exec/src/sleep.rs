//! How idle pool workers sleep and are woken, without ever losing a wake-up.
//!
//! The protocol, independent of the queues it guards:
//! - a **pusher** makes its work visible, then calls [`Sleep::notify`]: after a `SeqCst`
//!   fence it reads the number of announced sleepers and, if there is one, advances the epoch
//!   under the lock and signals the condition variable;
//! - a **sleeper** ([`Sleep::sleep`]) takes the lock, announces itself (`sleepers += 1`), fences,
//!   looks for work once more, checks the stop flag, and only then waits for the epoch to
//!   change.
//!
//! Either the pusher's read of `sleepers` sees the announcement (and then its notify comes
//! after the sleeper released the lock in `wait`, so it is not lost), or the sleeper's re-check
//! sees the work. Stopping sets its flag first and then calls [`Sleep::wake_all`], which
//! advances the epoch under the lock unconditionally.
//!
//! Under `--cfg loom` the primitives are loom's, and the tests at the end of this file check
//! the protocol over every interleaving loom explores (`cargo xtask ci` runs them; see
//! `cargo xtask loom`).

#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering, fence};
#[cfg(loom)]
use loom::sync::{Condvar, Mutex};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering, fence};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex};

use std::sync::PoisonError;

/// The sleep/wake state of one pool.
pub(crate) struct Sleep {
    sleepers: AtomicUsize,
    epoch: Mutex<u64>,
    wake: Condvar,
}

/// How a [`Sleep::sleep`] ended.
pub(crate) enum Wake<T> {
    /// The re-check after announcing found work: run it.
    Found(T),
    /// Woken by a notify (or spuriously): look for work again.
    Woken,
    /// The stop flag was set and there was no work.
    Stop,
}

impl Sleep {
    pub(crate) fn new() -> Self {
        Self {
            sleepers: AtomicUsize::new(0),
            epoch: Mutex::new(0),
            wake: Condvar::new(),
        }
    }

    /// Wakes one sleeper (or all), if any has announced itself. Call after making work
    /// visible.
    pub(crate) fn notify(&self, all: bool) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.advance(all);
        }
    }

    /// Wakes every sleeper, announced or about to be: call after setting the stop flag.
    pub(crate) fn wake_all(&self) {
        self.advance(true);
    }

    fn advance(&self, all: bool) {
        let mut e = self.epoch.lock().unwrap_or_else(PoisonError::into_inner);
        *e = e.wrapping_add(1);
        if all {
            self.wake.notify_all();
        } else {
            self.wake.notify_one();
        }
    }

    /// Announces this worker as a sleeper, looks for work once more with `recheck`, checks
    /// `stop`, and waits for a notify when there is neither.
    pub(crate) fn sleep<T>(
        &self,
        recheck: impl FnOnce() -> Option<T>,
        stop: impl FnOnce() -> bool,
    ) -> Wake<T> {
        let mut epoch = self.epoch.lock().unwrap_or_else(PoisonError::into_inner);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let outcome = if let Some(job) = recheck() {
            Wake::Found(job)
        } else if stop() {
            Wake::Stop
        } else {
            let seen = *epoch;
            while *epoch == seen {
                epoch = self
                    .wake
                    .wait(epoch)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            Wake::Woken
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Model checks of the protocol: a lost wake-up leaves a worker waiting forever, which
    //! loom reports as a deadlock.

    use super::{Sleep, Wake};
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use loom::thread;

    /// Explores every interleaving with at most `PREEMPTIONS` preemptions (loom's usual way to
    /// bound the search: a lost wake-up needs one or two; 5 takes seconds, unbounded hours).
    const PREEMPTIONS: usize = 5;

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(PREEMPTIONS);
        b.check(f);
    }

    /// A queue of work items (a count: which item does not matter here) and the pool state the
    /// workers share.
    struct Pool {
        queue: AtomicUsize,
        sleep: Sleep,
        taken: AtomicUsize,
        stop: AtomicBool,
    }

    impl Pool {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                queue: AtomicUsize::new(0),
                sleep: Sleep::new(),
                taken: AtomicUsize::new(0),
                stop: AtomicBool::new(false),
            })
        }

        fn push(&self) {
            self.queue.fetch_add(1, Ordering::SeqCst);
            self.sleep.notify(false);
        }

        /// Takes one item if there is one.
        fn take(&self) -> Option<()> {
            self.queue
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .ok()
                .map(|_| ())
        }

        /// A worker: runs items until stopped; the one that takes the last of `total` items
        /// stops the pool, as `Pool::drop` does.
        fn work(&self, total: usize) {
            loop {
                let item = match self.take() {
                    Some(i) => Some(i),
                    None => match self
                        .sleep
                        .sleep(|| self.take(), || self.stop.load(Ordering::SeqCst))
                    {
                        Wake::Found(i) => Some(i),
                        Wake::Woken => None,
                        Wake::Stop => return,
                    },
                };
                if item.is_some() && self.taken.fetch_add(1, Ordering::SeqCst) + 1 == total {
                    self.stop.store(true, Ordering::SeqCst);
                    self.sleep.wake_all();
                }
            }
        }
    }

    #[test]
    fn a_pushed_item_always_wakes_the_sleeping_worker() {
        model(|| {
            let pool = Pool::new();
            let worker = {
                let pool = Arc::clone(&pool);
                thread::spawn(move || pool.work(2))
            };
            pool.push();
            pool.push();
            worker.join().expect("worker");
            assert_eq!(pool.taken.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn two_workers_share_the_items_and_both_stop() {
        model(|| {
            let pool = Pool::new();
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    thread::spawn(move || pool.work(1))
                })
                .collect();
            pool.push();
            for w in workers {
                w.join().expect("worker");
            }
            assert_eq!(pool.taken.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn stopping_wakes_a_worker_that_has_no_work() {
        model(|| {
            let pool = Pool::new();
            let worker = {
                let pool = Arc::clone(&pool);
                thread::spawn(move || pool.work(usize::MAX))
            };
            pool.stop.store(true, Ordering::SeqCst);
            pool.sleep.wake_all();
            worker.join().expect("worker");
        });
    }
}

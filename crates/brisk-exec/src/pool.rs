//! A work-stealing thread pool over `crossbeam-deque`, shared by graph computes and futures.
//!
//! Each worker owns a LIFO deque: tasks made ready by the task a worker just finished are
//! pushed there and popped next, so a branch is finished before new work starts (depth-first,
//! which keeps few intermediates alive). Work from outside the pool enters through a FIFO
//! injector; idle workers steal from the injector, then from each other, then sleep.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use brisk_graph::NodeId;
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::sleep::{Sleep, Wake};

use crate::threaded::RunState;

/// A unit of work.
pub(crate) enum Job {
    /// Node `id` of a graph compute.
    Task(Arc<RunState>, NodeId),
    /// The compute's tasks without dependencies at positions `start..end` of its static order
    /// (see `RunState::run_roots`): one job for many roots, split as workers take it.
    Roots(Arc<RunState>, u32, u32),
    /// A closure (futures API); receives the worker index.
    Call(Box<dyn FnOnce(usize) + Send>),
}

/// What a running job can use of its worker.
pub(crate) struct WorkerCtx<'a> {
    pub(crate) index: usize,
    local: &'a Worker<Job>,
    shared: &'a Shared,
}

impl WorkerCtx<'_> {
    /// Queues a job on this worker's own deque; the last one pushed runs next here.
    pub(crate) fn push_local(&self, job: Job) {
        self.local.push(job);
    }

    /// Whether urgent (positive-priority) work waits for a worker.
    pub(crate) fn urgent(&self) -> bool {
        !self.shared.high.is_empty()
    }

    /// Wakes a sleeping worker to share the jobs just queued here.
    pub(crate) fn notify(&self) {
        self.shared.notify();
    }

    /// Queues a job by priority class (positive: before everything else; negative: after).
    pub(crate) fn push_priority(&self, job: Job, priority: i32) {
        if priority > 0 {
            self.shared.high.push(job);
        } else {
            self.shared.low.push(job);
        }
        self.shared.notify();
    }
}

pub(crate) struct Shared {
    injector: Injector<Job>,
    high: Injector<Job>,
    low: Injector<Job>,
    stealers: Vec<Stealer<Job>>,
    sleep: Sleep,
    shutdown: AtomicBool,
}

impl Shared {
    /// Wakes one sleeping worker, if any (call after making work visible).
    fn notify(&self) {
        self.sleep.notify(false);
    }

    fn notify_all(&self) {
        self.sleep.notify(true);
    }

    fn find_work(&self, index: usize, local: &Worker<Job>) -> Option<Job> {
        if let Some(j) = steal(|| self.high.steal()) {
            return Some(j);
        }
        if let Some(j) = local.pop() {
            return Some(j);
        }
        if let Some(j) = steal(|| self.injector.steal_batch_and_pop(local)) {
            return Some(j);
        }
        let n = self.stealers.len();
        for k in 1..n {
            if let Some(j) = steal(|| self.stealers[(index + k) % n].steal()) {
                return Some(j);
            }
        }
        steal(|| self.low.steal())
    }
}

fn steal(mut f: impl FnMut() -> Steal<Job>) -> Option<Job> {
    loop {
        match f() {
            Steal::Success(j) => return Some(j),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
}

thread_local! {
    /// The pool the current thread works for (its `Shared` address), or 0.
    static CURRENT_POOL: Cell<usize> = const { Cell::new(0) };
}

/// A fixed set of worker threads, reused across computes. Dropping it finishes queued work
/// and joins the threads.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `n >= 1` workers.
    pub(crate) fn new(n: usize) -> std::io::Result<Self> {
        let n = n.max(1);
        let locals: Vec<Worker<Job>> = (0..n).map(|_| Worker::new_lifo()).collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            high: Injector::new(),
            low: Injector::new(),
            stealers: locals.iter().map(Worker::stealer).collect(),
            sleep: Sleep::new(),
            shutdown: AtomicBool::new(false),
        });
        let mut handles = Vec::with_capacity(n);
        for (index, local) in locals.into_iter().enumerate() {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("brisk-worker-{index}"))
                .spawn(move || worker_loop(&s, index, &local));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Stop the workers already started before reporting.
                    drop(Self { shared, handles });
                    return Err(e);
                }
            }
        }
        Ok(Self { shared, handles })
    }

    /// Number of workers.
    pub(crate) fn size(&self) -> usize {
        self.shared.stealers.len()
    }

    /// Queues jobs from outside the pool (FIFO).
    pub(crate) fn inject(&self, jobs: impl IntoIterator<Item = Job>) {
        for j in jobs {
            self.shared.injector.push(j);
        }
        self.shared.notify_all();
    }

    /// Whether the calling thread is one of this pool's workers.
    pub(crate) fn is_current(&self) -> bool {
        CURRENT_POOL.with(Cell::get) == Arc::as_ptr(&self.shared) as usize
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.sleep.wake_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker_loop(shared: &Arc<Shared>, index: usize, local: &Worker<Job>) {
    CURRENT_POOL.with(|c| c.set(Arc::as_ptr(shared) as usize));
    let ctx = WorkerCtx {
        index,
        local,
        shared,
    };
    loop {
        if let Some(job) = find_with_spin(shared, index, local) {
            run(job, &ctx);
            continue;
        }
        // Announce, re-check, then wait (see `sleep.rs`, model-checked with loom).
        match shared.sleep.sleep(
            || shared.find_work(index, local),
            || shared.shutdown.load(Ordering::SeqCst),
        ) {
            Wake::Found(job) => run(job, &ctx),
            Wake::Woken => {}
            Wake::Stop => return,
        }
    }
}

/// Looks for work, spinning briefly before giving up (fine-grained graphs hand work over
/// faster than a sleep/wake round trip).
fn find_with_spin(shared: &Shared, index: usize, local: &Worker<Job>) -> Option<Job> {
    for round in 0..64 {
        if let Some(j) = shared.find_work(index, local) {
            return Some(j);
        }
        if round < 48 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    None
}

/// Runs a job; a panic escaping it (a hook, or a bug: task bodies and futures catch their own)
/// fails that job's compute instead of killing the worker or hanging the compute.
fn run(job: Job, ctx: &WorkerCtx<'_>) {
    match job {
        Job::Task(state, id) => state.run_job(id, ctx),
        Job::Roots(state, start, end) => state.run_roots(start, end, ctx),
        Job::Call(f) => {
            let index = ctx.index;
            let _ = catch_unwind(AssertUnwindSafe(move || f(index)));
        }
    }
}

//! The threaded work-stealing executor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use brisk_graph::{
    Error, Executor, Failure, FailurePolicy, Graph, Report, RunContext, RunOutput, Skipped, Value,
};

use crate::pool::{Job, Pool, WorkerCtx};
use crate::sequential::SequentialExecutor;
use crate::task::{panic_message, run_node};
use brisk_graph::{ComputeResources, NodeId};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs graphs on a pool of worker threads (one per core by default) with work stealing.
///
/// - A task becomes ready when its last dependency finishes (atomic counters per node; no
///   global lock on the hot path). Ready tasks made ready by a worker run next on that worker,
///   so branches are finished before new ones start and intermediates are freed early (after
///   their last consumer). The initial ready tasks are queued in the graph's static order.
/// - Tasks annotated with a positive priority jump ahead of all other work; negative ones run
///   when nothing else is left.
/// - Fail-fast (default): after the first failure nothing new starts, running tasks finish, and
///   the error names the task. Keep-going: everything that does not depend on a failure runs.
/// - Panics in tasks become errors; the workers survive them.
/// - The workers are reused across computes and shared by concurrent computes. A compute
///   started *from inside a task* on the same pool runs on the calling worker's thread (as the
///   [`SequentialExecutor`] would), so nested computes never deadlock waiting for busy workers.
///
/// Results are identical to the [`SequentialExecutor`]'s for every graph.
///
/// ```
/// use brisk_exec::ThreadedExecutor;
/// use brisk_graph::{Delayed, pure};
///
/// let exec = ThreadedExecutor::new(2).unwrap();
/// let parts: Delayed<Vec<u64>> = (0..100u64).map(|i| pure("sq", |x: u64| x * x, (i,))).collect();
/// let total = pure("sum", |v: Vec<u64>| v.iter().sum::<u64>(), (parts,));
/// assert_eq!(total.compute_with(&exec).unwrap(), 328_350);
/// ```
#[derive(Clone)]
pub struct ThreadedExecutor {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for ThreadedExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedExecutor")
            .field("workers", &self.pool.size())
            .finish()
    }
}

impl ThreadedExecutor {
    /// An executor with its own pool of `workers` threads (at least one).
    ///
    /// # Errors
    /// [`Error::Executor`] when the operating system refuses to start a thread.
    pub fn new(workers: usize) -> Result<Self, Error> {
        let pool = Pool::new(workers).map_err(|e| Error::Executor(Box::new(e)))?;
        Ok(Self {
            pool: Arc::new(pool),
        })
    }

    /// The process-wide executor with one worker per available core, started on first use.
    ///
    /// # Errors
    /// [`Error::Executor`] when its threads cannot be started.
    pub fn global() -> Result<&'static Self, Error> {
        static GLOBAL: OnceLock<ThreadedExecutor> = OnceLock::new();
        if let Some(g) = GLOBAL.get() {
            return Ok(g);
        }
        let exec = Self::new(available_workers())?;
        Ok(GLOBAL.get_or_init(|| exec))
    }

    /// Number of worker threads.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.pool.size()
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

/// Number of cores the process may use (1 if unknown).
#[must_use]
pub fn available_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

impl Executor for ThreadedExecutor {
    fn execute(&self, graph: &Arc<Graph>, ctx: &RunContext) -> Result<RunOutput, Error> {
        if self.pool.is_current() {
            return SequentialExecutor.execute(graph, ctx);
        }
        let result = crate::task::call_hooks(ctx, "on_start", |h| h.on_start(graph))
            .and_then(|()| self.run(graph, ctx));
        let finished = crate::task::call_hooks(ctx, "on_finish", |h| {
            h.on_finish(graph, result.as_ref().err());
        });
        match (result, finished) {
            (Ok(_), Err(e)) => Err(e),
            (r, _) => r,
        }
    }

    fn parallelism(&self) -> usize {
        self.pool.size()
    }
}

const NONE: u32 = u32::MAX;

/// The shared state of one compute.
pub(crate) struct RunState {
    graph: Arc<Graph>,
    ctx: RunContext,
    keep_going: bool,
    nodes: NodeStates,
    is_output: Box<[bool]>,
    blocked_by: Box<[AtomicU32]>,
    in_flight: AtomicUsize,
    stop: AtomicBool,
    first_error: Mutex<Option<Error>>,
    report: Mutex<Report>,
    done: Mutex<bool>,
    done_cv: Condvar,
    t0: Instant,
    guards: ComputeResources,
    /// The tasks without dependencies, in static order.
    roots: Box<[NodeId]>,
}

/// One node's state in a compute, in 32 bytes: a task reads and writes its own and its
/// dependents' states, one cache line each instead of one per table.
struct NodeState {
    /// Dependencies not yet done (decremented by each; a wide node's in batches).
    pending: AtomicU32,
    /// Consumers of the value still to come (the value goes with the last).
    users: AtomicU32,
    value: Mutex<Option<Value>>,
}

/// Node states per [`STATE_CHUNK`]: a compute's table in pieces of 4 MiB. An allocator hands
/// large allocations back to the system when they are freed (jemalloc from 8 MiB, glibc's
/// malloc from its mmap threshold), so one table for a million nodes would fault in every page
/// again on every compute; pieces are reused.
struct NodeStates(Box<[Box<[NodeState]>]>);

/// `log2` of the node states per piece of [`NodeStates`].
const STATE_CHUNK_BITS: u32 = 17;
const STATE_CHUNK: usize = 1 << STATE_CHUNK_BITS;

impl NodeStates {
    /// Every node's state at the start of a compute; also says how many nodes have no
    /// dependencies (the roots).
    fn new(graph: &Graph) -> (Self, usize) {
        let mut roots = 0;
        let chunks = (0..graph.len())
            .step_by(STATE_CHUNK)
            .map(|start| {
                (start..graph.len().min(start + STATE_CHUNK))
                    .map(|i| {
                        let id = NodeId::from_index(i);
                        let pending = graph.dependencies(id).len() as u32;
                        roots += usize::from(pending == 0);
                        NodeState {
                            pending: AtomicU32::new(pending),
                            users: AtomicU32::new(graph.dependents(id).len() as u32),
                            value: Mutex::new(None),
                        }
                    })
                    .collect()
            })
            .collect();
        (Self(chunks), roots)
    }

    #[inline]
    fn get(&self, id: NodeId) -> &NodeState {
        let i = id.index();
        &self.0[i >> STATE_CHUNK_BITS][i & (STATE_CHUNK - 1)]
    }
}

/// What becomes of a job's count in `in_flight` when its task is done.
enum After {
    /// Nothing took it over: the caller settles it.
    Settle,
    /// This ready task took it over and runs next, on the same worker.
    Run(NodeId),
    /// A queued job took it over.
    Handed,
}

/// Dependencies from which a node counts as wide: a worker gathers the decrements of a wide
/// node's pending count and applies them together (see [`Batch`]).
const WIDE: usize = 64;

/// Decrements a worker owes one wide node's pending count (a reduction over many tasks:
/// without this, every worker decrements that one counter once per task it runs, and the
/// cache line bounces between cores on every task). Applied when the node would be ready,
/// every [`WIDE`] decrements, before a task that does not feed the node runs, before a job
/// hands its count on, and when the job ends: the node never waits for work it does not
/// depend on.
#[derive(Default)]
pub(crate) struct Batch {
    node: Option<NodeId>,
    count: u32,
}

/// A value on its way from a task to the task that runs right after it on the same job, its
/// only consumer: it skips the value slot (a lock to store, a lock to take).
type Carry = Option<(NodeId, Value)>;

/// Dependents of a task searched for the node a batch is for (a task with more is taken as
/// not feeding it, and the batch is applied before it runs).
const FEEDS_SCANNED: usize = 8;

/// Roots a worker runs in a row before it looks at the work they made ready. Small enough to
/// keep the intermediates of a streaming reduction few, large enough to make a queued job
/// rare next to the tasks it runs.
const ROOT_RUN: u32 = 16;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking hook or cache cannot leave these in an inconsistent state: every critical
    // section is a single assignment or push.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ThreadedExecutor {
    fn run(&self, graph: &Arc<Graph>, ctx: &RunContext) -> Result<RunOutput, Error> {
        let n = graph.len();
        if n == 0 {
            return Ok(RunOutput::new(Vec::new(), Report::default()));
        }
        let keep_going = ctx.policy == FailurePolicy::KeepGoing;
        let mut is_output = vec![false; n];
        for &o in graph.outputs() {
            is_output[o.index()] = true;
        }
        let (nodes, roots) = NodeStates::new(graph);
        let mut root_ids = Vec::with_capacity(roots);
        root_ids.extend(
            graph
                .in_order()
                .filter(|&id| graph.dependencies(id).is_empty()),
        );
        let state = Arc::new(RunState {
            graph: Arc::clone(graph),
            ctx: ctx.clone(),
            keep_going,
            nodes,
            is_output: is_output.into_boxed_slice(),
            blocked_by: if keep_going {
                (0..n).map(|_| AtomicU32::new(NONE)).collect()
            } else {
                Box::new([])
            },
            in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            first_error: Mutex::new(None),
            report: Mutex::new(Report::default()),
            done: Mutex::new(false),
            done_cv: Condvar::new(),
            t0: Instant::now(),
            guards: ComputeResources::new(graph),
            roots: root_ids.into_boxed_slice(),
        });
        // The roots go out as one range job per worker; workers split them further (see
        // `run_roots`), so the calling thread does not queue a job per root.
        let roots = state.roots.len();
        state.in_flight.fetch_add(roots, Ordering::SeqCst);
        let parts = self.pool.size().min(roots).max(1);
        self.pool.inject((0..parts).map(|p| {
            let start = (roots * p / parts) as u32;
            let end = (roots * (p + 1) / parts) as u32;
            Job::Roots(Arc::clone(&state), start, end)
        }));
        {
            let mut done = lock(&state.done);
            while !*done {
                done = state
                    .done_cv
                    .wait(done)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        // Every task has stopped: release the resources still held. A close error replaces
        // a successful result; a task's error is never replaced.
        let close_error = state.guards.finish();
        if let Some(e) = lock(&state.first_error).take() {
            return Err(e);
        }
        if let Some(e) = close_error {
            return Err(e);
        }
        // Move the outputs out of their slots (a worker may still hold the state for a moment,
        // and a clone left behind would make the caller copy the value). An output listed
        // twice gets the value taken for its first listing.
        let mut first: HashMap<NodeId, usize> = HashMap::new();
        let mut outputs: Vec<Option<Value>> = Vec::with_capacity(graph.outputs().len());
        for (i, &o) in graph.outputs().iter().enumerate() {
            let v = match first.get(&o) {
                Some(&j) => outputs[j].clone(),
                None => {
                    first.insert(o, i);
                    lock(&state.nodes.get(o).value).take()
                }
            };
            outputs.push(v);
        }
        let report = std::mem::take(&mut *lock(&state.report));
        Ok(RunOutput::new(outputs, report))
    }
}

impl RunState {
    /// Runs the roots at `start..end` of the static order: halves the range while it is
    /// longer than [`ROOT_RUN`], queueing the later half on this worker's deque (where idle
    /// workers steal it), then runs the first roots in a row.
    pub(crate) fn run_roots(self: &Arc<Self>, start: u32, mut end: u32, w: &WorkerCtx<'_>) {
        let mut queued = false;
        while end - start > ROOT_RUN {
            let mid = start + (end - start) / 2;
            w.push_local(Job::Roots(Arc::clone(self), mid, end));
            queued = true;
            end = mid;
        }
        if queued {
            w.notify();
        }
        // One count per root whose chain ended without handing its count on, settled at once.
        let mut finished = 0;
        let mut batch = Batch::default();
        for i in start..end {
            if !self.run_chain(self.roots[i as usize], w, &mut batch) {
                finished += 1;
            }
        }
        self.end_job(finished, batch, w);
    }

    /// Runs the task of a queued job (and what it makes ready, see `run_chain`).
    pub(crate) fn run_job(self: &Arc<Self>, id: NodeId, w: &WorkerCtx<'_>) {
        let mut batch = Batch::default();
        let settled = usize::from(!self.run_chain(id, w, &mut batch));
        self.end_job(settled, batch, w);
    }

    /// Ends a job that holds `settled` counts in `in_flight`: applies its gathered
    /// decrements, runs what they make ready, then settles. A non-empty batch means the
    /// job holds a count (a chain that hands its count on flushes first), so the compute
    /// cannot finish while decrements are owed.
    fn end_job(self: &Arc<Self>, mut settled: usize, mut batch: Batch, w: &WorkerCtx<'_>) {
        while let Some(ready) = self.flush(&mut batch) {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            if !self.run_chain(ready, w, &mut batch) {
                settled += 1;
            }
        }
        self.jobs_done(settled);
    }

    /// Applies `batch` before running `next`, unless `next` feeds the batch's node (which
    /// then cannot be ready before `next` is done), and queues the node if that made it
    /// ready: a wide node never waits for a task it does not depend on.
    fn flush_unless_feeding(self: &Arc<Self>, batch: &mut Batch, next: NodeId, w: &WorkerCtx<'_>) {
        let Some(node) = batch.node else {
            return;
        };
        let feeds = self.graph.dependents(next);
        if feeds.len() <= FEEDS_SCANNED && feeds.contains(&node) {
            return;
        }
        if let Some(ready) = self.flush(batch) {
            // Counted before it is visible: a thief could finish it before we count it.
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            self.queue(ready, w);
            w.notify();
        }
    }

    /// Applies the decrements in `batch`; returns its node if that made it ready.
    fn flush(&self, batch: &mut Batch) -> Option<NodeId> {
        let node = batch.node.take()?;
        let n = std::mem::take(&mut batch.count);
        (self.nodes.get(node).pending.fetch_sub(n, Ordering::AcqRel) == n).then_some(node)
    }

    /// Runs `id`, then the dependent it made ready (if any), and so on: a chain of tasks runs
    /// on one worker without a queue in between, and a streaming reduction consumes each
    /// intermediate right after it is made. Returns whether the job's count went to a queued
    /// job; otherwise the caller settles it.
    pub(crate) fn run_chain(
        self: &Arc<Self>,
        mut id: NodeId,
        w: &WorkerCtx<'_>,
        batch: &mut Batch,
    ) -> bool {
        // The value the last task made for the next one, its only consumer (see `Carry`).
        let mut carry: Carry = None;
        loop {
            self.flush_unless_feeding(batch, id, w);
            let after = catch_unwind(AssertUnwindSafe(|| self.run_task(id, w, batch, &mut carry)));
            if !matches!(after, Ok(After::Run(_))) {
                // Only the task run next takes a carried value (never left here; kept safe).
                self.store_carried(&mut carry);
            }
            match after {
                Ok(After::Run(next)) => id = next,
                Ok(After::Handed) => return true,
                Ok(After::Settle) => return false,
                Err(payload) => {
                    self.abort_job(id, panic_message(payload.as_ref()));
                    return false;
                }
            }
        }
    }

    /// The task that alone consumes `id`'s value, when `id` is the last of its dependencies
    /// to finish (a link of a chain, the later half of a tree's pair) and the value is not an
    /// output: that value can go straight to it. Every other dependency has counted itself
    /// when the task's count is down to one (counts only fall, and `id` has not counted), so
    /// the plain load is exact when it says one; a wide task's count is batched and never
    /// read here.
    fn sole_consumer(&self, id: NodeId) -> Option<NodeId> {
        match self.graph.dependents(id) {
            &[next] if !self.is_output[id.index()] => {
                let width = self.graph.dependencies(next).len();
                (width == 1
                    || width < WIDE && self.nodes.get(next).pending.load(Ordering::Acquire) == 1)
                    .then_some(next)
            }
            _ => None,
        }
    }

    /// Puts a carried value into its slot (when its consumer is queued instead of run next).
    fn store_carried(&self, carry: &mut Carry) {
        if let Some((c, v)) = carry.take() {
            *lock(&self.nodes.get(c).value) = Some(v);
        }
    }

    /// Runs node `id` on a worker (or skips it if the compute stopped); says what becomes of
    /// the job's count in `in_flight`.
    #[must_use = "the job's count must be settled"]
    fn run_task(
        self: &Arc<Self>,
        id: NodeId,
        w: &WorkerCtx<'_>,
        batch: &mut Batch,
        carry: &mut Carry,
    ) -> After {
        // A carried value is this task's input (its producer ran just before, on this job).
        let mut carried = carry.take();
        if !self.stop.load(Ordering::Acquire) && self.ctx.cancel.is_cancelled() {
            self.fail(Error::Cancelled);
        }
        if self.stop.load(Ordering::Acquire) {
            return After::Settle;
        }
        let graph = &*self.graph;
        let deps = graph.dependencies(id);
        if self.keep_going {
            let cause = deps
                .iter()
                .map(|&d| self.blocked_by[d.index()].load(Ordering::Acquire))
                .find(|&c| c != NONE);
            if let Some(cause) = cause {
                self.blocked_by[id.index()].store(cause, Ordering::Release);
                lock(&self.report).skipped.push(Skipped::new(
                    graph.key(id).clone(),
                    graph.key(NodeId::from_index(cause as usize)).clone(),
                ));
                if let Some((c, v)) = carried.take() {
                    drop(v);
                    self.released(c);
                }
                self.release(id);
                self.guards.after(id);
                return self.complete(id, w, batch, carry);
            }
        }
        // Each input is moved out of its slot when this task is its last consumer, cloned
        // otherwise. The consumer is counted while the slot is locked: counted before it,
        // a consumer could find the value already taken by the last one.
        let mut inputs = Vec::with_capacity(deps.len());
        for &d in deps {
            if let Some((_, v)) = carried.take_if(|(c, _)| *c == d) {
                inputs.push(v);
                self.released(d);
                continue;
            }
            let mut slot = lock(&self.nodes.get(d).value);
            let last = self.last_use(d);
            let v = if last { slot.take() } else { slot.clone() };
            drop(slot);
            inputs
                .push(v.expect("a task runs only after all its dependencies stored their values"));
            if last {
                self.released(d);
            }
        }
        // Never left over (a value is carried only to its sole consumer); kept safe anyway.
        self.store_carried(&mut carried);
        match run_node(graph, &self.ctx, &self.guards, id, inputs, w.index, self.t0) {
            Ok(v) => {
                if self.sole_consumer(id).is_some() {
                    *carry = Some((id, v));
                } else {
                    *lock(&self.nodes.get(id).value) = Some(v);
                }
                self.complete(id, w, batch, carry)
            }
            Err(e) if self.keep_going => {
                self.blocked_by[id.index()].store(id.index() as u32, Ordering::Release);
                let node = graph.node(id);
                lock(&self.report).failed.push(Failure::new(
                    node.key().clone(),
                    node.name().to_owned(),
                    e,
                ));
                self.complete(id, w, batch, carry)
            }
            Err(e) => {
                self.fail(e);
                After::Settle
            }
        }
    }

    /// Counts one consumer of `d`'s value as done; whether it was the last one and the value
    /// can go (never for an output). A value with one consumer needs no count.
    fn last_use(&self, d: NodeId) -> bool {
        let i = d.index();
        !self.is_output[i]
            && (self.graph.dependents(d).len() == 1
                || self.nodes.get(d).users.fetch_sub(1, Ordering::AcqRel) == 1)
    }

    /// Tells the hooks that `d`'s value left its slot.
    fn released(&self, d: NodeId) {
        for h in self.ctx.hooks.iter() {
            h.on_release(&self.graph, d);
        }
    }

    /// Counts one consumer of each dependency of `id` as done; frees values nobody needs.
    fn release(&self, id: NodeId) {
        for &d in self.graph.dependencies(id) {
            if self.last_use(d) && lock(&self.nodes.get(d).value).take().is_some() {
                self.released(d);
            }
        }
    }

    /// Marks `id` finished: queues the dependents whose last dependency it was, except the
    /// earliest, which takes over this job's count in `in_flight` and runs next on this worker
    /// (unless it has a priority, or urgent work is waiting: then it is queued too). A task
    /// that makes one dependent ready (a chain, half a tree) touches no shared counter.
    ///
    /// A value in `carry` goes with the task that runs next; if that task is queued instead,
    /// the value is put into its slot first.
    fn complete(
        self: &Arc<Self>,
        id: NodeId,
        w: &WorkerCtx<'_>,
        batch: &mut Batch,
        carry: &mut Carry,
    ) -> After {
        let graph = &*self.graph;
        let mut held: Option<NodeId> = None;
        let mut queued = 0usize;
        let mut ready = |dd: NodeId, queued: &mut usize| {
            if let Some(prev) = held.replace(dd) {
                // Counted before it is visible: a thief could finish it before we count it.
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                *queued += self.queue(prev, w);
            }
        };
        // Reverse id order: the deque is LIFO, so the earlier dependents run first.
        for &dd in graph.dependents(id).iter().rev() {
            let width = graph.dependencies(dd).len();
            if width >= WIDE {
                if batch.node != Some(dd) {
                    if let Some(r) = self.flush(batch) {
                        ready(r, &mut queued);
                    }
                    batch.node = Some(dd);
                }
                batch.count += 1;
                // Flush now if that makes the node ready (the plain load is only a hint; the
                // flush decides), or the batch is full.
                if (batch.count as usize >= WIDE
                    || self.nodes.get(dd).pending.load(Ordering::Relaxed) <= batch.count)
                    && let Some(r) = self.flush(batch)
                {
                    ready(r, &mut queued);
                }
                continue;
            }
            // A task with one dependency is ready now; others when their count reaches zero.
            if width == 1 || self.nodes.get(dd).pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                ready(dd, &mut queued);
            }
        }
        // Wake a sleeping worker when this one queued more than it will take itself.
        let (after, kept) = match held {
            None => (After::Settle, 0),
            Some(next) if graph.node(next).annotations().priority == 0 && !w.urgent() => {
                (After::Run(next), 0)
            }
            Some(next) => {
                // Its input must be in its slot before another worker can take it.
                self.store_carried(carry);
                // The job's count goes with the queued task: owe no decrements past it.
                if let Some(r) = self.flush(batch) {
                    self.in_flight.fetch_add(1, Ordering::AcqRel);
                    queued += self.queue(r, w);
                }
                queued += self.queue(next, w);
                (After::Handed, 1)
            }
        };
        if queued > kept {
            w.notify();
        }
        after
    }

    /// Queues a ready task by its priority; returns 1 if it went on this worker's deque.
    fn queue(self: &Arc<Self>, id: NodeId, w: &WorkerCtx<'_>) -> usize {
        let job = Job::Task(Arc::clone(self), id);
        match self.graph.node(id).annotations().priority {
            0 => {
                w.push_local(job);
                1
            }
            p => {
                w.push_priority(job, p);
                0
            }
        }
    }

    /// Stops the compute with `e` (the first error wins).
    fn fail(&self, e: Error) {
        let mut first = lock(&self.first_error);
        if first.is_none() {
            *first = Some(e);
        }
        self.stop.store(true, Ordering::Release);
    }

    /// `n` queued jobs are finished.
    fn jobs_done(&self, n: usize) {
        if n > 0 && self.in_flight.fetch_sub(n, Ordering::AcqRel) == n {
            *lock(&self.done) = true;
            self.done_cv.notify_all();
        }
    }

    /// A bug in the executor made a job panic outside the task body: fail the compute
    /// instead of hanging it (the caller settles the job's count).
    pub(crate) fn abort_job(&self, id: NodeId, message: String) {
        let node = self.graph.node(id);
        self.fail(Error::Panic {
            key: node.key().clone(),
            name: node.name().to_owned(),
            message: format!("internal executor error: {message}"),
        });
    }
}

//! Running a pipeline: the event loop that takes inputs as they arrive, hands each
//! partition to a runner thread and combines the results.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brisk_graph::{
    AnyDelayed, Cache, CancelToken, Error, Executor, FailurePolicy, Graph, Key, RunContext, Token,
    Tokenize, Value,
};
use crossbeam_channel::{Receiver, Select, Sender};

use super::*;

/// A run of one partition, or of a batch of them as one graph, handed to a runner thread.
pub(crate) struct Job {
    /// The partitions' slots, in the order of the graph's outputs.
    pub(crate) slots: Vec<usize>,
    /// Their output values (to build a graph of the ones that run again).
    pub(crate) outputs: Vec<AnyDelayed>,
    pub(crate) graph: Arc<Graph>,
}

/// A runner's answer: one per partition of the job.
pub(crate) struct Done {
    pub(crate) slot: usize,
    /// The partition's output value (`None`: the run gave none), or why it failed.
    pub(crate) result: Result<Option<Value>, Error>,
    pub(crate) loaded: bool,
    pub(crate) attempts: u32,
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
}

pub(crate) struct Slot<D> {
    pub(crate) id: Key,
    pub(crate) descriptor: D,
    pub(crate) out: Key,
    pub(crate) arrival: usize,
}

impl<D, T> Pipeline<D, T>
where
    D: Tokenize + Clone + fmt::Debug + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
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
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Vec<Done>>();
        let retries = options.retries;

        let (result, sealed) = std::thread::scope(|scope| {
            let mut runners = 0;
            for i in 0..in_flight {
                let (job_rx, done_tx, ctx) = (job_rx.clone(), done_tx.clone(), ctx.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("brisk-source-{i}"))
                    .spawn_scoped(scope, move || {
                        for job in job_rx {
                            let _ = done_tx.send(run_job(executor, &ctx, job, retries));
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
                batch_max: options.batch,
                window: options.window,
                batch: Vec::new(),
                batch_since: None,
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
                    Ok(parts) => {
                        state.running -= 1;
                        for d in parts {
                            state.cancelled(d);
                        }
                    }
                    Err(_) => break,
                }
            }
            // A batch never sent (the run stopped first) is cancelled too.
            for (slot, _) in std::mem::take(&mut state.batch) {
                state.cancelled_unsent(slot);
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

/// The graph of `outputs`, consulting `cache` when there is one.
fn graph_of(outputs: &[AnyDelayed], cache: Option<&Arc<dyn Cache>>) -> Result<Graph, Error> {
    match cache {
        Some(c) => Graph::with_cache(outputs.iter().cloned(), c.as_ref()),
        None => Ok(Graph::new(outputs.iter().cloned())),
    }
}

/// A second copy of `error` (errors are not `Clone`): the same key and name, its text.
fn copy_error(error: &Error) -> Error {
    match error.key() {
        Some(key) => Error::Incomplete {
            key: key.clone(),
            summary: brisk_graph::chain(error),
        },
        None => Error::Executor(brisk_graph::chain(error).into()),
    }
}

/// Whether a partition that failed with `error` may run again.
fn retryable(error: &Error) -> bool {
    matches!(error, Error::Task { .. } | Error::Panic { .. })
}

/// Runs one job, retrying the partitions that failed with a task error up to `retries` times.
/// A single partition runs under the compute's own failure policy (its first task error is
/// its error); a batch runs with [`FailurePolicy::KeepGoing`], so one partition's failure does
/// not stop the others, and each failed partition gets the failure that blocked its output.
pub(crate) fn run_job(
    executor: &dyn Executor,
    ctx: &RunContext,
    job: Job,
    retries: u32,
) -> Vec<Done> {
    let started = Instant::now();
    let Job {
        slots,
        outputs,
        graph,
    } = job;
    let loaded: Vec<bool> = graph
        .outputs()
        .iter()
        .map(|&o| graph.node(o).is_loaded())
        .collect();
    let batch_ctx;
    let run_ctx = if slots.len() == 1 {
        ctx
    } else {
        batch_ctx = RunContext::new(
            ctx.hooks.to_vec(),
            ctx.cache.clone(),
            FailurePolicy::KeepGoing,
            ctx.cancel.clone(),
        );
        &batch_ctx
    };
    let mut results: Vec<Option<Result<Option<Value>, Error>>> =
        (0..slots.len()).map(|_| None).collect();
    let mut attempts = vec![0u32; slots.len()];
    // The job's positions still to run, and their graph.
    let mut todo: Vec<usize> = (0..slots.len()).collect();
    let mut graph = graph;
    loop {
        for &k in &todo {
            attempts[k] += 1;
        }
        let mut again = Vec::new();
        match executor.execute(&graph, run_ctx) {
            Err(e) => {
                // The run as a whole failed (a task under fail-fast, the executor, a cancel).
                let retry = retryable(&e) && !ctx.cancel.is_cancelled();
                let (more, done): (Vec<usize>, Vec<usize>) =
                    todo.iter().partition(|&&k| retry && attempts[k] <= retries);
                again = more;
                for &k in done.iter().skip(1) {
                    results[k] = Some(Err(copy_error(&e)));
                }
                if let Some(&k) = done.first() {
                    results[k] = Some(Err(e));
                }
            }
            Ok(out) => {
                let mut failed: Vec<Option<brisk_graph::Failure>> =
                    out.report.failed.into_iter().map(Some).collect();
                let skipped = out.report.skipped;
                for (n, (&k, value)) in todo.iter().zip(out.values).enumerate() {
                    if value.is_some() {
                        results[k] = Some(Ok(value));
                        continue;
                    }
                    // The failure that blocked this output: its own, or the one it waited on.
                    let key = graph.key(graph.outputs()[n]);
                    let cause = skipped
                        .iter()
                        .find(|s| &s.key == key)
                        .map_or(key, |s| &s.because);
                    let error = match failed
                        .iter()
                        .position(|f| f.as_ref().is_some_and(|f| &f.key == cause))
                    {
                        Some(i) => failed[i].take().map(|f| f.error),
                        None => None,
                    };
                    let error = error.unwrap_or_else(|| Error::Incomplete {
                        key: key.clone(),
                        summary: format!(
                            "the partition's output has no value; it waited on {cause}, which \
                             failed in this batch (reported with another partition)"
                        ),
                    });
                    if retryable(&error) && attempts[k] <= retries && !ctx.cancel.is_cancelled() {
                        again.push(k);
                    } else {
                        results[k] = Some(Err(error));
                    }
                }
            }
        }
        if again.is_empty() {
            break;
        }
        let retry: Vec<AnyDelayed> = again.iter().map(|&k| outputs[k].clone()).collect();
        match graph_of(&retry, ctx.cache.as_ref()) {
            Ok(g) => graph = Arc::new(g),
            Err(e) => {
                for &k in &again {
                    results[k] = Some(Err(copy_error(&e)));
                }
                break;
            }
        }
        todo = again;
    }
    let ended = Instant::now();
    slots
        .into_iter()
        .zip(results)
        .enumerate()
        .map(|(k, (slot, result))| Done {
            slot,
            result: result
                .unwrap_or_else(|| Err(Error::Executor("the partition was never run".into()))),
            loaded: loaded[k],
            attempts: attempts[k],
            started,
            ended,
        })
        .collect()
}

pub(crate) struct Drive<'a, D, T> {
    pub(crate) source: &'a Source<D>,
    pub(crate) build: &'a Build<D, T>,
    pub(crate) ctx: &'a RunContext,
    pub(crate) policy: Policy,
    /// Batching ([`SourceOptions::batch`]): the most partitions per job, how long the first
    /// one waits for others, the partitions waiting (slot, output) and since when.
    pub(crate) batch_max: usize,
    pub(crate) window: Duration,
    pub(crate) batch: Vec<(usize, AnyDelayed)>,
    pub(crate) batch_since: Option<Instant>,
    pub(crate) slots: Vec<Slot<D>>,
    /// Every partition id seen (pushed or failed upstream): later arrivals are duplicates.
    pub(crate) seen: HashSet<Key>,
    pub(crate) reports: Vec<PartitionReport<D>>,
    pub(crate) results: BTreeMap<Key, T>,
    pub(crate) received: usize,
    pub(crate) duplicates: usize,
    pub(crate) running: usize,
    pub(crate) sealed: bool,
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
        done_rx: &Receiver<Vec<Done>>,
        user_cancel: &CancelToken,
        sink: &mut dyn FnMut(&Key, T) -> Option<T>,
    ) -> Result<(), SourceError> {
        loop {
            let due = self
                .batch_since
                .is_some_and(|t| self.sealed || t.elapsed() >= self.window);
            if due {
                self.flush(job_tx)?;
            }
            if self.sealed && self.running == 0 && self.batch.is_empty() {
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
            // Wake up now and then to notice a cancelled token, and when a batch is due.
            let mut wait = Duration::from_millis(50);
            if let Some(t) = self.batch_since {
                wait = wait.min(self.window.saturating_sub(t.elapsed()));
            }
            let op = match sel.select_timeout(wait) {
                Ok(op) => op,
                Err(_) => continue,
            };
            let i = op.index();
            if i == done_idx {
                let Ok(parts) = op.recv(done_rx) else {
                    // Every runner exited (cannot happen while we hold the job sender).
                    continue;
                };
                self.running -= 1;
                for done in parts {
                    self.finished(done, sink)?;
                }
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

    /// The partition id of descriptor `d`; a descriptor that cannot be tokenized is an
    /// error naming it.
    fn partition_id(&self, d: &D) -> Result<Key, SourceError> {
        self.source
            .partition_id(d)
            .map_err(|source| SourceError::Descriptor {
                source_name: self.name().to_owned(),
                descriptor: format!("{d:?}"),
                source,
            })
    }

    fn arrived(&mut self, d: D, job_tx: &Sender<Job>) -> Result<(), SourceError> {
        let id = self.partition_id(&d)?;
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
        match built {
            Ok(out) => {
                self.batch.push((slot, AnyDelayed::from(&out)));
                self.batch_since.get_or_insert_with(Instant::now);
                if self.batch.len() >= self.batch_max {
                    self.flush(job_tx)?;
                }
                Ok(())
            }
            Err(source) => {
                let e = Error::Task {
                    key: id.clone(),
                    name: format!("{}-build", self.name()),
                    attempts: 1,
                    source,
                };
                self.record_failure(slot, e, 0, Duration::ZERO)
            }
        }
    }

    /// Sends the waiting partitions to a runner as one job.
    fn flush(&mut self, job_tx: &Sender<Job>) -> Result<(), SourceError> {
        self.batch_since = None;
        let (slots, outputs): (Vec<usize>, Vec<AnyDelayed>) =
            std::mem::take(&mut self.batch).into_iter().unzip();
        if slots.is_empty() {
            return Ok(());
        }
        match graph_of(&outputs, self.ctx.cache.as_ref()) {
            Ok(graph) => {
                self.running += 1;
                job_tx
                    .send(Job {
                        slots,
                        outputs,
                        graph: Arc::new(graph),
                    })
                    .expect("runners live until the job sender is dropped");
                Ok(())
            }
            Err(e) => {
                for &slot in slots.iter().skip(1) {
                    self.record_failure(slot, copy_error(&e), 0, Duration::ZERO)?;
                }
                self.record_failure(slots[0], e, 0, Duration::ZERO)
            }
        }
    }

    fn failed_upstream(&mut self, input: FailedInput<D>, error: String) -> Result<(), SourceError> {
        let (id, descriptor, failed_id, shown) = match input {
            FailedInput::Descriptor(d) => {
                let id = self.partition_id(&d)?;
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
            Ok(value) => {
                let slot = &self.slots[done.slot];
                let value = value.and_then(|v| v.downcast_ref::<T>().cloned());
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

    /// A partition whose batch was never sent (the run stopped first).
    fn cancelled_unsent(&mut self, slot: usize) {
        let s = &self.slots[slot];
        self.reports.push(PartitionReport {
            id: s.id.clone(),
            descriptor: Some(s.descriptor.clone()),
            failed_id: None,
            status: Status::Cancelled,
            error: None,
            attempts: 0,
            duration: Duration::ZERO,
            arrival: s.arrival,
        });
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

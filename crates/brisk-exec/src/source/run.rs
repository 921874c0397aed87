//! Running a pipeline: the event loop that takes inputs as they arrive, hands each
//! partition to a runner thread and combines the results.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brisk_graph::{
    AnyDelayed, CancelToken, Error, Executor, Graph, Key, RunContext, Token, Tokenize,
};
use crossbeam_channel::{Receiver, Select, Sender};

use super::*;

/// A partition run handed to a runner thread.
pub(crate) struct Job {
    pub(crate) slot: usize,
    pub(crate) graph: Arc<Graph>,
}

/// A runner's answer.
pub(crate) struct Done {
    pub(crate) slot: usize,
    pub(crate) result: Result<brisk_graph::RunOutput, Error>,
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
pub(crate) fn run_partition(
    executor: &dyn Executor,
    ctx: &RunContext,
    job: Job,
    retries: u32,
) -> Done {
    let loaded = job
        .graph
        .outputs()
        .iter()
        .all(|&o| job.graph.node(o).is_loaded());
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

pub(crate) struct Drive<'a, D, T> {
    pub(crate) source: &'a Source<D>,
    pub(crate) build: &'a Build<D, T>,
    pub(crate) ctx: &'a RunContext,
    pub(crate) policy: Policy,
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

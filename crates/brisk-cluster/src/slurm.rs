//! The driver: [`SlurmExecutor`] submits stages as job arrays and reads results from the store.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brisk_checkpoint::Encoder;
use brisk_graph::{
    Arg, BoxError, CacheAction, CancelToken, Error, Executor, Failure, FailurePolicy, Graph, Key,
    NodeId, Report, RunContext, RunOutput, Skipped, TaskEnd, TaskStatus, Value,
};
use brisk_store::{Store, from_url};

use crate::plan::{Layout, Plan, UnitEvents, UnitSpec, plan};
use crate::{ClusterError, RemoteTaskError, SlurmOptions};

/// Runs graphs on Slurm (see the crate docs). Every task node must be a registered
/// `#[task]` function with serde arguments and result, or the compute must say how to
/// rebuild its graph (`ComputeOptions::origin`, set by array computes and Zarr writes); the
/// worker program must call [`init`](crate::init) first.
///
/// A compute's checkpoint cache ([`ComputeOptions::cache`](brisk_graph::ComputeOptions::cache))
/// works as on local threads: nodes the cache holds are loaded by the driver (their upstream
/// is culled) and shipped to the tasks that read them, and the results of checkpointed tasks
/// are saved as soon as their stage is done — read back from the data plane — so a run that
/// fails in a later stage keeps them for the next compute, on any data plane.
#[derive(Debug)]
pub struct SlurmExecutor {
    options: SlurmOptions,
    store: Arc<dyn Store>,
    submissions: AtomicUsize,
    /// The data plane bytes the driver wrote and read in the running compute.
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    last_run: Mutex<RunStats>,
    totals: Mutex<RunStats>,
}

/// What the last compute of a [`SlurmExecutor`] cost, as far as the driver and the workers'
/// reports tell (units that left no report, such as killed ones, are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunStats {
    /// Job arrays submitted (`sbatch` calls).
    pub jobs: usize,
    /// Units that reported (job array tasks that ran to their end).
    pub units: usize,
    /// Tasks that ran on workers (last attempts).
    pub tasks: usize,
    /// Bytes put into the data plane: what the driver uploaded (constants, literals, loaded
    /// checkpoints) and the workers' encoded results.
    pub written: u64,
    /// Bytes read from it: the workers' task inputs and what the driver read back (outputs,
    /// checkpointed results). A value read by several tasks counts once per read.
    pub read: u64,
    /// Wall time of the computes.
    pub wall: Duration,
    /// Per stage, how long the unit whose inputs were ready first waited for the previous
    /// stage to end, summed: what dependency-driven submission (each unit queued as soon as
    /// its inputs exist) would save over the stage-by-depth barrier.
    pub stage_barrier: Duration,
    /// Per stage, from when it could start (its job submitted, or the previous stage done) to
    /// its first task, summed: the cost of a job array's scheduling and start-up.
    pub start_latency: Duration,
    /// Stages measured for `stage_barrier` and `start_latency`.
    pub stages: usize,
}

impl RunStats {
    /// What happened after `earlier` (totals taken before a phase, see
    /// [`SlurmExecutor::totals`]).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            jobs: self.jobs.saturating_sub(earlier.jobs),
            units: self.units.saturating_sub(earlier.units),
            tasks: self.tasks.saturating_sub(earlier.tasks),
            written: self.written.saturating_sub(earlier.written),
            read: self.read.saturating_sub(earlier.read),
            wall: self.wall.saturating_sub(earlier.wall),
            stage_barrier: self.stage_barrier.saturating_sub(earlier.stage_barrier),
            start_latency: self.start_latency.saturating_sub(earlier.start_latency),
            stages: self.stages.saturating_sub(earlier.stages),
        }
    }

    fn add(&mut self, other: &Self) {
        self.jobs += other.jobs;
        self.units += other.units;
        self.tasks += other.tasks;
        self.written += other.written;
        self.read += other.read;
        self.wall += other.wall;
        self.stage_barrier += other.stage_barrier;
        self.start_latency += other.start_latency;
        self.stages += other.stages;
    }

    /// The mean time from a stage being able to start to its first task (see
    /// [`start_latency`](Self::start_latency)).
    #[must_use]
    pub fn overhead_per_job(&self) -> Duration {
        u32::try_from(self.stages)
            .ok()
            .filter(|&n| n > 0)
            .map_or(Duration::ZERO, |n| self.start_latency / n)
    }

    /// The bytes that went through the data plane: every value that entered it (each is
    /// read back once or more, see [`read`](Self::read)).
    #[must_use]
    pub fn data_plane_bytes(&self) -> u64 {
        self.written
    }
}

impl SlurmExecutor {
    /// A driver with `options`. Checks that `sbatch` can be run (through the command
    /// prefix) and that the store opens.
    ///
    /// # Errors
    /// [`ClusterError::Slurm`] when `sbatch` is not available; [`ClusterError::Store`].
    pub fn new(options: SlurmOptions) -> Result<Self, ClusterError> {
        let store = from_url(&options.store)?;
        let this = Self {
            options,
            store,
            submissions: AtomicUsize::new(0),
            uploaded: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            last_run: Mutex::new(RunStats::default()),
            totals: Mutex::new(RunStats::default()),
        };
        this.run(&["sbatch", "--version"], None)?;
        Ok(this)
    }

    /// A driver from a `slurm://?…` address (see [`SlurmOptions::from_address`]).
    ///
    /// # Errors
    /// As [`SlurmOptions::from_address`] and [`SlurmExecutor::new`].
    pub fn from_address(address: &str) -> Result<Self, ClusterError> {
        Self::new(SlurmOptions::from_address(address)?)
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &SlurmOptions {
        &self.options
    }

    /// Job arrays submitted so far by this driver, successors queued behind a running stage
    /// included (Slurm cancels one whose stage failed); a rerun of finished work submits none.
    #[must_use]
    pub fn submissions(&self) -> usize {
        self.submissions.load(Ordering::Relaxed)
    }

    /// What the last compute cost: jobs, units, tasks and data plane bytes (see
    /// [`RunStats`]).
    #[must_use]
    pub fn last_run(&self) -> RunStats {
        *self.last_run.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What every compute of this executor cost so far (see [`RunStats`]); a phase of several
    /// computes costs `totals().since(&before)`.
    #[must_use]
    pub fn totals(&self) -> RunStats {
        *self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, RunStats> {
        self.last_run.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log_dir(&self) -> PathBuf {
        self.options.log_dir.clone().unwrap_or_else(|| {
            if self.options.store.contains("://") {
                PathBuf::from("brisk-slurm-logs")
            } else {
                PathBuf::from(&self.options.store).join("logs")
            }
        })
    }

    /// Runs a Slurm client command (under the prefix); returns its stdout.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, ClusterError> {
        let mut full: Vec<String> = self.options.command_prefix.clone();
        full.extend(args.iter().map(|s| (*s).to_owned()));
        let shown = full.join(" ");
        let fail = |message: String| ClusterError::Slurm {
            command: shown.clone(),
            message,
        };
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                fail(format!(
                    "`{}` was not found: is this a Slurm login node (or is the command prefix right)?",
                    full[0]
                ))
            } else {
                fail(e.to_string())
            }
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| fail(format!("writing the script: {e}")))?;
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            return Err(fail(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn script(&self, plan: &Plan, stage: usize) -> Result<(String, String), ClusterError> {
        let program = match &self.options.worker_program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| ClusterError::Slurm {
                command: "current_exe".into(),
                message: e.to_string(),
            })?,
        };
        let logs = self.log_dir();
        std::fs::create_dir_all(&logs).map_err(|e| ClusterError::Slurm {
            command: format!("mkdir {}", logs.display()),
            message: e.to_string(),
        })?;
        let logs = std::fs::canonicalize(&logs).unwrap_or(logs);
        let log = logs.join(format!("brisk-{}-s{stage}-%A_%a.log", plan.layout.run));
        let mut s = String::from("#!/bin/sh\n");
        s.push_str(&format!(
            "#SBATCH --job-name=brisk-{}-s{stage}\n#SBATCH --output={}\n",
            plan.layout.run,
            log.display()
        ));
        for d in self.options.sbatch_directives() {
            s.push_str(&format!("#SBATCH {d}\n"));
        }
        for l in &self.options.setup_lines {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str(&format!(
            "export BRISK_CLUSTER_STORE={}\nexport BRISK_CLUSTER_UNIT={}\nexec {}",
            quote(&self.options.store),
            quote(&format!("{}/s{stage}-", plan.layout.run)),
            quote(&program.display().to_string())
        ));
        for a in &self.options.worker_args {
            s.push(' ');
            s.push_str(&quote(a));
        }
        s.push('\n');
        Ok((s, log.display().to_string()))
    }

    /// Submits `indices` of `stage` as one job array — held until every task of job `after`
    /// succeeded, and cancelled by Slurm if one fails, when `after` is given. Returns the job
    /// id, the worker log pattern, and a guard that cancels the job when dropped armed.
    fn submit(
        &self,
        plan: &Plan,
        stage: usize,
        indices: &[usize],
        after: Option<&str>,
    ) -> Result<Submitted<'_>, ClusterError> {
        let (script, log) = self.script(plan, stage)?;
        let array = indices
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec![
            "sbatch".to_owned(),
            "--parsable".to_owned(),
            format!("--array={array}"),
        ];
        if let Some(after) = after {
            args.push(format!("--dependency=afterok:{after}"));
            args.push("--kill-on-invalid-dep=yes".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args, Some(&script))?;
        self.submissions.fetch_add(1, Ordering::Relaxed);
        self.stats().jobs += 1;
        let job = out.trim().split(';').next().unwrap_or_default().to_owned();
        if job.is_empty() || !job.chars().all(|c| c.is_ascii_digit()) {
            return Err(ClusterError::Slurm {
                command: "sbatch --parsable".into(),
                message: format!("unexpected output `{}`", out.trim()),
            });
        }
        Ok(Submitted {
            stage,
            indices: indices.to_vec(),
            at: unix_nanos(),
            log,
            guard: CancelOnDrop {
                executor: self,
                job: Some(job.clone()),
            },
            job,
        })
    }

    /// The indices of `units` without their done marker.
    fn pending(&self, plan: &Plan, units: &[UnitSpec]) -> Result<Vec<usize>, ClusterError> {
        let mut pending = Vec::new();
        for (i, u) in units.iter().enumerate() {
            if !self.store.contains(&plan.layout.done(&u.unit))? {
                pending.push(i);
            }
        }
        Ok(pending)
    }

    /// Waits until the job of `sub` has left the queue (then nothing is left to cancel);
    /// `Ok(false)` as soon as `cancel` is cancelled (the job is cancelled when `sub` drops).
    fn wait(
        &self,
        plan: &Plan,
        sub: &mut Submitted<'_>,
        cancel: &CancelToken,
        on_poll: &mut dyn FnMut() -> Result<(), ClusterError>,
    ) -> Result<bool, ClusterError> {
        let job = sub.job.clone();
        let started = Instant::now();
        loop {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            on_poll()?;
            let listed = self.run(&["squeue", "-h", "-j", &job, "-o", "%i %T"], None);
            let alive = match listed {
                Ok(text) => text.lines().any(|l| {
                    let state = l.split_whitespace().nth(1).unwrap_or_default();
                    !matches!(
                        state,
                        "COMPLETED"
                            | "FAILED"
                            | "CANCELLED"
                            | "TIMEOUT"
                            | "OUT_OF_MEMORY"
                            | "NODE_FAIL"
                            | "BOOT_FAIL"
                            | "DEADLINE"
                            | "PREEMPTED"
                    )
                }),
                // squeue forgets a job some time after it ended: gone means not alive.
                Err(ClusterError::Slurm { message, .. }) if message.contains("Invalid job id") => {
                    false
                }
                Err(e) => return Err(e),
            };
            if !alive {
                break;
            }
            if started.elapsed() > self.options.stage_timeout {
                return Err(ClusterError::Timeout {
                    run: plan.layout.run.clone(),
                    stage: sub.stage,
                    job,
                    seconds: self.options.stage_timeout.as_secs(),
                });
            }
            std::thread::sleep(self.options.poll);
        }
        sub.guard.job = None; // left the queue: nothing to cancel
        Ok(true)
    }

    fn upload(&self, plan: &Plan, encoder: &Encoder) -> Result<(), ClusterError> {
        for u in &plan.uploads {
            if !self.store.contains(&u.store_key)? {
                let bytes = encoder.encode(&u.spec, &u.value, &u.store_key)?;
                self.store.put(&u.store_key, &bytes)?;
                self.uploaded
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
        }
        for stage in &plan.stages {
            for unit in stage {
                self.put_unit(&plan.layout, unit)?;
            }
        }
        Ok(())
    }

    /// Writes `unit`'s description where its workers read it.
    fn put_unit(&self, layout: &Layout, unit: &UnitSpec) -> Result<(), ClusterError> {
        let text = serde_json::to_vec(unit).map_err(|e| ClusterError::Format {
            what: format!("unit {}", unit.unit),
            message: e.to_string(),
        })?;
        self.store.put(&layout.unit(&unit.unit), &text)?;
        Ok(())
    }

    /// The earliest stage whose unit must run again because a value that `units` read is
    /// missing (deleted as corrupt, or removed by hand); its done marker is removed.
    fn repair(&self, plan: &Plan, units: &[&UnitSpec]) -> Result<Option<usize>, ClusterError> {
        let mut earliest: Option<usize> = None;
        for unit in units {
            for node in &unit.nodes {
                for arg in &node.args {
                    if let Some(&(s, u)) = plan.producer.get(arg)
                        && !self.store.contains(arg)?
                    {
                        let name = &plan.stages[s][u].unit;
                        self.store.delete(&plan.layout.done(name))?;
                        earliest = Some(earliest.map_or(s, |e| e.min(s)));
                    }
                }
            }
        }
        Ok(earliest)
    }

    /// Runs the plan stage by stage; the checkpointed results of each stage are saved to the
    /// compute's cache as soon as the stage is done, so a run that fails later keeps them.
    fn drive(&self, graph: &Graph, plan: &mut Plan, ctx: &RunContext) -> Result<RunOutput, Error> {
        let encoder = crate::data_encoder();
        let keep_going = ctx.policy == FailurePolicy::KeepGoing;
        let mut progress = Progress {
            started: unix_nanos(),
            stage_start: u64::MAX,
            ..Progress::default()
        };
        // The next stage's job, queued behind the running one (`chain_stages`).
        let mut ahead: Option<Submitted<'_>> = None;
        let exec_err = |e: ClusterError| Error::Executor(Box::new(e));
        self.upload(plan, &encoder).map_err(exec_err)?;
        let mut attempts: Vec<Vec<u32>> = plan.stages.iter().map(|s| vec![0; s.len()]).collect();
        let mut stage = 0;
        // Every return to an earlier stage (a result gone or corrupt) counts; a run that
        // keeps losing results stops instead of looping.
        let mut repairs = 0usize;
        let repair_limit = 10 * plan.stages.iter().map(Vec::len).sum::<usize>().max(1);
        let run = plan.layout.run.clone();
        let went_back = |repairs: &mut usize| -> Result<(), Error> {
            *repairs += 1;
            if *repairs > repair_limit {
                return Err(exec_err(ClusterError::Format {
                    what: format!("run {run}"),
                    message: "results keep disappearing or arriving corrupt; giving up".into(),
                }));
            }
            Ok(())
        };
        let outputs = loop {
            if ctx.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if stage == plan.stages.len() {
                // Read the results; a corrupt one sends its unit back to work.
                match self
                    .read_outputs(graph, plan, &encoder, &progress)
                    .map_err(exec_err)?
                {
                    Ok(values) => break values,
                    Err(back) => {
                        went_back(&mut repairs)?;
                        ahead = None;
                        stage = back;
                        continue;
                    }
                }
            }
            let units = &plan.stages[stage];
            let mut pending = self.pending(plan, units).map_err(exec_err)?;
            pending.retain(|&i| !progress.settled.contains(&(stage, i)));
            if pending.is_empty() {
                // Units that finished before the driver waited for them (a job queued behind
                // the previous stage runs as soon as it ends) report now; the stage's costs
                // are counted.
                self.report_listed(graph, plan, stage, ctx, &mut progress)
                    .map_err(exec_err)?;
                self.close_stage(graph, plan, stage, &mut progress);
                match self.save_checkpoints(graph, plan, stage, ctx, &encoder, &mut progress)? {
                    // A result to save was gone or corrupt: its unit runs again.
                    Some(back) => {
                        went_back(&mut repairs)?;
                        ahead = None;
                        stage = back;
                    }
                    None => stage += 1,
                }
                continue;
            }
            let pending_units: Vec<&UnitSpec> = pending.iter().map(|&i| &units[i]).collect();
            if let Some(back) = self.repair(plan, &pending_units).map_err(exec_err)? {
                // These units failed for want of their inputs, not on their own: their
                // attempts start again once the inputs are back.
                went_back(&mut repairs)?;
                ahead = None;
                for &i in &pending {
                    attempts[stage][i] = 0;
                }
                stage = back;
                continue;
            }
            for &i in &pending {
                attempts[stage][i] += 1;
                if attempts[stage][i] > self.options.retries + 1 {
                    let log = self
                        .log_dir()
                        .join(format!("brisk-{}-s{stage}-*_{i}.log", plan.layout.run));
                    return Err(exec_err(ClusterError::UnitLost {
                        unit: units[i].unit.clone(),
                        attempts: attempts[stage][i] - 1,
                        log: log.display().to_string(),
                    }));
                }
            }
            // The stage's job: the one queued behind the previous stage if it holds every
            // pending unit, else a new one (a stale one is cancelled as it is dropped).
            let mut sub = match ahead.take() {
                Some(a) if a.stage == stage && pending.iter().all(|i| a.indices.contains(i)) => a,
                _ => self.submit(plan, stage, &pending, None).map_err(exec_err)?,
            };
            if self.options.chain_stages && stage + 1 < plan.stages.len() {
                let mut next = self
                    .pending(plan, &plan.stages[stage + 1])
                    .map_err(exec_err)?;
                next.retain(|&i| !progress.settled.contains(&(stage + 1, i)));
                if !next.is_empty() {
                    let queued = self
                        .submit(plan, stage + 1, &next, Some(&sub.job))
                        .map_err(exec_err)?;
                    progress.submitted.entry(stage + 1).or_insert(queued.at);
                    ahead = Some(queued);
                }
            }
            progress.submitted.entry(stage).or_insert(sub.at);
            // Tasks are reported as their units finish, while the stage runs.
            let mut on_poll = || self.report_listed(graph, plan, stage, ctx, &mut progress);
            if !self
                .wait(plan, &mut sub, &ctx.cancel, &mut on_poll)
                .map_err(exec_err)?
            {
                return Err(Error::Cancelled);
            }
            self.report_listed(graph, plan, stage, ctx, &mut progress)
                .map_err(exec_err)?;
            let (job, log) = (&sub.job, &sub.log);
            let mut failures = Vec::new();
            for &i in &pending {
                let unit = &units[i];
                let error_key = plan.layout.error(&unit.unit);
                let Some(bytes) = self.store.get(&error_key).map_err(|e| exec_err(e.into()))?
                else {
                    continue;
                };
                let log = log.replace("%A", job).replace("%a", &i.to_string());
                let reported = parse_failures(&bytes, &error_key, &log).map_err(exec_err)?;
                // The error stays reported until the graph changes; remove it so a fixed
                // rerun can try again.
                let _ = self.store.delete(&error_key);
                if !keep_going {
                    return Err(reported
                        .into_iter()
                        .next()
                        .map(|f| f.error)
                        .ok_or_else(|| {
                            exec_err(ClusterError::Format {
                                what: error_key.clone(),
                                message: "an error report without failures".into(),
                            })
                        })?);
                }
                // Keep going: the unit is over for this compute (its other results are
                // stored); what depends on its failures is taken out of the later units.
                progress.settled.insert((stage, i));
                failures.extend(reported);
            }
            if !failures.is_empty() {
                ahead = None; // Slurm cancelled it (a unit failed); the units change anyway
                self.block(graph, plan, stage, failures, &mut progress)
                    .map_err(exec_err)?;
            }
            // Units without a marker and without an error run again (next loop turn).
        };
        Ok(RunOutput::new(outputs, progress.report))
    }

    /// The graph's outputs, decoded; `Err(stage)` when one did not decode (it was removed
    /// and its unit's marker too).
    fn read_outputs(
        &self,
        graph: &Graph,
        plan: &Plan,
        encoder: &Encoder,
        progress: &Progress,
    ) -> Result<Result<Vec<Option<Value>>, usize>, ClusterError> {
        let mut values = Vec::new();
        for &o in graph.outputs() {
            let node = graph.node(o);
            if progress.blocked.contains_key(&o) {
                values.push(None); // failed or blocked (keep going): in the report
                continue;
            }
            if let Some(v) = node
                .literal()
                .map(|(v, _)| v)
                .or_else(|| plan.loaded.get(&o))
            {
                values.push(Some(v.clone()));
                continue;
            }
            if let Some(v) = progress.outputs.get(&o) {
                values.push(Some(v.clone())); // decoded when its checkpoint was saved
                continue;
            }
            match self.read_value(graph, plan, encoder, o)? {
                Ok(v) => values.push(Some(v)),
                Err(back) => return Ok(Err(back)),
            }
        }
        Ok(Ok(values))
    }

    /// The result of task node `id`, read from the data plane and decoded; `Err(stage)` when
    /// it is missing or does not decode — a corrupt entry is removed — after removing the
    /// marker of the unit that produces it, whose `stage` must run again.
    fn read_value(
        &self,
        graph: &Graph,
        plan: &Plan,
        encoder: &Encoder,
        id: NodeId,
    ) -> Result<Result<Value, usize>, ClusterError> {
        let key = graph.key(id);
        let codec = plan.codecs.get(&id).ok_or_else(|| ClusterError::Format {
            what: key.to_string(),
            message: "a task without a plan".into(),
        })?;
        let entry = plan.layout.value(key);
        let Some(bytes) = self.store.get(&entry)? else {
            return Ok(Err(self.invalidate(plan, &entry)?));
        };
        self.downloaded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        match encoder.decode(codec, &bytes, &entry) {
            Ok(v) => Ok(Ok(v)),
            Err(_) => {
                self.store.delete(&entry)?;
                Ok(Err(self.invalidate(plan, &entry)?))
            }
        }
    }

    /// Saves the results of stage `stage`'s checkpointed tasks into the compute's cache
    /// (each once per run, tracked in `saved`), read back from the data plane. `Some(stage)`
    /// when one is missing or does not decode: it was removed with its unit's marker, and that
    /// stage runs again.
    fn save_checkpoints(
        &self,
        graph: &Graph,
        plan: &Plan,
        stage: usize,
        ctx: &RunContext,
        encoder: &Encoder,
        progress: &mut Progress,
    ) -> Result<Option<usize>, Error> {
        if ctx.cache.is_none() {
            return Ok(None);
        }
        for &id in &plan.stage_nodes[stage] {
            let node = graph.node(id);
            if node.save_spec().is_none()
                || progress.saved.contains(&id)
                || progress.blocked.contains_key(&id)
            {
                continue;
            }
            let read = self
                .read_value(graph, plan, encoder, id)
                .map_err(|e| Error::Cache {
                    key: node.key().clone(),
                    name: node.name().to_owned(),
                    action: CacheAction::Save,
                    source: Box::new(e),
                })?;
            let value = match read {
                Ok(value) => value,
                Err(back) => return Ok(Some(back)),
            };
            ctx.save_checkpoint(node, &value)?;
            progress.saved.insert(id);
            if graph.outputs().contains(&id) {
                progress.outputs.insert(id, value);
            }
        }
        Ok(None)
    }

    /// Keep going after `failures` in stage `stage`: records them, marks every task that
    /// depends on one as blocked (recorded as skipped, with the failure it waits on), and
    /// takes the blocked tasks out of the later units — rewriting their descriptions in the
    /// store, and settling a unit left with nothing to run — so no worker looks for an input
    /// that will never come.
    fn block(
        &self,
        graph: &Graph,
        plan: &mut Plan,
        stage: usize,
        failures: Vec<Failure>,
        progress: &mut Progress,
    ) -> Result<(), ClusterError> {
        let Progress {
            blocked,
            settled,
            report,
            ..
        } = progress;
        for f in failures {
            let id = graph.id_of(&f.key).ok_or_else(|| ClusterError::Format {
                what: f.key.to_string(),
                message: "a worker reported a task this graph does not have".into(),
            })?;
            blocked.insert(id, f.key.clone());
            report.failed.push(f);
        }
        for id in graph.in_order() {
            if blocked.contains_key(&id) {
                continue;
            }
            let because = graph.node(id).args().iter().find_map(|a| match *a {
                Arg::Node(dep) => blocked.get(&dep).cloned(),
                _ => None,
            });
            if let Some(because) = because {
                report
                    .skipped
                    .push(Skipped::new(graph.key(id).clone(), because.clone()));
                blocked.insert(id, because);
            }
        }
        let gone: HashSet<String> = blocked
            .keys()
            .map(|&id| graph.key(id).to_string())
            .collect();
        for (s, units) in plan.stages.iter_mut().enumerate().skip(stage + 1) {
            for (u, unit) in units.iter_mut().enumerate() {
                let before = unit.nodes.len();
                unit.nodes.retain(|n| !gone.contains(&n.key));
                if unit.nodes.len() == before {
                    continue;
                }
                if unit.nodes.is_empty() {
                    settled.insert((s, u)); // nothing left to run: never submitted
                }
                self.put_unit(&plan.layout, unit)?;
            }
        }
        Ok(())
    }

    /// Hands what the units of `stage` that just ran report (task, node and thread, start,
    /// end, result size) to the compute's hooks, as tasks that ran elsewhere
    /// ([`TaskStatus::Remote`], at `"<node>/<thread>"`), and counts their data plane bytes.
    /// Each report is read once and removed (a unit that runs again writes a new one).
    fn report_events(
        &self,
        graph: &Graph,
        plan: &Plan,
        stage: usize,
        pending: &[usize],
        ctx: &RunContext,
        progress: &mut Progress,
    ) -> Result<(), ClusterError> {
        if progress.ids.is_empty() {
            progress.ids = plan
                .stage_nodes
                .iter()
                .flatten()
                .map(|&id| (graph.key(id).to_string(), id))
                .collect();
        }
        for &i in pending {
            let entry = plan.layout.events(&plan.stages[stage][i].unit);
            let Some(bytes) = self.store.get(&entry)? else {
                continue; // killed before it reported, or a run older than reports
            };
            self.store.delete(&entry)?;
            let events: UnitEvents =
                serde_json::from_slice(&bytes).map_err(|e| ClusterError::Format {
                    what: entry.clone(),
                    message: e.to_string(),
                })?;
            for e in &events.events {
                progress.stage_start = progress.stage_start.min(e.start);
                progress.stage_end = progress.stage_end.max(e.end);
                if let Some(&id) = progress.ids.get(&e.key) {
                    progress.ends.insert(id, e.end);
                }
            }
            {
                let mut stats = self.stats();
                stats.units += 1;
                stats.tasks += events.events.len();
                stats.written += events.events.iter().map(|e| e.stored).sum::<u64>();
                stats.read += events.events.iter().map(|e| e.read).sum::<u64>();
            }
            if ctx.hooks.is_empty() {
                continue;
            }
            for e in &events.events {
                let Some(&id) = progress.ids.get(&e.key) else {
                    continue;
                };
                let location = format!("{}/{}", events.node, e.thread);
                let next = progress.lanes.len();
                let worker = *progress.lanes.entry(location.clone()).or_insert(next);
                // On the compute's time axis; a node clock behind the driver's clamps to 0.
                let start = Duration::from_nanos(e.start.saturating_sub(progress.started));
                let duration = Duration::from_nanos(e.end.saturating_sub(e.start));
                let failed;
                let status = if e.ok {
                    TaskStatus::Remote { size: e.size }
                } else {
                    failed = Error::Task {
                        key: graph.key(id).clone(),
                        name: graph.node(id).name().to_owned(),
                        attempts: e.attempt,
                        source: "failed on a cluster worker (see the compute's error)".into(),
                    };
                    TaskStatus::Failed(&failed)
                };
                let end =
                    TaskEnd::new(id, worker, start, duration, e.attempt, status).at(&location);
                for h in ctx.hooks.iter() {
                    h.on_task_start(graph, id, worker);
                    h.on_task_end(graph, &end);
                }
            }
        }
        Ok(())
    }

    /// Reports the units of `stage` whose task reports are in the store (one listing).
    fn report_listed(
        &self,
        graph: &Graph,
        plan: &Plan,
        stage: usize,
        ctx: &RunContext,
        progress: &mut Progress,
    ) -> Result<(), ClusterError> {
        let listed: HashSet<String> = self
            .store
            .list(&plan.layout.events_prefix())?
            .into_iter()
            .collect();
        let ready: Vec<usize> = plan.stages[stage]
            .iter()
            .enumerate()
            .filter(|(_, u)| listed.contains(&plan.layout.events(&u.unit)))
            .map(|(i, _)| i)
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        self.report_events(graph, plan, stage, &ready, ctx, progress)
    }

    /// Counts the costs of `stage`, whose units are all done: how long its first task waited
    /// after the stage could start, and how long the unit whose inputs were ready first waited
    /// for the previous stage to end.
    fn close_stage(&self, graph: &Graph, plan: &Plan, stage: usize, progress: &mut Progress) {
        let (start, end) = (progress.stage_start, progress.stage_end);
        let submitted = progress.submitted.remove(&stage).unwrap_or(u64::MAX);
        (progress.stage_start, progress.stage_end) = (u64::MAX, 0);
        if end == 0 {
            return; // nothing ran (everything was done already)
        }
        let previous = progress.last_end.replace(end);
        // A job queued behind the previous stage cannot start before that stage ended.
        let ready = match previous {
            Some(p) => p.max(submitted.min(start)),
            None => submitted.min(start),
        };
        let inputs_ready = plan.stages[stage]
            .iter()
            .map(|unit| {
                unit.nodes
                    .iter()
                    .filter_map(|n| progress.ids.get(&n.key))
                    .flat_map(|&id| graph.dependencies(id))
                    .filter_map(|d| progress.ends.get(d))
                    .copied()
                    .max()
                    .unwrap_or(0)
            })
            .min();
        let mut stats = self.stats();
        if let (Some(p), Some(inputs)) = (previous, inputs_ready) {
            stats.stage_barrier += Duration::from_nanos(p.saturating_sub(inputs));
        }
        stats.start_latency += Duration::from_nanos(start.saturating_sub(ready));
        stats.stages += 1;
    }

    fn invalidate(&self, plan: &Plan, key: &str) -> Result<usize, ClusterError> {
        let &(s, u) = plan.producer.get(key).ok_or_else(|| ClusterError::Format {
            what: key.to_owned(),
            message: "no unit produces it".into(),
        })?;
        self.store
            .delete(&plan.layout.done(&plan.stages[s][u].unit))?;
        Ok(s)
    }
}

impl Executor for SlurmExecutor {
    fn execute(&self, graph: &Arc<Graph>, ctx: &RunContext) -> Result<RunOutput, Error> {
        *self.stats() = RunStats::default();
        let started = Instant::now();
        self.uploaded.store(0, Ordering::Relaxed);
        self.downloaded.store(0, Ordering::Relaxed);
        for h in ctx.hooks.iter() {
            h.on_start(graph);
        }
        let result = load_checkpoints(graph, ctx)
            .and_then(|loaded| {
                plan(
                    graph,
                    self.options.units_per_stage,
                    loaded,
                    ctx.origin.as_deref(),
                    ctx.why_local.as_deref(),
                )
                .map_err(|e| Error::Executor(Box::new(e)))
            })
            .and_then(|mut p| self.drive(graph, &mut p, ctx));
        {
            let mut stats = self.stats();
            stats.written += self.uploaded.load(Ordering::Relaxed);
            stats.read += self.downloaded.load(Ordering::Relaxed);
            stats.wall = started.elapsed();
            self.totals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .add(&stats);
        }
        for h in ctx.hooks.iter() {
            h.on_finish(graph, result.as_ref().err());
        }
        result
    }

    fn parallelism(&self) -> usize {
        self.options.units_per_stage
    }
}

/// Nanoseconds since the Unix epoch (0 for a clock set before 1970).
fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What the driver knows of a run beyond the store's markers.
#[derive(Default)]
struct Progress {
    /// Checkpointed results already saved to the compute's cache.
    saved: HashSet<NodeId>,
    /// The values of outputs among them, decoded to be saved: not read a second time.
    outputs: HashMap<NodeId, Value>,
    /// Keep going: what failed and what it blocked.
    report: Report,
    /// Keep going: graph ids that will have no value, with the failed key each waits on.
    blocked: HashMap<NodeId, Key>,
    /// Keep going: units over for this compute ((stage, index): failed, or left empty).
    settled: HashSet<(usize, usize)>,
    /// When the compute started, in nanoseconds since the Unix epoch.
    started: u64,
    /// The hooks' worker index of each remote `"<node>/<thread>"`.
    lanes: HashMap<String, usize>,
    /// Task nodes by key text (built at the first report).
    ids: HashMap<String, NodeId>,
    /// When the last reported stage's last task ended (ns since the Unix epoch).
    last_end: Option<u64>,
    /// When each reported task ended (ns since the Unix epoch).
    ends: HashMap<NodeId, u64>,
    /// The stage being run: its first task's start and last task's end so far, and when its
    /// first job was submitted (ns since the Unix epoch; `u64::MAX`/0 when none).
    stage_start: u64,
    stage_end: u64,
    /// Per stage, when its first job was submitted.
    submitted: HashMap<usize, u64>,
}

/// The task failures in a unit's error report (`{"failures": [{key, task, error}, …]}`), as
/// [`Error::Task`]s whose source names the unit's log.
fn parse_failures(bytes: &[u8], entry: &str, log: &str) -> Result<Vec<Failure>, ClusterError> {
    let bad = |message: &str| ClusterError::Format {
        what: entry.to_owned(),
        message: message.to_owned(),
    };
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let list = v["failures"]
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| bad("no `failures` list"))?;
    list.iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            let key: Key = text("key")
                .parse()
                .map_err(|_| bad("a failure without a valid key"))?;
            let name = text("task");
            let attempts = f["attempts"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1);
            let error = Error::Task {
                key: key.clone(),
                name: name.clone(),
                attempts,
                source: Box::new(RemoteTaskError {
                    message: text("error"),
                    log: log.to_owned(),
                }) as BoxError,
            };
            Ok(Failure::new(key, name, error))
        })
        .collect()
}

/// The values of the nodes the graph loads from the compute's checkpoint cache, by graph id.
fn load_checkpoints(graph: &Graph, ctx: &RunContext) -> Result<HashMap<NodeId, Value>, Error> {
    NodeId::all(graph.len())
        .filter(|&id| graph.node(id).is_loaded())
        .map(|id| Ok((id, ctx.load_checkpoint(graph.node(id))?)))
        .collect()
}

/// A job array of one stage, submitted and not yet waited for.
struct Submitted<'a> {
    stage: usize,
    indices: Vec<usize>,
    job: String,
    /// When `sbatch` returned (ns since the Unix epoch).
    at: u64,
    /// The worker log pattern (`%A` the job, `%a` the unit index).
    log: String,
    guard: CancelOnDrop<'a>,
}

/// Cancels a job that is still being waited for when the wait ends early (error or panic).
struct CancelOnDrop<'a> {
    executor: &'a SlurmExecutor,
    job: Option<String>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let _ = self.executor.run(&["scancel", &job], None);
        }
    }
}

/// Single-quotes a word for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn make_backend(address: &str) -> Result<Arc<dyn Executor>, BoxError> {
    Ok(Arc::new(SlurmExecutor::from_address(address)?))
}

inventory::submit! {
    brisk_exec::HandlerBackend::new("slurm", make_backend)
}

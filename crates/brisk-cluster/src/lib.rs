//! Run the same Brisk graphs on a Slurm cluster.
//!
//! Brisk does not invent a cluster protocol: it drives **Slurm** and moves data through a
//! **shared store** (a directory on a shared filesystem, or any `object_store` backend),
//! with brisk-checkpoint's stores and encoder.
//!
//! - **Worker mode.** A program calls [`init`] at the top of `main`. Launched by Slurm as a
//!   worker, it runs its work unit and exits; otherwise `init` returns and the program goes
//!   on as the driver. Closures never travel; a worker finds the tasks it runs in one of two
//!   ways:
//!   - **registered tasks**: `#[task]` functions whose arguments and result are serde types,
//!     found by name;
//!   - **rebuilt graphs**: when the compute says how its graph was built
//!     (`ComputeOptions::origin`, a registered graph builder and its parameters — see
//!     `brisk_graph::remote`), each worker builds the same graph again, finds its nodes by
//!     their place in it and runs their own closures. brisk-array sets the origin of every
//!     compute of an array whose steps all have recipes (random data, Zarr reads, fused
//!     elementwise arithmetic, reductions, slicing, rechunk, concatenation, stacking,
//!     transposes, kernels registered with `brisk_array::kernel!`), and brisk-zarr of every
//!     write, so **arrays and Zarr I/O run on the cluster unchanged**: workers read and write
//!     chunks against the store themselves, and only what tasks return (reduction partials,
//!     write acknowledgements) crosses the data plane, as registered wire types
//!     (`brisk_graph::wire_types!`). An array with a step that has no recipe (a `mapv`
//!     closure, an unregistered kernel, a memory store) is refused before anything is
//!     submitted, with an error naming the task and the step.
//! - **Units and stages.** [`SlurmExecutor`] splits a graph into stages by depth (a node's
//!   stage is one more than its deepest dependency's), and each stage into at most
//!   `units_per_stage` units of independent nodes. A stage is one job array
//!   (`sbatch --parsable --array=… --requeue`); a unit reads its arguments by key from the
//!   store, writes each result by key (one atomic put), then a done marker. A unit whose
//!   marker exists returns at once, so requeues, retries and duplicate runs are harmless:
//!   **the store, not Slurm, decides what is done.**
//! - **Driver.** Submits a stage — and queues the next one behind it
//!   (`--dependency=afterok`, `--kill-on-invalid-dep=yes`; `chain_stages`), so it starts as
//!   soon as the stage succeeds — polls `squeue -h -j <job> -o '%i %T'` (no slurmdbd
//!   needed) until the stage has left the queue, then reads the markers: a unit without one (a
//!   killed worker, a lost node) is submitted again, up to `retries` times; a unit that
//!   reports a task error is not submitted again (it would fail again) and the compute fails
//!   naming the task's key, its error and the unit's log file. Task errors and panics are
//!   retried on the node as on local threads, up to the task's own `retries` annotation
//!   (`#[task(retries = n)]`, `Delayed::with_retries`); a panic is the task's error. On error, on drop of a run, and
//!   when the compute's cancel token fires (the compute then returns `Error::Cancelled`), its
//!   jobs are cancelled with `scancel`. Under `FailurePolicy::KeepGoing` a unit's task
//!   failures are reported (every one, with the unit's log) and the tasks that depend on them
//!   are taken out of the later units before those are submitted; the rest runs.
//! - **Data.** Results travel encoded by brisk-checkpoint's encoder (MessagePack + zstd: exact,
//!   compact); an entry that does not decode is treated as missing, and its unit runs again.
//! - **Checkpoints.** A compute's checkpoint cache (`ComputeOptions::cache`) works as on local
//!   threads: nodes it holds are loaded by the driver and uploaded for the tasks that read
//!   them, and the results of checkpointed tasks are saved as soon as their stage is done, so
//!   a run that fails in a later stage keeps them (a result that left the data plane or does
//!   not decode sends its unit back to work first).
//! - **Dynamic sources.** A `brisk_exec::source` pipeline runs on a `SlurmExecutor` as on
//!   threads: the poller stays in the driver, each partition is submitted as its input
//!   arrives, and `SourceOptions::batch(max, window)` groups the partitions that arrive close
//!   together into one graph (one job array per stage) while each still fails, retries and is
//!   reported on its own. Write the per-partition work with `#[task]` functions (or arrays).
//! - **One timeline.** Workers report each task (node, thread, start, end, result size); the
//!   driver hands the reports to the compute's hooks as `TaskStatus::Remote` events at
//!   `TaskEnd::location` `"<node>/<thread>"`, so `brisk_profile::Profiler`, its HTML report
//!   (a row per node and thread) and `ProgressBar` show remote tasks as they finish.
//!   [`SlurmExecutor::last_run`] and [`SlurmExecutor::totals`] give the cost ([`RunStats`]):
//!   job arrays, tasks, data plane bytes, each job array's start-up and the stage barrier.
//!
//! # Deployment
//!
//! | what | where |
//! |---|---|
//! | worker program | the driver's own binary (`std::env::current_exe`, or `worker_program`) on a path every node sees; it must be the same build, since workers find tasks, graph builders, recipes, kernels and wire types by name in it |
//! | data plane | `<store>/runs/<run id>/…` (units, values, markers, task reports); the run id is a hash of the graph's output keys, so a rerun of the same graph finds its finished units |
//! | Zarr stores | on a filesystem every node mounts at the same path (`ZarrStore::directory`) or an object store URL (`objfile://`, `s3://`, `gs://`, `az://`); memory and durable directory stores stay local (`ZarrStore::url` is `None`) |
//! | worker logs | `<log dir>/brisk-<run>-s<stage>-<job>_<index>.log` (default `<store>/logs` for a directory store) |
//! | sbatch options | `--requeue`, and `--partition`, `--account`, `--time`, `--cpus-per-task`, `--mem`, `--gres=gpu:N` when set, plus your extra lines |
//! | environment | the driver's environment is exported to the workers (Slurm's default `--export=ALL`), plus `BRISK_CLUSTER_STORE` and `BRISK_CLUSTER_UNIT`; `setup_lines` run before the worker (`module load …`) |
//!
//! **When a node fails**: its units end without their done markers; the driver submits them
//! again (up to `retries` times; Slurm's `--requeue` may already have). A unit rerun skips
//! the results an earlier attempt stored. A Zarr write into a directory is staged and swapped
//! into place only after every unit is done, so a write that never finishes leaves the old
//! array; chunks are written atomically (temporary file and rename, or one object `put`), so
//! a killed worker never leaves a torn chunk. A result that is lost or corrupt is recomputed
//! by its unit.
//!
//! Size units so that one takes seconds to minutes: Slurm needs about half a second to start
//! a job array (measured on the local cluster, see `RunStats::overhead_per_job`), and a unit
//! reads its inputs from the store and writes its outputs back. Point `store` at a shared
//! filesystem path that every node mounts at the same place, or at `s3://bucket/prefix` (the
//! `AWS_*` variables travel with the job).

#![forbid(unsafe_code)]

mod options;
mod plan;
mod slurm;
mod worker;

use std::fmt;

pub use options::SlurmOptions;
pub use slurm::{RunStats, SlurmExecutor};
pub use worker::{init, run_unit};

/// How values travel through the data plane: MessagePack (binary, exact floats, NaN
/// included) compressed with zstd, with brisk-checkpoint's integrity checks.
pub(crate) fn data_encoder() -> brisk_checkpoint::Encoder {
    brisk_checkpoint::Encoder::new().serializer(brisk_checkpoint::Serializer::MessagePack)
}

/// What went wrong in the cluster backend (carried inside `brisk_graph::Error::Executor` or
/// as the source of `brisk_graph::Error::Task`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A `slurm://` address could not be used.
    #[error("Slurm address `{address}`: {reason}")]
    Address {
        /// The address.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// A node cannot run on the cluster.
    #[error(
        "task {key} (`{name}`) cannot run on the cluster: {reason}; only `#[task]` functions whose arguments and result are serde types can"
    )]
    NotRemote {
        /// The node's key.
        key: String,
        /// The node's task name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A Slurm command could not be run or failed.
    #[error("`{command}` failed: {message}")]
    Slurm {
        /// The command line.
        command: String,
        /// What happened (its stderr, or why it could not start).
        message: String,
    },
    /// Encoding or decoding a value for the data plane failed.
    #[error(transparent)]
    Store(#[from] brisk_checkpoint::CheckpointError),
    /// The data plane's store refused a key or failed (the backend's error is the source).
    #[error(transparent)]
    Storage(#[from] brisk_store::StoreError),
    /// A unit kept ending without its done marker.
    #[error(
        "unit {unit} ended without finishing {attempts} time(s) (killed, out of time or memory?); see its log {log}"
    )]
    UnitLost {
        /// The unit (`s<stage>-<index>`).
        unit: String,
        /// Submissions made.
        attempts: u32,
        /// Its last log file.
        log: String,
    },
    /// A stage did not leave the queue in time.
    #[error(
        "stage {stage} of run {run} did not finish within {seconds} s; its job {job} was cancelled"
    )]
    Timeout {
        /// The run.
        run: String,
        /// The stage.
        stage: usize,
        /// The job.
        job: String,
        /// The limit.
        seconds: u64,
    },
    /// A unit description or marker is malformed.
    #[error("{what}: {message}")]
    Format {
        /// Which entry.
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// A task's error as a worker reported it.
#[derive(Debug)]
pub struct RemoteTaskError {
    /// The error text (with causes), as the worker saw it.
    pub message: String,
    /// The log file of the unit that ran it.
    pub log: String,
}

impl fmt::Display for RemoteTaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (worker log: {})", self.message, self.log)
    }
}

impl std::error::Error for RemoteTaskError {}

//! Run the same Brisk graphs on a Slurm cluster.
//!
//! Brisk does not invent a cluster protocol: it drives **Slurm** and moves data through a
//! **shared store** (a directory on a shared filesystem, or any `object_store` backend),
//! with brisk-checkpoint's stores and encoder.
//!
//! - **Worker mode.** A program calls [`init`] at the top of `main`. Launched by Slurm as a
//!   worker, it runs its work unit and exits; otherwise `init` returns and the program goes
//!   on as the driver. Tasks are found by their registered name (`#[task]` functions whose
//!   arguments and result are serde types), so closures never travel.
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
//!   compact);
//!   an entry that does not decode is treated as missing, and its unit runs again.
//! - **Checkpoints.** A compute's checkpoint cache (`ComputeOptions::cache`) works as on local
//!   threads: nodes it holds are loaded by the driver and uploaded for the tasks that read
//!   them, and the results of checkpointed tasks are saved as soon as their stage is done, so
//!   a run that fails in a later stage keeps them (a result that left the data plane or does
//!   not decode sends its unit back to work first).
//!
//! # Deployment
//!
//! | what | where |
//! |---|---|
//! | units, values, markers | `<store>/runs/<run id>/…`; the run id is a hash of the graph's output keys, so a rerun of the same graph finds its finished units |
//! | worker logs | `<log dir>/brisk-<run>-s<stage>-<job>_<index>.log` (default `<store>/logs` for a directory store) |
//! | sbatch options | `--requeue`, and `--partition`, `--account`, `--time`, `--cpus-per-task`, `--mem`, `--gres=gpu:N` when set, plus your extra lines |
//! | environment | the driver's environment is exported to the workers (Slurm's default `--export=ALL`), plus `BRISK_CLUSTER_STORE` and `BRISK_CLUSTER_UNIT` |
//!
//! Size units so that one takes seconds to minutes: Slurm needs about a second to start a
//! job, and a unit reads its inputs from the store and writes its outputs back. Point
//! `store` at a shared filesystem path that every node mounts at the same place, or at
//! `s3://bucket/prefix` (the `AWS_*` variables travel with the job).

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

//! Brisk: lazy, parallel, checkpointed computation over task graphs.
//!
//! Describe a computation lazily with `#[brisk::task]` functions (or closures through
//! [`graph::TaskSpec`]); Brisk builds a graph with stable content-addressed keys, merges
//! identical work, culls what is not needed, orders it and runs it.
//!
//! ```
//! use brisk::prelude::*;
//!
//! #[brisk::task]
//! fn load(i: u64) -> Vec<f64> {
//!     (0..1000).map(|j| (i * 1000 + j) as f64).collect()
//! }
//!
//! #[brisk::task]
//! fn mean(parts: Vec<Vec<f64>>) -> f64 {
//!     let n: usize = parts.iter().map(Vec::len).sum();
//!     parts.iter().flatten().sum::<f64>() / n as f64
//! }
//!
//! # fn main() -> brisk::Result<()> {
//! let parts: Delayed<Vec<Vec<f64>>> = (0..8).map(load).collect();
//! let m = mean(parts);                   // nothing has run yet
//! println!("{}", m.key());               // mean/5f1c…: the same on every run and machine
//! assert_eq!(m.compute()?, 3999.5);
//! # Ok(())
//! # }
//! ```
//!
//! | feature | unlocks |
//! |---|---|
//! | `exec` (default) | [`exec`]: executors, `compute()`, [`compute_all`](exec::compute_all) |
//! | `macros` (default) | the [`task`] attribute |
//! | `ndarray` (default) | fast tokenization of `ndarray` arrays passed as task arguments |
//! | `array` (default) | [`array`](mod@array): chunked n-dimensional lazy arrays |
//! | `zarr` (default) | [`zarr`]: Zarr v2/v3 I/O of arrays (local directories, memory, object stores) |
//! | `checkpoint` (default) | [`checkpoint`]: save and load task results through an encoder chain |
//! | `guard` (default) | [`guard`]: files opened once per compute and left as found; a bounded handle pool |
//! | `profile` (default) | [`profile`]: task timelines, CPU/memory sampling, results held, progress bar, HTML report, Chrome traces, graph pictures |
//! | `cluster` (default) | [`cluster`]: the same graphs on Slurm, through a shared store (its docs are the deployment guide) |
//! | `store` (default) | [`store`]: the storage layer under checkpoints, Zarr and the cluster (key→bytes stores, key validation, atomic writes) |
//! | `s3`, `azure`, `gcs` | cloud object storage for checkpoints and Zarr (`s3://`, `az://`, `gs://`) |
#![forbid(unsafe_code)]

pub use brisk_graph as graph;

#[cfg(feature = "exec")]
pub use brisk_exec as exec;

#[cfg(feature = "array")]
pub use brisk_array as array;

#[cfg(feature = "zarr")]
pub use brisk_zarr as zarr;

#[cfg(feature = "checkpoint")]
pub use brisk_checkpoint as checkpoint;

#[cfg(feature = "store")]
pub use brisk_store as store;

#[cfg(feature = "guard")]
pub use brisk_guard as guard;

#[cfg(feature = "profile")]
pub use brisk_profile as profile;

#[cfg(feature = "cluster")]
pub use brisk_cluster as cluster;

#[cfg(feature = "macros")]
pub use brisk_macros::{helper, task};

pub mod prelude;

/// Any error Brisk returns, wrapping each crate's own error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Computing a graph failed (a task failed or panicked, the cache failed, …).
    #[error(transparent)]
    Compute(#[from] brisk_graph::Error),
    /// A string is not a valid task key.
    #[error(transparent)]
    ParseKey(#[from] brisk_graph::ParseKeyError),
    /// A value could not be tokenized.
    #[error(transparent)]
    Tokenize(#[from] brisk_graph::TokenizeError),
    /// An array operation failed.
    #[cfg(feature = "array")]
    #[error(transparent)]
    Array(#[from] brisk_array::ArrayError),
    /// Zarr I/O failed.
    #[cfg(feature = "zarr")]
    #[error(transparent)]
    Zarr(#[from] brisk_zarr::ZarrError),
    /// A checkpoint store or encoder failed.
    #[cfg(feature = "checkpoint")]
    #[error(transparent)]
    Checkpoint(#[from] brisk_checkpoint::CheckpointError),
    /// A handler call failed.
    #[cfg(feature = "exec")]
    #[error(transparent)]
    Handler(#[from] brisk_exec::HandlerError),
}

impl Error {
    /// The key of the task this error is about, if any.
    #[must_use]
    pub fn key(&self) -> Option<&brisk_graph::Key> {
        match self {
            Self::Compute(e) => e.key(),
            _ => None,
        }
    }
}

/// `compute()` on chunked arrays with the default executor (one worker per core).
#[cfg(all(feature = "array", feature = "exec"))]
pub trait ComputeArray<T: brisk_array::Element> {
    /// Computes the whole array.
    ///
    /// # Errors
    /// The array's build error or the compute's error.
    fn compute(&self) -> Result<ndarray::ArrayD<T>, brisk_array::ArrayError>;
}

#[cfg(all(feature = "array", feature = "exec"))]
impl<T: brisk_array::Element> ComputeArray<T> for brisk_array::Array<T> {
    fn compute(&self) -> Result<ndarray::ArrayD<T>, brisk_array::ArrayError> {
        self.compute_with(brisk_exec::default_executor())
    }
}

/// `Result` with [`brisk::Error`](Error) as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The README's quickstart, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

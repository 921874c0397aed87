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
#![forbid(unsafe_code)]

pub use brisk_graph as graph;

#[cfg(feature = "exec")]
pub use brisk_exec as exec;

#[cfg(feature = "macros")]
pub use brisk_macros::task;

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
}

impl Error {
    /// The key of the task this error is about, if any.
    #[must_use]
    pub fn key(&self) -> Option<&brisk_graph::Key> {
        match self {
            Self::Compute(e) => e.key(),
            Self::ParseKey(_) | Self::Tokenize(_) => None,
        }
    }
}

/// `Result` with [`brisk::Error`](Error) as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The README's quickstart, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

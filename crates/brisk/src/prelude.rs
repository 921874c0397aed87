//! The names a Brisk user types every day: `use brisk::prelude::*;`.

pub use brisk_graph::{
    AnyDelayed, ComputeOptions, Delayed, FailurePolicy, Graph, Key, Split, TaskSpec, Tokenize,
    delayed, lit, pure,
};

#[cfg(feature = "exec")]
pub use brisk_exec::{
    Compute, SequentialExecutor, compute_all,
    source::{Source, SourceOptions},
};

#[cfg(feature = "macros")]
pub use brisk_macros::task;

#[cfg(feature = "array")]
pub use brisk_array::{Array, Axes};

#[cfg(all(feature = "array", feature = "exec"))]
pub use crate::ComputeArray;

#[cfg(feature = "checkpoint")]
pub use brisk_checkpoint::{SaveWith, Storage};

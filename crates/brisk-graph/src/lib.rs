//! The graph core of Brisk: stable content-addressed task keys, typed lazy values, and the
//! materialized graph (culled, de-duplicated, ordered) that executors run.
//!
//! ```
//! use brisk_graph::{Graph, TaskSpec, lit, pure};
//!
//! // Pure tasks are content-addressed: equal inputs give equal keys, on every run and machine.
//! let double = TaskSpec::new("double").pure();
//! let a = double.call(|x: i64| 2 * x, (21,));
//! assert_eq!(a.key(), double.call(|x: i64| 2 * x, (21,)).key());
//! assert!(a.key().to_string().starts_with("double/"));
//!
//! // Keys chain like a Merkle tree: double(double(1)) differs from double(2).
//! let dd1 = double.call(|x: i64| 2 * x, (double.call(|x: i64| 2 * x, (1,)),));
//! assert_ne!(dd1.key(), double.call(|x: i64| 2 * x, (2,)).key());
//!
//! // A graph holds what the outputs need, once, in an order that finishes branches first.
//! let parts: Vec<_> = (0..4).map(|i| pure("square", |x: i64| x * x, (lit(i),))).collect();
//! let total = pure("sum", |v: Vec<i64>| v.iter().sum::<i64>(), (parts.into_iter().collect::<brisk_graph::Delayed<Vec<i64>>>(),));
//! let graph = Graph::new([&total]);
//! assert_eq!(graph.len(), 4 + 4 + 1 + 1); // literals, squares, collect, sum
//! assert_eq!(graph.order().last(), graph.outputs().first());
//! println!("{}", graph.to_dot(&Default::default()));
//! ```
//!
//! Running a graph is an [`Executor`]'s job (`brisk-exec` has a sequential and a threaded
//! one); this crate spawns no threads and does no I/O. It defines where the other crates meet:
//! [`Executor`], [`Hooks`] (profiling, progress), [`Cache`] (checkpoints) and [`Resource`]
//! (files opened once per compute, through [`ComputeResources`]).
#![forbid(unsafe_code)]

mod cache;
mod compute;
mod delayed;
mod error;
mod executor;
mod graph;
mod hooks;
mod key;
mod node;
pub mod registry;
pub mod remote;
mod resource;
mod size;
mod token;

pub use cache::{Cache, Checkpoint};
pub use compute::{ComputeOptions, Computed, persist_all};
pub use delayed::{
    AnyDelayed, Args, Delayed, IntoArg, IntoArgs, Split, TaskFn, TaskSpec, delayed, lit,
    lit_opaque, pure,
};
pub use error::{
    CacheAction, Error, Failure, Report, ResourceAction, Result, Skipped, chain, panic_message,
};
pub use executor::{CancelToken, Executor, FailurePolicy, RunContext, RunOutput};
pub use graph::{Arg, DotOptions, Graph, NodeId, NodeView};
pub use hooks::{Hooks, TaskEnd, TaskStatus};
pub use key::{Key, Name, ParseKeyError};
pub use node::{Annotations, BoxError, Constant, SaveSpec, Value};
pub use resource::{ComputeResources, RequiredResource, Resource};
pub use size::{SizeOf, size_of_value};
pub use token::{TOKEN_FORMAT_VERSION, Token, Tokenize, TokenizeError, bytes_token, serde_token};

#[doc(hidden)]
pub mod __private {
    //! Used by the code `#[task]` generates; not a public API.
    pub use inventory;

    /// A task's (or helper's) source hash combined with the source hashes of the helpers it
    /// declares with `uses = [...]`, in order.
    #[must_use]
    pub fn combine_sources(own: [u8; 16], used: &[[u8; 16]]) -> [u8; 16] {
        let mut h = blake3::Hasher::new();
        h.update(b"brisk.task-source.uses.v1");
        h.update(&own);
        h.update(&(used.len() as u64).to_le_bytes());
        for u in used {
            h.update(u);
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    }
}

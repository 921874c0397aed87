//! Resources for Brisk computes, the way resource-backed-dask-array meant them, done right.
//!
//! - [`FileResource`]: a file that chunk tasks read with positioned reads from one handle.
//!   Bind lazy values to it with `Delayed::requiring` or `Array::requiring`; every value
//!   derived from them carries the requirement. A compute (brisk-exec) opens each required
//!   resource **once**, only if it is closed, before the first task that needs it, and closes
//!   it after the last — also when a task fails or panics — leaving it as it found it.
//!   Concurrent and nested computes share one opening. Open and close errors are
//!   `brisk_graph::Error::Resource` naming the resource; a close error never hides a task's.
//! - [`HandlePool`]: at most `max_open` handles open at once (least recently used idle handle
//!   closed first), optionally at most N users per handle, for computes over thousands of
//!   files.
//!
//! Any type implementing `brisk_graph::Resource` (open, close, is-open) works the same way.

#![forbid(unsafe_code)]

mod file;
mod pool;

pub use brisk_graph::Resource;
pub use file::FileResource;
pub use pool::{HandlePool, PoolGuard, PoolStats};

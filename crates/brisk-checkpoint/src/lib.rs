//! Checkpoint storage for Brisk graphs: results of chosen tasks saved to, and loaded from,
//! any key→bytes store through an encoder chain, so an expensive pipeline resumes where it
//! stopped — dask-checkpoint's semantics without its pitfalls.
//!
//! ```
//! use brisk_checkpoint::{MemoryStore, Storage};
//! use brisk_exec::{Compute, SequentialExecutor};
//! use brisk_graph::TaskSpec;
//!
//! let storage = Storage::new(MemoryStore::new());
//! let double = TaskSpec::new("double").pure();
//! let x = double.call(|x: i64| 2 * x, (21,)).checkpointed();
//! assert!(!storage.contains(&x).unwrap());
//! assert_eq!(x.compute_with_options(&SequentialExecutor, &storage.options()).unwrap(), 42);
//! assert!(storage.contains(&x).unwrap()); // the next compute loads it instead of running it
//! ```
//!
//! - **Stores** ([`Store`]): [`MemoryStore`], [`DirStore`] (key `double/3d00…` is the file
//!   `<root>/double/3d00…`; temp file + rename, so never a partial entry), [`ObjectStore`]
//!   (any `object_store` backend; S3 with the `s3` feature), or [`from_url`].
//! - **[`Storage`]**: attached explicitly to a compute; load+save or load-only; chains and
//!   nesting (see its table); single-flight across concurrent computes; corrupt entries are
//!   errors naming the key and stage, or recomputed with [`CorruptPolicy::RecomputeOnCorrupt`].
//! - **[`Encoder`]**: pre-encoders → serializer (JSON, YAML, MessagePack, `.npy`) → zstd →
//!   AES-256-GCM, exactly reversed on decode. No format executes code when loading.
//! - **Managing a store** ([`manage`]): list entries with their sizes, times and formats,
//!   verify every entry, remove entries by predicate or age, show one as JSON; the same from a
//!   shell with the `brisk-checkpoint` command (feature `cli`).
//! - **Keys** are the graph's content-addressed keys, stable across processes and Rust
//!   versions; a task can set its own prefix, hasher and excluded arguments
//!   (`brisk_graph::TaskSpec::hasher`, `#[task(exclude(handle))]`).

#![forbid(unsafe_code)]

mod codec;
mod error;
pub mod manage;
mod npy;
mod storage;

pub use brisk_store::{
    DirStore, MemoryStore, ObjectStore, Store, StoreError, from_url, validate_key,
};
/// Re-exported for implementing [`PreEncoder`] (values are `serde_json::Value`) and
/// [`SerdeFormat`] (type-erased serde) without depending on the same versions yourself.
pub use {erased_serde, serde_json};

pub use codec::{
    Compress, Compressor, Encoder, Encrypt, Encrypter, KdfParams, PreEncoder, SerdeFormat,
    Serializer,
};
pub use error::{CheckpointError, Result, Stage};
pub use storage::{CorruptPolicy, Mode, SaveWith, Storage};

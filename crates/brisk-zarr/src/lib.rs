//! Zarr v2 and v3 I/O for Brisk's chunked arrays, through `zarrs`.
//!
//! [`from_zarr`] turns a stored array into a lazy [`brisk_array::Array`] with one read task per
//! storage chunk (or shard); [`to_zarr`] / [`write_tasks`] write a lazy array with exactly one
//! writer per storage unit, rechunking to alignment first and refusing region writes that would
//! share a unit. Local directories write each chunk to a temporary file and rename it, so a
//! crash leaves every chunk old or new, never torn.
//!
//! Chunks are streamed (see `brisk_array::stream`): an expression, a reduction or a write
//! that consumes a chunk decodes it piece by piece inside its own task, and a write encodes its
//! chunk tile by tile as it is computed, so no chunk is ever held whole in memory — reading
//! `(x**2 + x**3).mean(0)` from 60 MB chunks peaks at 16 MiB. [`IoOptions::fused`]`(false)`
//! reads each chunk once in a task of its own instead, for chunks several consumers share.
//!
//! Reads are impure by default (fresh keys on every open: data on disk may change). To
//! checkpoint values computed from a stored array and find them again in a later run, open
//! it with [`IoOptions::pinned`]`(true)`: keys come from the chunks' versions in the store, and
//! a chunk that changes after the open fails its read ([`ZarrError::Changed`]).
//!
//! ```
//! use brisk_array::Array;
//! use brisk_zarr::{ArrayOptions, ZarrStore, create_array, from_zarr, open_array};
//!
//! let store = ZarrStore::memory();
//! let opts = ArrayOptions::new().attribute("history", "made in a doctest".into());
//! let z = create_array::<f32>(&store, "/data", &[100, 80], &[50, 40], &opts).unwrap();
//! assert_eq!(z.unit_shape(), vec![50, 40]);
//! assert_eq!(open_array(&store, "/data").unwrap().attributes()["history"], "made in a doctest");
//!
//! let lazy: Array<f32> = from_zarr(&store, "/data").unwrap();  // 4 read tasks, nothing read yet
//! assert_eq!(lazy.chunks(), &[vec![50, 50], vec![40, 40]]);
//! assert!(from_zarr::<f64>(&store, "/data").is_err());         // wrong element type: an error
//! ```
#![forbid(unsafe_code)]

mod error;
mod io;
mod meta;
mod store;

pub use error::{ChunkChanged, ZarrError};
pub use io::{
    CfEncoding, Dataset, DatasetArray, IoOptions, OpenDataset, VariableInfo, WriteSummary,
    ZarrArray, consolidate_metadata, create_array, create_group, from_zarr, from_zarr_with,
    node_attributes, open_array, open_dataset, to_zarr, to_zarr_dataset, write_tasks,
};
pub use meta::{ArrayOptions, BloscShuffle, Compressor, ZarrElement, ZarrFormat};
pub use store::ZarrStore;

/// The JSON crate attributes are written with (`brisk_zarr::serde_json::json!`), so users need
/// no direct dependency of their own.
pub use serde_json;

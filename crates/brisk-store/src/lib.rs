//! Brisk's one storage layer, below checkpoints, Zarr I/O and the cluster's data plane:
//!
//! - **one key and path validation** ([`validate_key`], [`validate_path`]), applied before
//!   anything is read, written or removed: no key or path can name anything outside its store
//!   (`..`, absolute paths, NUL and other control characters, backslashes, and the layer's own
//!   temporary names are refused with [`StoreError::BadKey`]);
//! - **one temporary-file scheme** ([`AtomicWriter`]): temp file + rename, optional `fsync`,
//!   and the temporary files of writers that died removed by the next writer in their
//!   directory; [`exchange`] swaps two directory trees atomically (stage and swap);
//! - **key→bytes stores** ([`Store`]): [`MemoryStore`], [`DirStore`], [`ObjectStore`] (any
//!   `object_store` backend, cloud URLs with the `s3`, `azure`, `gcs` features), [`from_url`];
//! - **one way to open cloud URLs** ([`open_bucket`], features `s3`/`azure`/`gcs`) and to drive
//!   `object_store`'s futures on the calling thread ([`Driver`]);
//! - **typed errors** ([`StoreError`]) that keep the backend's error as their source.
//!
//! ```
//! use brisk_store::{DirStore, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = DirStore::new(dir.path())?;
//! store.put("results/a", b"42")?;
//! assert_eq!(store.get("results/a")?.as_deref(), Some(&b"42"[..]));
//! assert!(store.put("../outside", b"x").unwrap_err().is_bad_key()); // nothing written
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod atomic;
mod error;
mod key;
mod object;
mod store;

pub use atomic::{
    AtomicWriter, DEAD_AFTER, clean_all_temps, clean_dead_stages, clean_dead_temps, exchange,
    is_temp, stage_name, swap_aside, temp_name,
};
pub use error::{BoxError, Result, StoreError, shown};
pub use key::{MAX_KEY_LEN, STAGE_MARK, validate_key, validate_path};
#[cfg(feature = "cloud")]
pub use object::open_bucket;
pub use object::{Bucket, CLOUD_SCHEMES, Driver, SCHEMES, is_cloud_scheme};
pub use store::{DirStore, Entry, MemoryStore, ObjectStore, Store, from_url};

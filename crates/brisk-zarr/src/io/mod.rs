//! Zarr arrays and groups: opening, creating, reading and writing.
//!
//! This module holds the nodes themselves (paths, metadata, what exists, removal, groups);
//! `read` builds lazy arrays over stored chunks, `rows` and `decode` turn stored chunks into
//! element streams, and `write` creates arrays and writes chunks, crash-consistently.

use std::sync::Arc;

use brisk_array::ChunkGrid;
use brisk_graph::{BoxError, ComputeOptions, Delayed, Executor, TaskSpec, Tokenize};
use ndarray::ArrayD;
use serde_json::{Map, Value};
use zarrs::array::{
    Array as ZArray, ArrayMetadata, ArrayMetadataOptions, ArraySubset, CodecOptions,
};
use zarrs::storage::{ReadableWritableListableStorageTraits, StoreKey};

use crate::error::ZarrError;
use crate::meta::{ArrayOptions, ZarrElement, array_metadata, stored_dtype};
use crate::store::{Removal, ZarrStore};

mod dataset;
mod decode;
mod read;
mod remote;
mod rows;
mod write;

use dataset::keeping_parent_consolidated;
pub use dataset::{
    CfEncoding, Dataset, DatasetArray, OpenDataset, VariableInfo, consolidate_metadata,
    open_dataset, to_zarr_dataset,
};
pub(crate) use read::from_opened;
pub use read::{from_zarr, from_zarr_with};
pub use write::{WriteSummary, to_zarr, write_tasks};
// What the submodules share with each other.
use decode::*;
use rows::*;

type Storage = dyn ReadableWritableListableStorageTraits;

/// How chunks are encoded and decoded.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct IoOptions {
    /// Threads zarrs may use *inside* one chunk's codec (1 by default: Brisk already runs one
    /// task per chunk on every core, so more would oversubscribe; raise it for few, huge,
    /// sharded chunks).
    pub codec_threads: usize,
    /// Whether consumers read chunks inside their own task (`true`, the default): a fused
    /// expression, a reduction's partial or a writer decodes the chunk piece by piece as it
    /// uses it, so the chunk is never held whole. `false` reads each chunk once, in a task of
    /// its own, whose result consumers share (what a chunk read by several reductions of one
    /// compute may prefer). See `brisk_array::stream`.
    pub fused: bool,
    /// Whether reads are pinned to the chunks' versions at open (`false` by default). See
    /// [`IoOptions::pinned`].
    pub pinned: bool,
}

impl Default for IoOptions {
    fn default() -> Self {
        Self {
            codec_threads: 1,
            fused: true,
            pinned: false,
        }
    }
}

impl IoOptions {
    /// Default options.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the codec threads per chunk.
    #[must_use]
    pub fn codec_threads(mut self, n: usize) -> Self {
        self.codec_threads = n.max(1);
        self
    }
    /// Sets whether chunks are read inside their consumers' tasks (see [`IoOptions::fused`]).
    #[must_use]
    pub fn fused(mut self, fused: bool) -> Self {
        self.fused = fused;
        self
    }
    /// Pins reads to the version every chunk has when the array is opened, so that what is
    /// computed from the array can be checkpointed and found again.
    ///
    /// By default reads are impure: each [`from_zarr`] gives fresh keys, so a value derived
    /// from the array is never mistaken for one computed from older data — and a checkpoint
    /// of it is never found by a later run. Pinned, [`from_zarr_with`] asks the store for the
    /// version of every chunk (directories: a `stat` per chunk; object stores: one listing)
    /// and derives each chunk's key from the store location, the array's path and metadata
    /// (attributes aside), the chunk's indices and its version: opening an unchanged array again gives the same
    /// keys (checkpoints of derived values hit), and a chunk that changed gives new keys for
    /// it and everything computed from it. A chunk that changes after the array was opened
    /// fails the read that sees it with [`ZarrError::Changed`] (its version is checked once
    /// the chunk has been read), never a value under a key that does not describe it.
    ///
    /// A version is what the store can tell: on a local directory the file's size, inode
    /// and modification and change times — a file rewritten in place with the same size
    /// within the file system's timestamp granularity (a few milliseconds at worst) of its
    /// previous write goes unnoticed; object stores give e-tags (or generations) that change
    /// with every write; stores in memory hash the bytes.
    ///
    /// ```
    /// use brisk_array::{Array, Axes};
    /// use brisk_exec::ThreadedExecutor;
    /// use brisk_zarr::{ArrayOptions, IoOptions, ZarrStore, from_zarr_with, to_zarr};
    ///
    /// let store = ZarrStore::memory();
    /// let exec = ThreadedExecutor::new(2).unwrap();
    /// let x = Array::<f32>::random_normal(&[100, 60], &[50, 60], 1, 0.0, 1.0).unwrap();
    /// to_zarr(&x, &store, "x", None, &ArrayOptions::new(), &exec).unwrap();
    ///
    /// let key = |io| {
    ///     let x = from_zarr_with::<f32>(&store, "x", io).unwrap();
    ///     x.mean(Axes::All).blocks().unwrap()[0].key().clone()
    /// };
    /// let pinned = IoOptions::new().pinned(true);
    /// assert_eq!(key(pinned), key(pinned));                 // a checkpoint of it is found again
    /// assert_ne!(key(IoOptions::new()), key(IoOptions::new())); // impure: never the same
    /// ```
    #[must_use]
    pub fn pinned(mut self, pinned: bool) -> Self {
        self.pinned = pinned;
        self
    }
    fn codec(self) -> CodecOptions {
        CodecOptions::default().with_concurrent_target(self.codec_threads)
    }
}

/// An opened Zarr array: its location, shape, storage chunking and metadata.
#[derive(Clone)]
pub struct ZarrArray {
    store: ZarrStore,
    path: String,
    inner: Arc<ZArray<Storage>>,
}

impl std::fmt::Debug for ZarrArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrArray")
            .field("store", &self.store.location())
            .field("path", &self.path)
            .field("shape", &self.shape())
            .field("dtype", &self.dtype())
            .finish()
    }
}

/// Metadata as the user described it: zarrs would otherwise add a `_zarrs` provenance entry
/// to the attributes.
fn metadata_options() -> ArrayMetadataOptions {
    ArrayMetadataOptions::default().with_include_zarrs_metadata(false)
}

/// Writes the metadata of `inner` (at its own path). Zarr v3 metadata is written by Brisk so
/// that every codec is an object (`{"name": "crc32c"}`): zarrs writes a codec without
/// configuration as a bare string, which zarr-python refuses ("Expected dict"). Zarr v2
/// metadata is zarrs' own.
fn store_metadata(store: &ZarrStore, inner: &ZArray<Storage>) -> Result<(), ZarrError> {
    match inner.metadata_opt(&metadata_options()) {
        ArrayMetadata::V3(meta) => {
            let mut json = serde_json::to_value(&meta).map_err(|e| store.error(e))?;
            codecs_as_objects(&mut json);
            let key = node_key(store, inner.path().as_str(), "zarr.json")?;
            let bytes = serde_json::to_vec_pretty(&json).map_err(|e| store.error(e))?;
            store
                .storage()
                .set(&key, bytes.into())
                .map_err(|e| store.error(e))
        }
        ArrayMetadata::V2(_) => inner
            .store_metadata_opt(&metadata_options())
            .map_err(|e| store.error(e)),
    }
}

/// Every codec of v3 array metadata (also inside sharding's `codecs` and `index_codecs`)
/// spelled as an object with a name, never a bare string.
fn codecs_as_objects(meta: &mut Value) {
    fn fix(list: &mut Value) {
        let Some(items) = list.as_array_mut() else {
            return;
        };
        for codec in items {
            if let Some(name) = codec.as_str() {
                *codec = serde_json::json!({ "name": name });
            }
            if let Some(config) = codec.get_mut("configuration") {
                for inner in ["codecs", "index_codecs"] {
                    if let Some(list) = config.get_mut(inner) {
                        fix(list);
                    }
                }
            }
        }
    }
    if let Some(codecs) = meta.get_mut("codecs") {
        fix(codecs);
    }
}

/// The elements `start .. start + shape` of an array, as a zarrs subset.
fn region(start: &[u64], shape: &[usize]) -> ArraySubset {
    let ranges: Vec<std::ops::Range<u64>> = start
        .iter()
        .zip(shape)
        .map(|(&s, &n)| s..s + n as u64)
        .collect();
    ArraySubset::new_with_ranges(&ranges)
}

/// A node path as zarrs takes it (`/a/b`), after the storage layer's one path validation:
/// `..`, `.`, empty segments, NUL, backslashes and the layer's own temporary names are refused
/// before anything is read, written or removed.
fn norm_path(path: &str) -> Result<String, ZarrError> {
    let p = brisk_store::validate_path(path)?;
    Ok(format!("/{p}"))
}

/// The key of the file `name` (`zarr.json`, `.zarray`, …) of the node at `path`.
fn node_key(store: &ZarrStore, path: &str, name: &str) -> Result<StoreKey, ZarrError> {
    let rel = path.trim_matches('/');
    let key = if rel.is_empty() {
        name.to_owned()
    } else {
        format!("{rel}/{name}")
    };
    StoreKey::new(key).map_err(|e| store.error(e))
}

/// What is at a node path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    /// Nothing: no metadata and no key below it.
    Absent,
    /// An array or group (its metadata is there).
    Node,
    /// Keys but no metadata: the remains of an interrupted write, or an implicit group.
    Remains,
}

fn node_state(store: &ZarrStore, path: &str) -> Result<NodeState, ZarrError> {
    if node_exists(store, path)? {
        return Ok(NodeState::Node);
    }
    let prefix = store.node_prefix(path)?;
    let any = match store.dir_of(&prefix) {
        Some(dir) => match std::fs::read_dir(&dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(store.error(e)),
        },
        None => !store
            .storage()
            .list_prefix(&prefix)
            .map_err(|e| store.error(e))?
            .is_empty(),
    };
    Ok(if any {
        NodeState::Remains
    } else {
        NodeState::Absent
    })
}

impl ZarrArray {
    fn zerr(&self, e: impl Into<BoxError>) -> ZarrError {
        ZarrError::Zarr {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// The array's path in its store.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &ZarrStore {
        &self.store
    }

    /// The array's shape.
    #[must_use]
    pub fn shape(&self) -> Vec<usize> {
        self.inner.shape().iter().map(|&x| x as usize).collect()
    }

    /// The shape of the storage unit: the chunk shape, or the shard shape of a sharded array
    /// (the unit one writer must own).
    #[must_use]
    pub fn unit_shape(&self) -> Vec<usize> {
        let json = self.metadata_json();
        let v = json
            .pointer("/chunk_grid/configuration/chunk_shape")
            .or_else(|| json.get("chunks"))
            .cloned()
            .unwrap_or(Value::Null);
        serde_json::from_value::<Vec<usize>>(v).unwrap_or_else(|_| self.shape())
    }

    /// The metadata as JSON (`zarr.json` for v3, `.zarray` plus attributes for v2).
    #[must_use]
    pub fn metadata_json(&self) -> Value {
        let mut json = serde_json::to_value(self.inner.metadata()).unwrap_or(Value::Null);
        codecs_as_objects(&mut json);
        json
    }

    /// The stored element type (`float32`, …).
    #[must_use]
    pub fn dtype(&self) -> String {
        stored_dtype(&self.metadata_json())
    }

    /// Whether the array is Zarr v2.
    #[must_use]
    pub fn is_v2(&self) -> bool {
        matches!(self.inner.metadata(), ArrayMetadata::V2(_))
    }

    /// The user attributes.
    #[must_use]
    pub fn attributes(&self) -> Map<String, Value> {
        self.inner.attributes().clone()
    }

    /// The dimension names, if any (v3 metadata, or the v2 `_ARRAY_DIMENSIONS` attribute).
    #[must_use]
    pub fn dimension_names(&self) -> Option<Vec<String>> {
        let json = self.metadata_json();
        let v = json
            .get("dimension_names")
            .filter(|v| !v.is_null())
            .cloned()
            .or_else(|| self.attributes().get("_ARRAY_DIMENSIONS").cloned())?;
        serde_json::from_value::<Vec<Option<String>>>(v)
            .ok()
            .map(|v| v.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Replaces the attributes and rewrites the metadata.
    ///
    /// # Errors
    /// [`ZarrError::Store`] when the metadata cannot be written.
    pub fn set_attributes(&mut self, attributes: Map<String, Value>) -> Result<(), ZarrError> {
        let mut inner = ZArray::open(self.store.storage(), &self.path).map_err(|e| self.zerr(e))?;
        *inner.attributes_mut() = attributes;
        keeping_parent_consolidated(&self.store, &self.path, || {
            store_metadata(&self.store, &inner)
        })?;
        self.inner = Arc::new(inner);
        Ok(())
    }

    /// Reads one storage chunk (or shard).
    ///
    /// # Errors
    /// [`ZarrError::WrongType`], [`ZarrError::Zarr`].
    pub fn read_chunk<T: ZarrElement>(&self, indices: &[u64]) -> Result<ArrayD<T>, ZarrError> {
        self.check_type::<T>()?;
        self.inner
            .retrieve_chunk_opt::<ArrayD<T>>(indices, &IoOptions::default().codec())
            .map_err(|e| self.zerr(e))
    }

    fn check_type<T: ZarrElement>(&self) -> Result<(), ZarrError> {
        let stored = self.dtype();
        if stored != T::V3 {
            return Err(ZarrError::WrongType {
                path: self.path.clone(),
                stored,
                requested: T::V3.into(),
            });
        }
        Ok(())
    }
}

/// Creates an array (metadata only; chunks are written by [`to_zarr`]).
///
/// # Errors
/// [`ZarrError::AlreadyExists`] unless `opts.overwrite`; [`ZarrError::BadOptions`];
/// [`ZarrError::Store`].
pub fn create_array<T: ZarrElement>(
    store: &ZarrStore,
    path: &str,
    shape: &[usize],
    chunks: &[usize],
    opts: &ArrayOptions,
) -> Result<ZarrArray, ZarrError> {
    let path = norm_path(path)?;
    // The new metadata is checked before anything old is removed: bad options never cost
    // the array they were meant to replace.
    let meta = checked_metadata::<T>(shape, chunks, opts)?;
    keeping_parent_consolidated(store, &path, || {
        create_array_at(store, path.clone(), meta, opts)
    })
}

fn create_array_at(
    store: &ZarrStore,
    path: String,
    meta: ArrayMetadata,
    opts: &ArrayOptions,
) -> Result<ZarrArray, ZarrError> {
    let storage = store.storage();
    if node_exists(store, &path)? {
        if !opts.overwrite {
            return Err(ZarrError::AlreadyExists {
                location: store.location().into(),
                path,
            });
        }
        remove_node(store, &path, None)?;
    }
    let inner = ZArray::new_with_metadata(storage, &path, meta).map_err(|e| ZarrError::Zarr {
        path: path.clone(),
        source: e.into(),
    })?;
    store_metadata(store, &inner)?;
    Ok(ZarrArray {
        store: store.clone(),
        path,
        inner: Arc::new(inner),
    })
}

/// The metadata of a new array, checked: options zarrs accepts, and a chunk grid of a size a
/// lazy array can hold (an absurd count is an error, never an abort).
fn checked_metadata<T: ZarrElement>(
    shape: &[usize],
    chunks: &[usize],
    opts: &ArrayOptions,
) -> Result<ArrayMetadata, ZarrError> {
    let chunks: Vec<usize> = chunks.iter().map(|&c| c.max(1)).collect();
    ChunkGrid::regular(shape, &chunks)?;
    let shape64: Vec<u64> = shape.iter().map(|&x| x as u64).collect();
    let chunks64: Vec<u64> = chunks.iter().map(|&x| x as u64).collect();
    let json = array_metadata::<T>(&shape64, &chunks64, opts)?;
    serde_json::from_value(json).map_err(|e| ZarrError::BadOptions(e.to_string()))
}

/// Removes the files and subtrees of the directory tree `dir` (node `path` of `store`) with
/// tasks on `executor`, a share each (see [`Removal`]); the emptied directories are left to
/// the store's `erase_prefix`, which also removes everything when one worker is all there is.
fn remove_on(
    executor: &dyn Executor,
    dir: &std::path::Path,
    store: &ZarrStore,
    path: &str,
) -> Result<(), ZarrError> {
    let ways = executor.parallelism();
    if ways < 2 {
        return Ok(());
    }
    let removal = Arc::new(Removal::plan(dir, ways).map_err(|e| store.error(e))?);
    if removal.items.len() < 2 {
        return Ok(());
    }
    let parts = removal_tasks(removal, ways);
    // Workers of a cluster remove their shares themselves (the tree is on the store's
    // filesystem, which they see).
    let options = match (store.url(), dir.to_str()) {
        (Some(_), Some(d)) => {
            let params = serde_json::json!({ "dir": d, "ways": ways }).to_string();
            ComputeOptions::new().origin(brisk_graph::remote::Origin::new(REMOVE, params))
        }
        _ => ComputeOptions::new().local_only(format!(
            "the store `{}` cannot be opened by another process",
            store.location()
        )),
    };
    parts
        .compute_with_options(executor, &options)
        .map(drop)
        .map_err(|source| ZarrError::Compute {
            path: path.to_owned(),
            source,
        })
}

/// The graph builder of a removal: the same tasks over the tree as its driver planned.
const REMOVE: &str = "brisk_zarr::remove";

fn build_removal(params: &str) -> Result<Vec<brisk_graph::AnyDelayed>, BoxError> {
    #[derive(serde::Deserialize)]
    struct Params {
        dir: std::path::PathBuf,
        ways: usize,
    }
    let p: Params = serde_json::from_str(params)?;
    let removal = Arc::new(Removal::plan(&p.dir, p.ways)?);
    Ok(vec![removal_tasks(removal, p.ways).erase()])
}
brisk_graph::graph_builder!(REMOVE, build_removal);

/// `4 × ways` tasks, each removing every `4 × ways`-th item of `removal` (the same shape
/// whatever the tree holds, so a worker's rebuilt graph matches its driver's).
fn removal_tasks(removal: Arc<Removal>, ways: usize) -> Delayed<Vec<()>> {
    let tasks = 4 * ways;
    let spec = TaskSpec::new("zarr-remove");
    (0..tasks)
        .map(|t| {
            let removal = Arc::clone(&removal);
            let part = (t as u64).token().expect("integers always tokenize");
            spec.call_dyn(
                move |_: Vec<brisk_graph::Value>| -> Result<(), BoxError> {
                    (t..removal.items.len())
                        .step_by(tasks)
                        .try_for_each(|i| removal.remove(i))
                        .map_err(Into::into)
                },
                &[],
                part,
            )
        })
        .collect()
}

fn node_exists(store: &ZarrStore, path: &str) -> Result<bool, ZarrError> {
    let storage = store.storage();
    for name in ["zarr.json", ".zarray", ".zgroup"] {
        let key = node_key(store, path, name)?;
        if storage
            .size_key(&key)
            .map_err(|e| store.error(e))?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Opens an existing array (v2 or v3).
///
/// # Errors
/// [`ZarrError::NotFound`], [`ZarrError::Zarr`].
pub fn open_array(store: &ZarrStore, path: &str) -> Result<ZarrArray, ZarrError> {
    let path = norm_path(path)?;
    if !node_exists(store, &path)? {
        return Err(ZarrError::NotFound {
            location: store.location().into(),
            path,
        });
    }
    let inner = ZArray::open(store.storage(), &path).map_err(|e| ZarrError::Zarr {
        path: path.clone(),
        source: e.into(),
    })?;
    Ok(ZarrArray {
        store: store.clone(),
        path,
        inner: Arc::new(inner),
    })
}

/// The array at `path` from metadata already read (a group's consolidated metadata): no
/// read of its own.
pub(crate) fn array_from_metadata(
    store: &ZarrStore,
    path: &str,
    metadata: &Value,
) -> Result<ZarrArray, ZarrError> {
    let path = norm_path(path)?;
    let zerr = |e: BoxError| ZarrError::Zarr {
        path: path.clone(),
        source: e,
    };
    let meta: ArrayMetadata =
        serde_json::from_value(metadata.clone()).map_err(|e| zerr(e.into()))?;
    let inner =
        ZArray::new_with_metadata(store.storage(), &path, meta).map_err(|e| zerr(e.into()))?;
    Ok(ZarrArray {
        store: store.clone(),
        path,
        inner: Arc::new(inner),
    })
}

/// Removes the node at `path` for an overwrite in place: its metadata first (so that an
/// interruption leaves nothing that opens), then every key below it (for the root: the whole
/// store, as zarr-python does), so no chunk of the old array survives outside the new one's
/// grid. A directory tree is removed with tasks on `executor` when there is one.
fn remove_node(
    store: &ZarrStore,
    path: &str,
    executor: Option<&dyn Executor>,
) -> Result<(), ZarrError> {
    let storage = store.storage();
    for name in ["zarr.json", ".zarray", ".zgroup", ".zattrs"] {
        let key = node_key(store, path, name)?;
        storage.erase(&key).map_err(|e| store.error(e))?;
    }
    let prefix = store.node_prefix(path)?;
    if let (Some(executor), Some(dir)) = (executor, store.dir_of(&prefix)) {
        remove_on(executor, &dir, store, path)?;
    }
    storage.erase_prefix(&prefix).map_err(|e| store.error(e))
}

/// Creates a group with attributes (v3 `zarr.json`, or v2 `.zgroup` + `.zattrs`).
///
/// # Errors
/// [`ZarrError::Store`], [`ZarrError::Zarr`].
pub fn create_group(
    store: &ZarrStore,
    path: &str,
    v2: bool,
    attributes: Map<String, Value>,
) -> Result<(), ZarrError> {
    let path = norm_path(path)?;
    let json = if v2 {
        // zarrs' v2 group metadata holds the attributes flattened beside `zarr_format`
        // (they are stored in `.zattrs`).
        let mut m = attributes;
        m.insert("zarr_format".into(), serde_json::json!(2));
        Value::Object(m)
    } else {
        serde_json::json!({"zarr_format": 3, "node_type": "group", "attributes": attributes})
    };
    let meta: zarrs::metadata::GroupMetadata =
        serde_json::from_value(json).map_err(|e| ZarrError::BadOptions(e.to_string()))?;
    let group =
        zarrs::group::Group::new_with_metadata(store.storage(), &path, meta).map_err(|e| {
            ZarrError::Zarr {
                path: path.clone(),
                source: e.into(),
            }
        })?;
    group.store_metadata().map_err(|e| store.error(e))
}

/// The attributes of the group or array at `path`.
///
/// # Errors
/// [`ZarrError::NotFound`], [`ZarrError::Zarr`].
pub fn node_attributes(store: &ZarrStore, path: &str) -> Result<Map<String, Value>, ZarrError> {
    let path = norm_path(path)?;
    if !node_exists(store, &path)? {
        return Err(ZarrError::NotFound {
            location: store.location().into(),
            path,
        });
    }
    let node = zarrs::node::Node::open(&store.storage(), &path).map_err(|e| ZarrError::Zarr {
        path: path.clone(),
        source: e.into(),
    })?;
    let json = serde_json::to_value(node.metadata()).unwrap_or(Value::Null);
    if let zarrs::node::NodeMetadata::Group(zarrs::metadata::GroupMetadata::V2(g)) = node.metadata()
    {
        // v2 group metadata holds its attributes flattened beside `zarr_format`.
        return Ok(g.attributes.clone());
    }
    Ok(json
        .get("attributes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

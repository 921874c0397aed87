//! Opening, creating, reading and writing Zarr arrays and groups.

use std::sync::Arc;

use brisk_array::{Array, BlockReader, BlockStream, ChunkGrid, Materialized, OpenStream};
use brisk_graph::{BoxError, ComputeOptions, Delayed, Executor, TaskSpec, Tokenize};
use ndarray::ArrayD;
use serde_json::{Map, Value};
use zarrs::array::{
    Array as ZArray, ArrayMetadata, ArrayMetadataOptions, ArraySubset, CodecOptions,
};
use zarrs::storage::{ReadableWritableListableStorageTraits, StoreKey, StorePrefix};

use crate::error::{ChunkChanged, ZarrError};
use crate::meta::{
    ArrayOptions, FastCodec, WriteCodec, ZarrElement, array_metadata, fast_codec, stored_dtype,
    write_codec,
};
use crate::store::{ReadVersion, Removal, ZarrStore};

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
        store_metadata(&self.store, &inner)?;
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
    let storage = store.storage();
    // The new metadata is checked before anything old is removed: bad options never cost
    // the array they were meant to replace.
    let meta = checked_metadata::<T>(shape, chunks, opts)?;
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
    let tasks = 4 * ways;
    let spec = TaskSpec::new("zarr-remove");
    let parts: Delayed<Vec<()>> = (0..tasks)
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
        .collect();
    parts
        .compute_with_options(executor, &ComputeOptions::new())
        .map(drop)
        .map_err(|source| ZarrError::Compute {
            path: path.to_owned(),
            source,
        })
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

/// A lazy array over a stored Zarr array: one task per storage chunk (or shard).
///
/// Reads are not content-addressed (the data on disk may change between computes), so each
/// call gives fresh keys: a derived value is never mistaken for one computed from older data.
/// To checkpoint values computed from a stored array, open it with
/// [`IoOptions::pinned`] (keys from the chunks' versions).
///
/// # Errors
/// [`ZarrError::NotFound`], [`ZarrError::WrongType`] naming the path and both types.
pub fn from_zarr<T: ZarrElement>(store: &ZarrStore, path: &str) -> Result<Array<T>, ZarrError> {
    from_zarr_with(store, path, IoOptions::default())
}

/// [`from_zarr`] with I/O options.
///
/// # Errors
/// As [`from_zarr`].
pub fn from_zarr_with<T: ZarrElement>(
    store: &ZarrStore,
    path: &str,
    io: IoOptions,
) -> Result<Array<T>, ZarrError> {
    let za = open_array(store, path)?;
    za.check_type::<T>()?;
    let grid = ChunkGrid::regular(&za.shape(), &za.unit_shape())?;
    let pins = if io.pinned {
        Some(chunk_versions(&za, &grid)?)
    } else {
        None
    };
    let plan = Arc::new(ReadPlan {
        unit: za.unit_shape(),
        fast: fast_codec(&za.metadata_json()),
        za,
        grid: grid.clone(),
        io,
        pins,
    });
    let blocks: Vec<Delayed<ArrayD<T>>> = match &plan.pins {
        None => {
            let spec = TaskSpec::new("zarr-read");
            (0..grid.num_blocks())
                .map(|i| {
                    let plan = Arc::clone(&plan);
                    spec.try_call(move || plan.read_block::<T>(i), ())
                })
                .collect()
        }
        Some(pins) => {
            // Version 1 of pinned keys: location, path, metadata (without the attributes,
            // which do not change what a chunk decodes to), chunk indices, version.
            // The captured plan is determined by the arguments (the store's location, the
            // path, the metadata, the chunk and its version).
            let spec = TaskSpec::new("zarr-read")
                .pure()
                .version("1")
                .captures_covered_by_args();
            let location = plan.za.store.location().to_owned();
            let mut meta = plan.za.metadata_json();
            if let Some(m) = meta.as_object_mut() {
                m.remove("attributes");
            }
            let meta = meta.to_string();
            (0..grid.num_blocks())
                .map(|i| {
                    let p = Arc::clone(&plan);
                    let (idx, ..) = plan.block(i);
                    spec.try_call(
                        move |_: String, _: String, _: String, _: Vec<u64>, _: Option<String>| {
                            p.read_block::<T>(i)
                        },
                        (
                            location.clone(),
                            plan.za.path.clone(),
                            meta.clone(),
                            idx,
                            pins[i].clone(),
                        ),
                    )
                })
                .collect()
        }
    };
    if !io.fused {
        return Ok(Array::from_blocks(grid, blocks)?);
    }
    let open: OpenStream<T> = Arc::new(move |i| plan.open_stream::<T>(i));
    Ok(Array::from_blocks_streamed(grid, blocks, open)?)
}

/// The version of every chunk (or shard) of `za`, in the order of `grid`'s blocks.
fn chunk_versions(za: &ZarrArray, grid: &ChunkGrid) -> Result<Vec<Option<String>>, ZarrError> {
    let keys: Vec<StoreKey> = (0..grid.num_blocks())
        .map(|i| {
            let idx: Vec<u64> = grid.block_coords(i).iter().map(|&c| c as u64).collect();
            za.inner.chunk_key(&idx)
        })
        .collect();
    let prefix = za.store.node_prefix(&za.path)?;
    za.store
        .versions(&prefix, &keys)
        .map_err(|e| za.store.error(e))
}

/// What reading the chunks of one array needs.
struct ReadPlan {
    za: ZarrArray,
    grid: ChunkGrid,
    unit: Vec<usize>,
    fast: Option<FastCodec>,
    io: IoOptions,
    /// With pinned reads, the version of each block's chunk when the array was opened.
    pins: Option<Vec<Option<String>>>,
}

impl ReadPlan {
    /// The chunk indices, offset and shape of block `i`, and whether it is a whole unit.
    fn block(&self, i: usize) -> (Vec<u64>, Vec<usize>, Vec<usize>, bool) {
        let c = self.grid.block_coords(i);
        let idx: Vec<u64> = c.iter().map(|&c| c as u64).collect();
        let (off, shape) = (self.grid.block_offset(&c), self.grid.block_shape(&c));
        let whole = shape == self.unit;
        (idx, off, shape, whole)
    }

    fn fail(&self, idx: &[u64], e: impl Into<BoxError>) -> BoxError {
        Box::new(ZarrError::chunk("reading", &self.za.path, idx, e))
    }

    /// With pinned reads, what checks after reading block `i` that its chunk is still the
    /// version the array was opened with.
    fn pin(&self, i: usize) -> Option<Pin> {
        let pinned = self.pins.as_ref()?.get(i)?.clone();
        let (idx, ..) = self.block(i);
        Some(Pin {
            store: self.za.store.clone(),
            path: self.za.path.clone(),
            key: self.za.inner.chunk_key(&idx),
            chunk: idx,
            pinned,
        })
    }

    /// Block `i`, whole.
    fn read_block<T: ZarrElement>(&self, i: usize) -> Result<ArrayD<T>, BoxError> {
        let (block, read) = self.read_block_unchecked(i)?;
        if let Some(pin) = self.pin(i) {
            pin.check(read.as_ref())?;
        }
        Ok(block)
    }

    /// Block `i`, whole, and — when Brisk read the stored chunk itself — what tells the
    /// version of the bytes it read.
    fn read_block_unchecked<T: ZarrElement>(
        &self,
        i: usize,
    ) -> Result<(ArrayD<T>, Option<ReadVersion>), BoxError> {
        let (idx, off, shape, whole) = self.block(i);
        let za = &self.za;
        if whole
            && let Some(codec) = self.fast
            && let Some((a, read)) =
                read_fast::<T>(za, &idx, &self.unit, codec).map_err(|e| self.fail(&idx, e))?
        {
            Ok((a, Some(read)))
        } else if whole {
            za.inner
                .retrieve_chunk_opt::<ArrayD<T>>(&idx, &self.io.codec())
                .map(|a| (a, None))
                .map_err(|e| self.fail(&idx, e))
        } else {
            // An edge chunk: only the part inside the array.
            let start: Vec<u64> = off.iter().map(|&o| o as u64).collect();
            za.inner
                .retrieve_array_subset_opt::<ArrayD<T>>(&region(&start, &shape), &self.io.codec())
                .map(|a| (a, None))
                .map_err(|e| self.fail(&idx, e))
        }
    }

    /// Block `i` as a stream: decoded from the store as it is read when the chunk is a whole
    /// unit stored with a [`FastCodec`]; otherwise read whole and served from memory. With
    /// pinned reads, the chunk's version is checked when the stream opens and again when it
    /// is finished.
    fn open_stream<T: ZarrElement>(&self, i: usize) -> Result<Box<dyn BlockStream<T>>, BoxError> {
        let (stream, read) = self.open_stream_unchecked(i)?;
        Ok(match self.pin(i) {
            Some(pin) => {
                pin.check(read.as_ref())?;
                Box::new(Pinned { stream, pin, read })
            }
            None => stream,
        })
    }

    fn open_stream_unchecked<T: ZarrElement>(
        &self,
        i: usize,
    ) -> Result<VersionedStream<T>, BoxError> {
        let (idx, _, shape, whole) = self.block(i);
        let viewable = T::le_bytes_mut(&mut [T::default()]).is_some();
        if viewable && let Some(codec) = self.fast {
            let key = self.za.inner.chunk_key(&idx);
            if let Some((reader, read)) = self
                .za
                .store
                .open_read(&key)
                .map_err(|e| self.fail(&idx, e))?
            {
                let bytes = self.unit.iter().product::<usize>() * std::mem::size_of::<T>();
                let unit = Box::new(ChunkStream::new(
                    reader,
                    codec,
                    bytes,
                    format!("chunk {idx:?} (`{key}`) of `{}`", self.za.path),
                )?);
                let stream: Box<dyn BlockStream<T>> = if whole {
                    unit
                } else {
                    // An edge chunk is stored whole: keep the part inside the array.
                    Box::new(Crop::new(unit, UnitRows::new(&self.unit, &shape)))
                };
                return Ok((stream, Some(read)));
            }
        }
        let (block, read) = self.read_block_unchecked::<T>(i)?;
        Ok((Box::new(Materialized::new(block)), read))
    }
}

/// A block's stream, with what tells the version of the stored bytes it reads.
type VersionedStream<T> = (Box<dyn BlockStream<T>>, Option<ReadVersion>);

/// A chunk's version when its array was opened with pinned reads, checked after the chunk
/// was read: against the version of the bytes read when Brisk read them (the open file, the
/// object the GET returned, the bytes in memory), else against the store's version now.
/// The store's versions never come back to an earlier one (see [`ZarrStore::version`]), so an
/// equal version means the bytes read were the pinned ones.
struct Pin {
    store: ZarrStore,
    path: String,
    chunk: Vec<u64>,
    key: StoreKey,
    pinned: Option<String>,
}

impl Pin {
    fn check(&self, read: Option<&ReadVersion>) -> Result<(), BoxError> {
        let failed = |e: BoxError| -> BoxError {
            Box::new(ZarrError::chunk("reading", &self.path, &self.chunk, e))
        };
        let now = match read {
            Some(r) => Some(r.now().map_err(|e| failed(e.into()))?),
            None => self
                .store
                .version(&self.key)
                .map_err(|e| failed(e.into()))?,
        };
        if now == self.pinned {
            return Ok(());
        }
        Err(Box::new(ZarrError::Changed(Box::new(ChunkChanged {
            location: self.store.location().to_owned(),
            path: self.path.clone(),
            chunk: self.chunk.clone(),
            key: self.key.to_string(),
            pinned: self.pinned.clone(),
            now,
        }))))
    }
}

/// A streamed block whose chunk's version is checked again once it has been read.
struct Pinned<T> {
    stream: Box<dyn BlockStream<T>>,
    pin: Pin,
    read: Option<ReadVersion>,
}

impl<T> BlockStream<T> for Pinned<T> {
    fn read(&mut self, out: &mut [T]) -> Result<(), BoxError> {
        self.stream.read(out)
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.stream.finish()?;
        self.pin.check(self.read.as_ref())
    }
}

/// The rows (runs along the last axis) of a storage unit, and which of them hold elements of
/// an edge block that covers only the start of the unit along each axis.
#[derive(Debug, Clone)]
struct UnitRows {
    unit: Vec<usize>,
    shape: Vec<usize>,
}

impl UnitRows {
    fn new(unit: &[usize], shape: &[usize]) -> Self {
        Self {
            unit: unit.to_vec(),
            shape: shape.to_vec(),
        }
    }
    /// Rows in the unit.
    fn count(&self) -> usize {
        self.unit[..self.unit.len().saturating_sub(1)]
            .iter()
            .product()
    }
    /// Elements per row of the unit.
    fn len(&self) -> usize {
        self.unit.last().copied().unwrap_or(1)
    }
    /// Elements per row that belong to the block.
    fn keep(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    /// Whether unit row `r` (row-major) holds elements of the block.
    fn inside(&self, mut r: usize) -> bool {
        for k in (0..self.unit.len().saturating_sub(1)).rev() {
            if r % self.unit[k] >= self.shape[k] {
                return false;
            }
            r /= self.unit[k];
        }
        true
    }
}

/// One row at a time, handed out `width` elements per row: the shared half of [`Crop`] and
/// [`Pad`], which differ only in how they make the next row.
struct RowBuf<T> {
    row: Vec<T>,
    width: usize,
    /// Elements of `row` handed out (`width` when a new row is needed).
    used: usize,
}

impl<T: Copy> RowBuf<T> {
    fn new(row: Vec<T>, width: usize) -> Self {
        Self {
            row,
            width,
            used: width,
        }
    }

    /// Fills `out` from successive rows, calling `next_row` whenever the current one is used.
    fn copy_to(
        &mut self,
        out: &mut [T],
        mut next_row: impl FnMut(&mut [T]) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut done = 0;
        while done < out.len() {
            if self.used == self.width {
                next_row(&mut self.row)?;
                self.used = 0;
            }
            let n = (self.width - self.used).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.row[self.used..self.used + n]);
            self.used += n;
            done += n;
        }
        Ok(())
    }
}

/// The in-bounds elements of an edge unit, from the stream of the whole stored unit.
struct Crop<T> {
    unit: Box<dyn BlockStream<T>>,
    rows: UnitRows,
    buf: RowBuf<T>,
    /// The next unit row to read.
    next: usize,
}

impl<T: ZarrElement> Crop<T> {
    fn new(unit: Box<dyn BlockStream<T>>, rows: UnitRows) -> Self {
        Self {
            unit,
            buf: RowBuf::new(vec![T::default(); rows.len()], rows.keep()),
            rows,
            next: 0,
        }
    }
}

impl<T: ZarrElement> BlockStream<T> for Crop<T> {
    fn read(&mut self, out: &mut [T]) -> Result<(), BoxError> {
        let Self {
            unit, rows, next, ..
        } = self;
        self.buf.copy_to(out, |row| {
            loop {
                if *next == rows.count() {
                    return Err("read past the end of an edge chunk".into());
                }
                unit.read(row)?;
                *next += 1;
                if rows.inside(*next - 1) {
                    return Ok(());
                }
            }
        })
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        // The rows outside the array are still decoded: the stored unit is checked whole.
        while self.next < self.rows.count() {
            self.unit.read(&mut self.buf.row)?;
            self.next += 1;
        }
        self.unit.finish()
    }
}

/// An edge block padded with the fill value to its whole storage unit, as it is stored.
struct Pad<'a, T: ZarrElement> {
    block: &'a mut BlockReader<T>,
    rows: UnitRows,
    fill: T,
    buf: RowBuf<T>,
    /// The next unit row to make.
    next: usize,
}

impl<'a, T: ZarrElement> Pad<'a, T> {
    fn new(block: &'a mut BlockReader<T>, rows: UnitRows, fill: T) -> Self {
        Self {
            block,
            buf: RowBuf::new(vec![fill; rows.len()], rows.len()),
            rows,
            fill,
            next: 0,
        }
    }
}

impl<T: ZarrElement> BlockStream<T> for Pad<'_, T> {
    fn read(&mut self, out: &mut [T]) -> Result<(), BoxError> {
        let Self {
            block,
            rows,
            fill,
            next,
            ..
        } = self;
        self.buf.copy_to(out, |row| {
            if *next == rows.count() {
                return Err("read past the end of an edge unit".into());
            }
            let keep = if rows.inside(*next) { rows.keep() } else { 0 };
            block.read(&mut row[..keep])?;
            row[keep..].fill(*fill);
            *next += 1;
            Ok(())
        })
    }
}

/// A stored chunk decoded as it is read: the raw bytes, or one zstd frame decompressed
/// piece by piece (a reused context and input buffer per thread).
struct ChunkStream {
    reader: Box<dyn std::io::Read + Send>,
    zstd: Option<Decoder>,
    /// Decoded bytes still expected.
    left: usize,
    what: String,
}

/// A zstd decompression context with its input buffer.
struct Decoder {
    dctx: zstd::zstd_safe::DCtx<'static>,
    input: Vec<u8>,
    pos: usize,
    end: usize,
    /// The frame is complete.
    done: bool,
}

thread_local! {
    static DECODERS: std::cell::RefCell<Vec<Decoder>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ChunkStream {
    fn new(
        reader: Box<dyn std::io::Read + Send>,
        codec: FastCodec,
        bytes: usize,
        what: String,
    ) -> Result<Self, BoxError> {
        let zstd = match codec {
            FastCodec::Raw => None,
            FastCodec::Zstd => {
                let mut d = DECODERS
                    .with_borrow_mut(Vec::pop)
                    .unwrap_or_else(|| Decoder {
                        dctx: zstd::zstd_safe::DCtx::create(),
                        input: vec![0; zstd::zstd_safe::DCtx::in_size()],
                        pos: 0,
                        end: 0,
                        done: false,
                    });
                d.dctx
                    .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
                    .map_err(|c| format!("{what}: {}", zstd::zstd_safe::get_error_name(c)))?;
                (d.pos, d.end, d.done) = (0, 0, false);
                Some(d)
            }
        };
        Ok(Self {
            reader,
            zstd,
            left: bytes,
            what,
        })
    }

    fn read_bytes(&mut self, out: &mut [u8]) -> Result<(), BoxError> {
        let what = &self.what;
        let Some(d) = &mut self.zstd else {
            return self
                .reader
                .read_exact(out)
                .map_err(|e| format!("{what} holds fewer bytes than its shape needs: {e}").into());
        };
        let mut ob = zstd::zstd_safe::OutBuffer::around(out);
        while ob.pos() < ob.capacity() {
            // After a frame, the next one continues the chunk (zstd decodes concatenated
            // frames as one stream, and so does the one-call path).
            if !d.refill(&mut *self.reader, what)? {
                return Err(if d.done {
                    format!("{what} decodes to fewer bytes than its shape needs")
                } else {
                    format!("{what} ends inside its zstd frame")
                }
                .into());
            }
            d.step(&mut ob, what)?;
        }
        Ok(())
    }
}

impl Decoder {
    /// Refills the input when it is used up; `false` at the end of the data.
    fn refill(&mut self, reader: &mut dyn std::io::Read, what: &str) -> Result<bool, BoxError> {
        if self.pos == self.end {
            self.end = reader
                .read(&mut self.input)
                .map_err(|e| format!("{what}: {e}"))?;
            self.pos = 0;
        }
        Ok(self.end > 0)
    }

    /// Decodes as much of the input as fits into `ob`.
    fn step<C: zstd::zstd_safe::WriteBuf + ?Sized>(
        &mut self,
        ob: &mut zstd::zstd_safe::OutBuffer<'_, C>,
        what: &str,
    ) -> Result<(), BoxError> {
        let mut ib = zstd::zstd_safe::InBuffer::around(&self.input[self.pos..self.end]);
        let hint = self.dctx.decompress_stream(ob, &mut ib).map_err(|c| {
            format!(
                "zstd frame of {what}: {}",
                zstd::zstd_safe::get_error_name(c)
            )
        })?;
        self.pos += ib.pos();
        self.done = hint == 0;
        Ok(())
    }
}

impl<T: ZarrElement> BlockStream<T> for ChunkStream {
    fn read(&mut self, out: &mut [T]) -> Result<(), BoxError> {
        let bytes = T::le_bytes_mut(out).ok_or("an element type without a byte view")?;
        if bytes.len() > self.left {
            return Err(format!("{} read past its end", self.what).into());
        }
        self.left -= bytes.len();
        self.read_bytes(bytes)
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        let what = &self.what;
        let mut probe = [0u8; 1];
        if let Some(d) = &mut self.zstd {
            // Whatever follows must decode to nothing: the end of the frame, or (empty or
            // skippable) frames after it. Garbage is a zstd error.
            while d.refill(&mut *self.reader, what)? {
                let mut ob = zstd::zstd_safe::OutBuffer::around(&mut probe[..]);
                d.step(&mut ob, what)?;
                if ob.pos() > 0 {
                    return Err(format!("{what} decodes to more bytes than its shape").into());
                }
            }
            if !d.done {
                return Err(format!("{what} ends inside its zstd frame").into());
            }
            return Ok(());
        }
        match self.reader.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!("{what} holds more bytes than its shape").into()),
            Err(e) => Err(format!("{what}: {e}").into()),
        }
    }
}

impl Drop for ChunkStream {
    fn drop(&mut self) {
        if let Some(d) = self.zstd.take() {
            // Keep a few contexts per thread (their windows are the expensive part).
            let _ = DECODERS.try_with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < 4 {
                    p.push(d);
                }
            });
        }
    }
}

/// Encoded-chunk buffers kept between reads, so that reading a chunk allocates only its
/// decoded array: fresh memory costs a page fault per page, which dominates reading big
/// chunks. At most [`POOL_BYTES`] stay allocated.
static READ_POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
const POOL_BYTES: usize = 256 << 20;

fn take_buffer() -> Vec<u8> {
    READ_POOL
        .lock()
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_default()
}

fn return_buffer(buf: Vec<u8>) {
    if let Ok(mut pool) = READ_POOL.lock() {
        let kept: usize = pool.iter().map(Vec::capacity).sum();
        if kept + buf.capacity() <= POOL_BYTES {
            pool.push(buf);
        }
    }
}

/// Reads a whole chunk of a [`FastCodec`] array straight into its output buffer, with what
/// tells the version of the bytes read. `None` when the fast path does not apply (absent
/// chunk, element type without a byte view): the caller falls back to zarrs.
fn read_fast<T: ZarrElement>(
    za: &ZarrArray,
    idx: &[u64],
    unit: &[usize],
    codec: FastCodec,
) -> Result<Option<(ArrayD<T>, ReadVersion)>, BoxError> {
    let key = za.inner.chunk_key(idx);
    let n: usize = unit.iter().product();
    let mut out = vec![T::default(); n];
    let Some(bytes) = T::le_bytes_mut(&mut out) else {
        return Ok(None);
    };
    let want = bytes.len();
    let mut buf = take_buffer();
    let found = (|| -> Result<Option<ReadVersion>, BoxError> {
        let Some(read) = za.store.read_into(&key, &mut buf)? else {
            return Ok(None);
        };
        let got = match codec {
            FastCodec::Raw => {
                let src = buf.get(..want).filter(|_| buf.len() == want);
                let src = src.ok_or_else(|| {
                    format!("chunk `{key}` holds {} bytes, not {want}", buf.len())
                })?;
                bytes.copy_from_slice(src);
                want
            }
            FastCodec::Zstd => zstd::bulk::Decompressor::new()
                .and_then(|mut d| d.decompress_to_buffer(buf.as_slice(), &mut *bytes))
                .map_err(|e| format!("zstd frame of chunk `{key}`: {e}"))?,
        };
        if got != want {
            return Err(format!("chunk `{key}` decodes to {got} bytes, not {want}").into());
        }
        Ok(Some(read))
    })();
    return_buffer(buf);
    let Some(read) = found? else {
        return Ok(None);
    };
    ArrayD::from_shape_vec(ndarray::IxDyn(unit), out)
        .map(|a| Some((a, read)))
        .map_err(BoxError::from)
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteSummary {
    /// Storage chunks (or shards) written.
    pub units: usize,
}

/// The write tasks of `array` into the existing Zarr array `target` at element offset
/// `offset`, as one lazy value. Every storage unit (chunk or shard) is written by exactly
/// one task: the array is rechunked to the storage units first, and a region that does not
/// start on a unit boundary, or ends inside a unit that is not the array's last, is refused.
///
/// A task computes its block tile by tile (streamed sources read inside the task) and, for
/// `bytes`(+`zstd`) arrays, encodes each tile into the store as it goes (edge units padded
/// with the fill value, as stored): no block is held whole. Other codecs and shards are
/// encoded by zarrs from the whole block.
///
/// # Errors
/// [`ZarrError::Misaligned`] naming the axis; [`ZarrError::WrongType`];
/// [`ZarrError::Array`].
pub fn write_tasks<T: ZarrElement>(
    array: &Array<T>,
    target: &ZarrArray,
    offset: &[usize],
    io: IoOptions,
) -> Result<Delayed<WriteSummary>, ZarrError> {
    target.check_type::<T>()?;
    let shape = array.shape();
    let full = target.shape();
    let unit = target.unit_shape();
    let misaligned = |reason: String| ZarrError::Misaligned {
        path: target.path.clone(),
        reason,
    };
    if offset.len() != shape.len() || shape.len() != full.len() {
        return Err(misaligned(format!(
            "a {}-d region at offset {offset:?} in a {}-d array",
            shape.len(),
            full.len()
        )));
    }
    for a in 0..shape.len() {
        let end = offset[a] + shape[a];
        if end > full[a] {
            return Err(misaligned(format!(
                "axis {a}: region {}..{end} exceeds the array length {}",
                offset[a], full[a]
            )));
        }
        if !offset[a].is_multiple_of(unit[a]) {
            return Err(misaligned(format!(
                "axis {a}: region starts at {} which is not a multiple of the storage unit {} \
                 (two writers would share a chunk)",
                offset[a], unit[a]
            )));
        }
        if !end.is_multiple_of(unit[a]) && end != full[a] {
            return Err(misaligned(format!(
                "axis {a}: region ends at {end}, inside a storage unit of {} that it does not fill",
                unit[a]
            )));
        }
    }
    // One block per storage unit.
    let aligned = array.rechunk(&unit)?;
    let sources = aligned.block_sources()?;
    let grid = aligned.grid().clone();
    // Streamed encoding needs a byte view of T and the fill value as a T (to pad edges).
    let fast = write_codec(&target.metadata_json()).zip(fill_element::<T>(target));
    let spec = TaskSpec::new("zarr-write");
    let writes: Vec<Delayed<()>> = sources
        .into_iter()
        .enumerate()
        .map(|(i, src)| {
            let c = grid.block_coords(i);
            let idx: Vec<u64> = c
                .iter()
                .enumerate()
                .map(|(a, &x)| (offset[a] / unit[a] + x) as u64)
                .collect();
            let za = target.clone();
            let unit = unit.clone();
            let inputs = src.inputs().to_vec();
            let desc = src.descriptor();
            spec.call_dyn(
                move |values: Vec<brisk_graph::Value>| -> Result<(), BoxError> {
                    let fail = |e: BoxError| -> BoxError {
                        Box::new(ZarrError::chunk("writing", &za.path, &idx, e))
                    };
                    let mut reader = src.open(values).map_err(|e| fail(e.into()))?;
                    let whole = src.shape() == unit.as_slice();
                    if let Some((codec, fill)) = fast {
                        // Encoded as it is computed, straight into the store; an edge block
                        // padded with the fill value to its unit, as stored.
                        let total = unit.iter().product();
                        if whole {
                            write_stream(&za, &idx, &mut reader, total, codec)
                        } else {
                            let rows = UnitRows::new(&unit, src.shape());
                            let mut padded = Pad::new(&mut reader, rows, fill);
                            write_stream(&za, &idx, &mut padded, total, codec)
                        }
                        .and_then(|()| reader.finish())
                        .map_err(|e| fail(e.into()))
                    } else if whole {
                        let block = reader.into_array().map_err(|e| fail(e.into()))?;
                        za.inner
                            .store_chunk_opt(&idx, &block, &io.codec())
                            .map_err(|e| fail(e.into()))
                    } else {
                        // An edge unit: the part inside the array, written whole by this task.
                        let block = reader.into_array().map_err(|e| fail(e.into()))?;
                        let start: Vec<u64> =
                            idx.iter().zip(&unit).map(|(&i, &u)| i * u as u64).collect();
                        let subset = region(&start, block.shape());
                        za.inner
                            .store_array_subset_opt(&subset, &block, &io.codec())
                            .map_err(|e| fail(e.into()))
                    }
                },
                &inputs,
                desc,
            )
        })
        .collect();
    let all: Delayed<Vec<()>> = writes.into_iter().collect();
    Ok(TaskSpec::new("zarr-write-done").call(|v: Vec<()>| WriteSummary { units: v.len() }, (all,)))
}

/// The array's fill value as an element, when `T` has a byte view of the fill value's size.
fn fill_element<T: ZarrElement>(za: &ZarrArray) -> Option<T> {
    let mut v = [T::default()];
    let bytes = T::le_bytes_mut(&mut v)?;
    let fill = za.inner.fill_value().as_ne_bytes();
    (fill.len() == bytes.len()).then(|| bytes.copy_from_slice(fill))?;
    Some(v[0])
}

/// Elements encoded per step of a streamed write.
const WRITE_TILE_BYTES: usize = 64 << 10;

thread_local! {
    /// A zstd compression context and its output buffer, reused by the writes of a thread.
    static ENCODER: std::cell::RefCell<Option<(zstd::zstd_safe::CCtx<'static>, Vec<u8>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Writes chunk `idx` of `za` from `src`, which produces the whole unit (`total` elements):
/// computed tile by tile, each tile encoded and written while it is in cache (one zstd frame
/// with its content size, or the raw bytes), through the store's atomic write. A chunk that
/// turns out to hold only the fill value is not stored (and an older one is erased), as
/// zarrs and zarr-python do.
fn write_stream<T: ZarrElement>(
    za: &ZarrArray,
    idx: &[u64],
    src: &mut dyn BlockStream<T>,
    total: usize,
    codec: WriteCodec,
) -> Result<(), BoxError> {
    let key = za.inner.chunk_key(idx);
    let per_tile = (WRITE_TILE_BYTES / std::mem::size_of::<T>().max(1)).max(1);
    let mut tile = vec![T::default(); per_tile.min(total)];
    let bytes = total * std::mem::size_of::<T>();
    let fill = za.inner.fill_value();
    let all_fill = std::cell::Cell::new(true);
    let mut left = total;
    let mut next = |src: &mut dyn BlockStream<T>, tile: &mut [T]| -> Result<usize, BoxError> {
        let n = left.min(tile.len());
        src.read(&mut tile[..n])?;
        left -= n;
        if all_fill.get() && n > 0 {
            all_fill.set(fill.equals_all(T::le_bytes(&tile[..n]).ok_or("no byte view")?));
        }
        Ok(n)
    };
    za.store.write_with(&key, |w| {
        match codec {
            WriteCodec::Raw => loop {
                let n = next(src, &mut tile)?;
                if n == 0 {
                    break;
                }
                w.write_all(T::le_bytes(&tile[..n]).ok_or("no byte view")?)?;
            },
            WriteCodec::Zstd { level, checksum } => {
                ENCODER.with_borrow_mut(|slot| -> Result<(), BoxError> {
                    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective as EndDirective;
                    use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer};
                    let (cctx, out) =
                        slot.get_or_insert_with(|| (CCtx::create(), vec![0u8; CCtx::out_size()]));
                    let z = |c: usize| -> BoxError {
                        format!("zstd: {}", zstd::zstd_safe::get_error_name(c)).into()
                    };
                    cctx.reset(zstd::zstd_safe::ResetDirective::SessionAndParameters)
                        .map_err(z)?;
                    cctx.set_parameter(CParameter::CompressionLevel(level))
                        .map_err(z)?;
                    cctx.set_parameter(CParameter::ChecksumFlag(checksum))
                        .map_err(z)?;
                    cctx.set_parameter(CParameter::ContentSizeFlag(true))
                        .map_err(z)?;
                    cctx.set_pledged_src_size(Some(bytes as u64)).map_err(z)?;
                    let mut flush =
                        |cctx: &mut CCtx<'static>, src: &[u8], end: bool| -> Result<(), BoxError> {
                            let mut ib = InBuffer::around(src);
                            loop {
                                let mut ob = OutBuffer::around(out.as_mut_slice());
                                let directive = if end {
                                    EndDirective::ZSTD_e_end
                                } else {
                                    EndDirective::ZSTD_e_continue
                                };
                                let left = cctx
                                    .compress_stream2(&mut ob, &mut ib, directive)
                                    .map_err(z)?;
                                let n = ob.pos();
                                w.write_all(&out[..n])?;
                                let done = if end {
                                    left == 0
                                } else {
                                    ib.pos() == src.len()
                                };
                                if done {
                                    return Ok(());
                                }
                            }
                        };
                    loop {
                        let n = next(src, &mut tile)?;
                        if n == 0 {
                            break;
                        }
                        flush(cctx, T::le_bytes(&tile[..n]).ok_or("no byte view")?, false)?;
                    }
                    flush(cctx, &[], true)
                })?;
            }
        }
        Ok(!all_fill.get())
    })
}

/// Creates (or replaces, with `opts.overwrite`) the array at `path` with `array`'s shape and
/// chunks of `chunks` (`None`: the array's own first-block chunk shape), then writes every
/// chunk in parallel on `executor`, one task per storage unit.
///
/// An interrupted write never leaves an array that opens as complete, and an interrupted
/// overwrite never loses the old array on a local directory:
///
/// | store | fresh write | overwrite |
/// |---|---|---|
/// | directory, path below the root | written whole in a hidden staging directory beside it, then renamed into place | staged, then swapped with the old tree atomically (`renameat2(RENAME_EXCHANGE)` on Linux); the old tree is removed after |
/// | directory root, memory, object stores | metadata written last: until it is, nothing opens | the old metadata is removed first, then the old chunks; an interrupted overwrite leaves no array that opens (old chunks may remain, and are removed by the next overwrite) |
///
/// A path holding keys but no metadata (the remains of an interrupted write on an object
/// store, or an implicit group) is [`ZarrError::AlreadyExists`] unless `opts.overwrite`.
///
/// # Errors
/// [`ZarrError::Storage`] for a path with `..` or other invalid segments (nothing is
/// touched); creation errors; [`ZarrError::Compute`] naming the failing chunk.
pub fn to_zarr<T: ZarrElement>(
    array: &Array<T>,
    store: &ZarrStore,
    path: &str,
    chunks: Option<&[usize]>,
    opts: &ArrayOptions,
    executor: &dyn Executor,
) -> Result<(ZarrArray, WriteSummary), ZarrError> {
    let path = norm_path(path)?;
    let shape = array.shape();
    let chunks: Vec<usize> = match chunks {
        Some(c) => c.to_vec(),
        None => array
            .chunks()
            .iter()
            .map(|c| c.first().copied().unwrap_or(1).max(1))
            .collect(),
    };
    // Everything about the new array is checked before anything old is touched.
    let meta = checked_metadata::<T>(&shape, &chunks, opts)?;
    let state = node_state(store, &path)?;
    if state != NodeState::Absent && !opts.overwrite {
        return Err(ZarrError::AlreadyExists {
            location: store.location().into(),
            path,
        });
    }
    let rel = path.trim_matches('/').to_owned();
    if !rel.is_empty()
        && let Some(root) = store.dir_of(&StorePrefix::root())
    {
        return to_zarr_staged(array, store, &root, &rel, meta, executor);
    }
    // Metadata last, in place.
    if state != NodeState::Absent {
        remove_node(store, &path, Some(executor))?;
    }
    let inner =
        ZArray::new_with_metadata(store.storage(), &path, meta).map_err(|e| ZarrError::Zarr {
            path: path.clone(),
            source: e.into(),
        })?;
    let target = ZarrArray {
        store: store.clone(),
        path,
        inner: Arc::new(inner),
    };
    let summary = write_all(array, &target, executor)?;
    store_metadata(store, &target.inner)?;
    Ok((target, summary))
}

/// Writes every chunk of `array` into `target` (already created) on `executor`.
fn write_all<T: ZarrElement>(
    array: &Array<T>,
    target: &ZarrArray,
    executor: &dyn Executor,
) -> Result<WriteSummary, ZarrError> {
    let task = write_tasks(
        array,
        target,
        &vec![0; array.shape().len()],
        IoOptions::default(),
    )?;
    task.compute_with_options(executor, &ComputeOptions::new())
        .map_err(|source| ZarrError::Compute {
            path: target.path.clone(),
            source,
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

/// [`to_zarr`] on a directory store, below its root: the array is written whole into a hidden
/// staging directory beside its path, then renamed into place (or swapped with the old tree,
/// which is removed after). A failed write removes the staging directory and leaves the old
/// array as it was.
fn to_zarr_staged<T: ZarrElement>(
    array: &Array<T>,
    store: &ZarrStore,
    root: &std::path::Path,
    rel: &str,
    meta: ArrayMetadata,
    executor: &dyn Executor,
) -> Result<(ZarrArray, WriteSummary), ZarrError> {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let stage_name = brisk_store::stage_name(name);
    let stage_rel = if parent.is_empty() {
        stage_name
    } else {
        format!("{parent}/{stage_name}")
    };
    let parent_dir = root.join(parent);
    let stage_dir = root.join(&stage_rel);
    let target_dir = root.join(rel);
    let io = |e: std::io::Error, action: &'static str, at: &str| {
        ZarrError::Storage(brisk_store::StoreError::backend(
            store.location(),
            action,
            at,
            e,
        ))
    };
    // Staging trees that dead writers left beside this one (best effort: one that cannot
    // be removed now is hidden, and met again by the next writer).
    let _ = brisk_store::clean_dead_stages(&parent_dir);
    let stage_path = format!("/{stage_rel}");
    let inner = ZArray::new_with_metadata(store.storage(), &stage_path, meta).map_err(|e| {
        ZarrError::Zarr {
            path: format!("/{rel}"),
            source: e.into(),
        }
    })?;
    let stage = ZarrArray {
        store: store.clone(),
        path: format!("/{rel}"),
        inner: Arc::new(inner),
    };
    let written = write_all(array, &stage, executor).and_then(|summary| {
        store_metadata(store, &stage.inner)?;
        Ok(summary)
    });
    let summary = match written {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&stage_dir);
            store.forget_dirs_under(&stage_dir);
            return Err(e);
        }
    };
    let replaced = match std::fs::symlink_metadata(&target_dir) {
        Ok(_) => {
            brisk_store::exchange(&stage_dir, &target_dir).map_err(|e| io(e, "swap", rel))?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&parent_dir).map_err(|e| io(e, "create", parent))?;
            match std::fs::rename(&stage_dir, &target_dir) {
                Ok(()) => false,
                // Something appeared at the path meanwhile: swap with it.
                Err(_) => {
                    brisk_store::exchange(&stage_dir, &target_dir)
                        .map_err(|e| io(e, "swap", rel))?;
                    true
                }
            }
        }
        Err(e) => return Err(io(e, "stat", rel)),
    };
    store.forget_dirs_under(&stage_dir);
    if replaced {
        // The old tree is now the staging directory: remove it.
        remove_on(executor, &stage_dir, store, &format!("/{rel}"))?;
        match std::fs::remove_dir_all(&stage_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(e, "remove the replaced tree of", rel));
            }
            _ => {}
        }
    }
    let target = open_array(store, rel)?;
    Ok((target, summary))
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
        serde_json::json!({"zarr_format": 2, "attributes": attributes})
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
    Ok(json
        .get("attributes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

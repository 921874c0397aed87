//! Lazy arrays over stored chunks: the read plan, pinned reads and their checks.

use std::sync::Arc;

use brisk_array::{Array, BlockStream, ChunkGrid, Materialized, OpenStream};
use brisk_graph::{BoxError, Delayed, TaskSpec};
use ndarray::ArrayD;
use zarrs::storage::StoreKey;

use crate::error::{ChunkChanged, ZarrError};
use crate::meta::{FastCodec, ZarrElement, fast_codec};
use crate::store::{ReadVersion, ZarrStore};

use super::*;

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
    from_opened(open_array(store, path)?, io)
}

/// A lazy array over the opened array `za` (whose metadata may come from a group's
/// consolidated metadata, read once for every array of the group).
pub(crate) fn from_opened<T: ZarrElement>(
    za: ZarrArray,
    io: IoOptions,
) -> Result<Array<T>, ZarrError> {
    from_opened_pinned(za, io, None)
}

/// [`from_opened`] with the chunks' versions given (`pins`, when pinned): a cluster worker
/// rebuilding a pinned read reads the versions the driver pinned, never newer ones. The
/// array records how to be read again ([`super::remote`]) when its store has a URL.
pub(crate) fn from_opened_pinned<T: ZarrElement>(
    za: ZarrArray,
    io: IoOptions,
    pins: Option<Vec<Option<String>>>,
) -> Result<Array<T>, ZarrError> {
    za.check_type::<T>()?;
    let grid = ChunkGrid::regular(&za.shape(), &za.unit_shape())?;
    let pins = match pins {
        Some(p) if io.pinned => Some(p),
        _ if io.pinned => Some(chunk_versions(&za, &grid)?),
        _ => None,
    };
    let recipe = super::remote::read_recipe::<T>(&za, io, pins.as_deref()).ok_or_else(|| {
        format!(
            "its Zarr store `{}` cannot be opened by another process (a memory, durable or \
             custom store)",
            za.store.location()
        )
    });
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
    let array = if io.fused {
        let open: OpenStream<T> = Arc::new(move |i| plan.open_stream::<T>(i));
        Array::from_blocks_streamed(grid, blocks, open)?
    } else {
        Array::from_blocks(grid, blocks)?
    };
    Ok(match recipe {
        Ok(r) => array.with_recipe(r),
        Err(why) => array.without_recipe(why),
    })
}

/// The version of every chunk (or shard) of `za`, in the order of `grid`'s blocks.
pub(super) fn chunk_versions(
    za: &ZarrArray,
    grid: &ChunkGrid,
) -> Result<Vec<Option<String>>, ZarrError> {
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
pub(super) struct ReadPlan {
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
pub(super) type VersionedStream<T> = (Box<dyn BlockStream<T>>, Option<ReadVersion>);

/// A chunk's version when its array was opened with pinned reads, checked after the chunk
/// was read: against the version of the bytes read when Brisk read them (the open file, the
/// object the GET returned, the bytes in memory), else against the store's version now.
/// The store's versions never come back to an earlier one (see [`ZarrStore::version`]), so an
/// equal version means the bytes read were the pinned ones.
pub(super) struct Pin {
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
pub(super) struct Pinned<T> {
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

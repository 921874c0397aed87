//! Creating arrays and writing their chunks: one writer per storage unit, streamed tiles,
//! and `to_zarr`'s crash-consistent replacement.

use std::sync::Arc;

use brisk_array::{Array, BlockStream};
use brisk_graph::{BoxError, ComputeOptions, Delayed, Executor, TaskSpec};
use zarrs::array::{Array as ZArray, ArrayMetadata};
use zarrs::storage::StorePrefix;

use crate::error::ZarrError;
use crate::meta::{ArrayOptions, WriteCodec, ZarrElement, write_codec};
use crate::store::ZarrStore;

use super::*;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
                    let mut reader = src.open(values).map_err(&fail)?;
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
                        .map_err(&fail)
                    } else if whole {
                        let block = reader.into_array().map_err(&fail)?;
                        za.inner
                            .store_chunk_opt(&idx, &block, &io.codec())
                            .map_err(|e| fail(e.into()))
                    } else {
                        // An edge unit: the part inside the array, written whole by this task.
                        let block = reader.into_array().map_err(&fail)?;
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
pub(super) fn fill_element<T: ZarrElement>(za: &ZarrArray) -> Option<T> {
    let mut v = [T::default()];
    let bytes = T::le_bytes_mut(&mut v)?;
    let fill = za.inner.fill_value().as_ne_bytes();
    (fill.len() == bytes.len()).then(|| bytes.copy_from_slice(fill))?;
    Some(v[0])
}

/// Elements encoded per step of a streamed write.
pub(super) const WRITE_TILE_BYTES: usize = 64 << 10;

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
pub(super) fn write_stream<T: ZarrElement>(
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
    keeping_parent_consolidated(store, &path, || {
        to_zarr_at(array, store, path.clone(), chunks, opts, executor)
    })
}

/// [`to_zarr`] at the normalized `path`.
fn to_zarr_at<T: ZarrElement>(
    array: &Array<T>,
    store: &ZarrStore,
    path: String,
    chunks: Option<&[usize]>,
    opts: &ArrayOptions,
    executor: &dyn Executor,
) -> Result<(ZarrArray, WriteSummary), ZarrError> {
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
pub(super) fn write_all<T: ZarrElement>(
    array: &Array<T>,
    target: &ZarrArray,
    executor: &dyn Executor,
) -> Result<WriteSummary, ZarrError> {
    let offset = vec![0; array.shape().len()];
    let task = write_tasks(array, target, &offset, IoOptions::default())?;
    // A cluster worker rebuilds the same write from the array's recipe and the target.
    let options = match super::remote::write_origin(array, target, &offset) {
        Some(origin) => ComputeOptions::new().origin(origin),
        None => ComputeOptions::new().local_only(match array.why_no_recipe() {
            Some(why) => format!("the array has no recipe: {why}"),
            None => format!(
                "the target store `{}` cannot be opened by another process",
                target.store.location()
            ),
        }),
    };
    task.compute_with_options(executor, &options)
        .map_err(|source| ZarrError::Compute {
            path: target.path.clone(),
            source,
        })
}

/// [`to_zarr`] on a directory store, below its root: the array is written whole into a hidden
/// staging directory beside its path, then renamed into place (or swapped with the old tree,
/// which is removed after). A failed write removes the staging directory and leaves the old
/// array as it was.
pub(super) fn to_zarr_staged<T: ZarrElement>(
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

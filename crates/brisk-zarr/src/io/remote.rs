//! Zarr I/O on a cluster: a read records how a worker opens the same array (a recipe source),
//! and a write says how a worker rebuilds the same chunk writes (a graph origin). Workers
//! read and write chunks directly against the store, so the data plane carries only what
//! the tasks return (reduction partials, write acknowledgements).

use std::sync::Arc;

use brisk_array::recipe::{AnyArray, Recipe, Typed};
use brisk_array::{Array, DType};
use brisk_graph::remote::Origin;
use brisk_graph::{AnyDelayed, BoxError};
use serde::{Deserialize, Serialize};
use zarrs::array::{Array as ZArray, ArrayMetadata};

use super::read::from_opened_pinned;
use super::{IoOptions, WriteSummary, ZarrArray, open_array, write_tasks};
use crate::{ZarrElement, ZarrStore};

/// The recipe source of a stored array.
const FROM_ZARR: &str = "brisk_zarr::from_zarr";
/// The graph builder of a write.
const WRITE: &str = "brisk_zarr::write";

/// What reopens a read elsewhere.
#[derive(Serialize, Deserialize)]
struct ReadParams {
    store: String,
    path: String,
    codec_threads: usize,
    fused: bool,
    pinned: bool,
    /// The chunks' versions the driver pinned (a pinned read reads those or fails).
    pins: Option<Vec<Option<String>>>,
}

/// The recipe of a read of `za`, when its store has a URL another process can open.
pub(super) fn read_recipe<T: ZarrElement>(
    za: &ZarrArray,
    io: IoOptions,
    pins: Option<&[Option<String>]>,
) -> Option<Recipe> {
    let params = ReadParams {
        store: za.store.url()?.to_owned(),
        path: za.inner.path().as_str().to_owned(),
        codec_threads: io.codec_threads,
        fused: io.fused,
        pinned: io.pinned,
        pins: pins.map(<[Option<String>]>::to_vec),
    };
    Some(Recipe::Source {
        name: FROM_ZARR.to_owned(),
        dtype: T::DTYPE,
        params: serde_json::to_value(params).ok()?,
    })
}

/// Runs `$body` with `$t` bound to the element type `$dtype` names.
macro_rules! by_dtype {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            DType::Bool => {
                type $t = bool;
                $body
            }
            DType::Int8 => {
                type $t = i8;
                $body
            }
            DType::Int16 => {
                type $t = i16;
                $body
            }
            DType::Int32 => {
                type $t = i32;
                $body
            }
            DType::Int64 => {
                type $t = i64;
                $body
            }
            DType::UInt8 => {
                type $t = u8;
                $body
            }
            DType::UInt16 => {
                type $t = u16;
                $body
            }
            DType::UInt32 => {
                type $t = u32;
                $body
            }
            DType::UInt64 => {
                type $t = u64;
                $body
            }
            DType::Float32 => {
                type $t = f32;
                $body
            }
            DType::Float64 => {
                type $t = f64;
                $body
            }
            other => return Err(format!("no Zarr element type for {other}").into()),
        }
    };
}

fn build_read(dtype: DType, params: &serde_json::Value) -> Result<AnyArray, BoxError> {
    let p: ReadParams = serde_json::from_value(params.clone())?;
    let store = ZarrStore::from_url(&p.store)?;
    let za = open_array(&store, &p.path)?;
    let io = IoOptions {
        codec_threads: p.codec_threads,
        fused: p.fused,
        pinned: p.pinned,
    };
    by_dtype!(dtype, T => Ok(T::wrap(from_opened_pinned::<T>(za, io, p.pins)?)))
}
brisk_array::source_builder!(FROM_ZARR, build_read);

/// What rebuilds a write elsewhere: the array's recipe and the target as the driver made it
/// (its metadata travels: a staged target has none stored until the write is done).
#[derive(Serialize, Deserialize)]
struct WriteParams {
    array: Recipe,
    store: String,
    /// The path errors name.
    path: String,
    /// Where the chunks go (a staging directory, for a staged write).
    inner_path: String,
    metadata: serde_json::Value,
    offset: Vec<usize>,
}

/// The origin of the write of `array` into `target` at `offset`, when the array has a
/// recipe and the target's store a URL.
pub(super) fn write_origin<T: ZarrElement>(
    array: &Array<T>,
    target: &ZarrArray,
    offset: &[usize],
) -> Option<Origin> {
    let params = WriteParams {
        array: array.recipe()?.clone(),
        store: target.store.url()?.to_owned(),
        path: target.path.clone(),
        inner_path: target.inner.path().as_str().to_owned(),
        metadata: serde_json::to_value(target.inner.metadata()).ok()?,
        offset: offset.to_vec(),
    };
    Some(Origin::new(WRITE, serde_json::to_string(&params).ok()?))
}

fn build_write(params: &str) -> Result<Vec<AnyDelayed>, BoxError> {
    let p: WriteParams = serde_json::from_str(params)?;
    let array = p.array.build()?;
    let store = ZarrStore::from_url(&p.store)?;
    let metadata: ArrayMetadata = serde_json::from_value(p.metadata)?;
    let inner = ZArray::new_with_metadata(store.storage(), &p.inner_path, metadata)?;
    let target = ZarrArray {
        store,
        path: p.path,
        inner: Arc::new(inner),
    };
    by_dtype!(array.dtype(), T => {
        let a = <T as Typed>::unwrap(array)
            .ok_or("the rebuilt array has another element type")?;
        Ok(vec![write_tasks(&a, &target, &p.offset, IoOptions::default())?.erase()])
    })
}
brisk_graph::graph_builder!(WRITE, build_write);

brisk_graph::wire_types!(WriteSummary);

//! `.npy` for `ndarray` arrays, dispatched on the result's type at run time (through
//! `ndarray-npy`).

use std::any::TypeId;
use std::sync::Arc;

use brisk_graph::{SaveSpec, Value};
use ndarray::{Array, Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

macro_rules! for_each_array {
    ($m:ident) => {
        for_each_array!(@dims $m; f64, f32, i64, i32, i16, i8, u64, u32, u16, u8, bool);
    };
    (@dims $m:ident; $($t:ty),*) => {$(
        $m!($t; Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn);
    )*};
}

/// The `.npy` bytes of `value`, or `None` if it is not an array this module handles.
pub(crate) fn encode(value: &Value) -> Option<Result<Vec<u8>, String>> {
    macro_rules! try_encode {
        ($t:ty; $($d:ty),*) => {$(
            if let Some(a) = value.downcast_ref::<Array<$t, $d>>() {
                let mut out = Vec::with_capacity(a.len() * size_of::<$t>() + 128);
                return Some(a.write_npy(&mut out).map(|()| out).map_err(|e| e.to_string()));
            }
        )*};
    }
    for_each_array!(try_encode);
    None
}

/// Reads a zstd frame of `.npy` bytes into the array type `spec` describes, streaming.
/// Errors say whether the frame (`true`) or the `.npy` data (`false`) was bad.
pub(crate) fn decode_zstd(spec: &SaveSpec, frame: &[u8]) -> Result<Value, (bool, String)> {
    let decoder =
        zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| (true, e.to_string()))?;
    let mut reader = Tracked {
        inner: decoder,
        failed: None,
    };
    let value = decode_from(spec, &mut reader).map_err(|e| match &reader.failed {
        Some(frame_error) => (true, frame_error.clone()),
        None => (false, e),
    })?;
    // The frame must end where the array does, and be whole.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut rest).map_err(|e| (true, e.to_string()))?;
    if !rest.is_empty() {
        return Err((false, format!("{} bytes after the array", rest.len())));
    }
    Ok(value)
}

/// Reads `.npy` bytes into the array type `spec` describes.
pub(crate) fn decode(spec: &SaveSpec, data: &[u8]) -> Result<Value, String> {
    decode_from(spec, data)
}

fn decode_from(spec: &SaveSpec, data: impl std::io::Read) -> Result<Value, String> {
    let want = spec.type_id();
    macro_rules! try_decode {
        ($t:ty; $($d:ty),*) => {$(
            if want == TypeId::of::<Array<$t, $d>>() {
                return Array::<$t, $d>::read_npy(data)
                    .map(|a| Arc::new(a) as Value)
                    .map_err(|e| e.to_string());
            }
        )*};
    }
    for_each_array!(try_decode);
    Err(format!(
        "npy stores ndarray arrays of numbers or bools; {} is not one",
        spec.type_name()
    ))
}

/// A reader that remembers its own errors (to tell a bad zstd frame from bad `.npy` data).
struct Tracked<R> {
    inner: R,
    failed: Option<String>,
}

impl<R: std::io::Read> std::io::Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|e| self.failed = Some(e.to_string()))
    }
}

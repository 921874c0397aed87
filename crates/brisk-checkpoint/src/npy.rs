//! `.npy` for `ndarray` arrays, dispatched on the result's type at run time (through
//! `ndarray-npy`).

use std::any::TypeId;
use std::sync::Arc;

use brisk_graph::{BoxError, SaveSpec, Value};
use ndarray::{Array, Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::io::Read as _;

macro_rules! for_each_array {
    ($m:ident) => {
        for_each_array!(@dims $m; f64, f32, i64, i32, i16, i8, u64, u32, u16, u8, bool);
    };
    (@dims $m:ident; $($t:ty),*) => {$(
        $m!($t; Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn);
    )*};
}

/// The `.npy` bytes of `value`, or `None` if it is not an array this module handles.
pub(crate) fn encode(value: &Value) -> Option<Result<Vec<u8>, BoxError>> {
    macro_rules! try_encode {
        ($t:ty; $($d:ty),*) => {$(
            if let Some(a) = value.downcast_ref::<Array<$t, $d>>() {
                let mut out = Vec::with_capacity(a.len() * size_of::<$t>() + 128);
                return Some(a.write_npy(&mut out).map(|()| out).map_err(BoxError::from));
            }
        )*};
    }
    for_each_array!(try_encode);
    None
}

/// The longest `.npy` header accepted (NumPy writes under 100 bytes for any array).
const MAX_HEADER: usize = 64 << 10;

/// The sizes an `.npy` file declares: its header's length (preamble included) and its data's
/// length (the shape's element count times the item size), checked for overflow. Errors name
/// what is malformed or the numbers.
fn declared_sizes(head: &[u8]) -> Result<Option<Declared>, BoxError> {
    if head.len() < 10 {
        return Ok(None);
    }
    if &head[..6] != b"\x93NUMPY" {
        return Err("not an .npy file (no magic string)".into());
    }
    let (len, start) = match head[6] {
        1 => (usize::from(u16::from_le_bytes([head[8], head[9]])), 10),
        2 | 3 => {
            if head.len() < 12 {
                return Ok(None);
            }
            let n = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
            (usize::try_from(n).map_err(BoxError::from)?, 12)
        }
        v => return Err(format!(".npy version {v} is not supported").into()),
    };
    if len > MAX_HEADER {
        return Err(format!("the .npy header declares {len} bytes, more than {MAX_HEADER}").into());
    }
    let Some(text) = head.get(start..start + len) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(text).map_err(|e| format!("the .npy header: {e}"))?;
    let field = |name: &str| -> Result<&str, BoxError> {
        let at = text
            .find(&format!("'{name}'"))
            .ok_or_else(|| format!("the .npy header has no '{name}'"))?;
        Ok(text[at + name.len() + 2..]
            .trim_start()
            .trim_start_matches(':')
            .trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("the .npy header's descr is not a string")?;
    let item: u64 = descr
        .get(2..)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("the .npy dtype `{descr}` has no item size"))?;
    let shape = field("shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("the .npy header's shape is not a tuple")?;
    let mut bytes = item;
    let mut dims = Vec::new();
    for dim in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let dim: u64 = dim
            .trim_end_matches('L')
            .parse()
            .map_err(|_| format!("the .npy shape ({shape}) has a bad dimension `{dim}`"))?;
        bytes = bytes.checked_mul(dim).ok_or_else(|| {
            format!("the .npy shape ({shape}) of {item}-byte items overflows 64 bits")
        })?;
        dims.push(dim);
    }
    Ok(Some(Declared {
        header: start + len,
        bytes,
        descr: descr.to_owned(),
        shape: dims,
    }))
}

/// What an `.npy` header declares.
struct Declared {
    /// The header's length, preamble included.
    header: usize,
    /// The data's length: elements times item size.
    bytes: u64,
    /// The dtype (`<f8`, `|b1`, …).
    descr: String,
    /// The shape.
    shape: Vec<u64>,
}

/// The dtype and shape an `.npy` file declares (after checking it holds what it declares).
pub(crate) fn describe(data: &[u8]) -> Result<(String, Vec<u64>), BoxError> {
    check_sizes(data, data.len() as u64)?;
    let d = declared_sizes(data)?.ok_or("an .npy header cut short")?;
    Ok((d.descr, d.shape))
}

/// Checks that `.npy` bytes of `total` length hold what their header declares.
fn check_sizes(head: &[u8], total: u64) -> Result<(), BoxError> {
    let Some(Declared {
        header,
        bytes: data,
        ..
    }) = declared_sizes(head)?
    else {
        return Err(format!("an .npy header cut short ({} bytes)", head.len()).into());
    };
    let want = data.saturating_add(header as u64);
    if want != total {
        return Err(format!(
            "the .npy header declares {data} bytes of data ({want} in all), but the entry holds \
             {total}"
        )
        .into());
    }
    Ok(())
}

/// Reads a zstd frame of `.npy` bytes into the array type `spec` describes. A frame that
/// declares a plausible content size is streamed into the array (no decompressed copy), after
/// the `.npy` header is checked against that size; any other is decompressed first (memory
/// grows only with the data the frame really holds) and checked whole. Errors say whether
/// the frame (`true`) or the `.npy` data (`false`) was bad.
pub(crate) fn decode_zstd(spec: &SaveSpec, frame: &[u8]) -> Result<Value, (bool, BoxError)> {
    let declared = zstd::zstd_safe::get_frame_content_size(frame)
        .map_err(|_| (true, "not a zstd frame".into()))?;
    // More than this ratio is left to the bounded path (all-zero arrays, or a lie).
    let plausible = (frame.len() as u64)
        .saturating_mul(1024)
        .saturating_add(1 << 20);
    let Some(total) = declared.filter(|&n| n <= plausible) else {
        let data = crate::codec::zstd_decompress(frame).map_err(|m| (true, m))?;
        return decode(spec, &data).map_err(|m| (false, m));
    };
    let decoder = zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| (true, e.into()))?;
    let mut reader = Tracked {
        inner: decoder,
        failed: None,
    };
    // The header first: what it declares must be what the frame declares.
    let mut head = Vec::with_capacity(128);
    loop {
        let want = match declared_sizes(&head).map_err(|m| (false, m))? {
            Some(d) => d.header,
            None if head.len() < 12 => 12,
            None => 12 + MAX_HEADER.min(usize::from(u16::MAX)),
        };
        if head.len() >= want {
            break;
        }
        let before = head.len();
        std::io::Read::by_ref(&mut reader)
            .take((want - before) as u64)
            .read_to_end(&mut head)
            .map_err(|e| (true, e.into()))?;
        if head.len() == before {
            break; // the frame ended inside the header
        }
    }
    check_sizes(&head, total).map_err(|m| (false, m))?;
    let mut whole = std::io::Read::chain(std::io::Cursor::new(head), &mut reader);
    let value = decode_from(spec, &mut whole);
    let value = value.map_err(|e| match reader.failed.take() {
        Some(frame_error) => (true, frame_error.into()),
        None => (false, e),
    })?;
    // The frame must end where the array does, and be whole.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut rest).map_err(|e| (true, e.into()))?;
    if !rest.is_empty() {
        return Err((
            false,
            format!("{} bytes after the array", rest.len()).into(),
        ));
    }
    Ok(value)
}

/// Reads `.npy` bytes into the array type `spec` describes, after checking that they hold
/// what their header declares (a header declaring more than the entry holds is an error,
/// never an allocation of that size).
pub(crate) fn decode(spec: &SaveSpec, data: &[u8]) -> Result<Value, BoxError> {
    check_sizes(data, data.len() as u64)?;
    decode_from(spec, data)
}

fn decode_from(spec: &SaveSpec, data: impl std::io::Read) -> Result<Value, BoxError> {
    let want = spec.type_id();
    macro_rules! try_decode {
        ($t:ty; $($d:ty),*) => {$(
            if want == TypeId::of::<Array<$t, $d>>() {
                return Array::<$t, $d>::read_npy(data)
                    .map(|a| Arc::new(a) as Value)
                    .map_err(BoxError::from);
            }
        )*};
    }
    for_each_array!(try_decode);
    Err(format!(
        "npy stores ndarray arrays of numbers or bools; {} is not one",
        spec.type_name()
    )
    .into())
}

/// A reader that remembers its own errors (to tell a bad zstd frame from bad `.npy` data).
struct Tracked<R> {
    inner: R,
    failed: Option<std::io::Error>,
}

impl<R: std::io::Read> std::io::Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            // The caller gets an error of the same kind; the original is kept as the source.
            let told = std::io::Error::new(e.kind(), e.to_string());
            self.failed = Some(e);
            told
        })
    }
}

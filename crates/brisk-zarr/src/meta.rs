//! Array creation options and their Zarr metadata (v2 and v3).

use serde_json::{Map, Value, json};

use crate::error::ZarrError;

/// Element types that can be stored in Zarr.
pub trait ZarrElement: brisk_array::Element + zarrs::array::ElementOwned {
    /// The Zarr v3 data type name.
    const V3: &'static str;
    /// The Zarr v2 (NumPy) dtype string, little-endian.
    const V2: &'static str;
    /// The elements as their little-endian bytes, to decode into in place (`None`: this type
    /// has no such view, e.g. `bool`, or the machine is big-endian).
    #[doc(hidden)]
    fn le_bytes_mut(elements: &mut [Self]) -> Option<&mut [u8]>;
    /// The elements as their little-endian bytes, to encode from (`None` as for
    /// [`le_bytes_mut`](Self::le_bytes_mut)).
    #[doc(hidden)]
    fn le_bytes(elements: &[Self]) -> Option<&[u8]>;
}

macro_rules! zel {
    ($($t:ty => $v3:literal, $v2:literal;)*) => {$(
        impl ZarrElement for $t {
            const V3: &'static str = $v3;
            const V2: &'static str = $v2;
            fn le_bytes_mut(elements: &mut [Self]) -> Option<&mut [u8]> {
                cfg!(target_endian = "little").then(|| bytemuck::cast_slice_mut(elements))
            }
            fn le_bytes(elements: &[Self]) -> Option<&[u8]> {
                cfg!(target_endian = "little").then(|| bytemuck::cast_slice(elements))
            }
        }
    )*};
}
impl ZarrElement for bool {
    const V3: &'static str = "bool";
    const V2: &'static str = "|b1";
    fn le_bytes_mut(_: &mut [Self]) -> Option<&mut [u8]> {
        None
    }
    fn le_bytes(_: &[Self]) -> Option<&[u8]> {
        None
    }
}
zel! {
    i8 => "int8", "|i1";
    i16 => "int16", "<i2";
    i32 => "int32", "<i4";
    i64 => "int64", "<i8";
    u8 => "uint8", "|u1";
    u16 => "uint16", "<u2";
    u32 => "uint32", "<u4";
    u64 => "uint64", "<u8";
    f32 => "float32", "<f4";
    f64 => "float64", "<f8";
}

/// The Zarr format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZarrFormat {
    /// Zarr v2 (`.zarray`, `.zattrs`).
    V2,
    /// Zarr v3 (`zarr.json`).
    #[default]
    V3,
}

/// Blosc byte shuffling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BloscShuffle {
    /// No shuffle.
    None,
    /// Byte shuffle.
    Byte,
    /// Bit shuffle.
    Bit,
}

/// The compressor of the chunks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Compressor {
    /// Uncompressed.
    None,
    /// Zstandard at `level` (the default: level 3 with checksums).
    Zstd {
        /// Compression level (1–22; negative for fast modes).
        level: i32,
        /// Whether frames carry zstd's content checksum (XXH64), verified on every read by
        /// Brisk, zarrs and zarr-python: a corrupted chunk is an error, not a wrong value. On by
        /// default; it costs about 4 % of a write and 6 % of a read of the seed's array.
        checksum: bool,
    },
    /// Blosc with an inner compressor (`lz4`, `lz4hc`, `blosclz`, `zstd`, `zlib`).
    Blosc {
        /// Inner compressor name.
        cname: String,
        /// Compression level 0–9.
        clevel: u8,
        /// Shuffle mode.
        shuffle: BloscShuffle,
    },
    /// Gzip at `level` 0–9.
    Gzip {
        /// Compression level.
        level: u32,
    },
}

impl Default for Compressor {
    fn default() -> Self {
        Self::Zstd {
            level: 3,
            checksum: true,
        }
    }
}

/// How a new Zarr array is laid out and described.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ArrayOptions {
    /// v3 (default) or v2.
    pub format: ZarrFormat,
    /// The compressor (zstd level 3 by default).
    pub compressor: Compressor,
    /// Append a CRC32C checksum to every chunk (v3 only).
    pub crc32c: bool,
    /// Shard shape (v3 only): chunks are stored grouped in shards of this shape, which must be
    /// a multiple of the chunk shape. Writers then own whole shards.
    pub shards: Option<Vec<u64>>,
    /// Fill value as JSON (`0` by default; `"NaN"` and friends for floats).
    pub fill_value: Option<Value>,
    /// Names of the dimensions (v2: stored as the `_ARRAY_DIMENSIONS` attribute).
    pub dimension_names: Option<Vec<String>>,
    /// User attributes.
    pub attributes: Map<String, Value>,
    /// Replace an existing array at the path instead of refusing.
    pub overwrite: bool,
}

impl ArrayOptions {
    /// Default options: Zarr v3, zstd level 3.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the format.
    #[must_use]
    pub fn format(mut self, f: ZarrFormat) -> Self {
        self.format = f;
        self
    }
    /// Sets the compressor.
    #[must_use]
    pub fn compressor(mut self, c: Compressor) -> Self {
        self.compressor = c;
        self
    }
    /// Adds CRC32C checksums (v3).
    #[must_use]
    pub fn crc32c(mut self) -> Self {
        self.crc32c = true;
        self
    }
    /// Stores chunks in shards of `shape` (v3).
    #[must_use]
    pub fn shards(mut self, shape: Vec<u64>) -> Self {
        self.shards = Some(shape);
        self
    }
    /// Sets the fill value.
    #[must_use]
    pub fn fill_value(mut self, v: Value) -> Self {
        self.fill_value = Some(v);
        self
    }
    /// Names the dimensions.
    #[must_use]
    pub fn dimension_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.dimension_names = Some(names.into_iter().map(Into::into).collect());
        self
    }
    /// Adds an attribute.
    #[must_use]
    pub fn attribute(mut self, key: impl Into<String>, value: Value) -> Self {
        self.attributes.insert(key.into(), value);
        self
    }
    /// Allows replacing an existing array.
    #[must_use]
    pub fn overwrite(mut self) -> Self {
        self.overwrite = true;
        self
    }
}

fn codecs_v3(opts: &ArrayOptions, typesize: usize) -> Vec<Value> {
    // `endian` is optional for one-byte types, but zarr-python 3.1 cannot read the bare
    // `"bytes"` form zarrs writes when the configuration is empty: always spell it out.
    let mut codecs = vec![json!({"name": "bytes", "configuration": {"endian": "little"}})];
    match &opts.compressor {
        Compressor::None => {}
        Compressor::Zstd { level, checksum } => codecs.push(
            json!({"name": "zstd", "configuration": {"level": level, "checksum": checksum}}),
        ),
        Compressor::Blosc {
            cname,
            clevel,
            shuffle,
        } => codecs.push(json!({"name": "blosc", "configuration": {
            "cname": cname, "clevel": clevel,
            "shuffle": match shuffle { BloscShuffle::None => "noshuffle", BloscShuffle::Byte => "shuffle", BloscShuffle::Bit => "bitshuffle" },
            "typesize": typesize, "blocksize": 0
        }})),
        Compressor::Gzip { level } => {
            codecs.push(json!({"name": "gzip", "configuration": {"level": level}}));
        }
    }
    if opts.crc32c {
        codecs.push(json!({"name": "crc32c"}));
    }
    codecs
}

/// The metadata JSON of a new array of element type `T`.
pub(crate) fn array_metadata<T: ZarrElement>(
    shape: &[u64],
    chunks: &[u64],
    opts: &ArrayOptions,
) -> Result<Value, ZarrError> {
    let bad = |m: String| ZarrError::BadOptions(m);
    if chunks.len() != shape.len() || chunks.contains(&0) {
        return Err(bad(format!(
            "chunk shape {chunks:?} does not fit array shape {shape:?}"
        )));
    }
    let fill = opts.fill_value.clone().unwrap_or(if T::V3 == "bool" {
        json!(false)
    } else {
        json!(0)
    });
    let typesize = T::DTYPE.size();
    match opts.format {
        ZarrFormat::V3 => {
            let (grid, codecs) = match &opts.shards {
                None => (chunks.to_vec(), codecs_v3(opts, typesize)),
                Some(shard) => {
                    if shard.len() != chunks.len()
                        || shard
                            .iter()
                            .zip(chunks)
                            .any(|(&s, &c)| s == 0 || s % c != 0)
                    {
                        return Err(bad(format!(
                            "shard shape {shard:?} must be a multiple of the chunk shape {chunks:?}"
                        )));
                    }
                    let index = vec![
                        json!({"name": "bytes", "configuration": {"endian": "little"}}),
                        json!({"name": "crc32c"}),
                    ];
                    (
                        shard.clone(),
                        vec![json!({"name": "sharding_indexed", "configuration": {
                            "chunk_shape": chunks,
                            "codecs": codecs_v3(opts, typesize),
                            "index_codecs": index,
                            "index_location": "end"
                        }})],
                    )
                }
            };
            let mut m = json!({
                "zarr_format": 3,
                "node_type": "array",
                "shape": shape,
                "data_type": T::V3,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": grid}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": fill,
                "codecs": codecs,
                "attributes": opts.attributes,
            });
            if let Some(names) = &opts.dimension_names {
                if names.len() != shape.len() {
                    return Err(bad(format!(
                        "{} dimension names for {} dimensions",
                        names.len(),
                        shape.len()
                    )));
                }
                m["dimension_names"] = json!(names);
            }
            Ok(m)
        }
        ZarrFormat::V2 => {
            if opts.shards.is_some() {
                return Err(bad("sharding needs Zarr v3".into()));
            }
            if opts.crc32c {
                return Err(bad("the crc32c codec needs Zarr v3".into()));
            }
            let compressor = match &opts.compressor {
                Compressor::None => Value::Null,
                Compressor::Zstd { level, checksum } => {
                    json!({"id": "zstd", "level": level, "checksum": checksum})
                }
                Compressor::Blosc {
                    cname,
                    clevel,
                    shuffle,
                } => json!({"id": "blosc", "cname": cname, "clevel": clevel,
                    "shuffle": match shuffle { BloscShuffle::None => 0, BloscShuffle::Byte => 1, BloscShuffle::Bit => 2 },
                    "blocksize": 0}),
                Compressor::Gzip { level } => json!({"id": "gzip", "level": level}),
            };
            let mut attributes = opts.attributes.clone();
            if let Some(names) = &opts.dimension_names {
                attributes.insert("_ARRAY_DIMENSIONS".into(), json!(names));
            }
            Ok(json!({
                "zarr_format": 2,
                "shape": shape,
                "chunks": chunks,
                "dtype": T::V2,
                "compressor": compressor,
                "fill_value": fill,
                "order": "C",
                "filters": null,
                "dimension_separator": ".",
                "attributes": attributes,
            }))
        }
    }
}

/// The element type named by existing metadata (v3 `data_type` or v2 `dtype`).
pub(crate) fn stored_dtype(meta: &Value) -> String {
    if let Some(t) = meta.get("data_type").and_then(Value::as_str) {
        return t.to_owned();
    }
    match meta.get("dtype").and_then(Value::as_str) {
        Some(t) => match t.trim_start_matches(['<', '|', '=']) {
            "b1" => "bool".into(),
            "i1" => "int8".into(),
            "i2" => "int16".into(),
            "i4" => "int32".into(),
            "i8" => "int64".into(),
            "u1" => "uint8".into(),
            "u2" => "uint16".into(),
            "u4" => "uint32".into(),
            "u8" => "uint64".into(),
            "f4" => "float32".into(),
            "f8" => "float64".into(),
            _ => t.to_owned(),
        },
        None => "unknown".into(),
    }
}

/// A chunk encoding simple enough to decode straight into the output buffer, skipping zarrs'
/// general codec pipeline (and its intermediate buffers): little-endian bytes, optionally
/// one zstd frame, no filters, sharding, checksums or storage transformers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FastCodec {
    /// The chunk is the raw little-endian bytes.
    Raw,
    /// The chunk is one zstd frame of the raw little-endian bytes.
    Zstd,
}

/// The fast codec of an array's metadata, if it has one.
pub(crate) fn fast_codec(meta: &Value) -> Option<FastCodec> {
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    if meta.get("zarr_format") == Some(&json!(2)) {
        let dtype = meta.get("dtype").and_then(Value::as_str)?;
        if !(dtype.starts_with('<') || dtype.starts_with('|'))
            || meta.get("order").and_then(Value::as_str) != Some("C")
            || !empty(meta.get("filters"))
        {
            return None;
        }
        return match meta.get("compressor") {
            None | Some(Value::Null) => Some(FastCodec::Raw),
            Some(c) if c.get("id").and_then(Value::as_str) == Some("zstd") => Some(FastCodec::Zstd),
            Some(_) => None,
        };
    }
    if !empty(meta.get("storage_transformers")) {
        return None;
    }
    let codecs = meta.get("codecs")?.as_array()?;
    let name = |c: &Value| c.get("name").and_then(Value::as_str).map(str::to_owned);
    let (first, rest) = codecs.split_first()?;
    let endian = first
        .pointer("/configuration/endian")
        .and_then(Value::as_str);
    if name(first).as_deref() != Some("bytes") || endian.is_some_and(|e| e != "little") {
        return None;
    }
    match rest {
        [] => Some(FastCodec::Raw),
        [c] if name(c).as_deref() == Some("zstd") => Some(FastCodec::Zstd),
        _ => None,
    }
}

/// How a [`FastCodec`] array's chunks are encoded: the codec with its level and checksum flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteCodec {
    /// The raw little-endian bytes.
    Raw,
    /// One zstd frame (with its content size) of the raw bytes.
    Zstd {
        /// Compression level.
        level: i32,
        /// Whether the frame carries a checksum.
        checksum: bool,
    },
}

/// The [`WriteCodec`] of an array's metadata, if it has a fast codec whose configuration is
/// understood.
pub(crate) fn write_codec(meta: &Value) -> Option<WriteCodec> {
    match fast_codec(meta)? {
        FastCodec::Raw => Some(WriteCodec::Raw),
        FastCodec::Zstd => {
            let conf = if meta.get("zarr_format") == Some(&json!(2)) {
                meta.get("compressor")?
            } else {
                meta.pointer("/codecs/1/configuration")?
            };
            let level =
                i32::try_from(conf.get("level").and_then(Value::as_i64).unwrap_or(0)).ok()?;
            let checksum = match conf.get("checksum") {
                None | Some(Value::Null) => false,
                Some(v) => v.as_bool()?,
            };
            Some(WriteCodec::Zstd { level, checksum })
        }
    }
}

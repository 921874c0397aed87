//! Canonical, type-tagged, versioned tokenization of values.
//!
//! A [`Token`] is the first 128 bits of BLAKE3 over a canonical byte encoding of a value.
//! The encoding is a compatibility promise (task keys and checkpoints depend on it), so it is
//! versioned ([`TOKEN_FORMAT_VERSION`]) and pinned by golden tests:
//!
//! - every value starts with a one-byte tag naming its serde data-model kind, so `1i64`, `1u64`,
//!   `1.0f64`, `"1"` and `true` all encode differently;
//! - signed integers are widened to `i64` (or `i128`), unsigned ones to `u64` (or `u128`), so
//!   `1i32` and `1i64` are the same token but `1i64` and `1u64` are not;
//! - floats are encoded by bit pattern (`0.0` and `-0.0` differ, every NaN payload is kept);
//! - all multi-byte numbers are little-endian whatever the platform;
//! - strings and byte strings are length-prefixed; sequences are bracketed, so a `Vec` and an
//!   iterator of unknown length encode alike;
//! - map entries are sorted by their encoded key, so a `HashMap` hashes independently of its
//!   insertion order (and equal to a `BTreeMap` with the same entries);
//! - struct and enum names, field names and variant names are part of the encoding;
//! - an owned `ndarray` array passed directly (with the `ndarray` feature) is encoded as element
//!   type + shape + raw little-endian bytes, without a per-element serde call. An array nested
//!   inside another value goes through its serde representation instead: slower, equally stable.
//!
//! Nothing here uses `std::hash`, whose output may change between compiler versions.

use std::any::Any;
use std::fmt;

use serde::ser::{self, Serialize};

/// Version of the canonical token encoding. Changing the encoding changes every key: it is a
/// breaking change that must bump this number and be announced in the changelog.
pub const TOKEN_FORMAT_VERSION: u8 = 1;

/// A 128-bit content hash of a value's canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub(crate) [u8; 16]);

impl Token {
    /// The 16 bytes of the token.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Builds a token from its 16 bytes (as returned by [`Token::as_bytes`]).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The token as 32 lowercase hexadecimal characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        crate::key::hex32(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.to_hex())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A value could not be tokenized because its `Serialize` implementation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot tokenize value: {message}")]
pub struct TokenizeError {
    message: String,
}

impl TokenizeError {
    pub(crate) fn custom_message(message: String) -> Self {
        Self { message }
    }
}

impl ser::Error for TokenizeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
        }
    }
}

/// Values that can be turned into a stable [`Token`]: every `serde::Serialize + 'static` value.
///
/// ```
/// use brisk_graph::Tokenize;
/// use std::collections::HashMap;
///
/// assert_ne!(1i64.token().unwrap(), 1u64.token().unwrap());
/// assert_ne!(1i64.token().unwrap(), 1.0f64.token().unwrap());
/// assert_eq!(1i32.token().unwrap(), 1i64.token().unwrap()); // integers are widened
///
/// let a: HashMap<&str, i32> = [("x", 1), ("y", 2)].into();
/// let b: HashMap<&str, i32> = [("y", 2), ("x", 1)].into();
/// assert_eq!(a.token().unwrap(), b.token().unwrap());
/// ```
pub trait Tokenize: Serialize + Sized + 'static {
    /// The value's token.
    ///
    /// # Errors
    /// Fails only when the value's `Serialize` implementation reports an error.
    fn token(&self) -> Result<Token, TokenizeError> {
        let mut sink = TokenSink::new(b"brisk.value");
        sink.value(self)?;
        Ok(sink.finish())
    }
}

impl<T: Serialize + 'static> Tokenize for T {}

/// The token of any serde value through its `Serialize` implementation alone (no fast path
/// for arrays, so unsized and type-erased values work): what a checkpoint compares to know
/// that a value loads back identical. Equal values give equal tokens; floats compare by bit
/// pattern, so `NaN` equals itself and `-0.0` differs from `0.0`.
///
/// # Errors
/// Fails only when the value's `Serialize` implementation reports an error.
pub fn serde_token<T: Serialize + ?Sized>(value: &T) -> Result<Token, TokenizeError> {
    let mut sink = TokenSink::new(b"brisk.value");
    value.serialize(Canon { w: &mut sink })?;
    Ok(sink.finish())
}

/// The token of a byte string: what [`serde_token`] gives for a value that serializes as these
/// bytes (`Serializer::serialize_bytes`), without a wrapper type. Hashing a `Vec<u8>` or an
/// array of bytes through serde encodes each byte as a tagged integer instead, nine times the
/// bytes.
#[must_use]
pub fn bytes_token(bytes: &[u8]) -> Token {
    let mut sink = TokenSink::new(b"brisk.value");
    sink.put_u8(tag::BYTES);
    sink.put_str_bytes(bytes);
    sink.finish()
}

/// Streams canonical encodings into BLAKE3 (opaque; appears in hidden trait methods).
///
/// Small encodings (the common case: a task's identity and a few scalar arguments) stay in an
/// inline buffer and are hashed in one shot at the end; large ones spill to a heap buffer and
/// an incremental hasher. The hash is the same either way.
#[doc(hidden)]
#[allow(
    unreachable_pub,
    reason = "appears in hidden methods of the public IntoArg trait; not nameable outside"
)]
pub struct TokenSink {
    inline: [u8; INLINE],
    len: usize,
    spill: Option<Box<Spill>>,
}

struct Spill {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

const INLINE: usize = 192;
const FLUSH_AT: usize = 16 * 1024;

impl TokenSink {
    /// A sink whose stream starts with the format version and a domain label.
    #[inline]
    pub(crate) fn new(domain: &[u8]) -> Self {
        let mut sink = Self {
            inline: [0; INLINE],
            len: 0,
            spill: None,
        };
        sink.u8(TOKEN_FORMAT_VERSION);
        sink.put_str_bytes(domain);
        sink
    }

    /// The token of the bytes written (by reference: moving the 200-byte sink into a call
    /// copied it on every key).
    #[inline]
    pub(crate) fn finish(&mut self) -> Token {
        let digest = match self.spill.take() {
            None => blake3::hash(&self.inline[..self.len]),
            Some(mut spill) => {
                spill.hasher.update(&spill.buf);
                spill.hasher.finalize()
            }
        };
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest.as_bytes()[..16]);
        Token(out)
    }

    /// Appends raw bytes (no tag). Keys are built from many short writes: this path stays
    /// inline (a sink that spilled has `len > INLINE`, so it always takes `spill`), and it is
    /// inlined, so a field of constant size is copied with a move.
    #[inline]
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= INLINE {
            self.inline[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            self.spill(bytes);
        }
    }

    #[cold]
    fn spill(&mut self, bytes: &[u8]) {
        if self.spill.is_none() {
            let mut buf = Vec::with_capacity(FLUSH_AT);
            buf.extend_from_slice(&self.inline[..self.len]);
            self.spill = Some(Box::new(Spill {
                hasher: blake3::Hasher::new(),
                buf,
            }));
            self.len = INLINE + 1;
        }
        let spill = self.spill.as_mut().expect("created above");
        if bytes.len() >= FLUSH_AT {
            spill.hasher.update(&spill.buf);
            spill.buf.clear();
            spill.hasher.update(bytes);
        } else {
            spill.buf.extend_from_slice(bytes);
            if spill.buf.len() >= FLUSH_AT {
                spill.hasher.update(&spill.buf);
                spill.buf.clear();
            }
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self, b: u8) {
        self.raw(&[b]);
    }

    #[inline]
    pub(crate) fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }

    /// A token's 16 bytes.
    #[inline]
    pub(crate) fn token(&mut self, t: &Token) {
        self.raw(&t.0);
    }

    /// Appends the canonical encoding of a value (fast path for owned `ndarray` arrays).
    pub(crate) fn value<T: Serialize + 'static>(&mut self, v: &T) -> Result<(), TokenizeError> {
        // `type_name` is a constant per `T`: scalars skip the array type checks entirely.
        #[cfg(feature = "ndarray")]
        if std::any::type_name::<T>().starts_with("ndarray::")
            && crate::token::ndarray_fast::try_encode(v as &dyn Any, self)
        {
            return Ok(());
        }
        #[cfg(not(feature = "ndarray"))]
        let _ = v as &dyn Any;
        v.serialize(Canon { w: self })
    }
}

/// Where the canonical serializer writes: the hashing sink, or a plain buffer (map entries are
/// encoded into buffers first so they can be sorted).
pub(crate) trait Write {
    fn put(&mut self, bytes: &[u8]);
    fn put_u8(&mut self, b: u8) {
        self.put(&[b]);
    }
    /// A length-prefixed byte string (no tag): its length as a little-endian `u64`, then the
    /// bytes. The one place this encoding is written.
    #[inline]
    fn put_str_bytes(&mut self, s: &[u8]) {
        self.put(&(s.len() as u64).to_le_bytes());
        self.put(s);
    }
}

impl Write for TokenSink {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.raw(bytes);
    }
}

impl Write for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn put_u8(&mut self, b: u8) {
        self.push(b);
    }
}

// Tags of the canonical encoding (format version 1). Never reuse or renumber a tag.
mod tag {
    pub(super) const UNIT: u8 = 0x00;
    pub(super) const BOOL: u8 = 0x01;
    pub(super) const INT: u8 = 0x02;
    pub(super) const INT128: u8 = 0x03;
    pub(super) const UINT: u8 = 0x04;
    pub(super) const UINT128: u8 = 0x05;
    pub(super) const F32: u8 = 0x06;
    pub(super) const F64: u8 = 0x07;
    pub(super) const CHAR: u8 = 0x08;
    pub(super) const STR: u8 = 0x09;
    pub(super) const BYTES: u8 = 0x0A;
    pub(super) const NONE: u8 = 0x0B;
    pub(super) const SOME: u8 = 0x0C;
    pub(super) const UNIT_STRUCT: u8 = 0x0D;
    pub(super) const UNIT_VARIANT: u8 = 0x0E;
    pub(super) const NEWTYPE_STRUCT: u8 = 0x0F;
    pub(super) const NEWTYPE_VARIANT: u8 = 0x10;
    pub(super) const SEQ: u8 = 0x11;
    pub(super) const END: u8 = 0x12;
    pub(super) const TUPLE: u8 = 0x13;
    pub(super) const TUPLE_STRUCT: u8 = 0x14;
    pub(super) const TUPLE_VARIANT: u8 = 0x15;
    pub(super) const MAP: u8 = 0x16;
    pub(super) const STRUCT: u8 = 0x17;
    pub(super) const STRUCT_VARIANT: u8 = 0x18;
    #[cfg(feature = "ndarray")]
    pub(super) const NDARRAY: u8 = 0x20;
}

struct Canon<'a, W: Write> {
    w: &'a mut W,
}

impl<W: Write> Canon<'_, W> {
    fn len_str(&mut self, s: &str) {
        self.w.put_str_bytes(s.as_bytes());
    }
    fn variant(&mut self, t: u8, name: &str, index: u32, variant: &str) {
        self.w.put_u8(t);
        self.len_str(name);
        self.w.put(&index.to_le_bytes());
        self.len_str(variant);
    }
}

impl<'a, W: Write> ser::Serializer for Canon<'a, W> {
    type Ok = ();
    type Error = TokenizeError;
    type SerializeSeq = Seq<'a, W>;
    type SerializeTuple = Seq<'a, W>;
    type SerializeTupleStruct = Seq<'a, W>;
    type SerializeTupleVariant = Seq<'a, W>;
    type SerializeMap = Map<'a, W>;
    type SerializeStruct = Seq<'a, W>;
    type SerializeStructVariant = Seq<'a, W>;

    fn serialize_bool(self, v: bool) -> Result<(), TokenizeError> {
        self.w.put(&[tag::BOOL, u8::from(v)]);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), TokenizeError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), TokenizeError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), TokenizeError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::INT);
        self.w.put(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::INT128);
        self.w.put(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), TokenizeError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), TokenizeError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), TokenizeError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::UINT);
        self.w.put(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::UINT128);
        self.w.put(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::F32);
        self.w.put(&v.to_bits().to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::F64);
        self.w.put(&v.to_bits().to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::CHAR);
        self.w.put(&u32::from(v).to_le_bytes());
        Ok(())
    }
    fn serialize_str(mut self, v: &str) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::STR);
        self.len_str(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::BYTES);
        self.w.put_str_bytes(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::NONE);
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::SOME);
        value.serialize(Canon { w: self.w })
    }
    fn serialize_unit(self) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::UNIT);
        Ok(())
    }
    fn serialize_unit_struct(mut self, name: &'static str) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::UNIT_STRUCT);
        self.len_str(name);
        Ok(())
    }
    fn serialize_unit_variant(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<(), TokenizeError> {
        self.variant(tag::UNIT_VARIANT, name, index, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), TokenizeError> {
        self.w.put_u8(tag::NEWTYPE_STRUCT);
        self.len_str(name);
        value.serialize(Canon { w: self.w })
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), TokenizeError> {
        self.variant(tag::NEWTYPE_VARIANT, name, index, variant);
        value.serialize(Canon { w: self.w })
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a, W>, TokenizeError> {
        self.w.put_u8(tag::SEQ);
        Ok(Seq {
            w: self.w,
            end: true,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a, W>, TokenizeError> {
        self.w.put_u8(tag::TUPLE);
        self.w.put(&(len as u64).to_le_bytes());
        Ok(Seq {
            w: self.w,
            end: false,
        })
    }
    fn serialize_tuple_struct(
        mut self,
        name: &'static str,
        len: usize,
    ) -> Result<Seq<'a, W>, TokenizeError> {
        self.w.put_u8(tag::TUPLE_STRUCT);
        self.len_str(name);
        self.w.put(&(len as u64).to_le_bytes());
        Ok(Seq {
            w: self.w,
            end: false,
        })
    }
    fn serialize_tuple_variant(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq<'a, W>, TokenizeError> {
        self.variant(tag::TUPLE_VARIANT, name, index, variant);
        self.w.put(&(len as u64).to_le_bytes());
        Ok(Seq {
            w: self.w,
            end: false,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'a, W>, TokenizeError> {
        Ok(Map {
            w: self.w,
            entries: Vec::new(),
            pending_key: None,
        })
    }
    fn serialize_struct(
        mut self,
        name: &'static str,
        _len: usize,
    ) -> Result<Seq<'a, W>, TokenizeError> {
        // Fields are bracketed (not counted) because `skip_serializing_if` can drop some.
        self.w.put_u8(tag::STRUCT);
        self.len_str(name);
        Ok(Seq {
            w: self.w,
            end: true,
        })
    }
    fn serialize_struct_variant(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Seq<'a, W>, TokenizeError> {
        self.variant(tag::STRUCT_VARIANT, name, index, variant);
        Ok(Seq {
            w: self.w,
            end: true,
        })
    }
    fn is_human_readable(&self) -> bool {
        // Compact forms are canonical for types that have two (e.g. IP addresses).
        false
    }
}

/// Sequences, tuples and structs: elements are self-delimiting; `end` writes a closing tag.
struct Seq<'a, W: Write> {
    w: &'a mut W,
    end: bool,
}

impl<W: Write> Seq<'_, W> {
    fn elem<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), TokenizeError> {
        v.serialize(Canon { w: &mut *self.w })
    }
    fn field<T: ?Sized + Serialize>(&mut self, k: &str, v: &T) -> Result<(), TokenizeError> {
        self.w.put_str_bytes(k.as_bytes());
        self.elem(v)
    }
    fn close(self) -> Result<(), TokenizeError> {
        if self.end {
            self.w.put_u8(tag::END);
        }
        Ok(())
    }
}

impl<W: Write> ser::SerializeSeq for Seq<'_, W> {
    type Ok = ();
    type Error = TokenizeError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), TokenizeError> {
        self.elem(v)
    }
    fn end(self) -> Result<(), TokenizeError> {
        self.close()
    }
}
impl<W: Write> ser::SerializeTuple for Seq<'_, W> {
    type Ok = ();
    type Error = TokenizeError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), TokenizeError> {
        self.elem(v)
    }
    fn end(self) -> Result<(), TokenizeError> {
        self.close()
    }
}
impl<W: Write> ser::SerializeTupleStruct for Seq<'_, W> {
    type Ok = ();
    type Error = TokenizeError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), TokenizeError> {
        self.elem(v)
    }
    fn end(self) -> Result<(), TokenizeError> {
        self.close()
    }
}
impl<W: Write> ser::SerializeTupleVariant for Seq<'_, W> {
    type Ok = ();
    type Error = TokenizeError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), TokenizeError> {
        self.elem(v)
    }
    fn end(self) -> Result<(), TokenizeError> {
        self.close()
    }
}
impl<W: Write> ser::SerializeStruct for Seq<'_, W> {
    type Ok = ();
    type Error = TokenizeError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        k: &'static str,
        v: &T,
    ) -> Result<(), TokenizeError> {
        self.field(k, v)
    }
    fn end(self) -> Result<(), TokenizeError> {
        self.close()
    }
}
impl<W: Write> ser::SerializeStructVariant for Seq<'_, W> {
    type Ok = ();
    type Error = TokenizeError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        k: &'static str,
        v: &T,
    ) -> Result<(), TokenizeError> {
        self.field(k, v)
    }
    fn end(self) -> Result<(), TokenizeError> {
        self.close()
    }
}

/// Maps: each entry is encoded into its own buffer, then entries are sorted by encoded key.
struct Map<'a, W: Write> {
    w: &'a mut W,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pending_key: Option<Vec<u8>>,
}

impl<W: Write> ser::SerializeMap for Map<'_, W> {
    type Ok = ();
    type Error = TokenizeError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), TokenizeError> {
        let mut k = Vec::new();
        key.serialize(Canon { w: &mut k })?;
        self.pending_key = Some(k);
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), TokenizeError> {
        let k = self
            .pending_key
            .take()
            .ok_or_else(|| <TokenizeError as ser::Error>::custom("map value without a key"))?;
        let mut v = Vec::new();
        value.serialize(Canon { w: &mut v })?;
        self.entries.push((k, v));
        Ok(())
    }
    fn end(mut self) -> Result<(), TokenizeError> {
        self.entries.sort_unstable();
        self.w.put_u8(tag::MAP);
        self.w.put(&(self.entries.len() as u64).to_le_bytes());
        for (k, v) in &self.entries {
            self.w.put(k);
            self.w.put(v);
        }
        Ok(())
    }
}

#[cfg(feature = "ndarray")]
mod ndarray_fast {
    //! Owned `ndarray` arrays: element type code + shape + raw little-endian element bytes.

    use std::any::Any;

    use ndarray::{Array, Dimension, Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn};

    use super::{TokenSink, tag};

    trait Elem: bytemuck::Pod {
        const CODE: u8;
        fn to_le(self) -> Self;
    }
    macro_rules! elem {
        ($($t:ty => $code:expr),* $(,)?) => {$(
            impl Elem for $t {
                const CODE: u8 = $code;
                fn to_le(self) -> Self {
                    Self::from_ne_bytes(self.to_le_bytes())
                }
            }
        )*};
    }
    elem!(i8 => 1, i16 => 2, i32 => 3, i64 => 4, u8 => 5, u16 => 6, u32 => 7, u64 => 8,
          f32 => 9, f64 => 10);

    /// Tag, element type code, rank, shape and byte length of the data that follows.
    fn header(sink: &mut TokenSink, code: u8, shape: &[usize], bytes: usize) {
        sink.u8(tag::NDARRAY);
        sink.u8(code);
        sink.u64(shape.len() as u64);
        for &d in shape {
            sink.u64(d as u64);
        }
        sink.u64(bytes as u64);
    }

    fn encode<A: Elem, D: Dimension>(a: &Array<A, D>, sink: &mut TokenSink) {
        header(sink, A::CODE, a.shape(), a.len() * size_of::<A>());
        match a.as_slice() {
            Some(s) if cfg!(target_endian = "little") => sink.raw(bytemuck::cast_slice(s)),
            _ => {
                // Non-standard layout (or a big-endian host): logical order, little-endian.
                let mut chunk: Vec<A> = Vec::with_capacity(4096);
                for &x in a {
                    chunk.push(x.to_le());
                    if chunk.len() == chunk.capacity() {
                        sink.raw(bytemuck::cast_slice(&chunk));
                        chunk.clear();
                    }
                }
                sink.raw(bytemuck::cast_slice(&chunk));
            }
        }
    }

    fn encode_bool<D: Dimension>(a: &Array<bool, D>, sink: &mut TokenSink) {
        header(sink, 11, a.shape(), a.len());
        let bytes: Vec<u8> = a.iter().map(|&b| u8::from(b)).collect();
        sink.raw(&bytes);
    }

    /// Encodes `v` if it is an owned array of a supported element type; returns whether it did.
    pub(super) fn try_encode(v: &dyn Any, sink: &mut TokenSink) -> bool {
        macro_rules! try_dims {
            ($t:ty) => {
                try_dims!(@ $t; Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn)
            };
            (@ $t:ty; $($d:ty),*) => {$(
                if let Some(a) = v.downcast_ref::<Array<$t, $d>>() {
                    encode(a, sink);
                    return true;
                }
            )*};
        }
        try_dims!(f64);
        try_dims!(f32);
        try_dims!(i64);
        try_dims!(i32);
        try_dims!(u8);
        try_dims!(u64);
        try_dims!(u32);
        try_dims!(i16);
        try_dims!(u16);
        try_dims!(i8);
        macro_rules! try_bool {
            ($($d:ty),*) => {$(
                if let Some(a) = v.downcast_ref::<Array<bool, $d>>() {
                    encode_bool(a, sink);
                    return true;
                }
            )*};
        }
        try_bool!(Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn);
        false
    }
}

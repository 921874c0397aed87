//! Stored chunks decoded as they are read (raw bytes or one zstd frame), the buffers kept
//! between reads, and the whole-chunk fast path.

use brisk_array::BlockStream;
use brisk_graph::BoxError;
use ndarray::ArrayD;

use crate::meta::{FastCodec, ZarrElement};
use crate::store::ReadVersion;

use super::*;

/// A stored chunk decoded as it is read: the raw bytes, or one zstd frame decompressed
/// piece by piece (a reused context and input buffer per thread).
pub(super) struct ChunkStream {
    reader: Box<dyn std::io::Read + Send>,
    zstd: Option<Decoder>,
    /// Decoded bytes still expected.
    left: usize,
    what: String,
}

/// A zstd decompression context with its input buffer.
pub(super) struct Decoder {
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
    pub(super) fn new(
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
pub(super) static READ_POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
pub(super) const POOL_BYTES: usize = 256 << 20;

pub(super) fn take_buffer() -> Vec<u8> {
    READ_POOL
        .lock()
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_default()
}

pub(super) fn return_buffer(buf: Vec<u8>) {
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
pub(super) fn read_fast<T: ZarrElement>(
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

//! Blocks read front to back inside the task that consumes them.
//!
//! A chunk source that can produce its elements in order (a random generator, a decoder of a
//! stored chunk) is a [`BlockStream`]. Arrays made with [`Array::from_blocks_streamed`] keep
//! both forms of every block: the block task (for consumers that need the whole block, such
//! as slicing or rechunking) and the stream. Fused elementwise chunks, reduction partials and
//! writers ([`Array::block_sources`]) read a streamed block piece by piece inside their own
//! task: the block is never materialized, so memory holds a few tiles per worker instead of a
//! chunk, and the elements are used while they are still in the CPU's cache.
//!
//! The price: each consumer of a streamed block reads it again (a chunk used by two
//! reductions of one compute is decoded twice). [`Array::persist`] gives an array whose
//! blocks are computed once and shared.

use std::any::Any;
use std::sync::Arc;

use brisk_graph::{AnyDelayed, BoxError, Token, Value};
use ndarray::{ArrayD, IxDyn};

use crate::array::Array;
use crate::element::Element;
use crate::error::Result;
use crate::expr::{Env, ExprRef, TILE};

/// The elements of one block, produced in row-major order.
pub trait BlockStream<T>: Send {
    /// Writes the next `out.len()` elements of the block. Never asked for more elements
    /// than the block has.
    ///
    /// # Errors
    /// Whatever went wrong producing them (name the chunk).
    fn read(&mut self, out: &mut [T]) -> std::result::Result<(), BoxError>;

    /// Called once every element was read: a source that can tell whether more data was
    /// left over (a stored chunk longer than its shape) says so here.
    ///
    /// # Errors
    /// Data left over, or a check that failed.
    fn finish(&mut self) -> std::result::Result<(), BoxError> {
        Ok(())
    }
}

/// Opens block `i` (row-major block index of the array's grid) as a stream.
pub type OpenStream<T> =
    Arc<dyn Fn(usize) -> std::result::Result<Box<dyn BlockStream<T>>, BoxError> + Send + Sync>;

/// A block already in memory, served as a stream (for sources that can only produce a
/// whole block in some cases, e.g. the edge chunks of a stored array).
#[derive(Debug)]
pub struct Materialized<T> {
    data: Vec<T>,
    pos: usize,
}

impl<T: Element> Materialized<T> {
    /// Serves `a`'s elements in row-major order.
    #[must_use]
    pub fn new(a: ArrayD<T>) -> Self {
        let data = if a.is_standard_layout() {
            a.into_raw_vec_and_offset().0
        } else {
            a.iter().copied().collect()
        };
        Self { data, pos: 0 }
    }
}

impl<T: Element> BlockStream<T> for Materialized<T> {
    fn read(&mut self, out: &mut [T]) -> std::result::Result<(), BoxError> {
        let src = self
            .data
            .get(self.pos..self.pos + out.len())
            .ok_or("read past the end of a block")?;
        out.copy_from_slice(src);
        self.pos += out.len();
        Ok(())
    }
}

/// Elements read ahead of the consumer at once.
const AHEAD: usize = 16 * TILE;

/// A stream seen through a small window, so that an expression reading the same leaf twice
/// (`x*x + x`) gets the same elements for the same tile. Reads must not go backwards past
/// the window.
pub(crate) struct Window<U> {
    src: Box<dyn BlockStream<U>>,
    /// Allocated once; `buf[lo..hi]` holds block elements `start .. start + hi - lo`.
    buf: Vec<U>,
    lo: usize,
    hi: usize,
    /// Block index of `buf[lo]`.
    start: usize,
    len: usize,
}

impl<U: Element> Window<U> {
    pub(crate) fn new(src: Box<dyn BlockStream<U>>, len: usize) -> Self {
        Self {
            src,
            buf: Vec::new(),
            lo: 0,
            hi: 0,
            start: 0,
            len,
        }
    }

    /// Block elements produced so far.
    fn produced(&self) -> usize {
        self.start + self.hi - self.lo
    }

    pub(crate) fn read(&mut self, s: usize, out: &mut [U]) -> std::result::Result<(), BoxError> {
        if out.is_empty() {
            return Ok(());
        }
        let e = s + out.len();
        if s < self.start {
            return Err(format!(
                "a streamed block was read out of order (element {s} after {})",
                self.start
            )
            .into());
        }
        if e > self.len {
            return Err(format!(
                "elements {s}..{e} of a streamed block of {} elements",
                self.len
            )
            .into());
        }
        let produced = self.produced();
        if e > produced {
            if self.buf.is_empty() {
                self.buf = vec![U::default(); AHEAD + TILE.max(out.len())];
            }
            // Keep what the request still needs (less than one tile) at the front.
            let keep = produced.saturating_sub(s);
            self.buf.copy_within(self.hi - keep..self.hi, 0);
            self.start = produced - keep;
            // Skipped elements (not read by this consumer) still have to be produced.
            while self.start < s {
                let n = (s - self.start).min(self.buf.len());
                self.src.read(&mut self.buf[..n])?;
                self.start += n;
            }
            let at = self.start + keep;
            if e - self.start > self.buf.len() {
                self.buf.resize(e - self.start, U::default());
            }
            let want = (self.buf.len() - keep).min(self.len - at);
            self.src.read(&mut self.buf[keep..keep + want])?;
            (self.lo, self.hi) = (0, keep + want);
        }
        let off = self.lo + (s - self.start);
        out.copy_from_slice(&self.buf[off..off + out.len()]);
        Ok(())
    }
}

/// A [`Window`] of any element type, as the expression environment holds it.
pub(crate) trait AnyWindow: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn finish(&mut self) -> std::result::Result<(), BoxError>;
}

impl<U: Element> AnyWindow for Window<U> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
    fn finish(&mut self) -> std::result::Result<(), BoxError> {
        if self.produced() != self.len {
            return Err(format!(
                "a streamed block was read up to element {} of {}",
                self.produced(),
                self.len
            )
            .into());
        }
        self.src.finish()
    }
}

/// Opens block `i` of a leaf as a window (the leaf's element type erased).
pub(crate) type OpenWindow =
    Arc<dyn Fn(usize) -> std::result::Result<Box<dyn AnyWindow>, BoxError> + Send + Sync>;

/// One block of an array as a task would consume it: the tasks it depends on, a descriptor
/// that identifies its content, and a way to read it front to back inside the task.
///
/// ```
/// use brisk_array::Array;
/// use brisk_exec::ThreadedExecutor;
/// use brisk_graph::TaskSpec;
///
/// let x = Array::<f32>::random_normal(&[100, 50], &[40, 50], 1, 0.0, 1.0).unwrap();
/// let y = x.powi(2);
/// // Sum each block of y in a task of our own, without materializing the block.
/// let sums: Vec<_> = y
///     .block_sources()
///     .unwrap()
///     .into_iter()
///     .map(|src| {
///         let inputs = src.inputs().to_vec();
///         let desc = src.descriptor();
///         TaskSpec::new("block-sum").pure().call_dyn(
///             move |values| {
///                 let mut r = src.open(values)?;
///                 let mut tile = vec![0f32; 256];
///                 let mut total = 0f64;
///                 while r.remaining() > 0 {
///                     let n = r.remaining().min(tile.len());
///                     r.read(&mut tile[..n])?;
///                     total += tile[..n].iter().map(|&v| f64::from(v)).sum::<f64>();
///                 }
///                 r.finish()?;
///                 Ok(total)
///             },
///             &inputs,
///             desc,
///         )
///     })
///     .collect();
/// let exec = ThreadedExecutor::new(2).unwrap();
/// let total: f64 = sums.iter().map(|s| s.compute_with(&exec).unwrap()).sum();
/// assert!((total / 5000.0 - 1.0).abs() < 0.1);
/// ```
pub struct BlockSource<T: Element> {
    inputs: Vec<AnyDelayed>,
    descriptor: Token,
    shape: Vec<usize>,
    open: OpenReader<T>,
}

type OpenReader<T> =
    Arc<dyn Fn(Vec<Value>) -> std::result::Result<BlockReader<T>, BoxError> + Send + Sync>;

impl<T: Element> std::fmt::Debug for BlockSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockSource")
            .field("inputs", &self.inputs.len())
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl<T: Element> BlockSource<T> {
    /// The tasks whose values [`open`](Self::open) needs, in order.
    #[must_use]
    pub fn inputs(&self) -> &[AnyDelayed] {
        &self.inputs
    }

    /// Identifies the block's content (with the inputs' keys): use it as the descriptor of a
    /// pure task that consumes the block.
    #[must_use]
    pub fn descriptor(&self) -> Token {
        self.descriptor
    }

    /// The block's shape.
    #[must_use]
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Opens the block from the computed values of [`inputs`](Self::inputs).
    ///
    /// # Errors
    /// A value of an unexpected type, or a stream that fails to open.
    pub fn open(&self, values: Vec<Value>) -> std::result::Result<BlockReader<T>, BoxError> {
        (self.open)(values)
    }
}

/// An open block, read front to back.
pub struct BlockReader<T: Element> {
    kind: ReaderKind<T>,
    pos: usize,
    len: usize,
    shape: Vec<usize>,
}

enum ReaderKind<T: Element> {
    /// The block is one stream (a leaf read as it is).
    Direct(Box<dyn BlockStream<T>>),
    /// A fused expression over the block's leaves.
    Expr { expr: ExprRef<T>, env: Env },
}

impl<T: Element> BlockReader<T> {
    /// The block's shape.
    #[must_use]
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements not read yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.len - self.pos
    }

    /// Writes the next `out.len()` elements (row-major).
    ///
    /// # Errors
    /// More elements asked than remain; the sources' errors.
    pub fn read(&mut self, out: &mut [T]) -> std::result::Result<(), BoxError> {
        if out.len() > self.remaining() {
            return Err(format!(
                "{} elements asked of a block with {} left",
                out.len(),
                self.remaining()
            )
            .into());
        }
        match &mut self.kind {
            ReaderKind::Direct(s) => s.read(out)?,
            ReaderKind::Expr { expr, env } => {
                for (k, tile) in out.chunks_mut(TILE).enumerate() {
                    expr.eval(env, self.pos + k * TILE, tile)?;
                }
            }
        }
        self.pos += out.len();
        Ok(())
    }

    /// Checks that the whole block was read and that its sources had nothing left over.
    ///
    /// # Errors
    /// Elements left unread; a source's check failed.
    pub fn finish(mut self) -> std::result::Result<(), BoxError> {
        self.check_end()
    }

    fn check_end(&mut self) -> std::result::Result<(), BoxError> {
        if self.remaining() > 0 {
            return Err(format!("{} elements of the block were not read", self.remaining()).into());
        }
        match &mut self.kind {
            ReaderKind::Direct(s) => s.finish(),
            ReaderKind::Expr { env, .. } => env.finish(),
        }
    }

    /// Reads the whole (remaining) block into an array.
    ///
    /// # Errors
    /// As [`read`](Self::read) and [`finish`](Self::finish).
    pub fn into_array(mut self) -> std::result::Result<ArrayD<T>, BoxError> {
        let mut data = vec![T::default(); self.remaining()];
        self.read(&mut data)?;
        let shape = self.shape.clone();
        self.finish()?;
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), data)?)
    }
}

/// A reader is itself a stream of its block (for adapters written against [`BlockStream`]).
impl<T: Element> BlockStream<T> for BlockReader<T> {
    fn read(&mut self, out: &mut [T]) -> std::result::Result<(), BoxError> {
        BlockReader::read(self, out)
    }
    fn finish(&mut self) -> std::result::Result<(), BoxError> {
        self.check_end()
    }
}

impl<T: Element> Array<T> {
    /// One [`BlockSource`] per block (row-major): what a task needs to read that block of
    /// this array front to back — the fused expression evaluated tile by tile, streamed
    /// leaves read inside the task. Writers use it to encode a block without materializing
    /// it.
    ///
    /// # Errors
    /// The build error, if any.
    pub fn block_sources(&self) -> Result<Vec<BlockSource<T>>> {
        self.check()?;
        let desc = self.key_desc();
        Ok((0..self.grid.num_blocks())
            .map(|i| {
                let (shape, plan, descriptor) = self.chunk_plan(i, &desc);
                let inputs = plan.inputs.clone();
                let leaves = Arc::clone(&self.leaves);
                let expr = Arc::clone(&self.expr);
                let direct = self.own.is_some();
                let shape2 = shape.clone();
                BlockSource {
                    inputs,
                    descriptor,
                    shape,
                    open: Arc::new(move |values: Vec<Value>| {
                        let len = shape2.iter().product();
                        let kind = match (direct, plan.single_stream(&leaves)) {
                            (true, Some(open)) => ReaderKind::Direct(open()?),
                            _ => ReaderKind::Expr {
                                expr: Arc::clone(&expr),
                                env: Array::<T>::env(&leaves, &plan, values, &shape2)?,
                            },
                        };
                        Ok(BlockReader {
                            kind,
                            pos: 0,
                            len,
                            shape: shape2.clone(),
                        })
                    }),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element `i` of the block is `i`.
    struct Count(u64);
    impl BlockStream<u64> for Count {
        fn read(&mut self, out: &mut [u64]) -> std::result::Result<(), BoxError> {
            for o in out {
                *o = self.0;
                self.0 += 1;
            }
            Ok(())
        }
    }

    fn window(len: usize) -> Window<u64> {
        Window::new(Box::new(Count(0)), len)
    }

    fn read(w: &mut Window<u64>, s: usize, n: usize) -> Vec<u64> {
        let mut out = vec![0; n];
        w.read(s, &mut out).unwrap();
        out
    }

    #[test]
    fn a_window_serves_repeats_straddles_and_skips_in_order() {
        let len = 3 * AHEAD + 17;
        let mut w = window(len);
        let range = |s: usize, n: usize| (s as u64..(s + n) as u64).collect::<Vec<_>>();
        assert_eq!(read(&mut w, 0, 5), range(0, 5));
        assert_eq!(read(&mut w, 0, 5), range(0, 5), "the same tile twice");
        assert_eq!(read(&mut w, 3, 0), range(3, 0), "nothing");
        // A read straddling the end of what was produced keeps its head.
        assert_eq!(read(&mut w, AHEAD - 3, 9), range(AHEAD - 3, 9));
        assert_eq!(read(&mut w, AHEAD - 3, 9), range(AHEAD - 3, 9));
        // Skipping forward produces (and drops) what lies between.
        assert_eq!(read(&mut w, 2 * AHEAD + 40, 3), range(2 * AHEAD + 40, 3));
        // A read bigger than the window.
        let s = 2 * AHEAD + 43;
        assert_eq!(read(&mut w, s, len - s), range(s, len - s));
        w.finish().unwrap();
    }

    #[test]
    fn a_window_refuses_reads_backwards_past_the_end_or_left_short() {
        let mut w = window(10 * AHEAD);
        read(&mut w, 0, 4);
        read(&mut w, 2 * AHEAD, 4);
        let mut out = vec![0; 4];
        assert!(w.read(0, &mut out).is_err(), "backwards");
        assert!(w.read(10 * AHEAD - 2, &mut out).is_err(), "past the end");
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("read up to element"), "{err}");
    }
}

//! Fused elementwise expressions, evaluated tile by tile inside one task per chunk.
//!
//! An array is an expression over *leaves* (chunk tasks of other arrays, or streams read
//! inside the consuming task — see [`crate::stream`]). A chain
//! of elementwise operations only grows the expression; when a chunk is finally needed, one
//! task evaluates the whole expression for that chunk in tiles of [`TILE`] elements, so no
//! temporary the size of a chunk is ever made per operation.

use std::cell::RefCell;
use std::sync::Arc;

use brisk_graph::{BoxError, Value};
use ndarray::{ArrayD, IxDyn};

use crate::element::Element;
use crate::stream::{AnyWindow, Window};

/// Elements evaluated at once per expression node (reused buffers of this size).
pub(crate) const TILE: usize = 1024;

/// One leaf of an output chunk, as the chunk's task holds it.
pub(crate) enum LeafData {
    /// The block, computed by its own task: a standard-layout `ArrayD<U>` of the chunk's
    /// shape.
    Value(Value),
    /// The block read front to back inside this task.
    Stream(RefCell<Box<dyn AnyWindow>>),
}

/// The leaves of one output chunk: `(leaf id, data)`, and the tile buffers its expression
/// nodes reuse (one per node and element type, allocated at the chunk's first tile: zeroing a
/// stack tile per node per tile cost more than the arithmetic).
pub(crate) struct Env {
    pub(crate) leaves: Vec<(u64, LeafData)>,
    scratch: RefCell<Vec<Box<dyn std::any::Any + Send>>>,
}

impl Env {
    pub(crate) fn new(leaves: Vec<(u64, LeafData)>) -> Self {
        Self {
            leaves,
            scratch: RefCell::new(Vec::new()),
        }
    }

    /// Runs `f` with a tile buffer of `TILE` elements of `A` (contents unspecified).
    fn with_tile<A: Element, R>(&self, f: impl FnOnce(&mut [A]) -> R) -> R {
        let found = {
            let mut pool = self.scratch.borrow_mut();
            pool.iter()
                .rposition(|b| b.is::<Vec<A>>())
                .map(|i| pool.swap_remove(i))
        };
        let mut buf = found
            .and_then(|b| b.downcast::<Vec<A>>().ok())
            .map_or_else(|| vec![A::default(); TILE], |b| *b);
        let r = f(&mut buf);
        self.scratch.borrow_mut().push(Box::new(buf));
        r
    }

    /// Writes elements `start .. start + out.len()` of leaf `id` into `out`.
    pub(crate) fn read<U: Element>(
        &self,
        id: u64,
        start: usize,
        out: &mut [U],
    ) -> Result<(), BoxError> {
        let data = self
            .leaves
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v)
            .ok_or("expression leaf missing from its chunk task")?;
        match data {
            LeafData::Value(v) => {
                let a = v
                    .downcast_ref::<ArrayD<U>>()
                    .ok_or("expression leaf has an unexpected element type")?;
                let src = a
                    .as_slice()
                    .ok_or("expression leaf is not in standard layout")?
                    .get(start..start + out.len())
                    .ok_or("tile outside its chunk")?;
                out.copy_from_slice(src);
                Ok(())
            }
            LeafData::Stream(w) => {
                let mut w = w
                    .try_borrow_mut()
                    .map_err(|_| "a streamed leaf read re-entrantly")?;
                w.as_any()
                    .downcast_mut::<Window<U>>()
                    .ok_or("expression leaf has an unexpected element type")?
                    .read(start, out)
            }
        }
    }

    /// Checks that every streamed leaf was read to its end and had nothing left over.
    pub(crate) fn finish(&self) -> Result<(), BoxError> {
        for (_, d) in &self.leaves {
            if let LeafData::Stream(w) = d {
                w.try_borrow_mut()
                    .map_err(|_| "a streamed leaf read re-entrantly")?
                    .finish()?;
            }
        }
        Ok(())
    }
}

/// A node of an elementwise expression producing `T`.
pub(crate) trait Expr<T>: Send + Sync + 'static {
    /// A description that identifies the computation (enters task keys).
    fn desc(&self) -> String;
    /// Writes elements `start .. start + out.len()` (flat, row-major in the chunk) into `out`.
    fn eval(&self, env: &Env, start: usize, out: &mut [T]) -> Result<(), BoxError>;
}

pub(crate) type ExprRef<T> = Arc<dyn Expr<T>>;

/// Reads a leaf.
pub(crate) struct Leaf {
    pub(crate) id: u64,
}

impl<T: Element> Expr<T> for Leaf {
    fn desc(&self) -> String {
        format!("leaf:{:016x}", self.id)
    }
    fn eval(&self, env: &Env, start: usize, out: &mut [T]) -> Result<(), BoxError> {
        env.read(self.id, start, out)
    }
}

/// A constant.
pub(crate) struct Const<T>(pub(crate) T);

impl<T: Element> Expr<T> for Const<T> {
    fn desc(&self) -> String {
        format!("const:{:?}:{}", self.0, T::DTYPE)
    }
    fn eval(&self, _: &Env, _: usize, out: &mut [T]) -> Result<(), BoxError> {
        out.fill(self.0);
        Ok(())
    }
}

/// `f(x)` elementwise (`f` is monomorphized into the tile loop).
pub(crate) struct Unary<A, F> {
    pub(crate) name: String,
    pub(crate) f: F,
    pub(crate) x: ExprRef<A>,
}

impl<A: Element, T: Element, F: Fn(A) -> T + Send + Sync + 'static> Expr<T> for Unary<A, F> {
    fn desc(&self) -> String {
        format!("{}({})", self.name, self.x.desc())
    }
    fn eval(&self, env: &Env, start: usize, out: &mut [T]) -> Result<(), BoxError> {
        env.with_tile(|tmp: &mut [A]| {
            for (k, chunk) in out.chunks_mut(TILE).enumerate() {
                let t = &mut tmp[..chunk.len()];
                self.x.eval(env, start + k * TILE, t)?;
                for (o, &a) in chunk.iter_mut().zip(t.iter()) {
                    *o = (self.f)(a);
                }
            }
            Ok(())
        })
    }
}

/// `f(x, y)` elementwise (`f` is monomorphized into the tile loop).
pub(crate) struct Binary<A, B, F> {
    pub(crate) name: &'static str,
    pub(crate) f: F,
    pub(crate) x: ExprRef<A>,
    pub(crate) y: ExprRef<B>,
}

impl<A, B, T, F> Expr<T> for Binary<A, B, F>
where
    A: Element,
    B: Element,
    T: Element,
    F: Fn(A, B) -> T + Send + Sync + 'static,
{
    fn desc(&self) -> String {
        format!("{}({},{})", self.name, self.x.desc(), self.y.desc())
    }
    fn eval(&self, env: &Env, start: usize, out: &mut [T]) -> Result<(), BoxError> {
        env.with_tile(|ta: &mut [A]| {
            env.with_tile(|tb: &mut [B]| {
                for (k, chunk) in out.chunks_mut(TILE).enumerate() {
                    let n = chunk.len();
                    let (a, b) = (&mut ta[..n], &mut tb[..n]);
                    self.x.eval(env, start + k * TILE, a)?;
                    self.y.eval(env, start + k * TILE, b)?;
                    for ((o, &p), &q) in chunk.iter_mut().zip(a.iter()).zip(b.iter()) {
                        *o = (self.f)(p, q);
                    }
                }
                Ok(())
            })
        })
    }
}

/// Evaluates `expr` over a whole chunk of `shape` into a new array.
pub(crate) fn eval_chunk<T: Element>(
    expr: &dyn Expr<T>,
    env: &Env,
    shape: &[usize],
) -> Result<ArrayD<T>, BoxError> {
    let n: usize = shape.iter().product();
    let mut data = vec![T::default(); n];
    for (k, tile) in data.chunks_mut(TILE).enumerate() {
        expr.eval(env, k * TILE, tile)?;
    }
    env.finish()?;
    Ok(ArrayD::from_shape_vec(IxDyn(shape), data)?)
}

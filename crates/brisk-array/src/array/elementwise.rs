//! Elementwise operations (fused per chunk), comparisons, `map_blocks`, and the
//! constructors and methods of numeric and float arrays.

use std::sync::Arc;

use brisk_graph::{BoxError, TaskSpec};
use ndarray::ArrayD;
use num_traits::AsPrimitive;

use crate::element::{Element, Float, Number};
use crate::error::{ArrayError, Result};
use crate::expr::{Binary, Const, Unary};
use crate::grid::ChunkGrid;
use crate::recipe::{BinaryOp, Described, Recipe, UnaryFn};

use super::*;

impl<T: Element> Array<T> {
    /// Applies `f` to every element (fused with the surrounding elementwise operations).
    /// Closures cannot be hashed, so the result has fresh keys; use
    /// [`mapv_named`](Array::mapv_named) for a pure, named function.
    #[must_use]
    pub fn mapv<U: Element, F>(&self, f: F) -> Array<U>
    where
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        self.unary(opaque_desc("mapv"), f)
    }

    /// Like [`mapv`](Array::mapv) for a pure function identified by `name` (and `version`):
    /// equal names give equal keys, so only use it for functions that never change meaning.
    /// `f` must capture nothing (checked at compile time): a captured parameter would be
    /// invisible to the key — put it in the name, or use an elementwise expression.
    #[must_use]
    pub fn mapv_named<U: Element, F>(&self, name: &str, f: F) -> Array<U>
    where
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        const {
            assert!(
                std::mem::size_of::<F>() == 0,
                "mapv_named's key is its name: the function must capture nothing"
            );
        };
        self.unary(format!("mapv:{name}"), f)
    }

    pub(crate) fn unary<U: Element, F>(&self, name: String, f: F) -> Array<U>
    where
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        Array {
            grid: self.grid.clone(),
            expr: Arc::new(Unary {
                name,
                f,
                x: Arc::clone(&self.expr),
            }),
            leaves: Arc::clone(&self.leaves),
            own: None,
            error: self.error.clone(),
            split_every: self.split_every,
            recipe: Err(
                "an elementwise closure (`mapv`, `astype`) has no recipe; use an elementwise \
                 expression or a registered kernel (`brisk_array::kernel!`)"
                    .into(),
            ),
        }
    }

    /// Converts every element with `as` semantics.
    #[must_use]
    pub fn astype<U: Element>(&self) -> Array<U>
    where
        T: AsPrimitive<U>,
    {
        self.unary(format!("astype:{}", U::DTYPE), |x: T| x.as_())
    }

    /// Combines two arrays elementwise with broadcasting (NumPy rules). Axes of equal length
    /// must have equal chunks; otherwise `other` is rechunked to match.
    pub(crate) fn zip_with<B: Element, U: Element, F>(
        &self,
        other: &Array<B>,
        name: &'static str,
        f: F,
    ) -> Array<U>
    where
        F: Fn(T, B) -> U + Send + Sync + 'static,
    {
        match self.try_zip_with(other, name, f) {
            Ok(a) => a,
            Err(e) => self.failed(e),
        }
    }

    fn try_zip_with<B: Element, U: Element, F>(
        &self,
        other: &Array<B>,
        name: &'static str,
        f: F,
    ) -> Result<Array<U>>
    where
        F: Fn(T, B) -> U + Send + Sync + 'static,
    {
        self.check()?;
        other.check()?;
        let (a, b) = (self.shape(), other.shape());
        let n = a.len().max(b.len());
        let mismatch = || ArrayError::ShapeMismatch {
            op: name.to_owned(),
            left: a.clone(),
            right: b.clone(),
        };
        // Output chunks per axis: from the operand that is not broadcast along it.
        let mut chunks = Vec::with_capacity(n);
        let mut other_chunks = Vec::with_capacity(b.len());
        for axis in 0..n {
            let la = (axis + a.len()).checked_sub(n).map(|i| a[i]);
            let lb = (axis + b.len()).checked_sub(n).map(|i| b[i]);
            let ca = (axis + a.len())
                .checked_sub(n)
                .map(|i| self.grid.chunks()[i].clone());
            let cb = (axis + b.len())
                .checked_sub(n)
                .map(|i| other.grid.chunks()[i].clone());
            let c = match (la, lb) {
                (Some(x), Some(y)) if x == y => {
                    let ca = ca.expect("axis exists");
                    other_chunks.push(ca.clone());
                    ca
                }
                (Some(x), Some(1)) => {
                    other_chunks.push(vec![1]);
                    let _ = x;
                    ca.expect("axis exists")
                }
                (Some(1), Some(_)) => {
                    let cb = cb.expect("axis exists");
                    other_chunks.push(cb.clone());
                    cb
                }
                (Some(_), None) => ca.expect("axis exists"),
                (None, Some(_)) => {
                    let cb = cb.expect("axis exists");
                    other_chunks.push(cb.clone());
                    cb
                }
                _ => return Err(mismatch()),
            };
            chunks.push(c);
        }
        let other = if other_chunks == other.grid.chunks() {
            other.clone()
        } else {
            other.rechunk_to(ChunkGrid::from_sizes(other_chunks)?)?
        };
        let grid = ChunkGrid::from_sizes(chunks)?;
        let mut leaves: Vec<LeafSrc> = self.leaves.as_ref().clone();
        for l in other.leaves.iter() {
            merge_leaf(&mut leaves, l);
        }
        Ok(Array {
            grid,
            expr: Arc::new(Binary {
                name,
                f,
                x: Arc::clone(&self.expr),
                y: Arc::clone(&other.expr),
            }),
            leaves: Arc::new(leaves),
            own: None,
            error: None,
            split_every: self.split_every,
            recipe: Err(format!("`{name}` of two arrays has no recipe").into()),
        })
    }

    /// The recipe of elementwise `f` of this array.
    pub(crate) fn unary_recipe(&self, f: UnaryFn) -> Described {
        self.derived(|x| Recipe::Unary { f, x })
    }

    /// The recipe of `self op v` (none for a value JSON cannot carry exactly, such as NaN).
    pub(crate) fn scalar_recipe(&self, op: BinaryOp, v: T) -> Described {
        match serde_json::to_value(v) {
            Ok(j) if !j.is_null() => self.unary_recipe(UnaryFn::Scalar(op, j)),
            _ => Err(format!("the scalar {v:?} cannot travel exactly as JSON").into()),
        }
    }

    /// The recipe of `self op other`.
    pub(crate) fn binary_recipe(&self, op: BinaryOp, other: &Self) -> Described {
        let y = Box::new(other.recipe.as_deref().map_err(Arc::clone)?.clone());
        self.derived(|x| Recipe::Binary { op, x, y })
    }

    /// A constant array expression broadcast against this one.
    pub(crate) fn scalar(&self, v: T) -> Array<T> {
        Array {
            grid: self.grid.clone(),
            expr: Arc::new(Const(v)),
            leaves: Arc::clone(&self.leaves),
            own: None,
            error: self.error.clone(),
            split_every: self.split_every,
            recipe: Err("a comparison with a scalar has no recipe".into()),
        }
    }

    /// `self > other` elementwise.
    #[must_use]
    pub fn gt(&self, other: &Array<T>) -> Array<bool> {
        self.zip_with(other, "gt", |a: T, b: T| a > b)
    }
    /// `self >= other` elementwise.
    #[must_use]
    pub fn ge(&self, other: &Array<T>) -> Array<bool> {
        self.zip_with(other, "ge", |a: T, b: T| a >= b)
    }
    /// `self < other` elementwise.
    #[must_use]
    pub fn lt(&self, other: &Array<T>) -> Array<bool> {
        self.zip_with(other, "lt", |a: T, b: T| a < b)
    }
    /// `self <= other` elementwise.
    #[must_use]
    pub fn le(&self, other: &Array<T>) -> Array<bool> {
        self.zip_with(other, "le", |a: T, b: T| a <= b)
    }
    /// `self == other` elementwise.
    #[must_use]
    pub fn eq_elem(&self, other: &Array<T>) -> Array<bool> {
        self.zip_with(other, "eq", |a: T, b: T| a == b)
    }
    /// `self != other` elementwise.
    #[must_use]
    pub fn ne_elem(&self, other: &Array<T>) -> Array<bool> {
        self.zip_with(other, "ne", |a: T, b: T| a != b)
    }
    /// `self > v` elementwise.
    #[must_use]
    pub fn gt_scalar(&self, v: T) -> Array<bool> {
        self.gt(&self.scalar(v))
    }
    /// `self < v` elementwise.
    #[must_use]
    pub fn lt_scalar(&self, v: T) -> Array<bool> {
        self.lt(&self.scalar(v))
    }

    /// Applies `f` to every block (`f` gets the block and its offset; it must return a block
    /// of the same shape). Impure (closures cannot be hashed).
    ///
    /// # Errors
    /// The build error, if any.
    pub fn map_blocks<U: Element, F>(&self, f: F) -> Result<Array<U>>
    where
        F: Fn(ArrayD<T>, &[usize]) -> ArrayD<U> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let spec = TaskSpec::new("map_blocks");
        let blocks = self
            .blocks()?
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let c = self.grid.block_coords(i);
                let off = self.grid.block_offset(&c);
                let shp = self.grid.block_shape(&c);
                let f = Arc::clone(&f);
                spec.try_call(
                    move |a: ArrayD<T>| checked_block("map_blocks", f(a, &off), &off, &shp),
                    (b,),
                )
            })
            .collect();
        Array::from_blocks(self.grid.clone(), blocks)
    }
}

impl<T: Element> Array<T> {
    /// Applies the block function `f` named `name` to every block (as
    /// [`map_blocks`](Array::map_blocks)), with keys from the name: equal names and inputs
    /// give equal keys, so a name must always mean the same function. Registered with
    /// [`kernel!`](crate::kernel), the result has a recipe and runs on a cluster; otherwise
    /// it runs on local threads only.
    ///
    /// # Errors
    /// The build error, if any.
    pub fn map_kernel<U: Element>(
        &self,
        name: &'static str,
        f: fn(ArrayD<T>, &[usize]) -> ArrayD<U>,
    ) -> Result<Array<U>> {
        // The name determines `f`; offset and shape are arguments.
        let spec = TaskSpec::new(format!("kernel:{name}"))
            .pure()
            .captures_covered_by_args();
        let blocks = self
            .blocks()?
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let c = self.grid.block_coords(i);
                let off = self.grid.block_offset(&c);
                let shp = self.grid.block_shape(&c);
                spec.try_call(
                    move |a: ArrayD<T>, off: Vec<usize>, shp: Vec<usize>| {
                        checked_block(&format!("kernel {name}"), f(a, &off), &off, &shp)
                    },
                    (b, off, shp),
                )
            })
            .collect();
        let out = Array::from_blocks(self.grid.clone(), blocks)?;
        let recipe = if crate::recipe::kernels().contains_key(name) {
            self.derived(|x| Recipe::Kernel {
                name: name.to_owned(),
                x,
            })
        } else {
            Err(format!("the kernel `{name}` is not registered (`brisk_array::kernel!`)").into())
        };
        Ok(out.described(recipe))
    }
}

impl<T: Number> Array<T> {
    /// `0, 1, …, n - 1` in chunks of `chunk` (as `numpy.arange(n)`; values past an integer
    /// type's maximum saturate at it): coordinates, indices.
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`].
    pub fn arange(n: usize, chunk: usize) -> Result<Self> {
        let grid = ChunkGrid::regular(&[n], &[chunk])?;
        let spec = TaskSpec::new("arange").pure();
        let blocks = (0..grid.num_blocks())
            .map(|i| {
                let (off, len) = (grid.block_offset(&[i])[0], grid.block_shape(&[i])[0]);
                spec.call(
                    |off: usize, len: usize| {
                        #[allow(clippy::cast_precision_loss, reason = "as numpy.arange in f64")]
                        ArrayD::from_shape_fn(ndarray::IxDyn(&[len]), |ix| {
                            T::from_f64((off + ix[0]) as f64)
                        })
                    },
                    (off, len),
                )
            })
            .collect();
        Ok(
            Array::from_blocks(grid, blocks)?.with_recipe(Recipe::Arange {
                dtype: T::DTYPE,
                n,
                chunk,
            }),
        )
    }

    /// An array of zeros.
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`].
    pub fn zeros(shape: &[usize], chunks: &[usize]) -> Result<Self> {
        Self::full(shape, chunks, T::zero())
    }

    /// An array of ones.
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`].
    pub fn ones(shape: &[usize], chunks: &[usize]) -> Result<Self> {
        Self::full(shape, chunks, T::one())
    }

    /// `x^n` elementwise (small powers are straight-line multiplications the compiler can
    /// vectorize).
    #[must_use]
    pub fn powi(&self, n: i32) -> Self {
        let recipe = self.unary_recipe(UnaryFn::Powi(n));
        let name = format!("powi:{n}");
        let a = match n {
            0 => self.unary(name, |_: T| T::one()),
            1 => self.unary(name, |x: T| x),
            2 => self.unary(name, |x: T| x * x),
            3 => self.unary(name, |x: T| x * x * x),
            4 => self.unary(name, |x: T| {
                let y = x * x;
                y * y
            }),
            _ => self.unary(name, move |x: T| x.powi(n)),
        };
        a.described(recipe)
    }

    /// `|x|` elementwise.
    #[must_use]
    pub fn abs(&self) -> Self {
        self.unary("abs".into(), |x: T| x.abs())
            .described(self.unary_recipe(UnaryFn::Abs))
    }
}

impl<T: Float> Array<T> {
    /// `x^p` elementwise.
    #[must_use]
    pub fn powf(&self, p: T) -> Self {
        let recipe = match serde_json::to_value(p).ok().and_then(|v| v.as_f64()) {
            Some(p) => self.unary_recipe(UnaryFn::Powf(p)),
            None => Err(format!("the power {p:?} cannot travel exactly as JSON").into()),
        };
        self.unary(format!("powf:{p:?}"), move |x: T| x.powf(p))
            .described(recipe)
    }
    /// `√x` elementwise.
    #[must_use]
    pub fn sqrt(&self) -> Self {
        self.unary("sqrt".into(), |x: T| x.sqrt())
            .described(self.unary_recipe(UnaryFn::Sqrt))
    }
    /// `e^x` elementwise.
    #[must_use]
    pub fn exp(&self) -> Self {
        self.unary("exp".into(), |x: T| x.exp())
            .described(self.unary_recipe(UnaryFn::Exp))
    }
    /// `ln x` elementwise.
    #[must_use]
    pub fn ln(&self) -> Self {
        self.unary("ln".into(), |x: T| x.ln())
            .described(self.unary_recipe(UnaryFn::Ln))
    }
}

/// `out`, the block a function `what` made at `off`, in standard layout if it has the shape
/// `shp` the grid promises; an error naming the function and the block otherwise.
fn checked_block<U: Element>(
    what: &str,
    out: ArrayD<U>,
    off: &[usize],
    shp: &[usize],
) -> Result<ArrayD<U>, BoxError> {
    if out.shape() != shp {
        return Err(format!(
            "{what}: block at {off:?} has shape {shp:?} but the function returned {:?}",
            out.shape()
        )
        .into());
    }
    Ok(out.as_standard_layout().into_owned())
}

macro_rules! binop {
    ($tr:ident, $m:ident, $name:literal, $op:tt, $rop:ident) => {
        impl<T: Number> std::ops::$tr<&Array<T>> for &Array<T> {
            type Output = Array<T>;
            fn $m(self, rhs: &Array<T>) -> Array<T> {
                self.zip_with(rhs, $name, |a: T, b: T| a $op b)
                    .described(self.binary_recipe(BinaryOp::$rop, rhs))
            }
        }
        impl<T: Number> std::ops::$tr<Array<T>> for Array<T> {
            type Output = Array<T>;
            fn $m(self, rhs: Array<T>) -> Array<T> {
                (&self).$m(&rhs)
            }
        }
        impl<T: Number> std::ops::$tr<&Array<T>> for Array<T> {
            type Output = Array<T>;
            fn $m(self, rhs: &Array<T>) -> Array<T> {
                (&self).$m(rhs)
            }
        }
        impl<T: Number> std::ops::$tr<Array<T>> for &Array<T> {
            type Output = Array<T>;
            fn $m(self, rhs: Array<T>) -> Array<T> {
                self.$m(&rhs)
            }
        }
        impl<T: Number> std::ops::$tr<T> for &Array<T> {
            type Output = Array<T>;
            fn $m(self, rhs: T) -> Array<T> {
                self.unary(format!(concat!($name, "_scalar:{:?}"), rhs), move |a: T| a $op rhs)
                    .described(self.scalar_recipe(BinaryOp::$rop, rhs))
            }
        }
        impl<T: Number> std::ops::$tr<T> for Array<T> {
            type Output = Array<T>;
            fn $m(self, rhs: T) -> Array<T> {
                (&self).$m(rhs)
            }
        }
    };
}
binop!(Add, add, "add", +, Add);
binop!(Sub, sub, "sub", -, Sub);
binop!(Mul, mul, "mul", *, Mul);
binop!(Div, div, "div", /, Div);

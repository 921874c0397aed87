//! How an array was built, as data: what lets another process (a cluster worker) build the
//! same array and so the same graph, without shipping closures.
//!
//! Every operation that is fully described by its parameters — random generators, constant
//! arrays, sources registered by other crates (brisk-zarr's `from_zarr`), elementwise
//! arithmetic and powers, reductions, rechunk, slicing, transposes, concatenation and
//! stacking — records a [`Recipe`] on its result. `compute` then tells the executor how to
//! rebuild the graph ([`brisk_graph::remote::Origin`]); an executor that runs tasks in other
//! processes rebuilds it there. Arrays made from closures (`mapv`, `map_blocks`, `from_fn`,
//! `from_blocks`) or bound to a resource have no recipe: their tasks stay on local threads,
//! and a cluster refuses them with an error naming the task.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use brisk_graph::BoxError;
use brisk_graph::remote::Origin;
use serde::{Deserialize, Serialize};

use crate::array::Array;
use crate::element::{DType, Element, Number};
use crate::error::{ArrayError, Result};

/// A step of an array's construction (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Recipe {
    /// `Array::random_normal` / `random_uniform`.
    Random {
        /// Element type.
        dtype: DType,
        /// Shape.
        shape: Vec<usize>,
        /// Chunk shape.
        chunks: Vec<usize>,
        /// Seed.
        seed: u64,
        /// `true`: normal(a = mean, b = std); `false`: uniform in [a, b).
        normal: bool,
        /// First parameter.
        a: f64,
        /// Second parameter.
        b: f64,
    },
    /// `Array::full` (and `zeros`, `ones`).
    Full {
        /// Element type.
        dtype: DType,
        /// Shape.
        shape: Vec<usize>,
        /// Chunk shape.
        chunks: Vec<usize>,
        /// The value (JSON).
        value: serde_json::Value,
    },
    /// `Array::arange`.
    Arange {
        /// Element type.
        dtype: DType,
        /// Length.
        n: usize,
        /// Chunk length.
        chunk: usize,
    },
    /// An array from a [`SourceBuilder`] registered by another crate.
    Source {
        /// The builder's name.
        name: String,
        /// Element type.
        dtype: DType,
        /// Its parameters.
        params: serde_json::Value,
    },
    /// An elementwise function of one array.
    Unary {
        /// The function.
        f: UnaryFn,
        /// The operand.
        x: Box<Recipe>,
    },
    /// An elementwise arithmetic operation of two arrays (with broadcasting).
    Binary {
        /// The operation.
        op: BinaryOp,
        /// Left operand.
        x: Box<Recipe>,
        /// Right operand.
        y: Box<Recipe>,
    },
    /// A reduction over `axes`.
    Reduce {
        /// The reduction.
        f: ReduceFn,
        /// The axes reduced.
        axes: Vec<usize>,
        /// The operand.
        x: Box<Recipe>,
    },
    /// `rechunk_to` a grid of these chunk sizes per axis.
    Rechunk {
        /// Chunk sizes per axis.
        chunks: Vec<Vec<usize>>,
        /// The operand.
        x: Box<Recipe>,
    },
    /// `slice` with (start, end, step) per axis.
    Slice {
        /// One per sliced axis.
        slices: Vec<(isize, Option<isize>, isize)>,
        /// The operand.
        x: Box<Recipe>,
    },
    /// `permute_axes`.
    Permute {
        /// The permutation.
        perm: Vec<usize>,
        /// The operand.
        x: Box<Recipe>,
    },
    /// `concatenate` (`stack = false`) or `stack` along `axis`.
    Join {
        /// Whether a new axis is made.
        stack: bool,
        /// The axis.
        axis: usize,
        /// The operands.
        xs: Vec<Recipe>,
    },
    /// `map_kernel` with a kernel registered by [`kernel!`](crate::kernel).
    Kernel {
        /// The kernel's registered name.
        name: String,
        /// The operand.
        x: Box<Recipe>,
    },
    /// `with_split_every`.
    SplitEvery {
        /// The fan-in.
        n: usize,
        /// The operand.
        x: Box<Recipe>,
    },
}

/// Elementwise functions of one array with a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnaryFn {
    /// `powi(n)`.
    Powi(i32),
    /// `powf(p)`.
    Powf(f64),
    /// `abs`.
    Abs,
    /// `sqrt`.
    Sqrt,
    /// `exp`.
    Exp,
    /// `ln`.
    Ln,
    /// `x op value` with a scalar (JSON of the element type).
    Scalar(BinaryOp, serde_json::Value),
}

/// Elementwise arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

/// Reductions with a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReduceFn {
    /// `sum`.
    Sum,
    /// `mean`.
    Mean,
    /// `var_ddof(ddof)`.
    Var(usize),
    /// `std`.
    Std,
    /// `min`.
    Min,
    /// `max`.
    Max,
}

/// An array of any element type.
#[derive(Clone)]
#[non_exhaustive]
#[allow(missing_docs, reason = "one variant per element type, named after it")]
pub enum AnyArray {
    Bool(Array<bool>),
    I8(Array<i8>),
    I16(Array<i16>),
    I32(Array<i32>),
    I64(Array<i64>),
    U8(Array<u8>),
    U16(Array<u16>),
    U32(Array<u32>),
    U64(Array<u64>),
    F32(Array<f32>),
    F64(Array<f64>),
}

impl fmt::Debug for AnyArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AnyArray").field(&self.dtype()).finish()
    }
}

/// Converts typed arrays to and from [`AnyArray`].
pub trait Typed: Element {
    /// The array as an `AnyArray`.
    fn wrap(a: Array<Self>) -> AnyArray;
    /// The array, if `a` holds this element type.
    fn unwrap(a: AnyArray) -> Option<Array<Self>>;
}

macro_rules! typed {
    ($($t:ty => $v:ident),+ $(,)?) => {
        $(
            impl Typed for $t {
                fn wrap(a: Array<Self>) -> AnyArray {
                    AnyArray::$v(a)
                }
                fn unwrap(a: AnyArray) -> Option<Array<Self>> {
                    match a {
                        AnyArray::$v(x) => Some(x),
                        _ => None,
                    }
                }
            }
        )+
        impl AnyArray {
            /// The element type.
            #[must_use]
            pub fn dtype(&self) -> DType {
                match self {
                    $(AnyArray::$v(_) => <$t as Element>::DTYPE,)+
                }
            }
        }
    };
}
typed!(bool => Bool, i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16,
       u32 => U32, u64 => U64, f32 => F32, f64 => F64);

/// Runs `$body` with `$x: Array<T>` for a numeric `T`, wrapping the resulting array back.
macro_rules! number {
    ($a:expr, $x:ident => $body:expr) => {
        match $a {
            AnyArray::I8($x) => AnyArray::I8($body),
            AnyArray::I16($x) => AnyArray::I16($body),
            AnyArray::I32($x) => AnyArray::I32($body),
            AnyArray::I64($x) => AnyArray::I64($body),
            AnyArray::U8($x) => AnyArray::U8($body),
            AnyArray::U16($x) => AnyArray::U16($body),
            AnyArray::U32($x) => AnyArray::U32($body),
            AnyArray::U64($x) => AnyArray::U64($body),
            AnyArray::F32($x) => AnyArray::F32($body),
            AnyArray::F64($x) => AnyArray::F64($body),
            AnyArray::Bool(_) => return Err(unsupported("arithmetic on bool arrays")),
        }
    };
}

/// As `number!` for `bool` too.
macro_rules! any {
    ($a:expr, $x:ident => $body:expr) => {
        match $a {
            AnyArray::Bool($x) => AnyArray::Bool($body),
            other => number!(other, $x => $body),
        }
    };
}

/// As `number!` for floats only.
macro_rules! float {
    ($a:expr, $x:ident => $body:expr) => {
        match $a {
            AnyArray::F32($x) => AnyArray::F32($body),
            AnyArray::F64($x) => AnyArray::F64($body),
            _ => return Err(unsupported("a float function on an integer array")),
        }
    };
}

/// Runs `$body` with `$x: Array<T>` for a numeric `T`, for bodies that give an `AnyArray`.
macro_rules! number_to {
    ($a:expr, $x:ident => $body:expr) => {
        match $a {
            AnyArray::I8($x) => $body,
            AnyArray::I16($x) => $body,
            AnyArray::I32($x) => $body,
            AnyArray::I64($x) => $body,
            AnyArray::U8($x) => $body,
            AnyArray::U16($x) => $body,
            AnyArray::U32($x) => $body,
            AnyArray::U64($x) => $body,
            AnyArray::F32($x) => $body,
            AnyArray::F64($x) => $body,
            AnyArray::Bool(_) => return Err(unsupported("a reduction of a bool array")),
        }
    };
}

fn unsupported(what: &str) -> ArrayError {
    ArrayError::BadData(format!("a recipe asks for {what}, which has no recipe"))
}

fn bad(what: &str, e: impl fmt::Display) -> ArrayError {
    ArrayError::BadData(format!("recipe: {what}: {e}"))
}

/// A source of arrays registered by another crate (brisk-zarr's `from_zarr`), found by name
/// when a [`Recipe::Source`] is built again.
pub struct SourceBuilder {
    name: &'static str,
    build: fn(DType, &serde_json::Value) -> std::result::Result<AnyArray, BoxError>,
}

impl SourceBuilder {
    /// A registry entry (submit it with `inventory`, as [`source_builder!`](crate::source_builder)
    /// does).
    #[doc(hidden)]
    #[must_use]
    pub const fn new(
        name: &'static str,
        build: fn(DType, &serde_json::Value) -> std::result::Result<AnyArray, BoxError>,
    ) -> Self {
        Self { name, build }
    }
}

impl fmt::Debug for SourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

brisk_graph::__private::inventory::collect!(SourceBuilder);

/// Registers `fn(DType, &serde_json::Value) -> Result<AnyArray, BoxError>` as the array
/// source `name` (see [`Recipe::Source`]).
#[macro_export]
macro_rules! source_builder {
    ($name:expr, $build:path) => {
        $crate::__private::inventory::submit! {
            $crate::recipe::SourceBuilder::new($name, $build)
        }
    };
}

/// A block function registered by name with [`kernel!`](crate::kernel): arrays made with
/// [`Array::map_kernel`] of it have a recipe, so they run on a cluster.
pub struct Kernel {
    name: &'static str,
    apply: fn(AnyArray) -> std::result::Result<AnyArray, BoxError>,
}

impl Kernel {
    /// A registry entry (use [`kernel!`](crate::kernel)).
    #[doc(hidden)]
    #[must_use]
    pub const fn new(
        name: &'static str,
        apply: fn(AnyArray) -> std::result::Result<AnyArray, BoxError>,
    ) -> Self {
        Self { name, apply }
    }
}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

brisk_graph::__private::inventory::collect!(Kernel);

/// Registers the block function `f: fn(ArrayD<T>, &[usize]) -> ArrayD<U>` as the kernel
/// `name`, for [`Array::map_kernel`]:
///
/// ```
/// use brisk_array::Array;
/// use ndarray::ArrayD;
///
/// /// Each block minus its own mean.
/// fn demean(block: ArrayD<f64>, _offset: &[usize]) -> ArrayD<f64> {
///     let m = block.mean().unwrap_or(0.0);
///     block - m
/// }
/// brisk_array::kernel!("docs::demean", demean, f64 => f64);
///
/// let x = Array::<f64>::random_normal(&[100], &[25], 1, 5.0, 1.0).unwrap();
/// let y = x.map_kernel("docs::demean", demean).unwrap();
/// assert!(y.recipe().is_some()); // runs on a cluster too
/// ```
#[macro_export]
macro_rules! kernel {
    ($name:expr, $f:path, $t:ty => $u:ty) => {
        $crate::__private::inventory::submit! {
            $crate::recipe::Kernel::new($name, |a| {
                $crate::recipe::apply_kernel::<$t, $u>(a, $name, $f)
            })
        }
    };
}

/// What [`kernel!`](crate::kernel) registers: `f` mapped over the blocks of `a`.
///
/// # Errors
/// `a` is not an array of `T`, or building fails.
#[doc(hidden)]
pub fn apply_kernel<T: Typed, U: Typed>(
    a: AnyArray,
    name: &'static str,
    f: fn(ndarray::ArrayD<T>, &[usize]) -> ndarray::ArrayD<U>,
) -> std::result::Result<AnyArray, BoxError> {
    let dtype = a.dtype();
    let x = T::unwrap(a).ok_or_else(|| {
        format!(
            "kernel `{name}` takes {} blocks, the array holds {dtype}",
            T::DTYPE
        )
    })?;
    Ok(U::wrap(x.map_kernel(name, f)?))
}

pub(crate) fn kernels() -> &'static HashMap<&'static str, &'static Kernel> {
    static INDEX: OnceLock<HashMap<&'static str, &'static Kernel>> = OnceLock::new();
    INDEX.get_or_init(|| {
        brisk_graph::__private::inventory::iter::<Kernel>
            .into_iter()
            .map(|k| (k.name, k))
            .collect()
    })
}

fn sources() -> &'static HashMap<&'static str, &'static SourceBuilder> {
    static INDEX: OnceLock<HashMap<&'static str, &'static SourceBuilder>> = OnceLock::new();
    INDEX.get_or_init(|| {
        brisk_graph::__private::inventory::iter::<SourceBuilder>
            .into_iter()
            .map(|b| (b.name, b))
            .collect()
    })
}

impl Recipe {
    /// Builds the array this recipe describes. Equal sub-recipes are built once and shared,
    /// as the arrays they describe were when first built.
    ///
    /// # Errors
    /// A step the recipe asks for fails (as it would have the first time), a source is not
    /// registered in this program, or a value does not fit the element type.
    pub fn build(&self) -> Result<AnyArray> {
        self.build_memo(&mut HashMap::new())
    }

    #[allow(clippy::too_many_lines, reason = "one arm per recipe step")]
    fn build_memo(&self, memo: &mut HashMap<String, AnyArray>) -> Result<AnyArray> {
        let id = serde_json::to_string(self).map_err(|e| bad("describing a step", e))?;
        if let Some(a) = memo.get(&id) {
            return Ok(a.clone());
        }
        let built = match self {
            Self::Random {
                dtype,
                shape,
                chunks,
                seed,
                normal,
                a,
                b,
            } => {
                let make = |normal: bool| -> Result<AnyArray> {
                    Ok(match dtype {
                        DType::Float32 => AnyArray::F32(if normal {
                            Array::random_normal(shape, chunks, *seed, *a, *b)?
                        } else {
                            Array::random_uniform(shape, chunks, *seed, *a, *b)?
                        }),
                        DType::Float64 => AnyArray::F64(if normal {
                            Array::random_normal(shape, chunks, *seed, *a, *b)?
                        } else {
                            Array::random_uniform(shape, chunks, *seed, *a, *b)?
                        }),
                        other => return Err(bad("random", format!("{other} is not a float"))),
                    })
                };
                make(*normal)?
            }
            Self::Full {
                dtype,
                shape,
                chunks,
                value,
            } => full(*dtype, shape, chunks, value)?,
            Self::Arange { dtype, n, chunk } => arange(*dtype, *n, *chunk)?,
            Self::Source {
                name,
                dtype,
                params,
            } => {
                let b = sources().get(name.as_str()).ok_or_else(|| {
                    bad(
                        "source",
                        format!("`{name}` is not registered in this program"),
                    )
                })?;
                let a = (b.build)(*dtype, params).map_err(|e| {
                    bad(&format!("source `{name}`"), brisk_graph::chain(e.as_ref()))
                })?;
                if a.dtype() != *dtype {
                    return Err(bad(
                        &format!("source `{name}`"),
                        format!("built {} where the recipe says {dtype}", a.dtype()),
                    ));
                }
                a
            }
            Self::Unary { f, x } => {
                let x = x.build_memo(memo)?;
                match f {
                    UnaryFn::Powi(n) => number!(x, a => a.powi(*n)),
                    UnaryFn::Abs => number!(x, a => a.abs()),
                    UnaryFn::Powf(p) => {
                        float!(x, a => a.powf(num_traits::cast(*p).ok_or_else(|| bad("powf", p))?))
                    }
                    UnaryFn::Sqrt => float!(x, a => a.sqrt()),
                    UnaryFn::Exp => float!(x, a => a.exp()),
                    UnaryFn::Ln => float!(x, a => a.ln()),
                    UnaryFn::Scalar(op, v) => number!(x, a => scalar_op(&a, *op, v)?),
                }
            }
            Self::Binary { op, x, y } => {
                let (x, y) = (x.build_memo(memo)?, y.build_memo(memo)?);
                number!(x, a => {
                    let b = Typed::unwrap(y.clone()).ok_or_else(|| {
                        bad("binary", format!("operands of {} and {}", a.dtype_name(), y.dtype()))
                    })?;
                    binary_op(&a, *op, &b)
                })
            }
            Self::Reduce { f, axes, x } => {
                let x = x.build_memo(memo)?;
                let axes = axes.clone();
                match f {
                    ReduceFn::Min => any!(x, a => a.min(axes.clone())),
                    ReduceFn::Max => any!(x, a => a.max(axes.clone())),
                    ReduceFn::Sum => number!(x, a => a.sum(axes.clone())),
                    ReduceFn::Mean => number_to!(x, a => AnyArray::F64(a.mean(axes.clone()))),
                    ReduceFn::Var(d) => {
                        number_to!(x, a => AnyArray::F64(a.var_ddof(axes.clone(), *d)))
                    }
                    ReduceFn::Std => number_to!(x, a => AnyArray::F64(a.std(axes.clone()))),
                }
            }
            Self::Rechunk { chunks, x } => {
                let grid = crate::ChunkGrid::from_sizes(chunks.clone())?;
                any!(x.build_memo(memo)?, a => a.rechunk_to(grid.clone())?)
            }
            Self::Slice { slices, x } => {
                let s: Vec<ndarray::Slice> = slices
                    .iter()
                    .map(|&(start, end, step)| ndarray::Slice::new(start, end, step))
                    .collect();
                any!(x.build_memo(memo)?, a => a.slice(&s)?)
            }
            Self::Permute { perm, x } => any!(x.build_memo(memo)?, a => a.permute_axes(perm)?),
            Self::Kernel { name, x } => {
                let k = kernels().get(name.as_str()).ok_or_else(|| {
                    bad(
                        "kernel",
                        format!("`{name}` is not registered in this program"),
                    )
                })?;
                (k.apply)(x.build_memo(memo)?)
                    .map_err(|e| bad(&format!("kernel `{name}`"), brisk_graph::chain(e.as_ref())))?
            }
            Self::SplitEvery { n, x } => any!(x.build_memo(memo)?, a => a.with_split_every(*n)),
            Self::Join { stack, axis, xs } => {
                let built = xs
                    .iter()
                    .map(|x| x.build_memo(memo))
                    .collect::<Result<Vec<_>>>()?;
                let first = built
                    .first()
                    .cloned()
                    .ok_or_else(|| bad("join", "no operand"))?;
                any!(first, a => {
                    let all = built
                        .iter()
                        .map(|x| Typed::unwrap(x.clone()))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad("join", format!("operands other than {}", a.dtype_name())))?;
                    if *stack {
                        Array::stack(&all, *axis)?
                    } else {
                        Array::concatenate(&all, *axis)?
                    }
                })
            }
        };
        memo.insert(id, built.clone());
        Ok(built)
    }
}

fn full(
    dtype: DType,
    shape: &[usize],
    chunks: &[usize],
    value: &serde_json::Value,
) -> Result<AnyArray> {
    fn typed<T: Typed>(
        shape: &[usize],
        chunks: &[usize],
        value: &serde_json::Value,
    ) -> Result<AnyArray> {
        let v: T = serde_json::from_value(value.clone()).map_err(|e| bad("full", e))?;
        Ok(T::wrap(Array::full(shape, chunks, v)?))
    }
    match dtype {
        DType::Bool => typed::<bool>(shape, chunks, value),
        DType::Int8 => typed::<i8>(shape, chunks, value),
        DType::Int16 => typed::<i16>(shape, chunks, value),
        DType::Int32 => typed::<i32>(shape, chunks, value),
        DType::Int64 => typed::<i64>(shape, chunks, value),
        DType::UInt8 => typed::<u8>(shape, chunks, value),
        DType::UInt16 => typed::<u16>(shape, chunks, value),
        DType::UInt32 => typed::<u32>(shape, chunks, value),
        DType::UInt64 => typed::<u64>(shape, chunks, value),
        DType::Float32 => typed::<f32>(shape, chunks, value),
        DType::Float64 => typed::<f64>(shape, chunks, value),
    }
}

fn arange(dtype: DType, n: usize, chunk: usize) -> Result<AnyArray> {
    fn typed<T: Typed + Number>(n: usize, chunk: usize) -> Result<AnyArray> {
        Ok(T::wrap(Array::arange(n, chunk)?))
    }
    match dtype {
        DType::Int8 => typed::<i8>(n, chunk),
        DType::Int16 => typed::<i16>(n, chunk),
        DType::Int32 => typed::<i32>(n, chunk),
        DType::Int64 => typed::<i64>(n, chunk),
        DType::UInt8 => typed::<u8>(n, chunk),
        DType::UInt16 => typed::<u16>(n, chunk),
        DType::UInt32 => typed::<u32>(n, chunk),
        DType::UInt64 => typed::<u64>(n, chunk),
        DType::Float32 => typed::<f32>(n, chunk),
        DType::Float64 => typed::<f64>(n, chunk),
        DType::Bool => Err(unsupported("arange of bool")),
    }
}

fn scalar_op<T: Number>(a: &Array<T>, op: BinaryOp, v: &serde_json::Value) -> Result<Array<T>> {
    let v: T = serde_json::from_value(v.clone()).map_err(|e| bad("a scalar", e))?;
    Ok(match op {
        BinaryOp::Add => a + v,
        BinaryOp::Sub => a - v,
        BinaryOp::Mul => a * v,
        BinaryOp::Div => a / v,
    })
}

fn binary_op<T: Number>(a: &Array<T>, op: BinaryOp, b: &Array<T>) -> Array<T> {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
    }
}

/// An array's recipe, or why it has none.
pub(crate) type Described = std::result::Result<Arc<Recipe>, Arc<str>>;

impl<T: Element> Array<T> {
    /// How this array was built, when every step of it has a recipe (see
    /// [`recipe`](crate::recipe)).
    #[must_use]
    pub fn recipe(&self) -> Option<&Recipe> {
        self.recipe.as_deref().ok()
    }

    /// Why this array has no recipe (which step has none), when it has none.
    #[must_use]
    pub fn why_no_recipe(&self) -> Option<&str> {
        self.recipe.as_ref().err().map(|w| &**w)
    }

    /// The same array without a recipe, for `why` (which names the step): for crates that add
    /// array sources another process cannot open.
    #[must_use]
    pub fn without_recipe(mut self, why: impl Into<String>) -> Self {
        self.recipe = Err(Arc::from(why.into()));
        self
    }

    /// The same array, described by `recipe`: for crates that add array sources
    /// ([`Recipe::Source`]). The recipe must build exactly this array's graph — a cluster
    /// worker runs the tasks of the array the recipe builds in place of this one's.
    #[must_use]
    pub fn with_recipe(mut self, recipe: Recipe) -> Self {
        self.recipe = Ok(Arc::new(recipe));
        self
    }

    /// This array's recipe wrapped by `step` (none when this array has none).
    pub(crate) fn derived(&self, step: impl FnOnce(Box<Recipe>) -> Recipe) -> Described {
        match &self.recipe {
            Ok(r) => Ok(Arc::new(step(Box::new((**r).clone())))),
            Err(why) => Err(Arc::clone(why)),
        }
    }

    /// This array with `recipe` (from [`derived`](Self::derived)).
    pub(crate) fn described(mut self, recipe: Described) -> Self {
        self.recipe = recipe;
        self
    }

    fn dtype_name(&self) -> &'static str {
        T::DTYPE.name()
    }

    /// The origin of a compute of this array's blocks, or why there is none.
    pub(crate) fn origin(&self) -> std::result::Result<Origin, Arc<str>> {
        let recipe = self.recipe.as_deref().map_err(Arc::clone)?;
        let params = serde_json::to_string(recipe)
            .map_err(|e| Arc::from(format!("its recipe does not describe: {e}")))?;
        Ok(Origin::new(COMPUTE, params))
    }
}

/// The graph builder of an array's compute: its blocks, built again from its recipe.
pub(crate) const COMPUTE: &str = "brisk_array::compute";

fn build_compute(params: &str) -> std::result::Result<Vec<brisk_graph::AnyDelayed>, BoxError> {
    let recipe: Recipe = serde_json::from_str(params)?;
    let array = recipe.build()?;
    Ok(any_blocks(&array)?)
}

/// The erased blocks of any array.
pub(crate) fn any_blocks(a: &AnyArray) -> Result<Vec<brisk_graph::AnyDelayed>> {
    fn erase<T: Element>(a: &Array<T>) -> Result<Vec<brisk_graph::AnyDelayed>> {
        Ok(a.blocks()?
            .iter()
            .map(brisk_graph::Delayed::erase)
            .collect())
    }
    match a {
        AnyArray::Bool(x) => erase(x),
        AnyArray::I8(x) => erase(x),
        AnyArray::I16(x) => erase(x),
        AnyArray::I32(x) => erase(x),
        AnyArray::I64(x) => erase(x),
        AnyArray::U8(x) => erase(x),
        AnyArray::U16(x) => erase(x),
        AnyArray::U32(x) => erase(x),
        AnyArray::U64(x) => erase(x),
        AnyArray::F32(x) => erase(x),
        AnyArray::F64(x) => erase(x),
    }
}

brisk_graph::graph_builder!(COMPUTE, build_compute);

brisk_graph::wire_types!(
    ndarray::ArrayD<bool>,
    ndarray::ArrayD<i8>,
    ndarray::ArrayD<i16>,
    ndarray::ArrayD<i32>,
    ndarray::ArrayD<i64>,
    ndarray::ArrayD<u8>,
    ndarray::ArrayD<u16>,
    ndarray::ArrayD<u32>,
    ndarray::ArrayD<u64>,
    ndarray::ArrayD<f32>,
    ndarray::ArrayD<f64>,
);

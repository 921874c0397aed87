//! Tree reductions along any axes: a fused per-chunk partial, combined with fan-in
//! `split_every`, then finished.

use std::sync::Arc;

use brisk_graph::{AnyDelayed, BoxError, Delayed, TaskSpec, Tokenize, Value};
use ndarray::{ArrayD, IxDyn};

use crate::array::Array;
use crate::element::{Element, Number};
use crate::error::{ArrayError, Result};
use crate::expr::{Env, Expr, TILE};
use crate::grid::ChunkGrid;
use crate::recipe::{Recipe, ReduceFn};

/// Which axes a reduction runs over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Axes {
    /// Every axis: the result has rank 0.
    All,
    /// These axes (any order, no duplicates).
    Some(Vec<usize>),
}

impl Axes {
    /// Every axis.
    #[must_use]
    pub fn all() -> Self {
        Self::All
    }
}

impl From<usize> for Axes {
    fn from(a: usize) -> Self {
        Self::Some(vec![a])
    }
}
impl From<&[usize]> for Axes {
    fn from(a: &[usize]) -> Self {
        Self::Some(a.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for Axes {
    fn from(a: [usize; N]) -> Self {
        Self::Some(a.to_vec())
    }
}
impl From<Vec<usize>> for Axes {
    fn from(a: Vec<usize>) -> Self {
        Self::Some(a)
    }
}

/// A reduction: per-element update of an accumulator, merge of two accumulators, finish.
pub(crate) trait Reducer<T: Element>: Send + Sync + 'static {
    type Acc: Clone + Send + Sync + 'static;
    type Out: Element;
    fn desc(&self) -> String;
    fn init(&self) -> Self::Acc;
    /// `pos`: the element's position along the reduced axis (single-axis reductions) or its
    /// global flat index (all axes). Only arg-reductions use it.
    fn update(&self, acc: &mut Self::Acc, x: T, pos: u64);
    fn merge(&self, a: &mut Self::Acc, b: &Self::Acc);
    fn finish(&self, acc: &Self::Acc) -> Result<Self::Out, BoxError>;
}

/// Partial results of one chunk: the kept axes' shape and one accumulator per output element.
/// They cross between processes on a cluster (registered wire types below).
#[derive(serde::Serialize, serde::Deserialize)]
struct Partial<A> {
    data: Vec<A>,
}

// Every accumulator a reducer uses: Sum and Mean over the three widened types, Var, and the
// extremes and arg-extremes of every element type.
brisk_graph::wire_types!(
    Partial<f64>,
    Partial<i64>,
    Partial<u64>,
    Partial<(f64, u64)>,
    Partial<(i64, u64)>,
    Partial<(u64, u64)>,
    Partial<(u64, f64, f64)>,
);
macro_rules! extreme_partials {
    ($($t:ty),+) => {
        brisk_graph::wire_types!($(Partial<Option<$t>>, Partial<Option<($t, u64)>>),+);
    };
}
extreme_partials!(bool, i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

/// Per-chunk accumulation: evaluates the fused expression row by row.
#[allow(clippy::too_many_arguments, reason = "one private call site")]
fn accumulate<T: Element, R: Reducer<T>>(
    r: &R,
    expr: &dyn Expr<T>,
    env: &Env,
    shape: &[usize],
    offset: &[usize],
    global: &[usize],
    reduced: &[bool],
    single_axis: Option<usize>,
) -> Result<Partial<R::Acc>, BoxError> {
    let nd = shape.len();
    let out_len: usize = (0..nd).filter(|&k| !reduced[k]).map(|k| shape[k]).product();
    let mut data = vec![r.init(); out_len];
    let total: usize = shape.iter().product();
    if total == 0 {
        return Ok(Partial { data });
    }
    // Strides of the output (kept axes only, row-major) and of the global array.
    let mut out_stride = vec![0usize; nd];
    let mut s = 1;
    for k in (0..nd).rev() {
        if !reduced[k] {
            out_stride[k] = s;
            s *= shape[k];
        }
    }
    let mut gstride = vec![0u64; nd];
    let mut g = 1u64;
    for k in (0..nd).rev() {
        gstride[k] = g;
        g *= global[k] as u64;
    }
    let pos_of = |coord: &[usize]| -> u64 {
        match single_axis {
            Some(a) => (offset[a] + coord[a]) as u64,
            None => (0..nd)
                .map(|k| (offset[k] + coord[k]) as u64 * gstride[k])
                .sum(),
        }
    };
    let row = if nd == 0 { 1 } else { shape[nd - 1] };
    let last_kept = nd > 0 && !reduced[nd - 1];
    let last_pos_step: u64 = match single_axis {
        Some(a) if a + 1 == nd => 1,
        Some(_) => 0,
        None => 1,
    };
    let mut coord = vec![0usize; nd];
    let mut tile = [T::default(); TILE];
    let mut flat = 0usize;
    while flat < total {
        let base: usize = (0..nd).map(|k| coord[k] * out_stride[k]).sum();
        let pos0 = pos_of(&coord);
        let mut j = 0;
        while j < row {
            let n = (row - j).min(TILE);
            let t = &mut tile[..n];
            expr.eval(env, flat + j, t)?;
            let pos = pos0 + j as u64 * last_pos_step;
            if last_kept {
                // One accumulator per element of the tile: a straight, bounds-check-free loop.
                let accs = data
                    .get_mut(base + j..base + j + n)
                    .ok_or("a reduction tile outside its partial")?;
                for ((a, &x), i) in accs.iter_mut().zip(t.iter()).zip(0u64..) {
                    r.update(a, x, pos + i * last_pos_step);
                }
            } else {
                let a = data
                    .get_mut(base)
                    .ok_or("a reduction row outside its partial")?;
                for (&x, i) in t.iter().zip(0u64..) {
                    r.update(a, x, pos + i * last_pos_step);
                }
            }
            j += n;
        }
        flat += row;
        // Advance the coordinates of the row start (all axes but the last).
        for k in (0..nd.saturating_sub(1)).rev() {
            coord[k] += 1;
            if coord[k] < shape[k] {
                break;
            }
            coord[k] = 0;
        }
    }
    env.finish()?;
    Ok(Partial { data })
}

impl<T: Element> Array<T> {
    /// The recipe of reduction `f` of this array over `axes`.
    fn reduce_recipe(&self, f: ReduceFn, axes: &Axes) -> crate::recipe::Described {
        let axes = match axes {
            Axes::All => (0..self.ndim()).collect(),
            Axes::Some(a) => a.clone(),
        };
        self.derived(|x| Recipe::Reduce { f, axes, x })
    }

    /// Reduces with `r` over `axes`, as a tree of fan-in `split_every`.
    pub(crate) fn reduce<R: Reducer<T>>(&self, r: R, axes: Axes, arg: bool) -> Array<R::Out> {
        match self.try_reduce(r, axes, arg) {
            Ok(a) => a,
            Err(e) => self.failed(e),
        }
    }

    fn try_reduce<R: Reducer<T>>(&self, r: R, axes: Axes, arg: bool) -> Result<Array<R::Out>> {
        self.check()?;
        let nd = self.ndim();
        let axes: Vec<usize> = match axes {
            Axes::All => (0..nd).collect(),
            Axes::Some(a) => a,
        };
        let mut reduced = vec![false; nd];
        for &a in &axes {
            if a >= nd {
                return Err(ArrayError::AxisOutOfRange {
                    op: r.desc(),
                    axis: a,
                    ndim: nd,
                });
            }
            reduced[a] = true;
        }
        let single_axis = match axes.len() {
            1 => Some(axes[0]),
            _ if axes.len() == nd => None,
            _ if arg => {
                return Err(ArrayError::BadData(format!(
                    "{} works along one axis or all of them, not {axes:?}",
                    r.desc()
                )));
            }
            _ => None,
        };
        let r = Arc::new(r);
        // Shared by every chunk's task (a copy each was two allocations per chunk).
        let global: Arc<[usize]> = self.shape().into();
        let reduced: Arc<[bool]> = reduced.into();
        let desc = format!("{}|{}|{:?}", r.desc(), self.key_desc(), reduced);
        let desc_token = (desc.clone(), self.split_every)
            .token()
            .map_err(|e| ArrayError::BadData(format!("cannot describe the reduction: {e}")))?;
        // Stage 1: one fused partial per input block.
        let partial_spec = TaskSpec::new(format!("{}-partial", r.desc())).pure();
        let partials: Vec<Delayed<Partial<R::Acc>>> = (0..self.grid.num_blocks())
            .map(|i| {
                let c = self.grid.block_coords(i);
                let shape = self.grid.block_shape(&c);
                let offset = self.grid.block_offset(&c);
                let plan = self.inputs_for(&c);
                let token = plan.descriptor(&(desc.as_str(), &c, &shape));
                let inputs = plan.inputs.clone();
                let (r, expr, leaves) = (
                    Arc::clone(&r),
                    Arc::clone(&self.expr),
                    Arc::clone(&self.leaves),
                );
                let (global, reduced) = (Arc::clone(&global), Arc::clone(&reduced));
                partial_spec.call_dyn(
                    move |vals: Vec<Value>| {
                        let env = Array::<T>::env(&leaves, &plan, vals, &shape)?;
                        accumulate(
                            r.as_ref(),
                            expr.as_ref(),
                            &env,
                            &shape,
                            &offset,
                            &global,
                            &reduced,
                            single_axis,
                        )
                    },
                    &inputs,
                    token,
                )
            })
            .collect();
        // Group blocks by their kept-axes coordinates.
        let kept: Vec<usize> = (0..nd).filter(|&k| !reduced[k]).collect();
        let out_grid = ChunkGrid::from_sizes(
            kept.iter()
                .map(|&k| self.grid.chunks()[k].clone())
                .collect(),
        )?;
        let mut groups: Vec<Vec<Delayed<Partial<R::Acc>>>> =
            vec![Vec::new(); out_grid.num_blocks()];
        for (i, p) in partials.into_iter().enumerate() {
            let c = self.grid.block_coords(i);
            let oc: Vec<usize> = kept.iter().map(|&k| c[k]).collect();
            groups[out_grid.block_index(&oc)].push(p);
        }
        // Stage 2: tree combine, fan-in split_every; stage 3: finish.
        let combine_spec = TaskSpec::new(format!("{}-combine", r.desc())).pure();
        let finish_spec = TaskSpec::new(format!("{}-finish", r.desc())).pure();
        let split = self.split_every.max(2);
        let blocks = groups
            .into_iter()
            .enumerate()
            .map(|(oi, mut level)| {
                while level.len() > 1 {
                    level = level
                        .chunks(split)
                        .map(|group| {
                            if group.len() == 1 {
                                return group[0].clone();
                            }
                            let inputs: Vec<AnyDelayed> =
                                group.iter().map(Delayed::erase).collect();
                            let r = Arc::clone(&r);
                            combine_spec.call_dyn(
                                move |vals: Vec<Value>| {
                                    let mut it = vals.iter().map(|v| {
                                        v.downcast_ref::<Partial<R::Acc>>().ok_or_else(|| {
                                            BoxError::from("partial of an unexpected type")
                                        })
                                    });
                                    let first = it.next().ok_or("nothing to combine")??;
                                    let mut data = first.data.clone();
                                    for p in it {
                                        for (a, b) in data.iter_mut().zip(&p?.data) {
                                            r.merge(a, b);
                                        }
                                    }
                                    Ok(Partial { data })
                                },
                                &inputs,
                                desc_token,
                            )
                        })
                        .collect();
                }
                let last = level
                    .pop()
                    .expect("every output block has at least one input block");
                let shape = out_grid.block_shape(&out_grid.block_coords(oi));
                let r = Arc::clone(&r);
                finish_spec.call_dyn(
                    move |vals: Vec<Value>| {
                        let p = vals
                            .first()
                            .and_then(|v| v.downcast_ref::<Partial<R::Acc>>())
                            .ok_or("partial of an unexpected type")?;
                        let out = p
                            .data
                            .iter()
                            .map(|a| r.finish(a))
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(ArrayD::from_shape_vec(IxDyn(&shape), out)?)
                    },
                    &[last.erase()],
                    desc_token,
                )
            })
            .collect();
        let mut out = Array::from_blocks(out_grid, blocks)?;
        out.split_every = self.split_every;
        Ok(out)
    }
}

// Reducers.

struct Sum;
impl<T: Number> Reducer<T> for Sum {
    type Acc = T::Acc;
    type Out = T;
    fn desc(&self) -> String {
        "sum".into()
    }
    fn init(&self) -> T::Acc {
        T::Acc::default()
    }
    fn update(&self, acc: &mut T::Acc, x: T, _: u64) {
        *acc = T::acc_add(*acc, x.widen());
    }
    fn merge(&self, a: &mut T::Acc, b: &T::Acc) {
        *a = T::acc_add(*a, *b);
    }
    fn finish(&self, acc: &T::Acc) -> Result<T, BoxError> {
        Ok(T::narrow(*acc))
    }
}

struct Mean;
impl<T: Number> Reducer<T> for Mean {
    type Acc = (T::Acc, u64);
    type Out = f64;
    fn desc(&self) -> String {
        "mean".into()
    }
    fn init(&self) -> Self::Acc {
        (T::Acc::default(), 0)
    }
    fn update(&self, acc: &mut Self::Acc, x: T, _: u64) {
        acc.0 = T::acc_add(acc.0, x.widen());
        acc.1 += 1;
    }
    fn merge(&self, a: &mut Self::Acc, b: &Self::Acc) {
        a.0 = T::acc_add(a.0, b.0);
        a.1 += b.1;
    }
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    fn finish(&self, acc: &Self::Acc) -> Result<f64, BoxError> {
        Ok(T::acc_f64(acc.0) / acc.1 as f64)
    }
}

/// Welford/Chan: count, mean, sum of squared deviations.
struct Var {
    ddof: usize,
    sqrt: bool,
}
impl<T: Number> Reducer<T> for Var {
    type Acc = (u64, f64, f64);
    type Out = f64;
    fn desc(&self) -> String {
        format!("{}:{}", if self.sqrt { "std" } else { "var" }, self.ddof)
    }
    fn init(&self) -> Self::Acc {
        (0, 0.0, 0.0)
    }
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    fn update(&self, acc: &mut Self::Acc, x: T, _: u64) {
        let x = x.to_f64();
        acc.0 += 1;
        let d = x - acc.1;
        acc.1 += d / acc.0 as f64;
        acc.2 += d * (x - acc.1);
    }
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    fn merge(&self, a: &mut Self::Acc, b: &Self::Acc) {
        if b.0 == 0 {
            return;
        }
        if a.0 == 0 {
            *a = *b;
            return;
        }
        let n = a.0 + b.0;
        let d = b.1 - a.1;
        let mean = a.1 + d * b.0 as f64 / n as f64;
        let m2 = a.2 + b.2 + d * d * a.0 as f64 * b.0 as f64 / n as f64;
        *a = (n, mean, m2);
    }
    #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^53")]
    fn finish(&self, acc: &Self::Acc) -> Result<f64, BoxError> {
        let v = acc.2 / (acc.0 as f64 - self.ddof as f64);
        Ok(if self.sqrt { v.sqrt() } else { v })
    }
}

fn is_nan<T: PartialOrd>(x: &T) -> bool {
    x.partial_cmp(x).is_none()
}

/// Min or max; NaN propagates (as NumPy).
struct Extreme {
    max: bool,
}
impl<T: Element> Reducer<T> for Extreme {
    type Acc = Option<T>;
    type Out = T;
    fn desc(&self) -> String {
        (if self.max { "max" } else { "min" }).into()
    }
    fn init(&self) -> Option<T> {
        None
    }
    fn update(&self, acc: &mut Option<T>, x: T, _: u64) {
        *acc = Some(match *acc {
            None => x,
            Some(a) if is_nan(&a) => a,
            Some(_) if is_nan(&x) => x,
            Some(a) if (self.max && x > a) || (!self.max && x < a) => x,
            Some(a) => a,
        });
    }
    fn merge(&self, a: &mut Option<T>, b: &Option<T>) {
        if let Some(x) = *b {
            self.update(a, x, 0);
        }
    }
    fn finish(&self, acc: &Option<T>) -> Result<T, BoxError> {
        acc.ok_or_else(|| {
            format!(
                "{} of an empty selection has no value",
                Reducer::<T>::desc(self)
            )
            .into()
        })
    }
}

/// Position of the min or max; the first occurrence wins, NaN counts as the extreme.
struct ArgExtreme {
    max: bool,
}
impl<T: Element> Reducer<T> for ArgExtreme {
    type Acc = Option<(T, u64)>;
    type Out = u64;
    fn desc(&self) -> String {
        (if self.max { "argmax" } else { "argmin" }).into()
    }
    fn init(&self) -> Self::Acc {
        None
    }
    fn update(&self, acc: &mut Self::Acc, x: T, pos: u64) {
        let better = match *acc {
            None => true,
            Some((a, p)) => {
                if is_nan(&a) {
                    is_nan(&x) && pos < p
                } else if is_nan(&x) {
                    true
                } else if x == a {
                    pos < p
                } else {
                    (self.max && x > a) || (!self.max && x < a)
                }
            }
        };
        if better {
            *acc = Some((x, pos));
        }
    }
    fn merge(&self, a: &mut Self::Acc, b: &Self::Acc) {
        if let Some((x, p)) = *b {
            self.update(a, x, p);
        }
    }
    fn finish(&self, acc: &Self::Acc) -> Result<u64, BoxError> {
        acc.map(|(_, p)| p).ok_or_else(|| {
            format!(
                "{} of an empty selection has no value",
                Reducer::<T>::desc(self)
            )
            .into()
        })
    }
}

impl<T: Number> Array<T> {
    /// Sum over `axes` (accumulated in `f64` for floats, wrapping `i64`/`u64` for integers).
    #[must_use]
    pub fn sum(&self, axes: impl Into<Axes>) -> Array<T> {
        let axes = axes.into();
        let recipe = self.reduce_recipe(ReduceFn::Sum, &axes);
        self.reduce(Sum, axes, false).described(recipe)
    }
    /// Mean over `axes`, accumulated in `f64` (also for `f32` input).
    #[must_use]
    pub fn mean(&self, axes: impl Into<Axes>) -> Array<f64> {
        let axes = axes.into();
        let recipe = self.reduce_recipe(ReduceFn::Mean, &axes);
        self.reduce(Mean, axes, false).described(recipe)
    }
    /// Population variance over `axes` (`ddof = 0`), numerically stable (Welford/Chan).
    #[must_use]
    pub fn var(&self, axes: impl Into<Axes>) -> Array<f64> {
        self.var_ddof(axes, 0)
    }
    /// Variance with `ddof` delta degrees of freedom (1 for the sample variance).
    #[must_use]
    pub fn var_ddof(&self, axes: impl Into<Axes>, ddof: usize) -> Array<f64> {
        let axes = axes.into();
        let recipe = self.reduce_recipe(ReduceFn::Var(ddof), &axes);
        self.reduce(Var { ddof, sqrt: false }, axes, false)
            .described(recipe)
    }
    /// Population standard deviation over `axes`.
    #[must_use]
    pub fn std(&self, axes: impl Into<Axes>) -> Array<f64> {
        let axes = axes.into();
        let recipe = self.reduce_recipe(ReduceFn::Std, &axes);
        self.reduce(
            Var {
                ddof: 0,
                sqrt: true,
            },
            axes,
            false,
        )
        .described(recipe)
    }
}

impl<T: Element> Array<T> {
    /// Minimum over `axes` (NaN propagates; an empty selection is an error at compute).
    #[must_use]
    pub fn min(&self, axes: impl Into<Axes>) -> Array<T> {
        let axes = axes.into();
        let recipe = self.reduce_recipe(ReduceFn::Min, &axes);
        self.reduce(Extreme { max: false }, axes, false)
            .described(recipe)
    }
    /// Maximum over `axes`.
    #[must_use]
    pub fn max(&self, axes: impl Into<Axes>) -> Array<T> {
        let axes = axes.into();
        let recipe = self.reduce_recipe(ReduceFn::Max, &axes);
        self.reduce(Extreme { max: true }, axes, false)
            .described(recipe)
    }
    /// Index of the minimum along `axis`, or the flat index over the whole array for `None`
    /// (first occurrence wins).
    #[must_use]
    pub fn argmin(&self, axis: Option<usize>) -> Array<u64> {
        let axes = axis.map_or(Axes::All, Axes::from);
        self.reduce(ArgExtreme { max: false }, axes, true)
            .without_recipe("`argmin` has no recipe")
    }
    /// Index of the maximum along `axis`, or the flat index for `None`.
    #[must_use]
    pub fn argmax(&self, axis: Option<usize>) -> Array<u64> {
        let axes = axis.map_or(Axes::All, Axes::from);
        self.reduce(ArgExtreme { max: true }, axes, true)
            .without_recipe("`argmax` has no recipe")
    }
}

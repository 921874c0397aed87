//! Operations that move data between chunks: rechunk, slice, concatenate, stack, transpose.

use std::sync::Arc;

use brisk_graph::{AnyDelayed, BoxError, Delayed, TaskSpec, Tokenize, Value};
use ndarray::{ArrayD, Axis, IxDyn, SliceInfoElem};

use crate::array::Array;
use crate::element::Element;
use crate::error::{ArrayError, Result};
use crate::grid::ChunkGrid;
use crate::recipe::Recipe;

fn range_info(ranges: &[(usize, usize)]) -> Vec<SliceInfoElem> {
    let (offset, shape): (Vec<usize>, Vec<usize>) = ranges.iter().map(|&(a, b)| (a, b - a)).unzip();
    crate::array::region(&offset, &shape)
}

/// `(start, end)` per axis.
type Ranges = Vec<(usize, usize)>;

/// What one output chunk of a slice takes from one input chunk along one axis.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Pick {
    block: usize,
    start: usize,
    end: usize,
    step: usize,
    len: usize,
}

fn describe(what: impl serde::Serialize + 'static) -> Result<brisk_graph::Token> {
    what.token()
        .map_err(|e| ArrayError::BadData(format!("cannot describe the operation: {e}")))
}

impl<T: Element> Array<T> {
    /// The same values in chunks of `chunks` (regular, with smaller edge chunks).
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`], or the build error.
    pub fn rechunk(&self, chunks: &[usize]) -> Result<Self> {
        self.rechunk_to(ChunkGrid::regular(&self.shape(), chunks)?)
    }

    /// The same values on another grid of the same shape. Each output chunk is assembled by
    /// one task from the input chunks it overlaps.
    ///
    /// # Errors
    /// [`ArrayError::ShapeMismatch`] if `grid` has another shape; the build error.
    pub fn rechunk_to(&self, grid: ChunkGrid) -> Result<Self> {
        let chunks = grid.chunks().to_vec();
        let recipe = self.derived(|x| Recipe::Rechunk { chunks, x });
        Ok(self.rechunk_to_grid(grid)?.described(recipe))
    }

    fn rechunk_to_grid(&self, grid: ChunkGrid) -> Result<Self> {
        self.check()?;
        if grid.shape() != self.shape() {
            return Err(ArrayError::ShapeMismatch {
                op: "rechunk".into(),
                left: self.shape(),
                right: grid.shape(),
            });
        }
        if &grid == self.grid() {
            return Ok(self.clone());
        }
        let blocks = self.blocks()?;
        let nd = self.ndim();
        let in_bounds: Vec<Vec<usize>> = (0..nd).map(|a| self.grid.boundaries(a)).collect();
        let spec = TaskSpec::new("rechunk").pure();
        let out: Vec<Delayed<ArrayD<T>>> = (0..grid.num_blocks())
            .map(|i| -> Result<Delayed<ArrayD<T>>> {
                let c = grid.block_coords(i);
                let off = grid.block_offset(&c);
                let shp = grid.block_shape(&c);
                // Input chunk indices overlapping [off, off + shp) on each axis.
                let per_axis: Vec<Vec<usize>> = (0..nd)
                    .map(|a| {
                        let (lo, hi) = (off[a], off[a] + shp[a]);
                        (0..in_bounds[a].len() - 1)
                            .filter(|&k| {
                                in_bounds[a][k] < hi && in_bounds[a][k + 1] > lo
                                    || (shp[a] == 0 && k == 0)
                            })
                            .collect()
                    })
                    .collect();
                let mut pieces: Vec<(Ranges, Ranges)> = Vec::new();
                let mut inputs: Vec<AnyDelayed> = Vec::new();
                let mut idx = vec![0usize; nd];
                'outer: loop {
                    let ic: Vec<usize> = (0..nd).map(|a| per_axis[a][idx[a]]).collect();
                    let mut src = Vec::with_capacity(nd);
                    let mut dst = Vec::with_capacity(nd);
                    for a in 0..nd {
                        let (b0, b1) = (in_bounds[a][ic[a]], in_bounds[a][ic[a] + 1]);
                        let lo = off[a].max(b0);
                        let hi = (off[a] + shp[a]).min(b1);
                        src.push((lo - b0, hi - b0));
                        dst.push((lo - off[a], hi - off[a]));
                    }
                    pieces.push((src, dst));
                    inputs.push(blocks[self.grid.block_index(&ic)].erase());
                    for a in (0..nd).rev() {
                        idx[a] += 1;
                        if idx[a] < per_axis[a].len() {
                            continue 'outer;
                        }
                        idx[a] = 0;
                    }
                    break;
                }
                let token = describe((shp.clone(), pieces.clone()))?;
                Ok(spec.call_dyn(
                    move |vals: Vec<Value>| {
                        let mut out = ArrayD::<T>::default(IxDyn(&shp));
                        for (v, (src, dst)) in vals.iter().zip(&pieces) {
                            let b = v
                                .downcast_ref::<ArrayD<T>>()
                                .ok_or("rechunk: chunk of an unexpected type")?;
                            out.slice_mut(range_info(dst).as_slice())
                                .assign(&b.slice(range_info(src).as_slice()));
                        }
                        Ok(out)
                    },
                    &inputs,
                    token,
                ))
            })
            .collect::<Result<_>>()?;
        let mut a = Self::from_blocks(grid, out)?;
        a.split_every = self.split_every;
        Ok(a)
    }

    /// A view of a part of the array: one `ndarray::Slice` per leading axis (missing axes are
    /// taken whole). Negative indices count from the end; steps must be positive. Each output
    /// chunk is cut from one input chunk.
    ///
    /// # Errors
    /// [`ArrayError::BadSlice`] for too many slices or a step that is not positive.
    pub fn slice(&self, slices: &[ndarray::Slice]) -> Result<Self> {
        let parts = slices.iter().map(|s| (s.start, s.end, s.step)).collect();
        let recipe = self.derived(|x| Recipe::Slice { slices: parts, x });
        Ok(self.slice_unrecorded(slices)?.described(recipe))
    }

    fn slice_unrecorded(&self, slices: &[ndarray::Slice]) -> Result<Self> {
        self.check()?;
        let nd = self.ndim();
        if slices.len() > nd {
            return Err(ArrayError::BadSlice(format!(
                "{} slices for an array of rank {nd}",
                slices.len()
            )));
        }
        let shape = self.shape();
        // Per axis: the output chunks and what each takes from one input chunk.
        let mut plan: Vec<Vec<Pick>> = Vec::with_capacity(nd);
        for (a, &len) in shape.iter().enumerate() {
            let n = len as isize;
            let s = slices.get(a).copied().unwrap_or(ndarray::Slice::from(..));
            if s.step <= 0 {
                return Err(ArrayError::BadSlice(format!(
                    "axis {a}: step {} (only positive steps are supported)",
                    s.step
                )));
            }
            let norm = |i: isize| if i < 0 { (i + n).max(0) } else { i.min(n) };
            let start = norm(s.start) as usize;
            let end = (norm(s.end.unwrap_or(n)) as usize).max(start);
            let step = s.step as usize;
            let bounds = self.grid.boundaries(a);
            let mut pieces = Vec::new();
            for k in 0..bounds.len() - 1 {
                let (b0, b1) = (bounds[k], bounds[k + 1]);
                let lo = b0.max(start);
                let hi = b1.min(end);
                if lo >= hi {
                    continue;
                }
                // First selected index >= lo.
                let first = start + (lo - start).div_ceil(step) * step;
                if first >= hi {
                    continue;
                }
                pieces.push(Pick {
                    block: k,
                    start: first - b0,
                    end: hi - b0,
                    step,
                    len: (hi - first).div_ceil(step),
                });
            }
            if pieces.is_empty() {
                pieces.push(Pick {
                    block: 0,
                    start: 0,
                    end: 0,
                    step: 1,
                    len: 0,
                });
            }
            plan.push(pieces);
        }
        let grid = ChunkGrid::from_sizes(
            plan.iter()
                .map(|p| p.iter().map(|x| x.len).collect())
                .collect(),
        )?;
        let blocks = self.blocks()?;
        let spec = TaskSpec::new("slice").pure();
        let out = (0..grid.num_blocks())
            .map(|i| -> Result<Delayed<ArrayD<T>>> {
                let c = grid.block_coords(i);
                let picks: Vec<Pick> = (0..nd).map(|a| plan[a][c[a]]).collect();
                let ic: Vec<usize> = picks.iter().map(|p| p.block).collect();
                let empty = picks.iter().any(|p| p.len == 0);
                let token = describe(picks.clone())?;
                let shp: Vec<usize> = picks.iter().map(|p| p.len).collect();
                Ok(spec.call_dyn(
                    move |vals: Vec<Value>| {
                        if empty {
                            return Ok(ArrayD::<T>::default(IxDyn(&shp)));
                        }
                        let b = vals
                            .first()
                            .and_then(|v| v.downcast_ref::<ArrayD<T>>())
                            .ok_or("slice: chunk of an unexpected type")?;
                        let elems: Vec<SliceInfoElem> = picks
                            .iter()
                            .map(|p| SliceInfoElem::Slice {
                                start: p.start as isize,
                                end: Some(p.end as isize),
                                step: p.step as isize,
                            })
                            .collect();
                        Ok(b.slice(elems.as_slice()).as_standard_layout().into_owned())
                    },
                    &[blocks[self.grid.block_index(&ic)].erase()],
                    token,
                ))
            })
            .collect::<Result<_>>()?;
        let mut a = Self::from_blocks(grid, out)?;
        a.split_every = self.split_every;
        Ok(a)
    }

    /// The array with its axes permuted: axis `i` of the result is axis `perm[i]` of this one.
    ///
    /// # Errors
    /// [`ArrayError::BadData`] if `perm` is not a permutation of `0..ndim`.
    pub fn permute_axes(&self, perm: &[usize]) -> Result<Self> {
        let recipe = self.derived(|x| Recipe::Permute {
            perm: perm.to_vec(),
            x,
        });
        Ok(self.permute_unrecorded(perm)?.described(recipe))
    }

    fn permute_unrecorded(&self, perm: &[usize]) -> Result<Self> {
        self.check()?;
        let nd = self.ndim();
        let mut seen = vec![false; nd];
        if perm.len() != nd
            || perm
                .iter()
                .any(|&p| p >= nd || std::mem::replace(&mut seen[p], true))
        {
            return Err(ArrayError::BadData(format!(
                "{perm:?} is not a permutation of the {nd} axes"
            )));
        }
        let grid = ChunkGrid::from_sizes(
            perm.iter()
                .map(|&p| self.grid.chunks()[p].clone())
                .collect(),
        )?;
        let blocks = self.blocks()?;
        let spec = TaskSpec::new("transpose").pure();
        let token = describe(perm.to_vec())?;
        let out = (0..grid.num_blocks())
            .map(|i| {
                let c = grid.block_coords(i);
                let mut ic = vec![0; nd];
                for (k, &p) in perm.iter().enumerate() {
                    ic[p] = c[k];
                }
                let perm = perm.to_vec();
                spec.call_dyn(
                    move |vals: Vec<Value>| -> Result<ArrayD<T>, BoxError> {
                        let b = vals
                            .first()
                            .and_then(|v| v.downcast_ref::<ArrayD<T>>())
                            .ok_or("transpose: chunk of an unexpected type")?;
                        Ok(b.view()
                            .permuted_axes(IxDyn(&perm))
                            .as_standard_layout()
                            .into_owned())
                    },
                    &[blocks[self.grid.block_index(&ic)].erase()],
                    token,
                )
            })
            .collect();
        Self::from_blocks(grid, out)
    }

    /// The array with its axes reversed.
    ///
    /// # Errors
    /// The build error, if any.
    pub fn transpose(&self) -> Result<Self> {
        let perm: Vec<usize> = (0..self.ndim()).rev().collect();
        self.permute_axes(&perm)
    }

    /// Joins arrays along an existing axis. Other axes must have equal lengths; their chunks
    /// follow the first array (the others are rechunked if needed). No task is added.
    ///
    /// # Errors
    /// [`ArrayError::ShapeMismatch`], [`ArrayError::AxisOutOfRange`], [`ArrayError::BadData`]
    /// for an empty list.
    pub fn concatenate(arrays: &[Self], axis: usize) -> Result<Self> {
        let recipe = join_recipe(arrays, false, axis);
        Ok(Self::concatenate_unrecorded(arrays, axis)?.described(recipe))
    }

    fn concatenate_unrecorded(arrays: &[Self], axis: usize) -> Result<Self> {
        let first = arrays
            .first()
            .ok_or_else(|| ArrayError::BadData("concatenate needs at least one array".into()))?;
        let nd = first.ndim();
        if axis >= nd {
            return Err(ArrayError::AxisOutOfRange {
                op: "concatenate".into(),
                axis,
                ndim: nd,
            });
        }
        let mut parts = Vec::with_capacity(arrays.len());
        let mut axis_chunks = Vec::new();
        for a in arrays {
            a.check()?;
            let (s0, s) = (first.shape(), a.shape());
            if s.len() != nd || (0..nd).any(|k| k != axis && s[k] != s0[k]) {
                return Err(ArrayError::ShapeMismatch {
                    op: "concatenate".into(),
                    left: s0,
                    right: s,
                });
            }
            let mut want = first.grid.chunks().to_vec();
            want[axis] = a.grid.chunks()[axis].clone();
            let a = a.rechunk_to(ChunkGrid::from_sizes(want)?)?;
            axis_chunks.extend(a.grid.chunks()[axis].iter().copied().filter(|&x| x > 0));
            parts.push(a);
        }
        if axis_chunks.is_empty() {
            axis_chunks.push(0);
        }
        let mut sizes = first.grid.chunks().to_vec();
        sizes[axis] = axis_chunks;
        let grid = ChunkGrid::from_sizes(sizes)?;
        // Which (part, block along axis) each output block index along `axis` comes from.
        let mut along = Vec::new();
        for (p, a) in parts.iter().enumerate() {
            for (k, &s) in a.grid.chunks()[axis].iter().enumerate() {
                if s > 0 {
                    along.push((p, k));
                }
            }
        }
        let part_blocks: Vec<Vec<Delayed<ArrayD<T>>>> =
            parts.iter().map(Self::blocks).collect::<Result<_>>()?;
        let blocks = (0..grid.num_blocks())
            .map(|i| {
                let mut c = grid.block_coords(i);
                let (p, k) = along.get(c[axis]).copied().unwrap_or((0, 0));
                c[axis] = k;
                part_blocks[p][parts[p].grid.block_index(&c)].clone()
            })
            .collect();
        let mut a = Self::from_blocks(grid, blocks)?;
        a.split_every = first.split_every;
        Ok(a)
    }

    /// Stacks arrays of equal shape along a new axis at position `axis`.
    ///
    /// # Errors
    /// As [`concatenate`](Array::concatenate).
    pub fn stack(arrays: &[Self], axis: usize) -> Result<Self> {
        let recipe = join_recipe(arrays, true, axis);
        Ok(Self::stack_unrecorded(arrays, axis)?.described(recipe))
    }

    fn stack_unrecorded(arrays: &[Self], axis: usize) -> Result<Self> {
        let first = arrays
            .first()
            .ok_or_else(|| ArrayError::BadData("stack needs at least one array".into()))?;
        if axis > first.ndim() {
            return Err(ArrayError::AxisOutOfRange {
                op: "stack".into(),
                axis,
                ndim: first.ndim() + 1,
            });
        }
        let spec = TaskSpec::new("expand_dims").pure();
        let token = describe(axis)?;
        let expanded = arrays
            .iter()
            .map(|a| {
                if a.shape() != first.shape() {
                    return Err(ArrayError::ShapeMismatch {
                        op: "stack".into(),
                        left: first.shape(),
                        right: a.shape(),
                    });
                }
                let a = a.rechunk_to(first.grid.clone())?;
                let mut sizes = a.grid.chunks().to_vec();
                sizes.insert(axis, vec![1]);
                let blocks = a
                    .blocks()?
                    .into_iter()
                    .map(|b| {
                        spec.call_dyn(
                            move |vals: Vec<Value>| -> Result<ArrayD<T>, BoxError> {
                                let b = vals
                                    .first()
                                    .and_then(|v| v.downcast_ref::<ArrayD<T>>())
                                    .ok_or("stack: chunk of an unexpected type")?;
                                Ok(b.clone().insert_axis(Axis(axis)))
                            },
                            &[b.erase()],
                            token,
                        )
                    })
                    .collect();
                Self::from_blocks(ChunkGrid::from_sizes(sizes)?, blocks)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::concatenate(&expanded, axis)
    }
}

/// The recipe of joining `arrays` (none unless every one has a recipe).
fn join_recipe<T: Element>(
    arrays: &[Array<T>],
    stack: bool,
    axis: usize,
) -> crate::recipe::Described {
    let xs = arrays
        .iter()
        .map(|a| a.recipe.as_deref().cloned().map_err(Arc::clone))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Recipe::Join { stack, axis, xs }))
}

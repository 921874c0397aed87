//! The lazy chunked array: [`Array`], how it is built from blocks, and how it computes.

use std::fmt;
use std::sync::Arc;

use brisk_graph::{
    AnyDelayed, BoxError, ComputeOptions, Delayed, Executor, TaskSpec, Tokenize, Value, lit,
};
use ndarray::{ArrayD, Dimension, IxDyn};

use crate::element::Element;
use crate::error::{ArrayError, Result};
use crate::expr::{Const, Env, ExprRef, Leaf, LeafData, eval_chunk};
use crate::grid::ChunkGrid;
use crate::stream::{OpenStream, OpenWindow, Window};

mod elementwise;
mod leaf;
mod shared;

pub(crate) use leaf::*;

/// A lazy n-dimensional array of `T` cut into chunks, each computed by one task.
///
/// Elementwise operations (`+ - * /` with arrays or scalars, with broadcasting; `powi`,
/// `sqrt`, `exp`, `ln`, `abs`, comparisons, `mapv`, `astype`) stay symbolic: a chain of them
/// is evaluated by **one task per chunk**, tile by tile, without a temporary per operation.
/// Reductions (`sum`, `mean`, `min`, `max`, `var`, `std`, `argmin`, `argmax`) fuse that
/// evaluation into their first stage and combine partial results in a tree.
///
/// Building never computes anything; errors in building (shape mismatches in operators)
/// are kept and returned by `compute`.
///
/// ```
/// use brisk_array::Array;
/// use brisk_exec::ThreadedExecutor;
///
/// let x = Array::<f32>::random_normal(&[800, 750], &[200, 750], 42, 2000.0, 1000.0).unwrap();
/// let y = (x.powi(2) + x.powi(3)).mean(0);  // one fused task per chunk, then a tree
/// let exec = ThreadedExecutor::new(2).unwrap();
/// let m = y.compute_with(&exec).unwrap();
/// assert_eq!(m.shape(), &[750]);
/// ```
pub struct Array<T: Element> {
    pub(crate) grid: ChunkGrid,
    pub(crate) expr: ExprRef<T>,
    pub(crate) leaves: Arc<Vec<LeafSrc>>,
    /// The typed blocks, when this array is exactly its own single leaf.
    pub(crate) own: Option<Arc<Vec<Delayed<ArrayD<T>>>>>,
    /// An error made while building (e.g. a shape mismatch in `+`), returned by `compute`.
    pub(crate) error: Option<Arc<ArrayError>>,
    pub(crate) split_every: usize,
    /// How this array was built, as data, when every step has a recipe (see
    /// [`recipe`](crate::recipe)).
    pub(crate) recipe: crate::recipe::Described,
}

impl<T: Element> Array<T> {
    /// The same array whose chunk sources need `resource` open while they are read: a compute
    /// opens it once (if it is closed) before the first chunk and closes it after the last,
    /// leaving it as it found it. Every array derived from this one (slices, arithmetic,
    /// reductions, rechunk, concatenations with arrays over other resources, …) carries the
    /// requirement; building derived arrays never opens anything. Binding an already bound
    /// array adds the requirement (both resources are then needed).
    #[must_use]
    pub fn requiring(&self, resource: Arc<dyn brisk_graph::Resource>) -> Self {
        let leaves = self
            .leaves
            .iter()
            .map(|l| LeafSrc {
                blocks: Arc::new(
                    l.blocks
                        .iter()
                        .map(|b| b.requiring(Arc::clone(&resource)))
                        .collect(),
                ),
                // The resource is held by the block tasks: consumers must read those.
                stream: None,
                ..l.clone()
            })
            .collect();
        let own = self.own.as_ref().map(|blocks| {
            Arc::new(
                blocks
                    .iter()
                    .map(|b| b.requiring(Arc::clone(&resource)))
                    .collect(),
            )
        });
        // A resource is this process's: the array no longer rebuilds elsewhere.
        Self {
            leaves: Arc::new(leaves),
            own,
            recipe: Err("it is bound to a resource held open by this process".into()),
            ..self.clone()
        }
    }
}

impl<T: Element> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self {
            grid: self.grid.clone(),
            expr: Arc::clone(&self.expr),
            leaves: Arc::clone(&self.leaves),
            own: self.own.clone(),
            error: self.error.clone(),
            split_every: self.split_every,
            recipe: self.recipe.clone(),
        }
    }
}

impl<T: Element> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("dtype", &T::DTYPE)
            .field("shape", &self.shape())
            .field("chunks", &self.grid.chunks())
            .field("expr", &self.expr.desc())
            .finish_non_exhaustive()
    }
}

/// Default fan-in of tree reductions.
pub const DEFAULT_SPLIT_EVERY: usize = 8;

impl<T: Element> Array<T> {
    /// An array from its chunk tasks (one per block of `grid`, in row-major block order).
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`] when the number of blocks does not match the grid.
    pub fn from_blocks(grid: ChunkGrid, blocks: Vec<Delayed<ArrayD<T>>>) -> Result<Self> {
        if blocks.len() != grid.num_blocks() {
            return Err(ArrayError::BadChunks(format!(
                "{} blocks given for a grid of {} blocks",
                blocks.len(),
                grid.num_blocks()
            )));
        }
        let erased: Vec<AnyDelayed> = blocks.iter().map(Delayed::erase).collect();
        let id = leaf_id(&erased);
        Ok(Self {
            grid: grid.clone(),
            expr: Arc::new(Leaf { id }),
            leaves: Arc::new(vec![LeafSrc {
                id,
                grid,
                blocks: Arc::new(erased),
                prep: prep::<T>,
                stream: None,
            }]),
            own: Some(Arc::new(blocks)),
            error: None,
            split_every: DEFAULT_SPLIT_EVERY,
            recipe: Err(
                "it is built from task closures (`from_blocks`, `from_fn`, `map_blocks`, …); \
                 use operations with recipes or a registered kernel (`brisk_array::kernel!`)"
                    .into(),
            ),
        })
    }

    /// An array from its chunk tasks that can also be read as streams: `open(i)` produces
    /// block `i`'s elements in row-major order, exactly the values of task `blocks[i]`.
    /// Fused elementwise chunks, reduction partials and [`block_sources`](Array::block_sources)
    /// readers then read the block inside their own task instead of waiting for the block
    /// task (which remains for slicing, rechunking, `compute`, …). See [`crate::stream`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use brisk_array::{Array, BlockStream, ChunkGrid, OpenStream};
    /// use brisk_exec::ThreadedExecutor;
    /// use brisk_graph::{BoxError, pure};
    /// use ndarray::{ArrayD, IxDyn};
    ///
    /// /// Element k of the array holds k, produced as it is read.
    /// struct Counter(u64);
    /// impl BlockStream<u64> for Counter {
    ///     fn read(&mut self, out: &mut [u64]) -> Result<(), BoxError> {
    ///         for o in out {
    ///             *o = self.0;
    ///             self.0 += 1;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let grid = ChunkGrid::regular(&[1000], &[300]).unwrap();
    /// let blocks = (0..grid.num_blocks())
    ///     .map(|i| {
    ///         let (off, len) = (grid.block_offset(&[i])[0], grid.block_shape(&[i])[0]);
    ///         pure("count", move |o: u64, n: u64| {
    ///             ArrayD::from_shape_fn(IxDyn(&[n as usize]), |ix| o + ix[0] as u64)
    ///         }, (off as u64, len as u64))
    ///     })
    ///     .collect();
    /// let g = grid.clone();
    /// let open: OpenStream<u64> = Arc::new(move |i| {
    ///     Ok(Box::new(Counter(g.block_offset(&[i])[0] as u64)) as Box<dyn BlockStream<u64>>)
    /// });
    /// let x = Array::from_blocks_streamed(grid, blocks, open).unwrap();
    /// let exec = ThreadedExecutor::new(2).unwrap();
    /// // The sum streams every block inside its partial task; compute reads the block tasks.
    /// assert_eq!(x.sum(0).compute_with(&exec).unwrap()[[]], 999 * 1000 / 2);
    /// assert_eq!(x.compute_with(&exec).unwrap()[[999]], 999);
    /// ```
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`] when the number of blocks does not match the grid.
    pub fn from_blocks_streamed(
        grid: ChunkGrid,
        blocks: Vec<Delayed<ArrayD<T>>>,
        open: OpenStream<T>,
    ) -> Result<Self> {
        let mut a = Self::from_blocks(grid.clone(), blocks)?;
        let typed = Arc::clone(&open);
        let window: OpenWindow = Arc::new(move |i| {
            let len = grid.block_shape(&grid.block_coords(i)).iter().product();
            let w: Box<dyn crate::stream::AnyWindow> = Box::new(Window::new(open(i)?, len));
            Ok(w)
        });
        let leaves = a
            .leaves
            .iter()
            .map(|l| LeafSrc {
                stream: Some(LeafStream {
                    window: Arc::clone(&window),
                    typed: Arc::new(Arc::clone(&typed)),
                }),
                ..l.clone()
            })
            .collect();
        a.leaves = Arc::new(leaves);
        Ok(a)
    }

    /// An array made by `make(offset, shape)` for each block (called lazily, once per block
    /// per compute). `name` labels the tasks; the tasks are impure (closures cannot be hashed).
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`].
    pub fn from_fn<F>(name: &str, shape: &[usize], chunks: &[usize], make: F) -> Result<Self>
    where
        F: Fn(&[usize], &[usize]) -> ArrayD<T> + Send + Sync + 'static,
    {
        let grid = ChunkGrid::regular(shape, chunks)?;
        let make = Arc::new(make);
        let spec = TaskSpec::new(name.to_owned());
        let blocks = (0..grid.num_blocks())
            .map(|i| {
                let c = grid.block_coords(i);
                let (off, shp) = (grid.block_offset(&c), grid.block_shape(&c));
                let make = Arc::clone(&make);
                spec.try_call(
                    move || -> Result<ArrayD<T>, BoxError> {
                        let a = make(&off, &shp);
                        if a.shape() != shp.as_slice() {
                            return Err(format!(
                                "block at {off:?} should have shape {shp:?}, the function made {:?}",
                                a.shape()
                            )
                            .into());
                        }
                        Ok(a.as_standard_layout().into_owned())
                    },
                    (),
                )
            })
            .collect();
        Self::from_blocks(grid, blocks)
    }

    /// An array holding `data`, cut into chunks of `chunks` (each block becomes a constant
    /// whose key is the hash of its bytes).
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`].
    pub fn from_ndarray<D: Dimension>(
        data: &ndarray::Array<T, D>,
        chunks: &[usize],
    ) -> Result<Self> {
        let grid = ChunkGrid::regular(data.shape(), chunks)?;
        let view = data.view().into_dyn();
        let blocks = (0..grid.num_blocks())
            .map(|i| {
                let c = grid.block_coords(i);
                let (off, shp) = (grid.block_offset(&c), grid.block_shape(&c));
                let block = view
                    .slice(region(&off, &shp).as_slice())
                    .as_standard_layout()
                    .into_owned();
                lit(block)
            })
            .collect();
        Self::from_blocks(grid, blocks)
    }

    /// An array of `shape` filled with `value` (equal blocks share one task).
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`].
    pub fn full(shape: &[usize], chunks: &[usize], value: T) -> Result<Self> {
        let grid = ChunkGrid::regular(shape, chunks)?;
        let spec = TaskSpec::new("full").pure();
        // Blocks of one shape are one task (the same key): a regular grid has at most two
        // block shapes per axis, so the blocks share a handful of tasks, not one each.
        let mut by_shape: Vec<(Vec<usize>, Delayed<ArrayD<T>>)> = Vec::new();
        let blocks = (0..grid.num_blocks())
            .map(|i| {
                let shp = grid.block_shape(&grid.block_coords(i));
                if let Some((_, d)) = by_shape.iter().find(|(s, _)| *s == shp) {
                    return d.clone();
                }
                let d = spec.call(
                    |s: Vec<usize>, v: T| ArrayD::from_elem(IxDyn(&s), v),
                    (shp.clone(), value),
                );
                by_shape.push((shp, d.clone()));
                d
            })
            .collect();
        let a = Self::from_blocks(grid, blocks)?;
        // A value JSON cannot carry exactly (NaN, infinities) leaves the array without one.
        Ok(match serde_json::to_value(value) {
            Ok(v) if !v.is_null() => a.with_recipe(crate::recipe::Recipe::Full {
                dtype: T::DTYPE,
                shape: shape.to_vec(),
                chunks: chunks.to_vec(),
                value: v,
            }),
            _ => a.without_recipe(format!(
                "it is filled with {value:?}, which JSON cannot carry exactly"
            )),
        })
    }

    /// The array's shape.
    #[must_use]
    pub fn shape(&self) -> Vec<usize> {
        self.grid.shape()
    }

    /// Number of axes.
    #[must_use]
    pub fn ndim(&self) -> usize {
        self.grid.ndim()
    }

    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the array has no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunk grid.
    #[must_use]
    pub fn grid(&self) -> &ChunkGrid {
        &self.grid
    }

    /// Chunk sizes per axis.
    #[must_use]
    pub fn chunks(&self) -> &[Vec<usize>] {
        self.grid.chunks()
    }

    /// The fan-in of this array's tree reductions (default [`DEFAULT_SPLIT_EVERY`]).
    #[must_use]
    pub fn with_split_every(mut self, n: usize) -> Self {
        self.split_every = n.max(2);
        self.recipe = self.derived(|x| crate::recipe::Recipe::SplitEvery { n, x });
        self
    }

    /// An error made while building this array, if any (also returned by `compute`).
    #[must_use]
    pub fn build_error(&self) -> Option<&ArrayError> {
        self.error.as_deref()
    }

    pub(crate) fn check(&self) -> Result<()> {
        match &self.error {
            Some(e) => Err((**e).clone()),
            None => Ok(()),
        }
    }

    /// An array of the same shape whose build failed.
    pub(crate) fn failed<U: Element>(&self, e: ArrayError) -> Array<U> {
        Array {
            grid: self.grid.clone(),
            expr: Arc::new(Const(U::default())),
            leaves: Arc::new(Vec::new()),
            own: None,
            error: Some(Arc::new(e)),
            split_every: self.split_every,
            recipe: Err("its build failed".into()),
        }
    }

    /// How the task of output block `c` gets each leaf: streamed when the leaf can be and
    /// its block is read whole, else as the block task's value.
    pub(crate) fn inputs_for(&self, c: &[usize]) -> ChunkPlan {
        let shape = self.grid.block_shape(c);
        let mut plan = ChunkPlan {
            inputs: Vec::new(),
            streamed: Vec::new(),
            keys: Vec::new(),
        };
        for l in self.leaves.iter() {
            let (i, whole) = l.block_for(c, &shape);
            if whole && l.stream.is_some() {
                plan.streamed.push(Some(i));
                plan.keys.push(*l.blocks[i].key().token().as_bytes());
            } else {
                plan.streamed.push(None);
                plan.inputs.push(l.blocks[i].clone());
            }
        }
        plan
    }

    /// The expression's description for keys: leaves by their position in `leaves`, not by
    /// their ids. An id hashes every block of its leaf, so a key naming it would change with
    /// any block of the input; by position, a chunk's key depends on the blocks it reads
    /// (which [`ChunkPlan::descriptor`] and the task's inputs add), and a derived block whose
    /// inputs did not change keeps its key (and its checkpoint).
    pub(crate) fn key_desc(&self) -> String {
        let mut desc = self.expr.desc();
        for (pos, l) in self.leaves.iter().enumerate() {
            desc = desc.replace(&format!("leaf:{:016x}", l.id), &format!("leaf#{pos}"));
        }
        desc
    }

    /// Block `i`'s shape, plan and the descriptor of a task evaluating the expression `desc`
    /// over it.
    pub(crate) fn chunk_plan(
        &self,
        i: usize,
        desc: &str,
    ) -> (Vec<usize>, ChunkPlan, brisk_graph::Token) {
        let c = self.grid.block_coords(i);
        let shape = self.grid.block_shape(&c);
        let plan = self.inputs_for(&c);
        let token = plan.descriptor(&(desc, &shape, T::DTYPE.name()));
        (shape, plan, token)
    }

    /// The leaves of one output chunk of `shape`: the values of `plan.inputs` (in order),
    /// prepared, and the streamed blocks opened.
    pub(crate) fn env(
        leaves: &[LeafSrc],
        plan: &ChunkPlan,
        values: Vec<Value>,
        shape: &[usize],
    ) -> Result<Env, BoxError> {
        let mut values = values.into_iter();
        let mut out = Vec::with_capacity(leaves.len());
        for (l, s) in leaves.iter().zip(&plan.streamed) {
            let data = match (s, &l.stream) {
                (Some(i), Some(st)) => LeafData::Stream(std::cell::RefCell::new((st.window)(*i)?)),
                _ => {
                    let v = values.next().ok_or("a chunk task is missing an input")?;
                    LeafData::Value((l.prep)(&v, shape)?)
                }
            };
            out.push((l.id, data));
        }
        Ok(Env::new(out))
    }

    /// One task per block computing this array's chunks (the fused expression evaluated).
    ///
    /// # Errors
    /// The build error, if any.
    pub fn blocks(&self) -> Result<Vec<Delayed<ArrayD<T>>>> {
        self.check()?;
        if let Some(own) = &self.own {
            return Ok(own.as_ref().clone());
        }
        let spec = TaskSpec::new("chunk").pure();
        let desc = self.key_desc();
        Ok((0..self.grid.num_blocks())
            .map(|i| {
                let (shape, plan, token) = self.chunk_plan(i, &desc);
                let inputs = plan.inputs.clone();
                let expr = Arc::clone(&self.expr);
                let leaves = Arc::clone(&self.leaves);
                spec.call_dyn(
                    move |vals: Vec<Value>| {
                        let env = Self::env(&leaves, &plan, vals, &shape)?;
                        eval_chunk(expr.as_ref(), &env, &shape)
                    },
                    &inputs,
                    token,
                )
            })
            .collect())
    }

    /// This array as its own single leaf, still lazy: later operations read its blocks (one
    /// task each, shared by every consumer of one compute) instead of fusing its expression
    /// into theirs. Nothing is computed; see [`persist`](Array::persist) for that.
    ///
    /// # Errors
    /// The build error, if any.
    pub fn as_leaf(&self) -> Result<Self> {
        let mut a = Self::from_blocks(self.grid.clone(), self.blocks()?)?;
        a.split_every = self.split_every;
        Ok(a)
    }

    /// Computes every block now on `executor` and returns the array with its blocks held in
    /// memory — dask's `persist`. Later computes of anything built on it read the held blocks
    /// and run nothing upstream of them; keys are unchanged, so checkpoints of derived values
    /// stay valid.
    ///
    /// ```
    /// use brisk_array::Array;
    /// use brisk_exec::SequentialExecutor;
    ///
    /// let x = Array::<f64>::random_normal(&[100, 10], &[50, 10], 7, 0.0, 1.0).unwrap();
    /// let held = x.persist(&SequentialExecutor).unwrap();
    /// let graph = brisk_graph::Graph::new(held.blocks().unwrap().iter());
    /// assert!(brisk_graph::NodeId::all(graph.len()).all(|i| graph.node(i).is_literal())); // nothing left to run
    /// assert_eq!(held.mean(0).compute_with(&SequentialExecutor).unwrap(),
    ///            x.mean(0).compute_with(&SequentialExecutor).unwrap());
    /// ```
    ///
    /// # Errors
    /// [`ArrayError::Compute`] with the compute's error.
    pub fn persist(&self, executor: &dyn Executor) -> Result<Self> {
        self.persist_with_options(executor, &ComputeOptions::new())
    }

    /// [`persist`](Array::persist) with compute options (hooks, a checkpoint cache, …).
    ///
    /// # Errors
    /// [`ArrayError::Compute`] with the compute's error.
    pub fn persist_with_options(
        &self,
        executor: &dyn Executor,
        options: &ComputeOptions,
    ) -> Result<Self> {
        let held = brisk_graph::persist_all(&self.blocks()?, executor, options)?;
        let mut a = Self::from_blocks(self.grid.clone(), held)?;
        a.split_every = self.split_every;
        Ok(a)
    }

    /// This array with every block checkpointed, as its own leaf (like
    /// [`as_leaf`](Array::as_leaf)): a compute with a checkpoint cache attached (for example
    /// `brisk_checkpoint::Storage::options`) loads the blocks it finds instead of computing
    /// them — and culls everything upstream — and saves the blocks it computes.
    ///
    /// A checkpoint is found again only under the same keys: arrays from `ndarray`s, random
    /// generators and pure functions have them; reads of stored Zarr arrays need
    /// `brisk_zarr::IoOptions::pinned` (keys from the chunks' versions).
    ///
    /// ```
    /// use brisk_array::Array;
    ///
    /// let x = Array::<f64>::random_normal(&[100, 10], &[50, 10], 7, 0.0, 1.0).unwrap();
    /// let m = x.mean(0).checkpointed().unwrap();
    /// assert!(m.blocks().unwrap().iter().all(|b| b.is_checkpointed()));
    /// // Same keys as the unmarked array: a checkpoint saved for one is found by the other.
    /// assert_eq!(m.blocks().unwrap()[0].key(), x.mean(0).blocks().unwrap()[0].key());
    /// ```
    ///
    /// # Errors
    /// The build error, if any.
    pub fn checkpointed(&self) -> Result<Self> {
        let blocks = self.blocks()?.iter().map(Delayed::checkpointed).collect();
        let mut a = Self::from_blocks(self.grid.clone(), blocks)?;
        a.split_every = self.split_every;
        Ok(a)
    }

    /// Computes the whole array on `executor`.
    ///
    /// # Errors
    /// The build error, or the compute's error (naming the failing chunk task).
    pub fn compute_with(&self, executor: &dyn Executor) -> Result<ArrayD<T>> {
        self.compute_with_options(executor, &ComputeOptions::new())
    }

    /// Computes the whole array on `executor` with `options`.
    ///
    /// # Errors
    /// As [`compute_with`](Array::compute_with).
    pub fn compute_with_options(
        &self,
        executor: &dyn Executor,
        options: &ComputeOptions,
    ) -> Result<ArrayD<T>> {
        let blocks = self.blocks()?;
        // Tell the executor how to rebuild the graph elsewhere (a cluster), when it can be.
        let with_origin;
        let options = match (options.origin_of(), self.origin()) {
            (None, Ok(origin)) => {
                with_origin = options.clone().origin(origin);
                &with_origin
            }
            (None, Err(why)) => {
                with_origin = options
                    .clone()
                    .local_only(format!("the array has no recipe: {why}"));
                &with_origin
            }
            _ => options,
        };
        let mut computed = options.run(executor, blocks.iter())?;
        let shape = self.shape();
        let mut out = ArrayD::<T>::default(IxDyn(&shape));
        for (i, b) in blocks.iter().enumerate() {
            place(&mut out, &self.grid, i, &computed.take(b)?)?;
        }
        Ok(out)
    }

    /// Computes the array as an `ndarray` of a fixed dimension (`Ix2`, …).
    ///
    /// # Errors
    /// As [`compute_with`](Array::compute_with); [`ArrayError::BadData`] if the rank differs.
    pub fn compute_dim<D: Dimension>(
        &self,
        executor: &dyn Executor,
    ) -> Result<ndarray::Array<T, D>> {
        self.compute_with(executor)?
            .into_dimensionality::<D>()
            .map_err(|e| ArrayError::BadData(format!("array of rank {}: {e}", self.ndim())))
    }

    /// A lazy value holding the whole array (one task assembling every chunk).
    ///
    /// # Errors
    /// The build error, if any.
    pub fn to_delayed(&self) -> Result<Delayed<ArrayD<T>>> {
        let blocks = self.blocks()?;
        let grid = self.grid.clone();
        let inputs: Vec<AnyDelayed> = blocks.iter().map(Delayed::erase).collect();
        let token = (grid.chunks().to_vec(), T::DTYPE.name())
            .token()
            .map_err(|e| ArrayError::BadData(format!("cannot describe the array: {e}")))?;
        Ok(TaskSpec::new("assemble").pure().call_dyn(
            move |vals: Vec<Value>| {
                let mut out = ArrayD::<T>::default(IxDyn(&grid.shape()));
                for (i, v) in vals.iter().enumerate() {
                    let block = v
                        .downcast_ref::<ArrayD<T>>()
                        .ok_or("a chunk has an unexpected element type")?;
                    place(&mut out, &grid, i, block)?;
                }
                Ok(out)
            },
            &inputs,
            token,
        ))
    }
}

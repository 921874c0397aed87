//! The lazy chunked array.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use brisk_graph::{
    AnyDelayed, BoxError, ComputeOptions, Delayed, Executor, TaskSpec, Tokenize, Value, lit,
};
use ndarray::{ArrayD, Dimension, IxDyn, SliceInfoElem};
use num_traits::AsPrimitive;

use crate::element::{Element, Float, Number};
use crate::error::{ArrayError, Result};
use crate::expr::{Binary, Const, Env, ExprRef, Leaf, LeafData, Unary, eval_chunk};
use crate::grid::ChunkGrid;
use crate::stream::{BlockStream, OpenStream, OpenWindow, Window};

/// A source of chunks an expression reads: the blocks of some array, as tasks and, for
/// streamed arrays, as streams read inside the consuming task.
#[derive(Clone)]
pub(crate) struct LeafSrc {
    pub(crate) id: u64,
    pub(crate) grid: ChunkGrid,
    pub(crate) blocks: Arc<Vec<AnyDelayed>>,
    /// Turns a block value into a standard-layout `ArrayD<U>` of the requested chunk shape
    /// (broadcasting when the leaf has size-1 axes).
    pub(crate) prep: fn(&Value, &[usize]) -> Result<Value, BoxError>,
    pub(crate) stream: Option<LeafStream>,
}

/// The streams of a leaf: as windows for expressions, and typed (an `OpenStream<U>`) for a
/// reader of the leaf itself.
#[derive(Clone)]
pub(crate) struct LeafStream {
    pub(crate) window: OpenWindow,
    pub(crate) typed: Arc<dyn std::any::Any + Send + Sync>,
}

impl LeafSrc {
    /// The index of the leaf block read by output block `c`, and whether it is read whole
    /// (not broadcast) into an output block of `shape`.
    fn block_for(&self, c: &[usize], shape: &[usize]) -> (usize, bool) {
        let m = self.grid.ndim();
        let skip = c.len() - m;
        let lc: Vec<usize> = (0..m)
            .map(|j| {
                if self.grid.chunks()[j].len() == 1 {
                    0
                } else {
                    c[skip + j]
                }
            })
            .collect();
        let whole = self.grid.block_shape(&lc) == shape;
        (self.grid.block_index(&lc), whole)
    }
}

/// How the task of one output block gets its leaves.
#[derive(Clone)]
pub(crate) struct ChunkPlan {
    /// The blocks computed by their own tasks (leaves not streamed), in leaf order.
    pub(crate) inputs: Vec<AnyDelayed>,
    /// Per leaf: the block index when the leaf is streamed into this task.
    streamed: Vec<Option<usize>>,
    /// The keys' tokens of the streamed blocks (they identify the content like input keys).
    keys: Vec<[u8; 16]>,
}

impl ChunkPlan {
    /// The descriptor of a task over this plan: `what` plus which leaves are streamed and the
    /// streamed blocks' keys (the other leaves' keys enter as the task's inputs), so every
    /// leaf position of the expression is tied to its block's key.
    pub(crate) fn descriptor(&self, what: &impl Tokenize) -> brisk_graph::Token {
        let w = *what
            .token()
            .expect("descriptions are strings and integers, which always tokenize")
            .as_bytes();
        let streamed: Vec<bool> = self.streamed.iter().map(Option::is_some).collect();
        (w, streamed, self.keys.clone())
            .token()
            .expect("byte arrays always tokenize")
    }

    /// The typed stream opener when the block is exactly one streamed leaf.
    pub(crate) fn single_stream<T: Element>(
        &self,
        leaves: &[LeafSrc],
    ) -> Option<impl FnOnce() -> Result<Box<dyn BlockStream<T>>, BoxError> + use<T>> {
        let ([leaf], [Some(i)]) = (leaves, self.streamed.as_slice()) else {
            return None;
        };
        let open = leaf
            .stream
            .as_ref()?
            .typed
            .downcast_ref::<OpenStream<T>>()?
            .clone();
        let i = *i;
        Some(move || open(i))
    }
}

fn prep<U: Element>(v: &Value, shape: &[usize]) -> Result<Value, BoxError> {
    let a = v
        .downcast_ref::<ArrayD<U>>()
        .ok_or("a chunk has an unexpected element type")?;
    if a.shape() == shape && a.is_standard_layout() {
        return Ok(Arc::clone(v));
    }
    let b = a.broadcast(IxDyn(shape)).ok_or_else(|| {
        format!(
            "cannot broadcast a chunk of shape {:?} to {shape:?}",
            a.shape()
        )
    })?;
    Ok(Arc::new(b.as_standard_layout().into_owned()))
}

/// The slice of `shape` elements starting at `offset`, one entry per axis.
pub(crate) fn region(offset: &[usize], shape: &[usize]) -> Vec<SliceInfoElem> {
    offset
        .iter()
        .zip(shape)
        .map(|(&o, &s)| SliceInfoElem::Slice {
            start: o as isize,
            end: Some((o + s) as isize),
            step: 1,
        })
        .collect()
}

/// Copies block `i` of `grid` into its place in `out`. A block whose shape is not the one the
/// grid promises is an error, never a panic or a silently misplaced chunk.
fn place<T: Element>(
    out: &mut ArrayD<T>,
    grid: &ChunkGrid,
    i: usize,
    block: &ArrayD<T>,
) -> Result<()> {
    let c = grid.block_coords(i);
    let want = grid.block_shape(&c);
    if want != block.shape() {
        return Err(ArrayError::BadData(format!(
            "block {c:?} has shape {:?}, the grid expects {want:?}",
            block.shape()
        )));
    }
    out.slice_mut(region(&grid.block_offset(&c), &want).as_slice())
        .assign(block);
    Ok(())
}

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
        Self {
            leaves: Arc::new(leaves),
            own,
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

static OPAQUE: AtomicU64 = AtomicU64::new(0);

/// A process-unique description for closures, which cannot be hashed.
pub(crate) fn opaque_desc(kind: &str) -> String {
    let n = OPAQUE.fetch_add(1, Ordering::Relaxed);
    format!("{kind}#{}-{n}", std::process::id())
}

/// Adds `leaf` to `leaves`, or — when a leaf of the same blocks (same keys) is there — adds
/// `leaf`'s resource requirements to it: two arrays over the same chunks bound to different
/// resources need both resources open.
pub(crate) fn merge_leaf(leaves: &mut Vec<LeafSrc>, leaf: &LeafSrc) {
    let Some(existing) = leaves.iter_mut().find(|x| x.id == leaf.id) else {
        leaves.push(leaf.clone());
        return;
    };
    let missing = |a: &AnyDelayed, b: &AnyDelayed| -> Vec<Arc<dyn brisk_graph::Resource>> {
        b.resources()
            .iter()
            .filter(|r| !a.resources().iter().any(|x| Arc::ptr_eq(x, r)))
            .cloned()
            .collect()
    };
    let any_missing = existing
        .blocks
        .iter()
        .zip(leaf.blocks.iter())
        .any(|(a, b)| !missing(a, b).is_empty());
    if !any_missing {
        return;
    }
    let blocks = existing
        .blocks
        .iter()
        .zip(leaf.blocks.iter())
        .map(|(a, b)| {
            missing(a, b)
                .into_iter()
                .fold(a.clone(), |block, r| block.requiring(r))
        })
        .collect();
    existing.blocks = Arc::new(blocks);
    // The resources are held by the block tasks: consumers must read those.
    existing.stream = None;
}

fn leaf_id(blocks: &[AnyDelayed]) -> u64 {
    let tokens: Vec<[u8; 16]> = blocks.iter().map(|b| *b.key().token().as_bytes()).collect();
    let t = tokens.token().map_or([0; 16], |t| *t.as_bytes());
    u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]])
}

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
        let blocks = (0..grid.num_blocks())
            .map(|i| {
                let shp = grid.block_shape(&grid.block_coords(i));
                spec.call(
                    |s: Vec<usize>, v: T| ArrayD::from_elem(IxDyn(&s), v),
                    (shp, value),
                )
            })
            .collect();
        Self::from_blocks(grid, blocks)
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
        let token = plan.descriptor(&(desc.to_owned(), shape.clone(), T::DTYPE.name()));
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
    /// assert!((0..graph.len()).all(|i| graph.node(i).is_literal())); // nothing left to run
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
        })
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
                    move |a: ArrayD<T>| -> Result<ArrayD<U>, BoxError> {
                        let out = f(a, &off);
                        if out.shape() != shp.as_slice() {
                            return Err(format!(
                                "map_blocks: block at {off:?} has shape {shp:?} but the function returned {:?}",
                                out.shape()
                            )
                            .into());
                        }
                        Ok(out.as_standard_layout().into_owned())
                    },
                    (b,),
                )
            })
            .collect();
        Array::from_blocks(self.grid.clone(), blocks)
    }
}

impl<T: Number> Array<T> {
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
        let name = format!("powi:{n}");
        match n {
            0 => self.unary(name, |_: T| T::one()),
            1 => self.unary(name, |x: T| x),
            2 => self.unary(name, |x: T| x * x),
            3 => self.unary(name, |x: T| x * x * x),
            4 => self.unary(name, |x: T| {
                let y = x * x;
                y * y
            }),
            _ => self.unary(name, move |x: T| x.powi(n)),
        }
    }

    /// `|x|` elementwise.
    #[must_use]
    pub fn abs(&self) -> Self {
        self.unary("abs".into(), |x: T| x.abs())
    }
}

impl<T: Float> Array<T> {
    /// `x^p` elementwise.
    #[must_use]
    pub fn powf(&self, p: T) -> Self {
        self.unary(format!("powf:{p:?}"), move |x: T| x.powf(p))
    }
    /// `√x` elementwise.
    #[must_use]
    pub fn sqrt(&self) -> Self {
        self.unary("sqrt".into(), |x: T| x.sqrt())
    }
    /// `e^x` elementwise.
    #[must_use]
    pub fn exp(&self) -> Self {
        self.unary("exp".into(), |x: T| x.exp())
    }
    /// `ln x` elementwise.
    #[must_use]
    pub fn ln(&self) -> Self {
        self.unary("ln".into(), |x: T| x.ln())
    }
}

macro_rules! binop {
    ($tr:ident, $m:ident, $name:literal, $op:tt) => {
        impl<T: Number> std::ops::$tr<&Array<T>> for &Array<T> {
            type Output = Array<T>;
            fn $m(self, rhs: &Array<T>) -> Array<T> {
                self.zip_with(rhs, $name, |a: T, b: T| a $op b)
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
binop!(Add, add, "add", +);
binop!(Sub, sub, "sub", -);
binop!(Mul, mul, "mul", *);
binop!(Div, div, "div", /);

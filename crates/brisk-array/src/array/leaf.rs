//! What an expression reads: leaves (the blocks of some array, as tasks or streams), the
//! plan of one output chunk, and merging leaves of the same chunks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use brisk_graph::{AnyDelayed, BoxError, Tokenize, Value};
use ndarray::{ArrayD, IxDyn, SliceInfoElem};

use crate::element::Element;
use crate::error::{ArrayError, Result};
use crate::grid::ChunkGrid;
use crate::stream::{BlockStream, OpenStream, OpenWindow};

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
    pub(super) fn block_for(&self, c: &[usize], shape: &[usize]) -> (usize, bool) {
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
    pub(super) streamed: Vec<Option<usize>>,
    /// The keys' tokens of the streamed blocks (they identify the content like input keys).
    pub(super) keys: Vec<[u8; 16]>,
}

impl ChunkPlan {
    /// The descriptor of a task over this plan: `what` plus which leaves are streamed and the
    /// streamed blocks' keys (the other leaves' keys enter as the task's inputs), so every
    /// leaf position of the expression is tied to its block's key.
    pub(crate) fn descriptor(&self, what: &impl serde::Serialize) -> brisk_graph::Token {
        // By reference: the encoding of `&x` is that of `x`, and nothing is cloned per chunk.
        let w = *brisk_graph::serde_token(what)
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

pub(crate) fn prep<U: Element>(v: &Value, shape: &[usize]) -> Result<Value, BoxError> {
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
pub(crate) fn place<T: Element>(
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

pub(crate) static OPAQUE: AtomicU64 = AtomicU64::new(0);

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

/// An id for a leaf from its blocks' keys (equal for leaves of the same blocks, so they merge).
/// In-memory only: keys name leaves by position, never by this id.
pub(crate) fn leaf_id(blocks: &[AnyDelayed]) -> u64 {
    // The keys' tokens as one byte string (not a sequence of `[u8; 16]`, whose every byte
    // would be a tagged integer).
    let bytes: Vec<u8> = blocks
        .iter()
        .flat_map(|b| *b.key().token().as_bytes())
        .collect();
    let t = brisk_graph::bytes_token(&bytes);
    let t = t.as_bytes();
    u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]])
}

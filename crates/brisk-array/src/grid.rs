//! Chunk grids: how an array's shape is cut into blocks.

use crate::error::ArrayError;

/// The chunking of an array: for each axis, the sizes of its chunks along that axis (regular
/// chunks plus a smaller edge chunk, or any sizes after slicing and concatenation).
///
/// Blocks are numbered in row-major order over the block coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkGrid {
    chunks: Vec<Vec<usize>>,
}

/// The most blocks a grid may have: each block is a lazy task, so a grid of more would
/// exhaust memory building the graph. A metadata file declaring more (say shape `[2^40, 100]`
/// in chunks of `[1, 100]`) is an error naming the count, never an abort.
pub const MAX_BLOCKS: u64 = 1 << 26;

/// The most elements one block may hold (8 GiB of `f32`): a block is allocated whole when it
/// is computed, so metadata declaring a bigger chunk is an error naming it, never an abort.
pub const MAX_BLOCK_ELEMENTS: u64 = 1 << 31;

impl ChunkGrid {
    /// Regular chunks of `chunk` (per axis; an entry larger than the axis means one chunk)
    /// over `shape`, with smaller edge chunks.
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`] when the ranks differ, a chunk size is 0 on a non-empty axis,
    /// or the grid would have more than [`MAX_BLOCKS`] blocks.
    pub fn regular(shape: &[usize], chunk: &[usize]) -> Result<Self, ArrayError> {
        if shape.len() != chunk.len() {
            return Err(ArrayError::BadChunks(format!(
                "chunk shape {chunk:?} has rank {} but the array shape {shape:?} has rank {}",
                chunk.len(),
                shape.len()
            )));
        }
        // The block count and size are checked before any per-axis list is built.
        let mut blocks: u64 = 1;
        let mut per_block: u64 = 1;
        for (&n, &c) in shape.iter().zip(chunk) {
            if c > 0 {
                let along = (n as u64).div_ceil(c as u64).max(1);
                blocks = blocks.saturating_mul(along);
                per_block = per_block.saturating_mul(c.min(n) as u64);
            }
        }
        if per_block > MAX_BLOCK_ELEMENTS {
            return Err(ArrayError::BadChunks(format!(
                "chunks of {chunk:?} over shape {shape:?} hold {per_block} elements each, more \
                 than the {MAX_BLOCK_ELEMENTS} a block can hold (use smaller chunks)"
            )));
        }
        if blocks > MAX_BLOCKS {
            return Err(ArrayError::BadChunks(format!(
                "shape {shape:?} in chunks of {chunk:?} makes {blocks} blocks, more than the \
                 {MAX_BLOCKS} a lazy array can hold (use larger chunks)"
            )));
        }
        let mut chunks = Vec::with_capacity(shape.len());
        for (axis, (&n, &c)) in shape.iter().zip(chunk).enumerate() {
            if c == 0 && n > 0 {
                return Err(ArrayError::BadChunks(format!(
                    "chunk size 0 on axis {axis} of length {n}"
                )));
            }
            let mut sizes = Vec::new();
            let mut left = n;
            while left > 0 {
                let s = c.min(left);
                sizes.push(s);
                left -= s;
            }
            if sizes.is_empty() {
                sizes.push(0);
            }
            chunks.push(sizes);
        }
        Ok(Self { chunks })
    }

    /// A grid from explicit chunk sizes per axis.
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`] when an axis has no chunks, or a zero-size chunk on a
    /// non-empty axis.
    pub fn from_sizes(chunks: Vec<Vec<usize>>) -> Result<Self, ArrayError> {
        for (axis, c) in chunks.iter().enumerate() {
            if c.is_empty() || (c.len() > 1 && c.contains(&0)) {
                return Err(ArrayError::BadChunks(format!(
                    "axis {axis} has chunk sizes {c:?}"
                )));
            }
        }
        Ok(Self { chunks })
    }

    /// Chunk sizes per axis.
    #[must_use]
    pub fn chunks(&self) -> &[Vec<usize>] {
        &self.chunks
    }

    /// The array's shape.
    #[must_use]
    pub fn shape(&self) -> Vec<usize> {
        self.chunks.iter().map(|c| c.iter().sum()).collect()
    }

    /// Number of axes.
    #[must_use]
    pub fn ndim(&self) -> usize {
        self.chunks.len()
    }

    /// Number of blocks along each axis.
    #[must_use]
    pub fn blocks_per_axis(&self) -> Vec<usize> {
        self.chunks.iter().map(Vec::len).collect()
    }

    /// Total number of blocks.
    #[must_use]
    pub fn num_blocks(&self) -> usize {
        self.chunks.iter().map(Vec::len).product()
    }

    /// Block coordinates of block number `i`.
    #[must_use]
    pub fn block_coords(&self, mut i: usize) -> Vec<usize> {
        let mut c = vec![0; self.ndim()];
        for axis in (0..self.ndim()).rev() {
            let n = self.chunks[axis].len();
            c[axis] = i % n;
            i /= n;
        }
        c
    }

    /// Block number of block coordinates `c`.
    #[must_use]
    pub fn block_index(&self, c: &[usize]) -> usize {
        let mut i = 0;
        for (axis, &x) in c.iter().enumerate() {
            i = i * self.chunks[axis].len() + x;
        }
        i
    }

    /// Shape of the block at coordinates `c`.
    #[must_use]
    pub fn block_shape(&self, c: &[usize]) -> Vec<usize> {
        c.iter()
            .enumerate()
            .map(|(axis, &x)| self.chunks[axis][x])
            .collect()
    }

    /// Offset (first element index per axis) of the block at coordinates `c`.
    #[must_use]
    pub fn block_offset(&self, c: &[usize]) -> Vec<usize> {
        c.iter()
            .enumerate()
            .map(|(axis, &x)| self.chunks[axis][..x].iter().sum())
            .collect()
    }

    /// Start offsets of the chunks along `axis` (one more entry than chunks: the end).
    #[must_use]
    pub fn boundaries(&self, axis: usize) -> Vec<usize> {
        let mut b = Vec::with_capacity(self.chunks[axis].len() + 1);
        let mut at = 0;
        b.push(0);
        for &s in &self.chunks[axis] {
            at += s;
            b.push(at);
        }
        b
    }
}

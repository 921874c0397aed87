//! Arrays over data already in memory, shared rather than copied into blocks.

use std::sync::Arc;

use brisk_graph::{BoxError, TaskSpec};
use ndarray::{ArrayD, IxDyn};

use super::Array;
use crate::element::Element;
use crate::error::{ArrayError, Result};
use crate::grid::ChunkGrid;
use crate::stream::{BlockStream, OpenStream};

impl<T: Element> Array<T> {
    /// An array over `data`, shared: cut into chunks of `chunks` without copying or hashing
    /// it. Consumers (fused expressions, reductions, writers such as `to_zarr`) read each
    /// chunk straight from `data` inside their own task; a chunk task copies its block only
    /// when a consumer needs it whole. The fast way to write an array already in memory.
    ///
    /// Unlike [`from_ndarray`](Array::from_ndarray), whose blocks are keyed by their content
    /// (hashed once, reused across computes and checkpoints), the keys here are fresh on
    /// every call; and the array stays in this process (no recipe: a cluster cannot rebuild
    /// it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use brisk_array::Array;
    /// use brisk_exec::ThreadedExecutor;
    /// use ndarray::{ArrayD, IxDyn};
    ///
    /// let data = Arc::new(ArrayD::from_shape_fn(IxDyn(&[6, 4]), |i| (i[0] * 4 + i[1]) as f64));
    /// let x = Array::from_shared(Arc::clone(&data), &[4, 3]).unwrap();
    /// let exec = ThreadedExecutor::new(2).unwrap();
    /// assert_eq!(x.sum(0).compute_with(&exec).unwrap()[[1]], 1.0 + 5.0 + 9.0 + 13.0 + 17.0 + 21.0);
    /// assert_eq!(x.compute_with(&exec).unwrap(), *data);
    /// ```
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`].
    pub fn from_shared(data: Arc<ArrayD<T>>, chunks: &[usize]) -> Result<Self> {
        let data = if data.is_standard_layout() {
            data
        } else {
            Arc::new(data.as_standard_layout().into_owned())
        };
        let grid = ChunkGrid::regular(data.shape(), chunks)?;
        let spec = TaskSpec::new("shared");
        let blocks = (0..grid.num_blocks())
            .map(|i| {
                let rows = Rows::new(Arc::clone(&data), &grid, i);
                spec.try_call(
                    move || -> std::result::Result<ArrayD<T>, BoxError> {
                        let mut rows = rows.clone();
                        let mut out = vec![T::default(); rows.len];
                        rows.read(&mut out)?;
                        Ok(ArrayD::from_shape_vec(IxDyn(&rows.shape), out)?)
                    },
                    (),
                )
            })
            .collect();
        let (shared, g) = (Arc::clone(&data), grid.clone());
        let open: OpenStream<T> = Arc::new(move |i| {
            Ok(Box::new(Rows::new(Arc::clone(&shared), &g, i)) as Box<dyn BlockStream<T>>)
        });
        Ok(Self::from_blocks_streamed(grid, blocks, open)?
            .without_recipe("it is an array in this process's memory (`from_shared`)"))
    }
}

/// Block `i` of a standard-layout array, read row by row (a row: the block's extent along
/// the last axis, contiguous in the source).
#[derive(Clone)]
struct Rows<T> {
    data: Arc<ArrayD<T>>,
    shape: Vec<usize>,
    /// Flat source offset of each row of the block.
    starts: Vec<usize>,
    /// Elements per row.
    width: usize,
    /// Elements of the block.
    len: usize,
    /// Elements read so far.
    pos: usize,
}

impl<T: Element> Rows<T> {
    fn new(data: Arc<ArrayD<T>>, grid: &ChunkGrid, i: usize) -> Self {
        let c = grid.block_coords(i);
        let (off, shape) = (grid.block_offset(&c), grid.block_shape(&c));
        let full = data.shape().to_vec();
        let nd = full.len();
        // Row-major strides of the (standard-layout) source.
        let mut strides = vec![1usize; nd];
        for a in (0..nd.saturating_sub(1)).rev() {
            strides[a] = strides[a + 1] * full[a + 1];
        }
        let width = shape.last().copied().unwrap_or(1);
        let outer: Vec<usize> = shape[..nd.saturating_sub(1)].to_vec();
        let count: usize = outer.iter().product();
        let mut starts = Vec::with_capacity(count);
        let mut idx = vec![0usize; outer.len()];
        for _ in 0..count {
            let mut s = off.last().copied().unwrap_or(0);
            for (a, &k) in idx.iter().enumerate() {
                s += (off[a] + k) * strides[a];
            }
            starts.push(s);
            // Next outer index, row-major.
            for a in (0..idx.len()).rev() {
                idx[a] += 1;
                if idx[a] < outer[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        let len = shape.iter().product();
        Self {
            data,
            shape,
            starts,
            width,
            len,
            pos: 0,
        }
    }
}

impl<T: Element> BlockStream<T> for Rows<T> {
    fn read(&mut self, out: &mut [T]) -> std::result::Result<(), BoxError> {
        let src = self
            .data
            .as_slice()
            .ok_or("a shared array is not in standard layout")?;
        let mut done = 0;
        while done < out.len() {
            let (row, col) = (self.pos / self.width.max(1), self.pos % self.width.max(1));
            let start = *self
                .starts
                .get(row)
                .ok_or_else(|| ArrayError::BadData("read past the end of a shared block".into()))?;
            let n = (self.width - col).min(out.len() - done);
            out[done..done + n].copy_from_slice(&src[start + col..start + col + n]);
            done += n;
            self.pos += n;
        }
        Ok(())
    }
}

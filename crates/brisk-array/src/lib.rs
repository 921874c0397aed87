//! Chunked n-dimensional lazy arrays on Brisk's task graphs (the `dask.array` of Brisk).
//!
//! An [`Array<T>`] is a shape, a [`ChunkGrid`] and one lazy task per chunk. Elementwise
//! operations fuse into one task per chunk; reductions are tree reductions; slicing, rechunk,
//! concatenate, stack and transpose move data between chunks. Nothing runs until `compute`.
//!
//! ```
//! use brisk_array::{Array, Axes};
//! use brisk_graph::Graph;
//! use ndarray::array;
//!
//! let a = Array::from_ndarray(&array![[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]], &[1, 2]).unwrap();
//! assert_eq!(a.chunks(), &[vec![1, 1], vec![2, 1]]);   // 2 x 2 blocks, smaller edge chunks
//!
//! let b = (&a * 2.0 + 1.0).sum(0);                     // fused elementwise, then a tree
//! assert_eq!(b.shape(), vec![3]);
//! let tasks = Graph::new(b.blocks().unwrap().iter()).len();
//! assert_eq!(tasks, 4 + 4 + 2 + 2);                    // blocks, fused partials, combine, finish
//! let total = a.mean(Axes::All);                       // a 0-d array, still lazy
//! assert_eq!(total.ndim(), 0);
//! ```
//!
//! Compute with any executor of `brisk-exec` (`array.compute_with(&executor)`), or with
//! `compute()` through the `brisk` umbrella crate.
#![forbid(unsafe_code)]

mod array;
mod element;
mod error;
mod expr;
mod grid;
mod layout;
mod random;
pub mod recipe;
mod reduce;
pub mod stream;

pub use array::{Array, DEFAULT_SPLIT_EVERY};
pub use element::{DType, Element, Float, Number};
pub use error::{ArrayError, Result};
pub use grid::{ChunkGrid, MAX_BLOCK_ELEMENTS, MAX_BLOCKS};
pub use recipe::{AnyArray, Recipe};
pub use reduce::Axes;
pub use stream::{BlockReader, BlockSource, BlockStream, Materialized, OpenStream};

#[doc(hidden)]
pub mod __private {
    //! Used by [`source_builder!`](crate::source_builder) and [`kernel!`](crate::kernel); not a public API.
    pub use brisk_graph::__private::inventory;
}

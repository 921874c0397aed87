//! Errors of building and computing arrays.

/// Why an array operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ArrayError {
    /// A chunk specification does not fit the array.
    #[error("bad chunks: {0}")]
    BadChunks(String),
    /// Two shapes cannot be combined (broadcasting, concatenation, …).
    #[error("{op}: shapes {left:?} and {right:?} are not compatible")]
    ShapeMismatch {
        /// The operation.
        op: String,
        /// The left operand's shape.
        left: Vec<usize>,
        /// The right operand's shape.
        right: Vec<usize>,
    },
    /// An axis number is out of range.
    #[error("{op}: axis {axis} is out of range for an array of rank {ndim}")]
    AxisOutOfRange {
        /// The operation.
        op: String,
        /// The axis asked for.
        axis: usize,
        /// The array's rank.
        ndim: usize,
    },
    /// A slice specification is invalid.
    #[error("bad slice: {0}")]
    BadSlice(String),
    /// The data given does not match the declared shape.
    #[error("{0}")]
    BadData(String),
    /// Computing the array failed.
    #[error("computing the array failed")]
    Compute(#[source] std::sync::Arc<brisk_graph::Error>),
}

impl From<brisk_graph::Error> for ArrayError {
    fn from(e: brisk_graph::Error) -> Self {
        Self::Compute(std::sync::Arc::new(e))
    }
}

/// `Result` with [`ArrayError`].
pub type Result<T, E = ArrayError> = std::result::Result<T, E>;

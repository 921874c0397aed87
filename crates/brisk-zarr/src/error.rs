//! Errors of Zarr I/O.

use brisk_graph::BoxError;

/// Why a Zarr operation failed. Every variant names the store location or array path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZarrError {
    /// The store could not be read or written.
    #[error("store `{location}`: {source}")]
    Store {
        /// Where the store is.
        location: String,
        /// The backend's error (an [`std::io::Error`], zarrs' `StorageError`, …).
        #[source]
        source: BoxError,
    },
    /// The storage layer refused a path or failed (the backend's error is the source): a
    /// path with `..`, NUL or an absolute segment is refused before anything is touched.
    #[error(transparent)]
    Storage(#[from] brisk_store::StoreError),
    /// A URL names a scheme this build cannot open.
    #[error(
        "unsupported store URL `{url}`: scheme `{scheme}` (supported: memory://, file://, plain paths, objmem://, objfile://)"
    )]
    UnsupportedUrl {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The array's stored element type is not the one asked for.
    #[error("array `{path}` holds {stored} values, not {requested}")]
    WrongType {
        /// The array's path.
        path: String,
        /// The stored type.
        stored: String,
        /// The requested type.
        requested: String,
    },
    /// There is no array (or group) at the path.
    #[error("no Zarr node at `{path}` in `{location}`")]
    NotFound {
        /// The store location.
        location: String,
        /// The path.
        path: String,
    },
    /// Something already exists at the path (pass `overwrite` to replace it).
    #[error("`{path}` already exists in `{location}` (use ArrayOptions::overwrite to replace it)")]
    AlreadyExists {
        /// The store location.
        location: String,
        /// The path.
        path: String,
    },
    /// The creation options are inconsistent.
    #[error("bad array options: {0}")]
    BadOptions(String),
    /// A write would not have exactly one writer per storage chunk (or shard).
    #[error("misaligned write into `{path}`: {reason}")]
    Misaligned {
        /// The array's path.
        path: String,
        /// Which axis and boundary.
        reason: String,
    },
    /// A chunk of an array opened with pinned reads ([`IoOptions::pinned`]) is no longer the
    /// version the array was opened with: the value being computed would mix data the keys
    /// do not describe, so the read fails instead (open the array again to read the new data).
    ///
    /// [`IoOptions::pinned`]: crate::IoOptions::pinned
    #[error("{0}")]
    Changed(Box<ChunkChanged>),
    /// zarrs rejected the metadata or an operation.
    #[error("zarr array `{path}`: {source}")]
    Zarr {
        /// The array's path.
        path: String,
        /// zarrs' error (metadata or codec), kept typed so it can be downcast.
        #[source]
        source: BoxError,
    },
    /// Reading or writing one chunk failed (inside a compute this is the failing task's
    /// error; find it with `brisk_graph::Error::find`-style downcasting of the task source).
    #[error("{action} chunk {chunk:?} of `{path}`: {source}")]
    Chunk {
        /// `reading` or `writing`.
        action: &'static str,
        /// The array's path.
        path: String,
        /// The chunk's (or shard's) grid indices.
        chunk: Vec<u64>,
        /// Why: the store's error, a codec's, or a size mismatch naming the chunk's key.
        #[source]
        source: BoxError,
    },
    /// Building or computing the lazy array failed.
    #[error(transparent)]
    Array(#[from] brisk_array::ArrayError),
    /// Running the write failed.
    #[error("writing `{path}` failed")]
    Compute {
        /// The array's path.
        path: String,
        /// The compute's error (names the failing chunk task).
        #[source]
        source: brisk_graph::Error,
    },
}

/// Which chunk changed under a pinned read, and how (see [`ZarrError::Changed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "chunk {chunk:?} (`{key}`) of `{path}` in `{location}` changed since the array was opened with pinned reads (then: {}; now: {}): open it again to read the new data",
    .pinned.as_deref().unwrap_or("absent"),
    .now.as_deref().unwrap_or("absent")
)]
#[non_exhaustive]
pub struct ChunkChanged {
    /// The store location.
    pub location: String,
    /// The array's path.
    pub path: String,
    /// The chunk's (or shard's) grid indices.
    pub chunk: Vec<u64>,
    /// Its store key.
    pub key: String,
    /// Its version when the array was opened (`None`: absent).
    pub pinned: Option<String>,
    /// Its version now (`None`: absent).
    pub now: Option<String>,
}

impl ZarrError {
    /// A [`ZarrError::Chunk`].
    pub(crate) fn chunk(
        action: &'static str,
        path: &str,
        chunk: &[u64],
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Chunk {
            action,
            path: path.to_owned(),
            chunk: chunk.to_vec(),
            source: source.into(),
        }
    }
}

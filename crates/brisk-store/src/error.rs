//! The one error type of the storage layer.

/// A boxed error source (an [`std::io::Error`], an [`object_store::Error`], …), kept typed so
/// that callers can downcast it and `source()` chains work.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A key or path that no store accepts (see [`validate_key`](crate::validate_key) and
    /// [`validate_path`](crate::validate_path)). Nothing was read, written or removed.
    #[error("invalid storage key `{key}`: {reason}")]
    BadKey {
        /// The key (control characters escaped).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The backend failed to read, write, list or remove.
    #[error("store `{location}`: {action} `{key}`: {source}")]
    Backend {
        /// Where the store is.
        location: String,
        /// What was attempted (`get`, `put`, `list`, …).
        action: &'static str,
        /// The key (or prefix).
        key: String,
        /// The backend's error ([`std::io::Error`] or [`object_store::Error`]).
        #[source]
        source: BoxError,
    },
    /// A size read from stored data is more than the reader accepts: the data is refused
    /// before anything of that size is allocated.
    #[error(
        "store `{location}`: `{key}` declares {what} of {size}, more than the limit of {limit}"
    )]
    TooLarge {
        /// Where the store is.
        location: String,
        /// The key (or file) whose data declared the size.
        key: String,
        /// What the size is of (`a value`, `a decompressed size`, …).
        what: &'static str,
        /// The declared size.
        size: u64,
        /// The most that is accepted.
        limit: u64,
    },
    /// A URL with a scheme no store handles (or whose cargo feature is off).
    #[error("unsupported store URL `{url}`: scheme `{scheme}` (supported: {supported})")]
    UnsupportedUrl {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
        /// The schemes this build supports.
        supported: &'static str,
    },
}

impl StoreError {
    /// A backend failure of `action` on `key` at `location`.
    pub fn backend(
        location: impl Into<String>,
        action: &'static str,
        key: &str,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            location: location.into(),
            action,
            key: shown(key),
            source: source.into(),
        }
    }

    /// Whether this is a [`StoreError::BadKey`].
    #[must_use]
    pub fn is_bad_key(&self) -> bool {
        matches!(self, Self::BadKey { .. })
    }
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A key as shown in errors: control characters escaped.
#[must_use]
pub fn shown(key: &str) -> String {
    key.chars().flat_map(char::escape_debug).collect()
}

//! Errors of stores, encoders and storages.

use std::fmt;

use brisk_store::BoxError;

/// A stage of the encoder chain, named in encode and decode errors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Pre-encoder number `index` (0-based, in encode order) called `name`.
    PreEncoder {
        /// Its position in the chain.
        index: usize,
        /// Its name.
        name: String,
    },
    /// The serializer (`json`, `yaml`, `msgpack`, `npy`, or `raw` when none is set).
    Serializer(&'static str),
    /// The compressor (`zstd`).
    Compressor(&'static str),
    /// The encrypter (`aes-256-gcm`).
    Encrypter,
    /// The CRC-32 that entries with neither compressor nor encrypter carry (the others are
    /// checked by zstd's content checksum or AES-GCM's tag).
    Integrity,
    /// Turning the decoded data into the task's result type.
    Value,
    /// A stage of the user's own (`Encoder::custom_serializer`, `custom_compressor`,
    /// `custom_encrypter`).
    Custom {
        /// Which stage: `serializer`, `compressor` or `encrypter`.
        stage: &'static str,
        /// The implementation's name.
        name: String,
    },
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PreEncoder { index, name } => write!(f, "pre-encoder {index} ({name})"),
            Self::Serializer(s) => write!(f, "serializer ({s})"),
            Self::Compressor(c) => write!(f, "compressor ({c})"),
            Self::Encrypter => f.write_str("encrypter (aes-256-gcm)"),
            Self::Integrity => f.write_str("integrity check (crc32)"),
            Self::Value => f.write_str("result type"),
            Self::Custom { stage, name } => write!(f, "{stage} ({name})"),
        }
    }
}

/// Why a checkpoint operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The store refused the key or failed (see [`brisk_store::StoreError`]: `BadKey`,
    /// `Backend` with the backend's own error as its source, `TooLarge`, `UnsupportedUrl`).
    #[error(transparent)]
    Store(#[from] brisk_store::StoreError),
    /// A value could not be encoded: nothing was stored.
    #[error("encoding `{key}` failed at the {stage}: {source}")]
    Encode {
        /// The storage key.
        key: String,
        /// The stage that failed.
        stage: Stage,
        /// Why: the stage's own error (serde's, zstd's, I/O, …), kept typed.
        #[source]
        source: BoxError,
    },
    /// A stored entry could not be decoded (garbage, truncated, another format, …). The entry
    /// is left in place.
    #[error("decoding `{key}` failed at the {stage}: {source}")]
    Decode {
        /// The storage key.
        key: String,
        /// The stage that rejected the entry.
        stage: Stage,
        /// Why: the stage's own error (serde's, zstd's, I/O, …), kept typed.
        #[source]
        source: BoxError,
    },
    /// Decryption failed: wrong key or passphrase, a modified entry, or an entry copied from
    /// another key.
    #[error(
        "`{key}` failed authentication (wrong key or passphrase, a modified entry, or an entry \
         stored under another key)"
    )]
    Authentication {
        /// The storage key.
        key: String,
    },
    /// The compute has no stored entry for a key it was told to load.
    #[error("`{key}` is not stored in any scope of this storage")]
    Missing {
        /// The storage key.
        key: String,
    },
    /// Encryption settings are invalid or do not match the store's.
    #[error("encryption: {0}")]
    Encryption(String),
}

impl CheckpointError {
    /// The checkpoint error inside `error` — a compute's `brisk_graph::Error::Cache`, an
    /// array's or a Zarr write's error wrapping it — found by walking its source chain, so
    /// the common case is matchable without downcasting by hand.
    #[must_use]
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<Self>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

/// `Result` with [`CheckpointError`].
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

pub(crate) use brisk_store::shown;

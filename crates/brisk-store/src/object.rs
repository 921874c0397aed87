//! `object_store` backends: what drives their futures, and building them from URLs.

use std::sync::Arc;

/// What drives `object_store`'s futures to completion on the calling thread.
#[derive(Debug, Clone)]
pub enum Driver {
    /// The calling thread with no runtime (the in-memory and local backends need none; the
    /// local one runs its blocking I/O inline outside a Tokio runtime).
    CallerThread,
    /// A current-thread Tokio runtime, entered by each calling thread in turn (the HTTP
    /// backends need Tokio's reactor; no thread is spawned).
    #[cfg(feature = "cloud")]
    Tokio(Arc<tokio::runtime::Runtime>),
}

impl Driver {
    /// Runs `future` to completion on the calling thread.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match self {
            Self::CallerThread => futures::executor::block_on(future),
            #[cfg(feature = "cloud")]
            Self::Tokio(runtime) => runtime.block_on(future),
        }
    }
}

/// An object store opened from a URL: the backend (at the bucket's root), the key prefix the
/// URL names, and what drives it.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The backend, at the bucket's (or container's) root.
    pub backend: Arc<dyn object_store::ObjectStore>,
    /// The path inside the bucket that the URL names (no leading or trailing `/`; `""` for
    /// the root).
    pub prefix: String,
    /// What drives the backend's futures.
    pub driver: Driver,
}

impl Bucket {
    /// The backend with its keys under [`Bucket::prefix`].
    #[must_use]
    pub fn prefixed(&self) -> Arc<dyn object_store::ObjectStore> {
        if self.prefix.is_empty() {
            Arc::clone(&self.backend)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                Arc::clone(&self.backend),
                self.prefix.as_str(),
            ))
        }
    }
}

/// The cloud URL schemes this build supports.
pub const CLOUD_SCHEMES: &[&str] = &[
    #[cfg(feature = "s3")]
    "s3",
    #[cfg(feature = "azure")]
    "az",
    #[cfg(feature = "azure")]
    "azure",
    #[cfg(feature = "azure")]
    "abfs",
    #[cfg(feature = "azure")]
    "abfss",
    #[cfg(feature = "gcs")]
    "gs",
];

/// The URL schemes [`from_url`](crate::from_url) supports (cloud schemes need their features).
pub const SCHEMES: &str = "memory://, file://, a plain path, objmem://, objfile://, and with \
                           their features s3:// (`s3`), az:// (`azure`), gs:// (`gcs`)";

/// Opens the cloud object store a URL names, configured from the provider's standard
/// environment variables: `s3://bucket/prefix` (feature `s3`, `AWS_*`),
/// `az://container/prefix` (feature `azure`, `AZURE_STORAGE_*`;
/// `AZURE_STORAGE_USE_EMULATOR=true` for Azurite), `gs://bucket/prefix` (feature `gcs`,
/// `GOOGLE_*`). Requests run on a current-thread Tokio runtime that each calling thread
/// enters in turn.
///
/// # Errors
/// [`StoreError::UnsupportedUrl`](crate::StoreError::UnsupportedUrl) for a scheme whose feature is off;
/// [`StoreError::Backend`](crate::StoreError::Backend) when the URL, its path or the
/// configuration is invalid.
#[cfg(feature = "cloud")]
pub fn open_bucket(url: &str) -> crate::error::Result<Bucket> {
    use crate::error::StoreError;
    let err = |e: crate::error::BoxError| StoreError::backend(url, "open", "", e);
    let parsed = url::Url::parse(url).map_err(|e| err(e.into()))?;
    let backend: Arc<dyn object_store::ObjectStore> = match parsed.scheme() {
        #[cfg(feature = "s3")]
        "s3" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| err(e.into()))?,
        ),
        #[cfg(feature = "azure")]
        "az" | "azure" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| err(e.into()))?,
        ),
        #[cfg(feature = "gcs")]
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| err(e.into()))?,
        ),
        other => {
            return Err(StoreError::UnsupportedUrl {
                url: url.to_owned(),
                scheme: other.to_owned(),
                supported: SCHEMES,
            });
        }
    };
    // The prefix follows the one validation of every key and path.
    let prefix = crate::key::validate_path(parsed.path())?.to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(e.into()))?;
    Ok(Bucket {
        backend,
        prefix,
        driver: Driver::Tokio(Arc::new(runtime)),
    })
}

/// Whether `scheme` is a cloud scheme this build supports.
#[must_use]
pub fn is_cloud_scheme(scheme: &str) -> bool {
    CLOUD_SCHEMES.contains(&scheme)
}

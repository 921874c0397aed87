//! Key→bytes stores: memory, a local directory, and `object_store` backends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use object_store::ObjectStoreExt as _;

use crate::atomic::AtomicWriter;
use crate::error::{BoxError, Result, StoreError};
use crate::key::validate_key;
use crate::object::{Driver, SCHEMES};

/// A key→bytes store. Keys are `/`-separated relative paths checked by [`validate_key`]
/// (every backend refuses the same keys, before touching anything). Each `put` replaces a
/// whole value atomically: a reader sees the old value or the new one, never a part.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the store is (a path, a URL, `memory://#N`), for errors.
    fn location(&self) -> String;
    /// The value of `key`, or `None` if absent.
    ///
    /// # Errors
    /// [`StoreError::BadKey`], [`StoreError::Backend`].
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores `value` under `key`, replacing any value atomically.
    ///
    /// # Errors
    /// [`StoreError::BadKey`], [`StoreError::Backend`].
    fn put(&self, key: &str, value: &[u8]) -> Result<()>;
    /// Removes `key` (absent keys are not an error).
    ///
    /// # Errors
    /// [`StoreError::BadKey`], [`StoreError::Backend`].
    fn delete(&self, key: &str) -> Result<()>;
    /// Whether `key` has a value.
    ///
    /// # Errors
    /// [`StoreError::BadKey`], [`StoreError::Backend`].
    fn contains(&self, key: &str) -> Result<bool>;
    /// The keys starting with `prefix` (plain text prefix, `""` for all), sorted.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// The entries whose keys start with `prefix`, sorted by key, with their sizes and (where
    /// the backend records it) when they were written. The default reads every value; the
    /// built-in stores ask their metadata instead.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn list_entries(&self, prefix: &str) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for key in self.list(prefix)? {
            if let Some(v) = self.get(&key)? {
                out.push(Entry {
                    key,
                    size: v.len() as u64,
                    written: None,
                });
            }
        }
        Ok(out)
    }
}

/// One stored entry, as [`Store::list_entries`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written, where the backend records it (file modification time, object
    /// last-modified, the time of the `put` in memory).
    pub written: Option<std::time::SystemTime>,
}

/// A store in memory (shared by clones). Each store has its own location `memory://#N`.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    map: Arc<RwLock<BTreeMap<String, Stored>>>,
    id: u64,
}

/// A value in a [`MemoryStore`] and when it was put.
type Stored = (Arc<[u8]>, std::time::SystemTime);

static MEMORY_IDS: AtomicU64 = AtomicU64::new(1);

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            map: Arc::default(),
            id: MEMORY_IDS.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// A lock held by a thread that panicked.
#[derive(Debug, thiserror::Error)]
#[error("a thread panicked while holding the store")]
struct Poisoned;

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn poisoned(&self, action: &'static str, key: &str) -> StoreError {
        StoreError::backend(self.location(), action, key, Poisoned)
    }
}

impl Store for MemoryStore {
    fn location(&self) -> String {
        format!("memory://#{}", self.id)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key(key)?;
        let map = self.map.read().map_err(|_| self.poisoned("get", key))?;
        Ok(map.get(key).map(|(v, _)| v.to_vec()))
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        validate_key(key)?;
        let mut map = self.map.write().map_err(|_| self.poisoned("put", key))?;
        map.insert(key.to_owned(), (value.into(), std::time::SystemTime::now()));
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let mut map = self.map.write().map_err(|_| self.poisoned("delete", key))?;
        map.remove(key);
        Ok(())
    }
    fn contains(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let map = self
            .map
            .read()
            .map_err(|_| self.poisoned("contains", key))?;
        Ok(map.contains_key(key))
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let map = self.map.read().map_err(|_| self.poisoned("list", prefix))?;
        Ok(map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }
    fn list_entries(&self, prefix: &str) -> Result<Vec<Entry>> {
        let map = self.map.read().map_err(|_| self.poisoned("list", prefix))?;
        Ok(map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, t))| Entry {
                key: k.clone(),
                size: v.len() as u64,
                written: Some(*t),
            })
            .collect())
    }
}

/// A store in a local directory: key `double/3d00…` is the file `<root>/double/3d00…`.
///
/// A `put` writes a hidden temporary file next to the target, `fsync`s it, renames it into
/// place and `fsync`s the directory: a crash (of the process or the machine) leaves the old
/// entry or the new one, never a readable part. Temporary files are hidden from
/// [`list`](Store::list); those of writers that died are removed by the next `put` in their
/// directory, and all of them by [`DirStore::clean`].
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    writer: Arc<AtomicWriter>,
}

impl DirStore {
    /// A store rooted at `root` (created if missing).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the directory cannot be created.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root)
            .map_err(|e| StoreError::backend(root.display().to_string(), "create", "", e))?;
        Ok(Self {
            root,
            writer: Arc::new(AtomicWriter::new(true)),
        })
    }

    /// Skips the `fsync`s: a process crash still never leaves a partial entry, but a power
    /// loss may lose recent entries (or leave empty ones, which fail their integrity check).
    /// Faster for scratch stores.
    #[must_use]
    pub fn without_fsync(mut self) -> Self {
        self.writer = Arc::new(AtomicWriter::new(false));
        self
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn err(&self, action: &'static str, key: &str, e: impl Into<BoxError>) -> StoreError {
        StoreError::backend(self.location(), action, key, e)
    }

    /// Removes every temporary file under the root, also those of writers that may still be
    /// running (call it when none is); returns how many.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the directory cannot be walked.
    pub fn clean(&self) -> Result<usize> {
        crate::atomic::clean_all_temps(&self.root).map_err(|e| self.err("clean", "", e))
    }
}

impl Store for DirStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("get", key, e)),
        }
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        self.writer
            .write(&path, value)
            .map_err(|e| self.err("put", key, e))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }

    fn contains(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err("contains", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("list", prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.err("list", prefix, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue; // temporary files and the store's own records
                }
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                // Only descend where keys with the prefix can be.
                if !(key.starts_with(prefix) || prefix.starts_with(&key)) {
                    continue;
                }
                let ty = entry.file_type().map_err(|e| self.err("list", prefix, e))?;
                if ty.is_dir() {
                    stack.push((entry.path(), key));
                } else if ty.is_file() && key.starts_with(prefix) {
                    out.push(key);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn list_entries(&self, prefix: &str) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for key in self.list(prefix)? {
            match std::fs::metadata(self.root.join(&key)) {
                Ok(m) => out.push(Entry {
                    key,
                    size: m.len(),
                    written: m.modified().ok(),
                }),
                // Removed since it was listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err("list", &key, e)),
            }
        }
        Ok(out)
    }
}

/// A store on any `object_store` backend, under an optional key prefix. Each entry is one
/// `put`, which object stores apply atomically.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    store: Arc<dyn object_store::ObjectStore>,
    prefix: object_store::path::Path,
    location: String,
    driver: Driver,
}

impl ObjectStore {
    /// A store on `store` whose keys live under `prefix` (`""` for the root). The backend
    /// must not need a Tokio runtime (the in-memory and local ones do not); see
    /// `ObjectStore::cloud` (features `s3`, `azure`, `gcs`) for the cloud services.
    #[must_use]
    pub fn new(
        store: Arc<dyn object_store::ObjectStore>,
        prefix: &str,
        location: impl Into<String>,
    ) -> Self {
        Self {
            store,
            prefix: object_store::path::Path::from(prefix.trim_matches('/')),
            location: location.into(),
            driver: Driver::CallerThread,
        }
    }

    /// `object_store`'s in-memory backend.
    #[must_use]
    pub fn memory() -> Self {
        Self::new(
            Arc::new(object_store::memory::InMemory::new()),
            "",
            "objmem://",
        )
    }

    /// `object_store`'s local-filesystem backend rooted at `root` (created if missing).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the directory cannot be created.
    pub fn local(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let location = format!("objfile://{}", root.display());
        std::fs::create_dir_all(root)
            .map_err(|e| StoreError::backend(location.as_str(), "create", "", e))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|e| StoreError::backend(location.as_str(), "create", "", e))?;
        Ok(Self::new(Arc::new(fs), "", location))
    }

    /// An S3 (or S3-compatible) bucket from a URL `s3://bucket/prefix`, configured from the
    /// standard `AWS_*` environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, …).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL or the configuration is invalid.
    #[cfg(feature = "s3")]
    pub fn s3(url: &str) -> Result<Self> {
        Self::cloud(url)
    }

    /// A cloud object store from a URL (see [`open_bucket`](crate::open_bucket)).
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`] for a scheme whose feature is off;
    /// [`StoreError::Backend`] when the URL or the configuration is invalid.
    #[cfg(feature = "cloud")]
    pub fn cloud(url: &str) -> Result<Self> {
        let bucket = crate::object::open_bucket(url)?;
        let mut store = Self::new(bucket.backend, &bucket.prefix, url);
        store.driver = bucket.driver;
        Ok(store)
    }

    fn path(&self, key: &str) -> Result<object_store::path::Path> {
        validate_key(key)?;
        Ok(if self.prefix.as_ref().is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{}/{key}", self.prefix))
        })
    }

    fn err(&self, action: &'static str, key: &str, e: impl Into<BoxError>) -> StoreError {
        StoreError::backend(self.location.as_str(), action, key, e)
    }
}

impl Store for ObjectStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        self.driver.block_on(async {
            match self.store.get(&path).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map(|b| Some(b.to_vec()))
                    .map_err(|e| self.err("get", key, e)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err("get", key, e)),
            }
        })
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let payload = object_store::PutPayload::from(value.to_vec());
        self.driver
            .block_on(self.store.put(&path, payload))
            .map(|_| ())
            .map_err(|e| self.err("put", key, e))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.driver.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }

    fn contains(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        match self.driver.block_on(self.store.head(&path)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("contains", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .list_entries(prefix)?
            .into_iter()
            .map(|e| e.key)
            .collect())
    }

    fn list_entries(&self, prefix: &str) -> Result<Vec<Entry>> {
        use futures::TryStreamExt as _;
        use object_store::ObjectStore as _;
        let base = if self.prefix.as_ref().is_empty() {
            None
        } else {
            Some(&self.prefix)
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .driver
            .block_on(self.store.list(base).try_collect())
            .map_err(|e| self.err("list", prefix, e))?;
        let strip = if self.prefix.as_ref().is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut entries: Vec<Entry> = metas
            .into_iter()
            .filter_map(|m| {
                let k = m.location.as_ref().strip_prefix(strip.as_str())?.to_owned();
                (k.starts_with(prefix) && validate_key(&k).is_ok()).then(|| Entry {
                    key: k,
                    size: m.size,
                    written: Some(m.last_modified.into()),
                })
            })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }
}

/// A store from a URL, as dask-checkpoint's `Storage.from_fsspec` takes a string:
/// `memory://`, a plain path or `file:///path` (a [`DirStore`]), `objmem://` and
/// `objfile:///path` (`object_store` backends), and with their features `s3://bucket/prefix`,
/// `az://container/prefix` and `gs://bucket/prefix` (see `ObjectStore::cloud`).
///
/// # Errors
/// [`StoreError::UnsupportedUrl`] naming the scheme; creation errors of the store.
pub fn from_url(url: &str) -> Result<Arc<dyn Store>> {
    match url.split_once("://") {
        None => Ok(Arc::new(DirStore::new(url)?)),
        Some(("memory", "")) => Ok(Arc::new(MemoryStore::new())),
        Some(("file", path)) => Ok(Arc::new(DirStore::new(path)?)),
        Some(("objmem", "")) => Ok(Arc::new(ObjectStore::memory())),
        Some(("objfile", path)) => Ok(Arc::new(ObjectStore::local(path)?)),
        #[cfg(feature = "cloud")]
        Some((scheme, _)) if crate::object::is_cloud_scheme(scheme) => {
            Ok(Arc::new(ObjectStore::cloud(url)?))
        }
        Some((scheme, _)) => Err(StoreError::UnsupportedUrl {
            url: url.to_owned(),
            scheme: scheme.to_owned(),
            supported: SCHEMES,
        }),
    }
}

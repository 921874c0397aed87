//! Key→bytes stores: memory, a local directory, and `object_store` backends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use object_store::ObjectStoreExt as _;

use crate::error::{CheckpointError, Result, shown};

/// A key→bytes store. Keys are `/`-separated relative paths checked by [`validate_key`]
/// (every backend refuses the same keys). Each `put` replaces a whole value atomically: a
/// reader sees the old value or the new one, never a part.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the store is (a path, a URL, `memory://`), for errors.
    fn location(&self) -> String;
    /// The value of `key`, or `None` if absent.
    ///
    /// # Errors
    /// [`CheckpointError::BadKey`], [`CheckpointError::Store`].
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores `value` under `key`, replacing any value atomically.
    ///
    /// # Errors
    /// [`CheckpointError::BadKey`], [`CheckpointError::Store`].
    fn put(&self, key: &str, value: &[u8]) -> Result<()>;
    /// Removes `key` (absent keys are not an error).
    ///
    /// # Errors
    /// [`CheckpointError::BadKey`], [`CheckpointError::Store`].
    fn delete(&self, key: &str) -> Result<()>;
    /// Whether `key` has a value.
    ///
    /// # Errors
    /// [`CheckpointError::BadKey`], [`CheckpointError::Store`].
    fn contains(&self, key: &str) -> Result<bool>;
    /// The keys starting with `prefix` (plain text prefix, `""` for all), sorted.
    ///
    /// # Errors
    /// [`CheckpointError::Store`].
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
}

/// Checks a storage key: non-empty, relative, `/`-separated segments that are non-empty, not
/// `.` or `..`, do not start with `.` (reserved for the stores' own files), and contain no
/// backslash or control character (NUL included). A key that passes can never name a path
/// outside a directory store's root.
///
/// # Errors
/// [`CheckpointError::BadKey`] saying what is wrong.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(CheckpointError::BadKey {
            key: shown(key),
            reason,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.starts_with('/') {
        return bad("it is absolute (starts with `/`)");
    }
    if key.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if key.contains('\\') {
        return bad("it contains a backslash");
    }
    if key.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad("it has an empty segment (`//` or a trailing `/`)"),
            "." | ".." => return bad("it has a `.` or `..` segment"),
            s if s.starts_with('.') => {
                return bad("a segment starts with `.` (reserved for the store's own files)");
            }
            _ => {}
        }
    }
    Ok(())
}

fn store_err(
    location: &str,
    action: &'static str,
    key: &str,
    e: &dyn std::fmt::Display,
) -> CheckpointError {
    CheckpointError::Store {
        location: location.to_owned(),
        action,
        key: shown(key),
        message: e.to_string(),
    }
}

/// A store in memory (shared by clones). Each store has its own location `memory://#N`.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    map: Arc<RwLock<BTreeMap<String, Arc<[u8]>>>>,
    id: u64,
}

static MEMORY_IDS: AtomicU64 = AtomicU64::new(1);

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            map: Arc::default(),
            id: MEMORY_IDS.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn poisoned(&self, action: &'static str, key: &str) -> CheckpointError {
        let why = "a thread panicked while holding the store";
        store_err(&self.location(), action, key, &why)
    }
}

impl Store for MemoryStore {
    fn location(&self) -> String {
        format!("memory://#{}", self.id)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key(key)?;
        let map = self.map.read().map_err(|_| self.poisoned("get", key))?;
        Ok(map.get(key).map(|v| v.to_vec()))
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        validate_key(key)?;
        let mut map = self.map.write().map_err(|_| self.poisoned("put", key))?;
        map.insert(key.to_owned(), value.into());
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
}

static TMP: AtomicU64 = AtomicU64::new(0);

/// A store in a local directory: key `double/3d00…` is the file `<root>/double/3d00…`.
///
/// A `put` writes a hidden temporary file next to the target, `fsync`s it, renames it into
/// place and `fsync`s the directory: a crash (of the process or the machine) leaves the old
/// entry or the new one, never a readable part. Temporary files left by a crash are hidden
/// from [`list`](Store::list) and removed by [`DirStore::clean`].
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    durable: bool,
}

impl DirStore {
    /// A store rooted at `root` (created if missing).
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when the directory cannot be created.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root)
            .map_err(|e| store_err(&root.display().to_string(), "create", "", &e))?;
        Ok(Self {
            root,
            durable: true,
        })
    }

    /// Skips the `fsync`s: a process crash still never leaves a partial entry, but a power
    /// loss may lose recent entries (or leave empty ones, which fail to decode). Faster for
    /// scratch stores.
    #[must_use]
    pub fn without_fsync(mut self) -> Self {
        self.durable = false;
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

    fn err(&self, action: &'static str, key: &str, e: &dyn std::fmt::Display) -> CheckpointError {
        store_err(&self.location(), action, key, e)
    }

    /// Removes temporary files left by crashed writers; returns how many.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when the directory cannot be walked.
    pub fn clean(&self) -> Result<usize> {
        let mut removed = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| self.err("clean", "", &e))?;
            for entry in entries {
                let entry = entry.map_err(|e| self.err("clean", "", &e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let ty = entry.file_type().map_err(|e| self.err("clean", "", &e))?;
                if ty.is_dir() && !name.starts_with('.') {
                    stack.push(entry.path());
                } else if ty.is_file() && name.starts_with('.') && name.contains(".brisk-tmp-") {
                    std::fs::remove_file(entry.path()).map_err(|e| self.err("clean", "", &e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
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
            Err(e) if path.is_dir() => Err(self.err("get", key, &format!("a directory: {e}"))),
            Err(e) => Err(self.err("get", key, &e)),
        }
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let path = self.path(key)?;
        let dir = path
            .parent()
            .ok_or_else(|| self.err("put", key, &"no parent directory"))?;
        std::fs::create_dir_all(dir).map_err(|e| self.err("put", key, &e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = TMP.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.brisk-tmp-{}-{n}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(value)?;
            if self.durable {
                f.sync_all()?;
            }
            drop(f);
            std::fs::rename(&tmp, &path)?;
            if self.durable {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.err("put", key, &e));
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", key, &e)),
        }
    }

    fn contains(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err("contains", key, &e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("list", prefix, &e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.err("list", prefix, &e))?;
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
                let ty = entry
                    .file_type()
                    .map_err(|e| self.err("list", prefix, &e))?;
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
}

/// How an [`ObjectStore`] drives `object_store`'s futures.
#[derive(Debug)]
enum Driver {
    /// On the calling thread, with no runtime (the in-memory and local backends).
    CallerThread,
    /// On a current-thread Tokio runtime, entered by each calling thread in turn (the HTTP
    /// backends need Tokio's reactor; no thread is spawned).
    #[cfg(feature = "cloud")]
    Tokio(tokio::runtime::Runtime),
}

/// A store on any `object_store` backend, under an optional key prefix. Each entry is one
/// `put`, which object stores apply atomically.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    store: Arc<dyn object_store::ObjectStore>,
    prefix: object_store::path::Path,
    location: String,
    driver: Arc<Driver>,
}

impl ObjectStore {
    /// A store on `store` whose keys live under `prefix` (`""` for the root). The backend
    /// must not need a Tokio runtime (the in-memory and local ones do not); see
    /// `ObjectStore::s3` (feature `s3`) for S3.
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
            driver: Arc::new(Driver::CallerThread),
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
    /// [`CheckpointError::Store`] when the directory cannot be created.
    pub fn local(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let location = format!("objfile://{}", root.display());
        std::fs::create_dir_all(root).map_err(|e| store_err(&location, "create", "", &e))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|e| store_err(&location, "create", "", &e))?;
        Ok(Self::new(Arc::new(fs), "", location))
    }

    /// An S3 (or S3-compatible) bucket from a URL `s3://bucket/prefix`, configured from the
    /// standard `AWS_*` environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, …).
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when the URL or the configuration is invalid.
    #[cfg(feature = "s3")]
    pub fn s3(url: &str) -> Result<Self> {
        Self::cloud(url)
    }

    /// A cloud object store from a URL, configured from the provider's standard environment
    /// variables: `s3://bucket/prefix` (feature `s3`, `AWS_*`), `az://container/prefix`
    /// (feature `azure`, `AZURE_STORAGE_*`; `AZURE_STORAGE_USE_EMULATOR=true` for Azurite),
    /// `gs://bucket/prefix` (feature `gcs`, `GOOGLE_*`). Requests run on a current-thread
    /// Tokio runtime that each calling thread enters in turn (no thread is spawned).
    ///
    /// # Errors
    /// [`CheckpointError::UnsupportedUrl`] for a scheme whose feature is off;
    /// [`CheckpointError::Store`] when the URL or the configuration is invalid.
    #[cfg(feature = "cloud")]
    pub fn cloud(url: &str) -> Result<Self> {
        let err = |e: &dyn std::fmt::Display| store_err(url, "open", "", e);
        let parsed = url::Url::parse(url).map_err(|e| err(&e))?;
        let backend: Arc<dyn object_store::ObjectStore> = match parsed.scheme() {
            #[cfg(feature = "s3")]
            "s3" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| err(&e))?,
            ),
            #[cfg(feature = "azure")]
            "az" | "azure" | "abfs" | "abfss" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| err(&e))?,
            ),
            #[cfg(feature = "gcs")]
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| err(&e))?,
            ),
            other => {
                return Err(CheckpointError::UnsupportedUrl {
                    url: url.to_owned(),
                    scheme: other.to_owned(),
                    supported: SCHEMES,
                });
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(&e))?;
        let mut store = Self::new(backend, parsed.path(), url);
        store.driver = Arc::new(Driver::Tokio(runtime));
        Ok(store)
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match self.driver.as_ref() {
            Driver::CallerThread => futures::executor::block_on(f),
            #[cfg(feature = "cloud")]
            Driver::Tokio(rt) => rt.block_on(f),
        }
    }

    fn path(&self, key: &str) -> Result<object_store::path::Path> {
        validate_key(key)?;
        Ok(if self.prefix.as_ref().is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{}/{key}", self.prefix))
        })
    }

    fn err(&self, action: &'static str, key: &str, e: &dyn std::fmt::Display) -> CheckpointError {
        store_err(&self.location, action, key, e)
    }
}

impl Store for ObjectStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        self.block_on(async {
            match self.store.get(&path).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map(|b| Some(b.to_vec()))
                    .map_err(|e| self.err("get", key, &e)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err("get", key, &e)),
            }
        })
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let payload = object_store::PutPayload::from(value.to_vec());
        self.block_on(self.store.put(&path, payload))
            .map(|_| ())
            .map_err(|e| self.err("put", key, &e))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", key, &e)),
        }
    }

    fn contains(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        match self.block_on(self.store.head(&path)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("contains", key, &e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt as _;
        use object_store::ObjectStore as _;
        let base = if self.prefix.as_ref().is_empty() {
            None
        } else {
            Some(&self.prefix)
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .block_on(self.store.list(base).try_collect())
            .map_err(|e| self.err("list", prefix, &e))?;
        let strip = if self.prefix.as_ref().is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut keys: Vec<String> = metas
            .into_iter()
            .filter_map(|m| {
                let k = m.location.as_ref().strip_prefix(strip.as_str())?.to_owned();
                (k.starts_with(prefix) && validate_key(&k).is_ok()).then_some(k)
            })
            .collect();
        keys.sort();
        Ok(keys)
    }
}

/// The URL schemes [`from_url`] supports (cloud schemes need their cargo features).
const SCHEMES: &str = "memory://, file://, a plain path, objmem://, objfile://, and with their \
                       features s3:// (`s3`), az:// (`azure`), gs:// (`gcs`)";

/// A store from a URL, as dask-checkpoint's `Storage.from_fsspec` takes a string:
/// `memory://`, a plain path or `file:///path` (a [`DirStore`]), `objmem://` and
/// `objfile:///path` (`object_store` backends), and with their features `s3://bucket/prefix`,
/// `az://container/prefix` and `gs://bucket/prefix` (see `ObjectStore::cloud`, behind those features).
///
/// # Errors
/// [`CheckpointError::UnsupportedUrl`] naming the scheme; creation errors of the store.
pub fn from_url(url: &str) -> Result<Arc<dyn Store>> {
    match url.split_once("://") {
        None => Ok(Arc::new(DirStore::new(url)?)),
        Some(("memory", "")) => Ok(Arc::new(MemoryStore::new())),
        Some(("file", path)) => Ok(Arc::new(DirStore::new(path)?)),
        Some(("objmem", "")) => Ok(Arc::new(ObjectStore::memory())),
        Some(("objfile", path)) => Ok(Arc::new(ObjectStore::local(path)?)),
        #[cfg(feature = "cloud")]
        Some(("s3" | "az" | "azure" | "abfs" | "abfss" | "gs", _)) => {
            Ok(Arc::new(ObjectStore::cloud(url)?))
        }
        Some((scheme, _)) => Err(CheckpointError::UnsupportedUrl {
            url: url.to_owned(),
            scheme: scheme.to_owned(),
            supported: SCHEMES,
        }),
    }
}

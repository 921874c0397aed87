//! `Storage`: the checkpoint cache a compute is given explicitly.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, LazyLock, Mutex};

use brisk_graph::{BoxError, Cache, Checkpoint, ComputeOptions, Delayed, Value};

use crate::codec::Encoder;
use crate::error::{CheckpointError, Result, shown};
use brisk_store::{Store, from_url};

/// Whether a scope saves results or only loads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Load stored results and save new ones (the default).
    #[default]
    LoadSave,
    /// Load stored results, never write.
    LoadOnly,
}

/// What to do with a stored entry that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CorruptPolicy {
    /// Fail the compute with an error naming the key and the stage that rejected the entry;
    /// the entry is left in place for inspection (the default).
    #[default]
    Fail,
    /// Check entries while the graph is built; an entry that does not decode is treated as
    /// absent: the task (and what it needs) runs and its result overwrites the entry.
    RecomputeOnCorrupt,
}

/// One scope: a chain of stores tried in order, saving to the first, with the encoder its
/// entries are written and read with.
#[derive(Debug, Clone)]
struct Scope {
    stores: Vec<Arc<dyn Store>>,
    mode: Mode,
    encoder: Encoder,
}

/// Where checkpointed results are loaded from and saved to, attached **explicitly** to a
/// compute with [`Storage::options`] (or [`Storage::attach`]): nothing is global, and a
/// compute without it neither loads nor saves.
///
/// Only values marked for checkpointing (`#[task(save)]`, `Delayed::checkpointed`) are
/// looked up; a stored one is loaded and everything upstream of it is culled from the graph.
///
/// A save stores a value only if it loads back identical through the scope's encoder
/// ([`Encoder::encode_exact`]); otherwise the compute fails with `brisk_graph::Error::Cache`
/// (action `Save`) naming the task's key, the serializer and what it cannot represent, and
/// nothing is stored.
///
/// ## Combining stores
///
/// | built with | loads try | saves go to |
/// |---|---|---|
/// | `Storage::new(a)` | `a` | `a` |
/// | `Storage::load_only(a)` | `a` | nowhere |
/// | `Storage::chain([a, b])` | `a`, then `b` | `a` |
/// | `Storage::chain([a, b]).mode(LoadOnly)` | `a`, then `b` | nowhere |
/// | `inner.nested_in(&outer)` | `inner`'s stores, then `outer`'s | the innermost scope that saves: `inner`, or `outer` if `inner` is load-only |
/// | `inner` alone (not nested) | `inner` only: outer scopes are hidden | `inner` |
///
/// The first hit wins, and a loaded value is never copied into another scope.
///
/// ## Concurrency
///
/// Clones share everything. Concurrent computes in one process that need the same missing
/// key (same save store, same key) run it once: the others wait for it and load its result.
#[derive(Clone)]
pub struct Storage {
    scopes: Vec<Scope>,
    policy: CorruptPolicy,
    /// Values decoded while checking entries (under [`CorruptPolicy::RecomputeOnCorrupt`]),
    /// handed to the load that follows.
    checked: Arc<Mutex<HashMap<String, Value>>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scopes: Vec<(Vec<String>, Mode, &Encoder)> = self
            .scopes
            .iter()
            .map(|s| {
                let stores = s.stores.iter().map(|x| x.location()).collect();
                (stores, s.mode, &s.encoder)
            })
            .collect();
        f.debug_struct("Storage")
            .field("scopes", &scopes)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Storage {
    fn from_scope(scope: Scope) -> Self {
        Self {
            scopes: vec![scope],
            policy: CorruptPolicy::default(),
            checked: Arc::default(),
        }
    }

    /// Loads from and saves to `store`.
    pub fn new(store: impl Store + 'static) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Loads from and saves to a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Self::from_scope(Scope {
            stores: vec![store],
            mode: Mode::LoadSave,
            encoder: Encoder::default(),
        })
    }

    /// Loads from `store` and never writes to it.
    pub fn load_only(store: impl Store + 'static) -> Self {
        Self::new(store).mode(Mode::LoadOnly)
    }

    /// A store from a URL (see [`from_url`](crate::from_url)): `memory://`, a path,
    /// `file://…`, `objmem://`, `objfile://…`, `s3://bucket/prefix` (feature `s3`).
    ///
    /// # Errors
    /// [`CheckpointError::Store`] (`StoreError::UnsupportedUrl` naming the scheme); store creation errors.
    pub fn from_url(url: &str) -> Result<Self> {
        Ok(Self::from_arc(from_url(url)?))
    }

    /// One scope over several stores: loads try them in order, saves go to the first. A
    /// chain of no stores keeps its saves in memory (as dask-checkpoint's `from_chain()`),
    /// never silently nowhere.
    pub fn chain(stores: impl IntoIterator<Item = Arc<dyn Store>>) -> Self {
        let mut stores: Vec<Arc<dyn Store>> = stores.into_iter().collect();
        if stores.is_empty() {
            stores.push(Arc::new(brisk_store::MemoryStore::new()));
        }
        Self::from_scope(Scope {
            stores,
            mode: Mode::LoadSave,
            encoder: Encoder::default(),
        })
    }

    /// Sets the mode of this storage's own (innermost) scope.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        if let Some(s) = self.scopes.first_mut() {
            s.mode = mode;
        }
        self
    }

    /// This storage as an inner scope of `outer`: loads try this storage's scopes first,
    /// then `outer`'s; saves go to the innermost scope that saves. Every scope keeps its own
    /// encoder (a store's entries are always read with the encoder they were written with);
    /// the corrupt-entry policy is this storage's.
    #[must_use]
    pub fn nested_in(&self, outer: &Storage) -> Self {
        let mut s = self.clone();
        s.scopes.extend(outer.scopes.iter().cloned());
        s
    }

    /// The encoder of this storage's own (innermost) scope, for checkpoints that do not set
    /// their own (JSON + zstd by default). Scopes nested around it keep theirs.
    #[must_use]
    pub fn encoder(mut self, encoder: Encoder) -> Self {
        if let Some(s) = self.scopes.first_mut() {
            s.encoder = encoder;
        }
        self
    }

    /// What to do with entries that do not decode.
    #[must_use]
    pub fn policy(mut self, policy: CorruptPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Compute options with this storage attached (and nothing else).
    pub fn options(&self) -> ComputeOptions {
        self.attach(ComputeOptions::new())
    }

    /// `options` with this storage attached.
    pub fn attach(&self, options: ComputeOptions) -> ComputeOptions {
        options.cache(Arc::new(self.clone()))
    }

    /// Whether a result for `value` is stored in any scope, without computing anything.
    ///
    /// # Errors
    /// Store errors.
    pub fn contains<T>(&self, value: &Delayed<T>) -> Result<bool> {
        self.find(&value.storage_key()).map(|hit| hit.is_some())
    }

    /// The store holding `key`: the first hit in load order.
    fn find(&self, key: &str) -> Result<Option<&Arc<dyn Store>>> {
        check_key(key)?;
        for scope in &self.scopes {
            for store in &scope.stores {
                if store.contains(key)? {
                    return Ok(Some(store));
                }
            }
        }
        Ok(None)
    }

    /// The scope saves go to, if any.
    fn save_scope(&self) -> Option<&Scope> {
        self.scopes
            .iter()
            .find(|s| s.mode == Mode::LoadSave && !s.stores.is_empty())
    }

    /// The store saves go to, if any.
    fn save_target(&self) -> Option<&Arc<dyn Store>> {
        self.save_scope().and_then(|s| s.stores.first())
    }

    /// The encoder of `entry` in `scope`: the task's own (`save_with`), else the scope's.
    fn encoder_for<'a>(entry: &Checkpoint<'a>, scope: &'a Scope) -> &'a Encoder {
        entry
            .options
            .and_then(|o| o.downcast_ref::<Encoder>())
            .unwrap_or(&scope.encoder)
    }

    /// Loads and decodes `key` from the first store that has it, with that store's encoder.
    fn load_key(&self, entry: &Checkpoint<'_>, key: &str) -> Result<Option<Value>> {
        for scope in &self.scopes {
            for store in &scope.stores {
                if let Some(bytes) = store.get(key)? {
                    return Self::encoder_for(entry, scope)
                        .decode(entry.spec, &bytes, key)
                        .map(Some);
                }
            }
        }
        Ok(None)
    }

    fn checked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keys under `_brisk/` belong to the stores' own records.
fn check_key(key: &str) -> Result<()> {
    brisk_store::validate_key(key)?;
    if key.starts_with("_brisk/") {
        return Err(CheckpointError::Store(brisk_store::StoreError::BadKey {
            key: shown(key),
            reason: "keys under `_brisk/` are reserved for the storage's own records",
        }));
    }
    Ok(())
}

impl Cache for Storage {
    fn contains(&self, entry: &Checkpoint<'_>) -> Result<bool, BoxError> {
        let key = entry.storage_key();
        if self.policy == CorruptPolicy::Fail {
            return Ok(self.find(&key)?.is_some());
        }
        match self.load_key(entry, &key) {
            Ok(Some(v)) => {
                self.checked().insert(key.into_owned(), v);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(CheckpointError::Decode { .. } | CheckpointError::Authentication { .. }) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn load(&self, entry: &Checkpoint<'_>) -> Result<Value, BoxError> {
        let key = entry.storage_key();
        if let Some(v) = self.checked().remove(key.as_ref()) {
            return Ok(v);
        }
        match self.load_key(entry, &key)? {
            Some(v) => Ok(v),
            None => Err(CheckpointError::Missing { key: shown(&key) }.into()),
        }
    }

    fn save(&self, entry: &Checkpoint<'_>, value: &Value) -> Result<(), BoxError> {
        let key = entry.storage_key();
        let result = (|| -> Result<()> {
            check_key(&key)?;
            let Some(scope) = self.save_scope() else {
                return Ok(());
            };
            let Some(target) = scope.stores.first() else {
                return Ok(());
            };
            let encoder = Self::encoder_for(entry, scope);
            let bytes = encoder.encode_exact(entry.spec, value, &key)?;
            Ok(target.put(&key, &bytes)?)
        })();
        if let Some(target) = self.save_target() {
            flights::finish(&target.location(), &key);
        }
        result.map_err(Into::into)
    }

    fn begin(&self, entry: &Checkpoint<'_>) -> Result<Option<Value>, BoxError> {
        let Some(target) = self.save_target() else {
            return Ok(None);
        };
        let key = entry.storage_key();
        check_key(&key)?;
        let location = target.location();
        loop {
            match flights::claim(&location, &key) {
                flights::Claim::Mine => {
                    // Stored since the graph was built (by a compute that just finished)?
                    return match self.load_key(entry, &key) {
                        Ok(Some(v)) => {
                            flights::finish(&location, &key);
                            Ok(Some(v))
                        }
                        Ok(None) => Ok(None),
                        Err(e) if self.policy == CorruptPolicy::RecomputeOnCorrupt => {
                            let _ = e;
                            Ok(None)
                        }
                        Err(e) => {
                            flights::finish(&location, &key);
                            Err(e.into())
                        }
                    };
                }
                flights::Claim::Waited => {
                    // The other compute finished: use its result, or run it ourselves if it
                    // failed (loop to claim the key).
                    if let Some(v) = self.load_key(entry, &key)? {
                        return Ok(Some(v));
                    }
                }
            }
        }
    }

    fn abandon(&self, entry: &Checkpoint<'_>) {
        if let Some(target) = self.save_target() {
            flights::finish(&target.location(), &entry.storage_key());
        }
    }
}

/// Keys being computed in this process, per save store: the single-flight registry.
mod flights {
    use super::{Arc, Condvar, HashMap, LazyLock, Mutex};

    #[derive(Default)]
    struct Flight {
        done: Mutex<bool>,
        cv: Condvar,
    }

    /// `(save store location, key)` → its flight.
    type Registry = HashMap<(String, String), Arc<Flight>>;

    static FLIGHTS: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

    pub(super) enum Claim {
        /// This compute runs the key.
        Mine,
        /// Another compute ran it; it has finished (successfully or not).
        Waited,
    }

    pub(super) fn claim(location: &str, key: &str) -> Claim {
        let id = (location.to_owned(), key.to_owned());
        let flight = {
            let mut map = FLIGHTS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match map.get(&id) {
                Some(f) => Arc::clone(f),
                None => {
                    map.insert(id, Arc::default());
                    return Claim::Mine;
                }
            }
        };
        let mut done = flight
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while !*done {
            done = flight
                .cv
                .wait(done)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        Claim::Waited
    }

    pub(super) fn finish(location: &str, key: &str) {
        let id = (location.to_owned(), key.to_owned());
        let flight = FLIGHTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        if let Some(f) = flight {
            *f.done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            f.cv.notify_all();
        }
    }
}

/// Checkpointing with a per-task encoder.
pub trait SaveWith {
    /// The same value marked as checkpointed, encoded with `encoder` (instead of the
    /// storage's default) — dask-checkpoint's `@task(save=True, encoder=…)`.
    #[must_use]
    fn save_with(&self, encoder: Encoder) -> Self;
}

impl<T> SaveWith for Delayed<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    fn save_with(&self, encoder: Encoder) -> Self {
        self.checkpointed_with(Arc::new(encoder))
    }
}

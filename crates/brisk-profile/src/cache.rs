//! [`CacheProfiler`] and [`SizeOf`]: how many bytes of results the executor holds over time,
//! and when each task's result was created and freed.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use brisk_graph::{Error, Graph, Hooks, Key, Name, NodeId, TaskEnd, TaskStatus};

use crate::clock;

pub use brisk_graph::SizeOf;

type Sizer = Arc<dyn Fn(&(dyn Any + Send + Sync)) -> Option<usize> + Send + Sync>;

/// One result held by the executor: when it was created and when it was freed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Lifetime {
    /// The task's key.
    pub key: Key,
    /// The task's name.
    pub name: Name,
    /// Its size in bytes (0 if its type has no [`SizeOf`]).
    pub bytes: usize,
    /// Whether its size is known (its type is registered).
    pub sized: bool,
    /// When the task produced (or loaded) it, on the profilers' common time axis.
    pub created: Duration,
    /// When the executor dropped its reference (as its last consumer started: the consumer
    /// holds the value until it returns), or when the compute ended for results handed to
    /// the caller or still held then.
    pub freed: Option<Duration>,
}

/// Total bytes held at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachePoint {
    /// When, on the profilers' common time axis.
    pub time: Duration,
    /// Bytes of results held by the executor just after that moment.
    pub bytes: u64,
}

#[derive(Default)]
struct Inner {
    /// Per (graph address, node id): index into `lifetimes`.
    live: HashMap<(usize, NodeId), usize>,
    lifetimes: Vec<Lifetime>,
    points: Vec<CachePoint>,
    held: u64,
    /// Output type name → results of that type whose size is unknown.
    unsized_types: BTreeMap<&'static str, usize>,
}

/// Bytes of task results held by the executor over time (Dask's `CacheProfiler`), measured
/// with [`SizeOf`] when a result is produced and counted until the executor drops it (when
/// its last consumer starts).
///
/// Results of types without a registered [`SizeOf`] count as 0 bytes and are listed by
/// type in [`unsized_types`](Self::unsized_types), so a report never silently claims they
/// were free. Built in: numbers, `bool`, `char`, `()`, `String`, `Vec<String>`, and for the
/// numeric types `Vec<T>`, `Vec<Vec<T>>`, `Vec<ArrayD<T>>` and owned `ndarray` arrays (0 to
/// 4 dimensions and dynamic).
///
/// The profiler takes one lock per task end and per release; attach it when you want the
/// numbers, not to every compute.
pub struct CacheProfiler {
    sizers: HashMap<TypeId, Sizer>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for CacheProfiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheProfiler")
            .field("types", &self.sizers.len())
            .field("results", &self.lock().lifetimes.len())
            .finish()
    }
}

impl Default for CacheProfiler {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheProfiler {
    /// A profiler that knows the built-in types.
    #[must_use]
    pub fn new() -> Self {
        clock::epoch();
        Self {
            sizers: HashMap::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Also measures results of type `T`.
    #[must_use]
    pub fn with_size_of<T: SizeOf + Any>(mut self) -> Self {
        let f: Sizer =
            Arc::new(|v: &(dyn Any + Send + Sync)| v.downcast_ref::<T>().map(SizeOf::size_of));
        self.sizers.insert(TypeId::of::<T>(), f);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes held over time: one point per change, oldest first.
    #[must_use]
    pub fn points(&self) -> Vec<CachePoint> {
        self.lock().points.clone()
    }

    /// Every result seen, in the order they were created.
    #[must_use]
    pub fn lifetimes(&self) -> Vec<Lifetime> {
        self.lock().lifetimes.clone()
    }

    /// The most bytes held at once.
    #[must_use]
    pub fn peak_bytes(&self) -> u64 {
        self.lock()
            .points
            .iter()
            .map(|p| p.bytes)
            .max()
            .unwrap_or(0)
    }

    /// Output types whose size is unknown, with how many results of each were seen.
    #[must_use]
    pub fn unsized_types(&self) -> Vec<(&'static str, usize)> {
        self.lock()
            .unsized_types
            .iter()
            .map(|(t, n)| (*t, *n))
            .collect()
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    fn free(inner: &mut Inner, slot: usize, time: Duration) {
        let life = &mut inner.lifetimes[slot];
        if life.freed.is_none() {
            life.freed = Some(time);
            inner.held = inner.held.saturating_sub(life.bytes as u64);
            let bytes = inner.held;
            inner.points.push(CachePoint { time, bytes });
        }
    }
}

fn graph_id(graph: &Graph) -> usize {
    std::ptr::from_ref(graph) as usize
}

impl Hooks for CacheProfiler {
    fn on_task_end(&self, graph: &Graph, event: &TaskEnd<'_>) {
        let value = match event.status {
            TaskStatus::Computed(v) | TaskStatus::Loaded(v) => v,
            _ => return,
        };
        let node = graph.node(event.id);
        let size = match self.sizers.get(&(**value).type_id()) {
            Some(f) => f(&**value),
            None => brisk_graph::size_of_value(value),
        };
        // The clock is read under the lock, so points are pushed in time order even when
        // workers report concurrently.
        let mut inner = self.lock();
        let time = clock::now();
        if size.is_none() {
            *inner.unsized_types.entry(node.output_type()).or_insert(0) += 1;
        }
        let bytes = size.unwrap_or(0);
        let slot = inner.lifetimes.len();
        inner.lifetimes.push(Lifetime {
            key: node.key().clone(),
            name: node.name_ref().clone(),
            bytes,
            sized: size.is_some(),
            created: time,
            freed: None,
        });
        if let Some(old) = inner.live.insert((graph_id(graph), event.id), slot) {
            // A result replaced in place (should not happen): count the old one as freed.
            Self::free(&mut inner, old, time);
        }
        inner.held += bytes as u64;
        let held = inner.held;
        inner.points.push(CachePoint { time, bytes: held });
    }

    fn on_release(&self, graph: &Graph, id: NodeId) {
        let mut inner = self.lock();
        let time = clock::now();
        if let Some(slot) = inner.live.remove(&(graph_id(graph), id)) {
            Self::free(&mut inner, slot, time);
        }
    }

    fn on_finish(&self, graph: &Graph, error: Option<&Error>) {
        let _ = error;
        let g = graph_id(graph);
        let mut inner = self.lock();
        let time = clock::now();
        let slots: Vec<usize> = inner
            .live
            .iter()
            .filter(|((gid, _), _)| *gid == g)
            .map(|(_, &slot)| slot)
            .collect();
        inner.live.retain(|(gid, _), _| *gid != g);
        let mut slots = slots;
        slots.sort_unstable();
        for slot in slots {
            Self::free(&mut inner, slot, time);
        }
    }
}

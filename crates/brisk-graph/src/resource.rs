//! Resources: what a task needs open while it runs, and how a compute opens each one once.
//!
//! This module is the one home of the resource protocol:
//! - [`Resource`], the trait a file, handle or connection implements (`brisk-guard` has
//!   [`FileResource` and `HandlePool`](https://docs.rs/brisk-guard));
//! - [`RequiredResource`], which nodes of a [`Graph`] need which resource
//!   ([`Graph::resources`]);
//! - [`ComputeResources`], what an [`Executor`](crate::Executor) calls around each task so that
//!   every required resource is opened before the first task that needs it and closed after
//!   the last, also when tasks fail or panic.
//!
//! Underneath, one process-wide lease table (private to this module) lets concurrent and
//! nested computes share an opening: the first lease of a closed resource opens it, the last
//! release closes it, and only if a lease opened it — a resource that was already open is used
//! and left open. No code outside this module can take or return a lease, so no compute can
//! close a resource another compute holds.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::error::{Error, ResourceAction, catch_panic, chain};
use crate::graph::{Graph, NodeId};
use crate::node::BoxError;

/// A resource a task needs to be open while it runs (a file, a device handle, a connection).
///
/// Identity is the `Arc` pointer: two requirements are the same resource when they point to the
/// same object. `brisk-graph` only records which tasks need which resources; opening each once
/// per compute and leaving it as it was found is [`ComputeResources`]'s job.
pub trait Resource: Send + Sync + 'static {
    /// A short human-readable name used in errors (e.g. the file path).
    fn name(&self) -> String;
    /// Opens the resource.
    ///
    /// # Errors
    /// Whatever prevented opening it.
    fn open(&self) -> Result<(), BoxError>;
    /// Closes the resource.
    ///
    /// # Errors
    /// Whatever prevented closing it.
    fn close(&self) -> Result<(), BoxError>;
    /// Whether the resource is open now.
    fn is_open(&self) -> bool;
}

/// A resource required by some nodes of a graph.
#[derive(Clone)]
pub struct RequiredResource {
    /// The resource.
    pub resource: Arc<dyn Resource>,
    /// Ids of the nodes that need it, in id order.
    pub nodes: Vec<NodeId>,
}

impl std::fmt::Debug for RequiredResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequiredResource")
            .field("resource", &self.resource.name())
            .field("nodes", &self.nodes)
            .finish()
    }
}

// ---- the process-wide lease table ----

struct Entry {
    count: usize,
    /// Whether a lease opened it (so the last release closes it).
    opened: bool,
    /// Keeps the resource (and so its address, the map's key) alive while leased.
    _resource: Arc<dyn Resource>,
}

static LEASES: LazyLock<Mutex<HashMap<usize, Entry>>> = LazyLock::new(Mutex::default);

fn id(r: &Arc<dyn Resource>) -> usize {
    Arc::as_ptr(r).cast::<()>() as usize
}

/// Takes a lease on `resource`, opening it if it is closed and not leased.
///
/// # Errors
/// [`Error::Resource`] with [`ResourceAction::Open`] when opening fails (no lease is taken).
fn acquire(resource: &Arc<dyn Resource>) -> Result<(), Error> {
    // Opening happens under the registry lock, so a second compute that needs the resource
    // waits for the first opening instead of opening it twice.
    let mut map = LEASES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = map.get_mut(&id(resource)) {
        e.count += 1;
        return Ok(());
    }
    // A panicking resource is an error naming it, never a panic through the compute.
    let is_open =
        catch_panic("is_open", || Ok(resource.is_open())).map_err(|source| Error::Resource {
            resource: resource.name(),
            action: ResourceAction::Open,
            source,
        })?;
    let opened = if is_open {
        false
    } else {
        catch_panic("open", || resource.open()).map_err(|source| Error::Resource {
            resource: resource.name(),
            action: ResourceAction::Open,
            source,
        })?;
        true
    };
    map.insert(
        id(resource),
        Entry {
            count: 1,
            opened,
            _resource: Arc::clone(resource),
        },
    );
    Ok(())
}

/// Returns a lease taken with [`acquire`]; the last one closes the resource if a lease
/// opened it.
///
/// # Errors
/// [`Error::Resource`] with [`ResourceAction::Close`] when closing fails.
fn release(resource: &Arc<dyn Resource>) -> Result<(), Error> {
    let mut map = LEASES.lock().unwrap_or_else(PoisonError::into_inner);
    let key = id(resource);
    let Some(e) = map.get_mut(&key) else {
        return Ok(());
    };
    e.count -= 1;
    if e.count > 0 {
        return Ok(());
    }
    let opened = e.opened;
    map.remove(&key);
    if opened {
        catch_panic("close", || resource.close()).map_err(|source| Error::Resource {
            resource: resource.name(),
            action: ResourceAction::Close,
            source,
        })?;
    }
    Ok(())
}

// ---- one compute's resources ----

/// The state of one required resource in one compute.
enum Phase {
    /// No task that needs it has started.
    Waiting,
    /// Leased; `remaining` tasks that need it have not finished.
    Held,
    /// Opening failed; every task that needs it fails with this message.
    Failed(String),
    /// Released (all its tasks finished, or the compute ended).
    Released,
}

struct Slot {
    resource: Arc<dyn Resource>,
    phase: Mutex<(Phase, usize)>,
}

/// The resources of one compute, and which nodes need which: what an executor calls around
/// each task.
///
/// Call [`before`](Self::before) before a node's task runs (and fail the task with its error),
/// [`after`](Self::after) once it finished, failed or was skipped, and
/// [`finish`](Self::finish) when the compute ends, whatever happened.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use brisk_graph::{BoxError, ComputeResources, Graph, Resource, pure, lit};
///
/// #[derive(Default)]
/// struct Flag(AtomicBool);
/// impl Resource for Flag {
///     fn name(&self) -> String { "flag".into() }
///     fn open(&self) -> Result<(), BoxError> { self.0.store(true, Ordering::SeqCst); Ok(()) }
///     fn close(&self) -> Result<(), BoxError> { self.0.store(false, Ordering::SeqCst); Ok(()) }
///     fn is_open(&self) -> bool { self.0.load(Ordering::SeqCst) }
/// }
///
/// let flag = Arc::new(Flag::default());
/// let x = pure("inc", |v: i64| v + 1, (lit(1),)).requiring(flag.clone());
/// let graph = Graph::new([&x]);
/// let resources = ComputeResources::new(&graph);
/// let id = graph.outputs()[0];
/// resources.before(id)?;
/// assert!(flag.is_open());
/// resources.after(id);
/// assert!(!flag.is_open(), "closed after its last task, as it was found");
/// assert!(resources.finish().is_none());
/// # Ok::<(), brisk_graph::Error>(())
/// ```
pub struct ComputeResources {
    slots: Vec<Slot>,
    /// For each node, the indices of the slots it needs (empty for almost all nodes).
    by_node: Vec<Vec<usize>>,
    close_errors: Mutex<Vec<Error>>,
}

impl ComputeResources {
    /// The resources `graph` requires, none of them leased yet.
    #[must_use]
    pub fn new(graph: &Graph) -> Self {
        let required = graph.resources();
        let mut by_node = vec![Vec::new(); if required.is_empty() { 0 } else { graph.len() }];
        let slots = required
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                for &n in &r.nodes {
                    by_node[n.index()].push(i);
                }
                Slot {
                    resource: r.resource,
                    phase: Mutex::new((Phase::Waiting, r.nodes.len())),
                }
            })
            .collect();
        Self {
            slots,
            by_node,
            close_errors: Mutex::new(Vec::new()),
        }
    }

    /// Whether the graph requires no resource at all (then `before` and `after` do nothing).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn needs(&self, id: NodeId) -> &[usize] {
        self.by_node.get(id.index()).map_or(&[], Vec::as_slice)
    }

    /// Before node `id` runs: leases what it needs (the first such node opens it).
    ///
    /// # Errors
    /// [`Error::Resource`] naming the resource when opening it failed (now or for an earlier
    /// task of this compute); the task must not run.
    pub fn before(&self, id: NodeId) -> Result<(), Error> {
        for &i in self.needs(id) {
            let slot = &self.slots[i];
            let mut p = slot.phase.lock().unwrap_or_else(PoisonError::into_inner);
            match &p.0 {
                Phase::Held => {}
                Phase::Waiting => match acquire(&slot.resource) {
                    Ok(()) => p.0 = Phase::Held,
                    Err(e) => {
                        p.0 = Phase::Failed(chain(&e));
                        return Err(e);
                    }
                },
                Phase::Failed(message) => {
                    return Err(Error::Resource {
                        resource: slot.resource.name(),
                        action: ResourceAction::Open,
                        source: message.clone().into(),
                    });
                }
                Phase::Released => {
                    // Cannot happen: a slot is released only after its last node finished.
                    return Err(Error::Executor(
                        format!("resource `{}` released too early", slot.resource.name()).into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// After node `id` finished (ran, failed or was skipped): the last one releases.
    pub fn after(&self, id: NodeId) {
        for &i in self.needs(id) {
            let slot = &self.slots[i];
            let mut p = slot.phase.lock().unwrap_or_else(PoisonError::into_inner);
            p.1 = p.1.saturating_sub(1);
            if p.1 == 0 {
                self.release(slot, &mut p.0);
            }
        }
    }

    fn release(&self, slot: &Slot, phase: &mut Phase) {
        if matches!(phase, Phase::Held)
            && let Err(e) = release(&slot.resource)
        {
            self.close_errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(e);
        }
        if !matches!(phase, Phase::Failed(_)) {
            *phase = Phase::Released;
        }
    }

    /// At the end of the compute (every task stopped): releases what is still held and
    /// returns the first close error, which replaces a successful result.
    pub fn finish(&self) -> Option<Error> {
        for slot in &self.slots {
            let mut p = slot.phase.lock().unwrap_or_else(PoisonError::into_inner);
            self.release(slot, &mut p.0);
        }
        let mut errors = self
            .close_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if errors.is_empty() {
            None
        } else {
            Some(errors.remove(0))
        }
    }
}

//! Process-wide leases on resources: how computes share an opening.
//!
//! A compute *acquires* each resource it needs before the first task that needs it and
//! *releases* it after the last one. The first lease of a closed resource opens it; the last
//! release closes it — only if a lease opened it: a resource that was already open when the
//! first lease was taken is used and left open. Concurrent and nested computes on one resource
//! share its opening, so no task ever sees it closed under it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::error::{Error, ResourceAction, catch_panic};
use crate::node::Resource;

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
pub fn acquire(resource: &Arc<dyn Resource>) -> Result<(), Error> {
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
pub fn release(resource: &Arc<dyn Resource>) -> Result<(), Error> {
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

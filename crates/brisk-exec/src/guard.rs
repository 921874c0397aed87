//! Opening the resources of one compute before the first task that needs them and closing
//! them after the last (through the process-wide leases of `brisk_graph::lease`).

use std::sync::{Arc, Mutex, PoisonError};

use brisk_graph::{Error, Graph, Resource, lease};

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

/// The resources of one compute, and which nodes need which.
pub(crate) struct Guards {
    slots: Vec<Slot>,
    /// For each node, the indices of the slots it needs (empty for almost all nodes).
    by_node: Vec<Vec<usize>>,
    close_errors: Mutex<Vec<Error>>,
}

impl Guards {
    pub(crate) fn new(graph: &Graph) -> Self {
        let required = graph.resources();
        let mut by_node = vec![Vec::new(); if required.is_empty() { 0 } else { graph.len() }];
        let slots = required
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                for &n in &r.nodes {
                    by_node[n].push(i);
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

    fn needs(&self, id: usize) -> &[usize] {
        self.by_node.get(id).map_or(&[], Vec::as_slice)
    }

    /// Before node `id` runs: leases what it needs (the first such node opens it).
    pub(crate) fn before(&self, id: usize) -> Result<(), Error> {
        for &i in self.needs(id) {
            let slot = &self.slots[i];
            let mut p = slot.phase.lock().unwrap_or_else(PoisonError::into_inner);
            match &p.0 {
                Phase::Held => {}
                Phase::Waiting => match lease::acquire(&slot.resource) {
                    Ok(()) => p.0 = Phase::Held,
                    Err(e) => {
                        p.0 = Phase::Failed(brisk_graph::chain(&e));
                        return Err(e);
                    }
                },
                Phase::Failed(message) => {
                    return Err(Error::Resource {
                        resource: slot.resource.name(),
                        action: brisk_graph::ResourceAction::Open,
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
    pub(crate) fn after(&self, id: usize) {
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
            && let Err(e) = lease::release(&slot.resource)
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
    pub(crate) fn finish(&self) -> Option<Error> {
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

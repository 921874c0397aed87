//! The process-wide registry of named tasks.
//!
//! Every function annotated with `#[task]` (from `brisk-macros`) registers itself here under its
//! stable name (its module path), at link time, without any call at start-up. Backends that
//! run work in another process (the cluster backend) find tasks by name instead of shipping
//! closures.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A task registered by `#[task]`.
#[derive(Debug)]
#[non_exhaustive]
pub struct TaskEntry {
    /// The stable task name: the function's path (`my_crate::module::function`).
    pub name: &'static str,
    /// The key prefix of the task's keys (the function's bare name).
    pub key_prefix: &'static str,
    /// The explicit version given to `#[task(version = "…")]`, if any.
    pub version: Option<&'static str>,
    /// BLAKE3 (first 128 bits) of the function's normalized source tokens.
    pub source_hash: [u8; 16],
    /// Number of parameters.
    pub arity: usize,
    /// Whether the task is checkpointed (`#[task(save)]`).
    pub checkpointed: bool,
}

impl TaskEntry {
    /// A registry entry (used by the code `#[task]` generates).
    #[doc(hidden)]
    #[must_use]
    pub const fn new(
        name: &'static str,
        key_prefix: &'static str,
        version: Option<&'static str>,
        source_hash: [u8; 16],
        arity: usize,
        checkpointed: bool,
    ) -> Self {
        Self {
            name,
            key_prefix,
            version,
            source_hash,
            arity,
            checkpointed,
        }
    }
}

inventory::collect!(TaskEntry);

fn index() -> &'static HashMap<&'static str, &'static TaskEntry> {
    static INDEX: OnceLock<HashMap<&'static str, &'static TaskEntry>> = OnceLock::new();
    INDEX.get_or_init(|| {
        inventory::iter::<TaskEntry>
            .into_iter()
            .map(|e| (e.name, e))
            .collect()
    })
}

/// The task registered under `name`, if any.
#[must_use]
pub fn lookup(name: &str) -> Option<&'static TaskEntry> {
    index().get(name).copied()
}

/// Every registered task, in no particular order.
pub fn tasks() -> impl Iterator<Item = &'static TaskEntry> {
    index().values().copied()
}

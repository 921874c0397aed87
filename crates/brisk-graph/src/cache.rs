//! The [`Cache`] interface checkpoint storages implement, and the [`Checkpoint`] view of a node
//! it is given.

use crate::graph::NodeView;
use crate::key::Key;
use crate::node::{BoxError, SaveSpec, Value};

/// A checkpointed node as a [`Cache`] sees it.
#[derive(Clone, Copy)]
pub struct Checkpoint<'a> {
    /// The node's key.
    pub key: &'a Key,
    /// The task's name.
    pub name: &'a str,
    /// How to (de)serialize its result.
    pub spec: &'a SaveSpec,
    /// The key a custom hasher gave (see [`TaskSpec::hasher`](crate::TaskSpec::hasher)).
    pub custom_key: Option<&'a str>,
    /// Cache-specific options attached with
    /// [`Delayed::checkpointed_with`](crate::Delayed::checkpointed_with).
    pub options: Option<&'a (dyn std::any::Any + Send + Sync)>,
}

impl std::fmt::Debug for Checkpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("key", &self.storage_key())
            .field("name", &self.name)
            .field("type", &self.spec.type_name())
            .finish_non_exhaustive()
    }
}

impl<'a> Checkpoint<'a> {
    /// The checkpoint view of a graph node, if it is marked as checkpointed.
    #[must_use]
    pub fn of(node: NodeView<'a>) -> Option<Self> {
        let spec = node.save_spec()?;
        Some(Self {
            key: node.key(),
            name: node.name(),
            spec,
            custom_key: node.custom_key(),
            options: node.save_options(),
        })
    }

    /// The key the result is stored under: the custom key if a hasher gave one, else the
    /// node's key (`name/` + 32 hex).
    #[must_use]
    pub fn storage_key(&self) -> std::borrow::Cow<'a, str> {
        match self.custom_key {
            Some(k) => std::borrow::Cow::Borrowed(k),
            None => std::borrow::Cow::Owned(self.key.to_string()),
        }
    }
}

/// Stored results of checkpointed tasks. Only nodes marked with
/// [`Delayed::checkpointed`](crate::Delayed::checkpointed) are ever looked up, loaded or saved.
pub trait Cache: Send + Sync {
    /// Whether a result is stored for `entry` (called while the graph is built; a hit culls
    /// everything upstream of the node).
    ///
    /// # Errors
    /// When the store cannot be read.
    fn contains(&self, entry: &Checkpoint<'_>) -> Result<bool, BoxError>;

    /// Loads the stored result for `entry`.
    ///
    /// # Errors
    /// When the entry is missing, unreadable or cannot be decoded: never a wrong value.
    fn load(&self, entry: &Checkpoint<'_>) -> Result<Value, BoxError>;

    /// Stores the result of `entry` (before any dependent sees it).
    ///
    /// # Errors
    /// When the value cannot be encoded or written.
    fn save(&self, entry: &Checkpoint<'_>, value: &Value) -> Result<(), BoxError>;

    /// Called before a checkpointed node that was not loaded runs. A cache shared by
    /// concurrent computes may wait here while another compute runs the same key, and return
    /// `Some(value)` once it is stored: the task then does not run (single-flight). `None`
    /// (the default) lets the task run; exactly one [`save`](Cache::save) or
    /// [`abandon`](Cache::abandon) follows.
    ///
    /// # Errors
    /// When the cache cannot be consulted.
    fn begin(&self, entry: &Checkpoint<'_>) -> Result<Option<Value>, BoxError> {
        let _ = entry;
        Ok(None)
    }

    /// The task that [`begin`](Cache::begin) let run failed: nothing will be saved.
    fn abandon(&self, entry: &Checkpoint<'_>) {
        let _ = entry;
    }
}

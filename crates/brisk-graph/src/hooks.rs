//! The [`Hooks`] interface profilers and progress bars implement, and how a task ended
//! ([`TaskEnd`], [`TaskStatus`]).

use std::fmt;
use std::time::Duration;

use crate::error::Error;
use crate::graph::{Graph, NodeId};
use crate::node::Value;

/// Observers of a compute. Every method has an empty default; executors call them from the
/// thread that runs the task, so implementations must be cheap and thread-safe.
pub trait Hooks: Send + Sync {
    /// The compute starts; `graph` is what will run.
    fn on_start(&self, graph: &Graph) {
        let _ = graph;
    }
    /// A task is about to run (or be loaded) on `worker`.
    fn on_task_start(&self, graph: &Graph, id: NodeId, worker: usize) {
        let _ = (graph, id, worker);
    }
    /// A task finished (successfully or not).
    fn on_task_end(&self, graph: &Graph, event: &TaskEnd<'_>) {
        let _ = (graph, event);
    }
    /// The executor dropped its reference to the result of `id` (its last consumer ran).
    fn on_release(&self, graph: &Graph, id: NodeId) {
        let _ = (graph, id);
    }
    /// The compute finished; `error` is the error it returns, if any.
    fn on_finish(&self, graph: &Graph, error: Option<&Error>) {
        let _ = (graph, error);
    }
    /// A run over a dynamic source started (`open = true`: more inputs, and so more graphs,
    /// may still arrive) or its source was sealed (`open = false`: every input is known).
    /// Each partition is then an ordinary compute with its own `on_start`/`on_finish`.
    fn on_inputs_open(&self, open: bool) {
        let _ = open;
    }
}

/// How a task ended, as reported to [`Hooks::on_task_end`].
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum TaskStatus<'a> {
    /// The task ran and produced this value.
    Computed(&'a Value),
    /// The value was loaded from the cache.
    Loaded(&'a Value),
    /// The task failed (this attempt; it may be retried).
    Failed(&'a Error),
    /// The task ran in another process (a cluster worker), which kept its result in the
    /// data plane; this process only learns that it finished, where ([`TaskEnd::location`])
    /// and how big its result was there (`None` when its type has no known size).
    Remote {
        /// The result's size in bytes in the worker's memory.
        size: Option<usize>,
    },
}

/// A finished task, as reported to [`Hooks::on_task_end`].
#[non_exhaustive]
pub struct TaskEnd<'a> {
    /// The node's id in the graph.
    pub id: NodeId,
    /// The worker that ran it (0 on a sequential executor).
    pub worker: usize,
    /// When it started, relative to the start of the compute.
    pub start: Duration,
    /// How long it ran.
    pub duration: Duration,
    /// Which attempt this was (1 = first).
    pub attempt: u32,
    /// How it ended.
    pub status: TaskStatus<'a>,
    /// Where it ran when that was not this process (`"<node>/<thread>"` for a cluster
    /// worker's thread); `None` for this process's own workers.
    pub location: Option<&'a str>,
}

impl<'a> TaskEnd<'a> {
    /// A task-end event.
    #[must_use]
    pub fn new(
        id: NodeId,
        worker: usize,
        start: Duration,
        duration: Duration,
        attempt: u32,
        status: TaskStatus<'a>,
    ) -> Self {
        Self {
            id,
            worker,
            start,
            duration,
            attempt,
            status,
            location: None,
        }
    }

    /// The same event for a task that ran at `location` (another process; see
    /// [`location`](Self::location)).
    #[must_use]
    pub fn at(mut self, location: &'a str) -> Self {
        self.location = Some(location);
        self
    }

    /// The result's size in bytes (computed on demand, see [`size_of_value`]): `None` for a
    /// failed task or a result whose type is not one of the built-in ones.
    ///
    /// [`size_of_value`]: crate::size_of_value
    #[must_use]
    pub fn result_size(&self) -> Option<usize> {
        match self.status {
            TaskStatus::Computed(v) | TaskStatus::Loaded(v) => crate::size_of_value(v),
            TaskStatus::Remote { size } => size,
            TaskStatus::Failed(_) => None,
        }
    }
}

impl fmt::Debug for TaskEnd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskEnd")
            .field("id", &self.id)
            .field("worker", &self.worker)
            .field("duration", &self.duration)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

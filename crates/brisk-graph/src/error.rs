//! Errors of computing a graph, shared by every executor.

use std::fmt;

use crate::key::Key;
use crate::node::BoxError;
use crate::token::TokenizeError;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a cache was asked to do when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheAction {
    /// Whether it holds a key.
    Contains,
    /// Loading a stored result.
    Load,
    /// Saving a result.
    Save,
}

impl fmt::Display for CacheAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Contains => "look up",
            Self::Load => "load",
            Self::Save => "save",
        })
    }
}

/// What was done to a resource when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceAction {
    /// Opening it before the first task that needs it.
    Open,
    /// Closing it after the last task that needs it (the compute's result is discarded).
    Close,
}

impl fmt::Display for ResourceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Close => "close",
        })
    }
}

/// Why a compute failed. Every variant about a task names its key and task name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task returned an error (after all its retries).
    #[error("task `{name}` ({key}) failed after {attempts} attempt(s)")]
    Task {
        /// The failed task's key.
        key: Key,
        /// The failed task's name.
        name: String,
        /// How many times it ran.
        attempts: u32,
        /// The task's error.
        #[source]
        source: BoxError,
    },
    /// A task panicked; the executor caught the panic.
    #[error("task `{name}` ({key}) panicked: {message}")]
    Panic {
        /// The task's key.
        key: Key,
        /// The task's name.
        name: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The task's arguments could not be tokenized when it was built.
    #[error("task `{name}` ({key}) has arguments that cannot be tokenized")]
    Tokenize {
        /// The (unique) key the task was given instead.
        key: Key,
        /// The task's name.
        name: String,
        /// What the serializer reported.
        #[source]
        source: TokenizeError,
    },
    /// The checkpoint cache failed.
    #[error("cannot {action} checkpoint of task `{name}` ({key})")]
    Cache {
        /// The task's key.
        key: Key,
        /// The task's name.
        name: String,
        /// What the cache was doing.
        action: CacheAction,
        /// The cache's error.
        #[source]
        source: BoxError,
    },
    /// A resource the compute needs could not be opened, or could not be closed afterwards
    /// (then the compute's result is discarded: this error is returned instead).
    #[error("cannot {action} resource `{resource}`")]
    Resource {
        /// The resource's name.
        resource: String,
        /// What failed.
        action: ResourceAction,
        /// The resource's error.
        #[source]
        source: BoxError,
    },
    /// A computed value does not have the type its handle promised.
    #[error("result of `{key}` is not a {expected}")]
    TypeMismatch {
        /// The node's key.
        key: Key,
        /// The type asked for.
        expected: &'static str,
    },
    /// The compute was cancelled through its [`CancelToken`](crate::CancelToken).
    #[error("compute cancelled")]
    Cancelled,
    /// Under the keep-going policy, an output could not be computed.
    #[error("output {key} was not computed: {summary}")]
    Incomplete {
        /// The output that is missing.
        key: Key,
        /// [`Report::summary`] of the compute (the full report is in
        /// [`Computed::report`](crate::Computed::report)).
        summary: String,
    },
    /// The executor itself failed (e.g. it could not start its threads).
    #[error("executor failed")]
    Executor(#[source] BoxError),
    /// An execution hook panicked (the compute stops with this error; resources it opened
    /// are closed as after any other error).
    #[error("a hook panicked in `{event}`: {message}")]
    HookPanicked {
        /// The hook method (`on_start`, `on_finish`, …).
        event: &'static str,
        /// The panic's message.
        message: String,
    },
}

impl Error {
    /// The key of the task this error is about, if any.
    #[must_use]
    pub fn key(&self) -> Option<&Key> {
        match self {
            Self::Task { key, .. }
            | Self::Panic { key, .. }
            | Self::Tokenize { key, .. }
            | Self::Cache { key, .. }
            | Self::TypeMismatch { key, .. }
            | Self::Incomplete { key, .. } => Some(key),
            Self::Cancelled
            | Self::Executor(_)
            | Self::Resource { .. }
            | Self::HookPanicked { .. } => None,
        }
    }
}

/// A task that failed under the keep-going policy.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failure {
    /// The failed task's key.
    pub key: Key,
    /// The failed task's name.
    pub name: String,
    /// Why it failed.
    pub error: Error,
}

impl Failure {
    /// A failure record.
    #[must_use]
    pub fn new(key: Key, name: String, error: Error) -> Self {
        Self { key, name, error }
    }
}

/// A task that did not run because a task it depends on failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Skipped {
    /// The task that did not run.
    pub key: Key,
    /// The failed task it (transitively) depends on.
    pub because: Key,
}

impl Skipped {
    /// A skipped-task record.
    #[must_use]
    pub fn new(key: Key, because: Key) -> Self {
        Self { key, because }
    }
}

/// What went wrong during a keep-going compute: the failed tasks and the ones they blocked.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Tasks that failed, in the order they failed.
    pub failed: Vec<Failure>,
    /// Tasks that were skipped because of a failure.
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// Whether every task ran successfully.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }

    /// One line: how many failed and were skipped, and the first failure.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} task(s) failed, {} skipped",
            self.failed.len(),
            self.skipped.len()
        );
        if let Some(first) = self.failed.first() {
            s.push_str("; first: ");
            s.push_str(&crate::error::chain(&first.error));
        }
        s
    }
}

/// An error and all its sources on one line, separated by `: `.
#[must_use]
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The text of a panic payload (`&str` or `String`), or a placeholder: how a caught panic is
/// reported in an error.
#[must_use]
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `f`, turning a panic into an error `"{what} panicked: …"`.
pub(crate) fn catch_panic<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(format!("{what} panicked: {}", panic_message(&*payload)).into())
    })
}

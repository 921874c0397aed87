//! The producer's side of a source: [`Feed`] and what it sends.

use std::fmt;

use crossbeam_channel::{Sender, TrySendError};

/// What a producer sends.
pub(crate) enum Event<D> {
    Push(D),
    Fail(FailedInput<D>, String),
    Seal,
    Abort(String),
}

/// An input the producer reports as failed, by descriptor or by an id when no descriptor
/// exists (the upstream service failed before naming a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedInput<D> {
    /// The input's descriptor.
    Descriptor(D),
    /// An identifier of the input (a request id, an upstream file name).
    Id(String),
}

impl<D> From<D> for FailedInput<D> {
    fn from(d: D) -> Self {
        Self::Descriptor(d)
    }
}

/// The producer's handle on a [`Source`](super::Source): `Send + Clone`, backed by a bounded channel, so a
/// producer that runs ahead of the compute blocks in [`push`](Feed::push).
pub struct Feed<D> {
    pub(crate) tx: Sender<Event<D>>,
}

impl<D> Clone for Feed<D> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<D> fmt::Debug for Feed<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("queued", &self.tx.len())
            .field("capacity", &self.tx.capacity())
            .finish()
    }
}

/// The compute behind a [`Feed`] has ended (it finished, failed or was dropped): the input
/// was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the dynamic source is no longer running (its compute ended or was dropped)")]
pub struct FeedClosed;

/// Why [`Feed::try_push`] did not take an input; the input is handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum TryPushError<D> {
    /// The channel is full: the compute has not caught up (backpressure).
    Full(D),
    /// The compute has ended.
    Closed(D),
}

impl<D> Feed<D> {
    fn send(&self, e: Event<D>) -> Result<(), FeedClosed> {
        self.tx.send(e).map_err(|_| FeedClosed)
    }

    /// Adds an input; blocks while the channel is full.
    ///
    /// # Errors
    /// [`FeedClosed`] when the compute has ended.
    pub fn push(&self, descriptor: D) -> Result<(), FeedClosed> {
        self.send(Event::Push(descriptor))
    }

    /// Adds an input if there is room now.
    ///
    /// # Errors
    /// [`TryPushError::Full`] (backpressure) or [`TryPushError::Closed`], with the input.
    pub fn try_push(&self, descriptor: D) -> Result<(), TryPushError<D>> {
        self.tx
            .try_send(Event::Push(descriptor))
            .map_err(|e| match e {
                TrySendError::Full(Event::Push(d)) => TryPushError::Full(d),
                TrySendError::Disconnected(Event::Push(d)) => TryPushError::Closed(d),
                _ => unreachable!("only a push was sent"),
            })
    }

    /// Reports an input that failed upstream (it counts as received, and as failed).
    ///
    /// # Errors
    /// [`FeedClosed`] when the compute has ended.
    pub fn fail(
        &self,
        input: impl Into<FailedInput<D>>,
        error: impl fmt::Display,
    ) -> Result<(), FeedClosed> {
        self.send(Event::Fail(input.into(), error.to_string()))
    }

    /// Reports an input that failed upstream before it had a descriptor, by an id (a request
    /// id, the name the service gave it). Same as `fail(FailedInput::Id(id), error)`.
    ///
    /// # Errors
    /// [`FeedClosed`] when the compute has ended.
    pub fn fail_id(
        &self,
        id: impl Into<String>,
        error: impl fmt::Display,
    ) -> Result<(), FeedClosed> {
        self.fail(FailedInput::Id(id.into()), error)
    }

    /// No more inputs will come. If the source announced a count, fewer inputs is an error
    /// under [`Policy::FailFast`](super::Policy::FailFast) and a reported gap under [`Policy::Tolerate`](super::Policy::Tolerate).
    ///
    /// # Errors
    /// [`FeedClosed`] when the compute has ended.
    pub fn seal(&self) -> Result<(), FeedClosed> {
        self.send(Event::Seal)
    }

    /// Stops the compute: running partitions are cancelled and the compute returns
    /// [`SourceError::Aborted`](super::SourceError::Aborted) with `reason`.
    pub fn abort(&self, reason: impl fmt::Display) {
        let _ = self.send(Event::Abort(reason.to_string()));
    }
}

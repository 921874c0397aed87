//! What a run reports: [`SourceReport`], [`PartitionReport`], [`Status`], [`SourceError`],
//! [`SourceOutput`].

use std::time::Duration;

use brisk_graph::{Error, Key, TokenizeError};

/// How a partition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Its graph ran and produced a result.
    Computed,
    /// Its result was loaded from a checkpoint.
    Loaded,
    /// Its graph failed (after all attempts).
    Failed,
    /// The producer reported the input as failed; nothing ran.
    FailedUpstream,
    /// The run stopped (fail-fast or abort) before it finished.
    Cancelled,
}

/// One partition in a [`SourceReport`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PartitionReport<D> {
    /// The partition id (`source/token`), or for an input failed by id, `source/` + the
    /// id's token.
    pub id: Key,
    /// The descriptor (absent for an input failed by id).
    pub descriptor: Option<D>,
    /// The id an input was failed by, if it was.
    pub failed_id: Option<String>,
    /// How it ended.
    pub status: Status,
    /// Its error, with causes, if it failed.
    pub error: Option<String>,
    /// Graph runs (0 when nothing ran).
    pub attempts: u32,
    /// Time from its first run's start to its last run's end.
    pub duration: Duration,
    /// 0-based position in arrival order (for diagnostics only: results never depend on it).
    pub arrival: usize,
}

/// Every partition of a run, in id order, plus the counts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SourceReport<D> {
    /// The partitions, in id order.
    pub partitions: Vec<PartitionReport<D>>,
    /// The count announced with [`Source::counted`](super::Source::counted).
    pub expected: Option<usize>,
    /// Inputs received (pushed or failed), duplicates not counted.
    pub received: usize,
    /// Inputs pushed again after their first arrival (ignored: one partition per id).
    pub duplicates: usize,
}

impl<D> SourceReport<D> {
    /// Partitions that produced a result (computed or loaded).
    #[must_use]
    pub fn succeeded(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| matches!(p.status, Status::Computed | Status::Loaded))
            .count()
    }

    /// Partitions loaded from checkpoints.
    #[must_use]
    pub fn loaded(&self) -> usize {
        self.count(Status::Loaded)
    }

    /// Partitions that failed, here or upstream.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| matches!(p.status, Status::Failed | Status::FailedUpstream))
            .count()
    }

    fn count(&self, s: Status) -> usize {
        self.partitions.iter().filter(|p| p.status == s).count()
    }

    /// Announced inputs that never arrived (0 without an announced count).
    #[must_use]
    pub fn missing(&self) -> usize {
        self.expected.map_or(0, |e| e.saturating_sub(self.received))
    }

    /// Whether every announced input arrived and every partition succeeded.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.missing() == 0 && self.succeeded() == self.partitions.len()
    }
}

/// Why a run over a dynamic source failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A partition's graph failed (fail-fast).
    #[error(
        "partition {id} of source `{source_name}` ({descriptor}) failed after {attempts} attempt(s)"
    )]
    Partition {
        /// The source.
        source_name: String,
        /// The partition id.
        id: Key,
        /// The descriptor, as `{:?}`.
        descriptor: String,
        /// Graph runs made.
        attempts: u32,
        /// The compute's error (names the failing task).
        #[source]
        source: Box<Error>,
    },
    /// The producer reported an input as failed (fail-fast).
    #[error("input {input} of source `{source_name}` failed upstream: {error}")]
    InputFailed {
        /// The source.
        source_name: String,
        /// The descriptor (`{:?}`) or id.
        input: String,
        /// What the producer reported.
        error: String,
    },
    /// The source was sealed with fewer inputs than announced (fail-fast).
    #[error("source `{source_name}` was sealed after {received} of {expected} announced inputs")]
    Missing {
        /// The source.
        source_name: String,
        /// Announced.
        expected: usize,
        /// Received (pushed or failed).
        received: usize,
    },
    /// More inputs arrived than announced (always an error: the count or the producer is
    /// wrong, and a result over them could not be trusted).
    #[error("source `{source_name}` received input {received} ({input}) but announced {expected}")]
    TooMany {
        /// The source.
        source_name: String,
        /// Announced.
        expected: usize,
        /// Received so far, this one included.
        received: usize,
        /// The extra input (`{:?}`).
        input: String,
    },
    /// Every feed handle was dropped without [`Feed::seal`](super::Feed::seal): the producer stopped early, so
    /// the inputs may be incomplete.
    #[error(
        "every feed of source `{source_name}` was dropped without seal() after {received} input(s); the producer stopped early"
    )]
    Unsealed {
        /// The source.
        source_name: String,
        /// Received.
        received: usize,
    },
    /// [`Feed::abort`](super::Feed::abort) was called, or the compute's cancel token was cancelled.
    #[error("source `{source_name}` was aborted: {reason}")]
    Aborted {
        /// The source.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A descriptor could not be tokenized, so it has no stable id.
    #[error("descriptor {descriptor} of source `{source_name}` has no stable id")]
    Descriptor {
        /// The source.
        source_name: String,
        /// The descriptor (`{:?}`).
        descriptor: String,
        /// Why.
        #[source]
        source: TokenizeError,
    },
}

/// What [`Pipeline::run`](super::Pipeline::run) returns: every successful partition's result in id order, and the
/// report.
#[derive(Debug)]
#[non_exhaustive]
pub struct SourceOutput<D, T> {
    /// `(partition id, result)` in id order.
    pub results: Vec<(Key, T)>,
    /// Every partition.
    pub report: SourceReport<D>,
}

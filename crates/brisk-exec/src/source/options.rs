//! How a source runs: [`SourceOptions`], [`Policy`], [`Order`].

use std::time::Duration;

use brisk_graph::ComputeOptions;

/// What to do when a partition fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Stop at the first failed partition (after its retries), cancel the others, and return
    /// the error naming the descriptor.
    #[default]
    FailFast,
    /// Go on: the result covers the partitions that succeeded, and the report lists every
    /// partition with its status and error.
    Tolerate,
}

/// In which order partition results are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Order {
    /// By partition id: the same result bits however the inputs arrived. Results are held
    /// until the source is sealed and every partition is done.
    #[default]
    Key,
    /// As partitions finish: no result is held, but a non-associative combine (a float sum)
    /// may differ between runs in its last bits.
    Arrival,
}

/// How a source runs.
#[derive(Debug, Clone)]
#[must_use]
pub struct SourceOptions {
    pub(crate) policy: Policy,
    pub(crate) retries: u32,
    pub(crate) order: Order,
    pub(crate) in_flight: Option<usize>,
    pub(crate) batch: usize,
    pub(crate) window: Duration,
    pub(crate) compute: ComputeOptions,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SourceOptions {
    /// Fail fast, no retries, key order, `2 × workers` partitions in flight, default compute
    /// options.
    pub fn new() -> Self {
        Self {
            policy: Policy::FailFast,
            retries: 0,
            order: Order::Key,
            in_flight: None,
            batch: 1,
            window: Duration::ZERO,
            compute: ComputeOptions::new(),
        }
    }

    /// The failure policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Shorthand for [`Policy::Tolerate`].
    pub fn tolerate(self) -> Self {
        self.policy(Policy::Tolerate)
    }

    /// Runs a failed partition up to `n` more times before it counts as failed.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// The combine order.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// At most `n` partitions run at once (at least 1); the feed's channel holds the rest,
    /// and the producer blocks when it is full.
    pub fn in_flight(mut self, n: usize) -> Self {
        self.in_flight = Some(n.max(1));
        self
    }

    /// Runs partitions together, as one graph handed to the executor at once: a batch is
    /// sent when it holds `max` partitions, when `window` has passed since its first one
    /// arrived, or when the source is sealed. For executors with a cost per run — on Slurm a
    /// run is a job array per stage, so a thousand small files would otherwise be a thousand
    /// jobs. Each partition still succeeds, fails (under the [`Policy`], with its own error in
    /// the report), is retried and is checkpointed on its own; [`in_flight`](Self::in_flight)
    /// then counts batches. The default, `batch(1, Duration::ZERO)`, sends each partition as
    /// it arrives.
    pub fn batch(mut self, max: usize, window: Duration) -> Self {
        self.batch = max.max(1);
        self.window = window;
        self
    }

    /// Hooks, a checkpoint cache (finished partitions are loaded, not recomputed), the
    /// cancel token (cancelling it aborts the run). The failure policy of `compute` applies
    /// inside a partition; [`SourceOptions::policy`] decides across partitions.
    pub fn compute(mut self, compute: ComputeOptions) -> Self {
        self.compute = compute;
        self
    }
}

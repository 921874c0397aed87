//! How a source runs: [`SourceOptions`], [`Policy`], [`Order`].

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

    /// Hooks, a checkpoint cache (finished partitions are loaded, not recomputed), the
    /// cancel token (cancelling it aborts the run). The failure policy of `compute` applies
    /// inside a partition; [`SourceOptions::policy`] decides across partitions.
    pub fn compute(mut self, compute: ComputeOptions) -> Self {
        self.compute = compute;
        self
    }
}

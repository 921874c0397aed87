//! One time axis for every profiler in the process, so their records line up in a report.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The instant all profiler times count from: the first time any profiler asked.
pub(crate) fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Time since [`epoch`].
pub(crate) fn now() -> Duration {
    epoch().elapsed()
}

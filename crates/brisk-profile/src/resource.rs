//! [`ResourceProfiler`]: CPU and resident memory of this process, sampled on a background
//! thread while a compute runs.

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use brisk_graph::{Error, Graph, Hooks};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::clock;

/// One sample of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ResourceSample {
    /// When it was taken, on the profilers' common time axis.
    pub time: Duration,
    /// CPU use since the previous sample, in percent of one core (200 = two cores busy).
    pub cpu_percent: f64,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
}

struct Running {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

struct State {
    /// Computes running with this profiler attached: the sampler runs while this is > 0.
    active: usize,
    running: Option<Running>,
}

/// Samples the process's CPU use and resident memory every `dt` on a background thread
/// (named `brisk-resource-profiler`), from the start of each compute it is attached to until
/// its end — Dask's `ResourceProfiler(dt=…)`. Also usable by hand with
/// [`start`](Self::start)/[`stop`](Self::stop) around any code.
///
/// CPU is measured as process CPU time over wall time between two samples, so 100 % means
/// one core fully busy. Sampling costs one read of `/proc/self` (or the platform's
/// equivalent) per `dt`, on its own thread; the compute's threads are not touched.
pub struct ResourceProfiler {
    dt: Duration,
    samples: Arc<Mutex<Vec<ResourceSample>>>,
    state: Mutex<State>,
}

impl fmt::Debug for ResourceProfiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceProfiler")
            .field("dt", &self.dt)
            .field("samples", &self.samples().len())
            .finish()
    }
}

impl Default for ResourceProfiler {
    fn default() -> Self {
        Self::new()
    }
}

impl ResourceProfiler {
    /// Samples every 100 ms.
    #[must_use]
    pub fn new() -> Self {
        Self::every(Duration::from_millis(100))
    }

    /// Samples every `dt` (at least 1 ms).
    #[must_use]
    pub fn every(dt: Duration) -> Self {
        clock::epoch();
        Self {
            dt: dt.max(Duration::from_millis(1)),
            samples: Arc::new(Mutex::new(Vec::new())),
            state: Mutex::new(State {
                active: 0,
                running: None,
            }),
        }
    }

    /// The sampling interval.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.dt
    }

    /// The samples taken so far, oldest first.
    #[must_use]
    pub fn samples(&self) -> Vec<ResourceSample> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the samples taken so far.
    pub fn clear(&self) {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The highest resident memory sampled, in bytes (0 without samples).
    #[must_use]
    pub fn peak_rss(&self) -> u64 {
        self.samples()
            .iter()
            .map(|s| s.rss_bytes)
            .max()
            .unwrap_or(0)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts sampling (a sample is taken at once). Starts nest: sampling stops at the
    /// matching number of [`stop`](Self::stop)s. If the sampler thread cannot be spawned,
    /// no samples are taken and the compute is not affected.
    pub fn start(&self) {
        let mut state = self.state();
        state.active += 1;
        if state.running.is_some() {
            return;
        }
        let (stop, rx) = mpsc::channel::<()>();
        let samples = Arc::clone(&self.samples);
        let dt = self.dt;
        let spawned = std::thread::Builder::new()
            .name("brisk-resource-profiler".to_owned())
            .spawn(move || {
                let Ok(pid) = sysinfo::get_current_pid() else {
                    return;
                };
                let mut sampler = Sampler::new(pid);
                loop {
                    if let Some(s) = sampler.sample() {
                        samples
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(s);
                    }
                    match rx.recv_timeout(dt) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                // A last sample at the end, so the series covers the whole compute.
                if let Some(s) = sampler.sample() {
                    samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(s);
                }
            });
        if let Ok(thread) = spawned {
            state.running = Some(Running { stop, thread });
        }
    }

    /// Ends one [`start`](Self::start); the last one stops the sampler (taking a final
    /// sample) and waits for its thread.
    pub fn stop(&self) {
        let running = {
            let mut state = self.state();
            state.active = state.active.saturating_sub(1);
            if state.active > 0 {
                return;
            }
            state.running.take()
        };
        if let Some(r) = running {
            r.halt();
        }
    }
}

impl Running {
    /// Stops the sampler (it takes a final sample) and waits for its thread.
    fn halt(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

impl Drop for ResourceProfiler {
    fn drop(&mut self) {
        let running = self.state().running.take();
        if let Some(r) = running {
            r.halt();
        }
    }
}

impl Hooks for ResourceProfiler {
    fn on_start(&self, graph: &Graph) {
        let _ = graph;
        self.start();
    }

    fn on_finish(&self, graph: &Graph, error: Option<&Error>) {
        let _ = (graph, error);
        self.stop();
    }
}

/// Reads one process's counters and turns CPU-time deltas into a percentage.
struct Sampler {
    system: System,
    pid: Pid,
    last: Option<(Duration, u64)>,
}

impl Sampler {
    fn new(pid: Pid) -> Self {
        Self {
            system: System::new(),
            pid,
            last: None,
        }
    }

    fn sample(&mut self) -> Option<ResourceSample> {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let time = clock::now();
        let process = self.system.process(self.pid)?;
        let cpu_ms = process.accumulated_cpu_time();
        #[allow(clippy::cast_precision_loss, reason = "CPU milliseconds fit an f64")]
        let cpu_percent = match self.last {
            Some((t, ms)) if time > t => {
                let wall = (time - t).as_secs_f64() * 1e3;
                (cpu_ms.saturating_sub(ms) as f64 / wall * 100.0).max(0.0)
            }
            _ => 0.0,
        };
        self.last = Some((time, cpu_ms));
        Some(ResourceSample {
            time,
            cpu_percent,
            rss_bytes: process.memory(),
        })
    }
}

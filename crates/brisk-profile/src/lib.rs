//! Profiling for Brisk computes, through the executor hooks of `brisk-graph`: it works the
//! same on every executor and costs nothing when no profiler is attached.
//!
//! - [`Profiler`] records every task attempt — key, task name, worker, start, end, how it
//!   ended — and turns the records into a per-task-name summary with the parallel
//!   efficiency ([`Profiler::summary`], printable to a terminal) and into Chrome trace-event
//!   JSON ([`Profiler::chrome_trace`], opens in Perfetto or `chrome://tracing`).
//! - [`ResourceProfiler`] samples the process's CPU and resident memory on a background
//!   thread while a compute runs.
//! - [`CacheProfiler`] follows the bytes of results the executor holds ([`SizeOf`]), and
//!   when each result was created and freed.
//! - [`ProgressBar`] shows tasks done / known, rate and ETA on stderr.
//! - [`Report`] puts all of it in one self-contained HTML file (Gantt per worker, CPU,
//!   memory, cache, summary table); [`duration_fill`] and [`svg`] draw the task graph
//!   coloured by measured time.
//!
//! All profilers share one process-wide time axis, so they line up in a report.
//!
//! ```
//! use std::sync::Arc;
//! use brisk_exec::ThreadedExecutor;
//! use brisk_graph::{ComputeOptions, Delayed, TaskSpec};
//! use brisk_profile::Profiler;
//!
//! let spec = TaskSpec::new("square").pure();
//! let parts: Delayed<Vec<u64>> = (0..100u64).map(|i| spec.call(|x: u64| x * x, (i,))).collect();
//! let profiler = Arc::new(Profiler::new());
//! let opts = ComputeOptions::new().hook(profiler.clone());
//! parts.compute_with_options(&ThreadedExecutor::new(2)?, &opts)?;
//! let summary = profiler.summary();
//! assert_eq!(summary.by_name.iter().find(|s| s.name == "square").map(|s| s.count), Some(100));
//! println!("{summary}");
//! let trace: serde_json::Value = serde_json::from_str(&profiler.chrome_trace())?;
//! assert!(trace["traceEvents"].as_array().is_some_and(|e| e.len() >= 101));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod cache;
mod clock;
mod dot;
mod progress;
mod report;
mod resource;

pub use cache::{CachePoint, CacheProfiler, Lifetime, SizeOf};
pub use dot::{GraphvizError, duration_fill, svg, svg_with};
pub use progress::ProgressBar;
pub use report::Report;
pub use resource::{ResourceProfiler, ResourceSample};

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use brisk_graph::{Error, Graph, Hooks, Key, Name, TaskEnd, TaskStatus};

/// How a recorded task attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It ran and produced a value.
    Computed,
    /// Its value was loaded from a checkpoint.
    Loaded,
    /// It failed (it may have been retried).
    Failed,
}

/// One task attempt.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskRecord {
    /// The task's key.
    pub key: Key,
    /// The task's name.
    pub name: Name,
    /// The worker that ran it.
    pub worker: usize,
    /// Where it ran when not in this process (`"<node>/<thread>"` on a cluster; see
    /// `brisk_graph::TaskEnd::location`); `None` for this process's workers.
    pub location: Option<std::sync::Arc<str>>,
    /// When it started, on the profilers' common time axis (from the first profiler made
    /// in this process).
    pub start: Duration,
    /// When it ended, on the same axis.
    pub end: Duration,
    /// Which attempt (1 = first).
    pub attempt: u32,
    /// How it ended.
    pub outcome: Outcome,
}

/// One compute seen by the profiler.
#[derive(Debug, Clone, Copy)]
struct ComputeSpan {
    start: Duration,
    end: Option<Duration>,
    workers: usize,
}

/// Records are kept in one shard per worker (modulo [`SHARDS`]) so that workers never
/// contend for a lock while recording.
const SHARDS: usize = 64;

/// Records every task of the computes it is attached to (`ComputeOptions::hook`).
/// Attach one profiler to one compute at a time for a meaningful summary; records of several
/// computes are kept one after the other on the same time axis.
pub struct Profiler {
    shards: Box<[Mutex<Vec<TaskRecord>>]>,
    computes: Mutex<Vec<ComputeSpan>>,
    /// Start of the running compute (ns on the common time axis) and the workers it has used: read per
    /// task without a lock.
    current_start: AtomicU64,
    current_workers: AtomicUsize,
}

impl Default for Profiler {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Profiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profiler")
            .field("records", &self.records().len())
            .finish()
    }
}

impl Profiler {
    /// An empty profiler; times count from now.
    #[must_use]
    pub fn new() -> Self {
        clock::epoch();
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            computes: Mutex::new(Vec::new()),
            current_start: AtomicU64::new(0),
            current_workers: AtomicUsize::new(1),
        }
    }

    fn computes(&self) -> std::sync::MutexGuard<'_, Vec<ComputeSpan>> {
        self.computes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The task attempts recorded so far, in the order they ended.
    #[must_use]
    pub fn records(&self) -> Vec<TaskRecord> {
        let mut all: Vec<TaskRecord> = Vec::new();
        for s in &*self.shards {
            all.extend(
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .cloned(),
            );
        }
        all.sort_by_key(|r| r.end);
        all
    }

    /// Start of the first and end of the last compute seen (the end is now while one runs).
    pub(crate) fn span(&self) -> Option<(Duration, Duration)> {
        let computes = self.computes();
        let first = computes.first()?;
        let last = computes.last()?;
        Some((first.start, last.end.unwrap_or_else(clock::now)))
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        for s in &*self.shards {
            s.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
        self.computes().clear();
    }

    /// Per task name: count, total, mean and max time and share of the busy time; plus wall
    /// time, workers and parallel efficiency (busy time / (wall × workers)).
    #[must_use]
    pub fn summary(&self) -> Summary {
        self.summary_of(&self.records())
    }

    /// [`summary`](Self::summary) of records already taken (the report reads them once).
    pub(crate) fn summary_of(&self, records: &[TaskRecord]) -> Summary {
        let mut computes = self.computes().clone();
        if let Some(c) = computes.last_mut().filter(|c| c.end.is_none()) {
            c.workers = self.current_workers.load(Ordering::Acquire);
        }
        let wall: Duration = computes
            .iter()
            .map(|c| c.end.unwrap_or_else(clock::now).saturating_sub(c.start))
            .sum();
        let workers = computes.iter().map(|c| c.workers).max().unwrap_or(1).max(1);
        let mut by_name: Vec<NameSummary> = Vec::new();
        let mut busy = Duration::ZERO;
        for r in records {
            let d = r.end.saturating_sub(r.start);
            busy += d;
            match by_name.iter_mut().find(|s| s.name == r.name.as_str()) {
                Some(s) => {
                    s.count += 1;
                    s.total += d;
                    s.max = s.max.max(d);
                }
                None => by_name.push(NameSummary {
                    name: r.name.to_string(),
                    count: 1,
                    total: d,
                    max: d,
                    share: 0.0,
                }),
            }
        }
        for s in &mut by_name {
            s.share = ratio(s.total, busy);
        }
        by_name.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
        #[allow(clippy::cast_precision_loss, reason = "worker counts are small")]
        let capacity = wall.as_secs_f64() * workers as f64;
        Summary {
            wall,
            busy,
            workers,
            efficiency: if capacity > 0.0 {
                (busy.as_secs_f64() / capacity).min(1.0)
            } else {
                0.0
            },
            by_name,
        }
    }

    /// The records as Chrome trace-event JSON: one complete event (`"ph": "X"`) per task
    /// attempt on a thread per worker, with the key, attempt and outcome as arguments; opens
    /// in Perfetto (ui.perfetto.dev) or `chrome://tracing`.
    #[must_use]
    pub fn chrome_trace(&self) -> String {
        let records = self.records();
        let mut events: Vec<serde_json::Value> = Vec::with_capacity(records.len() + 8);
        let lanes = Lanes::of(&records);
        for (tid, label) in lanes.labels.iter().enumerate() {
            events.push(serde_json::json!({
                "ph": "M", "pid": 1, "tid": tid, "name": "thread_name",
                "args": {"name": label}
            }));
        }
        for r in &records {
            events.push(serde_json::json!({
                "ph": "X",
                "pid": 1,
                "tid": lanes.of_record(r),
                "name": r.name.as_str(),
                "cat": match r.outcome {
                    Outcome::Computed => "computed",
                    Outcome::Loaded => "loaded",
                    Outcome::Failed => "failed",
                },
                "ts": micros(r.start),
                "dur": micros(r.end.saturating_sub(r.start)),
                "args": {"key": r.key.to_string(), "attempt": r.attempt},
            }));
        }
        serde_json::json!({"traceEvents": events, "displayTimeUnit": "ms"}).to_string()
    }
}

/// The rows of a timeline: one per worker of this process (`worker N`), then one per remote
/// node and thread (its location), in order of appearance.
pub(crate) struct Lanes {
    /// Per row, its label.
    pub(crate) labels: Vec<String>,
    index: std::collections::HashMap<(Option<std::sync::Arc<str>>, usize), usize>,
}

impl Lanes {
    pub(crate) fn of(records: &[TaskRecord]) -> Self {
        // Every local worker up to the highest seen (idle ones show as empty rows).
        let local = records
            .iter()
            .filter(|r| r.location.is_none())
            .map(|r| r.worker + 1)
            .max()
            .unwrap_or(0);
        let mut keys: Vec<(Option<std::sync::Arc<str>>, usize)> = (0..local)
            .map(|w| (None, w))
            .chain(
                records
                    .iter()
                    .filter_map(|r| r.location.clone().map(|l| (Some(l), 0))),
            )
            .collect();
        // Local workers first by index, then remote locations by name.
        keys.sort();
        keys.dedup();
        let labels = keys
            .iter()
            .map(|(loc, w)| {
                loc.as_deref()
                    .map_or_else(|| format!("worker {w}"), str::to_owned)
            })
            .collect();
        let index = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
        Self { labels, index }
    }

    /// The row of `r`.
    pub(crate) fn of_record(&self, r: &TaskRecord) -> usize {
        let k = (
            r.location.clone(),
            if r.location.is_some() { 0 } else { r.worker },
        );
        self.index.get(&k).copied().unwrap_or(0)
    }

    pub(crate) fn len(&self) -> usize {
        self.labels.len().max(1)
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ratio(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        0.0
    } else {
        part.as_secs_f64() / whole.as_secs_f64()
    }
}

impl Hooks for Profiler {
    fn on_start(&self, graph: &Graph) {
        let _ = graph;
        let start = clock::now();
        self.current_start.store(
            u64::try_from(start.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        self.current_workers.store(1, Ordering::Release);
        self.computes().push(ComputeSpan {
            start,
            end: None,
            workers: 1,
        });
    }

    fn on_task_end(&self, graph: &Graph, event: &TaskEnd<'_>) {
        let outcome = match event.status {
            TaskStatus::Computed(_) | TaskStatus::Remote { .. } => Outcome::Computed,
            TaskStatus::Loaded(_) => Outcome::Loaded,
            _ => Outcome::Failed,
        };
        let node = graph.node(event.id);
        let base = Duration::from_nanos(self.current_start.load(Ordering::Acquire));
        self.current_workers
            .fetch_max(event.worker + 1, Ordering::Relaxed);
        let record = TaskRecord {
            key: node.key().clone(),
            name: node.name_ref().clone(),
            worker: event.worker,
            location: event.location.map(std::sync::Arc::from),
            start: base + event.start,
            end: base + event.start + event.duration,
            attempt: event.attempt,
            outcome,
        };
        self.shards[event.worker % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    fn on_finish(&self, graph: &Graph, error: Option<&Error>) {
        let _ = (graph, error);
        let end = clock::now();
        let workers = self.current_workers.load(Ordering::Acquire);
        if let Some(c) = self.computes().last_mut() {
            c.end = Some(end);
            c.workers = workers;
        }
    }
}

/// What [`Profiler::summary`] reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Summary {
    /// Wall time of the profiled computes.
    pub wall: Duration,
    /// Sum of all task times.
    pub busy: Duration,
    /// Workers seen (the highest worker index + 1).
    pub workers: usize,
    /// busy / (wall × workers), in 0..=1.
    pub efficiency: f64,
    /// Per task name, most total time first.
    pub by_name: Vec<NameSummary>,
}

/// The tasks of one name.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NameSummary {
    /// The task name.
    pub name: String,
    /// Attempts recorded.
    pub count: usize,
    /// Their total time.
    pub total: Duration,
    /// The longest one.
    pub max: Duration,
    /// Share of all task time, in 0..=1.
    pub share: f64,
}

impl NameSummary {
    /// Mean time per attempt.
    #[must_use]
    pub fn mean(&self) -> Duration {
        u32::try_from(self.count)
            .ok()
            .filter(|&n| n > 0)
            .map_or(Duration::ZERO, |n| self.total / n)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wall {:.3} s, busy {:.3} s on {} worker(s): parallel efficiency {:.0} %",
            self.wall.as_secs_f64(),
            self.busy.as_secs_f64(),
            self.workers,
            self.efficiency * 100.0
        )?;
        writeln!(
            f,
            "{:<40} {:>8} {:>11} {:>11} {:>11} {:>6}",
            "task", "count", "total ms", "mean ms", "max ms", "share"
        )?;
        for s in &self.by_name {
            writeln!(
                f,
                "{:<40} {:>8} {:>11.3} {:>11.4} {:>11.3} {:>5.1}%",
                s.name,
                s.count,
                s.total.as_secs_f64() * 1e3,
                s.mean().as_secs_f64() * 1e3,
                s.max.as_secs_f64() * 1e3,
                s.share * 100.0
            )?;
        }
        Ok(())
    }
}

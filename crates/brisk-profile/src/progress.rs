//! [`ProgressBar`]: tasks done out of the tasks known, with rate and ETA, on stderr.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use brisk_graph::{Error, Graph, Hooks, TaskEnd, TaskStatus};
use indicatif::{ProgressDrawTarget, ProgressStyle, TermLike};

const STYLE_KNOWN: &str =
    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks {percent}% · {per_sec} · ETA {eta}";
const STYLE_OPEN: &str =
    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks (open) · {per_sec}";

/// A progress bar for computes (indicatif): tasks done / tasks known, rate and ETA.
///
/// Attach it with `ComputeOptions::hook`. It counts a task when it produced or loaded its
/// value (failed attempts that are retried are not counted twice). The total is the number
/// of tasks of the graphs started so far; when more work can still arrive (a dynamic source
/// that is not sealed: the executor's `on_inputs_open` hook, or [`ProgressBar::set_open`]) it
/// shows "done/known (open)" and no percentage or ETA, and a normal percentage once sealed.
///
/// [`ProgressBar::new`] draws on stderr only when stderr is a terminal (and `TERM` is not
/// `dumb`), so logs and CI output stay clean; [`ProgressBar::forced`] always draws.
/// Drawing is rate-limited to 20 times a second by indicatif, and counting is one atomic
/// add per task, so the bar does not slow a compute measurably.
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
    open: AtomicBool,
    running: AtomicUsize,
}

impl fmt::Debug for ProgressBar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgressBar")
            .field("done", &self.done())
            .field("known", &self.known())
            .field("open", &self.is_open())
            .finish()
    }
}

impl Default for ProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressBar {
    /// A bar on stderr, hidden when stderr is not a terminal.
    #[must_use]
    pub fn new() -> Self {
        Self::with_target(ProgressDrawTarget::stderr())
    }

    /// A bar on stderr even when it is not a terminal (for example under a CI log viewer
    /// that understands carriage returns).
    #[must_use]
    pub fn forced() -> Self {
        Self::with_target(ProgressDrawTarget::term_like_with_hz(Box::new(Stderr), 20))
    }

    /// A bar that draws nowhere: counts only (for tests and embedding).
    #[must_use]
    pub fn hidden() -> Self {
        Self::with_target(ProgressDrawTarget::hidden())
    }

    /// A bar drawing on any indicatif target (for example an `InMemoryTerm`).
    #[must_use]
    pub fn with_target(target: ProgressDrawTarget) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(Some(0), target);
        let this = Self {
            bar,
            open: AtomicBool::new(false),
            running: AtomicUsize::new(0),
        };
        this.restyle();
        this
    }

    fn restyle(&self) {
        let template = if self.is_open() {
            STYLE_OPEN
        } else {
            STYLE_KNOWN
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
    }

    /// Tasks done so far.
    #[must_use]
    pub fn done(&self) -> u64 {
        self.bar.position()
    }

    /// Tasks known so far.
    #[must_use]
    pub fn known(&self) -> u64 {
        self.bar.length().unwrap_or(0)
    }

    /// Whether more tasks may still become known.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Marks the total as open (more tasks may arrive) or closed.
    pub fn set_open(&self, open: bool) {
        if self.open.swap(open, Ordering::AcqRel) != open {
            self.restyle();
        }
    }

    /// Adds `n` tasks to the known total (for work discovered while running).
    pub fn add_known(&self, n: u64) {
        self.bar.inc_length(n);
    }

    /// The line as it would be drawn now (without the spinner and bar).
    #[must_use]
    pub fn message(&self) -> String {
        if self.is_open() {
            format!("{}/{} tasks (open)", self.done(), self.known())
        } else {
            format!("{}/{} tasks", self.done(), self.known())
        }
    }
}

impl Hooks for ProgressBar {
    fn on_start(&self, graph: &Graph) {
        self.running.fetch_add(1, Ordering::AcqRel);
        self.bar.inc_length(graph.len() as u64);
    }

    fn on_task_end(&self, graph: &Graph, event: &TaskEnd<'_>) {
        let _ = graph;
        if matches!(
            event.status,
            TaskStatus::Computed(_) | TaskStatus::Loaded(_)
        ) {
            self.bar.inc(1);
        }
    }

    fn on_finish(&self, graph: &Graph, error: Option<&Error>) {
        let _ = graph;
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 && !self.is_open() {
            if error.is_some() {
                self.bar.abandon();
            } else {
                self.bar.finish();
            }
        }
    }

    fn on_inputs_open(&self, open: bool) {
        self.set_open(open);
        if !open && self.running.load(Ordering::Acquire) == 0 {
            self.bar.finish();
        }
    }
}

/// stderr as an indicatif terminal, drawn whether or not it is a terminal.
#[derive(Debug)]
struct Stderr;

impl TermLike for Stderr {
    fn width(&self) -> u16 {
        100
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}A"))
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}B"))
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}C"))
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.write_str(&format!("\x1b[{n}D"))
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        writeln!(std::io::stderr(), "{s}")
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        write!(std::io::stderr(), "{s}")
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.write_str("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

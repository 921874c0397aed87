//! Graph pictures: DOT colouring by measured duration and an SVG helper around Graphviz.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use brisk_graph::{Graph, Key};

use crate::Profiler;

/// Why [`svg`] could not draw a graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphvizError {
    /// The Graphviz program is not installed (or not on `PATH`).
    #[error(
        "Graphviz `{program}` is not installed or not on PATH (Debian/Ubuntu: `apt install graphviz`, macOS: `brew install graphviz`); the DOT text itself can be rendered anywhere else"
    )]
    NotInstalled {
        /// The program that was looked for.
        program: String,
    },
    /// The program ran but failed.
    #[error("Graphviz `{program}` failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Talking to the program failed.
    #[error("running Graphviz `{program}`: {source}")]
    Io {
        /// The program.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Renders DOT text (for example [`Graph::to_dot`]) to SVG with Graphviz `dot`.
///
/// # Errors
/// [`GraphvizError::NotInstalled`] when `dot` is not on `PATH`, [`GraphvizError::Failed`]
/// when it rejects the input.
pub fn svg(dot: &str) -> Result<String, GraphvizError> {
    svg_with("dot", dot)
}

/// Like [`svg`] with another Graphviz program or path (`neato`, `/opt/graphviz/bin/dot`).
///
/// # Errors
/// As [`svg`].
pub fn svg_with(program: &str, dot: &str) -> Result<String, GraphvizError> {
    let io = |source| GraphvizError::Io {
        program: program.to_owned(),
        source,
    };
    let mut child = match Command::new(program)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(GraphvizError::NotInstalled {
                program: program.to_owned(),
            });
        }
        Err(e) => return Err(io(e)),
    };
    // Feed stdin from another thread so a large graph cannot deadlock on full pipes.
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = dot.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().map_err(io)?;
    let written = writer.join().unwrap_or_else(|_| {
        Err(std::io::Error::other(
            "the thread feeding Graphviz panicked",
        ))
    });
    if !output.status.success() {
        return Err(GraphvizError::Failed {
            program: program.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    written.map_err(io)?;
    String::from_utf8(output.stdout).map_err(|e| io(std::io::Error::other(e)))
}

/// Fill colours per node of `graph` from the time its task took in the profiled computes
/// (summed over attempts): white for the fastest, deep red for the slowest, on a log scale;
/// nodes without a record (not run, or culled) are left unfilled. Pass the result to
/// `DotOptions::fill`.
#[must_use]
pub fn duration_fill(graph: &Graph, profiler: &Profiler) -> Vec<Option<String>> {
    let mut by_key: HashMap<Key, Duration> = HashMap::new();
    for r in profiler.records() {
        *by_key.entry(r.key).or_default() += r.end.saturating_sub(r.start);
    }
    let times: Vec<Option<f64>> = graph
        .keys()
        .map(|k| by_key.get(k).map(|d| d.as_secs_f64().max(1e-9)))
        .collect();
    let known = times.iter().flatten();
    let lo = known.clone().copied().fold(f64::INFINITY, f64::min);
    let hi = known.copied().fold(0.0, f64::max);
    times
        .into_iter()
        .map(|t| {
            t.map(|t| {
                let f = if hi > lo {
                    (t.ln() - lo.ln()) / (hi.ln() - lo.ln())
                } else {
                    1.0
                };
                heat(f)
            })
        })
        .collect()
}

/// White → orange → deep red.
fn heat(f: f64) -> String {
    let f = f.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
    let (r, g, b) = if f < 0.5 {
        let t = f * 2.0;
        (
            lerp(255.0, 253.0, t),
            lerp(255.0, 141.0, t),
            lerp(255.0, 60.0, t),
        )
    } else {
        let t = (f - 0.5) * 2.0;
        (
            lerp(253.0, 189.0, t),
            lerp(141.0, 0.0, t),
            lerp(60.0, 38.0, t),
        )
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "0..=255"
    )]
    let c = |v: f64| v.round() as u8;
    format!("#{:02x}{:02x}{:02x}", c(r), c(g), c(b))
}

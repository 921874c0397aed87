//! [`Report`]: one self-contained HTML file with the task timeline per worker, CPU and
//! memory, cache bytes and a summary table, all on one time axis.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::{CacheProfiler, Outcome, Profiler, ResourceProfiler, Summary, TaskRecord};

/// Plot area width in pixels (labels are drawn left of it).
const WIDTH: f64 = 1000.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
const LANE: f64 = 22.0;
const CHART: f64 = 110.0;

/// Colours for task names, most expensive name first (colour-blind-friendly Tableau 10,
/// then a few more).
const PALETTE: [&str; 14] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c", "#8c564b", "#17becf",
];
const OTHER: &str = "#cccccc";

/// A self-contained HTML report of profiled computes: inline SVG, inline CSS and a few lines
/// of inline JavaScript for hover details; no network, no external files. Any of the three
/// profilers may be left out.
///
/// ```
/// use std::sync::Arc;
/// use brisk_exec::ThreadedExecutor;
/// use brisk_graph::{ComputeOptions, Delayed, TaskSpec};
/// use brisk_profile::{CacheProfiler, Profiler, Report, ResourceProfiler};
///
/// let spec = TaskSpec::new("square").pure();
/// let parts: Delayed<Vec<u64>> = (0..50u64).map(|i| spec.call(|x: u64| x * x, (i,))).collect();
/// let (tasks, resources, cache) = (
///     Arc::new(Profiler::new()),
///     Arc::new(ResourceProfiler::new()),
///     Arc::new(CacheProfiler::new()),
/// );
/// let opts = ComputeOptions::new()
///     .hook(tasks.clone())
///     .hook(resources.clone())
///     .hook(cache.clone());
/// parts.compute_with_options(&ThreadedExecutor::new(2)?, &opts)?;
/// let html = Report::new("squares")
///     .tasks(&tasks)
///     .resources(&resources)
///     .cache(&cache)
///     .to_html();
/// assert!(html.starts_with("<!DOCTYPE html>") && html.contains("square"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    title: &'a str,
    tasks: Option<&'a Profiler>,
    resources: Option<&'a ResourceProfiler>,
    cache: Option<&'a CacheProfiler>,
}

impl<'a> Report<'a> {
    /// An empty report with a title.
    #[must_use]
    pub fn new(title: &'a str) -> Self {
        Self {
            title,
            tasks: None,
            resources: None,
            cache: None,
        }
    }

    /// Adds the task timeline and summary.
    #[must_use]
    pub fn tasks(mut self, profiler: &'a Profiler) -> Self {
        self.tasks = Some(profiler);
        self
    }

    /// Adds CPU and memory.
    #[must_use]
    pub fn resources(mut self, profiler: &'a ResourceProfiler) -> Self {
        self.resources = Some(profiler);
        self
    }

    /// Adds cache bytes over time.
    #[must_use]
    pub fn cache(mut self, profiler: &'a CacheProfiler) -> Self {
        self.cache = Some(profiler);
        self
    }

    /// Writes the report to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_html())
    }

    /// The report as one HTML document.
    #[must_use]
    pub fn to_html(&self) -> String {
        let records = self.tasks.map(Profiler::records).unwrap_or_default();
        let summary = self.tasks.map(|p| p.summary_of(&records));
        let samples = self
            .resources
            .map(ResourceProfiler::samples)
            .unwrap_or_default();
        let points = self.cache.map(CacheProfiler::points).unwrap_or_default();

        // One time axis for everything.
        let mut lo = Duration::MAX;
        let mut hi = Duration::ZERO;
        let mut see = |t: Duration| {
            lo = lo.min(t);
            hi = hi.max(t);
        };
        for r in &records {
            see(r.start);
            see(r.end);
        }
        if let Some((s, e)) = self.tasks.and_then(Profiler::span) {
            see(s);
            see(e);
        }
        samples.iter().for_each(|s| see(s.time));
        points.iter().for_each(|p| see(p.time));
        if lo > hi {
            lo = Duration::ZERO;
            hi = Duration::ZERO;
        }
        let axis = Axis::new(lo, hi);

        let colors = Colors::new(summary.as_ref());
        let mut body = String::new();
        header(&mut body, self, summary.as_ref(), &records);
        if self.tasks.is_some() {
            gantt(&mut body, &records, &axis, &colors);
        }
        if let Some(r) = self.resources {
            resource_charts(&mut body, r, &samples, &axis, summary.as_ref());
        }
        if let Some(c) = self.cache {
            cache_chart(&mut body, c, &points, &axis);
        }
        if let Some(s) = &summary {
            table(&mut body, s, &colors);
        }
        page(self.title, &body)
    }
}

/// Maps times to x pixels.
struct Axis {
    lo: Duration,
    span: f64,
}

impl Axis {
    fn new(lo: Duration, hi: Duration) -> Self {
        let span = hi.saturating_sub(lo).as_secs_f64();
        Self {
            lo,
            span: if span > 0.0 { span } else { 1e-3 },
        }
    }

    fn x(&self, t: Duration) -> f64 {
        LEFT + t.saturating_sub(self.lo).as_secs_f64() / self.span * WIDTH
    }

    fn seconds(&self, t: Duration) -> f64 {
        t.saturating_sub(self.lo).as_secs_f64()
    }

    /// Grid lines and labels along the x axis of a chart `height` high at `top`.
    fn ticks(&self, out: &mut String, top: f64, height: f64) {
        let step = nice_step(self.span / 8.0);
        let mut t = 0.0;
        while t <= self.span * 1.0001 {
            let x = LEFT + t / self.span * WIDTH;
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}" class="grid"/><text x="{x:.1}" y="{:.1}" class="tick">{}</text>"##,
                top + height,
                top + height + 13.0,
                fmt_seconds(t, step)
            );
            t += step;
        }
    }
}

fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_seconds(t: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{t:.0} s")
    } else if step >= 0.1 {
        format!("{t:.1} s")
    } else if step >= 0.001 {
        format!("{:.0} ms", t * 1e3)
    } else {
        format!("{:.0} µs", t * 1e6)
    }
}

fn fmt_bytes(b: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let f = b as f64;
    if f >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", f / (1024.0 * 1024.0 * 1024.0))
    } else if f >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", f / (1024.0 * 1024.0))
    } else if f >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "display only"
)]
fn bytes_unit(v: f64) -> String {
    fmt_bytes(v as u64)
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Colour per task name, by rank in the summary (most total time first).
struct Colors {
    names: Vec<String>,
}

impl Colors {
    fn new(summary: Option<&Summary>) -> Self {
        Self {
            names: summary
                .map(|s| s.by_name.iter().map(|n| n.name.clone()).collect())
                .unwrap_or_default(),
        }
    }

    fn of(&self, name: &str) -> &'static str {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| PALETTE.get(i).copied())
            .unwrap_or(OTHER)
    }
}

fn header(
    out: &mut String,
    report: &Report<'_>,
    summary: Option<&Summary>,
    records: &[TaskRecord],
) {
    let _ = write!(out, "<h1>{}</h1><div class=\"cards\">", esc(report.title));
    let mut card = |label: &str, value: String| {
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"l\">{}</div></div>",
            esc(&value),
            esc(label)
        );
    };
    if let Some(s) = summary {
        card("wall time", fmt_duration(s.wall));
        card("task time (busy)", fmt_duration(s.busy));
        card("workers", s.workers.to_string());
        card(
            "parallel efficiency = busy / (wall × workers)",
            format!("{:.0} %", s.efficiency * 100.0),
        );
        card("task runs", records.len().to_string());
        let failed = records
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .count();
        if failed > 0 {
            card("failed attempts", failed.to_string());
        }
        let loaded = records
            .iter()
            .filter(|r| r.outcome == Outcome::Loaded)
            .count();
        if loaded > 0 {
            card("loaded from checkpoints", loaded.to_string());
        }
    }
    if let Some(r) = report.resources {
        card("peak resident memory", fmt_bytes(r.peak_rss()));
    }
    if let Some(c) = report.cache {
        card("peak results held", fmt_bytes(c.peak_bytes()));
    }
    out.push_str("</div>");
}

fn gantt(out: &mut String, records: &[TaskRecord], axis: &Axis, colors: &Colors) {
    let lanes = crate::Lanes::of(records);
    #[allow(clippy::cast_precision_loss, reason = "worker counts are small")]
    let height = lanes.len() as f64 * LANE;
    let total_h = height + 30.0;
    let _ = write!(
        out,
        "<h2>Tasks per worker</h2><p class=\"hint\">One row per worker (per node and thread for tasks that ran on a cluster); each box is one task run, coloured by task name (legend below). Hover for details. Gaps are idle time.</p><svg width=\"{:.0}\" height=\"{total_h:.0}\" class=\"chart\">",
        LEFT + WIDTH + RIGHT
    );
    axis.ticks(out, 0.0, height);
    for (w, label) in lanes.labels.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "worker counts are small")]
        let y = w as f64 * LANE;
        let _ = write!(
            out,
            r#"<text x="{:.0}" y="{:.1}" class="lane">{}</text><rect x="{LEFT}" y="{y:.1}" width="{WIDTH}" height="{:.1}" class="lanebg"/>"#,
            LEFT - 8.0,
            y + LANE * 0.68,
            esc(label),
            LANE - 2.0
        );
    }
    // Boxes narrower than a pixel are merged per worker and pixel column, so a report of
    // a million tasks stays a few thousand elements.
    let mut merged: std::collections::BTreeMap<(usize, i64), (usize, f64, f64, String)> =
        std::collections::BTreeMap::new();
    for r in records {
        let x0 = axis.x(r.start);
        let x1 = axis.x(r.end);
        let lane = lanes.of_record(r);
        #[allow(clippy::cast_precision_loss, reason = "worker counts are small")]
        let y = lane as f64 * LANE + 1.0;
        if x1 - x0 < 1.0 {
            #[allow(clippy::cast_possible_truncation, reason = "a pixel column")]
            let col = x0.floor() as i64;
            let e = merged
                .entry((lane, col))
                .or_insert_with(|| (0, x0, x1, r.name.to_string()));
            e.0 += 1;
            e.1 = e.1.min(x0);
            e.2 = e.2.max(x1);
            continue;
        }
        let class = match r.outcome {
            Outcome::Computed => "t",
            Outcome::Loaded => "t loaded",
            Outcome::Failed => "t failed",
        };
        let tip = format!(
            "{} · {} · {} · start {:.4} s · {} · attempt {} · {}",
            r.name.as_str(),
            r.key,
            lanes.labels[lane],
            axis.seconds(r.start),
            fmt_duration(r.end.saturating_sub(r.start)),
            r.attempt,
            match r.outcome {
                Outcome::Computed => "computed",
                Outcome::Loaded => "loaded from checkpoint",
                Outcome::Failed => "failed",
            }
        );
        let _ = write!(
            out,
            r#"<rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{:.1}" fill="{}" class="{class}" data-tip="{}"/>"#,
            x1 - x0,
            LANE - 4.0,
            colors.of(r.name.as_str()),
            esc(&tip)
        );
    }
    for ((lane, _), (n, x0, x1, name)) in merged {
        #[allow(clippy::cast_precision_loss, reason = "worker counts are small")]
        let y = lane as f64 * LANE + 1.0;
        let tip = format!("{n} short task(s) on {}, e.g. {name}", lanes.labels[lane]);
        let _ = write!(
            out,
            r#"<rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{:.1}" fill="{}" class="t" data-tip="{}"/>"#,
            (x1 - x0).max(1.0),
            LANE - 4.0,
            colors.of(&name),
            esc(&tip)
        );
    }
    out.push_str("</svg><div class=\"legend\">");
    for name in &colors.names {
        let _ = write!(
            out,
            "<span><i style=\"background:{}\"></i>{}</span>",
            colors.of(name),
            esc(name)
        );
    }
    out.push_str("</div>");
}

/// A line chart of `(time, value)` points with a y axis from 0 to `max`.
struct Series<'a> {
    title: &'a str,
    hint: &'a str,
    points: &'a [(Duration, f64)],
    max: f64,
    unit: &'a dyn Fn(f64) -> String,
    color: &'a str,
    /// Draw as steps (the value holds until the next point).
    step: bool,
}

fn line_chart(out: &mut String, series: &Series<'_>, axis: &Axis) {
    let Series {
        title,
        hint,
        points,
        max,
        unit,
        color,
        step,
    } = *series;
    let _ = write!(
        out,
        "<h2>{}</h2><p class=\"hint\">{}</p><svg width=\"{:.0}\" height=\"{:.0}\" class=\"chart\"><g transform=\"translate(0,8)\">",
        esc(title),
        esc(hint),
        LEFT + WIDTH + RIGHT,
        CHART + 38.0
    );
    axis.ticks(out, 0.0, CHART);
    let max = if max > 0.0 { max } else { 1.0 };
    for frac in [0.0, 0.5, 1.0] {
        let y = CHART - frac * CHART;
        let _ = write!(
            out,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="grid"/><text x="{:.0}" y="{:.1}" class="lane">{}</text>"#,
            LEFT + WIDTH,
            LEFT - 8.0,
            y + 4.0,
            esc(&unit(max * frac))
        );
    }
    if points.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{:.0}" y="{:.0}" class="empty">no samples</text>"#,
            LEFT + WIDTH / 2.0,
            CHART / 2.0
        );
    } else {
        let mut path = String::new();
        let mut prev_y: Option<f64> = None;
        for (t, v) in points {
            let x = axis.x(*t);
            let y = CHART - (v / max).clamp(0.0, 1.0) * CHART;
            match prev_y {
                None => {
                    let _ = write!(path, "M{x:.1},{y:.1}");
                }
                Some(py) if step => {
                    let _ = write!(path, " L{x:.1},{py:.1} L{x:.1},{y:.1}");
                }
                Some(_) => {
                    let _ = write!(path, " L{x:.1},{y:.1}");
                }
            }
            prev_y = Some(y);
        }
        let _ = write!(
            out,
            r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>"#
        );
        for (t, v) in points {
            let x = axis.x(*t);
            let y = CHART - (v / max).clamp(0.0, 1.0) * CHART;
            let _ = write!(
                out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" class="pt" data-tip="{} at {:.3} s"/>"#,
                esc(&unit(*v)),
                axis.seconds(*t)
            );
        }
    }
    out.push_str("</g></svg>");
}

fn resource_charts(
    out: &mut String,
    profiler: &ResourceProfiler,
    samples: &[crate::ResourceSample],
    axis: &Axis,
    summary: Option<&Summary>,
) {
    let cpu: Vec<(Duration, f64)> = samples.iter().map(|s| (s.time, s.cpu_percent)).collect();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let workers = summary.map_or(1, |s| s.workers).max(cores);
    #[allow(clippy::cast_precision_loss, reason = "core counts are small")]
    let cpu_max = cpu
        .iter()
        .map(|p| p.1)
        .fold(100.0 * workers as f64, f64::max);
    line_chart(
        out,
        &Series {
            title: "CPU",
            hint: &format!(
                "Process CPU use in % of one core (100 % per busy core; {cores} cores here), sampled every {}. The kernel counts CPU time in 10 ms ticks, so short intervals read noisy.",
                fmt_duration(profiler.interval())
            ),
            points: &cpu,
            max: cpu_max,
            unit: &|v| format!("{v:.0} %"),
            color: "#e15759",
            step: false,
        },
        axis,
    );
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let mem: Vec<(Duration, f64)> = samples
        .iter()
        .map(|s| (s.time, s.rss_bytes as f64))
        .collect();
    let mem_max = mem.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1;
    line_chart(
        out,
        &Series {
            title: "Memory",
            hint: "Resident memory of the process.",
            points: &mem,
            max: mem_max,
            unit: &bytes_unit,
            color: "#4e79a7",
            step: false,
        },
        axis,
    );
}

fn cache_chart(
    out: &mut String,
    profiler: &CacheProfiler,
    points: &[crate::CachePoint],
    axis: &Axis,
) {
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let pts: Vec<(Duration, f64)> = points.iter().map(|p| (p.time, p.bytes as f64)).collect();
    // Thin the points for the chart: at most a few per pixel.
    let pts = thin(&pts, 4000);
    let max = pts.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1;
    let no_size = profiler.unsized_types();
    let mut hint = "Bytes of task results held by the executor: a result is held from when its task ends until its last consumer has run.".to_owned();
    if !no_size.is_empty() {
        let list: Vec<String> = no_size.iter().map(|(t, n)| format!("{n} × {t}")).collect();
        let _ = write!(
            hint,
            " Not counted (type without SizeOf): {}.",
            list.join(", ")
        );
    }
    line_chart(
        out,
        &Series {
            title: "Results held",
            hint: &hint,
            points: &pts,
            max,
            unit: &bytes_unit,
            color: "#59a14f",
            step: true,
        },
        axis,
    );
}

/// Keeps the first and the largest point of every bucket, at most `n` buckets.
fn thin(points: &[(Duration, f64)], n: usize) -> Vec<(Duration, f64)> {
    if points.len() <= n {
        return points.to_vec();
    }
    let per = points.len().div_ceil(n);
    let mut out = Vec::with_capacity(2 * n + 1);
    for chunk in points.chunks(per) {
        out.push(chunk[0]);
        if let Some(m) = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            out.push(*m);
        }
    }
    if let Some(last) = points.last() {
        out.push(*last);
    }
    out.sort_by_key(|p| p.0);
    out
}

fn table(out: &mut String, summary: &Summary, colors: &Colors) {
    out.push_str("<h2>Per task name</h2><table><thead><tr><th></th><th>task</th><th>count</th><th>total</th><th>mean</th><th>max</th><th>share of task time</th></tr></thead><tbody>");
    for s in &summary.by_name {
        let _ = write!(
            out,
            "<tr><td><i style=\"background:{}\"></i></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><span class=\"bar\" style=\"width:{:.0}px\"></span> {:.1} %</td></tr>",
            colors.of(&s.name),
            esc(&s.name),
            s.count,
            fmt_duration(s.total),
            fmt_duration(s.mean()),
            fmt_duration(s.max),
            s.share * 120.0,
            s.share * 100.0
        );
    }
    out.push_str("</tbody></table>");
}

const CSS: &str = r"
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 12px}h2{font-size:16px;margin:22px 0 2px}
.hint{color:#666;margin:0 0 6px;font-size:12px;max-width:1100px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}
.card .v{font-size:20px;font-weight:600}.card .l{color:#666;font-size:12px}
svg.chart{display:block;font-size:11px}
.grid{stroke:#e6e6e6;stroke-width:1}.tick{fill:#777;text-anchor:middle}
.lane{fill:#444;text-anchor:end}.lanebg{fill:#f7f7f7}.empty{fill:#999;text-anchor:middle}
rect.t{stroke:#fff;stroke-width:0.5}rect.t:hover,circle.pt:hover{stroke:#000;stroke-width:1.5}
rect.failed{stroke:#d00;stroke-width:2}rect.loaded{opacity:0.55}
circle.pt{fill:transparent}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:6px 0 0 110px;font-size:12px}
i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;vertical-align:-1px}
table{border-collapse:collapse;margin-top:6px}th,td{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
th:nth-child(2),td:nth-child(2){text-align:left}
.bar{display:inline-block;height:10px;background:#4e79a7;vertical-align:0}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;padding:4px 8px;border-radius:4px;font-size:12px;display:none;max-width:600px;z-index:9}
";

const JS: &str = r"
(function(){
  var tip=document.getElementById('tip');
  document.addEventListener('mousemove',function(e){
    var t=e.target&&e.target.getAttribute?e.target.getAttribute('data-tip'):null;
    if(!t){tip.style.display='none';return;}
    tip.textContent=t;tip.style.display='block';
    tip.style.left=Math.min(e.clientX+12,window.innerWidth-320)+'px';
    tip.style.top=(e.clientY+14)+'px';
  });
})();
";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — Brisk profile</title><style>{CSS}</style></head><body>{body}<p class=\"hint\">Generated by brisk-profile {}.</p><div id=\"tip\"></div><script>{JS}</script></body></html>\n",
        esc(title),
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn nice_steps() {
        assert!((nice_step(0.13) - 0.1).abs() < 1e-12);
        assert!((nice_step(0.3) - 0.2).abs() < 1e-12);
        assert!((nice_step(4.0) - 5.0).abs() < 1e-12);
    }

    #[test]
    fn thinning_keeps_peaks_and_ends() {
        let pts: Vec<(Duration, f64)> = (0..10_000u64)
            .map(|i| (Duration::from_micros(i), if i == 5_001 { 1e9 } else { 1.0 }))
            .collect();
        let t = thin(&pts, 100);
        assert!(t.len() <= 201);
        assert!(t.iter().any(|p| p.1 > 1e8));
        assert_eq!(t.last().map(|p| p.0), Some(Duration::from_micros(9_999)));
    }
}

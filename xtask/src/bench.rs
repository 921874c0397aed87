//! `cargo xtask bench --compare-dask`: the same scenarios in Brisk and in Dask, interleaved,
//! side by side in target/bench/compare.{json,md}.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::*;

/// `cargo xtask bench --compare-dask`: the graph and futures scenarios in Brisk and in Dask
/// (same machine, same number of workers, same run), written to target/bench/compare.json and
/// target/bench/compare.md.
pub(crate) struct CompareOptions {
    pub(crate) quick: bool,
    pub(crate) sizes: Option<Vec<usize>>,
    pub(crate) timeout: Option<u64>,
    /// Only the scenarios whose name starts with this.
    pub(crate) only: Option<String>,
    /// Rounds of (Brisk, Dask) per scenario (default: 3 for Zarr scenarios, 1 otherwise).
    pub(crate) rounds: Option<usize>,
}

pub(crate) fn compare_dask(opts: &CompareOptions) -> Result<()> {
    let CompareOptions {
        quick,
        ref sizes,
        timeout,
        ref only,
        rounds,
    } = *opts;
    let out_dir = PathBuf::from("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let python = venv("bench", "benches/dask/requirements.txt")?;
    let zarr_dir = out_dir.join("zarr");
    std::fs::create_dir_all(&zarr_dir)?;
    build_bench_bin("compare")?;
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let graph_sizes: Vec<usize> = match sizes {
        Some(s) => s.clone(),
        None if quick => vec![10_000],
        None => vec![10_000, 100_000, 1_000_000],
    };
    let futures_sizes: &[usize] = if quick { &[100_000] } else { &[1_000_000] };
    let mut scenarios = Vec::new();
    for shape in ["indep", "chain", "tree"] {
        for &n in &graph_sizes {
            scenarios.push((format!("graph/{shape}/{n}"), n));
        }
    }
    for shape in ["map", "batched"] {
        for n in futures_sizes {
            scenarios.push((format!("futures/{shape}/{n}"), *n));
        }
    }
    let array_grids: &[usize] = if quick { &[100] } else { &[100, 250] };
    for g in array_grids {
        scenarios.push((format!("array/mean/{g}"), g * g));
    }
    let chunkings: &[&str] = if quick {
        &["2000x7500"]
    } else {
        &["2000x7500", "1000x1000", "250x250"]
    };
    for c in chunkings {
        scenarios.push((format!("zarr/write/{c}"), 0));
        scenarios.push((format!("zarr/read_mean/{c}"), 0));
    }
    if let Some(p) = only {
        scenarios.retain(|(s, _)| s.starts_with(p.as_str()));
        if scenarios.is_empty() {
            bail!("no scenario starts with `{p}`");
        }
    }
    let timeout = Duration::from_secs(timeout.unwrap_or(if quick { 300 } else { 1800 }));
    let mut results = serde_json::Map::new();
    let mut table = "| scenario | Brisk (s) | Dask (s) | Dask / Brisk | Brisk build / run (s) | Dask build / run (s) | peak RSS MiB Brisk / Dask | limit (s) | Brisk / limit |\n|---|---:|---:|---:|---|---|---|---:|---:|\n".to_string();
    let zarr_rounds = rounds.unwrap_or(3);
    let header = format!(
        "Brisk vs Dask on this machine ({workers} workers, same run). Graph scenarios: \
         build + compute of trivial tasks (Dask: the faster of dask.delayed and a low-level \
         graph dict run with dask.threaded.get, named in brackets). Futures \
         scenarios: Brisk's Handler vs Python's concurrent.futures thread pool. Graph and \
         futures times: Brisk's fastest of three repetitions, Dask's fastest of three (one at \
         1 M tasks or items, or after a repetition over 20 s, where Dask / Brisk takes Brisk's \
         first repetition). Array scenarios (array/mean/G): (x**2 + x**3).mean(axis=0) of a \
         (10 G) x (10 G) float64 array of ones in G x G chunks of 10 x 10 (Dask: dask.array, the \
         faster of the threaded and the synchronous scheduler). Zarr scenarios: \
         8000x7500 float32, zstd level 3, Zarr v3 (Dask: dask.array + zarr-python); peak RSS \
         of each side's process in MiB (the largest of the rounds); limit: zstd level 3 on the \
         same chunks on all workers plus one pass over the array in memory, measured in the \
         Brisk process (the smallest of the rounds). Zarr scenarios run {zarr_rounds} rounds of \
         (Brisk, Dask) one after the other; each side's time is its fastest round, and the range of \
         the per-round ratios is in brackets.\n\n"
    );
    let json_path = out_dir.join("compare.json");
    let md_path = out_dir.join("compare.md");
    for (scenario, n) in &scenarios {
        println!("==> {scenario}");
        let side = Sides {
            python: &python,
            zarr_dir: &zarr_dir,
            workers,
            timeout,
        };
        // Zarr scenarios are short and sensitive to a shared machine's load: interleave
        // rounds of both sides. Graph and futures scenarios run long enough as they are.
        let rounds = rounds.unwrap_or(if scenario.starts_with("zarr/") {
            zarr_rounds
        } else {
            1
        });
        let (entry, row) = match side.run(scenario, *n, rounds) {
            Ok(r) => r,
            Err(e) => {
                println!("    failed: {e:#}");
                (
                    serde_json::json!({"error": format!("{e:#}")}),
                    format!("| {scenario} | error: {e} | | | | | | | |\n"),
                )
            }
        };
        table.push_str(&row);
        results.insert(scenario.clone(), entry);
        // Written after every scenario, so a long run that is interrupted keeps its results.
        std::fs::write(&json_path, serde_json::to_string_pretty(&results)?)?;
        std::fs::write(&md_path, format!("{header}{table}"))?;
    }
    println!("\n{header}{table}");
    println!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

/// One round of a scenario: each side's JSON line and time.
struct Round {
    brisk: serde_json::Value,
    /// Brisk's fastest repetition.
    brisk_s: f64,
    /// What the peer's time is compared with: `brisk_s`, or the first repetition's time where
    /// the peer ran once.
    vs_peer: f64,
    /// `None` when the peer timed out.
    dask: Option<serde_json::Value>,
    dask_s: Option<f64>,
}

/// Runs one scenario on both sides.
pub(crate) struct Sides<'a> {
    python: &'a std::path::Path,
    zarr_dir: &'a std::path::Path,
    workers: usize,
    timeout: Duration,
}

impl Sides<'_> {
    /// One round: the Brisk side, then the Dask side (`None` when it timed out).
    ///
    /// Brisk repeats every scenario three times, as its limit and node floor are measured (best
    /// of three); the peer runs `dask_repeat` times.
    fn round(
        &self,
        scenario: &str,
        dask_repeat: &str,
    ) -> Result<(serde_json::Value, Option<serde_json::Value>)> {
        let w = self.workers.to_string();
        let brisk = json_output(
            Command::new("target/release/compare")
                .args(["--scenario", scenario, "--workers", &w, "--repeat", "3"])
                .arg("--dir")
                .arg(self.zarr_dir),
            self.timeout,
            "the Brisk side",
        )?;
        let mut py = Command::new(self.python);
        if scenario.starts_with("zarr/") {
            py.args(["benches/dask/zarr_compare.py", "--repeat", dask_repeat])
                .arg("--dir")
                .arg(self.zarr_dir);
        } else {
            py.args(["benches/dask/compare.py", "--repeat", dask_repeat]);
        }
        py.args(["--scenario", scenario, "--workers", &w]);
        let dask = output_with_timeout(&mut py, self.timeout)?
            .map(|out| last_json_line(&out))
            .transpose()?;
        Ok((brisk, dask))
    }

    /// Runs `rounds` rounds of (Brisk, Dask) one after the other, so that both sides sample
    /// the same stretch of a shared machine's load; each side's time is its fastest round's,
    /// the limit the smallest measured, peak RSS the largest, and the per-round ratios are
    /// kept to show the spread.
    ///
    /// Like is compared with like: Brisk's best of three with its limit (best of three), and
    /// with the peer's best of three; where the peer runs once (1 M tasks or items, or a
    /// repetition over 20 s), with Brisk's first repetition, which pays the same first touch
    /// of fresh memory.
    fn run(&self, scenario: &str, n: usize, rounds: usize) -> Result<(serde_json::Value, String)> {
        let dask_repeat = if n >= 1_000_000 { "1" } else { "3" };
        let total = |v: &serde_json::Value, side: &str| {
            v["total_s"]
                .as_f64()
                .with_context(|| format!("{side} total_s"))
        };
        let mut runs = Vec::new();
        for _ in 0..rounds.max(1) {
            let (b, d) = self.round(scenario, dask_repeat)?;
            let bt = total(&b, "brisk")?;
            // What the peer's time is compared with: Brisk's first repetition where the peer
            // says it ran once (asked to, or stopped after a repetition over 20 s); Zarr
            // scenarios report neither and repeat on both sides.
            let peer_once = d.as_ref().and_then(|d| d["repetitions"].as_u64()) == Some(1);
            let vs_peer = match b["first_total_s"].as_f64() {
                Some(first) if peer_once => first,
                _ => bt,
            };
            let dask_s = d.as_ref().map(|d| total(d, "dask")).transpose()?;
            runs.push(Round {
                brisk: b,
                brisk_s: bt,
                vs_peer,
                dask: d,
                dask_s,
            });
        }
        let by = |a: f64, b: f64| a.total_cmp(&b);
        let (brisk, b) = runs
            .iter()
            .min_by(|x, y| by(x.brisk_s, y.brisk_s))
            .map(|r| (r.brisk.clone(), r.brisk_s))
            .context("at least one round")?;
        // Brisk's time against the peer's: the fastest round's (of its best or first repetition).
        let b_vs_peer = runs
            .iter()
            .map(|r| r.vs_peer)
            .reduce(f64::min)
            .context("at least one round")?;
        let max_rss = |vals: Vec<Option<f64>>| vals.into_iter().flatten().reduce(f64::max);
        let brisk_rss = max_rss(
            runs.iter()
                .map(|r| r.brisk["peak_rss_mib"].as_f64())
                .collect(),
        );
        let mut entry = serde_json::json!({
            "brisk_s": b,
            "brisk_build_s": brisk["build_s"],
            "brisk_run_s": brisk["run_s"],
            "brisk_lazy_s": brisk["lazy_s"],
            "brisk_graph_s": brisk["graph_s"],
            "tasks": brisk["tasks"],
            "ns_per_task": brisk["ns_per_task"],
            "held_bytes_per_task": brisk["held_bytes_per_task"],
            "floor_lazy_s": brisk["floor_lazy_s"],
            "lazy_over_floor": brisk["lazy_over_floor"],
            "workers": self.workers,
            "brisk_vs_dask_s": b_vs_peer,
            "rounds": runs.iter().map(|r| serde_json::json!({"brisk_s": r.brisk_s, "brisk_vs_dask_s": r.vs_peer, "dask_s": r.dask_s})).collect::<Vec<_>>(),
        });
        let rss_cell = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |x| format!("{x:.0}"));
        if let Some(r) = brisk_rss {
            entry["brisk_peak_rss_mib"] = r.into();
        }
        let limit_run = runs
            .iter()
            .filter_map(|r| {
                r.brisk
                    .get("limit_s")
                    .and_then(serde_json::Value::as_f64)
                    .map(|l| (l, &r.brisk))
            })
            .min_by(|x, y| by(x.0, y.0));
        let limit_cells = match limit_run {
            Some((l, from)) => {
                entry["limit_s"] = l.into();
                // The limit's parts: zstd + pass (Zarr), key hashing + bare pool (graphs).
                for (k, v) in from.as_object().into_iter().flatten() {
                    if k.starts_with("limit_") && k != "limit_s" {
                        entry[k.as_str()] = v.clone();
                    }
                }
                entry["brisk_over_limit"] = (b / l).into();
                format!("{l:.4} | {:.2}×", b / l)
            }
            None => " | ".to_owned(),
        };
        let dask_best = runs
            .iter()
            .map(|r| r.dask.as_ref().zip(r.dask_s))
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().min_by(|x, y| by(x.1, y.1)));
        let (dask_cell, ratio_cell, dask_split, dask_rss) = match dask_best {
            Some((d, ds)) => {
                let ratio = ds / b_vs_peer;
                entry["dask_s"] = ds.into();
                entry["ratio"] = ratio.into();
                entry["dask_build_s"] = d["build_s"].clone();
                entry["dask_run_s"] = d["run_s"].clone();
                entry["dask_version"] = d["dask_version"].clone();
                entry["dask_path"] = d["path"].clone();
                entry["dask_paths"] = d["paths"].clone();
                let dask_rss = max_rss(
                    runs.iter()
                        .map(|r| r.dask.as_ref().and_then(|d| d["peak_rss_mib"].as_f64()))
                        .collect(),
                );
                if let Some(r) = dask_rss {
                    entry["dask_peak_rss_mib"] = r.into();
                }
                // The spread of the per-round ratios, when there are several rounds.
                let per_round: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.dask_s.map(|d| d / r.vs_peer))
                    .collect();
                let spread = match (
                    per_round.iter().copied().reduce(f64::min),
                    per_round.iter().copied().reduce(f64::max),
                ) {
                    (Some(lo), Some(hi)) if per_round.len() > 1 => format!(" ({lo:.1}–{hi:.1})"),
                    _ => String::new(),
                };
                (
                    format!("{ds:.4}"),
                    format!("{ratio:.1}×{spread}"),
                    format!(
                        "{:.4} / {:.4}{}",
                        d["build_s"].as_f64().unwrap_or(0.0),
                        d["run_s"].as_f64().unwrap_or(0.0),
                        d["path"]
                            .as_str()
                            .map_or_else(String::new, |p| format!(" ({p})"))
                    ),
                    rss_cell(dask_rss),
                )
            }
            None => {
                entry["dask_s"] = serde_json::Value::Null;
                entry["ratio"] = serde_json::Value::Null;
                entry["dask_note"] = format!("timed out after {} s", self.timeout.as_secs()).into();
                (
                    format!("> {}", self.timeout.as_secs()),
                    format!("> {:.0}×", self.timeout.as_secs_f64() / b_vs_peer),
                    "-".to_owned(),
                    "-".to_owned(),
                )
            }
        };
        let row = format!(
            "| {scenario} | {b:.4} | {dask_cell} | {ratio_cell} | {:.4} / {:.4} | {dask_split} | {} / {dask_rss} | {limit_cells} |\n",
            brisk["build_s"].as_f64().unwrap_or(0.0),
            brisk["run_s"].as_f64().unwrap_or(0.0),
            rss_cell(brisk_rss),
        );
        Ok((entry, row))
    }
}

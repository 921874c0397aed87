//! `cargo xtask bench --peers`: Brisk's Zarr phases — write from memory, copy chunk by chunk,
//! read + `(x**2 + x**3).mean(0)` — against the fastest Zarr tools on the same array, same
//! machine, same run, each phase beside its limit: target/bench/peers.{json,md}.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::*;

const PEERS: [&str; 3] = ["dask", "dask-zarrs", "tensorstore"];

/// The phases: (name in results, Brisk's scenario phase, the peers' `--phase`, what the
/// limit is).
const PHASES: [(&str, &str, &str, &str); 3] = [
    ("write", "write_mem", "write", "zstd encoding + one pass"),
    (
        "copy",
        "copy",
        "copy",
        "zstd decoding + encoding + one pass",
    ),
    (
        "read_mean",
        "read_mean",
        "read_mean",
        "zstd decoding + one pass",
    ),
];

/// Runs the peers comparison: for each chunking, Brisk writes the array once; then for each
/// phase, `rounds` rounds of (Brisk, every peer), one after the other, so all sample the same
/// load. Each side's time is its fastest round; `ratio` = peer seconds / Brisk seconds; every
/// side's result (the mean, or the written array's mean read back) is checked against
/// Brisk's.
pub(crate) fn compare_peers(quick: bool, rounds: usize, only: Option<&str>) -> Result<()> {
    let out_dir = PathBuf::from("target/bench");
    let data = out_dir.join("peers");
    std::fs::create_dir_all(&data)?;
    let python = venv("peers", "benches/peers/requirements.txt")?;
    build_bench_bin("compare")?;
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let w = workers.to_string();
    let timeout = Duration::from_secs(900);
    let mut chunkings = if quick {
        vec!["2000x7500"]
    } else {
        vec!["2000x7500", "1000x1000", "250x250"]
    };
    if let Some(o) = only {
        chunkings.retain(|c| *c == o);
        ensure!(!chunkings.is_empty(), "no chunking `{o}`");
    }
    let brisk = |scenario: &str, limit: bool| -> Result<serde_json::Value> {
        let mut c = Command::new("target/release/compare");
        c.args([
            "--scenario",
            scenario,
            "--workers",
            &w,
            "--repeat",
            "2",
            "--dir",
        ])
        .arg(&data);
        if !limit {
            c.arg("--no-limit");
        }
        json_output(&mut c, timeout, "Brisk")
    };
    let mut results = serde_json::Map::new();
    let mut table = format!(
        "The 8000x7500 float32 array (Zarr v3, zstd level 3 + checksum) in three phases: \
         write (from an array already in memory, into a new array with the same chunks and \
         codecs), copy (chunk by chunk into a new array), read + `(x**2 + x**3).mean(axis 0)`. \
         {workers} workers on every side, {rounds} interleaved rounds, each side's fastest; \
         ratio = peer / Brisk (per-round range in brackets). dask: dask.array + zarr-python \
         (`da.store`, `da.from_zarr`); dask-zarrs: the same with the zarrs codec pipeline; \
         tensorstore: zarr3 driver with its concurrency limited to the workers (`write` of the \
         whole array or of the source TensorStore), chunk-aligned parallel reads with numpy \
         x*x + x*x*x on cache-sized slabs. Every side: best of 2 repetitions in one process per \
         round; imports, pools and the in-memory source set up outside the timing. Limits, measured in the same run on all workers: write = \
         zstd encoding + one pass over memory; copy = decoding + encoding + one pass; \
         read_mean = decoding + one pass.\n\n\
         | phase | chunks | Brisk (s) | limit (s) | Brisk / limit | peer | peer (s) | ratio | peer RSS MiB |\n\
         |---|---|---:|---:|---:|---|---:|---:|---:|\n"
    );
    for c in &chunkings {
        println!("==> {c}: Brisk writes the array");
        brisk(&format!("zarr/write/{c}"), false)?;
        let path = data.join(format!("brisk-{c}.zarr"));
        for (phase, brisk_phase, peer_phase, _) in PHASES {
            let mut brisk_runs = Vec::new();
            let mut peer_runs: Vec<Vec<serde_json::Value>> = vec![Vec::new(); PEERS.len()];
            for round in 0..rounds.max(1) {
                println!("==> {c} {phase}: round {}", round + 1);
                brisk_runs.push(brisk(&format!("zarr/{brisk_phase}/{c}"), round == 0)?);
                for (i, peer) in PEERS.iter().enumerate() {
                    let out_path = data.join(format!("{peer}-{c}-{phase}.zarr"));
                    let mut py = Command::new(&python);
                    py.args([
                        "benches/peers/zarr_peers.py",
                        "--peer",
                        peer,
                        "--phase",
                        peer_phase,
                        "--workers",
                        &w,
                        "--repeat",
                        "2",
                    ])
                    .arg("--path")
                    .arg(&path)
                    .arg("--out")
                    .arg(&out_path);
                    peer_runs[i].push(json_output(&mut py, timeout, peer)?);
                    remove_dir_if_present(&out_path)?;
                }
            }
            for copy in ["mem", "copy"] {
                remove_dir_if_present(&data.join(format!("brisk-{c}-{copy}.zarr")))?;
            }
            compare_phase(
                phase,
                c,
                &brisk_runs,
                &peer_runs,
                workers,
                &mut results,
                &mut table,
            )?;
        }
        std::fs::write(
            out_dir.join("peers.json"),
            serde_json::to_string_pretty(&results)?,
        )?;
        std::fs::write(out_dir.join("peers.md"), &table)?;
    }
    println!("\n{table}");
    println!("wrote target/bench/peers.json and target/bench/peers.md");
    Ok(())
}

/// Adds one phase and chunking to the results and the table, after checking every side
/// computed (or wrote) what Brisk did.
fn compare_phase(
    phase: &str,
    c: &str,
    brisk_runs: &[serde_json::Value],
    peer_runs: &[Vec<serde_json::Value>],
    workers: usize,
    results: &mut serde_json::Map<String, serde_json::Value>,
    table: &mut String,
) -> Result<()> {
    let secs = |v: &serde_json::Value| v["total_s"].as_f64().unwrap_or(f64::INFINITY);
    let brisk_s = brisk_runs.iter().map(secs).fold(f64::INFINITY, f64::min);
    let brisk_mean = brisk_runs[0]["mean"].as_f64().context("Brisk's mean")?;
    let limit = brisk_runs[0]["limit_s"].as_f64();
    for (i, peer) in PEERS.iter().enumerate() {
        let runs = &peer_runs[i];
        for r in runs {
            let m = r["mean"].as_f64().context("the peer's mean")?;
            if ((m - brisk_mean) / brisk_mean).abs() > 1e-4 {
                bail!("{peer} on {c} ({phase}) gave a mean of {m}, Brisk {brisk_mean}");
            }
        }
        let peer_s = runs.iter().map(secs).fold(f64::INFINITY, f64::min);
        let per_round: Vec<f64> = runs
            .iter()
            .zip(brisk_runs)
            .map(|(p, b)| secs(p) / secs(b))
            .collect();
        let (lo, hi) = (
            per_round.iter().copied().fold(f64::INFINITY, f64::min),
            per_round.iter().copied().fold(0.0, f64::max),
        );
        let rss = runs
            .iter()
            .filter_map(|r| r["peak_rss_mib"].as_f64())
            .fold(0.0, f64::max);
        let ratio = peer_s / brisk_s;
        results.insert(
            format!("peers/{phase}/{c}/{peer}"),
            serde_json::json!({
                "brisk_s": brisk_s, "peer_s": peer_s, "ratio": ratio,
                "ratio_range": [lo, hi], "limit_s": limit,
                "brisk_over_limit": limit.map(|l| brisk_s / l),
                "peer_peak_rss_mib": rss, "workers": workers,
                "rounds": per_round,
                "brisk_generate_s": brisk_runs[0]["generate_s"],
            }),
        );
        let lim = limit.map_or_else(
            || " | ".to_owned(),
            |l| format!("{l:.3} | {:.2}×", brisk_s / l),
        );
        table.push_str(&format!(
            "| {phase} | {c} | {brisk_s:.3} | {lim} | {peer} | {peer_s:.3} | {ratio:.2}× ({lo:.2}–{hi:.2}) | {rss:.0} |\n"
        ));
    }
    Ok(())
}

//! `cargo xtask bench --scale`: how cost grows with the data. The seed's array (8000x7500
//! float32, 240 MB, chunks 2000x7500, Zarr v3 zstd level 3 + checksum) at 1x, 10x and 50x the
//! rows, through the three streamed phases — write (generate + encode + write), copy, read +
//! `(x**2 + x**3).mean(0)` — plus generation alone, in Brisk; the same phases in Dask at 1x and
//! 10x; and the disk's own sequential bandwidth for as many bytes, measured in the same run:
//! target/bench/scale.{json,md}.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::*;

const CHUNKS: &str = "2000x7500";
/// Bytes of the seed's array (8000 x 7500 float32).
const SEED_BYTES: f64 = 8000.0 * 7500.0 * 4.0;

pub(crate) fn compare_scale(factors: &[usize], dask_up_to: usize) -> Result<()> {
    let out_dir = PathBuf::from("target/bench");
    let data = out_dir.join("scale");
    fresh_dir(&data)?;
    let python = venv("bench", "benches/dask/requirements.txt")?;
    build_bench_bin("compare")?;
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let w = workers.to_string();
    let timeout = Duration::from_secs(3600);
    let mut results = serde_json::Map::new();
    let mut rows = Vec::new();
    for &k in factors {
        let ks = k.to_string();
        let gb = SEED_BYTES * k as f64 / 1e9;
        println!("==> {k}x ({gb:.1} GB): disk bandwidth");
        let mib = (SEED_BYTES * k as f64 / f64::from(1 << 20))
            .ceil()
            .to_string();
        let disk = json_output(
            Command::new("target/release/compare")
                .args(["--scenario", &format!("disk/seq/{mib}")])
                .arg("--dir")
                .arg(&data),
            timeout,
            "the disk measurement",
        )?;
        let disk_gb = disk["bytes"].as_f64().context("disk bytes")? / 1e9;
        let per_gb = |key: &str| disk[key].as_f64().map(|s| s / disk_gb);
        let mut entry = serde_json::json!({
            "gb": gb,
            "disk": {
                "write_s_per_gb": per_gb("write_s"),
                "write_sync_s_per_gb": per_gb("write_sync_s"),
                "read_cold_s_per_gb": per_gb("read_cold_s"),
                "read_hot_s_per_gb": per_gb("read_hot_s"),
            },
        });
        for phase in ["write", "generate", "copy", "read_mean"] {
            println!("==> {k}x: Brisk {phase}");
            let b = json_output(
                Command::new("target/release/compare")
                    .args([
                        "--scenario",
                        &format!("zarr/{phase}/{CHUNKS}"),
                        "--scale",
                        &ks,
                        "--no-limit",
                        "--repeat",
                        "1",
                        "--workers",
                        &w,
                    ])
                    .arg("--dir")
                    .arg(&data),
                timeout,
                "Brisk",
            )?;
            let secs = b["total_s"].as_f64().context("Brisk total_s")?;
            let rss = b["peak_rss_mib"].as_f64();
            let cpu = (b["cpu_user_s"].as_f64(), b["cpu_sys_s"].as_f64());
            entry[format!("brisk_{phase}")] = serde_json::json!({
                "s": secs, "s_per_gb": secs / gb, "peak_rss_mib": rss,
                "cpu_user_s_per_gb": cpu.0.map(|u| u / gb),
                "cpu_sys_s_per_gb": cpu.1.map(|u| u / gb),
            });
            let mut dask = None;
            if k <= dask_up_to && phase != "generate" {
                println!("==> {k}x: Dask {phase}");
                let mut py = Command::new(&python);
                py.args([
                    "benches/dask/zarr_compare.py",
                    "--scenario",
                    &format!("zarr/{phase}/{CHUNKS}"),
                    "--workers",
                    &w,
                    "--scale",
                    &ks,
                ])
                .arg("--dir")
                .arg(&data);
                let d = json_output(&mut py, timeout, "Dask")?;
                let ds = d["total_s"].as_f64().context("Dask total_s")?;
                let drss = d["peak_rss_mib"].as_f64();
                entry[format!("dask_{phase}")] =
                    serde_json::json!({"s": ds, "s_per_gb": ds / gb, "peak_rss_mib": drss});
                dask = Some((ds, drss));
            }
            rows.push(Row {
                k,
                phase,
                brisk: (secs, rss),
                cpu,
                dask,
            });
        }
        results.insert(format!("scale/{k}x"), entry);
        // Free the disk for the next factor.
        for side in ["brisk", "dask"] {
            for copy in ["", "-copy"] {
                let suffix = if k == 1 {
                    String::new()
                } else {
                    format!("-x{k}")
                };
                remove_dir_if_present(&data.join(format!("{side}-{CHUNKS}{suffix}{copy}.zarr")))?;
            }
        }
        std::fs::write(
            out_dir.join("scale.json"),
            serde_json::to_string_pretty(&results)?,
        )?;
        std::fs::write(out_dir.join("scale.md"), table(&rows, &results, workers))?;
    }
    let md = table(&rows, &results, workers);
    println!("\n{md}");
    println!("wrote target/bench/scale.json and target/bench/scale.md");
    Ok(())
}

struct Row {
    k: usize,
    phase: &'static str,
    brisk: (f64, Option<f64>),
    /// Brisk's user and system CPU seconds.
    cpu: (Option<f64>, Option<f64>),
    dask: Option<(f64, Option<f64>)>,
}

fn table(
    rows: &[Row],
    results: &serde_json::Map<String, serde_json::Value>,
    workers: usize,
) -> String {
    let mut md = format!(
        "The seed's array (8000x7500 float32, chunks {CHUNKS}, Zarr v3 zstd level 3 + checksum) \
         with 1x, 10x, 50x the rows, {workers} workers on each side, one run per phase. write = \
         generate + encode + write (streamed), generate = the same random data averaged in \
         memory, copy = chunk by chunk into a new array, read_mean = read + \
         (x**2 + x**3).mean(0). s/GB per GB of raw float32. Disk: a file of the same size \
         written in 16 MiB blocks through the page cache (write), then fsync'd (+ sync), read \
         back past the page cache with O_DIRECT (cold) and through it (hot). Peak RSS in MiB. \
         Brisk's CPU: user and system (the kernel's work for the process) seconds per GB.\n\n\
         | scale | GB | phase | Brisk s | Brisk s/GB | Brisk CPU s/GB user + sys | Brisk RSS | Dask s | Dask s/GB | Dask RSS | Dask / Brisk | disk s/GB (write, + sync, cold read, hot read) |\n\
         |---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|\n"
    );
    for r in rows {
        let e = &results.get(&format!("scale/{}x", r.k));
        let gb = e.and_then(|e| e["gb"].as_f64()).unwrap_or(f64::NAN);
        let d = |key: &str| {
            e.and_then(|e| e["disk"][key].as_f64())
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
        };
        let rss = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.0}"));
        let (dask_s, dask_gb, dask_rss, ratio) = match r.dask {
            Some((s, m)) => (
                format!("{s:.2}"),
                format!("{:.2}", s / gb),
                rss(m),
                format!("{:.1}×", s / r.brisk.0),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        md.push_str(&format!(
            "| {}x | {gb:.1} | {} | {:.2} | {:.3} | {} | {} | {dask_s} | {dask_gb} | {dask_rss} | {ratio} | {}, {}, {}, {} |\n",
            r.k,
            r.phase,
            r.brisk.0,
            r.brisk.0 / gb,
            match r.cpu {
                (Some(u), Some(s)) => format!("{:.2} + {:.2}", u / gb, s / gb),
                _ => "-".to_owned(),
            },
            rss(r.brisk.1),
            d("write_s_per_gb"),
            d("write_sync_s_per_gb"),
            d("read_cold_s_per_gb"),
            d("read_hot_s_per_gb"),
        ));
    }
    md
}

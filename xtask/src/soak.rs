//! `cargo xtask soak`: the storage soak on stable Rust. Writers of checkpoints, fresh Zarr
//! arrays and Zarr overwrites are killed with SIGKILL at spread-out points and what they left
//! is verified; stored entries and chunks are mutated (flips, truncations, huge declared
//! sizes) and read back. Fails on any wrong value, partial array, lost array, leftover of a
//! dead writer after the next write, panic or process death.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{build_bench_bin, fresh_dir, run_ok};

/// What to run: kill trials per kind and mutations in all.
pub(crate) struct SoakOptions {
    pub(crate) kills: u64,
    pub(crate) mutations: u64,
}

const KINDS: [&str; 3] = ["checkpoint", "zarr-fresh", "zarr-overwrite"];

pub(crate) fn soak(opts: &SoakOptions) -> Result<()> {
    build_bench_bin("soak")?;
    let bin = Path::new("target/release/soak");
    let root = Path::new("target/soak");
    let mut problems = Vec::new();
    let t = Instant::now();
    for kind in KINDS {
        let mut sums = serde_json::Map::new();
        for trial in 0..opts.kills {
            let dir = root.join(format!("{kind}-{trial}"));
            fresh_dir(&dir)?;
            if kind == "zarr-overwrite" {
                // The array the child overwrites, complete before it starts.
                run_ok(Command::new(bin).args(["verify", "zarr-fresh"]).arg(&dir))
                    .context("writing the array to overwrite")?;
                std::fs::rename(dir.join("next"), dir.join("x"))?;
            }
            let mut child = Command::new(bin)
                .args(["child", kind])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting a soak writer")?;
            // Spread the kill points over the first ~1.2 s (a few writes of each kind),
            // scrambled so that neighbouring trials differ.
            let at = (trial * 7919 + 13) % 1200;
            std::thread::sleep(Duration::from_millis(at));
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    std::io::Read::read_to_string(&mut e, &mut err)?;
                }
                bail!("the {kind} writer exited by itself ({status}): {err}");
            }
            child.kill()?; // SIGKILL
            child.wait()?;
            let out = Command::new(bin)
                .args(["verify", kind])
                .arg(&dir)
                .output()?;
            if !out.status.success() {
                problems.push(format!(
                    "{kind} trial {trial} (killed at {at} ms): verify failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
            let counts: Value = serde_json::from_slice(&out.stdout)
                .with_context(|| format!("verify printed {:?}", out.stdout))?;
            for (k, v) in counts.as_object().into_iter().flatten() {
                if let Some(n) = v.as_u64() {
                    let sum = sums.entry(k.clone()).or_insert(Value::from(0u64));
                    *sum = Value::from(sum.as_u64().unwrap_or(0) + n);
                    let bad = [
                        "wrong",
                        "errors",
                        "temps_left",
                        "partial",
                        "lost",
                        "stages_left",
                    ];
                    if bad.contains(&k.as_str()) && n > 0 {
                        problems.push(format!(
                            "{kind} trial {trial} (killed at {at} ms): {counts}"
                        ));
                    }
                }
            }
            std::fs::remove_dir_all(&dir)?;
        }
        println!(
            "soak: {kind}: {} writers killed: {}",
            opts.kills,
            Value::Object(sums)
        );
    }
    let out = Command::new(bin)
        .args(["mutate", &opts.mutations.to_string()])
        .output()?;
    if !out.status.success() {
        // A process death (abort, signal) on a mutated input is a failure of its own.
        problems.push(format!(
            "the mutation run died ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    } else {
        let counts: Value = serde_json::from_slice(&out.stdout)?;
        println!("soak: mutations: {counts}");
        for k in ["wrong", "panics"] {
            if counts[k].as_u64() != Some(0) {
                problems.push(format!("mutations: {k} = {}", counts[k]));
            }
        }
    }
    println!("soak: {:.0} s", t.elapsed().as_secs_f64());
    if problems.is_empty() {
        println!("soak: no wrong value, partial or lost array, leftover, panic or death");
        Ok(())
    } else {
        for p in &problems {
            println!("soak: {p}");
        }
        bail!("{} soak problem(s)", problems.len())
    }
}

//! `cargo xtask cluster-example`: examples/cluster_map, examples/dynamic_source and
//! examples/zarr_pipeline on local threads and on Slurm.

use anyhow::{Context, Result, bail};

use crate::*;

/// Runs `examples/cluster_map`, `examples/dynamic_source` and `examples/zarr_pipeline`
/// (`--quick`) on local threads and on the Slurm cluster that `.ci/run` started
/// (`BRISK_SLURM_PREFIX` reaches it) and checks each prints the same results both ways
/// (timings, scratch paths, creation dates and memory aside; the pipeline's results to the
/// last bit).
pub(crate) fn cluster_example() -> Result<()> {
    let store = std::fs::canonicalize("target")?.join("cluster-example-store");
    remove_dir_if_present(&store)?;
    let prefix = std::env::var("BRISK_SLURM_PREFIX").unwrap_or_default();
    let address = format!(
        "slurm://?store={}&prefix={}&poll_ms=100&time=00:05:00",
        store.display(),
        prefix.replace(' ', "%20")
    );
    let zarr_dir = std::fs::canonicalize("target")?.join("cluster-example-zarr");
    let run = |name: &str, extra: &[&str]| -> Result<Vec<String>> {
        let mut cmd = example(name, &[]);
        cmd.arg("--quick").args(extra);
        if name == "zarr_pipeline" {
            // On a filesystem every node sees (this host's, here).
            cmd.arg("--dir").arg(&zarr_dir);
        }
        let out = cmd.output().with_context(|| format!("running {name}"))?;
        if !out.status.success() {
            bail!(
                "{name} {extra:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            // Lines that name the executor, scratch paths, clocks or costs differ by design;
            // the pipeline's phases are compared by their results.
            .filter(|l| {
                !l.starts_with("running on")
                    && !l.contains(" files from the service at ")
                    && (name != "zarr_pipeline"
                        || l.contains("result")
                        || l.starts_with("dataset:")
                        || l.contains("on disk:"))
            })
            .map(without_timing)
            .collect())
    };
    for name in ["cluster_map", "dynamic_source", "zarr_pipeline"] {
        let local = run(name, &[])?;
        let slurm = run(name, &["--slurm", &address])?;
        if local != slurm || local.is_empty() {
            bail!("{name}: local threads printed {local:?} but Slurm printed {slurm:?}");
        }
        println!(
            "{name}: identical on local threads and Slurm ({} lines)",
            local.len()
        );
    }
    Ok(())
}

/// `line` without a timing at its end (` (1.23 s)`).
fn without_timing(line: &str) -> String {
    if let Some(open) = line.rfind(" (")
        && let Some(inner) = line[open + 2..].strip_suffix(" s)")
        && inner.parse::<f64>().is_ok()
    {
        return line[..open].to_owned();
    }
    line.to_owned()
}

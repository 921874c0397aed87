//! `cargo xtask cluster-example`: examples/cluster_map and examples/dynamic_source on local
//! threads and on Slurm.

use anyhow::{Context, Result, bail};

use crate::*;

/// Runs `examples/cluster_map --quick` and `examples/dynamic_source --quick` on local threads
/// and on the Slurm cluster that `.ci/run` started (`BRISK_SLURM_PREFIX` reaches it) and
/// checks each prints the same results both ways (timings and scratch paths aside).
pub(crate) fn cluster_example() -> Result<()> {
    let store = std::fs::canonicalize("target")?.join("cluster-example-store");
    remove_dir_if_present(&store)?;
    let prefix = std::env::var("BRISK_SLURM_PREFIX").unwrap_or_default();
    let address = format!(
        "slurm://?store={}&prefix={}&poll_ms=100&time=00:05:00",
        store.display(),
        prefix.replace(' ', "%20")
    );
    let run = |name: &str, extra: &[&str]| -> Result<Vec<String>> {
        let out = example(name, &[])
            .arg("--quick")
            .args(extra)
            .output()
            .with_context(|| format!("running {name}"))?;
        if !out.status.success() {
            bail!(
                "{name} {extra:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            // Lines that name the executor or scratch paths differ by design.
            .filter(|l| !l.starts_with("running on") && !l.contains(" files from the service at "))
            .map(without_timing)
            .collect())
    };
    for name in ["cluster_map", "dynamic_source"] {
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

//! `cargo xtask cluster-example`: examples/cluster_map on local threads and on Slurm.

use anyhow::{Context, Result, bail};

use crate::*;

/// Runs `examples/cluster_map --quick` on local threads and on the Slurm cluster that
/// `.ci/run` started (`BRISK_SLURM_PREFIX` reaches it) and checks both print the same results.
pub(crate) fn cluster_example() -> Result<()> {
    let store = std::fs::canonicalize("target")?.join("cluster-example-store");
    remove_dir_if_present(&store)?;
    let prefix = std::env::var("BRISK_SLURM_PREFIX").unwrap_or_default();
    let address = format!(
        "slurm://?store={}&prefix={}&poll_ms=100&time=00:05:00",
        store.display(),
        prefix.replace(' ', "%20")
    );
    let run = |extra: &[&str]| -> Result<Vec<String>> {
        let out = example("cluster_map", &[])
            .arg("--quick")
            .args(extra)
            .output()
            .context("running cluster_map")?;
        if !out.status.success() {
            bail!(
                "cluster_map {extra:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("running on"))
            .map(str::to_owned)
            .collect())
    };
    let local = run(&[])?;
    let slurm = run(&["--slurm", &address])?;
    if local != slurm || local.is_empty() {
        bail!("local threads printed {local:?} but Slurm printed {slurm:?}");
    }
    println!("cluster_map: identical on local threads and Slurm: {local:?}");
    Ok(())
}

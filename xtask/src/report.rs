//! `cargo xtask report-check`: a profile report rendered from a real compute and checked in
//! headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::*;

/// `cargo xtask report-check`: runs `examples/profile_report` (profiling a real Zarr
/// compute), opens its `profile.html` in Debian's headless Chromium through playwright-core
/// (pinned by `xtask/report-check/package.json`, installed once under `target/`), fails on any
/// console error, page error or network request, checks the charts and the hover details, and
/// saves a full-page screenshot to `target/report-check/report.png`.
pub(crate) fn report_check() -> Result<()> {
    let out = PathBuf::from("target/report-check");
    std::fs::create_dir_all(&out)?;
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        bail!(
            "Chromium not found at {chromium} (Debian: `apt-get install chromium`; or set CHROMIUM)"
        );
    }
    run_ok(example("profile_report", &[]).arg("--out").arg(&out))?;
    let node_dir = out.join("node");
    npm_install("xtask/report-check/package.json", &node_dir)?;
    // The script resolves playwright-core from next to itself: copy it into the install.
    std::fs::copy("xtask/report-check/check.mjs", node_dir.join("check.mjs"))?;
    run_ok(
        Command::new("node")
            .arg(node_dir.join("check.mjs"))
            .arg(out.join("profile.html"))
            .arg(out.join("report.png"))
            .env("CHROMIUM", &chromium),
    )
}

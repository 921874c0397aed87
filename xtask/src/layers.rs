//! `cargo xtask layers`: the layering rules of ARCHITECTURE.md, checked from cargo metadata
//! and the sources (which crates may spawn threads or read the environment).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::*;

pub(crate) fn metadata() -> Result<serde_json::Value> {
    let out = cargo(&["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

/// Names of the packages under `crates/`.
pub(crate) fn workspace_crates() -> Result<Vec<String>> {
    let meta = metadata()?;
    let mut names = Vec::new();
    for p in meta["packages"]
        .as_array()
        .context("metadata has packages")?
    {
        let manifest = p["manifest_path"].as_str().unwrap_or_default();
        if Path::new(manifest)
            .components()
            .any(|c| c.as_os_str() == "crates")
        {
            names.push(p["name"].as_str().context("package name")?.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Parses the layer table: lines `L<n>  crate crate …` inside the ```text block that follows
/// the `<!-- layers -->` marker in ARCHITECTURE.md.
pub(crate) fn layer_table() -> Result<BTreeMap<String, u32>> {
    let text = std::fs::read_to_string("ARCHITECTURE.md").context("reading ARCHITECTURE.md")?;
    let start = text
        .find("<!-- layers -->")
        .context("ARCHITECTURE.md has no `<!-- layers -->` marker before the layer table")?;
    let block = text[start..]
        .split("```")
        .nth(1)
        .context("no fenced block after the layers marker")?;
    let mut table = BTreeMap::new();
    for line in block.lines() {
        let mut words = line.split_whitespace();
        let Some(level) = words.next().and_then(|w| w.strip_prefix('L')) else {
            continue;
        };
        let Ok(level) = level.parse::<u32>() else {
            continue;
        };
        for krate in words {
            if krate.starts_with('(') {
                break; // a comment in parentheses ends the list
            }
            table.insert(krate.to_owned(), level);
        }
    }
    if table.is_empty() {
        bail!("the layer table in ARCHITECTURE.md is empty");
    }
    Ok(table)
}

/// Crates that may spawn threads (everything else must not).
pub(crate) const THREAD_CRATES: &[&str] = &["brisk-exec", "brisk-profile"];
/// The only crate that may read environment variables.
pub(crate) const ENV_CRATES: &[&str] = &["brisk", "brisk-cluster"];

pub(crate) fn layers() -> Result<()> {
    let table = layer_table()?;
    let meta = metadata()?;
    let mut problems = Vec::new();
    let mut checked = 0;
    for p in meta["packages"]
        .as_array()
        .context("metadata has packages")?
    {
        let name = p["name"].as_str().context("package name")?;
        let manifest = PathBuf::from(p["manifest_path"].as_str().context("manifest path")?);
        if !manifest.components().any(|c| c.as_os_str() == "crates") {
            continue;
        }
        checked += 1;
        let Some(&level) = table.get(name) else {
            problems.push(format!(
                "crate `{name}` is missing from the layer table in ARCHITECTURE.md"
            ));
            continue;
        };
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let kind = dep["kind"].as_str(); // null = normal, "dev", "build"
            if kind == Some("dev") {
                continue; // tests may use anything
            }
            if let Some(&dep_level) = table.get(dep_name)
                && dep_level >= level
            {
                problems.push(format!(
                        "`{name}` (L{level}) depends on `{dep_name}` (L{dep_level}): dependencies must point to a lower layer"
                    ));
            }
        }
        let src = manifest
            .parent()
            .context("manifest has a directory")?
            .join("src");
        scan_sources(&src, name, &mut problems)?;
    }
    if problems.is_empty() {
        println!("layers: {checked} crates follow the layer table, thread and environment rules");
        Ok(())
    } else {
        for p in &problems {
            println!("layers: {p}");
        }
        bail!("{} layering problem(s)", problems.len())
    }
}

pub(crate) fn scan_sources(dir: &Path, krate: &str, problems: &mut Vec<String>) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            scan_sources(&path, krate, problems)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let spawns = ["thread::spawn", "thread::Builder", "thread::scope"]
                .iter()
                .any(|p| code.contains(p));
            if spawns && !THREAD_CRATES.contains(&krate) {
                problems.push(format!(
                    "{}:{}: `{krate}` spawns a thread; only {THREAD_CRATES:?} may",
                    path.display(),
                    i + 1
                ));
            }
            let env = ["env::var", "env::vars"].iter().any(|p| code.contains(p));
            if env && !ENV_CRATES.contains(&krate) {
                problems.push(format!(
                    "{}:{}: `{krate}` reads an environment variable; only {ENV_CRATES:?} may",
                    path.display(),
                    i + 1
                ));
            }
        }
    }
    Ok(())
}

//! Brisk's maintenance tasks.
//!
//! ```text
//! cargo xtask ci [--fail-fast]   every check CI runs; reports all failing steps at the end
//! cargo xtask layers             the layering rules of ARCHITECTURE.md, checked from cargo metadata
//! cargo xtask loom               loom model checks of the pool's sleep/wake protocol (--cfg loom)
//! cargo xtask bench              all criterion benchmarks
//! cargo xtask interop            Zarr arrays both ways between Brisk and zarr-python, checkpoint
//!                                entries decoded by Python (own virtualenvs)
//! cargo xtask cloud              the S3, Azure and GCS tests against moto_server, Azurite and
//!                                our GCS XML API emulator on 127.0.0.1 (own virtualenv;
//!                                Azurite from npm)
//! cargo xtask report-check      renders a profile report from a real compute, opens it in
//!                                headless Chromium (no console errors, hover works) and saves
//!                                a screenshot: target/report-check/report.png
//! cargo xtask cluster-example   examples/cluster_map on local threads and on Slurm (needs
//!                                BRISK_SLURM_PREFIX to reach it, e.g. the one .ci/run starts)
//! cargo xtask soak [--quick] [--kills N] [--mutations M]
//!                                writers of checkpoints and Zarr arrays killed with SIGKILL
//!                                (N per kind, default 100) and verified; M stored entries and
//!                                chunks mutated and read back (default 100 000)
//! cargo xtask bench --peers [--quick] [--rounds R] [--only 1000x1000]
//!                                Brisk's Zarr write, copy and read + mean against dask, dask
//!                                with the zarrs codec pipeline and tensorstore, each beside
//!                                its limit: target/bench/peers.{json,md}
//! cargo xtask bench --scale [--quick] [--factors 1,10,50] [--dask-up-to 10]
//!                                the Zarr phases at 1x/10x/50x the seed's array (Dask up to
//!                                10x) beside the disk's own bandwidth, time per GB and peak
//!                                RSS: target/bench/scale.{json,md}
//! cargo xtask bench --compare-dask [--quick] [--sizes 10000,100000] [--timeout SECS] [--only zarr/] [--rounds R]
//!                                the same scenarios in Brisk and in Dask (own virtualenv),
//!                                side by side: target/bench/compare.{json,md}
//! ```

#![allow(
    clippy::print_stdout,
    reason = "a command-line tool reports to the terminal"
)]

mod bench;
mod ci;
mod cloud;
mod cluster;
mod interop;
mod layers;
mod loom;
mod peers;
mod report;
mod scale;
mod services;
mod soak;

use bench::*;
use ci::*;
use cloud::*;
use cluster::*;
use interop::*;
use layers::*;
use loom::*;
use peers::*;
use report::*;
use scale::*;
use services::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

pub(crate) fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    std::env::set_current_dir(&root).with_context(|| format!("entering {}", root.display()))?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(args.iter().any(|a| a == "--fail-fast")),
        Some("layers") => layers(),
        Some("loom") => loom(),
        Some("bench") if args.iter().any(|a| a == "--peers") => {
            let value = |flag: &str| {
                args.iter()
                    .position(|a| a == flag)
                    .and_then(|i| args.get(i + 1))
            };
            let rounds = value("--rounds")
                .map(|v| v.parse::<usize>().context("--rounds takes a whole number"))
                .transpose()?
                .unwrap_or(3);
            compare_peers(
                args.iter().any(|a| a == "--quick"),
                rounds,
                value("--only").map(String::as_str),
            )
        }
        Some("bench") if args.iter().any(|a| a == "--scale") => {
            let value = |flag: &str| {
                args.iter()
                    .position(|a| a == flag)
                    .and_then(|i| args.get(i + 1))
            };
            let factors = match value("--factors") {
                Some(v) => v
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().context("--factors takes numbers"))
                    .collect::<Result<Vec<_>>>()?,
                None if args.iter().any(|a| a == "--quick") => vec![1, 2],
                None => vec![1, 10, 50],
            };
            let dask_up_to = value("--dask-up-to")
                .map(|v| v.parse::<usize>().context("--dask-up-to takes a factor"))
                .transpose()?
                .unwrap_or(10);
            compare_scale(&factors, dask_up_to)
        }
        Some("bench") if args.iter().any(|a| a == "--compare-dask") => {
            let value = |flag: &str| -> Result<Option<&String>> {
                match args.iter().position(|a| a == flag) {
                    Some(i) => Ok(Some(
                        args.get(i + 1)
                            .with_context(|| format!("{flag} needs a value"))?,
                    )),
                    None => Ok(None),
                }
            };
            let sizes = value("--sizes")?
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().parse::<usize>().context("--sizes takes numbers"))
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?;
            let timeout = value("--timeout")?
                .map(|v| v.parse::<u64>().context("--timeout takes whole seconds"))
                .transpose()?;
            let only = value("--only")?.cloned();
            let rounds = value("--rounds")?
                .map(|v| v.parse::<usize>().context("--rounds takes a whole number"))
                .transpose()?;
            compare_dask(&CompareOptions {
                quick: args.iter().any(|a| a == "--quick"),
                sizes,
                timeout,
                only,
                rounds,
            })
        }
        Some("bench") => run_ok(&mut cargo(&["bench", "--workspace"])),
        Some("interop") => interop(),
        Some("cloud") => cloud(),
        Some("report-check") => report_check(),
        Some("cluster-example") => cluster_example(),
        Some("soak") => {
            let quick = args.iter().any(|a| a == "--quick");
            let number = |flag: &str, default: u64| -> Result<u64> {
                match args.iter().position(|a| a == flag) {
                    Some(i) => args
                        .get(i + 1)
                        .with_context(|| format!("{flag} needs a value"))?
                        .parse()
                        .with_context(|| format!("{flag} takes a whole number")),
                    None => Ok(default),
                }
            };
            soak::soak(&soak::SoakOptions {
                kills: number("--kills", if quick { 4 } else { 100 })?,
                mutations: number("--mutations", if quick { 5_000 } else { 100_000 })?,
            })
        }
        Some(other) => bail!("unknown xtask `{other}`\n{USAGE}"),
        None => {
            println!("{USAGE}");
            Ok(())
        }
    }
}

pub(crate) const USAGE: &str = "usage: cargo xtask <ci [--fail-fast] | layers | loom | interop | cloud | report-check | cluster-example | soak [--quick] [--kills N] [--mutations M] | bench [--peers [--quick] [--rounds R] [--only CHUNKS]] | bench [--scale [--quick] [--factors 1,10,50] [--dask-up-to 10]] | bench [--compare-dask [--quick] [--sizes N,M] [--timeout S] [--only PREFIX] [--rounds R]]>";

pub(crate) fn workspace_root() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(dir
        .parent()
        .context("xtask lives one level below the workspace root")?
        .to_path_buf())
}

pub(crate) fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args);
    c
}

/// `cargo run --release --package examples [--features …] --example <name> --`: append the
/// example's own arguments.
pub(crate) fn example(name: &str, features: &[&str]) -> Command {
    let mut c = cargo(&["run", "--release", "--package", "examples"]);
    for f in features {
        c.args(["--features", f]);
    }
    c.args(["--example", name, "--"]);
    c
}

/// Removes `dir` and everything in it, if it exists.
pub(crate) fn remove_dir_if_present(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// An empty directory `dir` (whatever was there is removed).
pub(crate) fn fresh_dir(dir: &Path) -> Result<()> {
    remove_dir_if_present(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

pub(crate) fn run_ok(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Builds a binary of the `benches` package in release mode (`target/release/<name>`).
pub(crate) fn build_bench_bin(name: &str) -> Result<()> {
    run_ok(&mut cargo(&[
        "build",
        "--release",
        "--package",
        "benches",
        "--bin",
        name,
    ]))
}

/// A virtualenv under `target/` with the packages of `requirements` (created once).
pub(crate) fn venv(name: &str, requirements: &str) -> Result<PathBuf> {
    let dir = PathBuf::from("target").join(name).join("venv");
    let python = dir.join("bin/python");
    let stamp = dir.join("requirements.installed");
    let wanted =
        std::fs::read_to_string(requirements).with_context(|| format!("reading {requirements}"))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        println!("==> creating {} from {requirements}", dir.display());
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
        run_ok(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "-r",
            requirements,
        ]))?;
        std::fs::write(&stamp, wanted)?;
    }
    Ok(python)
}

/// Installs the npm packages pinned by `package_json` into `dir` (once: a copy of the
/// manifest in `dir` marks what is installed).
pub(crate) fn npm_install(package_json: &str, dir: &Path) -> Result<()> {
    let wanted =
        std::fs::read_to_string(package_json).with_context(|| format!("reading {package_json}"))?;
    let stamp = dir.join("package.json");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    println!("==> npm install {package_json} into {}", dir.display());
    std::fs::create_dir_all(dir)?;
    std::fs::write(&stamp, &wanted)?;
    run_ok(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir),
    )
}

/// Runs `cmd`, killing it after `timeout`; returns its stdout, or `None` on timeout.
pub(crate) fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Option<String>> {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let mut stdout = child.stdout.take().context("piped stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let out = reader
                .join()
                .map_err(|_| anyhow::anyhow!("stdout reader panicked"))??;
            if !status.success() {
                bail!("{cmd:?} failed with {status}");
            }
            return Ok(Some(out));
        }
        if start.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `cmd` (killed after `timeout`) and parses the last JSON line it printed; `who` names
/// the side in the error when it times out.
pub(crate) fn json_output(
    cmd: &mut Command,
    timeout: Duration,
    who: &str,
) -> Result<serde_json::Value> {
    last_json_line(&output_with_timeout(cmd, timeout)?.with_context(|| format!("{who} timed out"))?)
}

pub(crate) fn last_json_line(out: &str) -> Result<serde_json::Value> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("no JSON line in the output")?;
    serde_json::from_str(line).context("parsing the JSON line")
}

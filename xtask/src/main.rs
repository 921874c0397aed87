//! Brisk's maintenance tasks.
//!
//! ```text
//! cargo xtask ci [--fail-fast]   every check CI runs; reports all failing steps at the end
//! cargo xtask layers             the layering rules of ARCHITECTURE.md, checked from cargo metadata
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
//! cargo xtask bench --compare-dask [--quick] [--sizes 10000,100000] [--timeout SECS] [--only zarr/] [--rounds R]
//!                                the same scenarios in Brisk and in Dask (own virtualenv),
//!                                side by side: target/bench/compare.{json,md}
//! ```

#![allow(
    clippy::print_stdout,
    reason = "a command-line tool reports to the terminal"
)]

mod soak;

use std::collections::BTreeMap;
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

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    std::env::set_current_dir(&root).with_context(|| format!("entering {}", root.display()))?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(args.iter().any(|a| a == "--fail-fast")),
        Some("layers") => layers(),
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

const USAGE: &str = "usage: cargo xtask <ci [--fail-fast] | layers | interop | cloud | report-check | cluster-example | soak [--quick] [--kills N] [--mutations M] | bench [--compare-dask [--quick] [--sizes N,M] [--timeout S] [--only PREFIX] [--rounds R]]>";

fn workspace_root() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(dir
        .parent()
        .context("xtask lives one level below the workspace root")?
        .to_path_buf())
}

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args);
    c
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

enum Step {
    Cmd(String, Command),
    Fn(String, fn() -> Result<()>),
}

fn ci(fail_fast: bool) -> Result<()> {
    let mut steps = vec![
        Step::Cmd("fmt".into(), cargo(&["fmt", "--all", "--", "--check"])),
        Step::Cmd(
            "clippy".into(),
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        Step::Cmd(
            "tests (nextest)".into(),
            cargo(&[
                "nextest",
                "run",
                "--workspace",
                "--all-features",
                "--no-fail-fast",
                "--failure-output",
                "final",
            ]),
        ),
        Step::Cmd(
            "doctests".into(),
            cargo(&["test", "--workspace", "--all-features", "--doc"]),
        ),
        Step::Cmd("docs".into(), {
            let mut c = cargo(&["doc", "--workspace", "--no-deps", "--all-features"]);
            c.env("RUSTDOCFLAGS", "-D warnings");
            c
        }),
        Step::Fn("layers".into(), layers),
    ];
    for krate in workspace_crates()? {
        steps.push(Step::Cmd(
            format!("{krate} alone"),
            cargo(&["check", "--package", &krate, "--all-targets"]),
        ));
    }
    for example in examples()? {
        steps.push(Step::Cmd(
            format!("example {example}"),
            cargo(&[
                "run",
                "--release",
                "--package",
                "examples",
                "--example",
                &example,
                "--",
                "--quick",
            ]),
        ));
    }
    steps.push(Step::Fn(
        "interop (zarr-python, Python decoders)".into(),
        interop,
    ));
    steps.push(Step::Fn(
        "cloud stores (moto_server, Azurite, GCS emulator)".into(),
        cloud,
    ));
    steps.push(Step::Fn(
        "profile report in headless Chromium".into(),
        report_check,
    ));
    steps.push(Step::Fn(
        "storage soak (killed writers, mutated entries; short)".into(),
        || {
            soak::soak(&soak::SoakOptions {
                kills: 4,
                mutations: 5_000,
            })
        },
    ));
    if std::env::var("BRISK_TEST_SLURM").as_deref() == Ok("1") {
        // The cluster tests are ignored without a cluster; here they must run (nextest
        // fails when the filter selects none).
        steps.push(Step::Cmd(
            "Slurm tests (ignored without a cluster)".into(),
            cargo(&[
                "nextest",
                "run",
                "--package",
                "brisk-cluster",
                "--all-features",
                "--no-fail-fast",
                "--run-ignored",
                "only",
                "-E",
                "not test(cluster_worker_entry)",
                "--failure-output",
                "final",
            ]),
        ));
        steps.push(Step::Fn(
            "cluster example: local threads and Slurm agree".into(),
            cluster_example,
        ));
    } else {
        println!("xtask ci: BRISK_TEST_SLURM is not 1: the Slurm tests will not run");
    }
    steps.push(Step::Cmd(
        "benches compile".into(),
        cargo(&["bench", "--workspace", "--no-run"]),
    ));

    let mut failed: Vec<(String, String)> = Vec::new();
    let mut timings: Vec<(String, f64)> = Vec::new();
    for step in steps {
        let (name, result) = match step {
            Step::Cmd(name, mut cmd) => {
                println!("\n==> xtask ci: {name}");
                let t = Instant::now();
                let r = run_ok(&mut cmd);
                timings.push((name.clone(), t.elapsed().as_secs_f64()));
                (name, r)
            }
            Step::Fn(name, f) => {
                println!("\n==> xtask ci: {name}");
                let t = Instant::now();
                let r = f();
                timings.push((name.clone(), t.elapsed().as_secs_f64()));
                (name, r)
            }
        };
        if let Err(e) = result {
            println!("xtask ci: step `{name}` FAILED: {e:#}");
            failed.push((name, format!("{e:#}")));
            if fail_fast {
                break;
            }
        }
    }
    println!("\n==> xtask ci summary");
    for (name, secs) in &timings {
        let mark = if failed.iter().any(|(f, _)| f == name) {
            "FAILED"
        } else {
            "ok"
        };
        println!("  {mark:>6}  {secs:>7.1}s  {name}");
    }
    if failed.is_empty() {
        println!("all {} steps passed", timings.len());
        Ok(())
    } else {
        for (name, e) in &failed {
            println!("failed: {name}: {e}");
        }
        bail!("{} of {} steps failed", failed.len(), timings.len())
    }
}

fn examples() -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("examples").context("reading examples/")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            out.push(stem.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn metadata() -> Result<serde_json::Value> {
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
fn workspace_crates() -> Result<Vec<String>> {
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
fn layer_table() -> Result<BTreeMap<String, u32>> {
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
const THREAD_CRATES: &[&str] = &["brisk-exec", "brisk-profile"];
/// The only crate that may read environment variables.
const ENV_CRATES: &[&str] = &["brisk", "brisk-cluster"];

fn layers() -> Result<()> {
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

fn scan_sources(dir: &Path, krate: &str, problems: &mut Vec<String>) -> Result<()> {
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

/// Runs `cmd`, killing it after `timeout`; returns its stdout, or `None` on timeout.
fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Option<String>> {
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

fn last_json_line(out: &str) -> Result<serde_json::Value> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("no JSON line in the output")?;
    serde_json::from_str(line).context("parsing the JSON line")
}

/// `cargo xtask bench --compare-dask`: the graph and futures scenarios in Brisk and in Dask
/// (same machine, same number of workers, same run), written to target/bench/compare.json and
/// target/bench/compare.md.
struct CompareOptions {
    quick: bool,
    sizes: Option<Vec<usize>>,
    timeout: Option<u64>,
    /// Only the scenarios whose name starts with this.
    only: Option<String>,
    /// Rounds of (Brisk, Dask) per scenario (default: 3 for Zarr scenarios, 1 otherwise).
    rounds: Option<usize>,
}

fn compare_dask(opts: &CompareOptions) -> Result<()> {
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
         build + compute of trivial tasks (Dask: dask.delayed, threaded scheduler). Futures \
         scenarios: Brisk's Handler vs Python's concurrent.futures thread pool. Zarr scenarios: \
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

/// Runs one scenario on both sides.
struct Sides<'a> {
    python: &'a std::path::Path,
    zarr_dir: &'a std::path::Path,
    workers: usize,
    timeout: Duration,
}

impl Sides<'_> {
    /// One round: the Brisk side, then the Dask side (`None` when it timed out).
    fn round(
        &self,
        scenario: &str,
        repeat: &str,
    ) -> Result<(serde_json::Value, Option<serde_json::Value>)> {
        let w = self.workers.to_string();
        let brisk = output_with_timeout(
            Command::new("target/release/compare")
                .args(["--scenario", scenario, "--workers", &w, "--repeat", repeat])
                .arg("--dir")
                .arg(self.zarr_dir),
            self.timeout,
        )?
        .context("the Brisk side timed out")?;
        let brisk = last_json_line(&brisk)?;
        let mut py = Command::new(self.python);
        if scenario.starts_with("zarr/") {
            py.args(["benches/dask/zarr_compare.py", "--repeat", repeat])
                .arg("--dir")
                .arg(self.zarr_dir);
        } else {
            py.args(["benches/dask/compare.py", "--repeat", repeat]);
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
    fn run(&self, scenario: &str, n: usize, rounds: usize) -> Result<(serde_json::Value, String)> {
        let repeat = if n >= 1_000_000 { "1" } else { "3" };
        let total = |v: &serde_json::Value, side: &str| {
            v["total_s"]
                .as_f64()
                .with_context(|| format!("{side} total_s"))
        };
        let mut runs = Vec::new();
        for _ in 0..rounds.max(1) {
            let (b, d) = self.round(scenario, repeat)?;
            let bt = total(&b, "brisk")?;
            let dt = d.as_ref().map(|d| total(d, "dask")).transpose()?;
            runs.push((b, bt, d, dt));
        }
        let by = |a: f64, b: f64| a.total_cmp(&b);
        let (brisk, b) = runs
            .iter()
            .min_by(|x, y| by(x.1, y.1))
            .map(|r| (r.0.clone(), r.1))
            .context("at least one round")?;
        let max_rss = |vals: Vec<Option<f64>>| vals.into_iter().flatten().reduce(f64::max);
        let brisk_rss = max_rss(runs.iter().map(|r| r.0["peak_rss_mib"].as_f64()).collect());
        let mut entry = serde_json::json!({
            "brisk_s": b,
            "brisk_build_s": brisk["build_s"],
            "brisk_run_s": brisk["run_s"],
            "workers": self.workers,
            "rounds": runs.iter().map(|r| serde_json::json!({"brisk_s": r.1, "dask_s": r.3})).collect::<Vec<_>>(),
        });
        let rss_cell = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |x| format!("{x:.0}"));
        if let Some(r) = brisk_rss {
            entry["brisk_peak_rss_mib"] = r.into();
        }
        let limit_run = runs
            .iter()
            .filter_map(|r| {
                r.0.get("limit_s")
                    .and_then(serde_json::Value::as_f64)
                    .map(|l| (l, &r.0))
            })
            .min_by(|x, y| by(x.0, y.0));
        let limit_cells = match limit_run {
            Some((l, from)) => {
                entry["limit_s"] = l.into();
                entry["limit_zstd_s"] = from["limit_zstd_s"].clone();
                entry["limit_pass_s"] = from["limit_pass_s"].clone();
                entry["brisk_over_limit"] = (b / l).into();
                format!("{l:.4} | {:.2}×", b / l)
            }
            None => " | ".to_owned(),
        };
        let dask_best = runs
            .iter()
            .map(|r| r.2.as_ref().zip(r.3))
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().min_by(|x, y| by(x.1, y.1)));
        let (dask_cell, ratio_cell, dask_split, dask_rss) = match dask_best {
            Some((d, ds)) => {
                let ratio = ds / b;
                entry["dask_s"] = ds.into();
                entry["ratio"] = ratio.into();
                entry["dask_build_s"] = d["build_s"].clone();
                entry["dask_run_s"] = d["run_s"].clone();
                entry["dask_version"] = d["dask_version"].clone();
                let dask_rss = max_rss(
                    runs.iter()
                        .map(|r| r.2.as_ref().and_then(|d| d["peak_rss_mib"].as_f64()))
                        .collect(),
                );
                if let Some(r) = dask_rss {
                    entry["dask_peak_rss_mib"] = r.into();
                }
                // The spread of the per-round ratios, when there are several rounds.
                let per_round: Vec<f64> =
                    runs.iter().filter_map(|r| r.3.map(|d| d / r.1)).collect();
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
                        "{:.4} / {:.4}",
                        d["build_s"].as_f64().unwrap_or(0.0),
                        d["run_s"].as_f64().unwrap_or(0.0)
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
                    format!("> {:.0}×", self.timeout.as_secs_f64() / b),
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

/// Kills the child process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port` of 127.0.0.1.
fn wait_for_port(port: u16, what: &str, log: &str) -> Result<()> {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(60) {
            bail!("{what} did not listen on 127.0.0.1:{port} within 60 s (see {log})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Azurite's well-known development account.
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Runs `examples/cluster_map --quick` on local threads and on the Slurm cluster that
/// `.ci/run` started (`BRISK_SLURM_PREFIX` reaches it) and checks both print the same results.
fn cluster_example() -> Result<()> {
    let store = std::fs::canonicalize("target")?.join("cluster-example-store");
    if store.exists() {
        std::fs::remove_dir_all(&store)?;
    }
    let prefix = std::env::var("BRISK_SLURM_PREFIX").unwrap_or_default();
    let address = format!(
        "slurm://?store={}&prefix={}&poll_ms=100&time=00:05:00",
        store.display(),
        prefix.replace(' ', "%20")
    );
    let run = |extra: &[&str]| -> Result<Vec<String>> {
        let mut args = vec![
            "run",
            "--release",
            "--package",
            "examples",
            "--example",
            "cluster_map",
            "--",
            "--quick",
        ];
        args.extend_from_slice(extra);
        let out = cargo(&args).output().context("running cluster_map")?;
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

/// Installs the npm packages pinned by `package_json` into `dir` (once: a copy of the
/// manifest in `dir` marks what is installed).
fn npm_install(package_json: &str, dir: &Path) -> Result<()> {
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

/// `cargo xtask report-check`: runs `examples/profile_report` (profiling a real Zarr
/// compute), opens its `profile.html` in Debian's headless Chromium through playwright-core
/// (pinned by `xtask/report-check/package.json`, installed once under `target/`), fails on any
/// console error, page error or network request, checks the charts and the hover details, and
/// saves a full-page screenshot to `target/report-check/report.png`.
fn report_check() -> Result<()> {
    let out = PathBuf::from("target/report-check");
    std::fs::create_dir_all(&out)?;
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        bail!(
            "Chromium not found at {chromium} (Debian: `apt-get install chromium`; or set CHROMIUM)"
        );
    }
    run_ok(
        cargo(&[
            "run",
            "--release",
            "--package",
            "examples",
            "--example",
            "profile_report",
            "--",
            "--out",
        ])
        .arg(&out),
    )?;
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

/// `cargo xtask cloud`: starts moto_server (S3), Azurite (Azure Blob Storage) and our GCS XML
/// API emulator on free ports of 127.0.0.1, creates a bucket and a container, runs the tests
/// whose name contains `s3`, `azure` or `gcs` with those features on and `BRISK_TEST_S3_URL` /
/// `BRISK_TEST_AZURE_URL` / `BRISK_TEST_GCS_URL` set, and checks that the tests really wrote
/// to every server; then runs `examples/dynamic_source`
/// with its poller watching an S3 prefix of moto_server.
fn cloud() -> Result<()> {
    let python = venv("cloud", "benches/cloud/requirements.txt")?;
    let bin = python
        .parent()
        .context("the venv's bin directory")?
        .to_path_buf();
    // Azurite from npm, pinned by benches/cloud/package.json (installed once).
    let az_dir = PathBuf::from("target/cloud/azurite");
    npm_install("benches/cloud/package.json", &az_dir)?;
    let (s3_port, az_port, gcs_port) = (free_port()?, free_port()?, free_port()?);
    let s3_endpoint = format!("http://127.0.0.1:{s3_port}");
    let az_endpoint = format!("http://127.0.0.1:{az_port}/devstoreaccount1");
    let moto_log = std::fs::File::create("target/cloud/moto.log")?;
    let _moto = KillOnDrop(
        Command::new(bin.join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &s3_port.to_string()])
            .stdout(moto_log.try_clone()?)
            .stderr(moto_log)
            .spawn()
            .context("starting moto_server")?,
    );
    let az_data = PathBuf::from("target/cloud/azurite-data");
    if az_data.exists() {
        std::fs::remove_dir_all(&az_data)?;
    }
    let az_log = std::fs::File::create("target/cloud/azurite.log")?;
    let _azurite = KillOnDrop(
        Command::new(az_dir.join("node_modules/.bin/azurite-blob"))
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &az_port.to_string(),
            ])
            .arg("--location")
            .arg(&az_data)
            .args(["--skipApiVersionCheck", "--loose"])
            .stdout(az_log.try_clone()?)
            .stderr(az_log)
            .spawn()
            .context("starting Azurite (needs Node.js)")?,
    );
    // GCS: our XML API emulator (see its docstring for why not a third-party one).
    let gcs_log = std::fs::File::create("target/cloud/gcs.log")?;
    let _gcs = KillOnDrop(
        Command::new(&python)
            .arg("benches/cloud/gcs_xml_emulator.py")
            .args(["--port", &gcs_port.to_string(), "--bucket", "brisk-test"])
            .stdout(gcs_log.try_clone()?)
            .stderr(gcs_log)
            .spawn()
            .context("starting the GCS emulator")?,
    );
    wait_for_port(s3_port, "moto_server", "target/cloud/moto.log")?;
    wait_for_port(az_port, "Azurite", "target/cloud/azurite.log")?;
    wait_for_port(gcs_port, "the GCS emulator", "target/cloud/gcs.log")?;
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};\
         BlobEndpoint={az_endpoint};"
    );
    let setup = format!(
        "import boto3\n\
         from azure.storage.blob import BlobServiceClient\n\
         boto3.client('s3', endpoint_url='{s3_endpoint}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='brisk-test')\n\
         BlobServiceClient.from_connection_string('{conn}').create_container('brisk-test')\n"
    );
    run_ok(Command::new(&python).args(["-c", &setup]))?;
    let mut tests = cargo(&[
        "nextest",
        "run",
        "--package",
        "brisk-checkpoint",
        "--package",
        "brisk-zarr",
        "--features",
        "brisk-checkpoint/s3,brisk-checkpoint/azure,brisk-checkpoint/gcs,brisk-zarr/s3,brisk-zarr/azure,brisk-zarr/gcs",
        "--no-fail-fast",
        // The cloud tests are ignored without the emulators; here they must run (nextest
        // fails when the filter selects none).
        "--run-ignored",
        "only",
        "-E",
        "test(/s3|azure|gcs/)",
    ]);
    tests
        .env("BRISK_TEST_S3_URL", "s3://brisk-test")
        .env("AWS_ENDPOINT_URL", &s3_endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("BRISK_TEST_AZURE_URL", "az://brisk-test")
        .env("AZURE_STORAGE_USE_EMULATOR", "true")
        .env(
            "AZURITE_BLOB_STORAGE_URL",
            format!("http://127.0.0.1:{az_port}"),
        )
        .env("BRISK_TEST_GCS_URL", "gs://brisk-test")
        // No OAuth against the emulator; object_store reads the base URL from the key.
        .env(
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            format!(
                r#"{{"disable_oauth":true,"client_email":"","private_key":"","private_key_id":"","gcs_base_url":"http://127.0.0.1:{gcs_port}"}}"#
            ),
        );
    run_ok(&mut tests)?;
    // The dynamic-source example with its poller watching an S3 prefix.
    let mut example = cargo(&[
        "run",
        "--release",
        "--package",
        "examples",
        "--features",
        "s3",
        "--example",
        "dynamic_source",
        "--",
        "--quick",
        "--store",
        "s3://brisk-test/dynamic",
        "--checkpoints",
        "target/cloud/dynamic-checkpoints",
    ]);
    if Path::new("target/cloud/dynamic-checkpoints").exists() {
        std::fs::remove_dir_all("target/cloud/dynamic-checkpoints")?;
    }
    example
        .env("AWS_ENDPOINT_URL", &s3_endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    run_ok(&mut example)?;
    // The tests skip themselves without the variables; make sure they really wrote.
    let log = std::fs::read_to_string("target/cloud/moto.log")?;
    for who in [
        "/brisk-test/conformance/",
        "/brisk-test/zarr/",
        "/brisk-test/dynamic/",
    ] {
        if !log.contains(who) {
            bail!("no request under {who} reached moto_server: the S3 tests did not run");
        }
    }
    let check = format!(
        "from azure.storage.blob import BlobServiceClient\n\
         names = [b.name for b in BlobServiceClient.from_connection_string('{conn}')\
         .get_container_client('brisk-test').list_blobs()]\n\
         assert any(n.startswith('conformance/') for n in names), names\n\
         assert any(n.startswith('zarr/') for n in names), names\n\
         print(f'azurite holds {{len(names)}} blobs written by the tests')\n"
    );
    run_ok(Command::new(&python).args(["-c", &check]))?;
    let log = std::fs::read_to_string("target/cloud/gcs.log")?;
    for who in ["/brisk-test/conformance/", "/brisk-test/zarr/"] {
        if !log.contains(who) {
            bail!("no request under {who} reached the GCS emulator: the GCS tests did not run");
        }
    }
    Ok(())
}

/// Builds a binary of the `benches` package in release mode (`target/release/<name>`).
fn build_bench_bin(name: &str) -> Result<()> {
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
fn venv(name: &str, requirements: &str) -> Result<PathBuf> {
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

/// `cargo xtask interop`: Brisk writes every case of benches/zarr/cases.json and zarr-python
/// checks values, metadata, attributes and dimension names; then the other way round.
fn interop() -> Result<()> {
    let python = venv("interop", "benches/zarr/requirements.txt")?;
    build_bench_bin("zarr_interop")?;
    let root = PathBuf::from("target/interop");
    let (ours, theirs) = (root.join("brisk"), root.join("python"));
    for d in [&ours, &theirs] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
        std::fs::create_dir_all(d)?;
    }
    println!("==> Brisk writes, zarr-python reads");
    run_ok(
        Command::new("target/release/zarr_interop")
            .arg("write")
            .arg(&ours),
    )?;
    run_ok(
        Command::new(&python)
            .arg("benches/zarr/interop.py")
            .arg("check")
            .arg(&ours),
    )?;
    println!("==> zarr-python writes, Brisk reads");
    run_ok(
        Command::new(&python)
            .arg("benches/zarr/interop.py")
            .arg("write")
            .arg(&theirs),
    )?;
    run_ok(
        Command::new("target/release/zarr_interop")
            .arg("check")
            .arg(&theirs),
    )?;
    println!("interop: every case read back identically in both directions");

    println!("==> Brisk writes checkpoint entries, Python decodes them");
    let python = venv("interop-checkpoint", "benches/checkpoint/requirements.txt")?;
    build_bench_bin("checkpoint_interop")?;
    let dir = root.join("checkpoint");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    run_ok(Command::new("target/release/checkpoint_interop").arg(&dir))?;
    run_ok(
        Command::new(&python)
            .arg("benches/checkpoint/interop.py")
            .arg(&dir),
    )?;
    Ok(())
}

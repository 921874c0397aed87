//! `cargo xtask ci`: every check CI runs, each a step; failing steps are reported at the end.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::*;

pub(crate) enum Step {
    Cmd(String, Command),
    Fn(String, fn() -> Result<()>),
}

pub(crate) fn ci(fail_fast: bool) -> Result<()> {
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
        Step::Cmd("loom model of the pool's sleep/wake".into(), loom_command()),
    ];
    for krate in workspace_crates()? {
        steps.push(Step::Cmd(
            format!("{krate} alone"),
            cargo(&["check", "--package", &krate, "--all-targets"]),
        ));
    }
    for example in examples()? {
        steps.push(Step::Cmd(format!("example {example}"), {
            let mut c = crate::example(&example, &[]);
            c.arg("--quick");
            c
        }));
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

pub(crate) fn examples() -> Result<Vec<String>> {
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

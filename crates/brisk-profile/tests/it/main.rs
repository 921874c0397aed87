//! Integration tests of brisk-profile.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::sync::Arc;
use std::time::Duration;

use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{ComputeOptions, Delayed, Executor, TaskSpec};
use brisk_profile::{Outcome, Profiler};

/// 8 sleeping tasks of 20 ms and one sum.
fn sleepy() -> Delayed<u64> {
    let spec = TaskSpec::new("sleep").pure();
    let parts: Delayed<Vec<u64>> = (0..8u64)
        .map(|i| {
            spec.call(
                |i: u64| {
                    std::thread::sleep(Duration::from_millis(20));
                    i
                },
                (i,),
            )
        })
        .collect();
    TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

#[test]
fn every_task_is_recorded_on_every_executor() {
    let execs: Vec<(Box<dyn Executor>, usize)> = vec![
        (Box::new(SequentialExecutor), 1),
        (Box::new(ThreadedExecutor::new(2).unwrap()), 2),
    ];
    for (e, workers) in execs {
        let p = Arc::new(Profiler::new());
        let opts = ComputeOptions::new().hook(p.clone());
        assert_eq!(
            sleepy().compute_with_options(e.as_ref(), &opts).unwrap(),
            28
        );
        let recs = p.records();
        let sleeps: Vec<_> = recs.iter().filter(|r| r.name.as_str() == "sleep").collect();
        assert_eq!(sleeps.len(), 8);
        assert!(
            sleeps
                .iter()
                .all(|r| r.end - r.start >= Duration::from_millis(20))
        );
        assert!(
            recs.iter()
                .all(|r| r.worker < workers && r.outcome == Outcome::Computed)
        );
        assert!(recs.iter().any(|r| r.name.as_str() == "sum"));
        // Tasks on one worker never overlap.
        for w in 0..workers {
            let mut mine: Vec<_> = recs.iter().filter(|r| r.worker == w).collect();
            mine.sort_by_key(|r| r.start);
            assert!(
                mine.windows(2).all(|p| p[0].end <= p[1].start),
                "worker {w}"
            );
        }
        let s = p.summary();
        let sleep = s.by_name.iter().find(|n| n.name == "sleep").unwrap();
        assert_eq!(sleep.count, 8);
        assert!(sleep.mean() >= Duration::from_millis(20));
        assert_eq!(s.by_name[0].name, "sleep", "most total time first");
        assert!(
            s.efficiency > 0.5 && s.efficiency <= 1.0,
            "{}",
            s.efficiency
        );
        assert!(s.wall >= Duration::from_millis(160 / workers as u64));
        let text = s.to_string();
        assert!(
            text.contains("parallel efficiency") && text.contains("sleep"),
            "{text}"
        );
        // Chrome trace: one complete event per attempt, microseconds, one thread per worker.
        let trace: serde_json::Value = serde_json::from_str(&p.chrome_trace()).unwrap();
        let events = trace["traceEvents"].as_array().unwrap();
        let complete: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(complete.len(), recs.len());
        assert!(complete.iter().all(|e| e["dur"].as_f64().unwrap() >= 0.0));
        assert!(
            complete
                .iter()
                .any(|e| e["name"] == "sleep" && e["dur"].as_f64().unwrap() >= 20_000.0)
        );
        assert_eq!(events.iter().filter(|e| e["ph"] == "M").count(), workers);
        p.clear();
        assert!(p.records().is_empty());
    }
}

#[test]
fn failures_and_retries_are_recorded() {
    let p = Arc::new(Profiler::new());
    let tries = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let t = Arc::clone(&tries);
    let flaky = TaskSpec::new("flaky").retries(1).try_call(
        move || {
            if t.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Err("first try fails")
            } else {
                Ok(1u8)
            }
        },
        (),
    );
    flaky
        .compute_with_options(&SequentialExecutor, &ComputeOptions::new().hook(p.clone()))
        .unwrap();
    let r = p.records();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].attempt, r[0].outcome), (1, Outcome::Failed));
    assert_eq!((r[1].attempt, r[1].outcome), (2, Outcome::Computed));
}

mod cache;
mod progress;
mod report;
mod resource;

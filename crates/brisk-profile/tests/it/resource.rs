//! `ResourceProfiler`: samples taken while a compute runs, real CPU and memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{ComputeOptions, Delayed, Executor, TaskSpec};
use brisk_profile::ResourceProfiler;

/// Two tasks that each keep a core busy for `ms`.
fn spin(ms: u64) -> Delayed<u64> {
    let spec = TaskSpec::new("spin");
    let parts: Delayed<Vec<u64>> = (0..2u64)
        .map(|i| {
            spec.call(
                move |i: u64| {
                    let end = Instant::now() + Duration::from_millis(ms);
                    let mut x = i;
                    while Instant::now() < end {
                        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                    }
                    x
                },
                (i,),
            )
        })
        .collect();
    TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().fold(0, |a, b| a ^ b), (parts,))
}

#[test]
fn samples_cpu_while_the_compute_runs_and_stops_after() {
    let r = Arc::new(ResourceProfiler::every(Duration::from_millis(20)));
    let opts = ComputeOptions::new().hook(r.clone());
    spin(400)
        .compute_with_options(&ThreadedExecutor::new(2).unwrap(), &opts)
        .unwrap();
    let samples = r.samples();
    assert!(samples.len() >= 5, "{} samples", samples.len());
    assert!(samples.windows(2).all(|w| w[0].time <= w[1].time));
    // Two spinning workers: at least one sample must see well over half a core.
    let max_cpu = samples.iter().map(|s| s.cpu_percent).fold(0.0, f64::max);
    assert!(max_cpu >= 50.0, "max CPU {max_cpu} %");
    assert!(samples.iter().all(|s| s.rss_bytes > 0));
    // The sampler stopped with the compute.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(r.samples().len(), samples.len());
}

#[test]
fn sees_memory_a_task_holds() {
    const MIB: usize = 1024 * 1024;
    let r = Arc::new(ResourceProfiler::every(Duration::from_millis(10)));
    let opts = ComputeOptions::new().hook(r.clone());
    let hold = TaskSpec::new("hold").call(
        |n: usize| {
            let v = vec![1u8; n * MIB];
            std::thread::sleep(Duration::from_millis(150));
            v.iter().map(|&b| u64::from(b)).sum::<u64>()
        },
        (256usize,),
    );
    let got = hold
        .compute_with_options(&SequentialExecutor, &opts)
        .unwrap();
    assert_eq!(got, 256 * MIB as u64);
    let samples = r.samples();
    let first = samples.first().unwrap().rss_bytes;
    let peak = r.peak_rss();
    assert!(
        peak >= first + 200 * MIB as u64,
        "peak {peak} vs start {first}"
    );
}

#[test]
fn manual_start_and_stop_nest() {
    let r = ResourceProfiler::every(Duration::from_millis(5));
    r.start();
    r.start();
    std::thread::sleep(Duration::from_millis(30));
    r.stop();
    // Still running: one start is open.
    let n = r.samples().len();
    std::thread::sleep(Duration::from_millis(40));
    assert!(r.samples().len() > n);
    r.stop();
    let n = r.samples().len();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(r.samples().len(), n);
    r.clear();
    assert!(r.samples().is_empty());
}

#[test]
fn works_on_the_sync_executor_too() {
    let r = Arc::new(ResourceProfiler::every(Duration::from_millis(10)));
    let opts = ComputeOptions::new().hook(r.clone());
    let e: &dyn Executor = &SequentialExecutor;
    spin(60).compute_with_options(e, &opts).unwrap();
    assert!(r.samples().len() >= 2);
}

//! `CacheProfiler` and `SizeOf`: bytes held, lifetimes, unknown types.

use std::sync::Arc;

use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{ComputeOptions, Delayed, TaskSpec};
use brisk_profile::{CacheProfiler, SizeOf};
use ndarray::ArrayD;

const VEC_HEADER: usize = std::mem::size_of::<Vec<u8>>();

#[test]
fn sizes_of_builtin_types() {
    let v: Vec<f64> = Vec::with_capacity(10);
    assert_eq!(v.size_of(), VEC_HEADER + 80);
    assert_eq!(String::from("abc").size_of(), VEC_HEADER + 3);
    let a = ArrayD::<f32>::zeros(vec![4, 5]);
    assert!(a.size_of() >= 80 && a.size_of() < 80 + 256);
    assert_eq!((1u32, 2u64).size_of(), 12);
    let m: std::collections::BTreeMap<u32, String> = [(1, "ab".to_owned())].into();
    assert_eq!(m.size_of(), std::mem::size_of_val(&m) + 4 + VEC_HEADER + 2);
    assert_eq!(
        vec![String::from("ab"), String::from("cde")].size_of(),
        VEC_HEADER + 2 * VEC_HEADER + 5
    );
}

/// `leaves` results of `bytes` each, gathered by one task.
fn gather(leaves: u64, bytes: usize) -> Delayed<usize> {
    let spec = TaskSpec::new("make");
    let parts: Delayed<Vec<Vec<u8>>> = (0..leaves)
        .map(|i| {
            spec.call(
                move |i: u64| {
                    let mut v = Vec::with_capacity(bytes);
                    v.resize(bytes, u8::try_from(i % 200).unwrap());
                    v
                },
                (i,),
            )
        })
        .collect();
    TaskSpec::new("total").call(
        |v: Vec<Vec<u8>>| v.iter().map(Vec::len).sum::<usize>(),
        (parts,),
    )
}

#[test]
fn follows_bytes_held_and_frees_everything_at_the_end() {
    for threaded in [false, true] {
        let c = Arc::new(CacheProfiler::new());
        let opts = ComputeOptions::new().hook(c.clone());
        let d = gather(8, 1 << 20);
        let got = if threaded {
            d.compute_with_options(&ThreadedExecutor::new(2).unwrap(), &opts)
        } else {
            d.compute_with_options(&SequentialExecutor, &opts)
        }
        .unwrap();
        assert_eq!(got, 8 << 20);
        // All eight leaves are alive when the gather runs.
        assert!(c.peak_bytes() >= 8 << 20, "peak {}", c.peak_bytes());
        assert!(c.peak_bytes() < 20 << 20, "peak {}", c.peak_bytes());
        let points = c.points();
        assert_eq!(points.last().unwrap().bytes, 0, "all freed at the end");
        assert!(points.windows(2).all(|w| w[0].time <= w[1].time));
        let lives = c.lifetimes();
        let makes: Vec<_> = lives.iter().filter(|l| l.name.as_str() == "make").collect();
        assert_eq!(makes.len(), 8);
        for l in &makes {
            assert_eq!(l.bytes, VEC_HEADER + (1 << 20));
            assert!(l.sized);
            let freed = l.freed.unwrap();
            assert!(freed >= l.created);
        }
        assert!(c.unsized_types().is_empty());
    }
}

#[test]
fn intermediates_are_freed_when_their_consumer_ran() {
    // a -> b -> c: the executor drops a when b starts and b when c starts.
    let a = TaskSpec::new("a").call(|n: usize| vec![0f64; n], (1000usize,));
    let b = TaskSpec::new("b").call(
        |v: Vec<f64>| v.iter().map(|x| x + 1.0).collect::<Vec<f64>>(),
        (a,),
    );
    let c = TaskSpec::new("c").call(|v: Vec<f64>| v.iter().sum::<f64>(), (b,));
    let p = Arc::new(CacheProfiler::new());
    let opts = ComputeOptions::new().hook(p.clone());
    assert!((c.compute_with_options(&SequentialExecutor, &opts).unwrap() - 1000.0).abs() < 1e-9);
    let lives = p.lifetimes();
    let find = |n: &str| lives.iter().find(|l| l.name.as_str() == n).unwrap().clone();
    let (la, lb, lc) = (find("a"), find("b"), find("c"));
    assert_eq!(la.bytes, VEC_HEADER + 8000);
    assert!(la.freed.unwrap() <= lc.created);
    assert!(la.freed.unwrap() <= lb.created);
    assert!(lb.freed.unwrap() <= lc.created);
    assert!(lc.freed.unwrap() >= lc.created);
    // Never more than two 8 KB vectors at once.
    assert!(p.peak_bytes() <= 2 * (VEC_HEADER as u64 + 8000) + 64);
}

#[derive(Clone)]
struct Blob {
    data: Vec<u8>,
}

impl SizeOf for Blob {
    fn size_of(&self) -> usize {
        self.data.size_of()
    }
}

#[test]
fn unknown_types_are_listed_and_registered_types_measured() {
    let d = TaskSpec::new("blob").call(|n: usize| Blob { data: vec![7; n] }, (4096usize,));
    let plain = Arc::new(CacheProfiler::new());
    let opts = ComputeOptions::new().hook(plain.clone());
    let got = d.compute_with_options(&SequentialExecutor, &opts).unwrap();
    assert_eq!(got.data.len(), 4096);
    let unsized_types = plain.unsized_types();
    assert_eq!(unsized_types.len(), 1, "{unsized_types:?}");
    assert!(unsized_types[0].0.contains("Blob"), "{unsized_types:?}");
    assert!(!plain.lifetimes()[0].sized);

    let known = Arc::new(CacheProfiler::new().with_size_of::<Blob>());
    let opts = ComputeOptions::new().hook(known.clone());
    d.compute_with_options(&SequentialExecutor, &opts).unwrap();
    assert!(known.unsized_types().is_empty());
    assert_eq!(known.peak_bytes(), (VEC_HEADER + 4096) as u64);
}

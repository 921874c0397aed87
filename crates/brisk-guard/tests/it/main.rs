//! Integration tests of brisk-guard.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{Delayed, Resource, TaskSpec};
use brisk_guard::{FileResource, HandlePool};

fn data_file(dir: &std::path::Path, name: &str, len: usize) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, (0..len).map(|i| (i % 256) as u8).collect::<Vec<u8>>()).unwrap();
    p
}

/// Sum of the bytes of `n` chunks of 16 bytes, read through `file`.
fn reads(file: &Arc<FileResource>, n: u64, guarded: bool) -> Delayed<u64> {
    let spec = TaskSpec::new("read");
    let parts: Delayed<Vec<u64>> = (0..n)
        .map(|i| {
            let f = Arc::clone(file);
            let d = spec.try_call(
                move |i: u64| {
                    f.read_exact_at(i * 16, 16)
                        .map(|b| b.iter().map(|&x| u64::from(x)).sum::<u64>())
                },
                (i,),
            );
            if guarded {
                d.requiring(file.clone())
            } else {
                d
            }
        })
        .collect();
    TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

#[test]
fn a_file_is_opened_once_per_compute_and_left_as_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_file(dir.path(), "a.bin", 1600);
    let expected: u64 = (0..1600u64).map(|i| i % 256).sum();
    let file = FileResource::new(&path);
    let e = ThreadedExecutor::new(2).unwrap();
    assert_eq!(reads(&file, 100, true).compute_with(&e).unwrap(), expected);
    assert_eq!((file.opens(), file.closes(), file.reads()), (1, 1, 100));
    assert!(!file.is_open());
    // Open before: used, left open.
    file.open().unwrap();
    assert_eq!(
        reads(&file, 100, true)
            .compute_with(&SequentialExecutor)
            .unwrap(),
        expected
    );
    assert_eq!((file.opens(), file.closes()), (2, 1));
    assert!(file.is_open());
    file.close().unwrap();
    // Unguarded reads of a closed file: a clear error, not a reopen.
    let err = reads(&file, 3, false).compute_with(&e).unwrap_err();
    let msg = brisk_graph::chain(&err);
    assert!(msg.contains("is closed") && msg.contains("a.bin"), "{msg}");
    // A missing file: the open error names it; nothing is read.
    let missing = FileResource::new(dir.path().join("missing.bin"));
    let err = reads(&missing, 5, true).compute_with(&e).unwrap_err();
    assert!(brisk_graph::chain(&err).contains("missing.bin"), "{err}");
    assert_eq!(
        (missing.opens(), missing.reads(), missing.closes()),
        (0, 0, 0)
    );
}

#[cfg(unix)]
#[test]
fn two_thousand_files_through_sixty_four_handles() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..2000)
        .map(|i| data_file(dir.path(), &format!("f{i}.bin"), 64 + i % 7))
        .collect();
    let open_now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    /// A handle that counts how many exist at once.
    struct Counted(std::fs::File, Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let (o, p) = (Arc::clone(&open_now), Arc::clone(&peak));
    let pool = Arc::new(HandlePool::new(64, move |path: &std::path::PathBuf| {
        let f = std::fs::File::open(path)?;
        let n = o.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(n, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Counted(f, Arc::clone(&o)))
    }));
    let spec = TaskSpec::new("first-bytes");
    // Each file is read twice, in an order that defeats a naive cache.
    let parts: Delayed<Vec<u64>> = (0..4000usize)
        .map(|k| {
            let i = (k * 7919) % 2000;
            let (pool, path) = (Arc::clone(&pool), paths[i].clone());
            spec.try_call(
                move |i: usize| -> std::io::Result<u64> {
                    let h = pool.get(&path)?;
                    let mut b = [0u8; 8];
                    std::os::unix::fs::FileExt::read_exact_at(&h.0, &mut b, (i % 7) as u64)?;
                    Ok(b.iter().map(|&x| u64::from(x)).sum())
                },
                (i,),
            )
        })
        .collect();
    let total = TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,));
    let got = total
        .compute_with(&ThreadedExecutor::new(4).unwrap())
        .unwrap();
    let expected: u64 = (0..4000usize)
        .map(|k| {
            let i = (k * 7919) % 2000;
            (0..8u64).map(|j| ((i % 7) as u64 + j) % 256).sum::<u64>()
        })
        .sum();
    assert_eq!(got, expected);
    let stats = pool.stats();
    assert!(
        peak.load(Ordering::SeqCst) <= 64,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(stats.peak_open <= 64 && stats.opened >= 2000, "{stats:?}");
    assert!(stats.evicted >= 2000 - 64, "{stats:?}");
    pool.close_idle();
    assert_eq!(open_now.load(Ordering::SeqCst), 0);
}

#[test]
fn a_per_key_limit_of_one_gives_exclusive_handles() {
    let in_use = Arc::new(AtomicUsize::new(0));
    let worst = Arc::new(AtomicUsize::new(0));
    let pool = Arc::new(HandlePool::new(4, |k: &u32| Ok::<_, String>(*k)).per_key_limit(1));
    std::thread::scope(|s| {
        for t in 0..8 {
            let (pool, in_use, worst) =
                (Arc::clone(&pool), Arc::clone(&in_use), Arc::clone(&worst));
            s.spawn(move || {
                for _ in 0..200 {
                    let h = pool.get(&(t % 2)).unwrap();
                    if *h == 0 {
                        let n = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                        worst.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        in_use.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    assert_eq!(
        worst.load(Ordering::SeqCst),
        1,
        "key 0 was held by two callers at once"
    );
    // A failing opener adds nothing and does not block others.
    let failing = HandlePool::new(1, |k: &u32| if *k == 0 { Err("no") } else { Ok(*k) });
    assert!(failing.get(&0).is_err());
    assert_eq!(*failing.get(&1).unwrap(), 1);
}

#[test]
fn a_panicking_opener_never_blocks_later_callers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let pool = Arc::new(HandlePool::new(1, move |k: &u32| {
        assert!(
            c.fetch_add(1, Ordering::SeqCst) > 0,
            "the first opening panics"
        );
        Ok::<_, String>(*k)
    }));
    let p = Arc::clone(&pool);
    let first = std::thread::spawn(move || p.get(&1).map(|h| *h)).join();
    assert!(first.is_err(), "the opener's panic reaches its caller");
    // Before the fix every later get blocked forever: run it on a thread and wait a bounded time.
    let (tx, rx) = std::sync::mpsc::channel();
    let p = Arc::clone(&pool);
    std::thread::spawn(move || tx.send(p.get(&2).map(|h| *h)).unwrap());
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("get blocked after a panicking opener");
    assert_eq!(got, Ok(2));
}

//! The futures API and the Handler: ordering, windows, errors, lifecycle.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brisk_exec::{AsCompleted, Handler, HandlerError};
use brisk_graph::pure;

/// A deterministic pseudo-random delay in microseconds for item `i`.
fn jitter(i: u64) -> Duration {
    Duration::from_micros((i.wrapping_mul(2_654_435_761) >> 7) % 700)
}

#[test]
fn gather_returns_results_in_input_order() {
    let h = Handler::new("threads://4").unwrap();
    let futures = h
        .map(
            |i: u64| {
                std::thread::sleep(jitter(i));
                i * 3
            },
            0..64u64,
        )
        .unwrap();
    assert_eq!(futures[5].index(), Some(5));
    assert_eq!(
        h.gather(futures).unwrap(),
        (0..64u64).map(|i| i * 3).collect::<Vec<_>>()
    );
}

#[test]
fn as_completed_accepts_additions_while_iterating() {
    let h = Handler::new("threads://2").unwrap();
    let mut ac = AsCompleted::new(
        h.map(
            |i: u64| {
                std::thread::sleep(jitter(i));
                i
            },
            0..10u64,
        )
        .unwrap(),
    );
    let mut seen = Vec::new();
    let mut added = 0;
    while let Some((id, r)) = ac.next() {
        let v = r.unwrap();
        seen.push((id, v));
        if v < 3 {
            // Work discovered while consuming results.
            ac.push(h.submit(move || 100 + v).unwrap());
            added += 1;
        }
    }
    assert_eq!(added, 3);
    assert_eq!(seen.len(), 13);
    let values: HashSet<u64> = seen.iter().map(|&(_, v)| v).collect();
    let expected: HashSet<u64> = (0..10).chain([100, 101, 102]).collect();
    assert_eq!(values, expected);
    assert_eq!(ac.pending(), 0);
}

#[test]
fn batched_map_keeps_input_order_with_random_delays() {
    let h = Handler::new("threads://4").unwrap();
    let out = h
        .batched_map(
            |i: u64| {
                std::thread::sleep(jitter(i));
                i * i
            },
            0..500u64,
            16,
        )
        .unwrap();
    assert_eq!(out, (0..500u64).map(|i| i * i).collect::<Vec<_>>());
}

#[test]
fn batched_map_keeps_at_most_a_batch_in_flight() {
    let h = Handler::new("threads://4").unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (l, p) = (live.clone(), peak.clone());
    // The input iterator also counts how far ahead of the results it was pulled.
    let pulled = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let max_ahead = Arc::new(AtomicUsize::new(0));
    let (pl, fin, ahead) = (pulled.clone(), finished.clone(), max_ahead.clone());
    let items = (0..300u64).inspect(move |_| {
        let n = pl.fetch_add(1, Ordering::SeqCst) + 1;
        ahead.fetch_max(n - fin.load(Ordering::SeqCst), Ordering::SeqCst);
    });
    let fin2 = finished.clone();
    let out = h
        .batched_map(
            move |i: u64| {
                let now = l.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(jitter(i) / 4);
                l.fetch_sub(1, Ordering::SeqCst);
                fin2.fetch_add(1, Ordering::SeqCst);
                i
            },
            items,
            5,
        )
        .unwrap();
    assert_eq!(out.len(), 300);
    assert!(
        peak.load(Ordering::SeqCst) <= 4,
        "more items ran at once than workers"
    );
    assert!(
        max_ahead.load(Ordering::SeqCst) <= 5,
        "pulled {} items ahead",
        max_ahead.load(Ordering::SeqCst)
    );
}

#[test]
fn batched_map_streams_a_huge_input_without_collecting_it() {
    // A billion-item range: only what is pulled is ever produced; stop after 10 000 with take.
    let h = Handler::local().unwrap();
    let out = h
        .batched_map(|i: u64| i + 1, (0..1_000_000_000u64).take(10_000), None)
        .unwrap();
    assert_eq!(out.len(), 10_000);
    assert_eq!(out[9_999], 10_000);
    // An input with no known length at all.
    let mut n = 0u64;
    let unknown = std::iter::from_fn(move || {
        n += 1;
        (n <= 777).then_some(n)
    });
    assert_eq!(h.batched_map(|i: u64| i, unknown, 10).unwrap().len(), 777);
}

#[test]
fn batch_size_zero_is_rejected() {
    let h = Handler::new("sync").unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let err = h
        .batched_map(
            move |i: u64| {
                r.store(true, Ordering::SeqCst);
                i
            },
            0..10u64,
            0,
        )
        .unwrap_err();
    assert!(matches!(err, HandlerError::ZeroBatchSize));
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn an_item_error_names_it_and_later_batches_never_start() {
    for address in ["threads://3", "sync"] {
        let h = Handler::new(address).unwrap();
        let started = Arc::new(Mutex::new(Vec::new()));
        let s = started.clone();
        let err = h
            .try_batched_map(
                move |i: u64| {
                    s.lock().unwrap().push(i);
                    if i == 5 {
                        Err(format!("cannot process {i}"))
                    } else {
                        Ok(i)
                    }
                },
                0..20u64,
                4,
            )
            .unwrap_err();
        assert_eq!(err.index(), Some(5), "{address}");
        assert!(err.to_string().contains("item 5"), "{err}");
        assert!(brisk_graph::chain(&err).contains("cannot process 5"));
        let started = started.lock().unwrap();
        assert!(
            started.iter().all(|&i| i < 8),
            "{address}: started {started:?}"
        );
        // With per-item results, everything runs.
        let all = h
            .batched_map_results(
                |i: u64| if i % 7 == 3 { Err("seven") } else { Ok(i) },
                0..20u64,
                4,
            )
            .unwrap();
        assert_eq!(all.len(), 20);
        assert_eq!(all.iter().filter(|r| r.is_err()).count(), 3);
        assert_eq!(all[3].as_ref().unwrap_err().index(), Some(3));
        assert_eq!(*all[4].as_ref().unwrap(), 4);
    }
}

#[test]
fn panics_in_items_are_errors_and_the_handler_keeps_working() {
    let h = Handler::new("threads://2").unwrap();
    let futures = h
        .map(
            |i: u64| {
                assert!(i != 2, "item two is bad");
                i
            },
            0..4u64,
        )
        .unwrap();
    match h.gather(futures).unwrap_err() {
        HandlerError::Panicked { index, message } => {
            assert_eq!(index, Some(2));
            assert!(message.contains("item two is bad"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(h.submit(|| 7).unwrap().wait().unwrap(), 7);
}

#[test]
fn close_waits_submit_after_close_fails_double_close_is_harmless() {
    let h = Handler::new("threads://2").unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let d = done.clone();
        drop(
            h.submit(move || {
                std::thread::sleep(Duration::from_millis(2));
                d.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap(),
        );
    }
    h.close();
    assert_eq!(
        done.load(Ordering::SeqCst),
        20,
        "close waits for queued work"
    );
    assert!(h.is_closed());
    assert!(matches!(h.submit(|| 1), Err(HandlerError::Closed)));
    assert!(matches!(
        h.map(|x: u64| x, [1u64]),
        Err(HandlerError::Closed)
    ));
    assert!(matches!(
        h.batched_map(|x: u64| x, [1u64], 1),
        Err(HandlerError::Closed)
    ));
    h.close();
    // Dropping closes too: the queued work has finished when drop returns.
    let h2 = Handler::new("threads://1").unwrap();
    let d = done.clone();
    drop(
        h2.submit(move || {
            std::thread::sleep(Duration::from_millis(20));
            d.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap(),
    );
    drop(h2);
    assert_eq!(done.load(Ordering::SeqCst), 21);
}

#[test]
fn addresses_choose_backends_and_unknown_schemes_are_errors() {
    assert_eq!(Handler::new("threads://3").unwrap().workers(), 3);
    assert_eq!(Handler::new("sync").unwrap().workers(), 1);
    assert!(Handler::from_address(None).unwrap().workers() >= 1);
    let h = Handler::local().unwrap();
    assert_eq!(
        h.default_batch_size(),
        h.workers() * brisk_exec::BATCH_ITEMS_PER_WORKER
    );
    match Handler::new("slurm://?partition=debug").unwrap_err() {
        HandlerError::UnsupportedScheme { scheme, address } => {
            assert_eq!(scheme, "slurm");
            assert_eq!(address, "slurm://?partition=debug");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        Handler::new("tcp://10.0.0.1:8786")
            .unwrap_err()
            .to_string()
            .contains("`tcp`")
    );
    assert!(matches!(
        Handler::new("threads://0"),
        Err(HandlerError::InvalidAddress { .. })
    ));
    assert!(matches!(
        Handler::new("threads://many"),
        Err(HandlerError::InvalidAddress { .. })
    ));
    // Messages that say what is wrong (not "unsupported scheme `sync` … supported: sync").
    let err = Handler::new("sync://4").unwrap_err().to_string();
    assert!(
        err.contains("takes nothing after it") && !err.contains("unsupported"),
        "{err}"
    );
    let err = Handler::new("threads://4?timeout=5")
        .unwrap_err()
        .to_string();
    assert!(err.contains("takes no options"), "{err}");
}

#[test]
fn sync_backend_runs_on_the_callers_thread() {
    let h = Handler::new("sync").unwrap();
    let me = std::thread::current().id();
    let f = h.submit(move || std::thread::current().id() == me).unwrap();
    assert!(f.is_done(), "sync work is done when submit returns");
    assert!(f.wait().unwrap());
}

#[test]
fn the_same_calls_give_the_same_results_on_every_backend() {
    let run = |h: &Handler| {
        let a = h.gather(h.map(|x: u64| x * 2, 0..50u64).unwrap()).unwrap();
        let b = h.batched_map(|x: u64| x + 1, 0..50u64, 7).unwrap();
        let c = h.compute(&pure("sq", |x: u64| x * x, (12u64,))).unwrap();
        (a, b, c)
    };
    let sync = run(&Handler::new("sync").unwrap());
    assert_eq!(sync, run(&Handler::new("threads://3").unwrap()));
    assert_eq!(sync, run(&Handler::local().unwrap()));
}

#[test]
fn close_waits_for_every_item_of_a_large_map_whose_futures_were_dropped() {
    // Far more items than one chunk handed to the pool at once, none of them waited for.
    let h = Handler::new("threads://2").unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let futures = h
        .map(
            move |i: u64| {
                if i.is_multiple_of(100) {
                    std::thread::sleep(Duration::from_micros(300));
                }
                d.fetch_add(1, Ordering::SeqCst);
            },
            0..5_000u64,
        )
        .unwrap();
    drop(futures);
    h.close();
    assert_eq!(done.load(Ordering::SeqCst), 5_000, "close waits for all");
}

#[test]
fn a_map_spreads_its_items_over_every_worker() {
    // Each of the first four items waits (up to 10 s) until four run at once: only possible
    // if single items of one map call (one chunk handed to the pool) go to different workers.
    let h = Handler::new("threads://4").unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let r = running.clone();
    let met = h
        .gather(
            h.map(
                move |i: u64| {
                    if i >= 4 {
                        return true;
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    while r.load(Ordering::SeqCst) < 4 {
                        if std::time::Instant::now() > deadline {
                            return false;
                        }
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    true
                },
                0..8u64,
            )
            .unwrap(),
        )
        .unwrap();
    assert!(
        met.iter().all(|&m| m),
        "four items never ran at once: {met:?}"
    );
}

/// Waits (up to 10 s) until `flag` is set; whether it was.
fn waited_for(flag: &AtomicBool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !flag.load(Ordering::SeqCst) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    true
}

/// Maps `input` (made from a flag that the first item to run sets) on two workers; the
/// results, which say whether the input found the flag set where it waited for it.
fn map_flagged<I>(input: impl FnOnce(Arc<AtomicBool>) -> I) -> Vec<bool>
where
    I: IntoIterator<Item = bool>,
{
    let h = Handler::new("threads://2").unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let input = input(ran.clone());
    let futures = h
        .map(
            move |ok: bool| {
                ran.store(true, Ordering::SeqCst);
                ok
            },
            input,
        )
        .unwrap();
    h.gather(futures).unwrap()
}

#[test]
fn a_streaming_input_has_each_item_started_as_soon_as_it_is_pulled() {
    // An input of unknown length (a channel, a listing) may block between items: the second
    // item is only made once the first one runs, which it must without waiting for more.
    let out = map_flagged(|first_ran| {
        let mut n = 0u64;
        std::iter::from_fn(move || {
            n += 1;
            match n {
                1 => Some(true),
                2 => Some(waited_for(&first_ran)),
                _ => None,
            }
        })
    });
    assert_eq!(out, [true, true], "the first item waited for the second");
}

#[test]
fn items_slow_to_make_start_before_their_chunk_is_full() {
    // A known-length input whose items take a while to make (50 µs each here): the first
    // ones are handed to the pool long before 64 are made.
    let out = map_flagged(|first_ran| {
        (0..40u64).map(move |i| {
            if i == 30 {
                return waited_for(&first_ran);
            }
            std::thread::sleep(Duration::from_micros(50));
            true
        })
    });
    assert!(
        out.iter().all(|&ok| ok),
        "the first item waited for item 30"
    );
}

#[test]
fn cancelled_futures_do_not_run() {
    let h = Handler::new("threads://1").unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let blocker = h
        .submit(move || {
            let _ = rx.recv();
        })
        .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let f = h.submit(move || r.store(true, Ordering::SeqCst)).unwrap();
    assert!(f.cancel());
    tx.send(()).unwrap();
    blocker.wait().unwrap();
    assert!(matches!(
        f.wait(),
        Err(HandlerError::Cancelled { index: None })
    ));
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn compute_map_runs_a_task_per_item_as_one_graph() {
    use brisk_graph::{Delayed, TaskSpec};
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = std::sync::Arc::clone(&runs);
    let spec = TaskSpec::new("cube").pure().captures_covered_by_args();
    let cube = move |x: u64| -> Delayed<u64> {
        let r = std::sync::Arc::clone(&r);
        spec.call(
            move |x: u64| {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                x * x * x
            },
            (x,),
        )
    };
    for address in ["sync", "threads://2"] {
        runs.store(0, std::sync::atomic::Ordering::SeqCst);
        let h = brisk_exec::Handler::new(address).unwrap();
        let got = h.compute_map(&cube, [3u64, 1, 3, 2]).unwrap();
        assert_eq!(got, vec![27, 1, 27, 8]);
        // Equal items are one task.
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
        let many = h.batched_compute_map(&cube, 0..1000u64, 64).unwrap();
        assert_eq!(many.len(), 1000);
        assert_eq!(many[999], 999 * 999 * 999);
        assert!(matches!(
            h.batched_compute_map(&cube, 0..3u64, 0),
            Err(brisk_exec::HandlerError::ZeroBatchSize)
        ));
    }
    // A failing task names its key.
    let bad = TaskSpec::new("bad").pure().captures_covered_by_args();
    let h = brisk_exec::Handler::new("threads://2").unwrap();
    let err = h
        .compute_map(
            |x: u64| {
                bad.try_call(
                    |x: u64| -> Result<u64, String> { Err(format!("no {x}")) },
                    (x,),
                )
            },
            [5u64],
        )
        .unwrap_err();
    assert!(brisk_graph::chain(&err).contains("no 5"), "{err}");
    assert!(err.to_string().contains("bad/"), "{err}");
}

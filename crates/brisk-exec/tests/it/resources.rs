//! Resources: opened once per compute before the first task that needs them, closed after
//! the last, left as found; shared by concurrent and nested computes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{BoxError, Delayed, Executor, Resource, ResourceAction, TaskSpec, chain};

/// A resource that logs every event and can be told to fail.
#[derive(Default)]
struct Logged {
    name: &'static str,
    open: AtomicBool,
    log: Mutex<Vec<String>>,
    fail_open: AtomicBool,
    fail_close: AtomicBool,
    panic_open: AtomicBool,
    panic_close: AtomicBool,
    reads: AtomicUsize,
}

impl Logged {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            ..Self::default()
        })
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    /// A chunk read: fails if the resource is closed (as a closed file would).
    fn read(&self, i: u64) -> Result<u64, BoxError> {
        if !self.open.load(Ordering::SeqCst) {
            return Err(format!("{} is closed", self.name).into());
        }
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(i)
    }
}

impl Resource for Logged {
    fn name(&self) -> String {
        self.name.into()
    }
    fn open(&self) -> Result<(), BoxError> {
        assert!(!self.panic_open.load(Ordering::SeqCst), "open went wrong");
        if self.fail_open.load(Ordering::SeqCst) {
            self.log.lock().unwrap().push("open-failed".into());
            return Err("no such file".into());
        }
        self.log.lock().unwrap().push("open".into());
        self.open.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn close(&self) -> Result<(), BoxError> {
        self.log.lock().unwrap().push("close".into());
        self.open.store(false, Ordering::SeqCst);
        assert!(!self.panic_close.load(Ordering::SeqCst), "close went wrong");
        if self.fail_close.load(Ordering::SeqCst) {
            return Err("flush failed".into());
        }
        Ok(())
    }
    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
}

/// `n` chunk reads over `r`, summed.
fn chunks(r: &Arc<Logged>, n: u64, fail_at: Option<u64>) -> Delayed<u64> {
    let spec = TaskSpec::new("read").pure().captures_covered_by_args();
    let parts: Delayed<Vec<u64>> = (0..n)
        .map(|i| {
            let r2 = Arc::clone(r);
            spec.try_call(
                move |i: u64| -> Result<u64, BoxError> {
                    if Some(i) == fail_at {
                        return Err(format!("chunk {i} is corrupt").into());
                    }
                    r2.read(i)
                },
                (i,),
            )
            .requiring(Arc::clone(r) as Arc<dyn Resource>)
        })
        .collect();
    TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

fn executors() -> Vec<Box<dyn Executor>> {
    vec![
        Box::new(SequentialExecutor),
        Box::new(ThreadedExecutor::new(4).unwrap()),
    ]
}

#[test]
fn a_closed_resource_is_opened_once_and_closed() {
    for e in executors() {
        let r = Logged::new("data.npy");
        let x = chunks(&r, 100, None);
        assert!(r.log().is_empty(), "building is lazy");
        assert_eq!(x.compute_with(e.as_ref()).unwrap(), 4950);
        assert_eq!(r.log(), ["open", "close"], "100 chunks, one open");
        assert!(!r.is_open(), "left closed, as found");
        assert_eq!(r.reads.load(Ordering::SeqCst), 100);
        // Two computes: two openings.
        x.compute_with(e.as_ref()).unwrap();
        assert_eq!(r.log(), ["open", "close", "open", "close"]);
    }
}

#[test]
fn an_open_resource_is_used_and_left_open() {
    for e in executors() {
        let r = Logged::new("data.npy");
        r.open().unwrap();
        r.log.lock().unwrap().clear();
        assert_eq!(chunks(&r, 10, None).compute_with(e.as_ref()).unwrap(), 45);
        assert!(r.log().is_empty());
        assert!(r.is_open());
    }
}

#[test]
fn failures_close_what_they_opened_and_keep_their_error() {
    for e in executors() {
        // A chunk fails: closed anyway, and the chunk's error is the compute's.
        let r = Logged::new("data.npy");
        let err = chunks(&r, 20, Some(7))
            .compute_with(e.as_ref())
            .unwrap_err();
        assert!(
            chain(&err).contains("chunk 7 is corrupt"),
            "{}",
            chain(&err)
        );
        assert_eq!(r.log(), ["open", "close"]);
        // Opening fails: that error, naming the resource; nothing read, nothing closed.
        let r = Logged::new("missing.npy");
        r.fail_open.store(true, Ordering::SeqCst);
        let err = chunks(&r, 20, None).compute_with(e.as_ref()).unwrap_err();
        match &err {
            brisk_graph::Error::Resource {
                resource, action, ..
            } => {
                assert_eq!(
                    (resource.as_str(), *action),
                    ("missing.npy", ResourceAction::Open)
                );
            }
            other => panic!("unexpected {other}"),
        }
        assert!(chain(&err).contains("no such file"));
        assert_eq!(r.log(), ["open-failed"]);
        assert_eq!(r.reads.load(Ordering::SeqCst), 0);
        // Closing fails after success: the close error, the result discarded.
        let r = Logged::new("data.npy");
        r.fail_close.store(true, Ordering::SeqCst);
        let err = chunks(&r, 5, None).compute_with(e.as_ref()).unwrap_err();
        assert!(
            matches!(
                &err,
                brisk_graph::Error::Resource {
                    action: ResourceAction::Close,
                    ..
                }
            ),
            "{err}"
        );
        assert!(chain(&err).contains("flush failed"));
        // Closing fails after a task failed: the task's error is never swallowed.
        let r = Logged::new("data.npy");
        r.fail_close.store(true, Ordering::SeqCst);
        let err = chunks(&r, 5, Some(2)).compute_with(e.as_ref()).unwrap_err();
        assert!(
            chain(&err).contains("chunk 2 is corrupt"),
            "{}",
            chain(&err)
        );
    }
}

#[test]
fn values_over_two_resources_open_both() {
    for e in executors() {
        let (a, b) = (Logged::new("a.npy"), Logged::new("b.npy"));
        let both = TaskSpec::new("add").call(
            |x: u64, y: u64| x + y,
            (chunks(&a, 4, None), chunks(&b, 3, None)),
        );
        assert_eq!(both.compute_with(e.as_ref()).unwrap(), 6 + 3);
        assert_eq!(a.log(), ["open", "close"]);
        assert_eq!(b.log(), ["open", "close"]);
    }
}

#[test]
fn concurrent_computes_share_one_opening() {
    let exec = ThreadedExecutor::new(2).unwrap();
    for round in 0..1000 {
        let r = Logged::new("shared.npy");
        // Chunk 0 of each compute waits for the other compute's chunk 0: both computes are
        // certainly running (holding the resource) at the same time.
        let meet = Arc::new(std::sync::Barrier::new(2));
        let spec = TaskSpec::new("read").pure().captures_covered_by_args();
        let parts: Delayed<Vec<u64>> = (0..8u64)
            .map(|i| {
                let (r2, meet) = (Arc::clone(&r), Arc::clone(&meet));
                spec.try_call(
                    move |i: u64| -> Result<u64, BoxError> {
                        if i == 0 {
                            meet.wait();
                        }
                        r2.read(i)
                    },
                    (i,),
                )
                .requiring(Arc::clone(&r) as Arc<dyn Resource>)
            })
            .collect();
        let x = TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,));
        let results: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|t| {
                    let (x, exec) = (&x, &exec);
                    s.spawn(move || {
                        if t == 0 {
                            x.compute_with(exec).unwrap()
                        } else {
                            x.compute_with(&SequentialExecutor).unwrap()
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results, [28, 28], "round {round}");
        assert_eq!(r.log(), ["open", "close"], "round {round}");
        assert!(!r.is_open());
    }
}

#[test]
fn multi_output_computes_and_panics_open_once_and_close() {
    for e in executors() {
        let r = Logged::new("data.npy");
        let (a, b) = (chunks(&r, 5, None), chunks(&r, 9, None));
        let out = brisk_graph::ComputeOptions::new()
            .run(e.as_ref(), [a.erase(), b.erase()])
            .unwrap();
        assert_eq!((out.get(&a).unwrap(), out.get(&b).unwrap()), (10, 36));
        assert_eq!(r.log(), ["open", "close"]);
        // A panicking chunk: closed anyway, the panic is the error.
        let r = Logged::new("data.npy");
        let p = TaskSpec::new("boom")
            .call(
                |x: u64| -> u64 {
                    if x == 1 {
                        panic!("chunk reader crashed")
                    } else {
                        x
                    }
                },
                (1u64,),
            )
            .requiring(Arc::clone(&r) as Arc<dyn Resource>);
        let err = p.compute_with(e.as_ref()).unwrap_err();
        assert!(chain(&err).contains("chunk reader crashed"), "{err}");
        assert_eq!(r.log(), ["open", "close"]);
    }
}

#[test]
fn a_nested_compute_does_not_reopen() {
    for e in executors() {
        let r = Logged::new("data.npy");
        let inner = chunks(&r, 4, None);
        let r2 = Arc::clone(&r);
        let outer = TaskSpec::new("outer")
            .call(
                move |k: u64| -> u64 {
                    // A task that computes another value over the same resource.
                    let v = inner.compute_with(&SequentialExecutor).unwrap();
                    v + r2.read(k).unwrap()
                },
                (1u64,),
            )
            .requiring(Arc::clone(&r) as Arc<dyn Resource>);
        assert_eq!(outer.compute_with(e.as_ref()).unwrap(), 7);
        assert_eq!(r.log(), ["open", "close"]);
    }
}

#[test]
fn panicking_open_and_close_are_errors_naming_the_resource_never_panics() {
    for e in executors() {
        // close panics after a task failed: the task's error is the compute's.
        let r = Logged::new("data.npy");
        r.panic_close.store(true, Ordering::SeqCst);
        let err = chunks(&r, 20, Some(7))
            .compute_with(e.as_ref())
            .unwrap_err();
        assert!(
            chain(&err).contains("chunk 7 is corrupt"),
            "{}",
            chain(&err)
        );
        // close panics after success: an error naming the resource and the panic.
        let err = chunks(&r, 20, None).compute_with(e.as_ref()).unwrap_err();
        match &err {
            brisk_graph::Error::Resource {
                resource, action, ..
            } => {
                assert_eq!(resource, "data.npy");
                assert_eq!(*action, ResourceAction::Close);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(chain(&err).contains("close went wrong"), "{}", chain(&err));
        // open panics: an error, and the next compute (open fixed) runs.
        let r = Logged::new("data.npy");
        r.panic_open.store(true, Ordering::SeqCst);
        let err = chunks(&r, 20, None).compute_with(e.as_ref()).unwrap_err();
        assert!(chain(&err).contains("open went wrong"), "{}", chain(&err));
        r.panic_open.store(false, Ordering::SeqCst);
        assert_eq!(chunks(&r, 20, None).compute_with(e.as_ref()).unwrap(), 190);
    }
}

/// A hook that panics in one event.
struct PanicIn(&'static str);

impl brisk_graph::Hooks for PanicIn {
    fn on_start(&self, _: &brisk_graph::Graph) {
        assert_ne!(self.0, "on_start", "hook broke");
    }
    fn on_task_start(&self, _: &brisk_graph::Graph, _: brisk_graph::NodeId, _: usize) {
        assert_ne!(self.0, "on_task_start", "hook broke");
    }
    fn on_finish(&self, _: &brisk_graph::Graph, _: Option<&brisk_graph::Error>) {
        assert_ne!(self.0, "on_finish", "hook broke");
    }
}

#[test]
fn a_panicking_hook_is_an_error_and_resources_are_still_closed() {
    for e in executors() {
        for event in ["on_start", "on_task_start", "on_finish"] {
            let r = Logged::new("data.npy");
            let opts = brisk_graph::ComputeOptions::new().hook(Arc::new(PanicIn(event)));
            let err = chunks(&r, 20, None)
                .compute_with_options(e.as_ref(), &opts)
                .unwrap_err();
            assert!(
                chain(&err).contains("hook broke"),
                "{event}: {}",
                chain(&err)
            );
            assert!(!r.is_open(), "{event}: left open");
        }
    }
}

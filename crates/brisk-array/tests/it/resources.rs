//! Arrays bound to resources: every derived array carries the requirement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use brisk_array::{Array, ChunkGrid};
use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{BoxError, Delayed, Resource, TaskSpec};
use ndarray::{ArrayD, IxDyn};

#[derive(Default)]
struct Logged {
    name: String,
    open: AtomicBool,
    log: Mutex<Vec<&'static str>>,
}

impl Resource for Logged {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn open(&self) -> Result<(), BoxError> {
        self.log.lock().unwrap().push("open");
        self.open.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn close(&self) -> Result<(), BoxError> {
        self.log.lock().unwrap().push("close");
        self.open.store(false, Ordering::SeqCst);
        Ok(())
    }
    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
}

/// A 40×30 array in 10×10 chunks whose chunk reads fail unless `r` is open; bound to `r`.
fn over(r: &Arc<Logged>, fill: f64) -> Array<f64> {
    let grid = ChunkGrid::regular(&[40, 30], &[10, 10]).unwrap();
    let spec = TaskSpec::new(format!("read-{}", r.name));
    let blocks: Vec<Delayed<ArrayD<f64>>> = (0..grid.num_blocks())
        .map(|i| {
            let shape = grid.block_shape(&grid.block_coords(i));
            let r = Arc::clone(r);
            spec.try_call(
                move || -> Result<ArrayD<f64>, BoxError> {
                    if !r.is_open() {
                        return Err(format!("{} is closed", r.name).into());
                    }
                    Ok(ArrayD::from_elem(IxDyn(&shape), fill))
                },
                (),
            )
        })
        .collect();
    Array::from_blocks(grid, blocks)
        .unwrap()
        .requiring(Arc::clone(r) as Arc<dyn Resource>)
}

fn logged(name: &str) -> Arc<Logged> {
    Arc::new(Logged {
        name: name.into(),
        ..Logged::default()
    })
}

#[test]
fn derived_arrays_keep_the_guard_and_building_opens_nothing() {
    let e = ThreadedExecutor::new(2).unwrap();
    let r = logged("a.npy");
    let x = over(&r, 2.0);
    let derived = [
        x.slice(&[
            ndarray::Slice::new(3, Some(37), 2),
            ndarray::Slice::from(..),
        ])
        .unwrap(),
        (&x * 3.0 + 1.0).sqrt(),
        x.rechunk(&[20, 15]).unwrap(),
        x.transpose().unwrap(),
    ];
    let m = x.powi(2).mean(0);
    assert!(r.log.lock().unwrap().is_empty(), "building is lazy");
    for (i, d) in derived.iter().enumerate() {
        r.log.lock().unwrap().clear();
        assert!(d.compute_with(&e).is_ok(), "derived {i}");
        assert_eq!(*r.log.lock().unwrap(), ["open", "close"], "derived {i}");
    }
    r.log.lock().unwrap().clear();
    assert!(
        m.compute_with(&SequentialExecutor)
            .unwrap()
            .iter()
            .all(|&v| v == 4.0)
    );
    assert_eq!(*r.log.lock().unwrap(), ["open", "close"]);
    // Without the guard, the same reads fail with a clear error.
    let unguarded = Array::from_blocks(
        ChunkGrid::regular(&[10], &[10]).unwrap(),
        vec![TaskSpec::new("read").try_call(
            {
                let r = Arc::clone(&r);
                move || -> Result<ArrayD<f64>, BoxError> {
                    if r.is_open() {
                        Ok(ArrayD::zeros(IxDyn(&[10])))
                    } else {
                        Err("a.npy is closed".into())
                    }
                }
            },
            (),
        )],
    )
    .unwrap();
    let err = unguarded.compute_with(&e).unwrap_err();
    assert!(
        brisk_graph::chain(&err).contains("a.npy is closed"),
        "{err}"
    );
}

#[test]
fn combining_arrays_over_two_resources_opens_both() {
    let (ra, rb) = (logged("a.npy"), logged("b.npy"));
    let (a, b) = (over(&ra, 1.0), over(&rb, 2.0));
    let e = ThreadedExecutor::new(2).unwrap();
    let cat = Array::concatenate(&[a.clone(), b.clone()], 0).unwrap();
    assert_eq!(
        cat.sum(brisk_array::Axes::all()).compute_with(&e).unwrap()[[]],
        1200.0 + 2400.0
    );
    assert_eq!(*ra.log.lock().unwrap(), ["open", "close"]);
    assert_eq!(*rb.log.lock().unwrap(), ["open", "close"]);
    let sum = (&a + &b).sum(brisk_array::Axes::all());
    assert_eq!(sum.compute_with(&e).unwrap()[[]], 3600.0);
    assert_eq!(*ra.log.lock().unwrap(), ["open", "close", "open", "close"]);
    // Binding a bound array to another resource adds the requirement.
    let both = a.requiring(Arc::clone(&rb) as Arc<dyn Resource>);
    both.compute_with(&e).unwrap();
    assert_eq!(rb.log.lock().unwrap().len(), 6);
}

#[test]
fn the_same_chunks_bound_to_two_resources_need_both() {
    // One set of chunk tasks (equal keys), bound to two different resources.
    let grid = ChunkGrid::regular(&[20, 10], &[10, 10]).unwrap();
    let spec = TaskSpec::new("shared-read").pure();
    let blocks: Vec<Delayed<ArrayD<f64>>> = (0..grid.num_blocks())
        .map(|i| {
            let shape = grid.block_shape(&grid.block_coords(i));
            spec.call(|s: Vec<usize>| ArrayD::from_elem(IxDyn(&s), 1.5), (shape,))
        })
        .collect();
    let plain = Array::from_blocks(grid, blocks).unwrap();
    let (ra, rb) = (logged("a.npy"), logged("b.npy"));
    let a = plain.requiring(Arc::clone(&ra) as Arc<dyn Resource>);
    let b = plain.requiring(Arc::clone(&rb) as Arc<dyn Resource>);
    for e in [
        Box::new(SequentialExecutor) as Box<dyn brisk_graph::Executor>,
        Box::new(ThreadedExecutor::new(2).unwrap()),
    ] {
        for derived in [&a + &b, (&a * 2.0) - &b, &b + &a] {
            ra.log.lock().unwrap().clear();
            rb.log.lock().unwrap().clear();
            derived.sum(0).compute_with(e.as_ref()).unwrap();
            assert_eq!(*ra.log.lock().unwrap(), ["open", "close"], "a not opened");
            assert_eq!(*rb.log.lock().unwrap(), ["open", "close"], "b not opened");
        }
    }
}

//! Results equal ndarray's for every chunking; fusion; reductions; layout; errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use brisk_array::{Array, ArrayError, Axes};
use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_graph::{ComputeOptions, Executor, Graph, Hooks, TaskEnd};
use ndarray::{ArrayD, Axis, IxDyn, Slice, array, s};
use proptest::prelude::*;

fn exec() -> ThreadedExecutor {
    ThreadedExecutor::new(2).unwrap()
}

fn sample(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n).map(|i| ((i * 7919) % 101) as f64 - 50.0).collect(),
    )
    .unwrap()
}

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| (x - y).abs() <= 1e-9 * (1.0 + y.abs()))
}

#[test]
fn fused_elementwise_matches_ndarray_and_is_one_task_per_chunk() {
    let x = sample(&[30, 17]);
    let a = Array::from_ndarray(&x, &[7, 5]).unwrap();
    let y = (a.powi(2) + a.powi(3)) * 0.5 - &a / 3.0;
    let want = x.mapv(|v| (v.powi(2) + v.powi(3)) * 0.5 - v / 3.0);
    assert!(close(&y.compute_with(&exec()).unwrap(), &want));
    // 5 x 4 = 20 chunks: 20 literal blocks + 20 fused tasks, not a task per operation.
    let blocks = y.blocks().unwrap();
    assert_eq!(blocks.len(), 20);
    assert_eq!(Graph::new(blocks.iter()).len(), 40);
}

#[test]
fn a_full_array_is_one_task_per_block_shape_with_ragged_edges_filled() {
    // 3 x 3 blocks of 10 x 10, 10 x 3, 5 x 10 and 5 x 3.
    let a = Array::<f64>::full(&[25, 23], &[10, 10], 0.5).unwrap();
    let blocks = a.blocks().unwrap();
    let keys: Vec<_> = blocks.iter().map(|b| b.key().clone()).collect();
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), 4, "one key per block shape");
    assert_eq!(keys[0], keys[4]);
    assert_ne!(
        keys[0], keys[2],
        "a ragged column's blocks have their own shape"
    );
    assert_ne!(keys[2], keys[8]);
    assert_eq!(Graph::new(blocks.iter()).len(), 4);
    let got = a.compute_with(&exec()).unwrap();
    assert_eq!(got, ArrayD::from_elem(IxDyn(&[25, 23]), 0.5));
}

#[test]
fn broadcasting_follows_numpy_rules() {
    let m = sample(&[6, 4]);
    let row = array![1.0, 2.0, 3.0, 4.0].into_dyn();
    let col = array![[10.0], [20.0], [30.0], [40.0], [50.0], [60.0]].into_dyn();
    let a = Array::from_ndarray(&m, &[4, 3]).unwrap();
    let r = Array::from_ndarray(&row, &[2]).unwrap(); // other chunks: rechunked to match
    let c = Array::from_ndarray(&col, &[3, 1]).unwrap();
    let got = (&(&a + &r) * &c).compute_with(&SequentialExecutor).unwrap();
    let want = (&(&m + &row) * &col).into_dyn();
    assert!(close(&got, &want));
}

#[test]
fn shape_mismatches_are_errors_at_compute_not_panics() {
    let a = Array::<f64>::zeros(&[4, 3], &[2, 3]).unwrap();
    let b = Array::<f64>::zeros(&[4, 2], &[2, 2]).unwrap();
    let bad = (&a + &b).sqrt();
    assert!(matches!(
        bad.build_error(),
        Some(ArrayError::ShapeMismatch { .. })
    ));
    let err = bad.compute_with(&SequentialExecutor).unwrap_err();
    assert!(
        err.to_string().contains("[4, 3]") && err.to_string().contains("[4, 2]"),
        "{err}"
    );
    assert!(matches!(
        a.sum(5).compute_with(&SequentialExecutor),
        Err(ArrayError::AxisOutOfRange { axis: 5, .. })
    ));
}

#[test]
fn reductions_match_ndarray_along_every_axis_set() {
    let x = sample(&[9, 8, 7]);
    let a = Array::from_ndarray(&x, &[4, 3, 7])
        .unwrap()
        .with_split_every(2);
    let e = exec();
    for axes in [
        vec![0],
        vec![1],
        vec![2],
        vec![0, 2],
        vec![1, 2],
        vec![0, 1, 2],
    ] {
        let mut want_sum = x.clone();
        let mut want_max = x.clone();
        let mut n = 1.0;
        for &ax in axes.iter().rev() {
            n *= x.shape()[ax] as f64;
            want_sum = want_sum.sum_axis(Axis(ax));
            want_max = want_max.map_axis(Axis(ax), |l| l.iter().copied().fold(f64::MIN, f64::max));
        }
        let got = a.sum(axes.clone()).compute_with(&e).unwrap();
        assert!(close(&got, &want_sum), "sum {axes:?}");
        assert!(
            close(
                &a.mean(axes.clone()).compute_with(&e).unwrap(),
                &want_sum.mapv(|v| v / n)
            ),
            "mean {axes:?}"
        );
        assert!(
            close(&a.max(axes.clone()).compute_with(&e).unwrap(), &want_max),
            "max {axes:?}"
        );
    }
    // var / std against the two-pass formula.
    let got = a.var(1).compute_with(&e).unwrap();
    let want = x.var_axis(Axis(1), 0.0);
    assert!(close(&got, &want));
    let got = a.std(Axes::All).compute_with(&e).unwrap();
    let flat = ArrayD::from_shape_vec(IxDyn(&[x.len()]), x.iter().copied().collect()).unwrap();
    assert!((got[[]] - flat.std(0.0)).abs() < 1e-9);
    assert!(close(
        &a.min(Axes::All).compute_with(&e).unwrap(),
        &ArrayD::from_elem(IxDyn(&[]), -50.0)
    ));
}

#[test]
fn argmin_and_argmax_give_first_occurrences() {
    let x = array![
        [3.0f32, 9.0, 9.0, 1.0],
        [7.0, 1.0, 2.0, 8.0],
        [5.0, 5.0, 0.5, 8.0]
    ]
    .into_dyn();
    let a = Array::from_ndarray(&x, &[2, 3]).unwrap();
    let e = exec();
    assert_eq!(
        a.argmax(Some(1))
            .compute_with(&e)
            .unwrap()
            .into_raw_vec_and_offset()
            .0,
        vec![1, 3, 3]
    );
    assert_eq!(
        a.argmin(Some(0))
            .compute_with(&e)
            .unwrap()
            .into_raw_vec_and_offset()
            .0,
        vec![0, 1, 2, 0]
    );
    assert_eq!(a.argmin(None).compute_with(&e).unwrap()[[]], 10); // flat index of 0.5
    assert_eq!(a.argmax(None).compute_with(&e).unwrap()[[]], 1);
    assert!(matches!(
        a.argmax(Some(2)).compute_with(&e),
        Err(ArrayError::AxisOutOfRange { .. })
    ));
}

#[test]
fn f32_means_accumulate_in_f64() {
    // 2^24 + 1 is not representable in f32: a naive f32 running sum of ones stalls at 2^24.
    let n = (1 << 24) + 4096;
    let a = Array::<f32>::ones(&[n], &[1 << 20]).unwrap();
    assert_eq!(a.mean(0).compute_with(&exec()).unwrap()[[]], 1.0);
    assert_eq!(a.sum(0).compute_with(&exec()).unwrap()[[]], n as f32);
}

#[test]
fn slicing_with_steps_matches_ndarray() {
    let x = sample(&[23, 19]);
    let a = Array::from_ndarray(&x, &[5, 4]).unwrap();
    let cases: Vec<(Slice, Slice)> = vec![
        (Slice::new(2, Some(20), 3), Slice::new(0, None, 1)),
        (Slice::new(-7, None, 2), Slice::new(1, Some(-1), 5)),
        (Slice::new(4, Some(5), 1), Slice::new(18, None, 4)),
        (Slice::new(10, Some(3), 1), Slice::new(0, None, 1)), // empty
    ];
    for (s0, s1) in cases {
        let got = a
            .slice(&[s0, s1])
            .unwrap()
            .compute_with(&SequentialExecutor)
            .unwrap();
        let want = x.slice(s![s0, s1]).to_owned().into_dyn();
        assert_eq!(got, want, "{s0:?} {s1:?}");
    }
    assert!(matches!(
        a.slice(&[Slice::new(0, None, -1)]),
        Err(ArrayError::BadSlice(_))
    ));
    assert!(matches!(
        a.slice(&[Slice::from(..); 3]),
        Err(ArrayError::BadSlice(_))
    ));
}

#[test]
fn rechunk_concatenate_stack_transpose_match_ndarray() {
    let x = sample(&[11, 7]);
    let y = sample(&[5, 7]).mapv(|v| v * 2.0);
    let a = Array::from_ndarray(&x, &[3, 2]).unwrap();
    let b = Array::from_ndarray(&y, &[4, 7]).unwrap();
    let e = exec();
    let r = a.rechunk(&[4, 5]).unwrap();
    assert_eq!(r.chunks(), &[vec![4, 4, 3], vec![5, 2]]);
    assert_eq!(r.compute_with(&e).unwrap(), x);
    let c = Array::concatenate(&[a.clone(), b.clone()], 0).unwrap();
    assert_eq!(
        c.compute_with(&e).unwrap(),
        ndarray::concatenate(Axis(0), &[x.view(), y.view()]).unwrap()
    );
    let st = Array::stack(&[a.clone(), (&a + 1.0)], 1).unwrap();
    assert_eq!(st.shape(), vec![11, 2, 7]);
    assert_eq!(
        st.compute_with(&e).unwrap(),
        ndarray::stack(Axis(1), &[x.view(), x.mapv(|v| v + 1.0).view()]).unwrap()
    );
    assert_eq!(
        a.transpose().unwrap().compute_with(&e).unwrap(),
        x.t().to_owned()
    );
    assert!(matches!(
        Array::concatenate(&[a.clone(), b.transpose().unwrap()], 0),
        Err(ArrayError::ShapeMismatch { .. })
    ));
}

#[test]
fn random_values_do_not_depend_on_the_chunking() {
    let e = exec();
    let a = Array::<f64>::random_normal(&[40, 30], &[40, 30], 7, 2000.0, 1000.0)
        .unwrap()
        .compute_with(&e)
        .unwrap();
    let b = Array::<f64>::random_normal(&[40, 30], &[7, 4], 7, 2000.0, 1000.0)
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert_eq!(a, b);
    let c = Array::<f64>::random_normal(&[40, 30], &[7, 4], 8, 2000.0, 1000.0)
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert_ne!(a, c);
    // f32 draws share one counter per pair of elements: blocks starting at odd indices
    // (odd chunk widths, odd row lengths) must still see the same values.
    let whole = Array::<f32>::random_normal(&[41, 33], &[41, 33], 7, 0.0, 1.0)
        .unwrap()
        .compute_with(&e)
        .unwrap();
    for chunks in [[5, 7], [41, 1], [3, 33], [1, 2]] {
        let split = Array::<f32>::random_normal(&[41, 33], &chunks, 7, 0.0, 1.0)
            .unwrap()
            .compute_with(&e)
            .unwrap();
        assert_eq!(whole, split, "chunks {chunks:?}");
    }
    let sliced = Array::<f32>::random_normal(&[41, 33], &[41, 33], 7, 0.0, 1.0)
        .unwrap()
        .slice(&[Slice::new(3, Some(40), 1), Slice::new(5, Some(32), 3)])
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert_eq!(sliced, whole.slice(ndarray::s![3..40, 5..32;3]).into_dyn());
    let big = Array::<f64>::random_normal(&[200_000], &[50_000], 1, 2000.0, 1000.0).unwrap();
    let m = big.mean(0).compute_with(&e).unwrap()[[]];
    let s = big.std(0).compute_with(&e).unwrap()[[]];
    assert!(
        (m - 2000.0).abs() < 10.0 && (s - 1000.0).abs() < 10.0,
        "mean {m}, std {s}"
    );
    let u = Array::<f32>::random_uniform(&[10_000], &[999], 3, -1.0, 1.0)
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert!(u.iter().all(|&v| (-1.0..1.0).contains(&v)));
}

#[test]
fn random_normal_follows_the_normal_distribution() {
    // 2^20 standard normal draws per element type (f64 draws take 64 bits, f32 draws 32).
    let n = 1usize << 20;
    let z64 = Array::<f64>::random_normal(&[n], &[100_003], 11, 0.0, 1.0)
        .unwrap()
        .compute_with(&exec())
        .unwrap();
    assert_standard_normal(&z64.iter().copied().collect::<Vec<_>>(), "f64");
    let z32 = Array::<f32>::random_normal(&[n], &[100_003], 11, 0.0, 1.0)
        .unwrap()
        .compute_with(&exec())
        .unwrap();
    assert_standard_normal(
        &z32.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        "f32",
    );
}

/// Checks draws against Φ at fixed points (tolerance 5 standard errors of an empirical CDF),
/// both tails beyond the ziggurat's start (3.654), and the moments.
fn assert_standard_normal(z: &[f64], what: &str) {
    let nf = z.len() as f64;
    let phi = [
        (-3.0, 0.001_349_898),
        (-2.0, 0.022_750_132),
        (-1.0, 0.158_655_254),
        (-0.25, 0.401_293_674),
        (0.0, 0.5),
        (0.5, 0.691_462_461),
        (1.0, 0.841_344_746),
        (2.0, 0.977_249_868),
        (3.0, 0.998_650_102),
    ];
    for (x, p) in phi {
        let got = z.iter().filter(|&&v| v < x).count() as f64 / nf;
        let se = (p * (1.0 - p) / nf).sqrt();
        assert!(
            (got - p).abs() < 5.0 * se,
            "{what}: P(Z < {x}) = {got}, want {p}"
        );
    }
    // P(|Z| > 3.8) = 1.447e-4: 151.7 expected in 2^20, sd 12.3.
    let tails = z.iter().filter(|v| v.abs() > 3.8).count();
    assert!(
        (90..=215).contains(&tails),
        "{what}: {tails} draws beyond ±3.8"
    );
    let mean = z.iter().sum::<f64>() / nf;
    let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / nf;
    let skew = z.iter().map(|v| (v - mean).powi(3)).sum::<f64>() / nf / var.powf(1.5);
    let kurt = z.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / nf / (var * var);
    assert!(mean.abs() < 0.005, "{what}: mean {mean}");
    assert!((var - 1.0).abs() < 0.01, "{what}: variance {var}");
    assert!(skew.abs() < 0.02, "{what}: skewness {skew}");
    assert!((kurt - 3.0).abs() < 0.05, "{what}: kurtosis {kurt}");
}

#[test]
fn comparisons_astype_mapv_and_map_blocks() {
    let x = sample(&[6, 5]);
    let a = Array::from_ndarray(&x, &[4, 2]).unwrap();
    let e = exec();
    let pos = a.gt_scalar(0.0);
    assert_eq!(pos.compute_with(&e).unwrap(), x.mapv(|v| v > 0.0));
    let n = pos.astype::<u32>().sum(Axes::All).compute_with(&e).unwrap()[[]];
    assert_eq!(n as usize, x.iter().filter(|&&v| v > 0.0).count());
    assert_eq!(
        a.mapv(|v| v.abs() as i64).compute_with(&e).unwrap(),
        x.mapv(|v| v.abs() as i64)
    );
    let mb = a
        .map_blocks(|b, off| b.mapv(|v| v + off[0] as f64))
        .unwrap();
    let mut want = x.clone();
    for (i, mut row) in want.axis_iter_mut(Axis(0)).enumerate() {
        row += if i < 4 { 0.0 } else { 4.0 };
    }
    assert_eq!(mb.compute_with(&e).unwrap(), want);
    let bad = a
        .map_blocks(|b, _| b.slice(s![.., 0..1]).to_owned().into_dyn())
        .unwrap();
    let err = bad.compute_with(&e).unwrap_err();
    assert!(
        brisk_graph::chain(&err).contains("map_blocks"),
        "{}",
        brisk_graph::chain(&err)
    );
}

fn keys<T: brisk_array::Element>(a: &Array<T>) -> Vec<brisk_graph::Key> {
    a.blocks()
        .unwrap()
        .iter()
        .map(|d| d.key().clone())
        .collect()
}

#[test]
fn a_changed_input_block_changes_only_the_keys_of_what_reads_it() {
    let x = sample(&[40, 30]);
    let mut y = x.clone();
    y[[35, 25]] += 1.0; // in block (1, 1) of 20 × 15 chunks
    let (a, b) = (
        Array::from_ndarray(&x, &[20, 15]).unwrap(),
        Array::from_ndarray(&y, &[20, 15]).unwrap(),
    );
    // Fused elementwise chunks: only the block that holds the change.
    let (ka, kb) = (keys(&(a.powi(2) + &a * 3.0)), keys(&(b.powi(2) + &b * 3.0)));
    let same: Vec<bool> = ka.iter().zip(&kb).map(|(p, q)| p == q).collect();
    assert_eq!(same, [true, true, true, false]);
    // A reduction along axis 0: only the output block of the changed column range.
    let (ma, mb) = (keys(&a.abs().sqrt().sum(0)), keys(&b.abs().sqrt().sum(0)));
    assert_eq!(ma[0], mb[0]);
    assert_ne!(ma[1], mb[1]);
    // And the values under the keys that stayed are the same.
    let (va, vb) = (
        a.abs().sqrt().sum(0).compute_with(&exec()).unwrap(),
        b.abs().sqrt().sum(0).compute_with(&exec()).unwrap(),
    );
    assert_eq!(va.slice(s![..15]), vb.slice(s![..15]));
}

#[test]
fn keys_tell_operands_apart() {
    let (x, y) = (sample(&[40, 30]), sample(&[40, 30]).mapv(|v| v * 2.0 + 1.0));
    let a = Array::from_ndarray(&x, &[20, 15]).unwrap();
    let b = Array::from_ndarray(&y, &[20, 15]).unwrap();
    let streamed = Array::<f64>::random_normal(&[40, 30], &[20, 15], 3, 0.0, 1.0).unwrap();
    // Operands swapped, a streamed leaf against one read from its task, a leaf used twice.
    for (p, q) in [
        (&a - &b, &b - &a),
        (&streamed - &a, &a - &streamed),
        (&a - &a, &a - &b),
        (&a / &b, &b / &a),
    ] {
        let (kp, kq) = (keys(&p), keys(&q));
        assert!(kp.iter().zip(&kq).all(|(u, v)| u != v));
        assert_ne!(keys(&p.sum(Axes::All)), keys(&q.sum(Axes::All)));
    }
}

#[test]
fn equal_computations_share_keys() {
    let a = Array::<f64>::random_uniform(&[100, 100], &[50, 50], 1, 0.0, 1.0).unwrap();
    let b = Array::<f64>::random_uniform(&[100, 100], &[50, 50], 1, 0.0, 1.0).unwrap();
    let ka: Vec<_> = a
        .sqrt()
        .mean(0)
        .blocks()
        .unwrap()
        .iter()
        .map(|d| d.key().clone())
        .collect();
    let kb: Vec<_> = b
        .sqrt()
        .mean(0)
        .blocks()
        .unwrap()
        .iter()
        .map(|d| d.key().clone())
        .collect();
    assert_eq!(ka, kb);
    let kc: Vec<_> = b
        .exp()
        .mean(0)
        .blocks()
        .unwrap()
        .iter()
        .map(|d| d.key().clone())
        .collect();
    assert_ne!(ka, kc);
}

/// Counts chunk-sized results alive at once.
#[derive(Default)]
struct Live {
    now: AtomicUsize,
    peak: AtomicUsize,
}
impl Hooks for Live {
    fn on_task_end(&self, graph: &Graph, e: &TaskEnd<'_>) {
        if graph.node(e.id).name() == "random" {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
        }
    }
    fn on_release(&self, graph: &Graph, id: brisk_graph::NodeId) {
        if graph.node(id).name() == "random" {
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_chunked_reduction_streams() {
    // 256 chunks of 1 MiB each: the reduction holds a few at a time, not the array.
    let a = Array::<f64>::random_normal(&[256 * 128, 1024], &[128, 1024], 5, 0.0, 1.0).unwrap();
    let y = (a.powi(2) + a.powi(3)).mean(0);
    let live = Arc::new(Live::default());
    let opts = ComputeOptions::new().hook(live.clone());
    let out = y
        .compute_with_options(&exec() as &dyn Executor, &opts)
        .unwrap();
    assert_eq!(out.shape(), &[1024]);
    let peak = live.peak.load(Ordering::SeqCst);
    assert!(peak <= 8, "{peak} chunks alive at once");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_chunking_gives_the_same_values(
        rows in 1usize..20, cols in 1usize..20, cr in 1usize..8, cc in 1usize..8, ax in 0usize..2,
    ) {
        let x = sample(&[rows, cols]);
        let a = Array::from_ndarray(&x, &[cr, cc]).unwrap();
        let e = SequentialExecutor;
        let y = (&a * &a + 1.0).sum(ax).compute_with(&e).unwrap();
        prop_assert!(close(&y, &x.mapv(|v| v * v + 1.0).sum_axis(Axis(ax))));
        prop_assert_eq!(a.rechunk(&[cc, cr]).unwrap().compute_with(&e).unwrap(), x.clone());
        prop_assert_eq!(a.transpose().unwrap().compute_with(&e).unwrap(), x.t().to_owned());
    }
}

#[test]
fn streamed_blocks_are_read_inside_their_consumers_with_the_same_values() {
    let e = exec();
    // Random arrays are streamed: a reduction generates each block inside its partial task
    // (no block task in the graph), an expression may read the same leaf twice per tile.
    let x = Array::<f64>::random_normal(&[300, 70], &[64, 70], 5, 1.0, 3.0).unwrap();
    let shared = x.as_leaf().unwrap();
    let y = &x * &x + &x;
    let ys = &shared * &shared + &shared;
    assert_eq!(y.compute_with(&e).unwrap(), ys.compute_with(&e).unwrap());
    let m = y.mean(0);
    assert_eq!(
        m.compute_with(&e).unwrap(),
        ys.mean(0).compute_with(&e).unwrap()
    );
    let g = Graph::new(m.blocks().unwrap().iter());
    let names: Vec<String> = brisk_graph::NodeId::all(g.len())
        .map(|i| g.node(i).name().to_string())
        .collect();
    assert!(!names.iter().any(|n| n == "random"), "{names:?}");
    assert_eq!(names.iter().filter(|n| n.ends_with("-partial")).count(), 5);
    // Keys stay content-addressed: equal arrays give equal keys, other seeds other keys.
    let again = Array::<f64>::random_normal(&[300, 70], &[64, 70], 5, 1.0, 3.0).unwrap();
    let other = Array::<f64>::random_normal(&[300, 70], &[64, 70], 6, 1.0, 3.0).unwrap();
    let key = |a: &Array<f64>| a.mean(0).blocks().unwrap()[0].key().clone();
    assert_eq!(key(&x), key(&again));
    assert_ne!(key(&x), key(&other));
    // Distinct blocks of one streamed leaf get distinct partial keys.
    let partials: std::collections::HashSet<_> = brisk_graph::NodeId::all(g.len())
        .filter(|&i| g.node(i).name().ends_with("-partial"))
        .map(|i| g.key(i).clone())
        .collect();
    assert_eq!(partials.len(), 5);
}

#[test]
fn persist_computes_now_and_later_computes_reuse_the_held_blocks() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = Arc::new(AtomicUsize::new(0));
    let grid = brisk_array::ChunkGrid::regular(&[6, 4], &[3, 4]).unwrap();
    let spec = brisk_graph::TaskSpec::new("counted-block")
        .pure()
        .captures_covered_by_args(); // a run counter
    let blocks = (0..2u64)
        .map(|i| {
            let r = Arc::clone(&runs);
            spec.call(
                move |i: u64| {
                    r.fetch_add(1, Ordering::SeqCst);
                    ndarray::ArrayD::from_elem(vec![3, 4], i as f64 + 0.5)
                },
                (i,),
            )
        })
        .collect();
    let x = Array::from_blocks(grid, blocks).unwrap();
    let e = exec();
    let held = x.persist(&e).unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "persist computes every block once, now"
    );
    let a = (&held * 2.0).sum(0).compute_with(&e).unwrap();
    let b = held.mean(1).compute_with(&e).unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "later computes reran a held block"
    );
    assert_eq!(a, (&x * 2.0).sum(0).compute_with(&e).unwrap());
    assert_eq!(b, x.mean(1).compute_with(&e).unwrap());
    // Same keys as the lazy array: checkpoints of derived values stay valid.
    assert_eq!(
        held.mean(1).blocks().unwrap()[0].key(),
        x.mean(1).blocks().unwrap()[0].key()
    );
}

#[test]
fn from_shared_reads_the_same_values_without_copying_blocks_up_front() {
    use std::sync::Arc;
    let exec = brisk_exec::ThreadedExecutor::new(2).unwrap();
    // 3-d, edge chunks on every axis, and a source that is not in standard layout.
    let base = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[7, 5, 9]), |i| {
        (i[0] * 100 + i[1] * 10 + i[2]) as f64
    });
    for data in [
        base.clone(),
        base.clone()
            .reversed_axes()
            .as_standard_layout()
            .into_owned()
            .reversed_axes(),
    ] {
        let shared = Arc::new(data.clone());
        for chunks in [[7, 5, 9], [3, 2, 4], [1, 5, 2]] {
            let x = brisk_array::Array::from_shared(Arc::clone(&shared), &chunks).unwrap();
            assert!(x.recipe().is_none());
            assert_eq!(x.compute_with(&exec).unwrap(), data, "chunks {chunks:?}");
            // Streamed into fused expressions and reductions.
            let got = (&x * 2.0 + 1.0).sum(1).compute_with(&exec).unwrap();
            let want = (&data * 2.0 + 1.0).sum_axis(ndarray::Axis(1));
            assert_eq!(got, want, "chunks {chunks:?}");
        }
    }
}

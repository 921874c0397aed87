//! Recipes: an array rebuilt from its recipe (as a cluster worker does) has the same graph —
//! the same tasks at the same places — and the same values.

use brisk_array::recipe::{AnyArray, Recipe};
use brisk_array::{Array, Axes};
use brisk_exec::ThreadedExecutor;
use brisk_graph::{ComputeOptions, Graph};
use ndarray::ArrayD;

fn exec() -> ThreadedExecutor {
    ThreadedExecutor::new(2).unwrap()
}

/// Task names in BFS order from the outputs (what a worker's path lookup walks).
fn shape_of(outputs: Vec<brisk_graph::AnyDelayed>) -> Vec<String> {
    let g = Graph::new(outputs);
    let mut seen = vec![false; g.len()];
    let mut queue: std::collections::VecDeque<_> = g.outputs().iter().copied().collect();
    let mut names = Vec::new();
    while let Some(id) = queue.pop_front() {
        if std::mem::replace(&mut seen[id.index()], true) {
            continue;
        }
        names.push(format!(
            "{}:{}",
            g.node(id).name(),
            g.dependencies(id).len()
        ));
        queue.extend(g.dependencies(id).iter().copied());
    }
    names
}

fn rebuilt_f64(a: &Array<f64>) -> Array<f64> {
    let recipe = a.recipe().expect("the array has a recipe");
    // Through JSON, as it travels.
    let text = serde_json::to_string(recipe).unwrap();
    let back: Recipe = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, recipe);
    match back.build().unwrap() {
        AnyArray::F64(x) => x,
        other => panic!("rebuilt as {other:?}"),
    }
}

fn erased<T: brisk_array::Element>(a: &Array<T>) -> Vec<brisk_graph::AnyDelayed> {
    a.blocks().unwrap().iter().map(|b| b.erase()).collect()
}

#[test]
fn the_seed_pipeline_rebuilds_to_the_same_graph_and_values() {
    let x = Array::<f32>::random_normal(&[400, 300], &[100, 300], 42, 2000.0, 1000.0).unwrap();
    let m = (x.powi(2) + x.powi(3)).mean(0);
    let again = rebuilt_f64(&m);
    assert_eq!(shape_of(erased(&m)), shape_of(erased(&again)));
    let (a, b) = (
        m.compute_with(&exec()).unwrap(),
        again.compute_with(&exec()).unwrap(),
    );
    assert_eq!(a, b, "bit for bit");
}

#[test]
fn layout_reductions_and_scalars_rebuild_the_same() {
    let x = Array::<f64>::random_uniform(&[60, 40], &[25, 15], 7, -1.0, 1.0).unwrap();
    let y = Array::<f64>::full(&[60, 40], &[20, 20], 0.5).unwrap();
    let z = Array::concatenate(&[x.clone(), y.rechunk(&[25, 15]).unwrap()], 0).unwrap();
    let t = z.transpose().unwrap();
    let s = t.slice(&[ndarray::Slice::new(1, Some(-3), 2)]).unwrap();
    let r = (&s * 3.0 - 1.0).sqrt().abs().with_split_every(3);
    let out = Array::stack(&[r.var(Axes::All), r.std(1).sum(0), r.max(Axes::All)], 0).unwrap();
    let again = rebuilt_f64(&out);
    assert_eq!(shape_of(erased(&out)), shape_of(erased(&again)));
    let (a, b) = (
        out.compute_with(&exec()).unwrap(),
        again.compute_with(&exec()).unwrap(),
    );
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn a_compute_carries_its_origin_and_the_builder_gives_the_same_blocks() {
    let x = Array::<f64>::random_normal(&[50, 50], &[10, 25], 3, 0.0, 1.0).unwrap();
    let y = (&x + &x).min(1);
    let recipe = serde_json::to_string(y.recipe().unwrap()).unwrap();
    let origin = brisk_graph::remote::Origin::new("brisk_array::compute", recipe);
    let outputs = origin.build().unwrap();
    assert_eq!(shape_of(outputs.clone()), shape_of(erased(&y)));
    let computed = ComputeOptions::new().run(&exec(), outputs).unwrap();
    let first = computed
        .value(0)
        .unwrap()
        .downcast_ref::<ArrayD<f64>>()
        .unwrap()
        .clone();
    let whole = y.compute_with(&exec()).unwrap();
    assert_eq!(
        first.as_slice().unwrap(),
        &whole.as_slice().unwrap()[..first.len()]
    );
}

#[test]
fn closures_and_resources_leave_no_recipe() {
    let x = Array::<f64>::random_normal(&[20, 20], &[10, 10], 3, 0.0, 1.0).unwrap();
    assert!(x.recipe().is_some());
    assert!(
        x.mapv(|v| v * 2.0).recipe().is_none(),
        "closures cannot be described"
    );
    assert!((&x.mapv(|v| v * 2.0) + &x).recipe().is_none());
    let f = Array::<f64>::from_fn("f", &[4], &[2], |_, s| ArrayD::zeros(s)).unwrap();
    assert!(f.recipe().is_none());
    assert!(
        Array::<f64>::full(&[4], &[2], f64::NAN)
            .unwrap()
            .recipe()
            .is_none(),
        "JSON has no NaN"
    );
    assert!((&x + f64::INFINITY).recipe().is_none());
    assert!(x.argmax(Some(0)).recipe().is_none());
}

#[test]
fn a_recipe_naming_an_unknown_source_is_an_error_naming_it() {
    let r: Recipe = serde_json::from_value(serde_json::json!({
        "step": "source", "name": "nowhere::array", "dtype": "float32", "params": {}
    }))
    .unwrap();
    let err = r.build().unwrap_err().to_string();
    assert!(
        err.contains("nowhere::array") && err.contains("not registered"),
        "{err}"
    );
}

#[test]
fn arange_counts_from_zero_and_rebuilds() {
    let a = Array::<f64>::arange(10, 4).unwrap();
    assert_eq!(a.chunks(), &[vec![4, 4, 2]]);
    let v = a.compute_with(&exec()).unwrap();
    assert_eq!(
        v.iter().copied().collect::<Vec<_>>(),
        (0..10).map(f64::from).collect::<Vec<_>>()
    );
    let i = Array::<u8>::arange(300, 100)
        .unwrap()
        .compute_with(&exec())
        .unwrap();
    assert_eq!(i[[299]], 255, "saturates at the type's maximum");
    let again = rebuilt_f64(&(&a * 2.0));
    assert_eq!(
        again.compute_with(&exec()).unwrap(),
        (&a * 2.0).compute_with(&exec()).unwrap()
    );
}

/// Each block scaled by its offset along axis 0 plus one.
fn scale_by_offset(block: ArrayD<f64>, offset: &[usize]) -> ArrayD<f64> {
    block * (offset[0] as f64 + 1.0)
}
brisk_array::kernel!("brisk_array_tests::scale_by_offset", scale_by_offset, f64 => f64);

fn unregistered(block: ArrayD<f64>, _: &[usize]) -> ArrayD<f64> {
    block
}

#[test]
fn registered_kernels_rebuild_and_unregistered_ones_stay_local() {
    let x = Array::<f64>::random_normal(&[40, 10], &[10, 10], 5, 0.0, 1.0).unwrap();
    let y = x
        .map_kernel("brisk_array_tests::scale_by_offset", scale_by_offset)
        .unwrap()
        .sum(0);
    let again = rebuilt_f64(&y);
    assert_eq!(shape_of(erased(&y)), shape_of(erased(&again)));
    assert_eq!(
        again.compute_with(&exec()).unwrap(),
        y.compute_with(&exec()).unwrap()
    );
    // Same name, same inputs: same keys (the name stands for the function).
    let z = x
        .map_kernel("brisk_array_tests::scale_by_offset", scale_by_offset)
        .unwrap();
    assert_eq!(
        z.blocks().unwrap()[1].key(),
        x.map_kernel("brisk_array_tests::scale_by_offset", scale_by_offset)
            .unwrap()
            .blocks()
            .unwrap()[1]
            .key()
    );
    assert!(
        x.map_kernel("nowhere::identity", unregistered)
            .unwrap()
            .recipe()
            .is_none()
    );
    // A kernel returning the wrong shape is an error naming it.
    fn shrink(b: ArrayD<f64>, _: &[usize]) -> ArrayD<f64> {
        b.slice_move(ndarray::s![..1, ..]).into_dyn()
    }
    let err = x
        .map_kernel("t::shrink", shrink)
        .unwrap()
        .compute_with(&exec())
        .unwrap_err();
    assert!(
        brisk_graph::chain(&err).contains("kernel t::shrink"),
        "{err}"
    );
}

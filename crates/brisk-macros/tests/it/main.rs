//! Integration tests of `#[task]`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use brisk_exec::Compute;
use brisk_graph::{Graph, registry};
use brisk_macros::task;

/// Doubles.
#[task]
fn double(x: i64) -> i64 {
    2 * x
}

#[task(version = "2")]
fn double_v2(x: i64) -> i64 {
    2 * x
}

#[task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
fn describe(name: &str, n: usize) -> String {
    format!("{name}:{n}")
}

#[task]
fn total(values: &[u32]) -> u32 {
    values.iter().sum()
}

#[task]
fn checked_div(a: i64, b: i64) -> Result<i64, String> {
    if b == 0 {
        Err(format!("division of {a} by zero"))
    } else {
        Ok(a / b)
    }
}

#[task(save)]
fn saved(x: u32) -> Vec<u32> {
    vec![x; 3]
}

#[task(impure)]
fn noisy(x: u32) -> u32 {
    x
}

#[task]
fn zero_args() -> &'static str {
    "zero"
}

#[task]
#[allow(clippy::too_many_arguments, reason = "exercises the maximum arity")]
fn eight(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u32 {
    [a, b, c, d, e, f, g, h].iter().map(|&x| u32::from(x)).sum()
}

mod nested {
    use brisk_macros::task;

    #[task]
    pub(crate) fn double(x: i64) -> i64 {
        2 * x
    }
}

#[test]
fn calls_are_lazy_and_compute() {
    let d = double(21);
    assert_eq!(d.compute().unwrap(), 42);
    assert_eq!(add(double(1), 2).compute().unwrap(), 4);
    assert_eq!(describe(String::from("x"), 3).compute().unwrap(), "x:3");
    assert_eq!(total(vec![1, 2, 3]).compute().unwrap(), 6);
    assert_eq!(zero_args().compute().unwrap(), "zero");
    assert_eq!(eight(1, 2, 3, 4, 5, 6, 7, 8).compute().unwrap(), 36);
}

#[test]
fn keys_are_pure_and_merkle_chained() {
    assert_eq!(double(21).key(), double(21).key());
    assert_ne!(double(21).key(), double(22).key());
    // double(double(1)) and double(2) compute the same value but are different tasks.
    assert_ne!(double(double(1)).key(), double(2).key());
    assert_eq!(double(double(1)).key(), double(double(1)).key());
    assert!(double(1).key().to_string().starts_with("double/"));
    assert_eq!(double(1).name(), "it::double");
}

#[test]
fn version_and_path_enter_the_key() {
    assert_ne!(double(1).key().token(), double_v2(1).key().token());
    // Same bare name and same body in another module: a different task (its path differs).
    assert_ne!(double(1).key(), nested::double(1).key());
    assert_eq!(nested::double(1).key().name(), "double");
}

#[test]
fn impure_tasks_get_fresh_keys() {
    assert_ne!(noisy(1).key(), noisy(1).key());
}

#[test]
fn identical_subexpressions_run_once() {
    let a = double(5);
    let b = double(5);
    let g = Graph::new([&add(a, b)]);
    assert_eq!(g.len(), 2); // one `double`, one `add` (the literal 5 is captured)
}

#[test]
fn fallible_tasks_fail_with_their_key() {
    assert_eq!(checked_div(7, 2).compute().unwrap(), 3);
    let bad = checked_div(7, 0);
    let err = bad.compute().unwrap_err();
    let text = brisk_graph::chain(&err);
    assert!(text.contains(&bad.key().to_string()), "{text}");
    assert!(text.contains("it::checked_div"), "{text}");
    assert!(text.contains("division of 7 by zero"), "{text}");
}

#[test]
fn save_marks_checkpointed() {
    assert!(saved(1).is_checkpointed());
    assert!(!double(1).is_checkpointed());
    assert_eq!(saved(2).compute().unwrap(), vec![2, 2, 2]);
}

#[test]
fn tasks_are_registered_by_name() {
    let e = registry::lookup("it::double").expect("registered");
    assert_eq!(e.key_prefix, "double");
    assert_eq!(e.arity, 1);
    assert!(!e.checkpointed);
    assert!(registry::lookup("it::saved").unwrap().checkpointed);
    assert_eq!(
        registry::lookup("it::double_v2").unwrap().version,
        Some("2")
    );
    assert!(registry::lookup("it::nested::double").is_some());
    assert!(registry::lookup("it::no_such_task").is_none());
    assert!(registry::tasks().count() >= 10);
}

/// A handle that cannot travel (no serde).
#[derive(Clone)]
struct Opaque(std::sync::Arc<std::sync::Mutex<u8>>);

#[task]
fn opaque_value(h: Opaque) -> u8 {
    *h.0.lock().unwrap()
}

/// Decodes JSON text into a value of the type `spec` describes.
fn decode(spec: &brisk_graph::SaveSpec, json: &str) -> brisk_graph::Value {
    let mut de = serde_json::Deserializer::from_str(json);
    spec.deserialize(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))
        .unwrap()
}

#[test]
fn serde_tasks_can_be_invoked_by_name_with_decoded_arguments() {
    let inv = registry::lookup("it::checked_div")
        .unwrap()
        .invoker()
        .expect("i64 parameters and result are serde types");
    assert_eq!(inv.params().len(), 2);
    assert_eq!(inv.output().type_name(), "i64");
    let args: Vec<_> = inv
        .params()
        .iter()
        .zip(["84", "2"])
        .map(|(p, j)| decode(p, j))
        .collect();
    let out = inv.call(args).unwrap();
    assert_eq!(out.downcast_ref::<i64>(), Some(&42));
    // The result encodes back through the output codec.
    let text = serde_json::to_string(inv.output().serializable(&out).unwrap()).unwrap();
    assert_eq!(text, "42");
    // A task error comes back as an error, as in a local compute.
    let err = inv
        .call(vec![
            decode(&inv.params()[0], "1"),
            decode(&inv.params()[1], "0"),
        ])
        .unwrap_err();
    assert_eq!(err.to_string(), "division of 1 by zero");
    // Wrong arguments are errors naming the problem, never a panic.
    let err = inv.call(vec![decode(&inv.params()[0], "1")]).unwrap_err();
    assert!(
        err.to_string().contains("takes 2 argument(s), 1 given"),
        "{err}"
    );
    let wrong: brisk_graph::Value = std::sync::Arc::new(1u8);
    let err = inv.call(vec![wrong.clone(), wrong]).unwrap_err();
    assert!(
        err.to_string().contains("argument 0 is not a `i64`"),
        "{err}"
    );

    // Borrowed parameters take their owned form.
    let inv = registry::lookup("it::total").unwrap().invoker().unwrap();
    let out = inv
        .call(vec![decode(&inv.params()[0], "[1, 2, 3]")])
        .unwrap();
    assert_eq!(out.downcast_ref::<u32>(), Some(&6));
    let inv = registry::lookup("it::eight").unwrap().invoker().unwrap();
    let args = inv.params().iter().map(|p| decode(p, "2")).collect();
    assert_eq!(inv.call(args).unwrap().downcast_ref::<u32>(), Some(&16));

    // A result that cannot be deserialized (`&'static str`) makes the task local-only.
    assert!(
        registry::lookup("it::zero_args")
            .unwrap()
            .invoker()
            .is_none()
    );
}

// Three functions in separate modules so only their source differs: the same tokens laid out
// differently, with comments, must hash alike; a changed body must not.
mod src_a {
    #[brisk_macros::task]
    pub(crate) fn f(x: i64) -> i64 {
        x + 1
    }
}
#[rustfmt::skip]
mod src_b {
    /// A doc comment does not change the hash.
    #[brisk_macros::task]
    pub(crate) fn f(
        x: i64 // a comment does not either
    ) -> i64 {
        x
            +
            1
    }
}
mod src_c {
    #[brisk_macros::task]
    pub(crate) fn f(x: i64) -> i64 {
        x + 2
    }
}

#[test]
fn source_hash_ignores_formatting_but_not_edits() {
    let h = |name: &str| registry::lookup(name).unwrap().source_hash;
    assert_eq!(h("it::src_a::f"), h("it::src_b::f"));
    assert_ne!(h("it::src_a::f"), h("it::src_c::f"));
    assert_eq!(src_a::f(1).key().name(), "f");
}

#[test]
fn compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

fn dash(name: &str) -> String {
    format!("{name}-")
}

fn key_on_x(args: &brisk_graph::Args<'_>) -> Result<String, brisk_graph::BoxError> {
    Ok(args
        .named::<i64>("x")
        .ok_or("x is not a plain i64")?
        .to_string())
}

#[brisk_macros::task(key_prefix = dash, hasher = key_on_x, save)]
fn double_named(x: i64) -> i64 {
    2 * x
}

#[brisk_macros::task(key_prefix = "scaled-", exclude(handle))]
fn scaled(x: i64, handle: String) -> i64 {
    let _ = handle;
    3 * x
}

#[test]
fn key_options_shape_keys() {
    assert_eq!(double_named(21).storage_key(), "double_named-21");
    assert_eq!(double_named(21).compute().unwrap(), 42);
    let a = scaled(2, String::from("fd 3"));
    let b = scaled(2, String::from("fd 4"));
    assert_eq!(a.key(), b.key());
    assert!(a.key().to_string().starts_with("scaled-/"), "{}", a.key());
    assert_eq!(a.compute().unwrap(), 6);
}

/// The same task over helpers that differ: in `v1` and `v1_reformatted` the helper is the same
/// code (formatting and comments differ), in `v2` its body changed.
mod uses {
    pub(crate) mod v1 {
        #[brisk_macros::helper]
        pub(crate) fn scale(x: i64) -> i64 {
            x * 3
        }
        #[brisk_macros::task(uses = [scale])]
        pub(crate) fn calibrated(x: i64) -> i64 {
            scale(x) + 1
        }
        /// The same code as `v2::offset`, over another `scale`.
        #[brisk_macros::helper(uses = [scale])]
        pub(crate) fn offset(x: i64) -> i64 {
            scale(x) - 2
        }
    }
    pub(crate) mod v1_reformatted {
        #[brisk_macros::helper]
        pub(crate) fn scale(x: i64) -> i64 {
            // the same code
            x * 3
        }
        #[brisk_macros::task(uses = [scale])]
        pub(crate) fn calibrated(x: i64) -> i64 {
            scale(x) + 1
        }
    }
    pub(crate) mod v2 {
        #[brisk_macros::helper]
        pub(crate) fn scale(x: i64) -> i64 {
            x * 4
        }
        #[brisk_macros::task(uses = [scale])]
        pub(crate) fn calibrated(x: i64) -> i64 {
            scale(x) + 1
        }
        /// A helper that uses another: a change to `scale` reaches tasks using `offset`.
        #[brisk_macros::helper(uses = [scale])]
        pub(crate) fn offset(x: i64) -> i64 {
            scale(x) - 2
        }
        #[brisk_macros::task(uses = [offset])]
        pub(crate) fn shifted(x: i64) -> i64 {
            offset(x)
        }
    }
    pub(crate) mod unmarked {
        pub(crate) fn scale(x: i64) -> i64 {
            x * 3
        }
        #[brisk_macros::task]
        pub(crate) fn calibrated(x: i64) -> i64 {
            scale(x) + 1
        }
    }
}

#[test]
fn a_task_key_covers_the_helpers_it_declares() {
    use uses::{unmarked, v1, v1_reformatted, v2};
    // The key's source hash changes with a helper's code, not with its formatting.
    assert_eq!(
        v1::__brisk_task_source_calibrated(),
        v1_reformatted::__brisk_task_source_calibrated()
    );
    assert_ne!(
        v1::__brisk_task_source_calibrated(),
        v2::__brisk_task_source_calibrated()
    );
    // Without `uses`, a task covers only its own code (what the docs say a key covers).
    assert_ne!(
        unmarked::__brisk_task_source_calibrated(),
        v1::__brisk_task_source_calibrated()
    );
    // Helpers of helpers count: `offset` is the same code in both, `scale` is not.
    assert_ne!(v1::__brisk_source_offset(), v2::__brisk_source_offset());
    assert_eq!(v1::offset(2), 4);
    assert_eq!(
        v1::calibrated(2)
            .compute_with(&brisk_exec::SequentialExecutor)
            .unwrap(),
        7
    );
    assert_eq!(
        v2::shifted(2)
            .compute_with(&brisk_exec::SequentialExecutor)
            .unwrap(),
        6
    );
}

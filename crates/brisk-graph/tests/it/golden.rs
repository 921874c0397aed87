//! Golden keys: literal expectations for representative values and tasks. A failure here means
//! key derivation changed, which invalidates every stored checkpoint: that needs a
//! `TOKEN_FORMAT_VERSION` bump and a CHANGELOG entry marked **Breaking**.

use std::collections::BTreeMap;

use brisk_graph::{Delayed, Split, TaskSpec, Tokenize, lit};
use serde::Serialize;

#[derive(Serialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Serialize)]
enum Shape {
    Circle { r: f64 },
    Unit,
}

/// `(label, token hex)` of the representative values. `1i64` here and `double(21)` below were
/// also checked against an independent implementation of the documented encoding (Python
/// `blake3`; see ARCHITECTURE.md, "Key format").
pub(crate) fn value_tokens() -> Vec<(&'static str, String)> {
    let map: BTreeMap<&str, i64> = [("x", 1), ("y", 2)].into();
    let arr = ndarray::array![[1.0f64, 2.0], [3.0, 4.0]];
    vec![
        ("1i64", 1i64.token().unwrap().to_hex()),
        ("1u64", 1u64.token().unwrap().to_hex()),
        ("1.0f64", 1.0f64.token().unwrap().to_hex()),
        ("\"1\"", "1".token().unwrap().to_hex()),
        ("true", true.token().unwrap().to_hex()),
        ("()", ().token().unwrap().to_hex()),
        ("vec[1,2,3]i32", vec![1i32, 2, 3].token().unwrap().to_hex()),
        (
            "(1u8,\"a\",2.5f32)",
            (1u8, "a", 2.5f32).token().unwrap().to_hex(),
        ),
        ("map{x:1,y:2}", map.token().unwrap().to_hex()),
        ("Some(3i64)", Some(3i64).token().unwrap().to_hex()),
        (
            "Point{x:1,y:2}",
            Point { x: 1, y: 2 }.token().unwrap().to_hex(),
        ),
        (
            "Shape::Circle{r:0.5}",
            Shape::Circle { r: 0.5 }.token().unwrap().to_hex(),
        ),
        ("Shape::Unit", Shape::Unit.token().unwrap().to_hex()),
        ("-0.0f64", (-0.0f64).token().unwrap().to_hex()),
        ("array2f64", arr.token().unwrap().to_hex()),
    ]
}

/// `(label, key text)` of representative task keys.
pub(crate) fn task_keys() -> Vec<(&'static str, String)> {
    let double = TaskSpec::new("double").pure();
    let d21 = double.call(|x: i64| 2 * x, (21,));
    let dd = double.call(|x: i64| 2 * x, (d21.clone(),));
    let v2 = TaskSpec::new("double")
        .pure()
        .version("2")
        .call(|x: i64| 2 * x, (21,));
    let pair = TaskSpec::new("divmod")
        .pure()
        .call(|a: i64, b: i64| (a / b, a % b), (7, lit(2)));
    let (q, _) = pair.split();
    let all: Delayed<Vec<i64>> = [d21.clone(), dd.clone()].into_iter().collect();
    // The custom forms: an argument left out of the key, a custom prefix, a custom hasher.
    let scaled = TaskSpec::new("scale")
        .pure()
        .arg_names(&["x", "handle"])
        .exclude("handle");
    let sc = scaled.call(|x: i64, _h: String| 3 * x, (21, String::from("fd 7")));
    let dash = TaskSpec::new("double")
        .pure()
        .key_prefix_with(|name| format!("{name}-"))
        .arg_names(&["x"])
        .hasher(|a| Ok(a.named::<i64>("x").ok_or("x")?.to_string()));
    let dash21 = dash.call(|x: i64| 2 * x, (21,));
    vec![
        ("lit(21)", lit(21i64).key().to_string()),
        ("double(21)", d21.key().to_string()),
        ("double(double(21))", dd.key().to_string()),
        ("double@2(21)", v2.key().to_string()),
        ("divmod(7,lit(2))", pair.key().to_string()),
        ("divmod(..).0", q.key().to_string()),
        ("collect", all.key().to_string()),
        ("scale(21, excluded handle)", sc.key().to_string()),
        ("double-21 key", dash21.key().to_string()),
        ("double-21 storage key", dash21.storage_key()),
    ]
}

const GOLDEN_VALUES: &[(&str, &str)] = &[
    ("1i64", "3e66380dd227faf1c0c8c0bc931dc2db"),
    ("1u64", "d3a11eeaea0265492df1b46b9bd89901"),
    ("1.0f64", "2ccb96bf2ec603658897fa60d9019100"),
    (r#""1""#, "9be9a0450e64254449b330e91e2a58af"),
    ("true", "b24690090933d4e34cf739c386e06279"),
    ("()", "c54d066288d0f921f1c116e74bf0b2f5"),
    ("vec[1,2,3]i32", "6104600bd662b2981d96fd9fb0ddbea3"),
    (r#"(1u8,"a",2.5f32)"#, "2c96febc8841108f63a2e206ef646f65"),
    ("map{x:1,y:2}", "d7b3587f0ac7f2fd9f82bff1b3ea96e9"),
    ("Some(3i64)", "e9ec98d74e9b7889586baa7326f5acb3"),
    ("Point{x:1,y:2}", "b132cf1aee43e44368c6ea31f1721220"),
    ("Shape::Circle{r:0.5}", "ea46d294abeda617a86f4a8a137e28bb"),
    ("Shape::Unit", "1a291da62a12220a7691276db4b25246"),
    ("-0.0f64", "9b75c2214c3e98449a3950926c5703e4"),
    ("array2f64", "7bd3d2da3f17be00674033fb6b47403d"),
];

const GOLDEN_KEYS: &[(&str, &str)] = &[
    ("lit(21)", "lit/debf2ad02e16d4e53611e6398708e3c0"),
    ("double(21)", "double/43e0f2153410f39b8fdcad41483d5bc6"),
    (
        "double(double(21))",
        "double/f676774bc27bd6f40e03121c83d4f387",
    ),
    ("double@2(21)", "double/c8ec71d406f84474abecd85215b121ef"),
    (
        "divmod(7,lit(2))",
        "divmod/b4b03b4ca5dc67ffe70e88f20b0c6d4c",
    ),
    ("divmod(..).0", "divmod.0/cfa18bd763e748b02cf656f35ffb6eab"),
    ("collect", "collect/2a32eeecc06418f608b2c949cc7a4a66"),
    (
        "scale(21, excluded handle)",
        "scale/65d843a1ce2ad6e7066977838320900e",
    ),
    ("double-21 key", "double-/d8a514a0a8860714f6114a4162dc9e85"),
    ("double-21 storage key", "double-21"),
];

#[test]
fn value_tokens_are_pinned() {
    let got = value_tokens();
    assert_eq!(got.len(), GOLDEN_VALUES.len(), "{got:#?}");
    for ((label, hex), (glabel, ghex)) in got.iter().zip(GOLDEN_VALUES) {
        assert_eq!(label, glabel);
        assert_eq!(
            hex, ghex,
            "token of {label} changed: key derivation is a compatibility promise"
        );
    }
}

#[test]
fn task_keys_are_pinned() {
    let got = task_keys();
    assert_eq!(got.len(), GOLDEN_KEYS.len(), "{got:#?}");
    for ((label, key), (glabel, gkey)) in got.iter().zip(GOLDEN_KEYS) {
        assert_eq!(label, glabel);
        assert_eq!(
            key, gkey,
            "key of {label} changed: key derivation is a compatibility promise"
        );
    }
}

/// Prints the tokens for the cross-process test; run only by that test, in a child process.
#[test]
#[ignore = "run as a child process by keys_are_equal_across_processes"]
#[allow(clippy::print_stdout, reason = "the parent process reads these lines")]
fn print_keys_for_parent() {
    println!();
    for (label, hex) in value_tokens().into_iter().chain(task_keys()) {
        println!("KEY {label} {hex}");
    }
}

#[test]
fn keys_are_equal_across_processes() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "golden::print_keys_for_parent",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let child: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once("KEY ").map(|(_, rest)| rest))
        .map(str::to_owned)
        .collect();
    let here: Vec<String> = value_tokens()
        .into_iter()
        .chain(task_keys())
        .map(|(l, h)| format!("{l} {h}"))
        .collect();
    assert_eq!(child.len(), here.len(), "child printed: {text}");
    assert_eq!(child, here);
}

/// A spec keeps its identity's bytes from its first call: a spec changed after it made keys
/// (a version, a source hash, a key prefix) makes the keys of a spec built that way at once.
#[test]
fn a_spec_changed_after_its_first_call_keys_by_its_new_identity() {
    let f = |x: i64| 2 * x;
    let base = TaskSpec::new("double").pure();
    let before = base.call(f, (21,)).key().clone();
    let changed = [
        (
            base.clone().version("2"),
            TaskSpec::new("double").pure().version("2"),
        ),
        (
            base.clone().source_hash([7; 16]),
            TaskSpec::new("double").pure().source_hash([7; 16]),
        ),
        (
            base.clone().key_prefix("twice/x"),
            TaskSpec::new("double").pure().key_prefix("twice/x"),
        ),
    ];
    for (later, fresh) in changed {
        let k = later.call(f, (21,)).key().clone();
        assert_ne!(k, before, "{later:?}");
        assert_eq!(k, fresh.call(f, (21,)).key().clone(), "{later:?}");
    }
    let prefixed = base.key_prefix("twice/x").call(f, (21,));
    assert_eq!(
        prefixed.key().name(),
        "twice_x",
        "the key prefix is made key-safe"
    );
    assert_eq!(
        base_key_again(),
        before,
        "the first spec's keys did not change"
    );
}

fn base_key_again() -> brisk_graph::Key {
    TaskSpec::new("double")
        .pure()
        .call(|x: i64| 2 * x, (21,))
        .key()
        .clone()
}

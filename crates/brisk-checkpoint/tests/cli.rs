//! The `brisk-checkpoint` command on a directory and on an object-store URL.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::process::Command;

use brisk_checkpoint::{Storage, from_url};
use brisk_exec::SequentialExecutor;
use brisk_graph::TaskSpec;

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_brisk-checkpoint"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Three checkpoints in the store at `url`; returns their keys.
fn fill(url: &str) -> Vec<String> {
    let store = from_url(url).unwrap();
    let storage = Storage::from_arc(store);
    (1..=3i64)
        .map(|i| {
            let d = TaskSpec::new("series")
                .pure()
                .call(
                    |n: i64| (0..n).map(|k| k as f64 * 0.5).collect::<Vec<f64>>(),
                    (i,),
                )
                .checkpointed();
            d.compute_with_options(&SequentialExecutor, &storage.options())
                .unwrap();
            d.storage_key()
        })
        .collect()
}

fn exercise(url: &str, corrupt: impl Fn(&str)) {
    let keys = fill(url);
    let (ok, out) = cli(&["ls", url]);
    assert!(ok, "{out}");
    for k in &keys {
        assert!(out.contains(k.as_str()), "{k} not listed: {out}");
    }
    assert!(out.contains("3 entries") && out.contains("zstd"), "{out}");

    let (ok, out) = cli(&["show", url, &keys[2]]);
    assert!(ok, "{out}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown, serde_json::json!([0.0, 0.5, 1.0]));

    let (ok, out) = cli(&["verify", url]);
    assert!(ok && out.contains("3 entries checked, 0 failed"), "{out}");
    corrupt(&keys[1]);
    let (ok, out) = cli(&["verify", url]);
    assert!(!ok, "a corrupt entry verified: {out}");
    assert!(out.contains(&format!("FAIL {}", keys[1])), "{out}");

    let (ok, out) = cli(&["gc", url, "--corrupt", "--dry-run"]);
    assert!(ok && out.contains("1 entries to remove"), "{out}");
    let (ok, out) = cli(&["gc", url, "--corrupt"]);
    assert!(ok && out.contains(&format!("removed {}", keys[1])), "{out}");
    let (ok, out) = cli(&["verify", url]);
    assert!(ok && out.contains("2 entries checked, 0 failed"), "{out}");

    // Nothing is older than a day; everything is older than 0 s (after a moment).
    let (ok, out) = cli(&["gc", url, "--older-than", "1d"]);
    assert!(ok && out.contains("0 entries removed"), "{out}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (ok, out) = cli(&["gc", url, "--older-than", "0s"]);
    assert!(ok && out.contains("2 entries removed"), "{out}");
    assert!(from_url(url).unwrap().list("").unwrap().is_empty());

    let (ok, out) = cli(&["show", url, "series/none"]);
    assert!(!ok && out.contains("not stored"), "{out}");
    let (ok, out) = cli(&["gc", url, "--older-than", "3 weeks"]);
    assert!(!ok && out.contains("not an age"), "{out}");
}

#[test]
fn the_command_manages_a_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_owned();
    exercise(&url, |key| {
        let path = dir.path().join(key);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    });
}

#[test]
fn the_command_manages_an_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("objfile://{}", dir.path().display());
    let store = from_url(&url).unwrap();
    exercise(&url, |key| {
        let mut bytes = store.get(key).unwrap().unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        store.put(key, &bytes).unwrap();
    });
}

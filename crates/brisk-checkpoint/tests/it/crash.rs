//! A writer killed in the middle of a `put` never leaves a readable partial entry.

use brisk_checkpoint::{DirStore, Store};

const SIZE: usize = 8 << 20;

/// The value written under `k/<n>`: `SIZE` bytes of `n`.
fn entry(n: u8) -> Vec<u8> {
    vec![n; SIZE]
}

/// Run only as the child of `a_killed_writer_never_leaves_a_partial_entry`.
#[test]
#[ignore = "run as a child process by a_killed_writer_never_leaves_a_partial_entry"]
fn child_writes_forever() {
    let dir = std::env::var("BRISK_CRASH_DIR").expect("set by the parent test");
    let store = DirStore::new(dir).unwrap();
    for n in 0u64.. {
        let v = (n % 200) as u8;
        store.put(&format!("k/{}", n % 4), &entry(v)).unwrap();
    }
}

#[test]
fn a_killed_writer_never_leaves_a_partial_entry() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::child_writes_forever",
                "--ignored",
                "--nocapture",
            ])
            .env("BRISK_CRASH_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Once the child has written something, let it run into the middle of more writes.
        let probe = DirStore::new(dir.path()).unwrap();
        let t = std::time::Instant::now();
        while probe.list("").unwrap().len() < 2 && t.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(20 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let store = DirStore::new(dir.path()).unwrap();
        let keys = store.list("").unwrap();
        assert!(!keys.is_empty(), "the child wrote nothing in round {round}");
        for k in keys {
            let v = store.get(&k).unwrap().unwrap();
            assert_eq!(v.len(), SIZE, "{k} is partial");
            assert!(v.iter().all(|&b| b == v[0]), "{k} mixes two writes");
        }
        store.clean().unwrap();
    }
}

//! The directory store through its public API: keys never leave the root, writes are atomic,
//! and the temporary files of dead writers are removed by the next writer.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use brisk_store::{DirStore, Store, StoreError, is_temp, temp_name};

/// The name a writer of this host with process id `pid` gives a temporary file for `name`.
fn temp_of_pid(name: &str, pid: u32) -> String {
    let ours = temp_name(name);
    let (head, _n) = ours.rsplit_once('-').unwrap();
    let (host_part, _pid) = head.rsplit_once('-').unwrap();
    format!("{host_part}-{pid}-0")
}

#[test]
fn a_rerun_removes_the_temporary_files_of_killed_writers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("double")).unwrap();
    // A writer killed mid-put (a pid that cannot be running) and a live one (this process).
    let dead = dir
        .path()
        .join("double")
        .join(temp_of_pid("3d00", u32::MAX - 1));
    let live = dir.path().join("double").join(temp_name("3d01"));
    std::fs::write(&dead, b"half an entry").unwrap();
    std::fs::write(&live, b"being written").unwrap();
    assert!(is_temp(&dead.file_name().unwrap().to_string_lossy()));

    let store = DirStore::new(dir.path()).unwrap();
    assert_eq!(
        store.list("").unwrap(),
        Vec::<String>::new(),
        "temp files are hidden"
    );
    store.put("double/abcd", b"42").unwrap();
    assert_eq!(
        store.get("double/abcd").unwrap().as_deref(),
        Some(&b"42"[..])
    );
    if cfg!(target_os = "linux") {
        assert!(!dead.exists(), "the dead writer's temporary file is left");
    }
    assert!(live.exists(), "a live writer's temporary file was removed");
    // `clean` takes all of them (for when no writer runs).
    assert_eq!(store.clean().unwrap(), 1);
    assert!(!live.exists());
}

#[test]
fn keys_that_leave_the_root_touch_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = DirStore::new(t.path().join("store")).unwrap();
    std::fs::write(t.path().join("victim"), b"keep").unwrap();
    for bad in [
        "../victim",
        "a/../../victim",
        "/etc/passwd",
        "..",
        "a\0b",
        ".hidden",
    ] {
        for r in [
            store.put(bad, b"x").map(drop),
            store.delete(bad),
            store.get(bad).map(drop),
            store.contains(bad).map(drop),
        ] {
            assert!(
                matches!(r, Err(StoreError::BadKey { .. })),
                "{bad:?}: {r:?}"
            );
        }
    }
    assert_eq!(std::fs::read(t.path().join("victim")).unwrap(), b"keep");
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 2);
}

#[test]
fn backend_errors_keep_their_typed_source() {
    let t = tempfile::tempdir().unwrap();
    let store = DirStore::new(t.path()).unwrap();
    std::fs::create_dir_all(t.path().join("a/b")).unwrap();
    // `a/b` is a directory: reading it as a value fails with the I/O error as the source.
    let err = store.get("a/b").unwrap_err();
    let source = std::error::Error::source(&err).unwrap();
    assert!(
        source.downcast_ref::<std::io::Error>().is_some(),
        "{source:?}"
    );
}

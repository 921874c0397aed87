//! One conformance suite for every store backend.

use std::sync::Arc;

use brisk_checkpoint::{DirStore, MemoryStore, ObjectStore, Store, from_url, validate_key};

/// The behaviour every backend must share.
pub(crate) fn conformance(store: &dyn Store) {
    let loc = store.location();
    assert_eq!(store.get("double/3d00").unwrap(), None, "{loc}");
    assert!(!store.contains("double/3d00").unwrap(), "{loc}");
    store.put("double/3d00", b"first").unwrap();
    assert!(store.contains("double/3d00").unwrap(), "{loc}");
    assert_eq!(
        store.get("double/3d00").unwrap().as_deref(),
        Some(&b"first"[..])
    );
    store.put("double/3d00", b"second, longer").unwrap();
    assert_eq!(
        store.get("double/3d00").unwrap().as_deref(),
        Some(&b"second, longer"[..]),
        "{loc}"
    );
    store.put("double/ffff", b"").unwrap();
    assert_eq!(
        store.get("double/ffff").unwrap().as_deref(),
        Some(&b""[..]),
        "{loc}"
    );
    store.put("add/0001", b"x").unwrap();
    store.put("a/b/c/deep", &[0u8, 255, 7]).unwrap();
    assert_eq!(
        store.list("double/").unwrap(),
        vec!["double/3d00".to_owned(), "double/ffff".to_owned()],
        "{loc}"
    );
    assert_eq!(
        store.list("").unwrap(),
        ["a/b/c/deep", "add/0001", "double/3d00", "double/ffff"],
        "{loc}"
    );
    assert_eq!(
        store.list("a").unwrap(),
        ["a/b/c/deep", "add/0001"],
        "{loc}"
    );
    assert_eq!(store.list("nothing/").unwrap(), Vec::<String>::new());
    store.delete("double/3d00").unwrap();
    store.delete("double/3d00").unwrap(); // absent: fine
    assert!(!store.contains("double/3d00").unwrap(), "{loc}");
    assert_eq!(store.list("double/").unwrap(), ["double/ffff"], "{loc}");
    // Bad keys are refused by every backend, on every operation.
    for bad in [
        "",
        "/abs",
        "a/../b",
        "..",
        "a//b",
        "a/",
        "./a",
        "a/.hidden",
        "nul\0x",
        "back\\slash",
    ] {
        assert!(
            matches!(
                store.put(bad, b"x"),
                Err(brisk_checkpoint::StoreError::BadKey { .. })
            ),
            "{loc}: put {bad:?}"
        );
        assert!(
            matches!(
                store.get(bad),
                Err(brisk_checkpoint::StoreError::BadKey { .. })
            ),
            "{loc}: get {bad:?}"
        );
        assert!(matches!(
            store.contains(bad),
            Err(brisk_checkpoint::StoreError::BadKey { .. })
        ));
        assert!(matches!(
            store.delete(bad),
            Err(brisk_checkpoint::StoreError::BadKey { .. })
        ));
    }
}

#[test]
fn memory_store_conforms() {
    conformance(&MemoryStore::new());
}

#[test]
fn directory_store_conforms_and_maps_keys_to_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::new(dir.path()).unwrap();
    conformance(&store);
    assert_eq!(
        std::fs::read(dir.path().join("a/b/c/deep")).unwrap(),
        [0, 255, 7]
    );
    assert!(
        DirStore::new(dir.path())
            .unwrap()
            .without_fsync()
            .contains("add/0001")
            .unwrap()
    );
}

#[test]
fn object_store_backends_conform() {
    conformance(&ObjectStore::memory());
    let dir = tempfile::tempdir().unwrap();
    conformance(&ObjectStore::local(dir.path()).unwrap());
    // Under a prefix, keys do not see each other.
    let shared = Arc::new(object_store::memory::InMemory::new());
    let a = ObjectStore::new(shared.clone(), "team-a", "objmem://team-a");
    let b = ObjectStore::new(shared, "team-b/x", "objmem://team-b/x");
    a.put("k/1", b"a").unwrap();
    assert!(!b.contains("k/1").unwrap());
    conformance(&b);
    assert_eq!(a.list("").unwrap(), ["k/1"]);
}

/// The conformance suite on the cloud store that `var` names (a bucket or container URL set
/// by `cargo xtask ci`, which starts the server on 127.0.0.1), under `conformance/`, emptied
/// first; these tests are ignored by default and `cargo xtask cloud` runs them.
#[cfg(feature = "cloud")]
fn cloud_store_conforms(var: &str) {
    let url = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run this test with `cargo xtask cloud`"));
    let store = from_url(&format!("{url}/conformance")).unwrap();
    for k in store.list("").unwrap() {
        store.delete(&k).unwrap();
    }
    conformance(store.as_ref());
}

/// Against a real S3 API (moto_server).
#[cfg(feature = "s3")]
#[test]
#[ignore = "needs the cloud emulators: cargo xtask cloud"]
fn s3_store_conforms() {
    cloud_store_conforms("BRISK_TEST_S3_URL");
}

/// Against Azurite, the Azure Storage emulator.
#[cfg(feature = "azure")]
#[test]
#[ignore = "needs the cloud emulators: cargo xtask cloud"]
fn azure_store_conforms() {
    cloud_store_conforms("BRISK_TEST_AZURE_URL");
}

/// Against the GCS XML API emulator `xtask/cloud/gcs_xml_emulator.py`.
#[cfg(feature = "gcs")]
#[test]
#[ignore = "needs the cloud emulators: cargo xtask cloud"]
fn gcs_store_conforms() {
    cloud_store_conforms("BRISK_TEST_GCS_URL");
}

#[test]
fn urls_pick_backends_and_unknown_schemes_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().display().to_string();
    let (m1, m2) = (
        from_url("memory://").unwrap(),
        from_url("memory://").unwrap(),
    );
    assert!(m1.location().starts_with("memory://#"));
    assert_ne!(
        m1.location(),
        m2.location(),
        "two memory stores are two locations"
    );
    assert_eq!(from_url(&p).unwrap().location(), p);
    assert_eq!(from_url(&format!("file://{p}")).unwrap().location(), p);
    assert!(
        from_url("objmem://")
            .unwrap()
            .location()
            .starts_with("objmem://")
    );
    conformance(from_url(&format!("objfile://{p}/obj")).unwrap().as_ref());
    match from_url("ftp://host/x") {
        Err(brisk_checkpoint::StoreError::UnsupportedUrl { scheme, .. }) => {
            assert_eq!(scheme, "ftp")
        }
        other => panic!("unexpected {other:?}"),
    }
    #[cfg(not(feature = "s3"))]
    match from_url("s3://bucket/prefix") {
        Err(brisk_checkpoint::StoreError::UnsupportedUrl {
            scheme, supported, ..
        }) => {
            assert_eq!(scheme, "s3");
            assert!(supported.contains("(`s3`)"), "{supported}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn path_traversal_never_leaves_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = DirStore::new(&root).unwrap();
    for bad in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a/./b",
        "a\0b",
    ] {
        let err = store.put(bad, b"x").unwrap_err();
        assert!(
            matches!(err, brisk_checkpoint::StoreError::BadKey { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("invalid storage key"), "{err}");
    }
    assert!(!dir.path().join("escape").exists());
    assert!(validate_key("double/3d00a6e20b85ee3517c62a761f774f72").is_ok());
    assert!(validate_key("double-21").is_ok());
}

#[test]
fn temporary_files_are_hidden_and_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::new(dir.path()).unwrap();
    store.put("a/x", b"1").unwrap();
    // What a writer killed between create and rename leaves behind.
    std::fs::write(dir.path().join("a/.x.brisk-tmp-1-1"), b"partial").unwrap();
    assert_eq!(store.list("").unwrap(), ["a/x"]);
    assert_eq!(store.clean().unwrap(), 1);
    assert_eq!(store.clean().unwrap(), 0);
    assert_eq!(store.get("a/x").unwrap().as_deref(), Some(&b"1"[..]));
}

//! Storage safety: nothing outside a store is ever touched, hostile metadata is an error (never
//! an abort), and an interrupted `to_zarr` never leaves an array that opens as complete or an
//! overwrite that lost the old array.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brisk_array::Array;
use brisk_exec::{SequentialExecutor, ThreadedExecutor};
use brisk_zarr::{
    ArrayOptions, Compressor, ZarrError, ZarrStore, create_array, from_zarr, open_array, to_zarr,
};

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn bad_path(r: Result<impl std::fmt::Debug, ZarrError>) {
    match r {
        Err(ZarrError::Storage(e)) if e.is_bad_key() => {}
        other => panic!("expected a refused path, got {other:?}"),
    }
}

#[test]
fn paths_that_leave_the_store_are_refused_before_anything_is_touched() {
    let t = tempfile::tempdir().unwrap();
    let victim = ZarrStore::directory(t.path().join("victim")).unwrap();
    let a = Array::<f32>::full(&[8, 8], &[4, 4], 1.0).unwrap();
    to_zarr(
        &a,
        &victim,
        "/",
        None,
        &ArrayOptions::new(),
        &SequentialExecutor,
    )
    .unwrap();
    let outer = ZarrStore::directory(t.path().join("h")).unwrap();
    to_zarr(
        &a,
        &outer,
        "in/arr",
        None,
        &ArrayOptions::new(),
        &SequentialExecutor,
    )
    .unwrap();
    let store = ZarrStore::directory(t.path().join("h/in")).unwrap();
    let before = files(t.path());
    assert!(before.len() > 8, "{} files", before.len());

    let over = ArrayOptions::new().overwrite();
    let exec = ThreadedExecutor::new(2).unwrap();
    for path in [
        "../victim",
        "..",
        "../..",
        "a/../../victim",
        "./x",
        "a\0b",
        "a\\..\\b",
    ] {
        bad_path(to_zarr(&a, &store, path, None, &over, &exec));
        bad_path(create_array::<f32>(&store, path, &[8, 8], &[4, 4], &over));
        bad_path(open_array(&store, path));
        bad_path(from_zarr::<f32>(&store, path));
        bad_path(brisk_zarr::create_group(
            &store,
            path,
            false,
            Default::default(),
        ));
        bad_path(store.size_of(path));
    }
    assert_eq!(files(t.path()), before, "a file outside the store changed");
}

#[test]
fn hostile_metadata_and_absurd_chunk_counts_are_errors_not_aborts() {
    let t = tempfile::tempdir().unwrap();
    // 300 bytes declaring 2^40 chunks.
    std::fs::create_dir_all(t.path().join("big")).unwrap();
    let meta = serde_json::json!({
        "zarr_format": 3, "node_type": "array", "shape": [1u64 << 40, 100],
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 100]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}]
    });
    std::fs::write(t.path().join("big/zarr.json"), meta.to_string()).unwrap();
    let store = ZarrStore::directory(t.path()).unwrap();
    let err = from_zarr::<f32>(&store, "big").unwrap_err();
    assert!(err.to_string().contains("blocks"), "{err}");
    // One chunk of 2^40 elements.
    let mut huge = meta.clone();
    huge["shape"] = serde_json::json!([1u64 << 40]);
    huge["chunk_grid"]["configuration"]["chunk_shape"] = serde_json::json!([1u64 << 40]);
    std::fs::create_dir_all(t.path().join("huge")).unwrap();
    std::fs::write(t.path().join("huge/zarr.json"), huge.to_string()).unwrap();
    let err = from_zarr::<f32>(&store, "huge").unwrap_err();
    assert!(err.to_string().contains("elements each"), "{err}");
    // Creating one is refused before anything is written.
    let err =
        create_array::<f32>(&store, "new", &[1 << 40], &[1], &ArrayOptions::new()).unwrap_err();
    assert!(err.to_string().contains("blocks"), "{err}");
    assert!(!t.path().join("new").exists());
}

const SHAPE: [usize; 2] = [4096, 1024];
const CHUNKS: [usize; 2] = [128, 1024];

/// Run only as the child of the interrupted-write tests: writes the array `x` with the
/// value 1, 2, 3, … forever (the first write is fresh, the rest overwrite).
#[test]
#[ignore = "run as a child process by interrupted_writes_never_open_as_complete"]
fn child_writes_x_forever() {
    let dir = std::env::var("BRISK_SAFETY_DIR").expect("set by the parent test");
    let store = ZarrStore::directory(&dir).unwrap();
    let exec = ThreadedExecutor::new(2).unwrap();
    let opts = ArrayOptions::new().compressor(Compressor::None).overwrite();
    for k in 1u32.. {
        let a = Array::<u32>::full(&SHAPE, &CHUNKS, k).unwrap();
        to_zarr(&a, &store, "x", None, &opts, &exec).unwrap();
    }
}

/// `x` opens and holds one write whole, or does not open at all (only when `fresh`).
fn check_whole(store: &ZarrStore, round: u64, fresh: bool) -> Option<u32> {
    let x = match from_zarr::<u32>(store, "x") {
        Err(ZarrError::NotFound { .. }) if fresh => return None,
        Err(e) => panic!("round {round}: the array does not open: {e}"),
        Ok(x) => x,
    };
    let v = x.compute_with(&SequentialExecutor).unwrap_or_else(|e| {
        panic!("round {round}: the array does not read: {e}");
    });
    let first = v.iter().next().copied().unwrap();
    assert_ne!(first, 0, "round {round}: a chunk reads as the fill value");
    assert!(
        v.iter().all(|&e| e == first),
        "round {round}: the array mixes writes"
    );
    Some(first)
}

fn spawn_child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "safety::child_writes_x_forever",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BRISK_SAFETY_DIR", dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn interrupted_writes_never_open_as_complete_and_never_lose_the_old_array() {
    let mut opened = 0;
    let mut lost = 0;
    for round in 0..10u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_child(dir.path());
        // Early rounds kill during the first (fresh) write, later ones during overwrites.
        std::thread::sleep(Duration::from_millis(15 * round * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let store = ZarrStore::directory(dir.path()).unwrap();
        match check_whole(&store, round, true) {
            Some(_) => opened += 1,
            None => lost += 1,
        }
        // The next writer leaves no staging tree of the dead one behind.
        let a = Array::<u32>::full(&SHAPE, &CHUNKS, 7).unwrap();
        let opts = ArrayOptions::new().overwrite();
        to_zarr(&a, &store, "x", None, &opts, &SequentialExecutor).unwrap();
        assert_eq!(check_whole(&store, round, false), Some(7));
        let hidden: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "round {round}: left behind {hidden:?}");
    }
    // Later rounds interrupt overwrites (the first write completed), early ones the first.
    assert!(
        opened > 0,
        "no write completed: opened {opened}, not yet {lost}"
    );
}

#[test]
fn a_failed_overwrite_leaves_the_old_array() {
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    let old = Array::<f64>::full(&[16, 16], &[4, 4], 3.0).unwrap();
    to_zarr(
        &old,
        &store,
        "g/x",
        None,
        &ArrayOptions::new(),
        &SequentialExecutor,
    )
    .unwrap();
    // A new array whose sixth block fails to compute.
    let grid = brisk_array::ChunkGrid::regular(&[16, 16], &[4, 4]).unwrap();
    let spec = brisk_graph::TaskSpec::new("block");
    let blocks = (0..16)
        .map(|i| {
            spec.try_call(
                move || -> Result<ndarray::ArrayD<f64>, brisk_graph::BoxError> {
                    if i == 5 {
                        return Err("a failing block".into());
                    }
                    Ok(ndarray::ArrayD::from_elem(vec![4, 4], 1.0))
                },
                (),
            )
        })
        .collect();
    let failing = Array::from_blocks(grid, blocks).unwrap();
    let r = to_zarr(
        &failing,
        &store,
        "g/x",
        None,
        &ArrayOptions::new().overwrite(),
        &SequentialExecutor,
    );
    assert!(matches!(r, Err(ZarrError::Compute { .. })), "{r:?}");
    let x = from_zarr::<f64>(&store, "g/x").unwrap();
    let v = x.compute_with(&SequentialExecutor).unwrap();
    assert!(v.iter().all(|&v| v == 3.0), "the old array changed");
    let hidden: Vec<_> = std::fs::read_dir(dir.path().join("g"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn a_corrupted_chunk_of_a_default_array_is_an_error_never_a_wrong_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    let a = Array::<f32>::random_normal(&[64, 64], &[32, 32], 7, 0.0, 1.0).unwrap();
    let want = a.compute_with(&SequentialExecutor).unwrap();
    to_zarr(
        &a,
        &store,
        "x",
        None,
        &ArrayOptions::new(),
        &SequentialExecutor,
    )
    .unwrap();
    let chunk = dir.path().join("x/c/1/0");
    let good = std::fs::read(&chunk).unwrap();
    let (mut errors, mut wrong) = (0, 0);
    for at in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        std::fs::write(&chunk, &bad).unwrap();
        for fused in [true, false] {
            let io = brisk_zarr::IoOptions::new().fused(fused);
            match brisk_zarr::from_zarr_with::<f32>(&store, "x", io)
                .and_then(|x| Ok(x.compute_with(&SequentialExecutor)?))
            {
                Ok(got) if got == want => {} // a flip in a byte the decoder ignores
                Ok(_) => wrong += 1,
                Err(_) => errors += 1,
            }
        }
    }
    assert_eq!(wrong, 0, "{wrong} wrong values ({errors} errors)");
    assert!(errors > 0);
}

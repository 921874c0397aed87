//! A writer killed in the middle of `to_zarr` leaves every chunk old or new, never torn.

use std::process::Command;
use std::time::Duration;

use brisk_array::Array;
use brisk_exec::ThreadedExecutor;
use brisk_zarr::{
    ArrayOptions, Compressor, IoOptions, ZarrStore, create_array, from_zarr, open_array,
    write_tasks,
};

const SHAPE: [usize; 2] = [2048, 1024];
const CHUNKS: [usize; 2] = [256, 1024];

/// Run only as the child of `a_killed_writer_never_leaves_a_torn_chunk`: rewrites the array
/// with the value 1, 2, 3, … forever.
#[test]
#[ignore = "run as a child process by a_killed_writer_never_leaves_a_torn_chunk"]
fn child_rewrites_forever() {
    let dir = std::env::var("BRISK_CRASH_DIR").expect("set by the parent test");
    let store = ZarrStore::directory(&dir).unwrap();
    let target = open_array(&store, "x").unwrap();
    let exec = ThreadedExecutor::new(2).unwrap();
    for k in 1u32.. {
        let a = Array::<u32>::full(&SHAPE, &CHUNKS, k).unwrap();
        write_tasks(&a, &target, &[0, 0], IoOptions::new())
            .unwrap()
            .compute_with(&exec)
            .unwrap();
    }
}

#[test]
fn a_killed_writer_never_leaves_a_torn_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    // Uncompressed 1 MiB chunks: a partially written file would not decode.
    let opts = ArrayOptions::new().compressor(Compressor::None);
    create_array::<u32>(&store, "x", &SHAPE, &CHUNKS, &opts).unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 0..3u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::child_rewrites_forever",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BRISK_CRASH_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + 170 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let x = from_zarr::<u32>(&store, "x").unwrap();
        for (i, block) in x.blocks().unwrap().iter().enumerate() {
            let b = block
                .compute_with(&brisk_exec::SequentialExecutor)
                .unwrap_or_else(|e| {
                    panic!(
                        "round {round}: chunk {i} does not decode: {}",
                        brisk_graph::chain(&e)
                    )
                });
            let first = b.iter().next().copied().unwrap();
            assert!(
                b.iter().all(|&v| v == first),
                "round {round}: chunk {i} mixes two writes"
            );
        }
    }
}

//! Write → read round trips for every format, codec and type; write plans; errors.

use brisk_array::{Array, Axes};
use brisk_exec::ThreadedExecutor;
use brisk_zarr::{
    ArrayOptions, BloscShuffle, Compressor, IoOptions, ZarrError, ZarrFormat, ZarrStore,
    create_array, create_group, from_zarr, from_zarr_with, node_attributes, open_array, to_zarr,
    write_tasks,
};
use ndarray::{ArrayD, IxDyn};
use serde_json::json;

fn exec() -> ThreadedExecutor {
    ThreadedExecutor::new(2).unwrap()
}

fn data<T: brisk_array::Element>(shape: &[usize]) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n)
            .map(|i| T::from_f64(((i * 37) % 113) as f64))
            .collect(),
    )
    .unwrap()
}

fn roundtrip<T: brisk_zarr::ZarrElement + PartialEq>(
    store: &ZarrStore,
    path: &str,
    opts: &ArrayOptions,
) {
    let x = data::<T>(&[37, 23]);
    let a = Array::from_ndarray(&x, &[16, 10]).unwrap();
    let e = exec();
    let (z, summary) = to_zarr(&a, store, path, Some(&[16, 10]), opts, &e).unwrap();
    let units = z.unit_shape();
    let expected_units: usize = [37usize, 23]
        .iter()
        .zip(&units)
        .map(|(n, u)| n.div_ceil(*u))
        .product();
    assert_eq!(summary.units, expected_units, "{path}");
    let back = from_zarr::<T>(store, path)
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert_eq!(back, x, "{path}");
    // Streamed into a fused chunk task (decoded inside the consumer).
    let streamed = from_zarr::<T>(store, path)
        .unwrap()
        .mapv(|v: T| v)
        .compute_with(&e)
        .unwrap();
    assert_eq!(streamed, x, "{path} streamed");
    let z = open_array(store, path).unwrap();
    assert_eq!(z.dtype(), T::V3);
    assert_eq!(z.is_v2(), opts.format == ZarrFormat::V2);
}

#[test]
fn every_format_codec_and_type_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let odir = tempfile::tempdir().unwrap();
    let stores = [
        ZarrStore::memory(),
        ZarrStore::directory(dir.path()).unwrap(),
        ZarrStore::object_memory(),
        ZarrStore::object_local(odir.path()).unwrap(),
    ];
    for store in stores {
        let codecs = [
            Compressor::None,
            Compressor::default(),
            Compressor::Zstd {
                level: 9,
                checksum: true,
            },
            Compressor::Blosc {
                cname: "lz4".into(),
                clevel: 5,
                shuffle: BloscShuffle::Byte,
            },
            Compressor::Gzip { level: 6 },
        ];
        for (i, c) in codecs.iter().enumerate() {
            for format in [ZarrFormat::V2, ZarrFormat::V3] {
                let opts = ArrayOptions::new().format(format).compressor(c.clone());
                roundtrip::<f32>(&store, &format!("f32/{i}/{format:?}"), &opts);
                roundtrip::<i16>(&store, &format!("i16/{i}/{format:?}"), &opts);
            }
        }
        let v3 = ArrayOptions::new();
        roundtrip::<f64>(&store, "f64", &v3);
        roundtrip::<u8>(&store, "u8", &v3);
        roundtrip::<i64>(&store, "i64", &v3);
        roundtrip::<u32>(&store, "u32", &v3);
        roundtrip::<bool>(&store, "bool", &v3.clone().fill_value(json!(false)));
        roundtrip::<f32>(&store, "crc", &ArrayOptions::new().crc32c());
        roundtrip::<f32>(&store, "sharded", &ArrayOptions::new().shards(vec![32, 20]));
    }
}

#[test]
fn sharded_arrays_are_written_one_shard_per_task() {
    let store = ZarrStore::memory();
    let x = data::<f32>(&[64, 40]);
    let a = Array::from_ndarray(&x, &[7, 9]).unwrap(); // misaligned chunks: rechunked to shards
    let opts = ArrayOptions::new().shards(vec![32, 20]);
    let (z, s) = to_zarr(&a, &store, "s", Some(&[8, 10]), &opts, &exec()).unwrap();
    assert_eq!(z.unit_shape(), vec![32, 20]);
    assert_eq!(s.units, 4);
    let back = from_zarr::<f32>(&store, "s").unwrap();
    assert_eq!(
        back.chunks(),
        &[vec![32, 32], vec![20, 20]],
        "one read task per shard"
    );
    assert_eq!(back.compute_with(&exec()).unwrap(), x);
}

#[test]
fn attributes_dimension_names_and_groups() {
    let store = ZarrStore::memory();
    for (format, path) in [(ZarrFormat::V3, "g3/a"), (ZarrFormat::V2, "g2/a")] {
        create_group(
            &store,
            path.split('/').next().unwrap(),
            format == ZarrFormat::V2,
            [("kind".to_string(), json!("group"))].into_iter().collect(),
        )
        .unwrap();
        let opts = ArrayOptions::new()
            .format(format)
            .dimension_names(["time", "x"])
            .attribute("history", json!("created by brisk"))
            .attribute("timestamp", json!(1_700_000_000));
        let mut z = create_array::<f64>(&store, path, &[4, 3], &[2, 3], &opts).unwrap();
        assert_eq!(z.dimension_names().unwrap(), vec!["time", "x"]);
        assert_eq!(z.attributes()["history"], "created by brisk");
        let mut attrs = z.attributes();
        attrs.insert("extra".into(), json!([1, 2, 3]));
        z.set_attributes(attrs).unwrap();
        let reopened = open_array(&store, path).unwrap();
        assert_eq!(reopened.attributes()["extra"], json!([1, 2, 3]));
        assert_eq!(reopened.attributes()["timestamp"], 1_700_000_000);
        assert_eq!(
            node_attributes(&store, path.split('/').next().unwrap()).unwrap()["kind"],
            "group"
        );
    }
}

#[test]
fn wrong_element_types_and_missing_arrays_are_typed_errors() {
    let store = ZarrStore::memory();
    create_array::<f32>(&store, "x", &[4], &[2], &ArrayOptions::new()).unwrap();
    match from_zarr::<i32>(&store, "x").unwrap_err() {
        ZarrError::WrongType {
            path,
            stored,
            requested,
        } => {
            assert_eq!(
                (path.as_str(), stored.as_str(), requested.as_str()),
                ("/x", "float32", "int32")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        from_zarr::<f32>(&store, "nope"),
        Err(ZarrError::NotFound { .. })
    ));
    assert!(matches!(
        create_array::<f32>(&store, "x", &[4], &[2], &ArrayOptions::new()),
        Err(ZarrError::AlreadyExists { .. })
    ));
    create_array::<f32>(&store, "x", &[8], &[2], &ArrayOptions::new().overwrite()).unwrap();
    assert_eq!(open_array(&store, "x").unwrap().shape(), vec![8]);
    assert!(matches!(
        create_array::<f32>(
            &store,
            "y",
            &[4],
            &[2],
            &ArrayOptions::new().format(ZarrFormat::V2).shards(vec![4])
        ),
        Err(ZarrError::BadOptions(_))
    ));
    #[cfg(not(feature = "s3"))]
    assert!(matches!(
        ZarrStore::from_url("s3://bucket/x"),
        Err(ZarrError::UnsupportedUrl { .. })
    ));
    assert!(matches!(
        ZarrStore::from_url("ftp://host/x"),
        Err(ZarrError::UnsupportedUrl { .. })
    ));
}

#[test]
fn region_writes_must_own_whole_storage_units() {
    let store = ZarrStore::memory();
    let z = create_array::<u16>(&store, "r", &[10, 10], &[4, 5], &ArrayOptions::new()).unwrap();
    let part = Array::from_ndarray(&data::<u16>(&[4, 5]), &[2, 5]).unwrap();
    // Starting inside a chunk would make two writers share it: refused.
    let err = write_tasks(&part, &z, &[2, 0], IoOptions::new()).unwrap_err();
    assert!(
        matches!(&err, ZarrError::Misaligned { .. }) && err.to_string().contains("axis 0"),
        "{err}"
    );
    // Ending inside a chunk that it does not fill: refused.
    let small = Array::from_ndarray(&data::<u16>(&[3, 5]), &[3, 5]).unwrap();
    assert!(matches!(
        write_tasks(&small, &z, &[0, 0], IoOptions::new()),
        Err(ZarrError::Misaligned { .. })
    ));
    // Aligned: accepted, and the rest of the array keeps its fill value.
    let w = write_tasks(&part, &z, &[4, 5], IoOptions::new()).unwrap();
    assert_eq!(w.compute_with(&exec()).unwrap().units, 1);
    // The last, partial chunk along an axis may be written by a region that ends at the array end.
    let tail = Array::from_ndarray(&data::<u16>(&[2, 5]), &[2, 5]).unwrap();
    write_tasks(&tail, &z, &[8, 0], IoOptions::new())
        .unwrap()
        .compute_with(&exec())
        .unwrap();
    let all = from_zarr::<u16>(&store, "r")
        .unwrap()
        .compute_with(&exec())
        .unwrap();
    assert_eq!(
        all.slice(ndarray::s![4..8, 5..10]).into_dyn(),
        data::<u16>(&[4, 5])
    );
    assert_eq!(
        all.slice(ndarray::s![8..10, 0..5]).into_dyn(),
        data::<u16>(&[2, 5])
    );
    assert_eq!(all[[0, 0]], 0);
}

#[test]
fn empty_chunks_are_not_stored_and_writes_leave_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    let zeros = Array::<f32>::zeros(&[400, 300], &[100, 300]).unwrap();
    to_zarr(&zeros, &store, "zeros", None, &ArrayOptions::new(), &exec()).unwrap();
    let size = store.size_of("zeros").unwrap();
    assert!(size < 2_000, "an all-fill array takes {size} bytes on disk");
    let chunks: Vec<_> = walk(&dir.path().join("zeros"))
        .into_iter()
        .filter(|p| !p.ends_with("zarr.json"))
        .collect();
    assert!(
        chunks.is_empty(),
        "fill-only chunks were stored: {chunks:?}"
    );
    // Rewriting a stored chunk with only the fill value erases it.
    let ones = Array::<f32>::ones(&[400, 300], &[100, 300]).unwrap();
    let target = open_array(&store, "zeros").unwrap();
    write_tasks(&ones, &target, &[0, 0], IoOptions::new())
        .unwrap()
        .compute_with(&exec())
        .unwrap();
    assert_eq!(walk(&dir.path().join("zeros")).len(), 5);
    write_tasks(&zeros, &target, &[0, 0], IoOptions::new())
        .unwrap()
        .compute_with(&exec())
        .unwrap();
    assert_eq!(walk(&dir.path().join("zeros")).len(), 1);
    assert_eq!(
        from_zarr::<f32>(&store, "zeros")
            .unwrap()
            .sum(brisk_array::Axes::All)
            .compute_with(&exec())
            .unwrap()[[]],
        0.0
    );
    let x = Array::<f32>::random_normal(&[200, 300], &[50, 300], 1, 0.0, 1.0).unwrap();
    to_zarr(&x, &store, "x", None, &ArrayOptions::new(), &exec()).unwrap();
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.contains("brisk-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let back = from_zarr_with::<f32>(&store, "x", IoOptions::new().codec_threads(2)).unwrap();
    assert_eq!(
        back.compute_with(&exec()).unwrap(),
        x.compute_with(&exec()).unwrap()
    );
}

#[test]
fn attributes_are_exactly_what_the_user_gave() {
    let store = ZarrStore::memory();
    let opts = ArrayOptions::new().attribute("a", json!(1));
    let mut z = create_array::<f32>(&store, "x", &[2], &[2], &opts).unwrap();
    assert_eq!(
        z.attributes(),
        [("a".to_string(), json!(1))].into_iter().collect()
    );
    z.set_attributes([("b".to_string(), json!("two"))].into_iter().collect())
        .unwrap();
    let keys: Vec<String> = open_array(&store, "x")
        .unwrap()
        .attributes()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, vec!["b"]);
}

#[test]
fn object_store_backends_share_the_store_semantics() {
    let odir = tempfile::tempdir().unwrap();
    let url = format!("objfile://{}", odir.path().display());
    for store in [
        ZarrStore::from_url("objmem://").unwrap(),
        ZarrStore::from_url(&url).unwrap(),
    ] {
        let x = data::<f64>(&[30, 20]);
        let a = Array::from_ndarray(&x, &[10, 20]).unwrap();
        let opts = ArrayOptions::new()
            .shards(vec![20, 20])
            .attribute("k", json!("v"));
        to_zarr(&a, &store, "grp/arr", Some(&[10, 10]), &opts, &exec()).unwrap();
        assert_eq!(
            open_array(&store, "grp/arr").unwrap().attributes()["k"],
            "v"
        );
        assert_eq!(
            from_zarr::<f64>(&store, "grp/arr")
                .unwrap()
                .compute_with(&exec())
                .unwrap(),
            x
        );
        assert!(store.size_of("grp/arr").unwrap() > 0);
        assert!(matches!(
            from_zarr::<f64>(&store, "missing"),
            Err(ZarrError::NotFound { .. })
        ));
    }
    // Unsharded zstd chunks: written and read back streamed, also into a reduction.
    for store in [
        ZarrStore::from_url("objmem://").unwrap(),
        ZarrStore::from_url(&url).unwrap(),
    ] {
        let x = data::<f32>(&[30, 20]);
        let a = Array::from_ndarray(&x, &[10, 20]).unwrap();
        to_zarr(&a, &store, "plain", None, &ArrayOptions::new(), &exec()).unwrap();
        let back = from_zarr::<f32>(&store, "plain").unwrap();
        assert_eq!((&back * 1.0).compute_with(&exec()).unwrap(), x);
        assert_eq!(
            back.max(0).compute_with(&exec()).unwrap(),
            x.map_axis(ndarray::Axis(0), |c| c
                .iter()
                .copied()
                .fold(f32::MIN, f32::max))
        );
    }
    // A file written through the local object store is a plain Zarr directory.
    let back = from_zarr::<f64>(&ZarrStore::directory(odir.path()).unwrap(), "grp/arr").unwrap();
    assert_eq!(back.compute_with(&exec()).unwrap(), data::<f64>(&[30, 20]));
}

#[test]
fn damaged_chunks_are_errors_naming_the_chunk_never_wrong_values() {
    let e = exec();
    for (format, compressor, chunk) in [
        (ZarrFormat::V3, Compressor::default(), "c/1/0"),
        (ZarrFormat::V3, Compressor::None, "c/1/0"),
        (ZarrFormat::V2, Compressor::default(), "1.0"),
        (ZarrFormat::V2, Compressor::None, "1.0"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = ZarrStore::directory(dir.path()).unwrap();
        let x = data::<f64>(&[20, 10]);
        let opts = ArrayOptions::new()
            .format(format)
            .compressor(compressor.clone());
        let a = Array::from_ndarray(&x, &[10, 10]).unwrap();
        to_zarr(&a, &store, "a", None, &opts, &e).unwrap();
        let file = dir.path().join("a").join(chunk);
        let bytes = std::fs::read(&file).unwrap();
        // Truncated, one byte short, and (compressed only: raw bytes of the right length
        // are valid values to any reader) garbage.
        // Too long: data after the frame, or more raw bytes than the shape.
        let mut cases = vec![
            bytes[..bytes.len() / 2].to_vec(),
            bytes[..bytes.len() - 1].to_vec(),
            [bytes.as_slice(), &[1, 2, 3]].concat(),
        ];
        if compressor != Compressor::None {
            cases.push(vec![7u8; bytes.len()]);
        }
        for damaged in cases {
            std::fs::write(&file, &damaged).unwrap();
            // Read whole by the chunk's task, and streamed into a fused reduction and into a
            // fused chunk: every path refuses the chunk.
            let x = from_zarr::<f64>(&store, "a").unwrap();
            let errs = [
                x.compute_with(&e).map(|_| ()),
                (&x * 2.0).sum(Axes::All).compute_with(&e).map(|_| ()),
                x.mean(0).compute_with(&e).map(|_| ()),
                (&x + 1.0).compute_with(&e).map(|_| ()),
            ];
            for (path, err) in errs.into_iter().enumerate() {
                let err = err.expect_err("a damaged chunk must not read");
                let msg = brisk_graph::chain(&err);
                assert!(
                    msg.contains("[1, 0]") && msg.contains("/a"),
                    "{format:?} {compressor:?} path {path}: {msg}"
                );
            }
        }
        // A missing chunk reads as the fill value, like zarr-python.
        std::fs::remove_file(&file).unwrap();
        let back = from_zarr::<f64>(&store, "a")
            .unwrap()
            .compute_with(&e)
            .unwrap();
        assert!(back.slice(ndarray::s![10.., ..]).iter().all(|&v| v == 0.0));
        assert_eq!(
            back.slice(ndarray::s![..10, ..]),
            x.slice(ndarray::s![..10, ..])
        );
        let streamed = from_zarr::<f64>(&store, "a").unwrap().sum(0);
        assert_eq!(
            streamed.compute_with(&e).unwrap(),
            back.sum_axis(ndarray::Axis(0))
        );
    }
}

/// Round trips (Zarr v3 and v2, sharded) through the cloud store that `var` names (a bucket or
/// container URL set by `cargo xtask ci`, which starts the server on 127.0.0.1), under
/// `zarr/`; these tests are ignored by default and `cargo xtask cloud` runs them.
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
fn cloud_round_trips(var: &str) {
    let url = std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run this test with `cargo xtask cloud`"));
    let store = ZarrStore::from_url(&format!("{url}/zarr")).unwrap();
    roundtrip::<f32>(&store, "a", &ArrayOptions::new().overwrite());
    roundtrip::<i16>(
        &store,
        "v2",
        &ArrayOptions::new().format(ZarrFormat::V2).overwrite(),
    );
    roundtrip::<u16>(
        &store,
        "sharded",
        &ArrayOptions::new().shards(vec![32, 20]).overwrite(),
    );
    let again = ZarrStore::cloud(&format!("{url}/zarr")).unwrap();
    assert!(again.size_of("a").unwrap() > 0);
    // Pinned reads: versions from the service's listing and `HEAD` (e-tags, generations).
    crate::pinned::pinned_contract(&store);
}

/// Through a real S3 API (moto_server).
#[cfg(feature = "s3")]
#[test]
#[ignore = "needs the cloud emulators: cargo xtask cloud"]
fn s3_round_trips() {
    cloud_round_trips("BRISK_TEST_S3_URL");
}

/// Through Azurite, the Azure Storage emulator.
#[cfg(feature = "azure")]
#[test]
#[ignore = "needs the cloud emulators: cargo xtask cloud"]
fn azure_round_trips() {
    cloud_round_trips("BRISK_TEST_AZURE_URL");
}

/// Through the GCS XML API emulator `xtask/cloud/gcs_xml_emulator.py`.
#[cfg(feature = "gcs")]
#[test]
#[ignore = "needs the cloud emulators: cargo xtask cloud"]
fn gcs_round_trips() {
    cloud_round_trips("BRISK_TEST_GCS_URL");
}

#[test]
fn streamed_blocks_are_written_and_read_without_materializing_and_match_memory() {
    // A streamed source (random) under a fused expression, written by streaming encoders
    // (zstd with and without checksum, raw, v2 and v3, edge chunks), read back streamed into
    // a reduction and whole: always the values computed in memory.
    let e = exec();
    let x = Array::<f32>::random_normal(&[130, 70], &[40, 70], 3, 10.0, 2.0).unwrap();
    let y = &x * &x + 1.0;
    let want = y.compute_with(&e).unwrap();
    let want_mean = want.mapv(f64::from).mean_axis(ndarray::Axis(0)).unwrap();
    for (i, (format, compressor)) in [
        (ZarrFormat::V3, Compressor::default()),
        (
            ZarrFormat::V3,
            Compressor::Zstd {
                level: 5,
                checksum: true,
            },
        ),
        (ZarrFormat::V3, Compressor::None),
        (ZarrFormat::V2, Compressor::default()),
        (ZarrFormat::V2, Compressor::None),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let store = ZarrStore::directory(dir.path()).unwrap();
        let opts = ArrayOptions::new()
            .format(format)
            .compressor(compressor.clone());
        to_zarr(&y, &store, "y", Some(&[40, 70]), &opts, &e).unwrap();
        let back = from_zarr::<f32>(&store, "y").unwrap();
        assert_eq!(back.compute_with(&e).unwrap(), want, "case {i}");
        let m = back.mean(0).compute_with(&e).unwrap();
        for (a, b) in m.iter().zip(want_mean.iter()) {
            assert!((a - b).abs() <= 1e-4 * b.abs(), "case {i}: {a} vs {b}");
        }
        let shared = from_zarr_with::<f32>(&store, "y", IoOptions::new().fused(false)).unwrap();
        assert_eq!(shared.mean(0).compute_with(&e).unwrap(), m, "case {i}");
        // Copy through streams: decoded and re-encoded piece by piece.
        to_zarr(&back, &store, "copy", None, &opts, &e).unwrap();
        assert_eq!(
            from_zarr::<f32>(&store, "copy")
                .unwrap()
                .compute_with(&e)
                .unwrap(),
            want,
            "case {i}"
        );
    }
}

/// Fails after producing `good` elements.
struct Failing {
    good: usize,
}

impl brisk_array::BlockStream<u32> for Failing {
    fn read(&mut self, out: &mut [u32]) -> Result<(), brisk_graph::BoxError> {
        if out.len() > self.good {
            return Err("the source broke mid-chunk".into());
        }
        self.good -= out.len();
        out.fill(9);
        Ok(())
    }
}

#[test]
fn a_stream_failing_mid_chunk_leaves_the_stored_chunk_as_it_was() {
    let e = exec();
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    let old = Array::<u32>::full(&[200, 100], &[100, 100], 4).unwrap();
    let (target, _) = to_zarr(&old, &store, "x", None, &ArrayOptions::new(), &e).unwrap();
    let grid = brisk_array::ChunkGrid::regular(&[200, 100], &[100, 100]).unwrap();
    let blocks = (0..2)
        .map(|_| brisk_graph::lit_opaque(ndarray::ArrayD::<u32>::from_elem(IxDyn(&[100, 100]), 9)))
        .collect();
    // Block 1 breaks after 70 % of its elements, well after the encoder started writing.
    let open: brisk_array::OpenStream<u32> = std::sync::Arc::new(|i| {
        let good = if i == 1 { 7_000 } else { 10_000 };
        Ok(Box::new(Failing { good }) as Box<dyn brisk_array::BlockStream<u32>>)
    });
    let new = Array::from_blocks_streamed(grid, blocks, open).unwrap();
    let err = write_tasks(&new, &target, &[0, 0], IoOptions::new())
        .unwrap()
        .compute_with(&e)
        .expect_err("the broken block must fail the write");
    let msg = brisk_graph::chain(&err);
    assert!(msg.contains("[1, 0]") && msg.contains("mid-chunk"), "{msg}");
    let back = from_zarr::<u32>(&store, "x")
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert!(
        back.slice(ndarray::s![100.., ..]).iter().all(|&v| v == 4),
        "chunk 1 changed"
    );
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.contains("brisk-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn overwriting_an_array_in_the_same_store_recreates_its_directories() {
    // The directory store remembers the chunk directories it made; an overwrite erases them
    // (and so could anyone else): the next write must recreate them, never fail or write
    // elsewhere.
    let e = exec();
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    let opts = ArrayOptions::new().overwrite();
    for round in 0..3u32 {
        let a = Array::<u32>::full(&[60, 40], &[20, 20], round + 1).unwrap();
        to_zarr(&a, &store, "x", None, &opts, &e).unwrap();
        let back = from_zarr::<u32>(&store, "x")
            .unwrap()
            .compute_with(&e)
            .unwrap();
        assert!(back.iter().all(|&v| v == round + 1), "round {round}");
    }
    // Removed behind the store's back, then written without re-creating the array.
    std::fs::remove_dir_all(dir.path().join("x").join("c")).unwrap();
    let target = open_array(&store, "x").unwrap();
    let a = Array::<u32>::full(&[60, 40], &[20, 20], 9).unwrap();
    write_tasks(&a, &target, &[0, 0], IoOptions::new())
        .unwrap()
        .compute_with(&e)
        .unwrap();
    let back = from_zarr::<u32>(&store, "x")
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert!(back.iter().all(|&v| v == 9));
}

#[test]
fn overwriting_an_array_removes_all_of_it_and_nothing_else() {
    // An overwrite removes the old array's tree on several threads: every old chunk goes
    // (here 1600 in 40 directories, a stray tree 7 levels deep), siblings stay, and a symbolic
    // link inside the array is removed without following it.
    let e = exec();
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path().join("s")).unwrap();
    let old = Array::<u16>::full(&[400, 400], &[10, 10], 3).unwrap();
    let opts = ArrayOptions::new().overwrite();
    to_zarr(&old, &store, "x", None, &opts, &e).unwrap();
    let sibling = Array::<u16>::full(&[20, 20], &[10, 10], 5).unwrap();
    to_zarr(&sibling, &store, "y", None, &opts, &e).unwrap();
    let x = dir.path().join("s").join("x");
    let deep = x.join("c").join("a/b/c/d/e/f");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("stray"), b"old").unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"mine").unwrap();
    std::os::unix::fs::symlink(&outside, x.join("c").join("link")).unwrap();
    let files = |p: &std::path::Path| {
        walk(p)
            .into_iter()
            .filter(|f| !f.ends_with("zarr.json"))
            .count()
    };
    assert_eq!(files(&x), 1600 + 1 + 1);

    let new = Array::<u16>::full(&[400, 400], &[200, 200], 4).unwrap();
    to_zarr(&new, &store, "x", None, &opts, &e).unwrap();
    assert_eq!(files(&x), 4, "{:?}", walk(&x));
    assert!(!x.join("c").join("link").exists());
    assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"mine");
    let back = from_zarr::<u16>(&store, "x").unwrap();
    assert_eq!(back.chunks()[0], vec![200, 200]);
    assert!(back.compute_with(&e).unwrap().iter().all(|&v| v == 4));
    let y = from_zarr::<u16>(&store, "y")
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert!(y.iter().all(|&v| v == 5));
}

#[test]
fn an_overwrite_with_bad_options_keeps_the_old_array() {
    // The new metadata is checked before the old array is removed: a bad call is an error,
    // never the loss of the array it meant to replace.
    let e = exec();
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    let a = Array::<i32>::full(&[40, 40], &[10, 10], 7).unwrap();
    let opts = ArrayOptions::new().overwrite();
    to_zarr(&a, &store, "x", None, &opts, &e).unwrap();
    let bad = ArrayOptions::new()
        .format(ZarrFormat::V2)
        .shards(vec![20, 20])
        .overwrite();
    assert!(matches!(
        create_array::<i32>(&store, "x", &[40, 40], &[10, 10], &bad),
        Err(ZarrError::BadOptions(_))
    ));
    assert!(matches!(
        to_zarr(&a, &store, "x", None, &bad, &e),
        Err(ZarrError::BadOptions(_))
    ));
    let back = from_zarr::<i32>(&store, "x")
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert!(back.iter().all(|&v| v == 7));
    assert_eq!(walk(&dir.path().join("x")).len(), 16 + 1);
}

/// Every file (and symbolic link) under `root`, links not followed.
fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path().display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_chunk_stored_as_concatenated_zstd_frames_reads_on_every_path() {
    // zstd decodes concatenated frames as one stream, and so do other Zarr readers: the
    // one-call path and the streamed one must agree (and a skippable frame is ignored).
    let e = exec();
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    let x = data::<f64>(&[20, 10]);
    let a = Array::from_ndarray(&x, &[10, 10]).unwrap();
    to_zarr(&a, &store, "a", None, &ArrayOptions::new(), &e).unwrap();
    let file = dir.path().join("a").join("c/1/0");
    let raw = zstd::decode_all(std::fs::read(&file).unwrap().as_slice()).unwrap();
    let (head, tail) = raw.split_at(333);
    let mut frames = zstd::encode_all(head, 3).unwrap();
    // A skippable frame (magic 0x184D2A50, 4-byte length, payload).
    frames.extend_from_slice(&[0x50, 0x2A, 0x4D, 0x18, 2, 0, 0, 0, 9, 9]);
    frames.extend(zstd::encode_all(tail, 1).unwrap());
    std::fs::write(&file, &frames).unwrap();
    let back = from_zarr::<f64>(&store, "a").unwrap();
    assert_eq!(back.compute_with(&e).unwrap(), x);
    assert_eq!(
        (&back * 1.0).compute_with(&e).unwrap(),
        x,
        "streamed into a fused chunk"
    );
    assert_eq!(
        back.sum(0).compute_with(&e).unwrap(),
        x.sum_axis(ndarray::Axis(0))
    );
}

#[test]
fn edge_chunks_are_streamed_cropped_and_padded_in_any_rank() {
    // 3-d with edges on every axis: edge units are written padded with the fill value and
    // read back cropped, streamed on both sides; a damaged edge chunk is still refused.
    let e = exec();
    let x = data::<i32>(&[5, 7, 9]);
    for (format, compressor) in [
        (ZarrFormat::V3, Compressor::default()),
        (ZarrFormat::V3, Compressor::None),
        (ZarrFormat::V2, Compressor::default()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = ZarrStore::directory(dir.path()).unwrap();
        let opts = ArrayOptions::new()
            .format(format)
            .compressor(compressor.clone())
            .fill_value(json!(-7));
        let a = Array::from_ndarray(&x, &[2, 3, 4]).unwrap();
        to_zarr(&(&a + 0), &store, "a", None, &opts, &e).unwrap();
        let back = from_zarr::<i32>(&store, "a").unwrap();
        assert_eq!(
            back.compute_with(&e).unwrap(),
            x,
            "{format:?} {compressor:?}"
        );
        assert_eq!(
            (&back + 0).compute_with(&e).unwrap(),
            x,
            "{format:?} {compressor:?}"
        );
        assert_eq!(
            back.sum(brisk_array::Axes::All).compute_with(&e).unwrap()[[]],
            x.sum()
        );
        // The corner unit is stored whole (2x3x4 = 24 elements), padded with the fill value.
        let corner = if format == ZarrFormat::V2 {
            "2.2.2"
        } else {
            "c/2/2/2"
        };
        let file = dir.path().join("a").join(corner);
        let bytes = std::fs::read(&file).unwrap();
        let raw = if compressor == Compressor::None {
            bytes.clone()
        } else {
            zstd::decode_all(bytes.as_slice()).unwrap()
        };
        let unit: Vec<i32> = raw
            .chunks(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(unit.len(), 24);
        // In bounds: index (0, 0, 0) of the unit is element (4, 6, 8); the rest is fill.
        assert_eq!(unit[0], x[[4, 6, 8]]);
        assert!(unit[1..].iter().all(|&v| v == -7), "{unit:?}");
        // Damaged: refused on the streamed path too.
        std::fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
        let err = (&from_zarr::<i32>(&store, "a").unwrap() + 0)
            .compute_with(&e)
            .expect_err("a damaged edge chunk must not read");
        assert!(brisk_graph::chain(&err).contains("[2, 2, 2]"), "{err}");
    }
    // An edge unit whose in-bounds part is all fill is not stored.
    let dir = tempfile::tempdir().unwrap();
    let store = ZarrStore::directory(dir.path()).unwrap();
    let mut y = x.clone();
    y.slice_mut(ndarray::s![4.., .., ..]).fill(0);
    to_zarr(
        &(&Array::from_ndarray(&y, &[2, 3, 4]).unwrap() + 0),
        &store,
        "z",
        None,
        &ArrayOptions::new(),
        &e,
    )
    .unwrap();
    assert!(!dir.path().join("z/c/2/0/0").exists());
    assert!(dir.path().join("z/c/1/0/0").exists());
    assert_eq!(
        from_zarr::<i32>(&store, "z")
            .unwrap()
            .compute_with(&e)
            .unwrap(),
        y
    );
}

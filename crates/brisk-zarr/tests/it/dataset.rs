//! Datasets: groups of variables with dimensions, coordinates, attributes and consolidated
//! metadata, as xarray reads and writes them.

use brisk_array::Array;
use brisk_exec::ThreadedExecutor;
use brisk_zarr::{
    ArrayOptions, Dataset, ZarrError, ZarrFormat, ZarrStore, consolidate_metadata, create_array,
    create_group, open_array, open_dataset, to_zarr, to_zarr_dataset,
};
use ndarray::ArrayD;
use serde_json::{Map, Value, json};

fn exec() -> ThreadedExecutor {
    ThreadedExecutor::new(2).unwrap()
}

struct Vars {
    temperature: Array<f32>,
    mask: Array<u8>,
    time: Array<f64>,
    x: Array<f64>,
}

fn vars() -> Vars {
    let t = ndarray::Array2::from_shape_fn((6, 5), |(i, j)| (i * 10 + j) as f32);
    let m = ndarray::Array2::from_shape_fn((6, 5), |(i, j)| ((i + j) % 2) as u8);
    let time = ndarray::Array1::from_shape_fn(6, |i| i as f64 * 1.5);
    let x = ndarray::Array1::from_shape_fn(5, |i| i as f64 * 0.25);
    Vars {
        temperature: Array::from_ndarray(&t, &[4, 5]).unwrap(),
        mask: Array::from_ndarray(&m, &[3, 5]).unwrap(),
        time: Array::from_ndarray(&time, &[6]).unwrap(),
        x: Array::from_ndarray(&x, &[5]).unwrap(),
    }
}

fn units(u: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("units".into(), json!(u));
    m
}

fn write(store: &ZarrStore, path: &str, format: ZarrFormat) -> Vars {
    let v = vars();
    let ds = Dataset::new()
        .coord_with_attributes("time", &v.time, units("days"))
        .coord("x", &v.x)
        .variable_with_attributes("temperature", ["time", "x"], &v.temperature, units("K"))
        .variable("mask", ["time", "x"], &v.mask)
        .attribute("title", json!("brisk dataset"));
    let opts = ArrayOptions::new().format(format);
    let written = to_zarr_dataset(&ds, store, path, &opts, &exec()).unwrap();
    assert_eq!(written.len(), 4);
    v
}

fn stores() -> Vec<(ZarrStore, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    vec![
        (ZarrStore::directory(dir.path()).unwrap(), Some(dir)),
        (ZarrStore::memory(), None),
    ]
}

fn check(store: &ZarrStore, path: &str, v: &Vars, consolidated: bool) {
    let e = exec();
    let ds = open_dataset(store, path).unwrap();
    assert_eq!(ds.is_consolidated(), consolidated);
    assert_eq!(ds.attributes()["title"], json!("brisk dataset"));
    assert_eq!(
        ds.dims().into_iter().collect::<Vec<_>>(),
        [("time".to_owned(), 6), ("x".to_owned(), 5)]
    );
    let coords: Vec<&str> = ds.coords().map(|c| c.name.as_str()).collect();
    assert_eq!(coords, ["time", "x"]);
    let data: Vec<&str> = ds.data_variables().map(|c| c.name.as_str()).collect();
    assert_eq!(data, ["mask", "temperature"]);
    let t = &ds.variables()["temperature"];
    assert_eq!(t.dims, ["time", "x"]);
    // No fill value xarray would mask (v2 reads the array's fill value as `_FillValue`).
    assert_eq!(t.encoding.fill_value, None);
    assert_eq!(t.dtype, "float32");
    assert_eq!(t.encoding.units.as_deref(), Some("K"));
    assert!(!t.attributes.contains_key("_ARRAY_DIMENSIONS"));
    assert_eq!(ds.variables()["time"].attributes["units"], json!("days"));
    let got = ds
        .array::<f32>("temperature")
        .unwrap()
        .compute_with(&e)
        .unwrap();
    assert_eq!(got, v.temperature.compute_with(&e).unwrap());
    let got = ds.array::<u8>("mask").unwrap().compute_with(&e).unwrap();
    assert_eq!(got, v.mask.compute_with(&e).unwrap());
    let got = ds.array::<f64>("time").unwrap().compute_with(&e).unwrap();
    assert_eq!(got, v.time.compute_with(&e).unwrap());
    assert!(matches!(
        ds.array::<f64>("temperature"),
        Err(ZarrError::WrongType { .. })
    ));
    assert!(matches!(
        ds.array::<f32>("nope"),
        Err(ZarrError::NotFound { .. })
    ));
}

#[test]
fn a_dataset_round_trips_with_dims_coords_and_attributes_in_v3_and_v2() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        for (store, _dir) in stores() {
            for path in ["", "group/ds"] {
                let v = write(&store, path, format);
                check(&store, path, &v, true);
            }
        }
    }
}

#[test]
fn consolidated_metadata_describes_every_array_in_one_read() {
    // With the arrays' own metadata files gone, the dataset still opens and reads from the
    // group's consolidated metadata alone: nothing else is read for the metadata.
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let dir = tempfile::tempdir().unwrap();
        let store = ZarrStore::directory(dir.path()).unwrap();
        let v = write(&store, "", format);
        for name in ["temperature", "mask", "time", "x"] {
            for file in ["zarr.json", ".zarray", ".zattrs"] {
                let _ = std::fs::remove_file(dir.path().join(name).join(file));
            }
        }
        check(&store, "", &v, true);
    }
}

#[test]
fn a_group_without_consolidated_metadata_opens_from_a_listing() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let dir = tempfile::tempdir().unwrap();
        let store = ZarrStore::directory(dir.path()).unwrap();
        let v = write(&store, "", format);
        match format {
            ZarrFormat::V3 => {
                let p = dir.path().join("zarr.json");
                let mut g: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                g.as_object_mut().unwrap().remove("consolidated_metadata");
                std::fs::write(&p, serde_json::to_vec(&g).unwrap()).unwrap();
            }
            _ => std::fs::remove_file(dir.path().join(".zmetadata")).unwrap(),
        }
        check(&store, "", &v, false);
    }
}

#[test]
fn an_inconsistent_dataset_is_refused_naming_the_variable_and_nothing_is_written() {
    let store = ZarrStore::memory();
    let a = Array::<f32>::zeros(&[4, 3], &[4, 3]).unwrap();
    let b = Array::<f32>::zeros(&[5, 3], &[5, 3]).unwrap();
    let e = exec();
    let opts = ArrayOptions::new();
    let cases: Vec<(Dataset<'_>, &str)> = vec![
        (
            Dataset::new()
                .variable("a", ["t", "x"], &a)
                .variable("b", ["t", "x"], &b),
            "dimension `t` has size 4 in `a` but 5 in `b`",
        ),
        (
            Dataset::new().variable("a", ["t"], &a),
            "has 2 axes but 1 dimension names",
        ),
        (
            Dataset::new()
                .variable("a", ["t", "x"], &a)
                .variable("a", ["t", "x"], &a),
            "given twice",
        ),
        (
            Dataset::new().variable("../a", ["t", "x"], &a),
            "without `/`",
        ),
        (
            Dataset::new().coord("t", &a),
            "has 2 axes but 1 dimension names",
        ),
    ];
    for (ds, says) in cases {
        let err = to_zarr_dataset(&ds, &store, "ds", &opts, &e).unwrap_err();
        assert!(matches!(err, ZarrError::BadOptions(_)), "{err}");
        assert!(err.to_string().contains(says), "{err} should say {says}");
        assert!(open_dataset(&store, "ds").is_err());
    }
}

#[test]
fn overwriting_a_dataset_replaces_it_and_removes_old_variables() {
    for (store, _dir) in stores() {
        let v = write(&store, "ds", ZarrFormat::V3);
        let ds = Dataset::new().variable("mask", ["time", "x"], &v.mask);
        let err = to_zarr_dataset(&ds, &store, "ds", &ArrayOptions::new(), &exec()).unwrap_err();
        assert!(matches!(err, ZarrError::AlreadyExists { .. }), "{err}");
        // The refused write changed nothing.
        check(&store, "ds", &v, true);
        to_zarr_dataset(&ds, &store, "ds", &ArrayOptions::new().overwrite(), &exec()).unwrap();
        let opened = open_dataset(&store, "ds").unwrap();
        assert_eq!(opened.variables().keys().collect::<Vec<_>>(), ["mask"]);
        assert!(opened.attributes().is_empty());
        // The old variables are gone from the store, not only from the metadata.
        assert!(brisk_zarr::open_array(&store, "ds/temperature").is_err());
    }
}

#[test]
fn cf_encodings_are_reported_and_decoded_only_on_request() {
    let store = ZarrStore::memory();
    let raw = ArrayD::from_shape_vec(ndarray::IxDyn(&[4]), vec![0i16, 10, -1, 20]).unwrap();
    let packed = Array::from_ndarray(&raw, &[2]).unwrap();
    let mut attrs = Map::new();
    attrs.insert("scale_factor".into(), json!(0.5));
    attrs.insert("add_offset".into(), json!(100.0));
    attrs.insert("_FillValue".into(), json!(-1));
    attrs.insert("units".into(), json!("degC"));
    attrs.insert("valid_range".into(), json!([0, 100]));
    let ds = Dataset::new().variable_with_attributes("t", ["time"], &packed, attrs);
    to_zarr_dataset(&ds, &store, "", &ArrayOptions::new(), &exec()).unwrap();
    let opened = open_dataset(&store, "").unwrap();
    let enc = &opened.variables()["t"].encoding;
    assert_eq!(enc.scale_factor, Some(0.5));
    assert_eq!(enc.add_offset, Some(100.0));
    assert_eq!(enc.fill_value, Some(json!(-1)));
    assert_eq!(enc.units.as_deref(), Some("degC"));
    assert_eq!(enc.other, ["valid_range"]);
    // Stored values are returned as stored …
    let stored = opened
        .array::<i16>("t")
        .unwrap()
        .compute_with(&exec())
        .unwrap();
    assert_eq!(stored, raw);
    // … and decoded only when asked: fill → NaN, then scale and offset.
    let decoded = opened.decoded("t").unwrap().compute_with(&exec()).unwrap();
    let d: Vec<f64> = decoded.iter().copied().collect();
    assert_eq!(d[0], 100.0);
    assert_eq!(d[1], 105.0);
    assert!(d[2].is_nan());
    assert_eq!(d[3], 110.0);
}

#[test]
fn an_array_where_a_dataset_goes_is_refused_or_replaced() {
    let store = ZarrStore::memory();
    let a = Array::<f32>::zeros(&[3], &[3]).unwrap();
    to_zarr(&a, &store, "ds", None, &ArrayOptions::new(), &exec()).unwrap();
    let ds = Dataset::new().coord("t", &a);
    assert!(matches!(
        to_zarr_dataset(&ds, &store, "ds", &ArrayOptions::new(), &exec()),
        Err(ZarrError::AlreadyExists { .. })
    ));
    to_zarr_dataset(&ds, &store, "ds", &ArrayOptions::new().overwrite(), &exec()).unwrap();
    assert_eq!(open_dataset(&store, "ds").unwrap().dims()["t"], 3);
}

#[test]
fn writing_into_a_consolidated_group_keeps_its_consolidated_metadata_current() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        for (store, _dir) in stores() {
            let v = write(&store, "ds", format);
            let opts = ArrayOptions::new()
                .format(format)
                .dimension_names(["time", "x"]);
            // A new array in the group is listed at once …
            to_zarr(&v.temperature, &store, "ds/copy", None, &opts, &exec()).unwrap();
            let ds = open_dataset(&store, "ds").unwrap();
            assert!(ds.is_consolidated());
            assert_eq!(ds.variables()["copy"].shape, [6, 5]);
            // … a replaced one with its new shape and type, never the stale ones …
            let bigger = Array::<f64>::zeros(&[6, 2], &[6, 2]).unwrap();
            let opts = opts.overwrite();
            to_zarr(&bigger, &store, "ds/copy", None, &opts, &exec()).unwrap();
            let ds = open_dataset(&store, "ds").unwrap();
            assert_eq!(ds.variables()["copy"].shape, [6, 2]);
            assert_eq!(ds.variables()["copy"].dtype, "float64");
            assert_eq!(
                ds.array::<f64>("copy")
                    .unwrap()
                    .compute_with(&exec())
                    .unwrap()
                    .len(),
                12
            );
            // … and so are new attributes and arrays created without data.
            let mut z = open_array(&store, "ds/copy").unwrap();
            z.set_attributes(units("m")).unwrap();
            create_array::<u8>(
                &store,
                "ds/empty",
                &[2],
                &[2],
                &ArrayOptions::new().format(format),
            )
            .unwrap();
            let ds = open_dataset(&store, "ds").unwrap();
            assert!(ds.is_consolidated());
            assert_eq!(ds.variables()["copy"].attributes["units"], json!("m"));
            assert_eq!(ds.variables()["empty"].shape, [2]);
            assert_eq!(ds.attributes()["title"], json!("brisk dataset"));
        }
    }
}

#[test]
fn consolidate_metadata_describes_a_group_written_array_by_array() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let store = ZarrStore::memory();
        let mut attrs = Map::new();
        attrs.insert("source".into(), json!("by hand"));
        create_group(&store, "g", format == ZarrFormat::V2, attrs).unwrap();
        let v = vars();
        let opts = ArrayOptions::new().format(format);
        to_zarr(
            &v.time,
            &store,
            "g/time",
            None,
            &opts.clone().dimension_names(["time"]),
            &exec(),
        )
        .unwrap();
        assert!(!open_dataset(&store, "g").unwrap().is_consolidated());
        consolidate_metadata(&store, "g").unwrap();
        let ds = open_dataset(&store, "g").unwrap();
        assert!(ds.is_consolidated());
        assert_eq!(ds.attributes()["source"], json!("by hand"));
        assert_eq!(
            ds.coords().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["time"]
        );
        assert!(matches!(
            consolidate_metadata(&store, "nothing"),
            Err(ZarrError::NotFound { .. })
        ));
    }
}

//! Brisk side of the dataset cases of `cargo xtask interop` (see
//! `benches/zarr/dataset_interop.py` for the dataset both sides agree on).
//!
//! ```text
//! dataset_interop write DIR   # DIR/v3 and DIR/v2 with to_zarr_dataset, for xarray to check
//! dataset_interop check DIR   # DIR/{v3,v2}-{consolidated,listed}, written by xarray
//! ```

#![allow(clippy::print_stdout, reason = "reports each case to the terminal")]

use std::path::Path;

use anyhow::{Context, bail, ensure};
use brisk::array::Array;
use brisk::exec::ThreadedExecutor;
use brisk::zarr::{ArrayOptions, Dataset, ZarrFormat, ZarrStore, open_dataset, to_zarr_dataset};
use ndarray::{Array1, Array2};
use serde_json::{Map, Value, json};

const T: usize = 6;
const X: usize = 5;

fn temperature() -> Array2<f32> {
    Array2::from_shape_fn((T, X), |(t, x)| (t * 10 + x) as f32)
}

fn mask() -> Array2<u8> {
    Array2::from_shape_fn((T, X), |(t, x)| ((t + x) % 2) as u8)
}

fn time() -> Array1<f64> {
    Array1::from_shape_fn(T, |i| i as f64 * 1.5)
}

fn xs() -> Array1<f64> {
    Array1::from_shape_fn(X, |i| i as f64 * 0.25)
}

fn units(u: &str) -> Map<String, Value> {
    [("units".to_owned(), json!(u))].into_iter().collect()
}

fn write(root: &Path, exec: &ThreadedExecutor) -> anyhow::Result<()> {
    let temperature = Array::from_ndarray(&temperature(), &[4, 5])?;
    let mask = Array::from_ndarray(&mask(), &[3, 5])?;
    let time = Array::from_ndarray(&time(), &[6])?;
    let x = Array::from_ndarray(&xs(), &[5])?;
    let ds = Dataset::new()
        .coord_with_attributes("time", &time, units("days"))
        .coord("x", &x)
        .variable_with_attributes("temperature", ["time", "x"], &temperature, units("K"))
        .variable("mask", ["time", "x"], &mask)
        .attribute("title", json!("brisk dataset"));
    for (name, format) in [("v3", ZarrFormat::V3), ("v2", ZarrFormat::V2)] {
        let store = ZarrStore::directory(root.join(name))?;
        let opts = ArrayOptions::new().format(format).overwrite();
        to_zarr_dataset(&ds, &store, "", &opts, exec)?;
        println!("brisk wrote {}", root.join(name).display());
    }
    Ok(())
}

fn check(root: &Path, exec: &ThreadedExecutor) -> anyhow::Result<()> {
    for name in [
        "v3-consolidated",
        "v3-listed",
        "v2-consolidated",
        "v2-listed",
    ] {
        let path = root.join(name);
        let store = ZarrStore::directory(&path)?;
        let ds = open_dataset(&store, "").with_context(|| format!("opening {name}"))?;
        ensure!(
            ds.is_consolidated() == name.ends_with("consolidated"),
            "{name}: consolidated = {}",
            ds.is_consolidated()
        );
        let dims: Vec<(String, usize)> = ds.dims().into_iter().collect();
        ensure!(
            dims == [("time".to_owned(), T), ("x".to_owned(), X)],
            "{name}: dims {dims:?}"
        );
        let coords: Vec<&str> = ds.coords().map(|c| c.name.as_str()).collect();
        ensure!(coords == ["time", "x"], "{name}: coords {coords:?}");
        let data: Vec<&str> = ds.data_variables().map(|c| c.name.as_str()).collect();
        ensure!(
            data == ["mask", "packed", "temperature"],
            "{name}: data variables {data:?}"
        );
        ensure!(
            ds.attributes().get("title") == Some(&json!("brisk dataset")),
            "{name}: attributes {:?}",
            ds.attributes()
        );
        let t = &ds.variables()["temperature"];
        ensure!(
            t.dims == ["time", "x"],
            "{name}: temperature dims {:?}",
            t.dims
        );
        ensure!(
            t.encoding.units.as_deref() == Some("K"),
            "{name}: temperature encoding {:?}",
            t.encoding
        );
        let got = ds.array::<f32>("temperature")?.compute_with(exec)?;
        ensure!(got == temperature().into_dyn(), "{name}: temperature {got}");
        let got = ds.array::<u8>("mask")?.compute_with(exec)?;
        ensure!(got == mask().into_dyn(), "{name}: mask {got}");
        let got = ds.array::<f64>("time")?.compute_with(exec)?;
        ensure!(got == time().into_dyn(), "{name}: time {got}");
        // CF-encoded: reported, stored values as stored, decoded only on request.
        let p = &ds.variables()["packed"];
        ensure!(p.dtype == "int16", "{name}: packed stored as {}", p.dtype);
        ensure!(
            p.encoding.scale_factor == Some(0.5) && p.encoding.add_offset == Some(100.0),
            "{name}: packed encoding {:?}",
            p.encoding
        );
        let raw = ds.array::<i16>("packed")?.compute_with(exec)?;
        ensure!(raw[[2, 3]] == -1, "{name}: stored fill {}", raw[[2, 3]]);
        let decoded = ds.decoded("packed")?.compute_with(exec)?;
        for ((t, x), want) in temperature().indexed_iter() {
            let got = decoded[[t, x]];
            if (t, x) == (2, 3) {
                ensure!(got.is_nan(), "{name}: packed[2, 3] = {got}, not NaN");
            } else if got != f64::from(*want) / 2.0 + 100.0 {
                bail!("{name}: packed[{t}, {x}] = {got}");
            }
        }
        println!(
            "brisk opened {}: dims, coords, values, attributes and CF decoding as written",
            path.display()
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(dir)) = (args.get(1), args.get(2)) else {
        bail!("usage: dataset_interop write|check DIR");
    };
    let exec = ThreadedExecutor::new(2)?;
    match cmd.as_str() {
        "write" => write(Path::new(dir), &exec),
        "check" => check(Path::new(dir), &exec),
        other => bail!("unknown command {other}"),
    }
}

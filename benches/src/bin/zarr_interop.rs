//! Brisk side of `cargo xtask interop`: writes the cases of `benches/zarr/cases.json` for
//! zarr-python to check, and checks the arrays zarr-python wrote.
//!
//! ```text
//! zarr_interop write DIR    # every case under DIR/<name>
//! zarr_interop check DIR    # arrays written by benches/zarr/interop.py
//! ```

#![allow(clippy::print_stdout, reason = "reports each case to the terminal")]

use std::path::Path;

use anyhow::{Context, bail, ensure};
use brisk::array::{Array, Element};
use brisk::exec::ThreadedExecutor;
use brisk::zarr::{
    ArrayOptions, BloscShuffle, Compressor, ZarrElement, ZarrFormat, ZarrStore, from_zarr,
    open_array, to_zarr,
};
use ndarray::{ArrayD, IxDyn};
use serde_json::{Value, json};

const CASES: &str = include_str!("../../zarr/cases.json");

fn expected<T: Element>(shape: &[usize], dtype: &str) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| {
            if dtype == "bool" {
                T::from_f64(if i % 3 == 0 { 1.0 } else { 0.0 })
            } else {
                T::from_f64(((i * 37) % 113) as f64)
            }
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("length matches the shape")
}

/// The fields of a case both directions use.
struct Case<'a> {
    name: &'a str,
    shape: Vec<usize>,
    dtype: &'a str,
}

impl<'a> Case<'a> {
    fn parse(case: &'a Value) -> anyhow::Result<Self> {
        Ok(Self {
            name: case["name"].as_str().context("case name")?,
            shape: serde_json::from_value(case["shape"].clone())?,
            dtype: case["dtype"].as_str().context("dtype")?,
        })
    }
}

fn write_case<T: ZarrElement>(
    root: &Path,
    case: &Value,
    exec: &ThreadedExecutor,
) -> anyhow::Result<()> {
    let Case { name, shape, dtype } = Case::parse(case)?;
    let chunks: Vec<usize> = serde_json::from_value(case["chunks"].clone())?;
    let dims: Vec<String> = (0..shape.len()).map(|k| format!("d{k}")).collect();
    let mut opts = ArrayOptions::new()
        .format(if case["format"] == 2 {
            ZarrFormat::V2
        } else {
            ZarrFormat::V3
        })
        .compressor(match case["codec"].as_str() {
            Some("zstd") => Compressor::Zstd {
                level: 3,
                checksum: case["zstd_checksum"] == true,
            },
            Some("blosc") => Compressor::Blosc {
                cname: "lz4".into(),
                clevel: 5,
                shuffle: BloscShuffle::Byte,
            },
            Some("gzip") => Compressor::Gzip { level: 5 },
            _ => Compressor::None,
        })
        .dimension_names(dims)
        .attribute("writer", json!("brisk"))
        .attribute("case", json!(name))
        .attribute("nested", json!({"list": [1, 2.5, "x"]}))
        .overwrite();
    if let Some(s) = case.get("shards") {
        opts = opts.shards(serde_json::from_value(s.clone())?);
    }
    if case["crc32c"] == true {
        opts = opts.crc32c();
    }
    let data = Array::from_ndarray(&expected::<T>(&shape, dtype), &[7; 8][..shape.len()])?;
    let store = ZarrStore::directory(root.join(name))?;
    to_zarr(&data, &store, "/", Some(&chunks), &opts, exec)?;
    println!("wrote {name}");
    Ok(())
}

fn check_case<T: ZarrElement + PartialEq>(
    root: &Path,
    case: &Value,
    exec: &ThreadedExecutor,
) -> anyhow::Result<()> {
    let Case { name, shape, dtype } = Case::parse(case)?;
    let store = ZarrStore::directory(root.join(name))?;
    let z = open_array(&store, "/")?;
    ensure!(z.is_v2() == (case["format"] == 2), "format");
    let dims: Vec<String> = (0..shape.len()).map(|k| format!("d{k}")).collect();
    ensure!(
        z.dimension_names() == Some(dims),
        "dimension names {:?}",
        z.dimension_names()
    );
    let attrs = z.attributes();
    ensure!(
        attrs.get("writer") == Some(&json!("zarr-python")),
        "attributes {attrs:?}"
    );
    ensure!(
        attrs.get("nested") == Some(&json!({"list": [1, 2.5, "x"]})),
        "attributes {attrs:?}"
    );
    // The array's own codecs (a sharded array's index carries a crc32c of its own).
    let codecs = z.metadata_json()["codecs"].clone();
    let names: Vec<&str> = codecs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    ensure!(
        (case["crc32c"] == true) == names.contains(&"crc32c"),
        "codecs {names:?}"
    );
    let got = from_zarr::<T>(&store, "/")?.compute_with(exec)?;
    ensure!(got == expected::<T>(&shape, dtype), "values differ");
    println!("ok   {name}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, dir] = &args[..] else {
        bail!("usage: zarr_interop write|check DIR");
    };
    let root = Path::new(dir);
    let cases: Vec<Value> = serde_json::from_str(CASES)?;
    let exec = ThreadedExecutor::new(2)?;
    let mut failed = 0;
    for case in &cases {
        let dtype = case["dtype"].as_str().context("dtype")?;
        macro_rules! run {
            ($t:ty) => {
                if mode == "write" {
                    write_case::<$t>(root, case, &exec)
                } else {
                    check_case::<$t>(root, case, &exec)
                }
            };
        }
        let r = match dtype {
            "float32" => run!(f32),
            "float64" => run!(f64),
            "int16" => run!(i16),
            "int32" => run!(i32),
            "int64" => run!(i64),
            "uint8" => run!(u8),
            "uint16" => run!(u16),
            "bool" => run!(bool),
            other => Err(anyhow::anyhow!("unsupported dtype {other}")),
        };
        if let Err(e) = r {
            failed += 1;
            println!("FAIL {}: {e:#}", case["name"]);
        }
    }
    ensure!(failed == 0, "{failed} case(s) failed");
    Ok(())
}

//! Writes checkpoint entries with every encoder combination to a directory store, and a
//! `manifest.json` saying how each is encoded and what it must decode to; Python
//! (`benches/checkpoint/interop.py`, run by `cargo xtask interop`) decodes every entry with
//! its own libraries (zstandard, json, yaml, msgpack, numpy, cryptography) and compares.
//!
//! ```text
//! checkpoint_interop DIR
//! ```

#![allow(
    clippy::print_stdout,
    reason = "a command-line tool reports to the terminal"
)]

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use brisk::checkpoint::{
    Compressor, DirStore, Encoder, Encrypter, KdfParams, SaveWith, Serializer, Storage,
};
use brisk::exec::SequentialExecutor;
use brisk::graph::{Delayed, TaskSpec};
use serde_json::json;

#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Debug)]
struct Record {
    name: String,
    values: Vec<f64>,
    counts: BTreeMap<String, u32>,
    flag: bool,
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: checkpoint_interop DIR")?;
    let store = DirStore::new(&dir)?;
    let raw_key = [0x5au8; 32];
    let passphrase = "interop passphrase";
    let from_pass = Encrypter::from_passphrase(
        &store,
        passphrase,
        KdfParams {
            m_cost: 1024,
            t_cost: 2,
            p_cost: 1,
        },
    )?;
    let record = Record {
        name: "point".into(),
        values: vec![1.5, -2.25, 12345.125],
        counts: BTreeMap::from([("a".into(), 1), ("b".into(), 2)]),
        flag: true,
    };
    let expected_record = serde_json::to_value(&record)?;
    let array = ndarray::Array2::from_shape_fn((3, 5), |(i, j)| i as f64 * 10.0 + j as f64 / 4.0);
    let ints = ndarray::Array1::from_iter(-3i32..4);
    let storage = Storage::new(store);
    let mut manifest = Vec::new();

    let serializers = [
        ("json", Serializer::Json),
        ("yaml", Serializer::Yaml),
        ("msgpack", Serializer::MessagePack),
    ];
    let mut n = 0;
    let mut add =
        |key: String, ser: &str, zstd: bool, enc: Option<&str>, expected: serde_json::Value| {
            manifest.push(json!({
            "key": key, "serializer": ser, "zstd": zstd, "encryption": enc, "expected": expected,
        }));
        };
    for (ser_name, ser) in serializers {
        for zstd in [false, true] {
            for enc in [None, Some("key"), Some("passphrase")] {
                n += 1;
                let mut e = Encoder::new().serializer(ser);
                e = if zstd {
                    e.compressor(Compressor::Zstd { level: 3 })
                } else {
                    e.no_compressor()
                };
                e = match enc {
                    Some("key") => e.encrypter(Encrypter::from_key(raw_key)),
                    Some(_) => e.encrypter(from_pass.clone()),
                    None => e,
                };
                // The record is an argument: a pure task's key covers it.
                let d: Delayed<Record> = TaskSpec::new(format!("record_{ser_name}"))
                    .pure()
                    .call(|_: u32, r: Record| r, (n, record.clone()))
                    .save_with(e);
                d.compute_with_options(&SequentialExecutor, &storage.options())?;
                add(
                    d.storage_key(),
                    ser_name,
                    zstd,
                    enc,
                    expected_record.clone(),
                );
            }
        }
    }
    for (zstd, enc) in [(false, None), (true, None), (true, Some("key"))] {
        let mut e = Encoder::new().serializer(Serializer::Npy);
        if !zstd {
            e = e.no_compressor();
        }
        if enc.is_some() {
            e = e.encrypter(Encrypter::from_key(raw_key));
        }
        let d = TaskSpec::new("array_f64")
            .pure()
            .call(
                |_: bool, _: bool, a: ndarray::Array2<f64>| a,
                (zstd, enc.is_some(), array.clone()),
            )
            .save_with(e);
        d.compute_with_options(&SequentialExecutor, &storage.options())?;
        add(
            d.storage_key(),
            "npy",
            zstd,
            enc,
            json!({"dtype": "<f8", "shape": [3, 5], "data": array.iter().collect::<Vec<_>>()}),
        );
    }
    let d = TaskSpec::new("array_i32")
        .pure()
        .call(|v: ndarray::Array1<i32>| v, (ints.clone(),))
        .save_with(Encoder::new().serializer(Serializer::Npy));
    d.compute_with_options(&SequentialExecutor, &storage.options())?;
    add(
        d.storage_key(),
        "npy",
        true,
        None,
        json!({"dtype": "<i4", "shape": [7], "data": ints.iter().collect::<Vec<_>>()}),
    );
    if manifest.len() != 22 {
        bail!("expected 22 entries, wrote {}", manifest.len());
    }
    let doc = json!({
        "raw_key_hex": raw_key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "passphrase": passphrase,
        "entries": manifest,
    });
    std::fs::write(
        std::path::Path::new(&dir).join("manifest.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    println!(
        "wrote {} checkpoint entries to {dir}",
        doc["entries"].as_array().map_or(0, Vec::len)
    );
    Ok(())
}

//! The storage soak of `cargo xtask soak`: writers killed with SIGKILL at random points, and
//! stored entries and chunks mutated and read back. Every mode prints one JSON line of counts.
//!
//! ```text
//! soak child KIND DIR        # writes forever: KIND = checkpoint | zarr-fresh | zarr-overwrite
//! soak verify KIND DIR       # checks what a killed child left, then writes once more
//! soak mutate N              # about N mutations of checkpoint entries and Zarr chunks
//! ```
//!
//! `verify` counts, for checkpoints: entries that decode to a wrong value or fail to decode
//! (`wrong`, `errors`), and temporary files of the dead writer left after the next write in
//! their directory (`temps_left`); for Zarr: arrays that open but are not one whole write
//! (`partial`), an overwritten array that no longer opens (`lost`), and staging trees of the
//! dead writer left after the next write (`stages_left`; `*_before` count what the killed
//! writer left, before the next write). `mutate` counts wrong values,
//! errors, unchanged reads (a flip in bytes the decoder ignores) and panics.

#![allow(clippy::print_stdout, reason = "prints its counts for xtask")]

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use brisk::array::Array;
use brisk::checkpoint::{Compressor, DirStore, Encoder, Encrypter, Serializer, Storage, Store};
use brisk::exec::{SequentialExecutor, ThreadedExecutor};
use brisk::graph::{Delayed, SaveSpec, TaskSpec, Value};
use brisk::zarr::{ArrayOptions, ZarrError, ZarrStore, from_zarr_with, to_zarr};
use ndarray::ArrayD;
use serde_json::json;

/// The value checkpoint entry `k` holds: `k` first, then numbers derived from it.
fn entry_value(k: u64) -> Vec<f64> {
    (0..2000u64)
        .map(|i| k as f64 + (i as f64) * 0.5 - (i % 7) as f64 * 1e-3)
        .collect()
}

fn entry_task(k: u64) -> Delayed<Vec<f64>> {
    TaskSpec::new("soak-entry")
        .pure()
        .call(entry_value, (k,))
        .checkpointed()
}

/// The save spec of a checkpointed `T` (taken from a real node).
fn spec_of<T: Send + Sync + 'static>(d: &Delayed<T>) -> anyhow::Result<SaveSpec> {
    let g = brisk::graph::Graph::new([d]);
    let node = g.node(g.outputs()[0]);
    node.save_spec()
        .copied()
        .context("a checkpointed node has a save spec")
}

const SHAPE: [usize; 2] = [2048, 1024];
const CHUNKS: [usize; 2] = [128, 1024];

/// The array write `k` of the Zarr kinds: normal numbers from seed `k`.
fn zarr_array(k: u64) -> anyhow::Result<Array<f32>> {
    Ok(Array::<f32>::random_normal(&SHAPE, &CHUNKS, k, 0.0, 1.0)?)
}

fn zarr_opts(k: u64) -> ArrayOptions {
    ArrayOptions::new().attribute("seed", json!(k)).overwrite()
}

fn child(kind: &str, dir: &Path) -> anyhow::Result<()> {
    match kind {
        "checkpoint" => {
            let storage = Storage::new(DirStore::new(dir)?);
            let exec = ThreadedExecutor::new(2)?;
            for k in 0u64.. {
                let parts: Delayed<Vec<Vec<f64>>> = (4 * k..4 * k + 4).map(entry_task).collect();
                parts.compute_with_options(&exec, &storage.options())?;
            }
        }
        "zarr-fresh" => {
            let store = ZarrStore::directory(dir)?;
            let exec = ThreadedExecutor::new(2)?;
            for k in 0u64.. {
                to_zarr(
                    &zarr_array(k)?,
                    &store,
                    &format!("a{k}"),
                    None,
                    &zarr_opts(k),
                    &exec,
                )?;
            }
        }
        "zarr-overwrite" => {
            let store = ZarrStore::directory(dir)?;
            let exec = ThreadedExecutor::new(2)?;
            for k in 1u64.. {
                to_zarr(&zarr_array(k)?, &store, "x", None, &zarr_opts(k), &exec)?;
            }
        }
        other => bail!("unknown kind `{other}`"),
    }
    Ok(())
}

/// Whether the array at `path` is one whole write (its values are those of its seed).
fn whole_array(store: &ZarrStore, path: &str) -> Result<bool, ZarrError> {
    let za = brisk::zarr::open_array(store, path)?;
    let Some(seed) = za
        .attributes()
        .get("seed")
        .and_then(serde_json::Value::as_u64)
    else {
        return Ok(false);
    };
    let got = from_zarr_with::<f32>(store, path, brisk::zarr::IoOptions::new())?
        .compute_with(&SequentialExecutor)?;
    let want = zarr_array(seed)
        .map_err(|e| ZarrError::BadOptions(e.to_string()))?
        .compute_with(&SequentialExecutor)?;
    Ok(got == want)
}

/// Hidden names under `dir` that contain `mark`.
fn hidden_with(dir: &Path, mark: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(mark) {
                n += 1;
            } else if e.file_type()?.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(n)
}

fn verify(kind: &str, dir: &Path) -> anyhow::Result<()> {
    match kind {
        "checkpoint" => {
            let store = DirStore::new(dir)?;
            let spec = spec_of(&entry_task(0))?;
            let enc = Encoder::new();
            let (mut checked, mut wrong, mut errors) = (0u64, 0u64, 0u64);
            let temps_before = hidden_with(dir, ".brisk-tmp-")?;
            for key in store.list("")? {
                let bytes = store.get(&key)?.context("a listed key has a value")?;
                checked += 1;
                match enc.decode(&spec, &bytes, &key) {
                    Ok(v) => {
                        let v = v.downcast_ref::<Vec<f64>>().context("a Vec<f64>")?;
                        let k = v.first().copied().unwrap_or(-1.0);
                        if k < 0.0 || *v != entry_value(k as u64) {
                            wrong += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            // The next writer: one more save in the same directory.
            let storage = Storage::new(store);
            entry_task(u64::MAX / 2)
                .compute_with_options(&SequentialExecutor, &storage.options())?;
            let temps_left = hidden_with(dir, ".brisk-tmp-")?;
            println!(
                "{}",
                json!({"kind": kind, "checked": checked, "wrong": wrong, "errors": errors,
                       "temps_before": temps_before, "temps_left": temps_left})
            );
        }
        "zarr-fresh" | "zarr-overwrite" => {
            let store = ZarrStore::directory(dir)?;
            let (mut checked, mut partial, mut lost) = (0u64, 0u64, 0u64);
            let stages_before = hidden_with(dir, ".brisk-stage-")?;
            let mut names: Vec<String> = std::fs::read_dir(dir)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            names.retain(|n| !n.starts_with('.'));
            if kind == "zarr-overwrite" && !names.iter().any(|n| n == "x") {
                lost += 1; // the parent wrote `x` before the child started
            }
            for name in &names {
                checked += 1;
                match whole_array(&store, name) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => partial += 1,
                }
            }
            // The next writer beside the dead one's staging trees.
            let next = if kind == "zarr-fresh" { "next" } else { "x" };
            to_zarr(
                &zarr_array(7)?,
                &store,
                next,
                None,
                &zarr_opts(7),
                &SequentialExecutor,
            )?;
            let stages_left = hidden_with(dir, ".brisk-stage-")?;
            println!(
                "{}",
                json!({"kind": kind, "checked": checked, "partial": partial, "lost": lost,
                       "stages_before": stages_before, "stages_left": stages_left})
            );
        }
        other => bail!("unknown kind `{other}`"),
    }
    Ok(())
}

/// Counts of one mutation run.
#[derive(Default)]
struct Counts {
    mutations: u64,
    wrong: u64,
    errors: u64,
    unchanged: u64,
    panics: u64,
}

impl Counts {
    /// Records one read of a mutated entry: `Ok(true)` equal to the original, `Ok(false)` a
    /// different value, `Err` an error, `None` a panic.
    fn record(&mut self, outcome: Option<Result<bool, ()>>) {
        self.mutations += 1;
        match outcome {
            Some(Ok(true)) => self.unchanged += 1,
            Some(Ok(false)) => self.wrong += 1,
            Some(Err(())) => self.errors += 1,
            None => self.panics += 1,
        }
    }
}

/// The byte masks of single-byte flips: every single bit, and all bits.
const MASKS: [u8; 9] = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff];

/// The mutations of `bytes`: single-byte flips (every mask) at `stride`-spaced positions,
/// truncations at `stride`-spaced lengths, and a declared size made huge (the content size of
/// a zstd frame, or an `.npy` shape).
fn mutations(bytes: &[u8], stride: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for at in (0..bytes.len()).step_by(stride.max(1)) {
        for mask in MASKS {
            let mut b = bytes.to_vec();
            b[at] ^= mask;
            out.push(b);
        }
        out.push(bytes[..at].to_vec());
    }
    // A zstd frame with an 8-byte content size (descriptor bits 7-6 = 3): declare 2^62 bytes.
    if let Some(pos) = bytes.windows(4).position(|w| w == [0x28, 0xb5, 0x2f, 0xfd]) {
        let desc = bytes.get(pos + 4).copied().unwrap_or(0);
        if desc >> 6 == 3 {
            let at = pos + 5 + usize::from(desc & 0x20 == 0);
            if bytes.len() >= at + 8 {
                let mut b = bytes.to_vec();
                b[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
                out.push(b);
            }
        }
    }
    // An `.npy` shape of all nines.
    if let Some(pos) = bytes.windows(8).position(|w| w == b"'shape':") {
        let mut b = bytes.to_vec();
        for x in b.iter_mut().skip(pos + 8).take_while(|c| **c != b')') {
            if x.is_ascii_digit() {
                *x = b'9';
            }
        }
        out.push(b);
    }
    out
}

fn mutate(budget: u64) -> anyhow::Result<()> {
    let key = [7u8; 32];
    let setups: Vec<(&str, Encoder)> = vec![
        ("json+zstd", Encoder::new()),
        ("yaml+zstd", Encoder::new().serializer(Serializer::Yaml)),
        (
            "msgpack+zstd",
            Encoder::new().serializer(Serializer::MessagePack),
        ),
        ("json", Encoder::new().no_compressor()),
        (
            "msgpack",
            Encoder::new()
                .serializer(Serializer::MessagePack)
                .no_compressor(),
        ),
        (
            "json+aes",
            Encoder::new()
                .no_compressor()
                .encrypter(Encrypter::from_key(key)),
        ),
        (
            "msgpack+zstd+aes",
            Encoder::new()
                .serializer(Serializer::MessagePack)
                .compressor(Compressor::Zstd { level: 3 })
                .encrypter(Encrypter::from_key(key)),
        ),
    ];
    let npy_setups: Vec<(&str, Encoder)> = vec![
        ("npy+zstd", Encoder::new().serializer(Serializer::Npy)),
        (
            "npy",
            Encoder::new().serializer(Serializer::Npy).no_compressor(),
        ),
    ];
    let values: Vec<Vec<f64>> = vec![
        entry_value(3),
        (0..40).map(|i| f64::from(i).sin()).collect(),
        vec![0.0; 300],
    ];
    let arrays: Vec<ArrayD<f64>> = vec![
        ArrayD::from_shape_fn(ndarray::IxDyn(&[16, 9]), |i| {
            (i[0] * 9 + i[1]) as f64 * 0.25
        }),
        ArrayD::zeros(ndarray::IxDyn(&[64])),
    ];
    let vec_spec = spec_of(&entry_task(0))?;
    let arr_spec = spec_of(
        &TaskSpec::new("a")
            .pure()
            .call(|| ArrayD::<f64>::zeros(ndarray::IxDyn(&[1])), ())
            .checkpointed(),
    )?;
    // Entries to mutate: (setup, encoder, spec, value, bytes).
    let mut entries: Vec<(String, Encoder, SaveSpec, Value, Vec<u8>)> = Vec::new();
    for (name, enc) in &setups {
        for v in &values {
            let value: Value = Arc::new(v.clone());
            let bytes = enc.encode(&vec_spec, &value, "soak/k")?;
            entries.push(((*name).into(), enc.clone(), vec_spec, value, bytes));
        }
    }
    for (name, enc) in &npy_setups {
        for a in &arrays {
            let value: Value = Arc::new(a.clone());
            let bytes = enc.encode(&arr_spec, &value, "soak/k")?;
            entries.push(((*name).into(), enc.clone(), arr_spec, value, bytes));
        }
    }
    // Zarr chunks of the arrays Brisk writes by default, and with crc32c.
    let zdir = std::env::temp_dir().join(format!("brisk-soak-{}", std::process::id()));
    let zstore = ZarrStore::directory(&zdir)?;
    let zarrs = [
        ("zarr-default", ArrayOptions::new().overwrite()),
        (
            "zarr-crc32c",
            ArrayOptions::new()
                .compressor(brisk::zarr::Compressor::None)
                .crc32c()
                .overwrite(),
        ),
    ];
    let src = Array::<f32>::random_normal(&[64, 64], &[32, 32], 11, 0.0, 1.0)?;
    let want = src.compute_with(&SequentialExecutor)?;
    for (name, opts) in &zarrs {
        to_zarr(&src, &zstore, name, None, opts, &SequentialExecutor)?;
    }
    let chunk_bytes: u64 = zarrs
        .iter()
        .map(|(name, _)| std::fs::metadata(zdir.join(name).join("c/1/0")).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    let total_bytes: u64 = entries.iter().map(|e| e.4.len() as u64).sum::<u64>() + chunk_bytes;
    // Ten mutations per position (nine flips and a cut): the stride that fits the budget.
    let per_position = MASKS.len() as u64 + 1;
    let stride = usize::try_from((per_position * total_bytes).div_ceil(budget.max(1))).unwrap_or(1);

    let mut by_setup: std::collections::BTreeMap<String, Counts> = Default::default();
    for (name, enc, spec, value, bytes) in &entries {
        let counts = by_setup.entry(name.clone()).or_default();
        for bad in mutations(bytes, stride) {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match enc.decode(spec, &bad, "soak/k") {
                    Ok(v) => Ok(same(&v, value)),
                    Err(_) => Err(()),
                }
            }))
            .ok();
            counts.record(outcome);
        }
    }
    for (name, _) in &zarrs {
        let chunk = zdir.join(name).join("c/1/0");
        let good = std::fs::read(&chunk)?;
        let counts = by_setup.entry((*name).into()).or_default();
        for bad in mutations(&good, stride) {
            std::fs::write(&chunk, &bad)?;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match from_zarr_with::<f32>(&zstore, name, brisk::zarr::IoOptions::new())
                    .and_then(|x| Ok(x.compute_with(&SequentialExecutor)?))
                {
                    Ok(got) => Ok(got == want),
                    Err(_) => Err(()),
                }
            }))
            .ok();
            counts.record(outcome);
        }
        std::fs::write(&chunk, &good)?;
    }
    let _ = std::fs::remove_dir_all(&zdir);
    let mut total = Counts::default();
    let mut setups_json = serde_json::Map::new();
    for (name, c) in &by_setup {
        total.mutations += c.mutations;
        total.wrong += c.wrong;
        total.errors += c.errors;
        total.unchanged += c.unchanged;
        total.panics += c.panics;
        setups_json.insert(
            name.clone(),
            json!({"mutations": c.mutations, "wrong": c.wrong, "errors": c.errors,
                   "unchanged": c.unchanged, "panics": c.panics}),
        );
    }
    println!(
        "{}",
        json!({"kind": "mutate", "mutations": total.mutations, "wrong": total.wrong,
               "errors": total.errors, "unchanged": total.unchanged, "panics": total.panics,
               "setups": setups_json})
    );
    Ok(())
}

/// Whether two decoded values are the same `Vec<f64>` or `ArrayD<f64>` (bit for bit).
fn same(a: &Value, b: &Value) -> bool {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    if let (Some(x), Some(y)) = (a.downcast_ref::<Vec<f64>>(), b.downcast_ref::<Vec<f64>>()) {
        return bits(x) == bits(y);
    }
    if let (Some(x), Some(y)) = (
        a.downcast_ref::<ArrayD<f64>>(),
        b.downcast_ref::<ArrayD<f64>>(),
    ) {
        return x.shape() == y.shape()
            && bits(&x.iter().copied().collect::<Vec<_>>())
                == bits(&y.iter().copied().collect::<Vec<_>>());
    }
    false
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["child", kind, dir] => child(kind, Path::new(dir)),
        ["verify", kind, dir] => verify(kind, Path::new(dir)),
        ["mutate", n] => mutate(n.parse().context("mutate takes a count")?),
        _ => bail!("usage: soak child|verify KIND DIR | soak mutate N"),
    }
}

//! Times one comparison scenario in Brisk and prints a JSON line (used by
//! `cargo xtask bench --compare-dask`; the Python peer is `benches/dask/compare.py`).
//!
//! ```text
//! compare --scenario graph/indep/100000 --workers 2 --repeat 3
//! ```
//! Scenarios: `graph/{indep,chain,tree}/N` (build, then compute on the threaded executor) and
//! `futures/{map,batched}/N` (the futures API on a `threads://W` handler) and `array/mean/G`
//! (a reduction over G x G small chunks: what an array layer adds per chunk). The reported times
//! are those of the fastest repetition; graph, futures and array scenarios also report the first
//! repetition's total (`first_total_s`). Zarr scenarios also measure the zstd limit of the
//! phase (see `zstd_limit`) unless `--no-limit` is given; `--pinned` reads with
//! `IoOptions::pinned` (to measure what pinning costs).

#![allow(
    clippy::print_stdout,
    reason = "the harness reads the JSON line from stdout"
)]

use std::sync::Arc;

/// jemalloc keeps freed chunk buffers for reuse where glibc returns every buffer above 32 MiB
/// to the kernel, whose page faults then dominate reading big chunks (see ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::time::Instant;

use anyhow::{Context, bail};
use benches::{chain, expected, futures_batched, futures_map, indep, tree};
use brisk::exec::{Handler, ThreadedExecutor};
use brisk::graph::{ComputeOptions, Executor, Graph};

/// What `compare --help` prints.
const USAGE: &str = "\
compare --scenario KIND/SHAPE/N [options]: times one scenario in Brisk, prints a JSON line

scenarios:
  graph/{indep,chain,tree}/N     build a lazy graph of trivial tasks, then run it
  futures/{map,batched}/N        Handler::map + gather, or batched_map, over N items
  array/mean/G                   (x^2 + x^3).mean(0) of a 10G x 10G f64 array in G x G chunks
  zarr/{write,write_mem,generate,copy,read_mean}/RxC   an 8000x7500 f32 array in RxC chunks
  disk/seq/MiB                   sequential write and read of a file under --dir
options:
  --workers W        worker threads (default: all cores)
  --repeat R         repetitions; the fastest is reported, and the first as first_total_s (default 3)
  --no-limit         skip the limit measurements (graph: key and run limit, node floor; zarr: zstd)
  --dir PATH         where zarr and disk scenarios write (default target/bench)
  --scale K          zarr: K times the array (with --no-limit, streaming phases only)
  --codec-threads T  zarr: threads inside each chunk's codec (default 1)
  --pinned           zarr read: IoOptions::pinned
  --no-checksum      zarr: skip the checksum of what was read";

fn main() -> anyhow::Result<()> {
    let mut scenario = None;
    let mut dir = std::path::PathBuf::from("target/bench");
    let mut codec_threads = 1usize;
    let mut workers = brisk::exec::available_workers();
    let mut repeat = 3usize;
    let mut with_limit = true;
    let mut pinned = false;
    let mut checksum = true;
    let mut scale = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scenario" => scenario = Some(args.next().context("--scenario needs a value")?),
            "--workers" => workers = args.next().context("--workers needs a value")?.parse()?,
            "--repeat" => repeat = args.next().context("--repeat needs a value")?.parse()?,
            "--no-limit" => with_limit = false,
            "--pinned" => pinned = true,
            "--no-checksum" => checksum = false,
            "--dir" => dir = args.next().context("--dir needs a path")?.into(),
            "--scale" => scale = args.next().context("--scale needs a factor")?.parse()?,
            "--codec-threads" => {
                codec_threads = args
                    .next()
                    .context("--codec-threads needs a value")?
                    .parse()?;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}` (see `compare --help`)"),
        }
    }
    let scenario = scenario.context("--scenario is required")?;
    let parts: Vec<&str> = scenario.split('/').collect();
    let [kind, shape, n] = parts[..] else {
        bail!("scenario `{scenario}` is not kind/shape/N");
    };
    if kind == "disk" {
        return disk_bandwidth(&dir, n);
    }
    if kind == "zarr" {
        if scale != 1 && (shape == "write_mem" || with_limit) {
            bail!(
                "--scale needs --no-limit and a streaming phase (write, generate, copy, read_mean)"
            );
        }
        // One executor for every repetition, as an application keeps its pool.
        let exec = ThreadedExecutor::new(workers)?;
        let mut secs = f64::INFINITY;
        let mut result_mean = None;
        // The in-memory source of `write_mem`, generated once, outside the timing.
        let t = Instant::now();
        let memory = if shape == "write_mem" {
            let chunks = parse_chunking(n)?;
            Some(Arc::new(
                brisk::array::Array::<f32>::random_normal(&SHAPE, &chunks, 42, 2000.0, 1000.0)?
                    .compute_with(&exec)?,
            ))
        } else {
            None
        };
        let generate_s = memory.as_ref().map(|_| t.elapsed().as_secs_f64());
        // CPU time of the fastest repetition's timed part (this process, all threads; the
        // kernel's work on its behalf — copying into the page cache — is `sys`).
        let mut cpu = None;
        for _ in 0..repeat.max(1) {
            let io = brisk::zarr::IoOptions::new()
                .codec_threads(codec_threads)
                .pinned(pinned);
            let (s, m, c) = run_zarr(
                shape,
                n,
                &exec,
                &dir,
                io,
                (checksum, scale),
                memory.as_ref(),
            )?;
            if s < secs {
                cpu = c;
            }
            secs = secs.min(s);
            result_mean = m;
        }
        // Peak RSS of the timed phase, before the limit measurement holds the whole array.
        let rss = peak_rss_mib();
        let limit = if with_limit {
            zstd_limit(shape, n, workers)?
        } else {
            Limit {
                zstd_s: f64::NAN,
                pass_s: f64::NAN,
                compressed_mib: f64::NAN,
            }
        };
        println!(
            "{}",
            serde_json::json!({
                "scenario": scenario,
                "scale": scale,
                "bytes": SHAPE[0] * scale * SHAPE[1] * 4,
                "build_s": 0.0,
                "run_s": secs,
                "total_s": secs,
                "workers": workers,
                "codec_threads": codec_threads,
                "pinned": pinned,
                "peak_rss_mib": rss,
                "limit_s": limit.zstd_s + limit.pass_s,
                "limit_zstd_s": limit.zstd_s,
                "limit_pass_s": limit.pass_s,
                "compressed_mib": limit.compressed_mib,
                "mean": result_mean,
                "generate_s": generate_s,
                "cpu_user_s": cpu.map(|c| c.0),
                "cpu_sys_s": cpu.map(|c| c.1),
            })
        );
        return Ok(());
    }
    let n: usize = n.parse().with_context(|| format!("size in `{scenario}`"))?;
    let mut best: Option<GraphTimes> = None;
    // What the graph holds per task, from the first repetition (later ones reuse freed pages).
    let mut held = None;
    // The first repetition's time: a process's first build touches fresh pages, later ones
    // reuse what the allocator kept (compared with a peer that ran once).
    let mut first_s = None;
    // Graph scenarios: one executor for every repetition, as a program keeps one (or uses the
    // global one) and as `dask.threaded.get` keeps its pool per thread and worker count across
    // calls. Futures scenarios start their own pool, as Python's side does.
    let exec = match kind {
        "graph" | "array" => Some(ThreadedExecutor::new(workers)?),
        _ => None,
    };
    for _ in 0..repeat.max(1) {
        let times = match (kind, &exec) {
            ("graph", Some(exec)) => run_graph(shape, n, exec)?,
            ("array", Some(exec)) => run_array(shape, n, exec)?,
            ("futures", _) => GraphTimes {
                run_s: run_futures(shape, n, workers)?,
                ..GraphTimes::default()
            },
            _ => bail!("unknown scenario kind `{kind}`"),
        };
        held = held.or(times.held_bytes_per_task);
        first_s = first_s.or(Some(times.total()));
        if best.as_ref().is_none_or(|b| times.total() < b.total()) {
            best = Some(times);
        }
    }
    let best = best.context("at least one repetition")?;
    let mut line = serde_json::json!({
        "scenario": scenario,
        "build_s": best.build_s,
        "run_s": best.run_s,
        "total_s": best.total(),
        "first_total_s": first_s,
        "workers": workers,
    });
    if kind == "array" {
        line["chunks"] = best.tasks.into();
        line["ns_per_chunk"] = (best.total() * 1e9 / best.tasks as f64).into();
    }
    if kind == "graph" {
        line["lazy_s"] = best.lazy_s.into();
        line["graph_s"] = (best.build_s - best.lazy_s).into();
        line["tasks"] = best.tasks.into();
        line["ns_per_task"] = (best.total() * 1e9 / best.tasks as f64).into();
        line["peak_rss_mib"] = peak_rss_mib().into();
        line["held_bytes_per_task"] = held.into();
        if with_limit {
            let dag = benches::limit::dag(shape, n).context("a known graph shape")?;
            if dag.len() != best.tasks {
                bail!(
                    "the limit's DAG has {} nodes, Brisk's graph {}",
                    dag.len(),
                    best.tasks
                );
            }
            let key_s = benches::limit::key_limit(&dag);
            let run_s = benches::limit::run_limit(&dag, workers);
            line["limit_s"] = (key_s + run_s).into();
            line["limit_key_s"] = key_s.into();
            line["limit_run_s"] = run_s.into();
            let floor_s = benches::limit::node_floor(&dag);
            line["floor_lazy_s"] = floor_s.into();
            line["lazy_over_floor"] = (best.lazy_s / floor_s).into();
        }
    }
    println!("{line}");
    Ok(())
}

/// One repetition of a graph scenario.
#[derive(Default)]
struct GraphTimes {
    /// Building the lazy values (keys included).
    lazy_s: f64,
    /// `lazy_s` + materializing the `Graph` (culling, merging, ordering).
    build_s: f64,
    run_s: f64,
    tasks: usize,
    /// Resident memory the built graph added, per task.
    held_bytes_per_task: Option<f64>,
}

impl GraphTimes {
    fn total(&self) -> f64 {
        self.build_s + self.run_s
    }
}

fn run_graph(shape: &str, n: usize, exec: &ThreadedExecutor) -> anyhow::Result<GraphTimes> {
    let rss_before = rss_bytes();
    let t = Instant::now();
    let out = match shape {
        "indep" => indep(n),
        "chain" => chain(n),
        "tree" => tree(n),
        _ => bail!("unknown graph shape `{shape}`"),
    };
    let lazy_s = t.elapsed().as_secs_f64();
    let graph = Arc::new(Graph::new([&out]));
    let build_s = t.elapsed().as_secs_f64();
    let tasks = graph.len();
    let held_bytes_per_task = rss_before
        .zip(rss_bytes())
        .map(|(a, b)| b.saturating_sub(a) as f64 / tasks as f64);
    let t = Instant::now();
    let r = exec.execute(&graph, &ComputeOptions::new().context())?;
    let run_s = t.elapsed().as_secs_f64();
    let v = r.values[0]
        .as_ref()
        .and_then(|v| v.downcast_ref::<u64>().copied());
    if v != Some(expected(shape, n)) {
        bail!("wrong result {v:?} for {shape}/{n}");
    }
    drop(graph);
    drop(out);
    Ok(GraphTimes {
        lazy_s,
        build_s,
        run_s,
        tasks,
        held_bytes_per_task,
    })
}

/// Side of an array scenario's chunks (`array/mean/G`: G x G chunks of this side).
const ARRAY_CHUNK: usize = 10;

/// One repetition of `array/mean/G`: a (10 G) x (10 G) `f64` array of ones in 10 x 10 chunks,
/// `(x^2 + x^3).mean(0)` built (`build_s`) and computed into one array (`run_s`, which
/// materializes the graph too); `tasks` counts the chunks.
fn run_array(shape: &str, g: usize, exec: &ThreadedExecutor) -> anyhow::Result<GraphTimes> {
    use brisk::array::Array;
    if shape != "mean" {
        bail!("unknown array shape `{shape}`");
    }
    let n = g * ARRAY_CHUNK;
    let t = Instant::now();
    let x = Array::<f64>::ones(&[n, n], &[ARRAY_CHUNK, ARRAY_CHUNK])?;
    let y = (x.powi(2) + x.powi(3)).mean(0);
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let v = y.compute_with(exec)?;
    let run_s = t.elapsed().as_secs_f64();
    if v.shape() != [n] || v.iter().any(|&m| m != 2.0) {
        bail!("wrong result for array/{shape}/{g}");
    }
    Ok(GraphTimes {
        lazy_s: build_s,
        build_s,
        run_s,
        tasks: g * g,
        held_bytes_per_task: None,
    })
}

/// User and system CPU seconds, when `/proc` tells them.
type CpuTimes = Option<(f64, f64)>;

/// User and system CPU seconds of this process so far (Linux `/proc/self/stat`, in the fixed
/// 100 Hz ticks `/proc` reports).
fn cpu_times() -> CpuTimes {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i)?.parse::<f64>().ok().map(|t| t / 100.0);
    Some((tick(11)?, tick(12)?))
}

/// Resident memory of this process now (Linux `VmRSS`), in bytes.
fn rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// A `kB` field of `/proc/self/status` (Linux).
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run_futures(shape: &str, n: usize, workers: usize) -> anyhow::Result<f64> {
    let h = Handler::new(format!("threads://{workers}"))?;
    let t = Instant::now();
    let out = match shape {
        "map" => futures_map(&h, n)?,
        "batched" => futures_batched(&h, n)?,
        _ => bail!("unknown futures shape `{shape}`"),
    };
    let secs = t.elapsed().as_secs_f64();
    if out.len() != n || out.last().copied() != n.checked_sub(1).map(|x| x as u64 + 1) && n > 0 {
        bail!("wrong result for futures/{shape}/{n}");
    }
    Ok(secs)
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    proc_status_kib("VmHWM:").map(|kib| kib as f64 / 1024.0)
}

/// The floor a Zarr phase cannot beat on this machine: zstd level 3 (the same `zstd` library
/// zarrs links) compressing (write) or decompressing (read) the same chunks on `workers`
/// threads — the faster of one call per chunk into buffers that are already allocated and of
/// streaming it through 64 KiB pieces — plus one pass over the array in memory (write: copying
/// it; read: summing it). Measured in this process, best of three.
struct Limit {
    zstd_s: f64,
    pass_s: f64,
    compressed_mib: f64,
}

fn zstd_limit(phase: &str, chunking: &str, workers: usize) -> anyhow::Result<Limit> {
    use brisk::array::Array;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let chunks = parse_chunking(chunking)?;
    let exec = ThreadedExecutor::new(workers)?;
    let x = Array::<f32>::random_normal(&SHAPE, &chunks, 42, 2000.0, 1000.0)?;
    let whole = x
        .compute_with(&exec)?
        .into_dimensionality::<ndarray::Ix2>()?;
    let mut blocks: Vec<Vec<f32>> = Vec::new();
    for r in (0..SHAPE[0]).step_by(chunks[0]) {
        for c in (0..SHAPE[1]).step_by(chunks[1]) {
            let b = whole.slice(ndarray::s![
                r..(r + chunks[0]).min(SHAPE[0]),
                c..(c + chunks[1]).min(SHAPE[1])
            ]);
            blocks.push(b.iter().copied().collect());
        }
    }
    drop(whole);
    let raw: Vec<&[u8]> = blocks.iter().map(|b| bytemuck::cast_slice(b)).collect();
    let compressed: Vec<Vec<u8>> = raw
        .iter()
        .map(|r| zstd::bulk::compress(r, 3))
        .collect::<Result<_, _>>()?;
    // Output buffers, touched once so that no page fault is timed.
    let mut out: Vec<Vec<u8>> = raw
        .iter()
        .map(|r| vec![0u8; zstd::zstd_safe::compress_bound(r.len()).max(r.len())])
        .collect();
    // Runs `f(i, out[i])` for every chunk on `workers` threads, chunks taken in turn.
    let parallel =
        |out: &mut [Vec<u8>], f: &(dyn Fn(usize, &mut Vec<u8>) -> anyhow::Result<()> + Sync)| {
            let next = AtomicUsize::new(0);
            let slots: Vec<std::sync::Mutex<&mut Vec<u8>>> =
                out.iter_mut().map(std::sync::Mutex::new).collect();
            let t = Instant::now();
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        s.spawn(|| -> anyhow::Result<()> {
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(slot) = slots.get(i) else {
                                    return Ok(());
                                };
                                let mut buf =
                                    slot.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                                f(i, &mut buf)?;
                            }
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?)
            })?;
            Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64())
        };
    let mut best = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let (zstd_s, pass_s) = match phase {
            "write" | "write_mem" => {
                let bulk = parallel(&mut out, &|i, buf| {
                    zstd::bulk::Compressor::new(3)?
                        .compress_to_buffer(raw[i], buf.as_mut_slice())?;
                    Ok(())
                })?;
                // Streaming keeps zstd's working set in cache: faster on big chunks.
                let streamed = parallel(&mut out, &|i, buf| {
                    let out_len = buf.len();
                    let mut enc = zstd::stream::raw::Encoder::new(3)?;
                    let mut total = 0;
                    for piece in raw[i].chunks(PIECE) {
                        let mut input = zstd::stream::raw::InBuffer::around(piece);
                        while input.pos() < piece.len() {
                            let mut o =
                                zstd::stream::raw::OutBuffer::around(&mut buf[..OUT.min(out_len)]);
                            zstd::stream::raw::Operation::run(&mut enc, &mut input, &mut o)?;
                            total += o.pos();
                        }
                    }
                    loop {
                        let mut o =
                            zstd::stream::raw::OutBuffer::around(&mut buf[..OUT.min(out_len)]);
                        let left = zstd::stream::raw::Operation::finish(&mut enc, &mut o, true)?;
                        total += o.pos();
                        if left == 0 {
                            break;
                        }
                    }
                    anyhow::ensure!(total > 0, "chunk {i} compressed to nothing");
                    Ok(())
                })?;
                let z = bulk.min(streamed);
                let p = parallel(&mut out, &|i, buf| {
                    buf[..raw[i].len()].copy_from_slice(raw[i]);
                    Ok(())
                })?;
                (z, p)
            }
            "read_mean" => {
                let bulk = parallel(&mut out, &|i, buf| {
                    let n = zstd::bulk::Decompressor::new()?
                        .decompress_to_buffer(&compressed[i], buf.as_mut_slice())?;
                    anyhow::ensure!(n == raw[i].len(), "chunk {i} decompressed to {n} bytes");
                    Ok(())
                })?;
                // Streaming into a small, cache-resident buffer.
                let streamed = parallel(&mut out, &|i, buf| {
                    let out_len = buf.len();
                    let mut dec = zstd::stream::raw::Decoder::new()?;
                    let mut input = zstd::stream::raw::InBuffer::around(&compressed[i]);
                    let mut n = 0;
                    loop {
                        let mut o =
                            zstd::stream::raw::OutBuffer::around(&mut buf[..PIECE.min(out_len)]);
                        let hint = zstd::stream::raw::Operation::run(&mut dec, &mut input, &mut o)?;
                        n += o.pos();
                        if hint == 0 {
                            break;
                        }
                    }
                    anyhow::ensure!(n == raw[i].len(), "chunk {i} decompressed to {n} bytes");
                    Ok(())
                })?;
                let z = bulk.min(streamed);
                let p = parallel(&mut out, &|i, buf| {
                    let v: &[f32] = bytemuck::cast_slice(&buf[..raw[i].len()]);
                    let s: f64 = v.iter().map(|&x| f64::from(x)).sum();
                    anyhow::ensure!(s.is_finite(), "chunk {i} sums to {s}");
                    Ok(())
                })?;
                (z, p)
            }
            "copy" => {
                // Decoding and encoding every chunk (into buffers touched before the timing),
                // then one pass copying the bytes.
                let mut both: Vec<Vec<u8>> = raw
                    .iter()
                    .map(|r| vec![1u8; r.len() + zstd::zstd_safe::compress_bound(r.len())])
                    .collect();
                let z = parallel(&mut both, &|i, buf| {
                    let (decoded, encoded) = buf.split_at_mut(raw[i].len());
                    let n = zstd::bulk::Decompressor::new()?
                        .decompress_to_buffer(&compressed[i], decoded)?;
                    anyhow::ensure!(n == raw[i].len(), "chunk {i} decompressed to {n} bytes");
                    zstd::bulk::Compressor::new(3)?.compress_to_buffer(decoded, encoded)?;
                    Ok(())
                })?;
                let p = parallel(&mut out, &|i, buf| {
                    buf[..raw[i].len()].copy_from_slice(raw[i]);
                    Ok(())
                })?;
                (z, p)
            }
            other => bail!("unknown zarr phase `{other}`"),
        };
        if zstd_s + pass_s < best.0 + best.1 {
            best = (zstd_s, pass_s);
        }
    }
    #[allow(clippy::cast_precision_loss, reason = "sizes in MiB")]
    let compressed_mib = compressed.iter().map(Vec::len).sum::<usize>() as f64 / 1048576.0;
    Ok(Limit {
        zstd_s: best.0,
        pass_s: best.1,
        compressed_mib,
    })
}

/// The piece size of the streamed limit measurements.
const PIECE: usize = 64 << 10;
/// The output buffer of streamed compression (zstd's recommended size is about 128 KiB).
const OUT: usize = 128 << 10;

/// The seed's array shape.
const SHAPE: [usize; 2] = [8000, 7500];

fn parse_chunking(chunking: &str) -> anyhow::Result<Vec<usize>> {
    chunking
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("chunking `{chunking}`"))
}

/// `zarr/{write,write_mem,copy,read_mean}/RxC` on an 8000 x 7500 float32 array (the seed's
/// workload), zstd level 3 with its content checksum (Brisk's default; `--no-checksum` leaves
/// it out), Zarr v3: `write` generates and writes `brisk-RxC.zarr`; `write_mem` writes
/// `memory` (generated before the timing; `Array::from_shared`) to `brisk-RxC-mem.zarr`; `copy` copies
/// `brisk-RxC.zarr` chunk by chunk to `brisk-RxC-copy.zarr`; `read_mean` reads
/// `brisk-RxC.zarr` and computes `(x**2 + x**3).mean(0)`. Every phase returns the mean of
/// what it computed or wrote (read back outside the timing), to check peers against.
fn run_zarr(
    phase: &str,
    chunking: &str,
    exec: &ThreadedExecutor,
    dir: &std::path::Path,
    io: brisk::zarr::IoOptions,
    (checksum, scale): (bool, usize),
    memory: Option<&Arc<ndarray::ArrayD<f32>>>,
) -> anyhow::Result<(f64, Option<f64>, CpuTimes)> {
    use brisk::array::Array;
    use brisk::zarr::{ArrayOptions, Compressor, ZarrStore, from_zarr, from_zarr_with, to_zarr};
    let chunks = parse_chunking(chunking)?;
    // `--scale K`: K times the rows, in stores of their own.
    let shape = [SHAPE[0] * scale, SHAPE[1]];
    let name = |what: &str| match scale {
        1 => format!("brisk-{chunking}{what}.zarr"),
        k => format!("brisk-{chunking}-x{k}{what}.zarr"),
    };
    let store = ZarrStore::directory(dir.join(name("")))?;
    let opts = ArrayOptions::new()
        .compressor(Compressor::Zstd { level: 3, checksum })
        .dimension_names(["time", "x"])
        .attribute("history", serde_json::json!("brisk comparison"))
        .overwrite();
    // The mean of a written array, read back (not timed).
    let written_mean = |store: &ZarrStore| -> anyhow::Result<Option<f64>> {
        let m = from_zarr::<f32>(store, "/")?.mean(brisk::array::Axes::All);
        Ok(Some(m.compute_with(exec)?.iter().copied().sum::<f64>()))
    };
    let cpu0 = cpu_times();
    let spent = || {
        cpu0.zip(cpu_times())
            .map(|((u0, s0), (u1, s1))| (u1 - u0, s1 - s0))
    };
    let t = Instant::now();
    match phase {
        "write" => {
            let x = Array::<f32>::random_normal(&shape, &chunks, 42, 2000.0, 1000.0)?;
            to_zarr(&x, &store, "/", Some(&chunks), &opts, &exec)?;
        }
        "write_mem" => {
            let data = memory.context("write_mem needs the array in memory")?;
            let target = ZarrStore::directory(dir.join(name("-mem")))?;
            // Brisk's path for an array already in memory: shared, read inside the writers.
            let x = Array::from_shared(Arc::clone(data), &chunks)?;
            to_zarr(&x, &target, "/", Some(&chunks), &opts, &exec)?;
            let secs = t.elapsed().as_secs_f64();
            let cpu = spent();
            return Ok((secs, written_mean(&target)?, cpu));
        }
        "copy" => {
            let target = ZarrStore::directory(dir.join(name("-copy")))?;
            let x = from_zarr::<f32>(&store, "/")?;
            to_zarr(&x, &target, "/", Some(&chunks), &opts, &exec)?;
            let secs = t.elapsed().as_secs_f64();
            let cpu = spent();
            return Ok((secs, written_mean(&target)?, cpu));
        }
        "generate" => {
            // What `write` spends generating the data: the same random array, averaged in
            // memory, nothing written (the streamed write's other half is encoding + I/O).
            let x = Array::<f32>::random_normal(&shape, &chunks, 42, 2000.0, 1000.0)?;
            let m = x.mean(brisk::array::Axes::All).compute_with(exec)?;
            let secs = t.elapsed().as_secs_f64();
            let cpu = spent();
            return Ok((secs, Some(m.iter().copied().sum::<f64>()), cpu));
        }
        "read_mean" => {
            let x = from_zarr_with::<f32>(&store, "/", io)?;
            let m = (x.powi(2) + x.powi(3)).mean(0).compute_with(&exec)?;
            if m.len() != shape[1] {
                bail!("wrong result length {}", m.len());
            }
            let secs = t.elapsed().as_secs_f64();
            let cpu = spent();
            let mean = m.iter().sum::<f64>() / m.len() as f64;
            return Ok((secs, Some(mean), cpu));
        }
        other => bail!("unknown zarr phase `{other}`"),
    }
    let secs = t.elapsed().as_secs_f64();
    Ok((secs, None, spent()))
}

/// `disk/seq/MIB`: the disk's own sequential bandwidth in `dir` for `MIB` MiB, the floor of
/// Zarr phases whose data does not stay in the page cache. Writes a file in 16 MiB blocks
/// (best of two)
/// through the page cache as the Zarr writers do (`write_s`: until the last write returns;
/// `write_sync_s`: until it is on disk), then reads it back through the page cache
/// (`read_hot_s`) and with `O_DIRECT` past it (`read_cold_s`: what the disk delivers), best
/// of two each.
fn disk_bandwidth(dir: &std::path::Path, mib: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    const BLOCK: usize = 16 << 20;
    /// Linux x86_64 and aarch64 `O_DIRECT` (std has no constant for it).
    const O_DIRECT: i32 = if cfg!(target_arch = "aarch64") {
        0o200_000
    } else {
        0o40_000
    };
    let mib: usize = mib
        .parse()
        .with_context(|| format!("size in MiB `{mib}`"))?;
    let blocks = (mib << 20).div_ceil(BLOCK);
    std::fs::create_dir_all(dir)?;
    let path = dir.join("disk-bandwidth.bin");
    // Incompressible bytes, like compressed chunks.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..BLOCK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    // Best of two writes: the first write of a run also pays for the file system's first
    // allocation of that much space, which is noisy.
    let (mut write_s, mut write_sync_s) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..2 {
        let _ = std::fs::remove_file(&path);
        let t = Instant::now();
        let mut f = std::fs::File::create(&path)?;
        for _ in 0..blocks {
            f.write_all(&data)?;
        }
        write_s = write_s.min(t.elapsed().as_secs_f64());
        f.sync_all()?;
        write_sync_s = write_sync_s.min(t.elapsed().as_secs_f64());
    }
    let read = |direct: bool| -> anyhow::Result<f64> {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true);
        if direct {
            opts.custom_flags(O_DIRECT);
        }
        let mut f = opts.open(&path)?;
        // O_DIRECT needs a block-aligned buffer: take an aligned window of a larger one.
        let mut buf = vec![0u8; BLOCK + 4096];
        let skip = buf.as_ptr().align_offset(4096);
        let window = &mut buf[skip..skip + BLOCK];
        let t = Instant::now();
        let mut total = 0usize;
        loop {
            let n = f.read(window)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        if total != blocks * BLOCK {
            bail!("read {total} bytes of {}", blocks * BLOCK);
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let read_cold_s = read(true)?.min(read(true)?);
    let read_hot_s = read(false)?.min(read(false)?);
    std::fs::remove_file(&path)?;
    let bytes = blocks * BLOCK;
    println!(
        "{}",
        serde_json::json!({
            "scenario": format!("disk/seq/{mib}"),
            "bytes": bytes,
            "write_s": write_s,
            "write_sync_s": write_sync_s,
            "read_cold_s": read_cold_s,
            "read_hot_s": read_hot_s,
            "total_s": write_sync_s,
        })
    );
    Ok(())
}

//! A dynamic source (seed 004, the ServiceX story): a transform service writes event files one
//! by one, in no particular order, some of them corrupt and one that the service itself fails;
//! the number of files is known up front, their names are not. A poller thread watches the
//! store and feeds each file to the compute the moment it appears; each file is read, jet
//! momenta above a threshold are selected and histogrammed, and the histograms are summed in
//! partition-id order (so the result is the same bits whatever order the files came in).
//!
//! The example runs the story twice against the same checkpoint store: the first run sees the
//! first two thirds of the files, the second all of them; the second run loads what the first
//! finished and reads only the new files (and the corrupt ones again).
//!
//! The per-file work is three `#[brisk::task]` functions, so the same program runs on local
//! threads or — with `--slurm ADDRESS` — on Slurm: the poller stays in this process, and the
//! files that arrived within half a second (at most 8) go to the cluster as one job array
//! while later files are still being written. The output is the same on both.
//!
//! ```text
//! cargo run --release -p examples --example dynamic_source -- [--files 36] [--corrupt 3]
//!     [--store DIR | --store s3://bucket/prefix] [--checkpoints DIR] [--quick]
//!     [--slurm 'slurm://?store=/shared/brisk&time=00:05:00']
//! ```
//! (`s3://` needs `--features s3` and the usual `AWS_*` variables; `cargo xtask cloud` runs it
//! against moto_server on 127.0.0.1.)

#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use brisk::checkpoint::{DirStore, Storage, Store, from_url};
use brisk::exec::Handler;
use brisk::exec::source::{Feed, Source, SourceOptions, SourceReport, Status};
use brisk::graph::Delayed;
use clap::Parser;
use ndarray::Array1;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde::{Deserialize, Serialize};

/// What enters the graph: the file's key in the store. Its token is the partition id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EventFile {
    key: String,
}

/// The service's store, opened once per process (a cluster worker opens it itself).
fn service_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    static OPEN: Mutex<Option<HashMap<String, Arc<dyn Store>>>> = Mutex::new(None);
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    let stores = open.get_or_insert_with(HashMap::new);
    if let Some(s) = stores.get(url) {
        return Ok(Arc::clone(s));
    }
    let s = from_url(url).with_context(|| format!("opening the store {url}"))?;
    stores.insert(url.to_owned(), Arc::clone(&s));
    Ok(s)
}

/// Reads one event file's jet momenta. The store's address is left out of the key (it does
/// not change what a file holds).
#[brisk::task(exclude(store))]
fn read_jets(store: String, file: EventFile) -> anyhow::Result<Vec<f64>> {
    let bytes = service_store(&store)?
        .get(&file.key)?
        .with_context(|| format!("{} vanished", file.key))?;
    let pt = Array1::<f64>::read_npy(bytes.as_slice())
        .with_context(|| format!("{} is not a float64 .npy array", file.key))?;
    Ok(pt.to_vec())
}

/// The momenta above `threshold`, and how many jets there were.
#[brisk::task]
fn select(pt: Vec<f64>, threshold: f64) -> (Vec<f64>, u64) {
    let n = pt.len() as u64;
    (pt.into_iter().filter(|&v| v > threshold).collect(), n)
}

/// Their histogram.
#[brisk::task]
fn histogram(selected: (Vec<f64>, u64), threshold: f64) -> Histogram {
    let (sel, n) = selected;
    let mut h = Histogram::new(threshold).fill(&sel);
    h.events = n;
    h
}

/// Jet transverse momenta in GeV: 20 bins of 10 GeV from the threshold, plus overflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Histogram {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
    overflow: u64,
    events: u64,
}

impl Histogram {
    fn new(lo: f64) -> Self {
        Self {
            lo,
            width: 10.0,
            counts: vec![0; 20],
            overflow: 0,
            events: 0,
        }
    }

    fn fill(mut self, values: &[f64]) -> Self {
        for &v in values {
            let bin = ((v - self.lo) / self.width).floor();
            if bin >= 0.0 && (bin as usize) < self.counts.len() {
                self.counts[bin as usize] += 1;
            } else if bin >= 0.0 {
                self.overflow += 1;
            }
        }
        self
    }

    fn add(mut self, other: &Self) -> Self {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.overflow += other.overflow;
        self.events += other.events;
        self
    }
}

struct Args {
    slurm: Option<String>,
    files: usize,
    corrupt: usize,
    store: String,
    checkpoints: std::path::PathBuf,
    threshold: f64,
    /// The default scratch directory, removed at the end (the user's paths are kept).
    scratch: Option<std::path::PathBuf>,
}

/// Partitions discovered while the graph runs: event files polled from a store, some
/// corrupt, histogrammed and summed; run twice to show the checkpoint store resuming.
#[derive(clap::Parser)]
struct Cli {
    /// Files the service writes [default: 36; 12 with --quick]
    #[arg(long)]
    files: Option<usize>,
    /// How many of them are corrupt
    #[arg(long, default_value_t = 3)]
    corrupt: usize,
    /// Where the service writes: a directory or `s3://bucket/prefix` [default: a scratch
    /// directory, removed at the end]
    #[arg(long, value_name = "DIR|URL")]
    store: Option<String>,
    /// Checkpoint directory [default: in the scratch directory]
    #[arg(long, value_name = "DIR")]
    checkpoints: Option<std::path::PathBuf>,
    /// Jet momentum threshold in GeV
    #[arg(long, default_value_t = 25.0)]
    threshold: f64,
    /// Fewer files
    #[arg(long)]
    quick: bool,
    /// Run the per-file work on Slurm at this address (`slurm://?store=…`) instead of local
    /// threads; the poller stays here
    #[arg(long, value_name = "ADDRESS")]
    slurm: Option<String>,
}

fn parse() -> anyhow::Result<Args> {
    let cli = Cli::parse();
    let tmp = std::env::temp_dir().join(format!("brisk-dynamic-source-{}", std::process::id()));
    // The scratch directory is removed at the end only when the user named no path.
    let scratch = (cli.store.is_none() && cli.checkpoints.is_none()).then(|| tmp.clone());
    let a = Args {
        slurm: cli.slurm,
        files: cli.files.unwrap_or(if cli.quick { 12 } else { 36 }),
        corrupt: cli.corrupt,
        store: cli
            .store
            .unwrap_or_else(|| tmp.join("service").display().to_string()),
        checkpoints: cli.checkpoints.unwrap_or_else(|| tmp.join("checkpoints")),
        threshold: cli.threshold,
        scratch,
    };
    if a.corrupt + 1 >= a.files {
        bail!("--corrupt must leave most of the --files intact");
    }
    Ok(a)
}

/// A small, seedable generator (SplitMix64) so the simulated service is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The simulated transform service: writes files `indices` in a random order after random
/// delays; `corrupt` of them are garbage, and one is failed by the service (a marker under
/// `failed/`). Each write is a single atomic put, so a poller never sees half a file.
fn service(
    store: Arc<dyn Store>,
    indices: Vec<usize>,
    corrupt: &BTreeSet<usize>,
    failed: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = Rng(seed);
    let mut order = indices;
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    for i in order {
        std::thread::sleep(Duration::from_micros(rng.next() % 8_000));
        let name = format!("events/jets-{i:04}.npy");
        if i == failed {
            store.put(
                &format!("failed/jets-{i:04}.npy"),
                b"transform failed: worker lost",
            )?;
            continue;
        }
        let bytes = if corrupt.contains(&i) {
            b"this is not an npy file".to_vec()
        } else {
            // Jet pT ~ 20 GeV + exponential tail.
            let n = 2_000 + (rng.next() % 6_000) as usize;
            let pt: Array1<f64> = (0..n)
                .map(|_| 20.0 - 30.0 * (1.0 - rng.unit()).ln())
                .collect();
            let mut buf = Vec::new();
            pt.write_npy(&mut buf)?;
            buf
        };
        store.put(&name, &bytes)?;
    }
    Ok(())
}

/// Watches the store and feeds every new file (and every failure marker) to the source,
/// until `expected` inputs were seen; then seals. Gives up (abort) after `patience` without
/// anything new.
fn poll(store: Arc<dyn Store>, feed: Feed<EventFile>, expected: usize, patience: Duration) {
    let mut seen = BTreeSet::new();
    let mut last_new = Instant::now();
    while seen.len() < expected {
        let listed = store.list("events/").and_then(|mut e| {
            e.extend(store.list("failed/")?);
            Ok(e)
        });
        let keys = match listed {
            Ok(k) => k,
            Err(e) => {
                feed.abort(format!("listing the store failed: {e}"));
                return;
            }
        };
        for key in keys {
            if !seen.insert(key.clone()) {
                continue;
            }
            last_new = Instant::now();
            let sent = match key.strip_prefix("failed/") {
                Some(name) => feed.fail_id(name, "the transform service failed this file"),
                None => feed.push(EventFile { key }),
            };
            if sent.is_err() {
                return; // the compute ended (fail-fast); nothing more to do
            }
        }
        if last_new.elapsed() > patience {
            feed.abort(format!(
                "no new file for {patience:?} after {} of {expected}",
                seen.len()
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = feed.seal();
}

/// What both runs share.
struct Story {
    store: Arc<dyn Store>,
    url: String,
    storage: Storage,
    handler: Handler,
    corrupt: BTreeSet<usize>,
    failed: usize,
    threshold: f64,
}

/// One run: the service writes `new` files, the poller expects `expected` in all.
fn run(
    story: &Story,
    new: Vec<usize>,
    expected: usize,
) -> anyhow::Result<(Histogram, SourceReport<EventFile>)> {
    let Story {
        store,
        url,
        storage,
        handler,
        corrupt,
        failed,
        threshold,
    } = story;
    let (failed, threshold) = (*failed, *threshold);
    let (source, feed) = Source::<EventFile>::counted("jets", 8, expected);
    // Per file: read → select above threshold → histogram (checkpointed). The store's
    // address is left out of the keys (it does not change what a file holds); the threshold
    // is in them, so a run with another threshold never loads this one's histograms. A
    // partition's key is its file's key and the threshold, on every run and machine.
    let url = url.clone();
    let pipeline = source.then(move |file: Delayed<EventFile>| {
        let pt = read_jets(url.clone(), file);
        histogram(select(pt, threshold), threshold).checkpointed()
    });
    // On a cluster, the files that arrived within half a second (at most 8) run as one job
    // array; on local threads each file runs as soon as it arrives.
    let mut options = SourceOptions::new().tolerate().compute(storage.options());
    if handler.address() != "threads" {
        options = options.batch(8, Duration::from_millis(500));
    }
    let std::thread::Result::Ok(result) = std::thread::scope(|s| {
        let svc_store = Arc::clone(store);
        let service = s.spawn(move || service(svc_store, new, corrupt, failed, 7));
        let poll_store = Arc::clone(store);
        s.spawn(move || poll(poll_store, feed, expected, Duration::from_secs(60)));
        let out = pipeline.fold(
            handler.executor(),
            &options,
            Histogram::new(threshold),
            |acc, h| acc.add(&h),
        );
        let served = service.join();
        std::thread::Result::Ok((out, served))
    }) else {
        bail!("a thread panicked");
    };
    let (out, served) = result;
    served.map_err(|_| anyhow::anyhow!("the service thread panicked"))??;
    Ok(out?)
}

fn print_run(title: &str, h: &Histogram, r: &SourceReport<EventFile>, took: Duration) {
    println!("== {title} ({:.2} s)", took.as_secs_f64());
    let count = |s: Status| r.partitions.iter().filter(|p| p.status == s).count();
    println!(
        "   {} of {} files: {} read, {} loaded from checkpoints, {} failed, {} missing",
        r.received,
        r.expected.unwrap_or(r.received),
        count(Status::Computed),
        count(Status::Loaded),
        r.failed(),
        r.missing()
    );
    for p in r.partitions.iter().filter(|p| p.error.is_some()) {
        let what = p.descriptor.as_ref().map_or_else(
            || p.failed_id.clone().unwrap_or_default(),
            |d| d.key.clone(),
        );
        // The cause as the task gave it (from the file's name on), without the executor's
        // framing (a cluster adds the worker's log file).
        let error = p.error.as_deref().unwrap_or_default();
        let cause = error.find(what.as_str()).map_or(error, |i| &error[i..]);
        let cause = cause.split(" (worker log").next().unwrap_or_default();
        let cause = cause.lines().next().unwrap_or_default();
        if cause.starts_with(what.as_str()) {
            println!("   ! {cause}");
        } else {
            println!("   ! {what}: {cause}");
        }
    }
    let selected: u64 = h.counts.iter().sum::<u64>() + h.overflow;
    println!("   {} jets read, {selected} above {} GeV", h.events, h.lo);
    let max = h.counts.iter().copied().max().unwrap_or(1).max(1);
    for (i, c) in h.counts.iter().enumerate() {
        let lo = h.lo + h.width * i as f64;
        println!(
            "   {lo:>6.0}–{:<6.0} {c:>7} {}",
            lo + h.width,
            "#".repeat((c * 50 / max) as usize)
        );
    }
    println!("   overflow      {:>7}", h.overflow);
}

fn main() -> anyhow::Result<()> {
    // Started by Slurm as a worker: run the unit and exit.
    brisk::cluster::init();
    let a = parse()?;
    let store = service_store(&a.store)?;
    let storage = Storage::new(DirStore::new(&a.checkpoints)?);
    let handler = Handler::new(a.slurm.as_deref().unwrap_or("threads"))?;
    let mut rng = Rng(11);
    let mut corrupt = BTreeSet::new();
    while corrupt.len() < a.corrupt {
        corrupt.insert((rng.next() % a.files as u64) as usize);
    }
    let failed = (0..a.files)
        .rev()
        .find(|i| !corrupt.contains(i))
        .context("a file to fail")?;
    println!(
        "{} files from the service at {}; {} corrupt, 1 failed by the service; checkpoints in {}",
        a.files,
        a.store,
        a.corrupt,
        a.checkpoints.display()
    );

    let first_n = a.files * 2 / 3;
    let t = Instant::now();
    let story = Story {
        store,
        url: a.store.clone(),
        storage,
        handler,
        corrupt,
        failed,
        threshold: a.threshold,
    };
    let (h1, r1) = run(&story, (0..first_n).collect(), first_n)?;
    print_run(
        "run 1: the first two thirds of the files",
        &h1,
        &r1,
        t.elapsed(),
    );

    let t = Instant::now();
    let (h2, r2) = run(&story, (first_n..a.files).collect(), a.files)?;
    let (corrupt, failed) = (&story.corrupt, story.failed);
    print_run(
        "run 2: all files (the new third arrives)",
        &h2,
        &r2,
        t.elapsed(),
    );

    // The second run read exactly the new files and the ones that failed before.
    let read_again = r2
        .partitions
        .iter()
        .filter(|p| p.status == Status::Computed)
        .count();
    let corrupt_before = corrupt.iter().filter(|&&i| i < first_n).count();
    let corrupt_new = corrupt.iter().filter(|&&i| i >= first_n).count();
    let new_ok = a.files - first_n - corrupt_new - usize::from(failed >= first_n);
    if r2.loaded() != r1.succeeded() || read_again != new_ok {
        bail!(
            "run 2 loaded {} (expected {}) and read {read_again} (expected {new_ok}) files",
            r2.loaded(),
            r1.succeeded()
        );
    }
    let failed_again = r2
        .partitions
        .iter()
        .filter(|p| p.status == Status::Failed)
        .count();
    if failed_again != corrupt_before + corrupt_new {
        bail!(
            "run 2 reported {failed_again} corrupt files, expected {}",
            a.corrupt
        );
    }
    println!(
        "run 2 loaded {} finished files, read {read_again} new ones, and retried {corrupt_before} that failed before",
        r2.loaded()
    );
    if let Some(dir) = &a.scratch {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

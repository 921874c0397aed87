//! A lazy array over a file that must be open to be read — resource-backed-dask-array in
//! Rust. The example writes a NumPy `.npy` file, builds a lazy chunked array whose chunks are
//! positioned reads from one open handle, and computes a reduction with the reader closed:
//! the compute opens it once and closes it once. The same array without the guard fails with
//! a clear "closed" error.
//!
//! ```text
//! cargo run --release -p examples --example guarded_reader -- [--rows N] [--cols M] [--quick]
//! ```

#![allow(clippy::print_stdout, reason = "an example reports to the terminal")]

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, bail};
use brisk::array::{Array, ChunkGrid};
use brisk::graph::{BoxError, Delayed, TaskSpec};
use brisk::guard::{FileResource, Resource};
use brisk::prelude::*;
use clap::Parser;

/// Writes `rows × cols` little-endian `f64` values `f(i, j)` as a version 1.0 `.npy` file.
fn write_npy(path: &std::path::Path, rows: usize, cols: usize) -> anyhow::Result<()> {
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + dict, padded to 64 bytes with a newline.
    let total = (10 + dict.len() + 1).next_multiple_of(64);
    let header = format!("{dict:<width$}\n", width = total - 10 - 1);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&u16::try_from(header.len())?.to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for i in 0..rows {
        for j in 0..cols {
            out.write_all(&value(i, j).to_le_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

fn value(i: usize, j: usize) -> f64 {
    (i as f64 * 0.5) + (j % 10) as f64
}

/// The data offset and shape of a 2-d `<f8` C-order `.npy` file.
fn npy_layout(file: &FileResource) -> anyhow::Result<(u64, usize, usize)> {
    let head = file.read_exact_at(0, 10)?;
    if &head[..6] != b"\x93NUMPY" {
        bail!("{} is not a .npy file", file.path().display());
    }
    let len = usize::from(u16::from_le_bytes([head[8], head[9]]));
    let dict = String::from_utf8(file.read_exact_at(10, len)?)?;
    if !dict.contains("'descr': '<f8'") || !dict.contains("'fortran_order': False") {
        bail!("only C-order little-endian f64 arrays are supported, not {dict}");
    }
    let shape = dict
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .context("no shape in the header")?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        bail!("a 2-d array is needed, not shape {dims:?}");
    };
    Ok((10 + len as u64, rows, cols))
}

/// A lazy array over the file in blocks of `block_rows` whole rows (each block is one
/// contiguous positioned read).
fn lazy_array(
    file: &Arc<FileResource>,
    offset: u64,
    rows: usize,
    cols: usize,
    block_rows: usize,
) -> anyhow::Result<Array<f64>> {
    let grid = ChunkGrid::regular(&[rows, cols], &[block_rows, cols])?;
    let spec = TaskSpec::new("npy-rows");
    let blocks: Vec<Delayed<ndarray::ArrayD<f64>>> = (0..grid.num_blocks())
        .map(|b| {
            let c = grid.block_coords(b);
            let (start, shape) = (grid.block_offset(&c), grid.block_shape(&c));
            let f = Arc::clone(file);
            spec.try_call(
                move || -> Result<ndarray::ArrayD<f64>, BoxError> {
                    let at = offset + (start[0] * cols * 8) as u64;
                    let bytes = f.read_exact_at(at, shape[0] * cols * 8)?;
                    let values: Vec<f64> = bytes
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                        .collect();
                    Ok(ndarray::ArrayD::from_shape_vec(shape.clone(), values)?)
                },
                (),
            )
        })
        .collect();
    Ok(Array::from_blocks(grid, blocks)?)
}

/// A lazy array over a file that must be open to be read, opened once per compute.
#[derive(clap::Parser)]
struct Cli {
    /// Rows of the .npy file [default: 20000; 2000 with --quick]
    #[arg(long)]
    rows: Option<usize>,
    /// Columns [default: 1000; 100 with --quick]
    #[arg(long)]
    cols: Option<usize>,
    /// A small file
    #[arg(long)]
    quick: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rows = cli.rows.unwrap_or(if cli.quick { 2_000 } else { 20_000 });
    let cols = cli.cols.unwrap_or(if cli.quick { 100 } else { 1_000 });
    let dir = std::env::temp_dir().join(format!("brisk-guarded-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("data.npy");
    write_npy(&path, rows, cols)?;
    println!(
        "wrote {} ({} MB)",
        path.display(),
        std::fs::metadata(&path)?.len() / 1_000_000
    );

    let reader = FileResource::new(&path);
    // Reading the header needs the file open; close it again before the compute.
    reader.open().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (offset, r, c) = npy_layout(&reader)?;
    reader.close().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (opens0, closes0) = (reader.opens(), reader.closes());

    let unguarded = lazy_array(&reader, offset, r, c, 500)?;
    let x = unguarded.requiring(reader.clone());
    let m = (x.powi(2) + 1.0).mean(0); // derived values carry the guard; nothing opens yet
    println!("reader open before compute: {}", reader.is_open());
    let t = std::time::Instant::now();
    let means = m.compute()?;
    let expected: f64 = (0..r).map(|i| value(i, 3).powi(2) + 1.0).sum::<f64>() / r as f64;
    if (means[3] - expected).abs() > 1e-9 * expected {
        bail!("column 3 mean {} differs from {expected}", means[3]);
    }
    println!(
        "mean of x**2 + 1 over {} chunks in {:.3} s: opens {}, closes {}, reads {}; open after: {}",
        r.div_ceil(500),
        t.elapsed().as_secs_f64(),
        reader.opens() - opens0,
        reader.closes() - closes0,
        reader.reads(),
        reader.is_open()
    );
    if reader.opens() - opens0 != 1 || reader.closes() - closes0 != 1 || reader.is_open() {
        bail!("the guard should open and close the reader exactly once");
    }
    match unguarded.sum(brisk::array::Axes::all()).compute() {
        Ok(_) => bail!("reading a closed file without the guard must fail"),
        Err(e) => println!("without the guard: {}", brisk::graph::chain(&e)),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

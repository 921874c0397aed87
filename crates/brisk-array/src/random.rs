//! Reproducible random arrays: every element is a function of the seed and its global index,
//! so the values do not depend on the chunking.

use brisk_graph::TaskSpec;
use ndarray::{ArrayD, IxDyn};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng;

use crate::array::Array;
use crate::element::Float;
use crate::error::Result;
use crate::grid::ChunkGrid;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in `[0, 1)` for stream `stream` of element `index`.
#[allow(
    clippy::cast_precision_loss,
    reason = "53 random bits are exactly representable"
)]
fn unit(seed: u64, index: u64, stream: u64) -> f64 {
    let h = splitmix64(splitmix64(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93)) ^ index);
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Elements that share one generator stream. Normal values come from a Xoshiro256++ stream
/// per aligned group of `GROUP` global (row-major) indices, sampled with the ziggurat method
/// (`rand_distr`): a chunk that starts inside a group regenerates the group's head and skips
/// it, so values depend only on the seed and the global index, never on the chunking.
const GROUP: u64 = 32;

/// Writes the normal values of global indices `start .. start + out.len()`.
fn normal_run<T: Float>(seed: u64, mean: f64, std: f64, start: u64, out: &mut Vec<T>, len: u64) {
    let stream = splitmix64(seed ^ 0x5851_F42D_4C95_7F2D);
    let end = start + len;
    let mut g = start / GROUP;
    while g * GROUP < end {
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(stream ^ g.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (lo, hi) = (start.max(g * GROUP), end.min((g + 1) * GROUP));
        for _ in g * GROUP..lo {
            let _: f64 = StandardNormal.sample(&mut rng);
        }
        for _ in lo..hi {
            let z: f64 = StandardNormal.sample(&mut rng);
            out.push(T::from_f64(mean + std * z));
        }
        g += 1;
    }
}

#[derive(Clone, Copy, serde::Serialize)]
enum Dist {
    Uniform(f64, f64),
    Normal(f64, f64),
}

fn fill<T: Float>(
    seed: u64,
    dist: Dist,
    global: &[usize],
    offset: &[usize],
    shape: &[usize],
) -> ArrayD<T> {
    let nd = shape.len();
    let mut gstride = vec![1u64; nd];
    for k in (0..nd.saturating_sub(1)).rev() {
        gstride[k] = gstride[k + 1] * global[k + 1] as u64;
    }
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return ArrayD::from_shape_vec(IxDyn(shape), out).expect("empty block");
    }
    // Walk the block row by row: a row is a contiguous run of global indices.
    let row = if nd == 0 { 1 } else { shape[nd - 1] };
    let mut coord = vec![0usize; nd];
    for _ in 0..n / row {
        let start: u64 = (0..nd)
            .map(|k| (offset[k] + coord[k]) as u64 * gstride[k])
            .sum();
        match dist {
            Dist::Uniform(lo, hi) => {
                for idx in start..start + row as u64 {
                    out.push(T::from_f64(lo + (hi - lo) * unit(seed, idx, 0)));
                }
            }
            Dist::Normal(mean, std) => normal_run(seed, mean, std, start, &mut out, row as u64),
        }
        for k in (0..nd.saturating_sub(1)).rev() {
            coord[k] += 1;
            if coord[k] < shape[k] {
                break;
            }
            coord[k] = 0;
        }
    }
    ArrayD::from_shape_vec(IxDyn(shape), out).expect("the buffer has exactly the block's length")
}

impl<T: Float> Array<T> {
    fn random(shape: &[usize], chunks: &[usize], seed: u64, dist: Dist) -> Result<Self> {
        let grid = ChunkGrid::regular(shape, chunks)?;
        // Version 2: normal values from per-group ziggurat streams (version 1 used a polar method).
        let spec = TaskSpec::new("random").pure().version("2");
        let global = shape.to_vec();
        let dist_name = match dist {
            Dist::Uniform(a, b) => format!("uniform:{a:?}:{b:?}"),
            Dist::Normal(a, b) => format!("normal:{a:?}:{b:?}"),
        };
        let blocks = (0..grid.num_blocks())
            .map(|i| {
                let c = grid.block_coords(i);
                let (off, shp) = (grid.block_offset(&c), grid.block_shape(&c));
                spec.call(
                    move |seed: u64, _d: String, g: Vec<usize>, o: Vec<usize>, s: Vec<usize>| {
                        fill::<T>(seed, dist, &g, &o, &s)
                    },
                    (seed, dist_name.clone(), global.clone(), off, shp),
                )
            })
            .collect();
        Self::from_blocks(grid, blocks)
    }

    /// Uniform values in `[low, high)`, reproducible from `seed` whatever the chunking.
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`](crate::ArrayError::BadChunks).
    pub fn random_uniform(
        shape: &[usize],
        chunks: &[usize],
        seed: u64,
        low: f64,
        high: f64,
    ) -> Result<Self> {
        Self::random(shape, chunks, seed, Dist::Uniform(low, high))
    }

    /// Normally distributed values, reproducible from `seed` whatever the chunking.
    ///
    /// # Errors
    /// [`ArrayError::BadChunks`](crate::ArrayError::BadChunks).
    pub fn random_normal(
        shape: &[usize],
        chunks: &[usize],
        seed: u64,
        mean: f64,
        std: f64,
    ) -> Result<Self> {
        Self::random(shape, chunks, seed, Dist::Normal(mean, std))
    }
}

//! Reproducible random arrays: every element is a function of the seed and its global index,
//! so the values do not depend on the chunking.

use brisk_graph::TaskSpec;
use ndarray::{ArrayD, IxDyn};

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
    let mut coord = vec![0usize; nd];
    for _ in 0..n {
        let idx: u64 = (0..nd)
            .map(|k| (offset[k] + coord[k]) as u64 * gstride[k])
            .sum();
        let v = match dist {
            Dist::Uniform(lo, hi) => lo + (hi - lo) * unit(seed, idx, 0),
            Dist::Normal(mean, std) => {
                // Box–Muller on two independent streams; 1 - u avoids ln(0).
                let u1 = 1.0 - unit(seed, idx, 1);
                let u2 = unit(seed, idx, 2);
                mean + std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            }
        };
        out.push(T::from_f64(v));
        for k in (0..nd).rev() {
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
        let spec = TaskSpec::new("random").pure();
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

//! Reproducible random arrays: every element is a function of the seed and its global index,
//! so the values do not depend on the chunking.

use std::sync::Arc;

use brisk_graph::{BoxError, TaskSpec};
use ndarray::{ArrayD, IxDyn};

use crate::array::Array;
use crate::element::Float;
use crate::error::Result;
use crate::grid::ChunkGrid;
use crate::stream::{BlockStream, OpenStream};

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
    top53(h) * (1.0 / (1u64 << 53) as f64)
}

/// The 256-layer ziggurat of Marsaglia and Tsang (2000) for the standard normal, in the
/// formulation of Doornik (2005): layer `i` is the box `|x| < X[i]`, and a draw whose `|u|`
/// falls under `X[i+1] / X[i]` is accepted at once (≈ 99 % of draws).
struct Ziggurat {
    x: [f64; LAYERS + 1],
    ratio: [f64; LAYERS],
    /// The density `exp(-x²/2)` at each `x`.
    f: [f64; LAYERS + 1],
}

const LAYERS: usize = 256;
/// Start of the tail.
const ZIG_R: f64 = 3.654_152_885_361_009;
/// Area of every layer.
const ZIG_V: f64 = 0.004_928_673_233_99;

fn ziggurat() -> &'static Ziggurat {
    static TABLES: std::sync::LazyLock<Ziggurat> = std::sync::LazyLock::new(|| {
        let f = |x: f64| (-0.5 * x * x).exp();
        let mut x = [0.0; LAYERS + 1];
        x[0] = ZIG_V / f(ZIG_R);
        x[1] = ZIG_R;
        for i in 2..LAYERS {
            x[i] = (-2.0 * (ZIG_V / x[i - 1] + f(x[i - 1])).ln())
                .max(0.0)
                .sqrt();
        }
        x[LAYERS] = 0.0;
        let mut ratio = [0.0; LAYERS];
        for i in 0..LAYERS {
            ratio[i] = x[i + 1] / x[i];
        }
        let fx = x.map(f);
        Ziggurat { x, ratio, f: fx }
    });
    &TABLES
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The top 53 bits as a float, through `i64` (exact): one instruction where a `u64`
/// conversion takes several.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    reason = "53 bits fit exactly in i64 and f64"
)]
#[inline(always)]
fn top53(bits: u64) -> f64 {
    (bits >> 11) as i64 as f64
}

/// `[-1, 1)` from the top 53 bits.
#[allow(
    clippy::cast_precision_loss,
    reason = "53 random bits are exactly representable"
)]
#[inline(always)]
fn signed_unit(bits: u64) -> f64 {
    top53(bits) * (1.0 / (1u64 << 52) as f64) - 1.0
}

/// `(0, 1]` from the top 53 bits.
#[allow(
    clippy::cast_precision_loss,
    reason = "53 random bits are exactly representable"
)]
fn open_unit(bits: u64) -> f64 {
    (top53(bits) + 1.0) * (1.0 / (1u64 << 53) as f64)
}

/// The rare draws the ziggurat's fast test does not accept: the wedges and the tail, with
/// fresh bits hashed from the element's own (`bits` chained through splitmix64).
#[cold]
fn normal_slow(z: &Ziggurat, mut bits: u64) -> f64 {
    loop {
        let i = (bits & 0xFF) as usize;
        let u = signed_unit(bits);
        if u.abs() < z.ratio[i] {
            return u * z.x[i];
        }
        if i == 0 {
            // The tail beyond R (Marsaglia 1964).
            loop {
                bits = splitmix64(bits);
                let a = -open_unit(bits).ln() / ZIG_R;
                bits = splitmix64(bits);
                let b = -open_unit(bits).ln();
                if 2.0 * b > a * a {
                    return if u < 0.0 { -(ZIG_R + a) } else { ZIG_R + a };
                }
            }
        }
        // A wedge: accept when a uniform height between the layer's bottom and top edges
        // falls under the density at x.
        let x = u * z.x[i];
        bits = splitmix64(bits);
        let y = z.f[i + 1] + open_unit(bits) * (z.f[i] - z.f[i + 1]);
        if y < (-0.5 * x * x).exp() {
            return x;
        }
        bits = splitmix64(bits);
    }
}

/// The key of the normal stream of `seed`.
fn normal_key(seed: u64) -> u64 {
    splitmix64(seed ^ 0x5851_F42D_4C95_7F2D)
}

/// Writes the normal values of global (row-major) indices `start .. start + out.len()`.
///
/// Counter-based: the bits of element `i` are the `i`-th output of SplitMix64 keyed by the
/// seed, so a value depends only on the seed and its global index — never on the chunking —
/// and a run can start anywhere without generating what comes before it.
pub(crate) fn normal_into<T: Float>(seed: u64, mean: f64, std: f64, start: u64, out: &mut [T]) {
    let z = ziggurat();
    let key = normal_key(seed);
    for (k, o) in (start..).zip(out.iter_mut()) {
        let bits = splitmix64(key.wrapping_add(k.wrapping_mul(GOLDEN)));
        let i = (bits & 0xFF) as usize;
        let u = signed_unit(bits);
        let v = if u.abs() < z.ratio[i] {
            u * z.x[i]
        } else {
            normal_slow(z, bits)
        };
        *o = T::from_f64(mean + std * v);
    }
}

/// Writes the uniform values of global indices `start .. start + out.len()`.
pub(crate) fn uniform_into<T: Float>(seed: u64, low: f64, high: f64, start: u64, out: &mut [T]) {
    for (k, o) in (start..).zip(out.iter_mut()) {
        *o = T::from_f64(low + (high - low) * unit(seed, k, 0));
    }
}

#[derive(Clone, Copy, serde::Serialize)]
pub(crate) enum Dist {
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
    let n: usize = shape.iter().product();
    let mut out = vec![T::default(); n];
    RandomRows::new(seed, dist, global, offset, shape).fill(&mut out);
    ArrayD::from_shape_vec(IxDyn(shape), out).expect("the buffer has exactly the block's length")
}

/// The elements of one block, in row-major order, generated piece by piece: a row of the
/// block is a contiguous run of global indices.
#[derive(Clone)]
pub(crate) struct RandomRows {
    seed: u64,
    dist: Dist,
    gstride: Vec<u64>,
    offset: Vec<usize>,
    shape: Vec<usize>,
    /// Elements of the block already produced.
    pos: usize,
}

impl RandomRows {
    fn new(seed: u64, dist: Dist, global: &[usize], offset: &[usize], shape: &[usize]) -> Self {
        let nd = shape.len();
        let mut gstride = vec![1u64; nd];
        for k in (0..nd.saturating_sub(1)).rev() {
            gstride[k] = gstride[k + 1] * global[k + 1] as u64;
        }
        Self {
            seed,
            dist,
            gstride,
            offset: offset.to_vec(),
            shape: shape.to_vec(),
            pos: 0,
        }
    }

    /// Writes the next `out.len()` elements of the block.
    pub(crate) fn fill<T: Float>(&mut self, out: &mut [T]) {
        let nd = self.shape.len();
        let row = if nd == 0 { 1 } else { self.shape[nd - 1] };
        let mut done = 0;
        while done < out.len() {
            let (r, j) = (self.pos / row.max(1), self.pos % row.max(1));
            // Global index of element (row r, column j) of the block.
            let mut rest = r;
            let mut start = 0u64;
            for k in (0..nd).rev() {
                let c = if k + 1 == nd {
                    j
                } else {
                    let c = rest % self.shape[k];
                    rest /= self.shape[k];
                    c
                };
                start += (self.offset[k] + c) as u64 * self.gstride[k];
            }
            let n = (row - j).min(out.len() - done);
            let seg = &mut out[done..done + n];
            match self.dist {
                Dist::Uniform(lo, hi) => uniform_into(self.seed, lo, hi, start, seg),
                Dist::Normal(mean, std) => normal_into(self.seed, mean, std, start, seg),
            }
            done += n;
            self.pos += n;
        }
    }
}

impl<T: Float> BlockStream<T> for RandomRows {
    fn read(&mut self, out: &mut [T]) -> Result<(), BoxError> {
        self.fill(out);
        Ok(())
    }
}

impl<T: Float> Array<T> {
    fn random(shape: &[usize], chunks: &[usize], seed: u64, dist: Dist) -> Result<Self> {
        let grid = ChunkGrid::regular(shape, chunks)?;
        // Version 3: counter-based normal values (version 2 used per-group Xoshiro streams,
        // version 1 a polar method).
        let spec = TaskSpec::new("random").pure().version("3");
        let global = shape.to_vec();
        let global2 = shape.to_vec();
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
        // Consumers generate the values inside their own task, never holding the block.
        let g = grid.clone();
        let open: OpenStream<T> = Arc::new(move |i| {
            let c = g.block_coords(i);
            let rows = RandomRows::new(
                seed,
                dist,
                &global2,
                &g.block_offset(&c),
                &g.block_shape(&c),
            );
            Ok(Box::new(rows) as Box<dyn BlockStream<T>>)
        });
        Self::from_blocks_streamed(grid, blocks, open)
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

//! Reproducible random arrays: every element is a function of the seed and its global index,
//! so the values do not depend on the chunking.

use std::sync::Arc;

use brisk_graph::{BoxError, TaskSpec};
use ndarray::{ArrayD, IxDyn};

use crate::array::Array;
use crate::element::{DType, Float};
use crate::error::Result;
use crate::grid::ChunkGrid;
use crate::stream::{BlockStream, OpenStream};

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of the uniform stream of `seed`.
fn uniform_key(seed: u64) -> u64 {
    splitmix64(seed)
}

/// A uniform number in `[0, 1)` for element `index` of the stream keyed by `key`.
#[allow(
    clippy::cast_precision_loss,
    reason = "53 random bits are exactly representable"
)]
#[inline(always)]
fn unit(key: u64, index: u64) -> f64 {
    top53(splitmix64(key ^ index)) * (1.0 / (1u64 << 53) as f64)
}

/// The 256-layer ziggurat of Marsaglia and Tsang (2000) for the standard normal, in the
/// formulation of Doornik (2005): layer `i` is the box `|x| < X[i]`, and a draw whose `|u|`
/// falls under `X[i+1] / X[i]` is accepted at once (≈ 99 % of draws).
struct Ziggurat {
    x: [f64; LAYERS + 1],
    ratio: [f64; LAYERS],
    /// The density `exp(-x²/2)` at each `x`.
    f: [f64; LAYERS + 1],
    /// Per wedge layer, how far the density strays from the chord between the layer's
    /// edges, as a fraction of the layer's height (see [`wedge_accepts`]).
    band: [f64; LAYERS],
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
        let mut band = [0.0; LAYERS];
        for i in 1..LAYERS {
            band[i] = chord_band(x[i + 1], x[i]);
        }
        Ziggurat {
            x,
            ratio,
            f: fx,
            band,
        }
    });
    &TABLES
}

/// The largest distance between the density `f(x) = exp(-x²/2)` and its chord over
/// `[a, b]`, divided by `f(a) - f(b)`, with a margin for rounding. On a side of 1 the density is
/// concave or convex, so the distance to the chord peaks where `f'` equals the chord's slope
/// (found by bisection, `f'` being monotone there); a layer across 1 gets an infinite band.
fn chord_band(a: f64, b: f64) -> f64 {
    let f = |x: f64| (-0.5 * x * x).exp();
    if a < 1.0 && b > 1.0 {
        return f64::INFINITY;
    }
    let (fa, fb) = (f(a), f(b));
    let slope = (fb - fa) / (b - a);
    let gap = |x: f64| -x * f(x) - slope;
    let (mut lo, mut hi) = (a, b);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if (gap(mid) > 0.0) == (gap(lo) > 0.0) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let x = 0.5 * (lo + hi);
    let dist = (f(x) - (fa + slope * (x - a))).abs();
    dist / (fa - fb) * (1.0 + 1e-6) + 1e-12
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

/// One ziggurat draw from layer `i` at `u` in `[-1, 1)`; `bits` seeds the fresh bits of the
/// rare slow path.
#[inline(always)]
fn draw(z: &Ziggurat, i: usize, u: f64, bits: u64) -> f64 {
    if u.abs() < z.ratio[i] {
        u * z.x[i]
    } else {
        normal_slow(z, i, u, bits)
    }
}

/// The rare draws the ziggurat's fast test does not accept: the wedges and the tail, with
/// fresh bits hashed from the element's own (`bits` chained through splitmix64). The first
/// round tests the draw `(i, u)` that the fast test rejected; a rejected wedge starts over
/// with a fresh 64-bit draw.
#[cold]
fn normal_slow(z: &Ziggurat, mut i: usize, mut u: f64, mut bits: u64) -> f64 {
    loop {
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
        let x = u * z.x[i];
        bits = splitmix64(bits);
        if wedge_accepts(z, i, x, open_unit(bits)) {
            return x;
        }
        bits = splitmix64(bits);
        i = (bits & 0xFF) as usize;
        u = signed_unit(bits);
    }
}

/// The wedge test of layer `i` (`X[i+1] <= |x| < X[i]`): accept when the height
/// `y = f[i+1] - v (f[i+1] - f[i])`, uniform between the layer's edges for `v` uniform in
/// `(0, 1]`, falls under the density at `x`.
///
/// Squeezed by the chord between the edges: `y` is under the chord exactly when `v > t` (`t` is
/// where `|x|` lies between the edges), and the density stays within `band[i]` (in units of
/// `v`) of the chord — above it where it is concave (`|x| <= 1`), below where convex — so only
/// heights within that band of the chord need the `exp`.
#[inline(always)]
fn wedge_accepts(z: &Ziggurat, i: usize, x: f64, v: f64) -> bool {
    let t = (x.abs() - z.x[i + 1]) / (z.x[i] - z.x[i + 1]);
    let e = z.band[i];
    if z.x[i] <= 1.0 {
        // Concave: the density is between the chord and `band` above it.
        if v > t {
            return true;
        }
        if v <= t - e {
            return false;
        }
    } else if z.x[i + 1] >= 1.0 {
        // Convex: the density is between the chord and `band` below it.
        if v <= t {
            return false;
        }
        if v > t + e {
            return true;
        }
    }
    wedge_exact(z, i, x, v)
}

/// The wedge test without the squeeze.
#[inline(always)]
fn wedge_exact(z: &Ziggurat, i: usize, x: f64, v: f64) -> bool {
    z.f[i + 1] - v * (z.f[i + 1] - z.f[i]) < (-0.5 * x * x).exp()
}

/// The key of the normal stream of `seed`.
fn normal_key(seed: u64) -> u64 {
    splitmix64(seed ^ 0x5851_F42D_4C95_7F2D)
}

/// The 64 bits of counter `k` of the stream keyed by `key`.
#[inline(always)]
fn counter_bits(key: u64, k: u64) -> u64 {
    splitmix64(key.wrapping_add(k.wrapping_mul(GOLDEN)))
}

/// A normal draw from 32 bits (8 for the layer, 24 for `u`, as NumPy draws float32 normals);
/// `bits` seeds the slow path.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the layer is the low 8 bits by construction"
)]
#[inline(always)]
fn draw32(z: &Ziggurat, r: u32, bits: u64) -> f64 {
    let u = f64::from(r >> 8) * (1.0 / f64::from(1u32 << 23)) - 1.0;
    draw(z, (r & 0xFF) as usize, u, bits)
}

/// Writes the normal values of global (row-major) indices `start .. start + out.len()`.
///
/// Counter-based: the bits of element `i` come from the `i`-th output of SplitMix64 keyed by
/// the seed, so a value depends only on the seed and its global index — never on the chunking
/// — and a run can start anywhere without generating what comes before it. An `f64` draw takes
/// the 64 bits of its counter (8 select the layer, 53 make `u`); an `f32` draw needs only 32,
/// so elements `2m` and `2m + 1` take the low and high halves of counter `m`.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the halves of a u64 are taken on purpose"
)]
pub(crate) fn normal_into<T: Float>(seed: u64, mean: f64, std: f64, start: u64, out: &mut [T]) {
    let z = ziggurat();
    let key = normal_key(seed);
    if T::DTYPE == DType::Float32 {
        // Elements 2m and 2m+1 share counter m; the slow paths of the halves are seeded apart.
        let half = |k: u64| {
            let h = counter_bits(key, k >> 1);
            if k & 1 == 0 {
                draw32(z, h as u32, h)
            } else {
                draw32(z, (h >> 32) as u32, h ^ GOLDEN)
            }
        };
        let mut k = start;
        // An odd start takes the high half of its counter first.
        let (head, rest) = out.split_at_mut(usize::from(k & 1 == 1).min(out.len()));
        if let [first] = head {
            *first = T::from_f64(mean + std * half(k));
            k += 1;
        }
        let mut pairs = rest.chunks_exact_mut(2);
        for pair in &mut pairs {
            let h = counter_bits(key, k >> 1);
            pair[0] = T::from_f64(mean + std * draw32(z, h as u32, h));
            pair[1] = T::from_f64(mean + std * draw32(z, (h >> 32) as u32, h ^ GOLDEN));
            k += 2;
        }
        if let [last] = pairs.into_remainder() {
            *last = T::from_f64(mean + std * half(k));
        }
        return;
    }
    for (k, o) in (start..).zip(out.iter_mut()) {
        let bits = counter_bits(key, k);
        let v = draw(z, (bits & 0xFF) as usize, signed_unit(bits), bits);
        *o = T::from_f64(mean + std * v);
    }
}

/// Writes the uniform values of global indices `start .. start + out.len()`.
pub(crate) fn uniform_into<T: Float>(seed: u64, low: f64, high: f64, start: u64, out: &mut [T]) {
    let key = uniform_key(seed);
    for (k, o) in (start..).zip(out.iter_mut()) {
        *o = T::from_f64(low + (high - low) * unit(key, k));
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
        // Version 4: float32 normals from 32 bits each (version 3 took 64 bits for every
        // element, version 2 used per-group Xoshiro streams, version 1 a polar method).
        // `dist` is captured and described by the `dist_name` argument.
        let spec = TaskSpec::new("random")
            .pure()
            .version("4")
            .captures_covered_by_args();
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
        let (normal, a, b) = match dist {
            Dist::Uniform(a, b) => (false, a, b),
            Dist::Normal(a, b) => (true, a, b),
        };
        let recipe = crate::recipe::Recipe::Random {
            dtype: T::DTYPE,
            shape: shape.to_vec(),
            chunks: chunks.to_vec(),
            seed,
            normal,
            a,
            b,
        };
        Ok(Self::from_blocks_streamed(grid, blocks, open)?.with_recipe(recipe))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_squeezed_wedge_test_decides_as_the_exact_one() {
        // Every wedge layer, |x| across the wedge, heights across the layer: the chord only
        // short-cuts decisions, it never changes one (ties at the chord are measure zero).
        let z = ziggurat();
        let (mut checked, mut squeezed) = (0u32, 0u32);
        for i in 1..LAYERS {
            for a in 0..=64 {
                let frac = f64::from(a) / 64.0;
                let x = z.x[i + 1] + frac * 0.999_999 * (z.x[i] - z.x[i + 1]);
                for b in 1..=64 {
                    let v = (f64::from(b) - 0.37) / 64.0;
                    for s in [x, -x] {
                        let got = wedge_accepts(z, i, s, v);
                        assert_eq!(got, wedge_exact(z, i, s, v), "layer {i}, x {s}, v {v}");
                        checked += 1;
                        let t = (x - z.x[i + 1]) / (z.x[i] - z.x[i + 1]);
                        let e = z.band[i];
                        let decided = if z.x[i] <= 1.0 {
                            v > t || v <= t - e
                        } else if z.x[i + 1] >= 1.0 {
                            v <= t || v > t + e
                        } else {
                            false
                        };
                        squeezed += u32::from(decided);
                    }
                }
            }
        }
        // The invariant behind the squeeze: in every layer on one side of 1, the height `v` at
        // which the density crosses lies within the band of the chord, densely sampled.
        for i in 1..LAYERS {
            let (a, b) = (z.x[i + 1], z.x[i]);
            if a < 1.0 && b > 1.0 {
                continue;
            }
            for k in 0..=4000 {
                let x = a + (b - a) * f64::from(k) / 4000.0;
                let t = (x - a) / (b - a);
                let crossing = (z.f[i + 1] - (-0.5 * x * x).exp()) / (z.f[i + 1] - z.f[i]);
                assert!(
                    (crossing - t).abs() <= z.band[i],
                    "layer {i}: the density at {x} is {} from the chord, band {}",
                    (crossing - t).abs(),
                    z.band[i]
                );
            }
        }
        // The squeeze must actually spare `exp` calls: all but the draws within the thin
        // band around the chord, and the one layer across 1.
        assert!(
            squeezed * 100 > checked * 95,
            "{squeezed} of {checked} squeezed"
        );
    }
}

//! Frame-anchored Gaussian noise: a pure function of (seed, frame, channel, x, y, step), used for
//! the start noise and for churn in every tile of every window, and for deterministic weight init.
//!
//! Why counter-based: the same pixel of the same frame must get the same noise whatever window,
//! tile, thread or render order asks for it, so there is no generator state to carry around.
//!
//! Construction (Philox4x32-10 of Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"):
//! 1. a per-stream key = Philox(counter = (frame, step, channel / 4), key = seed), so that seed,
//!    frame, step and channel block all enter a full-strength PRF;
//! 2. per pixel, Philox(counter = (x, y), key = stream key) gives 4 u32;
//! 3. two Box-Muller transforms turn them into 4 Gaussians: channels 4b..4b+3 of that pixel.
//!
//! So RGB costs one Philox call per pixel. `ln`, `sin`, `cos` are our own f64 polynomials built
//! from IEEE-exact operations only (no platform libm), so every render node gets the same bits.
use candle_core::{Device, Tensor};

use crate::sampling::samplers::NoiseSource;
use crate::Result;

/// Stream for the start noise; churn at sampler step `i` (0-based) uses stream `i + 1`.
pub const STEP_INIT: u32 = 0;

// Philox4x32 multipliers and Weyl key increments (Random123's PHILOX_M4x32_*, PHILOX_W32_*).
const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds, the Random123 reference variant (bit-exact with its KAT vectors).
#[inline(always)]
pub(crate) fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = ctr;
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c0);
        let p1 = u64::from(PHILOX_M1) * u64::from(c2);
        (c0, c1, c2, c3) = (
            (p1 >> 32) as u32 ^ c1 ^ k0,
            p1 as u32,
            (p0 >> 32) as u32 ^ c3 ^ k1,
            p0 as u32,
        );
    }
    [c0, c1, c2, c3]
}

/// Key of one (seed, frame, step, channel block) stream. Computed once per block in
/// `fill_planar`, so the per-pixel cost is a single Philox call.
#[inline]
fn stream_key(seed: u64, frame: i64, step: u32, block: u32) -> [u32; 2] {
    let f = frame as u64; // two's complement: negative frames are distinct counters
    let o = philox4x32_10(
        [f as u32, (f >> 32) as u32, step, block],
        [seed as u32, (seed >> 32) as u32],
    );
    [o[0], o[1]]
}

/// The 4 raw words of pixel (x, y) in a stream.
#[inline(always)]
fn pixel_words(key: [u32; 2], x: i64, y: i64) -> [u32; 4] {
    let (x, y) = (x as u64, y as u64);
    philox4x32_10(
        [x as u32, (x >> 32) as u32, y as u32, (y >> 32) as u32],
        key,
    )
}

/// Natural log of a positive, normal f64 from exact operations: split off the binary exponent,
/// then the atanh series on a mantissa in [sqrt(1/2), sqrt(2)] (|s| <= 0.172, truncation < 2e-14).
#[inline(always)]
fn ln_pos(v: f64) -> f64 {
    const LN2: f64 = std::f64::consts::LN_2;
    let bits = v.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let series = 1.0
        + z * (1.0 / 3.0
            + z * (1.0 / 5.0
                + z * (1.0 / 7.0
                    + z * (1.0 / 9.0 + z * (1.0 / 11.0 + z * (1.0 / 13.0 + z * (1.0 / 15.0)))))));
    e as f64 * LN2 + 2.0 * s * series
}

/// (sin, cos) of the angle 2*pi*w/2^32: the nearest quarter turn and the offset from it come
/// exactly from the integer, leaving |phi| <= pi/4 for short Taylor polynomials (error < 1e-11).
#[inline(always)]
fn sin_cos_turn(w: u32) -> (f64, f64) {
    const QUARTER: u32 = 1 << 30;
    let r = w.wrapping_add(QUARTER / 2); // a full turn wraps to quadrant 0
    let q = r >> 30;
    let off = (r & (QUARTER - 1)) as i32 - (QUARTER / 2) as i32; // i32: converts in SIMD
    let phi = f64::from(off) * (std::f64::consts::FRAC_PI_2 / f64::from(QUARTER));
    let p2 = phi * phi;
    let s = phi
        * (1.0
            + p2 * (-1.0 / 6.0
                + p2 * (1.0 / 120.0
                    + p2 * (-1.0 / 5040.0 + p2 * (1.0 / 362_880.0 + p2 * (-1.0 / 39_916_800.0))))));
    let c = 1.0
        + p2 * (-0.5
            + p2 * (1.0 / 24.0
                + p2 * (-1.0 / 720.0
                    + p2 * (1.0 / 40_320.0
                        + p2 * (-1.0 / 3_628_800.0 + p2 * (1.0 / 479_001_600.0))))));
    // Quadrant q: sin = (s, c, -s, -c)[q], cos = (c, -s, -c, s)[q]; selects, not a jump
    // table, so that batches of pixels vectorise.
    let (sb, cb) = if q & 1 == 1 { (c, s) } else { (s, c) };
    let sin_sign = if q & 2 != 0 { -1.0 } else { 1.0 };
    let cos_sign = if (q + 1) & 2 != 0 { -1.0 } else { 1.0 };
    (sb * sin_sign, cb * cos_sign)
}

/// Box-Muller: two u32 -> two independent N(0,1). `a` is mapped to (0, 1) (never 0, so the
/// log is finite; the tail is cut at 6.8 sigma, probability 1e-11).
#[inline(always)]
fn box_muller(a: u32, b: u32) -> (f32, f32) {
    let u = (2.0 * f64::from(a) + 1.0) * (1.0 / (1u64 << 33) as f64);
    let r = (-2.0 * ln_pos(u)).sqrt();
    let (s, c) = sin_cos_turn(b);
    ((r * c) as f32, (r * s) as f32)
}

/// One N(0,1) sample for a key. Bit-identical to the matching element of [`fill_planar`].
pub fn gaussian(seed: u64, frame: i64, channel: u32, x: i64, y: i64, step: u32) -> f32 {
    let w = pixel_words(stream_key(seed, frame, step, channel / 4), x, y);
    let lane = channel % 4;
    let (g0, g1) = if lane < 2 {
        box_muller(w[0], w[1])
    } else {
        box_muller(w[2], w[3])
    };
    if lane.is_multiple_of(2) {
        g0
    } else {
        g1
    }
}

/// Pixels generated together in `fill_planar`: stage by stage over fixed-size arrays, so the
/// compiler vectorises Philox and Box-Muller across pixels (about 2x faster than pixel by pixel
/// on baseline x86-64). Only IEEE-exact operations, so SIMD and scalar give the same bits.
const BATCH: usize = 8;

/// Gaussians of pixels `x0 .. x0 + BATCH` of row `y`: `[lane][pixel]`, lanes 2 and 3 only
/// computed if `lanes > 2`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // the same index into several SoA arrays is the point
fn pixel_batch(key: [u32; 2], x0: i64, y: i64, lanes: usize) -> [[f32; BATCH]; 4] {
    let mut w = [[0u32; BATCH]; 4];
    for p in 0..BATCH {
        let o = pixel_words(key, x0.wrapping_add(p as i64), y);
        for (lane, word) in o.into_iter().enumerate() {
            w[lane][p] = word;
        }
    }
    let mut g = [[0f32; BATCH]; 4];
    for pair in 0..lanes.div_ceil(2) {
        for p in 0..BATCH {
            (g[2 * pair][p], g[2 * pair + 1][p]) = box_muller(w[2 * pair][p], w[2 * pair + 1][p]);
        }
    }
    g
}

/// Planar fill: `out[c*h*w + j*w + i] = gaussian(seed, frame, c, x0+i, y0+j, step)`.
///
/// `out` should hold `channels*height*width` values; a shorter slice gets the prefix that fits
/// (same layout) rather than a panic on the render path. Coordinates wrap instead of overflowing.
#[allow(clippy::too_many_arguments)] // the contract's flat key keeps call sites explicit
pub fn fill_planar(
    seed: u64,
    frame: i64,
    step: u32,
    x0: i64,
    y0: i64,
    width: usize,
    height: usize,
    channels: usize,
    out: &mut [f32],
) {
    let plane = width.saturating_mul(height);
    for block in 0..channels.div_ceil(4) {
        let key = stream_key(seed, frame, step, block as u32);
        let c0 = block * 4;
        let lanes = (channels - c0).min(4);
        for j in 0..height {
            let y = y0.wrapping_add(j as i64);
            let row = j * width;
            for i in (0..width).step_by(BATCH) {
                let n = (width - i).min(BATCH);
                let g = pixel_batch(key, x0.wrapping_add(i as i64), y, lanes);
                for (lane, values) in g.iter().take(lanes).enumerate() {
                    let start = (c0 + lane) * plane + row + i;
                    let end = (start + n).min(out.len());
                    if start < end {
                        out[start..end].copy_from_slice(&values[..end - start]);
                    }
                }
            }
        }
    }
}

/// The noise of one tile of a window, anchored to absolute frames and pixels: frame `k` of the
/// window is timeline frame `frames[k]`, row `j` is `y0 + j` (rows in increasing y), column `i`
/// is `x0 + i`. So a pixel gets the same noise in every window and tile that contains it.
#[derive(Clone, Debug)]
pub struct WindowNoise {
    pub seed: u64,
    pub frames: Vec<i64>,
    pub x0: i64,
    pub y0: i64,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub device: Device,
}

impl WindowNoise {
    /// `[K, C, H, W]` f32 noise of stream `step` on `self.device`.
    pub fn tensor(&self, step: u32) -> Result<Tensor> {
        let per_frame = self.channels * self.height * self.width;
        let mut data = vec![0f32; per_frame * self.frames.len()];
        for (chunk, &t) in data.chunks_mut(per_frame.max(1)).zip(&self.frames) {
            fill_planar(
                self.seed,
                t,
                step,
                self.x0,
                self.y0,
                self.width,
                self.height,
                self.channels,
                chunk,
            );
        }
        let shape = (self.frames.len(), self.channels, self.height, self.width);
        Ok(Tensor::from_vec(data, shape, &self.device)?)
    }
}

impl NoiseSource for WindowNoise {
    fn noise(&self, step: u32) -> Result<Tensor> {
        self.tensor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 256 x 256 values of one channel of a stream (65,536 samples).
    fn field(seed: u64, frame: i64, ch: usize, x0: i64, y0: i64, step: u32) -> Vec<f32> {
        let n = 256 * 256;
        let mut v = vec![0f32; n * (ch + 1)];
        fill_planar(seed, frame, step, x0, y0, 256, 256, ch + 1, &mut v);
        v.split_off(n * ch)
    }

    fn pearson(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (
            a.iter().map(|&v| f64::from(v)).sum::<f64>() / n,
            b.iter().map(|&v| f64::from(v)).sum::<f64>() / n,
        );
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
            sab += dx * dy;
            saa += dx * dx;
            sbb += dy * dy;
        }
        sab / (saa * sbb).sqrt()
    }

    #[test]
    fn philox_matches_random123_known_answers() {
        // Random123 kat_vectors, "philox4x32 10" lines: counter, key -> output.
        let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            (
                [0; 4],
                [0; 2],
                [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
            ),
            (
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0],
                [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
            ),
        ];
        for (ctr, key, want) in cases {
            assert_eq!(
                philox4x32_10(ctr, key),
                want,
                "ctr {ctr:08x?} key {key:08x?}"
            );
        }
    }

    #[test]
    fn own_ln_and_sin_cos_match_std() {
        let mut worst_ln = 0f64;
        let mut worst_trig = 0f64;
        for k in 0..200_000u64 {
            let w = (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32;
            let u = (2.0 * f64::from(w) + 1.0) / (1u64 << 33) as f64;
            worst_ln = worst_ln.max(((ln_pos(u) - u.ln()) / u.ln()).abs());
            let (s, c) = sin_cos_turn(w);
            let a = std::f64::consts::TAU * f64::from(w) / (1u64 << 32) as f64;
            worst_trig = worst_trig.max((s - a.sin()).abs()).max((c - a.cos()).abs());
        }
        for u in [1e-300, 0.5, 1.0 - 1e-15, 1.0, 3.0, 1e300] {
            let rel = (ln_pos(u) - u.ln()).abs() / u.ln().abs().max(1.0);
            assert!(rel < 1e-13, "ln({u})");
        }
        assert!(worst_ln < 1e-12, "ln relative error {worst_ln:e}");
        assert!(worst_trig < 1e-10, "sin/cos error {worst_trig:e}");
    }

    #[test]
    fn same_key_same_value_and_fill_matches_gaussian() {
        assert_eq!(
            gaussian(42, -3, 2, -7, 9, 5).to_bits(),
            gaussian(42, -3, 2, -7, 9, 5).to_bits()
        );
        // Spans negative and positive x, y; 6 channels = one full and one partial block.
        let (w, h, c) = (13, 11, 6);
        let (x0, y0) = (-6, -5);
        let mut out = vec![f32::NAN; w * h * c];
        fill_planar(99, -2, 3, x0, y0, w, h, c, &mut out);
        for ch in 0..c {
            for j in 0..h {
                for i in 0..w {
                    let g = gaussian(99, -2, ch as u32, x0 + i as i64, y0 + j as i64, 3);
                    let v = out[ch * h * w + j * w + i];
                    assert_eq!(v.to_bits(), g.to_bits(), "c {ch} x {i} y {j}");
                }
            }
        }
        // A sub-window gives the same values at the same absolute pixels (tile independence).
        let mut sub = vec![0f32; 4 * 3 * c];
        fill_planar(99, -2, 3, x0 + 5, y0 + 2, 4, 3, c, &mut sub);
        assert_eq!(sub[4 * 3 + 4 + 1], out[h * w + 3 * w + 6]);
    }

    #[test]
    fn short_buffer_gets_the_prefix() {
        let mut full = vec![0f32; 11 * 2 * 3];
        fill_planar(1, 0, 0, 0, 0, 11, 2, 3, &mut full);
        for len in [0, 5, 20, 30, 65] {
            let mut short = vec![0f32; len];
            fill_planar(1, 0, 0, 0, 0, 11, 2, 3, &mut short);
            assert_eq!(short, full[..len]);
        }
    }

    #[test]
    fn every_key_component_gives_an_uncorrelated_stream() {
        let base = field(7, 3, 0, -128, -128, 2);
        let variants: [(&str, Vec<f32>); 9] = [
            ("seed", field(8, 3, 0, -128, -128, 2)),
            ("seed high bits", field(7 | 1 << 40, 3, 0, -128, -128, 2)),
            ("frame", field(7, 4, 0, -128, -128, 2)),
            ("negative frame", field(7, -3, 0, -128, -128, 2)),
            (
                "channel (same Box-Muller pair)",
                field(7, 3, 1, -128, -128, 2),
            ),
            ("channel (other pair)", field(7, 3, 2, -128, -128, 2)),
            ("channel (other block)", field(7, 3, 4, -128, -128, 2)),
            ("x", field(7, 3, 0, -127, -128, 2)),
            ("y", field(7, 3, 0, -128, -127, 2)),
        ];
        let step = field(7, 3, 0, -128, -128, 3);
        let sq = |v: &[f32]| v.iter().map(|g| g * g).collect::<Vec<f32>>();
        for (what, v) in variants.iter().chain([("step", step)].iter()) {
            assert_ne!(&base, v, "{what}");
            // 5 standard errors at n = 65,536; squares catch a shared Box-Muller radius.
            let r = pearson(&base, v);
            let r2 = pearson(&sq(&base), &sq(v));
            assert!(
                r.abs() < 0.02 && r2.abs() < 0.02,
                "{what}: r {r:.4}, r of squares {r2:.4}"
            );
        }
    }

    /// Standard normal CDF via erf (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
    fn phi(x: f64) -> f64 {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * z);
        let poly = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let erf = 1.0 - poly * (-z * z).exp();
        if x >= 0.0 {
            0.5 * (1.0 + erf)
        } else {
            0.5 * (1.0 - erf)
        }
    }

    #[test]
    fn values_are_standard_normal() {
        let (w, h, c) = (256, 256, 4);
        let mut v = vec![0f32; w * h * c];
        fill_planar(2024, 17, STEP_INIT, -100, 50, w, h, c, &mut v);
        let n = v.len() as f64;
        let mean = v.iter().map(|&g| f64::from(g)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&g| (f64::from(g) - mean).powi(2))
            .sum::<f64>()
            / n;
        let kurt = v
            .iter()
            .map(|&g| (f64::from(g) - mean).powi(4))
            .sum::<f64>()
            / (n * var * var);
        // Tolerances are ~5 standard errors at n = 262,144.
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.015, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.05, "kurtosis {kurt}");
        assert!(v.iter().all(|g| g.is_finite()));
        // Kolmogorov-Smirnov against N(0,1); 1.95/sqrt(n) is the 0.1% critical value.
        let mut s: Vec<f64> = v.iter().map(|&g| f64::from(g)).collect();
        s.sort_by(f64::total_cmp);
        let d = s
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = phi(x);
                (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
            })
            .fold(0f64, f64::max);
        assert!(d < 1.95 / n.sqrt(), "KS distance {d}");
    }

    #[test]
    fn window_noise_is_anchored_to_absolute_frames_and_pixels() -> Result<()> {
        let wn = WindowNoise {
            seed: 5,
            frames: vec![10, 11, 12],
            x0: -4,
            y0: 8,
            width: 6,
            height: 5,
            channels: 3,
            device: Device::Cpu,
        };
        let t = wn.noise(2)?;
        assert_eq!(t.dims(), &[3, 3, 5, 6]);
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        // frame index 2, channel 1, row 3, column 4.
        let at = ((2 * 3 + 1) * 5 + 3) * 6 + 4;
        assert_eq!(v[at].to_bits(), gaussian(5, 12, 1, 0, 11, 2).to_bits());
        assert_ne!(wn.tensor(1)?.flatten_all()?.to_vec1::<f32>()?, v);
        Ok(())
    }
}

//! Quality metrics for evaluating a denoiser against clean footage: PSNR, SSIM and temporal
//! flicker. Used by `vdiff eval`, the training loop's validation and the comparison script; not
//! on the render path.
//!
//! Conventions (so that figures compare with published ones):
//! - Values are image units [0,1], clamped to [0,1] and scaled to the 0-255 scale before any
//!   metric (an 8-bit file would be clipped the same way).
//! - PSNR of a sequence is computed from the mean squared error over all pixels, channels and
//!   frames (ffmpeg's `psnr` "average"), peak 255.
//! - SSIM follows Wang et al. 2004 and skimage's `structural_similarity(gaussian_weights=True,
//!   sigma=1.5, use_sample_covariance=False, data_range=255)`: an 11x11 Gaussian window
//!   (sigma 1.5), K1 = 0.01, K2 = 0.03, computed per RGB channel over the positions where the
//!   window lies fully inside the image, averaged over channels, then over frames.
//! - Flicker is the mean over consecutive frame pairs of mean |(out[t+1]-out[t]) -
//!   (clean[t+1]-clean[t])| on the 0-255 scale: it is zero when the output moves exactly as the
//!   clean footage does, whatever its per-frame error.
use crate::engine::RgbImage;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Peak value of the 0-255 scale the metrics report on.
pub const PEAK: f64 = 255.0;
/// SSIM window: Gaussian sigma and radius (11 taps, as skimage's truncate=3.5 gives for 1.5).
pub const SSIM_SIGMA: f64 = 1.5;
pub const SSIM_RADIUS: usize = 5;
pub const SSIM_K1: f64 = 0.01;
pub const SSIM_K2: f64 = 0.03;

/// Metrics of one output sequence against its clean reference.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequenceMetrics {
    /// dB, from the MSE over the whole sequence.
    pub psnr: f64,
    /// Mean SSIM over channels and frames, in [-1, 1].
    pub ssim: f64,
    /// Mean absolute temporal-difference error, 0-255 scale (0 for a single frame).
    pub flicker: f64,
    /// Mean squared error on the 0-255 scale (what `psnr` is computed from).
    pub mse: f64,
    pub frames: usize,
}

/// PSNR in dB of a mean squared error on a scale with the given peak (infinite for mse 0).
pub fn psnr_from_mse(mse: f64, peak: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        10.0 * (peak * peak / mse).log10()
    }
}

/// Image units to the 0-255 scale, clamped as an 8-bit file would be.
fn to255(v: f32) -> f64 {
    // NaN counts as black, like a file writer that sanitises it.
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    f64::from(v) * PEAK
}

/// Sum of squared differences on the 0-255 scale, and the number of values compared.
fn sse(a: &[f32], b: &[f32]) -> (f64, usize) {
    let s = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = to255(x) - to255(y);
            d * d
        })
        .sum();
    (s, a.len().min(b.len()))
}

/// Mean squared error on the 0-255 scale between two images of the same size.
pub fn mse(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    same_size(a, b)?;
    let (s, n) = sse(&a.data, &b.data);
    Ok(if n == 0 { 0.0 } else { s / n as f64 })
}

fn same_size(a: &RgbImage, b: &RgbImage) -> Result<()> {
    let (wa, ha, wb, hb) = (
        a.rect.width(),
        a.rect.height(),
        b.rect.width(),
        b.rect.height(),
    );
    if wa != wb || ha != hb {
        return Err(Error::image(
            "size",
            format!("cannot compare a {wa}x{ha} frame with a {wb}x{hb} frame"),
        ));
    }
    if a.data.len() != a.rect.area() * 3 || b.data.len() != b.rect.area() * 3 {
        return Err(Error::image(
            "buffer",
            "pixel buffer does not match its rectangle",
        ));
    }
    Ok(())
}

/// Normalised 1-D Gaussian taps of the SSIM window (length 2*SSIM_RADIUS+1).
pub fn ssim_taps() -> Vec<f64> {
    let r = SSIM_RADIUS as i64;
    let mut t: Vec<f64> = (-r..=r)
        .map(|i| (-((i * i) as f64) / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp())
        .collect();
    let s: f64 = t.iter().sum();
    t.iter_mut().for_each(|v| *v /= s);
    t
}

/// "Valid" separable filtering: output (w-2r) x (h-2r), each value the window-weighted sum.
fn filter_valid(p: &[f64], w: usize, h: usize, taps: &[f64]) -> Vec<f64> {
    let n = taps.len();
    let (ow, oh) = (w + 1 - n, h + 1 - n);
    // Horizontal pass over all rows, then vertical pass.
    let mut tmp = vec![0.0; ow * h];
    for y in 0..h {
        let row = &p[y * w..(y + 1) * w];
        for x in 0..ow {
            tmp[y * ow + x] = taps.iter().zip(&row[x..x + n]).map(|(t, v)| t * v).sum();
        }
    }
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = taps
                .iter()
                .enumerate()
                .map(|(k, t)| t * tmp[(y + k) * ow + x])
                .sum();
        }
    }
    out
}

/// Mean SSIM of two single-channel planes on the 0-255 scale (row-major, w x h). Errors when the
/// plane is smaller than the 11x11 window.
pub fn ssim_plane(a: &[f64], b: &[f64], w: usize, h: usize) -> Result<f64> {
    let n = 2 * SSIM_RADIUS + 1;
    if w < n || h < n {
        return Err(Error::image(
            "size",
            format!("SSIM needs frames of at least {n}x{n} pixels, got {w}x{h}"),
        ));
    }
    if a.len() != w * h || b.len() != w * h {
        return Err(Error::image("buffer", "plane does not match its size"));
    }
    let taps = ssim_taps();
    let prod = |f: &dyn Fn(f64, f64) -> f64| -> Vec<f64> {
        a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
    };
    let mx = filter_valid(a, w, h, &taps);
    let my = filter_valid(b, w, h, &taps);
    let mxx = filter_valid(&prod(&|x, _| x * x), w, h, &taps);
    let myy = filter_valid(&prod(&|_, y| y * y), w, h, &taps);
    let mxy = filter_valid(&prod(&|x, y| x * y), w, h, &taps);
    let c1 = (SSIM_K1 * PEAK).powi(2);
    let c2 = (SSIM_K2 * PEAK).powi(2);
    let mut sum = 0.0;
    for i in 0..mx.len() {
        let (ux, uy) = (mx[i], my[i]);
        let vx = mxx[i] - ux * ux;
        let vy = myy[i] - uy * uy;
        let cxy = mxy[i] - ux * uy;
        sum +=
            ((2.0 * ux * uy + c1) * (2.0 * cxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
    }
    Ok(sum / mx.len() as f64)
}

/// SSIM of two RGB frames: per channel on the 0-255 scale, averaged over the three channels.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    same_size(a, b)?;
    let (w, h) = (a.rect.width() as usize, a.rect.height() as usize);
    // Channel c of an interleaved RGB frame, on the 0-255 scale.
    let plane = |img: &RgbImage, c: usize| -> Vec<f64> {
        img.data
            .iter()
            .skip(c)
            .step_by(3)
            .map(|&v| to255(v))
            .collect()
    };
    let mut total = 0.0;
    for c in 0..3 {
        total += ssim_plane(&plane(a, c), &plane(b, c), w, h)?;
    }
    Ok(total / 3.0)
}

/// Temporal flicker of `out` against `clean` (see the module docs); 0 for fewer than 2 frames.
pub fn flicker(clean: &[RgbImage], out: &[RgbImage]) -> Result<f64> {
    same_length(clean, out)?;
    if clean.len() < 2 {
        return Ok(0.0);
    }
    let mut total = 0.0;
    for t in 0..clean.len() - 1 {
        same_size(&clean[t], &out[t])?;
        same_size(&clean[t + 1], &out[t + 1])?;
        same_size(&clean[t], &clean[t + 1])?;
        total += pair_flicker(
            &clean[t].data,
            &clean[t + 1].data,
            &out[t].data,
            &out[t + 1].data,
        );
    }
    Ok(total / (clean.len() - 1) as f64)
}

/// Mean |(o1 - o0) - (c1 - c0)| on the 0-255 scale over equally long buffers.
fn pair_flicker(c0: &[f32], c1: &[f32], o0: &[f32], o1: &[f32]) -> f64 {
    let mut s = 0.0;
    for i in 0..c0.len() {
        let dc = to255(c1[i]) - to255(c0[i]);
        let dout = to255(o1[i]) - to255(o0[i]);
        s += (dout - dc).abs();
    }
    s / c0.len().max(1) as f64
}

fn same_length(clean: &[RgbImage], out: &[RgbImage]) -> Result<()> {
    if clean.len() != out.len() {
        return Err(Error::image(
            "sequence",
            format!(
                "the clean sequence has {} frames, the output {}",
                clean.len(),
                out.len()
            ),
        ));
    }
    if clean.is_empty() {
        return Err(Error::image("sequence", "no frames to compare"));
    }
    Ok(())
}

/// Metrics computed frame by frame, so a long sequence never has to sit in memory: push the
/// (clean, output) pairs in order, then `finish`.
#[derive(Debug, Default)]
pub struct Accumulator {
    sse: f64,
    values: usize,
    ssim_sum: f64,
    flicker_sum: f64,
    frames: usize,
    prev: Option<(RgbImage, RgbImage)>,
}

impl Accumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next frame pair (both the size of the first pair).
    pub fn push(&mut self, clean: RgbImage, out: RgbImage) -> Result<()> {
        same_size(&clean, &out)?;
        if let Some((pc, po)) = &self.prev {
            same_size(pc, &clean)?;
            self.flicker_sum += pair_flicker(&pc.data, &clean.data, &po.data, &out.data);
        }
        let (s, n) = sse(&clean.data, &out.data);
        self.sse += s;
        self.values += n;
        self.ssim_sum += ssim(&clean, &out)?;
        self.frames += 1;
        self.prev = Some((clean, out));
        Ok(())
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn finish(&self) -> Result<SequenceMetrics> {
        if self.frames == 0 {
            return Err(Error::image("sequence", "no frames to compare"));
        }
        let mse = if self.values == 0 {
            0.0
        } else {
            self.sse / self.values as f64
        };
        Ok(SequenceMetrics {
            psnr: psnr_from_mse(mse, PEAK),
            ssim: self.ssim_sum / self.frames as f64,
            flicker: if self.frames > 1 {
                self.flicker_sum / (self.frames - 1) as f64
            } else {
                0.0
            },
            mse,
            frames: self.frames,
        })
    }
}

/// All metrics of an output sequence against its clean reference (same length, same sizes).
pub fn evaluate(clean: &[RgbImage], out: &[RgbImage]) -> Result<SequenceMetrics> {
    same_length(clean, out)?;
    let mut acc = Accumulator::new();
    for (c, o) in clean.iter().zip(out) {
        acc.push(c.clone(), o.clone())?;
    }
    acc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Rect;

    /// A deterministic textured frame (no RNG needed): smooth gradients plus a hashed pattern.
    fn frame(w: usize, h: usize, phase: f32) -> RgbImage {
        let mut img = RgbImage::new(Rect::new(0, 0, w as i64, h as i64));
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let hash = ((x * 7919 + y * 104729 + c * 31) % 97) as f32 / 97.0;
                    let v = 0.5
                        + 0.3
                            * ((x as f32 + phase) * 0.3 + c as f32).sin()
                            * (y as f32 * 0.2).cos()
                        + 0.15 * (hash - 0.5);
                    img.data[(y * w + x) * 3 + c] = v;
                }
            }
        }
        img
    }

    fn map(img: &RgbImage, f: impl Fn(f32) -> f32) -> RgbImage {
        RgbImage {
            rect: img.rect,
            data: img.data.iter().map(|&v| f(v)).collect(),
        }
    }

    #[test]
    fn psnr_of_known_mse() {
        // Every value off by exactly 5/255 (inside [0,1]): MSE 25, PSNR 10*log10(65025/25).
        let a = map(&frame(16, 16, 0.0), |v| v.clamp(0.1, 0.9));
        let b = map(&a, |v| v + 5.0 / 255.0);
        let m = evaluate(std::slice::from_ref(&a), &[b]).unwrap();
        // Tolerances: the offset is added in f32 (about 1e-5 of a level of rounding).
        assert!((m.mse - 25.0).abs() < 1e-3, "mse {}", m.mse);
        let expected = 10.0 * (65025.0f64 / 25.0).log10(); // 34.1514 dB
        assert!((m.psnr - expected).abs() < 1e-4, "psnr {}", m.psnr);
        assert!((psnr_from_mse(100.0, 255.0) - 28.130_803_608_679_1).abs() < 1e-9);
        assert_eq!(psnr_from_mse(0.0, 255.0), f64::INFINITY);
    }

    #[test]
    fn ssim_of_identical_frames_is_one() {
        let a = frame(24, 20, 1.0);
        assert!((ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        let b = map(&a, |v| v * 0.8 + 0.05);
        let s = ssim(&a, &b).unwrap();
        assert!(s < 0.999 && s > 0.5, "ssim {s}");
    }

    #[test]
    fn ssim_of_constant_frames_matches_formula() {
        // Constant planes have zero variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) exactly.
        let (a, b) = (100.0f64, 140.0f64);
        let pa = vec![a; 15 * 13];
        let pb = vec![b; 15 * 13];
        let c1 = (0.01f64 * 255.0).powi(2);
        let expected = (2.0 * a * b + c1) / (a * a + b * b + c1); // 0.946 for these values
        let got = ssim_plane(&pa, &pb, 15, 13).unwrap();
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    }

    #[test]
    fn ssim_matches_direct_window_sum() {
        // The separable filter must equal the textbook definition evaluated window by window.
        let (w, h) = (17usize, 14usize);
        let a: Vec<f64> = frame(w, h, 0.0)
            .data
            .iter()
            .step_by(3)
            .map(|&v| to255(v))
            .collect();
        let b: Vec<f64> = frame(w, h, 2.0)
            .data
            .iter()
            .step_by(3)
            .map(|&v| to255(v))
            .collect();
        let t = ssim_taps();
        let n = t.len();
        let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
        let mut sum = 0.0;
        let mut count = 0;
        for y0 in 0..=h - n {
            for x0 in 0..=w - n {
                let (mut ux, mut uy, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for j in 0..n {
                    for i in 0..n {
                        let wgt = t[i] * t[j];
                        let (p, q) = (a[(y0 + j) * w + x0 + i], b[(y0 + j) * w + x0 + i]);
                        ux += wgt * p;
                        uy += wgt * q;
                        xx += wgt * p * p;
                        yy += wgt * q * q;
                        xy += wgt * p * q;
                    }
                }
                let (vx, vy, cxy) = (xx - ux * ux, yy - uy * uy, xy - ux * uy);
                sum += ((2.0 * ux * uy + c1) * (2.0 * cxy + c2))
                    / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
                count += 1;
            }
        }
        let direct = sum / count as f64;
        let fast = ssim_plane(&a, &b, w, h).unwrap();
        assert!((direct - fast).abs() < 1e-10, "{direct} vs {fast}");
        assert!(fast < 0.99);
    }

    #[test]
    fn ssim_taps_are_the_usual_window() {
        let t = ssim_taps();
        assert_eq!(t.len(), 11);
        assert!((t.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Centre tap of a normalised 11-tap Gaussian with sigma 1.5.
        assert!((t[5] - 0.266_011_7).abs() < 1e-6, "{}", t[5]);
    }

    #[test]
    fn flicker_is_zero_for_identical_motion() {
        let clean: Vec<RgbImage> = (0..4).map(|t| frame(12, 12, t as f32)).collect();
        // A constant offset per pixel (fixed-pattern error) moves exactly like the clean frames.
        let out: Vec<RgbImage> = clean.iter().map(|f| map(f, |v| v * 0.9 + 0.03)).collect();
        let offset: Vec<RgbImage> = clean.iter().map(|f| map(f, |v| v + 0.01)).collect();
        // Scaling changes the motion amplitude, so it flickers relative to clean; an offset does not.
        // Zero up to the f32 rounding of the offset (about 1e-5 of a level).
        assert!(flicker(&clean, &offset).unwrap() < 1e-4);
        assert!(flicker(&clean, &out).unwrap() > 0.01);
        assert_eq!(flicker(&clean, &clean).unwrap(), 0.0);
    }

    #[test]
    fn flicker_of_alternating_offset() {
        // Output = clean + (+d, -d, +d, ...): each temporal difference is off by 2d everywhere.
        let clean: Vec<RgbImage> = (0..5)
            .map(|_| map(&frame(12, 12, 0.0), |v| v.clamp(0.2, 0.8)))
            .collect();
        let d = 3.0 / 255.0;
        let out: Vec<RgbImage> = clean
            .iter()
            .enumerate()
            .map(|(t, f)| map(f, |v| v + if t % 2 == 0 { d } else { -d }))
            .collect();
        let f = flicker(&clean, &out).unwrap();
        assert!((f - 6.0).abs() < 1e-4, "flicker {f}");
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let a = frame(12, 12, 0.0);
        let b = frame(13, 12, 0.0);
        assert!(evaluate(std::slice::from_ref(&a), &[b]).is_err());
        assert!(evaluate(&[a.clone(), a.clone()], std::slice::from_ref(&a)).is_err());
        assert!(evaluate(&[], &[]).is_err());
        let small = frame(8, 8, 0.0);
        assert!(ssim(&small, &small).is_err());
    }
}

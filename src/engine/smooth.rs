//! Temporal smoothing of a denoised chunk, after the sampler and before the chunk is cached: each
//! frame is averaged with the chunk's other frames wherever they agree with it, gated per pixel
//! by a patch distance. Static areas lose the residual error that changes from frame to frame
//! (flicker); moving areas, where the frames differ by far more than that residual, keep their
//! own frame.
//!
//! The weight of frame k in frame j's average at pixel p is `exp(-d_jk(p) / (a_j * sigma_j)^2)`:
//! `d_jk(p)` is the mean squared difference of the two denoised frames over a 5x5 patch around p
//! and the three channels, `sigma_j` the level frame j was denoised from and `a_j` its Temporal
//! Smoothing. Frame j itself has weight 1. The residual of a denoiser scales with the noise it
//! removed, so one `a` suits every noise level.

/// Half size of the patch the distance is averaged over (5x5).
const PATCH_RADIUS: usize = 2;

/// Smooths `planes` (planar [3, h, w] per frame) in place. `sigmas[k]` is the level frame k was
/// denoised from and `amounts[k]` its smoothing; a frame with a level of 0 (not denoised) is
/// left as it is and lends no weight to the others, a frame with an amount of 0 is left as it is.
///
/// The image is cut into bands of rows (each reads its neighbours' rows within the patch
/// radius) that run on the compute threads.
pub fn smooth(planes: &mut [Vec<f32>], w: usize, h: usize, sigmas: &[f32], amounts: &[f32]) {
    let n = w * h;
    let k = planes.len().min(sigmas.len()).min(amounts.len());
    let used: Vec<bool> = (0..k)
        .map(|j| sigmas[j] > 0.0 && planes[j].len() == 3 * n)
        .collect();
    // 1/(a sigma)^2 per smoothed frame: the gate of the weights frame j gives its neighbours.
    let inv: Vec<Option<f32>> = (0..k)
        .map(|j| {
            let g = amounts[j] * sigmas[j];
            (used[j] && g > 0.0).then(|| 1.0 / (g * g))
        })
        .collect();
    if n == 0 || inv.iter().all(Option::is_none) {
        return;
    }
    let pool = candle_core::utils::barrier_pool();
    let rows = h.div_ceil(4 * (pool.n_workers() + 1)).max(16);
    let bands = h.div_ceil(rows);
    let job = Job {
        planes,
        w,
        h,
        used: &used,
        inv: &inv,
    };
    let results = parking_lot::Mutex::new(Vec::with_capacity(bands));
    pool.execute_chunked(bands, |range| {
        for b in range {
            let y0 = b * rows;
            let out = job.band(y0, (y0 + rows).min(h));
            results.lock().push((y0, out));
        }
    });
    for (y0, out) in results.into_inner() {
        let len = out
            .iter()
            .find(|o| !o.is_empty())
            .map_or(0, |o| o.len() / 3);
        for (j, o) in out.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
            for c in 0..3 {
                let at = c * n + y0 * w;
                planes[j][at..at + len].copy_from_slice(&o[c * len..(c + 1) * len]);
            }
        }
    }
}

/// The read-only inputs of one smoothing pass.
struct Job<'a> {
    planes: &'a [Vec<f32>],
    w: usize,
    h: usize,
    used: &'a [bool],
    inv: &'a [Option<f32>],
}

impl Job<'_> {
    /// Smoothed rows `y0..y1` of every smoothed frame (planar [3, rows, w]; empty for frames
    /// left as they are).
    fn band(&self, y0: usize, y1: usize) -> Vec<Vec<f32>> {
        let (w, h, n) = (self.w, self.h, self.w * self.h);
        let r = PATCH_RADIUS;
        // Rows the patch distances of y0..y1 read.
        let (ya, yb) = (y0.saturating_sub(r), (y1 + r).min(h));
        let m = (y1 - y0) * w;
        let k = self.planes.len();
        let mut acc: Vec<Vec<f32>> = (0..k)
            .map(|j| match self.inv[j] {
                Some(_) => {
                    let p = &self.planes[j];
                    (0..3)
                        .flat_map(|c| p[c * n + y0 * w..c * n + y1 * w].iter().copied())
                        .collect()
                }
                None => Vec::new(),
            })
            .collect();
        let mut wsum: Vec<Vec<f32>> = (0..k)
            .map(|j| match self.inv[j] {
                Some(_) => vec![1.0; m],
                None => Vec::new(),
            })
            .collect();
        let mut sq = vec![0f32; (yb - ya) * w];
        let mut hsum = vec![0f32; (yb - ya) * w];
        let mut dist = vec![0f32; m];
        let mut wts = vec![0f32; m];
        // Each pair's distance is symmetric: compute it once and use it both ways.
        for a in 0..k {
            for b in a + 1..k {
                let (ia, ib) = (self.inv[a], self.inv[b]);
                if !(self.used[a] && self.used[b]) || (ia.is_none() && ib.is_none()) {
                    continue;
                }
                let (pa, pb) = (&self.planes[a], &self.planes[b]);
                // 1. Channel-mean squared difference over the rows the band reads.
                let span = ya * w..yb * w;
                sq.iter_mut().for_each(|v| *v = 0.0);
                for c in 0..3 {
                    let (xa, xb) = (&pa[c * n..][span.clone()], &pb[c * n..][span.clone()]);
                    for ((s, u), v) in sq.iter_mut().zip(xa).zip(xb) {
                        let d = u - v;
                        *s += d * d * (1.0 / 3.0);
                    }
                }
                // 2. Box mean over the patch: rows, then columns (the box clipped to the image).
                for (src, dst) in sq.chunks_exact(w).zip(hsum.chunks_exact_mut(w)) {
                    box_line(src, dst, r);
                }
                for y in y0..y1 {
                    let (lo, hi) = (y.saturating_sub(r), (y + r + 1).min(h));
                    let row = &mut dist[(y - y0) * w..(y - y0 + 1) * w];
                    row.copy_from_slice(&hsum[(lo - ya) * w..(lo - ya + 1) * w]);
                    for yy in lo + 1..hi {
                        let add = &hsum[(yy - ya) * w..(yy - ya + 1) * w];
                        row.iter_mut().zip(add).for_each(|(d, v)| *d += v);
                    }
                    let scale = 1.0 / (hi - lo) as f32;
                    row.iter_mut().for_each(|d| *d *= scale);
                }
                // 3. Weights, shared when both frames use the same gate (the usual case).
                let mut last: Option<f32> = None;
                for (j, o, g) in [(a, b, ia), (b, a, ib)] {
                    let Some(g) = g else { continue };
                    if last != Some(g) {
                        for (wt, d) in wts.iter_mut().zip(&dist) {
                            *wt = (-d * g).exp();
                        }
                        last = Some(g);
                    }
                    let other = &self.planes[o];
                    for (s, wt) in wsum[j].iter_mut().zip(&wts) {
                        *s += wt;
                    }
                    for c in 0..3 {
                        let src = &other[c * n + y0 * w..c * n + y1 * w];
                        let dst = &mut acc[j][c * m..(c + 1) * m];
                        for ((d, v), wt) in dst.iter_mut().zip(src).zip(&wts) {
                            *d += wt * v;
                        }
                    }
                }
            }
        }
        for (a, ws) in acc.iter_mut().zip(&wsum).filter(|(a, _)| !a.is_empty()) {
            for c in 0..3 {
                for (v, s) in a[c * m..(c + 1) * m].iter_mut().zip(ws) {
                    *v /= s;
                }
            }
        }
        acc
    }
}

/// Sliding-window mean of one line (window 2r+1, clipped at the ends).
fn box_line(src: &[f32], dst: &mut [f32], r: usize) {
    let len = src.len();
    let mut sum = 0f64;
    let (mut lo, mut hi) = (0usize, 0usize); // the window is src[lo..hi]
    for (x, d) in dst.iter_mut().enumerate() {
        let (want_lo, want_hi) = (x.saturating_sub(r), (x + r + 1).min(len));
        while hi < want_hi {
            sum += src[hi] as f64;
            hi += 1;
        }
        while lo < want_lo {
            sum -= src[lo] as f64;
            lo += 1;
        }
        *d = (sum / (hi - lo) as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::noise::gaussian;

    const W: usize = 48;
    const H: usize = 40;

    /// K frames of `clean(t, x, y)` plus independent noise of `sd` per frame (planar RGB).
    fn frames(k: usize, sd: f32, clean: impl Fn(usize, usize, usize) -> f32) -> Vec<Vec<f32>> {
        (0..k)
            .map(|t| {
                let mut p = vec![0f32; 3 * W * H];
                for c in 0..3 {
                    for y in 0..H {
                        for x in 0..W {
                            let z = gaussian(3, t as i64, c as u32, x as i64, y as i64, 0);
                            p[c * W * H + y * W + x] = clean(t, x, y) + sd * z;
                        }
                    }
                }
                p
            })
            .collect()
    }

    fn mse(a: &[f32], b: &[f32]) -> f64 {
        let s: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        s / a.len() as f64
    }

    fn texture(x: usize, y: usize) -> f32 {
        0.5 + 0.2 * ((x as f32) * 0.7).sin() * ((y as f32) * 0.45).cos()
    }

    #[test]
    fn static_frames_lose_most_of_their_frame_to_frame_error() {
        let k = 9;
        let clean: Vec<f32> = frames(1, 0.0, |_, x, y| texture(x, y)).remove(0);
        // A denoiser's residual: about a quarter of the noise it removed (sigma 0.1).
        let mut p = frames(k, 0.025, |_, x, y| texture(x, y));
        let before: f64 = p.iter().map(|f| mse(f, &clean)).sum::<f64>() / k as f64;
        smooth(&mut p, W, H, &[0.1; 9], &[0.5; 9]);
        let after: f64 = p.iter().map(|f| mse(f, &clean)).sum::<f64>() / k as f64;
        // Nine frames averaged: ideally 1/9 of the error; the gate keeps somewhat more.
        assert!(after < 0.3 * before, "mse {before:.2e} -> {after:.2e}");
        // Frame to frame differences (flicker) shrink as much.
        let flick = |p: &[Vec<f32>]| (1..k).map(|t| mse(&p[t], &p[t - 1])).sum::<f64>();
        let noisy = frames(k, 0.025, |_, x, y| texture(x, y));
        assert!(flick(&p) < 0.3 * flick(&noisy));
    }

    #[test]
    fn moving_content_keeps_its_own_frame() {
        // A hard edge moving 6 pixels a frame: neighbours disagree by far more than the gate.
        let edge = |t: usize, x: usize, _y: usize| if x < 10 + 6 * t { 0.9 } else { 0.1 };
        let k = 5;
        let orig = frames(k, 0.0, edge);
        let mut p = orig.clone();
        smooth(&mut p, W, H, &[0.1; 5], &[0.5; 5]);
        for t in 0..k {
            let worst = p[t]
                .iter()
                .zip(&orig[t])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-3, "frame {t} ghosted by {worst}");
        }
    }

    #[test]
    fn frames_without_smoothing_or_denoising_stay_bit_exact() {
        let orig = frames(4, 0.02, |_, x, y| texture(x, y));
        // Frame 1 was not denoised (level 0), frame 2 has smoothing 0.
        let mut p = orig.clone();
        smooth(&mut p, W, H, &[0.1, 0.0, 0.1, 0.1], &[0.5, 0.5, 0.0, 0.5]);
        assert_eq!(p[1], orig[1]);
        assert_eq!(p[2], orig[2]);
        assert_ne!(p[0], orig[0]);
        // Frame 1 lends no weight: frame 0's result is the same without it.
        let mut q = vec![orig[0].clone(), orig[2].clone(), orig[3].clone()];
        smooth(&mut q, W, H, &[0.1, 0.1, 0.1], &[0.5, 0.0, 0.5]);
        assert_eq!(p[0], q[0]);
        assert_eq!(p[3], q[2]);
        // Smoothing 0 everywhere: nothing changes.
        let mut r = orig.clone();
        smooth(&mut r, W, H, &[0.1; 4], &[0.0; 4]);
        assert_eq!(r, orig);
    }

    #[test]
    fn box_line_matches_the_direct_sum() {
        let v: Vec<f32> = (0..13).map(|i| ((i * 37) % 11) as f32).collect();
        for r in [0usize, 1, 2, 7] {
            let mut out = vec![0f32; v.len()];
            box_line(&v, &mut out, r);
            for (x, o) in out.iter().enumerate() {
                let span = &v[x.saturating_sub(r)..(x + r + 1).min(v.len())];
                let want = span.iter().sum::<f32>() / span.len() as f32;
                assert!((o - want).abs() < 1e-5, "r {r} x {x}: {o} vs {want}");
            }
        }
    }

    /// The direct, unbanded formula of the module docs, for one frame.
    fn reference(p: &[Vec<f32>], j: usize, sigma: f32, amount: f32) -> Vec<f32> {
        let (n, r) = (W * H, PATCH_RADIUS as i64);
        let g = 1.0 / (amount * sigma).powi(2);
        let mut out = vec![0f32; 3 * n];
        for y in 0..H as i64 {
            for x in 0..W as i64 {
                let i = (y * W as i64 + x) as usize;
                let (mut acc, mut ws) = ([p[j][i], p[j][n + i], p[j][2 * n + i]], 1.0f32);
                for (_, q) in p.iter().enumerate().filter(|&(o, _)| o != j) {
                    let (mut d, mut cnt) = (0f32, 0);
                    for yy in (y - r).max(0)..(y + r + 1).min(H as i64) {
                        for xx in (x - r).max(0)..(x + r + 1).min(W as i64) {
                            let ii = (yy * W as i64 + xx) as usize;
                            for c in 0..3 {
                                d += (p[j][c * n + ii] - q[c * n + ii]).powi(2) / 3.0;
                            }
                            cnt += 1;
                        }
                    }
                    let wt = (-(d / cnt as f32) * g).exp();
                    ws += wt;
                    for c in 0..3 {
                        acc[c] += wt * q[c * n + i];
                    }
                }
                for c in 0..3 {
                    out[c * n + i] = acc[c] / ws;
                }
            }
        }
        out
    }

    #[test]
    fn banded_result_matches_the_formula() {
        let orig = frames(4, 0.03, |t, x, y| texture(x + t, y));
        let mut p = orig.clone();
        smooth(&mut p, W, H, &[0.1; 4], &[0.7; 4]);
        for (j, got) in p.iter().enumerate() {
            let want = reference(&orig, j, 0.1, 0.7);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "frame {j}: off by {worst}");
        }
    }
}

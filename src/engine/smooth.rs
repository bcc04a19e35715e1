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
pub fn smooth(planes: &mut [Vec<f32>], w: usize, h: usize, sigmas: &[f32], amounts: &[f32]) {
    let n = w * h;
    let k = planes.len();
    let used: Vec<bool> = (0..k)
        .map(|j| sigmas[j] > 0.0 && planes[j].len() == 3 * n)
        .collect();
    let on: Vec<bool> = (0..k).map(|j| used[j] && amounts[j] > 0.0).collect();
    let smoothed = |j: usize| on[j];
    let used = |j: usize| used[j];
    if n == 0 || !on.iter().any(|&b| b) {
        return;
    }
    // 1/(a sigma)^2 per frame: the gate of the weights frame j gives its neighbours.
    let inv: Vec<f32> = (0..k)
        .map(|j| {
            let g = amounts[j] * sigmas[j];
            if smoothed(j) {
                1.0 / (g * g)
            } else {
                0.0
            }
        })
        .collect();
    let mut acc: Vec<Vec<f32>> = (0..k)
        .map(|j| {
            if smoothed(j) {
                planes[j].clone()
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut wsum: Vec<Vec<f32>> = (0..k)
        .map(|j| {
            if smoothed(j) {
                vec![1.0; n]
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut sq = vec![0f32; n];
    let mut tmp = vec![0f32; n];
    let mut dist = vec![0f32; n];
    // Each pair's distance is symmetric: compute it once and use it both ways.
    for a in 0..k {
        for b in a + 1..k {
            if !(used(a) && used(b) && (smoothed(a) || smoothed(b))) {
                continue;
            }
            let (pa, pb) = (&planes[a], &planes[b]);
            for (i, s) in sq.iter_mut().enumerate() {
                let mut v = 0.0;
                for c in 0..3 {
                    let d = pa[c * n + i] - pb[c * n + i];
                    v += d * d;
                }
                *s = v * (1.0 / 3.0);
            }
            box_mean(&sq, &mut tmp, &mut dist, w, h, PATCH_RADIUS);
            for (j, o) in [(a, b), (b, a)] {
                if !smoothed(j) {
                    continue;
                }
                let other = &planes[o];
                let (acc_j, ws_j) = (&mut acc[j], &mut wsum[j]);
                for (i, (&d, ws)) in dist.iter().zip(ws_j.iter_mut()).enumerate() {
                    let wt = (-d * inv[j]).exp();
                    *ws += wt;
                    for c in 0..3 {
                        acc_j[c * n + i] += wt * other[c * n + i];
                    }
                }
            }
        }
    }
    for j in (0..k).filter(|&j| smoothed(j)) {
        let (out, acc_j, ws_j) = (&mut planes[j], &acc[j], &wsum[j]);
        for c in 0..3 {
            for i in 0..n {
                out[c * n + i] = acc_j[c * n + i] / ws_j[i];
            }
        }
    }
}

/// Mean of `v` over the (2r+1)^2 box around each pixel, the box clipped to the image; `tmp`
/// holds the horizontal pass. All three are `w * h` long.
fn box_mean(v: &[f32], tmp: &mut [f32], out: &mut [f32], w: usize, h: usize, r: usize) {
    for y in 0..h {
        box_line(&v[y * w..(y + 1) * w], &mut tmp[y * w..(y + 1) * w], r);
    }
    let mut col = vec![0f32; h];
    let mut res = vec![0f32; h];
    for x in 0..w {
        for y in 0..h {
            col[y] = tmp[y * w + x];
        }
        box_line(&col, &mut res, r);
        for y in 0..h {
            out[y * w + x] = res[y];
        }
    }
}

/// Sliding-window mean of one line (window 2r+1, clipped at the ends).
fn box_line(src: &[f32], dst: &mut [f32], r: usize) {
    let len = src.len();
    let mut sum = 0f64;
    let (mut lo, mut hi) = (0usize, 0usize); // window is src[lo..hi]
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
    fn box_mean_matches_the_direct_sum() {
        let (w, h, r) = (13usize, 9usize, 2usize);
        let v: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 11) as f32).collect();
        let (mut tmp, mut out) = (vec![0f32; w * h], vec![0f32; w * h]);
        box_mean(&v, &mut tmp, &mut out, w, h, r);
        for y in 0..h {
            for x in 0..w {
                let (mut s, mut n) = (0f64, 0);
                for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                    for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                        s += v[yy * w + xx] as f64;
                        n += 1;
                    }
                }
                let want = (s / n as f64) as f32;
                assert!((out[y * w + x] - want).abs() < 1e-4, "({x}, {y})");
            }
        }
    }
}

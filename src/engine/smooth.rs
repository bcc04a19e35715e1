//! Temporal smoothing of a denoised frame over its neighbours, after the chunk cache: frame t is
//! averaged with the denoised frames t-r..t+r (each first moved onto it by `motion::align_all`)
//! wherever they agree with it, gated per pixel by a patch distance. Areas whose motion was
//! matched lose the residual error that changes from frame to frame (flicker); areas it was not
//! matched in, where the frames differ by far more than that residual, keep their own frame.
//! The window slides with t and crosses chunk edges, so no frame sits at a seam.
//!
//! The weight of neighbour k at pixel p is `exp(-d_k(p) / g^2)`: `d_k(p)` is the mean squared
//! difference of the two denoised frames over a 5x5 patch around p and the three channels, and
//! the gate `g = a * sigma` is Temporal Smoothing times the level frame t was denoised from. The
//! centre frame has weight 1. The residual of a denoiser scales with the noise it removed, so one
//! `a` suits every noise level.
//!
//! At Strength 0, `smooth_restore` also averages the noisy source frames with the same weights
//! and filters that average against the smoothed frame (`wiener::dct_wiener`: per 8x8 block and
//! DCT frequency, the average is kept in the proportion `P^2 / (P^2 + v)` that the smoothed frame's
//! coefficient `P` stands above the average's noise `v`). A denoiser takes some fine detail for
//! noise in every frame alike, so averaging its outputs cannot bring it back, but the averaged
//! sources hold it, and the filter keeps it frequency by frequency while leaving their noise out.
//! On the public validation clips at sigma 10 / 25 / 50 (radius 4) this gave 41.78 / 37.65 /
//! 33.48 dB with flicker 1.13 / 1.47 / 2.02, against 40.73 / 36.28 / 31.89 (1.18 / 1.58 / 2.22)
//! for the per-pixel gain it replaced and 40.49 / 35.94 / 31.37 for smoothing alone.

use super::wiener::dct_wiener;

/// Half size of the patch the distance is averaged over (5x5).
pub(super) const PATCH_RADIUS: usize = 2;

/// Frame `centre` (planar [3, h, w]) smoothed over `others` (the same layout) with gate `gate`.
/// A gate of 0, or no neighbours, returns the centre unchanged; a neighbour of the wrong size
/// is skipped.
///
/// The image is cut into bands of rows (each reads its neighbours' rows within the patch
/// radius) that run on the compute threads.
pub fn smooth(centre: &[f32], others: &[&[f32]], w: usize, h: usize, gate: f32) -> Vec<f32> {
    let n = w * h;
    let others: Vec<&[f32]> = others
        .iter()
        .copied()
        .filter(|o| o.len() == 3 * n)
        .collect();
    if n == 0 || centre.len() != 3 * n || others.is_empty() || gate.is_nan() || gate <= 0.0 {
        return centre.to_vec();
    }
    let job = Job {
        centre,
        others: &others,
        w,
        h,
        inv: 1.0 / (gate * gate),
        noisy: None,
    };
    job.run(3)
}

/// What [`smooth_restore`] gives detail back from.
pub struct Restore<'a> {
    /// The source frame t was denoised from (planar [3, h, w]).
    pub centre: &'a [f32],
    /// The sources of the neighbours, aligned like them, in the same order.
    pub others: &'a [&'a [f32]],
    /// Frame t's noise level, taken for its neighbours too.
    pub sigma: f32,
}

/// Block stride of the Wiener filter (8x8 blocks every 4 pixels). Chosen on the public validation
/// clips at sigma 25: stride 3 / 4 / 6 gave 37.70 / 37.65 / 37.47 dB; 3 costs 1.8 times as much.
pub(super) const WIENER_STRIDE: usize = 4;

/// [`smooth`], then detail given back from the noisy sources `src`. Their average with the
/// smoothing's weights holds what the denoiser removed, the detail it took for noise and the
/// noise, reduced by the averaging to variance `v = sigma^2 * f` with `f = sum(w^2) / sum(w)^2`
/// per pixel. That average is Wiener-filtered in the DCT domain with the smoothed frame as the
/// oracle ([`dct_wiener`]), so each frequency of it comes back as far as the smoothed frame shows
/// it above `v`, then filtered again with that first result as the oracle. With no neighbours
/// this is the same filter on the frame's own source (`f = 1`); on the public validation clips
/// at radius 0 it gave 34.23 dB at sigma 25 against 33.36 without (one pass).
pub fn smooth_restore(
    centre: &[f32],
    others: &[&[f32]],
    w: usize,
    h: usize,
    gate: f32,
    src: &Restore<'_>,
) -> Vec<f32> {
    let n = w * h;
    let ok = n > 0
        && centre.len() == 3 * n
        && src.centre.len() == 3 * n
        && others.len() == src.others.len()
        && others.iter().chain(src.others).all(|o| o.len() == 3 * n)
        && gate > 0.0
        && src.sigma > 0.0;
    if !ok {
        return smooth(centre, others, w, h, gate);
    }
    let job = Job {
        centre,
        others,
        w,
        h,
        inv: 1.0 / (gate * gate),
        noisy: Some(src),
    };
    let all = job.run(7);
    let (smoothed, rest) = all.split_at(3 * n);
    let (avg, f) = rest.split_at(3 * n);
    let s2 = src.sigma * src.sigma;
    let var: Vec<f32> = f.iter().map(|f| s2 * f).collect();
    // Twice: the first pass's result is a better oracle than the smoothed frame (BM3D's second
    // step also re-estimates with the first's result). On the public validation clips at sigma
    // 25 (with the shot-end windows of `plan::window`): 37.79 dB against 37.69 for one pass.
    let first = dct_wiener(smoothed, avg, &var, w, h, WIENER_STRIDE);
    dct_wiener(&first, avg, &var, w, h, WIENER_STRIDE)
}

/// The read-only inputs of one smoothing pass.
struct Job<'a> {
    centre: &'a [f32],
    others: &'a [&'a [f32]],
    w: usize,
    h: usize,
    /// 1 / gate^2.
    inv: f32,
    /// The noisy sources of the centre and of each neighbour (aligned like them), averaged with
    /// the same weights, or none.
    noisy: Option<&'a Restore<'a>>,
}

impl Job<'_> {
    /// Every band on the compute threads, assembled: `planes` planes of w x h (3 without the
    /// noisy inputs: the smoothed frame; 7 with them: then the noisy average and the variance
    /// factor).
    fn run(&self, planes: usize) -> Vec<f32> {
        let (w, h, n) = (self.w, self.h, self.w * self.h);
        let pool = candle_core::utils::barrier_pool();
        let rows = h.div_ceil(4 * (pool.n_workers() + 1)).max(16);
        let bands = h.div_ceil(rows);
        let results = parking_lot::Mutex::new(Vec::with_capacity(bands));
        pool.execute_chunked(bands, |range| {
            for b in range {
                let y0 = b * rows;
                let out = self.band(y0, (y0 + rows).min(h));
                results.lock().push((y0, out));
            }
        });
        let mut out = vec![0f32; planes * n];
        for (y0, band) in results.into_inner() {
            let len = band.len() / planes;
            for c in 0..planes {
                let at = c * n + y0 * w;
                out[at..at + len].copy_from_slice(&band[c * len..(c + 1) * len]);
            }
        }
        out
    }

    /// Smoothed rows `y0..y1` of the centre frame (planar [3, rows, w]).
    fn band(&self, y0: usize, y1: usize) -> Vec<f32> {
        let (w, h, n) = (self.w, self.h, self.w * self.h);
        let r = PATCH_RADIUS;
        // Rows the patch distances of y0..y1 read.
        let (ya, yb) = (y0.saturating_sub(r), (y1 + r).min(h));
        let m = (y1 - y0) * w;
        let pc = self.centre;
        let rows = |p: &[f32]| -> Vec<f32> {
            (0..3)
                .flat_map(|c| p[c * n + y0 * w..c * n + y1 * w].iter().copied())
                .collect()
        };
        // Adds `p`'s rows y0..y1 weighted by `wt` into `acc` (planar [3, rows, w]).
        let add_weighted = |acc: &mut [f32], p: &[f32], wt: &[f32]| {
            for c in 0..3 {
                let src = &p[c * n + y0 * w..c * n + y1 * w];
                let dst = &mut acc[c * m..(c + 1) * m];
                for ((d, v), wt) in dst.iter_mut().zip(src).zip(wt) {
                    *d += wt * v;
                }
            }
        };
        let mut acc = rows(pc);
        let mut wsum = vec![1f32; m];
        let mut w2sum = vec![1f32; m];
        let mut nacc = self.noisy.map(|r| rows(r.centre)).unwrap_or_default();
        let mut sq = vec![0f32; (yb - ya) * w];
        let mut hsum = vec![0f32; (yb - ya) * w];
        let mut dist = vec![0f32; m];
        for (k, po) in self.others.iter().enumerate() {
            // 1. Channel-mean squared difference over the rows the band reads.
            let span = ya * w..yb * w;
            sq.iter_mut().for_each(|v| *v = 0.0);
            for c in 0..3 {
                let (xa, xb) = (&pc[c * n..][span.clone()], &po[c * n..][span.clone()]);
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
                // 3. The weight, in place of the distance.
                let scale = -self.inv / (hi - lo) as f32;
                row.iter_mut().for_each(|d| *d = (*d * scale).exp());
            }
            for (s, wt) in wsum.iter_mut().zip(&dist) {
                *s += wt;
            }
            if let Some(src) = self.noisy {
                for (s, wt) in w2sum.iter_mut().zip(&dist) {
                    *s += wt * wt;
                }
                add_weighted(&mut nacc, src.others[k], &dist);
            }
            add_weighted(&mut acc, po, &dist);
        }
        let normalise = |acc: &mut [f32]| {
            for plane in acc.chunks_exact_mut(m) {
                plane.iter_mut().zip(&wsum).for_each(|(v, s)| *v /= s);
            }
        };
        normalise(&mut acc);
        if self.noisy.is_some() {
            normalise(&mut nacc);
            // The variance factor of the noisy average: sum w^2 / (sum w)^2.
            for (v, s) in w2sum.iter_mut().zip(&wsum) {
                *v /= s * s;
            }
            acc.extend(nacc);
            acc.extend(w2sum);
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
        frames_seeded(3, k, sd, clean)
    }

    /// [`frames`] with noise of another seed.
    fn frames_seeded(
        seed: u64,
        k: usize,
        sd: f32,
        clean: impl Fn(usize, usize, usize) -> f32,
    ) -> Vec<Vec<f32>> {
        (0..k)
            .map(|t| {
                let mut p = vec![0f32; 3 * W * H];
                for c in 0..3 {
                    for y in 0..H {
                        for x in 0..W {
                            let z = gaussian(seed, t as i64, c as u32, x as i64, y as i64, 0);
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

    /// Frame j smoothed over every other frame of `p`.
    fn smooth_at(p: &[Vec<f32>], j: usize, gate: f32) -> Vec<f32> {
        let others: Vec<&[f32]> = (0..p.len())
            .filter(|&k| k != j)
            .map(|k| p[k].as_slice())
            .collect();
        smooth(&p[j], &others, W, H, gate)
    }

    #[test]
    fn static_frames_lose_most_of_their_frame_to_frame_error() {
        let k = 9;
        let clean: Vec<f32> = frames(1, 0.0, |_, x, y| texture(x, y)).remove(0);
        // A denoiser's residual: about a quarter of the noise it removed (sigma 0.1).
        let noisy = frames(k, 0.025, |_, x, y| texture(x, y));
        let p: Vec<Vec<f32>> = (0..k).map(|j| smooth_at(&noisy, j, 0.05)).collect();
        let before: f64 = noisy.iter().map(|f| mse(f, &clean)).sum::<f64>() / k as f64;
        let after: f64 = p.iter().map(|f| mse(f, &clean)).sum::<f64>() / k as f64;
        // Nine frames averaged: ideally 1/9 of the error; the gate keeps somewhat more.
        assert!(after < 0.3 * before, "mse {before:.2e} -> {after:.2e}");
        // Frame to frame differences (flicker) shrink as much.
        let flick = |p: &[Vec<f32>]| (1..k).map(|t| mse(&p[t], &p[t - 1])).sum::<f64>();
        assert!(flick(&p) < 0.3 * flick(&noisy));
    }

    #[test]
    fn moving_content_keeps_its_own_frame() {
        // A hard edge moving 6 pixels a frame: neighbours disagree by far more than the gate.
        let edge = |t: usize, x: usize, _y: usize| if x < 10 + 6 * t { 0.9 } else { 0.1 };
        let k = 5;
        let orig = frames(k, 0.0, edge);
        for t in 0..k {
            let worst = smooth_at(&orig, t, 0.05)
                .iter()
                .zip(&orig[t])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-3, "frame {t} ghosted by {worst}");
        }
    }

    #[test]
    fn no_gate_or_no_neighbours_leaves_the_frame_bit_exact() {
        let orig = frames(3, 0.02, |_, x, y| texture(x, y));
        let others = [orig[1].as_slice(), orig[2].as_slice()];
        assert_eq!(smooth(&orig[0], &others, W, H, 0.0), orig[0]);
        assert_eq!(smooth(&orig[0], &[], W, H, 0.05), orig[0]);
        assert_ne!(smooth(&orig[0], &others, W, H, 0.05), orig[0]);
        // A neighbour of the wrong size lends no weight.
        let short = vec![0.5f32; 7];
        assert_eq!(
            smooth(&orig[0], &[orig[1].as_slice(), &short], W, H, 0.05),
            smooth(&orig[0], &[orig[1].as_slice()], W, H, 0.05)
        );
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

    /// A denoiser's output that lost fine detail: the clean frame with its fine texture at
    /// `keep` of its contrast, plus a small residual that changes from frame to frame.
    /// The clean frame, the noisy frames, the denoised frames and the noise level.
    type Case = (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>, f32);

    fn restoration_case() -> Case {
        let k = 9;
        let sigma = 0.1;
        let fine = |x: usize, y: usize| 0.15 * ((x as f32) * 1.3).sin() * ((y as f32) * 1.1).cos();
        let clean = frames(1, 0.0, |_, x, y| texture(x, y) + fine(x, y)).remove(0);
        let noisy = frames(k, sigma, |_, x, y| texture(x, y) + fine(x, y));
        // Its residual is independent of the footage noise (another seed).
        let denoised = frames_seeded(4, k, 0.01, |_, x, y| texture(x, y) + 0.3 * fine(x, y));
        (clean, noisy, denoised, sigma)
    }

    fn restore_at(noisy: &[Vec<f32>], den: &[Vec<f32>], j: usize, sigma: f32) -> Vec<f32> {
        let pick = |p: &[Vec<f32>]| -> Vec<Vec<f32>> {
            (0..p.len())
                .filter(|&k| k != j)
                .map(|k| p[k].clone())
                .collect()
        };
        let (others, nothers) = (pick(den), pick(noisy));
        let others: Vec<&[f32]> = others.iter().map(|o| o.as_slice()).collect();
        let nothers: Vec<&[f32]> = nothers.iter().map(|o| o.as_slice()).collect();
        let src = Restore {
            centre: &noisy[j],
            others: &nothers,
            sigma,
        };
        smooth_restore(&den[j], &others, W, H, 0.05, &src)
    }

    #[test]
    fn restoration_gives_back_detail_the_denoiser_removed() {
        let (clean, noisy, den, sigma) = restoration_case();
        for j in [0, 4, 8] {
            let plain = smooth_at(&den, j, 0.05);
            let restored = restore_at(&noisy, &den, j, sigma);
            let (before, after) = (mse(&plain, &clean), mse(&restored, &clean));
            assert!(
                after < 0.5 * before,
                "frame {j}: mse {before:.2e} -> {after:.2e}"
            );
        }
    }

    #[test]
    fn restoration_adds_little_noise_where_nothing_was_lost() {
        // The denoiser was exact: what is given back is averaged noise the gain holds back.
        let k = 9;
        let sigma = 0.1;
        let clean = frames(1, 0.0, |_, x, y| texture(x, y)).remove(0);
        let noisy = frames(k, sigma, |_, x, y| texture(x, y));
        let exact = vec![clean.clone(); k];
        let restored = restore_at(&noisy, &exact, 4, sigma);
        let err = mse(&restored, &clean);
        // Averaging nine frames alone would leave sigma^2 / 9.
        assert!(err < 0.25 * (sigma * sigma / 9.0) as f64, "mse {err:.2e}");
    }

    #[test]
    fn a_lone_frame_is_filtered_against_its_own_source() {
        let (clean, noisy, den, sigma) = restoration_case();
        let src = Restore {
            centre: &noisy[0],
            others: &[],
            sigma,
        };
        let lone = smooth_restore(&den[0], &[], W, H, 0.05, &src);
        // The same filter as with neighbours, on one source of the full noise variance.
        let var = vec![sigma * sigma; W * H];
        let once = dct_wiener(&den[0], &noisy[0], &var, W, H, WIENER_STRIDE);
        assert_eq!(
            lone,
            dct_wiener(&once, &noisy[0], &var, W, H, WIENER_STRIDE)
        );
        let (before, after) = (mse(&den[0], &clean), mse(&lone, &clean));
        assert!(after < 0.8 * before, "mse {before:.2e} -> {after:.2e}");
        // The second pass, with the first's result as its oracle, comes closer than the first.
        let first = mse(&once, &clean);
        assert!(
            after < first,
            "mse {first:.2e} after one pass, {after:.2e} after two"
        );
        // Mismatched inputs fall back to smoothing the denoised frames alone.
        let others = [den[1].as_slice()];
        assert_eq!(
            smooth_restore(&den[0], &others, W, H, 0.05, &src),
            smooth(&den[0], &others, W, H, 0.05)
        );
    }

    /// The direct, unbanded formula of the module docs, for one frame.
    fn reference(p: &[Vec<f32>], j: usize, gate: f32) -> Vec<f32> {
        let (n, r) = (W * H, PATCH_RADIUS as i64);
        let g = 1.0 / (gate * gate);
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
        for j in 0..orig.len() {
            let got = smooth_at(&orig, j, 0.07);
            let want = reference(&orig, j, 0.07);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "frame {j}: off by {worst}");
        }
    }
}

//! Empirical Wiener filtering in the 8x8 DCT domain, with a pilot estimate as the oracle (the
//! second step of BM3D, on one frame): the noisy image and the pilot are cut into overlapping
//! 8x8 blocks in an orthonormal opponent colour space, each noisy block's DCT coefficients are
//! shrunk by `P^2 / (P^2 + v)` (`P` the pilot's coefficient, `v` the noise variance of the block),
//! and the blocks are put back with the weights `1 / (v * sum W^2)` and a Kaiser window.
//!
//! Unlike a per-pixel gain, the shrinkage is per frequency: a fine texture the pilot only
//! weakened keeps its frequencies, while the flat frequencies around it stay quiet.

/// Block side.
pub(super) const N: usize = 8;
/// Kaiser window shape (BM3D's value for 8x8 blocks).
const KAISER_BETA: f64 = 2.0;

/// The orthonormal 8-point DCT-II matrix (rows are frequencies) and the Kaiser window.
pub(super) struct Basis {
    pub(super) dct: [[f32; N]; N],
    dct_t: [[f32; N]; N],
    pub(super) window: [[f32; N]; N],
}

impl Basis {
    pub(super) fn new() -> Basis {
        let mut dct = [[0f32; N]; N];
        for (k, row) in dct.iter_mut().enumerate() {
            let c = if k == 0 {
                (1.0 / N as f64).sqrt()
            } else {
                (2.0 / N as f64).sqrt()
            };
            for (n, v) in row.iter_mut().enumerate() {
                let a = std::f64::consts::PI * (2 * n + 1) as f64 * k as f64 / (2 * N) as f64;
                *v = (c * a.cos()) as f32;
            }
        }
        let i0 = |x: f64| {
            // Modified Bessel function of the first kind, order 0 (power series).
            let (mut sum, mut term) = (1.0, 1.0);
            for k in 1..30 {
                term *= (x / (2.0 * k as f64)).powi(2);
                sum += term;
            }
            sum
        };
        let k1: Vec<f64> = (0..N)
            .map(|n| {
                let r = 2.0 * n as f64 / (N - 1) as f64 - 1.0;
                i0(KAISER_BETA * (1.0 - r * r).sqrt()) / i0(KAISER_BETA)
            })
            .collect();
        let mut window = [[0f32; N]; N];
        for (y, row) in window.iter_mut().enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                *v = (k1[y] * k1[x]) as f32;
            }
        }
        let dct_t = Self::transpose(&dct);
        Basis { dct, dct_t, window }
    }

    /// `D X` in the form the compiler vectorises: each output row is a sum of scaled input rows.
    fn left(m: &[[f32; N]; N], x: &[[f32; N]; N]) -> [[f32; N]; N] {
        let mut t = [[0f32; N]; N];
        for (tr, mr) in t.iter_mut().zip(m) {
            for (&c, xr) in mr.iter().zip(x) {
                for (tv, xv) in tr.iter_mut().zip(xr) {
                    *tv += c * xv;
                }
            }
        }
        t
    }

    fn transpose(x: &[[f32; N]; N]) -> [[f32; N]; N] {
        let mut t = [[0f32; N]; N];
        for (i, row) in x.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                t[j][i] = *v;
            }
        }
        t
    }

    /// The block's 2-D DCT, transposed: `D (D X)^T = (D X D^T)^T`. Only coefficient-wise
    /// operations happen between `forward` and `inverse`, so the transposition never shows.
    fn forward(&self, x: &[[f32; N]; N]) -> [[f32; N]; N] {
        Self::left(&self.dct, &Self::transpose(&Self::left(&self.dct, x)))
    }

    /// The inverse of `forward`: `D^T (D^T Y^T)^T = D^T Y D`.
    fn inverse(&self, yt: &[[f32; N]; N]) -> [[f32; N]; N] {
        Self::left(&self.dct_t, &Self::transpose(&Self::left(&self.dct_t, yt)))
    }
}

/// Block origins along a side of `len` pixels at `stride`, the last flush with the end.
pub(super) fn origins(len: usize, stride: usize) -> Vec<usize> {
    let mut o: Vec<usize> = (0..=len - N).step_by(stride).collect();
    if *o.last().unwrap() != len - N {
        o.push(len - N);
    }
    o
}

/// Planar RGB [3, n] to the orthonormal opponent space (and back): white noise of variance v in
/// each RGB channel stays white with variance v in each opponent channel.
fn opponent(p: &[f32], n: usize, back: bool) -> Vec<f32> {
    let (a, b, c) = (1.0 / 3f32.sqrt(), 1.0 / 2f32.sqrt(), 1.0 / 6f32.sqrt());
    let m = [[a, a, a], [b, 0.0, -b], [c, -2.0 * c, c]];
    let mut out = vec![0f32; 3 * n];
    for (i, row) in m.iter().enumerate() {
        for (j, &coef) in row.iter().enumerate() {
            let (dst, src) = if back { (j, i) } else { (i, j) };
            let (o, s) = (&mut out[dst * n..(dst + 1) * n], &p[src * n..(src + 1) * n]);
            o.iter_mut().zip(s).for_each(|(o, s)| *o += coef * s);
        }
    }
    out
}

/// `noisy` (planar [3, h, w]) filtered with `pilot` (the same layout) as the oracle; `var` is the
/// per-pixel noise variance of `noisy` (one plane), averaged over each block. Blocks start every
/// `stride` pixels. Images under 8 pixels on a side come back as the pilot.
pub fn dct_wiener(
    pilot: &[f32],
    noisy: &[f32],
    var: &[f32],
    w: usize,
    h: usize,
    stride: usize,
) -> Vec<f32> {
    let n = w * h;
    if w < N || h < N || pilot.len() != 3 * n || noisy.len() != 3 * n || var.len() != n {
        return pilot.to_vec();
    }
    let stride = stride.clamp(1, N);
    let basis = Basis::new();
    let (p, z) = (opponent(pilot, n, false), opponent(noisy, n, false));
    let (xs, ys) = (origins(w, stride), origins(h, stride));
    // Bands of block rows on the compute threads; each returns its rows' sums.
    let pool = candle_core::utils::barrier_pool();
    let per = ys.len().div_ceil(4 * (pool.n_workers() + 1)).max(1);
    let bands = ys.len().div_ceil(per);
    let results = parking_lot::Mutex::new(Vec::with_capacity(bands));
    pool.execute_chunked(bands, |range| {
        for b in range {
            let band = &ys[b * per..((b + 1) * per).min(ys.len())];
            let (r0, r1) = (band[0], band[band.len() - 1] + N);
            let m = (r1 - r0) * w;
            let mut num = vec![0f32; 3 * m];
            let mut den = vec![0f32; 3 * m];
            for &y in band {
                for &x in &xs {
                    let mut v = 0f32;
                    for yy in y..y + N {
                        v += var[yy * w + x..yy * w + x + N].iter().sum::<f32>();
                    }
                    let v = (v / (N * N) as f32).max(1e-12);
                    for c in 0..3 {
                        let block = |img: &[f32]| {
                            let mut blk = [[0f32; N]; N];
                            for (i, row) in blk.iter_mut().enumerate() {
                                let at = c * n + (y + i) * w + x;
                                row.copy_from_slice(&img[at..at + N]);
                            }
                            blk
                        };
                        let (pd, mut zd) = (basis.forward(&block(&p)), basis.forward(&block(&z)));
                        let mut w2 = 0f32;
                        for (pr, zr) in pd.iter().zip(zd.iter_mut()) {
                            for (pv, zv) in pr.iter().zip(zr.iter_mut()) {
                                let g = pv * pv / (pv * pv + v);
                                *zv *= g;
                                w2 += g * g;
                            }
                        }
                        let est = basis.inverse(&zd);
                        let wt = 1.0 / (v * w2.max(1.0));
                        for (i, (er, kr)) in est.iter().zip(&basis.window).enumerate() {
                            let at = c * m + (y + i - r0) * w + x;
                            let (nr, dr) = (&mut num[at..at + N], &mut den[at..at + N]);
                            for (((nv, dv), e), k) in
                                nr.iter_mut().zip(dr.iter_mut()).zip(er).zip(kr)
                            {
                                *nv += wt * k * e;
                                *dv += wt * k;
                            }
                        }
                    }
                }
            }
            results.lock().push((r0, r1, num, den));
        }
    });
    let mut num = vec![0f32; 3 * n];
    let mut den = vec![0f32; 3 * n];
    // In band order, so that overlapping rows add up the same way on every run.
    let mut results = results.into_inner();
    results.sort_by_key(|r| r.0);
    for (r0, r1, bn, bd) in results {
        let m = (r1 - r0) * w;
        for c in 0..3 {
            let at = c * n + r0 * w;
            num[at..at + m]
                .iter_mut()
                .zip(&bn[c * m..(c + 1) * m])
                .for_each(|(a, b)| *a += b);
            den[at..at + m]
                .iter_mut()
                .zip(&bd[c * m..(c + 1) * m])
                .for_each(|(a, b)| *a += b);
        }
    }
    let est: Vec<f32> = num.iter().zip(&den).map(|(a, b)| a / b).collect();
    opponent(&est, n, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::noise::gaussian;

    const W: usize = 37;
    const H: usize = 29;

    fn image(f: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
        let mut p = vec![0f32; 3 * W * H];
        for c in 0..3 {
            for y in 0..H {
                for x in 0..W {
                    p[c * W * H + y * W + x] = f(c, x, y);
                }
            }
        }
        p
    }

    fn scene(c: usize, x: usize, y: usize) -> f32 {
        let (x, y) = (x as f32, y as f32);
        0.4 + 0.1 * c as f32 + 0.2 * (x * 0.5).sin() * (y * 0.3).cos() + 0.002 * x * y / 4.0
    }

    fn noisy(sd: f32) -> Vec<f32> {
        image(|c, x, y| scene(c, x, y) + sd * gaussian(7, 0, c as u32, x as i64, y as i64, 0))
    }

    fn mse(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn transforms_are_orthonormal_and_invert() {
        let b = Basis::new();
        let mut x = [[0f32; N]; N];
        for (i, row) in x.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = ((i * 7 + j * 3) % 5) as f32 - 1.5;
            }
        }
        let y = b.forward(&x);
        let energy = |m: &[[f32; N]; N]| m.iter().flatten().map(|v| v * v).sum::<f32>();
        assert!((energy(&y) - energy(&x)).abs() < 1e-3 * energy(&x));
        let back = b.inverse(&y);
        for (r, s) in back.iter().flatten().zip(x.iter().flatten()) {
            assert!((r - s).abs() < 1e-5);
        }
        // The DC coefficient of a constant block is its mean times 8.
        let y = b.forward(&[[0.25; N]; N]);
        assert!((y[0][0] - 2.0).abs() < 1e-5);
        assert!(y.iter().flatten().skip(1).all(|v| v.abs() < 1e-5));
        let img = noisy(0.1);
        let round = opponent(&opponent(&img, W * H, false), W * H, true);
        assert!(round.iter().zip(&img).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn an_exact_pilot_takes_most_of_the_noise_out() {
        let sd = 0.1;
        let (clean, noisy) = (image(scene), noisy(sd));
        let var = vec![sd * sd; W * H];
        let out = dct_wiener(&clean, &noisy, &var, W, H, 4);
        let err = mse(&out, &clean);
        assert!(err < 0.15 * (sd * sd) as f64, "mse {err:.2e}");
    }

    #[test]
    fn noise_free_input_comes_back_as_it_is() {
        // With (almost) no noise every coefficient the pilot shows is kept whole, and the blocks
        // add back up to the input.
        let img = noisy(0.05);
        let out = dct_wiener(&img, &img, &vec![1e-12; W * H], W, H, 4);
        let worst = out
            .iter()
            .zip(&img)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "off by {worst}");
    }

    #[test]
    fn detail_the_pilot_only_weakened_comes_back() {
        // The pilot kept a third of the texture's contrast and none of the noise.
        let sd = 0.05;
        let clean = image(scene);
        let weak = image(|c, x, y| {
            let mean = 0.4 + 0.1 * c as f32 + 0.002 * (x * y) as f32 / 4.0;
            mean + (scene(c, x, y) - mean) / 3.0
        });
        let out = dct_wiener(&weak, &noisy(sd), &vec![sd * sd; W * H], W, H, 4);
        let (before, after) = (mse(&weak, &clean), mse(&out, &clean));
        assert!(after < 0.25 * before, "mse {before:.2e} -> {after:.2e}");
    }

    #[test]
    fn same_input_same_bits_and_small_images_pass_through() {
        let (pilot, img) = (image(scene), noisy(0.1));
        let var = vec![0.01; W * H];
        let a = dct_wiener(&pilot, &img, &var, W, H, 4);
        let b = dct_wiener(&pilot, &img, &var, W, H, 4);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // Under one block on a side: the pilot, unchanged.
        let (w, h) = (7, 20);
        let small = vec![0.3f32; 3 * w * h];
        let other = vec![0.6f32; 3 * w * h];
        assert_eq!(
            dct_wiener(&small, &other, &vec![0.01; w * h], w, h, 4),
            small
        );
    }
}

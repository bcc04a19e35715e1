//! Noise schedules: the Karras sigma ramp and the per-frame schedules of a window, from the
//! footage noise level and Strength keyframed at each frame. Consumed by the samplers.
//!
//! Sigmas are in image units ([0,1] data), like the footage noise level they start from.

/// Floor of every ramp: below this the model has nothing left to remove.
pub const SIGMA_MIN: f32 = 0.001;
/// Noise at Strength 1: as large as the data range, enough to re-generate a frame.
pub const SIGMA_MAX: f32 = 1.0;
/// Karras et al. (EDM) ramp exponent: spends more steps at low noise, where detail is made.
pub const RHO: f32 = 7.0;

/// Negative, NaN and infinite sigmas count as 0 ("no noise"), never as a panic or a NaN ramp.
fn sanitize(v: f32) -> f32 {
    if v.is_finite() {
        v.max(0.0)
    } else {
        0.0
    }
}

/// k-diffusion's `get_sigmas_karras`: `steps` values from `sigma_max` down to `sigma_min` evenly
/// spaced in `sigma^(1/rho)`, then a final 0. Length `steps + 1`.
///
/// The endpoints are exact (computed in f64, then pinned). If `sigma_max <= sigma_min` the ramp
/// is `sigma_max` repeated `steps` times (the frame stays put, then is denoised in the last step).
/// A non-positive or NaN `rho` means [`RHO`].
pub fn karras(steps: usize, sigma_min: f32, sigma_max: f32, rho: f32) -> Vec<f32> {
    let (lo, hi) = (sanitize(sigma_min), sanitize(sigma_max));
    let rho = if rho.is_finite() && rho > 0.0 {
        rho
    } else {
        RHO
    };
    let mut out = Vec::with_capacity(steps + 1);
    if hi <= lo {
        out.resize(steps, hi);
    } else {
        let inv = 1.0 / f64::from(rho);
        let (lo_r, hi_r) = (f64::from(lo).powf(inv), f64::from(hi).powf(inv));
        // linspace(0, 1, steps) as in torch: a single step sits at ramp 0, i.e. at sigma_max.
        let denom = steps.saturating_sub(1).max(1) as f64;
        out.extend((0..steps).map(|i| {
            let ramp = i as f64 / denom;
            (hi_r + ramp * (lo_r - hi_r)).powf(f64::from(rho)) as f32
        }));
        if let Some(first) = out.first_mut() {
            *first = hi;
        }
        if steps > 1 {
            out[steps - 1] = lo;
        }
    }
    out.push(0.0);
    out
}

/// Start noise level of a frame: the footage's own noise `noise_level` raised by `strength`,
/// `sqrt(n^2 + (strength^2 * SIGMA_MAX)^2)`. The engine adds fresh noise of sigma
/// `strength^2 * SIGMA_MAX` to the source, so the total is this value.
///
/// Strength is squared so that the lower half of the slider gives fine control (0.5 adds 0.25,
/// 0.2 adds 0.04, about the footage noise) while 1 still re-generates. Negative or NaN inputs
/// count as 0; `start_sigma(0, 0) == 0` exactly, which the engine treats as an identity.
pub fn start_sigma(noise_level: f32, strength: f32) -> f32 {
    let n = f64::from(sanitize(noise_level));
    let s = f64::from(sanitize(strength));
    let added = s * s * f64::from(SIGMA_MAX);
    (n * n + added * added).sqrt() as f32
}

/// Per-frame schedules for a window: `sigmas[step][frame]`, `steps + 1` rows, last row all 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub sigmas: Vec<Vec<f32>>,
}

impl Schedule {
    /// Frame `k` ramps from `starts[k]` with `karras(steps, min(SIGMA_MIN, start), start, RHO)`,
    /// so every frame takes the same number of model calls (the window is denoised jointly) but
    /// each ends where its own noise ends. A frame whose start is 0 gets an all-zero column: the
    /// samplers leave it unchanged and the engine bypasses it.
    pub fn per_frame(steps: usize, starts: &[f32]) -> Schedule {
        let columns: Vec<Vec<f32>> = starts
            .iter()
            .map(|&s| {
                let s = sanitize(s);
                if s == 0.0 {
                    vec![0.0; steps + 1]
                } else {
                    karras(steps, SIGMA_MIN.min(s), s, RHO)
                }
            })
            .collect();
        let sigmas = (0..=steps)
            .map(|i| columns.iter().map(|c| c[i]).collect())
            .collect();
        Schedule { sigmas }
    }

    /// Number of sampler steps (rows - 1).
    pub fn steps(&self) -> usize {
        self.sigmas.len().saturating_sub(1)
    }

    /// Number of frames (columns).
    pub fn frames(&self) -> usize {
        self.sigmas.first().map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() <= 1e-6 * b.abs().max(1e-3)
    }

    #[test]
    fn karras_matches_k_diffusion() {
        // Golden values: k-diffusion's get_sigmas_karras formula evaluated in Python float64
        // ((max^(1/rho) + i/(n-1) * (min^(1/rho) - max^(1/rho)))^rho, then append 0).
        let want = [
            80.0,
            9.723_201_355_260_132,
            0.469_979_057_997_747_14,
            0.002,
            0.0,
        ];
        let got = karras(4, 0.002, 80.0, 7.0);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, w), "{got:?}");
        }
        let want = [
            0.5,
            0.270_414_243_907_614_3,
            0.137_839_473_276_876_82,
            0.065_390_429_824_102_27,
            0.028_378_827_672_816_53,
            0.010_998_086_136_851_526,
            0.003_673_058_017_771_817_8,
            0.001,
            0.0,
        ];
        let got = karras(8, SIGMA_MIN, 0.5, RHO);
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, w), "{got:?}");
        }
    }

    #[test]
    fn karras_endpoints_length_and_monotone() {
        for steps in [1, 2, 3, 8, 50, 100] {
            let s = karras(steps, SIGMA_MIN, 0.7, RHO);
            assert_eq!(s.len(), steps + 1);
            assert_eq!(s[0], 0.7);
            assert_eq!(s[steps], 0.0);
            if steps > 1 {
                assert_eq!(s[steps - 1], SIGMA_MIN);
            }
            assert!(s.windows(2).all(|w| w[0] > w[1]), "{steps}: {s:?}");
        }
        assert_eq!(karras(0, SIGMA_MIN, 0.7, RHO), vec![0.0]);
    }

    #[test]
    fn karras_degenerate_inputs() {
        assert_eq!(karras(3, 0.5, 0.5, RHO), vec![0.5, 0.5, 0.5, 0.0]);
        assert_eq!(karras(2, 0.5, 0.1, RHO), vec![0.1, 0.1, 0.0]);
        assert_eq!(karras(2, 0.001, -1.0, RHO), vec![0.0, 0.0, 0.0]);
        assert_eq!(karras(2, 0.001, f32::NAN, RHO), vec![0.0, 0.0, 0.0]);
        // A bad rho falls back to the default rather than producing NaN.
        assert_eq!(karras(4, 0.002, 80.0, -1.0), karras(4, 0.002, 80.0, RHO));
        assert_eq!(
            karras(4, 0.002, 80.0, f32::NAN),
            karras(4, 0.002, 80.0, RHO)
        );
    }

    #[test]
    fn start_sigma_combines_noise_and_squared_strength() {
        assert_eq!(start_sigma(0.0, 0.0), 0.0);
        assert!(close(start_sigma(0.04, 0.0), 0.04));
        assert!(close(start_sigma(0.0, 1.0), f64::from(SIGMA_MAX)));
        assert!(close(start_sigma(0.0, 0.5), 0.25));
        assert!(close(start_sigma(0.3, 0.2), (0.09f64 + 0.0016).sqrt()));
        assert_eq!(start_sigma(-0.1, -2.0), 0.0);
        assert_eq!(start_sigma(f32::NAN, 0.0), 0.0);
        let mut last = start_sigma(0.04, 0.0);
        for i in 1..=20 {
            let s = start_sigma(0.04, i as f32 / 20.0);
            assert!(s > last, "not increasing at strength {}", i as f32 / 20.0);
            last = s;
        }
    }

    #[test]
    fn per_frame_columns() {
        let starts = [0.8, 0.0, 0.0005, 0.04];
        let s = Schedule::per_frame(6, &starts);
        assert_eq!(s.steps(), 6);
        assert_eq!(s.frames(), 4);
        assert_eq!(s.sigmas.len(), 7);
        assert!(s.sigmas[6].iter().all(|&v| v == 0.0));
        for (k, &start) in starts.iter().enumerate() {
            let col: Vec<f32> = s.sigmas.iter().map(|r| r[k]).collect();
            if start == 0.0 {
                assert!(col.iter().all(|&v| v == 0.0), "frame {k}: {col:?}");
            } else {
                assert_eq!(
                    col,
                    karras(6, SIGMA_MIN.min(start), start, RHO),
                    "frame {k}"
                );
                assert_eq!(col[0], start);
            }
        }
        // Below SIGMA_MIN the frame holds its level, then is denoised in the last step.
        assert_eq!(s.sigmas[5][2], 0.0005);
        let empty = Schedule::per_frame(3, &[]);
        assert_eq!((empty.steps(), empty.frames()), (3, 0));
    }
}

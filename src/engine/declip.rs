//! Correction for noise that was clipped to the image range, applied to each rendered frame after
//! temporal smoothing. Integer footage (and float footage kept inside 0..1) stores clip(x + n): near
//! black and white its local mean is pulled towards the middle of the range, by up to 0.4 sigma
//! (10 code values at sigma 25/255). A denoiser trained on unclipped noise returns that biased
//! mean, so dark scenes come out grey. The inverse of the clipped-Gaussian mean maps it back
//! (Foi, "Clipped noisy images: heteroskedastic modeling and practical denoising", Signal
//! Processing 89(12), 2009).
use std::fmt;
use std::str::FromStr;

/// How the footage's noise met the ends of the range (the Noise Clipping choice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NoiseClipping {
    /// Clipped at an end where (almost) no source value of the window lies beyond it: always for
    /// integer footage, and for float footage without negatives (or values above 1).
    #[default]
    Auto,
    /// Clipped at 0 and 1 whatever the values.
    Clipped,
    /// Never clipped: no correction.
    Unclipped,
}

impl NoiseClipping {
    /// In the order of the plugin's choice options.
    pub const ALL: [NoiseClipping; 3] = [
        NoiseClipping::Auto,
        NoiseClipping::Clipped,
        NoiseClipping::Unclipped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            NoiseClipping::Auto => "Auto",
            NoiseClipping::Clipped => "Clipped",
            NoiseClipping::Unclipped => "Not Clipped",
        }
    }

    /// The ends clipped for source values `planes` (the frames a render smooths over).
    pub fn ends(self, planes: &[Vec<f32>]) -> Clipping {
        match self {
            NoiseClipping::Clipped => Clipping {
                low: true,
                high: true,
            },
            NoiseClipping::Unclipped => Clipping::default(),
            NoiseClipping::Auto => {
                let (mut total, mut below, mut above) = (0usize, 0usize, 0usize);
                for &v in planes.iter().flatten() {
                    total += 1;
                    below += usize::from(v < -RANGE_SLACK);
                    above += usize::from(v > 1.0 + RANGE_SLACK);
                }
                Clipping::from_counts(total, below, above)
            }
        }
    }
}

impl fmt::Display for NoiseClipping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for NoiseClipping {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        let key: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match key.as_str() {
            "auto" => Ok(NoiseClipping::Auto),
            "clipped" | "on" => Ok(NoiseClipping::Clipped),
            "notclipped" | "unclipped" | "off" => Ok(NoiseClipping::Unclipped),
            _ => Err(crate::Error::param(
                "noise clipping",
                format!("'{s}' is not one of auto, clipped, unclipped"),
            )),
        }
    }
}

/// Values this far outside 0..1 still count as inside: float pipelines leave rounding residue.
pub(super) const RANGE_SLACK: f32 = 1.0 / 1024.0;
/// Share of values beyond an end that still counts as clipped there: a few stray values (a
/// colour transform's overshoot on an edge) must not switch the correction off for a whole tile,
/// and so make it differ from its neighbours'. Unclipped noise puts far more beyond the end:
/// a dark patch covering 1% of a tile, 2 sigma above black, already puts 2.3e-4 of the values
/// below 0.
const STRAY_FRACTION: f64 = 1e-4;

/// Which ends of the range the footage's noise was clipped at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clipping {
    pub low: bool,
    pub high: bool,
}

impl Clipping {
    /// Noise Clipping Auto's decision from counts: of `total` source values, `below` lie under
    /// 0 and `above` over 1 (each by more than the slack).
    pub(super) fn from_counts(total: usize, below: usize, above: usize) -> Clipping {
        let few = (total as f64 * STRAY_FRACTION) as usize;
        Clipping {
            low: below <= few,
            high: above <= few,
        }
    }
}

/// Standard normal density.
fn pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal distribution function.
fn cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// E[clip(mu + sigma Z)] for a standard normal Z, clipped at the ends `clip` names.
pub fn clipped_mean(mu: f64, sigma: f64, clip: Clipping) -> f64 {
    if sigma <= 0.0 {
        return mu;
    }
    let (a, b) = (-mu / sigma, (1.0 - mu) / sigma);
    // P(below 0) and P(below 1) of the unclipped value, and the densities there, for the ends
    // that clip; an end that does not clip contributes as if it were at infinity.
    let (below0, dens0) = if clip.low {
        (cdf(a), pdf(a))
    } else {
        (0.0, 0.0)
    };
    let (below1, dens1) = if clip.high {
        (cdf(b), pdf(b))
    } else {
        (1.0, 0.0)
    };
    mu * (below1 - below0) + sigma * (dens0 - dens1) + (1.0 - below1)
}

/// The inverse of [`clipped_mean`] for one sigma, over true values 0..1 and continued by a
/// shift past an end that does not clip. Tabulated on a uniform grid of means, so a lookup is
/// one linear interpolation (it runs on every value of every denoised frame).
pub struct Inverse {
    pub(super) clip: Clipping,
    /// Means of true values 0 and 1: the table spans them.
    pub(super) first: f32,
    pub(super) last: f32,
    /// Table cells per unit of mean.
    pub(super) scale: f32,
    /// True value at mean `first + i / scale`.
    pub(super) table: Vec<f32>,
}

/// Samples of the forward mean, and of the inverse table.
const FORWARD: usize = 2049;
const INVERSE: usize = 4097;

impl Inverse {
    pub fn new(sigma: f32, clip: Clipping) -> Self {
        let fwd: Vec<f64> = (0..FORWARD)
            .map(|i| clipped_mean(i as f64 / (FORWARD - 1) as f64, sigma as f64, clip))
            .collect();
        let (first, last) = (fwd[0], fwd[FORWARD - 1]);
        let step = (last - first) / (INVERSE - 1) as f64;
        // The forward mean is increasing: walk it once alongside the uniform grid of means.
        let mut i = 1;
        let table = (0..INVERSE)
            .map(|q| {
                let y = first + q as f64 * step;
                while i < FORWARD - 1 && fwd[i] < y {
                    i += 1;
                }
                let (lo, hi) = (fwd[i - 1], fwd[i]);
                let f = if hi > lo {
                    ((y - lo) / (hi - lo)).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                (((i - 1) as f64 + f) / (FORWARD - 1) as f64) as f32
            })
            .collect();
        Inverse {
            clip,
            first: first as f32,
            last: last as f32,
            scale: if step > 0.0 { (1.0 / step) as f32 } else { 0.0 },
            table,
        }
    }

    /// The true value whose clipped mean is `y`. Where the noise clipped, the true value lies in
    /// 0..1, so means beyond the table's ends give 0 or 1.
    pub fn apply(&self, y: f32) -> f32 {
        if y <= self.first {
            return if self.clip.low { 0.0 } else { y - self.first };
        }
        if y >= self.last {
            return if self.clip.high {
                1.0
            } else {
                1.0 + (y - self.last)
            };
        }
        if y.is_nan() {
            return y;
        }
        let pos = (y - self.first) * self.scale;
        let i = (pos as usize).min(INVERSE - 2);
        let f = pos - i as f32;
        self.table[i] + f * (self.table[i + 1] - self.table[i])
    }
}

/// Undoes the clipping bias of a denoised frame in place; `sigma` is the footage noise (0:
/// nothing to undo).
pub fn declip(plane: &mut [f32], sigma: f32, clip: Clipping) {
    if !(clip.low || clip.high) || sigma.is_nan() || sigma <= 0.0 {
        return;
    }
    let inv = Inverse::new(sigma, clip);
    plane.iter_mut().for_each(|v| *v = inv.apply(*v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::noise::gaussian;

    const BOTH: Clipping = Clipping {
        low: true,
        high: true,
    };

    #[test]
    fn clipped_mean_matches_sampled_clipped_noise() {
        let n = 200_000;
        for (mu, sigma) in [
            (0.0, 0.1),
            (0.03, 0.2),
            (0.5, 0.1),
            (0.97, 0.05),
            (0.2, 0.4),
        ] {
            let mut s = 0f64;
            for i in 0..n {
                let z = gaussian(9, 0, 0, i, 0, 0) as f64;
                s += (mu + sigma * z).clamp(0.0, 1.0);
            }
            let sampled = s / n as f64;
            let exact = clipped_mean(mu, sigma, BOTH);
            // Standard error of the sampled mean is below sigma / sqrt(n).
            let tol = 4.0 * sigma / (n as f64).sqrt();
            assert!(
                (sampled - exact).abs() < tol,
                "mu {mu} sigma {sigma}: sampled {sampled}, formula {exact}"
            );
        }
        // The bias at black is sigma / sqrt(2 pi).
        let at0 = clipped_mean(0.0, 0.1, BOTH);
        assert!((at0 - 0.1 / (2.0 * std::f64::consts::PI).sqrt()).abs() < 1e-9);
    }

    #[test]
    fn inverse_undoes_the_clipped_mean() {
        for sigma in [0.01f32, 0.04, 0.1, 0.2, 0.5] {
            let inv = Inverse::new(sigma, BOTH);
            for i in 0..=100 {
                let mu = i as f64 / 100.0;
                let y = clipped_mean(mu, sigma as f64, BOTH) as f32;
                let back = inv.apply(y);
                assert!(
                    (back as f64 - mu).abs() < 2e-3,
                    "sigma {sigma}: {mu} -> {y} -> {back}"
                );
            }
            // Below what black gives, the value is black; above white's, white.
            assert_eq!(inv.apply(-0.3), 0.0);
            assert_eq!(inv.apply(1.3), 1.0);
        }
    }

    #[test]
    fn an_end_that_did_not_clip_is_left_alone() {
        let low_only = Clipping {
            low: true,
            high: false,
        };
        let inv = Inverse::new(0.05, low_only);
        // Far from black the correction vanishes, and HDR values above 1 pass through.
        for y in [0.6f32, 0.9, 1.0, 1.7, 12.0] {
            assert!((inv.apply(y) - y).abs() < 1e-4, "{y} -> {}", inv.apply(y));
        }
        // Near black it still lowers the value.
        assert!(inv.apply(0.03) < 0.025);
        let none = Inverse::new(0.05, Clipping::default());
        for y in [-0.4f32, 0.0, 0.02, 0.5, 1.0, 3.0] {
            assert!((none.apply(y) - y).abs() < 1e-5, "{y} -> {}", none.apply(y));
        }
        // declip() with no clipped end changes nothing.
        let mut plane = [0.01f32, 0.5, 0.99];
        declip(&mut plane, 0.1, Clipping::default());
        assert_eq!(plane, [0.01, 0.5, 0.99]);
        // Frames with no footage noise are left alone too.
        declip(&mut plane, 0.0, BOTH);
        assert_eq!(plane, [0.01, 0.5, 0.99]);
        // Both ends clipped: the dark value is lowered.
        declip(&mut plane, 0.1, BOTH);
        assert!(plane[0] < 0.01);
    }

    #[test]
    fn auto_reads_the_range_of_the_source() {
        let inside = vec![vec![0.0f32, 0.3, 1.0], vec![0.5, 0.9995, 0.0]];
        assert_eq!(NoiseClipping::Auto.ends(&inside), BOTH);
        let negative = vec![vec![0.2f32, -0.05], vec![0.5, 0.5]];
        let hdr = vec![vec![0.2f32, 0.3], vec![4.0, 0.5]];
        // One stray value in 20,000 does not count; one in 5,000 does.
        let mut stray = vec![vec![0.5f32; 20_000]];
        stray[0][7] = -0.2;
        assert_eq!(NoiseClipping::Auto.ends(&stray), BOTH);
        stray[0][8..11].fill(-0.2);
        assert!(!NoiseClipping::Auto.ends(&stray).low);
        assert_eq!(
            NoiseClipping::Auto.ends(&negative),
            Clipping {
                low: false,
                high: true
            }
        );
        assert_eq!(
            NoiseClipping::Auto.ends(&hdr),
            Clipping {
                low: true,
                high: false
            }
        );
        assert_eq!(NoiseClipping::Clipped.ends(&negative), BOTH);
        assert_eq!(NoiseClipping::Unclipped.ends(&inside), Clipping::default());
    }

    #[test]
    fn labels_parse_back() {
        for m in NoiseClipping::ALL {
            assert_eq!(m.label().parse::<NoiseClipping>().unwrap(), m);
        }
        assert_eq!(
            "unclipped".parse::<NoiseClipping>().unwrap(),
            NoiseClipping::Unclipped
        );
        let err = "sometimes"
            .parse::<NoiseClipping>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("auto, clipped, unclipped"), "{err}");
    }
}

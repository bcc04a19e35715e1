//! Counter-based random numbers for the training loop's choices (which clip, where to crop, which
//! flips, which noise level): a stream is a pure function of (seed, step, stream id), so the data
//! of step `s` never depends on what earlier steps drew and a resumed run sees the same batches.
//! Pixel noise does not come from here but from `vdiff::sampling::noise`.

/// SplitMix64 finaliser (Steele et al.): a bijective 64-bit mixer with full avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a list of words, order-sensitive (used to derive independent seeds and stream keys).
pub fn hash_words(words: &[u64]) -> u64 {
    words.iter().fold(0x6A09_E667_F3BC_C909, |h, &w| {
        mix64(h ^ mix64(w.wrapping_add(0x9E37_79B9_7F4A_7C15)))
    })
}

/// A short stream of uniform and Gaussian variates keyed by (seed, step, stream).
#[derive(Clone, Debug)]
pub struct Rng {
    key: u64,
    counter: u64,
}

impl Rng {
    pub fn new(seed: u64, step: u64, stream: u64) -> Rng {
        Rng {
            key: hash_words(&[seed, step, stream]),
            counter: 0,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        // SplitMix64: a Weyl sequence through the mixer; counter-based by construction.
        self.counter = self.counter.wrapping_add(1);
        mix64(
            self.key
                .wrapping_add(self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n); 0 when n is 0. Multiply-shift: bias below 2^-32 for our n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Standard normal by Box-Muller (one of the pair; the other is discarded for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_pure_functions_of_their_key() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7, 100, 2);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7, 100, 2);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        let c = Rng::new(7, 101, 2).next_u64();
        let d = Rng::new(8, 100, 2).next_u64();
        let e = Rng::new(7, 100, 3).next_u64();
        assert!(c != a[0] && d != a[0] && e != a[0] && c != d);
    }

    #[test]
    fn variates_have_the_right_moments() {
        let mut r = Rng::new(1, 2, 3);
        let n = 20_000;
        let (mut s, mut s2, mut u, mut heads) = (0.0, 0.0, 0.0, 0);
        for _ in 0..n {
            let g = r.normal();
            s += g;
            s2 += g * g;
            let v = r.uniform();
            assert!((0.0..1.0).contains(&v));
            u += v;
            heads += r.coin() as usize;
            assert!(r.below(5) < 5);
        }
        let n = n as f64;
        assert!((s / n).abs() < 0.03, "mean {}", s / n);
        assert!((s2 / n - 1.0).abs() < 0.05, "var {}", s2 / n);
        assert!((u / n - 0.5).abs() < 0.01);
        assert!((heads as f64 / n - 0.5).abs() < 0.02);
        assert_eq!(r.below(0), 0);
    }
}

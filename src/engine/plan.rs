//! The temporal plan: which windows ("chunks") of frames a render at frame t uses, and how their
//! results are weighted. Chunks sit on a fixed grid of the timeline, so every frame of a shot sees
//! the same chunks whatever order the host renders in.
//!
//! A chunk of radius r holds K = 2r+1 consecutive frames and chunks start every r+1 frames, so
//! each frame lies in two chunks (one at radius 0) and overlaps blend with smooth weights.

/// Inclusive frame range that windows may use: frames outside are never read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shot {
    pub first: i64,
    pub last: i64,
}

impl Shot {
    /// The shot as seen from frame t: a t outside it (hosts may ask) gets a one-frame shot.
    pub fn around(self, t: i64) -> Shot {
        if t < self.first || t > self.last || self.first > self.last {
            Shot { first: t, last: t }
        } else {
            self
        }
    }
}

/// Frames per chunk.
pub fn chunk_len(radius: u32) -> i64 {
    2 * radius as i64 + 1
}

/// Distance between the starts of consecutive chunks.
pub fn chunk_stride(radius: u32) -> i64 {
    radius as i64 + 1
}

/// Inclusive frames of chunk `c`, clipped to the shot (None when it lies outside).
pub fn chunk_frames(c: i64, radius: u32, shot: Shot) -> Option<(i64, i64)> {
    let start = c * chunk_stride(radius);
    let (a, b) = (
        start.max(shot.first),
        (start + chunk_len(radius) - 1).min(shot.last),
    );
    (a <= b).then_some((a, b))
}

/// Weight of the frame at position `j` (0-based, on the unclipped grid) inside a chunk of `len`
/// frames: a raised sine, largest in the middle, never zero, so clipped chunks still count.
pub fn position_weight(j: i64, len: i64) -> f32 {
    let s = (std::f64::consts::PI * (j as f64 + 0.5) / len as f64).sin();
    (s * s) as f32
}

/// A chunk covering frame t, with t's normalised blending weight in it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cover {
    pub chunk: i64,
    pub first: i64,
    pub last: i64,
    pub weight: f32,
}

/// The chunks whose frames include t, in increasing order, weights summing to one.
pub fn chunks_covering(t: i64, radius: u32, shot: Shot) -> Vec<Cover> {
    let shot = shot.around(t);
    let (len, stride) = (chunk_len(radius), chunk_stride(radius));
    let lo = (t - len + 1).div_euclid(stride) + i64::from((t - len + 1).rem_euclid(stride) != 0);
    let hi = t.div_euclid(stride);
    let mut covers: Vec<Cover> = (lo..=hi)
        .filter_map(|c| {
            let (first, last) = chunk_frames(c, radius, shot)?;
            let weight = position_weight(t - c * stride, len);
            Some(Cover {
                chunk: c,
                first,
                last,
                weight,
            })
        })
        .collect();
    let total: f32 = covers.iter().map(|c| c.weight).sum();
    for c in &mut covers {
        c.weight /= total;
    }
    covers
}

/// Inclusive range of source frames a render of t reads (GetFramesNeeded).
pub fn frames_needed(t: i64, radius: u32, shot: Shot) -> (i64, i64) {
    let covers = chunks_covering(t, radius, shot);
    let first = covers.iter().map(|c| c.first).min().unwrap_or(t);
    let last = covers.iter().map(|c| c.last).max().unwrap_or(t);
    (first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOT: Shot = Shot {
        first: -20,
        last: 100,
    };

    #[test]
    fn every_frame_is_covered_with_unit_weight() {
        for r in 0..5 {
            for t in -20..=100 {
                let cov = chunks_covering(t, r, SHOT);
                // Stride r+1 over 2r+1 frames: a chunk's middle frames have one cover, the
                // overlaps two; radius 0 is one frame per chunk.
                let n = cov.len();
                assert!(n == 1 || (r > 0 && n == 2), "t={t} r={r}: {n} covers");
                let sum: f32 = cov.iter().map(|c| c.weight).sum();
                assert!((sum - 1.0).abs() < 1e-6);
                for c in &cov {
                    assert!(c.first <= t && t <= c.last && c.weight > 0.0);
                    assert!(c.first >= SHOT.first && c.last <= SHOT.last);
                }
            }
        }
    }

    #[test]
    fn chunks_sit_on_a_fixed_grid() {
        // Frames 10 and 11 share a chunk whose bounds do not depend on which one asks.
        let a = chunks_covering(10, 2, SHOT);
        let b = chunks_covering(11, 2, SHOT);
        let shared: Vec<_> = a
            .iter()
            .filter(|x| b.iter().any(|y| y.chunk == x.chunk))
            .collect();
        assert!(!shared.is_empty());
        for s in shared {
            let o = b.iter().find(|y| y.chunk == s.chunk).unwrap();
            assert_eq!((s.first, s.last), (o.first, o.last));
        }
    }

    #[test]
    fn windows_never_leave_the_shot() {
        let shot = Shot { first: 3, last: 7 };
        for t in 3..=7 {
            let (a, b) = frames_needed(t, 4, shot);
            assert!(a >= 3 && b <= 7, "t={t}: {a}..{b}");
        }
        // A frame outside the shot reads only itself.
        assert_eq!(frames_needed(50, 4, shot), (50, 50));
    }

    #[test]
    fn frames_needed_spans_both_chunks() {
        let (a, b) = frames_needed(9, 2, SHOT);
        assert!(a <= 7 && b >= 11, "{a}..{b}");
        assert_eq!(frames_needed(9, 0, SHOT), (9, 9));
    }

    #[test]
    fn weights_are_smooth_and_positive() {
        for len in [1, 3, 5, 17] {
            for j in 0..len {
                assert!(position_weight(j, len) > 0.0);
                assert!((position_weight(j, len) - position_weight(len - 1 - j, len)).abs() < 1e-6);
            }
        }
    }
}

//! The temporal plan: which windows ("chunks") of frames the network denoises together, and
//! which frames a render at frame t smooths over. Chunks sit on a fixed grid of the timeline, so
//! every frame of a shot sees the same chunks whatever order the host renders in.
//!
//! A chunk of radius r holds K = 2r+1 consecutive frames, chunks tile the timeline without
//! overlapping (chunk c is frames cK..cK+K-1), so the network runs once per frame. Frame t is then
//! smoothed over the sliding window t-r..t+r, which crosses chunk edges: there is no seam in time
//! where one chunk's result hands over to the next.

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

/// A chunk: the network's window, clipped to the shot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Index on the timeline grid.
    pub index: i64,
    pub first: i64,
    pub last: i64,
}

/// Inclusive frames of chunk `c`, clipped to the shot (None when it lies outside).
pub fn chunk_frames(c: i64, radius: u32, shot: Shot) -> Option<Chunk> {
    let start = c * chunk_len(radius);
    let (first, last) = (
        start.max(shot.first),
        (start + chunk_len(radius) - 1).min(shot.last),
    );
    (first <= last).then_some(Chunk {
        index: c,
        first,
        last,
    })
}

/// The frames frame t is smoothed over: t-r..t+r, slid into the shot near its ends so that every
/// frame of a shot of at least 2r+1 frames keeps 2r neighbours (the first frame is smoothed over
/// the 2r frames after it, not over r), and the whole shot when it is shorter.
pub fn window(t: i64, radius: u32, shot: Shot) -> (i64, i64) {
    let shot = shot.around(t);
    let r = radius as i64;
    let first = (t - r).min(shot.last - 2 * r).max(shot.first);
    (first, (first + 2 * r).min(shot.last))
}

/// The chunks holding the frames of t's window, in increasing order.
pub fn chunks_for(t: i64, radius: u32, shot: Shot) -> Vec<Chunk> {
    let shot = shot.around(t);
    let (a, b) = window(t, radius, shot);
    let len = chunk_len(radius);
    (a.div_euclid(len)..=b.div_euclid(len))
        .filter_map(|c| chunk_frames(c, radius, shot))
        .collect()
}

/// Inclusive range of source frames a render of t reads (GetFramesNeeded): every frame of the
/// chunks its window touches.
pub fn frames_needed(t: i64, radius: u32, shot: Shot) -> (i64, i64) {
    let chunks = chunks_for(t, radius, shot);
    let first = chunks.iter().map(|c| c.first).min().unwrap_or(t);
    let last = chunks.iter().map(|c| c.last).max().unwrap_or(t);
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
    fn chunks_tile_the_timeline_once() {
        for r in 0..5 {
            let mut seen = std::collections::HashMap::new();
            for t in -20..=100 {
                for c in chunks_for(t, r, SHOT) {
                    assert!(c.first >= SHOT.first && c.last <= SHOT.last);
                    assert!(c.last - c.first < chunk_len(r));
                    // The same index always means the same frames.
                    let prev = seen.insert(c.index, (c.first, c.last));
                    assert!(
                        prev.is_none_or(|p| p == (c.first, c.last)),
                        "r={r} chunk {c:?}"
                    );
                }
            }
            // Every frame lies in exactly one chunk.
            for t in -20..=100 {
                let n = seen.values().filter(|&&(a, b)| a <= t && t <= b).count();
                assert_eq!(n, 1, "r={r} t={t}");
            }
        }
    }

    #[test]
    fn the_chunks_hold_the_whole_window() {
        for r in 0..5 {
            for t in -20..=100 {
                let (a, b) = window(t, r, SHOT);
                assert!(a <= t && t <= b && b - a <= 2 * r as i64);
                let chunks = chunks_for(t, r, SHOT);
                for f in a..=b {
                    assert!(chunks.iter().any(|c| c.first <= f && f <= c.last));
                }
                // No chunk is read that the window does not touch.
                for c in &chunks {
                    assert!(c.last >= a && c.first <= b, "r={r} t={t}: {c:?}");
                }
            }
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
        assert_eq!(window(50, 4, shot), (50, 50));
    }

    #[test]
    fn windows_slide_into_the_shot_at_its_ends() {
        let shot = Shot { first: 0, last: 23 };
        // Every frame keeps 2r neighbours: the first ones look further ahead, the last ones back.
        assert_eq!(window(0, 4, shot), (0, 8));
        assert_eq!(window(3, 4, shot), (0, 8));
        assert_eq!(window(4, 4, shot), (0, 8));
        assert_eq!(window(5, 4, shot), (1, 9));
        assert_eq!(window(19, 4, shot), (15, 23));
        assert_eq!(window(23, 4, shot), (15, 23));
        // A shot shorter than the window is smoothed whole.
        let short = Shot {
            first: 10,
            last: 14,
        };
        for t in 10..=14 {
            assert_eq!(window(t, 4, short), (10, 14));
        }
        assert_eq!(window(5, 0, shot), (5, 5));
    }

    #[test]
    fn frames_needed_spans_the_chunks_of_the_window() {
        // Radius 2: chunks of 5 frames, [5, 9] and [10, 14]; frame 10's window is 8..12.
        assert_eq!(frames_needed(10, 2, SHOT), (5, 14));
        // Frame 7's window 5..9 lies in one chunk.
        assert_eq!(frames_needed(7, 2, SHOT), (5, 9));
        assert_eq!(frames_needed(9, 0, SHOT), (9, 9));
    }
}

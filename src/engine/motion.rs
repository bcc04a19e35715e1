//! Motion compensation for the temporal smoothing: a neighbour's denoised frame is moved onto
//! frame t before the two are compared and averaged, so that content which moves (a camera pan,
//! a walking figure) is averaged with itself instead of being kept apart by the gate.
//!
//! Motion is found by hierarchical block matching on the luma of the two denoised frames (they
//! are nearly clean, so the match is not thrown by the noise): a pyramid of 2x box-downsampled
//! images, an exhaustive search of +-`COARSE_RANGE` at the coarsest level, then at each finer
//! level the doubled vectors of the block's parent and of the parent's four neighbours as
//! candidates with the vectors already found left of and above the block, the best refined by
//! +-1 pixel steps. The cost is the sum of squared differences over the
//! block (coordinates clamped to the image) plus a small charge per pixel of distance from the
//! vector of the block's parent (from zero at the coarsest level), scaled by the squared noise
//! level: flat areas, which match anywhere, follow the motion around them. The result is one integer vector per
//! `BLOCK`x`BLOCK` block of frame t; the neighbour is warped by whole pixels (no interpolation,
//! so nothing is blurred). Where a vector is wrong (occlusions, blocks straddling two motions)
//! the smoothing's patch gate sees the mismatch and gives the neighbour no weight, as it does
//! for unaligned motion.
//!
//! Everything is a function of the two frames alone: the same frames give the same vectors, in
//! any render order, on any thread.

/// Side of the blocks that carry one vector, at every level.
pub(super) const BLOCK: usize = 8;
/// Exhaustive search range at the coarsest level (pixels of that level).
pub(super) const COARSE_RANGE: i32 = 4;
/// The coarsest level is the first whose smaller side would drop below this.
pub(super) const MIN_LEVEL_SIDE: usize = 32;
/// Most pyramid levels below full resolution (range at full size: about 4 * 2^3 + 8 pixels).
pub(super) const MAX_LEVELS: usize = 3;
/// Most +-1 refinement rounds per block and level.
pub(super) const REFINE_STEPS: usize = 3;
/// Charge per pixel of motion (L1) and block pixel, as a fraction of the squared noise level the
/// frames were denoised from: a denoised frame's residual grows with that level, and so do the
/// chance matches it allows in flat areas. Chosen on the public validation clips (0.01, 0.03,
/// 0.1, 0.3 tried; 0.03 gained the most there at sigma 10, 25 and 50 with less flicker).
pub(super) const MOTION_CHARGE: f32 = 0.03;
/// The charge's floor (squared luma per block pixel), for the lowest levels.
pub(super) const MIN_MOTION_CHARGE: f32 = 2e-5;

/// One level of a pair of luma pyramids: frame t (`a`) and the neighbour (`b`).
struct Level<'p> {
    w: usize,
    h: usize,
    a: &'p [f32],
    b: &'p [f32],
}

/// One image of a luma pyramid.
struct Plane {
    w: usize,
    h: usize,
    v: Vec<f32>,
}

/// A frame's luma at full resolution, then halved while the smaller side stays at least
/// `MIN_LEVEL_SIDE`, at most `MAX_LEVELS` times: frames of one size get the same levels.
struct Pyramid(Vec<Plane>);

impl Pyramid {
    fn new(frame: &[f32], w: usize, h: usize) -> Self {
        let mut levels = vec![Plane {
            w,
            h,
            v: luma(frame, w * h),
        }];
        while levels.len() <= MAX_LEVELS {
            let l = levels.last().expect("one level at least");
            if l.w.min(l.h) / 2 < MIN_LEVEL_SIDE {
                break;
            }
            levels.push(half(l));
        }
        Pyramid(levels)
    }
}

/// Block vectors of one level: `(dx, dy)` per block, row-major over `nx` x `ny` blocks.
struct Field {
    nx: usize,
    ny: usize,
    v: Vec<(i32, i32)>,
}

impl Field {
    fn at(&self, bx: usize, by: usize) -> (i32, i32) {
        self.v[by.min(self.ny - 1) * self.nx + bx.min(self.nx - 1)]
    }
}

/// Every frame of `others` (planar [3, h, w]) moved onto `centre` (the same layout): every
/// pixel of a result is the pixel of that neighbour that the motion search matched to it.
/// `level` is the noise level the frames were denoised from (it scales the motion charge).
/// Frames of the wrong size, or too small to search, come back unchanged. The neighbours run on
/// the compute threads; frame t's pyramid is built once for all of them. Each of `companions`
/// (one per neighbour, or none at all) is moved by the same vectors as its neighbour: the noisy
/// source frames the denoised ones came from. Returns the moved neighbours and companions.
pub fn align_all(
    centre: &[f32],
    others: &[&[f32]],
    companions: &[&[f32]],
    w: usize,
    h: usize,
    level: f32,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let n = w * h;
    if centre.len() != 3 * n || w < BLOCK || h < BLOCK {
        return (
            others.iter().map(|o| o.to_vec()).collect(),
            companions.iter().map(|o| o.to_vec()).collect(),
        );
    }
    let charge = (MOTION_CHARGE * level * level).max(MIN_MOTION_CHARGE);
    let target = Pyramid::new(centre, w, h);
    let done = parking_lot::Mutex::new(Vec::with_capacity(others.len()));
    candle_core::utils::barrier_pool().execute_chunked(others.len(), |range| {
        for i in range {
            let other = others[i];
            let companion = companions.get(i).copied();
            let moved = if other.len() == 3 * n {
                let field = motion(&target, &Pyramid::new(other, w, h), charge);
                (
                    warp(other, &field, w, h),
                    companion.map(|c| warp(c, &field, w, h)),
                )
            } else {
                (other.to_vec(), companion.map(|c| c.to_vec()))
            };
            done.lock().push((i, moved));
        }
    });
    let mut done = done.into_inner();
    done.sort_by_key(|(i, _)| *i);
    let (moved, with): (Vec<_>, Vec<_>) = done.into_iter().map(|(_, m)| m).unzip();
    (moved, with.into_iter().flatten().collect())
}

/// `other` moved by whole pixels along the block vectors of `field`.
fn warp(other: &[f32], field: &Field, w: usize, h: usize) -> Vec<f32> {
    if field.v.iter().all(|&v| v == (0, 0)) {
        return other.to_vec();
    }
    let n = w * h;
    let mut out = vec![0f32; 3 * n];
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = field.at(x / BLOCK, y / BLOCK);
            let sx = (x as i64 + dx as i64).clamp(0, w as i64 - 1) as usize;
            let sy = (y as i64 + dy as i64).clamp(0, h as i64 - 1) as usize;
            for c in 0..3 {
                out[c * n + y * w + x] = other[c * n + sy * w + sx];
            }
        }
    }
    out
}

/// Mean of the three planes.
fn luma(p: &[f32], n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (p[i] + p[n + i] + p[2 * n + i]) * (1.0 / 3.0))
        .collect()
}

/// 2x box downsampling (an odd last row or column is dropped).
fn half(p: &Plane) -> Plane {
    let (w, hw, hh) = (p.w, p.w / 2, p.h / 2);
    let mut v = vec![0f32; hw * hh];
    for y in 0..hh {
        for x in 0..hw {
            let i = 2 * y * w + 2 * x;
            v[y * hw + x] = 0.25 * (p.v[i] + p.v[i + 1] + p.v[i + w] + p.v[i + w + 1]);
        }
    }
    Plane { w: hw, h: hh, v }
}

/// Block vectors at full resolution, from the neighbour (`b`) to frame t (`a`), coarsest level
/// first.
fn motion(a: &Pyramid, b: &Pyramid, charge: f32) -> Field {
    let mut field: Option<Field> = None;
    for (pa, pb) in a.0.iter().zip(&b.0).rev() {
        let l = Level {
            w: pa.w,
            h: pa.h,
            a: &pa.v,
            b: &pb.v,
        };
        field = Some(search(&l, field.as_ref(), charge));
    }
    field.expect("one level at least")
}

/// Block vectors of one level: exhaustive at the coarsest, else from the coarser level's field.
fn search(l: &Level, coarser: Option<&Field>, charge: f32) -> Field {
    let (nx, ny) = (l.w.div_ceil(BLOCK), l.h.div_ceil(BLOCK));
    let mut v = Vec::with_capacity(nx * ny);
    for by in 0..ny {
        for bx in 0..nx {
            // Motion is charged for as its distance from the parent's vector (from zero at the
            // coarsest level): a pan costs nothing once found, chance matches do.
            let prior = coarser.map_or((0, 0), |f| {
                let (px, py) = f.at(bx / 2, by / 2);
                (2 * px, 2 * py)
            });
            let cost = |d: (i32, i32)| block_cost(l, bx, by, d, charge, prior);
            let mut best = ((0, 0), cost((0, 0)));
            let consider = |d: (i32, i32), best: &mut ((i32, i32), f32)| {
                if d != best.0 {
                    let c = cost(d);
                    if c < best.1 {
                        *best = (d, c);
                    }
                }
            };
            match coarser {
                None => {
                    for dy in -COARSE_RANGE..=COARSE_RANGE {
                        for dx in -COARSE_RANGE..=COARSE_RANGE {
                            consider((dx, dy), &mut best);
                        }
                    }
                }
                Some(f) => {
                    let (px, py) = (bx / 2, by / 2);
                    let parents = [
                        f.at(px, py),
                        f.at(px.saturating_sub(1), py),
                        f.at(px + 1, py),
                        f.at(px, py.saturating_sub(1)),
                        f.at(px, py + 1),
                    ];
                    for (dx, dy) in parents {
                        consider((2 * dx, 2 * dy), &mut best);
                    }
                    // The blocks to the left and above, already found at this level: a motion
                    // that the coarse level lost on one block spreads from its neighbours.
                    if bx > 0 {
                        consider(v[by * nx + bx - 1], &mut best);
                    }
                    if by > 0 {
                        consider(v[(by - 1) * nx + bx], &mut best);
                    }
                    // Then +-1 steps while they improve (a few at most).
                    for _ in 0..REFINE_STEPS {
                        let centre = best.0;
                        for dy in -1..=1 {
                            for dx in -1..=1 {
                                consider((centre.0 + dx, centre.1 + dy), &mut best);
                            }
                        }
                        if best.0 == centre {
                            break;
                        }
                    }
                }
            }
            v.push(best.0);
        }
    }
    Field { nx, ny, v }
}

/// Sum of squared differences between block (bx, by) of `a` and the same block of `b` moved by
/// `d`, plus the charge for its distance from `prior`.
fn block_cost(
    l: &Level,
    bx: usize,
    by: usize,
    d: (i32, i32),
    charge: f32,
    prior: (i32, i32),
) -> f32 {
    let (x0, y0) = (bx * BLOCK, by * BLOCK);
    let (x1, y1) = ((x0 + BLOCK).min(l.w), (y0 + BLOCK).min(l.h));
    let (wm, hm) = (l.w as i64 - 1, l.h as i64 - 1);
    let mut ssd = 0f32;
    for y in y0..y1 {
        let sy = (y as i64 + d.1 as i64).clamp(0, hm) as usize;
        let ra = &l.a[y * l.w..(y + 1) * l.w];
        let rb = &l.b[sy * l.w..(sy + 1) * l.w];
        let inside = x0 as i64 + d.0 as i64 >= 0 && x1 as i64 + d.0 as i64 <= l.w as i64;
        if inside {
            let off = (x0 as i64 + d.0 as i64) as usize;
            for (p, q) in ra[x0..x1].iter().zip(&rb[off..off + (x1 - x0)]) {
                let e = p - q;
                ssd += e * e;
            }
        } else {
            for (x, a) in ra.iter().enumerate().take(x1).skip(x0) {
                let sx = (x as i64 + d.0 as i64).clamp(0, wm) as usize;
                let e = a - rb[sx];
                ssd += e * e;
            }
        }
    }
    let pixels = ((x1 - x0) * (y1 - y0)) as f32;
    ssd + charge * pixels * ((d.0 - prior.0).abs() + (d.1 - prior.1).abs()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One neighbour moved onto `centre`.
    fn align(centre: &[f32], other: &[f32], w: usize, h: usize, level: f32) -> Vec<f32> {
        align_all(centre, &[other], &[], w, h, level).0.remove(0)
    }

    /// A textured test picture, smooth enough to be matched at every pyramid level.
    fn picture(x: f32, y: f32) -> f32 {
        0.5 + 0.15 * (x * 0.21).sin() * (y * 0.17).cos()
            + 0.1 * ((x + 2.0 * y) * 0.05).sin()
            + 0.05 * ((3.0 * x - y) * 0.37).cos()
    }

    /// Planar RGB of `picture` shifted by (sx, sy): pixel (x, y) shows the scene at (x - sx, y - sy).
    fn frame(w: usize, h: usize, sx: f32, sy: f32) -> Vec<f32> {
        let n = w * h;
        let mut p = vec![0f32; 3 * n];
        for y in 0..h {
            for x in 0..w {
                let v = picture(x as f32 - sx, y as f32 - sy);
                for c in 0..3 {
                    p[c * n + y * w + x] = v * (0.8 + 0.1 * c as f32);
                }
            }
        }
        p
    }

    fn interior_max_diff(a: &[f32], b: &[f32], w: usize, h: usize, margin: usize) -> f32 {
        let n = w * h;
        let mut worst = 0f32;
        for c in 0..3 {
            for y in margin..h - margin {
                for x in margin..w - margin {
                    let i = c * n + y * w + x;
                    worst = worst.max((a[i] - b[i]).abs());
                }
            }
        }
        worst
    }

    #[test]
    fn a_shifted_frame_is_moved_back_exactly_away_from_the_edges() {
        let (w, h) = (160, 128);
        let centre = frame(w, h, 0.0, 0.0);
        for (sx, sy) in [(5i32, -3i32), (-13, 9), (21, 2), (0, 0)] {
            let other = frame(w, h, sx as f32, sy as f32);
            // A low level: the search itself, with hardly any charge for motion.
            let got = align(&centre, &other, w, h, 0.01);
            let margin = sx.unsigned_abs().max(sy.unsigned_abs()) as usize + BLOCK;
            let worst = interior_max_diff(&got, &centre, w, h, margin);
            assert!(worst < 1e-5, "shift ({sx}, {sy}): off by {worst}");
        }
    }

    /// A denoiser's residual on a pan: the texture moving `speed` pixels a frame, plus
    /// independent noise of `sd` per frame.
    fn pan(k: usize, speed: i64, sd: f32, w: usize, h: usize) -> Vec<Vec<f32>> {
        use crate::sampling::noise::gaussian;
        let n = w * h;
        (0..k)
            .map(|t| {
                let mut p = frame(w, h, (speed * t as i64) as f32, 0.0);
                for (i, v) in p.iter_mut().enumerate() {
                    let (c, y, x) = (i / n, (i % n) / w, i % w);
                    *v += sd * gaussian(9, t as i64, c as u32, x as i64, y as i64, 0);
                }
                p
            })
            .collect()
    }

    fn mse(a: &[f32], b: &[f32]) -> f64 {
        let s: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        s / a.len() as f64
    }

    #[test]
    fn smoothing_a_pan_over_aligned_neighbours_removes_most_of_the_residual() {
        use crate::engine::smooth::smooth;
        let (w, h, k, t) = (128, 96, 5, 2);
        let noisy = pan(k, 5, 0.02, w, h);
        let clean = &pan(k, 5, 0.0, w, h)[t];
        let neighbours = |aligned: bool| -> Vec<Vec<f32>> {
            (0..k)
                .filter(|&f| f != t)
                .map(|f| match aligned {
                    true => align(&noisy[t], &noisy[f], w, h, 0.1),
                    false => noisy[f].clone(),
                })
                .collect()
        };
        let smoothed = |aligned: bool| {
            let others = neighbours(aligned);
            let refs: Vec<&[f32]> = others.iter().map(|o| o.as_slice()).collect();
            mse(&smooth(&noisy[t], &refs, w, h, 0.05), clean)
        };
        let before = mse(&noisy[t], clean);
        let (plain, aligned) = (smoothed(false), smoothed(true));
        // Aligned, five frames are averaged almost everywhere (ideally 1/5 of the error);
        // unaligned, most of the moving texture disagrees with its neighbours and keeps its own
        // frame.
        assert!(
            aligned < 0.4 * before,
            "aligned: {before:.2e} -> {aligned:.2e}"
        );
        assert!(
            aligned < 0.5 * plain,
            "aligned {aligned:.2e}, unaligned {plain:.2e}"
        );
    }

    #[test]
    fn companions_move_with_their_frames() {
        let (w, h) = (160, 128);
        let centre = frame(w, h, 0.0, 0.0);
        let others = [frame(w, h, 7.0, -4.0), frame(w, h, -3.0, 6.0)];
        // A companion that matches nothing by itself: the other frame, darkened and offset.
        let companions: Vec<Vec<f32>> = others
            .iter()
            .map(|o| o.iter().map(|v| 0.5 * v + 0.1).collect())
            .collect();
        let refs: Vec<&[f32]> = others.iter().map(|o| o.as_slice()).collect();
        let crefs: Vec<&[f32]> = companions.iter().map(|o| o.as_slice()).collect();
        let (moved, with) = align_all(&centre, &refs, &crefs, w, h, 0.01);
        assert_eq!(moved, align_all(&centre, &refs, &[], w, h, 0.01).0);
        assert_eq!(with.len(), 2);
        for (m, c) in moved.iter().zip(&with) {
            let want: Vec<f32> = m.iter().map(|v| 0.5 * v + 0.1).collect();
            let worst = want
                .iter()
                .zip(c)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "companion off by {worst}");
        }
        // Without companions none come back.
        assert!(align_all(&centre, &refs, &[], w, h, 0.01).1.is_empty());
    }

    #[test]
    fn flat_frames_and_odd_sizes_come_back_unchanged() {
        let (w, h) = (40, 24);
        let flat = vec![0.3f32; 3 * w * h];
        let other: Vec<f32> = (0..3 * w * h)
            .map(|i| 0.3 + 1e-4 * (i % 7) as f32)
            .collect();
        assert_eq!(align(&flat, &other, w, h, 0.05), other);
        // Too small to hold a block, or of the wrong size: returned as it is.
        assert_eq!(align(&[0.0; 12], &[1.0; 12], 2, 2, 0.05), vec![1.0; 12]);
        assert_eq!(align(&flat, &[0.5; 9], w, h, 0.05), vec![0.5; 9]);
    }

    #[test]
    fn the_same_frames_give_the_same_bytes() {
        let (w, h) = (96, 72);
        let a = frame(w, h, 0.0, 0.0);
        let b = frame(w, h, 3.5, -1.25);
        assert_eq!(align(&a, &b, w, h, 0.05), align(&a, &b, w, h, 0.05));
    }
}

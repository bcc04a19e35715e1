//! The stages after the chunk cache as tensor operations on the model's device, for renders whose
//! frames never leave it (a CUDA render keeps them in GPU memory from the host's source images to
//! its output image): Noise Clipping Auto's statistics, the motion search and warp, the temporal
//! smoothing with its two Wiener passes, and the clipping correction.
//!
//! Each function computes what its scalar counterpart in the sibling modules computes, and the
//! tests hold them to it on the CPU. Sums run in another order, so results agree to float
//! rounding rather than to the bit; on one device they are still the same bytes on every run.
//!
//! The motion search keeps the scalar search's candidates exactly, including the vectors found
//! left of and above each block at the same level. Those make the blocks of a level depend on one
//! another in raster order; blocks on one anti-diagonal (`bx + by` constant) do not, so a level
//! runs as a wavefront of diagonals, each one batched over its blocks and every neighbour frame.
use candle_core::{DType, Device, Tensor};

use super::declip::{Clipping, Inverse, NoiseClipping, RANGE_SLACK};
use super::motion::{
    BLOCK, COARSE_RANGE, MAX_LEVELS, MIN_LEVEL_SIDE, MIN_MOTION_CHARGE, MOTION_CHARGE, REFINE_STEPS,
};
use super::smooth::{PATCH_RADIUS, WIENER_STRIDE};
use super::wiener::{origins, Basis, N};
use crate::Result;

/// Noise Clipping's ends for the window's source frames (each [3, h, w] on the device); only
/// the counts come back to the host, in one copy.
pub fn clipping_ends(mode: NoiseClipping, sources: &[Tensor]) -> Result<Clipping> {
    if mode != NoiseClipping::Auto || sources.is_empty() {
        return Ok(mode.ends(&[]));
    }
    let count = |mask: Tensor| -> Result<Tensor> { Ok(mask.to_dtype(DType::U32)?.sum_all()?) };
    let mut counts = Vec::with_capacity(2 * sources.len());
    for s in sources {
        counts.push(count(s.lt(-RANGE_SLACK)?)?);
        counts.push(count(s.gt(1.0 + RANGE_SLACK)?)?);
    }
    let counts = Tensor::stack(&counts, 0)?.to_vec1::<u32>()?;
    let total = sources.iter().map(|s| s.elem_count()).sum();
    let (below, above) = counts
        .chunks_exact(2)
        .fold((0, 0), |(b, a), c| (b + c[0] as usize, a + c[1] as usize));
    Ok(Clipping::from_counts(total, below, above))
}

/// [`super::declip::declip`] on a tensor: the inverse of the clipped mean, one table lookup with
/// linear interpolation per value.
pub fn declip(x: &Tensor, sigma: f32, clip: Clipping) -> Result<Tensor> {
    if !(clip.low || clip.high) || sigma.is_nan() || sigma <= 0.0 {
        return Ok(x.clone());
    }
    let inv = Inverse::new(sigma, clip);
    let dev = x.device();
    let cells = inv.table.len();
    let table = Tensor::from_slice(&inv.table, cells, dev)?;
    let y = x.flatten_all()?;
    let pos = (y.affine(1.0, -(inv.first as f64))? * inv.scale as f64)?;
    let cell = pos.clamp(0f32, (cells - 2) as f32)?.floor()?;
    let frac = (&pos - &cell)?;
    let i = cell.to_dtype(DType::U32)?;
    let lo = table.index_select(&i, 0)?;
    let hi = table.index_select(&(i + 1.0)?, 0)?;
    let inside = (&lo + (hi - &lo)?.mul(&frac)?)?;
    let constant = |v: f32| Tensor::full(v, y.shape(), dev);
    let below = match clip.low {
        true => constant(0.0)?,
        false => y.affine(1.0, -(inv.first as f64))?,
    };
    let above = match clip.high {
        true => constant(1.0)?,
        false => y.affine(1.0, 1.0 - inv.last as f64)?,
    };
    let out = y.ge(inv.last)?.where_cond(&above, &inside)?.contiguous()?;
    let out = y.le(inv.first)?.where_cond(&below, &out)?;
    // NaN (which no comparison holds for) passes through, as in the scalar version.
    let out = y.eq(&y)?.where_cond(&out, &y)?;
    Ok(out.reshape(x.shape())?)
}

/// Per-pixel weights `exp(-d / gate^2)` of each neighbour (`others`: [K, 3, h, w]) against the
/// centre ([3, h, w]): `d` is the channel-mean squared difference averaged over the 5x5 patch
/// (clipped to the image). Returns [K, 1, h, w].
fn weights(centre: &Tensor, others: &Tensor, gate: f32) -> Result<Tensor> {
    let (_, _, h, w) = others.dims4()?;
    let dev = others.device();
    let sq = others
        .broadcast_sub(&centre.unsqueeze(0)?)?
        .sqr()?
        .mean_keepdim(1)?;
    let side = 2 * PATCH_RADIUS + 1;
    let ones = Tensor::ones((1, 1, side, side), DType::F32, dev)?;
    let sum = sq.conv2d(&ones, PATCH_RADIUS, 1, 1, 1)?;
    let count =
        Tensor::ones((1, 1, h, w), DType::F32, dev)?.conv2d(&ones, PATCH_RADIUS, 1, 1, 1)?;
    let dist = sum.broadcast_div(&count)?;
    Ok((dist * (-1.0 / (gate as f64 * gate as f64)))?.exp()?)
}

/// Sum over the neighbours of `weights * frames` ([K, 1, h, w] by [K, 3, h, w]), plus `centre`.
fn weighted_sum(centre: &Tensor, frames: &Tensor, weights: &Tensor) -> Result<Tensor> {
    Ok((centre + frames.broadcast_mul(weights)?.sum(0)?)?)
}

/// [`super::smooth::smooth`] on tensors: `centre` [3, h, w] over `others` (each [3, h, w]).
pub fn smooth(centre: &Tensor, others: &[Tensor], gate: f32) -> Result<Tensor> {
    if others.is_empty() || gate.is_nan() || gate <= 0.0 {
        return Ok(centre.clone());
    }
    let others = Tensor::stack(others, 0)?;
    let wt = weights(centre, &others, gate)?;
    let wsum = (wt.sum(0)? + 1.0)?;
    Ok(weighted_sum(centre, &others, &wt)?.broadcast_div(&wsum)?)
}

/// [`super::smooth::smooth_restore`] on tensors: the smoothing, then detail given back from the
/// noisy sources (`src_centre`, and `src_others` aligned like `others`) by two DCT Wiener passes.
pub fn smooth_restore(
    centre: &Tensor,
    others: &[Tensor],
    gate: f32,
    src_centre: &Tensor,
    src_others: &[Tensor],
    sigma: f32,
) -> Result<Tensor> {
    if gate.is_nan()
        || gate <= 0.0
        || sigma.is_nan()
        || sigma <= 0.0
        || others.len() != src_others.len()
    {
        return smooth(centre, others, gate);
    }
    let (smoothed, avg, f) = if others.is_empty() {
        let (_, h, w) = centre.dims3()?;
        let ones = Tensor::ones((1, h, w), DType::F32, centre.device())?;
        (centre.clone(), src_centre.clone(), ones)
    } else {
        let o = Tensor::stack(others, 0)?;
        let s = Tensor::stack(src_others, 0)?;
        let wt = weights(centre, &o, gate)?;
        let wsum = (wt.sum(0)? + 1.0)?;
        let w2sum = (wt.sqr()?.sum(0)? + 1.0)?;
        (
            weighted_sum(centre, &o, &wt)?.broadcast_div(&wsum)?,
            weighted_sum(src_centre, &s, &wt)?.broadcast_div(&wsum)?,
            (w2sum / wsum.sqr()?)?,
        )
    };
    let var = (f * (sigma as f64 * sigma as f64))?.squeeze(0)?;
    let first = dct_wiener(&smoothed, &avg, &var, WIENER_STRIDE)?;
    dct_wiener(&first, &avg, &var, WIENER_STRIDE)
}

/// The orthonormal opponent colour transform of [`super::wiener`] as a [3, 3] matrix.
fn opponent_matrix(dev: &Device) -> Result<Tensor> {
    let (a, b, c) = (1.0 / 3f32.sqrt(), 1.0 / 2f32.sqrt(), 1.0 / 6f32.sqrt());
    let m = [a, a, a, b, 0.0, -b, c, -2.0 * c, c];
    Ok(Tensor::from_slice(&m, (3, 3), dev)?)
}

/// [3, h, w] through a [3, 3] colour matrix.
fn colour(m: &Tensor, p: &Tensor) -> Result<Tensor> {
    let (c, h, w) = p.dims3()?;
    Ok(m.matmul(&p.reshape((c, h * w))?)?.reshape((c, h, w))?)
}

/// [`super::wiener::dct_wiener`] on tensors: `noisy` [3, h, w] filtered with `pilot` as the
/// oracle, `var` [h, w] its per-pixel noise variance. The blocks' DCTs are one strided
/// convolution with the 64 basis images; putting the filtered blocks back with their weights is
/// the transposed convolution. The scalar version's extra last row and column of blocks, flush
/// with the image's end, are a second pass over those strips.
pub fn dct_wiener(pilot: &Tensor, noisy: &Tensor, var: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, h, w) = pilot.dims3()?;
    if w < N || h < N {
        return Ok(pilot.clone());
    }
    let stride = stride.clamp(1, N);
    let dev = pilot.device();
    let basis = Basis::new();
    let m = opponent_matrix(dev)?;
    let (p, z) = (colour(&m, pilot)?, colour(&m, noisy)?);
    // Basis image (u, v) = dct[u] (outer) dct[v]; the inverse adds each back under the window.
    let mut fwd = Vec::with_capacity(N * N * N * N);
    let mut back = Vec::with_capacity(N * N * N * N);
    for u in 0..N {
        for v in 0..N {
            for y in 0..N {
                for x in 0..N {
                    let b = basis.dct[u][y] * basis.dct[v][x];
                    fwd.push(b);
                    back.push(b * basis.window[y][x]);
                }
            }
        }
    }
    let fwd = Tensor::from_vec(fwd, (N * N, 1, N, N), dev)?;
    let back = Tensor::from_vec(back, (N * N, 1, N, N), dev)?;
    let window: Vec<f32> = basis.window.iter().flatten().copied().collect();
    let window = Tensor::from_vec(window, (1, 1, N, N), dev)?;
    let (p, z, var) = (
        p.unsqueeze(1)?,
        z.unsqueeze(1)?,
        var.unsqueeze(0)?.unsqueeze(0)?,
    );

    // The regular grid of origins, then the last row / column of blocks where it is off-grid.
    // candle's convolutions take one stride for both axes: a strip one block thick has a single
    // origin along it, which any stride reads alike.
    let strips = |len: usize| -> Vec<(usize, usize)> {
        let regular = (len - N) / stride + 1;
        let mut s = vec![(0, (regular - 1) * stride + N)];
        if origins(len, stride).len() > regular {
            s.push((len - N, N));
        }
        s
    };
    let mut num = Tensor::zeros((3, 1, h, w), DType::F32, dev)?;
    let mut den = Tensor::zeros((3, 1, h, w), DType::F32, dev)?;
    for &(y0, sh) in &strips(h) {
        for &(x0, sw) in &strips(w) {
            let cut =
                |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(2, y0, sh)?.narrow(3, x0, sw)?) };
            let (n, d) = filter_strip(
                &cut(&p)?,
                &cut(&z)?,
                &cut(&var)?,
                stride,
                &fwd,
                &back,
                &window,
            )?;
            let place = |t: Tensor| -> Result<Tensor> {
                Ok(t.pad_with_zeros(2, y0, h - y0 - sh)?
                    .pad_with_zeros(3, x0, w - x0 - sw)?)
            };
            num = (num + place(n)?)?;
            den = (den + place(d)?)?;
        }
    }
    let est = (num / den)?.squeeze(1)?;
    colour(&m.t()?.contiguous()?, &est)
}

/// The filtered blocks of one strip (origins every `stride` pixels, blocks inside the strip,
/// which they cover exactly), weighted and added up: (numerator [3, 1, sh, sw], denominator).
fn filter_strip(
    p: &Tensor,
    z: &Tensor,
    var: &Tensor,
    stride: usize,
    fwd: &Tensor,
    back: &Tensor,
    window: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let pd = p.conv2d(fwd, 0, stride, 1, 1)?;
    let zd = z.conv2d(fwd, 0, stride, 1, 1)?;
    let v = var
        .avg_pool2d_with_stride((N, N), (stride, stride))?
        .maximum(1e-12f32)?;
    let p2 = pd.sqr()?;
    let g = p2.broadcast_div(&p2.broadcast_add(&v)?)?;
    let w2 = g.sqr()?.sum_keepdim(1)?.maximum(1f32)?;
    let wt = w2.broadcast_mul(&v)?.recip()?;
    let coef = zd.mul(&g)?.broadcast_mul(&wt)?;
    let num = coef.conv_transpose2d(back, 0, 0, stride, 1)?;
    let den = wt.conv_transpose2d(window, 0, 0, stride, 1)?;
    Ok((num, den))
}

/// Luma (the mean of the three planes) of frames [K, 3, h, w]: [K, h, w].
fn luma(frames: &Tensor) -> Result<Tensor> {
    let plane = |c: usize| frames.narrow(1, c, 1)?.squeeze(1);
    Ok(((plane(0)? + plane(1)?)? + plane(2)?)?.affine(1.0 / 3.0, 0.0)?)
}

/// 2x box downsampling of [K, h, w] (an odd last row or column dropped), summed in the scalar
/// version's order.
fn half(p: &Tensor) -> Result<Tensor> {
    let (k, h, w) = p.dims3()?;
    let (hh, hw) = (h / 2, w / 2);
    let q = p
        .narrow(1, 0, 2 * hh)?
        .narrow(2, 0, 2 * hw)?
        .reshape((k, hh, 2, hw, 2))?;
    let at = |dy: usize, dx: usize| q.narrow(2, dy, 1)?.narrow(4, dx, 1)?.reshape((k, hh, hw));
    Ok((((at(0, 0)? + at(0, 1)?)? + at(1, 0)?)? + at(1, 1)?)?.affine(0.25, 0.0)?)
}

/// Luma pyramids, finest first, with the scalar search's levels.
fn pyramid(frames: &Tensor) -> Result<Vec<Tensor>> {
    let mut levels = vec![luma(frames)?];
    while levels.len() <= MAX_LEVELS {
        let (_, h, w) = levels[levels.len() - 1].dims3()?;
        if w.min(h) / 2 < MIN_LEVEL_SIDE {
            break;
        }
        let next = half(&levels[levels.len() - 1])?;
        levels.push(next);
    }
    Ok(levels)
}

/// Where blocks of one level lie: for a list of blocks, each one's pixels (coordinates clamped
/// into the block, with a mask for those past the image's edge) and pixel count.
struct Blocks {
    /// [B, 64] pixel columns and rows, f32.
    x: Tensor,
    y: Tensor,
    /// [B, 64] 1 for the block's own pixels, 0 for padding.
    mask: Tensor,
    /// [B] pixels inside the image.
    pixels: Tensor,
    /// [B, 64] frame t's luma at the block's pixels.
    a: Tensor,
}

impl Blocks {
    /// The blocks `ids` of a level whose frame t luma is `a` ([h, w]).
    fn new(ids: &[(usize, usize)], a: &Tensor) -> Result<Blocks> {
        let (h, w) = a.dims2()?;
        let dev = a.device();
        let m = BLOCK * BLOCK;
        let (mut xs, mut ys, mut mask, mut pixels, mut at) = (
            Vec::with_capacity(ids.len() * m),
            Vec::with_capacity(ids.len() * m),
            Vec::with_capacity(ids.len() * m),
            Vec::with_capacity(ids.len()),
            Vec::with_capacity(ids.len() * m),
        );
        for &(bx, by) in ids {
            let (x0, y0) = (bx * BLOCK, by * BLOCK);
            let (x1, y1) = ((x0 + BLOCK).min(w), (y0 + BLOCK).min(h));
            for i in 0..BLOCK {
                for j in 0..BLOCK {
                    let (x, y) = (x0 + j, y0 + i);
                    let inside = x < x1 && y < y1;
                    let (x, y) = (x.min(x1 - 1), y.min(y1 - 1));
                    xs.push(x as f32);
                    ys.push(y as f32);
                    mask.push(if inside { 1f32 } else { 0.0 });
                    at.push((y * w + x) as u32);
                }
            }
            pixels.push(((x1 - x0) * (y1 - y0)) as f32);
        }
        let b = ids.len();
        let at = Tensor::from_vec(at, b * m, dev)?;
        Ok(Blocks {
            x: Tensor::from_vec(xs, (b, m), dev)?,
            y: Tensor::from_vec(ys, (b, m), dev)?,
            mask: Tensor::from_vec(mask, (b, m), dev)?,
            pixels: Tensor::from_vec(pixels, b, dev)?,
            a: a.flatten_all()?.index_select(&at, 0)?.reshape((b, m))?,
        })
    }

    /// Blocks `start..start + len` of the list.
    fn narrow(&self, start: usize, len: usize) -> Result<Blocks> {
        Ok(Blocks {
            x: self.x.narrow(0, start, len)?,
            y: self.y.narrow(0, start, len)?,
            mask: self.mask.narrow(0, start, len)?,
            pixels: self.pixels.narrow(0, start, len)?,
            a: self.a.narrow(0, start, len)?,
        })
    }
}

/// One level of the search: the neighbours' luma `b` [K, h, w], and what every diagonal uses,
/// made once on the device so that a diagonal is device work alone.
struct Search<'a> {
    b: &'a Tensor,
    w: usize,
    h: usize,
    charge: f32,
    /// 0, w - 1 and h - 1 as scalars on the device (the clamps of the block coordinates).
    zero: Tensor,
    right: Tensor,
    bottom: Tensor,
    /// The +-1 refinement steps, [1, 1, 10, 2]: the current vector, then dy-major.
    steps: Tensor,
    /// `rank`'s tensors by candidate count.
    ranks: std::cell::RefCell<Vec<(usize, Tensor)>>,
}

impl<'a> Search<'a> {
    fn new(b: &'a Tensor, charge: f32) -> Result<Search<'a>> {
        let (_, h, w) = b.dims3()?;
        let dev = b.device();
        let mut steps = vec![0f32, 0.0];
        for dy in -1..=1 {
            for dx in -1..=1 {
                steps.extend([dx as f32, dy as f32]);
            }
        }
        Ok(Search {
            b,
            w,
            h,
            charge,
            zero: Tensor::new(0f32, dev)?,
            right: Tensor::new((w - 1) as f32, dev)?,
            bottom: Tensor::new((h - 1) as f32, dev)?,
            steps: Tensor::from_vec(steps, (1, 1, 10, 2), dev)?,
            ranks: Default::default(),
        })
    }

    /// Cost of each candidate vector `cand` [K, B, C, 2] (dx, dy as f32) for the blocks `blk`,
    /// charged for its L1 distance from `prior` [K, B, 2]: [K, B, C].
    fn costs(&self, blk: &Blocks, cand: &Tensor, prior: &Tensor) -> Result<Tensor> {
        let (k, b, c, _) = cand.dims4()?;
        let m = BLOCK * BLOCK;
        let coord = |p: &Tensor, d: Tensor, hi: &Tensor| -> Result<Tensor> {
            Ok(p.reshape((1, b, 1, m))?
                .broadcast_add(&d)?
                .broadcast_maximum(&self.zero)?
                .broadcast_minimum(hi)?)
        };
        let sx = coord(&blk.x, cand.narrow(3, 0, 1)?, &self.right)?;
        let sy = coord(&blk.y, cand.narrow(3, 1, 1)?, &self.bottom)?;
        let idx = (sy * self.w as f64)?
            .add(&sx)?
            .to_dtype(DType::U32)?
            .reshape((k, b * c * m))?;
        let bv = self
            .b
            .reshape((k, self.w * self.h))?
            .gather(&idx, 1)?
            .reshape((k, b, c, m))?;
        let ssd = bv
            .broadcast_sub(&blk.a.reshape((1, b, 1, m))?)?
            .sqr()?
            .broadcast_mul(&blk.mask.reshape((1, b, 1, m))?)?
            .sum(3)?;
        let l1 = cand.broadcast_sub(&prior.unsqueeze(2)?)?.abs()?.sum(3)?;
        let per = (blk.pixels.reshape((1, b, 1))? * self.charge as f64)?;
        Ok((ssd + l1.broadcast_mul(&per)?)?)
    }

    /// The first cheapest candidate of each block, as the scalar search's strict comparisons
    /// pick it: [K, B, 2].
    fn best(&self, blk: &Blocks, cand: &Tensor, prior: &Tensor) -> Result<Tensor> {
        let cost = self.costs(blk, cand, prior)?;
        let (k, b, c, _) = cand.dims4()?;
        let cheapest = cost.eq(&cost.min_keepdim(2)?.broadcast_as((k, b, c))?)?;
        // Candidate i scores c - i where it is cheapest: the largest score is the first.
        let first = cheapest
            .to_dtype(DType::F32)?
            .broadcast_mul(&self.rank(c)?)?
            .argmax_keepdim(2)?; // [K, B, 1]
        let pick = first.unsqueeze(3)?.repeat((1, 1, 1, 2))?.contiguous()?;
        Ok(cand.contiguous()?.gather(&pick, 2)?.squeeze(2)?)
    }

    /// c, c - 1, ..., 1 on the device, made once per candidate count.
    fn rank(&self, c: usize) -> Result<Tensor> {
        let mut ranks = self.ranks.borrow_mut();
        if let Some((_, r)) = ranks.iter().find(|(n, _)| *n == c) {
            return Ok(r.clone());
        }
        let r: Vec<f32> = (0..c).map(|i| (c - i) as f32).collect();
        let r = Tensor::from_vec(r, c, self.b.device())?;
        ranks.push((c, r.clone()));
        Ok(r)
    }

    /// +-1 refinement rounds around `best` [K, B, 2] (run to the end: a round that moves
    /// nothing leaves the next one nothing to move).
    fn refine(&self, blk: &Blocks, mut best: Tensor, prior: &Tensor) -> Result<Tensor> {
        for _ in 0..REFINE_STEPS {
            let cand = best.unsqueeze(2)?.broadcast_add(&self.steps)?;
            best = self.best(blk, &cand, prior)?;
        }
        Ok(best)
    }
}

/// Block vectors [K, nx * ny, 2] (row-major) of one level whose frame t luma is `a` [h, w],
/// from the coarser level's field (`coarser`: the field and its block counts) or exhaustively
/// at the coarsest.
fn search_level(
    s: &Search,
    a: &Tensor,
    coarser: Option<(&Tensor, usize, usize)>,
) -> Result<Tensor> {
    let (nx, ny) = (s.w.div_ceil(BLOCK), s.h.div_ceil(BLOCK));
    let k = s.b.dim(0)?;
    let dev = a.device();
    let Some((field, cx, cy)) = coarser else {
        let ids: Vec<_> = (0..ny)
            .flat_map(|by| (0..nx).map(move |bx| (bx, by)))
            .collect();
        let blk = Blocks::new(&ids, a)?;
        let mut cand = vec![0f32, 0.0];
        for dy in -COARSE_RANGE..=COARSE_RANGE {
            for dx in -COARSE_RANGE..=COARSE_RANGE {
                cand.extend([dx as f32, dy as f32]);
            }
        }
        let c = cand.len() / 2;
        let cand = Tensor::from_vec(cand, (1, 1, c, 2), dev)?.broadcast_as((k, ids.len(), c, 2))?;
        let prior = Tensor::zeros((k, ids.len(), 2), DType::F32, dev)?;
        return s.best(&blk, &cand, &prior);
    };
    // Everything the diagonals read, in diagonal order, made here once: each diagonal narrows
    // it. The blocks of diagonal d have rows `by` from d - (nx - 1) up, and bx = d - by.
    let diagonals: Vec<(usize, usize)> = (0..nx + ny - 1)
        .map(|d| (d.saturating_sub(nx - 1), d.min(ny - 1)))
        .collect();
    let ids: Vec<(usize, usize)> = diagonals
        .iter()
        .enumerate()
        .flat_map(|(d, &(r0, r1))| (r0..=r1).map(move |by| (d - by, by)))
        .collect();
    let blocks = Blocks::new(&ids, a)?;
    let at = |bx: usize, by: usize| (by.min(cy - 1) * cx + bx.min(cx - 1)) as u32;
    let mut parents = Vec::with_capacity(5 * ids.len());
    for &(bx, by) in &ids {
        let (px, py) = (bx / 2, by / 2);
        parents.extend([
            at(px, py),
            at(px.saturating_sub(1), py),
            at(px + 1, py),
            at(px, py.saturating_sub(1)),
            at(px, py + 1),
        ]);
    }
    let parents = Tensor::from_vec(parents, 5 * ids.len(), dev)?;
    let parents = (field
        .index_select(&parents, 1)?
        .reshape((k, ids.len(), 5, 2))?
        * 2.0)?;
    // Left and above lie on the previous diagonal, indexed among its blocks; a missing one
    // reads the zero row appended after them.
    let mut near = Vec::with_capacity(2 * ids.len());
    for (d, &(r0, r1)) in diagonals.iter().enumerate() {
        let (p0, plen) = match d {
            0 => (0, 0),
            _ => (
                diagonals[d - 1].0,
                diagonals[d - 1].1 + 1 - diagonals[d - 1].0,
            ),
        };
        for by in r0..=r1 {
            let bx = d - by;
            near.push(if bx > 0 {
                (by - p0) as u32
            } else {
                plen as u32
            });
            near.push(if by > 0 {
                (by - 1 - p0) as u32
            } else {
                plen as u32
            });
        }
    }
    let near = Tensor::from_vec(near, 2 * ids.len(), dev)?;
    let longest = diagonals
        .iter()
        .map(|&(r0, r1)| r1 + 1 - r0)
        .max()
        .unwrap_or(1);
    let zeros = Tensor::zeros((k, longest, 1, 2), DType::F32, dev)?;
    let zero_row = zeros.narrow(1, 0, 1)?.squeeze(2)?.contiguous()?;
    let mut prev = zero_row.clone();
    let mut found = Vec::with_capacity(diagonals.len());
    let mut start = 0;
    for &(r0, r1) in &diagonals {
        let b = r1 + 1 - r0;
        let blk = blocks.narrow(start, b)?;
        let parents = parents.narrow(1, start, b)?;
        let prior = parents.narrow(2, 0, 1)?.squeeze(2)?;
        let near = prev
            .index_select(&near.narrow(0, 2 * start, 2 * b)?, 1)?
            .reshape((k, b, 2, 2))?;
        let cand = Tensor::cat(&[&zeros.narrow(1, 0, b)?, &parents, &near], 2)?;
        let best = s.best(&blk, &cand, &prior)?;
        let best = s.refine(&blk, best, &prior)?;
        prev = Tensor::cat(&[&best, &zero_row], 1)?;
        found.push(best);
        start += b;
    }
    // Back to raster order.
    let mut raster = vec![0u32; ids.len()];
    for (i, &(bx, by)) in ids.iter().enumerate() {
        raster[by * nx + bx] = i as u32;
    }
    let raster = Tensor::from_vec(raster, nx * ny, dev)?;
    Ok(Tensor::cat(&found, 1)?.index_select(&raster, 1)?)
}

/// [`super::motion::align_all`] on tensors: every neighbour ([3, h, w] each) moved onto
/// `centre`, and each companion by its neighbour's vectors. All neighbours search at once.
pub fn align_all(
    centre: &Tensor,
    others: &[Tensor],
    companions: &[Tensor],
    level: f32,
) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let (_, h, w) = centre.dims3()?;
    if others.is_empty() || w < BLOCK || h < BLOCK {
        return Ok((others.to_vec(), companions.to_vec()));
    }
    let k = others.len();
    let dev = centre.device();
    let charge = (MOTION_CHARGE * level * level).max(MIN_MOTION_CHARGE);
    let a = pyramid(&centre.unsqueeze(0)?)?;
    let stack = Tensor::stack(others, 0)?;
    let b = pyramid(&stack)?;
    let mut field: Option<(Tensor, usize, usize)> = None;
    for (la, lb) in a.iter().zip(&b).rev() {
        let (_, lh, lw) = la.dims3()?;
        let s = Search::new(lb, charge)?;
        let f = search_level(
            &s,
            &la.squeeze(0)?,
            field.as_ref().map(|(f, x, y)| (f, *x, *y)),
        )?;
        field = Some((f, lw.div_ceil(BLOCK), lh.div_ceil(BLOCK)));
    }
    let (field, nx, _) = field.expect("one level at least");
    // Each pixel's source: its block's vector, clamped to the image.
    let (mut bid, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    for y in 0..h {
        for x in 0..w {
            bid.push(((y / BLOCK) * nx + x / BLOCK) as u32);
            xs.push(x as f32);
            ys.push(y as f32);
        }
    }
    let n = w * h;
    let v = field.index_select(&Tensor::from_vec(bid, n, dev)?, 1)?; // [K, n, 2]
    let sx = v
        .narrow(2, 0, 1)?
        .squeeze(2)?
        .broadcast_add(&Tensor::from_vec(xs, (1, n), dev)?)?
        .clamp(0f32, (w - 1) as f32)?;
    let sy = v
        .narrow(2, 1, 1)?
        .squeeze(2)?
        .broadcast_add(&Tensor::from_vec(ys, (1, n), dev)?)?
        .clamp(0f32, (h - 1) as f32)?;
    let idx = (sy * w as f64)?
        .add(&sx)?
        .to_dtype(DType::U32)?
        .unsqueeze(1)?
        .repeat((1, 3, 1))?
        .contiguous()?; // [K, 3, n]
    let warp = |frames: &Tensor| -> Result<Vec<Tensor>> {
        let moved = frames.reshape((k, 3, n))?.gather(&idx, 2)?;
        (0..k)
            .map(|i| Ok(moved.get(i)?.reshape((3, h, w))?))
            .collect()
    };
    let moved = warp(&stack)?;
    let with = match companions.len() == k {
        true => warp(&Tensor::stack(companions, 0)?)?,
        false => companions.to_vec(),
    };
    Ok((moved, with))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{declip as scalar_declip, motion, smooth as scalar, wiener};
    use crate::sampling::noise::gaussian;

    const W: usize = 45;
    const H: usize = 37;

    /// Planar RGB of a smooth textured scene seen shifted by (sx, sy), plus noise of `sd`.
    fn frame(w: usize, h: usize, sx: f32, sy: f32, sd: f32, seed: u64) -> Vec<f32> {
        let n = w * h;
        let mut p = vec![0f32; 3 * n];
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let (u, v) = (x as f32 - sx, y as f32 - sy);
                    let s = 0.5
                        + 0.15 * (u * 0.21).sin() * (v * 0.17).cos()
                        + 0.1 * ((u + 2.0 * v) * 0.05).sin()
                        + 0.05 * ((3.0 * u - v) * 0.37).cos();
                    let z = gaussian(seed, 0, c as u32, x as i64, y as i64, 0);
                    p[c * n + y * w + x] = s * (0.8 + 0.1 * c as f32) + sd * z;
                }
            }
        }
        p
    }

    fn t(p: &[f32], w: usize, h: usize) -> Tensor {
        Tensor::from_slice(p, (3, h, w), &Device::Cpu).unwrap()
    }

    fn v(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    #[test]
    fn declip_matches_the_scalar_correction() {
        let mut vals: Vec<f32> = (0..3000).map(|i| -0.3 + 1.6 * i as f32 / 2999.0).collect();
        vals.push(f32::NAN);
        for (low, high) in [(true, true), (true, false), (false, true), (false, false)] {
            let clip = Clipping { low, high };
            for sigma in [0.0f32, 0.02, 0.1, 0.3] {
                let mut want = vals.clone();
                scalar_declip::declip(&mut want, sigma, clip);
                let x = Tensor::from_slice(&vals, vals.len(), &Device::Cpu).unwrap();
                let got = v(&declip(&x, sigma, clip).unwrap());
                assert!(got.last().unwrap().is_nan());
                let n = vals.len() - 1;
                let off = worst(&got[..n], &want[..n]);
                assert!(off < 1e-5, "{clip:?} sigma {sigma}: off by {off}");
            }
        }
    }

    #[test]
    fn clipping_statistics_match_the_scalar_ones() {
        let mut stray = vec![0.5f32; 3 * 20 * 1000];
        for few in [1usize, 8] {
            stray[3..3 + few].fill(-0.2);
            stray[100] = 4.0;
            let frames = vec![stray.clone(), frame(20, 10, 0.0, 0.0, 0.3, 1)];
            let tensors: Vec<Tensor> = frames
                .iter()
                .map(|f| Tensor::from_slice(f, f.len(), &Device::Cpu).unwrap())
                .collect();
            for mode in NoiseClipping::ALL {
                assert_eq!(
                    clipping_ends(mode, &tensors).unwrap(),
                    mode.ends(&frames),
                    "{mode:?} with {few} below"
                );
            }
        }
    }

    #[test]
    fn smoothing_matches_the_scalar_smoothing() {
        let frames: Vec<Vec<f32>> = (0..5)
            .map(|i| frame(W, H, i as f32 * 0.5, 0.0, 0.03, i))
            .collect();
        let refs: Vec<&[f32]> = frames[1..].iter().map(|f| f.as_slice()).collect();
        let tens: Vec<Tensor> = frames[1..].iter().map(|f| t(f, W, H)).collect();
        for gate in [0.0f32, 0.02, 0.07] {
            let want = scalar::smooth(&frames[0], &refs, W, H, gate);
            let got = v(&smooth(&t(&frames[0], W, H), &tens, gate).unwrap());
            let off = worst(&got, &want);
            assert!(off < 1e-5, "gate {gate}: off by {off}");
        }
    }

    #[test]
    fn wiener_filter_matches_the_scalar_filter() {
        // 45 x 37: the last block row and column are off the stride-4 grid; 40 x 32 is on it.
        for (w, h, stride) in [(W, H, 4), (40, 32, 4), (W, H, 3), (8, 8, 4), (7, 20, 4)] {
            let (pilot, noisy) = (frame(w, h, 0.0, 0.0, 0.0, 1), frame(w, h, 0.0, 0.0, 0.1, 2));
            let var: Vec<f32> = (0..w * h).map(|i| 0.005 + 0.01 * (i % 7) as f32).collect();
            let want = wiener::dct_wiener(&pilot, &noisy, &var, w, h, stride);
            let vt = Tensor::from_slice(&var, (h, w), &Device::Cpu).unwrap();
            let got = dct_wiener(&t(&pilot, w, h), &t(&noisy, w, h), &vt, stride).unwrap();
            let off = worst(&v(&got), &want);
            assert!(off < 2e-5, "{w}x{h} stride {stride}: off by {off}");
        }
    }

    #[test]
    fn restoration_matches_the_scalar_restoration() {
        let noisy: Vec<Vec<f32>> = (0..4).map(|i| frame(W, H, 0.0, 0.0, 0.1, 10 + i)).collect();
        let den: Vec<Vec<f32>> = (0..4)
            .map(|i| frame(W, H, 0.0, 0.0, 0.01, 20 + i))
            .collect();
        let tn: Vec<Tensor> = noisy.iter().map(|f| t(f, W, H)).collect();
        let td: Vec<Tensor> = den.iter().map(|f| t(f, W, H)).collect();
        for k in [3usize, 0] {
            let others: Vec<&[f32]> = den[1..=k].iter().map(|f| f.as_slice()).collect();
            let sources: Vec<&[f32]> = noisy[1..=k].iter().map(|f| f.as_slice()).collect();
            let src = scalar::Restore {
                centre: &noisy[0],
                others: &sources,
                sigma: 0.1,
            };
            let want = scalar::smooth_restore(&den[0], &others, W, H, 0.05, &src);
            let got = smooth_restore(&td[0], &td[1..=k], 0.05, &tn[0], &tn[1..=k], 0.1).unwrap();
            let off = worst(&v(&got), &want);
            assert!(off < 5e-5, "{k} neighbours: off by {off}");
        }
    }

    #[test]
    fn motion_matches_the_scalar_search() {
        // A pan too wide for the coarse search alone, and a small one; 160 x 128 has the
        // scalar search's three levels below full size, 45 x 37 none.
        for (w, h, shifts) in [
            (160, 128, vec![(21.0, -6.0), (-3.0, 2.0), (0.0, 0.0)]),
            (W, H, vec![(2.0, 1.0), (-1.0, 0.0)]),
        ] {
            let centre = frame(w, h, 0.0, 0.0, 0.002, 1);
            let others: Vec<Vec<f32>> = shifts
                .iter()
                .enumerate()
                .map(|(i, &(sx, sy))| frame(w, h, sx, sy, 0.002, 2 + i as u64))
                .collect();
            let sources: Vec<Vec<f32>> = (0..others.len())
                .map(|i| frame(w, h, 0.0, 0.0, 0.1, 9 + i as u64))
                .collect();
            let refs: Vec<&[f32]> = others.iter().map(|f| f.as_slice()).collect();
            let srefs: Vec<&[f32]> = sources.iter().map(|f| f.as_slice()).collect();
            let (want, want_with) = motion::align_all(&centre, &refs, &srefs, w, h, 0.1);
            let to = |p: &[Vec<f32>]| -> Vec<Tensor> { p.iter().map(|f| t(f, w, h)).collect() };
            let (got, got_with) =
                align_all(&t(&centre, w, h), &to(&others), &to(&sources), 0.1).unwrap();
            for i in 0..others.len() {
                // Whole-pixel moves of the same frames: the same vectors give the same bytes.
                assert_eq!(v(&got[i]), want[i], "{w}x{h}, shift {:?}", shifts[i]);
                assert_eq!(v(&got_with[i]), want_with[i]);
                if shifts[i] != (0.0, 0.0) {
                    assert_ne!(want[i], others[i], "the search moved nothing");
                }
            }
        }
    }
}

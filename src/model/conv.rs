//! Channels-last (NHWC) convolutions for the video UNet, in two interchangeable forms:
//! `forward`, built from differentiable candle ops (training, and every GPU), and `fused`, the
//! CPU inference path: im2col in cache-sized row blocks, one matrix product per block and the
//! following element-wise work (bias, residual, FiLM + activation, upsample + skip) applied while the
//! block is still in cache. The fused path is what makes full-HD frames affordable on a CPU;
//! unit tests hold the two paths to the same numbers.
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor};
use once_cell::sync::OnceCell;

use crate::{Error, Result};

/// Size, in floats, of the im2col blocks of the fused path: 8 MB, in the L3 cache and under
/// the allocator's mmap threshold (a full im2col matrix is 9x the activation, and faulting in
/// such buffers cost more than the products); measured against 2 MB and 16 MB blocks.
const BLOCK_FLOATS: usize = 1 << 21;

/// Whether the fused CPU inference path applies: f32 on the CPU, no gradient being tracked.
pub fn fused_ok(x: &Tensor, weights: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && !x.track_op() && !weights.track_op()
}

/// Runs `f(first_row, rows)` over `out` cut into blocks of whole rows, on candle's persistent
/// worker pool (the one its element-wise ops use: no thread start-up per call, and no extra
/// threads competing with it for the cores).
fn par_rows(out: &mut [f32], row_len: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    let row_len = row_len.max(1);
    let rows = out.len() / row_len;
    let pool = candle_core::utils::barrier_pool();
    // A few blocks per worker lets a fast thread take over a slow one's share.
    let per = rows.div_ceil(4 * (pool.n_workers() + 1)).max(1);
    if rows * row_len < 16384 || per >= rows {
        f(0, out);
        return;
    }
    let blocks: Vec<parking_lot::Mutex<(usize, &mut [f32])>> = out
        .chunks_mut(per * row_len)
        .enumerate()
        .map(|(i, c)| parking_lot::Mutex::new((i * per, c)))
        .collect();
    pool.execute_chunked(blocks.len(), |range| {
        for i in range {
            let mut guard = blocks[i].lock();
            let (first, block) = &mut *guard;
            f(*first, block);
        }
    });
}

/// Calls `f` with the contiguous f32 data of a CPU tensor.
fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => f(&v[a..b]),
        _ => Err(Error::Other(
            "internal: fused kernel needs a contiguous f32 CPU tensor".into(),
        )),
    }
}

/// The trunk's activation, hard-swish: x * clamp(x/6 + 1/2, 0, 1). A SiLU look-alike without
/// the exponential, which cost a tenth of the CPU forward pass.
fn act1(v: f32) -> f32 {
    v * (v * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0)
}

/// Hard-swish from differentiable candle ops (training, GPU).
pub fn act(x: &Tensor) -> Result<Tensor> {
    let gate = x.affine(1.0 / 6.0, 0.5)?.maximum(0f32)?.minimum(1f32)?;
    Ok((x * gate)?)
}

/// Hard-swish over a whole CPU tensor, on all threads.
pub fn act_fused(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let mut out = vec![0f32; x.elem_count()];
    with_data(&x, |src| {
        par_rows(&mut out, 1, &|first, block| {
            for (o, v) in block.iter_mut().zip(&src[first..]) {
                *o = act1(*v);
            }
        });
        Ok(())
    })?;
    Ok(Tensor::from_vec(out, x.shape(), x.device())?)
}

/// What happens to each conv output value `r` (bias already added) in the fused path.
pub enum Epilogue<'a> {
    /// y = r
    Plain,
    /// y = r + residual (same shape as the output).
    Residual(&'a Tensor),
    /// y = act(r * scale[n, c] + shift[n, c]); scale and shift [N, C_out].
    FilmAct {
        scale: &'a Tensor,
        shift: &'a Tensor,
    },
    /// The conv ran at the coarse level: y[n, 2i+a, 2j+b] = r[n, i, j] + skip[n, 2i+a, 2j+b]
    /// (nearest 2x upsampling and the skip connection); the output has the skip's shape.
    UpsampleAdd(&'a Tensor),
}

/// A 2-D convolution with "same" padding (k/2) applied to [N, H, W, C] tensors. Weights keep
/// the usual [C_out, C_in, k, k] layout in checkpoints.
#[derive(Clone, Debug)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    k: usize,
    stride: usize,
    /// Inference copy of the weights as a [k*k*C_in, C_out] matrix and the bias as a Vec.
    fused_weights: OnceCell<(Tensor, Vec<f32>)>,
}

impl Conv {
    pub fn new(weight: Tensor, bias: Tensor, stride: usize) -> Result<Self> {
        let (_, _, k, _) = weight.dims4()?;
        Ok(Conv {
            weight,
            bias,
            k,
            stride,
            fused_weights: OnceCell::new(),
        })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let p = self.k / 2;
        (
            (h + 2 * p - self.k) / self.stride + 1,
            (w + 2 * p - self.k) / self.stride + 1,
        )
    }

    /// The weights as the right-hand side of `cols x wmat`, rows ordered (ky, kx, c_in).
    fn wmat(&self) -> Result<Tensor> {
        let (co, ci, k, _) = self.weight.dims4()?;
        Ok(self
            .weight
            .permute((2, 3, 1, 0))?
            .reshape((k * k * ci, co))?)
    }

    /// Differentiable path: `x` [N, H, W, C_in] -> [N, ceil(H/stride), ceil(W/stride), C_out].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let (co, _, k, _) = self.weight.dims4()?;
        let (s, p) = (self.stride, self.k / 2);
        let (ho, wo) = self.out_size(h, w);
        if !(x.device().is_cpu() && x.dtype() == DType::F32) {
            // GPU (or non-f32): candle's conv2d in NCHW.
            let y = x.permute((0, 3, 1, 2))?.conv2d(&self.weight, p, s, 1, 1)?;
            let y = y.broadcast_add(&self.bias.reshape((1, co, 1, 1))?)?;
            return Ok(y.permute((0, 2, 3, 1))?);
        }
        // Rows of `cols` are output pixels: one [N*Ho*Wo, k*k*C_in] x [k*k*C_in, C_out]
        // product, the shape the CPU gemm is fastest at (candle's NCHW CPU conv is 3-4x slower).
        let cols = if k == 1 && s == 1 {
            x.reshape((n * h * w, c))?
        } else {
            let op = Im2Col {
                k,
                stride: s,
                pad: p,
                n,
                h,
                w,
                c,
                ho,
                wo,
                row0: 0,
                rows: n * ho * wo,
            };
            x.contiguous()?.apply_op1(op)?
        };
        let y = cols.matmul(&self.wmat()?)?.broadcast_add(&self.bias)?;
        Ok(y.reshape((n, ho, wo, co))?)
    }

    /// Fused CPU inference path (see the module docs); only when [`fused_ok`].
    pub fn fused(&self, x: &Tensor, epi: Epilogue) -> Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let (co, _, k, _) = self.weight.dims4()?;
        let (ho, wo) = self.out_size(h, w);
        let x = x.contiguous()?;
        let op = Im2Col {
            k,
            stride: self.stride,
            pad: k / 2,
            n,
            h,
            w,
            c,
            ho,
            wo,
            row0: 0,
            rows: 0,
        };
        let direct = k == 1 && self.stride == 1;
        let cols = |row0: usize, rows: usize| -> Result<Tensor> {
            if direct {
                Ok(x.reshape((n * h * w, c))?.narrow(0, row0, rows)?)
            } else {
                Ok(x.apply_op1_no_bwd(&Im2Col { row0, rows, ..op })?)
            }
        };
        self.fused_with(cols, k * k * c, (n, ho, wo, co), epi)
    }

    /// Fused path with any producer of im2col row blocks: `cols(row0, rows)` must return the
    /// [rows, row_len] block of rows row0.. of the (N*Ho*Wo)-row column matrix.
    pub fn fused_with(
        &self,
        cols: impl Fn(usize, usize) -> Result<Tensor>,
        row_len: usize,
        (n, ho, wo, co): (usize, usize, usize, usize),
        epi: Epilogue,
    ) -> Result<Tensor> {
        let (wmat, bias) = self.fused_weights.get_or_try_init(|| -> Result<_> {
            Ok((self.wmat()?.contiguous()?, self.bias.to_vec1::<f32>()?))
        })?;
        if wmat.dim(0)? != row_len || bias.len() != co {
            return Err(Error::Other(
                "internal: conv input does not match its weights".into(),
            ));
        }
        let total = n * ho * wo;
        let block = (BLOCK_FLOATS / row_len).max(64);
        let film = match &epi {
            Epilogue::FilmAct { scale, shift } => Some((
                scale.flatten_all()?.to_vec1::<f32>()?,
                shift.flatten_all()?.to_vec1::<f32>()?,
            )),
            _ => None,
        };
        let out_len = match epi {
            Epilogue::UpsampleAdd(_) => 4 * total * co,
            _ => total * co,
        };
        let mut out = vec![0f32; out_len];
        let extra = match epi {
            Epilogue::Residual(t) | Epilogue::UpsampleAdd(t) => Some(t.contiguous()?),
            _ => None,
        };
        if let Some(t) = &extra {
            if t.elem_count() != out_len {
                return Err(Error::Other(
                    "internal: residual shape does not match the conv".into(),
                ));
            }
        }
        let mut run = |add: Option<&[f32]>| -> Result<()> {
            for row0 in (0..total).step_by(block) {
                let rows = block.min(total - row0);
                let r = cols(row0, rows)?.matmul(wmat)?;
                with_data(&r, |r| {
                    write_block(
                        r,
                        row0,
                        co,
                        bias,
                        (ho, wo),
                        &epi,
                        film.as_ref(),
                        add,
                        &mut out,
                    );
                    Ok(())
                })?;
            }
            Ok(())
        };
        match &extra {
            Some(t) => with_data(t, |add| run(Some(add)))?,
            None => run(None)?,
        }
        let shape = match epi {
            Epilogue::UpsampleAdd(_) => (n, 2 * ho, 2 * wo, co),
            _ => (n, ho, wo, co),
        };
        Ok(Tensor::from_vec(out, shape, &candle_core::Device::Cpu)?)
    }
}

/// Writes one block of conv results `r` ([rows, co], rows starting at `row0`) into `out`.
#[allow(clippy::too_many_arguments)]
fn write_block(
    r: &[f32],
    row0: usize,
    co: usize,
    bias: &[f32],
    (ho, wo): (usize, usize),
    epi: &Epilogue,
    film: Option<&(Vec<f32>, Vec<f32>)>,
    add: Option<&[f32]>,
    out: &mut [f32],
) {
    match epi {
        Epilogue::UpsampleAdd(_) => {
            let (add, fw) = (add.unwrap_or(&[]), 2 * wo);
            for (i, px) in r.chunks_exact(co).enumerate() {
                let row = row0 + i;
                let (b, y, x) = (row / (ho * wo), (row / wo) % ho, row % wo);
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let o = ((b * 2 * ho + 2 * y + dy) * fw + 2 * x + dx) * co;
                    for c in 0..co {
                        out[o + c] = px[c] + bias[c] + add[o + c];
                    }
                }
            }
        }
        _ => {
            let dst = &mut out[row0 * co..row0 * co + r.len()];
            let add = add.map(|a| &a[row0 * co..row0 * co + r.len()]);
            par_rows(dst, co, &|first, d| {
                for (i, o) in d.chunks_exact_mut(co).enumerate() {
                    let row = first + i;
                    let src = &r[row * co..row * co + co];
                    match (film, add) {
                        (Some((sc, sh)), _) => {
                            let b = (row0 + row) / (ho * wo);
                            let (sc, sh) = (&sc[b * co..b * co + co], &sh[b * co..b * co + co]);
                            for c in 0..co {
                                o[c] = act1((src[c] + bias[c]) * sc[c] + sh[c]);
                            }
                        }
                        (None, Some(a)) => {
                            let a = &a[row * co..row * co + co];
                            for c in 0..co {
                                o[c] = src[c] + bias[c] + a[c];
                            }
                        }
                        (None, None) => {
                            for c in 0..co {
                                o[c] = src[c] + bias[c];
                            }
                        }
                    }
                }
            });
        }
    }
}

/// [N, H, W, C] -> rows row0..row0+rows of the [N*Ho*Wo, k*k*C] im2col matrix: each row holds
/// the k x k neighbourhood of one output pixel (zeros outside the image).
#[derive(Clone, Copy, Debug)]
struct Im2Col {
    k: usize,
    stride: usize,
    pad: usize,
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    ho: usize,
    wo: usize,
    row0: usize,
    rows: usize,
}

impl Im2Col {
    /// Input pixel index along one axis for output `o` and tap `t`, if inside the image.
    fn src(&self, o: usize, t: usize, size: usize) -> Option<usize> {
        (o * self.stride + t)
            .checked_sub(self.pad)
            .filter(|&i| i < size)
    }
}

fn f32_input<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("vdiff conv kernels expect a contiguous f32 tensor"),
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "vdiff-im2col"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = f32_input(storage, layout)?;
        let me = *self;
        let (k, c) = (me.k, me.c);
        let row_len = k * k * c;
        let mut out = vec![0f32; me.rows * row_len];
        par_rows(&mut out, row_len, &|first, block| {
            for (r, row) in block.chunks_exact_mut(row_len).enumerate() {
                let idx = me.row0 + first + r;
                let (b, oy, ox) = (idx / (me.ho * me.wo), (idx / me.wo) % me.ho, idx % me.wo);
                for ky in 0..k {
                    let Some(iy) = me.src(oy, ky, me.h) else {
                        continue;
                    };
                    for kx in 0..k {
                        let Some(ix) = me.src(ox, kx, me.w) else {
                            continue;
                        };
                        let s = ((b * me.h + iy) * me.w + ix) * c;
                        let d = (ky * k + kx) * c;
                        row[d..d + c].copy_from_slice(&src[s..s + c]);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((me.rows, row_len))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad.contiguous()?.apply_op1_no_bwd(&Col2Im(*self))?;
        Ok(Some(g))
    }
}

/// Adjoint of [`Im2Col`] (for a full, row0 = 0 matrix): sums the columns back onto
/// [N, H, W, C], gathering per input pixel so threads never write to the same place.
struct Col2Im(Im2Col);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "vdiff-col2im"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let cols = f32_input(storage, layout)?;
        let me = self.0;
        let (k, c, s, p) = (me.k, me.c, me.stride, me.pad);
        let row_len = k * k * c;
        let mut out = vec![0f32; me.n * me.h * me.w * c];
        par_rows(&mut out, c, &|first, block| {
            for (r, px) in block.chunks_exact_mut(c).enumerate() {
                let idx = first + r;
                let (b, iy, ix) = (idx / (me.h * me.w), (idx / me.w) % me.h, idx % me.w);
                for ky in 0..k {
                    // Output rows oy with oy*s + ky - p == iy.
                    let Some(t) = (iy + p).checked_sub(ky) else {
                        continue;
                    };
                    if t % s != 0 || t / s >= me.ho {
                        continue;
                    }
                    let oy = t / s;
                    for kx in 0..k {
                        let Some(t) = (ix + p).checked_sub(kx) else {
                            continue;
                        };
                        if t % s != 0 || t / s >= me.wo {
                            continue;
                        }
                        let row = (b * me.ho + oy) * me.wo + t / s;
                        let src = &cols[row * row_len + (ky * k + kx) * c..][..c];
                        for (o, v) in px.iter_mut().zip(src) {
                            *o += v;
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((me.n, me.h, me.w, c))))
    }
}

/// Rows row0..row0+rows of the temporal-mixing input [x(k-1), x(k), x(k+1)] (channels
/// concatenated, clip ends repeated) for `x` [B*frames, H, W, C]: the fused path's
/// replacement for two shifted copies and a concatenation.
#[derive(Clone, Copy, Debug)]
pub struct TemporalCols {
    pub frames: usize,
    pub hw: usize,
    pub c: usize,
    pub row0: usize,
    pub rows: usize,
}

impl CustomOp1 for TemporalCols {
    fn name(&self) -> &'static str {
        "vdiff-temporal-cols"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = f32_input(storage, layout)?;
        let me = *self;
        let c = me.c;
        let mut out = vec![0f32; me.rows * 3 * c];
        par_rows(&mut out, 3 * c, &|first, block| {
            for (r, row) in block.chunks_exact_mut(3 * c).enumerate() {
                let idx = me.row0 + first + r;
                let (img, px) = (idx / me.hw, idx % me.hw);
                let f = img % me.frames;
                let prev = img - f + f.saturating_sub(1);
                let next = img - f + (f + 1).min(me.frames - 1);
                for (j, src_img) in [prev, img, next].into_iter().enumerate() {
                    let s = (src_img * me.hw + px) * c;
                    row[j * c..(j + 1) * c].copy_from_slice(&src[s..s + c]);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((me.rows, 3 * c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn ramp(shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * scale)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Both NHWC paths agree with candle's NCHW conv2d, for 3x3 and 1x1, stride 1 and 2, odd
    /// sizes included.
    #[test]
    fn matches_candle_conv2d() {
        for (k, stride, h, w) in [(3, 1, 7, 5), (3, 2, 8, 6), (3, 2, 7, 9), (1, 1, 4, 3)] {
            let (ci, co) = (5, 4);
            let x = ramp(&[2, h, w, ci], 1.0);
            let wt = ramp(&[co, ci, k, k], 0.3);
            let b = ramp(&[co], 0.1);
            let conv = Conv::new(wt.clone(), b.clone(), stride).unwrap();
            let theirs = x
                .permute((0, 3, 1, 2))
                .unwrap()
                .conv2d(&wt, k / 2, stride, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, co, 1, 1)).unwrap())
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap();
            assert!(
                max_diff(&conv.forward(&x).unwrap(), &theirs) < 1e-5,
                "k={k} s={stride}"
            );
            let fused = conv.fused(&x, Epilogue::Plain).unwrap();
            assert!(max_diff(&fused, &theirs) < 1e-5, "fused k={k} s={stride}");
        }
    }

    /// The fused epilogues compute what the plain ops compute.
    #[test]
    fn fused_epilogues_match_plain_ops() {
        let (n, h, w, c) = (2, 6, 5, 4);
        let x = ramp(&[n, h, w, c], 1.0);
        let conv = Conv::new(ramp(&[c, c, 3, 3], 0.4), ramp(&[c], 0.2), 1).unwrap();
        let plain = conv.forward(&x).unwrap();
        let res = ramp(&[n, h, w, c], 0.7);
        let got = conv.fused(&x, Epilogue::Residual(&res)).unwrap();
        assert!(max_diff(&got, &(&plain + &res).unwrap()) < 1e-5);
        let (sc, sh) = (ramp(&[n, c], 2.0), ramp(&[n, c], 0.5));
        let got = conv
            .fused(
                &x,
                Epilogue::FilmAct {
                    scale: &sc,
                    shift: &sh,
                },
            )
            .unwrap();
        let want = plain
            .broadcast_mul(&sc.reshape((n, 1, 1, c)).unwrap())
            .unwrap()
            .broadcast_add(&sh.reshape((n, 1, 1, c)).unwrap())
            .unwrap();
        let want = act(&want).unwrap();
        assert!(max_diff(&got, &want) < 1e-5);
        let skip = ramp(&[n, 2 * h, 2 * w, c], 0.3);
        let got = conv.fused(&x, Epilogue::UpsampleAdd(&skip)).unwrap();
        let up = plain
            .reshape((n, h, 1, w, 1, c))
            .unwrap()
            .broadcast_as((n, h, 2, w, 2, c))
            .unwrap()
            .reshape((n, 2 * h, 2 * w, c))
            .unwrap();
        assert!(max_diff(&got, &(up + &skip).unwrap()) < 1e-5);
        let s = act_fused(&res).unwrap();
        assert!(max_diff(&s, &act(&res).unwrap()) < 1e-6);
    }

    /// col2im is the adjoint of im2col: input and weight gradients match candle's conv2d.
    #[test]
    fn gradient_matches_candle_conv2d() {
        // (candle's own conv2d backward fails for stride 2 on odd sizes: odd only at stride 1)
        for (stride, w) in [(1, 5), (2, 6)] {
            let x = Var::from_tensor(&ramp(&[1, 6, w, 3], 1.0)).unwrap();
            let wt = Var::from_tensor(&ramp(&[4, 3, 3, 3], 0.3)).unwrap();
            let zero = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
            let conv = Conv::new(wt.as_tensor().clone(), zero, stride).unwrap();
            let y = conv.forward(x.as_tensor()).unwrap();
            let g_ours = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let xt = x.as_tensor().permute((0, 3, 1, 2)).unwrap();
            let y2 = xt.conv2d(wt.as_tensor(), 1, stride, 1, 1).unwrap();
            let g_theirs = y2.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            for v in [x.as_tensor(), wt.as_tensor()] {
                let (a, b) = (g_ours.get(v).unwrap(), g_theirs.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-4, "stride {stride}");
            }
        }
    }
}

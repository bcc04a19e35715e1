//! The CPU inference kernels of the video UNet (f32, channels-last, no gradients): im2col in
//! cache-sized row blocks, one matrix product per block, and the element-wise work after a conv
//! (bias, residual, FiLM + activation, upsample + skip) applied while the block is still in
//! cache; the temporal-mixing gather; hard-swish on all threads. They are what makes full-HD
//! frames affordable on a CPU. [`Im2Col`] also serves the differentiable CPU path, with
//! [`Col2Im`] as its gradient.
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

use crate::{Error, Result};

/// Size, in floats, of the im2col blocks of the fused path: 8 MB, in the L3 cache and under
/// the allocator's mmap threshold (a full im2col matrix is 9x the activation, and faulting in
/// such buffers cost more than the products); measured against 2 MB and 16 MB blocks.
const BLOCK_FLOATS: usize = 1 << 21;

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
        _ => Err(Error::Internal(
            "fused kernel needs a contiguous f32 CPU tensor".into(),
        )),
    }
}

/// The trunk's activation, hard-swish: x * clamp(x/6 + 1/2, 0, 1). A SiLU look-alike without
/// the exponential, which cost a tenth of the CPU forward pass.
fn act1(v: f32) -> f32 {
    v * (v * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0)
}

/// Hard-swish over a whole CPU tensor, on all threads.
pub fn hardswish(x: &Tensor) -> Result<Tensor> {
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

/// One convolution as blocks of im2col rows times the weight matrix, each block finished by the
/// epilogue while it is in cache: `cols(row0, rows)` gives rows row0.. of the (N*Ho*Wo)-row
/// column matrix, `wmat` is [row_len, C_out], `bias` [C_out]. Returns [N, Ho, Wo, C_out], or
/// the skip's shape for [`Epilogue::UpsampleAdd`].
pub fn gemm_blocks(
    cols: impl Fn(usize, usize) -> Result<Tensor>,
    wmat: &Tensor,
    bias: &[f32],
    row_len: usize,
    (n, ho, wo, co): (usize, usize, usize, usize),
    epi: Epilogue,
) -> Result<Tensor> {
    if wmat.dim(0)? != row_len || bias.len() != co {
        return Err(Error::Internal(
            "conv input does not match its weights".into(),
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
            return Err(Error::Internal(
                "residual shape does not match the conv".into(),
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
pub struct Im2Col {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub ho: usize,
    pub wo: usize,
    pub row0: usize,
    pub rows: usize,
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

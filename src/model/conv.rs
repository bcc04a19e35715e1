//! Channels-last (NHWC) convolutions for the video UNet, in two interchangeable forms:
//! `forward`, built from differentiable candle ops (training, and every GPU), and `fused`, the
//! CPU inference path through `cpu_kernels`. Unit tests hold the two to the same numbers.
use candle_core::{DType, Tensor};
use once_cell::sync::OnceCell;

use super::cpu_kernels::{gemm_blocks, Epilogue, Im2Col};
use crate::Result;

/// Hard-swish from differentiable candle ops (training, GPU).
pub fn act(x: &Tensor) -> Result<Tensor> {
    let gate = x.affine(1.0 / 6.0, 0.5)?.maximum(0f32)?.minimum(1f32)?;
    Ok((x * gate)?)
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

    /// The CPU inference path (f32 CPU tensors, no gradients; see `cpu_kernels`).
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
        dims: (usize, usize, usize, usize),
        epi: Epilogue,
    ) -> Result<Tensor> {
        let (wmat, bias) = self.fused_weights.get_or_try_init(|| -> Result<_> {
            Ok((self.wmat()?.contiguous()?, self.bias.to_vec1::<f32>()?))
        })?;
        gemm_blocks(cols, wmat, bias, row_len, dims, epi)
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpu_kernels::hardswish;
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
        let s = hardswish(&res).unwrap();
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

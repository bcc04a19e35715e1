//! The video UNet F(x; c_noise) that the EDM denoiser wraps: spatial residual blocks at several
//! resolutions, temporal mixing across the frames of a window, no spatial normalisation (so a
//! pixel's output depends only on its neighbourhood and overlapping tiles agree).
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};

use super::config::UNetConfig;
use super::conv::{act, Conv};
use super::cpu_kernels::{hardswish, Epilogue, TemporalCols};
use crate::{Error, Result};

/// Initialisation hint: a zero-mean normal with `gain / sqrt(fan_in)` standard deviation.
/// `init_varmap` draws it from `vdiff::sampling::noise`; loading from a file ignores it.
fn scaled_normal(fan_in: usize, gain: f64) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: gain / (fan_in.max(1) as f64).sqrt(),
    }
}

/// Gain for a layer that follows the (ReLU-like) activation: He-style.
const GAIN_ACT: f64 = std::f64::consts::SQRT_2;
/// Gain for the last layer of a residual branch: small, so that an untrained network starts
/// close to the identity of its skip path but still passes signal (and gradients) through
/// every branch, which a zero init would not.
const GAIN_BRANCH: f64 = 0.2;

fn conv(
    vb: VarBuilder,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    gain: f64,
) -> Result<Conv> {
    let w = vb.get_with_hints(
        (c_out, c_in, k, k),
        "weight",
        scaled_normal(c_in * k * k, gain),
    )?;
    let b = vb.get_with_hints(c_out, "bias", Init::Const(0.0))?;
    Conv::new(w, b, stride)
}

fn linear(vb: VarBuilder, d_in: usize, d_out: usize, gain: f64) -> Result<Linear> {
    let w = vb.get_with_hints((d_out, d_in), "weight", scaled_normal(d_in, gain))?;
    let b = vb.get_with_hints(d_out, "bias", Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

/// 3x3 conv -> noise-conditioned scale/shift -> 3x3 conv, added to the input.
#[derive(Clone, Debug)]
struct ResBlock {
    conv1: Conv,
    conv2: Conv,
    emb: Linear,
    channels: usize,
}

impl ResBlock {
    fn new(vb: VarBuilder, c: usize, emb_dim: usize) -> Result<Self> {
        Ok(ResBlock {
            conv1: conv(vb.pp("conv1"), c, c, 3, 1, GAIN_ACT)?,
            conv2: conv(vb.pp("conv2"), c, c, 3, 1, GAIN_ACT * GAIN_BRANCH)?,
            emb: linear(vb.pp("emb"), emb_dim, 2 * c, 0.5)?,
            channels: c,
        })
    }

    /// FiLM scale (1 + s) and shift of this block for each frame's embedding: [N, C] each.
    fn film(&self, emb: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = self.channels;
        let ss = self.emb.forward(emb)?;
        Ok(((ss.narrow(1, 0, c)? + 1.0)?, ss.narrow(1, c, c)?))
    }

    fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let (n, c) = (x.dim(0)?, self.channels);
        let (scale, shift) = self.film(emb)?;
        let (scale, shift) = (scale.reshape((n, 1, 1, c))?, shift.reshape((n, 1, 1, c))?);
        let h = self.conv1.forward(&act(x)?)?;
        let h = h.broadcast_mul(&scale)?.broadcast_add(&shift)?;
        let h = self.conv2.forward(&act(&h)?)?;
        Ok((x + h)?)
    }

    fn fused(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let (scale, shift) = self.film(emb)?;
        let film = Epilogue::FilmAct {
            scale: &scale,
            shift: &shift,
        };
        let a = self.conv1.fused(&hardswish(x)?, film)?;
        self.conv2.fused(&a, Epilogue::Residual(x))
    }
}

/// Mixes each frame with its neighbours: a 1x1 conv over [x(k-1), x(k), x(k+1)] (channels
/// concatenated; the window's first and last frames repeat themselves), added to the input.
#[derive(Clone, Debug)]
struct TemporalMix {
    conv: Conv,
}

impl TemporalMix {
    fn new(vb: VarBuilder, c: usize) -> Result<Self> {
        Ok(TemporalMix {
            conv: conv(vb, 3 * c, c, 1, 1, GAIN_ACT * GAIN_BRANCH)?,
        })
    }

    /// `x`: [B*frames, H, W, C], clips of `frames` consecutive frames.
    fn forward(&self, x: &Tensor, frames: usize) -> Result<Tensor> {
        let s = act(x)?;
        let (prev, next) = if frames <= 1 {
            (s.clone(), s.clone())
        } else {
            let (n, h, w, c) = s.dims4()?;
            let s5 = s.reshape((n / frames, frames, h, w, c))?;
            let first = s5.narrow(1, 0, 1)?;
            let last = s5.narrow(1, frames - 1, 1)?;
            let prev = Tensor::cat(&[&first, &s5.narrow(1, 0, frames - 1)?], 1)?;
            let next = Tensor::cat(&[&s5.narrow(1, 1, frames - 1)?, &last], 1)?;
            (prev.reshape((n, h, w, c))?, next.reshape((n, h, w, c))?)
        };
        let h = self.conv.forward(&Tensor::cat(&[&prev, &s, &next], 3)?)?;
        Ok((x + h)?)
    }

    /// [`TemporalMix::forward`] on the CPU kernels: the shifted copies are gathered block by
    /// block instead of concatenated.
    fn fused(&self, x: &Tensor, frames: usize) -> Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let s = hardswish(x)?;
        let cols = |row0, rows| -> Result<Tensor> {
            Ok(s.apply_op1_no_bwd(&TemporalCols {
                frames,
                hw: h * w,
                c,
                row0,
                rows,
            })?)
        };
        self.conv
            .fused_with(cols, 3 * c, (n, h, w, c), Epilogue::Residual(x))
    }
}

/// The blocks of one resolution level, followed by temporal mixing.
#[derive(Clone, Debug)]
struct Level {
    blocks: Vec<ResBlock>,
    tmix: Option<TemporalMix>,
}

impl Level {
    fn new(vb: VarBuilder, c: usize, blocks: usize, cfg: &UNetConfig) -> Result<Self> {
        let blocks = (0..blocks)
            .map(|i| ResBlock::new(vb.pp(format!("block.{i}")), c, cfg.emb_dim))
            .collect::<Result<Vec<_>>>()?;
        let tmix = if cfg.temporal {
            Some(TemporalMix::new(vb.pp("tmix"), c)?)
        } else {
            None
        };
        Ok(Level { blocks, tmix })
    }

    fn forward<L: Layers>(&self, x: &Tensor, emb: &Tensor, frames: usize) -> Result<Tensor> {
        let mut h = x.clone();
        for b in &self.blocks {
            h = L::block(b, &h, emb)?;
        }
        match &self.tmix {
            Some(t) => L::tmix(t, &h, frames),
            None => Ok(h),
        }
    }
}

/// How the network's layers are computed, chosen once when it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// Differentiable candle ops: training, and any model that is not f32 on the CPU.
    Graph,
    /// The CPU inference kernels of `cpu_kernels` (f32 on the CPU, no gradients).
    FusedCpu,
}

impl Kernels {
    /// The kernels for inference with weights of this device and dtype.
    pub fn for_inference(device: &Device, dtype: DType) -> Kernels {
        if device.is_cpu() && dtype == DType::F32 {
            Kernels::FusedCpu
        } else {
            Kernels::Graph
        }
    }
}

/// The layer computations of one [`Kernels`] choice; the network's trunk is generic over it,
/// so the choice is made once per pass, not in every layer.
trait Layers {
    fn conv(c: &Conv, x: &Tensor) -> Result<Tensor>;
    fn block(b: &ResBlock, x: &Tensor, emb: &Tensor) -> Result<Tensor>;
    fn tmix(t: &TemporalMix, x: &Tensor, frames: usize) -> Result<Tensor>;
    /// Conv at the coarse level, nearest 2x upsampling, plus the skip.
    fn up_add(c: &Conv, x: &Tensor, skip: &Tensor) -> Result<Tensor>;
    /// Activation then conv (the output head).
    fn act_conv(c: &Conv, x: &Tensor) -> Result<Tensor>;
}

struct GraphLayers;
struct FusedCpuLayers;

impl Layers for GraphLayers {
    fn conv(c: &Conv, x: &Tensor) -> Result<Tensor> {
        c.forward(x)
    }
    fn block(b: &ResBlock, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        b.forward(x, emb)
    }
    fn tmix(t: &TemporalMix, x: &Tensor, frames: usize) -> Result<Tensor> {
        t.forward(x, frames)
    }
    fn up_add(c: &Conv, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        Ok((upsample2(&c.forward(x)?)? + skip)?)
    }
    fn act_conv(c: &Conv, x: &Tensor) -> Result<Tensor> {
        c.forward(&act(x)?)
    }
}

impl Layers for FusedCpuLayers {
    fn conv(c: &Conv, x: &Tensor) -> Result<Tensor> {
        c.fused(x, Epilogue::Plain)
    }
    fn block(b: &ResBlock, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        b.fused(x, emb)
    }
    fn tmix(t: &TemporalMix, x: &Tensor, frames: usize) -> Result<Tensor> {
        t.fused(x, frames)
    }
    fn up_add(c: &Conv, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        c.fused(x, Epilogue::UpsampleAdd(skip))
    }
    fn act_conv(c: &Conv, x: &Tensor) -> Result<Tensor> {
        c.fused(&hardswish(x)?, Epilogue::Plain)
    }
}

/// [N, C, H, W] -> [N, H/f, W/f, C*f*f]: each f x f pixel cell becomes the channels of one
/// channels-last position (order: c, then cell row, then cell column).
fn unshuffle_to_nhwc(x: &Tensor, f: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let y = x
        .reshape((n, c, h / f, f, w / f, f))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((n, h / f, w / f, c * f * f))?;
    Ok(y)
}

/// Inverse of [`unshuffle_to_nhwc`]: [N, h, w, C*f*f] -> [N, C, h*f, w*f].
fn shuffle_to_nchw(x: &Tensor, f: usize) -> Result<Tensor> {
    let (n, h, w, cff) = x.dims4()?;
    let c = cff / (f * f);
    let y = x
        .reshape((n, h, w, c, f, f))?
        .permute((0, 3, 1, 4, 2, 5))?
        .contiguous()?
        .reshape((n, c, h * f, w * f))?;
    Ok(y)
}

/// Nearest-neighbour 2x upsampling of [N, H, W, C].
fn upsample2(x: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let y = x
        .reshape((n, h, 1, w, 1, c))?
        .broadcast_as((n, h, 2, w, 2, c))?
        .contiguous()?
        .reshape((n, 2 * h, 2 * w, c))?;
    Ok(y)
}

/// The network F of the EDM denoiser. Build it from a `VarBuilder` (a `VarMap` for training,
/// a weights file for inference); weight names are the checkpoint names.
#[derive(Clone, Debug)]
pub struct VideoUNet {
    cfg: UNetConfig,
    /// Frequencies (cycles per unit of c_noise) of the fixed Fourier features of c_noise.
    freqs: Vec<f32>,
    emb_fc1: Linear,
    emb_fc2: Linear,
    conv_in: Conv,
    enc: Vec<Level>,
    down: Vec<Conv>,
    up: Vec<Conv>,
    dec: Vec<Level>,
    conv_out: Conv,
    kernels: Kernels,
}

impl VideoUNet {
    /// The network of `cfg` with the weights of `vb`, computed with `kernels` (which must be
    /// [`Kernels::Graph`] unless the weights are f32 on the CPU and nothing is trained).
    pub fn new(vb: VarBuilder, cfg: &UNetConfig, kernels: Kernels) -> Result<Self> {
        if kernels == Kernels::FusedCpu
            && Kernels::for_inference(vb.device(), vb.dtype()) != kernels
        {
            return Err(Error::Internal(
                "the CPU kernels need f32 weights on the CPU".into(),
            ));
        }
        cfg.validate()
            .map_err(|m| Error::param("model config", m))?;
        let ch = &cfg.channels;
        let levels = cfg.levels();
        let pix = cfg.in_channels * cfg.unshuffle * cfg.unshuffle;
        // c_noise = ln(sigma)/4 spans about [-1.8, 0.2]: periods from 4 down to 1/16 resolve it.
        let nf = cfg.emb_dim / 2;
        let freqs = (0..nf)
            .map(|i| {
                let t = if nf > 1 {
                    i as f32 / (nf - 1) as f32
                } else {
                    0.0
                };
                (2.0f32).powf(-2.0 + 6.0 * t)
            })
            .collect();
        let mut enc = Vec::with_capacity(levels);
        let mut down = Vec::with_capacity(levels - 1);
        let mut up = Vec::with_capacity(levels - 1);
        let mut dec = Vec::with_capacity(levels - 1);
        for l in 0..levels {
            enc.push(Level::new(
                vb.pp(format!("enc.{l}")),
                ch[l],
                cfg.res_blocks[l],
                cfg,
            )?);
            if l + 1 < levels {
                down.push(conv(
                    vb.pp(format!("down.{l}")),
                    ch[l],
                    ch[l + 1],
                    3,
                    2,
                    1.0,
                )?);
                up.push(conv(vb.pp(format!("up.{l}")), ch[l + 1], ch[l], 3, 1, 1.0)?);
                dec.push(Level::new(
                    vb.pp(format!("dec.{l}")),
                    ch[l],
                    cfg.res_blocks[l],
                    cfg,
                )?);
            }
        }
        Ok(VideoUNet {
            cfg: cfg.clone(),
            freqs,
            emb_fc1: linear(vb.pp("emb.fc1"), cfg.emb_dim, cfg.emb_dim, 1.0)?,
            emb_fc2: linear(vb.pp("emb.fc2"), cfg.emb_dim, cfg.emb_dim, GAIN_ACT)?,
            conv_in: conv(vb.pp("conv_in"), pix, ch[0], 3, 1, 1.0)?,
            enc,
            down,
            up,
            dec,
            conv_out: conv(vb.pp("conv_out"), ch[0], pix, 3, 1, GAIN_ACT * GAIN_BRANCH)?,
            kernels,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Dtype and device of the weights.
    pub fn dtype(&self) -> DType {
        self.conv_in.weight().dtype()
    }

    pub fn device(&self) -> &Device {
        self.conv_in.weight().device()
    }

    /// One window of frames: `x` [K, C, H, W] (already preconditioned, H and W multiples of
    /// `size_multiple`), `c_noise` [K]. Returns [K, C, H, W] in the weights' dtype.
    pub fn forward(&self, x: &Tensor, c_noise: &Tensor) -> Result<Tensor> {
        let k = x.dim(0)?;
        self.forward_frames(x, c_noise, k)
    }

    /// A batch of clips: `x` [B, K, C, H, W], `c_noise` [B, K]; temporal mixing stays inside
    /// each clip. Returns [B, K, C, H, W].
    pub fn forward_clips(&self, x: &Tensor, c_noise: &Tensor) -> Result<Tensor> {
        let (b, k, c, h, w) = x.dims5()?;
        let y = self.forward_frames(&x.reshape((b * k, c, h, w))?, &c_noise.flatten_all()?, k)?;
        Ok(y.reshape((b, k, c, h, w))?)
    }

    /// `x` [N, C, H, W] holding N / frames clips of `frames` frames each.
    fn forward_frames(&self, x: &Tensor, c_noise: &Tensor, frames: usize) -> Result<Tensor> {
        // 1. Check the input: shapes come from callers, so mismatches are errors, not panics.
        let cfg = &self.cfg;
        let (n, c, h, w) = x.dims4()?;
        let m = cfg.size_multiple();
        if c != cfg.in_channels {
            return Err(Error::Internal(format!(
                "model input has {c} channels, the model expects {}",
                cfg.in_channels
            )));
        }
        if h == 0 || w == 0 || h % m != 0 || w % m != 0 {
            return Err(Error::Internal(format!(
                "model input is {w}x{h}; width and height must be positive multiples of {m}"
            )));
        }
        if frames == 0 || n % frames != 0 || c_noise.elem_count() != n {
            return Err(Error::Internal(format!(
                "model input has {n} frames in clips of {frames} with {} noise levels",
                c_noise.elem_count()
            )));
        }
        let dtype = self.dtype();

        // 2. Noise-level embedding: fixed Fourier features of c_noise (computed in f32), then
        //    a small MLP. Shared by every block; it only depends on the frame's noise level.
        let freqs = Tensor::from_slice(&self.freqs, (1, self.freqs.len()), x.device())?;
        let phase = (c_noise
            .to_dtype(DType::F32)?
            .reshape((n, 1))?
            .broadcast_mul(&freqs)?
            * (2.0 * std::f64::consts::PI))?;
        let feats = Tensor::cat(&[phase.sin()?, phase.cos()?], D::Minus1)?.to_dtype(dtype)?;
        let emb = self.emb_fc1.forward(&feats)?.silu()?;
        let emb = self.emb_fc2.forward(&emb)?.silu()?;

        // 3. Pixel-unshuffle to channels-last (the network runs at 1/unshuffle resolution),
        //    the trunk on the kernels chosen at build, back to [N, C, H, W].
        let x = unshuffle_to_nhwc(&x.to_dtype(dtype)?, cfg.unshuffle)?;
        let out = match self.kernels {
            Kernels::Graph => self.trunk::<GraphLayers>(&x, &emb, frames)?,
            Kernels::FusedCpu => self.trunk::<FusedCpuLayers>(&x, &emb, frames)?,
        };
        shuffle_to_nchw(&out, cfg.unshuffle)
    }

    /// Steps 4-6 of [`Self::forward_frames`] on channels-last `x`: the conv in, the encoder
    /// (blocks and temporal mixing at each level, keeping skips, strided conv down), the decoder
    /// (conv at the coarse level, nearest upsample, add the skip, blocks and mixing) and the
    /// head back to image channels.
    fn trunk<L: Layers>(&self, x: &Tensor, emb: &Tensor, frames: usize) -> Result<Tensor> {
        let levels = self.cfg.levels();
        let mut hcur = L::conv(&self.conv_in, x)?;
        let mut skips = Vec::with_capacity(levels - 1);
        for l in 0..levels {
            hcur = self.enc[l].forward::<L>(&hcur, emb, frames)?;
            if l + 1 < levels {
                skips.push(hcur.clone());
                hcur = L::conv(&self.down[l], &hcur)?;
            }
        }
        for l in (0..levels - 1).rev() {
            let u = L::up_add(&self.up[l], &hcur, &skips[l])?;
            hcur = self.dec[l].forward::<L>(&u, emb, frames)?;
        }
        L::act_conv(&self.conv_out, &hcur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_inverts_unshuffle() {
        let dev = Device::Cpu;
        let v: Vec<f32> = (0..2 * 3 * 8 * 12).map(|i| i as f32).collect();
        let x = Tensor::from_vec(v, (2, 3, 8, 12), &dev).unwrap();
        for f in [1, 2, 4] {
            let u = unshuffle_to_nhwc(&x, f).unwrap();
            assert_eq!(u.dims(), &[2, 8 / f, 12 / f, 3 * f * f]);
            let back = shuffle_to_nchw(&u, f).unwrap();
            let d = (back - &x).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
        }
        // With f = 2, channel 1 of cell (1, 2) is channel 0's pixel at x = 5, y = 2.
        let u = unshuffle_to_nhwc(&x, 2).unwrap();
        let a = u
            .get(0)
            .unwrap()
            .get(1)
            .unwrap()
            .get(2)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = x.get(0).unwrap().get(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a[1], b[2][5]);
    }

    #[test]
    fn upsample_repeats_each_pixel() {
        let x = Tensor::from_vec(vec![1f32, 2., 3., 4.], (1, 2, 2, 1), &Device::Cpu).unwrap();
        let y = upsample2(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let expect = [
            1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.,
        ];
        assert_eq!(y, expect);
    }
}

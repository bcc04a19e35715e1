//! EDM preconditioning (Karras et al. 2022) around the video UNet: the one place where
//! c_skip, c_out, c_in and c_noise live, shared by the sampler's denoiser and the training loss.
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::UNetConfig;
use super::unet::{Kernels, VideoUNet};
use crate::sampling::Denoiser;
use crate::{Error, Result};

/// The model centres image-unit data by subtracting this before the network sees it.
pub const DATA_OFFSET: f64 = 0.5;

/// Smallest sigma used inside `c_noise` (its log): the engine never asks for sigma 0, but a
/// zero must still give finite numbers.
const SIGMA_FLOOR: f64 = 1e-12;

/// EDM scalings for one noise level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scalings {
    pub c_skip: f64,
    pub c_out: f64,
    pub c_in: f64,
    pub c_noise: f64,
}

/// EDM preconditioning with the data's standard deviation `sigma_data`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edm {
    pub sigma_data: f64,
}

/// Per-frame scalings as [K,1,1,1] (c_skip, c_out, c_in) and [K] (c_noise) f32 tensors.
struct FrameScalings {
    c_skip: Tensor,
    c_out: Tensor,
    c_in: Tensor,
    c_noise: Tensor,
}

impl Edm {
    pub fn new(sigma_data: f64) -> Self {
        Edm { sigma_data }
    }

    /// D(x; s) = c_skip x + c_out F(c_in x; c_noise), with
    /// c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2),
    /// c_noise = ln(s)/4. Negative or NaN sigmas are treated as 0.
    pub fn scalings(&self, sigma: f64) -> Scalings {
        let s = if sigma.is_nan() { 0.0 } else { sigma.max(0.0) };
        let sd = self.sigma_data;
        let v = s * s + sd * sd;
        Scalings {
            c_skip: sd * sd / v,
            c_out: s * sd / v.sqrt(),
            c_in: 1.0 / v.sqrt(),
            c_noise: s.max(SIGMA_FLOOR).ln() / 4.0,
        }
    }

    /// Scalings for a tensor of per-frame sigmas (any shape, N elements) as f32 tensors on
    /// `device`, shaped [N,1,1,1] for the image terms and [N] for c_noise.
    fn frame_scalings(&self, sigma: &Tensor, device: &Device) -> Result<FrameScalings> {
        let s = sigma
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let n = s.len();
        let sc: Vec<Scalings> = s.iter().map(|&v| self.scalings(v as f64)).collect();
        let col = |f: fn(&Scalings) -> f64| -> Result<Tensor> {
            let v: Vec<f32> = sc.iter().map(|x| f(x) as f32).collect();
            Ok(Tensor::from_vec(v, (n, 1, 1, 1), device)?)
        };
        Ok(FrameScalings {
            c_skip: col(|x| x.c_skip)?,
            c_out: col(|x| x.c_out)?,
            c_in: col(|x| x.c_in)?,
            c_noise: col(|x| x.c_noise)?.flatten_all()?,
        })
    }
}

/// Checks a [K, C, H, W] image batch against its per-frame sigmas [K].
fn check_input(cfg: &UNetConfig, x: &Tensor, sigma: &Tensor) -> Result<(usize, usize, usize)> {
    let dims = x.dims();
    if dims.len() != 4 || dims[1] != cfg.in_channels || dims[2] == 0 || dims[3] == 0 {
        return Err(Error::Internal(format!(
            "denoiser input has shape {dims:?}, expected [frames, {}, height, width]",
            cfg.in_channels
        )));
    }
    if sigma.elem_count() != dims[0] {
        return Err(Error::Internal(format!(
            "denoiser got {} noise levels for {} frames",
            sigma.elem_count(),
            dims[0]
        )));
    }
    Ok((dims[0], dims[2], dims[3]))
}

/// A loaded model: the network, its preconditioning and identity. Shared through
/// `Arc<Model>` by the registry; inference only (`&self`).
#[derive(Clone, Debug)]
pub struct Model {
    cfg: UNetConfig,
    net: VideoUNet,
    edm: Edm,
    id: String,
    device: Device,
    dtype: DType,
}

impl Model {
    /// Builds the network from `vb` (its device and dtype become the model's). `id` names the
    /// weights (the blake3 hex that `io` computes) and keys caches.
    pub fn new(vb: VarBuilder, cfg: &UNetConfig, id: String) -> Result<Self> {
        let device = vb.device().clone();
        let dtype = vb.dtype();
        let net = VideoUNet::new(vb, cfg, Kernels::for_inference(&device, dtype))?;
        Ok(Model {
            cfg: cfg.clone(),
            net,
            edm: Edm::new(cfg.sigma_data),
            id,
            device,
            dtype,
        })
    }

    pub fn cfg(&self) -> &UNetConfig {
        &self.cfg
    }

    /// blake3 hex of the config and the weights' bytes.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn net(&self) -> &VideoUNet {
        &self.net
    }

    pub fn edm(&self) -> &Edm {
        &self.edm
    }
}

impl Denoiser for Model {
    /// `x` [K, C, H, W] in image units, any H and W; `sigma` [K]. Returns D(x; sigma) in f32.
    fn denoise(&self, x: &Tensor, sigma: &Tensor) -> Result<Tensor> {
        // 1. Validate, then centre the data the way the network was trained.
        let (_, h, w) = check_input(&self.cfg, x, sigma)?;
        let xc = (x.to_device(&self.device)?.to_dtype(DType::F32)? - DATA_OFFSET)?;
        let sc = self.edm.frame_scalings(sigma, &self.device)?;

        // 2. Replicate-pad at the high end of H and W only, so the grid phase of the tile
        //    origin (and so the network's strided layers) is not shifted.
        let m = self.cfg.size_multiple();
        let (ph, pw) = (h.div_ceil(m) * m - h, w.div_ceil(m) * m - w);
        let xin = xc.broadcast_mul(&sc.c_in)?;
        let xin = xin.pad_with_same(2, 0, ph)?.pad_with_same(3, 0, pw)?;

        // 3. Network in the model dtype, back to f32, crop the padding.
        let f = self.net.forward(&xin.to_dtype(self.dtype)?, &sc.c_noise)?;
        let f = f.to_dtype(DType::F32)?.narrow(2, 0, h)?.narrow(3, 0, w)?;

        // 4. D = c_skip x + c_out F, back to image units.
        let d = (xc.broadcast_mul(&sc.c_skip)? + f.broadcast_mul(&sc.c_out)?)?;
        Ok((d + DATA_OFFSET)?)
    }
}

/// EDM training loss: mean over all elements of lambda(sigma) |D(x0 + sigma n; sigma) - x0|^2
/// with lambda = 1/c_out^2, written as |F - (x0 - c_skip y)/c_out|^2 (same value, better
/// conditioned). `x0` is clean data in image units, [K, C, H, W] (one clip) or
/// [B, K, C, H, W] (B clips; temporal mixing stays within a clip); `sigma` has one entry per
/// frame ([K] or [B, K], all > 0); `noise` is N(0,1) shaped like `x0`. Returns a scalar.
pub fn loss(
    net: &VideoUNet,
    edm: &Edm,
    x0: &Tensor,
    sigma: &Tensor,
    noise: &Tensor,
) -> Result<Tensor> {
    // 1. Flatten clips to frames, check shapes.
    let dims = x0.dims().to_vec();
    let (frames, flat_dims) = match dims.as_slice() {
        [k, c, h, w] => (*k, (*k, *c, *h, *w)),
        [b, k, c, h, w] => (*k, (b * k, *c, *h, *w)),
        _ => {
            return Err(Error::Internal(format!(
                "training batch has shape {dims:?}, expected [K,C,H,W] or [B,K,C,H,W]"
            )))
        }
    };
    if noise.dims() != dims.as_slice() {
        return Err(Error::Internal(format!(
            "noise has shape {:?}, the batch {dims:?}",
            noise.dims()
        )));
    }
    let x0 = x0.to_dtype(DType::F32)?.reshape(flat_dims)?;
    let noise = noise.to_dtype(DType::F32)?.reshape(flat_dims)?;
    check_input(net.config(), &x0, sigma)?;
    let sig_values = sigma
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if let Some(s) = sig_values.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(Error::param(
            "noise level",
            format!("training noise level {s} (must be finite and > 0)"),
        ));
    }
    let device = x0.device().clone();
    let sc = edm.frame_scalings(sigma, &device)?;
    let sig = sigma
        .to_dtype(DType::F32)?
        .to_device(&device)?
        .reshape((flat_dims.0, 1, 1, 1))?;

    // 2. Noisy input y = x0c + sigma n (centred units), the network's target.
    let x0c = (x0 - DATA_OFFSET)?;
    let y = (&x0c + noise.broadcast_mul(&sig)?)?;
    let target = (x0c - y.broadcast_mul(&sc.c_skip)?)?.broadcast_div(&sc.c_out)?;

    // 3. Network prediction (training runs in f32) and the mean squared error.
    let xin = y.broadcast_mul(&sc.c_in)?.to_dtype(net.dtype())?;
    let f = net_forward(net, &xin, &sc.c_noise, frames)?.to_dtype(DType::F32)?;
    Ok((f - target)?.sqr()?.mean_all()?)
}

/// Forward over [N, C, H, W] made of clips of `frames` frames.
fn net_forward(net: &VideoUNet, x: &Tensor, c_noise: &Tensor, frames: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if frames == n {
        return net.forward(x, c_noise);
    }
    let b = n / frames;
    let y = net.forward_clips(
        &x.reshape((b, frames, c, h, w))?,
        &c_noise.reshape((b, frames))?,
    )?;
    Ok(y.reshape((n, c, h, w))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init_varmap, load_bytes, to_bytes};
    use crate::sampling::noise::fill_planar;

    /// Deterministic test images in [0, 1]: counter-based noise squashed into range.
    fn image(seed: u64, k: usize, h: usize, w: usize) -> Tensor {
        let mut v = vec![0f32; k * 3 * h * w];
        for (f, chunk) in v.chunks_mut(3 * h * w).enumerate() {
            fill_planar(seed, f as i64, 0, 0, 0, w, h, 3, chunk);
        }
        let v: Vec<f32> = v.iter().map(|z| 0.5 + 0.2 * z.tanh()).collect();
        Tensor::from_vec(v, (k, 3, h, w), &Device::Cpu).unwrap()
    }

    fn sigmas(v: &[f32]) -> Tensor {
        Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()
    }

    fn tiny_model(seed: u64) -> Model {
        let cfg = UNetConfig::tiny();
        let (vm, _) = init_varmap(&cfg, seed, &Device::Cpu).unwrap();
        load_bytes(&to_bytes(&vm, &cfg).unwrap(), &Device::Cpu, DType::F32).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn edm_scalings() {
        let edm = Edm::new(0.25);
        let z = edm.scalings(0.0);
        assert_eq!((z.c_skip, z.c_out), (1.0, 0.0));
        assert!(z.c_noise.is_finite() && z.c_in.is_finite());
        let t = edm.scalings(1e-7);
        assert!((t.c_skip - 1.0).abs() < 1e-9 && t.c_out < 1e-6);
        // At sigma = sigma_data the skip and the network share the work equally.
        let m = edm.scalings(0.25);
        assert!((m.c_skip - 0.5).abs() < 1e-12);
        assert!((m.c_out - 0.25 / 2f64.sqrt()).abs() < 1e-12);
        assert!((m.c_in - 1.0 / (0.25 * 2f64.sqrt())).abs() < 1e-12);
        assert!((m.c_noise - 0.25f64.ln() / 4.0).abs() < 1e-12);
        // Large sigma: the network's output dominates, scaled to the data's spread.
        let l = edm.scalings(100.0);
        assert!(l.c_skip < 1e-5 && (l.c_out - 0.25).abs() < 1e-3);
        assert_eq!(edm.scalings(f64::NAN), z);
    }

    #[test]
    fn denoise_keeps_shape_for_any_window_and_size() {
        let model = tiny_model(1);
        for (k, h, w) in [(1, 32, 32), (3, 29, 37), (5, 8, 8), (2, 1, 3)] {
            let x = image(5, k, h, w);
            let s = sigmas(&vec![0.2; k]);
            let d = model.denoise(&x, &s).unwrap();
            assert_eq!(d.dims(), &[k, 3, h, w]);
            assert_eq!(d.dtype(), DType::F32);
            let v = d.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(v.iter().all(|x| x.is_finite()));
        }
    }

    #[test]
    fn denoise_refuses_bad_input() {
        let model = tiny_model(1);
        let x = image(5, 2, 8, 8);
        assert!(model.denoise(&x, &sigmas(&[0.1])).is_err());
        let gray = Tensor::zeros((2, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(model.denoise(&gray, &sigmas(&[0.1, 0.1])).is_err());
        let flat = Tensor::zeros((3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(model.denoise(&flat, &sigmas(&[0.1])).is_err());
    }

    #[test]
    fn tiny_sigma_returns_the_input() {
        let model = tiny_model(2);
        let x = image(6, 3, 16, 24);
        let d = model.denoise(&x, &sigmas(&[1e-6; 3])).unwrap();
        assert!(max_abs_diff(&d, &x) < 1e-4);
        // ...while a large sigma does not.
        let d = model.denoise(&x, &sigmas(&[1.0; 3])).unwrap();
        assert!(max_abs_diff(&d, &x) > 1e-2);
    }

    /// Frames are denoised jointly: changing frame 0 changes frame 1's output when temporal
    /// mixing is on, and leaves it bit-identical when it is off.
    #[test]
    fn temporal_mixing_mixes_frames() {
        for temporal in [true, false] {
            let mut cfg = UNetConfig::tiny();
            cfg.temporal = temporal;
            let (vm, _) = init_varmap(&cfg, 3, &Device::Cpu).unwrap();
            let model =
                load_bytes(&to_bytes(&vm, &cfg).unwrap(), &Device::Cpu, DType::F32).unwrap();
            let x = image(7, 3, 16, 16);
            let other = image(8, 1, 16, 16);
            let y = Tensor::cat(&[&other, &x.narrow(0, 1, 2).unwrap()], 0).unwrap();
            let s = sigmas(&[0.3; 3]);
            let dx = model.denoise(&x, &s).unwrap();
            let dy = model.denoise(&y, &s).unwrap();
            let d1 = max_abs_diff(&dx.get(1).unwrap(), &dy.get(1).unwrap());
            if temporal {
                assert!(d1 > 1e-6, "frame 1 ignores frame 0 ({d1})");
            } else {
                assert_eq!(d1, 0.0);
            }
        }
    }

    /// An output pixel depends only on inputs within `receptive_radius`: the property that
    /// lets overlapping tiles agree. Checked on both the fused (inference) and the plain
    /// (training) network paths.
    #[test]
    fn output_depends_only_on_the_neighbourhood() {
        let cfg = UNetConfig::tiny();
        let r = cfg.receptive_radius();
        let (h, w) = (16, 2 * r + 32);
        let w = w.div_ceil(cfg.size_multiple()) * cfg.size_multiple();
        let (vm, plain_net) = init_varmap(&cfg, 4, &Device::Cpu).unwrap();
        let model = load_bytes(&to_bytes(&vm, &cfg).unwrap(), &Device::Cpu, DType::F32).unwrap();
        let x = (image(9, 1, h, w) - 0.5).unwrap();
        // Change the last column only.
        let col = Tensor::full(3f32, (1, 3, h, 1), &Device::Cpu).unwrap();
        let y = Tensor::cat(&[&x.narrow(3, 0, w - 1).unwrap(), &col], 3).unwrap();
        let c_noise = sigmas(&[-0.5]);
        for net in [model.net(), &plain_net] {
            let fx = net.forward(&x, &c_noise).unwrap();
            let fy = net.forward(&y, &c_noise).unwrap();
            let far = w - 1 - r - 1;
            let unchanged = max_abs_diff(
                &fx.narrow(3, 0, far).unwrap(),
                &fy.narrow(3, 0, far).unwrap(),
            );
            assert_eq!(unchanged, 0.0, "pixels farther than {r} px changed");
            let near = max_abs_diff(
                &fx.narrow(3, w - 8, 8).unwrap(),
                &fy.narrow(3, w - 8, 8).unwrap(),
            );
            assert!(near > 0.0);
        }
    }

    /// The fused CPU inference path and the differentiable path compute the same network.
    #[test]
    fn fused_and_plain_paths_agree() {
        let cfg = UNetConfig::tiny();
        let (vm, plain_net) = init_varmap(&cfg, 5, &Device::Cpu).unwrap();
        let model = Model::from_varmap(&vm, &cfg, &Device::Cpu).unwrap();
        let x = (image(10, 3, 24, 40) - 0.5).unwrap();
        let c_noise = sigmas(&[-1.0, -0.5, 0.1]);
        let a = model.net().forward(&x, &c_noise).unwrap();
        let b = plain_net.forward(&x, &c_noise).unwrap();
        let scale = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(scale > 0.0);
        assert!(max_abs_diff(&a, &b) < 1e-4 * scale.max(1.0));
        // Clips in a batch are mixed only within themselves.
        let clips = x.reshape((1, 3, 3, 24, 40)).unwrap();
        let c = model
            .net()
            .forward_clips(&clips, &c_noise.reshape((1, 3)).unwrap())
            .unwrap();
        assert_eq!(max_abs_diff(&c.reshape((3, 3, 24, 40)).unwrap(), &a), 0.0);
    }

    #[test]
    fn loss_is_finite_and_training_reduces_it() {
        use candle_nn::{AdamW, Optimizer, ParamsAdamW};
        let cfg = UNetConfig::tiny();
        let (vm, net) = init_varmap(&cfg, 6, &Device::Cpu).unwrap();
        let edm = Edm::new(cfg.sigma_data);
        // Two clips of three 16x16 frames, one noise level per frame.
        let x0 = image(11, 6, 16, 16).reshape((2, 3, 3, 16, 16)).unwrap();
        let noise = (image(12, 6, 16, 16) - 0.5)
            .unwrap()
            .affine(5.0, 0.0)
            .unwrap();
        let noise = noise.reshape((2, 3, 3, 16, 16)).unwrap();
        let sigma =
            Tensor::from_slice(&[0.05f32, 0.1, 0.2, 0.4, 0.8, 0.02], (2, 3), &Device::Cpu).unwrap();
        let mut opt = AdamW::new(
            vm.all_vars(),
            ParamsAdamW {
                lr: 2e-3,
                ..Default::default()
            },
        )
        .unwrap();
        let first = loss(&net, &edm, &x0, &sigma, &noise)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(first.is_finite() && first > 0.0);
        for _ in 0..8 {
            let l = loss(&net, &edm, &x0, &sigma, &noise).unwrap();
            opt.backward_step(&l).unwrap();
        }
        let last = loss(&net, &edm, &x0, &sigma, &noise)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(last < 0.9 * first, "loss {first} -> {last}");
        // Zero noise levels have no weight in EDM's loss: refused, not NaN.
        let zero = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(loss(&net, &edm, &x0, &zero, &noise).is_err());
    }

    /// One frame's loss equals EDM's weighted error of the denoiser built from the same net.
    #[test]
    fn loss_matches_weighted_denoiser_error() {
        let model = tiny_model(7);
        let x0 = image(13, 2, 16, 16);
        let noise = (image(14, 2, 16, 16) - 0.5).unwrap();
        let s = [0.1f32, 0.3];
        let l = loss(model.net(), model.edm(), &x0, &sigmas(&s), &noise).unwrap();
        let sig = Tensor::from_slice(&s, (2, 1, 1, 1), &Device::Cpu).unwrap();
        let y = (&x0 + noise.broadcast_mul(&sig).unwrap()).unwrap();
        let d = model.denoise(&y, &sigmas(&s)).unwrap();
        let sd = 0.25f64;
        let mut want = 0.0;
        for (k, &sk) in s.iter().enumerate() {
            let sk = sk as f64;
            let lambda = (sk * sk + sd * sd) / (sk * sd).powi(2);
            let e = (d.get(k).unwrap() - x0.get(k).unwrap())
                .unwrap()
                .sqr()
                .unwrap();
            want += lambda * e.mean_all().unwrap().to_scalar::<f32>().unwrap() as f64 / 2.0;
        }
        let got = l.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
    }
}

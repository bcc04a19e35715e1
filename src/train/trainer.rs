//! The training loop: random K-frame crops at random EDM noise levels, the EDM-weighted denoising
//! loss from `model::loss`, AdamW, an EMA of the weights (what gets shipped). Checkpoints that
//! resume bit-identically are in `checkpoint.rs`, hyperparameters and schedules in `hyper.rs`. Offline: produces the weights file the render path loads.
//!
//! Determinism: every random choice of step `s` (window, crop, flips, sigmas) comes from
//! `Rng::new(seed, s, b)` and every noise pixel from `vdiff::sampling::noise` keyed by the seed and
//! a per-(step, window, frame) index, so a run is a pure function of (seed, data, config) and a
//! checkpoint only needs the step to continue the same sequence.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{Optimizer, ParamsAdamW};
use candle_nn::VarMap;

use super::data::Dataset;
use super::hyper::Hyper;
use super::optim::AdamW;
use super::rng::{hash_words, Rng};
use crate::model::{self, Edm, UNetConfig, VideoUNet};
use crate::{Error, Result};

/// One step's numbers, for progress display and the loss log.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// Steps completed after this one.
    pub step: u64,
    pub loss: f32,
    pub loss_smooth: f64,
    pub lr: f64,
    pub grad_norm: f32,
}

pub struct Trainer {
    pub(super) cfg: UNetConfig,
    pub(super) hyper: Hyper,
    pub(super) _varmap: VarMap,
    pub(super) net: VideoUNet,
    pub(super) edm: Edm,
    pub(super) names: Vec<String>,
    pub(super) vars: Vec<Var>,
    pub(super) ema: Vec<Tensor>,
    pub(super) opt: AdamW,
    pub(super) step: u64,
    pub(super) data: Dataset,
    pub(super) data_dirs: Vec<PathBuf>,
    pub(super) init: Option<PathBuf>,
    pub(super) device: Device,
    pub(super) loss_smooth: Option<f64>,
    pub(super) noise_seed: u64,
}

/// Reads the model config stored in a weights file's metadata (`vdiff.config`).
pub fn read_weights_config(path: &Path) -> Result<UNetConfig> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format!("reading model file {}", path.display()), e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::model(path, format!("not a safetensors file ({e})")))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(model::CONFIG_KEY))
        .ok_or_else(|| {
            Error::model(
                path,
                format!("has no `{}` metadata: not a VDiff model", model::CONFIG_KEY),
            )
        })?;
    UNetConfig::from_json(json).map_err(|e| Error::model(path, e))
}

/// Turns `noise` (unit Gaussian) into the noise that footage stores when the noisy value
/// `x0 + sigma * noise` is clipped to 0..1, so that `x0 + sigma * noise` is that clipped value.
fn clip_noise(x0: &[f32], sigma: f32, noise: &mut [f32]) {
    for (n, &x) in noise.iter_mut().zip(x0) {
        *n = ((x + sigma * *n).clamp(0.0, 1.0) - x) / sigma;
    }
}

/// Variables of a VarMap sorted by name, so every pass over them has a fixed order.
fn sorted_vars(vm: &VarMap) -> Result<(Vec<String>, Vec<Var>)> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| Error::Internal("model variables are poisoned".into()))?;
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v.into_iter().unzip())
}

impl Trainer {
    /// A fresh run: weights from `init_varmap(cfg, seed)`, or from the weights file `init`
    /// (fine-tuning; its stored config replaces `cfg`).
    pub fn new(
        cfg: UNetConfig,
        hyper: Hyper,
        data_dirs: Vec<PathBuf>,
        init: Option<PathBuf>,
        device: &Device,
    ) -> Result<Trainer> {
        hyper.validate()?;
        let cfg = match &init {
            Some(p) => read_weights_config(p)?,
            None => cfg,
        };
        // Absolute paths, so that `--resume` from another folder still finds the data.
        let data_dirs: Vec<PathBuf> = data_dirs
            .into_iter()
            .map(|d| std::fs::canonicalize(&d).unwrap_or(d))
            .collect();
        let data = Dataset::open(&data_dirs, hyper.frames, hyper.crop)?;
        let mut t = Trainer::build(cfg, hyper, data, data_dirs, device)?;
        if let Some(p) = &init {
            t.load_weights(p)?;
            t.ema = t
                .vars
                .iter()
                .map(|v| v.as_tensor().copy().map(|t| t.detach()))
                .collect::<candle_core::Result<_>>()?;
            t.init = Some(p.clone());
        }
        Ok(t)
    }

    pub(super) fn build(
        cfg: UNetConfig,
        hyper: Hyper,
        data: Dataset,
        data_dirs: Vec<PathBuf>,
        device: &Device,
    ) -> Result<Trainer> {
        let m = cfg.size_multiple() as u32;
        if m > 0 && !hyper.crop.is_multiple_of(m) {
            return Err(Error::param(
                "crop",
                format!("{} must be a multiple of {m} for this model", hyper.crop),
            ));
        }
        let (varmap, net) = model::init_varmap(&cfg, hyper.seed, device)?;
        let (names, vars) = sorted_vars(&varmap)?;
        let ema = vars
            .iter()
            .map(|v| v.as_tensor().copy().map(|t| t.detach()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let params = ParamsAdamW {
            lr: hyper.lr_at(0),
            beta1: hyper.beta1,
            beta2: hyper.beta2,
            eps: hyper.eps,
            weight_decay: hyper.weight_decay,
        };
        let opt = AdamW::new(vars.clone(), params)?;
        let noise_seed = hash_words(&[hyper.seed, 0x7472_6169_6e00]); // "train": not the render streams
        let edm = Edm::new(cfg.sigma_data);
        Ok(Trainer {
            cfg,
            hyper,
            _varmap: varmap,
            edm,
            net,
            names,
            vars,
            ema,
            opt,
            step: 0,
            data,
            data_dirs,
            init: None,
            device: device.clone(),
            loss_smooth: None,
            noise_seed,
        })
    }

    /// Overwrites the live weights with the tensors of a model file (same names and shapes).
    fn load_weights(&mut self, path: &Path) -> Result<()> {
        let loaded = candle_core::safetensors::load(path, &self.device)
            .map_err(|e| Error::model(path, format!("cannot read weights ({e})")))?;
        for (name, var) in self.names.iter().zip(&self.vars) {
            let t = loaded.get(name).ok_or_else(|| {
                Error::model(
                    path,
                    format!("has no tensor `{name}`, which the config needs"),
                )
            })?;
            if t.dims() != var.dims() {
                return Err(Error::model(
                    path,
                    format!(
                        "tensor `{name}` has shape {:?}, the config expects {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(&t.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    /// Cools the learning rate down over the last `steps` steps of a run ending at `end` (see
    /// [`Hyper::cool_down`]); a resumed run may add one. It must not start before the current
    /// step: the steps already taken keep the learning rate they had.
    pub fn set_cool_down(&mut self, steps: u64, end: u64) -> Result<()> {
        let start = end.saturating_sub(steps);
        if steps > 0 && start < self.step {
            return Err(Error::param(
                "cooldown",
                format!(
                    "a cool-down of {steps} steps ending at step {end} would start at step \
                     {start}, before this run's step {}; use at most {} steps",
                    self.step,
                    end.saturating_sub(self.step)
                ),
            ));
        }
        self.hyper.cool_down(steps, end);
        Ok(())
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    pub fn dataset(&self) -> &Dataset {
        &self.data
    }

    /// The clean windows, sigmas and noise of step `s` (a pure function of the seed and `s`):
    /// x0 [B, K, 3, P, P], sigma [B, K], noise like x0. The windows are decoded and their noise
    /// drawn on several threads (each window depends only on its index, so the result does not
    /// depend on the thread count); on a GPU this CPU work would otherwise bound the step rate.
    pub fn batch(&self, s: u64) -> Result<(Tensor, Tensor, Tensor)> {
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        self.batch_on_threads(s, threads)
    }

    /// [`Trainer::batch`] assembled on at most `threads` threads (the same values for any count).
    pub fn batch_on_threads(&self, s: u64, threads: usize) -> Result<(Tensor, Tensor, Tensor)> {
        let h = &self.hyper;
        let (k, p) = (h.frames, h.crop as usize);
        let n = 3 * p * p;
        let mut x0 = vec![0.0f32; h.batch * k * n];
        let mut sig = vec![0.0f32; h.batch * k];
        let mut noise = vec![0.0f32; h.batch * k * n];
        let threads = threads.clamp(1, h.batch.max(1));
        let per = h.batch.div_ceil(threads).max(1);
        std::thread::scope(|scope| -> Result<()> {
            let jobs: Vec<_> = x0
                .chunks_mut(per * k * n)
                .zip(sig.chunks_mut(per * k))
                .zip(noise.chunks_mut(per * k * n))
                .enumerate()
                .map(|(j, ((x0, sig), noise))| {
                    scope.spawn(move || -> Result<()> {
                        for (i, ((x0, sig), noise)) in x0
                            .chunks_mut(k * n)
                            .zip(sig.chunks_mut(k))
                            .zip(noise.chunks_mut(k * n))
                            .enumerate()
                        {
                            self.window(s, j * per + i, x0, sig, noise)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for job in jobs {
                job.join()
                    .map_err(|_| Error::Internal("a batch thread panicked".into()))??;
            }
            Ok(())
        })?;
        let shape = (h.batch, k, 3, p, p);
        Ok((
            Tensor::from_vec(x0, shape, &self.device)?,
            Tensor::from_vec(sig, (h.batch, k), &self.device)?,
            Tensor::from_vec(noise, shape, &self.device)?,
        ))
    }

    /// Window `b` of step `s`: its clean frames, sigmas and noise, into the given slices.
    fn window(
        &self,
        s: u64,
        b: usize,
        x0: &mut [f32],
        sig: &mut [f32],
        noise: &mut [f32],
    ) -> Result<()> {
        let h = &self.hyper;
        let (k, p) = (h.frames, h.crop as usize);
        let n = 3 * p * p;
        let mut rng = Rng::new(h.seed, s, b as u64);
        let crop = self.data.sample(&mut rng);
        sig.copy_from_slice(&h.sample_sigmas(&mut rng));
        // Drawn only when asked for, so runs without clipping keep their random streams.
        let clip = h.clip_noise > 0.0 && rng.uniform() < h.clip_noise;
        x0.copy_from_slice(&self.data.load(&crop)?);
        for f in 0..k {
            // One noise stream per (step, window, frame): independent everywhere.
            let idx = (s.wrapping_mul(h.batch as u64).wrapping_add(b as u64))
                .wrapping_mul(k as u64)
                .wrapping_add(f as u64);
            crate::sampling::noise::fill_planar(
                self.noise_seed,
                idx as i64,
                0,
                0,
                0,
                p,
                p,
                3,
                &mut noise[f * n..(f + 1) * n],
            );
            if clip {
                clip_noise(
                    &x0[f * n..(f + 1) * n],
                    sig[f],
                    &mut noise[f * n..(f + 1) * n],
                );
            }
        }
        Ok(())
    }

    /// Mean EDM loss over the batch (each window denoised jointly by the video model).
    fn batch_loss(&self, x0: &Tensor, sigma: &Tensor, noise: &Tensor) -> Result<Tensor> {
        model::loss(&self.net, &self.edm, x0, sigma, noise)
    }

    /// Loss of the current weights on step `s`'s batch, without training (for probes and tests).
    pub fn eval_loss(&self, s: u64) -> Result<f32> {
        let (x0, sigma, noise) = self.batch(s)?;
        Ok(self
            .batch_loss(&x0, &sigma, &noise)?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?)
    }

    /// Runs one optimisation step and returns its numbers.
    pub fn train_step(&mut self) -> Result<StepStats> {
        let s = self.step;
        let (x0, sigma, noise) = self.batch(s)?;
        let loss = self.batch_loss(&x0, &sigma, &noise)?;
        let loss_v = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if !loss_v.is_finite() {
            return Err(Error::Other(format!(
                "training diverged at step {s} (loss {loss_v}); start a new run from the last \
                 saved model with a lower learning rate (`vdiff train --init MODEL --lr 2e-4 ...`)"
            )));
        }
        let mut grads = loss.backward()?;
        // Global gradient norm over all variables in name order (fixed summation order).
        let mut sq = Vec::with_capacity(self.vars.len());
        for v in &self.vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq.push(g.sqr()?.sum_all()?);
            }
        }
        let norm = if sq.is_empty() {
            0.0
        } else {
            Tensor::stack(&sq, 0)?
                .sum_all()?
                .to_dtype(DType::F32)?
                .to_scalar::<f32>()?
                .sqrt()
        };
        if self.hyper.grad_clip > 0.0 && f64::from(norm) > self.hyper.grad_clip {
            let scale = self.hyper.grad_clip / f64::from(norm);
            for v in &self.vars {
                if let Some(g) = grads.remove(v.as_tensor()) {
                    grads.insert(v.as_tensor(), (g * scale)?);
                }
            }
        }
        let lr = self.hyper.lr_at(s);
        self.opt.set_learning_rate(lr);
        self.opt.step(&grads)?;
        let d = self.hyper.ema_at(s);
        for (e, v) in self.ema.iter_mut().zip(&self.vars) {
            // detach: an op on a Var records its inputs for backprop, and without this every EMA
            // tensor would keep the previous one alive (memory growing by the model size per step).
            *e = ((&*e * d)? + (v.as_tensor() * (1.0 - d))?)?.detach();
        }
        self.step += 1;
        let smooth = match self.loss_smooth {
            None => f64::from(loss_v),
            Some(p) => 0.98 * p + 0.02 * f64::from(loss_v),
        };
        self.loss_smooth = Some(smooth);
        Ok(StepStats {
            step: self.step,
            loss: loss_v,
            loss_smooth: smooth,
            lr,
            grad_norm: norm,
        })
    }

    /// The live (not EMA) weights by name, copied (for tests and diagnostics).
    pub fn weights(&self) -> Result<BTreeMap<String, Tensor>> {
        self.names
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    /// The EMA weights by name.
    pub fn ema_weights(&self) -> BTreeMap<String, Tensor> {
        self.names
            .iter()
            .cloned()
            .zip(self.ema.iter().cloned())
            .collect()
    }

    /// Writes the EMA weights as a model file (the shipped format, config in its metadata).
    pub fn save_model(&self, path: &Path) -> Result<()> {
        let vm = VarMap::new();
        {
            let mut data = vm
                .data()
                .lock()
                .map_err(|_| Error::Internal("model variables are poisoned".into()))?;
            for (n, e) in self.names.iter().zip(&self.ema) {
                data.insert(n.clone(), Var::from_tensor(e)?);
            }
        }
        model::save(&vm, &self.cfg, path)
    }
}

#[cfg(test)]
mod tests {
    use super::clip_noise;

    #[test]
    fn clipped_noise_lands_inside_the_range_and_is_untouched_away_from_its_ends() {
        let x0 = [0.0f32, 0.02, 0.5, 0.98, 1.0, 0.3];
        let orig = [-1.0f32, -2.0, 1.5, 2.0, 0.5, -0.5];
        let sigma = 0.1;
        let mut n = orig;
        clip_noise(&x0, sigma, &mut n);
        for i in 0..x0.len() {
            let v = x0[i] + sigma * n[i];
            assert!((-1e-6..=1.0 + 1e-6).contains(&v), "{i}: {v}");
            let unclipped = x0[i] + sigma * orig[i];
            if (0.0..=1.0).contains(&unclipped) {
                assert!(
                    (n[i] - orig[i]).abs() < 1e-5,
                    "{i}: {} vs {}",
                    n[i],
                    orig[i]
                );
            } else {
                assert!((v - unclipped.clamp(0.0, 1.0)).abs() < 1e-6, "{i}: {v}");
            }
        }
        // Below black, above white: the stored value is the end itself.
        assert_eq!(x0[0] + sigma * n[0], 0.0);
        assert!((x0[3] + sigma * n[3] - 1.0).abs() < 1e-6);
    }
}

//! The training loop: random K-frame crops at random EDM noise levels, the EDM-weighted denoising
//! loss from `model::loss`, AdamW, an EMA of the weights (what gets shipped), checkpoints that
//! resume bit-identically. Offline: produces the weights file the render path loads.
//!
//! Determinism: every random choice of step `s` (window, crop, flips, sigmas) comes from
//! `Rng::new(seed, s, b)` and every noise pixel from `vdiff::sampling::noise` keyed by the seed and
//! a per-(step, window, frame) index, so a run is a pure function of (seed, data, config) and a
//! checkpoint only needs the step to continue the same sequence.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{Optimizer, ParamsAdamW};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, STATE_KEY};
use super::data::Dataset;
use super::optim::AdamW;
use super::rng::{hash_words, Rng};
use crate::model::{self, Edm, UNetConfig, VideoUNet};
use crate::{Error, Result};

/// Training hyperparameters: everything that changes the weights besides data and model config.
/// Stored in checkpoints; a resumed run uses the stored values.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Hyper {
    pub seed: u64,
    /// Windows per step.
    pub batch: usize,
    /// Frames per window (K).
    pub frames: usize,
    /// Square crop side in pixels (a multiple of the model's size multiple).
    pub crop: u32,
    pub lr: f64,
    /// Linear learning-rate warm-up, in steps.
    pub warmup: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// EMA decay of the shipped weights (with a 1+s / 10+s warm-up).
    pub ema_decay: f64,
    /// log(sigma) ~ N(p_mean, p_std^2), sigma in image units [0,1]: the EDM log-normal moved to
    /// image units. -2.9 / 1.2: median 0.055 (14/255), 95% of draws in 0.005..0.6.
    pub p_mean: f64,
    pub p_std: f64,
    /// Probability that a window's frames get independent sigmas instead of one shared sigma
    /// (the sampler's per-frame schedules put frames of one window at different levels).
    pub per_frame_sigma: f64,
    /// Global gradient-norm clip (0: off).
    pub grad_clip: f64,
    /// Cool-down: from step `cooldown_start` the learning rate falls along a half cosine to
    /// `COOLDOWN_FLOOR` x lr over `cooldown_steps` steps and stays there (0 steps: none).
    #[serde(default)]
    pub cooldown_start: u64,
    #[serde(default)]
    pub cooldown_steps: u64,
}

/// Where a cool-down ends, as a fraction of the learning rate.
pub const COOLDOWN_FLOOR: f64 = 0.05;

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            seed: 0,
            batch: 4,
            frames: 5,
            crop: 96,
            // 5e-4: on the prepared opencv-doc data the earlier, 4x smaller network learned
            // faster at 1e-3 than at 2e-4 (mean loss 0.84 against 0.90 over steps 400-470), but
            // the default network at 1e-3 collapsed at step 2650 (loss back to 1.0, gradients
            // gone); 5e-4 carried it through the 4000 steps after that.
            lr: 5e-4,
            warmup: 200,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            ema_decay: 0.998,
            p_mean: -2.9,
            p_std: 1.2,
            per_frame_sigma: 0.25,
            grad_clip: 1.0,
            cooldown_start: 0,
            cooldown_steps: 0,
        }
    }
}

impl Hyper {
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, msg: &str| Err(Error::param(name, msg.to_string()));
        if self.batch == 0 {
            return bad("batch", "must be at least 1");
        }
        if self.frames == 0 {
            return bad("frames", "must be at least 1");
        }
        if self.crop < 8 {
            return bad("crop", "must be at least 8 pixels");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad("ema", "decay must be in [0, 1)");
        }
        if !(self.p_std >= 0.0 && self.p_mean.is_finite() && self.p_std.is_finite()) {
            return bad("sigma distribution", "p_mean must be finite and p_std >= 0");
        }
        if !(0.0..=1.0).contains(&self.per_frame_sigma) {
            return bad("per-frame-sigma", "must be a probability in [0, 1]");
        }
        Ok(())
    }

    /// Learning rate at step `s` (0-based): linear warm-up, then constant, then the cool-down.
    pub fn lr_at(&self, s: u64) -> f64 {
        let warm = if self.warmup == 0 {
            1.0
        } else {
            ((s + 1) as f64 / self.warmup as f64).min(1.0)
        };
        let cool = if self.cooldown_steps == 0 || s < self.cooldown_start {
            1.0
        } else {
            let t = ((s - self.cooldown_start) as f64 / self.cooldown_steps as f64).min(1.0);
            COOLDOWN_FLOOR + (1.0 - COOLDOWN_FLOOR) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        };
        self.lr * warm * cool
    }

    /// Schedules a cool-down over the last `steps` steps of a run that ends at step `end`.
    pub fn cool_down(&mut self, steps: u64, end: u64) {
        self.cooldown_steps = steps;
        self.cooldown_start = end.saturating_sub(steps);
    }

    /// EMA decay applied after step `s`.
    pub fn ema_at(&self, s: u64) -> f64 {
        self.ema_decay.min((1.0 + s as f64) / (10.0 + s as f64))
    }

    /// Noise levels of one window's K frames.
    pub fn sample_sigmas(&self, rng: &mut Rng) -> Vec<f32> {
        let draw = |rng: &mut Rng| (self.p_mean + self.p_std * rng.normal()).exp() as f32;
        if rng.uniform() < self.per_frame_sigma {
            (0..self.frames).map(|_| draw(rng)).collect()
        } else {
            vec![draw(rng); self.frames]
        }
    }
}

/// The state a checkpoint's metadata holds (the tensors hold the rest).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub format: String,
    /// Steps completed.
    pub step: u64,
    /// AdamW updates applied (equals `step` unless a future version skips updates).
    pub adam_step: u64,
    pub hyper: Hyper,
    pub config: UNetConfig,
    pub data: Vec<PathBuf>,
    /// Where the data randomness stands: counter-based, so the next step's index is enough.
    pub rng: String,
    /// Smoothed loss for the log, so a resumed log continues the same curve.
    pub loss_smooth: Option<f64>,
    /// The weights file training started from, if fine-tuning.
    pub init: Option<PathBuf>,
}

const FORMAT: &str = "vdiff-train-checkpoint/1";

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
    cfg: UNetConfig,
    hyper: Hyper,
    _varmap: VarMap,
    net: VideoUNet,
    edm: Edm,
    names: Vec<String>,
    vars: Vec<Var>,
    ema: Vec<Tensor>,
    opt: AdamW,
    step: u64,
    data: Dataset,
    data_dirs: Vec<PathBuf>,
    init: Option<PathBuf>,
    device: Device,
    loss_smooth: Option<f64>,
    noise_seed: u64,
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

/// Variables of a VarMap sorted by name, so every pass over them has a fixed order.
fn sorted_vars(vm: &VarMap) -> Result<(Vec<String>, Vec<Var>)> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| Error::Other("model variables are poisoned".into()))?;
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

    fn build(
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

    /// Continues a run from a checkpoint. `data_dirs` replaces the stored data folders if given.
    pub fn resume(
        path: &Path,
        data_dirs: Option<Vec<PathBuf>>,
        device: &Device,
    ) -> Result<Trainer> {
        let mut ck = checkpoint::load(path, device)?;
        let state: State = ck
            .metadata
            .get(STATE_KEY)
            .ok_or_else(|| {
                Error::param(
                    "resume",
                    format!("{} is not a vdiff training checkpoint", path.display()),
                )
            })
            .and_then(|j| {
                serde_json::from_str(j).map_err(|e| {
                    Error::param(
                        "resume",
                        format!("{}: unreadable state ({e})", path.display()),
                    )
                })
            })?;
        if state.format != FORMAT {
            return Err(Error::param(
                "resume",
                format!(
                    "{}: checkpoint format `{}`, this build reads `{FORMAT}`",
                    path.display(),
                    state.format
                ),
            ));
        }
        let dirs = data_dirs.unwrap_or_else(|| state.data.clone());
        let data = Dataset::open(&dirs, state.hyper.frames, state.hyper.crop)?;
        let mut t = Trainer::build(
            state.config.clone(),
            state.hyper.clone(),
            data,
            dirs,
            device,
        )?;
        let mut moments = Vec::with_capacity(t.vars.len());
        for (i, name) in t.names.clone().iter().enumerate() {
            let w = ck.take(path, &format!("weights.{name}"))?;
            if w.dims() != t.vars[i].dims() {
                return Err(Error::param(
                    "resume",
                    format!("{}: tensor `{name}` has the wrong shape", path.display()),
                ));
            }
            t.vars[i].set(&w)?;
            t.ema[i] = ck.take(path, &format!("ema.{name}"))?;
            moments.push((
                ck.take(path, &format!("adam_m.{name}"))?,
                ck.take(path, &format!("adam_v.{name}"))?,
            ));
        }
        t.opt.restore(state.adam_step as usize, &moments)?;
        t.step = state.step;
        t.loss_smooth = state.loss_smooth;
        t.init = state.init;
        Ok(t)
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
    /// x0 [B, K, 3, P, P], sigma [B, K], noise like x0.
    pub fn batch(&self, s: u64) -> Result<(Tensor, Tensor, Tensor)> {
        let h = &self.hyper;
        let (k, p) = (h.frames, h.crop as usize);
        let n = 3 * p * p;
        let mut x0 = Vec::with_capacity(h.batch * k * n);
        let mut sig = Vec::with_capacity(h.batch * k);
        let mut noise = vec![0.0f32; h.batch * k * n];
        for b in 0..h.batch {
            let mut rng = Rng::new(h.seed, s, b as u64);
            let crop = self.data.sample(&mut rng);
            sig.extend(h.sample_sigmas(&mut rng));
            x0.extend(self.data.load(&crop)?);
            for f in 0..k {
                // One noise stream per (step, window, frame): independent everywhere.
                let idx = (s.wrapping_mul(h.batch as u64).wrapping_add(b as u64))
                    .wrapping_mul(k as u64)
                    .wrapping_add(f as u64);
                let at = (b * k + f) * n;
                crate::sampling::noise::fill_planar(
                    self.noise_seed,
                    idx as i64,
                    0,
                    0,
                    0,
                    p,
                    p,
                    3,
                    &mut noise[at..at + n],
                );
            }
        }
        let shape = (h.batch, k, 3, p, p);
        Ok((
            Tensor::from_vec(x0, shape, &self.device)?,
            Tensor::from_vec(sig, (h.batch, k), &self.device)?,
            Tensor::from_vec(noise, shape, &self.device)?,
        ))
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
                .map_err(|_| Error::Other("model variables are poisoned".into()))?;
            for (n, e) in self.names.iter().zip(&self.ema) {
                data.insert(n.clone(), Var::from_tensor(e)?);
            }
        }
        model::save(&vm, &self.cfg, path)
    }

    /// Writes a checkpoint: weights, EMA, AdamW moments and the state to continue.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut tensors = BTreeMap::new();
        for ((n, v), (e, (m, vv))) in self
            .names
            .iter()
            .zip(&self.vars)
            .zip(self.ema.iter().zip(self.opt.moments()))
        {
            tensors.insert(format!("weights.{n}"), v.as_tensor().clone());
            tensors.insert(format!("ema.{n}"), e.clone());
            tensors.insert(format!("adam_m.{n}"), m);
            tensors.insert(format!("adam_v.{n}"), vv);
        }
        let state = State {
            format: FORMAT.to_string(),
            step: self.step,
            adam_step: self.opt.step_t() as u64,
            hyper: self.hyper.clone(),
            config: self.cfg.clone(),
            data: self.data_dirs.clone(),
            rng: format!(
                "counter-based: streams (seed {}, step, window); next step {}",
                self.hyper.seed, self.step
            ),
            loss_smooth: self.loss_smooth,
            init: self.init.clone(),
        };
        let mut meta = HashMap::new();
        meta.insert(
            STATE_KEY.to_string(),
            serde_json::to_string(&state)
                .map_err(|e| Error::Other(format!("checkpoint state: {e}")))?,
        );
        meta.insert(
            "vdiff.config".to_string(),
            serde_json::to_string(&self.cfg)
                .map_err(|e| Error::Other(format!("checkpoint config: {e}")))?,
        );
        checkpoint::save(path, &tensors, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_noise_levels_cover_the_useful_range() {
        // The claim in `Hyper::p_mean`'s docs: median ~0.055, 95% of draws in ~0.005..0.6.
        let h = Hyper::default();
        let mut v: Vec<f32> = (0..4000)
            .flat_map(|s| h.sample_sigmas(&mut Rng::new(0, s, 0)))
            .collect();
        v.sort_by(f32::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
        assert!((0.045..0.065).contains(&q(0.5)), "median {}", q(0.5));
        assert!((0.004..0.007).contains(&q(0.025)), "2.5% {}", q(0.025));
        assert!((0.45..0.75).contains(&q(0.975)), "97.5% {}", q(0.975));
    }

    #[test]
    fn windows_share_a_sigma_unless_drawn_per_frame() {
        let h = Hyper::default();
        let (mut shared, mut mixed) = (0, 0);
        for s in 0..2000 {
            let v = h.sample_sigmas(&mut Rng::new(3, s, 1));
            assert_eq!(v.len(), h.frames);
            assert!(v.iter().all(|x| x.is_finite() && *x > 0.0));
            if v.iter().all(|x| *x == v[0]) {
                shared += 1;
            } else {
                mixed += 1;
            }
        }
        let frac = mixed as f64 / (shared + mixed) as f64;
        assert!(
            (frac - h.per_frame_sigma).abs() < 0.04,
            "per-frame fraction {frac}"
        );
    }

    #[test]
    fn schedules_and_validation() {
        let h = Hyper {
            warmup: 100,
            ..Hyper::default()
        };
        assert!((h.lr_at(0) - h.lr / 100.0).abs() < 1e-15);
        assert_eq!(h.lr_at(99), h.lr);
        assert_eq!(h.lr_at(5000), h.lr);
        // A cool-down over the last 1000 of 5000 steps: untouched before, halfway down in the
        // middle, at the floor from its end on.
        let mut c = h.clone();
        c.cool_down(1000, 5000);
        assert_eq!((c.cooldown_start, c.cooldown_steps), (4000, 1000));
        assert_eq!(c.lr_at(3999), h.lr);
        assert_eq!(c.lr_at(4000), h.lr);
        let mid = h.lr * (1.0 + COOLDOWN_FLOOR) / 2.0;
        assert!((c.lr_at(4500) - mid).abs() < 1e-12, "{}", c.lr_at(4500));
        assert!(c.lr_at(4400) > c.lr_at(4600));
        assert!((c.lr_at(5000) - h.lr * COOLDOWN_FLOOR).abs() < 1e-15);
        assert_eq!(c.lr_at(9000), c.lr_at(5000));
        // Checkpoints written before the cool-down existed read as "no cool-down".
        let mut old = serde_json::to_value(&h).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.remove("cooldown_start");
        obj.remove("cooldown_steps");
        assert_eq!(serde_json::from_value::<Hyper>(old).unwrap(), h);
        assert!(h.ema_at(0) < 0.2 && h.ema_at(100_000) == h.ema_decay);
        assert!(Hyper {
            batch: 0,
            ..Hyper::default()
        }
        .validate()
        .is_err());
        assert!(Hyper {
            lr: f64::NAN,
            ..Hyper::default()
        }
        .validate()
        .is_err());
        assert!(Hyper {
            ema_decay: 1.0,
            ..Hyper::default()
        }
        .validate()
        .is_err());
        assert!(Hyper::default().validate().is_ok());
    }
}

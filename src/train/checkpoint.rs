//! Training checkpoints: one safetensors file holding the live weights, the EMA weights and the
//! AdamW moments (as f32 tensors under `weights.`, `ema.`, `adam_m.`, `adam_v.` prefixes) and,
//! in the metadata, the step, the optimizer step count, the hyperparameters, the model config and
//! the data position. The data position is just the step: every random choice of step `s` is a
//! pure function of (seed, s), so nothing else is needed to resume bit-identically.
//! Written to a temporary file and renamed, so a crash never leaves a torn checkpoint.
//! [`Trainer::save_checkpoint`] and [`Trainer::resume`] write and read a run's whole state.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use serde::{Deserialize, Serialize};

use super::data::Dataset;
use super::hyper::Hyper;
use super::trainer::Trainer;
use crate::model::UNetConfig;
use crate::{Error, Result};

/// Metadata key of the checkpoint's JSON state.
pub const STATE_KEY: &str = "vdiff.train";

fn ckpt_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::param("checkpoint", format!("{}: {}", path.display(), msg.into()))
}

/// Saves named tensors (converted to f32 on the CPU) and string metadata.
pub fn save(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        bytes.push((name.clone(), t.dims().to_vec(), b));
    }
    let mut views = Vec::with_capacity(bytes.len());
    for (name, shape, b) in &bytes {
        let view = TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| ckpt_err(path, e.to_string()))?;
        views.push((name.as_str(), view));
    }
    let tmp = crate::imageio::temp_path(path);
    safetensors::tensor::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| ckpt_err(path, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })
}

/// A loaded checkpoint file: tensors by name (f32 on `device`) and metadata.
pub struct Loaded {
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
}

pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
    let data = std::fs::read(path)
        .map_err(|e| Error::io(format!("reading checkpoint {}", path.display()), e))?;
    let (_, meta) = SafeTensors::read_metadata(&data)
        .map_err(|e| ckpt_err(path, format!("not a safetensors file ({e})")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&data).map_err(|e| ckpt_err(path, e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(ckpt_err(
                path,
                format!(
                    "tensor `{name}` is {:?}, checkpoints hold f32",
                    view.dtype()
                ),
            ));
        }
        tensors.insert(name, crate::model::io::f32_tensor(&view, device)?);
    }
    Ok(Loaded { tensors, metadata })
}

impl Loaded {
    /// The tensor `name`, or an error naming the file.
    pub fn take(&mut self, path: &Path, name: &str) -> Result<Tensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| ckpt_err(path, format!("has no tensor `{name}`")))
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

impl Trainer {
    /// Continues a run from a checkpoint. `data_dirs` replaces the stored data folders if given.
    pub fn resume(
        path: &Path,
        data_dirs: Option<Vec<PathBuf>>,
        device: &Device,
    ) -> Result<Trainer> {
        let mut ck = load(path, device)?;
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
                .map_err(|e| Error::Internal(format!("checkpoint state: {e}")))?,
        );
        meta.insert(
            "vdiff.config".to_string(),
            serde_json::to_string(&self.cfg)
                .map_err(|e| Error::Internal(format!("checkpoint config: {e}")))?,
        );
        save(path, &tensors, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        let dev = Device::Cpu;
        let dir = std::env::temp_dir().join(format!("vdiff-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.safetensors");
        let a = Tensor::new(
            &[[1.5f32, -0.0, f32::MIN_POSITIVE], [3.25e-8, 7.0, -1e30]],
            &dev,
        )
        .unwrap();
        let b = Tensor::new(&[0.1f32, 0.2, 0.3], &dev).unwrap();
        let mut t = BTreeMap::new();
        t.insert("weights.a".to_string(), a.clone());
        t.insert("ema.b".to_string(), b.clone());
        let mut m = HashMap::new();
        m.insert(STATE_KEY.to_string(), "{\"step\":3}".to_string());
        save(&path, &t, m).unwrap();
        let mut l = load(&path, &dev).unwrap();
        assert_eq!(l.metadata[STATE_KEY], "{\"step\":3}");
        let a2 = l.take(&path, "weights.a").unwrap();
        assert_eq!(a2.dims(), &[2, 3]);
        let bits = |t: &Tensor| -> Vec<u32> {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&a2), bits(&a));
        assert_eq!(bits(&l.take(&path, "ema.b").unwrap()), bits(&b));
        let e = l.take(&path, "adam_m.a").unwrap_err().to_string();
        assert!(e.contains("adam_m.a"), "{e}");
        std::fs::write(dir.join("bad.safetensors"), b"not a checkpoint").unwrap();
        assert!(load(&dir.join("bad.safetensors"), &dev).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

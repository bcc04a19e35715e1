//! Deterministic initialisation of a fresh video UNet for `vdiff train` (and the placeholder
//! built-in model), and the table of tensors a config implies, which `io` checks files against.
//! Values come from the counter-based `vdiff::sampling::noise`, never from a global RNG.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};

use super::config::UNetConfig;
use super::unet::{Kernels, VideoUNet};
use crate::sampling::noise;
use crate::{Error, Result};

/// One tensor of the network: checkpoint name, shape and how a fresh model initialises it.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

/// Answers every `VarBuilder::get` with zeros and writes down what was asked for: building the
/// network through it yields the exact tensor table, with the network constructor as the one
/// source of truth for names, shapes and init hints.
struct Recorder {
    specs: Arc<Mutex<Vec<ParamSpec>>>,
}

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut specs = self
            .specs
            .lock()
            .map_err(|_| candle_core::Error::Msg("tensor table lock poisoned".into()))?;
        if !specs.iter().any(|p| p.name == name) {
            specs.push(ParamSpec {
                name: name.to_string(),
                shape: s.dims().to_vec(),
                init: h,
            });
        }
        Tensor::zeros(s, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("tensor {name} requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Every tensor a network of this config has, in construction order.
pub fn param_specs(cfg: &UNetConfig) -> Result<Vec<ParamSpec>> {
    let specs = Arc::new(Mutex::new(Vec::new()));
    let vb = VarBuilder::from_backend(
        Box::new(Recorder {
            specs: specs.clone(),
        }),
        DType::F32,
        Device::Cpu,
    );
    VideoUNet::new(vb, cfg, Kernels::Graph)?;
    let specs = specs
        .lock()
        .map_err(|_| Error::Internal("tensor table lock poisoned".into()))?;
    Ok(specs.clone())
}

/// Noise-stream coordinate for a tensor: a hash of its name, so that adding a layer does not
/// change the initial values of the others.
fn name_stream(name: &str) -> i64 {
    let h = blake3::hash(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    i64::from_le_bytes(b)
}

/// Noise stream tag for initialisation (kept away from the sampler's steps 0..=steps).
const INIT_STREAM: u32 = 0x1A17;

fn init_values(spec: &ParamSpec, seed: u64) -> Result<Vec<f32>> {
    let n: usize = spec.shape.iter().product();
    match spec.init {
        Init::Const(v) => Ok(vec![v as f32; n]),
        Init::Randn { mean, stdev } => {
            let stream = name_stream(&spec.name);
            Ok((0..n)
                .map(|i| {
                    let z = noise::gaussian(seed, stream, 0, i as i64, 0, INIT_STREAM);
                    (mean + stdev * z as f64) as f32
                })
                .collect())
        }
        ref other => Err(Error::Internal(format!(
            "tensor {}: unsupported init hint {other:?}",
            spec.name
        ))),
    }
}

/// A fresh, deterministically initialised network: the same (config, seed) gives the same
/// weights on every machine. The returned net shares its tensors with the `VarMap` (train it
/// through `varmap.all_vars()`, save it with `io::save`).
pub fn init_varmap(cfg: &UNetConfig, seed: u64, device: &Device) -> Result<(VarMap, VideoUNet)> {
    let specs = param_specs(cfg)?;
    let varmap = VarMap::new();
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| Error::Internal("VarMap lock poisoned".into()))?;
        for spec in &specs {
            let values = init_values(spec, seed)?;
            let t = Tensor::from_vec(values, spec.shape.as_slice(), device)?;
            data.insert(spec.name.clone(), Var::from_tensor(&t)?);
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let net = VideoUNet::new(vb, cfg, Kernels::Graph)?;
    Ok((varmap, net))
}

/// The VarMap's tensors by name (shared storage, not copies).
pub(crate) fn varmap_tensors(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Internal("VarMap lock poisoned".into()))?;
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(varmap: &VarMap) -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<_> = varmap_tensors(varmap)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let cfg = UNetConfig::tiny();
        let (a, _) = init_varmap(&cfg, 7, &Device::Cpu).unwrap();
        let (b, _) = init_varmap(&cfg, 7, &Device::Cpu).unwrap();
        let (c, _) = init_varmap(&cfg, 8, &Device::Cpu).unwrap();
        let (fa, fb, fc) = (flat(&a), flat(&b), flat(&c));
        assert_eq!(fa, fb);
        let weights_differ = fa
            .iter()
            .zip(&fc)
            .filter(|(x, _)| x.0.ends_with("weight"))
            .all(|(x, y)| x.1 != y.1);
        assert!(weights_differ, "every weight should change with the seed");
    }

    #[test]
    fn varmap_holds_exactly_the_spec_table() {
        let cfg = UNetConfig::tiny();
        let specs = param_specs(&cfg).unwrap();
        let (vm, _) = init_varmap(&cfg, 1, &Device::Cpu).unwrap();
        let tensors = varmap_tensors(&vm).unwrap();
        assert_eq!(tensors.len(), specs.len());
        for s in &specs {
            assert_eq!(tensors[&s.name].dims(), s.shape.as_slice(), "{}", s.name);
        }
        // Biases start at zero, weights are scaled normals with roughly the hinted spread.
        let w = &tensors["enc.0.block.0.conv1.weight"];
        let v = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let var = v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
        let fan_in = (cfg.channels[0] * 9) as f32;
        let expect = 2.0 / fan_in;
        assert!(
            (var / expect - 1.0).abs() < 0.3,
            "variance {var}, expected ~{expect}"
        );
        let b = tensors["enc.0.block.0.conv1.bias"]
            .to_vec1::<f32>()
            .unwrap();
        assert!(b.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn temporal_layers_follow_the_config() {
        let mut cfg = UNetConfig::tiny();
        assert!(param_specs(&cfg)
            .unwrap()
            .iter()
            .any(|s| s.name.contains("tmix")));
        cfg.temporal = false;
        assert!(!param_specs(&cfg)
            .unwrap()
            .iter()
            .any(|s| s.name.contains("tmix")));
    }
}

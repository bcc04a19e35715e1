//! Model weights files: safetensors with the UNet config in the metadata. Loading checks every
//! tensor against the config before building the network, so a wrong or damaged file is refused
//! with a sentence naming the file and the tensor, never a panic inside the render path.
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView, View};

use super::config::UNetConfig;
use super::init::{param_specs, varmap_tensors};
use super::precond::Model;
use crate::{Error, Result};

/// Metadata key holding the UNet config as JSON.
pub const CONFIG_KEY: &str = "vdiff.config";
/// Metadata key holding the file format version.
pub const FORMAT_KEY: &str = "vdiff.format";
/// The format this build reads and writes: every tensor F32, names as `VideoUNet::new` asks.
pub const FORMAT: &str = "1";

/// One tensor ready for `safetensors::serialize`: little-endian f32 bytes.
struct F32View {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &F32View {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

impl F32View {
    /// `t`, converted to f32, as little-endian bytes.
    fn of(t: &Tensor) -> Result<Self> {
        let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(F32View {
            shape: t.dims().to_vec(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
    }
}

/// A stored f32 tensor (a validated model file's or a checkpoint's) as a tensor on `device`.
pub(crate) fn f32_tensor(view: &TensorView<'_>, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_raw_buffer(
        view.data(),
        DType::F32,
        view.shape(),
        device,
    )?)
}

/// The VarMap's tensors as f32 byte views, sorted by name.
fn varmap_views(varmap: &VarMap) -> Result<Vec<(String, F32View)>> {
    let mut views = varmap_tensors(varmap)?
        .into_iter()
        .map(|(name, t)| Ok((name, F32View::of(&t)?)))
        .collect::<Result<Vec<_>>>()?;
    views.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(views)
}

/// Model identity: blake3 over the config JSON and, by name, every tensor's name, shape and
/// bytes. Independent of the order of the safetensors header (whose metadata map serialises
/// in a random order), so a model and its saved file share one id.
fn content_id<'a>(
    cfg: &UNetConfig,
    tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>,
) -> String {
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = blake3::Hasher::new();
    h.update(cfg.to_json().as_bytes());
    for (name, shape, bytes) in sorted {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(shape.len() as u64).to_le_bytes());
        for d in shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        h.update(bytes);
    }
    h.finalize().to_hex().to_string()
}

/// The id a model built from this VarMap (and the file `save` writes from it) has.
pub fn varmap_id(varmap: &VarMap, cfg: &UNetConfig) -> Result<String> {
    let views = varmap_views(varmap)?;
    Ok(content_id(
        cfg,
        views
            .iter()
            .map(|(n, v)| (n.as_str(), v.shape.as_slice(), v.bytes.as_slice())),
    ))
}

/// Serialises a trained (or freshly initialised) network with its config.
pub fn to_bytes(varmap: &VarMap, cfg: &UNetConfig) -> Result<Vec<u8>> {
    cfg.validate()
        .map_err(|m| Error::param("model config", m))?;
    serialize(cfg, &varmap_views(varmap)?)
}

/// A model file's bytes from its config and its tensors (sorted by name): the tensor table is
/// checked against the config first.
fn serialize(cfg: &UNetConfig, views: &[(String, F32View)]) -> Result<Vec<u8>> {
    check_tensors(
        cfg,
        views
            .iter()
            .map(|(n, v)| (n.as_str(), Dtype::F32, v.shape.as_slice())),
    )
    .map_err(|m| Error::Other(format!("cannot save the model: {m}")))?;
    let meta = HashMap::from([
        (CONFIG_KEY.to_string(), cfg.to_json()),
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
    ]);
    safetensors::serialize(views.iter().map(|(n, v)| (n.as_str(), v)), Some(meta))
        .map_err(|e| Error::Other(format!("cannot serialise the model: {e}")))
}

/// The tensor-by-tensor mean of model files of one config ("model soup": two fine-tunes of one
/// model, averaged, keep much of what each gained), as the bytes of a model file. Each input is
/// validated as `load_file` does; the sum runs in f64, so the result does not depend on the
/// inputs' order beyond the last bit's rounding of f32.
pub fn average_files(paths: &[&Path]) -> Result<Vec<u8>> {
    let Some(first) = paths.first() else {
        return Err(Error::param("models to average", "none given"));
    };
    let mut cfg = None;
    // Per tensor, sorted by name: the running sum in f64.
    let mut sums: Vec<(String, Tensor)> = Vec::new();
    for path in paths {
        let bytes =
            std::fs::read(path).map_err(|e| Error::model(path, format!("cannot read it ({e})")))?;
        let (c, st) = validated(&bytes, path)?;
        match &cfg {
            None => cfg = Some(c),
            Some(c0) if *c0 != c => {
                return Err(Error::model(
                    path,
                    format!(
                    "its config differs from {}'s: only models of one architecture can be averaged",
                    first.display()
                ),
                ))
            }
            Some(_) => {}
        }
        let mut tensors = st.tensors();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        if sums.is_empty() {
            sums = tensors
                .iter()
                .map(|(n, v)| {
                    Ok((
                        n.clone(),
                        Tensor::zeros(v.shape(), DType::F64, &Device::Cpu)?,
                    ))
                })
                .collect::<Result<_>>()?;
        }
        // One config, validated: the same names and shapes in every file.
        for ((_, sum), (_, view)) in sums.iter_mut().zip(&tensors) {
            *sum = sum.add(&f32_tensor(view, &Device::Cpu)?.to_dtype(DType::F64)?)?;
        }
    }
    let n = Tensor::new(paths.len() as f64, &Device::Cpu)?;
    let views = sums
        .into_iter()
        .map(|(name, sum)| Ok((name, F32View::of(&sum.broadcast_div(&n)?)?)))
        .collect::<Result<Vec<_>>>()?;
    serialize(&cfg.expect("at least one file was read"), &views)
}

/// Writes `varmap` and `cfg` to `path` (safetensors, metadata `vdiff.config` and
/// `vdiff.format`). Writes a temporary file beside it and renames it, so a reader never sees
/// half a model.
pub fn save(varmap: &VarMap, cfg: &UNetConfig, path: &Path) -> Result<()> {
    write_file(&to_bytes(varmap, cfg)?, path)
}

/// Writes a model file's bytes to `path` through a temporary file beside it and a rename, so a
/// reader never sees half a model.
pub fn write_file(bytes: &[u8], path: &Path) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .map_err(|e| Error::io(format!("writing model file {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("writing model file {}", path.display()), e))
}

/// Compares a file's tensor table with what the config implies. The message names the tensor.
fn check_tensors<'a>(
    cfg: &UNetConfig,
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize])>,
) -> std::result::Result<(), String> {
    let specs = param_specs(cfg).map_err(|e| e.to_string())?;
    let found: HashMap<&str, (Dtype, &[usize])> = tensors.map(|(n, d, s)| (n, (d, s))).collect();
    for spec in &specs {
        let Some(&(dtype, shape)) = found.get(spec.name.as_str()) else {
            return Err(format!(
                "tensor `{}` is missing (the file is incomplete, or made for another version of VDiff)",
                spec.name
            ));
        };
        if shape != spec.shape.as_slice() {
            return Err(format!(
                "tensor `{}` has shape {shape:?}, the config expects {:?}",
                spec.name, spec.shape
            ));
        }
        if dtype != Dtype::F32 {
            return Err(format!(
                "tensor `{}` is {dtype:?}, format {FORMAT} stores F32",
                spec.name
            ));
        }
    }
    if found.len() != specs.len() {
        let mut extra: Vec<&str> = found
            .keys()
            .copied()
            .filter(|n| !specs.iter().any(|s| s.name == *n))
            .collect();
        extra.sort();
        return Err(format!(
            "tensor `{}` is not part of the network its config describes",
            extra.first().copied().unwrap_or("?")
        ));
    }
    Ok(())
}

fn describe_safetensors_error(e: &SafeTensorError) -> String {
    match e {
        SafeTensorError::MetadataIncompleteBuffer
        | SafeTensorError::InvalidHeaderLength
        | SafeTensorError::HeaderTooSmall => {
            format!("the file is truncated or not a safetensors file ({e:?})")
        }
        _ => format!("not a safetensors file ({e:?})"),
    }
}

/// A model file's config and tensors, validated: a complete safetensors file, this build's
/// format, a valid config, and every tensor the config implies with its shape and dtype. Errors
/// name `origin`.
fn validated<'a>(bytes: &'a [u8], origin: &Path) -> Result<(UNetConfig, SafeTensors<'a>)> {
    let fail = |msg: String| Error::model(origin, msg);
    // 1. The container: a complete safetensors file.
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| fail(describe_safetensors_error(&e)))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| fail(describe_safetensors_error(&e)))?;

    // 2. The metadata: format version and config.
    let md = meta.metadata().clone().unwrap_or_default();
    let Some(json) = md.get(CONFIG_KEY) else {
        return Err(fail(format!(
            "not a VDiff model (no {CONFIG_KEY} metadata)"
        )));
    };
    match md.get(FORMAT_KEY).map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(fail(format!(
                "model format {other} is not supported by this VDiff (it reads format {FORMAT})"
            )))
        }
        None => {
            return Err(fail(format!(
                "not a VDiff model (no {FORMAT_KEY} metadata)"
            )))
        }
    }
    let cfg = UNetConfig::from_json(json).map_err(fail)?;

    // 3. Every tensor present, with the shape and dtype the config implies.
    check_tensors(
        &cfg,
        st.tensors()
            .iter()
            .map(|(n, v)| (n.as_str(), v.dtype(), v.shape())),
    )
    .map_err(fail)?;
    Ok((cfg, st))
}

/// Validates and loads a model from safetensors bytes; errors name `origin`.
pub(crate) fn load_bytes_from(
    bytes: &[u8],
    origin: &Path,
    device: &Device,
    dtype: DType,
) -> Result<Model> {
    let fail = |msg: String| Error::model(origin, msg);
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(fail(format!(
            "cannot run a model in {dtype:?}; use F32, F16 or BF16"
        )));
    }

    let (cfg, st) = validated(bytes, origin)?;
    let tensors = st.tensors();

    // 4. Build the network on the device, in the requested dtype.
    let id = content_id(
        &cfg,
        tensors
            .iter()
            .map(|(n, v)| (n.as_str(), v.shape(), v.data())),
    );
    let mut map = HashMap::with_capacity(tensors.len());
    for (name, view) in &tensors {
        map.insert(name.clone(), f32_tensor(view, device)?.to_dtype(dtype)?);
    }
    let vb = VarBuilder::from_tensors(map, dtype, device);
    Model::new(vb, &cfg, id).map_err(|e| fail(e.to_string()))
}

impl Model {
    /// An f32 inference model on `device` from a snapshot of a training `VarMap`'s current
    /// weights (copied: later training steps change neither the model nor its id).
    pub fn from_varmap(varmap: &VarMap, cfg: &UNetConfig, device: &Device) -> Result<Self> {
        let id = varmap_id(varmap, cfg)?;
        let tensors = varmap_tensors(varmap)?
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?.to_device(device)?.copy()?)))
            .collect::<Result<std::collections::HashMap<_, _>>>()?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Model::new(vb, cfg, id)
    }
}

/// Loads a model from the bytes of a safetensors file (e.g. the built-in model).
pub fn load_bytes(bytes: &[u8], device: &Device, dtype: DType) -> Result<Model> {
    load_bytes_from(bytes, Path::new("(in-memory model)"), device, dtype)
}

/// Loads a model file. The file is read into memory (it is small; mapping it would need
/// `unsafe`, which this crate keeps to its OFX layer).
pub fn load_file(path: &Path, device: &Device, dtype: DType) -> Result<Model> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::model(path, format!("cannot read it ({e})")))?;
    load_bytes_from(&bytes, path, device, dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init_varmap;
    use crate::sampling::Denoiser;

    /// A tensor of any dtype for hand-made files.
    struct Raw {
        dtype: Dtype,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    }

    impl View for &Raw {
        fn dtype(&self) -> Dtype {
            self.dtype
        }
        fn shape(&self) -> &[usize] {
            &self.shape
        }
        fn data(&self) -> Cow<'_, [u8]> {
            Cow::Borrowed(&self.bytes)
        }
        fn data_len(&self) -> usize {
            self.bytes.len()
        }
    }

    fn tiny() -> (UNetConfig, VarMap) {
        let cfg = UNetConfig::tiny();
        let (vm, _) = init_varmap(&cfg, 11, &Device::Cpu).unwrap();
        (cfg, vm)
    }

    /// The tiny model's tensors, editable, and a writer with chosen metadata.
    fn raw_tensors(vm: &VarMap) -> Vec<(String, Raw)> {
        varmap_views(vm)
            .unwrap()
            .into_iter()
            .map(|(n, v)| {
                (
                    n,
                    Raw {
                        dtype: Dtype::F32,
                        shape: v.shape,
                        bytes: v.bytes,
                    },
                )
            })
            .collect()
    }

    fn write(tensors: &[(String, Raw)], meta: &[(&str, String)]) -> Vec<u8> {
        let meta: HashMap<String, String> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        safetensors::serialize(tensors.iter().map(|(n, r)| (n.as_str(), r)), Some(meta)).unwrap()
    }

    fn good_meta(cfg: &UNetConfig) -> Vec<(&'static str, String)> {
        vec![
            (CONFIG_KEY, cfg.to_json()),
            (FORMAT_KEY, FORMAT.to_string()),
        ]
    }

    fn load_err(bytes: &[u8]) -> String {
        let path = Path::new("/models/x.safetensors");
        load_bytes_from(bytes, path, &Device::Cpu, DType::F32)
            .unwrap_err()
            .to_string()
    }

    fn images() -> (Tensor, Tensor) {
        let v: Vec<f32> = (0..3 * 3 * 24 * 16)
            .map(|i| ((i * 7919) % 997) as f32 / 997.0)
            .collect();
        let x = Tensor::from_vec(v, (3, 3, 24, 16), &Device::Cpu).unwrap();
        let s = Tensor::from_slice(&[0.1f32, 0.2, 0.3], 3, &Device::Cpu).unwrap();
        (x, s)
    }

    #[test]
    fn average_is_the_mean_of_each_weight_and_refuses_other_architectures() {
        let (cfg, a) = tiny();
        let (b, _) = init_varmap(&cfg, 12, &Device::Cpu).unwrap();
        let dir = std::env::temp_dir().join(format!("vdiff-avg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pa, pb) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
        save(&a, &cfg, &pa).unwrap();
        save(&b, &cfg, &pb).unwrap();

        let bytes = average_files(&[&pa, &pb]).unwrap();
        let model = load_bytes(&bytes, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(model.cfg(), &cfg);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (va, vb) = (varmap_views(&a).unwrap(), varmap_views(&b).unwrap());
        assert_eq!(st.tensors().len(), va.len());
        let f32s = |b: &[u8]| -> Vec<f32> {
            Tensor::from_raw_buffer(b, DType::F32, &[b.len() / 4], &Device::Cpu)
                .and_then(|t| t.to_vec1())
                .unwrap()
        };
        let mut differs = false;
        for ((name, x), (_, y)) in va.iter().zip(&vb) {
            let (x, y) = (f32s(&x.bytes), f32s(&y.bytes));
            let avg = f32s(st.tensor(name).unwrap().data());
            for ((x, y), m) in x.iter().zip(&y).zip(&avg) {
                assert_eq!(*m, ((f64::from(*x) + f64::from(*y)) / 2.0) as f32, "{name}");
                differs |= m != x;
            }
        }
        assert!(differs, "the average equals one input");
        // A model averaged with itself is itself, to the bit.
        let same = load_bytes(
            &average_files(&[&pa, &pa]).unwrap(),
            &Device::Cpu,
            DType::F32,
        );
        let original = Model::from_varmap(&a, &cfg, &Device::Cpu).unwrap();
        assert_eq!(same.unwrap().id(), original.id());

        // Another architecture: refused, naming the file.
        let other = UNetConfig {
            emb_dim: cfg.emb_dim * 2,
            ..cfg.clone()
        };
        let (c, _) = init_varmap(&other, 13, &Device::Cpu).unwrap();
        let pc = dir.join("c.safetensors");
        save(&c, &other, &pc).unwrap();
        let err = average_files(&[&pa, &pc]).unwrap_err().to_string();
        assert!(
            err.contains("c.safetensors") && err.contains("config differs"),
            "{err}"
        );
        // Nothing to average, or a file that is not a model: clear errors.
        assert!(average_files(&[]).is_err());
        std::fs::write(dir.join("junk.safetensors"), b"not a model").unwrap();
        let err = average_files(&[&pa, &dir.join("junk.safetensors")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("junk.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn save_then_load_is_bit_exact() {
        let (cfg, vm) = tiny();
        let dir = std::env::temp_dir().join(format!("vdiff-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.safetensors");
        save(&vm, &cfg, &path).unwrap();
        let before = Model::from_varmap(&vm, &cfg, &Device::Cpu).unwrap();
        let after = load_file(&path, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(after.cfg(), &cfg);
        assert_eq!(after.id(), before.id());
        let (x, s) = images();
        let a = before
            .denoise(&x, &s)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = after
            .denoise(&x, &s)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b);
        // Other weights, other id.
        let (vm2, _) = init_varmap(&cfg, 12, &Device::Cpu).unwrap();
        assert_ne!(varmap_id(&vm2, &cfg).unwrap(), after.id());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_and_misshapen_tensors_are_named() {
        let (cfg, vm) = tiny();
        let mut t = raw_tensors(&vm);
        assert!(load_bytes(&write(&t, &good_meta(&cfg)), &Device::Cpu, DType::F32).is_ok());

        let i = t
            .iter()
            .position(|(n, _)| n == "enc.1.block.0.conv1.weight")
            .unwrap();
        t[i].1.shape = vec![6, 12, 3, 3];
        t[i].1.bytes.truncate(6 * 12 * 9 * 4);
        let err = load_err(&write(&t, &good_meta(&cfg)));
        assert!(err.contains("/models/x.safetensors"), "{err}");
        assert!(
            err.contains("`enc.1.block.0.conv1.weight` has shape [6, 12, 3, 3]"),
            "{err}"
        );
        assert!(err.contains("[12, 12, 3, 3]"), "{err}");

        let mut t = raw_tensors(&vm);
        t.retain(|(n, _)| n != "conv_out.bias");
        let err = load_err(&write(&t, &good_meta(&cfg)));
        assert!(err.contains("`conv_out.bias` is missing"), "{err}");

        let mut t = raw_tensors(&vm);
        t.push((
            "attn.qkv.weight".into(),
            Raw {
                dtype: Dtype::F32,
                shape: vec![1],
                bytes: vec![0; 4],
            },
        ));
        let err = load_err(&write(&t, &good_meta(&cfg)));
        assert!(err.contains("`attn.qkv.weight` is not part"), "{err}");

        let mut t = raw_tensors(&vm);
        let r = &mut t[0].1;
        r.dtype = Dtype::F16;
        r.bytes.truncate(r.bytes.len() / 2);
        let name = t[0].0.clone();
        let err = load_err(&write(&t, &good_meta(&cfg)));
        assert!(err.contains(&format!("`{name}` is F16")), "{err}");
    }

    #[test]
    fn damaged_or_foreign_files_are_refused_and_named() {
        let (cfg, vm) = tiny();
        let good = to_bytes(&vm, &cfg).unwrap();
        let err = load_err(&good[..good.len() - 10]);
        assert!(err.contains("truncated"), "{err}");
        let err = load_err(&good[..5]);
        assert!(err.contains("truncated"), "{err}");
        let err = load_err(b"this is a text file, not a model at all");
        assert!(
            err.contains("/models/x.safetensors") && err.contains("not a safetensors file"),
            "{err}"
        );
        let err = load_err(&[]);
        assert!(err.contains("truncated"), "{err}");

        let t = raw_tensors(&vm);
        let err = load_err(&write(&t, &[]));
        assert!(
            err.contains("not a VDiff model (no vdiff.config metadata)"),
            "{err}"
        );
        let err = load_err(&write(&t, &[(CONFIG_KEY, cfg.to_json())]));
        assert!(err.contains("no vdiff.format"), "{err}");
        let err = load_err(&write(
            &t,
            &[(CONFIG_KEY, cfg.to_json()), (FORMAT_KEY, "2".into())],
        ));
        assert!(err.contains("model format 2"), "{err}");
        let err = load_err(&write(
            &t,
            &[
                (CONFIG_KEY, "{\"unshuffle\":".into()),
                (FORMAT_KEY, "1".into()),
            ],
        ));
        assert!(err.contains("unreadable model config"), "{err}");
        let mut bad = cfg.clone();
        bad.unshuffle = 3;
        let err = load_err(&write(&t, &good_meta(&bad)));
        assert!(err.contains("unshuffle"), "{err}");

        let err = load_file(
            Path::new("/nonexistent/m.safetensors"),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/nonexistent/m.safetensors") && err.contains("cannot read"),
            "{err}"
        );
    }

    /// Half precision (the GPU dtype) runs the non-fused network path; on the CPU it must give
    /// the f32 result up to f16 rounding.
    #[test]
    fn loads_in_half_precision_too() {
        let (cfg, vm) = tiny();
        let bytes = to_bytes(&vm, &cfg).unwrap();
        let m32 = load_bytes(&bytes, &Device::Cpu, DType::F32).unwrap();
        let m16 = load_bytes(&bytes, &Device::Cpu, DType::F16).unwrap();
        assert_eq!((m32.dtype(), m16.dtype()), (DType::F32, DType::F16));
        assert_eq!(m32.id(), m16.id());
        let (x, s) = images();
        let a = m32.denoise(&x, &s).unwrap();
        let b = m16.denoise(&x, &s).unwrap();
        assert_eq!(b.dtype(), DType::F32);
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 2e-2, "f16 differs from f32 by {d}");
        assert!(load_bytes(&bytes, &Device::Cpu, DType::U8).is_err());
    }
}

//! Process-wide model registry: every plugin instance and render thread asks here for its model
//! and gets a shared `Arc<Model>`, loaded once per (file identity, device, dtype). It outlives
//! instances because some hosts (MLT) create one per frame and call Load again without Unload.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use candle_core::{DType, Device, DeviceLocation};
use once_cell::sync::{Lazy, OnceCell};
use parking_lot::Mutex;

use super::device::{resolve, DeviceChoice};
use super::io::load_bytes_from;
use super::precond::Model;
use crate::{Error, Result};

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModelSource {
    /// The weights compiled into the plugin.
    BuiltIn,
    /// A user's safetensors file.
    File(PathBuf),
}

impl ModelSource {
    /// The Model File parameter's meaning: empty (or blank) = the built-in model.
    pub fn from_param(value: &str) -> Self {
        let v = value.trim();
        if v.is_empty() {
            ModelSource::BuiltIn
        } else {
            ModelSource::File(PathBuf::from(v))
        }
    }
}

/// The built-in model (an untrained placeholder until `vdiff train` replaces it).
pub fn builtin_bytes() -> &'static [u8] {
    include_bytes!("../../resources/vdiff-default.safetensors")
}

/// Name used in errors about the built-in model.
const BUILTIN_NAME: &str = "(built-in model)";

/// Identity of a source: a rewritten file (other length or modification time) is a new key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum SourceKey {
    BuiltIn,
    File {
        path: PathBuf,
        len: u64,
        modified: Option<SystemTime>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: SourceKey,
    device: DeviceLocation,
    dtype: DType,
}

/// One model slot: the cell makes concurrent callers for one key wait for a single load.
#[derive(Default)]
struct Entry {
    model: OnceCell<Arc<Model>>,
    loads: AtomicUsize,
}

static MODELS: Lazy<Mutex<HashMap<Key, Arc<Entry>>>> = Lazy::new(|| Mutex::new(HashMap::new()));
/// Resolved GPU devices, so that every call does not open a new CUDA context.
static DEVICES: Lazy<Mutex<HashMap<DeviceChoice, (Device, DType)>>> =
    Lazy::new(|| Mutex::new(HashMap::new()));
static LOADS: AtomicUsize = AtomicUsize::new(0);

fn resolve_cached(choice: DeviceChoice) -> Result<(Device, DType)> {
    if let Some(r) = DEVICES.lock().get(&choice) {
        return Ok(r.clone());
    }
    let r = resolve(choice)?;
    DEVICES.lock().insert(choice, r.clone());
    Ok(r)
}

fn source_key(src: &ModelSource) -> Result<SourceKey> {
    match src {
        ModelSource::BuiltIn => Ok(SourceKey::BuiltIn),
        ModelSource::File(p) => {
            let cant = |e: std::io::Error| Error::model(p, format!("cannot open it ({e})"));
            let path = std::fs::canonicalize(p).map_err(cant)?;
            let md = std::fs::metadata(&path).map_err(cant)?;
            if !md.is_file() {
                return Err(Error::model(
                    p,
                    "is not a file; pick a .safetensors model file",
                ));
            }
            Ok(SourceKey::File {
                path,
                len: md.len(),
                modified: md.modified().ok(),
            })
        }
    }
}

fn load(src: &SourceKey, device: &Device, dtype: DType) -> Result<Model> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    match src {
        SourceKey::BuiltIn => {
            load_bytes_from(builtin_bytes(), Path::new(BUILTIN_NAME), device, dtype)
        }
        SourceKey::File { path, .. } => super::io::load_file(path, device, dtype),
    }
}

fn entry(key: &Key) -> Arc<Entry> {
    let mut map = MODELS.lock();
    if let SourceKey::File { path, .. } = &key.src {
        // A rewritten file replaces its older versions (their Arcs stay valid for users).
        map.retain(|k, _| {
            k == key
                || !matches!(&k.src, SourceKey::File { path: p, .. } if p == path)
                || k.device != key.device
                || k.dtype != key.dtype
        });
    }
    map.entry(key.clone()).or_default().clone()
}

/// The model for a source on a device, loaded once per process and shared.
pub fn get(src: &ModelSource, device: DeviceChoice) -> Result<Arc<Model>> {
    let (dev, dtype) = resolve_cached(device)?;
    let key = Key {
        src: source_key(src)?,
        device: dev.location(),
        dtype,
    };
    let e = entry(&key);
    let model = e.model.get_or_try_init(|| {
        e.loads.fetch_add(1, Ordering::SeqCst);
        load(&key.src, &dev, dtype).map(Arc::new)
    })?;
    Ok(model.clone())
}

/// Forgets every loaded model (models in use stay alive until their last `Arc` goes).
pub fn clear() {
    MODELS.lock().clear();
}

/// How many model loads this process has done (for tests and logs).
pub fn load_count() -> usize {
    LOADS.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init_varmap, save, UNetConfig};

    fn loads_of(src: &ModelSource) -> usize {
        let (dev, dtype) = resolve_cached(DeviceChoice::Cpu).unwrap();
        let key = Key {
            src: source_key(src).unwrap(),
            device: dev.location(),
            dtype,
        };
        MODELS
            .lock()
            .get(&key)
            .map_or(0, |e| e.loads.load(Ordering::SeqCst))
    }

    fn temp_model(name: &str, seed: u64) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vdiff-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let (vm, _) = init_varmap(&UNetConfig::tiny(), seed, &Device::Cpu).unwrap();
        save(&vm, &UNetConfig::tiny(), &path).unwrap();
        path
    }

    #[test]
    fn same_arc_twice_one_load_even_when_concurrent() {
        let path = temp_model("shared.safetensors", 3);
        let src = ModelSource::File(path.clone());
        let before = load_count();
        let models: Vec<Arc<Model>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| get(&src, DeviceChoice::Cpu).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let again = get(&src, DeviceChoice::Cpu).unwrap();
        for m in &models {
            assert!(Arc::ptr_eq(m, &again));
        }
        assert_eq!(loads_of(&src), 1);
        assert!(load_count() > before);

        // A rewritten file is a new model.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (vm, _) = init_varmap(&UNetConfig::tiny(), 4, &Device::Cpu).unwrap();
        save(&vm, &UNetConfig::tiny(), &path).unwrap();
        let fresh = get(&src, DeviceChoice::Cpu).unwrap();
        assert_ne!(fresh.id(), again.id());
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn builtin_loads_and_missing_file_is_a_sentence() {
        let m = get(&ModelSource::BuiltIn, DeviceChoice::Cpu).unwrap();
        assert!(Arc::ptr_eq(
            &m,
            &get(&ModelSource::from_param("  "), DeviceChoice::Cpu).unwrap()
        ));
        assert_eq!(m.id().len(), 64);
        // `vdiff train --config default` trains the network the bundle ships.
        assert_eq!(m.cfg(), &crate::model::UNetConfig::default());
        let err = get(
            &ModelSource::from_param("/nonexistent/x.safetensors"),
            DeviceChoice::Cpu,
        )
        .unwrap_err()
        .to_string();
        // The fact only: the plugin and the command line add their own advice.
        assert!(
            err.contains("/nonexistent/x.safetensors") && err.contains("cannot open it"),
            "{err}"
        );
    }
}

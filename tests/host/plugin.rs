//! Finding, copying and loading the plugin binary. One process stands in for several hosts, so
//! each distinct host capability set gets its own copy of the `.so` (dlopen of a separate file
//! gives separate plugin globals, as separate host processes would have); hosts sharing a copy
//! take turns through a per-copy lock, so the plugin only ever sees one host at a time.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::gpu_render::*;
use openfx::sys::image_effect_v1::image_effect::*;
use openfx::sys::image_effect_v1::param::*;

use super::config::HostConfig;
use super::ffi::lk;
use super::props::{Policy, PropSet};
use super::suites::fetch_suite;

pub const PLUGIN_ID: &str = "net.vdiff.VideoDiffusion";

/// The built plugin: `$VDIFF_PLUGIN` (a file, or a `.ofx.bundle` directory), else
/// `target/<profile>/libvdiff.so` next to the test binary's `deps/` directory.
pub fn plugin_path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("VDIFF_PLUGIN") {
        let p = PathBuf::from(p);
        if p.is_dir() {
            let dir = p.join("Contents").join(bundle_arch());
            let found = std::fs::read_dir(&dir)
                .map_err(|e| {
                    format!(
                        "VDIFF_PLUGIN={}: cannot list {}: {e}",
                        p.display(),
                        dir.display()
                    )
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|f| f.extension().is_some_and(|x| x == "ofx"));
            return found.ok_or_else(|| {
                format!(
                    "VDIFF_PLUGIN={}: no .ofx binary in {}",
                    p.display(),
                    dir.display()
                )
            });
        }
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("VDIFF_PLUGIN={} does not exist", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let deps = exe.parent().ok_or("test binary has no parent directory")?;
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    // `cargo test` rebuilds the cdylib in deps/ but only `cargo build` copies it up a level:
    // take the newer of the two so the tests never run against a stale plugin.
    let candidates = [profile_dir.join("libvdiff.so"), deps.join("libvdiff.so")];
    let newest = candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(m, _)| *m)
        .map(|(_, p)| p.clone());
    newest.ok_or_else(|| {
        format!(
            "plugin binary {} not found: build the cdylib (`cargo build --lib`) or set VDIFF_PLUGIN to the .ofx / .ofx.bundle",
            candidates[0].display()
        )
    })
}

fn bundle_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "Linux-arm64"
    } else {
        "Linux-x86-64"
    }
}

/// Copies the plugin to a file of its own for this capability key (reused while unchanged).
fn private_copy(src: &Path, key: u64, name: &str) -> Result<PathBuf, String> {
    let meta = std::fs::metadata(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let stamp = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (src, meta.len(), mtime).hash(&mut h);
        h.finish()
    };
    let dir = src
        .parent()
        .unwrap_or(Path::new("."))
        .join("vdiff-ofx-host");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let prefix = format!("libvdiff-{name}-{key:016x}-");
    let dst = dir.join(format!("{prefix}{stamp:016x}.so"));
    if std::fs::metadata(&dst)
        .map(|m| m.len() == meta.len())
        .unwrap_or(false)
    {
        return Ok(dst);
    }
    // Write under a temporary name and rename: a process that still maps an older copy keeps it.
    let tmp = dir.join(format!(".{prefix}{}.tmp", std::process::id()));
    std::fs::copy(src, &tmp)
        .map_err(|e| format!("copying {} to {}: {e}", src.display(), tmp.display()))?;
    std::fs::rename(&tmp, &dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) && e.path() != dst {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(dst)
}

/// A loaded copy of the plugin binary (never unloaded: Rust cdylibs do not support dlclose well).
pub struct PluginLib {
    pub path: PathBuf,
    pub source: PathBuf,
    _lib: libloading::Library,
    pub plugin: *const OfxPlugin,
    pub set_host_export: Option<unsafe extern "C" fn(*const OfxHost)>,
    /// The OfxHost handed to this copy, with its host property set.
    pub ofx_host: &'static OfxHost,
    pub host_props: Arc<PropSet>,
    busy: Mutex<Option<std::thread::ThreadId>>,
    free: Condvar,
}

// SAFETY: the OfxPlugin struct is immutable static data of the loaded library.
unsafe impl Send for PluginLib {}
// SAFETY: see above.
unsafe impl Sync for PluginLib {}

impl PluginLib {
    pub fn main_entry(
        &self,
    ) -> unsafe extern "C" fn(
        *const c_char,
        *const c_void,
        OfxPropertySetHandle,
        OfxPropertySetHandle,
    ) -> OfxStatus {
        // SAFETY: plugin validated in load().
        unsafe { (*self.plugin).mainEntry.expect("validated at load") }
    }

    pub fn set_host(&self) {
        // SAFETY: the plugin's setHost with our static OfxHost.
        unsafe {
            if let Some(f) = self.set_host_export {
                f(self.ofx_host);
            }
            if let Some(f) = (*self.plugin).setHost {
                f(self.ofx_host as *const OfxHost as *mut OfxHost);
            }
        }
    }

    pub fn identifier(&self) -> String {
        // SAFETY: validated at load.
        unsafe { CStr::from_ptr((*self.plugin).pluginIdentifier) }
            .to_string_lossy()
            .into_owned()
    }

    pub fn version(&self) -> (u32, u32) {
        // SAFETY: validated at load.
        unsafe {
            (
                (*self.plugin).pluginVersionMajor,
                (*self.plugin).pluginVersionMinor,
            )
        }
    }
}

/// Exclusive use of a plugin copy for one host.
pub struct LibGuard {
    pub lib: Arc<PluginLib>,
}

impl Drop for LibGuard {
    fn drop(&mut self) {
        *lk(&self.lib.busy) = None;
        self.lib.free.notify_one();
    }
}

static LIBS: LazyLock<Mutex<HashMap<u64, Arc<PluginLib>>>> = LazyLock::new(Default::default);

/// The plugin copy for `cfg`'s capabilities, locked for the caller.
pub fn acquire(cfg: &HostConfig) -> Result<LibGuard, String> {
    let key = cfg.caps_key();
    let lib = {
        let mut libs = lk(&LIBS);
        match libs.get(&key) {
            Some(l) => l.clone(),
            None => {
                let l = Arc::new(load(cfg, key)?);
                libs.insert(key, l.clone());
                l
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let me = std::thread::current().id();
    let mut busy = lk(&lib.busy);
    if *busy == Some(me) {
        return Err(format!(
            "this thread already holds a {} host on the same plugin copy: finish() it before starting another",
            cfg.label
        ));
    }
    while busy.is_some() {
        let (g, _) = lib
            .free
            .wait_timeout(busy, Duration::from_secs(5))
            .unwrap_or_else(|e| e.into_inner());
        busy = g;
        if Instant::now() > deadline {
            return Err(format!(
                "waited 15 minutes for the {} plugin copy: a host was never dropped",
                cfg.label
            ));
        }
    }
    *busy = Some(me);
    drop(busy);
    Ok(LibGuard { lib })
}

fn load(cfg: &HostConfig, key: u64) -> Result<PluginLib, String> {
    let source = plugin_path()?;
    let path = private_copy(&source, key, &cfg.short_name())?;
    // SAFETY: loading the plugin runs its initialisers; that is what every host does.
    let lib = unsafe { libloading::Library::new(&path) }
        .map_err(|e| format!("dlopen {}: {e}", path.display()))?;
    type Count = unsafe extern "C" fn() -> c_int;
    type Get = unsafe extern "C" fn(c_int) -> *const OfxPlugin;
    type SetHost = unsafe extern "C" fn(*const OfxHost);
    // SAFETY: symbol types from the OFX API (ofxCore.h).
    let (count, get, set_host) = unsafe {
        let count = *lib
            .get::<Count>(b"OfxGetNumberOfPlugins\0")
            .map_err(|e| format!("{}: OfxGetNumberOfPlugins: {e}", path.display()))?;
        let get = *lib
            .get::<Get>(b"OfxGetPlugin\0")
            .map_err(|e| format!("{}: OfxGetPlugin: {e}", path.display()))?;
        let set_host = lib.get::<SetHost>(b"OfxSetHost\0").ok().map(|s| *s);
        (count, get, set_host)
    };
    let host_props = host_property_set(cfg);
    let ofx_host: &'static OfxHost = Box::leak(Box::new(OfxHost {
        host: host_props.handle(),
        fetchSuite: Some(fetch_suite),
    }));
    // SAFETY: OFX 1.5: OfxSetHost (optional) comes before OfxGetNumberOfPlugins.
    if let Some(f) = set_host {
        unsafe { f(ofx_host) };
    }
    // SAFETY: plugin entry points.
    let n = unsafe { count() };
    let mut found = None;
    let mut ids = Vec::new();
    for i in 0..n {
        // SAFETY: index within the count.
        let p = unsafe { get(i) };
        // SAFETY: the plugin returns NULL or a valid OfxPlugin.
        let Some(pl) = (unsafe { p.as_ref() }) else {
            continue;
        };
        // SAFETY: C strings of the OfxPlugin struct.
        let (api, id) = unsafe {
            (
                CStr::from_ptr(pl.pluginApi),
                CStr::from_ptr(pl.pluginIdentifier),
            )
        };
        ids.push(id.to_string_lossy().into_owned());
        if id.to_str() == Ok(PLUGIN_ID) {
            if api != kOfxImageEffectPluginApi
                || pl.apiVersion != 1
                || pl.mainEntry.is_none()
                || pl.setHost.is_none()
            {
                return Err(format!(
                    "{PLUGIN_ID}: bad OfxPlugin header (api {api:?} version {})",
                    pl.apiVersion
                ));
            }
            found = Some(p);
        }
    }
    let plugin = found.ok_or_else(|| {
        format!(
            "{}: {n} plugins {ids:?}, none is {PLUGIN_ID}",
            path.display()
        )
    })?;
    Ok(PluginLib {
        path,
        source,
        _lib: lib,
        plugin,
        set_host_export: set_host,
        ofx_host,
        host_props,
        busy: Mutex::new(None),
        free: Condvar::new(),
    })
}

/// The host descriptor property set (read-only for the plugin).
fn host_property_set(cfg: &HostConfig) -> Arc<PropSet> {
    let p = PropSet::new(
        format!("host descriptor of {}", cfg.label),
        None,
        Policy::ReadOnly,
    );
    let b = |v: bool| [v as i32];
    p.set_cstr(kOfxPropType, &[kOfxTypeImageEffectHost]);
    p.set_str(kOfxPropName, &[&cfg.name]);
    p.set_str(kOfxPropLabel, &[&cfg.label]);
    p.set_int(kOfxPropVersion, &cfg.version);
    p.set_str(
        kOfxPropVersionLabel,
        &[&format!(
            "{}.{}.{}",
            cfg.version[0], cfg.version[1], cfg.version[2]
        )],
    );
    p.set_int(kOfxPropAPIVersion, &cfg.api_version);
    p.set_int(kOfxImageEffectHostPropIsBackground, &[0]);
    p.set_int(kOfxImageEffectPropSupportsOverlays, &[0]);
    p.set_int(
        kOfxImageEffectPropSupportsMultiResolution,
        &b(cfg.multi_resolution),
    );
    p.set_int(kOfxImageEffectPropSupportsTiles, &b(cfg.tiles));
    p.set_int(
        kOfxImageEffectPropTemporalClipAccess,
        &b(cfg.temporal_access),
    );
    p.set_cstr(
        kOfxImageEffectPropSupportedComponents,
        &cfg.comps.iter().map(|c| c.ofx()).collect::<Vec<_>>(),
    );
    p.set_cstr(
        kOfxImageEffectPropSupportedContexts,
        &cfg.contexts.iter().map(|c| c.ofx()).collect::<Vec<_>>(),
    );
    p.set_cstr(
        kOfxImageEffectPropSupportedPixelDepths,
        &cfg.depths.iter().map(|d| d.ofx()).collect::<Vec<_>>(),
    );
    p.set_int(
        kOfxImageEffectPropSupportsMultipleClipDepths,
        &b(cfg.multiple_clip_depths),
    );
    p.set_int(kOfxImageEffectPropSupportsMultipleClipPARs, &[0]);
    p.set_int(kOfxImageEffectPropSetableFrameRate, &[0]);
    p.set_int(kOfxImageEffectPropSetableFielding, &[0]);
    p.set_int(kOfxImageEffectInstancePropSequentialRender, &[0]);
    p.set_cstr(
        kOfxImageEffectHostPropNativeOrigin,
        &[kOfxHostNativeOriginBottomLeft],
    );
    p.set_int(kOfxImageEffectPropRenderQualityDraft, &[0]);
    p.set_int(kOfxParamHostPropSupportsCustomInteract, &[0]);
    p.set_int(kOfxParamHostPropSupportsStringAnimation, &[0]);
    p.set_int(kOfxParamHostPropSupportsChoiceAnimation, &[1]);
    p.set_int(kOfxParamHostPropSupportsBooleanAnimation, &[1]);
    p.set_int(kOfxParamHostPropSupportsCustomAnimation, &[0]);
    p.set_int(kOfxParamHostPropSupportsStrChoice, &[0]);
    p.set_int(kOfxParamHostPropSupportsStrChoiceAnimation, &[0]);
    p.set_int(kOfxParamHostPropMaxParameters, &[-1]);
    p.set_int(kOfxParamHostPropMaxPages, &[0]);
    p.set_int(kOfxParamHostPropPageRowColumnCount, &[0, 0]);
    p.set_str(kOfxImageEffectPropOpenGLRenderSupported, &["false"]);
    let cuda = if cfg.cuda_render == super::config::CudaRender::Off {
        "false"
    } else {
        "true"
    };
    p.set_str(kOfxImageEffectPropCudaRenderSupported, &[cuda]);
    p.set_str(kOfxImageEffectPropCudaStreamSupported, &[cuda]);
    p.set_str(kOfxImageEffectPropMetalRenderSupported, &["false"]);
    p.set_str(kOfxImageEffectPropOpenCLRenderSupported, &["false"]);
    if cfg.flavour == super::config::HostFlavour::Mlt {
        // NOTE: MLT puts the context on the host set too: it passes this set as the inArgs of
        // DescribeInContext.
        p.set_cstr(kOfxImageEffectPropContext, &[kOfxImageEffectContextFilter]);
    }
    p.seal_defaults();
    let (a, _) = p.into_handle();
    a
}

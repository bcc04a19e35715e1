//! The host as the plugin sees it: the `OfxHost` given to `setHost` and the suites fetched from
//! it at Load, held process-wide. Every view in `ofx` borrows a `Host`.
use std::ffi::{c_void, CStr};
use std::sync::Arc;

use openfx::sys::generic::core::OfxHost;
use openfx::sys::generic::property::{kOfxPropertySuite, OfxPropertySuiteV1};
use openfx::sys::image_effect_v1::image_effect::{kOfxImageEffectSuite, OfxImageEffectSuiteV1};
use openfx::sys::image_effect_v1::message::{
    kOfxMessageSuite, OfxMessageSuiteV1, OfxMessageSuiteV2,
};
use openfx::sys::image_effect_v1::param::{kOfxParameterSuite, OfxParameterSuiteV1};
use openfx::sys::image_effect_v1::progress::{
    kOfxProgressSuite, OfxProgressSuiteV1, OfxProgressSuiteV2,
};
use parking_lot::RwLock;

/// The message suite the host offers: v2 adds persistent messages.
#[derive(Clone, Copy)]
pub(crate) enum MessageSuite {
    V2(OfxMessageSuiteV2),
    V1(OfxMessageSuiteV1),
}

#[derive(Clone, Copy)]
pub(crate) enum ProgressSuite {
    V2(OfxProgressSuiteV2),
    V1(OfxProgressSuiteV1),
}

/// Copies of the host's suite tables (function pointers stay valid while the host process runs,
/// and copying them means a host that rebuilds its tables cannot leave us a dangling table).
pub struct Host {
    raw: OfxHost,
    pub(crate) prop: OfxPropertySuiteV1,
    pub(crate) effect: OfxImageEffectSuiteV1,
    pub(crate) param: OfxParameterSuiteV1,
    pub(crate) message: Option<MessageSuite>,
    pub(crate) progress: Option<ProgressSuite>,
}

// SAFETY: `Host` holds function pointers and the host's property-set handle. OFX requires the
// host's suites and its host property set to be usable from every thread on which the host calls
// the plugin (main and render threads), and the plugin only calls them from such threads.
unsafe impl Send for Host {}
// SAFETY: as above; `Host` is never mutated after construction.
unsafe impl Sync for Host {}

/// What `setHost` gave us.
#[derive(Clone, Copy)]
struct RawHost(OfxHost);
// SAFETY: see `Host`: the struct is a handle plus a function pointer, both process-wide.
unsafe impl Send for RawHost {}
// SAFETY: as above.
unsafe impl Sync for RawHost {}

static RAW: RwLock<Option<RawHost>> = RwLock::new(None);
static HOST: RwLock<Option<Arc<Host>>> = RwLock::new(None);

/// Records the host (`setHost`). A host may call this again (MLT does, once per filter it
/// creates): the suites are fetched again at the next Load.
pub(crate) fn set_raw(host: OfxHost) {
    *RAW.write() = Some(RawHost(host));
}

/// Why Load could not get what the plugin needs from the host.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// `setHost` was never called.
    NoHost,
    /// A mandatory suite (or its function) is missing: `kOfxStatErrMissingHostFeature`.
    MissingSuite(&'static str),
}

/// A copy of the host's suite table `name` v`version`, or None where the host has none.
fn fetch_suite<T: Copy>(raw: &OfxHost, name: &CStr, version: i32) -> Option<T> {
    let fetch = raw.fetchSuite?;
    // SAFETY: `fetchSuite` is the host's own function, called with its host property set and a
    // NUL-terminated suite name.
    let p: *const c_void = unsafe { fetch(raw.host, name.as_ptr(), version) };
    if p.is_null() {
        return None;
    }
    // SAFETY: a non-null answer points to a suite table of the requested name and version,
    // whose layout is `T` (each caller names the matching sys struct).
    Some(unsafe { *(p as *const T) })
}

/// Fetches the suites (Load). Idempotent: hosts call Load again without Unload.
pub(crate) fn load() -> Result<Arc<Host>, LoadError> {
    let raw = RAW.read().ok_or(LoadError::NoHost)?.0;
    if raw.fetchSuite.is_none() {
        return Err(LoadError::MissingSuite("fetchSuite"));
    }
    let prop: OfxPropertySuiteV1 = fetch_suite(&raw, kOfxPropertySuite, 1)
        .ok_or(LoadError::MissingSuite("OfxPropertySuite v1"))?;
    let effect: OfxImageEffectSuiteV1 = fetch_suite(&raw, kOfxImageEffectSuite, 1)
        .ok_or(LoadError::MissingSuite("OfxImageEffectSuite v1"))?;
    let param: OfxParameterSuiteV1 = fetch_suite(&raw, kOfxParameterSuite, 1)
        .ok_or(LoadError::MissingSuite("OfxParameterSuite v1"))?;
    let message = fetch_suite::<OfxMessageSuiteV2>(&raw, kOfxMessageSuite, 2)
        .map(MessageSuite::V2)
        .or_else(|| {
            fetch_suite::<OfxMessageSuiteV1>(&raw, kOfxMessageSuite, 1).map(MessageSuite::V1)
        });
    let progress = fetch_suite::<OfxProgressSuiteV2>(&raw, kOfxProgressSuite, 2)
        .map(ProgressSuite::V2)
        .or_else(|| {
            fetch_suite::<OfxProgressSuiteV1>(&raw, kOfxProgressSuite, 1).map(ProgressSuite::V1)
        });
    // The property getters and the image effect basics are used on every path.
    for (ok, what) in [
        (
            prop.propGetInt.is_some()
                && prop.propGetString.is_some()
                && prop.propSetString.is_some(),
            "OfxPropertySuite getters",
        ),
        (
            effect.getPropertySet.is_some() && effect.clipGetHandle.is_some(),
            "OfxImageEffectSuite getPropertySet/clipGetHandle",
        ),
        (
            param.paramGetHandle.is_some() && param.paramDefine.is_some(),
            "OfxParameterSuite paramDefine/paramGetHandle",
        ),
    ] {
        if !ok {
            return Err(LoadError::MissingSuite(what));
        }
    }
    let host = Arc::new(Host {
        raw,
        prop,
        effect,
        param,
        message,
        progress,
    });
    *HOST.write() = Some(host.clone());
    Ok(host)
}

/// The loaded host, or a fresh Load when a host skipped it (after setHost only).
pub(crate) fn current() -> Result<Arc<Host>, LoadError> {
    if let Some(h) = HOST.read().clone() {
        return Ok(h);
    }
    load()
}

impl Host {
    /// The handle of the host's own property set (`OfxHost::host`); see `Host::props`.
    pub(super) fn props_handle(&self) -> openfx::sys::generic::core::OfxPropertySetHandle {
        self.raw.host
    }

    pub fn has_persistent_messages(&self) -> bool {
        matches!(self.message, Some(MessageSuite::V2(_)))
    }
}

//! The plugin's C entry points, generic over the effect: `export_ofx_effect!(MyEffect)` defines
//! `OfxGetNumberOfPlugins` and `OfxGetPlugin` for one [`OfxEffect`], whose `setHost` and
//! `mainEntry` live here: null checks, `catch_unwind`, and one mapping to `OfxStatus`.
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use openfx::sys::generic::core::{OfxHost, OfxPlugin, OfxPropertySetHandle, OfxStatus};
use openfx::sys::image_effect_v1::image_effect::{
    kOfxImageEffectPluginApi, kOfxImageEffectPluginApiVersion, OfxImageEffectHandle,
};

use super::effect::ImageEffect;
use super::host::{self, LoadError};
use super::props::PropSet;
use super::{status_of, Action, Call, EffectError, Fail, Failure, Reply};

/// An image effect the wrapper can export: its identity and one function that answers every
/// action (`Reply::Default` for those it does not handle). Nothing of it touches the C ABI.
pub trait OfxEffect: 'static {
    const IDENTIFIER: &'static CStr;
    const VERSION_MAJOR: c_uint;
    const VERSION_MINOR: c_uint;
    type Error: EffectError;
    fn main_entry(call: &Call<'_>) -> Result<Reply, Self::Error>;
}

/// The `OfxPlugin` record of effect `E`.
pub const fn plugin<E: OfxEffect>() -> OfxPlugin {
    OfxPlugin {
        pluginApi: kOfxImageEffectPluginApi.as_ptr(),
        apiVersion: kOfxImageEffectPluginApiVersion as c_int,
        pluginIdentifier: E::IDENTIFIER.as_ptr(),
        pluginVersionMajor: E::VERSION_MAJOR,
        pluginVersionMinor: E::VERSION_MINOR,
        setHost: Some(set_host),
        mainEntry: Some(main_entry::<E>),
    }
}

/// `OfxGetPlugin` of a library exporting one plugin.
pub fn get_plugin(plugin: &'static OfxPlugin, nth: c_int) -> *mut OfxPlugin {
    if nth == 0 {
        plugin as *const OfxPlugin as *mut OfxPlugin
    } else {
        std::ptr::null_mut()
    }
}

/// Exports one [`OfxEffect`] from this library: the two functions an OFX host looks up
/// (`OfxGetNumberOfPlugins`, `OfxGetPlugin`), as nih-plug's `nih_export_clap!` does for CLAP.
#[macro_export]
macro_rules! export_ofx_effect {
    ($effect:ty) => {
        static VDIFF_OFX_PLUGIN: ::openfx::sys::generic::core::OfxPlugin =
            $crate::ofx::entry::plugin::<$effect>();

        #[no_mangle]
        pub extern "C" fn OfxGetNumberOfPlugins() -> ::std::ffi::c_int {
            1
        }

        #[no_mangle]
        pub extern "C" fn OfxGetPlugin(
            nth: ::std::ffi::c_int,
        ) -> *mut ::openfx::sys::generic::core::OfxPlugin {
            $crate::ofx::entry::get_plugin(&VDIFF_OFX_PLUGIN, nth)
        }
    };
}

unsafe extern "C" fn set_host(host: *mut OfxHost) {
    let r = catch_unwind(AssertUnwindSafe(|| {
        if host.is_null() {
            log::error!("setHost called with a null host");
            return;
        }
        // SAFETY: non-null, and the host passes a pointer to its live OfxHost; we keep a copy.
        host::set_raw(unsafe { *host });
    }));
    if r.is_err() {
        log::error!("setHost panicked");
    }
}

unsafe extern "C" fn main_entry<E: OfxEffect>(
    action: *const c_char,
    handle: *const c_void,
    in_args: OfxPropertySetHandle,
    out_args: OfxPropertySetHandle,
) -> OfxStatus {
    let mut label = String::from("(null action)");
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host's arguments as OFX defines them: `action` a C string, `handle` the
        // effect handle or null, the argument sets null or valid for the call.
        unsafe { dispatch::<E>(action, handle, in_args, out_args, &mut label) }
    }));
    let status = status_of(&outcome);
    match &outcome {
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log::error!("{label}: internal error caught at the OFX boundary: {msg}");
        }
        Ok(Err(Fail::Effect {
            failure: Failure::Aborted,
            ..
        })) => log::debug!("{label}: aborted by the host"),
        Ok(Err(e)) => log::warn!("{label}: {}", describe(e)),
        Ok(Ok(_)) => log::trace!("{label}: {}", super::status_name(status)),
    }
    status
}

fn describe(f: &Fail) -> String {
    match f {
        Fail::BadHandle(what) => format!("null or bad {what} handle"),
        Fail::MissingHostFeature(what) => format!("the host lacks {what}"),
        Fail::Effect { message, .. } => message.clone(),
    }
}

/// # Safety
/// As for `mainEntry`.
unsafe fn dispatch<E: OfxEffect>(
    action: *const c_char,
    handle: *const c_void,
    in_args: OfxPropertySetHandle,
    out_args: OfxPropertySetHandle,
    label: &mut String,
) -> Result<Reply, Fail> {
    if action.is_null() {
        return Err(Fail::BadHandle("action"));
    }
    // SAFETY: non-null and NUL-terminated per the OFX API.
    let name = unsafe { CStr::from_ptr(action) };
    *label = name.to_string_lossy().into_owned();
    let act = Action::parse(name);
    if act == Action::Other {
        return Ok(Reply::Default);
    }
    let host = match act {
        Action::Load => host::load(),
        _ => host::current(),
    };
    let host = match (host, act) {
        (Ok(h), _) => h,
        // Nothing to undo when the host never got as far as giving us its suites.
        (Err(_), Action::Unload) => return Ok(Reply::Ok),
        (Err(LoadError::NoHost), _) => {
            return Err(Fail::MissingHostFeature(
                "a setHost call before any action".into(),
            ))
        }
        (Err(LoadError::MissingSuite(s)), _) => return Err(Fail::MissingHostFeature(s.into())),
    };
    // SAFETY: `handle` is this action's image effect handle (or null), valid for the call.
    let effect = unsafe { ImageEffect::from_raw(handle as OfxImageEffectHandle, &host) };
    if act.needs_effect() && effect.is_none() {
        return Err(Fail::BadHandle("image effect"));
    }
    // SAFETY: argument property sets are null or valid for the duration of the action.
    let in_args = unsafe { PropSet::from_raw(in_args, &host) };
    // SAFETY: as above.
    let out_args = unsafe { PropSet::from_raw(out_args, &host) };
    let call = Call {
        action: act,
        name,
        effect,
        in_args,
        out_args,
        host: &host,
    };
    E::main_entry(&call).map_err(|e| Fail::effect(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openfx::sys::generic::core::{
        kOfxActionLoad, kOfxStatErrBadHandle, kOfxStatErrMissingHostFeature, kOfxStatReplyDefault,
    };

    /// A small effect of the wrapper's own: it answers every action by default.
    struct Probe;
    /// Its error type (never produced).
    struct ProbeError;
    impl std::fmt::Display for ProbeError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl EffectError for ProbeError {
        fn failure(&self) -> Failure {
            Failure::Failed
        }
    }
    impl OfxEffect for Probe {
        const IDENTIFIER: &'static CStr = c"net.vdiff.test.Probe";
        const VERSION_MAJOR: c_uint = 3;
        const VERSION_MINOR: c_uint = 7;
        type Error = ProbeError;
        fn main_entry(_call: &Call<'_>) -> Result<Reply, ProbeError> {
            Ok(Reply::Default)
        }
    }

    static PROBE: OfxPlugin = plugin::<Probe>();

    fn call(action: Option<&CStr>) -> OfxStatus {
        let a = action.map_or(std::ptr::null(), |a| a.as_ptr());
        let null = std::ptr::null_mut();
        // SAFETY: mainEntry with a valid (or null) action name and null handles, as a host may.
        unsafe { main_entry::<Probe>(a, std::ptr::null(), null, null) }
    }

    #[test]
    fn exports_one_plugin_with_its_identity() {
        assert!(get_plugin(&PROBE, 1).is_null() && get_plugin(&PROBE, -1).is_null());
        // SAFETY: index 0 is the static plugin struct.
        let p = unsafe { &*get_plugin(&PROBE, 0) };
        // SAFETY: the struct's strings are static NUL-terminated literals.
        let (id, api) = unsafe {
            (
                CStr::from_ptr(p.pluginIdentifier),
                CStr::from_ptr(p.pluginApi),
            )
        };
        assert_eq!(id, c"net.vdiff.test.Probe");
        assert_eq!(api, kOfxImageEffectPluginApi);
        assert_eq!(
            (p.apiVersion, p.pluginVersionMajor, p.pluginVersionMinor),
            (1, 3, 7)
        );
        assert!(p.setHost.is_some() && p.mainEntry.is_some());
    }

    #[test]
    fn the_library_exports_the_video_diffusion_effect() {
        assert_eq!(crate::OfxGetNumberOfPlugins(), 1);
        // SAFETY: index 0 is the static plugin struct, its strings static literals.
        let id = unsafe { CStr::from_ptr((*crate::OfxGetPlugin(0)).pluginIdentifier) };
        assert_eq!(id, c"net.vdiff.VideoDiffusion");
        assert!(crate::OfxGetPlugin(1).is_null());
    }

    #[test]
    fn bad_calls_get_statuses_not_crashes() {
        assert_eq!(call(None), kOfxStatErrBadHandle);
        assert_eq!(call(Some(c"OfxActionNobodyKnows")), kOfxStatReplyDefault);
        // No setHost in this process: Load cannot get the suites it needs.
        assert_eq!(call(Some(kOfxActionLoad)), kOfxStatErrMissingHostFeature);
        // SAFETY: a null host is refused inside, without dereferencing.
        unsafe { set_host(std::ptr::null_mut()) };
    }
}

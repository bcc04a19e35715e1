//! Test host plumbing under every suite: the handle registry (every handle the plugin receives is
//! checked before use), the per-thread action context (which host, instance, action and render the
//! current call belongs to), status names, and safe reads of plugin-supplied C strings.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use openfx::sys::generic::core::*;

use super::effect::ImageMemory;
use super::effect::{Clip, Effect};
use super::image::Surface;
use super::params::{Param, ParamSet};
use super::props::PropSet;
use super::state::HostState;
use super::suites::HostMutex;

/// Locks a mutex, ignoring poisoning: a panicking test thread must not cascade into the others.
pub fn lk<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything a handle given to the plugin can point at.
#[derive(Clone)]
pub enum Obj {
    Props(Arc<PropSet>),
    Effect(Arc<Effect>),
    Clip(Arc<Clip>),
    ParamSet(Arc<ParamSet>),
    Param(Arc<Param>),
    ImageMemory(Arc<ImageMemory>),
    Mutex(Arc<HostMutex>),
}

impl Obj {
    fn kind(&self) -> &'static str {
        match self {
            Obj::Props(_) => "property set",
            Obj::Effect(_) => "image effect",
            Obj::Clip(_) => "clip",
            Obj::ParamSet(_) => "parameter set",
            Obj::Param(_) => "parameter",
            Obj::ImageMemory(_) => "image memory",
            Obj::Mutex(_) => "mutex",
        }
    }
}

/// Live handles, keyed by address. A lookup clones the `Arc`, so an object stays alive while a
/// suite function uses it even if the host releases it concurrently.
static REGISTRY: LazyLock<Mutex<HashMap<usize, Obj>>> = LazyLock::new(Default::default);

pub fn register(addr: usize, obj: Obj) {
    lk(&REGISTRY).insert(addr, obj);
}

pub fn unregister(addr: usize) -> Option<Obj> {
    lk(&REGISTRY).remove(&addr)
}

pub fn lookup(addr: usize) -> Option<Obj> {
    lk(&REGISTRY).get(&addr).cloned()
}

/// Looks a handle up as one kind; on failure records a violation (on the context's host, or the
/// global orphan list) naming the function and what the handle was instead.
pub fn lookup_as<T>(addr: usize, func: &str, pick: impl Fn(Obj) -> Option<T>) -> Option<T> {
    let found = lookup(addr);
    let what = found.as_ref().map(|o| o.kind());
    match found.and_then(pick) {
        Some(t) => Some(t),
        None => {
            let msg = match what {
                Some(kind) => {
                    format!("{func}: handle {addr:#x} is a {kind}, not the expected kind")
                }
                None if addr == 0 => format!("{func}: NULL handle"),
                None => format!("{func}: unknown or released handle {addr:#x}"),
            };
            violation(None, msg);
            None
        }
    }
}

pub fn props_of(h: OfxPropertySetHandle, func: &str) -> Option<Arc<PropSet>> {
    lookup_as(h as usize, func, |o| match o {
        Obj::Props(p) => Some(p),
        _ => None,
    })
}

pub fn effect_of(h: *const c_void, func: &str) -> Option<Arc<Effect>> {
    lookup_as(h as usize, func, |o| match o {
        Obj::Effect(e) => Some(e),
        _ => None,
    })
}

pub fn clip_of(h: *const c_void, func: &str) -> Option<Arc<Clip>> {
    lookup_as(h as usize, func, |o| match o {
        Obj::Clip(c) => Some(c),
        _ => None,
    })
}

pub fn param_set_of(h: *const c_void, func: &str) -> Option<Arc<ParamSet>> {
    lookup_as(h as usize, func, |o| match o {
        Obj::ParamSet(p) => Some(p),
        _ => None,
    })
}

pub fn param_of(h: *const c_void, func: &str) -> Option<Arc<Param>> {
    lookup_as(h as usize, func, |o| match o {
        Obj::Param(p) => Some(p),
        _ => None,
    })
}

/// What the host is doing on this thread: set around every action call and inherited by the
/// threads the multithread suite spawns.
#[derive(Clone)]
pub struct Ctx {
    pub host: Arc<HostState>,
    /// Unique id of the action call (images must be released before it returns).
    pub call: u64,
    pub action: String,
    pub effect: Option<usize>,
    pub render: Option<RenderCtx>,
}

/// The render call in progress on this thread (Render, and the actions that prepare it).
#[derive(Clone)]
pub struct RenderCtx {
    pub time: f64,
    pub window: [i32; 4],
    pub scale: [f64; 2],
    pub output: Option<Arc<Surface>>,
    /// Region of interest the plugin asked for on the Source clip (canonical), if any.
    pub roi: Option<[f64; 4]>,
    /// Frame ranges the plugin declared in GetFramesNeeded for Source, if asked.
    pub frames_needed: Option<Vec<f64>>,
    /// In a CUDA render on a GPU: the device copy of the output surface.
    #[cfg(feature = "cuda")]
    pub device_output: Option<Arc<super::cuda::DeviceSurface>>,
}

thread_local! {
    static CTX: RefCell<Vec<Ctx>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `ctx` as this thread's current context.
pub fn with_ctx<R>(ctx: Ctx, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            CTX.with(|c| c.borrow_mut().pop());
        }
    }
    CTX.with(|c| c.borrow_mut().push(ctx));
    let _pop = Pop;
    f()
}

pub fn current() -> Option<Ctx> {
    CTX.with(|c| c.borrow().last().cloned())
}

/// Id of the action call in progress on this thread (0: none).
pub fn current_call() -> u64 {
    CTX.with(|c| c.borrow().last().map(|c| c.call).unwrap_or(0))
}

static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh action call id.
pub fn next_call() -> u64 {
    CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// Violations nobody can be blamed on (a bad handle outside any action).
pub static ORPHAN_VIOLATIONS: LazyLock<Mutex<Vec<String>>> = LazyLock::new(Default::default);

/// Records a plugin violation of the OFX contract on `host`, else on the current thread's host,
/// else on the orphan list.
pub fn violation(host: Option<&Arc<HostState>>, msg: String) {
    let ctx = current();
    let msg = match &ctx {
        Some(c) => format!("[during {}] {msg}", c.action),
        None => format!("[outside any action] {msg}"),
    };
    match host.cloned().or(ctx.map(|c| c.host)) {
        Some(h) => h.violation(msg),
        None => lk(&ORPHAN_VIOLATIONS).push(msg),
    }
}

/// Reads a NUL-terminated string the plugin passed as a named argument (trusted like any host
/// would: a bad pointer there crashes every host).
///
/// # Safety
/// `p` must be NULL or point at a NUL-terminated string.
pub unsafe fn cstr_arg(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: caller guarantees a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Name of an OfxStatus for diagnostics.
#[allow(non_upper_case_globals)]
pub fn status_name(s: OfxStatus) -> String {
    let n = match s {
        kOfxStatOK => "kOfxStatOK",
        kOfxStatFailed => "kOfxStatFailed",
        kOfxStatErrFatal => "kOfxStatErrFatal",
        kOfxStatErrUnknown => "kOfxStatErrUnknown",
        kOfxStatErrMissingHostFeature => "kOfxStatErrMissingHostFeature",
        kOfxStatErrUnsupported => "kOfxStatErrUnsupported",
        kOfxStatErrExists => "kOfxStatErrExists",
        kOfxStatErrFormat => "kOfxStatErrFormat",
        kOfxStatErrMemory => "kOfxStatErrMemory",
        kOfxStatErrBadHandle => "kOfxStatErrBadHandle",
        kOfxStatErrBadIndex => "kOfxStatErrBadIndex",
        kOfxStatErrValue => "kOfxStatErrValue",
        kOfxStatReplyYes => "kOfxStatReplyYes",
        kOfxStatReplyNo => "kOfxStatReplyNo",
        kOfxStatReplyDefault => "kOfxStatReplyDefault",
        kOfxStatUnlicensed => "kOfxStatUnlicensed",
        1000 => "kOfxStatErrImageFormat",
        _ => return format!("OfxStatus({s})"),
    };
    n.to_string()
}

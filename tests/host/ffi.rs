//! Test host plumbing under every suite: the handle registry (every handle the plugin receives is
//! checked before use), the per-thread action context (which host, instance, action and render the
//! current call belongs to), status names, and safe reads of plugin-supplied C strings.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::os::unix::fs::FileExt;
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

/// /proc/self/mem lets the host read plugin memory without faulting on a bad address: it is used
/// for pointers taken from C varargs, whose presence the host cannot verify.
static SELF_MEM: LazyLock<Option<std::fs::File>> =
    LazyLock::new(|| std::fs::File::open("/proc/self/mem").ok());

/// Reads a C string at `addr` without dereferencing it; None if unreadable or longer than 64 KiB.
pub fn probe_cstr(addr: usize) -> Option<String> {
    if addr < 4096 {
        return None;
    }
    let file = SELF_MEM.as_ref()?;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < 65536 {
        let to_page_end = 4096 - (at % 4096);
        let mut buf = vec![0u8; to_page_end.min(512)];
        file.read_exact_at(&mut buf, at as u64).ok()?;
        if let Some(nul) = buf.iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..nul]);
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        at += buf.len();
        out.extend_from_slice(&buf);
    }
    None
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

/// A minimal printf for the message suite: `%s %d %i %u %x %X %o %c %f %F %e %E %g %G %p %%` with
/// flags, width, precision and length modifiers. Integer-class and floating-point arguments come
/// from separate register sequences, as the SysV x86-64 and AAPCS64 calling conventions pass them.
pub fn format_printf(fmt: &str, ints: &[usize], floats: &[f64], missing: &mut bool) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let (mut ii, mut fi) = (0usize, 0usize);
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::from("%");
        let mut conv = None;
        for d in it.by_ref() {
            spec.push(d);
            if d.is_ascii_alphabetic() && !matches!(d, 'l' | 'h' | 'z' | 'j' | 't' | 'L' | 'q') {
                conv = Some(d);
                break;
            }
            if d == '%' && spec.len() == 2 {
                conv = Some('%');
                break;
            }
        }
        let long =
            spec.contains('l') || spec.contains('z') || spec.contains('j') || spec.contains('t');
        let mut next_int = |missing: &mut bool| {
            let v = ints.get(ii).copied();
            ii += 1;
            if v.is_none() {
                *missing = true;
            }
            v
        };
        match conv {
            Some('%') => out.push('%'),
            Some('s') => match next_int(missing) {
                Some(0) => out.push_str("(null)"),
                Some(p) => match probe_cstr(p) {
                    Some(s) => out.push_str(&s),
                    None => {
                        *missing = true;
                        out.push_str("<unreadable %s argument>");
                    }
                },
                None => out.push_str("<missing %s argument>"),
            },
            Some(c @ ('d' | 'i')) => match next_int(missing) {
                Some(v) if long => out.push_str(&(v as i64).to_string()),
                Some(v) => out.push_str(&(v as u32 as i32).to_string()),
                None => out.push_str(&format!("<missing %{c} argument>")),
            },
            Some(c @ ('u' | 'x' | 'X' | 'o' | 'c' | 'p')) => match next_int(missing) {
                Some(v) => {
                    let v = if long || c == 'p' {
                        v as u64
                    } else {
                        v as u32 as u64
                    };
                    out.push_str(&match c {
                        'u' => v.to_string(),
                        'x' => format!("{v:x}"),
                        'X' => format!("{v:X}"),
                        'o' => format!("{v:o}"),
                        'p' => format!("{v:#x}"),
                        _ => char::from_u32(v as u32)
                            .map(String::from)
                            .unwrap_or_default(),
                    })
                }
                None => out.push_str(&format!("<missing %{c} argument>")),
            },
            Some(c @ ('f' | 'F' | 'e' | 'E' | 'g' | 'G' | 'a' | 'A')) => {
                let v = floats.get(fi).copied();
                fi += 1;
                match v {
                    Some(v) => out.push_str(&format!("{v}")),
                    None => {
                        *missing = true;
                        out.push_str(&format!("<missing %{c} argument>"));
                    }
                }
            }
            _ => out.push_str(&spec),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_formats_strings_ints_and_floats() {
        let s = c"model.safetensors";
        let mut missing = false;
        let out = format_printf(
            "file %s: %d tensors, %lu bytes, %.2f%% done",
            &[s.as_ptr() as usize, 7, 1234],
            &[12.5],
            &mut missing,
        );
        assert_eq!(
            out,
            "file model.safetensors: 7 tensors, 1234 bytes, 12.5% done"
        );
        assert!(!missing);
        let out = format_printf("%s and %s", &[s.as_ptr() as usize], &[], &mut missing);
        assert!(missing, "{out}");
        assert!(out.ends_with("<missing %s argument>"), "{out}");
    }

    #[test]
    fn probe_refuses_unmapped_memory() {
        assert_eq!(probe_cstr(8), None);
        assert_eq!(probe_cstr(c"abc".as_ptr() as usize).as_deref(), Some("abc"));
    }
}

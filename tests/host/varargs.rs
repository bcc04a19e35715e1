//! C-variadic host functions (paramGetValue & co, the message suite).
//!
//! Stable Rust cannot define a `...` function, so they are real C functions
//! (`tests/host/varargs.c`, built by `build.rs` into the test binaries only) that read exactly the
//! arguments the OFX API prescribes: as many out-pointers or values as the parameter's type holds,
//! of the C type it holds them in, and for messages whatever the format asks (through
//! `vsnprintf`). They call back into the host through the table registered by [`init`].

use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::sync::Once;

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::param::OfxParamHandle;

use super::ffi::{self, lookup, Obj};
use super::params;
use super::suites;

type GetValueV = unsafe extern "C" fn(OfxParamHandle, ...) -> OfxStatus;
type GetValueAtTimeV = unsafe extern "C" fn(OfxParamHandle, OfxTime, ...) -> OfxStatus;
type GetIntegralV = unsafe extern "C" fn(OfxParamHandle, OfxTime, OfxTime, ...) -> OfxStatus;
type MessageV = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    *const c_char,
    *const c_char,
    ...
) -> OfxStatus;

/// The callback table of varargs.c (same layout as `struct VdiffHostCallbacks`).
#[repr(C)]
struct Callbacks {
    layout: unsafe extern "C" fn(*mut c_void, *mut c_int, *mut c_int, *mut c_int) -> c_int,
    get: unsafe extern "C" fn(*mut c_void, c_int, f64, *mut *mut c_void, c_int) -> OfxStatus,
    derivative: unsafe extern "C" fn(*mut c_void, f64, *mut *mut c_void, c_int) -> OfxStatus,
    integral: unsafe extern "C" fn(*mut c_void, f64, f64, *mut *mut c_void, c_int) -> OfxStatus,
    set: unsafe extern "C" fn(
        *mut c_void,
        c_int,
        f64,
        *const c_longlong,
        c_int,
        *const f64,
        c_int,
        *const c_char,
        c_int,
    ) -> OfxStatus,
    message: unsafe extern "C" fn(
        c_int,
        *mut c_void,
        *const c_char,
        *const c_char,
        *const c_char,
        *const c_char,
    ) -> OfxStatus,
}

extern "C" {
    fn vdiff_host_shim_init(callbacks: *const Callbacks);
    fn vdiff_host_param_get_value(h: OfxParamHandle, ...) -> OfxStatus;
    fn vdiff_host_param_get_value_at_time(h: OfxParamHandle, t: OfxTime, ...) -> OfxStatus;
    fn vdiff_host_param_get_derivative(h: OfxParamHandle, t: OfxTime, ...) -> OfxStatus;
    fn vdiff_host_param_get_integral(h: OfxParamHandle, t1: OfxTime, t2: OfxTime, ...)
        -> OfxStatus;
    fn vdiff_host_param_set_value(h: OfxParamHandle, ...) -> OfxStatus;
    fn vdiff_host_param_set_value_at_time(h: OfxParamHandle, t: OfxTime, ...) -> OfxStatus;
    fn vdiff_host_message(
        h: *mut c_void,
        ty: *const c_char,
        id: *const c_char,
        fmt: *const c_char,
        ...
    ) -> OfxStatus;
    fn vdiff_host_set_persistent_message(
        h: *mut c_void,
        ty: *const c_char,
        id: *const c_char,
        fmt: *const c_char,
        ...
    ) -> OfxStatus;
}

pub const PARAM_GET_VALUE: GetValueV = vdiff_host_param_get_value;
pub const PARAM_GET_VALUE_AT_TIME: GetValueAtTimeV = vdiff_host_param_get_value_at_time;
pub const PARAM_GET_DERIVATIVE: GetValueAtTimeV = vdiff_host_param_get_derivative;
pub const PARAM_GET_INTEGRAL: GetIntegralV = vdiff_host_param_get_integral;
pub const PARAM_SET_VALUE: GetValueV = vdiff_host_param_set_value;
pub const PARAM_SET_VALUE_AT_TIME: GetValueAtTimeV = vdiff_host_param_set_value_at_time;
pub const MESSAGE: MessageV = vdiff_host_message;
pub const SET_PERSISTENT_MESSAGE: MessageV = vdiff_host_set_persistent_message;

/// Registers the callbacks with varargs.c; done before any suite is handed out.
pub fn init() {
    static ONCE: Once = Once::new();
    static CALLBACKS: Callbacks = Callbacks {
        layout,
        get,
        derivative,
        integral,
        set,
        message,
    };
    // SAFETY: the table is a static with the C struct's layout; the C side copies it.
    ONCE.call_once(|| unsafe { vdiff_host_shim_init(&CALLBACKS) });
}

/// Values of a parameter by kind; nonzero for a handle that is not a parameter (the value call
/// that follows reports it).
unsafe extern "C" fn layout(
    h: *mut c_void,
    ints: *mut c_int,
    doubles: *mut c_int,
    strings: *mut c_int,
) -> c_int {
    let Some(Obj::Param(p)) = lookup(h as usize) else {
        return 1;
    };
    let (ni, nd, s) = p.ptype.layout();
    // SAFETY: out-pointers from varargs.c, to its locals.
    unsafe {
        *ints = ni as c_int;
        *doubles = nd as c_int;
        *strings = c_int::from(s);
    }
    0
}

/// The plugin's out-pointers, padded with NULL.
///
/// # Safety
/// `outs` points at `n` (at most 4) pointers.
unsafe fn outs4(outs: *mut *mut c_void, n: c_int) -> [*mut c_void; 4] {
    let mut v = [std::ptr::null_mut(); 4];
    for (i, slot) in v.iter_mut().enumerate().take(n.clamp(0, 4) as usize) {
        // SAFETY: see above.
        *slot = unsafe { *outs.add(i) };
    }
    v
}

unsafe extern "C" fn get(
    h: *mut c_void,
    has_time: c_int,
    t: f64,
    outs: *mut *mut c_void,
    n: c_int,
) -> OfxStatus {
    let at = (has_time != 0).then_some(t);
    // SAFETY: varargs.c passes its array of n pointers.
    params::get_value(h as OfxParamHandle, at, unsafe { outs4(outs, n) })
}

unsafe extern "C" fn derivative(
    h: *mut c_void,
    t: f64,
    outs: *mut *mut c_void,
    n: c_int,
) -> OfxStatus {
    // SAFETY: as in `get`.
    params::derivative(h as OfxParamHandle, t, unsafe { outs4(outs, n) })
}

unsafe extern "C" fn integral(
    h: *mut c_void,
    t1: f64,
    t2: f64,
    outs: *mut *mut c_void,
    n: c_int,
) -> OfxStatus {
    // SAFETY: as in `get`.
    params::integral(h as OfxParamHandle, t1, t2, unsafe { outs4(outs, n) })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn set(
    h: *mut c_void,
    has_time: c_int,
    t: f64,
    ints: *const c_longlong,
    n_ints: c_int,
    doubles: *const f64,
    n_doubles: c_int,
    string: *const c_char,
    has_string: c_int,
) -> OfxStatus {
    let at = (has_time != 0).then_some(t);
    // SAFETY: varargs.c passes arrays of the given lengths and the plugin's string argument.
    let (ints, doubles, string) = unsafe {
        (
            std::slice::from_raw_parts(ints, n_ints.clamp(0, 4) as usize),
            std::slice::from_raw_parts(doubles, n_doubles.clamp(0, 4) as usize),
            (has_string != 0).then(|| ffi::cstr_arg(string).unwrap_or_default()),
        )
    };
    let ints: Vec<i32> = ints.iter().map(|&v| v as i32).collect();
    params::set_value(h as OfxParamHandle, at, &ints, doubles, string)
}

unsafe extern "C" fn message(
    persistent: c_int,
    h: *mut c_void,
    ty: *const c_char,
    id: *const c_char,
    format: *const c_char,
    text: *const c_char,
) -> OfxStatus {
    let call = if persistent != 0 {
        suites::MsgCall::Persistent
    } else {
        suites::MsgCall::Message
    };
    // SAFETY: the plugin's named string arguments, and varargs.c's formatted text.
    let (format, text) = unsafe { (ffi::cstr_arg(format), ffi::cstr_arg(text)) };
    suites::message(call, h, ty, id, format.is_some(), text.unwrap_or_default())
}

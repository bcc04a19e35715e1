//! C-variadic host functions (paramGetValue & co, the message suite) on stable Rust.
//!
//! Stable Rust cannot define a `...` function, so each one is a fixed-arity `extern "C"` function
//! cast to the variadic pointer type the suite struct wants. That is sound at the machine level on
//! the two ABIs this host is built for (the module is `cfg`-gated to them): on SysV x86-64 and on
//! Linux AAPCS64 a variadic caller places the anonymous arguments exactly where a prototyped
//! callee with the same leading parameters looks for its next integer (rdi.. / x0..) and
//! floating-point (xmm0.. / v0..) parameters. The callee reads a few more registers than were
//! necessarily set; those spare values are only used when the plugin's own arguments call for
//! them (a pointer count fixed by the parameter type, a format directive), and `%s` pointers are
//! read through /proc/self/mem so a missing argument cannot fault the host.

use std::ffi::{c_char, c_void};

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::param::OfxParamHandle;

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

type P = *mut c_void;

unsafe extern "C" fn get_value(h: OfxParamHandle, a: P, b: P, c: P, d: P) -> OfxStatus {
    params::get_value(h, None, [a, b, c, d])
}

unsafe extern "C" fn get_value_at_time(
    h: OfxParamHandle,
    t: f64,
    a: P,
    b: P,
    c: P,
    d: P,
) -> OfxStatus {
    params::get_value(h, Some(t), [a, b, c, d])
}

unsafe extern "C" fn get_derivative(
    h: OfxParamHandle,
    t: f64,
    a: P,
    b: P,
    c: P,
    d: P,
) -> OfxStatus {
    params::derivative(h, t, [a, b, c, d])
}

unsafe extern "C" fn get_integral(
    h: OfxParamHandle,
    t1: f64,
    t2: f64,
    a: P,
    b: P,
    c: P,
    d: P,
) -> OfxStatus {
    params::integral(h, t1, t2, [a, b, c, d])
}

/// Integer-class varargs arrive in the next integer registers, doubles in the vector registers.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn set_value(
    h: OfxParamHandle,
    i0: usize,
    i1: usize,
    i2: usize,
    d0: f64,
    d1: f64,
    d2: f64,
    d3: f64,
) -> OfxStatus {
    params::set_value(h, None, [i0, i1, i2], [d0, d1, d2, d3])
}

/// The fixed `time` takes the first vector register, so the values' doubles follow it.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn set_value_at_time(
    h: OfxParamHandle,
    t: f64,
    i0: usize,
    i1: usize,
    i2: usize,
    d0: f64,
    d1: f64,
    d2: f64,
    d3: f64,
) -> OfxStatus {
    params::set_value(h, Some(t), [i0, i1, i2], [d0, d1, d2, d3])
}

/// message(handle, type, id, format, ...): two integer-class and four double varargs are read.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn message(
    h: *mut c_void,
    ty: *const c_char,
    id: *const c_char,
    fmt: *const c_char,
    i0: usize,
    i1: usize,
    d0: f64,
    d1: f64,
) -> OfxStatus {
    suites::message(suites::MsgCall::Message, h, ty, id, fmt, [i0, i1], [d0, d1])
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn set_persistent_message(
    h: *mut c_void,
    ty: *const c_char,
    id: *const c_char,
    fmt: *const c_char,
    i0: usize,
    i1: usize,
    d0: f64,
    d1: f64,
) -> OfxStatus {
    suites::message(
        suites::MsgCall::Persistent,
        h,
        ty,
        id,
        fmt,
        [i0, i1],
        [d0, d1],
    )
}

type GetValueF = unsafe extern "C" fn(OfxParamHandle, P, P, P, P) -> OfxStatus;
type GetValueAtTimeF = unsafe extern "C" fn(OfxParamHandle, f64, P, P, P, P) -> OfxStatus;
type GetIntegralF = unsafe extern "C" fn(OfxParamHandle, f64, f64, P, P, P, P) -> OfxStatus;
type SetValueF =
    unsafe extern "C" fn(OfxParamHandle, usize, usize, usize, f64, f64, f64, f64) -> OfxStatus;
type SetValueAtTimeF =
    unsafe extern "C" fn(OfxParamHandle, f64, usize, usize, usize, f64, f64, f64, f64) -> OfxStatus;
type MessageF = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    *const c_char,
    *const c_char,
    usize,
    usize,
    f64,
    f64,
) -> OfxStatus;

// SAFETY (all casts below): function pointers of equal size; the call sequences match on the
// supported ABIs as explained in the module docs.
pub const PARAM_GET_VALUE: GetValueV =
    unsafe { std::mem::transmute::<GetValueF, GetValueV>(get_value) };
pub const PARAM_GET_VALUE_AT_TIME: GetValueAtTimeV =
    unsafe { std::mem::transmute::<GetValueAtTimeF, GetValueAtTimeV>(get_value_at_time) };
pub const PARAM_GET_DERIVATIVE: GetValueAtTimeV =
    unsafe { std::mem::transmute::<GetValueAtTimeF, GetValueAtTimeV>(get_derivative) };
pub const PARAM_GET_INTEGRAL: GetIntegralV =
    unsafe { std::mem::transmute::<GetIntegralF, GetIntegralV>(get_integral) };
pub const PARAM_SET_VALUE: GetValueV =
    unsafe { std::mem::transmute::<SetValueF, GetValueV>(set_value) };
pub const PARAM_SET_VALUE_AT_TIME: GetValueAtTimeV =
    unsafe { std::mem::transmute::<SetValueAtTimeF, GetValueAtTimeV>(set_value_at_time) };
pub const MESSAGE: MessageV = unsafe { std::mem::transmute::<MessageF, MessageV>(message) };
pub const SET_PERSISTENT_MESSAGE: MessageV =
    unsafe { std::mem::transmute::<MessageF, MessageV>(set_persistent_message) };

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_int;

    // The shims must see what a genuine C-variadic caller passes; Rust calls the transmuted
    // pointers with real varargs here, exactly as a plugin does.
    static SEEN: std::sync::Mutex<Vec<(usize, usize, f64, f64)>> =
        std::sync::Mutex::new(Vec::new());

    unsafe extern "C" fn probe(
        _h: *mut c_void,
        _t: *const c_char,
        _i: *const c_char,
        _f: *const c_char,
        i0: usize,
        i1: usize,
        d0: f64,
        d1: f64,
    ) -> OfxStatus {
        SEEN.lock().unwrap().push((i0, i1, d0, d1));
        0
    }

    #[test]
    fn variadic_arguments_land_in_the_fixed_parameters() {
        // SAFETY: see the module docs.
        let f: MessageV = unsafe { std::mem::transmute::<MessageF, MessageV>(probe) };
        let s = c"x";
        // SAFETY: calling our own probe with C varargs.
        unsafe {
            f(
                std::ptr::null_mut(),
                s.as_ptr(),
                s.as_ptr(),
                s.as_ptr(),
                42 as c_int,
                2.5f64,
                s.as_ptr(),
                -1.0f64,
            )
        };
        let seen = SEEN.lock().unwrap().pop().unwrap();
        assert_eq!(seen.0 as u32, 42);
        assert_eq!(seen.1, s.as_ptr() as usize);
        assert_eq!(seen.2, 2.5);
        assert_eq!(seen.3, -1.0);
    }
}

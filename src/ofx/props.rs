//! Typed view of an OFX property set (effect, clip, image, parameter, action arguments).
use std::ffi::{c_char, c_void, CStr, CString};
use std::marker::PhantomData;

use openfx::sys::generic::core::{kOfxPropName, kOfxStatOK, OfxPropertySetHandle, OfxStatus};
use openfx::sys::image_effect_v1::image_effect::{
    kOfxImageEffectPropSupportsMultipleClipDepths, kOfxImageEffectPropTemporalClipAccess,
};

use super::host::Host;
use super::status_name;
use crate::{Error, Result};

/// A property set handle valid for `'a` (usually one action call), with the host's suite.
#[derive(Clone, Copy)]
pub struct PropSet<'a> {
    h: OfxPropertySetHandle,
    host: &'a Host,
    _life: PhantomData<&'a ()>,
}

/// The error for a failed host call: names the call, what it was about and the host's status.
pub(crate) fn host_error(call: &str, what: &str, st: OfxStatus) -> Error {
    Error::Host(format!(
        "host call {call}({what}) failed: {}",
        status_name(st)
    ))
}

fn missing(call: &str) -> Error {
    Error::Host(format!("the host's suite lacks {call}"))
}

/// A suite function the host may leave out (a null pointer), or the error naming it.
pub(crate) fn need<F>(f: Option<F>, call: &str) -> Result<F> {
    f.ok_or_else(|| missing(call))
}

/// `Ok` when a host call returned kOfxStatOK, else [`host_error`].
pub(crate) fn check(st: OfxStatus, call: &str, what: &str) -> Result<()> {
    if st == kOfxStatOK {
        Ok(())
    } else {
        Err(host_error(call, what, st))
    }
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| {
        Error::Host(format!(
            "string with a NUL byte cannot go to the host: {s:?}"
        ))
    })
}

impl<'a> PropSet<'a> {
    /// # Safety
    /// `h` must be null or a property set handle the host keeps valid for `'a`.
    pub(crate) unsafe fn from_raw(h: OfxPropertySetHandle, host: &'a Host) -> Option<Self> {
        (!h.is_null()).then_some(PropSet {
            h,
            host,
            _life: PhantomData,
        })
    }

    fn check(st: OfxStatus, call: &str, name: &CStr, i: usize) -> Result<()> {
        if st == kOfxStatOK {
            Ok(())
        } else {
            Err(host_error(
                call,
                &format!("{}[{i}]", name.to_string_lossy()),
                st,
            ))
        }
    }

    pub fn int(&self, name: &CStr, i: usize) -> Result<i32> {
        let f = self
            .host
            .prop
            .propGetInt
            .ok_or_else(|| missing("propGetInt"))?;
        let mut v = 0;
        // SAFETY: valid handle (constructor contract), NUL-terminated name, out pointer to a live int.
        let st = unsafe { f(self.h, name.as_ptr(), i as i32, &mut v) };
        Self::check(st, "propGetInt", name, i).map(|_| v)
    }

    pub fn double(&self, name: &CStr, i: usize) -> Result<f64> {
        let f = self
            .host
            .prop
            .propGetDouble
            .ok_or_else(|| missing("propGetDouble"))?;
        let mut v = 0.0;
        // SAFETY: as in `int`.
        let st = unsafe { f(self.h, name.as_ptr(), i as i32, &mut v) };
        Self::check(st, "propGetDouble", name, i).map(|_| v)
    }

    /// A copy of a string property (the host owns its buffer only until its next call).
    pub fn string(&self, name: &CStr, i: usize) -> Result<String> {
        let f = self
            .host
            .prop
            .propGetString
            .ok_or_else(|| missing("propGetString"))?;
        let mut p: *mut c_char = std::ptr::null_mut();
        // SAFETY: as in `int`.
        let st = unsafe { f(self.h, name.as_ptr(), i as i32, &mut p) };
        Self::check(st, "propGetString", name, i)?;
        if p.is_null() {
            return Ok(String::new());
        }
        // SAFETY: on success the host returns a NUL-terminated string it keeps alive at least
        // until its next call on this thread; we copy it at once.
        Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    pub(crate) fn pointer(&self, name: &CStr, i: usize) -> Result<*mut c_void> {
        let f = self
            .host
            .prop
            .propGetPointer
            .ok_or_else(|| missing("propGetPointer"))?;
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: as in `int`.
        let st = unsafe { f(self.h, name.as_ptr(), i as i32, &mut p) };
        Self::check(st, "propGetPointer", name, i).map(|_| p)
    }

    pub fn dimension(&self, name: &CStr) -> Result<usize> {
        let f = self
            .host
            .prop
            .propGetDimension
            .ok_or_else(|| missing("propGetDimension"))?;
        let mut n = 0;
        // SAFETY: as in `int`.
        let st = unsafe { f(self.h, name.as_ptr(), &mut n) };
        Self::check(st, "propGetDimension", name, 0).map(|_| n.max(0) as usize)
    }

    /// `N` doubles, read one index at a time (hosts differ in their `propGetDoubleN` support).
    pub fn doubles<const N: usize>(&self, name: &CStr) -> Result<[f64; N]> {
        let mut out = [0.0; N];
        for (i, v) in out.iter_mut().enumerate() {
            *v = self.double(name, i)?;
        }
        Ok(out)
    }

    pub fn ints<const N: usize>(&self, name: &CStr) -> Result<[i32; N]> {
        let mut out = [0; N];
        for (i, v) in out.iter_mut().enumerate() {
            *v = self.int(name, i)?;
        }
        Ok(out)
    }

    pub fn strings(&self, name: &CStr) -> Result<Vec<String>> {
        (0..self.dimension(name)?)
            .map(|i| self.string(name, i))
            .collect()
    }

    pub fn set_int(&self, name: &CStr, i: usize, v: i32) -> Result<()> {
        let f = self
            .host
            .prop
            .propSetInt
            .ok_or_else(|| missing("propSetInt"))?;
        // SAFETY: valid handle, NUL-terminated name.
        let st = unsafe { f(self.h, name.as_ptr(), i as i32, v) };
        Self::check(st, "propSetInt", name, i)
    }

    pub fn set_double(&self, name: &CStr, i: usize, v: f64) -> Result<()> {
        let f = self
            .host
            .prop
            .propSetDouble
            .ok_or_else(|| missing("propSetDouble"))?;
        // SAFETY: as in `set_int`.
        let st = unsafe { f(self.h, name.as_ptr(), i as i32, v) };
        Self::check(st, "propSetDouble", name, i)
    }

    pub fn set_string(&self, name: &CStr, i: usize, v: &str) -> Result<()> {
        let f = self
            .host
            .prop
            .propSetString
            .ok_or_else(|| missing("propSetString"))?;
        let v = cstring(v)?;
        // SAFETY: as in `set_int`; the host copies the value before returning.
        let st = unsafe { f(self.h, name.as_ptr(), i as i32, v.as_ptr()) };
        Self::check(st, "propSetString", name, i)
    }

    pub(crate) fn set_pointer(&self, name: &CStr, i: usize, v: *mut c_void) -> Result<()> {
        let f = self
            .host
            .prop
            .propSetPointer
            .ok_or_else(|| missing("propSetPointer"))?;
        // SAFETY: as in `set_int`.
        let st = unsafe { f(self.h, name.as_ptr(), i as i32, v) };
        Self::check(st, "propSetPointer", name, i)
    }

    /// Sets all values and the dimension (`propSet*N`); per index where the host lacks the N call.
    pub fn set_ints(&self, name: &CStr, v: &[i32]) -> Result<()> {
        match self.host.prop.propSetIntN {
            Some(f) => {
                // SAFETY: valid handle, NUL-terminated name, `v.len()` readable ints.
                let st = unsafe { f(self.h, name.as_ptr(), v.len() as i32, v.as_ptr()) };
                Self::check(st, "propSetIntN", name, v.len())
            }
            None => v
                .iter()
                .enumerate()
                .try_for_each(|(i, &x)| self.set_int(name, i, x)),
        }
    }

    pub fn set_doubles(&self, name: &CStr, v: &[f64]) -> Result<()> {
        match self.host.prop.propSetDoubleN {
            Some(f) => {
                // SAFETY: as in `set_ints`.
                let st = unsafe { f(self.h, name.as_ptr(), v.len() as i32, v.as_ptr()) };
                Self::check(st, "propSetDoubleN", name, v.len())
            }
            None => v
                .iter()
                .enumerate()
                .try_for_each(|(i, &x)| self.set_double(name, i, x)),
        }
    }

    pub fn set_strings<S: AsRef<str>>(&self, name: &CStr, v: &[S]) -> Result<()> {
        match self.host.prop.propSetStringN {
            Some(f) => {
                let owned = v
                    .iter()
                    .map(|s| cstring(s.as_ref()))
                    .collect::<Result<Vec<_>>>()?;
                let ptrs: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
                // SAFETY: as in `set_ints`; `owned` outlives the call and the host copies.
                let st = unsafe { f(self.h, name.as_ptr(), ptrs.len() as i32, ptrs.as_ptr()) };
                Self::check(st, "propSetStringN", name, v.len())
            }
            None => v
                .iter()
                .enumerate()
                .try_for_each(|(i, x)| self.set_string(name, i, x.as_ref())),
        }
    }
}

/// What the host says of itself, read from its property set.
impl Host {
    /// The host's own property set (`OfxHost::host`).
    pub fn props(&self) -> Option<PropSet<'_>> {
        // SAFETY: the host property set stays valid for the life of the host (OFX spec), and
        // `self` came from that host.
        unsafe { PropSet::from_raw(self.props_handle(), self) }
    }

    /// Host name (`kOfxPropName`), for logs.
    pub fn name(&self) -> String {
        self.props()
            .and_then(|p| p.string(kOfxPropName, 0).ok())
            .unwrap_or_else(|| "unknown host".into())
    }

    /// Whether the host gives images at other times than the one rendered. An absent property
    /// (an out-of-spec host) counts as no: rendering one frame still works there.
    pub fn temporal_clip_access(&self) -> bool {
        self.props()
            .and_then(|p| p.int(kOfxImageEffectPropTemporalClipAccess, 0).ok())
            .unwrap_or(0)
            != 0
    }

    pub fn supports_multiple_clip_depths(&self) -> bool {
        self.props()
            .and_then(|p| p.int(kOfxImageEffectPropSupportsMultipleClipDepths, 0).ok())
            .unwrap_or(0)
            != 0
    }
}

//! Typed views of an effect's parameter set and of single parameters (define at describe time,
//! read at any time, write from InstanceChanged).
use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;

use openfx::sys::generic::core::{kOfxStatOK, OfxPropertySetHandle};
use openfx::sys::image_effect_v1::param::{OfxParamHandle, OfxParamSetHandle};

use super::host::Host;
use super::props::{host_error, PropSet};
use crate::{Error, Result};

/// A parameter set handle (descriptor or instance) valid for `'a`.
#[derive(Clone, Copy)]
pub struct ParamSet<'a> {
    h: OfxParamSetHandle,
    host: &'a Host,
    _life: PhantomData<&'a ()>,
}

/// One parameter instance.
#[derive(Clone, Copy)]
pub struct Param<'a> {
    h: OfxParamHandle,
    props: Option<PropSet<'a>>,
    host: &'a Host,
    name: &'a CStr,
}

fn missing(call: &str) -> Error {
    Error::Host(format!("the host's parameter suite lacks {call}"))
}

impl<'a> ParamSet<'a> {
    /// # Safety
    /// `h` must be null or a parameter set handle the host keeps valid for `'a`.
    pub(crate) unsafe fn from_raw(h: OfxParamSetHandle, host: &'a Host) -> Option<Self> {
        (!h.is_null()).then_some(ParamSet {
            h,
            host,
            _life: PhantomData,
        })
    }

    /// Defines a parameter (describe in context) and returns its property set.
    pub fn define(&self, kind: &CStr, name: &CStr) -> Result<PropSet<'a>> {
        let f = self
            .host
            .param
            .paramDefine
            .ok_or_else(|| missing("paramDefine"))?;
        let mut props: OfxPropertySetHandle = std::ptr::null_mut();
        // SAFETY: valid set handle, NUL-terminated strings, out pointer to a live handle.
        let st = unsafe { f(self.h, kind.as_ptr(), name.as_ptr(), &mut props) };
        if st != kOfxStatOK {
            return Err(host_error("paramDefine", &name.to_string_lossy(), st));
        }
        // SAFETY: the host returned the descriptor's property set, valid while the descriptor is.
        unsafe { PropSet::from_raw(props, self.host) }.ok_or_else(|| {
            Error::Host(format!(
                "host gave no property set for parameter {}",
                name.to_string_lossy()
            ))
        })
    }

    /// The parameter named `name`.
    pub fn param(&self, name: &'a CStr) -> Result<Param<'a>> {
        let f = self
            .host
            .param
            .paramGetHandle
            .ok_or_else(|| missing("paramGetHandle"))?;
        let mut h: OfxParamHandle = std::ptr::null_mut();
        let mut props: OfxPropertySetHandle = std::ptr::null_mut();
        // SAFETY: valid set handle, NUL-terminated name, out pointers to live handles.
        let st = unsafe { f(self.h, name.as_ptr(), &mut h, &mut props) };
        if st != kOfxStatOK || h.is_null() {
            return Err(host_error("paramGetHandle", &name.to_string_lossy(), st));
        }
        // SAFETY: the parameter's property set lives as long as the parameter.
        let props = unsafe { PropSet::from_raw(props, self.host) };
        Ok(Param {
            h,
            props,
            host: self.host,
            name,
        })
    }

    /// Groups the following edits into one undo step, where the host offers it.
    pub fn edit_begin(&self, label: &str) {
        if let (Some(f), Ok(label)) = (self.host.param.paramEditBegin, CString::new(label)) {
            // SAFETY: valid set handle, NUL-terminated label. The status only matters to undo.
            unsafe { f(self.h, label.as_ptr()) };
        }
    }

    pub fn edit_end(&self) {
        if let Some(f) = self.host.param.paramEditEnd {
            // SAFETY: valid set handle.
            unsafe { f(self.h) };
        }
    }
}

impl<'a> Param<'a> {
    pub fn props(&self) -> Option<PropSet<'a>> {
        self.props
    }

    fn fail(&self, call: &str, st: i32) -> Error {
        host_error(call, &self.name.to_string_lossy(), st)
    }

    /// Value of a double parameter at time t.
    pub fn double_at(&self, t: f64) -> Result<f64> {
        let f = self
            .host
            .param
            .paramGetValueAtTime
            .ok_or_else(|| missing("paramGetValueAtTime"))?;
        let mut v = 0.0f64;
        // SAFETY: valid parameter handle; a double parameter takes one `double*` vararg.
        let st = unsafe { f(self.h, t, &mut v as *mut f64) };
        if st == kOfxStatOK {
            Ok(v)
        } else {
            Err(self.fail("paramGetValueAtTime", st))
        }
    }

    /// Value of an integer, choice or boolean parameter at time t.
    pub fn int_at(&self, t: f64) -> Result<i32> {
        let f = self
            .host
            .param
            .paramGetValueAtTime
            .ok_or_else(|| missing("paramGetValueAtTime"))?;
        let mut v: i32 = 0;
        // SAFETY: valid parameter handle; integer, choice and boolean take one `int*` vararg.
        let st = unsafe { f(self.h, t, &mut v as *mut i32) };
        if st == kOfxStatOK {
            Ok(v)
        } else {
            Err(self.fail("paramGetValueAtTime", st))
        }
    }

    /// Value of a string parameter (not animated, so read without a time).
    pub fn string(&self) -> Result<String> {
        let f = self
            .host
            .param
            .paramGetValue
            .ok_or_else(|| missing("paramGetValue"))?;
        let mut p: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid parameter handle; a string parameter takes one `char**` vararg.
        let st = unsafe { f(self.h, &mut p as *mut *mut c_char) };
        if st != kOfxStatOK {
            return Err(self.fail("paramGetValue", st));
        }
        if p.is_null() {
            return Ok(String::new());
        }
        // SAFETY: the host returns a NUL-terminated string valid until its next call; copied now.
        Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    pub fn set_double(&self, v: f64) -> Result<()> {
        let f = self
            .host
            .param
            .paramSetValue
            .ok_or_else(|| missing("paramSetValue"))?;
        // SAFETY: valid parameter handle; a double parameter takes one `double` vararg.
        let st = unsafe { f(self.h, v) };
        if st == kOfxStatOK {
            Ok(())
        } else {
            Err(self.fail("paramSetValue", st))
        }
    }

    /// Sets a key (or the value) at time t.
    pub fn set_double_at(&self, t: f64, v: f64) -> Result<()> {
        let f = self
            .host
            .param
            .paramSetValueAtTime
            .ok_or_else(|| missing("paramSetValueAtTime"))?;
        // SAFETY: as in `set_double`.
        let st = unsafe { f(self.h, t, v) };
        if st == kOfxStatOK {
            Ok(())
        } else {
            Err(self.fail("paramSetValueAtTime", st))
        }
    }

    /// Number of keyframes; 0 where the host cannot say.
    pub fn num_keys(&self) -> u32 {
        let Some(f) = self.host.param.paramGetNumKeys else {
            return 0;
        };
        let mut n: u32 = 0;
        // SAFETY: valid parameter handle, out pointer to a live uint.
        let st = unsafe { f(self.h, &mut n) };
        if st == kOfxStatOK {
            n
        } else {
            0
        }
    }
}

//! Typed view of an image effect handle (descriptor or instance): its properties, parameters,
//! clips, instance data, and the message, progress and abort calls made on its behalf.
use std::any::Any;
use std::ffi::{c_void, CStr, CString};
use std::marker::PhantomData;

use openfx::sys::generic::core::{
    kOfxPropInstanceData, kOfxStatOK, kOfxStatReplyNo, OfxPropertySetHandle,
};
use openfx::sys::image_effect_v1::image_effect::{OfxImageClipHandle, OfxImageEffectHandle};
use openfx::sys::image_effect_v1::message::{
    kOfxMessageError, kOfxMessageLog, kOfxMessageMessage, kOfxMessageWarning,
};
use openfx::sys::image_effect_v1::param::OfxParamSetHandle;

use super::clip::Clip;
use super::host::{Host, MessageSuite, ProgressSuite};
use super::params::ParamSet;
use super::props::{check, host_error, need, PropSet};
use crate::{Error, Result};

/// Kind of a message to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Error,
    Warning,
    Message,
    Log,
}

impl MessageKind {
    fn ofx(self) -> &'static CStr {
        match self {
            MessageKind::Error => kOfxMessageError,
            MessageKind::Warning => kOfxMessageWarning,
            MessageKind::Message => kOfxMessageMessage,
            MessageKind::Log => kOfxMessageLog,
        }
    }
}

/// Plugin data attached to an instance (`kOfxPropInstanceData`), typed through `Any`.
pub struct InstanceSlot(Box<dyn Any + Send + Sync>);

/// An image effect handle valid for `'a`.
#[derive(Clone, Copy)]
pub struct ImageEffect<'a> {
    h: OfxImageEffectHandle,
    host: &'a Host,
    _life: PhantomData<&'a ()>,
}

/// Format for every message call: the text goes as one `%s` argument, so a `%` in a file name
/// can never be read as a format directive.
const PERCENT_S: &CStr = c"%s";

impl<'a> ImageEffect<'a> {
    /// # Safety
    /// `h` must be null or an image effect handle the host keeps valid for `'a`.
    pub(crate) unsafe fn from_raw(h: OfxImageEffectHandle, host: &'a Host) -> Option<Self> {
        (!h.is_null()).then_some(ImageEffect {
            h,
            host,
            _life: PhantomData,
        })
    }

    pub fn host(&self) -> &'a Host {
        self.host
    }

    pub fn props(&self) -> Result<PropSet<'a>> {
        let f = need(self.host.effect.getPropertySet, "getPropertySet")?;
        let mut p: OfxPropertySetHandle = std::ptr::null_mut();
        // SAFETY: valid effect handle, out pointer to a live handle.
        let st = unsafe { f(self.h, &mut p) };
        check(st, "getPropertySet", "effect")?;
        // SAFETY: the effect's property set lives as long as the effect.
        unsafe { PropSet::from_raw(p, self.host) }
            .ok_or_else(|| Error::Host("the host gave a null effect property set".into()))
    }

    pub fn params(&self) -> Result<ParamSet<'a>> {
        let f = need(self.host.effect.getParamSet, "getParamSet")?;
        let mut p: OfxParamSetHandle = std::ptr::null_mut();
        // SAFETY: valid effect handle, out pointer to a live handle.
        let st = unsafe { f(self.h, &mut p) };
        check(st, "getParamSet", "effect")?;
        // SAFETY: the parameter set lives as long as the effect.
        unsafe { ParamSet::from_raw(p, self.host) }
            .ok_or_else(|| Error::Host("the host gave a null parameter set".into()))
    }

    /// Defines a clip (describe in context) and returns its descriptor properties.
    pub fn define_clip(&self, name: &CStr) -> Result<PropSet<'a>> {
        let f = need(self.host.effect.clipDefine, "clipDefine")?;
        let mut p: OfxPropertySetHandle = std::ptr::null_mut();
        // SAFETY: valid effect handle, NUL-terminated name, out pointer to a live handle.
        let st = unsafe { f(self.h, name.as_ptr(), &mut p) };
        check(st, "clipDefine", &name.to_string_lossy())?;
        // SAFETY: the clip descriptor lives as long as the effect descriptor.
        unsafe { PropSet::from_raw(p, self.host) }
            .ok_or_else(|| Error::Host("the host gave a null clip descriptor".into()))
    }

    /// The instance's clip named `name`.
    pub fn clip(&self, name: &'a CStr) -> Result<Clip<'a>> {
        let f = need(self.host.effect.clipGetHandle, "clipGetHandle")?;
        let mut c: OfxImageClipHandle = std::ptr::null_mut();
        let mut p: OfxPropertySetHandle = std::ptr::null_mut();
        // SAFETY: valid effect handle, NUL-terminated name, out pointers to live handles.
        let st = unsafe { f(self.h, name.as_ptr(), &mut c, &mut p) };
        if st != kOfxStatOK || c.is_null() {
            return Err(host_error("clipGetHandle", &name.to_string_lossy(), st));
        }
        let props = match unsafe {
            // SAFETY: the clip's property set lives as long as the clip.
            PropSet::from_raw(p, self.host)
        } {
            Some(p) => p,
            None => self.clip_props(c, name)?,
        };
        // SAFETY: the clip handle lives as long as the instance, which outlives 'a.
        Ok(unsafe { Clip::from_raw(c, props, self.host, name) })
    }

    /// Property set of a clip whose handle came without one.
    fn clip_props(&self, c: OfxImageClipHandle, name: &CStr) -> Result<PropSet<'a>> {
        let f = need(self.host.effect.clipGetPropertySet, "clipGetPropertySet")?;
        let mut p: OfxPropertySetHandle = std::ptr::null_mut();
        // SAFETY: valid clip handle, out pointer to a live handle.
        let st = unsafe { f(c, &mut p) };
        check(st, "clipGetPropertySet", &name.to_string_lossy())?;
        // SAFETY: the clip's property set lives as long as the clip.
        unsafe { PropSet::from_raw(p, self.host) }
            .ok_or_else(|| Error::Host("the host gave a null clip property set".into()))
    }

    /// Whether the host wants the current render stopped.
    pub fn aborted(&self) -> bool {
        match self.host.effect.abort {
            // SAFETY: valid effect handle.
            Some(f) => unsafe { f(self.h) != 0 },
            None => false,
        }
    }

    fn handle_ptr(&self) -> *mut c_void {
        self.h as *mut c_void
    }

    /// A one-off message (dialog or log, as the host chooses). Returns false when the host has
    /// no message suite.
    pub fn message(&self, kind: MessageKind, id: &str, text: &str) -> bool {
        let (Ok(id), Ok(text)) = (CString::new(id), CString::new(text.replace('\0', " "))) else {
            return false;
        };
        let f = match self.host.message {
            Some(MessageSuite::V2(s)) => s.message,
            Some(MessageSuite::V1(s)) => s.message,
            None => None,
        };
        let Some(f) = f else { return false };
        // SAFETY: valid handle, NUL-terminated strings, and the format "%s" consumes exactly the
        // one `char*` vararg passed.
        let st = unsafe {
            f(
                self.handle_ptr(),
                kind.ofx().as_ptr(),
                id.as_ptr(),
                PERCENT_S.as_ptr(),
                text.as_ptr(),
            )
        };
        st == kOfxStatOK
    }

    /// A message that stays on the instance until cleared (message suite v2). Returns false
    /// when the host cannot show persistent messages.
    pub fn set_persistent_message(&self, kind: MessageKind, id: &str, text: &str) -> bool {
        let Some(MessageSuite::V2(s)) = self.host.message else {
            return false;
        };
        let Some(f) = s.setPersistentMessage else {
            return false;
        };
        let (Ok(id), Ok(text)) = (CString::new(id), CString::new(text.replace('\0', " "))) else {
            return false;
        };
        // SAFETY: as in `message`.
        let st = unsafe {
            f(
                self.handle_ptr(),
                kind.ofx().as_ptr(),
                id.as_ptr(),
                PERCENT_S.as_ptr(),
                text.as_ptr(),
            )
        };
        st == kOfxStatOK
    }

    pub fn clear_persistent_message(&self) {
        if let Some(MessageSuite::V2(s)) = self.host.message {
            if let Some(f) = s.clearPersistentMessage {
                // SAFETY: valid handle.
                unsafe { f(self.handle_ptr()) };
            }
        }
    }

    /// Starts a progress bar; false when the host has none (then no update or end is sent).
    pub fn progress_start(&self, label: &str) -> bool {
        let Ok(label) = CString::new(label) else {
            return false;
        };
        let h = self.handle_ptr();
        let st = match self.host.progress {
            Some(ProgressSuite::V2(s)) => s.progressStart.map(|f| {
                // SAFETY: valid effect handle, NUL-terminated label and message id.
                unsafe { f(h, label.as_ptr(), c"vdiff.render".as_ptr()) }
            }),
            Some(ProgressSuite::V1(s)) => s.progressStart.map(|f| {
                // SAFETY: valid effect handle, NUL-terminated label.
                unsafe { f(h, label.as_ptr()) }
            }),
            None => None,
        };
        st == Some(kOfxStatOK)
    }

    /// Reports progress in [0, 1]; false when the user cancelled from the progress bar.
    pub fn progress_update(&self, fraction: f64) -> bool {
        let f = match self.host.progress {
            Some(ProgressSuite::V2(s)) => s.progressUpdate,
            Some(ProgressSuite::V1(s)) => s.progressUpdate,
            None => None,
        };
        // SAFETY: valid handle.
        let st = f.map(|f| unsafe { f(self.handle_ptr(), fraction.clamp(0.0, 1.0)) });
        st != Some(kOfxStatReplyNo)
    }

    pub fn progress_end(&self) {
        let f = match self.host.progress {
            Some(ProgressSuite::V2(s)) => s.progressEnd,
            Some(ProgressSuite::V1(s)) => s.progressEnd,
            None => None,
        };
        if let Some(f) = f {
            // SAFETY: valid handle.
            unsafe { f(self.handle_ptr()) };
        }
    }

    /// Attaches `data` to the instance (CreateInstance), replacing and freeing any earlier one.
    pub fn set_instance_data<T: Any + Send + Sync>(&self, data: T) -> Result<()> {
        self.free_instance_data()?;
        let slot = Box::into_raw(Box::new(InstanceSlot(Box::new(data))));
        if let Err(e) = self
            .props()?
            .set_pointer(kOfxPropInstanceData, 0, slot as *mut c_void)
        {
            // SAFETY: `slot` came from Box::into_raw just above and was not handed out.
            drop(unsafe { Box::from_raw(slot) });
            return Err(e);
        }
        Ok(())
    }

    /// The instance's data, if CreateInstance attached one of type T.
    pub fn instance_data<T: Any + Send + Sync>(&self) -> Option<&'a T> {
        let p = self.props().ok()?.pointer(kOfxPropInstanceData, 0).ok()?;
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null kOfxPropInstanceData is only ever set by `set_instance_data` to a
        // live `InstanceSlot`, freed only by `free_instance_data` in DestroyInstance, which the
        // host never runs concurrently with other actions on the same instance.
        let slot: &'a InstanceSlot = unsafe { &*(p as *const InstanceSlot) };
        slot.0.downcast_ref::<T>()
    }

    /// Frees the instance's data (DestroyInstance).
    pub fn free_instance_data(&self) -> Result<()> {
        let props = self.props()?;
        let p = props
            .pointer(kOfxPropInstanceData, 0)
            .unwrap_or(std::ptr::null_mut());
        if !p.is_null() {
            props.set_pointer(kOfxPropInstanceData, 0, std::ptr::null_mut())?;
            // SAFETY: see `instance_data`; the pointer was cleared above so it is freed once.
            drop(unsafe { Box::from_raw(p as *mut InstanceSlot) });
        }
        Ok(())
    }
}

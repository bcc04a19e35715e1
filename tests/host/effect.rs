//! Image effects (plugin descriptor, context descriptors, instances), their clips, and
//! OfxImageEffectSuiteV1: clip images with fetch/release accounting (every image must be released
//! before the action that fetched it returns), clip RoDs, abort, and image memory.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::image_effect::*;
use openfx::sys::image_effect_v1::param::OfxParamSetHandle;

use super::config::{Comps, Context, Depth, HostFlavour, Rect, SourceBounds};
use super::ffi::{self, clip_of, effect_of, lk, Obj};
use super::footage::Footage;
use super::image::{DepthSpec, Surface};
use super::params::{Clock, ParamSet};
use super::props::{Policy, PropSet};
use super::state::{HostState, ImageRecord};

static SERIAL: AtomicU64 = AtomicU64::new(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectKind {
    Descriptor,
    ContextDescriptor(Context),
    Instance(Context),
}

/// Per-instance host state used while rendering.
#[derive(Default)]
pub struct Runtime {
    pub footage: Mutex<Option<Arc<Footage>>>,
    /// Output images of renders in flight, by time.
    pub outputs: Mutex<Vec<(f64, Arc<Surface>)>>,
    /// Negotiated (depth, components) per clip, from GetClipPreferences.
    pub prefs: Mutex<HashMap<String, (DepthSpec, Comps)>>,
    /// Serialises Render on an instance-safe plugin.
    pub render_lock: Mutex<()>,
}

pub struct Effect {
    pub serial: u64,
    pub host: Arc<HostState>,
    pub kind: Mutex<EffectKind>,
    pub props: Arc<PropSet>,
    pub params: Arc<ParamSet>,
    pub clips: Mutex<Vec<Arc<Clip>>>,
    /// Inside Describe / DescribeInContext: clips and params may be defined.
    pub describing: AtomicBool,
    pub clock: Arc<Clock>,
    pub rt: Runtime,
}

pub struct Clip {
    pub name: String,
    pub props: Arc<PropSet>,
    pub effect: Weak<Effect>,
}

impl Clip {
    pub fn handle(self: &Arc<Self>) -> OfxImageClipHandle {
        Arc::as_ptr(self) as OfxImageClipHandle
    }

    pub fn is_output(&self) -> bool {
        self.name == "Output"
    }
}

/// A fresh effect serial number (for diagnostics and message attribution).
pub fn next_serial() -> u64 {
    SERIAL.fetch_add(1, Ordering::SeqCst)
}

impl Effect {
    /// Creates and registers an effect; `props` is already populated. `params` (with `serial`)
    /// is given for instances, whose parameters are instantiated from a descriptor's.
    pub fn new(
        host: Arc<HostState>,
        kind: EffectKind,
        props: PropSet,
        params: Option<(u64, Arc<ParamSet>)>,
        clock: Arc<Clock>,
    ) -> Arc<Effect> {
        let serial = params.as_ref().map(|(s, _)| *s).unwrap_or_else(next_serial);
        let params = params.map(|(_, p)| p);
        let descriptor = !matches!(kind, EffectKind::Instance(_));
        let params = params
            .unwrap_or_else(|| ParamSet::new(host.clone(), serial, descriptor, clock.clone()));
        let (props, _) = props.into_handle();
        let e = Arc::new(Effect {
            serial,
            host,
            kind: Mutex::new(kind),
            props,
            params,
            clips: Mutex::new(Vec::new()),
            describing: AtomicBool::new(false),
            clock,
            rt: Runtime::default(),
        });
        ffi::register(Arc::as_ptr(&e) as usize, Obj::Effect(e.clone()));
        e
    }

    pub fn handle(self: &Arc<Self>) -> OfxImageEffectHandle {
        Arc::as_ptr(self) as OfxImageEffectHandle
    }

    pub fn addr(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    pub fn kind(&self) -> EffectKind {
        *lk(&self.kind)
    }

    pub fn clip(&self, name: &str) -> Option<Arc<Clip>> {
        lk(&self.clips).iter().find(|c| c.name == name).cloned()
    }

    pub fn clip_names(&self) -> Vec<String> {
        lk(&self.clips).iter().map(|c| c.name.clone()).collect()
    }

    /// Input clips (all but Output).
    pub fn inputs(&self) -> Vec<Arc<Clip>> {
        lk(&self.clips)
            .iter()
            .filter(|c| !c.is_output())
            .cloned()
            .collect()
    }

    pub fn add_clip(self: &Arc<Self>, name: &str, props: PropSet) -> Arc<Clip> {
        let (props, _) = props.into_handle();
        let c = Arc::new(Clip {
            name: name.to_string(),
            props,
            effect: Arc::downgrade(self),
        });
        ffi::register(Arc::as_ptr(&c) as usize, Obj::Clip(c.clone()));
        lk(&self.clips).push(c.clone());
        c
    }

    /// Unregisters the effect and everything it owns.
    pub fn unregister(self: &Arc<Self>) {
        for c in lk(&self.clips).iter() {
            ffi::unregister(Arc::as_ptr(c) as usize);
            c.props.unregister();
        }
        self.params.unregister();
        self.props.unregister();
        ffi::unregister(self.addr());
    }

    /// Negotiated depth and components of a clip (defaults until GetClipPreferences ran).
    pub fn clip_format(&self, clip: &str) -> (DepthSpec, Comps) {
        if let Some(f) = lk(&self.rt.prefs).get(clip) {
            return f.clone();
        }
        (
            DepthSpec::Known(self.host.cfg.native_depth),
            self.host.cfg.native_comps,
        )
    }
}

/// Default properties of a plugin descriptor (OFX 1.4 defaults).
pub fn descriptor_props(host: &Arc<HostState>, what: &str, plugin_path: &str) -> PropSet {
    let p = PropSet::new(what, Some(host.clone()), Policy::Open);
    if host.cfg.flavour == HostFlavour::Mlt {
        // NOTE: MLT's descriptor starts with nothing but the context (mltofx_fetch_params).
        p.set_cstr(kOfxImageEffectPropContext, &[kOfxImageEffectContextFilter]);
        return p;
    }
    p.set_cstr(kOfxPropType, &[kOfxTypeImageEffect]);
    for k in [
        kOfxPropLabel,
        kOfxPropShortLabel,
        kOfxPropLongLabel,
        kOfxPropVersionLabel,
        kOfxPropPluginDescription,
    ] {
        p.set_str(k, &[""]);
    }
    p.set_int(kOfxPropVersion, &[0]);
    p.set_str(kOfxImageEffectPropSupportedContexts, &[]);
    p.set_str(kOfxImageEffectPluginPropGrouping, &[""]);
    p.set_int(kOfxImageEffectPluginPropSingleInstance, &[0]);
    p.set_cstr(
        kOfxImageEffectPluginRenderThreadSafety,
        &[kOfxImageEffectRenderInstanceSafe],
    );
    p.set_int(kOfxImageEffectPluginPropHostFrameThreading, &[1]);
    p.set_ptr(kOfxImageEffectPluginPropOverlayInteractV1, &[0]);
    p.set_int(kOfxImageEffectPropSupportsMultiResolution, &[1]);
    p.set_int(kOfxImageEffectPropSupportsTiles, &[1]);
    p.set_int(kOfxImageEffectPropTemporalClipAccess, &[0]);
    p.set_str(kOfxImageEffectPropSupportedPixelDepths, &[]);
    p.set_int(kOfxImageEffectPluginPropFieldRenderTwiceAlways, &[1]);
    p.set_int(kOfxImageEffectPropSupportsMultipleClipDepths, &[0]);
    p.set_int(kOfxImageEffectPropSupportsMultipleClipPARs, &[0]);
    p.set_str(kOfxImageEffectPropClipPreferencesSlaveParam, &[]);
    p.set_int(kOfxImageEffectInstancePropSequentialRender, &[0]);
    p.set_str(kOfxPluginPropFilePath, &[plugin_path]);
    p
}

/// Default properties of a clip descriptor.
pub fn clip_descriptor_props(host: &Arc<HostState>, name: &str) -> PropSet {
    let p = PropSet::new(
        format!("clip descriptor {name:?}"),
        Some(host.clone()),
        Policy::Open,
    );
    if host.cfg.flavour == HostFlavour::Mlt {
        // NOTE: MLT's clipDefine only sets the premultiplication.
        p.set_cstr(
            kOfxImageEffectPropPreMultiplication,
            &[kOfxImageUnPreMultiplied],
        );
        return p;
    }
    p.set_cstr(kOfxPropType, &[kOfxTypeClip]);
    for k in [
        kOfxPropName,
        kOfxPropLabel,
        kOfxPropShortLabel,
        kOfxPropLongLabel,
    ] {
        p.set_str(k, &[name]);
    }
    p.set_str(kOfxImageEffectPropSupportedComponents, &[]);
    p.set_int(kOfxImageEffectPropTemporalClipAccess, &[0]);
    p.set_int(kOfxImageClipPropOptional, &[0]);
    p.set_cstr(kOfxImageClipPropFieldExtraction, &[kOfxImageFieldDoubled]);
    p.set_int(kOfxImageClipPropIsMask, &[0]);
    p.set_int(kOfxImageEffectPropSupportsTiles, &[1]);
    p
}

/// Host-owned properties of a clip instance (connected to `footage`).
pub fn set_clip_instance_props(p: &PropSet, e: &Effect, clip: &str, footage: &Footage) {
    let (depth, comps) = e.clip_format(clip);
    p.set_str(kOfxImageEffectPropPixelDepth, &[&depth.name()]);
    p.set_cstr(kOfxImageEffectPropComponents, &[comps.ofx()]);
    p.set_cstr(
        kOfxImageClipPropUnmappedPixelDepth,
        &[e.host.cfg.native_depth.ofx()],
    );
    p.set_cstr(
        kOfxImageClipPropUnmappedComponents,
        &[e.host.cfg.native_comps.ofx()],
    );
    p.set_cstr(
        kOfxImageEffectPropPreMultiplication,
        &[kOfxImagePreMultiplied],
    );
    p.set_double(kOfxImagePropPixelAspectRatio, &[1.0]);
    p.set_double(kOfxImageEffectPropFrameRate, &[25.0]);
    p.set_double(
        kOfxImageEffectPropFrameRange,
        &[footage.first as f64, footage.last as f64],
    );
    p.set_double(
        kOfxImageEffectPropUnmappedFrameRange,
        &[footage.first as f64, footage.last as f64],
    );
    p.set_double(kOfxImageEffectPropUnmappedFrameRate, &[25.0]);
    p.set_cstr(kOfxImageClipPropFieldOrder, &[kOfxImageFieldNone]);
    p.set_int(kOfxImageClipPropConnected, &[1]);
    p.set_int(kOfxImageClipPropContinuousSamples, &[0]);
}

/// Read-only property set describing an image.
#[allow(clippy::too_many_arguments)]
pub fn image_props(
    host: &Arc<HostState>,
    s: &Arc<Surface>,
    what: String,
    rod: Rect,
    scale: f64,
    uid: &str,
) -> PropSet {
    let p = PropSet::new(what, Some(host.clone()), Policy::ReadOnly).with_attachment(s.clone());
    set_image_data(&p, s, rod, scale, uid);
    p
}

/// Image properties (also put on MLT's clip property sets, which double as images).
pub fn set_image_data(p: &PropSet, s: &Arc<Surface>, rod: Rect, scale: f64, uid: &str) {
    if !p.has(kOfxImageEffectPropSupportedComponents)
        && !p.has(kOfxImageEffectPropPreMultiplication)
    {
        p.set_cstr(kOfxPropType, &[kOfxTypeImage]);
    }
    p.set_str(kOfxImageEffectPropPixelDepth, &[&s.depth.name()]);
    p.set_cstr(kOfxImageEffectPropComponents, &[s.comps.ofx()]);
    p.set_cstr(
        kOfxImageEffectPropPreMultiplication,
        &[kOfxImagePreMultiplied],
    );
    p.set_double(kOfxImageEffectPropRenderScale, &[scale, scale]);
    p.set_double(kOfxImagePropPixelAspectRatio, &[1.0]);
    p.set_ptr(kOfxImagePropData, &[s.data_ptr() as usize]);
    let b = s.bounds;
    p.set_int(kOfxImagePropBounds, &[b.x1, b.y1, b.x2, b.y2]);
    p.set_int(
        kOfxImagePropRegionOfDefinition,
        &[rod.x1, rod.y1, rod.x2, rod.y2],
    );
    p.set_int(kOfxImagePropRowBytes, &[s.row_bytes()]);
    p.set_cstr(kOfxImagePropField, &[kOfxImageFieldNone]);
    p.set_str(kOfxImagePropUniqueIdentifier, &[uid]);
}

/// Renders the footage of frame `t` into a new surface.
pub fn source_surface(
    e: &Effect,
    footage: &Footage,
    t: i64,
    bounds: Rect,
    depth: DepthSpec,
    comps: Comps,
    scale: f64,
) -> Arc<Surface> {
    let cfg = &e.host.cfg;
    let s = Surface::new(bounds, depth, comps, cfg.row_order, cfg.row_padding);
    s.fill(0x5A);
    s.write(bounds, |x, y| footage.pixel_scaled(t, x, y, scale));
    Arc::new(s)
}

unsafe extern "C" fn get_property_set(
    e: OfxImageEffectHandle,
    out: *mut OfxPropertySetHandle,
) -> OfxStatus {
    let Some(e) = effect_of(e as *const c_void, "getPropertySet") else {
        return kOfxStatErrBadHandle;
    };
    if out.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *out = e.props.handle() };
    kOfxStatOK
}

unsafe extern "C" fn get_param_set(
    e: OfxImageEffectHandle,
    out: *mut OfxParamSetHandle,
) -> OfxStatus {
    let Some(e) = effect_of(e as *const c_void, "getParamSet") else {
        return kOfxStatErrBadHandle;
    };
    if out.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *out = e.params.handle() };
    kOfxStatOK
}

unsafe extern "C" fn clip_define(
    e: OfxImageEffectHandle,
    name: *const c_char,
    out: *mut OfxPropertySetHandle,
) -> OfxStatus {
    let Some(e) = effect_of(e as *const c_void, "clipDefine") else {
        return kOfxStatErrBadHandle;
    };
    // SAFETY: plugin string.
    let Some(name) = (unsafe { ffi::cstr_arg(name) }) else {
        return kOfxStatErrValue;
    };
    if !e.describing.load(Ordering::SeqCst)
        || e.kind() == EffectKind::Descriptor && e.host.cfg.flavour != HostFlavour::Mlt
    {
        ffi::violation(
            Some(&e.host),
            format!("clipDefine({name:?}) outside DescribeInContext"),
        );
    }
    let c = match e.clip(&name) {
        Some(c) => {
            ffi::violation(
                Some(&e.host),
                format!("clipDefine({name:?}): clip defined twice"),
            );
            c
        }
        None => e.add_clip(&name, clip_descriptor_props(&e.host, &name)),
    };
    if !out.is_null() {
        // SAFETY: out-pointer.
        unsafe { *out = c.props.handle() };
    }
    kOfxStatOK
}

unsafe extern "C" fn clip_get_handle(
    e: OfxImageEffectHandle,
    name: *const c_char,
    clip: *mut OfxImageClipHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    let Some(e) = effect_of(e as *const c_void, "clipGetHandle") else {
        return kOfxStatErrBadHandle;
    };
    // SAFETY: plugin string.
    let Some(name) = (unsafe { ffi::cstr_arg(name) }) else {
        return kOfxStatErrValue;
    };
    if e.describing.load(Ordering::SeqCst) || !matches!(e.kind(), EffectKind::Instance(_)) {
        ffi::violation(
            Some(&e.host),
            format!("clipGetHandle({name:?}) on a descriptor / inside a describe action"),
        );
        if e.host.cfg.flavour != HostFlavour::Mlt {
            return kOfxStatErrBadHandle;
        }
    }
    let Some(c) = e.clip(&name) else {
        ffi::violation(
            Some(&e.host),
            format!("clipGetHandle({name:?}): no such clip"),
        );
        return kOfxStatErrUnknown;
    };
    if clip.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointers.
    unsafe {
        *clip = c.handle();
        if !props.is_null() {
            *props = c.props.handle();
        }
    }
    kOfxStatOK
}

unsafe extern "C" fn clip_get_property_set(
    clip: OfxImageClipHandle,
    out: *mut OfxPropertySetHandle,
) -> OfxStatus {
    let Some(c) = clip_of(clip as *const c_void, "clipGetPropertySet") else {
        return kOfxStatErrBadHandle;
    };
    if out.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *out = c.props.handle() };
    kOfxStatOK
}

/// Records a fetched image.
fn record_fetch(e: &Arc<Effect>, handle: usize, clip: &str, time: f64) {
    let ctx = ffi::current();
    let action = ctx
        .as_ref()
        .map(|c| c.action.clone())
        .unwrap_or_else(|| "<no action>".into());
    e.host.fetched.fetch_add(1, Ordering::SeqCst);
    let mut out = lk(&e.host.outstanding);
    let rec = out.entry(handle).or_insert_with(|| ImageRecord {
        clip: clip.to_string(),
        time,
        action: action.clone(),
        effect: e.serial,
        count: 0,
        call: Vec::new(),
    });
    rec.count += 1;
    rec.call.push(ffi::current_call());
}

unsafe extern "C" fn clip_get_image(
    clip: OfxImageClipHandle,
    time: OfxTime,
    region: *const OfxRectD,
    out: *mut OfxPropertySetHandle,
) -> OfxStatus {
    let Some(c) = clip_of(clip as *const c_void, "clipGetImage") else {
        return kOfxStatErrBadHandle;
    };
    let Some(e) = c.effect.upgrade() else {
        return kOfxStatErrBadHandle;
    };
    if out.is_null() {
        ffi::violation(Some(&e.host), "clipGetImage: NULL out-pointer".into());
        return kOfxStatErrValue;
    }
    if !matches!(e.kind(), EffectKind::Instance(_)) || e.describing.load(Ordering::SeqCst) {
        ffi::violation(
            Some(&e.host),
            format!("clipGetImage({:?}) on a descriptor", c.name),
        );
        return kOfxStatErrBadHandle;
    }
    if !time.is_finite() {
        ffi::violation(
            Some(&e.host),
            format!("clipGetImage({:?}) at non-finite time {time}", c.name),
        );
        return kOfxStatErrValue;
    }
    // SAFETY: optional region from the plugin.
    let region = unsafe { region.as_ref() }.map(|r| [r.x1, r.y1, r.x2, r.y2]);
    let cfg = &e.host.cfg;
    let ctx = ffi::current();
    let render = ctx
        .as_ref()
        .filter(|c| c.effect == Some(e.addr()))
        .and_then(|c| c.render.clone());
    if cfg.flavour == HostFlavour::Mlt {
        // NOTE: MLT: the image handle IS the clip's property set, whatever the time; release is
        // a no-op. The host filled the clip props with the current frame beforehand.
        if c.props.ptr(kOfxImagePropData, 0).is_none() {
            ffi::violation(
                Some(&e.host),
                format!("clipGetImage({:?}) outside a render", c.name),
            );
            return kOfxStatFailed;
        }
        let h = c.props.handle();
        record_fetch(&e, h as usize, &c.name, time);
        // SAFETY: out-pointer.
        unsafe { *out = h };
        return kOfxStatOK;
    }
    let scale = render
        .as_ref()
        .map(|r| r.scale[0])
        .unwrap_or(cfg.render_scale);
    if c.is_output() {
        let surf = match render
            .as_ref()
            .filter(|r| r.time == time)
            .and_then(|r| r.output.clone())
        {
            Some(s) => Some(s),
            None => lk(&e.rt.outputs)
                .iter()
                .rev()
                .find(|(t, _)| *t == time)
                .map(|(_, s)| s.clone()),
        };
        let Some(s) = surf else {
            ffi::violation(
                Some(&e.host),
                format!(
                    "clipGetImage(Output) at t={time} with no render of that frame in progress"
                ),
            );
            return kOfxStatFailed;
        };
        let Some(footage) = lk(&e.rt.footage).clone() else {
            return kOfxStatFailed;
        };
        let rod = footage.rect_at(scale);
        let p = image_props(
            &e.host,
            &s,
            format!("Output image t={time}"),
            rod,
            scale,
            &format!("out-{time}"),
        );
        #[cfg(feature = "cuda")]
        if let Some(d) = render.as_ref().and_then(|r| r.device_output.clone()) {
            p.set_ptr(kOfxImagePropData, &[d.data_ptr()]);
        }
        let (p, h) = p.into_handle();
        record_fetch(&e, h as usize, &c.name, time);
        drop(p);
        // SAFETY: out-pointer.
        unsafe { *out = h };
        return kOfxStatOK;
    }
    let Some(footage) = lk(&e.rt.footage).clone() else {
        e.host
            .note(format!("clipGetImage({:?}): clip not connected", c.name));
        return kOfxStatFailed;
    };
    let used = if cfg.temporal_access {
        time
    } else {
        let now = render
            .as_ref()
            .map(|r| r.time)
            .unwrap_or_else(|| *lk(&e.clock.time));
        if now != time {
            e.host.note(format!(
                "Source fetched at t={time} without temporal access: served t={now}"
            ));
        }
        now
    };
    if let Some(ranges) = render.as_ref().and_then(|r| r.frames_needed.clone()) {
        let declared = ranges
            .chunks(2)
            .any(|r| r.len() == 2 && used >= r[0] && used <= r[1]);
        if !declared {
            e.host.note(format!(
                "Source fetched at t={used}, outside the frames declared needed {ranges:?}"
            ));
        }
    }
    if used.fract() != 0.0 {
        e.host
            .note(format!("Source fetched at fractional time {used}"));
    }
    let ti = used.round() as i64;
    if !footage.has_frame(ti) {
        return kOfxStatFailed;
    }
    let rod = footage.rect_at(scale);
    let want = match (
        region,
        cfg.source_bounds,
        render.as_ref().and_then(|r| r.roi),
    ) {
        (Some(r), _, _) => Rect::from_canonical(r, scale),
        (None, SourceBounds::Roi, Some(roi)) => Rect::from_canonical(roi, scale),
        _ => rod,
    };
    let bounds = want.intersect(&rod);
    if bounds.is_empty() {
        e.host.note(format!(
            "clipGetImage({:?}) for an empty region {want}",
            c.name
        ));
        return kOfxStatFailed;
    }
    let (mut depth, comps) = e.clip_format(&c.name);
    if let Some(forced) = &cfg.forced_depth {
        depth = match Depth::from_ofx(forced) {
            Some(d) => DepthSpec::Known(d),
            None => DepthSpec::Other(forced.clone()),
        };
    }
    let s = source_surface(&e, &footage, ti, bounds, depth, comps, scale);
    let uid = format!("src-{ti}-{}", bounds);
    let p = image_props(
        &e.host,
        &s,
        format!("{} image t={ti}", c.name),
        rod,
        scale,
        &uid,
    );
    // In a CUDA render on a GPU the plugin gets a device copy, kept until the image's release.
    #[cfg(feature = "cuda")]
    let p = match render.as_ref().filter(|r| r.device_output.is_some()) {
        Some(_) => {
            let d = super::cuda::DeviceSurface::upload(&s);
            p.set_ptr(kOfxImagePropData, &[d.data_ptr()]);
            p.with_attachment(d)
        }
        None => p,
    };
    let (p, h) = p.into_handle();
    drop(p);
    record_fetch(&e, h as usize, &c.name, time);
    // SAFETY: out-pointer.
    unsafe { *out = h };
    kOfxStatOK
}

unsafe extern "C" fn clip_release_image(h: OfxPropertySetHandle) -> OfxStatus {
    let Some(p) = ffi::props_of(h, "clipReleaseImage") else {
        return kOfxStatErrBadHandle;
    };
    let Some(host) = p.owner.clone() else {
        return kOfxStatErrBadHandle;
    };
    let mut out = lk(&host.outstanding);
    let Some(rec) = out.get_mut(&(h as usize)) else {
        drop(out);
        ffi::violation(
            Some(&host),
            format!(
                "clipReleaseImage on {:?}, which is not a fetched image (double release?)",
                p.what
            ),
        );
        return kOfxStatErrBadHandle;
    };
    rec.count -= 1;
    rec.call.pop();
    let done = rec.count == 0;
    if done {
        out.remove(&(h as usize));
    }
    drop(out);
    host.released.fetch_add(1, Ordering::SeqCst);
    if done && host.cfg.flavour != HostFlavour::Mlt {
        p.unregister();
    }
    kOfxStatOK
}

unsafe extern "C" fn clip_get_region_of_definition(
    clip: OfxImageClipHandle,
    time: OfxTime,
    out: *mut OfxRectD,
) -> OfxStatus {
    let Some(c) = clip_of(clip as *const c_void, "clipGetRegionOfDefinition") else {
        return kOfxStatErrBadHandle;
    };
    let Some(e) = c.effect.upgrade() else {
        return kOfxStatErrBadHandle;
    };
    let Some(footage) = lk(&e.rt.footage).clone() else {
        return kOfxStatFailed;
    };
    if out.is_null() {
        return kOfxStatErrValue;
    }
    if e.host.cfg.temporal_access && !footage.has_frame(time.round() as i64) {
        e.host.note(format!(
            "clipGetRegionOfDefinition({:?}) at t={time} outside the clip",
            c.name
        ));
    }
    let r = footage.rect();
    // SAFETY: out-pointer; canonical coordinates (render scale independent).
    unsafe {
        *out = OfxRectD {
            x1: r.x1 as f64,
            y1: r.y1 as f64,
            x2: r.x2 as f64,
            y2: r.y2 as f64,
        };
    }
    kOfxStatOK
}

unsafe extern "C" fn abort_fn(e: OfxImageEffectHandle) -> c_int {
    let Some(e) = effect_of(e as *const c_void, "abort") else {
        return 0;
    };
    e.host.aborting() as c_int
}

/// A block from the image memory pool.
pub struct ImageMemory {
    ptr: *mut u8,
    layout: Layout,
    locks: Mutex<i32>,
    owner: Option<Arc<HostState>>,
}

// SAFETY: plain memory; the lock count is behind a mutex.
unsafe impl Send for ImageMemory {}
// SAFETY: see above.
unsafe impl Sync for ImageMemory {}

impl Drop for ImageMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in image_memory_alloc with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

fn image_memory_of(h: *mut c_void, func: &str) -> Option<Arc<ImageMemory>> {
    ffi::lookup_as(h as usize, func, |o| match o {
        Obj::ImageMemory(m) => Some(m),
        _ => None,
    })
}

unsafe extern "C" fn image_memory_alloc(
    e: OfxImageEffectHandle,
    n: usize,
    out: *mut OfxImageMemoryHandle,
) -> OfxStatus {
    let owner = if e.is_null() {
        ffi::current().map(|c| c.host)
    } else {
        match effect_of(e as *const c_void, "imageMemoryAlloc") {
            Some(e) => Some(e.host.clone()),
            None => return kOfxStatErrBadHandle,
        }
    };
    if out.is_null() {
        return kOfxStatErrValue;
    }
    let Ok(layout) = Layout::from_size_align(n.max(1), 64) else {
        return kOfxStatErrMemory;
    };
    // SAFETY: non-zero size.
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        // SAFETY: out-pointer.
        unsafe { *out = std::ptr::null_mut() };
        return kOfxStatErrMemory;
    }
    if let Some(h) = &owner {
        h.image_mem_allocs.fetch_add(1, Ordering::SeqCst);
    }
    let m = Arc::new(ImageMemory {
        ptr,
        layout,
        locks: Mutex::new(0),
        owner,
    });
    let addr = Arc::as_ptr(&m) as usize;
    ffi::register(addr, Obj::ImageMemory(m));
    // SAFETY: out-pointer.
    unsafe { *out = addr as OfxImageMemoryHandle };
    kOfxStatOK
}

unsafe extern "C" fn image_memory_free(h: OfxImageMemoryHandle) -> OfxStatus {
    let Some(m) = image_memory_of(h as *mut c_void, "imageMemoryFree") else {
        return kOfxStatErrBadHandle;
    };
    ffi::unregister(h as usize);
    if let Some(o) = &m.owner {
        o.image_mem_frees.fetch_add(1, Ordering::SeqCst);
    }
    kOfxStatOK
}

unsafe extern "C" fn image_memory_lock(
    h: OfxImageMemoryHandle,
    out: *mut *mut c_void,
) -> OfxStatus {
    let Some(m) = image_memory_of(h as *mut c_void, "imageMemoryLock") else {
        return kOfxStatErrBadHandle;
    };
    if out.is_null() {
        return kOfxStatErrValue;
    }
    *lk(&m.locks) += 1;
    // SAFETY: out-pointer.
    unsafe { *out = m.ptr as *mut c_void };
    kOfxStatOK
}

unsafe extern "C" fn image_memory_unlock(h: OfxImageMemoryHandle) -> OfxStatus {
    let Some(m) = image_memory_of(h as *mut c_void, "imageMemoryUnlock") else {
        return kOfxStatErrBadHandle;
    };
    let mut l = lk(&m.locks);
    if *l <= 0 {
        drop(l);
        ffi::violation(
            m.owner.as_ref(),
            "imageMemoryUnlock without a matching lock".into(),
        );
        return kOfxStatErrBadHandle;
    }
    *l -= 1;
    kOfxStatOK
}

pub static IMAGE_EFFECT_SUITE: OfxImageEffectSuiteV1 = OfxImageEffectSuiteV1 {
    getPropertySet: Some(get_property_set),
    getParamSet: Some(get_param_set),
    clipDefine: Some(clip_define),
    clipGetHandle: Some(clip_get_handle),
    clipGetPropertySet: Some(clip_get_property_set),
    clipGetImage: Some(clip_get_image),
    clipReleaseImage: Some(clip_release_image),
    clipGetRegionOfDefinition: Some(clip_get_region_of_definition),
    abort: Some(abort_fn),
    imageMemoryAlloc: Some(image_memory_alloc),
    imageMemoryFree: Some(image_memory_free),
    imageMemoryLock: Some(image_memory_lock),
    imageMemoryUnlock: Some(image_memory_unlock),
};

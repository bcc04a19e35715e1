//! One effect instance and the host's actions on it: clip preferences, RoD, RoI, frames needed,
//! identity, sequence render, Render, instance changes; and the per-host frame pipelines (Natron /
//! Resolve style with windows, strips and threads; MLT style with its clip-data priming).

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::gpu_render::*;
use openfx::sys::image_effect_v1::image_effect::*;
use openfx::sys::image_effect_v1::param::*;

use super::config::{Comps, CudaRender, Depth, HostFlavour, Rect};

/// The GPU of a CUDA render (a build without CUDA never has one).
#[cfg(feature = "cuda")]
type CudaGpu = Arc<super::cuda::Gpu>;
#[cfg(not(feature = "cuda"))]
type CudaGpu = std::convert::Infallible;
use super::driver::{par_map, status_ok, Anim, FrameOut, Host, Project, RenderOpts};
use super::effect::{set_clip_instance_props, set_image_data, source_surface, Effect};
use super::ffi::{self, lk, RenderCtx};
use super::footage::Footage;
use super::image::{DepthSpec, Surface};
use super::params::{PVal, Param};
use super::props::{Policy, PropSet, PropValue};
use super::state::{HostState, MessageKind};

/// One effect instance.
pub struct Instance<'h> {
    pub host: &'h Host,
    pub effect: Arc<Effect>,
    pub footage: Arc<Footage>,
    pub(super) destroyed: AtomicBool,
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        if !self.destroyed.load(Ordering::SeqCst) && !std::thread::panicking() {
            self.destroy_inner();
        }
    }
}

impl<'h> Instance<'h> {
    pub fn state(&self) -> &Arc<HostState> {
        &self.host.state
    }

    pub fn param(&self, name: &str) -> Arc<Param> {
        self.effect.params.get(name).unwrap_or_else(|| {
            panic!(
                "the plugin has no parameter {name:?}; it has {:?}",
                self.param_names()
            )
        })
    }

    pub fn param_names(&self) -> Vec<String> {
        self.effect
            .params
            .all()
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    /// Index of a choice option by label.
    pub fn choice_index(&self, name: &str, label: &str) -> i32 {
        let opts = self.param(name).props.strs(kOfxParamPropChoiceOption);
        opts.iter().position(|o| o == label).unwrap_or_else(|| {
            panic!("parameter {name:?} has no option {label:?}; options are {opts:?}")
        }) as i32
    }

    /// A user edit: a static value, followed by InstanceChanged on hosts that send it.
    pub fn set(&self, name: &str, v: impl Into<PVal>) -> OfxStatus {
        self.param(name).set_static(v.into());
        if self.host.cfg().sends_instance_changed {
            self.instance_changed(name, kOfxChangeUserEdited)
        } else {
            kOfxStatOK
        }
    }

    pub fn set_choice(&self, name: &str, label: &str) -> OfxStatus {
        let i = self.choice_index(name, label);
        self.set(name, i)
    }

    /// A keyframe (no InstanceChanged: hosts send kOfxChangeTime-style changes lazily).
    pub fn set_key(&self, name: &str, t: f64, v: impl Into<PVal>) {
        self.param(name).set_key(t, v.into());
    }

    /// Applies a project's parameters; with `at` (hosts with parameters only at the current
    /// time) keyframes are evaluated at that frame and set as static values.
    pub fn apply(&self, project: &Project, at: Option<f64>) {
        for (name, anim) in &project.params {
            let p = self.param(name);
            match anim {
                Anim::Static(v) => p.set_static(v.clone()),
                Anim::Choice(label) => {
                    p.set_static(PVal::Int(vec![self.choice_index(name, label)]))
                }
                Anim::Keys(keys) => {
                    for (t, v) in keys {
                        p.set_key(*t, v.clone());
                    }
                    if let Some(t) = at {
                        let v = p.value_at(t);
                        p.set_static(v);
                    }
                }
            }
        }
    }

    /// Moves the instance's time line.
    pub fn set_time(&self, t: f64) {
        *lk(&self.effect.clock.time) = t;
    }

    fn scale(&self) -> f64 {
        let multi = self
            .effect
            .props
            .int(kOfxImageEffectPropSupportsMultiResolution, 0)
            .unwrap_or(1)
            != 0;
        if multi {
            self.host.cfg().render_scale
        } else {
            1.0
        }
    }

    fn rctx(&self, t: f64) -> RenderCtx {
        let s = self.scale();
        RenderCtx {
            time: t,
            window: [0; 4],
            scale: [s, s],
            output: None,
            roi: None,
            frames_needed: None,
            #[cfg(feature = "cuda")]
            device_output: None,
        }
    }

    fn call(
        &self,
        action: &CStr,
        inp: Option<&Arc<PropSet>>,
        out: Option<&Arc<PropSet>>,
        render: Option<RenderCtx>,
    ) -> OfxStatus {
        self.host.call(action, Some(&self.effect), inp, out, render)
    }

    /// GetClipPreferences plus the host's validation of the answer.
    pub fn clip_preferences(&self) -> OfxStatus {
        let cfg = self.host.cfg();
        let out = self
            .host
            .args("outArgs of GetClipPreferences", Policy::ExistingOnly);
        let plugin_depths: Vec<Depth> = self
            .effect
            .props
            .strs(kOfxImageEffectPropSupportedPixelDepths)
            .iter()
            .filter_map(|d| Depth::from_ofx(d))
            .collect();
        let default_depth = if cfg.flavour == HostFlavour::Mlt {
            mlt_select_depth(cfg.native_depth, &plugin_depths)
        } else if plugin_depths.contains(&cfg.native_depth) {
            cfg.native_depth
        } else {
            [Depth::Float, Depth::Half, Depth::Short, Depth::Byte]
                .into_iter()
                .find(|d| plugin_depths.contains(d) && cfg.depths.contains(d))
                .unwrap_or(cfg.native_depth)
        };
        for c in lk(&self.effect.clips).iter() {
            let supported: Vec<Comps> = c
                .props
                .strs(kOfxImageEffectPropSupportedComponents)
                .iter()
                .filter_map(|s| Comps::from_ofx(s))
                .collect();
            let native = cfg.native_comps;
            let comps = if supported.is_empty() || supported.contains(&native) {
                native
            } else {
                supported[0]
            };
            out.set_named(
                &format!("OfxImageClipPropComponents_{}", c.name),
                str_val(comps.name()),
            );
            out.set_named(
                &format!("OfxImageClipPropDepth_{}", c.name),
                str_val(default_depth.name()),
            );
            out.set_named(
                &format!("OfxImageClipPropPAR_{}", c.name),
                PropValue::Double(vec![1.0]),
            );
            out.set_named(
                &format!("OfxImageClipPropPreferredColourspaces_{}", c.name),
                PropValue::Str(vec![]),
            );
        }
        out.set_double(kOfxImageEffectPropFrameRate, &[25.0]);
        out.set_cstr(kOfxImageClipPropFieldOrder, &[kOfxImageFieldNone]);
        out.set_cstr(
            kOfxImageEffectPropPreMultiplication,
            &[kOfxImagePreMultiplied],
        );
        out.set_int(kOfxImageClipPropContinuousSamples, &[0]);
        out.set_int(kOfxImageEffectFrameVarying, &[0]);
        let st = self.call(
            kOfxImageEffectActionGetClipPreferences,
            None,
            Some(&out),
            None,
        );
        let mut prefs = HashMap::new();
        for c in lk(&self.effect.clips).iter() {
            let comps_s = out
                .str_named(&format!("OfxImageClipPropComponents_{}", c.name), 0)
                .unwrap_or_default();
            let depth_s = out
                .str_named(&format!("OfxImageClipPropDepth_{}", c.name), 0)
                .unwrap_or_default();
            let (mut depth, mut comps) = (default_depth, Comps::Rgba);
            if cfg.flavour != HostFlavour::Mlt {
                match Depth::from_ofx(&depth_s) {
                    Some(d) if cfg.depths.contains(&d) && (plugin_depths.is_empty() || plugin_depths.contains(&d)) => depth = d,
                    _ => self.state().violation(format!("GetClipPreferences: depth {depth_s:?} for clip {} is not supported by both host and plugin", c.name)),
                }
                match Comps::from_ofx(&comps_s) {
                    Some(k) if cfg.comps.contains(&k) => comps = k,
                    _ => self.state().violation(format!("GetClipPreferences: components {comps_s:?} for clip {} not supported by the host", c.name)),
                }
            }
            prefs.insert(c.name.clone(), (DepthSpec::Known(depth), comps));
        }
        if !cfg.multiple_clip_depths {
            let ds: std::collections::HashSet<String> =
                prefs.values().map(|(d, _)| d.name()).collect();
            if ds.len() > 1 {
                self.state().violation(format!("GetClipPreferences asked for several depths {ds:?} on a host without multiple clip depths"));
            }
        }
        *lk(&self.effect.rt.prefs) = prefs;
        for c in lk(&self.effect.clips).iter() {
            set_clip_instance_props(&c.props, &self.effect, &c.name, &self.footage);
        }
        out.unregister();
        st
    }

    /// GetRegionOfDefinition: (status, RoD in canonical coordinates).
    pub fn region_of_definition(&self, t: f64) -> (OfxStatus, [f64; 4]) {
        let s = self.scale();
        let inp = self
            .host
            .args("inArgs of GetRegionOfDefinition", Policy::ReadOnly);
        inp.set_double(kOfxPropTime, &[t]);
        inp.set_double(kOfxImageEffectPropRenderScale, &[s, s]);
        let out = self
            .host
            .args("outArgs of GetRegionOfDefinition", Policy::ExistingOnly);
        let r = self.footage.rect();
        let default = [r.x1 as f64, r.y1 as f64, r.x2 as f64, r.y2 as f64];
        out.set_double(kOfxImageEffectPropRegionOfDefinition, &default);
        let st = self.call(
            kOfxImageEffectActionGetRegionOfDefinition,
            Some(&inp),
            Some(&out),
            Some(self.rctx(t)),
        );
        let rod = out
            .doubles_named("OfxImageEffectPropRegionOfDefinition")
            .filter(|v| v.len() == 4)
            .map(|v| [v[0], v[1], v[2], v[3]]);
        inp.unregister();
        out.unregister();
        match rod {
            Some(r) if st == kOfxStatOK => (st, r),
            _ => (st, default),
        }
    }

    /// GetRegionsOfInterest: (status, RoI per input clip, canonical).
    pub fn regions_of_interest(
        &self,
        t: f64,
        window: Rect,
    ) -> (OfxStatus, HashMap<String, [f64; 4]>) {
        let s = self.scale();
        let region = window.to_canonical(s);
        let inp = self
            .host
            .args("inArgs of GetRegionsOfInterest", Policy::ReadOnly);
        inp.set_double(kOfxPropTime, &[t]);
        inp.set_double(kOfxImageEffectPropRenderScale, &[s, s]);
        inp.set_double(kOfxImageEffectPropRegionOfInterest, &region);
        let out = self
            .host
            .args("outArgs of GetRegionsOfInterest", Policy::ExistingOnly);
        let inputs = self.effect.inputs();
        for c in &inputs {
            out.set_named(
                &format!("OfxImageClipPropRoI_{}", c.name),
                PropValue::Double(region.to_vec()),
            );
        }
        let st = self.call(
            kOfxImageEffectActionGetRegionsOfInterest,
            Some(&inp),
            Some(&out),
            Some(self.rctx(t)),
        );
        let mut rois = HashMap::new();
        for c in &inputs {
            let v = out
                .doubles_named(&format!("OfxImageClipPropRoI_{}", c.name))
                .unwrap_or_default();
            if v.len() == 4 {
                rois.insert(c.name.clone(), [v[0], v[1], v[2], v[3]]);
            } else {
                self.state().violation(format!(
                    "GetRegionsOfInterest: RoI of {} has {} values",
                    c.name,
                    v.len()
                ));
            }
        }
        inp.unregister();
        out.unregister();
        (st, rois)
    }

    /// GetFramesNeeded: (status, ranges for Source as flat [a0, b0, a1, b1, ...]).
    pub fn frames_needed(&self, t: f64) -> (OfxStatus, Vec<f64>) {
        let inp = self
            .host
            .args("inArgs of GetFramesNeeded", Policy::ReadOnly);
        inp.set_double(kOfxPropTime, &[t]);
        let out = self
            .host
            .args("outArgs of GetFramesNeeded", Policy::ExistingOnly);
        for c in self.effect.inputs() {
            out.set_named(
                &format!("OfxImageClipPropFrameRange_{}", c.name),
                PropValue::Double(vec![t, t]),
            );
        }
        let st = self.call(
            kOfxImageEffectActionGetFramesNeeded,
            Some(&inp),
            Some(&out),
            Some(self.rctx(t)),
        );
        let v = out
            .doubles_named("OfxImageClipPropFrameRange_Source")
            .unwrap_or_default();
        if !v.len().is_multiple_of(2) || v.chunks(2).any(|r| r[0] > r[1]) {
            self.state()
                .violation(format!("GetFramesNeeded: malformed ranges {v:?}"));
        }
        inp.unregister();
        out.unregister();
        (st, v)
    }

    /// IsIdentity: (status, identity clip and time when the plugin says so).
    pub fn is_identity(&self, t: f64, window: Rect) -> (OfxStatus, Option<(String, f64)>) {
        let s = self.scale();
        let inp = self.host.args("inArgs of IsIdentity", Policy::ReadOnly);
        inp.set_double(kOfxPropTime, &[t]);
        inp.set_cstr(kOfxImageEffectPropFieldToRender, &[kOfxImageFieldNone]);
        inp.set_int(
            kOfxImageEffectPropRenderWindow,
            &[window.x1, window.y1, window.x2, window.y2],
        );
        inp.set_double(kOfxImageEffectPropRenderScale, &[s, s]);
        let out = self
            .host
            .args("outArgs of IsIdentity", Policy::ExistingOnly);
        out.set_str(kOfxPropName, &[""]);
        out.set_double(kOfxPropTime, &[t]);
        let st = self.call(
            kOfxImageEffectActionIsIdentity,
            Some(&inp),
            Some(&out),
            Some(self.rctx(t)),
        );
        let name = out.str(kOfxPropName, 0).unwrap_or_default();
        let time = out.double(kOfxPropTime, 0).unwrap_or(t);
        inp.unregister();
        out.unregister();
        if st == kOfxStatOK {
            if name.is_empty() || self.effect.clip(&name).is_none() {
                self.state().violation(format!(
                    "IsIdentity returned kOfxStatOK with clip name {name:?}"
                ));
                return (st, None);
            }
            (st, Some((name, time)))
        } else {
            (st, None)
        }
    }

    fn sequence_args(&self, what: &str, first: f64, last: f64) -> Arc<PropSet> {
        let s = self.scale();
        let inp = self.host.args(what, Policy::ReadOnly);
        inp.set_double(kOfxImageEffectPropFrameRange, &[first, last]);
        inp.set_double(kOfxImageEffectPropFrameStep, &[1.0]);
        inp.set_int(kOfxPropIsInteractive, &[0]);
        inp.set_double(kOfxImageEffectPropRenderScale, &[s, s]);
        inp.set_int(kOfxImageEffectPropSequentialRenderStatus, &[0]);
        inp.set_int(kOfxImageEffectPropInteractiveRenderStatus, &[0]);
        inp.set_int(kOfxImageEffectPropOpenGLEnabled, &[0]);
        inp
    }

    pub fn begin_sequence(&self, first: f64, last: f64) -> OfxStatus {
        let inp = self.sequence_args("inArgs of BeginSequenceRender", first, last);
        let st = self.call(
            kOfxImageEffectActionBeginSequenceRender,
            Some(&inp),
            None,
            Some(self.rctx(first)),
        );
        inp.unregister();
        st
    }

    pub fn end_sequence(&self, first: f64, last: f64) -> OfxStatus {
        let inp = self.sequence_args("inArgs of EndSequenceRender", first, last);
        let st = self.call(
            kOfxImageEffectActionEndSequenceRender,
            Some(&inp),
            None,
            Some(self.rctx(first)),
        );
        inp.unregister();
        st
    }

    /// Whether the next Render is a CUDA render: None for host memory; Some(None) for a host
    /// that sets the flag with host memory behind it (`CudaRender::Forced`); Some(Some(gpu))
    /// for device images, where the host offers CUDA render, the plugin declared it and a GPU
    /// is there.
    #[allow(clippy::option_option)]
    fn cuda_render(&self) -> Option<Option<CudaGpu>> {
        match self.host.cfg().cuda_render {
            CudaRender::Off => None,
            CudaRender::Forced => Some(None),
            CudaRender::Offered => {
                let declared = self
                    .effect
                    .props
                    .str(kOfxImageEffectPropCudaRenderSupported, 0)
                    .is_some_and(|v| v == "true" || v == "needed");
                if !declared {
                    return None;
                }
                #[cfg(feature = "cuda")]
                {
                    super::cuda::Gpu::shared().map(Some)
                }
                #[cfg(not(feature = "cuda"))]
                {
                    self.state().violation(
                        "the plugin declared CUDA render in a build without CUDA".into(),
                    );
                    None
                }
            }
        }
    }

    /// The Render action alone, into `output` (registered as the Output image at `t`).
    pub fn render_action(
        &self,
        t: f64,
        window: Rect,
        output: &Arc<Surface>,
        roi: Option<[f64; 4]>,
        frames_needed: Option<Vec<f64>>,
    ) -> OfxStatus {
        let s = self.scale();
        let inp = self.host.args("inArgs of Render", Policy::ReadOnly);
        inp.set_double(kOfxPropTime, &[t]);
        inp.set_cstr(kOfxImageEffectPropFieldToRender, &[kOfxImageFieldNone]);
        inp.set_int(
            kOfxImageEffectPropRenderWindow,
            &[window.x1, window.y1, window.x2, window.y2],
        );
        inp.set_double(kOfxImageEffectPropRenderScale, &[s, s]);
        inp.set_int(kOfxImageEffectPropSequentialRenderStatus, &[0]);
        inp.set_int(kOfxImageEffectPropInteractiveRenderStatus, &[0]);
        inp.set_int(kOfxImageEffectPropRenderQualityDraft, &[0]);
        inp.set_int(kOfxImageEffectPropOpenGLEnabled, &[0]);
        let cuda = self.cuda_render();
        inp.set_int(kOfxImageEffectPropCudaEnabled, &[i32::from(cuda.is_some())]);
        #[cfg(feature = "cuda")]
        let device_output = cuda.flatten().map(|gpu| {
            inp.set_ptr(kOfxImageEffectPropCudaStream, &[gpu.stream_ptr()]);
            (gpu, super::cuda::DeviceSurface::upload(output))
        });
        let render = RenderCtx {
            time: t,
            window: [window.x1, window.y1, window.x2, window.y2],
            scale: [s, s],
            output: Some(output.clone()),
            roi,
            frames_needed,
            #[cfg(feature = "cuda")]
            device_output: device_output.as_ref().map(|(_, d)| d.clone()),
        };
        let safety = self
            .effect
            .props
            .str(kOfxImageEffectPluginRenderThreadSafety, 0)
            .unwrap_or_default();
        let honour = self.host.cfg().honour_thread_safety;
        let _global = (honour && safety == kOfxImageEffectRenderUnsafe.to_str().unwrap_or(""))
            .then(|| lk(&self.host.unsafe_render));
        let _inst = (honour && safety == kOfxImageEffectRenderInstanceSafe.to_str().unwrap_or(""))
            .then(|| lk(&self.effect.rt.render_lock));
        lk(&self.effect.rt.outputs).push((t, output.clone()));
        let st = self.call(kOfxImageEffectActionRender, Some(&inp), None, Some(render));
        // The host reads the frame back once its stream is done with it.
        #[cfg(feature = "cuda")]
        if let Some((gpu, dev)) = device_output {
            gpu.sync();
            dev.download();
        }
        {
            let mut outs = lk(&self.effect.rt.outputs);
            if let Some(i) = outs
                .iter()
                .position(|(ot, s)| *ot == t && Arc::ptr_eq(s, output))
            {
                outs.remove(i);
            }
        }
        inp.unregister();
        if st == kOfxStatReplyDefault {
            self.state()
                .violation("Render returned kOfxStatReplyDefault (render must be trapped)".into());
        }
        st
    }

    /// A frame the way Natron / Resolve render it: RoD, IsIdentity, GetFramesNeeded, RoI,
    /// Begin([t,t]), Render (possibly in strips on several threads), End.
    pub fn render_frame(&self, t: i64, opts: &RenderOpts) -> FrameOut {
        let cfg = self.host.cfg();
        let tf = t as f64;
        let s = self.scale();
        let (st, rod_c) = self.region_of_definition(tf);
        let rod = Rect::from_canonical(rod_c, s);
        let full = self.footage.rect_at(s);
        let tiles_ok = cfg.tiles
            && self
                .effect
                .props
                .int(kOfxImageEffectPropSupportsTiles, 0)
                .unwrap_or(1)
                != 0;
        let mut window = opts.window.unwrap_or(rod).intersect(&rod);
        if !tiles_ok && window != rod {
            self.state().note(format!(
                "plugin or host without tiles: window {window} widened to {rod}"
            ));
            window = rod;
        }
        let bounds = if opts.tight_output { window } else { rod };
        let (mut depth, comps) = self.effect.clip_format("Output");
        if let Some(f) = &cfg.forced_depth {
            depth = Depth::from_ofx(f)
                .map(DepthSpec::Known)
                .unwrap_or(DepthSpec::Other(f.clone()));
        }
        let out = Arc::new(Surface::new(
            bounds,
            depth,
            comps,
            cfg.row_order,
            cfg.row_padding,
        ));
        out.fill(opts.sentinel);
        let mut fo = FrameOut {
            t,
            status: st,
            window,
            rod,
            image: out.clone(),
            identity: None,
            sentinel: opts.sentinel,
        };
        if !status_ok(st) {
            return fo;
        }
        if rod != full {
            self.state().note(format!(
                "plugin RoD {rod} differs from the source frame {full}"
            ));
        }
        if cfg.calls_is_identity && opts.identity {
            let (st, id) = self.is_identity(tf, window);
            if st != kOfxStatOK && st != kOfxStatReplyDefault {
                fo.status = st;
                return fo;
            }
            if let Some((clip, it)) = id {
                // The host copies the identity clip instead of rendering.
                out.write(window, |x, y| {
                    self.footage.pixel_scaled(it.round() as i64, x, y, s)
                });
                fo.identity = Some((clip, it));
                fo.status = kOfxStatOK;
                return fo;
            }
        }
        let temporal_plugin = self
            .effect
            .props
            .int(kOfxImageEffectPropTemporalClipAccess, 0)
            .unwrap_or(0)
            != 0;
        let frames_needed = if cfg.temporal_access && cfg.calls_frames_needed && temporal_plugin {
            let (st, v) = self.frames_needed(tf);
            if !status_ok(st) {
                fo.status = st;
                return fo;
            }
            Some(v)
        } else {
            None
        };
        let strips = self.strips_for(window, opts);
        let mut rois = Vec::new();
        for w in &strips {
            let (st, r) = self.regions_of_interest(tf, *w);
            if !status_ok(st) {
                fo.status = st;
                return fo;
            }
            rois.push(r.get("Source").copied());
        }
        if opts.sequence {
            let st = self.begin_sequence(tf, tf);
            if !status_ok(st) {
                fo.status = st;
                return fo;
            }
        }
        let fully_safe = self
            .effect
            .props
            .str(kOfxImageEffectPluginRenderThreadSafety, 0)
            .as_deref()
            == kOfxImageEffectRenderFullySafe.to_str().ok();
        let host_threading = self
            .effect
            .props
            .int(kOfxImageEffectPluginPropHostFrameThreading, 0)
            .unwrap_or(1)
            != 0;
        let statuses: Vec<OfxStatus> = if strips.len() > 1 && fully_safe && host_threading {
            let idx: Vec<i64> = (0..strips.len() as i64).collect();
            par_map(&idx, strips.len(), |i| {
                let i = i as usize;
                self.render_action(tf, strips[i], &out, rois[i], frames_needed.clone())
            })
        } else {
            strips
                .iter()
                .zip(&rois)
                .map(|(w, r)| self.render_action(tf, *w, &out, *r, frames_needed.clone()))
                .collect()
        };
        fo.status = statuses
            .iter()
            .copied()
            .find(|&s| s != kOfxStatOK)
            .unwrap_or(kOfxStatOK);
        if opts.sequence {
            let st = self.end_sequence(tf, tf);
            if fo.status == kOfxStatOK && !status_ok(st) {
                fo.status = st;
            }
        }
        fo
    }

    /// Strips of the render window the host renders separately.
    fn strips_for(&self, window: Rect, opts: &RenderOpts) -> Vec<Rect> {
        let cfg = self.host.cfg();
        let n = match opts.strips {
            Some(n) => n,
            None if cfg.tiles => cfg.tile_threads,
            None => 1,
        };
        if n <= 1 || window.is_empty() {
            vec![window]
        } else {
            window.strips(n)
        }
    }

    /// Frames on `threads` threads in the given order (each wrapped in its own sequence).
    pub fn render_frames(
        &self,
        frames: &[i64],
        threads: usize,
        opts: &RenderOpts,
    ) -> Vec<FrameOut> {
        par_map(frames, threads, |t| self.render_frame(t, opts))
    }

    /// NOTE: MLT's filter_get_image: clip data primed with the frame (top-down, negative row
    /// bytes), GetClipPreferences, GetRegionOfDefinition, GetRegionsOfInterest(full frame),
    /// BeginSequenceRender([t,t]), Render(full frame), EndSequenceRender.
    pub fn render_frame_mlt(&self, t: i64) -> FrameOut {
        let tf = t as f64;
        self.set_time(tf);
        let full = self.footage.rect();
        let plugin_depths: Vec<Depth> = self
            .effect
            .props
            .strs(kOfxImageEffectPropSupportedPixelDepths)
            .iter()
            .filter_map(|d| Depth::from_ofx(d))
            .collect();
        let cfg = self.host.cfg();
        let depth = match &cfg.forced_depth {
            Some(f) => Depth::from_ofx(f)
                .map(DepthSpec::Known)
                .unwrap_or(DepthSpec::Other(f.clone())),
            None => DepthSpec::Known(mlt_select_depth(cfg.native_depth, &plugin_depths)),
        };
        let src = source_surface(
            &self.effect,
            &self.footage,
            t,
            full,
            depth.clone(),
            Comps::Rgba,
            1.0,
        );
        let out = Arc::new(Surface::new(
            full,
            depth.clone(),
            Comps::Rgba,
            cfg.row_order,
            cfg.row_padding,
        ));
        out.fill(0xA5);
        // NOTE: mltofx_set_{source,output}_clip_data: besides the image data, MLT overwrites the
        // clip's supported components and sets the unmapped components to a four-entry list that
        // starts with kOfxImageComponentNone.
        let all_comps = [
            kOfxImageComponentNone,
            kOfxImageComponentRGBA,
            kOfxImageComponentRGB,
            kOfxImageComponentAlpha,
        ];
        for (name, s) in [("Source", &src), ("Output", &out)] {
            if let Some(c) = self.effect.clip(name) {
                set_image_data(&c.props, s, full, 1.0, &format!("{name}{t:04}"));
                c.props
                    .set_str(kOfxImageClipPropUnmappedPixelDepth, &[&depth.name()]);
                c.props
                    .set_cstr(kOfxImageEffectPropSupportedComponents, &all_comps);
                c.props
                    .set_cstr(kOfxImageClipPropUnmappedComponents, &all_comps);
                c.props.set_cstr(
                    kOfxImageEffectPropPreMultiplication,
                    &[kOfxImageUnPreMultiplied],
                );
                c.props.set_cstr(kOfxImagePropField, &[kOfxImageFieldBoth]);
                c.props
                    .set_cstr(kOfxImageClipPropFieldOrder, &[kOfxImageFieldBoth]);
                c.props.set_int(kOfxImageClipPropConnected, &[1]);
            }
        }
        lk(&self.effect.rt.prefs).insert("Source".into(), (depth.clone(), Comps::Rgba));
        lk(&self.effect.rt.prefs).insert("Output".into(), (depth, Comps::Rgba));
        let mut fo = FrameOut {
            t,
            status: kOfxStatOK,
            window: full,
            rod: full,
            image: out.clone(),
            identity: None,
            sentinel: 0xA5,
        };
        let st = self.mlt_clip_preferences();
        if !status_ok(st) {
            self.state().note(format!(
                "MLT: GetClipPreferences returned {}",
                ffi::status_name(st)
            ));
        }
        let (st, rod) = self.region_of_definition(tf);
        if !status_ok(st) {
            self.state().note(format!(
                "MLT: GetRegionOfDefinition returned {}",
                ffi::status_name(st)
            ));
        } else {
            fo.rod = Rect::from_canonical(rod, 1.0);
        }
        let (st, _) = self.regions_of_interest(tf, full);
        if !status_ok(st) {
            self.state().note(format!(
                "MLT: GetRegionsOfInterest returned {}",
                ffi::status_name(st)
            ));
        }
        let st = self.begin_sequence(tf, tf);
        if !status_ok(st) {
            self.state().note(format!(
                "MLT: BeginSequenceRender returned {}",
                ffi::status_name(st)
            ));
        }
        fo.status = self.render_action(tf, full, &out, None, None);
        self.end_sequence(tf, tf);
        for name in ["Source", "Output"] {
            if let Some(c) = self.effect.clip(name) {
                c.props.set_ptr(
                    openfx::sys::image_effect_v1::image_effect::kOfxImagePropData,
                    &[],
                );
            }
        }
        fo
    }

    /// MLT primes the outArgs with the clips' current formats and ignores the depths and
    /// components the plugin asks for.
    fn mlt_clip_preferences(&self) -> OfxStatus {
        let out = self
            .host
            .args("outArgs of GetClipPreferences (MLT)", Policy::Open);
        for c in lk(&self.effect.clips).iter() {
            if let Some(v) = c.props.str(kOfxImageEffectPropComponents, 0) {
                out.set_named(
                    &format!("OfxImageClipPropComponents_{}", c.name),
                    str_val(&v),
                );
            }
            if let Some(v) = c.props.str(kOfxImageEffectPropPixelDepth, 0) {
                out.set_named(&format!("OfxImageClipPropDepth_{}", c.name), str_val(&v));
            }
            out.set_named(
                &format!("OfxImageClipPropPAR_{}", c.name),
                PropValue::Double(vec![1.0]),
            );
        }
        out.set_cstr(
            kOfxImageEffectPropPreMultiplication,
            &[kOfxImageUnPreMultiplied],
        );
        out.set_int(kOfxImageClipPropContinuousSamples, &[0]);
        out.set_int(kOfxImageEffectFrameVarying, &[0]);
        let st = self.call(
            kOfxImageEffectActionGetClipPreferences,
            None,
            Some(&out),
            None,
        );
        out.unregister();
        st
    }

    /// Begin/Instance/EndInstanceChanged for a parameter, then the host's answer to values the
    /// plugin set meanwhile (InstanceChanged with kOfxChangePluginEdited, as Natron sends).
    pub fn instance_changed(&self, name: &str, reason: &CStr) -> OfxStatus {
        self.instance_changed_depth(name, reason, 0)
    }

    fn instance_changed_depth(&self, name: &str, reason: &CStr, depth: usize) -> OfxStatus {
        let t = *lk(&self.effect.clock.time);
        let s = self.scale();
        let begin = self
            .host
            .args("inArgs of BeginInstanceChanged", Policy::ReadOnly);
        begin.set_cstr(kOfxPropChangeReason, &[reason]);
        let inp = self
            .host
            .args("inArgs of InstanceChanged", Policy::ReadOnly);
        inp.set_cstr(kOfxPropType, &[kOfxTypeParameter]);
        inp.set_str(kOfxPropName, &[name]);
        inp.set_cstr(kOfxPropChangeReason, &[reason]);
        inp.set_double(kOfxPropTime, &[t]);
        inp.set_double(kOfxImageEffectPropRenderScale, &[s, s]);
        let edits_before = lk(&self.state().plugin_edits).len();
        self.call(
            kOfxActionBeginInstanceChanged,
            Some(&begin),
            None,
            Some(self.rctx(t)),
        );
        let st = self.call(
            kOfxActionInstanceChanged,
            Some(&inp),
            None,
            Some(self.rctx(t)),
        );
        self.call(
            kOfxActionEndInstanceChanged,
            Some(&begin),
            None,
            Some(self.rctx(t)),
        );
        begin.unregister();
        inp.unregister();
        let edits: Vec<String> = lk(&self.state().plugin_edits)[edits_before..]
            .iter()
            .filter(|(serial, _)| *serial == self.effect.serial)
            .map(|(_, n)| n.clone())
            .collect();
        if depth < 3 && self.host.cfg().sends_instance_changed {
            for n in edits {
                self.instance_changed_depth(&n, kOfxChangePluginEdited, depth + 1);
            }
        }
        st
    }

    /// A push button press.
    pub fn push_button(&self, name: &str) -> OfxStatus {
        self.instance_changed(name, kOfxChangeUserEdited)
    }

    pub fn purge_caches(&self) -> OfxStatus {
        self.call(kOfxActionPurgeCaches, None, None, None)
    }

    pub fn sync_private_data(&self) -> OfxStatus {
        self.call(kOfxActionSyncPrivateData, None, None, None)
    }

    fn destroy_inner(&self) -> OfxStatus {
        if self.destroyed.swap(true, Ordering::SeqCst) {
            return kOfxStatOK;
        }
        let st = self.call(kOfxActionDestroyInstance, None, None, None);
        self.effect.unregister();
        self.host.live.fetch_sub(1, Ordering::SeqCst);
        st
    }

    pub fn destroy(self) -> OfxStatus {
        self.destroy_inner()
    }

    /// Persistent message currently set on this instance (type, text), if any.
    pub fn persistent_message(&self) -> Option<(String, String)> {
        let mut cur = None;
        for m in self.state().messages() {
            if m.effect != self.effect.serial {
                continue;
            }
            match m.kind {
                MessageKind::Persistent => cur = Some((m.mtype, m.text)),
                MessageKind::Clear => cur = None,
                MessageKind::Message => {}
            }
        }
        cur
    }

    /// What the host serves as the Source image of frame `t` over `rect`, in the Output clip's
    /// format (for exact comparisons with pass-through renders).
    pub fn source_image(&self, t: i64, rect: Rect) -> Arc<Surface> {
        let (depth, comps) = self.effect.clip_format("Output");
        source_surface(
            &self.effect,
            &self.footage,
            t,
            rect,
            depth,
            comps,
            self.scale(),
        )
    }

    /// The instance's output-clip format after clip preferences.
    pub fn output_format(&self) -> (DepthSpec, Comps) {
        self.effect.clip_format("Output")
    }

    /// A descriptor property of the instance (copied from the descriptor).
    pub fn prop_str(&self, name: &CStr) -> Option<String> {
        self.effect.props.str(name, 0)
    }

    pub fn prop_int(&self, name: &CStr) -> Option<i32> {
        self.effect.props.int(name, 0)
    }
}

fn str_val(s: &str) -> super::props::PropValue {
    PropValue::Str(vec![std::ffi::CString::new(s).unwrap_or_default()])
}

/// NOTE: MLT's select_image_format: 8-bit footage stays Byte if the plugin takes bytes, else
/// goes to the 16-bit path (Short, else Half, else Float); deeper footage prefers the 16-bit path.
pub fn mlt_select_depth(native: Depth, plugin: &[Depth]) -> Depth {
    let sixteen = || {
        [Depth::Short, Depth::Half, Depth::Float]
            .into_iter()
            .find(|d| plugin.contains(d))
    };
    match native {
        Depth::Byte if plugin.contains(&Depth::Byte) => Depth::Byte,
        Depth::Byte => sixteen().unwrap_or(Depth::Byte),
        _ => sixteen().unwrap_or(Depth::Byte),
    }
}

//! The host proper: loads and describes the plugin, creates instances (HostSupport style, or
//! MLT's describe-on-the-instance), sends every action through one function that checks the
//! images fetched during it were released, and renders frame sequences host style; per-instance
//! actions live in `instance`.

use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::image_effect::*;

use super::config::{Context, HostConfig, HostFlavour, Rect};
use super::effect::{self, descriptor_props, set_clip_instance_props, Effect, EffectKind};
use super::ffi::{self, lk, Ctx, RenderCtx};
use super::footage::Footage;
use super::image::Surface;
use super::instance::Instance;
use super::params::{Clock, PVal};
use super::plugin::{self, LibGuard, PluginLib};
use super::props::{Policy, PropSet};
use super::state::{ActionRecord, HostState};

/// How a parameter is animated in a project.
#[derive(Clone, Debug)]
pub enum Anim {
    Static(PVal),
    Keys(Vec<(f64, PVal)>),
    /// A choice given by its label (MLT style); the host maps it to the option index.
    Choice(String),
}

/// Footage plus parameter settings: what an artist's project holds for one effect.
#[derive(Clone, Debug)]
pub struct Project {
    pub footage: Arc<Footage>,
    pub params: Vec<(String, Anim)>,
}

impl Project {
    pub fn new(footage: Footage) -> Project {
        Project {
            footage: Arc::new(footage),
            params: vec![],
        }
    }

    pub fn set(mut self, name: &str, v: impl Into<PVal>) -> Project {
        self.params.retain(|(n, _)| n != name);
        self.params.push((name.to_string(), Anim::Static(v.into())));
        self
    }

    pub fn choice(mut self, name: &str, label: &str) -> Project {
        self.params.retain(|(n, _)| n != name);
        self.params
            .push((name.to_string(), Anim::Choice(label.to_string())));
        self
    }

    pub fn keys(mut self, name: &str, keys: &[(f64, PVal)]) -> Project {
        self.params.retain(|(n, _)| n != name);
        self.params
            .push((name.to_string(), Anim::Keys(keys.to_vec())));
        self
    }
}

/// Options of one host-driven frame render.
#[derive(Clone, Debug)]
pub struct RenderOpts {
    /// Render window in pixels at render scale; None: the whole region of definition.
    pub window: Option<Rect>,
    /// Byte the output buffer is filled with before the render (checked outside the window).
    pub sentinel: u8,
    /// Wrap the frame in Begin/EndSequenceRender([t, t]).
    pub sequence: bool,
    /// Output image bounds = the render window instead of the whole frame.
    pub tight_output: bool,
    /// Split the window into this many strips rendered by separate Render calls (on separate
    /// threads when the plugin is fully thread safe and allows host frame threading).
    /// None: the host's own policy (config tile_threads).
    pub strips: Option<usize>,
    /// Ask IsIdentity first (on hosts that do); false forces the Render action.
    pub identity: bool,
}

impl Default for RenderOpts {
    fn default() -> Self {
        RenderOpts {
            window: None,
            sentinel: 0xA5,
            sequence: true,
            tight_output: false,
            strips: None,
            identity: true,
        }
    }
}

impl RenderOpts {
    pub fn window(mut self, w: Rect) -> Self {
        self.window = Some(w);
        self
    }

    pub fn sentinel(mut self, s: u8) -> Self {
        self.sentinel = s;
        self
    }

    pub fn strips(mut self, n: usize) -> Self {
        self.strips = Some(n);
        self
    }

    pub fn no_identity(mut self) -> Self {
        self.identity = false;
        self
    }

    pub fn no_sequence(mut self) -> Self {
        self.sequence = false;
        self
    }

    pub fn tight(mut self) -> Self {
        self.tight_output = true;
        self
    }
}

/// Result of one host-driven frame render.
#[derive(Clone, Debug)]
pub struct FrameOut {
    pub t: i64,
    /// Status of the Render action (or of the first failing preparatory action).
    pub status: OfxStatus,
    /// The window actually rendered (the host may widen it, e.g. for plugins without tiles).
    pub window: Rect,
    /// Region of definition the plugin returned (pixels at render scale).
    pub rod: Rect,
    pub image: Arc<Surface>,
    /// Set when IsIdentity answered with a clip: the host copied that clip instead of rendering.
    pub identity: Option<(String, f64)>,
    pub sentinel: u8,
}

impl FrameOut {
    pub fn ok(&self) -> bool {
        self.status == kOfxStatOK
    }

    /// RGBA floats of the rendered window.
    pub fn pixels(&self) -> Vec<[f32; 4]> {
        self.image.read(self.window)
    }

    /// Exact bytes of `r` (defaults to the rendered window).
    pub fn bytes(&self, r: Option<Rect>) -> Vec<u8> {
        self.image.raw(r.unwrap_or(self.window))
    }
}

/// A host session: one emulated host process with the plugin loaded.
pub struct Host {
    pub state: Arc<HostState>,
    guard: LibGuard,
    descriptor: Mutex<Option<Arc<Effect>>>,
    contexts: Mutex<HashMap<Context, Arc<Effect>>>,
    pub(super) live: AtomicUsize,
    unloaded: AtomicBool,
    /// Serialises Render across all instances of a thread-unsafe plugin.
    pub(super) unsafe_render: Mutex<()>,
}

pub(super) fn status_ok(s: OfxStatus) -> bool {
    s == kOfxStatOK || s == kOfxStatReplyDefault
}

impl Host {
    /// Loads the plugin copy for `cfg`, calls setHost, and runs the host's discovery sequence:
    /// Load, Describe, DescribeInContext for the configured contexts (MLT: then Unload, as
    /// mltofx_detect_plugin does).
    pub fn start(cfg: HostConfig) -> Result<Host, String> {
        let guard = plugin::acquire(&cfg)?;
        let state = HostState::new(cfg);
        let host = Host {
            state,
            guard,
            descriptor: Mutex::new(None),
            contexts: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(0),
            unloaded: AtomicBool::new(false),
            unsafe_render: Mutex::new(()),
        };
        host.lib().set_host();
        let st = host.call(kOfxActionLoad, None, None, None, None);
        if !status_ok(st) {
            return Err(format!(
                "Load returned {}\n{}",
                ffi::status_name(st),
                host.state.dump()
            ));
        }
        if host.cfg().flavour == HostFlavour::Mlt {
            // NOTE: MLT's detection describes the plugin on a throw-away handle, then unloads it;
            // every instance later repeats Load + Describe + DescribeInContext without Unload.
            let e = host.new_descriptor(EffectKind::Descriptor, "MLT detection handle");
            let st = host.describe_on(&e, true)?;
            if st != kOfxStatErrMissingHostFeature {
                host.call(kOfxActionUnload, None, None, None, None);
            }
            e.unregister();
            *lk(&host.descriptor) = Some(e);
            return Ok(host);
        }
        let d = host.new_descriptor(EffectKind::Descriptor, "plugin descriptor");
        d.describing.store(true, Ordering::SeqCst);
        let st = host.call(kOfxActionDescribe, Some(&d), None, None, None);
        d.describing.store(false, Ordering::SeqCst);
        if st != kOfxStatOK {
            return Err(format!(
                "Describe returned {}\n{}",
                ffi::status_name(st),
                host.state.dump()
            ));
        }
        let supported = d.props.strs(kOfxImageEffectPropSupportedContexts);
        for c in host.cfg().describe_contexts.clone() {
            if !supported.iter().any(|s| s == c.name()) {
                continue;
            }
            let cd = host.new_descriptor(
                EffectKind::ContextDescriptor(c),
                &format!("{} descriptor", c.name()),
            );
            cd.props.copy_from(&d.props);
            cd.props.set_cstr(kOfxImageEffectPropContext, &[c.ofx()]);
            let args = host.args("inArgs of DescribeInContext", Policy::ReadOnly);
            args.set_cstr(kOfxImageEffectPropContext, &[c.ofx()]);
            cd.describing.store(true, Ordering::SeqCst);
            let st = host.call(
                kOfxImageEffectActionDescribeInContext,
                Some(&cd),
                Some(&args),
                None,
                None,
            );
            cd.describing.store(false, Ordering::SeqCst);
            args.unregister();
            if st != kOfxStatOK {
                return Err(format!(
                    "DescribeInContext({}) returned {}\n{}",
                    c.name(),
                    ffi::status_name(st),
                    host.state.dump()
                ));
            }
            lk(&host.contexts).insert(c, cd);
        }
        *lk(&host.descriptor) = Some(d);
        Ok(host)
    }

    pub fn cfg(&self) -> &HostConfig {
        &self.state.cfg
    }

    pub fn lib(&self) -> &PluginLib {
        &self.guard.lib
    }

    /// The plugin descriptor (after Describe).
    pub fn descriptor(&self) -> Arc<Effect> {
        lk(&self.descriptor).clone().expect("host started")
    }

    /// The descriptor of a context, if the plugin was described in it.
    pub fn context_descriptor(&self, c: Context) -> Option<Arc<Effect>> {
        lk(&self.contexts).get(&c).cloned()
    }

    fn new_descriptor(&self, kind: EffectKind, what: &str) -> Arc<Effect> {
        let path = self.lib().path.display().to_string();
        Effect::new(
            self.state.clone(),
            kind,
            descriptor_props(&self.state, what, &path),
            None,
            Arc::new(Clock::default()),
        )
    }

    /// A fresh argument property set for an action.
    pub fn args(&self, what: &str, policy: Policy) -> Arc<PropSet> {
        let (p, _) = PropSet::new(what, Some(self.state.clone()), policy).into_handle();
        p
    }

    /// Sends an action and checks, once it returns, that every image fetched during it was
    /// released.
    pub fn call(
        &self,
        action: &CStr,
        effect: Option<&Arc<Effect>>,
        in_args: Option<&Arc<PropSet>>,
        out_args: Option<&Arc<PropSet>>,
        render: Option<RenderCtx>,
    ) -> OfxStatus {
        let name = action.to_string_lossy().into_owned();
        let call = ffi::next_call();
        let ctx = Ctx {
            host: self.state.clone(),
            call,
            action: name.clone(),
            effect: effect.map(|e| e.addr()),
            render,
        };
        let main = self.lib().main_entry();
        let handle = effect
            .map(|e| e.handle() as *const c_void)
            .unwrap_or(std::ptr::null());
        let inp = in_args.map(|p| p.handle()).unwrap_or(std::ptr::null_mut());
        let out = out_args.map(|p| p.handle()).unwrap_or(std::ptr::null_mut());
        let start = Instant::now();
        // SAFETY: the plugin's mainEntry with handles this host registered.
        let st = ffi::with_ctx(ctx, || unsafe { main(action.as_ptr(), handle, inp, out) });
        let elapsed = start.elapsed();
        lk(&self.state.actions).push(ActionRecord {
            action: name.clone(),
            effect: effect.map(|e| e.serial).unwrap_or(0),
            status: st,
            elapsed,
        });
        let leaked: Vec<String> = lk(&self.state.outstanding)
            .values()
            .filter(|r| r.call.contains(&call))
            .map(|r| {
                format!(
                    "image of clip {} at t={} not released before {name} returned",
                    r.clip, r.time
                )
            })
            .collect();
        for l in leaked {
            self.state.violation(l);
        }
        st
    }

    /// Describe + DescribeInContext on `e` (MLT describes on the instance handle itself).
    fn describe_on(&self, e: &Arc<Effect>, mlt: bool) -> Result<OfxStatus, String> {
        e.describing.store(true, Ordering::SeqCst);
        let st = self.call(kOfxActionDescribe, Some(e), None, None, None);
        if st != kOfxStatOK {
            e.describing.store(false, Ordering::SeqCst);
            return Err(format!(
                "Describe returned {}\n{}",
                ffi::status_name(st),
                self.state.dump()
            ));
        }
        let inargs = if mlt {
            // NOTE: MLT passes its host property set as the inArgs of DescribeInContext.
            self.lib().host_props.clone()
        } else {
            let a = self.args("inArgs of DescribeInContext", Policy::ReadOnly);
            a.set_cstr(kOfxImageEffectPropContext, &[kOfxImageEffectContextFilter]);
            a
        };
        let st = self.call(
            kOfxImageEffectActionDescribeInContext,
            Some(e),
            Some(&inargs),
            None,
            None,
        );
        e.describing.store(false, Ordering::SeqCst);
        if st != kOfxStatOK && st != kOfxStatErrMissingHostFeature {
            return Err(format!(
                "DescribeInContext returned {}\n{}",
                ffi::status_name(st),
                self.state.dump()
            ));
        }
        Ok(st)
    }

    /// Creates an instance over `footage` in the configured context, then (long-lived hosts)
    /// asks for its clip preferences, as Natron does right after creation.
    pub fn create_instance(&self, footage: Arc<Footage>) -> Result<Instance<'_>, String> {
        let e = match self.cfg().flavour {
            HostFlavour::Mlt => self.mlt_instance_effect()?,
            HostFlavour::LongLived => self.instance_effect()?,
        };
        *lk(&e.rt.footage) = Some(footage.clone());
        if self.cfg().flavour != HostFlavour::Mlt {
            // NOTE: MLT gives clips no frame range, frame rate or unmapped depth: it only puts
            // image data on them per frame (see Instance::render_frame_mlt).
            for c in lk(&e.clips).iter() {
                set_clip_instance_props(&c.props, &e, &c.name, &footage);
            }
        }
        if self.cfg().flavour != HostFlavour::Mlt {
            let p = &e.props;
            let (w, h) = (footage.width as f64, footage.height as f64);
            p.set_double(kOfxImageEffectPropProjectSize, &[w, h]);
            p.set_double(kOfxImageEffectPropProjectExtent, &[w, h]);
            p.set_double(kOfxImageEffectPropProjectOffset, &[0.0, 0.0]);
            p.set_double(kOfxImageEffectPropProjectPixelAspectRatio, &[1.0]);
            p.set_double(
                kOfxImageEffectInstancePropEffectDuration,
                &[(footage.last - footage.first + 1) as f64],
            );
            p.set_double(kOfxImageEffectPropFrameRate, &[25.0]);
        }
        let st = self.call(kOfxActionCreateInstance, Some(&e), None, None, None);
        if !status_ok(st) {
            e.unregister();
            return Err(format!(
                "CreateInstance returned {}\n{}",
                ffi::status_name(st),
                self.state.dump()
            ));
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        let inst = Instance {
            host: self,
            effect: e,
            footage,
            destroyed: AtomicBool::new(false),
        };
        if self.cfg().flavour != HostFlavour::Mlt {
            let st = inst.clip_preferences();
            if !status_ok(st) {
                return Err(format!(
                    "GetClipPreferences returned {}\n{}",
                    ffi::status_name(st),
                    self.state.dump()
                ));
            }
        }
        Ok(inst)
    }

    /// Instance built from the context descriptor (HostSupport style: properties copied).
    fn instance_effect(&self) -> Result<Arc<Effect>, String> {
        let ctx = self.cfg().context;
        let cd = self
            .context_descriptor(ctx)
            .ok_or_else(|| format!("the plugin was not described in the {} context", ctx.name()))?;
        let host_keys: Vec<String> = [
            kOfxPropType,
            kOfxImageEffectPropContext,
            kOfxImageEffectPropProjectSize,
            kOfxImageEffectPropProjectExtent,
            kOfxImageEffectPropProjectOffset,
            kOfxImageEffectPropProjectPixelAspectRatio,
            kOfxImageEffectInstancePropEffectDuration,
            kOfxImageEffectPropFrameRate,
            kOfxPropIsInteractive,
        ]
        .iter()
        .map(|k| k.to_string_lossy().into_owned())
        .collect();
        let props = PropSet::new(
            "effect instance",
            Some(self.state.clone()),
            Policy::ReadOnlyKeys(host_keys),
        );
        props.copy_from(&cd.props);
        props.set_cstr(kOfxPropType, &[kOfxTypeImageEffectInstance]);
        props.set_cstr(kOfxImageEffectPropContext, &[ctx.ofx()]);
        props.set_ptr(kOfxPropInstanceData, &[0]);
        props.set_int(kOfxPropIsInteractive, &[0]);
        let clock = Arc::new(Clock::default());
        let serial = effect::next_serial();
        let params = cd
            .params
            .instantiate(self.state.clone(), serial, clock.clone());
        let e = Effect::new(
            self.state.clone(),
            EffectKind::Instance(ctx),
            props,
            Some((serial, params)),
            clock,
        );
        for c in lk(&cd.clips).iter() {
            let p = PropSet::new(
                format!("clip {:?}", c.name),
                Some(self.state.clone()),
                Policy::ReadOnly,
            );
            p.copy_from(&c.props);
            e.add_clip(&c.name, p);
        }
        Ok(e)
    }

    /// NOTE: MLT: setHost, Load, Describe and DescribeInContext again on a fresh handle that
    /// then becomes the instance (create_image_effect_instance -> mltofx_fetch_params).
    fn mlt_instance_effect(&self) -> Result<Arc<Effect>, String> {
        self.lib().set_host();
        let st = self.call(kOfxActionLoad, None, None, None, None);
        if !status_ok(st) {
            return Err(format!("Load returned {}", ffi::status_name(st)));
        }
        let e = self.new_descriptor(EffectKind::Descriptor, "MLT image effect");
        self.describe_on(&e, true)?;
        *lk(&e.kind) = EffectKind::Instance(Context::Filter);
        e.params.is_descriptor.store(false, Ordering::SeqCst);
        Ok(e)
    }

    /// Sends Unload (if this host does) once every instance is gone; returns the records
    /// (printed to stderr when VDIFF_HOST_DUMP is set).
    pub fn finish(self) -> Arc<HostState> {
        let live = self.live.load(Ordering::SeqCst);
        assert_eq!(
            live,
            0,
            "finish() with {live} instances alive\n{}",
            self.state.dump()
        );
        if self.cfg().sends_unload && !self.unloaded.swap(true, Ordering::SeqCst) {
            self.call(kOfxActionUnload, None, None, None, None);
        }
        for e in lk(&self.contexts).values() {
            e.unregister();
        }
        if let Some(d) = lk(&self.descriptor).as_ref() {
            d.unregister();
        }
        if std::env::var_os("VDIFF_HOST_DUMP").is_some() {
            eprintln!("{}", self.state.dump());
        }
        self.state.clone()
    }

    /// Renders `frames` host style: one long-lived instance (frames on `threads` threads, in
    /// the order given), or for MLT a fresh instance per frame with parameters set at that frame.
    pub fn render_frames(
        &self,
        project: &Project,
        frames: &[i64],
        threads: usize,
        opts: &RenderOpts,
    ) -> Result<Vec<FrameOut>, String> {
        match self.cfg().flavour {
            HostFlavour::Mlt => {
                let results = par_map(frames, threads, |t| -> Result<FrameOut, String> {
                    let inst = self.create_instance(project.footage.clone())?;
                    inst.apply(project, Some(t as f64));
                    let out = inst.render_frame_mlt(t);
                    inst.destroy();
                    Ok(out)
                });
                results.into_iter().collect()
            }
            HostFlavour::LongLived => {
                let inst = self.create_instance(project.footage.clone())?;
                inst.apply(project, None);
                let out = inst.render_frames(frames, threads, opts);
                inst.destroy();
                Ok(out)
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // A host dropped without finish() (a failed test) leaves the plugin loaded; the next
        // host of this copy calls Load again, which the plugin must accept (MLT does it anyway).
    }
}

/// Maps `f` over `items` on `threads` threads, results in item order.
pub fn par_map<T: Send>(items: &[i64], threads: usize, f: impl Fn(i64) -> T + Sync) -> Vec<T> {
    if threads <= 1 || items.len() <= 1 {
        return items.iter().map(|&t| f(t)).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<T>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= items.len() {
                    break;
                }
                *lk(&slots[i]) = Some(f(items[i]));
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every item mapped")
        })
        .collect()
}

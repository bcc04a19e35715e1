//! Parameters and OfxParameterSuiteV1: typed values, keyframes with linear interpolation for
//! doubles and integers (step for the others), getValueAtTime, derivative and integral, and the
//! rules on when a plugin may set values. The variadic get/set entry points go through the ABI
//! shims in `varargs`.

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::param::*;

use super::ffi::{self, lk, param_of, param_set_of, Obj};
use super::props::{Policy, PropSet};
use super::state::HostState;
use super::varargs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    Integer,
    Double,
    Boolean,
    Choice,
    StrChoice,
    Rgba,
    Rgb,
    Double2D,
    Integer2D,
    Double3D,
    Integer3D,
    String,
    Custom,
    Group,
    Page,
    PushButton,
}

impl ParamType {
    pub fn from_ofx(s: &str) -> Option<ParamType> {
        let t = |c: &std::ffi::CStr| c.to_str().unwrap_or("") == s;
        Some(if t(kOfxParamTypeInteger) {
            ParamType::Integer
        } else if t(kOfxParamTypeDouble) {
            ParamType::Double
        } else if t(kOfxParamTypeBoolean) {
            ParamType::Boolean
        } else if t(kOfxParamTypeChoice) {
            ParamType::Choice
        } else if t(kOfxParamTypeStrChoice) {
            ParamType::StrChoice
        } else if t(kOfxParamTypeRGBA) {
            ParamType::Rgba
        } else if t(kOfxParamTypeRGB) {
            ParamType::Rgb
        } else if t(kOfxParamTypeDouble2D) {
            ParamType::Double2D
        } else if t(kOfxParamTypeInteger2D) {
            ParamType::Integer2D
        } else if t(kOfxParamTypeDouble3D) {
            ParamType::Double3D
        } else if t(kOfxParamTypeInteger3D) {
            ParamType::Integer3D
        } else if t(kOfxParamTypeString) {
            ParamType::String
        } else if t(kOfxParamTypeCustom) {
            ParamType::Custom
        } else if t(kOfxParamTypeGroup) {
            ParamType::Group
        } else if t(kOfxParamTypePage) {
            ParamType::Page
        } else if t(kOfxParamTypePushButton) {
            ParamType::PushButton
        } else {
            return None;
        })
    }

    /// (number of int components, number of double components, is a string)
    pub fn layout(self) -> (usize, usize, bool) {
        match self {
            ParamType::Integer | ParamType::Boolean | ParamType::Choice => (1, 0, false),
            ParamType::Integer2D => (2, 0, false),
            ParamType::Integer3D => (3, 0, false),
            ParamType::Double => (0, 1, false),
            ParamType::Double2D => (0, 2, false),
            ParamType::Double3D | ParamType::Rgb => (0, 3, false),
            ParamType::Rgba => (0, 4, false),
            ParamType::String | ParamType::StrChoice | ParamType::Custom => (0, 0, true),
            ParamType::Group | ParamType::Page | ParamType::PushButton => (0, 0, false),
        }
    }

    pub fn has_value(self) -> bool {
        self.layout() != (0, 0, false)
    }

    /// Types whose keyframes interpolate linearly.
    pub fn interpolates(self) -> bool {
        matches!(
            self,
            ParamType::Integer
                | ParamType::Integer2D
                | ParamType::Integer3D
                | ParamType::Double
                | ParamType::Double2D
                | ParamType::Double3D
                | ParamType::Rgb
                | ParamType::Rgba
        )
    }
}

/// A parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum PVal {
    Int(Vec<i32>),
    Double(Vec<f64>),
    Str(String),
    None,
}

impl From<f64> for PVal {
    fn from(v: f64) -> PVal {
        PVal::Double(vec![v])
    }
}
impl From<i32> for PVal {
    fn from(v: i32) -> PVal {
        PVal::Int(vec![v])
    }
}
impl From<bool> for PVal {
    fn from(v: bool) -> PVal {
        PVal::Int(vec![v as i32])
    }
}
impl From<&str> for PVal {
    fn from(v: &str) -> PVal {
        PVal::Str(v.to_string())
    }
}
impl From<String> for PVal {
    fn from(v: String) -> PVal {
        PVal::Str(v)
    }
}

impl PVal {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PVal::Double(v) => v.first().copied(),
            PVal::Int(v) => v.first().map(|&i| i as f64),
            _ => None,
        }
    }

    pub fn as_i32(&self) -> Option<i32> {
        match self {
            PVal::Int(v) => v.first().copied(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            PVal::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The instance's timeline position (what paramGetValue reads at).
#[derive(Default)]
pub struct Clock {
    pub time: Mutex<f64>,
}

pub struct Param {
    pub name: String,
    pub ptype: ParamType,
    pub props: Arc<PropSet>,
    pub owner: Arc<HostState>,
    pub effect_serial: u64,
    pub is_descriptor: Arc<AtomicBool>,
    clock: Arc<Clock>,
    state: Mutex<ParamState>,
}

#[derive(Default)]
struct ParamState {
    value: Option<PVal>,
    keys: Vec<(f64, PVal)>,
    /// Strings handed to the plugin stay valid for the parameter's lifetime.
    keep: Vec<CString>,
}

impl Param {
    pub fn handle(self: &Arc<Self>) -> OfxParamHandle {
        Arc::as_ptr(self) as OfxParamHandle
    }

    /// Default value from the descriptor properties (kOfxParamPropDefault).
    pub fn default_value(&self) -> PVal {
        let (ni, nd, s) = self.ptype.layout();
        let d = kOfxParamPropDefault;
        if s {
            PVal::Str(self.props.str(d, 0).unwrap_or_default())
        } else if ni > 0 {
            PVal::Int((0..ni).map(|i| self.props.int(d, i).unwrap_or(0)).collect())
        } else if nd > 0 {
            PVal::Double(
                (0..nd)
                    .map(|i| self.props.double(d, i).unwrap_or(0.0))
                    .collect(),
            )
        } else {
            PVal::None
        }
    }

    pub fn static_value(&self) -> PVal {
        lk(&self.state)
            .value
            .clone()
            .unwrap_or_else(|| self.default_value())
    }

    pub fn keys(&self) -> Vec<(f64, PVal)> {
        lk(&self.state).keys.clone()
    }

    /// Value at time `t`, interpolating keyframes.
    pub fn value_at(&self, t: f64) -> PVal {
        let st = lk(&self.state);
        let fallback = || st.value.clone().unwrap_or_else(|| self.default_value());
        let keys = &st.keys;
        if keys.is_empty() {
            return fallback();
        }
        if t <= keys[0].0 {
            return keys[0].1.clone();
        }
        let last = &keys[keys.len() - 1];
        if t >= last.0 {
            return last.1.clone();
        }
        let i = keys.iter().rposition(|(kt, _)| *kt <= t).unwrap_or(0);
        let (t0, v0) = &keys[i];
        let (t1, v1) = &keys[i + 1];
        if !self.ptype.interpolates() {
            return v0.clone();
        }
        let a = (t - t0) / (t1 - t0);
        match (v0, v1) {
            (PVal::Double(x), PVal::Double(y)) => {
                PVal::Double(x.iter().zip(y).map(|(x, y)| x + (y - x) * a).collect())
            }
            (PVal::Int(x), PVal::Int(y)) => PVal::Int(
                x.iter()
                    .zip(y)
                    .map(|(&x, &y)| (x as f64 + (y as f64 - x as f64) * a).round() as i32)
                    .collect(),
            ),
            _ => v0.clone(),
        }
    }

    /// Host (user) edit: static value, dropping keyframes.
    pub fn set_static(&self, v: PVal) {
        let mut st = lk(&self.state);
        st.keys.clear();
        st.value = Some(v);
        drop(st);
        self.props.set_int(kOfxParamPropIsAnimating, &[0]);
    }

    /// Host (user) edit: a keyframe.
    pub fn set_key(&self, t: f64, v: PVal) {
        let mut st = lk(&self.state);
        st.keys.retain(|(kt, _)| *kt != t);
        st.keys.push((t, v));
        st.keys.sort_by(|a, b| a.0.total_cmp(&b.0));
        drop(st);
        self.props.set_int(kOfxParamPropIsAnimating, &[1]);
    }

    pub fn copy_state_from(&self, other: &Param) {
        let src = lk(&other.state);
        let (value, keys) = (src.value.clone(), src.keys.clone());
        drop(src);
        let mut st = lk(&self.state);
        st.value = value;
        st.keys = keys;
    }

    /// Checks a value has this parameter's shape.
    fn check_shape(&self, v: &PVal) -> bool {
        let (ni, nd, s) = self.ptype.layout();
        match v {
            PVal::Int(x) => ni > 0 && x.len() == ni,
            PVal::Double(x) => nd > 0 && x.len() == nd,
            PVal::Str(_) => s,
            PVal::None => false,
        }
    }

    /// The time the plugin's value query is answered at.
    fn query_time(&self, asked: Option<f64>) -> f64 {
        let clock = *lk(&self.clock.time);
        let render_time = ffi::current().and_then(|c| c.render.map(|r| r.time));
        match asked {
            // NOTE: MLT sets each parameter to its value at the frame being rendered and ignores
            // the time asked for.
            Some(_) if self.owner.cfg.params_at_current_time_only => render_time.unwrap_or(clock),
            Some(t) => t,
            None => clock,
        }
    }

    fn violation(&self, msg: String) {
        ffi::violation(Some(&self.owner), format!("param {:?}: {msg}", self.name));
    }

    /// Writes a value through the plugin's out-pointers.
    unsafe fn write_out(&self, v: &PVal, outs: [*mut c_void; 4]) -> OfxStatus {
        match v {
            PVal::Int(x) => {
                for (k, val) in x.iter().enumerate() {
                    let p = outs[k] as *mut c_int;
                    if p.is_null() {
                        self.violation(format!(
                            "paramGetValue: NULL out-pointer for component {k}"
                        ));
                        return kOfxStatErrBadHandle;
                    }
                    // SAFETY: the plugin passes one `int*` per component.
                    unsafe { *p = *val };
                }
            }
            PVal::Double(x) => {
                for (k, val) in x.iter().enumerate() {
                    let p = outs[k] as *mut f64;
                    if p.is_null() {
                        self.violation(format!(
                            "paramGetValue: NULL out-pointer for component {k}"
                        ));
                        return kOfxStatErrBadHandle;
                    }
                    // SAFETY: the plugin passes one `double*` per component.
                    unsafe { *p = *val };
                }
            }
            PVal::Str(s) => {
                let p = outs[0] as *mut *const c_char;
                if p.is_null() {
                    self.violation("paramGetValue: NULL out-pointer for a string".into());
                    return kOfxStatErrBadHandle;
                }
                let c = CString::new(s.replace('\0', "")).unwrap_or_default();
                let ptr = c.as_ptr();
                lk(&self.state).keep.push(c);
                // SAFETY: the plugin passes a `char**`; the string is kept alive by the param.
                unsafe { *p = ptr };
            }
            PVal::None => {
                self.violation("paramGetValue on a parameter without a value".into());
                return kOfxStatErrBadHandle;
            }
        }
        kOfxStatOK
    }

    /// The value the plugin passed to paramSetValue, in the parameter's kind.
    fn read_in(&self, ints: &[i32], doubles: &[f64], string: Option<String>) -> PVal {
        let (ni, nd, s) = self.ptype.layout();
        if s {
            PVal::Str(string.unwrap_or_default())
        } else if ni > 0 {
            PVal::Int(ints.iter().take(ni).copied().collect())
        } else {
            PVal::Double(doubles.iter().take(nd).copied().collect())
        }
    }

    /// Whether plugins may set values during the current action.
    fn setting_allowed(&self) -> Result<(), String> {
        let action = ffi::current().map(|c| c.action).unwrap_or_default();
        const ALLOWED: [&str; 6] = [
            "OfxActionInstanceChanged",
            "OfxActionBeginInstanceChanged",
            "OfxActionEndInstanceChanged",
            "OfxActionSyncPrivateData",
            "OfxActionCreateInstance",
            "OfxActionBeginInstanceEdit",
        ];
        if ALLOWED.contains(&action.as_str()) {
            Ok(())
        } else {
            Err(format!("plugin set a parameter value during {action:?} (only allowed in instance-changed / create-instance / sync actions)"))
        }
    }

    fn plugin_set(&self, at: Option<f64>, v: PVal, func: &str) -> OfxStatus {
        if self.is_descriptor.load(Ordering::SeqCst) {
            self.violation(format!("{func} on a descriptor parameter"));
            return kOfxStatErrBadHandle;
        }
        if let Err(msg) = self.setting_allowed() {
            self.violation(format!("{func}: {msg}"));
        }
        if self.ptype == ParamType::Choice {
            let n = self.props.strs(kOfxParamPropChoiceOption).len() as i32;
            if let Some(i) = v.as_i32() {
                if i < 0 || i >= n {
                    self.violation(format!("{func}: choice index {i} outside 0..{n}"));
                    return kOfxStatErrValue;
                }
            }
        }
        match at {
            Some(t)
                if self.ptype.interpolates()
                    || self.ptype == ParamType::Boolean
                    || self.ptype == ParamType::Choice =>
            {
                self.set_key(t, v)
            }
            Some(_) => {
                self.violation(format!("{func} on a non-animatable parameter"));
                return kOfxStatErrUnsupported;
            }
            None => {
                let animated = !lk(&self.state).keys.is_empty();
                if animated {
                    let t = *lk(&self.clock.time);
                    self.set_key(t, v)
                } else {
                    lk(&self.state).value = Some(v);
                }
            }
        }
        lk(&self.owner.plugin_edits).push((self.effect_serial, self.name.clone()));
        kOfxStatOK
    }
}

/// A parameter set (of a descriptor or an instance).
pub struct ParamSet {
    pub props: Arc<PropSet>,
    pub params: Mutex<Vec<Arc<Param>>>,
    pub owner: Arc<HostState>,
    pub effect_serial: u64,
    pub is_descriptor: Arc<AtomicBool>,
    pub clock: Arc<Clock>,
    edit_depth: Mutex<i32>,
}

impl ParamSet {
    pub fn new(
        owner: Arc<HostState>,
        effect_serial: u64,
        descriptor: bool,
        clock: Arc<Clock>,
    ) -> Arc<ParamSet> {
        let (props, _) = PropSet::new(
            format!("param set of effect #{effect_serial}"),
            Some(owner.clone()),
            Policy::Open,
        )
        .into_handle();
        let set = Arc::new(ParamSet {
            props,
            params: Mutex::new(Vec::new()),
            owner,
            effect_serial,
            is_descriptor: Arc::new(AtomicBool::new(descriptor)),
            clock,
            edit_depth: Mutex::new(0),
        });
        ffi::register(Arc::as_ptr(&set) as usize, Obj::ParamSet(set.clone()));
        set
    }

    pub fn handle(self: &Arc<Self>) -> OfxParamSetHandle {
        Arc::as_ptr(self) as OfxParamSetHandle
    }

    pub fn get(&self, name: &str) -> Option<Arc<Param>> {
        lk(&self.params).iter().find(|p| p.name == name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Param>> {
        lk(&self.params).clone()
    }

    /// Defines a parameter with the spec's default properties.
    pub fn define(self: &Arc<Self>, ptype: ParamType, type_name: &str, name: &str) -> Arc<Param> {
        let props = PropSet::new(
            format!("param {name:?}"),
            Some(self.owner.clone()),
            Policy::Open,
        );
        default_param_props(&props, ptype, type_name, name);
        let (props, _) = props.into_handle();
        let p = Arc::new(Param {
            name: name.to_string(),
            ptype,
            props,
            owner: self.owner.clone(),
            effect_serial: self.effect_serial,
            is_descriptor: self.is_descriptor.clone(),
            clock: self.clock.clone(),
            state: Mutex::new(ParamState::default()),
        });
        ffi::register(Arc::as_ptr(&p) as usize, Obj::Param(p.clone()));
        lk(&self.params).push(p.clone());
        p
    }

    /// Instance parameter set cloned from a descriptor's: properties copied, values at defaults.
    pub fn instantiate(
        &self,
        owner: Arc<HostState>,
        effect_serial: u64,
        clock: Arc<Clock>,
    ) -> Arc<ParamSet> {
        let set = ParamSet::new(owner.clone(), effect_serial, false, clock.clone());
        set.props.copy_from(&self.props);
        for d in self.all() {
            let props = PropSet::new(
                format!("param {:?}", d.name),
                Some(owner.clone()),
                Policy::Open,
            );
            props.copy_from(&d.props);
            props.seal_defaults();
            let (props, _) = props.into_handle();
            let p = Arc::new(Param {
                name: d.name.clone(),
                ptype: d.ptype,
                props,
                owner: owner.clone(),
                effect_serial,
                is_descriptor: set.is_descriptor.clone(),
                clock: clock.clone(),
                state: Mutex::new(ParamState::default()),
            });
            ffi::register(Arc::as_ptr(&p) as usize, Obj::Param(p.clone()));
            lk(&set.params).push(p);
        }
        set
    }

    /// Unregisters the set, its parameters and their property sets.
    pub fn unregister(self: &Arc<Self>) {
        for p in self.all() {
            ffi::unregister(Arc::as_ptr(&p) as usize);
            p.props.unregister();
        }
        self.props.unregister();
        ffi::unregister(Arc::as_ptr(self) as usize);
    }
}

fn default_param_props(p: &PropSet, t: ParamType, type_name: &str, name: &str) {
    p.set_cstr(kOfxPropType, &[kOfxTypeParameter]);
    p.set_str(kOfxPropName, &[name]);
    p.set_str(kOfxPropLabel, &[name]);
    p.set_str(kOfxPropShortLabel, &[name]);
    p.set_str(kOfxPropLongLabel, &[name]);
    p.set_str(kOfxParamPropType, &[type_name]);
    p.set_int(kOfxParamPropSecret, &[0]);
    p.set_str(kOfxParamPropHint, &[""]);
    p.set_str(kOfxParamPropScriptName, &[name]);
    p.set_str(kOfxParamPropParent, &[""]);
    p.set_int(kOfxParamPropEnabled, &[1]);
    p.set_ptr(kOfxParamPropDataPtr, &[0]);
    p.set_str(kOfxPropIcon, &["", ""]);
    if t.has_value() {
        p.set_int(kOfxParamPropCanUndo, &[1]);
        p.set_int(kOfxParamPropEvaluateOnChange, &[1]);
        p.set_int(kOfxParamPropPersistant, &[1]);
        p.set_int(kOfxParamPropPluginMayWrite, &[0]);
        p.set_cstr(
            kOfxParamPropCacheInvalidation,
            &[kOfxParamInvalidateValueChange],
        );
        p.set_int(kOfxParamPropAnimates, &[1]);
        p.set_int(kOfxParamPropIsAnimating, &[0]);
        p.set_int(kOfxParamPropIsAutoKeying, &[0]);
        p.set_ptr(kOfxParamPropInteractV1, &[0]);
        p.set_double(kOfxParamPropInteractSize, &[0.0, 0.0]);
        p.set_double(kOfxParamPropInteractSizeAspect, &[1.0]);
        p.set_int(kOfxParamPropInteractMinimumSize, &[10, 10]);
        p.set_int(kOfxParamPropInteractPreferedSize, &[10, 10]);
    }
    let (ni, nd, _) = t.layout();
    match t {
        ParamType::Boolean => p.set_int(kOfxParamPropDefault, &[0]),
        ParamType::Choice => {
            p.set_int(kOfxParamPropDefault, &[0]);
            p.set_str(kOfxParamPropChoiceOption, &[]);
            p.set_int(kOfxParamPropChoiceOrder, &[]);
        }
        ParamType::StrChoice => {
            p.set_str(kOfxParamPropDefault, &[""]);
            p.set_str(kOfxParamPropChoiceOption, &[]);
            p.set_str(kOfxParamPropChoiceEnum, &[]);
        }
        ParamType::Integer | ParamType::Integer2D | ParamType::Integer3D => {
            p.set_int(kOfxParamPropDefault, &vec![0; ni]);
            p.set_int(kOfxParamPropMin, &vec![i32::MIN; ni]);
            p.set_int(kOfxParamPropMax, &vec![i32::MAX; ni]);
            p.set_int(kOfxParamPropDisplayMin, &vec![i32::MIN; ni]);
            p.set_int(kOfxParamPropDisplayMax, &vec![i32::MAX; ni]);
        }
        ParamType::Double
        | ParamType::Double2D
        | ParamType::Double3D
        | ParamType::Rgb
        | ParamType::Rgba => {
            let rgb = matches!(t, ParamType::Rgb | ParamType::Rgba);
            let (lo, hi) = if rgb {
                (0.0, 1.0)
            } else {
                (-f64::MAX, f64::MAX)
            };
            p.set_double(kOfxParamPropDefault, &vec![0.0; nd]);
            p.set_double(kOfxParamPropMin, &vec![lo; nd]);
            p.set_double(kOfxParamPropMax, &vec![hi; nd]);
            p.set_double(kOfxParamPropDisplayMin, &vec![lo; nd]);
            p.set_double(kOfxParamPropDisplayMax, &vec![hi; nd]);
            if !rgb {
                p.set_double(kOfxParamPropIncrement, &[1.0]);
                p.set_int(kOfxParamPropDigits, &[2]);
                p.set_cstr(kOfxParamPropDoubleType, &[kOfxParamDoubleTypePlain]);
                p.set_cstr(
                    kOfxParamPropDefaultCoordinateSystem,
                    &[kOfxParamCoordinatesCanonical],
                );
            }
        }
        ParamType::String => {
            p.set_str(kOfxParamPropDefault, &[""]);
            p.set_cstr(kOfxParamPropStringMode, &[kOfxParamStringIsSingleLine]);
            p.set_int(kOfxParamPropStringFilePathExists, &[1]);
        }
        ParamType::Custom => {
            p.set_str(kOfxParamPropDefault, &[""]);
            p.set_ptr(kOfxParamPropCustomInterpCallbackV1, &[0]);
        }
        ParamType::Group => p.set_int(kOfxParamPropGroupOpen, &[1]),
        ParamType::Page => p.set_str(kOfxParamPropPageChild, &[]),
        ParamType::PushButton => {}
    }
}

unsafe extern "C" fn param_define(
    set: OfxParamSetHandle,
    ptype: *const c_char,
    name: *const c_char,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    let Some(set) = param_set_of(set as *const c_void, "paramDefine") else {
        return kOfxStatErrBadHandle;
    };
    // SAFETY: plugin strings.
    let (Some(tname), Some(name)) = (unsafe { ffi::cstr_arg(ptype) }, unsafe {
        ffi::cstr_arg(name)
    }) else {
        ffi::violation(Some(&set.owner), "paramDefine: NULL type or name".into());
        return kOfxStatErrValue;
    };
    if !set.is_descriptor.load(Ordering::SeqCst) {
        ffi::violation(
            Some(&set.owner),
            format!("paramDefine({name:?}) on an instance"),
        );
        return kOfxStatErrBadHandle;
    }
    if set.get(&name).is_some() {
        ffi::violation(
            Some(&set.owner),
            format!("paramDefine({name:?}): defined twice"),
        );
        return kOfxStatErrExists;
    }
    let Some(t) = ParamType::from_ofx(&tname) else {
        ffi::violation(
            Some(&set.owner),
            format!("paramDefine({name:?}): unsupported type {tname:?}"),
        );
        return kOfxStatErrUnknown;
    };
    let p = set.define(t, &tname, &name);
    if !props.is_null() {
        // SAFETY: out-pointer from the plugin.
        unsafe { *props = p.props.handle() };
    }
    kOfxStatOK
}

unsafe extern "C" fn param_get_handle(
    set: OfxParamSetHandle,
    name: *const c_char,
    param: *mut OfxParamHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    let Some(set) = param_set_of(set as *const c_void, "paramGetHandle") else {
        return kOfxStatErrBadHandle;
    };
    // SAFETY: plugin string.
    let Some(name) = (unsafe { ffi::cstr_arg(name) }) else {
        return kOfxStatErrUnknown;
    };
    let Some(p) = set.get(&name) else {
        ffi::violation(
            Some(&set.owner),
            format!("paramGetHandle({name:?}): no such parameter"),
        );
        return kOfxStatErrUnknown;
    };
    if param.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointers from the plugin.
    unsafe {
        *param = p.handle();
        if !props.is_null() {
            *props = p.props.handle();
        }
    }
    kOfxStatOK
}

unsafe extern "C" fn param_set_get_property_set(
    set: OfxParamSetHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    let Some(set) = param_set_of(set as *const c_void, "paramSetGetPropertySet") else {
        return kOfxStatErrBadHandle;
    };
    if props.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *props = set.props.handle() };
    kOfxStatOK
}

unsafe extern "C" fn param_get_property_set(
    param: OfxParamHandle,
    props: *mut OfxPropertySetHandle,
) -> OfxStatus {
    let Some(p) = param_of(param as *const c_void, "paramGetPropertySet") else {
        return kOfxStatErrBadHandle;
    };
    if props.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *props = p.props.handle() };
    kOfxStatOK
}

/// paramGetValue / paramGetValueAtTime behind the variadic shims.
pub(super) fn get_value(h: OfxParamHandle, at: Option<f64>, outs: [*mut c_void; 4]) -> OfxStatus {
    let func = if at.is_some() {
        "paramGetValueAtTime"
    } else {
        "paramGetValue"
    };
    let Some(p) = param_of(h as *const c_void, func) else {
        return kOfxStatErrBadHandle;
    };
    if !p.ptype.has_value() {
        p.violation(format!("{func} on a {:?} parameter", p.ptype));
        return kOfxStatErrBadHandle;
    }
    if p.is_descriptor.load(Ordering::SeqCst) {
        p.violation(format!("{func} on a descriptor parameter"));
    }
    if at.is_none() && !p.keys().is_empty() {
        if let Some(c) = ffi::current() {
            if c.action == "OfxImageEffectActionRender" {
                p.owner.note(format!(
                    "paramGetValue({:?}) on an animated parameter during Render: reads the timeline time, not the render time",
                    p.name
                ));
            }
        }
    }
    let t = p.query_time(at);
    let v = p.value_at(t);
    // SAFETY: out-pointers come from the plugin's variadic arguments.
    unsafe { p.write_out(&v, outs) }
}

/// paramSetValue / paramSetValueAtTime behind the variadic shims.
pub(super) fn set_value(
    h: OfxParamHandle,
    at: Option<f64>,
    ints: &[i32],
    doubles: &[f64],
    string: Option<String>,
) -> OfxStatus {
    let func = if at.is_some() {
        "paramSetValueAtTime"
    } else {
        "paramSetValue"
    };
    let Some(p) = param_of(h as *const c_void, func) else {
        return kOfxStatErrBadHandle;
    };
    if !p.ptype.has_value() {
        p.violation(format!("{func} on a {:?} parameter", p.ptype));
        return kOfxStatErrBadHandle;
    }
    let v = p.read_in(ints, doubles, string);
    if !p.check_shape(&v) {
        p.violation(format!("{func}: value {v:?} does not fit"));
        return kOfxStatErrValue;
    }
    p.plugin_set(at, v, func)
}

/// Derivative (doubles only) at `t`: the slope of the keyframe segment containing it.
pub(super) fn derivative(h: OfxParamHandle, t: f64, outs: [*mut c_void; 4]) -> OfxStatus {
    let Some(p) = param_of(h as *const c_void, "paramGetDerivative") else {
        return kOfxStatErrBadHandle;
    };
    let (_, nd, _) = p.ptype.layout();
    if nd == 0 {
        p.violation("paramGetDerivative on a non-double parameter".into());
        return kOfxStatErrBadHandle;
    }
    let keys = p.keys();
    let mut d = vec![0.0; nd];
    if let Some(i) = keys.windows(2).position(|w| w[0].0 <= t && t < w[1].0) {
        if let (PVal::Double(a), PVal::Double(b)) = (&keys[i].1, &keys[i + 1].1) {
            let dt = keys[i + 1].0 - keys[i].0;
            d = a.iter().zip(b).map(|(a, b)| (b - a) / dt).collect();
        }
    }
    // SAFETY: out-pointers from the plugin.
    unsafe { p.write_out(&PVal::Double(d), outs) }
}

/// Integral (doubles only) from `t1` to `t2`, exact for piecewise-linear curves.
pub(super) fn integral(h: OfxParamHandle, t1: f64, t2: f64, outs: [*mut c_void; 4]) -> OfxStatus {
    let Some(p) = param_of(h as *const c_void, "paramGetIntegral") else {
        return kOfxStatErrBadHandle;
    };
    let (_, nd, _) = p.ptype.layout();
    if nd == 0 {
        p.violation("paramGetIntegral on a non-double parameter".into());
        return kOfxStatErrBadHandle;
    }
    let (lo, hi, sign) = if t1 <= t2 {
        (t1, t2, 1.0)
    } else {
        (t2, t1, -1.0)
    };
    let mut cuts = vec![lo, hi];
    cuts.extend(p.keys().iter().map(|k| k.0).filter(|&k| k > lo && k < hi));
    cuts.sort_by(f64::total_cmp);
    let mut acc = vec![0.0; nd];
    for w in cuts.windows(2) {
        let (a, b) = (p.value_at(w[0]), p.value_at(w[1]));
        if let (PVal::Double(a), PVal::Double(b)) = (a, b) {
            for k in 0..nd {
                acc[k] += sign * (w[1] - w[0]) * (a[k] + b[k]) / 2.0;
            }
        }
    }
    // SAFETY: out-pointers from the plugin.
    unsafe { p.write_out(&PVal::Double(acc), outs) }
}

unsafe extern "C" fn param_get_num_keys(h: OfxParamHandle, n: *mut c_uint) -> OfxStatus {
    let Some(p) = param_of(h as *const c_void, "paramGetNumKeys") else {
        return kOfxStatErrBadHandle;
    };
    if n.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *n = p.keys().len() as c_uint };
    kOfxStatOK
}

unsafe extern "C" fn param_get_key_time(
    h: OfxParamHandle,
    nth: c_uint,
    time: *mut OfxTime,
) -> OfxStatus {
    let Some(p) = param_of(h as *const c_void, "paramGetKeyTime") else {
        return kOfxStatErrBadHandle;
    };
    let keys = p.keys();
    let Some(k) = keys.get(nth as usize) else {
        return kOfxStatErrBadIndex;
    };
    if time.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *time = k.0 };
    kOfxStatOK
}

unsafe extern "C" fn param_get_key_index(
    h: OfxParamHandle,
    time: OfxTime,
    direction: c_int,
    index: *mut c_int,
) -> OfxStatus {
    let Some(p) = param_of(h as *const c_void, "paramGetKeyIndex") else {
        return kOfxStatErrBadHandle;
    };
    let keys = p.keys();
    let found = match direction {
        0 => keys.iter().position(|k| k.0 == time),
        d if d < 0 => keys.iter().rposition(|k| k.0 < time),
        _ => keys.iter().position(|k| k.0 > time),
    };
    let Some(i) = found else {
        return kOfxStatFailed;
    };
    if index.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *index = i as c_int };
    kOfxStatOK
}

unsafe extern "C" fn param_delete_key(h: OfxParamHandle, time: OfxTime) -> OfxStatus {
    let Some(p) = param_of(h as *const c_void, "paramDeleteKey") else {
        return kOfxStatErrBadHandle;
    };
    let mut st = lk(&p.state);
    let before = st.keys.len();
    st.keys.retain(|k| k.0 != time);
    if st.keys.len() == before {
        return kOfxStatErrBadIndex;
    }
    kOfxStatOK
}

unsafe extern "C" fn param_delete_all_keys(h: OfxParamHandle) -> OfxStatus {
    let Some(p) = param_of(h as *const c_void, "paramDeleteAllKeys") else {
        return kOfxStatErrBadHandle;
    };
    let v = p.value_at(*lk(&p.clock.time));
    let mut st = lk(&p.state);
    st.keys.clear();
    st.value = Some(v);
    kOfxStatOK
}

unsafe extern "C" fn param_copy(
    to: OfxParamHandle,
    from: OfxParamHandle,
    offset: OfxTime,
    range: *const OfxRangeD,
) -> OfxStatus {
    let (Some(dst), Some(src)) = (
        param_of(to as *const c_void, "paramCopy"),
        param_of(from as *const c_void, "paramCopy"),
    ) else {
        return kOfxStatErrBadHandle;
    };
    if dst.ptype != src.ptype {
        dst.violation(format!("paramCopy from {:?} of another type", src.name));
        return kOfxStatErrValue;
    }
    // SAFETY: optional range from the plugin.
    let range = unsafe { range.as_ref() }.copied();
    let keys: Vec<(f64, PVal)> = src
        .keys()
        .into_iter()
        .filter(|(t, _)| range.is_none_or(|r| *t >= r.min && *t <= r.max))
        .map(|(t, v)| (t + offset, v))
        .collect();
    let value = src.static_value();
    let mut st = lk(&dst.state);
    st.value = Some(value);
    st.keys = keys;
    kOfxStatOK
}

unsafe extern "C" fn param_edit_begin(set: OfxParamSetHandle, _name: *const c_char) -> OfxStatus {
    let Some(set) = param_set_of(set as *const c_void, "paramEditBegin") else {
        return kOfxStatErrBadHandle;
    };
    *lk(&set.edit_depth) += 1;
    kOfxStatOK
}

unsafe extern "C" fn param_edit_end(set: OfxParamSetHandle) -> OfxStatus {
    let Some(set) = param_set_of(set as *const c_void, "paramEditEnd") else {
        return kOfxStatErrBadHandle;
    };
    let mut d = lk(&set.edit_depth);
    if *d <= 0 {
        ffi::violation(
            Some(&set.owner),
            "paramEditEnd without paramEditBegin".into(),
        );
        return kOfxStatFailed;
    }
    *d -= 1;
    kOfxStatOK
}

pub static PARAMETER_SUITE: OfxParameterSuiteV1 = OfxParameterSuiteV1 {
    paramDefine: Some(param_define),
    paramGetHandle: Some(param_get_handle),
    paramSetGetPropertySet: Some(param_set_get_property_set),
    paramGetPropertySet: Some(param_get_property_set),
    paramGetValue: Some(varargs::PARAM_GET_VALUE),
    paramGetValueAtTime: Some(varargs::PARAM_GET_VALUE_AT_TIME),
    paramGetDerivative: Some(varargs::PARAM_GET_DERIVATIVE),
    paramGetIntegral: Some(varargs::PARAM_GET_INTEGRAL),
    paramSetValue: Some(varargs::PARAM_SET_VALUE),
    paramSetValueAtTime: Some(varargs::PARAM_SET_VALUE_AT_TIME),
    paramGetNumKeys: Some(param_get_num_keys),
    paramGetKeyTime: Some(param_get_key_time),
    paramGetKeyIndex: Some(param_get_key_index),
    paramDeleteKey: Some(param_delete_key),
    paramDeleteAllKeys: Some(param_delete_all_keys),
    paramCopy: Some(param_copy),
    paramEditBegin: Some(param_edit_begin),
    paramEditEnd: Some(param_edit_end),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::config::HostConfig;

    #[test]
    fn keyframes_interpolate_linearly_for_numbers_and_step_for_choices() {
        let host = HostState::new(HostConfig::natron());
        let set = ParamSet::new(host, 0, false, Arc::new(Clock::default()));
        let d = set.define(ParamType::Double, "OfxParamTypeDouble", "d");
        let i = set.define(ParamType::Integer, "OfxParamTypeInteger", "i");
        let c = set.define(ParamType::Choice, "OfxParamTypeChoice", "c");
        d.set_key(0.0, 0.0.into());
        d.set_key(4.0, 1.0.into());
        i.set_key(0.0, 0.into());
        i.set_key(4.0, 3.into());
        c.set_key(0.0, 0.into());
        c.set_key(4.0, 2.into());
        assert_eq!(d.value_at(1.0), PVal::from(0.25));
        assert_eq!(d.value_at(-3.0), PVal::from(0.0), "before the first key");
        assert_eq!(d.value_at(9.0), PVal::from(1.0), "after the last key");
        assert_eq!(i.value_at(1.0), PVal::from(1), "0.75 rounds to 1");
        assert_eq!(i.value_at(2.0), PVal::from(2), "1.5 rounds away from zero");
        assert_eq!(
            c.value_at(3.9),
            PVal::from(0),
            "choices hold until the next key"
        );
        assert_eq!(c.value_at(4.0), PVal::from(2));
        d.set_static(0.5.into());
        assert_eq!(
            d.value_at(2.0),
            PVal::from(0.5),
            "a static value replaces the keys"
        );
        set.unregister();
    }
}

//! Property sets and OfxPropertySuiteV1. Gets are strict (unknown property: kOfxStatErrUnknown,
//! bad index: kOfxStatErrBadIndex, wrong type: kOfxStatErrValue) and every write the plugin makes
//! is checked against the set's policy (read-only host sets, action outArgs, instances).

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Arc, Mutex};

use openfx::sys::generic::core::*;
use openfx::sys::generic::property::OfxPropertySuiteV1;

use super::ffi::{self, lk, props_of, Obj};
use super::state::HostState;

#[derive(Clone, Debug, PartialEq)]
pub enum PropValue {
    Int(Vec<c_int>),
    Double(Vec<f64>),
    Str(Vec<CString>),
    Ptr(Vec<usize>),
}

impl PropValue {
    fn len(&self) -> usize {
        match self {
            PropValue::Int(v) => v.len(),
            PropValue::Double(v) => v.len(),
            PropValue::Str(v) => v.len(),
            PropValue::Ptr(v) => v.len(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            PropValue::Int(_) => "int",
            PropValue::Double(_) => "double",
            PropValue::Str(_) => "string",
            PropValue::Ptr(_) => "pointer",
        }
    }
}

/// Which writes the plugin may make.
#[derive(Clone, Debug)]
pub enum Policy {
    /// Descriptors: anything.
    Open,
    /// Host-owned sets (host, clip instances, images, action inArgs): nothing.
    ReadOnly,
    /// Action outArgs: only properties the host initialised.
    ExistingOnly,
    /// Instances: anything except these host-owned properties.
    ReadOnlyKeys(Vec<String>),
}

pub struct PropSet {
    /// What the set is, for diagnostics ("host", "clip Source", "inArgs of Render", ...).
    pub what: String,
    pub owner: Option<Arc<HostState>>,
    pub policy: Policy,
    inner: Mutex<Inner>,
    /// Keeps image pixels alive as long as the handle exists.
    pub attachment: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

#[derive(Default)]
struct Inner {
    map: BTreeMap<String, PropValue>,
    defaults: BTreeMap<String, PropValue>,
    /// Strings already handed out stay valid until the set dies, even when overwritten.
    retired: Vec<CString>,
}

fn cs(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl PropSet {
    pub fn new(what: impl Into<String>, owner: Option<Arc<HostState>>, policy: Policy) -> PropSet {
        PropSet {
            what: what.into(),
            owner,
            policy,
            inner: Mutex::new(Inner::default()),
            attachment: None,
        }
    }

    pub fn with_attachment(mut self, a: Arc<dyn std::any::Any + Send + Sync>) -> PropSet {
        self.attachment = Some(a);
        self
    }

    /// Copies all properties of `other` (instance sets start from their descriptor's).
    pub fn copy_from(&self, other: &PropSet) {
        let src = lk(&other.inner).map.clone();
        lk(&self.inner).map.extend(src);
    }

    /// Registers the set and returns its handle.
    pub fn into_handle(self) -> (Arc<PropSet>, OfxPropertySetHandle) {
        let a = Arc::new(self);
        let h = Arc::as_ptr(&a) as usize;
        ffi::register(h, Obj::Props(a.clone()));
        (a, h as OfxPropertySetHandle)
    }

    pub fn handle(self: &Arc<Self>) -> OfxPropertySetHandle {
        Arc::as_ptr(self) as OfxPropertySetHandle
    }

    /// Registers an already shared set (idempotent).
    pub fn register(self: &Arc<Self>) -> OfxPropertySetHandle {
        ffi::register(Arc::as_ptr(self) as usize, Obj::Props(self.clone()));
        self.handle()
    }

    pub fn unregister(self: &Arc<Self>) {
        ffi::unregister(Arc::as_ptr(self) as usize);
    }

    /// Records the current values as the ones propReset goes back to.
    pub fn seal_defaults(&self) {
        let mut g = lk(&self.inner);
        g.defaults = g.map.clone();
    }

    // Host-side setters: no policy checks.

    pub fn set(&self, name: &CStr, v: PropValue) {
        let mut g = lk(&self.inner);
        let name = name.to_string_lossy().into_owned();
        if let Some(PropValue::Str(old)) = g.map.insert(name, v) {
            g.retired.extend(old);
        }
    }

    pub fn set_int(&self, name: &CStr, v: &[i32]) {
        self.set(name, PropValue::Int(v.to_vec()));
    }

    pub fn set_double(&self, name: &CStr, v: &[f64]) {
        self.set(name, PropValue::Double(v.to_vec()));
    }

    pub fn set_str(&self, name: &CStr, v: &[&str]) {
        self.set(name, PropValue::Str(v.iter().map(|s| cs(s)).collect()));
    }

    pub fn set_cstr(&self, name: &CStr, v: &[&CStr]) {
        self.set(
            name,
            PropValue::Str(v.iter().map(|s| (*s).to_owned()).collect()),
        );
    }

    pub fn set_ptr(&self, name: &CStr, v: &[usize]) {
        self.set(name, PropValue::Ptr(v.to_vec()));
    }

    pub fn set_named(&self, name: &str, v: PropValue) {
        let mut g = lk(&self.inner);
        if let Some(PropValue::Str(old)) = g.map.insert(name.to_string(), v) {
            g.retired.extend(old);
        }
    }

    // Host-side getters.

    pub fn get(&self, name: &str) -> Option<PropValue> {
        lk(&self.inner).map.get(name).cloned()
    }

    pub fn has(&self, name: &CStr) -> bool {
        lk(&self.inner)
            .map
            .contains_key(name.to_str().unwrap_or(""))
    }

    pub fn int(&self, name: &CStr, i: usize) -> Option<i32> {
        match self.get(name.to_str().ok()?) {
            Some(PropValue::Int(v)) => v.get(i).copied(),
            _ => None,
        }
    }

    pub fn double(&self, name: &CStr, i: usize) -> Option<f64> {
        self.double_named(name.to_str().ok()?, i)
    }

    pub fn double_named(&self, name: &str, i: usize) -> Option<f64> {
        match self.get(name) {
            Some(PropValue::Double(v)) => v.get(i).copied(),
            _ => None,
        }
    }

    pub fn doubles_named(&self, name: &str) -> Option<Vec<f64>> {
        match self.get(name) {
            Some(PropValue::Double(v)) => Some(v),
            _ => None,
        }
    }

    pub fn str(&self, name: &CStr, i: usize) -> Option<String> {
        self.str_named(name.to_str().ok()?, i)
    }

    pub fn str_named(&self, name: &str, i: usize) -> Option<String> {
        match self.get(name) {
            Some(PropValue::Str(v)) => v.get(i).map(|s| s.to_string_lossy().into_owned()),
            _ => None,
        }
    }

    pub fn strs(&self, name: &CStr) -> Vec<String> {
        match self.get(name.to_str().unwrap_or("")) {
            Some(PropValue::Str(v)) => v.iter().map(|s| s.to_string_lossy().into_owned()).collect(),
            _ => vec![],
        }
    }

    pub fn ptr(&self, name: &CStr, i: usize) -> Option<usize> {
        match self.get(name.to_str().ok()?) {
            Some(PropValue::Ptr(v)) => v.get(i).copied(),
            _ => None,
        }
    }

    pub fn names(&self) -> Vec<String> {
        lk(&self.inner).map.keys().cloned().collect()
    }

    fn violation(&self, msg: String) {
        ffi::violation(self.owner.as_ref(), format!("{} ({})", msg, self.what));
    }

    /// Checks a plugin write against the policy.
    fn may_write(&self, name: &str, exists: bool, func: &str) -> Result<(), OfxStatus> {
        let refuse = |status: OfxStatus, why: &str| {
            self.violation(format!("{func}({name:?}): {why}"));
            Err(status)
        };
        match &self.policy {
            Policy::Open => Ok(()),
            Policy::ReadOnly if exists => {
                refuse(kOfxStatErrValue, "property is read-only for plugins")
            }
            Policy::ReadOnly => refuse(kOfxStatErrUnknown, "no such property on a read-only set"),
            Policy::ExistingOnly if exists => Ok(()),
            Policy::ExistingOnly => refuse(
                kOfxStatErrUnknown,
                "no such property in this action's outArgs",
            ),
            Policy::ReadOnlyKeys(keys) if keys.iter().any(|k| k == name) => refuse(
                kOfxStatErrValue,
                "host-owned property is read-only for plugins",
            ),
            Policy::ReadOnlyKeys(_) => Ok(()),
        }
    }

    /// Plugin write of one element.
    fn plugin_set(&self, name: &str, index: c_int, v: PropValue, func: &str) -> OfxStatus {
        if index < 0 {
            self.violation(format!("{func}({name:?}): negative index {index}"));
            return kOfxStatErrBadIndex;
        }
        let index = index as usize;
        let mut g = lk(&self.inner);
        let exists = g.map.contains_key(name);
        if let Err(s) = self.may_write(name, exists, func) {
            return s;
        }
        let entry = g.map.entry(name.to_string()).or_insert_with(|| match &v {
            PropValue::Int(_) => PropValue::Int(vec![]),
            PropValue::Double(_) => PropValue::Double(vec![]),
            PropValue::Str(_) => PropValue::Str(vec![]),
            PropValue::Ptr(_) => PropValue::Ptr(vec![]),
        });
        let mut retired = Vec::new();
        let ok = match (entry, v) {
            (PropValue::Int(d), PropValue::Int(s)) => put(d, index, s[0], 0),
            (PropValue::Double(d), PropValue::Double(s)) => put(d, index, s[0], 0.0),
            (PropValue::Ptr(d), PropValue::Ptr(s)) => put(d, index, s[0], 0),
            (PropValue::Str(d), PropValue::Str(mut s)) => {
                if index < d.len() {
                    retired.push(std::mem::replace(&mut d[index], s.remove(0)));
                } else {
                    d.resize(index, CString::default());
                    d.push(s.remove(0));
                }
                true
            }
            (d, s) => {
                let (dt, st) = (d.type_name(), s.type_name());
                drop(g);
                self.violation(format!("{func}({name:?}): property is {dt}, set as {st}"));
                return kOfxStatErrValue;
            }
        };
        g.retired.extend(retired);
        if ok {
            kOfxStatOK
        } else {
            kOfxStatErrBadIndex
        }
    }

    /// Plugin write of all elements.
    fn plugin_set_n(&self, name: &str, v: PropValue, func: &str) -> OfxStatus {
        let mut g = lk(&self.inner);
        let exists = g.map.contains_key(name);
        if let Err(s) = self.may_write(name, exists, func) {
            return s;
        }
        if let Some(old) = g.map.get(name) {
            if old.type_name() != v.type_name() {
                let (dt, st) = (old.type_name(), v.type_name());
                drop(g);
                self.violation(format!("{func}({name:?}): property is {dt}, set as {st}"));
                return kOfxStatErrValue;
            }
        }
        if let Some(PropValue::Str(old)) = g.map.insert(name.to_string(), v) {
            g.retired.extend(old);
        }
        kOfxStatOK
    }

    /// Plugin read: the whole value, checked for existence and type.
    fn plugin_get(
        &self,
        name: &str,
        want: &'static str,
        func: &str,
    ) -> Result<PropValue, OfxStatus> {
        let g = lk(&self.inner);
        match g.map.get(name) {
            None => Err(kOfxStatErrUnknown),
            Some(v) if v.type_name() != want => {
                let have = v.type_name();
                drop(g);
                self.violation(format!(
                    "{func}({name:?}): property is {have}, read as {want}"
                ));
                Err(kOfxStatErrValue)
            }
            Some(v) => Ok(v.clone()),
        }
    }

    /// Pointer to a string element that stays valid until the set is dropped.
    fn plugin_get_str_ptr(
        &self,
        name: &str,
        index: usize,
        func: &str,
    ) -> Result<*const c_char, OfxStatus> {
        let g = lk(&self.inner);
        match g.map.get(name) {
            None => Err(kOfxStatErrUnknown),
            Some(PropValue::Str(v)) => v.get(index).map(|s| s.as_ptr()).ok_or(kOfxStatErrBadIndex),
            Some(v) => {
                let have = v.type_name();
                drop(g);
                self.violation(format!(
                    "{func}({name:?}): property is {have}, read as string"
                ));
                Err(kOfxStatErrValue)
            }
        }
    }
}

fn put<T: Copy>(d: &mut Vec<T>, index: usize, v: T, fill: T) -> bool {
    if index < d.len() {
        d[index] = v;
    } else {
        d.resize(index, fill);
        d.push(v);
    }
    true
}

/// Resolves (set, name) for a suite call; Err is the status to return.
unsafe fn args(
    h: OfxPropertySetHandle,
    name: *const c_char,
    func: &str,
) -> Result<(Arc<PropSet>, String), OfxStatus> {
    let set = props_of(h, func).ok_or(kOfxStatErrBadHandle)?;
    // SAFETY: the plugin passes a NUL-terminated property name.
    match unsafe { ffi::cstr_arg(name) } {
        Some(n) => Ok((set, n)),
        None => {
            set.violation(format!("{func}: NULL property name"));
            Err(kOfxStatErrUnknown)
        }
    }
}

macro_rules! try_st {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(s) => return s,
        }
    };
}

unsafe extern "C" fn prop_set_pointer(
    h: OfxPropertySetHandle,
    name: *const c_char,
    i: c_int,
    v: *mut c_void,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propSetPointer") });
    set.plugin_set(&n, i, PropValue::Ptr(vec![v as usize]), "propSetPointer")
}

unsafe extern "C" fn prop_set_string(
    h: OfxPropertySetHandle,
    name: *const c_char,
    i: c_int,
    v: *const c_char,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propSetString") });
    // SAFETY: the value is a NUL-terminated string.
    let Some(v) = (unsafe { ffi::cstr_arg(v) }) else {
        set.violation(format!("propSetString({n:?}): NULL value"));
        return kOfxStatErrValue;
    };
    set.plugin_set(&n, i, PropValue::Str(vec![cs(&v)]), "propSetString")
}

unsafe extern "C" fn prop_set_double(
    h: OfxPropertySetHandle,
    name: *const c_char,
    i: c_int,
    v: f64,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propSetDouble") });
    set.plugin_set(&n, i, PropValue::Double(vec![v]), "propSetDouble")
}

unsafe extern "C" fn prop_set_int(
    h: OfxPropertySetHandle,
    name: *const c_char,
    i: c_int,
    v: c_int,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propSetInt") });
    set.plugin_set(&n, i, PropValue::Int(vec![v]), "propSetInt")
}

/// Reads `count` elements from a plugin array.
unsafe fn read_n<T: Copy>(p: *const T, count: c_int) -> Option<Vec<T>> {
    if count < 0 || (count > 0 && p.is_null()) {
        return None;
    }
    // SAFETY: the plugin passes an array of `count` elements.
    Some(unsafe { std::slice::from_raw_parts(p, count as usize) }.to_vec())
}

unsafe extern "C" fn prop_set_pointer_n(
    h: OfxPropertySetHandle,
    name: *const c_char,
    count: c_int,
    v: *const *mut c_void,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propSetPointerN") });
    // SAFETY: array of `count` pointers.
    match unsafe { read_n(v, count) } {
        Some(v) => set.plugin_set_n(
            &n,
            PropValue::Ptr(v.into_iter().map(|p| p as usize).collect()),
            "propSetPointerN",
        ),
        None => kOfxStatErrBadIndex,
    }
}

unsafe extern "C" fn prop_set_string_n(
    h: OfxPropertySetHandle,
    name: *const c_char,
    count: c_int,
    v: *const *const c_char,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propSetStringN") });
    // SAFETY: array of `count` strings.
    let Some(ptrs) = (unsafe { read_n(v, count) }) else {
        return kOfxStatErrBadIndex;
    };
    let mut strs = Vec::new();
    for p in ptrs {
        // SAFETY: each element is a NUL-terminated string.
        match unsafe { ffi::cstr_arg(p) } {
            Some(s) => strs.push(cs(&s)),
            None => {
                set.violation(format!("propSetStringN({n:?}): NULL element"));
                return kOfxStatErrValue;
            }
        }
    }
    set.plugin_set_n(&n, PropValue::Str(strs), "propSetStringN")
}

unsafe extern "C" fn prop_set_double_n(
    h: OfxPropertySetHandle,
    name: *const c_char,
    count: c_int,
    v: *const f64,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propSetDoubleN") });
    // SAFETY: array of `count` doubles.
    match unsafe { read_n(v, count) } {
        Some(v) => set.plugin_set_n(&n, PropValue::Double(v), "propSetDoubleN"),
        None => kOfxStatErrBadIndex,
    }
}

unsafe extern "C" fn prop_set_int_n(
    h: OfxPropertySetHandle,
    name: *const c_char,
    count: c_int,
    v: *const c_int,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propSetIntN") });
    // SAFETY: array of `count` ints.
    match unsafe { read_n(v, count) } {
        Some(v) => set.plugin_set_n(&n, PropValue::Int(v), "propSetIntN"),
        None => kOfxStatErrBadIndex,
    }
}

fn index_ok(i: c_int, len: usize) -> Result<usize, OfxStatus> {
    if i < 0 || i as usize >= len {
        Err(kOfxStatErrBadIndex)
    } else {
        Ok(i as usize)
    }
}

/// The values of a typed property for a getter; `pick` takes the variant the getter reads
/// (another variant is the plugin asking for the wrong type). Err is the status to return.
unsafe fn typed<T>(
    h: OfxPropertySetHandle,
    name: *const c_char,
    func: &str,
    kind: &'static str,
    pick: fn(PropValue) -> Option<Vec<T>>,
) -> Result<Vec<T>, OfxStatus> {
    // SAFETY: name from the plugin.
    let (set, n) = unsafe { args(h, name, func) }?;
    pick(set.plugin_get(&n, kind, func)?).ok_or(kOfxStatErrValue)
}

/// Element `i` of a typed property into the plugin's `out` slot.
unsafe fn get_one<T: Copy>(
    h: OfxPropertySetHandle,
    name: *const c_char,
    i: c_int,
    out: *mut T,
    (func, kind): (&str, &'static str),
    pick: fn(PropValue) -> Option<Vec<T>>,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let v = try_st!(unsafe { typed(h, name, func, kind, pick) });
    let i = try_st!(index_ok(i, v.len()));
    if out.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out is a valid slot.
    unsafe { *out = v[i] };
    kOfxStatOK
}

fn ptrs(p: PropValue) -> Option<Vec<*mut c_void>> {
    match p {
        PropValue::Ptr(v) => Some(v.into_iter().map(|p| p as *mut c_void).collect()),
        _ => None,
    }
}

fn doubles(p: PropValue) -> Option<Vec<f64>> {
    match p {
        PropValue::Double(v) => Some(v),
        _ => None,
    }
}

fn ints(p: PropValue) -> Option<Vec<c_int>> {
    match p {
        PropValue::Int(v) => Some(v),
        _ => None,
    }
}

unsafe extern "C" fn prop_get_pointer(
    h: OfxPropertySetHandle,
    name: *const c_char,
    i: c_int,
    out: *mut *mut c_void,
) -> OfxStatus {
    // SAFETY: arguments from the plugin.
    unsafe { get_one(h, name, i, out, ("propGetPointer", "pointer"), ptrs) }
}

unsafe extern "C" fn prop_get_string(
    h: OfxPropertySetHandle,
    name: *const c_char,
    i: c_int,
    out: *mut *mut c_char,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propGetString") });
    if i < 0 {
        return kOfxStatErrBadIndex;
    }
    let p = try_st!(set.plugin_get_str_ptr(&n, i as usize, "propGetString"));
    if out.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out is a valid pointer slot; the string lives as long as the set.
    unsafe { *out = p as *mut c_char };
    kOfxStatOK
}

unsafe extern "C" fn prop_get_double(
    h: OfxPropertySetHandle,
    name: *const c_char,
    i: c_int,
    out: *mut f64,
) -> OfxStatus {
    // SAFETY: arguments from the plugin.
    unsafe { get_one(h, name, i, out, ("propGetDouble", "double"), doubles) }
}

unsafe extern "C" fn prop_get_int(
    h: OfxPropertySetHandle,
    name: *const c_char,
    i: c_int,
    out: *mut c_int,
) -> OfxStatus {
    // SAFETY: arguments from the plugin.
    unsafe { get_one(h, name, i, out, ("propGetInt", "int"), ints) }
}

/// Copies the first `count` elements into a plugin array.
unsafe fn write_n<T: Copy>(out: *mut T, count: c_int, v: &[T]) -> OfxStatus {
    if count < 0 || count as usize > v.len() {
        return kOfxStatErrBadIndex;
    }
    if count > 0 && out.is_null() {
        return kOfxStatErrValue;
    }
    for (k, x) in v.iter().take(count as usize).enumerate() {
        // SAFETY: the plugin passes an array of `count` slots.
        unsafe { *out.add(k) = *x };
    }
    kOfxStatOK
}

unsafe extern "C" fn prop_get_pointer_n(
    h: OfxPropertySetHandle,
    name: *const c_char,
    count: c_int,
    out: *mut *mut c_void,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let v = try_st!(unsafe { typed(h, name, "propGetPointerN", "pointer", ptrs) });
    // SAFETY: array of `count` slots.
    unsafe { write_n(out, count, &v) }
}

unsafe extern "C" fn prop_get_string_n(
    h: OfxPropertySetHandle,
    name: *const c_char,
    count: c_int,
    out: *mut *mut c_char,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propGetStringN") });
    let PropValue::Str(v) = try_st!(set.plugin_get(&n, "string", "propGetStringN")) else {
        return kOfxStatErrValue;
    };
    let mut ptrs = Vec::new();
    for k in 0..v.len() {
        ptrs.push(try_st!(set.plugin_get_str_ptr(&n, k, "propGetStringN")) as *mut c_char);
    }
    // SAFETY: array of `count` slots.
    unsafe { write_n(out, count, &ptrs) }
}

unsafe extern "C" fn prop_get_double_n(
    h: OfxPropertySetHandle,
    name: *const c_char,
    count: c_int,
    out: *mut f64,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let v = try_st!(unsafe { typed(h, name, "propGetDoubleN", "double", doubles) });
    // SAFETY: array of `count` slots.
    unsafe { write_n(out, count, &v) }
}

unsafe extern "C" fn prop_get_int_n(
    h: OfxPropertySetHandle,
    name: *const c_char,
    count: c_int,
    out: *mut c_int,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let v = try_st!(unsafe { typed(h, name, "propGetIntN", "int", ints) });
    // SAFETY: array of `count` slots.
    unsafe { write_n(out, count, &v) }
}

unsafe extern "C" fn prop_reset(h: OfxPropertySetHandle, name: *const c_char) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propReset") });
    let mut g = lk(&set.inner);
    let exists = g.map.contains_key(&n);
    if !exists {
        return kOfxStatErrUnknown;
    }
    if let Err(s) = set.may_write(&n, exists, "propReset") {
        return s;
    }
    let default = g.defaults.get(&n).cloned();
    let fresh = match (default, g.map.get(&n)) {
        (Some(d), _) => d,
        (None, Some(PropValue::Int(_))) => PropValue::Int(vec![]),
        (None, Some(PropValue::Double(_))) => PropValue::Double(vec![]),
        (None, Some(PropValue::Ptr(_))) => PropValue::Ptr(vec![]),
        (None, _) => PropValue::Str(vec![]),
    };
    if let Some(PropValue::Str(old)) = g.map.insert(n, fresh) {
        g.retired.extend(old);
    }
    kOfxStatOK
}

unsafe extern "C" fn prop_get_dimension(
    h: OfxPropertySetHandle,
    name: *const c_char,
    count: *mut c_int,
) -> OfxStatus {
    // SAFETY: name from the plugin.
    let (set, n) = try_st!(unsafe { args(h, name, "propGetDimension") });
    let len = match lk(&set.inner).map.get(&n) {
        Some(v) => v.len(),
        None => return kOfxStatErrUnknown,
    };
    if count.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: count is valid.
    unsafe { *count = len as c_int };
    kOfxStatOK
}

pub static PROPERTY_SUITE: OfxPropertySuiteV1 = OfxPropertySuiteV1 {
    propSetPointer: Some(prop_set_pointer),
    propSetString: Some(prop_set_string),
    propSetDouble: Some(prop_set_double),
    propSetInt: Some(prop_set_int),
    propSetPointerN: Some(prop_set_pointer_n),
    propSetStringN: Some(prop_set_string_n),
    propSetDoubleN: Some(prop_set_double_n),
    propSetIntN: Some(prop_set_int_n),
    propGetPointer: Some(prop_get_pointer),
    propGetString: Some(prop_get_string),
    propGetDouble: Some(prop_get_double),
    propGetInt: Some(prop_get_int),
    propGetPointerN: Some(prop_get_pointer_n),
    propGetStringN: Some(prop_get_string_n),
    propGetDoubleN: Some(prop_get_double_n),
    propGetIntN: Some(prop_get_int_n),
    propReset: Some(prop_reset),
    propGetDimension: Some(prop_get_dimension),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::config::HostConfig;
    use openfx::sys::image_effect_v1::image_effect::kOfxImagePropRowBytes;

    #[test]
    fn gets_are_strict_and_policies_are_enforced() {
        let host = HostState::new(HostConfig::natron());
        let (p, h) = PropSet::new("test image", Some(host.clone()), Policy::ReadOnly).into_handle();
        p.set_int(kOfxImagePropRowBytes, &[-384]);
        let (mut i, mut d) = (0, 0.0);
        // SAFETY: the host's own suite with valid arguments.
        unsafe {
            assert_eq!(
                prop_get_int(h, kOfxImagePropRowBytes.as_ptr(), 0, &mut i),
                kOfxStatOK
            );
            assert_eq!(i, -384);
            assert_eq!(
                prop_get_int(h, kOfxImagePropRowBytes.as_ptr(), 1, &mut i),
                kOfxStatErrBadIndex
            );
            assert_eq!(
                prop_get_int(h, c"NoSuchProperty".as_ptr(), 0, &mut i),
                kOfxStatErrUnknown
            );
            assert_eq!(
                prop_get_double(h, kOfxImagePropRowBytes.as_ptr(), 0, &mut d),
                kOfxStatErrValue
            );
            assert_eq!(
                prop_set_int(h, kOfxImagePropRowBytes.as_ptr(), 0, 1),
                kOfxStatErrValue
            );
        }
        let v = host.violations();
        assert_eq!(
            v.len(),
            2,
            "type mismatch and read-only write are violations: {v:?}"
        );
        assert!(v[1].contains("read-only"), "{v:?}");
        let (q, hq) =
            PropSet::new("outArgs", Some(host.clone()), Policy::ExistingOnly).into_handle();
        q.set_double(kOfxPropTime, &[1.0]);
        // SAFETY: as above.
        unsafe {
            assert_eq!(
                prop_set_double(hq, kOfxPropTime.as_ptr(), 0, 2.0),
                kOfxStatOK
            );
            assert_eq!(
                prop_set_double(hq, c"Invented".as_ptr(), 0, 2.0),
                kOfxStatErrUnknown
            );
            let mut n = 0;
            assert_eq!(
                prop_get_dimension(hq, kOfxPropTime.as_ptr(), &mut n),
                kOfxStatOK
            );
            assert_eq!(n, 1);
        }
        assert_eq!(q.double(kOfxPropTime, 0), Some(2.0));
        p.unregister();
        q.unregister();
    }
}

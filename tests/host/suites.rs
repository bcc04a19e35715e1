//! The smaller suites and fetchSuite: memory (tracked), multithread (real std threads, recursive
//! mutexes), message v1/v2 (recorded, persistent messages kept per effect), progress v1/v2
//! (recorded; the host can answer "abort"), time line.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::thread::ThreadId;

use openfx::sys::generic::core::*;
use openfx::sys::generic::property::kOfxPropertySuite;
use openfx::sys::image_effect_v1::image_effect::kOfxImageEffectSuite;
use openfx::sys::image_effect_v1::memory::*;
use openfx::sys::image_effect_v1::message::*;
use openfx::sys::image_effect_v1::multi_thread::*;
use openfx::sys::image_effect_v1::param::kOfxParameterSuite;
use openfx::sys::image_effect_v1::progress::*;
use openfx::sys::image_effect_v1::time_line::*;

use super::effect::{Effect, IMAGE_EFFECT_SUITE};
use super::ffi::{self, lk, Obj};
use super::params::PARAMETER_SUITE;
use super::props::PROPERTY_SUITE;
use super::state::{HostState, Message, MessageKind, ProgressEvent};
use super::varargs;

/// The host an effect-less callback belongs to.
fn ctx_host() -> Option<Arc<HostState>> {
    ffi::current().map(|c| c.host)
}

/// Host of an effect handle, else of the thread's context.
fn host_of_handle(h: *const c_void) -> (Option<Arc<HostState>>, u64) {
    if !h.is_null() {
        if let Some(Obj::Effect(e)) = ffi::lookup(h as usize) {
            return (Some(e.host.clone()), e.serial);
        }
    }
    (ctx_host(), 0)
}

// ---------------------------------------------------------------------------------------------
// fetchSuite

pub unsafe extern "C" fn fetch_suite(
    _host: OfxPropertySetHandle,
    name: *const c_char,
    version: c_int,
) -> *const c_void {
    varargs::init();
    // SAFETY: plugin string.
    let Some(n) = (unsafe { ffi::cstr_arg(name) }) else {
        return std::ptr::null();
    };
    let host = ctx_host();
    if let Some(h) = &host {
        if h.cfg
            .missing_suites
            .iter()
            .any(|(s, v)| *s == n && *v == version)
        {
            lk(&h.suites_requested).push((n, version, false));
            return std::ptr::null();
        }
    }
    let is = |c: &CStr| c.to_str().unwrap_or("") == n;
    let p: *const c_void = match version {
        1 if is(kOfxPropertySuite) => &PROPERTY_SUITE as *const _ as *const c_void,
        1 if is(kOfxParameterSuite) => &PARAMETER_SUITE as *const _ as *const c_void,
        1 if is(kOfxImageEffectSuite) => &IMAGE_EFFECT_SUITE as *const _ as *const c_void,
        1 if is(kOfxMemorySuite) => &MEMORY_SUITE as *const _ as *const c_void,
        1 if is(kOfxMultiThreadSuite) => &MULTI_THREAD_SUITE as *const _ as *const c_void,
        1 if is(kOfxMessageSuite) => &MESSAGE_SUITE_V1 as *const _ as *const c_void,
        2 if is(kOfxMessageSuite) => &MESSAGE_SUITE_V2 as *const _ as *const c_void,
        1 if is(kOfxProgressSuite) => &PROGRESS_SUITE_V1 as *const _ as *const c_void,
        2 if is(kOfxProgressSuite) => &PROGRESS_SUITE_V2 as *const _ as *const c_void,
        1 if is(kOfxTimeLineSuite) => &TIME_LINE_SUITE as *const _ as *const c_void,
        _ => std::ptr::null(),
    };
    if let Some(h) = &host {
        lk(&h.suites_requested).push((n, version, !p.is_null()));
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Memory

struct Block {
    layout: Layout,
    owner: Option<Arc<HostState>>,
}

static BLOCKS: LazyLock<Mutex<HashMap<usize, Block>>> = LazyLock::new(Default::default);

unsafe extern "C" fn memory_alloc(h: *mut c_void, n: usize, out: *mut *mut c_void) -> OfxStatus {
    if out.is_null() {
        return kOfxStatErrValue;
    }
    let (owner, _) = host_of_handle(h);
    let Ok(layout) = Layout::from_size_align(n.max(1), 16) else {
        return kOfxStatErrMemory;
    };
    // SAFETY: non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    if p.is_null() {
        return kOfxStatErrMemory;
    }
    if let Some(o) = &owner {
        o.mem_allocs.fetch_add(1, Ordering::SeqCst);
    }
    lk(&BLOCKS).insert(p as usize, Block { layout, owner });
    // SAFETY: out-pointer.
    unsafe { *out = p as *mut c_void };
    kOfxStatOK
}

unsafe extern "C" fn memory_free(p: *mut c_void) -> OfxStatus {
    let Some(b) = lk(&BLOCKS).remove(&(p as usize)) else {
        ffi::violation(
            None,
            format!("memoryFree({p:p}): not allocated by memoryAlloc (or freed twice)"),
        );
        return kOfxStatErrBadHandle;
    };
    if let Some(o) = &b.owner {
        o.mem_frees.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: allocated by memory_alloc with this layout.
    unsafe { dealloc(p as *mut u8, b.layout) };
    kOfxStatOK
}

pub static MEMORY_SUITE: OfxMemorySuiteV1 = OfxMemorySuiteV1 {
    memoryAlloc: Some(memory_alloc),
    memoryFree: Some(memory_free),
};

// ---------------------------------------------------------------------------------------------
// Multithread

thread_local! {
    /// Index of this thread inside multiThread, if it is one of its threads.
    static SPAWNED: Cell<Option<u32>> = const { Cell::new(None) };
}

struct SendPtr(*mut c_void);
// SAFETY: the plugin hands customArg to its own thread function; sharing it is the plugin's
// contract with multiThread.
unsafe impl Send for SendPtr {}
// SAFETY: see above.
unsafe impl Sync for SendPtr {}

unsafe extern "C" fn multi_thread(
    f: OfxThreadFunctionV1,
    n: c_uint,
    arg: *mut c_void,
) -> OfxStatus {
    let Some(f) = f else { return kOfxStatFailed };
    if SPAWNED.with(|s| s.get()).is_some() {
        // The spec forbids calling multiThread from a multiThread thread.
        ffi::violation(
            None,
            "multiThread called from a thread spawned by multiThread".into(),
        );
        return kOfxStatErrExists;
    }
    let cpus = ctx_host().map(|h| h.cfg.num_cpus).unwrap_or(2).max(1);
    let n = if n == 0 { cpus } else { n.min(64) };
    let ctx = ffi::current();
    let arg = SendPtr(arg);
    std::thread::scope(|s| {
        for i in 0..n {
            let ctx = ctx.clone();
            let arg = &arg;
            s.spawn(move || {
                SPAWNED.with(|s| s.set(Some(i)));
                let run = || {
                    // SAFETY: the plugin's thread function with its own argument.
                    unsafe { f(i, n, arg.0) }
                };
                match ctx {
                    Some(c) => ffi::with_ctx(c, run),
                    None => run(),
                }
            });
        }
    });
    kOfxStatOK
}

unsafe extern "C" fn multi_thread_num_cpus(out: *mut c_uint) -> OfxStatus {
    if out.is_null() {
        return kOfxStatErrValue;
    }
    let n = ctx_host().map(|h| h.cfg.num_cpus).unwrap_or(2).max(1);
    // SAFETY: out-pointer.
    unsafe { *out = n };
    kOfxStatOK
}

unsafe extern "C" fn multi_thread_index(out: *mut c_uint) -> OfxStatus {
    if out.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *out = SPAWNED.with(|s| s.get()).unwrap_or(0) };
    kOfxStatOK
}

unsafe extern "C" fn multi_thread_is_spawned() -> c_int {
    SPAWNED.with(|s| s.get()).is_some() as c_int
}

/// A recursive mutex usable across separate lock/unlock calls.
pub struct HostMutex {
    state: Mutex<(Option<ThreadId>, u32)>,
    cv: Condvar,
    owner: Option<Arc<HostState>>,
}

impl HostMutex {
    fn lock(&self) {
        let me = std::thread::current().id();
        let mut g = lk(&self.state);
        loop {
            match g.0 {
                None => {
                    *g = (Some(me), 1);
                    return;
                }
                Some(t) if t == me => {
                    g.1 += 1;
                    return;
                }
                Some(_) => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    fn try_lock(&self) -> bool {
        let me = std::thread::current().id();
        let mut g = lk(&self.state);
        match g.0 {
            None => {
                *g = (Some(me), 1);
                true
            }
            Some(t) if t == me => {
                g.1 += 1;
                true
            }
            Some(_) => false,
        }
    }

    fn unlock(&self) -> bool {
        let me = std::thread::current().id();
        let mut g = lk(&self.state);
        if g.0 != Some(me) {
            return false;
        }
        g.1 -= 1;
        if g.1 == 0 {
            *g = (None, 0);
            self.cv.notify_one();
        }
        true
    }
}

fn mutex_of(h: OfxMutexHandle, func: &str) -> Option<Arc<HostMutex>> {
    ffi::lookup_as(h as usize, func, |o| match o {
        Obj::Mutex(m) => Some(m),
        _ => None,
    })
}

unsafe extern "C" fn mutex_create(out: *mut OfxMutexHandle, lock_count: c_int) -> OfxStatus {
    if out.is_null() {
        return kOfxStatErrValue;
    }
    let owner = ctx_host();
    if let Some(o) = &owner {
        o.mutexes_created.fetch_add(1, Ordering::SeqCst);
    }
    let m = Arc::new(HostMutex {
        state: Mutex::new((None, 0)),
        cv: Condvar::new(),
        owner,
    });
    for _ in 0..lock_count.max(0) {
        m.lock();
    }
    let addr = Arc::as_ptr(&m) as usize;
    ffi::register(addr, Obj::Mutex(m));
    // SAFETY: out-pointer.
    unsafe { *out = addr as OfxMutexHandle };
    kOfxStatOK
}

unsafe extern "C" fn mutex_destroy(h: OfxMutexHandle) -> OfxStatus {
    let Some(m) = mutex_of(h, "mutexDestroy") else {
        return kOfxStatErrBadHandle;
    };
    if lk(&m.state).0.is_some() {
        ffi::violation(m.owner.as_ref(), "mutexDestroy on a locked mutex".into());
    }
    if let Some(o) = &m.owner {
        o.mutexes_destroyed.fetch_add(1, Ordering::SeqCst);
    }
    ffi::unregister(h as usize);
    kOfxStatOK
}

unsafe extern "C" fn mutex_lock(h: OfxMutexHandle) -> OfxStatus {
    let Some(m) = mutex_of(h, "mutexLock") else {
        return kOfxStatErrBadHandle;
    };
    m.lock();
    kOfxStatOK
}

unsafe extern "C" fn mutex_unlock(h: OfxMutexHandle) -> OfxStatus {
    let Some(m) = mutex_of(h, "mutexUnLock") else {
        return kOfxStatErrBadHandle;
    };
    if m.unlock() {
        kOfxStatOK
    } else {
        ffi::violation(
            m.owner.as_ref(),
            "mutexUnLock by a thread that does not hold the mutex".into(),
        );
        kOfxStatErrBadHandle
    }
}

unsafe extern "C" fn mutex_try_lock(h: OfxMutexHandle) -> OfxStatus {
    let Some(m) = mutex_of(h, "mutexTryLock") else {
        return kOfxStatErrBadHandle;
    };
    if m.try_lock() {
        kOfxStatOK
    } else {
        kOfxStatFailed
    }
}

pub static MULTI_THREAD_SUITE: OfxMultiThreadSuiteV1 = OfxMultiThreadSuiteV1 {
    multiThread: Some(multi_thread),
    multiThreadNumCPUs: Some(multi_thread_num_cpus),
    multiThreadIndex: Some(multi_thread_index),
    multiThreadIsSpawnedThread: Some(multi_thread_is_spawned),
    mutexCreate: Some(mutex_create),
    mutexDestroy: Some(mutex_destroy),
    mutexLock: Some(mutex_lock),
    mutexUnLock: Some(mutex_unlock),
    mutexTryLock: Some(mutex_try_lock),
};

// ---------------------------------------------------------------------------------------------
// Message

#[derive(Clone, Copy)]
pub enum MsgCall {
    Message,
    Persistent,
}

/// message() and setPersistentMessage() behind the variadic shims, which formatted the text.
pub(super) fn message(
    call: MsgCall,
    h: *mut c_void,
    ty: *const c_char,
    id: *const c_char,
    has_format: bool,
    text: String,
) -> OfxStatus {
    let (host, serial) = host_of_handle(h);
    // SAFETY: plugin strings (type and id are named arguments).
    let (ty, id) = unsafe { (ffi::cstr_arg(ty), ffi::cstr_arg(id)) };
    let ty = ty.unwrap_or_default();
    let missing = !has_format;
    let action = ffi::current().map(|c| c.action).unwrap_or_default();
    let kind = match call {
        MsgCall::Message => MessageKind::Message,
        MsgCall::Persistent => MessageKind::Persistent,
    };
    let valid_types = [
        kOfxMessageFatal,
        kOfxMessageError,
        kOfxMessageWarning,
        kOfxMessageMessage,
        kOfxMessageLog,
        kOfxMessageQuestion,
    ];
    let msg = Message {
        kind,
        effect: serial,
        mtype: ty.clone(),
        id: id.unwrap_or_default(),
        text,
        action,
    };
    match &host {
        Some(host) => {
            if missing {
                ffi::violation(
                    Some(host),
                    format!("message without a format string: {:?}", msg.text),
                );
            }
            if !valid_types.iter().any(|t| t.to_str().unwrap_or("") == ty) {
                ffi::violation(
                    Some(host),
                    format!("message type {ty:?} is not an OfxMessage* type"),
                );
            }
            if matches!(call, MsgCall::Persistent) && ty == "OfxMessageQuestion" {
                ffi::violation(
                    Some(host),
                    "setPersistentMessage with kOfxMessageQuestion".into(),
                );
            }
            if h.is_null() && matches!(call, MsgCall::Persistent) {
                ffi::violation(
                    Some(host),
                    "setPersistentMessage with a NULL effect handle".into(),
                );
            }
            lk(&host.messages).push(msg);
        }
        None => {
            lk(&ffi::ORPHAN_VIOLATIONS).push(format!("message outside any host context: {msg:?}"))
        }
    }
    if ty == "OfxMessageQuestion" {
        kOfxStatReplyYes
    } else {
        kOfxStatOK
    }
}

unsafe extern "C" fn clear_persistent_message(h: *mut c_void) -> OfxStatus {
    let (host, serial) = host_of_handle(h);
    let Some(host) = host else {
        return kOfxStatErrBadHandle;
    };
    let action = ffi::current().map(|c| c.action).unwrap_or_default();
    lk(&host.messages).push(Message {
        kind: MessageKind::Clear,
        effect: serial,
        mtype: String::new(),
        id: String::new(),
        text: String::new(),
        action,
    });
    kOfxStatOK
}

pub static MESSAGE_SUITE_V1: OfxMessageSuiteV1 = OfxMessageSuiteV1 {
    message: Some(varargs::MESSAGE),
};

pub static MESSAGE_SUITE_V2: OfxMessageSuiteV2 = OfxMessageSuiteV2 {
    message: Some(varargs::MESSAGE),
    setPersistentMessage: Some(varargs::SET_PERSISTENT_MESSAGE),
    clearPersistentMessage: Some(clear_persistent_message),
};

// ---------------------------------------------------------------------------------------------
// Progress

fn progress_host(h: *mut c_void, func: &str) -> Option<Arc<HostState>> {
    ffi::effect_of(h as *const c_void, func).map(|e| e.host.clone())
}

unsafe extern "C" fn progress_start_v1(h: *mut c_void, label: *const c_char) -> OfxStatus {
    let Some(host) = progress_host(h, "progressStart") else {
        return kOfxStatErrBadHandle;
    };
    // SAFETY: plugin string.
    let label = unsafe { ffi::cstr_arg(label) }.unwrap_or_default();
    lk(&host.progress).push(ProgressEvent::Start(label));
    kOfxStatOK
}

unsafe extern "C" fn progress_start_v2(
    h: *mut c_void,
    msg: *const c_char,
    _id: *const c_char,
) -> OfxStatus {
    // SAFETY: forwarded plugin string.
    unsafe { progress_start_v1(h, msg) }
}

unsafe extern "C" fn progress_update(h: *mut c_void, v: f64) -> OfxStatus {
    let Some(host) = progress_host(h, "progressUpdate") else {
        return kOfxStatErrBadHandle;
    };
    if !(0.0..=1.0).contains(&v) {
        ffi::violation(Some(&host), format!("progressUpdate({v}) outside [0,1]"));
    }
    lk(&host.progress).push(ProgressEvent::Update(v));
    host.progress_updates.fetch_add(1, Ordering::SeqCst);
    if host.aborting() {
        kOfxStatReplyNo
    } else {
        kOfxStatOK
    }
}

unsafe extern "C" fn progress_end(h: *mut c_void) -> OfxStatus {
    let Some(host) = progress_host(h, "progressEnd") else {
        return kOfxStatErrBadHandle;
    };
    lk(&host.progress).push(ProgressEvent::End);
    kOfxStatOK
}

pub static PROGRESS_SUITE_V1: OfxProgressSuiteV1 = OfxProgressSuiteV1 {
    progressStart: Some(progress_start_v1),
    progressUpdate: Some(progress_update),
    progressEnd: Some(progress_end),
};

pub static PROGRESS_SUITE_V2: OfxProgressSuiteV2 = OfxProgressSuiteV2 {
    progressStart: Some(progress_start_v2),
    progressUpdate: Some(progress_update),
    progressEnd: Some(progress_end),
};

// ---------------------------------------------------------------------------------------------
// Time line

fn timeline_effect(h: *mut c_void, func: &str) -> Option<Arc<Effect>> {
    ffi::effect_of(h as *const c_void, func)
}

unsafe extern "C" fn get_time(h: *mut c_void, out: *mut f64) -> OfxStatus {
    let Some(e) = timeline_effect(h, "getTime") else {
        return kOfxStatErrBadHandle;
    };
    if out.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointer.
    unsafe { *out = *lk(&e.clock.time) };
    kOfxStatOK
}

unsafe extern "C" fn goto_time(h: *mut c_void, t: f64) -> OfxStatus {
    let Some(e) = timeline_effect(h, "gotoTime") else {
        return kOfxStatErrBadHandle;
    };
    e.host.note(format!("plugin moved the time line to {t}"));
    *lk(&e.clock.time) = t;
    kOfxStatOK
}

unsafe extern "C" fn get_time_bounds(h: *mut c_void, first: *mut f64, last: *mut f64) -> OfxStatus {
    let Some(e) = timeline_effect(h, "getTimeBounds") else {
        return kOfxStatErrBadHandle;
    };
    let Some(f) = lk(&e.rt.footage).clone() else {
        return kOfxStatFailed;
    };
    if first.is_null() || last.is_null() {
        return kOfxStatErrValue;
    }
    // SAFETY: out-pointers.
    unsafe {
        *first = f.first as f64;
        *last = f.last as f64;
    }
    kOfxStatOK
}

pub static TIME_LINE_SUITE: OfxTimeLineSuiteV1 = OfxTimeLineSuiteV1 {
    getTime: Some(get_time),
    gotoTime: Some(goto_time),
    getTimeBounds: Some(get_time_bounds),
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    static RAN: AtomicU32 = AtomicU32::new(0);

    unsafe extern "C" fn work(i: c_uint, n: c_uint, arg: *mut c_void) {
        assert_eq!(n, 3);
        let mut idx = 99;
        // SAFETY: suite calls with valid out-pointers.
        unsafe {
            assert_eq!(multi_thread_is_spawned(), 1);
            multi_thread_index(&mut idx);
            // Nested multiThread is refused.
            assert_eq!(multi_thread(Some(work), 2, arg), kOfxStatErrExists);
        }
        assert_eq!(idx, i);
        RAN.fetch_or(1 << i, Ordering::SeqCst);
    }

    #[test]
    fn multithread_runs_every_index_on_spawned_threads() {
        // A context of its own, so the nested call's violation is recorded on this test's host.
        let host = HostState::new(crate::host::config::HostConfig::natron());
        let ctx = ffi::Ctx {
            host: host.clone(),
            call: ffi::next_call(),
            action: "test".into(),
            effect: None,
            render: None,
        };
        ffi::with_ctx(ctx, || {
            // SAFETY: calling the host's own suite functions.
            unsafe {
                assert_eq!(
                    multi_thread(Some(work), 3, std::ptr::null_mut()),
                    kOfxStatOK
                );
                assert_eq!(multi_thread_is_spawned(), 0);
            }
        });
        assert_eq!(RAN.load(Ordering::SeqCst), 0b111);
        assert_eq!(
            host.violations().len(),
            3,
            "each nested multiThread call is a violation"
        );
    }

    #[test]
    fn mutexes_are_recursive_and_owned() {
        let mut m: OfxMutexHandle = std::ptr::null_mut();
        // SAFETY: calling the host's own suite functions with a handle it made.
        unsafe {
            assert_eq!(mutex_create(&mut m, 1), kOfxStatOK);
            assert_eq!(mutex_lock(m), kOfxStatOK, "recursive lock");
            let addr = m as usize;
            let other = std::thread::spawn(move || mutex_try_lock(addr as OfxMutexHandle))
                .join()
                .unwrap();
            assert_eq!(
                other, kOfxStatFailed,
                "another thread must not get a held mutex"
            );
            assert_eq!(mutex_unlock(m), kOfxStatOK);
            assert_eq!(mutex_unlock(m), kOfxStatOK);
            let other = std::thread::spawn(move || {
                let h = addr as OfxMutexHandle;
                let st = mutex_try_lock(h);
                mutex_unlock(h);
                st
            })
            .join()
            .unwrap();
            assert_eq!(other, kOfxStatOK, "free after as many unlocks as locks");
            assert_eq!(mutex_destroy(m), kOfxStatOK);
        }
    }

    #[test]
    fn memory_blocks_are_tracked() {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: calling the host's own suite functions.
        unsafe {
            assert_eq!(memory_alloc(std::ptr::null_mut(), 100, &mut p), kOfxStatOK);
            assert!(!p.is_null() && (p as usize).is_multiple_of(16));
            std::ptr::write_bytes(p as *mut u8, 7, 100);
            assert_eq!(memory_free(p), kOfxStatOK);
        }
    }
}

//! Per-host records for assertions: actions sent, images fetched and released (and by whom),
//! messages (v1, v2 persistent), progress, memory, and every contract violation the host caught.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openfx::sys::generic::core::OfxStatus;

use super::config::HostConfig;
use super::ffi::{lk, status_name};

/// One action sent to the plugin.
#[derive(Clone, Debug)]
pub struct ActionRecord {
    pub action: String,
    /// Serial number of the effect (descriptor or instance) it was sent to; 0 for none.
    pub effect: u64,
    pub status: OfxStatus,
    pub elapsed: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// OfxMessageSuiteV1/V2 message().
    Message,
    /// OfxMessageSuiteV2 setPersistentMessage().
    Persistent,
    /// OfxMessageSuiteV2 clearPersistentMessage() (type, id and text empty).
    Clear,
}

#[derive(Clone, Debug)]
pub struct Message {
    pub kind: MessageKind,
    /// Effect serial the message was attached to (0: NULL or unknown handle).
    pub effect: u64,
    pub mtype: String,
    pub id: String,
    pub text: String,
    pub action: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    Start(String),
    Update(f64),
    End,
}

/// An image handed to the plugin and not yet released.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    pub clip: String,
    pub time: f64,
    pub action: String,
    pub effect: u64,
    /// Times this handle was handed out and not released (MLT hands out the same handle).
    pub count: usize,
    /// Action calls (see `ffi::current_call`) the outstanding fetches were made in.
    pub call: Vec<u64>,
}

pub struct HostState {
    pub cfg: HostConfig,
    pub actions: Mutex<Vec<ActionRecord>>,
    pub messages: Mutex<Vec<Message>>,
    pub progress: Mutex<Vec<ProgressEvent>>,
    pub violations: Mutex<Vec<String>>,
    pub notes: Mutex<Vec<String>>,
    pub fetched: AtomicUsize,
    pub released: AtomicUsize,
    pub outstanding: Mutex<HashMap<usize, ImageRecord>>,
    pub progress_updates: AtomicUsize,
    pub abort_now: AtomicBool,
    /// Abort once this many progress updates arrived (starts as the config's value).
    pub abort_after: Mutex<Option<usize>>,
    pub mem_allocs: AtomicUsize,
    pub mem_frees: AtomicUsize,
    pub image_mem_allocs: AtomicUsize,
    pub image_mem_frees: AtomicUsize,
    pub mutexes_created: AtomicUsize,
    pub mutexes_destroyed: AtomicUsize,
    /// Parameter values the plugin set (name), for hosts that answer with InstanceChanged.
    pub plugin_edits: Mutex<Vec<(u64, String)>>,
    pub suites_requested: Mutex<Vec<(String, i32, bool)>>,
}

impl HostState {
    pub fn new(cfg: HostConfig) -> Arc<HostState> {
        Arc::new(HostState {
            abort_after: Mutex::new(cfg.abort_after_progress),
            cfg,
            actions: Default::default(),
            messages: Default::default(),
            progress: Default::default(),
            violations: Default::default(),
            notes: Default::default(),
            fetched: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            outstanding: Default::default(),
            progress_updates: AtomicUsize::new(0),
            abort_now: AtomicBool::new(false),
            mem_allocs: AtomicUsize::new(0),
            mem_frees: AtomicUsize::new(0),
            image_mem_allocs: AtomicUsize::new(0),
            image_mem_frees: AtomicUsize::new(0),
            mutexes_created: AtomicUsize::new(0),
            mutexes_destroyed: AtomicUsize::new(0),
            plugin_edits: Default::default(),
            suites_requested: Default::default(),
        })
    }

    pub fn violation(&self, msg: String) {
        lk(&self.violations).push(msg);
    }

    pub fn note(&self, msg: String) {
        lk(&self.notes).push(msg);
    }

    pub fn violations(&self) -> Vec<String> {
        lk(&self.violations).clone()
    }

    pub fn messages(&self) -> Vec<Message> {
        lk(&self.messages).clone()
    }

    pub fn actions(&self) -> Vec<ActionRecord> {
        lk(&self.actions).clone()
    }

    pub fn action_names(&self) -> Vec<String> {
        lk(&self.actions).iter().map(|a| a.action.clone()).collect()
    }

    pub fn count_action(&self, name: &str) -> usize {
        lk(&self.actions)
            .iter()
            .filter(|a| a.action == name)
            .count()
    }

    pub fn progress_events(&self) -> Vec<ProgressEvent> {
        lk(&self.progress).clone()
    }

    pub fn images_fetched(&self) -> usize {
        self.fetched.load(Ordering::SeqCst)
    }

    pub fn images_released(&self) -> usize {
        self.released.load(Ordering::SeqCst)
    }

    /// Whether the host currently asks the plugin to abort.
    pub fn aborting(&self) -> bool {
        if self.cfg.progress_noop {
            return false;
        }
        if self.abort_now.load(Ordering::SeqCst) {
            return true;
        }
        match *lk(&self.abort_after) {
            Some(n) => self.progress_updates.load(Ordering::SeqCst) >= n,
            None => false,
        }
    }

    /// Asks for an abort after `n` more progress updates (None: never).
    pub fn set_abort_after(&self, n: Option<usize>) {
        self.reset_abort();
        *lk(&self.abort_after) = n;
    }

    /// Stops asking for an abort and forgets the progress count (a new render starts).
    pub fn reset_abort(&self) {
        self.abort_now.store(false, Ordering::SeqCst);
        self.progress_updates.store(0, Ordering::SeqCst);
    }

    /// Everything recorded, for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "host {:?} ({:?})", self.cfg.label, self.cfg.flavour);
        let _ = writeln!(
            s,
            "images fetched {} released {}; memory allocs {} frees {}; image memory allocs {} frees {}; mutexes created {} destroyed {}",
            self.images_fetched(),
            self.images_released(),
            self.mem_allocs.load(Ordering::SeqCst),
            self.mem_frees.load(Ordering::SeqCst),
            self.image_mem_allocs.load(Ordering::SeqCst),
            self.image_mem_frees.load(Ordering::SeqCst),
            self.mutexes_created.load(Ordering::SeqCst),
            self.mutexes_destroyed.load(Ordering::SeqCst),
        );
        let out = lk(&self.outstanding);
        if !out.is_empty() {
            let _ = writeln!(s, "images NOT released:");
            for r in out.values() {
                let _ = writeln!(
                    s,
                    "  clip {} at t={} fetched during {} on effect #{} (x{})",
                    r.clip, r.time, r.action, r.effect, r.count
                );
            }
        }
        drop(out);
        let v = lk(&self.violations);
        if !v.is_empty() {
            let _ = writeln!(s, "contract violations ({}):", v.len());
            for m in v.iter().take(40) {
                let _ = writeln!(s, "  {m}");
            }
        }
        drop(v);
        let msgs = lk(&self.messages);
        if !msgs.is_empty() {
            let _ = writeln!(s, "messages:");
            for m in msgs.iter().take(40) {
                let _ = writeln!(
                    s,
                    "  {:?} {} id={:?} on #{} during {}: {}",
                    m.kind, m.mtype, m.id, m.effect, m.action, m.text
                );
            }
        }
        drop(msgs);
        let notes = lk(&self.notes);
        if !notes.is_empty() {
            let _ = writeln!(s, "notes:");
            for m in notes.iter().take(20) {
                let _ = writeln!(s, "  {m}");
            }
        }
        drop(notes);
        let acts = lk(&self.actions);
        let _ = writeln!(s, "last actions ({} in all):", acts.len());
        for a in acts
            .iter()
            .rev()
            .take(25)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let _ = writeln!(
                s,
                "  {} on #{} -> {} ({:.1} ms)",
                a.action,
                a.effect,
                status_name(a.status),
                a.elapsed.as_secs_f64() * 1e3
            );
        }
        s
    }

    /// Panics with the full record unless every fetched image was released and the plugin kept
    /// the contract (no violations).
    pub fn assert_clean(&self) {
        let fetched = self.images_fetched();
        let released = self.images_released();
        let outstanding = lk(&self.outstanding).len();
        let violations = lk(&self.violations).len();
        let orphans = lk(&super::ffi::ORPHAN_VIOLATIONS).clone();
        assert!(
            orphans.is_empty(),
            "contract violations outside any host action: {orphans:#?}"
        );
        if fetched != released || outstanding != 0 || violations != 0 {
            panic!(
                "host {} not clean: fetched {fetched} images, released {released}, {outstanding} handles outstanding, {violations} violations\n{}",
                self.cfg.label,
                self.dump()
            );
        }
    }
}

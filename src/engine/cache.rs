//! The process-wide chunk cache: computed (chunk, tile) results keyed by their content, bounded
//! in bytes with least-recently-used eviction. Concurrent requests for one key compute it once:
//! the first caller runs the computation, the others wait on the same slot.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use once_cell::sync::{Lazy, OnceCell};
use parking_lot::Mutex;

use crate::geometry::Rect;
use crate::Result;

/// Content hash of everything a chunk result depends on.
pub type ChunkKey = [u8; 32];

/// Denoised pixels of one tile for every frame of one chunk.
#[derive(Debug)]
pub struct ChunkData {
    /// First frame held; frame `first + k` is `planes[k]`.
    pub first: i64,
    pub rect: Rect,
    /// Planar [3, h, w] per frame, in host memory.
    pub planes: Vec<Vec<f32>>,
    /// Or, for a render that keeps its frames on the model's device, the frames there as one
    /// [k, 3, h, w] f32 tensor (`planes` then empty). It counts against the same budget.
    pub on_device: Option<candle_core::Tensor>,
}

impl ChunkData {
    pub fn bytes(&self) -> usize {
        let device = self.on_device.as_ref().map_or(0, |t| t.elem_count() * 4);
        self.planes.iter().map(|p| p.len() * 4).sum::<usize>()
            + device
            + std::mem::size_of::<Self>()
    }

    /// Frame `t` as a [3, h, w] tensor, for a chunk computed on the device.
    pub fn frame_on_device(&self, t: i64) -> Option<candle_core::Tensor> {
        let k = usize::try_from(t - self.first).ok()?;
        let frames = self.on_device.as_ref()?;
        (k < frames.dim(0).ok()?)
            .then(|| frames.get(k).ok())
            .flatten()
    }
    pub fn plane(&self, t: i64) -> Option<&[f32]> {
        usize::try_from(t - self.first)
            .ok()
            .and_then(|k| self.planes.get(k))
            .map(Vec::as_slice)
    }
}

struct Entry {
    slot: Arc<OnceCell<Arc<ChunkData>>>,
    last_used: u64,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<ChunkKey, Entry>,
    tick: u64,
    bytes: usize,
}

/// Counters for tests, benchmarks and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub computed: usize,
    pub hits: usize,
    pub entries: usize,
    pub bytes: usize,
    pub budget: usize,
}

pub struct ChunkCache {
    inner: Mutex<Inner>,
    budget: AtomicUsize,
    /// Some((minimum, ceiling)) for an automatic budget, which grows to what renders reuse
    /// (`need`) but never past the ceiling, and returns to the minimum on `purge`.
    auto: Option<(usize, usize)>,
    warned: AtomicBool,
    computed: AtomicUsize,
    hits: AtomicUsize,
}

/// Least byte budget of the process-wide cache; it grows to hold what a shot's renders reuse.
/// `VDIFF_CACHE_MB` sets a fixed budget instead.
pub const DEFAULT_BUDGET: usize = 1 << 30;

/// Highest automatic budget: a quarter of the machine's memory (a host holds frames of its own,
/// and several may run), and never below the least budget. Machines whose memory cannot be read
/// get 4 GiB.
pub fn default_ceiling() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total_bytes(&m))
        .unwrap_or(16 << 30);
    (total / 4).max(DEFAULT_BUDGET)
}

/// `MemTotal` of a /proc/meminfo text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

static GLOBAL: Lazy<ChunkCache> = Lazy::new(|| {
    match std::env::var("VDIFF_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(mb) => ChunkCache::new(mb << 20),
        None => ChunkCache::automatic(DEFAULT_BUDGET, default_ceiling()),
    }
});

/// The cache every render shares (it outlives plugin instances).
pub fn global() -> &'static ChunkCache {
    &GLOBAL
}

impl ChunkCache {
    /// A cache with a fixed byte budget.
    pub fn new(budget: usize) -> Self {
        ChunkCache {
            inner: Mutex::new(Inner::default()),
            budget: AtomicUsize::new(budget),
            auto: None,
            warned: AtomicBool::new(false),
            computed: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
        }
    }

    /// A cache whose budget starts at `min` and grows to what renders reuse (see `need`), up to
    /// `ceiling`; a purge brings it back to `min`.
    pub fn automatic(min: usize, ceiling: usize) -> Self {
        ChunkCache {
            auto: Some((min, ceiling.max(min))),
            ..ChunkCache::new(min)
        }
    }

    /// Says that renders keep reusing `bytes` of cached chunks (the chunks one frame reads, over
    /// the whole frame): below that, every frame would recompute what the previous one computed.
    /// An automatic budget grows to hold it with half as much again to spare (for frames rendered
    /// in parallel), up to its ceiling; a budget that stays smaller says so in the log, once.
    pub fn need(&self, bytes: usize) {
        self.need_within(bytes, None)
    }

    /// [`ChunkCache::need`] for chunks kept on a GPU of `gpu` bytes: the automatic budget grows
    /// no further than a quarter of it (the model and its activations need the rest).
    pub fn need_within(&self, bytes: usize, gpu: Option<usize>) {
        let want = bytes.saturating_add(bytes / 2);
        if let Some((_, ceiling)) = self.auto {
            let cap = gpu.map_or(ceiling, |g| ceiling.min(g / 4));
            self.budget.fetch_max(want.min(cap), Ordering::Relaxed);
        }
        if want > self.budget.load(Ordering::Relaxed) && !self.warned.swap(true, Ordering::Relaxed)
        {
            let which = match (self.auto.is_some(), gpu.is_some()) {
                (true, false) => "the automatic ceiling, a quarter of this machine's memory",
                (true, true) => "the automatic ceiling, a quarter of the GPU's memory",
                (false, _) => "VDIFF_CACHE_MB",
            };
            log::warn!(
                "the chunk cache budget ({} MB, {which}) is below the {} MB these renders reuse: \
                 frames will recompute their neighbours' work; lower Temporal Radius or the \
                 frame size, or raise VDIFF_CACHE_MB",
                self.budget.load(Ordering::Relaxed) >> 20,
                want >> 20
            );
        }
    }

    pub fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes, Ordering::Relaxed);
        self.evict(&mut self.inner.lock(), None);
    }

    /// The cached value for `key`, or the result of `compute`, run at most once at a time per key.
    /// A failed computation is not cached: the next caller tries again.
    pub fn get_or_compute(
        &self,
        key: ChunkKey,
        compute: impl FnOnce() -> Result<ChunkData>,
    ) -> Result<Arc<ChunkData>> {
        let slot = {
            let mut inner = self.inner.lock();
            inner.tick += 1;
            let tick = inner.tick;
            let e = inner.map.entry(key).or_insert_with(|| Entry {
                slot: Arc::new(OnceCell::new()),
                last_used: tick,
                bytes: 0,
            });
            e.last_used = tick;
            e.slot.clone()
        };
        let mut ran = false;
        let result = slot.get_or_try_init(|| {
            ran = true;
            compute().map(Arc::new)
        });
        let mut inner = self.inner.lock();
        match result {
            Ok(data) => {
                let data = data.clone();
                if ran {
                    self.computed.fetch_add(1, Ordering::Relaxed);
                    let bytes = data.bytes();
                    // Account only if the entry is still ours (a purge may have dropped it).
                    if let Some(e) = inner
                        .map
                        .get_mut(&key)
                        .filter(|e| Arc::ptr_eq(&e.slot, &slot))
                    {
                        e.bytes = bytes;
                        inner.bytes += bytes;
                    }
                    self.evict(&mut inner, Some(&key));
                } else {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(data)
            }
            Err(e) => {
                if inner
                    .map
                    .get(&key)
                    .is_some_and(|e| Arc::ptr_eq(&e.slot, &slot) && e.slot.get().is_none())
                {
                    inner.map.remove(&key);
                }
                Err(e)
            }
        }
    }

    /// Drops least-recently-used filled entries until the budget holds. The entry just filled
    /// goes last, so a chunk larger than the whole budget is still handed to its caller.
    fn evict(&self, inner: &mut Inner, keep: Option<&ChunkKey>) {
        let budget = self.budget.load(Ordering::Relaxed);
        while inner.bytes > budget {
            let victim = inner
                .map
                .iter()
                .filter(|(_, e)| e.bytes > 0)
                .min_by_key(|(k, e)| (Some(*k) == keep, e.last_used))
                .map(|(k, _)| *k);
            let Some(k) = victim else { break };
            if let Some(e) = inner.map.remove(&k) {
                inner.bytes -= e.bytes;
            }
        }
    }

    /// Frees every finished entry (kOfxActionPurgeCaches, "Clear Cache"). Computations in flight
    /// finish for their callers and are not kept.
    pub fn purge(&self) {
        let mut inner = self.inner.lock();
        inner.map.clear();
        inner.bytes = 0;
        // An automatic budget starts over too: the host asked for memory back.
        if let Some((min, _)) = self.auto {
            self.budget.store(min, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.lock();
        CacheStats {
            computed: self.computed.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            entries: inner.map.values().filter(|e| e.bytes > 0).count(),
            bytes: inner.bytes,
            budget: self.budget.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> ChunkData {
        ChunkData {
            on_device: None,
            first: 0,
            rect: Rect::new(0, 0, 1, 1),
            planes: vec![vec![1.0; n]],
        }
    }

    fn key(i: u8) -> ChunkKey {
        [i; 32]
    }

    #[test]
    fn budget_holds_and_lru_goes_first() {
        let one = data(1000).bytes();
        let cache = ChunkCache::new(3 * one);
        for i in 0..3 {
            cache.get_or_compute(key(i), || Ok(data(1000))).unwrap();
        }
        // Touch 0 so that 1 is the least recently used.
        cache
            .get_or_compute(key(0), || panic!("must be cached"))
            .unwrap();
        cache.get_or_compute(key(3), || Ok(data(1000))).unwrap();
        let s = cache.stats();
        assert!(s.bytes <= 3 * one, "{s:?}");
        assert_eq!(s.entries, 3);
        let mut recomputed = false;
        cache
            .get_or_compute(key(1), || {
                recomputed = true;
                Ok(data(1000))
            })
            .unwrap();
        assert!(recomputed, "the LRU entry should have been evicted");
        cache
            .get_or_compute(key(0), || panic!("0 was recently used"))
            .unwrap();
    }

    #[test]
    fn the_ceiling_follows_the_machine_memory() {
        let info = "MemTotal:       24576000 kB\nMemFree:  100 kB\n";
        assert_eq!(mem_total_bytes(info), Some(24_576_000 * 1024));
        assert_eq!(mem_total_bytes("nothing here"), None);
        assert!(default_ceiling() >= DEFAULT_BUDGET);
    }

    #[test]
    fn an_automatic_budget_grows_to_what_renders_reuse() {
        let one = data(1000).bytes();
        let auto = ChunkCache::automatic(2 * one, 100 * one);
        let fixed = ChunkCache::new(2 * one);
        for cache in [&auto, &fixed] {
            cache.need(4 * one);
        }
        assert_eq!(auto.stats().budget, 6 * one);
        assert_eq!(fixed.stats().budget, 2 * one);
        // A smaller need later keeps the budget; the ceiling bounds it; a purge returns it to
        // the minimum.
        let capped = ChunkCache::automatic(2 * one, 5 * one);
        capped.need(4 * one);
        assert_eq!(capped.stats().budget, 5 * one);
        capped.need(one);
        assert_eq!(capped.stats().budget, 5 * one);
        capped.purge();
        assert_eq!(capped.stats().budget, 2 * one);
        // Chunks kept on a GPU grow it to a quarter of the GPU's memory at most.
        let gpu = ChunkCache::automatic(2 * one, 100 * one);
        gpu.need_within(8 * one, Some(12 * one));
        assert_eq!(gpu.stats().budget, 3 * one);
        gpu.need_within(8 * one, Some(400 * one));
        assert_eq!(gpu.stats().budget, 12 * one);
        // Four entries fit the grown budget and none is evicted; the fixed one keeps two.
        for cache in [&auto, &fixed] {
            for i in 0..4 {
                cache.get_or_compute(key(i), || Ok(data(1000))).unwrap();
            }
        }
        assert_eq!(auto.stats().entries, 4);
        assert_eq!(fixed.stats().entries, 2);
        // It never shrinks by itself; a purge takes it back to its minimum.
        auto.need(one);
        assert_eq!(auto.stats().budget, 6 * one);
        auto.purge();
        assert_eq!(auto.stats().budget, 2 * one);
    }

    #[test]
    fn purge_frees_everything() {
        let cache = ChunkCache::new(1 << 30);
        for i in 0..4 {
            cache.get_or_compute(key(i), || Ok(data(100))).unwrap();
        }
        assert!(cache.stats().bytes > 0);
        cache.purge();
        assert_eq!(cache.stats().bytes, 0);
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn failures_are_not_cached() {
        let cache = ChunkCache::new(1 << 30);
        let r = cache.get_or_compute(key(9), || Err(crate::Error::Aborted));
        assert!(r.is_err());
        let v = cache.get_or_compute(key(9), || Ok(data(10))).unwrap();
        assert_eq!(v.planes[0].len(), 10);
        assert_eq!(cache.stats().computed, 1);
    }

    #[test]
    fn concurrent_requests_compute_once() {
        let cache = Arc::new(ChunkCache::new(1 << 30));
        let runs = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (cache, runs) = (cache.clone(), runs.clone());
                std::thread::spawn(move || {
                    cache
                        .get_or_compute(key(1), || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(data(10))
                        })
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().planes[0].len(), 10);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}

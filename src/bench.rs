//! Benchmark workload shared by `vdiff bench` and `cargo bench`: a synthetic noisy shot rendered
//! through the real engine, timed per frame, per megapixel and per sampler step.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::engine::{
    render_with, ChunkCache, Control, FrameParams, Frames, NoControl, Rect, Request, RgbImage,
    Settings, Shot,
};
use crate::sampling::noise::gaussian;
use crate::Result;

/// A moving synthetic clip with fixed-seed white noise of `sigma`. Frames are generated once and
/// kept, so timings measure the engine rather than the pattern generator (a host hands over
/// decoded frames too).
pub struct SyntheticClip {
    pub width: i64,
    pub height: i64,
    pub sigma: f32,
    pub params: FrameParams,
    frames: Mutex<HashMap<i64, Arc<RgbImage>>>,
}

impl SyntheticClip {
    pub fn new(width: i64, height: i64, sigma: f32, params: FrameParams) -> Self {
        SyntheticClip {
            width,
            height,
            sigma,
            params,
            frames: Mutex::new(HashMap::new()),
        }
    }

    fn frame(&self, t: i64) -> Arc<RgbImage> {
        if let Some(f) = self.frames.lock().get(&t) {
            return f.clone();
        }
        let mut img = RgbImage::new(Rect::new(0, 0, self.width, self.height));
        for y in 0..self.height {
            for x in 0..self.width {
                let u = (x + 2 * t) as f32 / self.width as f32;
                let v = y as f32 / self.height as f32;
                let o = img.offset(x, y);
                for c in 0..3 {
                    let base = 0.5 + 0.3 * (9.0 * u + c as f32).sin() * (7.0 * v).cos();
                    img.data[o + c] = base + self.sigma * gaussian(77, t, c as u32, x, y, 0);
                }
            }
        }
        let img = Arc::new(img);
        self.frames.lock().insert(t, img.clone());
        img
    }
}

impl Frames for SyntheticClip {
    fn fetch(&self, t: i64, rect: Rect) -> Result<RgbImage> {
        self.frame(t).crop(&rect)
    }
    fn params(&self, _t: i64) -> FrameParams {
        self.params
    }
}

/// What one benchmark run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub width: i64,
    pub height: i64,
    pub frames: usize,
    pub steps: u32,
    pub radius: u32,
    /// Wall seconds per frame, amortised over the shot (chunk reuse included).
    pub seconds_per_frame: f64,
    /// Milliseconds per megapixel-frame per sampler step (compute only, amortised).
    pub ms_per_mp_step: f64,
    /// Milliseconds to serve a frame whose chunks are all cached (the last frame, again).
    pub cached_frame_ms: f64,
    /// Chunk tiles computed over the shot: more than the chunks times the tiles means the cache
    /// could not hold what the frames reuse.
    pub chunks_computed: usize,
    /// The chunk cache's budget at the end, in bytes (it grows to what the frames reuse).
    pub cache_budget: usize,
}

/// Renders `frames` consecutive frames cold, then renders them again from the cache.
pub fn run(
    settings: &Settings,
    width: i64,
    height: i64,
    frames: usize,
    params: FrameParams,
) -> Result<BenchReport> {
    run_with_control(
        settings,
        width,
        height,
        frames,
        params,
        &NoControl,
        &mut |_, _| {},
    )
}

/// As `run`, calling `on_frame(done, seconds)` after each cold frame.
pub fn run_with_control(
    settings: &Settings,
    width: i64,
    height: i64,
    frames: usize,
    params: FrameParams,
    ctrl: &dyn Control,
    on_frame: &mut dyn FnMut(usize, f64),
) -> Result<BenchReport> {
    let clip = SyntheticClip::new(width, height, params.noise_level, params);
    // Decode cost is the host's: warm the frames before timing.
    for t in 0..frames as i64 {
        clip.fetch(t, Rect::new(0, 0, 1, 1))?;
    }
    let bounds = Rect::new(0, 0, width, height);
    let shot = Shot {
        first: 0,
        last: frames as i64 - 1,
    };
    // The plugin's cache policy, so that a budget too small to reuse chunks shows in the count.
    let cache = ChunkCache::automatic(
        crate::engine::DEFAULT_CACHE_BUDGET,
        crate::engine::default_cache_ceiling(),
    );
    let request = |t: i64| Request {
        t,
        window: bounds,
        bounds,
        shot,
        settings: settings.clone(),
    };
    let start = Instant::now();
    for t in 0..frames as i64 {
        render_with(&cache, &request(t), &clip, ctrl)?;
        on_frame(t as usize + 1, start.elapsed().as_secs_f64());
    }
    let cold = start.elapsed().as_secs_f64();
    let stats = cache.stats();
    const WARM: u32 = 3;
    let start = Instant::now();
    for _ in 0..WARM {
        render_with(&cache, &request(frames as i64 - 1), &clip, ctrl)?;
    }
    let warm = start.elapsed().as_secs_f64() / WARM as f64;
    let mp = (width * height) as f64 / 1e6;
    let per_frame = cold / frames as f64;
    Ok(BenchReport {
        width,
        height,
        frames,
        steps: settings.steps,
        radius: settings.radius,
        seconds_per_frame: per_frame,
        ms_per_mp_step: 1e3 * per_frame / mp / settings.steps as f64,
        cached_frame_ms: 1e3 * warm,
        chunks_computed: stats.computed,
        cache_budget: stats.budget,
    })
}

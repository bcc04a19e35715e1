//! One render call, host-agnostic: plan the frames t is smoothed over and the chunks holding
//! them, and for each tile of the window fetch or compute every chunk (source tiles -> start
//! noise -> sampler, cached), smooth frame t over its denoised neighbours, undo the clipping
//! bias, then blend the tiles in space and the source back in by Mix.
use std::sync::Arc;

use candle_core::Tensor;
use once_cell::sync::Lazy;
use parking_lot::{Condvar, Mutex};

use super::cache::{self, ChunkCache, ChunkData, ChunkKey};
use super::declip::{declip, NoiseClipping};
use super::image::{sanitize, RgbImage};
use super::motion::align_all;
use super::plan::{self, Chunk, Shot};
use super::smooth::{smooth, smooth_restore, Restore};
use super::tiles::TileGrid;
use crate::geometry::Rect;
use crate::model::Model;
use crate::params;
use crate::sampling::noise::{fill_planar, WindowNoise, STEP_INIT};
use crate::sampling::schedule::{start_sigma, Schedule};
use crate::sampling::{sample, SamplerKind};
use crate::{Error, Result};

/// Settings that shape the whole computation, read at the frame being rendered.
#[derive(Clone)]
pub struct Settings {
    pub model: Arc<Model>,
    pub sampler: SamplerKind,
    pub steps: u32,
    pub seed: u64,
    pub radius: u32,
    pub tile_size: u32,
    /// Host render scale (proxy renders): noise shrinks with the image.
    pub render_scale: f64,
    /// Whether the footage's noise was clipped to 0..1 (corrected after denoising).
    pub clipping: NoiseClipping,
}

/// Parameters the engine reads at every frame of a window (they may be keyframed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameParams {
    pub noise_level: f32,
    pub strength: f32,
    pub detail: f32,
    /// Temporal Smoothing: gate of the averaging over the frames t-r..t+r (0: off).
    pub smoothing: f32,
    pub mix: f32,
}

impl Default for FrameParams {
    /// The parameters' declared defaults.
    fn default() -> Self {
        let d = |def: &params::ParamDef| params::double_default(def) as f32;
        FrameParams {
            noise_level: d(&params::NOISE_LEVEL),
            strength: d(&params::STRENGTH),
            detail: d(&params::DETAIL),
            smoothing: d(&params::TEMPORAL_SMOOTHING),
            mix: d(&params::MIX),
        }
    }
}

impl FrameParams {
    /// (footage noise, start level) at a render scale: the footage's own noise, smaller at proxy
    /// scale, and that noise raised by Strength, which the sampler starts from (0: untouched).
    pub fn levels(&self, render_scale: f64) -> (f32, f32) {
        let footage = self.noise_level * render_scale as f32;
        (footage, start_sigma(footage, self.strength))
    }

    /// Clamped to the parameter ranges, non-finite values replaced by the defaults: a host's odd
    /// value never reaches the sampler.
    pub fn sanitized(self) -> Self {
        let d = FrameParams::default();
        let fix = |v: f32, def: f32, p: &params::ParamDef| {
            let (lo, hi) = params::double_range(p);
            if v.is_finite() {
                v.clamp(lo as f32, hi as f32)
            } else {
                def
            }
        };
        FrameParams {
            noise_level: fix(self.noise_level, d.noise_level, &params::NOISE_LEVEL),
            strength: fix(self.strength, d.strength, &params::STRENGTH),
            detail: fix(self.detail, d.detail, &params::DETAIL),
            smoothing: fix(self.smoothing, d.smoothing, &params::TEMPORAL_SMOOTHING),
            mix: fix(self.mix, d.mix, &params::MIX),
        }
    }
}

/// Largest footage noise level accepted (0..1 units): the parameter's range.
pub const MAX_NOISE_LEVEL: f32 = params::double_range(&params::NOISE_LEVEL).1 as f32;
/// Largest Temporal Smoothing accepted: the parameter's range.
pub const MAX_SMOOTHING: f32 = params::double_range(&params::TEMPORAL_SMOOTHING).1 as f32;

/// Largest noise level the smoothing gate scales with (about 50/255, the heaviest footage noise
/// it was tuned on).
const SMOOTH_LEVEL_CAP: f32 = 0.2;
/// Range of values the network sees; anything beyond (HDR highlights, deep negatives) bypasses
/// it unchanged and is added back, so float footage keeps its out-of-range values.
const MODEL_LO: f32 = -0.5;
const MODEL_HI: f32 = 1.5;

/// Where the engine reads source frames and per-frame parameters. Called on the caller's
/// thread only (a host's handles may be used on the thread it called the plugin on).
pub trait Frames {
    /// Source pixels of frame t over `rect` (raw values; the engine sanitises NaN/Inf).
    fn fetch(&self, t: i64, rect: Rect) -> Result<RgbImage>;
    fn params(&self, t: i64) -> FrameParams;
}

/// Progress report and abort test, called between sampler steps, on the caller's thread.
pub trait Control {
    fn progress(&self, _fraction: f64) {}
    fn aborted(&self) -> bool {
        false
    }
}

/// A `Control` that reports nothing and never aborts.
pub struct NoControl;
impl Control for NoControl {}

pub struct Request {
    pub t: i64,
    pub window: Rect,
    /// The frame's region of definition: tiles are clipped to it.
    pub bounds: Rect,
    pub shot: Shot,
    pub settings: Settings,
}

/// True when frame parameters make the effect a pass-through (no model run).
pub fn is_identity(p: &FrameParams) -> bool {
    let p = p.sanitized();
    p.mix == 0.0 || start_sigma(p.noise_level, p.strength) == 0.0
}

/// Region of the source a render of `window` reads, per frame (GetRegionsOfInterest).
pub fn region_needed(window: Rect, bounds: Rect, tile_size: u32) -> Rect {
    TileGrid::new(tile_size).region_needed(window, bounds)
}

/// Inclusive source frames a render of t reads (GetFramesNeeded).
pub fn frames_needed(t: i64, radius: u32, shot: Shot) -> (i64, i64) {
    plan::frames_needed(t, radius, shot)
}

/// Empties the shared chunk cache (PurgeCaches, "Clear Cache").
pub fn purge_caches() {
    cache::global().purge();
}

/// Renders frame `req.t` over `req.window` through the shared cache.
pub fn render(req: &Request, frames: &dyn Frames, ctrl: &dyn Control) -> Result<RgbImage> {
    render_with(cache::global(), req, frames, ctrl)
}

fn validate(s: &Settings) -> Result<()> {
    if !(1..=MAX_STEPS).contains(&s.steps) {
        return Err(Error::param(
            "steps",
            format!("{} is outside 1..{MAX_STEPS}", s.steps),
        ));
    }
    if s.radius > MAX_RADIUS {
        return Err(Error::param(
            "temporal radius",
            format!("{} is above {MAX_RADIUS}", s.radius),
        ));
    }
    if !(s.render_scale.is_finite() && s.render_scale > 0.0) {
        return Err(Error::param(
            "render scale",
            format!("{} is not a positive number", s.render_scale),
        ));
    }
    Ok(())
}

/// Most sampler steps and largest temporal radius accepted: the parameters' ranges.
pub const MAX_STEPS: u32 = params::int_range(&params::STEPS).1 as u32;
pub const MAX_RADIUS: u32 = params::int_range(&params::TEMPORAL_RADIUS).1 as u32;

fn fetch_sane(frames: &dyn Frames, t: i64, rect: Rect) -> Result<RgbImage> {
    let mut img = frames.fetch(t, rect)?;
    if img.rect != rect || img.data.len() != rect.area() * 3 {
        return Err(Error::image(
            format!("frame {t}"),
            format!(
                "source gave {:?} ({} values) where {rect:?} was asked",
                img.rect,
                img.data.len()
            ),
        ));
    }
    img.data.iter_mut().for_each(|v| *v = sanitize(*v));
    Ok(img)
}

/// Renders with an explicit cache (tests and benchmarks use their own).
pub fn render_with(
    cache: &ChunkCache,
    req: &Request,
    frames: &dyn Frames,
    ctrl: &dyn Control,
) -> Result<RgbImage> {
    let s = &req.settings;
    validate(s)?;
    let (t, bounds) = (req.t, req.bounds);
    let window = req.window.intersect(&bounds);
    if window.is_empty() {
        return Ok(RgbImage::new(Rect::default()));
    }
    let p_t = frames.params(t).sanitized();
    if is_identity(&p_t) {
        return fetch_sane(frames, t, window);
    }

    // 1. Plan: tiles of the window, the frames t is smoothed over, the chunks holding them
    //    (only t's own without smoothing), and the frames and region those read.
    let (footage_t, start_t) = p_t.levels(s.render_scale);
    let smoothing = start_t > 0.0 && p_t.smoothing > 0.0;
    let grid = TileGrid::new(s.tile_size);
    let tiles = grid.tiles_for(window, bounds);
    let region = tiles.iter().fold(Rect::default(), |a, r| a.union(r));
    let (wa, wb) = plan::window(t, s.radius, req.shot);
    let mut chunks = plan::chunks_for(t, s.radius, req.shot);
    if !smoothing {
        chunks.retain(|c| c.first <= t && t <= c.last);
    }
    // A shot renders frame after frame from these chunks: the cache must hold them whole.
    let frame_bytes: usize = grid
        .tiles_for(bounds, bounds)
        .iter()
        .map(|r| r.area() * 3 * std::mem::size_of::<f32>())
        .sum();
    let chunk_frames: usize = chunks.iter().map(|c| (c.last - c.first + 1) as usize).sum();
    cache.need(frame_bytes * chunk_frames);
    // The window's sources are read either way: Noise Clipping Auto looks at all of them.
    let f0 = chunks.iter().map(|c| c.first).fold(wa, i64::min);
    let f1 = chunks.iter().map(|c| c.last).fold(wb, i64::max);

    // 2. Sources and parameters of every frame, read once.
    let sources = (f0..=f1)
        .map(|f| fetch_sane(frames, f, region))
        .collect::<Result<Vec<_>>>()?;
    let params: Vec<FrameParams> = (f0..=f1).map(|f| frames.params(f).sanitized()).collect();
    let denoised_from = |f: i64| params[(f - f0) as usize].levels(s.render_scale).1;

    // 3. Per tile: fetch or compute each chunk, smooth frame t over its window, undo the
    //    clipping bias, then add the tile into the window.
    let mut acc = vec![0f32; window.area() * 3];
    let mut wsum = vec![0f32; window.area()];
    let units = (tiles.len() * chunks.len()) as f64;
    for (ti, tile) in tiles.iter().enumerate() {
        let planes: Vec<Vec<f32>> = sources.iter().map(|src| src.planar(tile)).collect();
        let hashes: Vec<blake3::Hash> = planes.iter().map(|p| hash_plane(p)).collect();
        let mut computed = Vec::with_capacity(chunks.len());
        for (ci, chunk) in chunks.iter().enumerate() {
            let range = (chunk.first - f0) as usize..=(chunk.last - f0) as usize;
            let key = chunk_key(
                s,
                chunk,
                tile,
                &params[range.clone()],
                &hashes[range.clone()],
            );
            let base = (ti * chunks.len() + ci) as f64;
            let data = cache.get_or_compute(key, || {
                let job = ChunkJob {
                    s,
                    first: chunk.first,
                    tile,
                    planes: &planes[range.clone()],
                    params: &params[range],
                };
                job.compute(&|f| ctrl.progress((base + f) / units), ctrl)
            })?;
            computed.push(data);
            ctrl.progress((base + 1.0) / units);
        }
        let denoised = |f: i64| -> Result<&[f32]> {
            computed
                .iter()
                .find_map(|d| d.plane(f))
                .ok_or_else(|| Error::Internal(format!("no chunk holds frame {f}")))
        };
        let centre = denoised(t)?;
        let mut result = if smoothing {
            // Neighbours that were denoised too; untouched frames lend no weight.
            let (tw, th) = (tile.width() as usize, tile.height() as usize);
            let near: Vec<i64> = (wa..=wb)
                .filter(|&f| f != t && denoised_from(f) > 0.0)
                .collect();
            let others = near
                .iter()
                .map(|&f| denoised(f))
                .collect::<Result<Vec<_>>>()?;
            let gate = p_t.smoothing * start_t.min(SMOOTH_LEVEL_CAP);
            // Detail back from the sources only where they are what was denoised (Strength 0):
            // above it the result is meant to move away from them.
            let restore = footage_t > 0.0 && p_t.strength == 0.0;
            let sources: Vec<&[f32]> = match restore {
                true => near
                    .iter()
                    .map(|&f| planes[(f - f0) as usize].as_slice())
                    .collect(),
                false => Vec::new(),
            };
            let (others, sources) = align_all(centre, &others, &sources, tw, th, start_t);
            let others: Vec<&[f32]> = others.iter().map(|o| o.as_slice()).collect();
            let sources: Vec<&[f32]> = sources.iter().map(|o| o.as_slice()).collect();
            if restore {
                let src = Restore {
                    centre: &planes[(t - f0) as usize],
                    others: &sources,
                    sigma: footage_t,
                };
                smooth_restore(centre, &others, tw, th, gate, &src)
            } else {
                smooth(centre, &others, tw, th, gate)
            }
        } else {
            centre.to_vec()
        };
        if footage_t > 0.0 {
            let window_src = &planes[(wa - f0) as usize..=(wb - f0) as usize];
            declip(&mut result, footage_t, s.clipping.ends(window_src));
        }
        splat(&grid, &bounds, tile, &result, &window, &mut acc, &mut wsum);
    }

    // 4. Normalise and mix with the source.
    let src = &sources[(t - f0) as usize];
    let mut out = RgbImage::new(window);
    for y in window.y0..window.y1 {
        for x in window.x0..window.x1 {
            let i = ((y - window.y0) * window.width() + (x - window.x0)) as usize;
            let so = src.offset(x, y);
            for c in 0..3 {
                let den = acc[i * 3 + c] / wsum[i];
                out.data[i * 3 + c] = if p_t.mix == 1.0 {
                    den
                } else {
                    p_t.mix * den + (1.0 - p_t.mix) * src.data[so + c]
                };
            }
        }
    }
    Ok(out)
}

/// Adds a tile's planar result, weighted by the tile ramp, into the window accumulators.
fn splat(
    grid: &TileGrid,
    bounds: &Rect,
    tile: &Rect,
    planar: &[f32],
    window: &Rect,
    acc: &mut [f32],
    wsum: &mut [f32],
) {
    let part = tile.intersect(window);
    let (tw, th) = (tile.width() as usize, tile.height() as usize);
    for y in part.y0..part.y1 {
        for x in part.x0..part.x1 {
            let w = grid.weight(tile, bounds, x, y);
            let i = ((y - window.y0) * window.width() + (x - window.x0)) as usize;
            let j = (y - tile.y0) as usize * tw + (x - tile.x0) as usize;
            for c in 0..3 {
                acc[i * 3 + c] += w * planar[c * tw * th + j];
            }
            wsum[i] += w;
        }
    }
}

/// Content hash of a plane, fed through a small buffer (no copy of the whole plane).
fn hash_plane(v: &[f32]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    let mut buf = [0u8; 4096];
    for chunk in v.chunks(buf.len() / 4) {
        for (b, f) in buf.chunks_exact_mut(4).zip(chunk) {
            b.copy_from_slice(&f.to_le_bytes());
        }
        h.update(&buf[..chunk.len() * 4]);
    }
    h.finalize()
}

/// Everything a chunk's pixels depend on, hashed: an upstream edit is never served stale.
fn chunk_key(
    s: &Settings,
    chunk: &Chunk,
    tile: &Rect,
    params: &[FrameParams],
    hashes: &[blake3::Hash],
) -> ChunkKey {
    let mut h = blake3::Hasher::new();
    h.update(b"vdiff-chunk-v4");
    h.update(s.model.id().as_bytes());
    // The same weights on another device or in another precision give other pixels: one cache
    // entry per (device, dtype), never one served for the other.
    h.update(format!("{:?} {:?}", s.model.device().location(), s.model.dtype()).as_bytes());
    h.update(s.sampler.to_string().as_bytes());
    for v in [
        s.steps as i64,
        s.seed as i64,
        chunk.first,
        chunk.last,
        tile.x0,
        tile.y0,
        tile.x1,
        tile.y1,
    ] {
        h.update(&v.to_le_bytes());
    }
    h.update(&s.render_scale.to_le_bytes());
    // Smoothing and the clipping correction come after the cache: not part of the key.
    for (p, src) in params.iter().zip(hashes) {
        for v in [p.noise_level, p.strength, p.detail] {
            h.update(&v.to_le_bytes());
        }
        h.update(src.as_bytes());
    }
    *h.finalize().as_bytes()
}

/// One chunk of one tile, ready to run.
struct ChunkJob<'a> {
    s: &'a Settings,
    first: i64,
    tile: &'a Rect,
    /// Planar [3, h, w] sanitised source per frame of the chunk.
    planes: &'a [Vec<f32>],
    params: &'a [FrameParams],
}

impl ChunkJob<'_> {
    fn compute(&self, progress: &dyn Fn(f64), ctrl: &dyn Control) -> Result<ChunkData> {
        let s = self.s;
        let (w, h) = (self.tile.width() as usize, self.tile.height() as usize);
        let (k, n) = (self.planes.len(), 3 * w * h);
        // 1. Start levels: the footage's own noise raised by Strength.
        let (footage, starts): (Vec<f32>, Vec<f32>) =
            self.params.iter().map(|p| p.levels(s.render_scale)).unzip();
        if starts.iter().all(|&v| v == 0.0) {
            return Ok(ChunkData {
                first: self.first,
                rect: *self.tile,
                planes: self.planes.to_vec(),
            });
        }
        // 2. Network input: in-range part of the source plus frame-anchored extra noise.
        let mut x = Vec::with_capacity(k * n);
        let mut noise = vec![0f32; n];
        for (i, plane) in self.planes.iter().enumerate() {
            let extra = (starts[i] * starts[i] - footage[i] * footage[i])
                .max(0.0)
                .sqrt();
            let at = x.len();
            x.extend(plane.iter().map(|v| v.clamp(MODEL_LO, MODEL_HI)));
            if extra > 0.0 {
                let frame = self.first + i as i64;
                fill_planar(
                    s.seed,
                    frame,
                    STEP_INIT,
                    self.tile.x0,
                    self.tile.y0,
                    w,
                    h,
                    3,
                    &mut noise,
                );
                x[at..]
                    .iter_mut()
                    .zip(&noise)
                    .for_each(|(v, z)| *v += extra * z);
            }
        }
        let device = s.model.device();
        let x = Tensor::from_vec(x, (k, 3, h, w), device)?;
        let sched = Schedule::per_frame(s.steps as usize, &starts);
        let churn: Vec<f32> = self.params.iter().map(|p| p.detail).collect();
        let source = WindowNoise {
            seed: s.seed,
            frames: (self.first..self.first + k as i64).collect(),
            x0: self.tile.x0,
            y0: self.tile.y0,
            width: w,
            height: h,
            channels: 3,
            device: device.clone(),
        };

        // 3. The sampler, one model run at a time per process (each run already uses every core).
        let out = {
            let _permit = MODEL_RUNS.acquire();
            let mut on_step = |i: crate::sampling::StepInfo| {
                progress(i.step as f64 / i.total.max(1) as f64);
                !ctrl.aborted()
            };
            sample(
                s.sampler,
                s.model.as_ref(),
                x,
                &sched,
                &churn,
                &source,
                &mut on_step,
            )?
        };
        let out: Vec<f32> = out.flatten_all()?.to_vec1()?;

        // 4. Untouched frames stay bit-exact; others get their out-of-range part back.
        let planes: Vec<Vec<f32>> = self
            .planes
            .iter()
            .enumerate()
            .map(|(i, src)| {
                if starts[i] == 0.0 {
                    return src.clone();
                }
                let o = &out[i * n..(i + 1) * n];
                o.iter()
                    .zip(src)
                    .map(|(d, v)| d + (v - v.clamp(MODEL_LO, MODEL_HI)))
                    .collect()
            })
            .collect();

        Ok(ChunkData {
            first: self.first,
            rect: *self.tile,
            planes,
        })
    }
}

/// Bounds concurrent model runs: parallel frame renders from a host would otherwise each spawn
/// a full set of compute threads and thrash the cores. `VDIFF_MODEL_RUNS` overrides the count.
struct Semaphore {
    free: Mutex<usize>,
    cv: Condvar,
}

struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock();
        while *free == 0 {
            self.cv.wait(&mut free);
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock() += 1;
        self.0.cv.notify_one();
    }
}

static MODEL_RUNS: Lazy<Semaphore> = Lazy::new(|| {
    let n = std::env::var("VDIFF_MODEL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize);
    Semaphore {
        free: Mutex::new(n.max(1)),
        cv: Condvar::new(),
    }
});

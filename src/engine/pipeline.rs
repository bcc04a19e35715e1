//! One render call, host-agnostic: plan the frames t is smoothed over and the chunks holding
//! them, and for each tile of the window fetch or compute every chunk (source tiles -> start
//! noise -> sampler, cached), smooth frame t over its denoised neighbours, undo the clipping
//! bias, then blend the tiles in space and the source back in by Mix.
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use once_cell::sync::Lazy;
use parking_lot::{Condvar, Mutex};

use super::cache::{self, ChunkCache, ChunkData, ChunkKey};
use super::declip::{declip, NoiseClipping};
use super::image::{sanitize, RgbImage, SANE_LIMIT};
use super::motion::align_all;
use super::plan::{self, Chunk, Shot};
use super::resident;
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

    /// The same pixels as an interleaved [h, w, 3] f32 tensor on `device`, for
    /// [`render_resident`]. By default read with `fetch` and copied there; a host whose images
    /// already are in that device's memory hands them over without a trip through host memory.
    fn fetch_on(&self, t: i64, rect: Rect, device: &Device) -> Result<Tensor> {
        let img = fetch_checked(self, t, rect)?;
        let (w, h) = (rect.width() as usize, rect.height() as usize);
        Ok(Tensor::from_vec(img.data, (h, w, 3), device)?)
    }
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
    let mut img = fetch_checked(frames, t, rect)?;
    img.data.iter_mut().for_each(|v| *v = sanitize(*v));
    Ok(img)
}

/// `fetch_on`, checked for its shape and sanitised on the device as [`sanitize`] does.
fn fetch_sane_on(frames: &dyn Frames, t: i64, rect: Rect, device: &Device) -> Result<Tensor> {
    let img = frames.fetch_on(t, rect, device)?;
    let want = (rect.height() as usize, rect.width() as usize, 3);
    if img.dims() != [want.0, want.1, want.2] || img.dtype() != DType::F32 {
        return Err(Error::image(
            format!("frame {t}"),
            format!(
                "source gave a {:?} {:?} tensor where {want:?} f32 was asked",
                img.dims(),
                img.dtype()
            ),
        ));
    }
    let zero = img.zeros_like()?;
    let sane = img.eq(&img)?.where_cond(&img, &zero)?;
    Ok(sane.clamp(-SANE_LIMIT, SANE_LIMIT)?)
}

/// `fetch`, checked for its shape.
fn fetch_checked<F: Frames + ?Sized>(frames: &F, t: i64, rect: Rect) -> Result<RgbImage> {
    let img = frames.fetch(t, rect)?;
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
    Ok(img)
}

/// What one render of frame t computes.
struct Plan {
    /// The window, clipped to the bounds.
    window: Rect,
    p_t: FrameParams,
    /// Frame t's footage noise and the level it is denoised from.
    footage_t: f32,
    start_t: f32,
    smoothing: bool,
    grid: TileGrid,
    tiles: Vec<Rect>,
    /// The union of the tiles: the region read from every frame.
    region: Rect,
    /// Frames t is smoothed over (inclusive).
    wa: i64,
    wb: i64,
    chunks: Vec<Chunk>,
    /// Frames read (inclusive): the chunks' and the window's.
    f0: i64,
    f1: i64,
}

enum Planned {
    /// Nothing of the window lies inside the bounds.
    Empty,
    /// The parameters make frame t a pass-through of this part of the source.
    Identity(Rect),
    Render(Plan),
}

impl Plan {
    /// Tiles of the window, the frames t is smoothed over, the chunks holding them (only t's
    /// own without smoothing), and the frames and region those read. Reserves the cache.
    fn make(cache: &ChunkCache, req: &Request, frames: &dyn Frames) -> Result<Planned> {
        let s = &req.settings;
        validate(s)?;
        let (t, bounds) = (req.t, req.bounds);
        let window = req.window.intersect(&bounds);
        if window.is_empty() {
            return Ok(Planned::Empty);
        }
        let p_t = frames.params(t).sanitized();
        if is_identity(&p_t) {
            return Ok(Planned::Identity(window));
        }
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
        let gpu = match keeps_frames_on(s.model.device()) {
            true => crate::model::device::gpu_memory(s.model.device()),
            false => None,
        };
        cache.need_within(frame_bytes * chunk_frames, gpu);
        // The window's sources are read either way: Noise Clipping Auto looks at all of them.
        let f0 = chunks.iter().map(|c| c.first).fold(wa, i64::min);
        let f1 = chunks.iter().map(|c| c.last).fold(wb, i64::max);
        Ok(Planned::Render(Plan {
            window,
            p_t,
            footage_t,
            start_t,
            smoothing,
            grid,
            tiles,
            region,
            wa,
            wb,
            chunks,
            f0,
            f1,
        }))
    }

    /// Frame t's neighbours that were denoised too (`from`: the level a frame is denoised
    /// from); untouched frames lend no weight.
    fn neighbours(&self, t: i64, from: impl Fn(i64) -> f32) -> Vec<i64> {
        (self.wa..=self.wb)
            .filter(|&f| f != t && from(f) > 0.0)
            .collect()
    }

    /// The smoothing's gate.
    fn gate(&self) -> f32 {
        self.p_t.smoothing * self.start_t.min(SMOOTH_LEVEL_CAP)
    }

    /// Whether detail comes back from the sources: only where they are what was denoised
    /// (Strength 0); above it the result is meant to move away from them.
    fn restores(&self) -> bool {
        self.footage_t > 0.0 && self.p_t.strength == 0.0
    }

    /// Index of frame `f` among the frames read.
    fn at(&self, f: i64) -> usize {
        (f - self.f0) as usize
    }
}

/// Whether renders with a model on `device` keep their frames there ([`render_resident`]):
/// on CUDA, unless `VDIFF_RESIDENT=0` asks for the host stages (the CPU keeps its own scalar
/// stages; Metal has no f64 for the chunk fingerprints).
pub fn keeps_frames_on(device: &Device) -> bool {
    device.is_cuda() && std::env::var("VDIFF_RESIDENT").map_or(true, |v| v != "0")
}

/// Renders with an explicit cache (tests and benchmarks use their own). With the model on a
/// device that [`keeps_frames_on`] it, the render runs there and only the result comes back.
pub fn render_with(
    cache: &ChunkCache,
    req: &Request,
    frames: &dyn Frames,
    ctrl: &dyn Control,
) -> Result<RgbImage> {
    if keeps_frames_on(req.settings.model.device()) {
        let out = render_resident(cache, req, frames, ctrl)?;
        let window = req.window.intersect(&req.bounds);
        let mut img = RgbImage::new(if window.is_empty() {
            Rect::default()
        } else {
            window
        });
        img.data = out.flatten_all()?.to_vec1()?;
        return Ok(img);
    }
    let plan = match Plan::make(cache, req, frames)? {
        Planned::Empty => return Ok(RgbImage::new(Rect::default())),
        Planned::Identity(window) => return fetch_sane(frames, req.t, window),
        Planned::Render(plan) => plan,
    };
    let s = &req.settings;
    let (t, bounds, window) = (req.t, req.bounds, plan.window);
    let Plan {
        p_t,
        footage_t,
        start_t,
        smoothing,
        wa,
        wb,
        f0,
        f1,
        ..
    } = plan;
    let (grid, tiles, region) = (&plan.grid, &plan.tiles, plan.region);

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
    for (ti, tile) in tiles.iter().enumerate() {
        let planes: Vec<Vec<f32>> = sources.iter().map(|src| src.planar(tile)).collect();
        let hashes: Vec<blake3::Hash> = planes.iter().map(|p| hash_plane(p)).collect();
        let computed = tile_chunks(
            cache,
            req,
            &plan,
            (ti, tile),
            &params,
            &hashes,
            Sources::Host(&planes),
            ctrl,
        )?;
        let denoised = |f: i64| -> Result<&[f32]> {
            computed
                .iter()
                .find_map(|d| d.plane(f))
                .ok_or_else(|| Error::Internal(format!("no chunk holds frame {f}")))
        };
        let centre = denoised(t)?;
        let mut result = if smoothing {
            let (tw, th) = (tile.width() as usize, tile.height() as usize);
            let near = plan.neighbours(t, denoised_from);
            let others = near
                .iter()
                .map(|&f| denoised(f))
                .collect::<Result<Vec<_>>>()?;
            let gate = plan.gate();
            let restore = plan.restores();
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
        splat(grid, &bounds, tile, &result, &window, &mut acc, &mut wsum);
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

/// Renders frame `req.t` on the model's device, its frames never in host memory between the
/// host's source images ([`Frames::fetch_on`]) and the result: `req.window` clipped to the
/// bounds, as an interleaved [h, w, 3] f32 tensor on that device. The plan, the tiles, the cache
/// and the sampler are [`render_with`]'s; the stages after the cache are its tensor forms
/// ([`super::resident`]), so the two agree to float rounding. Chunk keys read the sources
/// through a fingerprint computed on the device.
pub fn render_resident(
    cache: &ChunkCache,
    req: &Request,
    frames: &dyn Frames,
    ctrl: &dyn Control,
) -> Result<Tensor> {
    let s = &req.settings;
    let dev = s.model.device().clone();
    let t = req.t;
    let plan = match Plan::make(cache, req, frames)? {
        Planned::Empty => return Ok(Tensor::zeros((0, 0, 3), DType::F32, &dev)?),
        Planned::Identity(window) => return fetch_sane_on(frames, t, window, &dev),
        Planned::Render(plan) => plan,
    };
    let (window, region) = (plan.window, plan.region);
    let sources = (plan.f0..=plan.f1)
        .map(|f| fetch_sane_on(frames, f, region, &dev))
        .collect::<Result<Vec<_>>>()?;
    let params: Vec<FrameParams> = (plan.f0..=plan.f1)
        .map(|f| frames.params(f).sanitized())
        .collect();
    let denoised_from = |f: i64| params[plan.at(f)].levels(s.render_scale).1;
    // `r` of an interleaved [h, w, 3] tensor covering `within`, as planar [3, h, w].
    let cut = |img: &Tensor, within: &Rect, r: &Rect| -> Result<Tensor> {
        Ok(img
            .narrow(0, (r.y0 - within.y0) as usize, r.height() as usize)?
            .narrow(1, (r.x0 - within.x0) as usize, r.width() as usize)?
            .permute((2, 0, 1))?
            .contiguous()?)
    };
    let (wh, ww) = (window.height() as usize, window.width() as usize);
    let mut acc = Tensor::zeros((3, wh, ww), DType::F32, &dev)?;
    let mut wsum = Tensor::zeros((1, wh, ww), DType::F32, &dev)?;
    for (ti, tile) in plan.tiles.iter().enumerate() {
        let planes = sources
            .iter()
            .map(|src| cut(src, &region, tile))
            .collect::<Result<Vec<_>>>()?;
        let prints = fingerprints(&planes)?;
        let computed = tile_chunks(
            cache,
            req,
            &plan,
            (ti, tile),
            &params,
            &prints,
            Sources::Device(&planes),
            ctrl,
        )?;
        let denoised = |f: i64| -> Result<Tensor> {
            computed
                .iter()
                .find_map(|d| d.frame_on_device(f))
                .ok_or_else(|| Error::Internal(format!("no chunk on the device holds frame {f}")))
        };
        let centre = denoised(t)?;
        let mut result = if plan.smoothing {
            let near = plan.neighbours(t, denoised_from);
            let others = near
                .iter()
                .map(|&f| denoised(f))
                .collect::<Result<Vec<_>>>()?;
            let restore = plan.restores();
            let companions: Vec<Tensor> = match restore {
                true => near.iter().map(|&f| planes[plan.at(f)].clone()).collect(),
                false => Vec::new(),
            };
            let (others, companions) =
                resident::align_all(&centre, &others, &companions, plan.start_t)?;
            if restore {
                resident::smooth_restore(
                    &centre,
                    &others,
                    plan.gate(),
                    &planes[plan.at(t)],
                    &companions,
                    plan.footage_t,
                )?
            } else {
                resident::smooth(&centre, &others, plan.gate())?
            }
        } else {
            centre
        };
        if plan.footage_t > 0.0 {
            let ends =
                resident::clipping_ends(s.clipping, &planes[plan.at(plan.wa)..=plan.at(plan.wb)])?;
            result = resident::declip(&result, plan.footage_t, ends)?;
        }
        // Into the window, weighted by the tile ramp (its weights are made here: geometry only).
        let part = tile.intersect(&window);
        if part.is_empty() {
            continue;
        }
        let (ph, pw) = (part.height() as usize, part.width() as usize);
        let mut ramp = Vec::with_capacity(ph * pw);
        for y in part.y0..part.y1 {
            for x in part.x0..part.x1 {
                ramp.push(plan.grid.weight(tile, &req.bounds, x, y));
            }
        }
        let ramp = Tensor::from_vec(ramp, (1, ph, pw), &dev)?;
        let piece = result
            .narrow(1, (part.y0 - tile.y0) as usize, ph)?
            .narrow(2, (part.x0 - tile.x0) as usize, pw)?
            .broadcast_mul(&ramp)?;
        let (top, left) = (
            (part.y0 - window.y0) as usize,
            (part.x0 - window.x0) as usize,
        );
        let place = |v: &Tensor| -> Result<Tensor> {
            Ok(v.pad_with_zeros(1, top, wh - top - ph)?
                .pad_with_zeros(2, left, ww - left - pw)?)
        };
        acc = (acc + place(&piece)?)?;
        wsum = (wsum + place(&ramp)?)?;
    }
    // Normalise and mix with the source.
    let mut out = acc.broadcast_div(&wsum)?;
    let mix = plan.p_t.mix;
    if mix != 1.0 {
        let src = cut(&sources[plan.at(t)], &region, &window)?;
        out = (out.affine(mix as f64, 0.0)? + src.affine(1.0 - mix as f64, 0.0)?)?;
    }
    Ok(out.permute((1, 2, 0))?.contiguous()?)
}

/// Content fingerprints of planes on the device, for the chunk keys, with only 32 bytes per
/// plane coming back, all in one copy: four sums of each plane's values in f64 under fixed
/// pseudo-random weights (`sin` of the index at incommensurate rates), hashed with the shape. Any
/// change of a value moves every sum by far more than its rounding (an f32 step of a value near 1
/// is 1e-7, the sums' rounding about 1e-9 at 4K), so an edit upstream is never served a stale
/// chunk; the same plane on the same device always gives the same fingerprint. The weights are
/// made once per shape (a tile's planes share one).
fn fingerprints(planes: &[Tensor]) -> Result<Vec<blake3::Hash>> {
    let Some(first) = planes.first() else {
        return Ok(Vec::new());
    };
    let dims = first.dims();
    if planes.iter().any(|p| p.dims() != dims) {
        return planes
            .iter()
            .map(|p| Ok(fingerprints(std::slice::from_ref(p))?[0]))
            .collect();
    }
    // The value's index i = row * width + column, from two short index vectors.
    let width = dims.last().copied().unwrap_or(1).max(1);
    let rows = first.elem_count() / width;
    let index = |n: usize, scale: f64| -> Result<Tensor> {
        Ok(Tensor::arange(0u32, n as u32, first.device())?
            .to_dtype(DType::F64)?
            .affine(scale, 0.0)?)
    };
    let i = index(rows, width as f64)?
        .reshape((rows, 1))?
        .broadcast_add(&index(width, 1.0)?.reshape((1, width))?)?;
    let weights = [
        (0.754_877_666_246_692_7, 0.1),
        (0.569_840_290_998_053_2, 0.3),
        (0.137_036_524_161_094_3, 0.7),
        (0.915_965_594_177_219, 0.9),
    ]
    .iter()
    .map(|&(rate, phase)| Ok(i.affine(rate, phase)?.sin()?))
    .collect::<Result<Vec<_>>>()?;
    let mut sums = Vec::with_capacity(weights.len() * planes.len());
    for p in planes {
        let x = p.reshape((rows, width))?.to_dtype(DType::F64)?;
        for w in &weights {
            sums.push((&x * w)?.sum_all()?);
        }
    }
    let sums = Tensor::stack(&sums, 0)?.to_vec1::<f64>()?;
    Ok(sums
        .chunks_exact(weights.len())
        .map(|plane| {
            let mut h = blake3::Hasher::new();
            h.update(b"vdiff-device-fingerprint-v1");
            for d in dims {
                h.update(&(*d as u64).to_le_bytes());
            }
            plane.iter().for_each(|v| {
                h.update(&v.to_le_bytes());
            });
            h.finalize()
        })
        .collect())
}

/// Every chunk of tile `ti` of the plan, from the cache or computed: `params`, `hashes` and
/// `planes` are the tile's, for every frame the plan reads.
#[allow(clippy::too_many_arguments)]
fn tile_chunks(
    cache: &ChunkCache,
    req: &Request,
    plan: &Plan,
    (ti, tile): (usize, &Rect),
    params: &[FrameParams],
    hashes: &[blake3::Hash],
    planes: Sources<'_>,
    ctrl: &dyn Control,
) -> Result<Vec<Arc<ChunkData>>> {
    let s = &req.settings;
    let units = (plan.tiles.len() * plan.chunks.len()) as f64;
    let mut computed = Vec::with_capacity(plan.chunks.len());
    for (ci, chunk) in plan.chunks.iter().enumerate() {
        let range = plan.at(chunk.first)..=plan.at(chunk.last);
        let key = chunk_key(
            s,
            chunk,
            tile,
            &params[range.clone()],
            &hashes[range.clone()],
        );
        let base = (ti * plan.chunks.len() + ci) as f64;
        let data = cache.get_or_compute(key, || {
            let job = ChunkJob {
                s,
                first: chunk.first,
                tile,
                planes: planes.slice(range.clone()),
                params: &params[range],
            };
            job.compute(&|f| ctrl.progress((base + f) / units), ctrl)
        })?;
        computed.push(data);
        ctrl.progress((base + 1.0) / units);
    }
    Ok(computed)
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

/// A chunk's sanitised sources, planar [3, h, w] per frame.
#[derive(Clone, Copy)]
enum Sources<'a> {
    Host(&'a [Vec<f32>]),
    /// On the model's device.
    Device(&'a [Tensor]),
}

impl<'a> Sources<'a> {
    /// The frames of `range`.
    fn slice(&self, range: std::ops::RangeInclusive<usize>) -> Sources<'a> {
        match *self {
            Sources::Host(p) => Sources::Host(&p[range]),
            Sources::Device(p) => Sources::Device(&p[range]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Sources::Host(p) => p.len(),
            Sources::Device(p) => p.len(),
        }
    }
}

/// One chunk of one tile, ready to run.
struct ChunkJob<'a> {
    s: &'a Settings,
    first: i64,
    tile: &'a Rect,
    planes: Sources<'a>,
    params: &'a [FrameParams],
}

impl ChunkJob<'_> {
    fn compute(&self, progress: &dyn Fn(f64), ctrl: &dyn Control) -> Result<ChunkData> {
        let s = self.s;
        let (w, h) = (self.tile.width() as usize, self.tile.height() as usize);
        let (k, n) = (self.planes.len(), 3 * w * h);
        let device = s.model.device();
        let done = |planes: Vec<Vec<f32>>, on_device: Option<Tensor>| ChunkData {
            first: self.first,
            rect: *self.tile,
            planes,
            on_device,
        };
        // 1. Start levels: the footage's own noise raised by Strength.
        let (footage, starts): (Vec<f32>, Vec<f32>) =
            self.params.iter().map(|p| p.levels(s.render_scale)).unzip();
        if starts.iter().all(|&v| v == 0.0) {
            return Ok(match self.planes {
                Sources::Host(p) => done(p.to_vec(), None),
                Sources::Device(p) => done(Vec::new(), Some(Tensor::stack(p, 0)?)),
            });
        }
        // 2. Network input: in-range part of the source plus frame-anchored extra noise.
        let extra = |i: usize| {
            (starts[i] * starts[i] - footage[i] * footage[i])
                .max(0.0)
                .sqrt()
        };
        let noise = |i: usize, buf: &mut Vec<f32>| {
            fill_planar(
                s.seed,
                self.first + i as i64,
                STEP_INIT,
                self.tile.x0,
                self.tile.y0,
                w,
                h,
                3,
                buf,
            )
        };
        let mut buf = vec![0f32; n];
        let x = match self.planes {
            Sources::Host(planes) => {
                let mut x = Vec::with_capacity(k * n);
                for (i, plane) in planes.iter().enumerate() {
                    let at = x.len();
                    x.extend(plane.iter().map(|v| v.clamp(MODEL_LO, MODEL_HI)));
                    if extra(i) > 0.0 {
                        noise(i, &mut buf);
                        x[at..]
                            .iter_mut()
                            .zip(&buf)
                            .for_each(|(v, z)| *v += extra(i) * z);
                    }
                }
                Tensor::from_vec(x, (k, 3, h, w), device)?
            }
            Sources::Device(planes) => {
                let mut x = Vec::with_capacity(k);
                for (i, plane) in planes.iter().enumerate() {
                    let mut v = plane.clamp(MODEL_LO, MODEL_HI)?;
                    if extra(i) > 0.0 {
                        noise(i, &mut buf);
                        let z = Tensor::from_slice(&buf, (3, h, w), device)?;
                        v = (v + (z * extra(i) as f64)?)?;
                    }
                    x.push(v);
                }
                Tensor::stack(&x, 0)?
            }
        };
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

        // 4. Untouched frames stay bit-exact; others get their out-of-range part back.
        Ok(match self.planes {
            Sources::Host(planes) => {
                let out: Vec<f32> = out.flatten_all()?.to_vec1()?;
                let planes = planes
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
                done(planes, None)
            }
            Sources::Device(planes) => {
                let out = out.to_dtype(DType::F32)?;
                let frames = planes
                    .iter()
                    .enumerate()
                    .map(|(i, src)| {
                        if starts[i] == 0.0 {
                            return Ok(src.clone());
                        }
                        let beyond = (src - src.clamp(MODEL_LO, MODEL_HI)?)?;
                        Ok((out.get(i)? + beyond)?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                done(Vec::new(), Some(Tensor::stack(&frames, 0)?))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_sees_a_one_step_change_of_any_value() {
        let (h, w) = (40, 56);
        let v: Vec<f32> = (0..3 * h * w)
            .map(|i| 0.5 + 0.4 * ((i as f32) * 0.37).sin())
            .collect();
        let one = |t: Tensor| fingerprints(&[t]).map(|f| f[0]);
        let of = |v: &[f32]| one(Tensor::from_slice(v, (3, h, w), &Device::Cpu).unwrap());
        let base = of(&v).unwrap();
        assert_eq!(
            of(&v).unwrap(),
            base,
            "the same plane, the same fingerprint"
        );
        for i in [0, 1, 777, w, 3 * h * w / 2, 3 * h * w - 1] {
            let mut e = v.clone();
            e[i] = f32::from_bits(e[i].to_bits() + 1);
            assert_ne!(of(&e).unwrap(), base, "value {i} moved one step");
        }
        // Two values swapped: the same sum, another plane.
        let mut e = v.clone();
        e.swap(10, 11);
        assert_ne!(of(&e).unwrap(), base);
        // The same values in another shape.
        let other = one(Tensor::from_slice(&v, (3, w, h), &Device::Cpu).unwrap());
        assert_ne!(other.unwrap(), base);
        // Planes taken together get the fingerprints each gets alone, whatever their shapes.
        let planes = [
            Tensor::from_slice(&v, (3, h, w), &Device::Cpu).unwrap(),
            Tensor::from_slice(&e, (3, h, w), &Device::Cpu).unwrap(),
            Tensor::from_slice(&v, (3, w, h), &Device::Cpu).unwrap(),
        ];
        let alone: Vec<_> = planes.iter().map(|p| one(p.clone()).unwrap()).collect();
        assert_eq!(fingerprints(&planes[..2]).unwrap(), alone[..2]);
        assert_eq!(fingerprints(&planes).unwrap(), alone);
    }
}

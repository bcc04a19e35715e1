//! The Render action: parameters at t, the source window of frames through the engine, the result
//! written into the output window. Everything runs on the host's thread: the engine calls back
//! for source frames, parameters, progress and abort through `HostFrames` and `HostControl`.
use std::cell::Cell;

use super::actions::{effect, effective_radius, in_args, shot_of};
use super::adapt::{render_scale, rod_pixels, time, HostFrames};
use super::coords::{frame_of, to_canonical};
use super::messages;
use super::params;
use super::pixels::write_window;
use super::{OUTPUT, SOURCE};
use crate::engine::{self, sanitize, Control, Frames, Rect, Request, RgbImage, Settings};
use crate::ofx::effect_consts::kOfxImageEffectPropRenderWindow;
use crate::ofx::pixels::Components;
use crate::ofx::{Call, ImageEffect, Memory, Reply};
use crate::{Error, Result};

pub fn render(call: &Call<'_>) -> Result<Reply> {
    let fx = effect(call)?;
    match render_frame(&fx, call) {
        Ok(Outcome::Rendered) => {
            messages::clear(&fx);
            Ok(Reply::Ok)
        }
        Ok(Outcome::PassedThrough(e)) => {
            log::warn!("{e}: the frame passes through unchanged");
            messages::report(&fx, &e);
            Ok(Reply::Ok)
        }
        Err(e) => {
            // An aborted render (or a fetch failing because of it) is not the user's problem.
            if !matches!(e, Error::Aborted) && !fx.aborted() {
                messages::report(&fx, &e);
            }
            Err(e)
        }
    }
}

/// How a render call ended, when it wrote the output.
enum Outcome {
    Rendered,
    /// The model could not be loaded (a missing or broken Model File): the source was copied
    /// to the output so that a batch render finishes, and the error is shown on the instance.
    /// NOTE: Natron abandons the whole render when one frame fails, and MLT passes a failed
    /// frame through by itself: passing through here gives every host the same result.
    PassedThrough(Error),
}

fn render_frame(fx: &ImageEffect<'_>, call: &Call<'_>) -> Result<Outcome> {
    #[cfg(feature = "cuda")]
    let _context = crate::ofx::cuda::KeepContext::save();
    let args = in_args(call)?;
    let t = time(Some(&args))?;
    let frame = frame_of(t);
    let scale = render_scale(Some(&args));
    let [x1, y1, x2, y2] = args.ints::<4>(kOfxImageEffectPropRenderWindow)?;
    let window = Rect::new(x1 as i64, y1 as i64, x2 as i64, y2 as i64);
    if window.is_empty() {
        // Nothing to write: fetch nothing (a host may refuse an empty region, and the spec
        // treats a failed fetch as black, not as the user's problem).
        return Ok(Outcome::Rendered);
    }

    // Read before anything is fetched: a CUDA render's images must not be read on the CPU.
    let memory = Memory::of_render(&args)?;
    let set = fx.params()?;
    let source = fx.clip(SOURCE)?.in_memory(memory);
    let output = fx.clip(OUTPUT)?.in_memory(memory);
    let rp = params::render_params(&set, t)?;
    let frames = HostFrames {
        source,
        params: set,
        scale,
        fallback: rp.frame,
    };

    let connected = source.connected();
    let pass_through = |bounds: Rect| -> Result<RgbImage> {
        let mut img = frames.fetch(frame, window.intersect(&bounds))?;
        img.data.iter_mut().for_each(|v| *v = sanitize(*v));
        Ok(img)
    };
    let mut outcome = Outcome::Rendered;
    let rgb = if !connected {
        // General context without an input: transparent black.
        RgbImage::new(Rect::default())
    } else if engine::is_identity(&rp.frame) {
        // Pass-through: no model needed (a bad Model File does not matter here).
        pass_through(rod_pixels(&source, t, scale)?)?
    } else {
        let radius = effective_radius(fx, rp.radius);
        if radius < rp.radius {
            messages::note_no_temporal_access(fx);
        }
        let bounds = rod_pixels(&source, t, scale)?;
        match crate::model::registry::get(&rp.model, rp.device) {
            Err(e @ Error::Model { .. }) => {
                outcome = Outcome::PassedThrough(e);
                pass_through(bounds)?
            }
            model => {
                let settings = Settings {
                    model: model?,
                    sampler: rp.sampler,
                    steps: rp.steps,
                    seed: rp.seed,
                    radius,
                    tile_size: rp.tile_size,
                    render_scale: scale.0,
                    clipping: rp.clipping,
                };
                let req = Request {
                    t: frame,
                    window,
                    bounds,
                    shot: shot_of(fx, &source),
                    settings,
                };
                #[cfg(feature = "cuda")]
                if render_on_device(fx, &frames, &req, t, memory)? {
                    return Ok(outcome);
                }
                run_engine(fx, &frames, &req)?
            }
        }
    };

    // Alpha comes from the source at the same pixel; fetch it only when the output has alpha.
    let mut out = output.image(t, None)?;
    let alpha = match out.layout().components {
        Components::Rgba if connected => Some(source.image(
            t,
            Some(to_canonical(window, scale, source.pixel_aspect_ratio())),
        )?),
        _ => None,
    };
    let alpha_read = alpha.as_ref().map(|a| a.read(window)).transpose()?;
    let alpha_px = alpha_read.as_ref().map(|a| a.pixels()).transpose()?;
    out.write(window, |dst| write_window(dst, &rgb, alpha_px.as_ref()))?;
    Ok(outcome)
}

/// Ends the progress bar on every path.
struct ProgressBar<'a>(Option<ImageEffect<'a>>);

impl Drop for ProgressBar<'_> {
    fn drop(&mut self) {
        if let Some(fx) = &self.0 {
            fx.progress_end();
        }
    }
}

/// Progress and abort through the host; a progress update the host refuses cancels the render.
struct HostControl<'a> {
    fx: ImageEffect<'a>,
    bar: bool,
    cancelled: Cell<bool>,
}

impl Control for HostControl<'_> {
    fn progress(&self, fraction: f64) {
        if self.bar && !self.fx.progress_update(fraction) {
            self.cancelled.set(true);
        }
    }

    fn aborted(&self) -> bool {
        self.cancelled.get() || self.fx.aborted()
    }
}

/// Runs `engine::render` with the host's frames, progress bar and abort test.
fn run_engine(fx: &ImageEffect<'_>, frames: &HostFrames<'_>, req: &Request) -> Result<RgbImage> {
    with_control(fx, |ctrl| engine::render(req, frames, ctrl))
}

/// Runs `f` under the host's progress bar and abort test.
fn with_control<R>(
    fx: &ImageEffect<'_>,
    f: impl FnOnce(&HostControl<'_>) -> Result<R>,
) -> Result<R> {
    let bar = ProgressBar(fx.progress_start("Video Diffusion").then_some(*fx));
    let ctrl = HostControl {
        fx: *fx,
        bar: bar.0.is_some(),
        cancelled: Cell::new(false),
    };
    f(&ctrl)
}

/// A CUDA render whose model is on CUDA, with float images and a window inside the source:
/// rendered on the device (`engine::render_resident`) and written into the output image device
/// to device, so the frames never pass through host memory. False where that does not apply;
/// the render then goes through host memory.
#[cfg(feature = "cuda")]
fn render_on_device(
    fx: &ImageEffect<'_>,
    frames: &HostFrames<'_>,
    req: &Request,
    t: f64,
    memory: Memory,
) -> Result<bool> {
    use crate::ofx::pixels::Depth;
    let device = req.settings.model.device();
    let window = req.window;
    if memory == Memory::Host
        || !engine::keeps_frames_on(device)
        || window.intersect(&req.bounds) != window
    {
        return Ok(false);
    }
    let mut out = fx.clip(OUTPUT)?.in_memory(memory).image(t, None)?;
    if out.layout().depth != Depth::Float {
        return Ok(false);
    }
    let rgb = with_control(fx, |ctrl| {
        engine::render_resident(engine::global_cache(), req, frames, ctrl)
    })?;
    let pixels = match out.layout().components {
        Components::Rgb => rgb,
        Components::Rgba => {
            let alpha = source_alpha_on(frames, window, t, device)?;
            candle_core::Tensor::cat(&[&rgb, &alpha], 2)?
        }
    };
    // As `write_window` writes floats: nothing non-finite (NaN 0, infinities the largest finite).
    let finite = pixels
        .eq(&pixels)?
        .where_cond(&pixels, &pixels.zeros_like()?)?
        .clamp(f32::MIN, f32::MAX)?;
    out.write_tensor(window, &finite)
}

/// The source's alpha over `window` as [h, w, 1] on `device`, as `write_window` takes it: the
/// source's own (non-finite: 0), or 1 for an RGB source; device to device from a float CUDA
/// image, else read through host memory.
#[cfg(feature = "cuda")]
fn source_alpha_on(
    frames: &HostFrames<'_>,
    window: Rect,
    t: f64,
    device: &candle_core::Device,
) -> Result<candle_core::Tensor> {
    let src = &frames.source;
    let img = src.image(
        t,
        Some(to_canonical(window, frames.scale, src.pixel_aspect_ratio())),
    )?;
    let (w, h) = (window.width() as usize, window.height() as usize);
    if let Some(px) = img.to_tensor(window, device)? {
        return Ok(match px.dim(2)? {
            4 => {
                let a = px.narrow(2, 3, 1)?;
                let finite = a.eq(&a)?.mul(&a.abs()?.le(f32::MAX)?)?;
                finite.where_cond(&a, &a.zeros_like()?)?
            }
            _ => candle_core::Tensor::ones((h, w, 1), candle_core::DType::F32, device)?,
        });
    }
    let read = img.read(window)?;
    let px = read.pixels()?;
    let mut alpha = Vec::with_capacity(w * h);
    for y in window.y0..window.y1 {
        for x in window.x0..window.x1 {
            alpha.push(super::pixels::source_alpha(Some(&px), x, y));
        }
    }
    Ok(candle_core::Tensor::from_vec(alpha, (h, w, 1), device)?)
}

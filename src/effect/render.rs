//! The Render action: parameters at t, the source window of frames through the engine, the result
//! written into the output window. The engine runs on a helper thread while this (the host's)
//! thread serves its host calls, so every host call is made on a thread the host called us on.
use std::sync::mpsc::{channel, sync_channel, Sender, SyncSender};

use super::actions::{effective_radius, shot_of};
use super::adapt::{render_scale, rod_pixels, time, HostFrames};
use super::coords::{frame_of, to_canonical};
use super::messages;
use super::params;
use super::pixels::write_window;
use super::{OUTPUT, SOURCE};
use crate::engine::{
    self, sanitize, Control, FrameParams, Frames, Rect, Request, RgbImage, Settings,
};
use crate::ofx::effect_consts::kOfxImageEffectPropRenderWindow;
use crate::ofx::pixels::Components;
use crate::ofx::{Call, ImageEffect, Reply};
use crate::{Error, Result};

pub fn render(call: &Call<'_>) -> Result<Reply> {
    let fx = call
        .effect
        .ok_or_else(|| Error::Other("Render without an effect handle".into()))?;
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
    let args = call
        .in_args
        .ok_or_else(|| Error::Other("Render without arguments".into()))?;
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

    let set = fx.params()?;
    let source = fx.clip(SOURCE)?;
    let output = fx.clip(OUTPUT)?;
    let rp = params::render_params(&set, t)?;
    let frames = HostFrames {
        source,
        params: set,
        scale,
        fallback: rp.frame,
    };

    let connected = source.connected();
    let pass_through = || -> Result<RgbImage> {
        let bounds = rod_pixels(&source, t, scale)?;
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
        pass_through()?
    } else {
        let radius = effective_radius(fx, rp.radius);
        if radius < rp.radius {
            messages::note_no_temporal_access(fx);
        }
        let bounds = rod_pixels(&source, t, scale)?;
        match crate::model::registry::get(&rp.model, rp.device) {
            Err(e @ Error::Model { .. }) => {
                outcome = Outcome::PassedThrough(e);
                pass_through()?
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
    let alpha_px = alpha.as_ref().map(|a| a.pixels()).transpose()?;
    let mut dst = out.pixels_mut(window);
    write_window(&mut dst, &rgb, alpha_px.as_ref());
    Ok(outcome)
}

/// A host call the engine thread asks the host thread to make.
enum HostCall {
    Fetch(i64, Rect, SyncSender<Result<RgbImage>>),
    Params(i64, SyncSender<FrameParams>),
    Progress(f64),
    Aborted(SyncSender<bool>),
}

/// The engine's view of the host, from its own thread: every call is a message.
struct Proxy {
    tx: Sender<HostCall>,
}

fn gone() -> Error {
    Error::Other("the render was stopped on the host's side".into())
}

impl Frames for Proxy {
    fn fetch(&self, t: i64, rect: Rect) -> Result<RgbImage> {
        let (reply, answer) = sync_channel(1);
        self.tx
            .send(HostCall::Fetch(t, rect, reply))
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    fn params(&self, t: i64) -> FrameParams {
        let (reply, answer) = sync_channel(1);
        // If the host side has gone, the render is ending anyway: defaults are never used.
        if self.tx.send(HostCall::Params(t, reply)).is_err() {
            return FrameParams::default();
        }
        answer.recv().unwrap_or_default()
    }
}

impl Control for Proxy {
    fn progress(&self, fraction: f64) {
        // Fire and forget: a vanished host side shows up at the next fetch or abort test.
        drop(self.tx.send(HostCall::Progress(fraction)));
    }

    fn aborted(&self) -> bool {
        let (reply, answer) = sync_channel(1);
        if self.tx.send(HostCall::Aborted(reply)).is_err() {
            return true;
        }
        answer.recv().unwrap_or(true)
    }
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

/// Stack for the engine thread: candle's kernels recurse little, but the default 2 MiB of a
/// spawned thread is less than a host's render thread usually has.
const ENGINE_STACK: usize = 16 << 20;

/// Runs `engine::render` on a helper thread and serves its host calls here.
fn run_engine(fx: &ImageEffect<'_>, frames: &HostFrames<'_>, req: &Request) -> Result<RgbImage> {
    let bar = ProgressBar(fx.progress_start("Video Diffusion").then_some(*fx));
    let mut cancelled = false;
    let (tx, rx) = channel::<HostCall>();
    std::thread::scope(|s| {
        let proxy = Proxy { tx };
        let worker = std::thread::Builder::new()
            .name("vdiff-render".into())
            .stack_size(ENGINE_STACK)
            .spawn_scoped(s, move || engine::render(req, &proxy, &proxy))
            .map_err(|e| Error::io("starting the render thread", e))?;
        // Ends when the worker drops the proxy, i.e. when the engine is done.
        for call in rx {
            match call {
                HostCall::Fetch(t, rect, reply) => drop(reply.send(frames.fetch(t, rect))),
                HostCall::Params(t, reply) => drop(reply.send(frames.params(t))),
                HostCall::Progress(f) => {
                    if bar.0.is_some() && !fx.progress_update(f) {
                        cancelled = true;
                    }
                }
                HostCall::Aborted(reply) => drop(reply.send(cancelled || fx.aborted())),
            }
        }
        match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

//! Adapters from the host's views to what `params` and the engine read: parameter values from
//! the host's parameter set, and source frames fetched (and released at once) from the Source clip.
use std::ffi::CStr;

use super::coords::{to_canonical, to_pixels, RectD};
use super::params::{self, ParamValues};
use super::pixels::read_rgb;
use crate::engine::{FrameParams, Frames, Rect, RgbImage};
use crate::ofx::core_consts::kOfxPropTime;
use crate::ofx::effect_consts::kOfxImageEffectPropRenderScale;
use crate::ofx::{Clip, ParamSet, PropSet};
use crate::{Error, Result};

impl ParamValues for ParamSet<'_> {
    fn double(&self, id: &'static CStr, t: f64) -> Result<f64> {
        self.param(id)?.double_at(t)
    }
    fn int(&self, id: &'static CStr, t: f64) -> Result<i32> {
        self.param(id)?.int_at(t)
    }
    fn string(&self, id: &'static CStr) -> Result<String> {
        self.param(id)?.string()
    }
}

/// The time argument of an action.
pub fn time(args: Option<&PropSet<'_>>) -> Result<f64> {
    let args = args.ok_or_else(|| Error::Host("the host passed no arguments".into()))?;
    let t = args.double(kOfxPropTime, 0)?;
    if t.is_finite() {
        Ok(t)
    } else {
        Err(Error::Host(format!("the host passed time {t}")))
    }
}

/// The render scale argument (x, y); 1 where the host gives none.
pub fn render_scale(args: Option<&PropSet<'_>>) -> (f64, f64) {
    args.and_then(|a| a.doubles::<2>(kOfxImageEffectPropRenderScale).ok())
        .map(|[x, y]| (x, y))
        .filter(|&(x, y)| x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0)
        .unwrap_or((1.0, 1.0))
}

/// Region of definition of a clip at t, in pixels at `scale`.
pub fn rod_pixels(clip: &Clip<'_>, t: f64, scale: (f64, f64)) -> Result<Rect> {
    Ok(to_pixels(
        clip.region_of_definition(t)?,
        scale,
        clip.pixel_aspect_ratio(),
    ))
}

/// Source frames and per-frame parameters of one render, read on the host's thread.
pub struct HostFrames<'a> {
    pub source: Clip<'a>,
    pub params: ParamSet<'a>,
    pub scale: (f64, f64),
    /// Values at the rendered frame, used for a frame whose parameters cannot be read.
    pub fallback: FrameParams,
}

impl HostFrames<'_> {
    /// The source image of frame t that covers `rect` (pixels at the render scale).
    fn source_image(&self, t: i64, rect: Rect) -> Result<crate::ofx::Image<'_>> {
        let region: RectD = to_canonical(rect, self.scale, self.source.pixel_aspect_ratio());
        self.source.image(t as f64, Some(region))
    }
}

impl Frames for HostFrames<'_> {
    /// Source pixels of frame t over `rect` (pixels at the render scale). The host image is
    /// released before returning; in a CUDA render only `rect` is copied from the device.
    fn fetch(&self, t: i64, rect: Rect) -> Result<RgbImage> {
        let img = self.source_image(t, rect)?;
        Ok(read_rgb(&img.read(rect)?.pixels()?, rect))
    }

    /// In a CUDA render with the model on CUDA, a float source goes device to device;
    /// anything else is read as `fetch` reads it and copied to the device.
    fn fetch_on(
        &self,
        t: i64,
        rect: Rect,
        device: &candle_core::Device,
    ) -> Result<candle_core::Tensor> {
        let img = self.source_image(t, rect)?;
        #[cfg(feature = "cuda")]
        if let Some(px) = img.to_tensor(rect, device)? {
            return Ok(px.narrow(2, 0, 3)?.contiguous()?);
        }
        let rgb = read_rgb(&img.read(rect)?.pixels()?, rect);
        let (w, h) = (rect.width() as usize, rect.height() as usize);
        Ok(candle_core::Tensor::from_vec(rgb.data, (h, w, 3), device)?)
    }

    fn params(&self, t: i64) -> FrameParams {
        params::frame_params(&self.params, t as f64).unwrap_or_else(|e| {
            log::warn!(
                "parameters at frame {t} unreadable ({e}); using those of the rendered frame"
            );
            self.fallback
        })
    }
}

//! The instance actions other than Render: lifecycle, regions, frames, clip preferences,
//! identity, and parameter changes (Analyze Noise, Clear Cache, model validation).
use std::ffi::CString;

use super::adapt::{render_scale, rod_pixels, time};
use super::coords::{frame_of, shot, to_canonical, to_pixels};
use super::messages::{self, Instance};
use super::params::{self, ids};
use super::pixels::read_rgb;
use super::{OUTPUT, SOURCE};
use crate::engine::{self, sanitize};
use crate::ofx::core_consts::*;
use crate::ofx::effect_consts::*;
use crate::ofx::param_consts::kOfxTypeParameter;
use crate::ofx::pixels::Components;
use crate::ofx::{Call, Clip, ImageEffect, MessageKind, PropSet, Reply};
use crate::{Error, Result};

/// The action's effect handle (every action but Load and Unload has one).
pub(super) fn effect<'a>(call: &Call<'a>) -> Result<ImageEffect<'a>> {
    call.effect.ok_or_else(|| {
        Error::Host(format!(
            "{} without an effect handle",
            call.name.to_string_lossy()
        ))
    })
}

/// The action's input arguments, for the actions that must have them.
pub(super) fn in_args<'a>(call: &Call<'a>) -> Result<PropSet<'a>> {
    call.in_args
        .ok_or_else(|| Error::Host(format!("{} without arguments", call.name.to_string_lossy())))
}

fn out_args<'a>(call: &Call<'a>) -> Result<PropSet<'a>> {
    call.out_args.ok_or_else(|| {
        Error::Host(format!(
            "{} without output arguments",
            call.name.to_string_lossy()
        ))
    })
}

/// The property carrying a per-clip value in an action's arguments (`<prefix>Source`).
fn clip_prop(prefix: &str, clip: &std::ffi::CStr) -> Result<CString> {
    CString::new(format!("{prefix}{}", clip.to_string_lossy()))
        .map_err(|_| Error::Internal("clip name with a NUL byte".into()))
}

pub fn load(call: &Call<'_>) -> Result<Reply> {
    crate::logging::init();
    let host = call.host;
    log::info!(
        "loaded by {} (temporal clip access: {}, persistent messages: {})",
        host.name(),
        host.temporal_clip_access(),
        host.has_persistent_messages()
    );
    Ok(Reply::Ok)
}

pub fn create_instance(call: &Call<'_>) -> Result<Reply> {
    effect(call)?.set_instance_data(Instance::default())?;
    Ok(Reply::Ok)
}

pub fn destroy_instance(call: &Call<'_>) -> Result<Reply> {
    effect(call)?.free_instance_data()?;
    Ok(Reply::Ok)
}

/// The output covers what the source covers.
pub fn region_of_definition(call: &Call<'_>) -> Result<Reply> {
    let fx = effect(call)?;
    let t = time(call.in_args.as_ref())?;
    let src = fx.clip(SOURCE)?;
    if !src.connected() {
        return Ok(Reply::Default);
    }
    let rod = src.region_of_definition(t)?;
    out_args(call)?.set_doubles(kOfxImageEffectPropRegionOfDefinition, &rod)?;
    Ok(Reply::Ok)
}

/// The source region the tiles of the asked window read (tiles overlap, so it is larger).
pub fn regions_of_interest(call: &Call<'_>) -> Result<Reply> {
    let fx = effect(call)?;
    let args = in_args(call)?;
    let t = time(Some(&args))?;
    let scale = render_scale(Some(&args));
    let src = fx.clip(SOURCE)?;
    if !src.connected() {
        return Ok(Reply::Default);
    }
    let par = src.pixel_aspect_ratio();
    let roi = args.doubles::<4>(kOfxImageEffectPropRegionOfInterest)?;
    let window = to_pixels(roi, scale, par);
    let bounds = rod_pixels(&src, t, scale)?;
    let tile = params::int_at(&fx.params()?, ids::TILE_SIZE, t)? as u32;
    let need = engine::region_needed(window, bounds, tile);
    let need = if need.is_empty() { window } else { need };
    out_args(call)?.set_doubles(
        &clip_prop("OfxImageClipPropRoI_", SOURCE)?,
        &to_canonical(need, scale, par),
    )?;
    Ok(Reply::Ok)
}

/// Temporal radius at t, zero where the host cannot give other frames.
pub(super) fn effective_radius(fx: &ImageEffect<'_>, radius: u32) -> u32 {
    if fx.host().temporal_clip_access() {
        radius
    } else {
        0
    }
}

/// The shot: the source clip's frame range, else the effect's.
pub fn shot_of(fx: &ImageEffect<'_>, src: &Clip<'_>) -> engine::Shot {
    let effect_range = fx
        .props()
        .ok()
        .and_then(|p| p.doubles::<2>(kOfxImageEffectPropFrameRange).ok())
        .map(|[a, b]| (a, b));
    shot(src.frame_range(), effect_range)
}

pub fn frames_needed(call: &Call<'_>) -> Result<Reply> {
    let fx = effect(call)?;
    let t = time(call.in_args.as_ref())?;
    let src = fx.clip(SOURCE)?;
    let radius = params::int_at(&fx.params()?, ids::TEMPORAL_RADIUS, t)? as u32;
    let (a, b) = engine::frames_needed(
        frame_of(t),
        effective_radius(&fx, radius),
        shot_of(&fx, &src),
    );
    out_args(call)?.set_doubles(
        &clip_prop("OfxImageClipPropFrameRange_", SOURCE)?,
        &[a as f64, b as f64],
    )?;
    Ok(Reply::Ok)
}

/// Output components follow the source's (RGBA or RGB, and only what the host supports; an
/// Alpha-only source is asked as RGBA); the depth follows by the host's mapping (one depth for
/// all clips); so does premultiplication.
pub fn clip_preferences(call: &Call<'_>) -> Result<Reply> {
    let fx = effect(call)?;
    let src = fx.clip(SOURCE)?;
    let out = out_args(call)?;
    let upstream = src
        .props()
        .string(kOfxImageClipPropUnmappedComponents, 0)
        .ok();
    let wanted = upstream
        .as_deref()
        .and_then(|s| Components::from_ofx(s).ok())
        .or_else(|| src.components().ok())
        .unwrap_or(Components::Rgba);
    let host_comps = call
        .host
        .props()
        .and_then(|p| p.strings(kOfxImageEffectPropSupportedComponents).ok())
        .filter(|v| !v.is_empty());
    let supported = |c: Components| {
        host_comps
            .as_ref()
            .is_none_or(|v| v.iter().any(|s| s.as_bytes() == c.ofx_name().to_bytes()))
    };
    let Some(comps) = [wanted, Components::Rgba, Components::Rgb]
        .into_iter()
        .find(|&c| supported(c))
    else {
        return Ok(Reply::Default);
    };
    let name = comps.ofx_name().to_string_lossy();
    out.set_string(&clip_prop("OfxImageClipPropComponents_", SOURCE)?, 0, &name)?;
    out.set_string(&clip_prop("OfxImageClipPropComponents_", OUTPUT)?, 0, &name)?;
    if let Some(pm) = src.premultiplication() {
        if let Err(e) = out.set_string(kOfxImageEffectPropPreMultiplication, 0, &pm) {
            log::debug!("clip preferences: premultiplication not set: {e}");
        }
    }
    Ok(Reply::Ok)
}

pub fn is_identity(call: &Call<'_>) -> Result<Reply> {
    let fx = effect(call)?;
    let t = time(call.in_args.as_ref())?;
    let p = params::frame_params(&fx.params()?, t)?;
    if !engine::is_identity(&p) {
        return Ok(Reply::Default);
    }
    let out = out_args(call)?;
    out.set_string(kOfxPropName, 0, &SOURCE.to_string_lossy())?;
    out.set_double(kOfxPropTime, 0, t)?;
    Ok(Reply::Ok)
}

pub fn instance_changed(call: &Call<'_>) -> Result<Reply> {
    let fx = effect(call)?;
    let args = in_args(call)?;
    if args.string(kOfxPropType, 0)?.as_bytes() != kOfxTypeParameter.to_bytes() {
        return Ok(Reply::Default);
    }
    let name = args.string(kOfxPropName, 0)?;
    let t = args
        .double(kOfxPropTime, 0)
        .ok()
        .filter(|t| t.is_finite())
        .unwrap_or(0.0);
    match name.as_bytes() {
        n if n == ids::ANALYZE_NOISE.to_bytes() => {
            analyze_noise(&fx, t, render_scale(Some(&args))).inspect_err(|e| {
                // A button press deserves an answer, not only a status code.
                let text = format!("Analyze Noise: {e}");
                fx.message(
                    MessageKind::Error,
                    "net.vdiff.VideoDiffusion.analyze",
                    &text,
                );
            })
        }
        n if n == ids::CLEAR_CACHE.to_bytes() => {
            engine::purge_caches();
            Ok(Reply::Ok)
        }
        n if n == ids::MODEL_FILE.to_bytes() || n == ids::DEVICE.to_bytes() => {
            validate_model(&fx, t)?;
            Ok(Reply::Ok)
        }
        _ => Ok(Reply::Default),
    }
}

/// Measures the source's noise at t and sets Noise Level (a key at t when it is animated).
fn analyze_noise(fx: &ImageEffect<'_>, t: f64, scale: (f64, f64)) -> Result<Reply> {
    let src = fx.clip(SOURCE)?;
    if !src.connected() {
        return Err(Error::param("Source", "connect a source clip first"));
    }
    let rod = rod_pixels(&src, t, scale)?;
    let mut rgb = {
        let img = src.image(t, None)?;
        let px = img.pixels()?;
        let bounds = px.layout().bounds;
        let rect = if rod.is_empty() {
            bounds
        } else {
            rod.intersect(&bounds)
        };
        read_rgb(&px, rect)
    };
    rgb.data.iter_mut().for_each(|v| *v = sanitize(*v));
    // The engine scales Noise Level by the render scale (a proxy image is less noisy), so a
    // measurement at a proxy scale is brought back to full-resolution units.
    let measured = engine::estimate_noise(&rgb) as f64 / scale.0;
    let value = if measured.is_finite() {
        measured.clamp(0.0, 0.5)
    } else {
        0.0
    };
    let set = fx.params()?;
    let p = set.param(ids::NOISE_LEVEL)?;
    set.edit_begin("Analyze Noise");
    let r = if p.num_keys() > 0 {
        p.set_double_at(t, value)
    } else {
        p.set_double(value)
    };
    set.edit_end();
    r?;
    log::info!("Analyze Noise at frame {t}: noise level {value:.4}");
    Ok(Reply::Ok)
}

/// Loads the chosen model at once, so a bad Model File is reported when it is set, not at the
/// next render; the message is cleared once the setting works.
fn validate_model(fx: &ImageEffect<'_>, t: f64) -> Result<()> {
    let set = fx.params()?;
    let (source, device) = (params::model_source(&set)?, params::device_choice(&set, t)?);
    match crate::model::registry::get(&source, device) {
        Ok(_) => messages::clear(fx),
        Err(e) => {
            log::warn!("{e}");
            messages::report(fx, &e);
        }
    }
    Ok(())
}

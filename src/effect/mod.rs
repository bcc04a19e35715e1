//! The "Video Diffusion" image effect: its identity, the action dispatch, and everything between
//! the host's safe views (`ofx`) and the host-agnostic `engine`. No unsafe code and no raw handle
//! here; `RenderParams` is the plain snapshot the engine is fed with.
mod actions;
mod adapt;
pub mod coords;
mod describe;
mod messages;
pub mod params;
pub mod pixels;
mod render;

use std::ffi::{c_uint, CStr};

use crate::ofx::entry::OfxEffect;
use crate::ofx::{Action, Call, EffectError, Failure, Reply};
use crate::{Error, Result};

/// Reverse-domain identifier (MLT names the filter `openfx.net.vdiff.VideoDiffusion`).
pub const IDENTIFIER: &CStr = c"net.vdiff.VideoDiffusion";
pub const VERSION_MAJOR: c_uint = 1;
pub const VERSION_MINOR: c_uint = 0;
pub const LABEL: &str = "Video Diffusion";
pub const GROUPING: &str = "Filter";
pub const DESCRIPTION: &str =
    "Temporally consistent video diffusion: denoises footage (Strength 0) \
or re-generates detail (Strength up to 1) with a small video diffusion model that sees several \
frames at once, so results do not flicker. Renders are deterministic for a given Seed.";

/// Clip names (OFX standard names for a filter).
pub const SOURCE: &CStr = c"Source";
pub const OUTPUT: &CStr = c"Output";

/// Runs one action. Unknown actions never get here (the entry point replies default).
/// The Video Diffusion effect, as the OFX wrapper exports it (see `lib.rs`).
pub struct VideoDiffusion;

impl OfxEffect for VideoDiffusion {
    const IDENTIFIER: &'static CStr = IDENTIFIER;
    const VERSION_MAJOR: c_uint = VERSION_MAJOR;
    const VERSION_MINOR: c_uint = VERSION_MINOR;
    type Error = Error;
    fn main_entry(call: &Call<'_>) -> Result<Reply> {
        main_entry(call)
    }
}

/// The library's errors as the OFX boundary reports them to the host.
impl EffectError for Error {
    fn failure(&self) -> Failure {
        match self {
            Error::Aborted => Failure::Aborted,
            Error::PixelFormat(_) => Failure::ImageFormat,
            Error::OutOfMemory(_) => Failure::Memory,
            _ => Failure::Failed,
        }
    }
}

pub fn main_entry(call: &Call<'_>) -> Result<Reply> {
    match call.action {
        Action::Load => actions::load(call),
        Action::Unload => Ok(Reply::Ok),
        Action::Describe => describe::describe(call),
        Action::DescribeInContext => describe::describe_in_context(call),
        Action::CreateInstance => actions::create_instance(call),
        Action::DestroyInstance => actions::destroy_instance(call),
        Action::PurgeCaches => {
            crate::engine::purge_caches();
            Ok(Reply::Ok)
        }
        Action::InstanceChanged => actions::instance_changed(call),
        Action::GetRegionOfDefinition => actions::region_of_definition(call),
        Action::GetRegionsOfInterest => actions::regions_of_interest(call),
        Action::GetFramesNeeded => actions::frames_needed(call),
        Action::GetClipPreferences => actions::clip_preferences(call),
        Action::IsIdentity => actions::is_identity(call),
        Action::Render => render::render(call),
        // Nothing to set up: the chunk cache and model registry are process-wide and lazy.
        Action::BeginSequenceRender | Action::EndSequenceRender => Ok(Reply::Ok),
        Action::Other => Ok(Reply::Default),
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn errors_are_classified_for_the_host() {
        assert_eq!(Error::Aborted.failure(), Failure::Aborted);
        assert_eq!(
            Error::model("/m.safetensors", "missing").failure(),
            Failure::Failed
        );
        assert_eq!(
            Error::PixelFormat("Alpha".into()).failure(),
            Failure::ImageFormat
        );
        assert_eq!(Error::image("frame 3", "short").failure(), Failure::Failed);
        let oom = candle_core::Error::Msg("CUDA_ERROR_OUT_OF_MEMORY".into());
        assert_eq!(Error::from(oom).failure(), Failure::Memory);
        let other = candle_core::Error::Msg("shape mismatch".into());
        assert_eq!(Error::from(other).failure(), Failure::Failed);
    }
}

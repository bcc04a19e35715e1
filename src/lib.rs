//! VDiff: a temporally consistent video-diffusion denoiser, packaged as an OpenFX image effect
//! (the cdylib, loaded by Natron, Resolve, Nuke and MLT) and as the `vdiff` command line (the rlib).
//!
//! Render path: `ofx` (host handles) -> `effect` (parameters, images) -> `engine` (chunks, tiles,
//! cache) -> `sampling` (schedules, samplers, frame-anchored noise) -> `model` (video UNet).
//! Nothing below `effect` sees an OFX handle; nothing in `ofx` knows about diffusion.
#![deny(unsafe_code)]

#[cfg(feature = "cli")]
pub mod bench;
#[cfg(feature = "cli")]
pub mod bundle;
pub mod effect;
pub mod engine;
pub mod error;
pub mod geometry;
#[cfg(feature = "cli")]
pub mod imageio;
pub mod keyframes;
pub mod logging;
#[cfg(feature = "cli")]
pub mod metrics;
pub mod model;
#[allow(unsafe_code)]
pub mod ofx;
pub mod params;
pub mod sampling;
#[cfg(feature = "cli")]
pub mod sequence;
#[cfg(feature = "cli")]
pub mod train;

pub use error::{Error, Result};

/// The plugin binary's two C symbols, `OfxGetNumberOfPlugins` and `OfxGetPlugin`, for the one
/// effect it holds (`#[no_mangle]` is what needs the allowance).
#[allow(unsafe_code)]
mod plugin_exports {
    crate::export_ofx_effect!(crate::effect::VideoDiffusion);
}
#[cfg(test)]
pub(crate) use plugin_exports::{OfxGetNumberOfPlugins, OfxGetPlugin};

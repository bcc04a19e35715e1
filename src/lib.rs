//! VDiff: a temporally consistent video-diffusion denoiser, packaged as an OpenFX image effect
//! (the cdylib, loaded by Natron, Resolve, Nuke and MLT) and as the `vdiff` command line (the rlib).
//!
//! Render path: `ofx` (host handles) -> `effect` (parameters, images) -> `engine` (chunks, tiles,
//! cache) -> `sampling` (schedules, samplers, frame-anchored noise) -> `model` (video UNet).
//! Nothing below `effect` sees an OFX handle; nothing in `ofx` knows about diffusion.
#![deny(unsafe_code)]

pub mod bench;
pub mod bundle;
pub mod effect;
pub mod engine;
pub mod error;
pub mod geometry;
pub mod imageio;
pub mod logging;
pub mod metrics;
pub mod model;
#[allow(unsafe_code)]
pub mod ofx;
pub mod sampling;
pub mod sequence;
pub mod train;

pub use error::{Error, Result};

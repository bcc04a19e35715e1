//! The denoising model at the bottom of the render path: a small video UNet (`unet`) wrapped in
//! EDM preconditioning (`precond`), its weights files (`io`), deterministic init for training
//! (`init`), device choice (`device`) and the process-wide cache of loaded models (`registry`).
//!
//! The network runs at 1/`unshuffle` resolution (pixel-unshuffle in, pixel-shuffle out), with
//! residual blocks at every level, temporal mixing between neighbouring frames and no
//! normalisation over space or time: an output pixel depends only on input pixels within
//! `UNetConfig::receptive_radius()`, so overlapping tiles agree. Tiles should start on multiples
//! of `UNetConfig::size_multiple()` so the strided layers see the same grid phase in every tile.
//!
//! Cost: on the CPU the network runs channels-last through fused im2col + gemm kernels
//! (`cpu_kernels`), chosen once when a model is loaded (`unet::Kernels`). The default config (pixel-unshuffle 2, four levels of 32/64/96/128 channels) costs
//! 71 GFLOP per megapixel-frame. On the 2-core development machine (release build, f32,
//! `vdiff bench`, idle machine) one model pass over a 1920x1080 frame in 512-pixel tiles
//! (temporal radius 0) takes 2.7 s, and a frame at one step and radius 2 5.0 s amortised over
//! an 8-frame shot (radius 4, the default now, about 12% more). The earlier default (unshuffle 4, 32/64/96 channels,
//! 17.7 GFLOP) was 4x cheaper but scored 3.9 dB lower at sigma 25 after three times the
//! training steps (resources/MODEL_CARD.md, "What was tried").
pub mod config;
mod conv;
mod cpu_kernels;
pub mod device;
pub mod init;
pub mod io;
pub mod precond;
pub mod registry;
pub mod unet;

pub use config::UNetConfig;
pub use device::{gpu_compiled, resolve, DeviceChoice};
pub use init::{init_varmap, param_specs, ParamSpec};
pub use io::{
    average_files, load_bytes, load_file, save, to_bytes, varmap_id, write_file, CONFIG_KEY,
    FORMAT, FORMAT_KEY,
};
pub use precond::{loss, Edm, Model, Scalings, DATA_OFFSET};
pub use registry::{builtin_bytes, clear, get, load_count, ModelSource};
pub use unet::{Kernels, VideoUNet};

/// Small models for tests and benchmarks of the layers above (engine, effect, CLI).
pub mod test_support {
    use std::sync::Arc;

    use candle_core::{DType, Device};

    use super::{init_varmap, load_bytes, to_bytes, Model, UNetConfig};
    use crate::Result;

    /// An untrained `UNetConfig::tiny()` model (deterministic in `seed`), on the CPU in f32,
    /// loaded the way a weights file is (so it runs the fused inference path).
    pub fn try_tiny_model(seed: u64) -> Result<Arc<Model>> {
        try_tiny_model_as(seed, DType::F32)
    }

    /// [`try_tiny_model`] with its weights loaded in `dtype` (the same id in every dtype).
    pub fn try_tiny_model_as(seed: u64, dtype: DType) -> Result<Arc<Model>> {
        let cfg = UNetConfig::tiny();
        let (varmap, _) = init_varmap(&cfg, seed, &Device::Cpu)?;
        Ok(Arc::new(load_bytes(
            &to_bytes(&varmap, &cfg)?,
            &Device::Cpu,
            dtype,
        )?))
    }

    /// [`try_tiny_model`] for tests, where a failure is a test failure.
    pub fn tiny_model(seed: u64) -> Arc<Model> {
        match try_tiny_model(seed) {
            Ok(m) => m,
            Err(e) => panic!("tiny test model: {e}"),
        }
    }
}

//! Sampling: noise schedules, samplers and frame-anchored noise. The engine builds a
//! [`Schedule`] per window, seeds the state with [`noise`], and runs [`sample`] with the model as
//! the [`Denoiser`]; nothing here draws from a global RNG or knows about tiles or hosts.
pub mod noise;
pub mod samplers;
pub mod schedule;

pub use noise::{fill_planar, gaussian, WindowNoise, STEP_INIT};
pub use samplers::{sample, Denoiser, NoiseSource, SamplerKind, StepInfo};
pub use schedule::{karras, start_sigma, Schedule, RHO, SIGMA_MAX, SIGMA_MIN};

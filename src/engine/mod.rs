//! The host-agnostic engine every render goes through (plugin, command line, benchmarks):
//! temporal chunk plan, canonical tiles, the content-keyed chunk cache and the render pipeline.
mod cache;
mod declip;
mod estimate;
mod image;
mod motion;
mod pipeline;
mod plan;
mod resident;
mod smooth;
mod tiles;
mod wiener;

pub use crate::geometry::Rect;
pub use cache::{
    default_ceiling as default_cache_ceiling, global as global_cache, CacheStats, ChunkCache,
    DEFAULT_BUDGET as DEFAULT_CACHE_BUDGET,
};
pub use declip::NoiseClipping;
pub use estimate::estimate_noise;
pub use image::{sanitize, RgbImage};
pub use pipeline::{
    frames_needed, is_identity, keeps_frames_on, purge_caches, region_needed, render,
    render_resident, render_with, Control, FrameParams, Frames, NoControl, Request, Settings,
    MAX_NOISE_LEVEL, MAX_RADIUS, MAX_SMOOTHING, MAX_STEPS,
};
pub use plan::Shot;
pub use tiles::TileGrid;

#[cfg(test)]
mod tests;

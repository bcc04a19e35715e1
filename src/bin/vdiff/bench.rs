//! `vdiff bench`: times the engine on a synthetic noisy shot at a chosen size and prints frames
//! per second, seconds per frame (amortised over the shot), milliseconds per megapixel-frame per
//! sampler step, and the cost of serving a cached neighbour frame.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use vdiff::engine::{FrameParams, NoiseClipping, Settings};
use vdiff::model::device::DeviceChoice;
use vdiff::model::registry::{self, ModelSource};
use vdiff::sampling::SamplerKind;

#[derive(clap::Args)]
pub struct Args {
    /// Frame sizes to time, as WIDTHxHEIGHT (repeatable).
    #[arg(long = "size", default_values = ["960x540", "1920x1080"])]
    sizes: Vec<String>,
    /// Frames in the synthetic shot (chunk reuse is amortised over it).
    #[arg(long, default_value_t = 8)]
    frames: usize,
    /// Sampler steps (default: the plugin's).
    #[arg(long, default_value_t = 1)]
    steps: u32,
    #[arg(long, default_value = "dpmpp-2m")]
    sampler: SamplerKind,
    #[arg(long, default_value_t = 2)]
    temporal_radius: u32,
    #[arg(long, default_value_t = 512)]
    tile_size: u32,
    /// Footage noise of the synthetic shot, also used as Noise Level.
    #[arg(long, default_value_t = 0.04)]
    noise_level: f32,
    #[arg(long, default_value_t = 0.0)]
    strength: f32,
    /// Temporal Smoothing (default: the plugin's).
    #[arg(long, default_value_t = 0.5)]
    temporal_smoothing: f32,
    /// Noise Clipping: auto, clipped or unclipped.
    #[arg(long, default_value = "auto")]
    noise_clipping: NoiseClipping,
    /// Model file (default: the built-in model).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
}

fn parse_size(s: &str) -> anyhow::Result<(i64, i64)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--size {s}: expected WIDTHxHEIGHT"))?;
    let (w, h): (i64, i64) = (w.trim().parse()?, h.trim().parse()?);
    anyhow::ensure!(
        w > 0 && h > 0,
        "--size {s}: width and height must be positive"
    );
    Ok((w, h))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let sizes = a
        .sizes
        .iter()
        .map(|s| parse_size(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = a
        .model
        .clone()
        .map_or(ModelSource::BuiltIn, ModelSource::File);
    let model = registry::get(&source, a.device)?;
    let settings = Settings {
        model: Arc::clone(&model),
        sampler: a.sampler,
        steps: a.steps,
        seed: 0,
        radius: a.temporal_radius,
        tile_size: a.tile_size,
        render_scale: 1.0,
        clipping: a.noise_clipping,
    };
    let params = FrameParams {
        noise_level: a.noise_level,
        strength: a.strength,
        detail: 0.0,
        smoothing: a.temporal_smoothing,
        mix: 1.0,
    };
    outln!(
        "model {} on {:?}, sampler {}, {} steps, temporal radius {}, smoothing {}, noise clipping {}, tile {}, {} frames, {} threads",
        &model.id()[..12],
        a.device,
        a.sampler,
        a.steps,
        a.temporal_radius,
        a.temporal_smoothing,
        a.noise_clipping,
        a.tile_size,
        a.frames,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    outln!("| size | s/frame (amortised) | ms per MP-frame per step | cached frame ms | chunk-tiles computed | cache budget MB |");
    outln!("|---|---|---|---|---|---|");
    for (w, h) in sizes {
        let r = vdiff::bench::run_with_control(
            &settings,
            w,
            h,
            a.frames,
            params,
            &vdiff::engine::NoControl,
            &mut |done, secs| {
                eprintln!("  {w}x{h}: frame {done}/{} after {secs:.1} s", a.frames);
            },
        )?;
        outln!(
            "| {w}x{h} | {:.2} | {:.1} | {:.1} | {} | {} |",
            r.seconds_per_frame,
            r.ms_per_mp_step,
            r.cached_frame_ms,
            r.chunks_computed,
            r.cache_budget >> 20
        );
    }
    Ok(())
}

//! `vdiff bench`: times the engine on a synthetic noisy shot at a chosen size and prints frames
//! per second, seconds per frame (amortised over the shot), milliseconds per megapixel-frame per
//! sampler step, and the cost of serving a cached neighbour frame.
use anyhow::Context;

use crate::cli_common::EffectArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Frame sizes to time, as WIDTHxHEIGHT (repeatable).
    #[arg(long = "size", default_values = ["960x540", "1920x1080"])]
    sizes: Vec<String>,
    /// Frames in the synthetic shot (chunk reuse is amortised over it).
    #[arg(long, default_value_t = 8)]
    frames: usize,
    /// The effect's parameters (at frame 0); Noise Level is also the synthetic shot's noise.
    #[command(flatten)]
    effect: EffectArgs,
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
    let model = a.effect.load_model()?;
    let settings = a.effect.settings_at(0, &model);
    let params = a.effect.params_at(0);
    outln!(
        "model {} on {:?}, sampler {}, {} steps, temporal radius {}, smoothing {}, noise clipping {}, tile {}, {} frames, {} threads",
        &model.id()[..12],
        model.device(),
        settings.sampler,
        settings.steps,
        settings.radius,
        params.smoothing,
        settings.clipping,
        settings.tile_size,
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

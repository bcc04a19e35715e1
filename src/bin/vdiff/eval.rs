//! `vdiff eval`: scores an output sequence against its clean reference with the metrics of
//! `vdiff::metrics` (PSNR, SSIM, temporal flicker), for people and for the comparison script.
use anyhow::Context;
use vdiff::imageio;
use vdiff::metrics::Accumulator;
use vdiff::sequence::{InputSequence, SeqSpec};

/// Compare OUT with CLEAN frame by frame (in order): PSNR (dB), SSIM (11x11 Gaussian window,
/// sigma 1.5, per RGB channel, 0-255 scale) and flicker (mean |temporal difference error|, 0-255).
#[derive(clap::Args)]
pub struct Args {
    /// Clean reference: a frame pattern (clean/%04d.png) or a folder of frames.
    pub clean: String,
    /// Sequence to score: a frame pattern or a folder, same length and size as CLEAN.
    pub out: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let clean = InputSequence::resolve(&SeqSpec::input(&a.clean)?)?;
    let out = InputSequence::resolve(&SeqSpec::input(&a.out)?)?;
    if clean.len() != out.len() {
        anyhow::bail!(
            "{} has {} frames but {} has {}",
            a.clean,
            clean.len(),
            a.out,
            out.len()
        );
    }
    let mut acc = Accumulator::new();
    for ((_, c), (_, o)) in clean.iter().zip(out.iter()) {
        let cp = imageio::read(c)?.to_rgb_image();
        let op = imageio::read(o)?.to_rgb_image();
        acc.push(cp, op)
            .with_context(|| format!("comparing {} with {}", o.display(), c.display()))?;
    }
    let m = acc.finish()?;
    if a.json {
        let v = serde_json::json!({
            "clean": a.clean, "out": a.out, "frames": m.frames,
            "psnr": m.psnr, "ssim": m.ssim, "flicker": m.flicker, "mse": m.mse,
        });
        outln!("{v}");
    } else {
        outln!("frames  {}", m.frames);
        outln!("PSNR    {:.3} dB", m.psnr);
        outln!("SSIM    {:.5}", m.ssim);
        outln!("flicker {:.3}", m.flicker);
    }
    Ok(())
}

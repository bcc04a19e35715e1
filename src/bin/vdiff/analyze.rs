//! `vdiff analyze`: the plugin's Analyze Noise for image sequences: estimates each frame's noise
//! level (the value for `--noise-level`) with the same estimator the plugin's button uses.
use vdiff::engine::estimate_noise;
use vdiff::imageio;
use vdiff::sequence::{InputSequence, SeqSpec};

/// Estimate the noise level of an image sequence, frame by frame; prints each frame's estimate
/// and their median, the value to pass as --noise-level.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  vdiff analyze shot/%04d.png
  vdiff render shot/ out/ --noise-level $(vdiff analyze shot/ --median)

The estimate is a standard deviation in 0..1 units (0.04 is about 10/255), measured in the
flattest parts of each frame; noise clipped at black or white (8- and 16-bit files) is allowed
for. Film grain and compression noise that varies with brightness give the level of the
mid-tones.")]
pub struct Args {
    /// Input frames: a printf-style pattern (shot/%04d.png) or a folder of numbered images.
    pub input: String,
    /// Analyze only frames FIRST-LAST (or one frame).
    #[arg(long, value_name = "FIRST-LAST", value_parser = super::render::parse_frames)]
    pub frames: Option<(i64, i64)>,
    /// Print only the median estimate (for --noise-level in scripts).
    #[arg(long)]
    pub median: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let seq = InputSequence::resolve(&SeqSpec::input(&a.input)?)?;
    let picked: Vec<_> = seq
        .iter()
        .filter(|(t, _)| a.frames.is_none_or(|(f, l)| (f..=l).contains(t)))
        .collect();
    if picked.is_empty() {
        anyhow::bail!("{}: no frames to analyze in the range given", a.input);
    }
    let mut levels = Vec::with_capacity(picked.len());
    for (t, path) in picked {
        let level = estimate_noise(&imageio::read(path)?.to_rgb_image());
        if !a.median {
            outln!(
                "frame {t:>6}  noise level {level:.4}  ({:.1}/255)",
                level * 255.0
            );
        }
        levels.push(level);
    }
    levels.sort_by(f32::total_cmp);
    let median = levels[levels.len() / 2];
    if a.median {
        outln!("{median:.4}");
    } else {
        outln!(
            "median      noise level {median:.4}  ({:.1}/255): use --noise-level {median:.4}",
            median * 255.0
        );
    }
    Ok(())
}

//! `vdiff demo`: denoises the sample clip built into the binary (resources/demo/, 12 frames of
//! OpenCV's vtest.avi at 320x240 with Gaussian noise of sigma 0.05) with the built-in model and
//! writes the frames plus a before/after contact sheet, so a newcomer sees the product work.
use std::path::{Path, PathBuf};

use anyhow::Context;
use vdiff::engine::estimate_noise;
use vdiff::imageio::{self, Depth, Picture};

use crate::cli_common::EffectArgs;
use crate::render;

/// The clip's frames (see resources/demo/PROVENANCE.md), in order; frame numbers start at 0.
const CLIP: [&[u8]; 12] = [
    include_bytes!("../../../resources/demo/noisy_0000.png"),
    include_bytes!("../../../resources/demo/noisy_0001.png"),
    include_bytes!("../../../resources/demo/noisy_0002.png"),
    include_bytes!("../../../resources/demo/noisy_0003.png"),
    include_bytes!("../../../resources/demo/noisy_0004.png"),
    include_bytes!("../../../resources/demo/noisy_0005.png"),
    include_bytes!("../../../resources/demo/noisy_0006.png"),
    include_bytes!("../../../resources/demo/noisy_0007.png"),
    include_bytes!("../../../resources/demo/noisy_0008.png"),
    include_bytes!("../../../resources/demo/noisy_0009.png"),
    include_bytes!("../../../resources/demo/noisy_0010.png"),
    include_bytes!("../../../resources/demo/noisy_0011.png"),
];

/// The noise sigma that was added to the clip (0..1 units), the demo's default --noise-level.
pub const CLIP_SIGMA: &str = "0.05";

const ABOUT: &str = "\
The clip: 12 frames (320x240) of OpenCV's sample video vtest.avi with Gaussian noise of sigma
0.05 (about 13/255) added; it is built into vdiff, so the demo works from any folder.

The defaults are those of `vdiff render` and the plugin except --noise-level, which is the
clip's known noise, 0.05. With the built-in model on two CPU cores a release build takes a
few seconds for the 12 frames; use fewer frames for a quicker look (`vdiff demo --frames 0-3`).
Every effect flag of `vdiff render` works here too (e.g. `vdiff demo --strength 0.2 --steps 12
--seed 3`).

Writes DIR/noisy/%04d.png (the input), DIR/denoised/%04d.png (the result) and
DIR/contact-sheet.png (rows: first, middle and last frame; left: noisy, right: denoised).";

/// Denoise the built-in sample clip and write a before/after contact sheet.
#[derive(clap::Args, Clone, Debug)]
#[command(
    after_help = ABOUT,
    mut_arg("noise-level", |a| a.default_value(CLIP_SIGMA))
)]
pub struct Args {
    /// Folder for the demo's frames and contact sheet (created if missing).
    #[arg(long, value_name = "DIR", default_value = "vdiff-demo")]
    pub out: PathBuf,
    /// Render only these frames of the clip (0-11), e.g. 0-3 for a quicker look.
    #[arg(long, value_name = "FIRST-LAST")]
    pub frames: Option<String>,
    #[command(flatten)]
    pub effect: EffectArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let noisy_dir = a.out.join("noisy");
    let denoised_dir = a.out.join("denoised");
    std::fs::create_dir_all(&noisy_dir)
        .with_context(|| format!("cannot create `{}`", noisy_dir.display()))?;
    for (i, bytes) in CLIP.iter().enumerate() {
        let p = noisy_dir.join(format!("{i:04}.png"));
        std::fs::write(&p, bytes).with_context(|| format!("cannot write `{}`", p.display()))?;
    }
    let frames = a
        .frames
        .as_deref()
        .map(vdiff::sequence::parse_frame_range)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--frames: {e}"))?;
    let args = render::Args {
        input: pattern(&noisy_dir),
        output: pattern(&denoised_dir),
        frames,
        depth: None,
        effect: a.effect.clone(),
    };
    // Loaded here to say where it runs; the render below gets the same instance from the registry.
    let model = a.effect.load_model()?;
    outln!(
        "vdiff demo: denoising {} frames of 320x240 (noise level {}, {} step{}, {} sampler) with model {} on {}",
        frames.map_or(CLIP.len() as i64, |(f, l)| l - f + 1),
        a.effect.noise_level.at(0),
        a.effect.steps.at(0),
        if a.effect.steps.at(0) == 1 { "" } else { "s" },
        a.effect.sampler,
        a.effect.model.as_ref().map_or("built-in".to_string(), |p| p.display().to_string()),
        device_name(model.device()),
    );
    let summary = render::render(&args)?;

    let pairs: Vec<(PathBuf, PathBuf)> = summary
        .written
        .iter()
        .map(|out| {
            (
                noisy_dir.join(out.file_name().unwrap_or_default()),
                out.clone(),
            )
        })
        .collect();
    let picks = pick_rows(pairs.len());
    let sheet_path = a.out.join("contact-sheet.png");
    let mut before = Vec::new();
    let mut after = Vec::new();
    for &i in &picks {
        before.push(imageio::read(&pairs[i].0)?);
        after.push(imageio::read(&pairs[i].1)?);
    }
    let sheet = contact_sheet(&before, &after)?;
    imageio::write(&sheet_path, &sheet, Depth::U8)?;

    let est = |p: &Picture| estimate_noise(&p.to_rgb_image());
    let n = summary.written.len();
    outln!(
        "denoised {n} frames in {:.1} s ({:.2} frames/s); estimated noise of frame {}: {:.3} before, {:.3} after",
        summary.seconds,
        n as f64 / summary.seconds.max(1e-9),
        picks[0],
        est(&before[0]),
        est(&after[0]),
    );
    outln!("  noisy input:   {}", pattern(&noisy_dir));
    outln!("  denoised:      {}", pattern(&denoised_dir));
    outln!(
        "  contact sheet: {} (left: noisy, right: denoised)",
        sheet_path.display()
    );
    Ok(())
}

fn pattern(dir: &Path) -> String {
    format!("{}/%04d.png", dir.display())
}

fn device_name(d: &candle_core::Device) -> &'static str {
    match d {
        candle_core::Device::Cpu => "the CPU",
        candle_core::Device::Cuda(_) => "a CUDA GPU",
        candle_core::Device::Metal(_) => "a Metal GPU",
    }
}

/// Indices of the frames shown: first, middle and last (fewer when fewer were rendered).
fn pick_rows(n: usize) -> Vec<usize> {
    let mut v = vec![0, n / 2, n.saturating_sub(1)];
    v.dedup();
    v.truncate(n);
    v
}

/// Rows of `before[i] | after[i]`, separated by a dark grey gutter.
fn contact_sheet(before: &[Picture], after: &[Picture]) -> anyhow::Result<Picture> {
    const GAP: usize = 6;
    const GREY: f32 = 0.2;
    let first = before.first().context("nothing was rendered")?;
    let (w, h) = (first.width, first.height);
    let (sw, sh) = (2 * w + 3 * GAP, before.len() * (h + GAP) + GAP);
    let mut rgb = vec![GREY; sw * sh * 3];
    for (row, (b, a)) in before.iter().zip(after).enumerate() {
        for (col, pic) in [b, a].into_iter().enumerate() {
            anyhow::ensure!(
                pic.width == w && pic.height == h,
                "frames of different sizes"
            );
            let (x0, y0) = (GAP + col * (w + GAP), GAP + row * (h + GAP));
            for y in 0..h {
                let dst = ((y0 + y) * sw + x0) * 3;
                rgb[dst..dst + w * 3].copy_from_slice(&pic.rgb[y * w * 3..(y + 1) * w * 3]);
            }
        }
    }
    Ok(Picture {
        width: sw,
        height: sh,
        depth: Depth::U8,
        rgb,
        alpha: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_is_embedded_and_decodes() {
        let dir = std::env::temp_dir().join(format!("vdiff-demo-clip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("0000.png");
        std::fs::write(&p, CLIP[0]).unwrap();
        let pic = imageio::read(&p).unwrap();
        assert_eq!(
            (pic.width, pic.height, pic.depth, pic.alpha.is_some()),
            (320, 240, Depth::U8, false)
        );
        // The clip carries the noise it claims (the estimator is within a few percent on it).
        let est = estimate_noise(&pic.to_rgb_image()) as f64;
        let sigma: f64 = CLIP_SIGMA.parse().unwrap();
        assert!(
            (est - sigma).abs() < 0.25 * sigma,
            "estimated {est}, clip sigma {sigma}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sheet_layout() {
        let pic = |v: f32| Picture {
            width: 2,
            height: 1,
            depth: Depth::U8,
            rgb: vec![v; 6],
            alpha: None,
        };
        let s = contact_sheet(&[pic(0.0), pic(0.5)], &[pic(1.0), pic(0.75)]).unwrap();
        assert_eq!((s.width, s.height), (2 * 2 + 18, 2 * 7 + 6));
        let at = |x: usize, y: usize| s.rgb[(y * s.width + x) * 3];
        assert_eq!(at(6, 6), 0.0);
        assert_eq!(at(14, 6), 1.0);
        assert_eq!(at(6, 13), 0.5);
        assert_eq!(at(15, 13), 0.75);
        assert_eq!(at(0, 0), 0.2);
        assert_eq!(pick_rows(12), vec![0, 6, 11]);
        assert_eq!(pick_rows(1), vec![0]);
        assert_eq!(pick_rows(2), vec![0, 1]);
    }
}

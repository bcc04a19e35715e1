//! `vdiff prepare`: builds training and validation sequences from the opencv-doc footage, or
//! (with `--noisy`) writes the noisy validation inputs that every denoiser is compared on.
use std::path::PathBuf;

use anyhow::Context;
use vdiff::train::prepare::{self, PrepareOptions, DEFAULT_SOURCE};

/// Prepare training data (DIR/train/<name>/%04d.png, DIR/val/<clip>/%04d.png) from the Debian
/// package opencv-doc, or write noisy copies of clean frames with --noisy.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  vdiff prepare --out data\n  vdiff prepare --noisy 25 --seed 0 --from data/val --out data/noisy25\n  resources/training/fetch.sh extra && vdiff prepare --extra extra --out data\n  benches/holdout/fetch.sh sources && vdiff prepare --holdout sources --out data/holdout"
)]
pub struct Args {
    /// Output folder: the dataset, or with --noisy the noisy frames.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The opencv-doc folder (videos under examples/data and opencv4/html).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_SOURCE)]
    pub source: PathBuf,
    /// Frames per animated photo (0 leaves the photos out).
    #[arg(long, default_value_t = 24)]
    pub photo_frames: usize,
    /// Largest side of an animated photo, in pixels.
    #[arg(long, default_value_t = 480)]
    pub photo_size: usize,
    /// Write FROM plus white Gaussian noise of this sigma on the 0-255 scale (independent per
    /// frame, rounded and clipped to 8-bit PNG) instead of preparing the dataset.
    #[arg(long, value_name = "SIGMA255", requires = "from")]
    pub noisy: Option<f64>,
    /// Clean frames for --noisy: a sequence folder, or a folder of them (e.g. DIR/val).
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Write the held-out validation clips (OUT/<clip>/%04d.png) from the files that
    /// benches/holdout/fetch.sh put in DIR, instead of the training data. Never train on them.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["noisy", "from"])]
    pub holdout: Option<PathBuf>,
    /// Add the extra training footage (photographs and videos of other packages) that
    /// resources/training/fetch.sh put in DIR, as OUT/train/<name>, instead of the opencv-doc data.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["noisy", "from", "holdout"])]
    pub extra: Option<PathBuf>,
    /// Seed of the noise (--noisy) or of the photo camera moves.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(sigma) = a.noisy {
        let from = a.from.context("--noisy needs --from CLEAN_DIR")?;
        let written = prepare::write_noisy(&from, &a.out, sigma, a.seed)?;
        for (dir, n) in written {
            outln!(
                "{}: {n} frames with noise sigma {sigma}/255 (seed {})",
                dir.display(),
                a.seed
            );
        }
        return Ok(());
    }
    if let Some(src) = a.holdout {
        let written = vdiff::train::holdout::prepare_holdout(&src, &a.out, a.seed, &mut |line| {
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        })?;
        outln!("{}: {} held-out clips", a.out.display(), written.len());
        return Ok(());
    }
    if let Some(src) = a.extra {
        let written = vdiff::train::sources::prepare_extra(
            &src,
            &a.out.join("train"),
            a.seed,
            &mut |line| {
                use std::io::Write as _;
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            },
        )?;
        let frames: usize = written.iter().map(|w| w.1).sum();
        outln!(
            "{}: {} extra training sequences ({frames} frames)",
            a.out.join("train").display(),
            written.len()
        );
        return Ok(());
    }
    if a.from.is_some() {
        anyhow::bail!("--from is only used with --noisy");
    }
    let opts = PrepareOptions {
        source: a.source,
        out: a.out.clone(),
        photo_frames: a.photo_frames,
        photo_max_size: a.photo_size,
        seed: a.seed,
    };
    // Progress lines: a closed stdout must not stop the preparation (the summary reports it).
    let summary = prepare::prepare(&opts, &mut |line| {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    })?;
    for s in &summary.skipped {
        eprintln!("skipped {s}");
    }
    let frames: usize = summary.train.iter().map(|t| t.1).sum();
    outln!(
        "{}: {} training sequences ({frames} frames), {} validation clips",
        a.out.display(),
        summary.train.len(),
        summary.val.len()
    );
    Ok(())
}

//! `vdiff train`: trains the video denoiser, fine-tunes a weights file on the user's footage, or
//! resumes a run from its checkpoint; a progress bar shows the loss.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use vdiff::model::{self, DeviceChoice, UNetConfig};
use vdiff::train::run::{self, RunOptions};
use vdiff::train::{Hyper, Trainer};

/// Train (or fine-tune with --init, or continue with --resume) the video denoiser on folders of
/// image sequences. Writes OUT (EMA weights), OUT's .ckpt.safetensors checkpoint and .loss.csv.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    vdiff prepare --out data && vdiff train --data data/train --steps 20000 --out vdiff-default.safetensors\n  \
    vdiff train --data my_footage --init resources/vdiff-default.safetensors --steps 2000 --out my.safetensors\n  \
    vdiff train --resume my.ckpt.safetensors --steps 4000 --out my.safetensors")]
pub struct Args {
    /// Folders of frames: a sequence folder, or a folder of sequence folders (e.g. DIR/train).
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub data: Vec<PathBuf>,
    /// The model file to write (EMA weights).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Total number of optimisation steps (a resumed run continues up to this count).
    #[arg(long)]
    pub steps: u64,
    /// Start from this weights file (fine-tuning); its config is used.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Continue the run of this checkpoint (its settings are used; --data may point elsewhere).
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// Model size for a fresh run: `default`, `tiny`, or a JSON file of UNetConfig.
    #[arg(long, default_value = "default", conflicts_with_all = ["init", "resume"])]
    pub config: String,
    /// Checkpoint and model every N steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// auto, cpu or gpu (gpu needs a build with --features cuda or metal).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seed of the initial weights, crops, noise levels and noise [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Windows per step [default: 4].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Frames per window (K) [default: 5].
    #[arg(long)]
    pub frames: Option<usize>,
    /// Crop size in pixels [default: 96].
    #[arg(long)]
    pub crop: Option<u32>,
    /// Learning rate [default: 5e-4, or 1e-4 with --init].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning-rate warm-up steps [default: 200, or 50 with --init].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// EMA decay of the saved weights [default: 0.998].
    #[arg(long)]
    pub ema: Option<f64>,
    /// Mean of log(sigma), sigma in [0,1] image units [default: -2.9].
    #[arg(long, allow_hyphen_values = true)]
    pub p_mean: Option<f64>,
    /// Standard deviation of log(sigma) [default: 1.2].
    #[arg(long)]
    pub p_std: Option<f64>,
    /// Probability that a window's noisy frames are clipped to 0..1, as integer footage stores
    /// them [default: 0].
    #[arg(long, value_name = "P")]
    pub clip_noise: Option<f64>,
    /// Gradient-norm clip, 0 for none [default: 1.0].
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// Lower the learning rate along a half cosine to 5% over the last N steps before --steps
    /// [default: none]. A resumed run may add one (from its current step on).
    #[arg(long, value_name = "N")]
    pub cooldown: Option<u64>,
}

impl Args {
    /// The hyperparameter flags given, applied onto `base`.
    fn apply(&self, base: &Hyper) -> Hyper {
        let mut h = base.clone();
        macro_rules! set {
            ($($f:ident => $g:ident),*) => { $(if let Some(v) = self.$f { h.$g = v; })* };
        }
        set!(seed => seed, batch => batch, frames => frames, crop => crop, lr => lr, warmup => warmup,
             ema => ema_decay, p_mean => p_mean, p_std => p_std, grad_clip => grad_clip,
             clip_noise => clip_noise);
        h
    }
}

fn unet_config(s: &str) -> anyhow::Result<UNetConfig> {
    Ok(match s {
        "default" => UNetConfig::default(),
        "tiny" => UNetConfig::tiny(),
        path => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("--config {path}: not `default`, `tiny` or a readable JSON file")
            })?;
            UNetConfig::from_json(&text).map_err(|e| anyhow::anyhow!("--config {path}: {e}"))?
        }
    })
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (device, _) = model::resolve(a.device.parse::<DeviceChoice>()?)?;
    let mut trainer = if let Some(ckpt) = &a.resume {
        let data = if a.data.is_empty() {
            None
        } else {
            Some(a.data.clone())
        };
        let t = Trainer::resume(ckpt, data, &device)?;
        let wanted = a.apply(t.hyper());
        if &wanted != t.hyper() {
            let (have, want) = (
                serde_json::to_value(t.hyper())?,
                serde_json::to_value(&wanted)?,
            );
            let changed: Vec<String> = have
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| want.get(k.as_str()) != Some(*v))
                .map(|(k, v)| format!("{k} (checkpoint {v}, given {})", want[k.as_str()]))
                .collect();
            bail!(
                "{} was trained with other settings: {}. A resumed run keeps its settings: drop \
                 those flags, or start a new run from its weights with --init {}",
                ckpt.display(),
                changed.join(", "),
                a.out.display()
            );
        }
        eprintln!("resuming {} at step {}", ckpt.display(), t.step());
        let mut t = t;
        if let Some(n) = a.cooldown {
            t.set_cool_down(n, a.steps)?;
        }
        t
    } else {
        if a.data.is_empty() {
            bail!(
                "--data DIR is required (folders of frames; `vdiff prepare --out DIR` makes some)"
            );
        }
        let mut base = Hyper::default();
        if a.init.is_some() {
            base.lr = 1e-4;
            base.warmup = 50;
        }
        let mut hyper = a.apply(&base);
        if let Some(n) = a.cooldown {
            if n > a.steps {
                bail!(
                    "--cooldown {n} is longer than the run (--steps {})",
                    a.steps
                );
            }
            hyper.cool_down(n, a.steps);
        }
        Trainer::new(
            unet_config(&a.config)?,
            hyper,
            a.data.clone(),
            a.init.clone(),
            &device,
        )?
    };
    if trainer.step() >= a.steps {
        bail!(
            "the run is already at step {} (>= --steps {})",
            trainer.step(),
            a.steps
        );
    }
    let ds = trainer.dataset();
    eprintln!(
        "training on {} sequences ({} frames, {} windows of {}), crops {}px, batch {}, device {:?}",
        ds.sequences.len(),
        ds.total_frames(),
        ds.windows(),
        trainer.hyper().frames,
        trainer.hyper().crop,
        trainer.hyper().batch,
        device
    );
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // First Ctrl-C: finish the step, write the checkpoint, exit; resume with --resume.
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let bar = ProgressBar::new(a.steps);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps {per_sec} eta {eta} {msg}")
            .context("progress bar template")?,
    );
    bar.set_position(trainer.step());
    bar.reset_eta();
    let opts = RunOptions {
        out: a.out.clone(),
        steps: a.steps,
        checkpoint_every: a.checkpoint_every,
    };
    let mut probe_text = String::new();
    let summary = run::run(&mut trainer, &opts, &mut |st, probe| {
        if let Some(p) = probe {
            probe_text = format!(" probe {p:.4}");
        }
        bar.set_position(st.step);
        bar.set_message(format!(
            "loss {:.4} (avg {:.4}){probe_text}",
            st.loss, st.loss_smooth
        ));
        !stop.load(Ordering::SeqCst)
    })?;
    bar.finish();
    let verb = if summary.stopped_early {
        "stopped"
    } else {
        "done"
    };
    outln!(
        "{verb} at step {} in {:.0} s: model {}, checkpoint {}, loss log {}",
        summary.steps,
        summary.seconds,
        a.out.display(),
        summary.checkpoint.display(),
        summary.csv.display()
    );
    Ok(())
}

//! Drives a `Trainer` for `vdiff train`: steps until the target, a checkpoint and the EMA model
//! every N steps and at the end (or when stopped), and the loss curve as CSV next to the output.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::trainer::{StepStats, Trainer};
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The model file written (EMA weights); the checkpoint and the CSV go beside it.
    pub out: PathBuf,
    /// Total steps of the run (a resumed run continues up to this count).
    pub steps: u64,
    /// Checkpoint (and model) every this many steps; 0: only at the end.
    pub checkpoint_every: u64,
}

#[derive(Clone, Debug)]
pub struct RunSummary {
    pub steps: u64,
    pub stopped_early: bool,
    pub last: Option<StepStats>,
    pub seconds: f64,
    pub checkpoint: PathBuf,
    pub csv: PathBuf,
}

/// `my.safetensors` -> `my.<suffix>` (beside the output).
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{stem}.{suffix}"))
}

/// Where the checkpoint of a run writing `out` goes.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    sibling(out, "ckpt.safetensors")
}

/// Where the loss curve of a run writing `out` goes.
pub fn loss_csv_path(out: &Path) -> PathBuf {
    sibling(out, "loss.csv")
}

const CSV_HEADER: &str = "step,loss,loss_smooth,lr,grad_norm,probe_loss,elapsed_s";

/// Opens the CSV for appending at `step` completed steps: a fresh file at step 0, else the
/// existing rows up to `step` are kept (a resume after a crash drops rows past the checkpoint).
fn open_csv(path: &Path, step: u64) -> Result<std::fs::File> {
    let ctx = |what: &str| format!("{what} loss log {}", path.display());
    let mut keep = vec![CSV_HEADER.to_string()];
    if step > 0 {
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines().skip(1) {
                let s: Option<u64> = line.split(',').next().and_then(|v| v.parse().ok());
                if s.is_some_and(|s| s <= step) {
                    keep.push(line.to_string());
                }
            }
        }
    }
    let mut body = keep.join("\n");
    body.push('\n');
    std::fs::write(path, body).map_err(|e| Error::io(ctx("writing"), e))?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(ctx("opening"), e))
}

/// Mean loss of the current weights on a few fixed batches (the same every time it is called):
/// a far less noisy progress signal than the per-step loss.
pub fn probe_loss(tr: &Trainer) -> Result<f32> {
    let steps = [u64::MAX, u64::MAX - 1];
    let mut total = 0.0;
    for s in steps {
        total += tr.eval_loss(s)?;
    }
    Ok(total / steps.len() as f32)
}

/// A probe loss this many times the run's best means the run has diverged (a collapsed or
/// exploded network, not noise: the probe batches are fixed).
pub const DIVERGED: f32 = 2.0;

/// How to go on after a divergence, for the error message.
fn diverged_help(out: &Path) -> String {
    format!(
        "start a new run from the model kept there with a lower learning rate, e.g. \
         `vdiff train --init {} --lr 2e-4 ...` (a resumed run keeps its learning rate)",
        out.display()
    )
}

/// Records a probe loss; an error when it shows that the run has diverged.
fn check_probe(
    best: &mut Option<(f32, u64)>,
    p: f32,
    step: u64,
    ckpt: &Path,
    out: &Path,
) -> Result<()> {
    match *best {
        // A NaN probe has diverged too.
        Some((b, at)) if p.is_nan() || p > DIVERGED * b => Err(Error::Other(format!(
            "training diverged at step {step}: probe loss {p} against {b} at step {at}. {} and \
             {} were not overwritten; {}",
            ckpt.display(),
            out.display(),
            diverged_help(out)
        ))),
        Some((b, _)) if b <= p => Ok(()),
        _ => {
            *best = Some((p, step));
            Ok(())
        }
    }
}

/// Trains until `opts.steps` steps are done or `on_step` returns false (then the checkpoint is
/// written so `--resume` continues). `on_step` also gets the probe loss when one was computed.
///
/// A run whose probe loss rises past [`DIVERGED`] times its best stops with an error and leaves
/// the last checkpoint and model files as they were: a diverged network never overwrites them.
pub fn run(
    tr: &mut Trainer,
    opts: &RunOptions,
    on_step: &mut dyn FnMut(&StepStats, Option<f32>) -> bool,
) -> Result<RunSummary> {
    let ckpt = checkpoint_path(&opts.out);
    let csv_path = loss_csv_path(&opts.out);
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mut csv = open_csv(&csv_path, tr.step())?;
    let start = Instant::now();
    let mut last = None;
    let mut stopped_early = false;
    // Best probe loss of this run so far, with its step.
    let mut best: Option<(f32, u64)> = None;
    while tr.step() < opts.steps {
        let st = tr.train_step()?;
        let at_checkpoint = opts.checkpoint_every > 0 && st.step % opts.checkpoint_every == 0;
        let probe = if at_checkpoint || st.step == opts.steps {
            Some(probe_loss(tr)?)
        } else {
            None
        };
        writeln!(
            csv,
            "{},{},{},{},{},{},{:.2}",
            st.step,
            st.loss,
            st.loss_smooth,
            st.lr,
            st.grad_norm,
            probe.map(|p| p.to_string()).unwrap_or_default(),
            start.elapsed().as_secs_f64()
        )
        .map_err(|e| Error::io(format!("writing loss log {}", csv_path.display()), e))?;
        last = Some(st);
        if let Some(p) = probe {
            check_probe(&mut best, p, st.step, &ckpt, &opts.out)?;
        }
        let go_on = on_step(&st, probe);
        if at_checkpoint && st.step < opts.steps {
            tr.save_checkpoint(&ckpt)?;
            tr.save_model(&opts.out)?;
        }
        if !go_on {
            stopped_early = st.step < opts.steps;
            if probe.is_none() {
                // Stopped between checkpoints: check before the files are overwritten.
                check_probe(&mut best, probe_loss(tr)?, st.step, &ckpt, &opts.out)?;
            }
            break;
        }
    }
    tr.save_checkpoint(&ckpt)?;
    tr.save_model(&opts.out)?;
    Ok(RunSummary {
        steps: tr.step(),
        stopped_early,
        last,
        seconds: start.elapsed().as_secs_f64(),
        checkpoint: ckpt,
        csv: csv_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_paths() {
        let out = Path::new("/x/my.safetensors");
        assert_eq!(checkpoint_path(out), Path::new("/x/my.ckpt.safetensors"));
        assert_eq!(loss_csv_path(out), Path::new("/x/my.loss.csv"));
        assert_eq!(loss_csv_path(Path::new("m")), Path::new("m.loss.csv"));
    }

    #[test]
    fn csv_keeps_rows_up_to_the_resumed_step() {
        let dir = std::env::temp_dir().join(format!("vdiff-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.loss.csv");
        std::fs::write(
            &p,
            format!("{CSV_HEADER}\n1,0.5,,,,,\n2,0.4,,,,,\n3,0.3,,,,,\n"),
        )
        .unwrap();
        drop(open_csv(&p, 2).unwrap());
        let t = std::fs::read_to_string(&p).unwrap();
        assert_eq!(t, format!("{CSV_HEADER}\n1,0.5,,,,,\n2,0.4,,,,,\n"));
        drop(open_csv(&p, 0).unwrap());
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{CSV_HEADER}\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

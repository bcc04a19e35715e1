//! Training side: the loop learns, is deterministic, resumes exactly, fine-tunes from a weights
//! file; `vdiff eval` and `vdiff prepare --noisy` agree with the library. Tiny model, tiny
//! synthetic sequences written by the test itself (no opencv-doc, no ffmpeg).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use vdiff::engine::RgbImage;
use vdiff::model::UNetConfig;
use vdiff::train::data::{read_frame, Dataset};
use vdiff::train::prepare::write_png8;
use vdiff::train::rng::Rng;
use vdiff::train::{Hyper, RunOptions, Trainer};

/// A fresh scratch folder for one test. (Own helper rather than `common::temp_dir`, so this file
/// also compiles when cargo builds it as a test target of its own.)
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir()
        .join(format!("vdiff-train-tests-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    d
}

const W: usize = 40;
const H: usize = 36;

/// A smooth moving pattern with some texture: frame t of sequence `seq`, interleaved RGB, top row
/// first. Deterministic arithmetic only.
fn synthetic_frame(seq: usize, t: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; W * H * 3];
    for y in 0..H {
        for x in 0..W {
            let (fx, fy) = (
                x as f32 + 0.7 * t as f32,
                y as f32 + 0.3 * (seq as f32 + t as f32),
            );
            for c in 0..3 {
                let tex = (((x * 31 + y * 17 + c * 7 + seq * 5) % 11) as f32 / 11.0 - 0.5) * 0.1;
                let base = 0.5
                    + 0.35 * (fx * 0.21 + c as f32 * 1.3).sin() * (fy * 0.17 + seq as f32).cos();
                v[(y * W + x) * 3 + c] = (base + tex).clamp(0.0, 1.0);
            }
        }
    }
    v
}

/// `dir/seqN/%04d.png`, `seqs` sequences of `frames` frames.
fn write_dataset(dir: &Path, seqs: usize, frames: usize) -> PathBuf {
    for s in 0..seqs {
        let d = dir.join(format!("seq{s}"));
        std::fs::create_dir_all(&d).unwrap();
        for t in 0..frames {
            write_png8(&d.join(format!("{t:04}.png")), W, H, &synthetic_frame(s, t)).unwrap();
        }
    }
    dir.to_path_buf()
}

fn hyper(seed: u64) -> Hyper {
    Hyper {
        seed,
        batch: 2,
        frames: 3,
        crop: 16,
        lr: 2e-3,
        warmup: 0,
        ..Hyper::default()
    }
}

fn trainer(data: &Path, h: Hyper) -> Trainer {
    Trainer::new(
        UNetConfig::tiny(),
        h,
        vec![data.to_path_buf()],
        None,
        &Device::Cpu,
    )
    .expect("trainer")
}

/// The bit patterns of a tensor's values, flattened.
fn tensor_bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn bits(m: &BTreeMap<String, Tensor>) -> BTreeMap<String, Vec<u32>> {
    m.iter().map(|(k, t)| (k.clone(), tensor_bits(t))).collect()
}

/// Asserts two weight sets are bit-identical, naming the first tensor that differs.
fn assert_same_weights(what: &str, a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) {
    let (a, b) = (bits(a), bits(b));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: tensor names differ"
    );
    for (k, va) in &a {
        let vb = &b[k];
        if let Some(i) = va.iter().zip(vb).position(|(x, y)| x != y) {
            panic!(
                "{what}: tensor `{k}` differs first at index {i}: {} vs {}",
                f32::from_bits(va[i]),
                f32::from_bits(vb[i])
            );
        }
    }
}

#[test]
fn training_reduces_the_loss_on_a_fixed_dataset() {
    let dir = temp_dir("train-loss");
    let data = write_dataset(&dir.join("data"), 2, 6);
    let mut tr = trainer(
        &data,
        Hyper {
            lr: 5e-3,
            ..hyper(1)
        },
    );
    // The probe is the loss on fixed batches: it starts near 1 (the EDM loss of a network that
    // outputs zeros) and this tiny model takes it down ~13% in 120 steps (measured: 0.993 -> 0.859).
    let before = vdiff::train::run::probe_loss(&tr).unwrap();
    for _ in 0..120 {
        let st = tr.train_step().unwrap();
        assert!(st.loss.is_finite() && st.grad_norm.is_finite());
    }
    let after = vdiff::train::run::probe_loss(&tr).unwrap();
    assert!(
        after < 0.93 * before,
        "probe loss went from {before} to {after}"
    );
}

#[test]
fn same_seed_gives_identical_weights_and_another_seed_does_not() {
    let dir = temp_dir("train-determinism");
    let data = write_dataset(&dir.join("data"), 2, 5);
    let run = |seed| {
        let mut tr = trainer(&data, hyper(seed));
        for _ in 0..3 {
            tr.train_step().unwrap();
        }
        // The EMA must not record backprop history: each tensor would keep the previous step's
        // alive and memory would grow by the model size every step.
        assert!(
            tr.ema_weights().values().all(|t| !t.track_op()),
            "EMA tensors track ops"
        );
        (tr.weights().unwrap(), tr.ema_weights())
    };
    let (w1, e1) = run(7);
    let (w2, e2) = run(7);
    assert_same_weights("weights, same seed", &w1, &w2);
    assert_same_weights("EMA, same seed", &e1, &e2);
    let (w3, _) = run(8);
    assert_ne!(
        bits(&w1),
        bits(&w3),
        "a different seed gave identical weights"
    );
}

#[test]
fn a_batch_is_the_same_on_any_number_of_threads() {
    let dir = temp_dir("train-batch-threads");
    let data = write_dataset(&dir.join("data"), 3, 6);
    let tr = trainer(
        &data,
        Hyper {
            batch: 5,
            ..hyper(3)
        },
    );
    let flat = |(x0, sig, noise): (Tensor, Tensor, Tensor)| -> Vec<Vec<u32>> {
        [x0, sig, noise].iter().map(tensor_bits).collect()
    };
    let one = flat(tr.batch_on_threads(4, 1).unwrap());
    for threads in [2, 3, 5, 16] {
        assert!(
            flat(tr.batch_on_threads(4, threads).unwrap()) == one,
            "step 4's batch on {threads} threads differs from one thread's"
        );
    }
    assert!(flat(tr.batch(4).unwrap()) == one, "batch() differs");
    // Windows are not copies of each other, and another step draws other windows.
    let n = one[0].len() / 5;
    assert_ne!(
        one[0][..n],
        one[0][n..2 * n],
        "windows 0 and 1 are identical"
    );
    assert_ne!(flat(tr.batch_on_threads(5, 3).unwrap()), one);
}

#[test]
fn clipped_noise_windows_stay_in_range_and_the_others_keep_their_streams() {
    let dir = temp_dir("train-clip-noise");
    let data = write_dataset(&dir.join("data"), 3, 6);
    let noisy = |h: Hyper, s: u64| -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (x0, sig, noise) = trainer(&data, h).batch(s).unwrap();
        let sig = sig
            .unsqueeze(2)
            .unwrap()
            .unsqueeze(3)
            .unwrap()
            .unsqueeze(4)
            .unwrap();
        let y = x0
            .broadcast_add(&noise.broadcast_mul(&sig).unwrap())
            .unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (v(&x0), v(&noise), v(&y))
    };
    // Strong noise, so unclipped windows leave the range.
    let strong = Hyper {
        batch: 4,
        p_mean: -1.0,
        p_std: 0.1,
        ..hyper(5)
    };
    let (x_plain, n_plain, y_plain) = noisy(strong.clone(), 2);
    assert!(y_plain.iter().any(|v| *v < -0.01) && y_plain.iter().any(|v| *v > 1.01));
    let (x_clip, n_clip, y_clip) = noisy(
        Hyper {
            clip_noise: 1.0,
            ..strong.clone()
        },
        2,
    );
    assert!(
        y_clip.iter().all(|v| (-1e-5..=1.0 + 1e-5).contains(v)),
        "a clipped window left 0..1"
    );
    // Clipping draws one more number per window, after the crop and sigmas: same clean crops.
    assert_eq!(x_clip, x_plain);
    // Where the noisy value stayed in range, the noise is the unclipped one.
    let same = n_clip
        .iter()
        .zip(&n_plain)
        .zip(&y_plain)
        .filter(|((_, _), y)| (0.0..=1.0).contains(*y))
        .all(|((a, b), _)| (a - b).abs() < 1e-4);
    assert!(same, "clipping changed noise inside the range");
    // A probability of 0 leaves the batch bit-identical to a run without the option.
    let (_, n_zero, _) = noisy(
        Hyper {
            clip_noise: 0.0,
            ..strong
        },
        2,
    );
    assert_eq!(n_zero, n_plain);
}

#[test]
fn resume_from_a_checkpoint_matches_an_uninterrupted_run() {
    let dir = temp_dir("train-resume");
    let data = write_dataset(&dir.join("data"), 2, 5);
    let opts = |name: &str, steps| RunOptions {
        out: dir.join(name),
        steps,
        checkpoint_every: 2,
    };

    // Uninterrupted: 6 steps.
    let mut a = trainer(&data, hyper(3));
    vdiff::train::run::run(&mut a, &opts("a.safetensors", 6), &mut |_, _| true).unwrap();

    // Interrupted after 3 steps (the callback stops it), then resumed from the checkpoint.
    let mut b = trainer(&data, hyper(3));
    let s = vdiff::train::run::run(&mut b, &opts("b.safetensors", 6), &mut |st, _| st.step < 3)
        .unwrap();
    assert!(s.stopped_early);
    assert_eq!(b.step(), 3);
    drop(b);
    let ckpt = vdiff::train::checkpoint_path(&dir.join("b.safetensors"));
    let mut c = Trainer::resume(&ckpt, None, &Device::Cpu).unwrap();
    assert_eq!(c.step(), 3);
    vdiff::train::run::run(&mut c, &opts("b.safetensors", 6), &mut |_, _| true).unwrap();

    assert_same_weights(
        "weights after resume",
        &a.weights().unwrap(),
        &c.weights().unwrap(),
    );
    assert_same_weights("EMA after resume", &a.ema_weights(), &c.ema_weights());
    // The saved models hold the same tensors, and the loss logs the same losses.
    let load = |p: &str| -> BTreeMap<String, Tensor> {
        candle_core::safetensors::load(dir.join(p), &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect()
    };
    assert_same_weights(
        "saved models",
        &load("a.safetensors"),
        &load("b.safetensors"),
    );
    let losses = |p: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(p))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(losses("a.loss.csv"), losses("b.loss.csv"));
    assert_eq!(losses("a.loss.csv").len(), 7, "header + 6 steps");
}

#[test]
fn fine_tuning_starts_from_the_init_weights() {
    let dir = temp_dir("train-init");
    let data = write_dataset(&dir.join("data"), 1, 4);
    let mut a = trainer(&data, hyper(5));
    for _ in 0..2 {
        a.train_step().unwrap();
    }
    let file = dir.join("base.safetensors");
    a.save_model(&file).unwrap();
    // A different seed would initialise differently: the file's weights must win.
    let b = Trainer::new(
        UNetConfig::default(),
        hyper(99),
        vec![data.clone()],
        Some(file.clone()),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        b.config(),
        &UNetConfig::tiny(),
        "the config comes from the weights file"
    );
    assert_same_weights(
        "live weights = file",
        &a.ema_weights(),
        &b.weights().unwrap(),
    );
    assert_same_weights("EMA = file", &a.ema_weights(), &b.ema_weights());
    // The model file loads for inference too.
    vdiff::model::load_file(&file, &Device::Cpu, candle_core::DType::F32).unwrap();
    // A file that is not a model is refused with its name in the message.
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"nope").unwrap();
    let e = Trainer::new(
        UNetConfig::tiny(),
        hyper(1),
        vec![data],
        Some(bad.clone()),
        &Device::Cpu,
    )
    .err()
    .expect("bad init file accepted")
    .to_string();
    assert!(e.contains("bad.safetensors"), "{e}");
}

#[test]
fn crops_load_the_right_pixels_with_flips_and_stay_in_bounds() {
    let dir = temp_dir("train-crops");
    let data = write_dataset(&dir.join("data"), 2, 5);
    let ds = Dataset::open(&[data], 3, 16).unwrap();
    assert_eq!(ds.sequences.len(), 2);
    assert_eq!(ds.windows(), 2 * 3);
    let frames: Vec<Vec<Vec<f32>>> = ds
        .sequences
        .iter()
        .map(|s| s.frames.iter().map(|f| read_frame(f).unwrap().2).collect())
        .collect();
    for step in 0..40 {
        let c = ds.sample(&mut Rng::new(11, step, 0));
        assert!(
            c.x0 as usize + 16 <= W && c.y0 as usize + 16 <= H && c.t0 + 3 <= 5,
            "{c:?}"
        );
        let got = ds.load(&c).unwrap();
        for k in 0..3 {
            let t = if c.reverse { c.t0 + 2 - k } else { c.t0 + k };
            let src = &frames[c.seq][t];
            for (j, i, ch) in [(0usize, 0usize, 0usize), (15, 3, 1), (7, 15, 2)] {
                let sy = c.y0 as usize + if c.vflip { 15 - j } else { j };
                let sx = c.x0 as usize + if c.hflip { 15 - i } else { i };
                let want = src[(sy * W + sx) * 3 + ch];
                assert_eq!(
                    got[((k * 3 + ch) * 16 + j) * 16 + i],
                    want,
                    "{c:?} k {k} ({i},{j},{ch})"
                );
            }
        }
    }
}

fn vdiff_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vdiff"))
}

fn read_seq(dir: &Path) -> Vec<RgbImage> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| vdiff::imageio::read(f).unwrap().to_rgb_image())
        .collect()
}

#[test]
fn noisy_inputs_and_eval_cli_agree_with_the_library() {
    let dir = temp_dir("train-eval-cli");
    let clean = write_dataset(&dir.join("clean"), 1, 4).join("seq0");
    let noisy = dir.join("noisy");
    let run = |args: &[&str]| {
        let out = vdiff_bin().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "vdiff {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let c = clean.to_str().unwrap();
    let noisy_copy = |out: &Path| {
        run(&[
            "prepare",
            "--noisy",
            "25",
            "--seed",
            "4",
            "--from",
            c,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    noisy_copy(&noisy);
    // Same seed -> same bytes.
    let again = dir.join("again");
    noisy_copy(&again);
    for f in ["0000.png", "0003.png"] {
        assert!(
            std::fs::read(noisy.join(f)).unwrap() == std::fs::read(again.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let (cs, ns) = (read_seq(&clean), read_seq(&noisy));
    assert_eq!(ns.len(), 4);
    let m = vdiff::metrics::evaluate(&cs, &ns).unwrap();
    // sigma 25 noise, rounded and clipped: MSE a little under 625 (clipping removes some).
    assert!(m.mse > 450.0 && m.mse < 680.0, "mse {}", m.mse);

    let json = run(&["eval", "--json", c, noisy.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    for (key, want) in [("psnr", m.psnr), ("ssim", m.ssim), ("flicker", m.flicker)] {
        let got = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {json}"));
        assert!(
            (got - want).abs() < 1e-9,
            "{key}: cli {got}, library {want}"
        );
    }
    assert_eq!(v["frames"].as_u64(), Some(4));
    let text = run(&["eval", c, &format!("{}/%04d.png", noisy.display())]);
    assert!(text.contains(&format!("{:.3} dB", m.psnr)), "{text}");
    assert!(text.contains("SSIM") && text.contains("flicker"), "{text}");
    // Different lengths are an error, not a panic.
    std::fs::remove_file(noisy.join("0003.png")).unwrap();
    let out = vdiff_bin()
        .args(["eval", c, noisy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("frames"));
}

#[test]
fn train_cli_writes_model_checkpoint_and_loss_curve() {
    let dir = temp_dir("train-cli");
    let data = write_dataset(&dir.join("data"), 1, 4);
    let out = dir.join("m.safetensors");
    let args = |steps: &str| {
        let mut c = vdiff_bin();
        c.args([
            "train", "--config", "tiny", "--frames", "3", "--crop", "16", "--batch", "1",
            "--steps", steps,
        ])
        .args(["--checkpoint-every", "2", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out);
        c
    };
    let o = args("2").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file() && dir.join("m.ckpt.safetensors").is_file());
    let csv = std::fs::read_to_string(dir.join("m.loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // Resume to 3 steps; changing a training setting on resume is refused.
    let ckpt = dir.join("m.ckpt.safetensors");
    let o = vdiff_bin()
        .args(["train", "--steps", "3", "--resume"])
        .arg(&ckpt)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.join("m.loss.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    let o = vdiff_bin()
        .args(["train", "--steps", "5", "--lr", "0.5", "--resume"])
        .arg(&ckpt)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success(), "a changed --lr on resume was accepted");
    // A resumed run may add a cool-down, but not one that starts before its current step.
    let resume = |steps: &str, cooldown: &str| {
        vdiff_bin()
            .args([
                "train",
                "--steps",
                steps,
                "--cooldown",
                cooldown,
                "--resume",
            ])
            .arg(&ckpt)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = resume("5", "4");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("cool-down"), "{err}");
    let o = resume("5", "2");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lr: Vec<f64> = std::fs::read_to_string(dir.join("m.loss.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    assert_eq!(lr.len(), 5);
    // Warm-up raises the rate at every step until the cool-down (steps 3 and 4) turns it down.
    assert!(lr[0] < lr[1] && lr[1] < lr[2] && lr[2] < lr[3], "{lr:?}");
    assert!(lr[4] < lr[3], "{lr:?}");
    // Fine-tune from the model just written, on clipped noise as the README shows; a share
    // outside 0..1 is refused before anything is written.
    let fine_tune = |clip: &str, name: &str| {
        vdiff_bin()
            .args([
                "train",
                "--steps",
                "1",
                "--frames",
                "3",
                "--crop",
                "16",
                "--batch",
                "1",
                "--clip-noise",
                clip,
                "--data",
            ])
            .arg(&data)
            .arg("--init")
            .arg(&out)
            .arg("--out")
            .arg(dir.join(name))
            .output()
            .unwrap()
    };
    let o = fine_tune("0.5", "ft.safetensors");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.join("ft.safetensors").is_file());
    let o = fine_tune("1.5", "bad.safetensors");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("clip-noise"), "{err}");
    assert!(!dir.join("bad.safetensors").exists());
}

#[test]
fn a_diverging_run_stops_and_keeps_its_last_good_files() {
    let dir = temp_dir("train-diverge");
    let data = write_dataset(&dir.join("data"), 1, 4);
    // A learning rate that ramps up to far beyond what the network can take.
    let mut t = trainer(
        &data,
        Hyper {
            lr: 0.5,
            warmup: 40,
            grad_clip: 0.0,
            ..hyper(5)
        },
    );
    let out = dir.join("d.safetensors");
    let opts = RunOptions {
        out: out.clone(),
        steps: 40,
        checkpoint_every: 1,
    };
    let mut probes = Vec::new();
    let err = vdiff::train::run::run(&mut t, &opts, &mut |st, p| {
        probes.push((st.step, p.unwrap()));
        true
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("diverged") && err.contains("--init"), "{err}");
    // The files on disk are those of the step before the divergence, whose probe was sane.
    let ckpt = vdiff::train::checkpoint_path(&out);
    let kept = Trainer::resume(&ckpt, None, &Device::Cpu).unwrap();
    assert!(
        probes.len() >= 2,
        "it should learn a little first: {probes:?}"
    );
    let &(last_ok, p_ok) = probes.last().unwrap();
    assert_eq!(kept.step(), last_ok);
    let best = probes.iter().map(|p| p.1).fold(f32::INFINITY, f32::min);
    assert!(p_ok <= vdiff::train::run::DIVERGED * best, "{probes:?}");
    let model = vdiff::model::load_file(&out, &Device::Cpu, candle_core::DType::F32).unwrap();
    assert_eq!(model.cfg(), &UNetConfig::tiny());
}

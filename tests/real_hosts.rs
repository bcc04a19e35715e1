//! Real OFX hosts: the built bundle rendered by MLT's `melt` and by Natron 2.5's
//! `NatronRenderer`, each compared with `vdiff render` on the same PNG frames and with the in-repo
//! host's profile of that host (so neither the plugin nor the emulation can drift unseen).
//!
//! The hosts are built by `.ci/hosts.sh` into `.hosts/` (or `$VDIFF_HOSTS_DIR`). Without them a
//! test prints why it is skipped and passes, except where `VDIFF_REAL_HOSTS=require` (set by
//! `.ci/run`), where a missing host fails the test. Frames are small (64x48 unless a test is
//! about size) so the suite stays quick in the dev profile.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use vdiff::imageio::{self, Depth, Picture};

use crate::common::temp_dir;
use crate::host::{plugin, Footage, HostConfig, Project, RenderOpts};

const W: i32 = 64;
const H: i32 = 48;

// ---------------------------------------------------------------------------------------------
// Finding the hosts and the bundle

fn hosts_dir() -> PathBuf {
    std::env::var_os("VDIFF_HOSTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".hosts"))
}

/// The host executable `rel` under the hosts folder, or None (after saying why) when it is not
/// built; a panic instead where `VDIFF_REAL_HOSTS=require`.
fn find_host(what: &str, rel: &str) -> Option<PathBuf> {
    let p = hosts_dir().join(rel);
    if p.is_file() {
        return Some(p);
    }
    let why = format!(
        "{what} not found at {}: build the real hosts with `.ci/hosts.sh` (see the README)",
        p.display()
    );
    if std::env::var("VDIFF_REAL_HOSTS").as_deref() == Ok("require") {
        panic!("{why} (VDIFF_REAL_HOSTS=require)");
    }
    eprintln!("skipped: {why}");
    None
}

fn melt() -> Option<PathBuf> {
    find_host("melt", "mlt/melt")
}

fn natron() -> Option<PathBuf> {
    find_host("NatronRenderer", "natron/natron-ofx-render")
}

/// A bundle folder (for OFX_PLUGIN_PATH) holding the plugin the tests built.
fn bundle() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let lib = plugin::plugin_path().unwrap_or_else(|e| panic!("{e}"));
        let dir = temp_dir("real-hosts-bundle");
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_vdiff"))
                .args(["bundle", "--out"])
                .arg(&dir)
                .arg("--lib")
                .arg(&lib),
        );
        dir
    })
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .env_remove("VDIFF_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    out
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// Frames

/// Frame t of `f` as a picture (file rows top first: OFX y = h - 1 - row).
fn picture(f: &Footage, t: i64, depth: Depth) -> Picture {
    let (w, h) = (f.width as usize, f.height as usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for x in 0..w {
            let p = f.pixel(t, x as i32, (h - 1 - row) as i32);
            rgb.extend([p[0], p[1], p[2]]);
        }
    }
    Picture {
        width: w,
        height: h,
        depth,
        rgb,
        alpha: None,
    }
}

/// Writes frames `first..=last` of `f` as `dir/<prefix>%04d.png`; returns the printf pattern.
fn write_seq(dir: &Path, prefix: &str, f: &Footage, depth: Depth) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for t in f.first..=f.last {
        let p = dir.join(format!("{prefix}{t:04}.png"));
        imageio::write(&p, &picture(f, t, depth), depth)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    format!("{}/{prefix}%04d.png", dir.display())
}

fn read(p: &Path) -> Picture {
    imageio::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// RGB codes of a picture at `max` (255 or 65535).
fn codes(p: &Picture, max: f32) -> Vec<i32> {
    p.rgb.iter().map(|v| (v * max).round() as i32).collect()
}

/// Asserts two sequences (printf patterns, frames `frames`) agree within `tol` codes at `max`.
fn assert_seq_close(what: &str, a: &str, b: &str, frames: &[i64], max: f32, tol: i32) {
    for &t in frames {
        let (pa, pb) = (
            PathBuf::from(a.replace("%04d", &format!("{t:04}"))),
            PathBuf::from(b.replace("%04d", &format!("{t:04}"))),
        );
        let (ia, ib) = (read(&pa), read(&pb));
        assert_eq!(
            (ia.width, ia.height),
            (ib.width, ib.height),
            "{what}: frame {t} sizes differ"
        );
        let (ca, cb) = (codes(&ia, max), codes(&ib, max));
        let diffs: Vec<(usize, i32)> = ca
            .iter()
            .zip(&cb)
            .enumerate()
            .map(|(i, (x, y))| (i, (x - y).abs()))
            .filter(|&(_, d)| d > tol)
            .collect();
        if let Some(&(i, d)) = diffs.first() {
            let px = i / 3;
            panic!(
                "{what}: frame {t}: {} of {} values differ by more than {tol} codes; first at \
                 x={} row={} channel {}: {} vs {} ({d} codes)\n  {}\n  {}",
                diffs.len(),
                ca.len(),
                px % ia.width,
                px / ia.width,
                i % 3,
                ca[i],
                cb[i],
                pa.display(),
                pb.display()
            );
        }
    }
}

fn psnr(clean: &Picture, p: &Picture) -> f64 {
    let mse = clean
        .rgb
        .iter()
        .zip(&p.rgb)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        / clean.rgb.len() as f64;
    10.0 * (1.0 / mse).log10()
}

fn frame_path(pattern: &str, t: i64) -> PathBuf {
    PathBuf::from(pattern.replace("%04d", &format!("{t:04}")))
}

/// `vdiff render IN OUT ARGS...`
fn cli_render(input: &str, output: &str, args: &[&str]) {
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_vdiff"))
            .args(["render", input, output])
            .args(args),
    );
}

// ---------------------------------------------------------------------------------------------
// melt

/// MLT's pipelines: the consumer properties that keep a PNG sequence lossless at 8 and 16 bits.
#[derive(Clone, Copy, Debug)]
enum Pipe {
    Bits8,
    Bits16,
}

impl Pipe {
    fn consumer(self) -> &'static [&'static str] {
        match self {
            Pipe::Bits8 => &["pix_fmt=rgba"],
            Pipe::Bits16 => &["pix_fmt=rgba64be", "mlt_image_format=rgba64"],
        }
    }
    fn depth(self) -> Depth {
        match self {
            Pipe::Bits8 => Depth::U8,
            Pipe::Bits16 => Depth::U16,
        }
    }
    fn max(self) -> f32 {
        match self {
            Pipe::Bits8 => 255.0,
            Pipe::Bits16 => 65535.0,
        }
    }
}

/// Renders `input` (a %04d pattern, frames 0..frames) through the filter with `params`
/// (`name=value`; None: no filter at all) and `extra` consumer properties; returns the output
/// pattern and melt's output.
fn melt_render(
    melt: &Path,
    dir: &Path,
    input: &str,
    (width, height, frames): (i32, i32, i64),
    params: Option<&[&str]>,
    pipe: Pipe,
    extra: &[&str],
) -> (String, Output) {
    let profile = dir.join("profile");
    // NOTE: MLT: a profile without `description=` crashes melt.
    std::fs::write(
        &profile,
        format!(
            "description=vdiff-test\nframe_rate_num=25\nframe_rate_den=1\nwidth={w}\nheight={h}\n\
             progressive=1\nsample_aspect_num=1\nsample_aspect_den=1\ndisplay_aspect_num={w}\n\
             display_aspect_den={h}\ncolorspace=709\n",
            w = width,
            h = height
        ),
    )
    .unwrap();
    let out_dir = dir.join("melt-out");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let pattern = format!("{}/%04d.png", out_dir.display());
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "10", "60"])
        .arg(melt)
        .env("OFX_PLUGIN_PATH", bundle())
        .arg("-profile")
        .arg(&profile)
        .args(producers(input, frames, extra))
        .args(match params {
            Some(_) => &["-filter", "openfx.net.vdiff.VideoDiffusion"][..],
            None => &[],
        })
        .args(params.unwrap_or_default())
        .arg("-consumer")
        .arg(format!("avformat:{pattern}"))
        .args(["vcodec=png", "start_number=0"])
        .args(pipe.consumer())
        // NOTE: MLT: a consumer's default real_time=1 drops frames that fall behind the clock on
        // a busy machine; -1 renders every frame on one thread (`extra` may ask for -2).
        .args(if extra.iter().any(|e| e.starts_with("real_time=")) {
            &[][..]
        } else {
            &["real_time=-1"][..]
        })
        .args(extra);
    // NOTE: MLT 7.41: on a loaded machine melt sometimes starts no consumer at all: it prints
    // nothing and writes nothing, then exits 0 or sleeps in main() forever (seen with no filter
    // in the chain too, about 1 run in 10 with four at once). One melt runs at a time here, and
    // a run that wrote nothing at all and said nothing is tried again, twice at most.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut attempt = 0;
    let out = loop {
        attempt += 1;
        let out = run(&mut cmd);
        let silent = text(&out).trim().is_empty()
            && std::fs::read_dir(&out_dir).map_or(0, |d| d.count()) == 0
            && matches!(out.status.code(), Some(0) | Some(124));
        if silent && attempt < 3 {
            eprintln!(
                "melt started no consumer ({}); running it again",
                out.status
            );
            continue;
        }
        assert!(
            out.status.success(),
            "{cmd:?} failed ({}):\n{}",
            out.status,
            text(&out)
        );
        break out;
    };
    for t in 0..frames {
        assert!(
            frame_path(&pattern, t).is_file(),
            "melt ({width}x{height}, filter {}) wrote no frame {t}:\n{}",
            params.is_some(),
            text(&out)
        );
    }
    (pattern, out)
}

/// melt's producers for frames 0..frames of the sequence `input`: the sequence itself, or one
/// still per frame where `extra` asks for several render threads (`real_time=-N`, N > 1).
// NOTE: MLT 7.41: two threads reading one image-sequence producer (avformat) sometimes give
// frame 0 the picture of frame 1, with no filter in the chain too (8 runs in 100 on a loaded
// machine; 0 in 80 with one producer per frame).
fn producers(input: &str, frames: i64, extra: &[&str]) -> Vec<String> {
    let threads = extra
        .iter()
        .find_map(|e| e.strip_prefix("real_time="))
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(1, i64::abs);
    if threads < 2 {
        return vec![input.into(), "in=0".into(), format!("out={}", frames - 1)];
    }
    (0..frames)
        .flat_map(|t| {
            [
                frame_path(input, t).display().to_string(),
                "in=0".into(),
                "out=0".into(),
            ]
        })
        .collect()
}

fn noisy_footage(w: i32, h: i32, frames: i64, quantize: f32) -> Footage {
    Footage {
        noise: 0.1,
        quantize: Some(quantize),
        ..Footage::new(w, h, 0, frames - 1)
    }
}

#[test]
fn melt_lists_the_filter_with_every_parameter() {
    let Some(melt) = melt() else { return };
    let out = run_ok(
        Command::new(&melt)
            .env("OFX_PLUGIN_PATH", bundle())
            .arg("-query")
            .arg("filter=openfx.net.vdiff.VideoDiffusion"),
    );
    let yaml = text(&out);
    assert!(
        yaml.contains("identifier: openfx.net.vdiff.VideoDiffusion"),
        "melt does not list the filter:\n{yaml}"
    );
    // NOTE: MLT lists no push buttons (Analyze Noise, Clear Cache): it has nothing to press.
    for p in vdiff::effect::params::PARAMS
        .iter()
        .filter(|p| !matches!(p.kind, vdiff::effect::params::Kind::PushButton))
    {
        let id = p.id.to_str().unwrap();
        assert!(
            yaml.contains(&format!("identifier: {id}\n")),
            "melt does not list parameter {id}:\n{yaml}"
        );
    }
}

/// The 8- and 16-bit pipelines give the command line's frames (no temporal access under MLT:
/// `--temporal-radius 0`) byte for byte, and clearly less noise than the input.
fn melt_matches_the_command_line(pipe: Pipe) {
    let Some(melt) = melt() else { return };
    let dir = temp_dir(&format!("melt-{pipe:?}"));
    let f = noisy_footage(W, H, 6, pipe.max());
    let input = write_seq(&dir.join("in"), "", &f, pipe.depth());
    let (out, log) = melt_render(
        &melt,
        &dir,
        &input,
        (W, H, 6),
        Some(&["noiseLevel=0.1"]),
        pipe,
        &[],
    );
    assert!(
        text(&log).contains("MLT gives no access to neighbouring frames"),
        "no word about the missing temporal access:\n{}",
        text(&log)
    );
    let cli = format!("{}/cli/%04d.png", dir.display());
    cli_render(
        &input,
        &cli,
        &["--noise-level", "0.1", "--temporal-radius", "0"],
    );
    let frames: Vec<i64> = (0..6).collect();
    assert_seq_close(
        &format!("melt {pipe:?} vs vdiff render"),
        &out,
        &cli,
        &frames,
        pipe.max(),
        0,
    );
    let clean = Footage { noise: 0.0, ..f };
    for t in frames {
        let c = picture(&clean, t, pipe.depth());
        let before = psnr(&c, &read(&frame_path(&input, t)));
        let after = psnr(&c, &read(&frame_path(&out, t)));
        assert!(
            after > before + 5.0,
            "melt {pipe:?} frame {t}: PSNR {after:.2} dB after, {before:.2} dB before"
        );
    }
}

#[test]
fn melt_8bit_pipeline_matches_the_command_line() {
    melt_matches_the_command_line(Pipe::Bits8);
}

#[test]
fn melt_16bit_pipeline_matches_the_command_line() {
    melt_matches_the_command_line(Pipe::Bits16);
}

/// A keyframed Strength (MLT's `0=a;5=b`, linear) gives the command line's keyframes, and frames
/// rendered two at a time on melt's threads give the same bytes.
#[test]
fn melt_keyframed_strength_and_parallel_frames() {
    let Some(melt) = melt() else { return };
    let dir = temp_dir("melt-keys");
    let f = noisy_footage(W, H, 6, 255.0);
    let input = write_seq(&dir.join("in"), "", &f, Depth::U8);
    let params = [
        "noiseLevel=0.1",
        "strength=0=0.1;5=0.6",
        "steps=3",
        "seed=5",
    ];
    let render = |name: &str, extra: &[&str]| {
        let (out, log) = melt_render(
            &melt,
            &dir,
            &input,
            (W, H, 6),
            Some(&params),
            Pipe::Bits8,
            extra,
        );
        let moved = dir.join(name);
        std::fs::rename(dir.join("melt-out"), &moved).unwrap();
        (out.replace("melt-out", name), log)
    };
    let frames: Vec<i64> = (0..6).collect();
    let (seq, log) = render("one-thread", &[]);
    // real_time=-2: two render threads, no frame dropped; the same bytes as one thread.
    let (par, _) = render("two-threads", &["real_time=-2"]);
    assert_seq_close("melt on two threads vs one", &par, &seq, &frames, 255.0, 0);
    // The command line with the same settings and Strength `strength`.
    let cli_with = |name: &str, strength: &str| {
        let out = format!("{}/{name}/%04d.png", dir.display());
        let fixed = ["--noise-level", "0.1", "--steps", "3", "--seed", "5"];
        let mut args = fixed.to_vec();
        args.extend(["--temporal-radius", "0", "--strength", strength]);
        cli_render(&input, &out, &args);
        out
    };
    let cli = cli_with("cli", "0:0.1,5:0.6");
    assert_seq_close(
        "melt keyframes vs vdiff render",
        &seq,
        &cli,
        &frames,
        255.0,
        0,
    );
    // The keys matter: a constant Strength gives another last frame.
    let flat = cli_with("flat", "0.1");
    assert_ne!(
        read(&frame_path(&seq, 5)).rgb,
        read(&frame_path(&flat, 5)).rgb,
        "frame 5 ignores Strength's keyframe:\n{}",
        text(&log)
    );
}

/// A missing or corrupt Model File: the host shows the plugin's message and every frame comes
/// back as it went in.
#[test]
fn melt_bad_model_file_passes_frames_through_with_a_message() {
    let Some(melt) = melt() else { return };
    let dir = temp_dir("melt-model");
    let f = noisy_footage(W, H, 2, 255.0);
    let input = write_seq(&dir.join("in"), "", &f, Depth::U8);
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"not a safetensors file at all").unwrap();
    let missing = dir.join("missing.safetensors");
    for model in [&missing, &corrupt] {
        let param = format!("modelFile={}", model.display());
        let (out, log) = melt_render(
            &melt,
            &dir,
            &input,
            (W, H, 2),
            Some(&["noiseLevel=0.1", &param]),
            Pipe::Bits8,
            &[],
        );
        let log = text(&log);
        assert!(
            log.contains("OfxMessageError") && log.contains(&model.display().to_string()),
            "no host message naming {}:\n{log}",
            model.display()
        );
        assert!(
            log.contains("built-in model"),
            "the message says what to do:\n{log}"
        );
        assert_seq_close(
            &format!("{} passes frames through", model.display()),
            &out,
            &input,
            &[0, 1],
            255.0,
            0,
        );
    }
}

/// Frame sizes no codec likes: every one renders, as the command line does on the frames melt
/// hands the effect. NOTE: MLT: its own PNG pipeline is not lossless at every size (a 1x1 frame
/// comes out white with no filter at all), so the reference is melt's render without the filter.
#[test]
fn melt_renders_odd_frame_sizes() {
    let Some(melt) = melt() else { return };
    for (w, h) in [(1, 1), (3, 2), (4097, 3)] {
        let dir = temp_dir(&format!("melt-size-{w}x{h}"));
        let f = noisy_footage(w, h, 2, 255.0);
        write_seq(&dir.join("in"), "", &f, Depth::U8);
        let input = format!("{}/in/%04d.png", dir.display());
        let (plain, _) = melt_render(&melt, &dir, &input, (w, h, 2), None, Pipe::Bits8, &[]);
        let fed = dir.join("fed");
        std::fs::rename(dir.join("melt-out"), &fed).unwrap();
        let input = plain.replace("melt-out", "fed");
        let (out, _) = melt_render(
            &melt,
            &dir,
            &input,
            (w, h, 2),
            Some(&["noiseLevel=0.1"]),
            Pipe::Bits8,
            &[],
        );
        let cli = format!("{}/cli/%04d.png", dir.display());
        cli_render(
            &input,
            &cli,
            &["--noise-level", "0.1", "--temporal-radius", "0"],
        );
        assert_seq_close(&format!("melt {w}x{h}"), &out, &cli, &[0, 1], 255.0, 0);
    }
}

/// The in-repo host's MLT profile gives what melt gives on the same 8-bit frames.
#[test]
fn emulated_mlt_matches_melt() {
    let Some(melt) = melt() else { return };
    let dir = temp_dir("melt-emulation");
    let f = noisy_footage(W, H, 4, 255.0);
    let input = write_seq(&dir.join("in"), "", &f, Depth::U8);
    let (out, _) = melt_render(
        &melt,
        &dir,
        &input,
        (W, H, 4),
        Some(&["noiseLevel=0.1", "strength=0.2", "steps=2"]),
        Pipe::Bits8,
        &[],
    );
    let project = Project::new(f)
        .set("noiseLevel", 0.1)
        .set("strength", 0.2)
        .set("steps", 2);
    assert_emulation_matches(HostConfig::mlt(), &project, &[0, 1, 2, 3], &out, 255.0, 0);
}

/// Renders `frames` of `project` with the in-repo host's profile `cfg` and compares each with
/// the real host's file of that frame (`out`, a %04d pattern) within `tol` codes at `max`.
fn assert_emulation_matches(
    cfg: HostConfig,
    project: &Project,
    frames: &[i64],
    out: &str,
    max: f32,
    tol: i32,
) {
    let what = format!("emulated {} vs the real host", cfg.label);
    let h = crate::host::Host::start(cfg).unwrap_or_else(|e| panic!("{e}"));
    let emulated = h
        .render_frames(project, frames, 1, &RenderOpts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    for fo in &emulated {
        assert!(fo.ok(), "{what}: frame {} failed", fo.t);
        assert_same_as_file(&what, fo, &frame_path(out, fo.t), max, tol);
    }
    h.finish().assert_clean();
}

/// Compares an in-repo host frame (OFX rows, y up) with a file (rows top first).
fn assert_same_as_file(what: &str, fo: &crate::host::FrameOut, file: &Path, max: f32, tol: i32) {
    let pic = read(file);
    let (w, h) = (fo.window.width() as usize, fo.window.height() as usize);
    assert_eq!(
        (pic.width, pic.height),
        (w, h),
        "{what}: frame {} size",
        fo.t
    );
    let px = fo.pixels();
    let mut worst = (0, 0usize, 0usize);
    for row in 0..h {
        for x in 0..w {
            let a = px[(h - 1 - row) * w + x];
            for (c, v) in a.iter().take(3).enumerate() {
                let d = ((v * max).round() as i32
                    - (pic.rgb[(row * w + x) * 3 + c] * max).round() as i32)
                    .abs();
                if d > worst.0 {
                    worst = (d, x, row);
                }
            }
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: frame {} differs by {} codes at x={} row={} ({})",
        fo.t,
        worst.0,
        worst.1,
        worst.2,
        file.display()
    );
}

// ---------------------------------------------------------------------------------------------
// Natron

/// Renders `in_dir/src.####.png` frames first..=last through NatronRenderer with `script`
/// (Python run before the graph is built: `bits16`, `nParallel`, `params`, ...) into
/// `dir/natron/dst.####.png`; returns the output as a %04d pattern and Natron's output.
fn natron_render(
    natron: &Path,
    dir: &Path,
    input_dir: &Path,
    frames: (i64, i64),
    script: &str,
) -> (String, Output) {
    let out_dir = dir.join("natron");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let out = run(Command::new(natron)
        .arg(bundle())
        .arg("net.vdiff.VideoDiffusion")
        .arg(input_dir.join("src.####.png"))
        .arg(out_dir.join("dst.####.png"))
        .arg(format!("{}-{}", frames.0, frames.1))
        .arg(script)
        // NOTE: Natron: processes sharing a home share its image cache and plugin cache, and
        // two started at once can abort on it: each render gets a home of its own.
        .env("HOME", dir.join("home"))
        .env("NATRON_TIMEOUT", "300"));
    // NOTE: Natron: a fetched image never released deadlocks the render; the wrapper's timeout
    // then ends it with status 124 or 137, which this reports as the failure it is.
    // NOTE: Natron 2.5 on a loaded machine sometimes aborts in its own shutdown, after the
    // render ("QThread: Destroyed while thread is still running"): the frames are all written
    // and checked below, so only that exit is let through.
    let log = text(&out);
    let shutdown_abort = log.contains("Rendering finished")
        && log.contains("QThread: Destroyed while thread is still running");
    assert!(
        out.status.success() || shutdown_abort,
        "NatronRenderer failed or timed out ({}):\n{log}",
        out.status
    );
    let pattern = format!("{}/dst.%04d.png", out_dir.display());
    for t in frames.0..=frames.1 {
        assert!(
            frame_path(&pattern, t).is_file(),
            "Natron wrote no frame {t}:\n{}",
            text(&out)
        );
    }
    (pattern, out)
}

/// Natron numbers frames from 1.
fn natron_footage(w: i32, h: i32, frames: i64) -> Footage {
    Footage {
        noise: 0.1,
        quantize: Some(65535.0),
        ..Footage::new(w, h, 1, frames)
    }
}

/// Temporal access, two frames at once, engine tiles: Natron gives the command line's frames
/// (default Temporal Radius 2) within one 16-bit code, and they use the neighbours.
#[test]
fn natron_matches_the_command_line_with_temporal_access() {
    let Some(natron) = natron() else { return };
    let dir = temp_dir("natron-temporal");
    let (w, h) = (160, 96);
    let f = natron_footage(w, h, 8);
    let input = write_seq(&dir.join("in"), "src.", &f, Depth::U16);
    let (out, _) = natron_render(
        &natron,
        &dir,
        &dir.join("in"),
        (1, 8),
        r#"bits16=1; nParallel=2; params={"noiseLevel": 0.1, "tileSize": 64}"#,
    );
    let cli = format!("{}/cli/dst.%04d.png", dir.display());
    cli_render(&input, &cli, &["--noise-level", "0.1", "--tile-size", "64"]);
    let frames: Vec<i64> = (1..=8).collect();
    assert_seq_close("Natron vs vdiff render", &out, &cli, &frames, 65535.0, 1);
    let alone = format!("{}/alone/dst.%04d.png", dir.display());
    cli_render(
        &input,
        &alone,
        &[
            "--noise-level",
            "0.1",
            "--tile-size",
            "64",
            "--temporal-radius",
            "0",
        ],
    );
    assert_ne!(
        read(&frame_path(&out, 4)).rgb,
        read(&frame_path(&alone, 4)).rgb,
        "Natron's frame 4 equals a frame-by-frame render: no temporal access"
    );
}

/// Parameters animated over the shot (keys set through Natron's Python API) give the command
/// line's keyframes within one 16-bit code.
#[test]
fn natron_animated_parameters_match_the_command_line() {
    let Some(natron) = natron() else { return };
    let dir = temp_dir("natron-keys");
    let f = natron_footage(W, H, 6);
    let input = write_seq(&dir.join("in"), "src.", &f, Depth::U16);
    // The graph is built after this runs: wrap createNode to key the effect as it is made.
    let script = r#"bits16=1; nParallel=2; params={"noiseLevel": 0.1, "steps": 3, "seed": 9}
_create = app.createNode
def _keyed(pid, *rest):
    n = _create(pid, *rest)
    if pid == pluginID:
        for t, v in ((1, 0.1), (6, 0.5)):
            n.getParam("strength").setValueAtTime(v, t)
        for t, v in ((1, 0.5), (6, 1.0)):
            n.getParam("temporalSmoothing").setValueAtTime(v, t)
    return n
app.createNode = _keyed"#;
    let (out, _) = natron_render(&natron, &dir, &dir.join("in"), (1, 6), script);
    let cli = format!("{}/cli/dst.%04d.png", dir.display());
    cli_render(
        &input,
        &cli,
        &[
            "--noise-level",
            "0.1",
            "--steps",
            "3",
            "--seed",
            "9",
            "--strength",
            "1:0.1,6:0.5",
            "--temporal-smoothing",
            "1:0.5,6:1.0",
        ],
    );
    let frames: Vec<i64> = (1..=6).collect();
    assert_seq_close(
        "Natron keyframes vs vdiff render",
        &out,
        &cli,
        &frames,
        65535.0,
        1,
    );
}

/// A missing Model File: every frame finishes and comes back as it went in.
#[test]
fn natron_missing_model_passes_frames_through() {
    let Some(natron) = natron() else { return };
    let dir = temp_dir("natron-model");
    let f = natron_footage(W, H, 3);
    let input = write_seq(&dir.join("in"), "src.", &f, Depth::U16);
    let missing = dir.join("missing.safetensors");
    let script = format!(
        r#"bits16=1; nParallel=2; params={{"noiseLevel": 0.1, "modelFile": "{}"}}"#,
        missing.display()
    );
    let (out, log) = natron_render(&natron, &dir, &dir.join("in"), (1, 3), &script);
    assert_seq_close(
        "Natron without its model",
        &out,
        &input,
        &[1, 2, 3],
        65535.0,
        0,
    );
    assert!(
        text(&log).contains(&missing.display().to_string()),
        "no message names the missing model:\n{}",
        text(&log)
    );
}

/// The in-repo host's Natron profile gives what Natron gives on the same 16-bit frames.
#[test]
fn emulated_natron_matches_natron() {
    let Some(natron) = natron() else { return };
    let dir = temp_dir("natron-emulation");
    let f = natron_footage(W, H, 5);
    write_seq(&dir.join("in"), "src.", &f, Depth::U16);
    let (out, _) = natron_render(
        &natron,
        &dir,
        &dir.join("in"),
        (1, 5),
        r#"bits16=1; nParallel=1; params={"noiseLevel": 0.1, "temporalRadius": 1}"#,
    );
    let project = Project::new(f)
        .set("noiseLevel", 0.1)
        .set("temporalRadius", 1);
    assert_emulation_matches(
        HostConfig::natron(),
        &project,
        &[1, 2, 3, 4, 5],
        &out,
        65535.0,
        1,
    );
}

//! The `vdiff` command line, driven as a user would: the real binary on small generated
//! sequences (5 frames of 48x40, a moving pattern plus seeded noise, the built-in model).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use exr::prelude::f16;
use vdiff::imageio::{self, Depth, Picture};

const W: usize = 48;
const H: usize = 40;
const FRAMES: i64 = 5;
/// Cheap but real engine settings for every run.
const FAST: [&str; 4] = ["--steps", "2", "--temporal-radius", "1"];

fn vdiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vdiff"))
        .args(args)
        .env_remove("VDIFF_LOG")
        .output()
        .expect("cannot start the vdiff binary")
}

/// The command-line flag of a plugin parameter id: `temporalRadius` -> `--temporal-radius`.
fn flag_of(id: &str) -> String {
    let mut flag = String::from("--");
    for c in id.chars() {
        if c.is_ascii_uppercase() {
            flag.push('-');
        }
        flag.push(c.to_ascii_lowercase());
    }
    flag
}

fn ok(args: &[&str]) -> Output {
    let out = vdiff(args);
    assert!(
        out.status.success(),
        "vdiff {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh, empty folder for one test.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vdiff-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// splitmix64: a seeded hash for test noise (no RNG crate, same values everywhere).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Standard normal sample keyed by (frame, pixel index, channel), by Box-Muller.
fn gauss(t: i64, i: usize, c: usize) -> f64 {
    let k = mix(((t as u64) << 40) ^ ((i as u64) << 4) ^ c as u64);
    let u1 = ((k >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (mix(k) >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The clean moving pattern at frame t, pixel (x, y) of file row y, channel c.
fn clean(t: i64, x: usize, y: usize, c: usize) -> f64 {
    let u = (x as f64 + 2.0 * t as f64) / 7.0 + c as f64;
    0.5 + 0.3 * u.sin() * (y as f64 / 6.0).cos()
}

/// Frame t stored exactly at `depth`: the pattern plus noise of `sigma`; float depths also carry
/// a few out-of-range values that must survive untouched.
fn frame(t: i64, depth: Depth, alpha: bool, sigma: f64) -> Picture {
    let store = |v: f64| -> f32 {
        match depth {
            Depth::U8 => (v.clamp(0.0, 1.0) * 255.0).round() as f32 / 255.0,
            Depth::U16 => (v.clamp(0.0, 1.0) * 65535.0).round() as f32 / 65535.0,
            Depth::Half => f16::from_f64(v).to_f32(),
            Depth::Float => v as f32,
        }
    };
    let mut rgb = Vec::with_capacity(W * H * 3);
    for y in 0..H {
        for x in 0..W {
            for c in 0..3 {
                let mut v = clean(t, x, y, c) + sigma * gauss(t, y * W + x, c);
                if matches!(depth, Depth::Half | Depth::Float) && x == 3 && y == 2 {
                    v = if c == 0 { 1.75 } else { -0.25 };
                }
                rgb.push(store(v));
            }
        }
    }
    let alpha = alpha.then(|| (0..W * H).map(|i| store((i % 97) as f64 / 96.0)).collect());
    Picture {
        width: W,
        height: H,
        depth,
        rgb,
        alpha,
    }
}

/// Writes frames 0..FRAMES as `dir/%04d.ext`; returns the pattern.
fn write_seq(dir: &Path, ext: &str, depth: Depth, alpha: bool, sigma: f64) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for t in 0..FRAMES {
        imageio::write(
            &dir.join(format!("{t:04}.{ext}")),
            &frame(t, depth, alpha, sigma),
            depth,
        )
        .unwrap();
    }
    format!("{}/%04d.{ext}", dir.display())
}

fn read(p: impl AsRef<Path>) -> Picture {
    let p = p.as_ref();
    imageio::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn mse_to_clean(p: &Picture, t: i64) -> f64 {
    let mut sum = 0.0;
    for y in 0..H {
        for x in 0..W {
            for c in 0..3 {
                let d = p.rgb[(y * W + x) * 3 + c] as f64 - clean(t, x, y, c);
                sum += d * d;
            }
        }
    }
    sum / (W * H * 3) as f64
}

#[test]
fn identity_render_reproduces_every_format_and_depth_exactly() {
    let root = scratch("identity");
    let cases = [
        ("png", Depth::U8, false),
        ("png", Depth::U16, true),
        ("tif", Depth::U8, true),
        ("tif", Depth::U16, false),
        ("tiff", Depth::Float, true),
        ("exr", Depth::Half, false),
        ("exr", Depth::Float, true),
    ];
    for (ext, depth, alpha) in cases {
        let tag = format!("{ext}-{depth}-{alpha}");
        let input = write_seq(&root.join(format!("in-{tag}")), ext, depth, alpha, 0.05);
        let output = format!("{}/out-{tag}/%04d.{ext}", root.display());
        let mut args = vec![
            "render",
            &input,
            &output,
            "--strength",
            "0",
            "--noise-level",
            "0",
        ];
        args.extend(FAST);
        ok(&args);
        for t in 0..FRAMES {
            let out_path = root.join(format!("out-{tag}/{t:04}.{ext}"));
            let head = imageio::read_header(&out_path).unwrap();
            assert_eq!(
                (head.depth, head.alpha, head.width, head.height),
                (depth, alpha, W, H),
                "{tag}"
            );
            assert!(
                read(&out_path) == frame(t, depth, alpha, 0.05),
                "{tag}: frame {t} differs from its input"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn denoising_keeps_depth_and_alpha_and_removes_noise() {
    let root = scratch("denoise");
    for (ext, depth) in [("png", Depth::U16), ("exr", Depth::Half)] {
        let input = write_seq(&root.join(format!("in-{ext}")), ext, depth, true, 0.08);
        let output = format!("{}/out-{ext}/%04d.{ext}", root.display());
        let mut args = vec![
            "render",
            &input,
            &output,
            "--noise-level",
            "0.08",
            "--seed",
            "7",
        ];
        args.extend(FAST);
        ok(&args);
        for t in 0..FRAMES {
            let src = frame(t, depth, true, 0.08);
            let out = read(root.join(format!("out-{ext}/{t:04}.{ext}")));
            assert_eq!(out.depth, depth, "{ext}");
            assert_eq!(
                out.alpha, src.alpha,
                "{ext}: alpha must pass through untouched"
            );
            let (before, after) = (mse_to_clean(&src, t), mse_to_clean(&out, t));
            assert!(
                after < 0.7 * before,
                "{ext} frame {t}: error to the clean frame {before:.5} -> {after:.5}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn depth_flag_converts_and_format_follows_the_extension() {
    let root = scratch("depth");
    let input = write_seq(&root.join("in"), "png", Depth::U8, false, 0.05);
    let identity = ["--strength", "0", "--noise-level", "0"];
    let to_exr = format!("{}/exr/%04d.exr", root.display());
    let mut args = vec!["render", &input, &to_exr];
    args.extend(identity);
    ok(&args);
    // 8-bit into EXR keeps every value: half holds k/255 to well under half a code value.
    let e = read(root.join("exr/0002.exr"));
    assert_eq!(e.depth, Depth::Half);
    let src = frame(2, Depth::U8, false, 0.05);
    assert!(e
        .rgb
        .iter()
        .zip(&src.rgb)
        .all(|(a, b)| (a - b).abs() < 0.5 / 255.0));

    let to16 = format!("{}/tif16/%04d.tif", root.display());
    let mut args = vec!["render", &input, &to16, "--depth", "16"];
    args.extend(identity);
    ok(&args);
    let t = read(root.join("tif16/0002.tif"));
    assert_eq!(t.depth, Depth::U16);
    assert_eq!(t.rgb, src.rgb, "8-bit values are exact in 16-bit");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn frame_ranges_match_a_whole_shot_render_byte_for_byte() {
    let root = scratch("pieces");
    let input = write_seq(&root.join("in"), "png", Depth::U16, false, 0.08);
    let effect = [
        "--noise-level",
        "0.08",
        "--strength",
        "0.1",
        "--seed",
        "3",
        "--detail",
        "0.5",
    ];
    let whole = format!("{}/whole/%04d.png", root.display());
    let mut args = vec!["render", &input, &whole];
    args.extend(effect);
    args.extend(FAST);
    ok(&args);
    let pieces = format!("{}/pieces/%04d.png", root.display());
    for range in ["3-4", "0-1", "2"] {
        let mut args = vec!["render", &input, &pieces, "--frames", range];
        args.extend(effect);
        args.extend(FAST);
        ok(&args);
    }
    for t in 0..FRAMES {
        let a = std::fs::read(root.join(format!("whole/{t:04}.png"))).unwrap();
        let b = std::fs::read(root.join(format!("pieces/{t:04}.png"))).unwrap();
        assert!(
            a == b,
            "frame {t}: a piece differs from the whole-shot render"
        );
    }
    let only = format!("{}/only/%04d.png", root.display());
    let mut args = vec!["render", &input, &only, "--frames", "1-2"];
    args.extend(effect);
    args.extend(FAST);
    ok(&args);
    let mut names: Vec<String> = std::fs::read_dir(root.join("only"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["0001.png", "0002.png"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn keyframes_are_evaluated_at_every_frame() {
    let root = scratch("keys");
    let input = write_seq(&root.join("in"), "png", Depth::U16, false, 0.06);
    let output = format!("{}/out/%04d.png", root.display());
    let mut args = vec![
        "render",
        &input,
        &output,
        "--noise-level",
        "0:0,4:0.12",
        "--strength",
        "0:0,4:0.3",
    ];
    args.extend(FAST);
    ok(&args);
    let first = read(root.join("out/0000.png"));
    assert!(
        first == frame(0, Depth::U16, false, 0.06),
        "frame 0 (noise level and strength keyed 0) must equal its input"
    );
    for t in 1..FRAMES {
        let out = read(root.join(format!("out/{t:04}.png")));
        assert!(
            out != frame(t, Depth::U16, false, 0.06),
            "frame {t} was not processed"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn jpeg_frames_are_read_and_never_written() {
    let root = scratch("jpeg");
    let jpg = root.join("jpg");
    std::fs::create_dir_all(&jpg).unwrap();
    let noisy: Vec<Picture> = (0..FRAMES)
        .map(|t| frame(t, Depth::U8, false, 0.05))
        .collect();
    for (t, f) in noisy.iter().enumerate() {
        let bytes: Vec<u8> = f.rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
        let img = image::RgbImage::from_raw(W as u32, H as u32, bytes).unwrap();
        let file = std::fs::File::create(jpg.join(format!("{t:04}.jpg"))).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(file, 95)
            .encode_image(&img)
            .unwrap();
    }
    // Read back: the size, 8 bits, and the pixels within JPEG's loss of the frame it encoded.
    let back = read(jpg.join("0000.jpg"));
    assert_eq!((back.width, back.height, back.depth), (W, H, Depth::U8));
    assert!(back.alpha.is_none());
    let err = crate::common::mean_abs_diff(&back.rgb, &noisy[0].rgb);
    assert!(err > 0.0 && err < 0.03, "JPEG read back {err} away");

    let out = root.join("out");
    let pattern = format!("{}/%04d.jpg", jpg.display());
    let mut args = vec![
        "render".to_string(),
        pattern.clone(),
        format!("{}/%04d.png", out.display()),
        "--noise-level".into(),
        "0.05".into(),
    ];
    args.extend(FAST.iter().map(|a| a.to_string()));
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for t in 0..FRAMES {
        let p = read(out.join(format!("{t:04}.png")));
        let before = mse_to_clean(&read(jpg.join(format!("{t:04}.jpg"))), t);
        assert!(
            mse_to_clean(&p, t) < 0.5 * before,
            "frame {t} not denoised: {} against {before}",
            mse_to_clean(&p, t)
        );
    }

    // JPEG as an output: refused before anything is written, as a pattern and as a folder.
    let guard = Guard::new(&root.join("refused"));
    let refused = format!("{}/%04d.jpg", root.join("refused").display());
    fails(&["render", &pattern, &refused], &["JPEG", ".png"], &guard);
    fails(
        &["render", &s(&jpg), &s(&root.join("refused"))],
        &["JPEG", ".png"],
        &guard,
    );
}

#[test]
fn folders_in_and_out_keep_file_names() {
    let root = scratch("folders");
    let inp = root.join("plates");
    std::fs::create_dir_all(&inp).unwrap();
    for t in 0..3 {
        imageio::write(
            &inp.join(format!("plate_v2.{:04}.tif", t + 10)),
            &frame(t, Depth::Float, false, 0.05),
            Depth::Float,
        )
        .unwrap();
    }
    std::fs::write(inp.join("notes.txt"), "not an image").unwrap();
    let out = root.join("clean");
    let mut args = vec![
        "render".to_string(),
        s(&inp),
        s(&out),
        "--strength".into(),
        "0".into(),
        "--noise-level".into(),
        "0".into(),
    ];
    args.extend(FAST.iter().map(|a| a.to_string()));
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for t in 0..3 {
        let p = out.join(format!("plate_v2.{:04}.tif", t + 10));
        assert!(
            read(&p) == frame(t, Depth::Float, false, 0.05),
            "{}",
            p.display()
        );
    }
    assert!(!out.join("notes.txt").exists());
    let _ = std::fs::remove_dir_all(&root);
}

/// A pre-existing output file, to prove a failing run leaves it alone.
struct Guard {
    path: PathBuf,
    bytes: Vec<u8>,
    mtime: SystemTime,
}

impl Guard {
    fn new(dir: &Path) -> Guard {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("0000.png");
        imageio::write(&path, &frame(9, Depth::U8, false, 0.0), Depth::U8).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        Guard { path, bytes, mtime }
    }

    fn check(&self, what: &str) {
        assert_eq!(
            std::fs::read(&self.path).unwrap(),
            self.bytes,
            "{what}: existing output changed"
        );
        assert_eq!(
            std::fs::metadata(&self.path).unwrap().modified().unwrap(),
            self.mtime,
            "{what}: existing output touched"
        );
        let others: Vec<_> = std::fs::read_dir(self.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "0000.png")
            .collect();
        assert!(
            others.is_empty(),
            "{what}: the failed run left files behind: {others:?}"
        );
    }
}

fn fails(args: &[&str], must_name: &[&str], guard: &Guard) {
    let out = vdiff(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "vdiff {args:?} should fail; stderr:\n{err}"
    );
    for needle in must_name {
        assert!(
            err.contains(needle),
            "vdiff {args:?}: the message should name `{needle}`:\n{err}"
        );
    }
    guard.check(&format!("{args:?}"));
}

#[test]
fn bad_inputs_fail_with_a_clear_message_and_write_nothing() {
    let root = scratch("errors");
    let out_dir = root.join("out");
    let guard = Guard::new(&out_dir);
    let output = format!("{}/%04d.png", out_dir.display());

    // A pattern that matches nothing.
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let nothing = format!("{}/empty/%04d.png", root.display());
    fails(
        &["render", &nothing, &output],
        &["empty/%04d.png", "matches no file"],
        &guard,
    );

    // A frame missing inside the range.
    let gap = write_seq(&root.join("gap"), "png", Depth::U8, false, 0.05);
    std::fs::remove_file(root.join("gap/0002.png")).unwrap();
    fails(
        &["render", &gap, &output],
        &["gap/0002.png", "missing"],
        &guard,
    );

    // An unreadable frame (checked before anything is rendered, even outside --frames).
    let broken = write_seq(&root.join("broken"), "png", Depth::U8, false, 0.05);
    std::fs::write(root.join("broken/0003.png"), b"this is not a PNG").unwrap();
    fails(
        &["render", &broken, &output, "--frames", "0-1"],
        &["broken/0003.png"],
        &guard,
    );

    // A frame of another size.
    let sizes = write_seq(&root.join("sizes"), "png", Depth::U8, false, 0.05);
    let small = Picture {
        width: 8,
        height: 8,
        depth: Depth::U8,
        rgb: vec![0.5; 192],
        alpha: None,
    };
    imageio::write(&root.join("sizes/0004.png"), &small, Depth::U8).unwrap();
    fails(
        &["render", &sizes, &output],
        &["sizes/0004.png", "8x8", "48x40"],
        &guard,
    );

    // Flags with values they do not take.
    let good = write_seq(&root.join("good"), "png", Depth::U8, false, 0.05);
    fails(
        &["render", &good, &output, "--sampler", "ddim"],
        &["--sampler", "ddim"],
        &guard,
    );
    fails(
        &["render", &good, &output, "--strength", "0:0.1,x:0.2"],
        &["--strength", "x:0.2"],
        &guard,
    );
    fails(
        &["render", &good, &output, "--noise-level", "0.9"],
        &["--noise-level", "0.9"],
        &guard,
    );
    fails(
        &["render", &good, &output, "--steps", "0"],
        &["--steps"],
        &guard,
    );
    fails(
        &["render", &good, &output, "--device", "tpu"],
        &["--device", "tpu"],
        &guard,
    );
    fails(
        &["render", &good, &output, "--depth", "12"],
        &["--depth", "12"],
        &guard,
    );
    fails(
        &["render", &good, &output, "--depth", "half"],
        &["--depth", "PNG"],
        &guard,
    );
    fails(
        &["render", &good, &output, "--frames", "3-9"],
        &["--frames", "3-9", "0-4"],
        &guard,
    );
    fails(
        &[
            "render",
            &good,
            &output,
            "--model",
            "/no/such/model.safetensors",
        ],
        &["--model", "/no/such/model.safetensors"],
        &guard,
    );
    fails(
        &["render", &good, &output, "--no-such-flag"],
        &["--no-such-flag"],
        &guard,
    );
    let jpg = format!("{}/%04d.jpg", out_dir.display());
    fails(&["render", &good, &jpg], &["%04d.jpg"], &guard);
    // Output onto the input frames themselves.
    fails(
        &["render", &good, &good, "--noise-level", "0"],
        &["0000.png", "input"],
        &guard,
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn help_documents_every_flag() {
    let top = String::from_utf8(ok(&["--help"]).stdout).unwrap();
    for cmd in ["render", "demo", "bundle", "analyze"] {
        assert!(top.contains(cmd), "vdiff --help lacks `{cmd}`:\n{top}");
    }
    let render = String::from_utf8(ok(&["render", "--help"]).stdout).unwrap();
    // Every parameter of the plugin (but its push buttons) is a flag, named after its id.
    let params: Vec<String> = vdiff::params::PARAMS
        .iter()
        .filter(|p| !matches!(p.kind, vdiff::params::Kind::PushButton))
        .map(|p| format!("{} ", flag_of(p.id.to_str().unwrap())))
        .collect();
    assert!(params.len() >= 13 && params.contains(&"--temporal-radius ".to_string()));
    for flag in params.iter().map(String::as_str).chain([
        "[alias: --model]",
        "--frames",
        "--depth",
        "FRAME:VALUE",
        "Examples",
    ]) {
        assert!(
            render.contains(flag),
            "vdiff render --help lacks `{flag}`:\n{render}"
        );
    }
    let demo = String::from_utf8(ok(&["demo", "--help"]).stdout).unwrap();
    // The flag's line and its help (clap puts long help on the next line).
    let lines: Vec<&str> = demo.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("--steps"))
        .unwrap_or(0);
    let steps = lines[at..(at + 2).min(lines.len())].join(" ");
    assert!(
        demo.contains("--out")
            && demo.contains("[default: 0.05]")
            && steps.contains("[default: 1]"),
        "{demo}"
    );
}

#[test]
fn demo_writes_frames_and_a_contact_sheet() {
    let root = scratch("demo");
    let out = root.join("demo-out");
    let o = ok(&[
        "demo",
        "--out",
        &s(&out),
        "--frames",
        "0-1",
        "--steps",
        "1",
        "--temporal-radius",
        "0",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("contact-sheet.png"), "{text}");
    for t in 0..2 {
        let noisy = read(out.join(format!("noisy/{t:04}.png")));
        let den = read(out.join(format!("denoised/{t:04}.png")));
        assert_eq!((den.width, den.height, den.depth), (320, 240, Depth::U8));
        assert!(den != noisy, "frame {t} was not denoised");
    }
    assert_eq!(std::fs::read_dir(out.join("noisy")).unwrap().count(), 12);
    let sheet = read(out.join("contact-sheet.png"));
    assert_eq!(
        (sheet.width, sheet.height),
        (2 * 320 + 18, 2 * (240 + 6) + 6)
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Ctrl-C stops the render between sampler steps: exit 130, no temporary or partial file left,
/// every frame on disk complete, later frames not written.
#[cfg(unix)]
#[test]
fn interrupt_stops_cleanly() {
    let root = scratch("interrupt");
    let input = write_seq(&root.join("in"), "png", Depth::U8, false, 0.05);
    let out_dir = root.join("out");
    let output = format!("{}/%04d.png", out_dir.display());
    // Radius 0 and 100 steps: every frame costs the same, a few hundred model calls.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vdiff"))
        .args([
            "render",
            &input,
            &output,
            "--noise-level",
            "0.05",
            "--steps",
            "100",
            "--temporal-radius",
            "0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Press Ctrl-C as soon as the first frame is on disk, i.e. in the middle of the second.
    let start = std::time::Instant::now();
    while !out_dir.join("0000.png").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the render ended before writing a frame"
        );
        assert!(
            start.elapsed().as_secs() < 300,
            "no frame written after 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr:\n{err}");
    assert!(err.contains("interrupted"), "{err}");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&out_dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary file left behind: {name}");
        assert_eq!(read(&p).width, W, "{name} is incomplete");
        names.push(name);
    }
    assert!(
        names.len() < FRAMES as usize,
        "every frame was written: the render was not stopped"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_closed_stdout_ends_eval_quietly() {
    // `vdiff eval a b | head -1`: the reader goes away before the results are printed.
    let dir = scratch("pipe");
    let seq = write_seq(&dir.join("seq"), "png", Depth::U8, false, 0.0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vdiff"))
        .args(["eval", &seq, &seq])
        .env_remove("VDIFF_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start the vdiff binary");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "nothing to report, got: {err}");
}

#[test]
fn analyze_measures_the_noise_of_each_frame() {
    let root = scratch("analyze");
    let noisy = write_seq(&root.join("noisy"), "png", Depth::U8, false, 0.05);
    let clean = write_seq(&root.join("clean"), "png", Depth::U8, false, 0.0);
    let level = |pattern: &str| -> f64 {
        let o = ok(&["analyze", pattern, "--median"]);
        let text = String::from_utf8(o.stdout).unwrap();
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("`{text}` is not a number: {e}"))
    };
    // The pattern's own texture adds a little on so small a frame: within 20%.
    let n = level(&noisy);
    assert!((n / 0.05 - 1.0).abs() < 0.2, "estimated {n} for 0.05");
    assert!(level(&clean) < 0.2 * n);
    // One line per frame analyzed, then the median and the flag to use.
    let o = ok(&["analyze", &noisy, "--frames", "1-2"]);
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("frame") && lines[0].contains("1  noise level"));
    assert!(lines[2].contains("--noise-level"), "{text}");
    let o = vdiff(&["analyze", &noisy, "--frames", "7-9"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no frames to analyze"));
    let _ = std::fs::remove_dir_all(&root);
}

/// The README's parameter table states every parameter's id, label, default and range as the
/// plugin declares them (`vdiff::effect::params::PARAMS`), and lists no other.
#[test]
fn readme_parameter_table_matches_the_plugin() {
    use vdiff::effect::params::{Kind, PARAMS};
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let rows: Vec<Vec<String>> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| Plugin id (label)"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    assert_eq!(
        rows.len(),
        PARAMS.len(),
        "the README's table has {} rows, the plugin {} parameters",
        rows.len(),
        PARAMS.len()
    );
    for p in PARAMS {
        let id = p.id.to_str().unwrap();
        let head = format!("{id} ({})", p.label);
        let row = rows
            .iter()
            .find(|r| r[1] == head)
            .unwrap_or_else(|| panic!("no README row `{head}`"));
        let (flag, default, range) = (row[2].as_str(), row[3].as_str(), row[4].as_str());
        if !matches!(p.kind, Kind::PushButton) {
            let want = flag_of(id);
            assert!(
                flag.starts_with(&format!("`{want}")),
                "{id}: the README gives the flag {flag}, the command line {want}"
            );
        }
        match p.kind {
            Kind::Double {
                default: d,
                min,
                max,
                ..
            } => {
                assert_eq!(default.parse::<f64>().ok(), Some(d), "{id}: default");
                assert_eq!(range, format!("{min}..{max}"), "{id}: range");
            }
            Kind::Int {
                default: d,
                min,
                max,
                ..
            } => {
                assert_eq!(default.parse::<i32>().ok(), Some(d), "{id}: default");
                assert_eq!(range, format!("{min}..{max}"), "{id}: range");
            }
            Kind::Choice {
                options,
                default: d,
            } => {
                assert_eq!(default, options[d], "{id}: default");
                assert!(
                    range.starts_with(&options.join(", ")),
                    "{id}: the README lists `{range}`, the plugin {options:?}"
                );
            }
            Kind::FilePath | Kind::PushButton => {
                assert_eq!(range, "", "{id} has no range");
            }
        }
    }
}

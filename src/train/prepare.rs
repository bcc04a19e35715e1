//! `vdiff prepare`: builds the training and validation sequences from the public footage of the
//! Debian package opencv-doc (videos through the `ffmpeg` command, photos animated with a
//! synthetic camera move), and writes the noisy validation inputs every method is compared on.
//! Tooling for the model; not on the render path.
use std::path::{Path, PathBuf};
use std::process::Command;

use super::animate::Motion;
use super::data::{list_frames, read_frame};
use super::rng::{hash_words, Rng};
use crate::{imageio, Error, Result};

/// Where opencv-doc installs its files.
pub const DEFAULT_SOURCE: &str = "/usr/share/doc/opencv-doc";

/// A validation clip: `frames` consecutive frames from `first` (0-based) of a video, through an
/// ffmpeg filter chain that fixes its size.
#[derive(Clone, Copy, Debug)]
pub struct VideoSpec {
    pub name: &'static str,
    /// Path relative to the opencv-doc folder (`.gz` files are decompressed first).
    pub file: &'static str,
    pub filter: &'static str,
    /// Validation range (first frame, frame count), if this video gives one.
    pub val: Option<(usize, usize)>,
}

/// The videos used. Megamind_bugy.avi is left out on purpose: it is a damaged copy of Megamind
/// and would put the validation frames into the training set.
pub const VIDEOS: &[VideoSpec] = &[
    VideoSpec {
        name: "vtest",
        file: "examples/data/vtest.avi",
        filter: "scale=640:480:flags=area",
        val: Some((100, 24)),
    },
    VideoSpec {
        name: "box",
        file: "opencv4/html/box.mp4.gz",
        filter: "null",
        val: Some((100, 24)),
    },
    VideoSpec {
        name: "megamind",
        file: "examples/data/Megamind.avi",
        // 720x528 -> 640x469 (area), centre crop to 640x464 (a multiple of 16).
        filter: "scale=640:469:flags=area,crop=640:464:0:2",
        val: Some((30, 24)),
    },
    VideoSpec {
        name: "tree",
        file: "examples/data/tree.avi",
        filter: "null",
        val: None,
    },
    VideoSpec {
        name: "cup",
        file: "opencv4/html/cup.mp4.gz",
        filter: "null",
        val: None,
    },
];

/// Frames left out on each side of a validation range, so near-duplicates of validation frames
/// do not leak into training.
pub const VAL_MARGIN: usize = 10;

#[derive(Clone, Debug)]
pub struct PrepareOptions {
    /// The opencv-doc folder.
    pub source: PathBuf,
    pub out: PathBuf,
    /// Frames per animated photo (0: no photos).
    pub photo_frames: usize,
    /// Largest side of an animated photo clip.
    pub photo_max_size: usize,
    /// Seed of the photo camera moves.
    pub seed: u64,
}

impl PrepareOptions {
    pub fn new(out: impl Into<PathBuf>) -> Self {
        PrepareOptions {
            source: PathBuf::from(DEFAULT_SOURCE),
            out: out.into(),
            photo_frames: 24,
            photo_max_size: 480,
            seed: 0,
        }
    }
}

/// What `prepare` wrote: (sequence folder, frame count), validation and training.
#[derive(Clone, Debug, Default)]
pub struct PrepareSummary {
    pub val: Vec<(PathBuf, usize)>,
    pub train: Vec<(PathBuf, usize)>,
    pub skipped: Vec<String>,
}

pub(super) fn io(ctx: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let ctx = ctx.into();
    move |e| Error::io(ctx, e)
}

/// Runs an external tool, turning "not installed" into an instruction.
pub(super) fn run_tool(cmd: &mut Command, tool: &str, package: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Tool(format!(
                "`{tool}` was not found: install {package} (apt-get install {package})"
            ))
        } else {
            Error::io(format!("running {tool}"), e)
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::Tool(format!(
            "{tool} failed ({}):\n{}",
            out.status,
            tail.join("\n")
        )));
    }
    Ok(())
}

/// Decodes every frame of `video` through `filter` into `dir/%05d.png` (0-based, no frame
/// dropped or duplicated) and returns the frame count.
pub fn extract_frames(video: &Path, filter: &str, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(video)
        .args([
            "-vf",
            filter,
            "-fps_mode",
            "passthrough",
            "-pix_fmt",
            "rgb24",
            "-start_number",
            "0",
        ])
        .arg(dir.join("%05d.png"));
    run_tool(&mut cmd, "ffmpeg", "ffmpeg")?;
    Ok(list_frames(dir)?.len())
}

pub(super) fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(format!("removing {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))
}

/// Moves `frames[range]` into a fresh `dest`, renumbered 0000.png, 0001.png, ...
pub(super) fn move_frames(
    frames: &[PathBuf],
    range: std::ops::Range<usize>,
    dest: &Path,
) -> Result<usize> {
    fresh_dir(dest)?;
    for (i, f) in frames[range.clone()].iter().enumerate() {
        let to = dest.join(format!("{i:04}.png"));
        std::fs::rename(f, &to).map_err(io(format!(
            "moving {} to {}",
            f.display(),
            to.display()
        )))?;
    }
    Ok(range.len())
}

/// Frame ranges for training: everything outside [first - margin, first + count + margin).
pub fn train_ranges(
    total: usize,
    val: Option<(usize, usize)>,
    margin: usize,
) -> Vec<std::ops::Range<usize>> {
    match val {
        None => std::iter::once(0..total).collect(),
        Some((first, count)) => {
            let lo = first.saturating_sub(margin).min(total);
            let hi = (first + count + margin).min(total);
            [0..lo, hi..total]
                .into_iter()
                .filter(|r| !r.is_empty())
                .collect()
        }
    }
}

/// Writes 8-bit RGB PNG from interleaved [0,1] values, top row first (rounded, clipped).
pub fn write_png8(path: &Path, w: usize, h: usize, data: &[f32]) -> Result<()> {
    let pic = imageio::Picture {
        width: w,
        height: h,
        depth: imageio::Depth::U8,
        rgb: data.to_vec(),
        alpha: None,
    };
    imageio::write(path, &pic, imageio::Depth::U8)
}

/// Builds `out/val/<clip>` and `out/train/<name>` from the opencv-doc footage. `log` gets one
/// line per sequence written.
pub fn prepare(opts: &PrepareOptions, log: &mut dyn FnMut(&str)) -> Result<PrepareSummary> {
    let data_dir = opts.source.join("examples/data");
    if !data_dir.is_dir() {
        return Err(Error::Tool(format!(
            "{} not found: install opencv-doc (apt-get install opencv-doc) or pass --source",
            data_dir.display()
        )));
    }
    let tmp = opts.out.join(".prepare-tmp");
    fresh_dir(&tmp)?;
    let mut summary = PrepareSummary::default();
    for v in VIDEOS {
        let mut src = opts.source.join(v.file);
        if !src.is_file() {
            return Err(Error::Tool(format!(
                "{} not found: install opencv-doc (apt-get install opencv-doc) or pass --source",
                src.display()
            )));
        }
        if src.extension().is_some_and(|e| e == "gz") {
            let plain = tmp.join(src.file_stem().unwrap_or_default());
            let file = std::fs::File::create(&plain)
                .map_err(io(format!("creating {}", plain.display())))?;
            run_tool(
                Command::new("gzip").arg("-dc").arg(&src).stdout(file),
                "gzip",
                "gzip",
            )?;
            src = plain;
        }
        let frames_dir = tmp.join(v.name);
        let total = extract_frames(&src, v.filter, &frames_dir)?;
        let frames = list_frames(&frames_dir)?;
        if let Some((first, count)) = v.val {
            if first + count > total {
                return Err(Error::Other(format!(
                    "{} has {total} frames, the validation clip needs frames {first}..{}",
                    src.display(),
                    first + count - 1
                )));
            }
            let dest = opts.out.join("val").join(v.name);
            move_frames(&frames, first..first + count, &dest)?;
            log(&format!(
                "val/{}: {count} frames ({first}..{})",
                v.name,
                first + count - 1
            ));
            summary.val.push((dest, count));
        }
        let ranges = train_ranges(total, v.val, VAL_MARGIN);
        for (k, r) in ranges.iter().enumerate() {
            let name = if ranges.len() > 1 {
                format!("{}-{}", v.name, (b'a' + k as u8) as char)
            } else {
                v.name.to_string()
            };
            let dest = opts.out.join("train").join(&name);
            let n = move_frames(&frames, r.clone(), &dest)?;
            log(&format!(
                "train/{name}: {n} frames ({}..{})",
                r.start,
                r.end - 1
            ));
            summary.train.push((dest, n));
        }
    }
    if opts.photo_frames > 0 {
        animate_photos(opts, &data_dir, &tmp, &mut summary, log)?;
    }
    std::fs::remove_dir_all(&tmp).map_err(io(format!("removing {}", tmp.display())))?;
    Ok(summary)
}

fn animate_photos(
    opts: &PrepareOptions,
    data_dir: &Path,
    tmp: &Path,
    summary: &mut PrepareSummary,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .map_err(io(format!("reading {}", data_dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    photos.sort();
    for p in photos {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_redundant_photo(&stem) {
            continue;
        }
        let name = format!("photo-{stem}");
        let dest = opts.out.join("train").join(&name);
        let shot = PhotoShot {
            frames: opts.photo_frames,
            max_size: opts.photo_max_size,
            prescale: None,
            seed: opts.seed,
        };
        match animate_photo(&p, &stem, &shot, tmp, &dest) {
            Ok(m) => {
                log(&format!(
                    "train/{name}: {} frames of {}x{}",
                    m.frames, m.out_w, m.out_h
                ));
                summary.train.push((dest, m.frames));
            }
            Err(e) => summary.skipped.push(format!("{}: {e}", p.display())),
        }
    }
    Ok(())
}

/// How a photo becomes a clip: frame count, largest output side, an optional ffmpeg filter
/// applied when decoding (to bring a large photo near the output's scale first) and the seed.
#[derive(Clone, Debug)]
pub struct PhotoShot<'a> {
    pub frames: usize,
    pub max_size: usize,
    pub prescale: Option<&'a str>,
    pub seed: u64,
}

/// Animates one photo into `dest/%04d.png` with a smooth camera move keyed by `key` (the seed
/// and the key alone decide the move, so adding photos does not change the others).
pub(super) fn animate_photo(
    photo: &Path,
    key: &str,
    shot: &PhotoShot,
    tmp: &Path,
    dest: &Path,
) -> Result<Motion> {
    // ffmpeg decodes JPEG (our image reader does not) and normalises every layout to RGB.
    let png = tmp.join(format!("photo-{key}.png"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(photo)
        .args(["-frames:v", "1", "-pix_fmt", "rgb24"]);
    if let Some(f) = shot.prescale {
        cmd.args(["-vf", f]);
    }
    cmd.arg(&png);
    run_tool(&mut cmd, "ffmpeg", "ffmpeg")?;
    let (w, h, px) = read_frame(&png)?;
    let (w, h) = (w as usize, h as usize);
    let key_hash = hash_words(&key.bytes().map(u64::from).collect::<Vec<_>>());
    let mut rng = Rng::new(shot.seed, key_hash, 0);
    let m = Motion::plan(w, h, shot.frames, shot.max_size, 96, &mut rng)
        .ok_or_else(|| Error::Other(format!("{w}x{h} is too small to animate")))?;
    fresh_dir(dest)?;
    for t in 0..m.frames {
        let f = m.render(&px, w, h, t);
        write_png8(&dest.join(format!("{t:04}.png")), m.out_w, m.out_h, &f)?;
    }
    Ok(m)
}

/// The stereo-calibration series (left01..left14, right01..right14) are 26 near-identical
/// chessboard shots: one of each side is kept so they do not dominate the photo clips.
pub fn is_redundant_photo(stem: &str) -> bool {
    let series = stem
        .strip_prefix("left")
        .or_else(|| stem.strip_prefix("right"));
    series.is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit()) && n != "01")
}

/// Seed of the noise of one clip: the user's seed and the clip's folder name, so clips get
/// different noise and the same clip gets the same noise however it is reached.
pub fn clip_noise_seed(seed: u64, clip: &str) -> u64 {
    hash_words(&[
        seed,
        hash_words(&clip.bytes().map(u64::from).collect::<Vec<_>>()),
    ])
}

/// Writes `clean` + white Gaussian noise of `sigma255` (0-255 scale) as 8-bit PNG frames
/// `out/%04d.png`: independent per frame and channel, from `vdiff::sampling::noise` keyed by
/// (seed of the clip, frame index, channel, column, row from the top), rounded and clipped.
/// `clean` is a sequence folder, or a folder of sequence folders (each written to `out/<name>`).
/// Returns the (folder, frames) written.
pub fn write_noisy(
    clean: &Path,
    out: &Path,
    sigma255: f64,
    seed: u64,
) -> Result<Vec<(PathBuf, usize)>> {
    if !(0.0..=1000.0).contains(&sigma255) {
        return Err(Error::param(
            "noisy",
            format!("sigma {sigma255} must be in 0..=1000 (0-255 scale)"),
        ));
    }
    if !clean.is_dir() {
        return Err(Error::param(
            "from",
            format!("{} is not a folder", clean.display()),
        ));
    }
    let mut jobs = Vec::new();
    if list_frames(clean)?.is_empty() {
        let mut subs: Vec<PathBuf> = std::fs::read_dir(clean)
            .map_err(io(format!("reading {}", clean.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        for s in subs {
            if !list_frames(&s)?.is_empty() {
                let name = s.file_name().unwrap_or_default().to_owned();
                jobs.push((s, out.join(name)));
            }
        }
        if jobs.is_empty() {
            return Err(Error::param(
                "from",
                format!(
                    "{} holds no frames and no sequence folders",
                    clean.display()
                ),
            ));
        }
    } else {
        jobs.push((clean.to_path_buf(), out.to_path_buf()));
    }
    let mut written = Vec::new();
    for (src, dst) in jobs {
        let name = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let clip_seed = clip_noise_seed(seed, &name);
        std::fs::create_dir_all(&dst).map_err(io(format!("creating {}", dst.display())))?;
        let frames = list_frames(&src)?;
        for (t, f) in frames.iter().enumerate() {
            let (w, h, px) = read_frame(f)?;
            let noisy = add_noise(&px, w as usize, h as usize, sigma255, clip_seed, t as i64);
            write_png8(
                &dst.join(format!("{t:04}.png")),
                w as usize,
                h as usize,
                &noisy,
            )?;
        }
        written.push((dst, frames.len()));
    }
    Ok(written)
}

/// Adds noise of `sigma255` to an interleaved [0,1] frame (values stay unclipped floats).
pub fn add_noise(px: &[f32], w: usize, h: usize, sigma255: f64, seed: u64, frame: i64) -> Vec<f32> {
    let mut planes = vec![0.0f32; 3 * w * h];
    crate::sampling::noise::fill_planar(seed, frame, 0, 0, 0, w, h, 3, &mut planes);
    let s = (sigma255 / 255.0) as f32;
    let mut out = px.to_vec();
    for j in 0..h {
        for i in 0..w {
            for c in 0..3 {
                out[(j * w + i) * 3 + c] += s * planes[c * w * h + j * w + i];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_ranges_keep_validation_and_margin_out() {
        assert_eq!(
            train_ranges(795, Some((100, 24)), 10),
            vec![0..90, 134..795]
        );
        assert_eq!(train_ranges(270, Some((30, 24)), 10), vec![0..20, 64..270]);
        assert_eq!(train_ranges(50, Some((5, 24)), 10), vec![39..50]);
        assert_eq!(train_ranges(68, None, 10), vec![0..68]);
        assert_eq!(
            train_ranges(30, Some((0, 30)), 10),
            Vec::<std::ops::Range<usize>>::new()
        );
    }

    #[test]
    fn calibration_series_is_thinned() {
        assert!(is_redundant_photo("left02") && is_redundant_photo("right14"));
        assert!(!is_redundant_photo("left01") && !is_redundant_photo("right01"));
        assert!(!is_redundant_photo("left") && !is_redundant_photo("baboon"));
    }

    #[test]
    fn added_noise_has_the_requested_sigma_and_is_repeatable() {
        let (w, h) = (64usize, 48usize);
        let px = vec![0.5f32; w * h * 3];
        let a = add_noise(&px, w, h, 25.0, 3, 7);
        let b = add_noise(&px, w, h, 25.0, 3, 7);
        let c = add_noise(&px, w, h, 25.0, 3, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| f64::from(v) - 0.5).sum::<f64>() / n;
        let sd = (a
            .iter()
            .map(|&v| (f64::from(v) - 0.5 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
            * 255.0;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((sd - 25.0).abs() < 0.8, "sd {sd}");
    }

    #[test]
    fn missing_tool_says_what_to_install() {
        let e = run_tool(
            &mut Command::new("vdiff-no-such-tool-xyz"),
            "ffmpeg",
            "ffmpeg",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("install ffmpeg (apt-get install ffmpeg)"), "{e}");
        // A tool that runs and fails reports its status.
        let e = run_tool(
            Command::new("sh").args(["-c", "echo boom >&2; exit 3"]),
            "sh",
            "dash",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("boom") && e.contains("sh failed"), "{e}");
    }

    #[test]
    fn missing_source_says_what_to_install() {
        let mut o = PrepareOptions::new(std::env::temp_dir().join("vdiff-prepare-none"));
        o.source = PathBuf::from("/nonexistent/opencv-doc");
        let e = prepare(&o, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("apt-get install opencv-doc"), "{e}");
    }
}

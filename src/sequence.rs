//! Image sequences for the command line: printf-style frame patterns (`shot/%04d.png`), folders
//! of numbered frames and frame ranges. The `vdiff render` front end resolves its IN/OUT
//! arguments here before any pixel is read; the engine never sees a file name.
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::imageio::Format;
use crate::{Error, Result};

/// A printf-style file name pattern with one frame-number directive (`%d` or `%0Nd`) in its file
/// name, e.g. `shot/%04d.png` (frame 7 -> `shot/0007.png`). `%%` stands for a literal `%`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    dir: PathBuf,
    prefix: String,
    suffix: String,
    /// Minimum number of digits (zero padded); 0 for a plain `%d`.
    pad: usize,
}

impl Pattern {
    /// Parses `s`; `Ok(None)` when it has no frame directive at all (a folder or a plain file).
    pub fn parse(s: &str) -> Result<Option<Pattern>> {
        let err = |msg: &str| Error::param("pattern", format!("`{s}`: {msg}"));
        let (dir, name) = match s.rfind(['/', std::path::MAIN_SEPARATOR]) {
            Some(i) => (&s[..=i], &s[i + 1..]),
            None => ("", s),
        };
        if dir.replace("%%", "").contains('%') {
            return Err(err(
                "the frame number (%d) must be in the file name, not in a folder name",
            ));
        }
        let mut prefix = String::new();
        let mut suffix = String::new();
        let mut pad = None;
        let mut chars = name.chars().peekable();
        while let Some(c) = chars.next() {
            let out = if pad.is_some() {
                &mut suffix
            } else {
                &mut prefix
            };
            if c != '%' {
                out.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                out.push('%');
                continue;
            }
            let mut spec = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    spec.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.next() != Some('d') {
                return Err(err(
                    "only %d and %0Nd (e.g. %04d) are understood; write %% for a literal %",
                ));
            }
            if pad.is_some() {
                return Err(err("has more than one frame number directive"));
            }
            let width = if spec.is_empty() {
                0
            } else if spec.starts_with('0') {
                spec.parse::<usize>()
                    .map_err(|_| err("bad padding width"))?
            } else {
                return Err(err("pad frame numbers with zeros (%04d), not spaces (%4d)"));
            };
            if width > 18 {
                return Err(err("padding wider than 18 digits"));
            }
            pad = Some(width);
        }
        let Some(pad) = pad else {
            return Ok(None);
        };
        Ok(Some(Pattern {
            text: s.to_string(),
            dir: PathBuf::from(dir.replace("%%", "%")),
            prefix,
            suffix,
            pad,
        }))
    }

    /// The file for frame `t`.
    pub fn path(&self, t: i64) -> PathBuf {
        self.dir.join(self.file_name(t))
    }

    fn file_name(&self, t: i64) -> String {
        format!(
            "{}{:0width$}{}",
            self.prefix,
            t,
            self.suffix,
            width = self.pad
        )
    }

    /// The frame number a file name stands for, if it matches the pattern exactly (so `%04d`
    /// matches `0007` and `12345` but not `7` or `00007`).
    pub fn frame_of(&self, file_name: &str) -> Option<i64> {
        let digits = file_name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let t: i64 = digits.parse().ok()?;
        (format!("{:0width$}", t, width = self.pad) == digits).then_some(t)
    }

    /// The folder the frames live in (`.` for a bare file name pattern).
    pub fn dir(&self) -> &Path {
        if self.dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.dir
        }
    }

    /// The image format named by the pattern's extension.
    pub fn format(&self) -> Option<Format> {
        Format::from_path(&self.path(0))
    }

    /// Every existing frame matching the pattern, sorted by frame number.
    pub fn scan(&self) -> Result<Vec<(i64, PathBuf)>> {
        let dir = self.dir();
        if !dir.is_dir() {
            return Err(Error::param(
                "input",
                format!(
                    "pattern `{}` matches no file: folder `{}` does not exist",
                    self.text,
                    dir.display()
                ),
            ));
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("cannot list folder `{}`", dir.display()), e))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| Error::io(format!("cannot list folder `{}`", dir.display()), e))?;
            if let Some(t) = entry.file_name().to_str().and_then(|n| self.frame_of(n)) {
                found.push((t, self.path(t)));
            }
        }
        found.sort();
        Ok(found)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The frame number in a file name: the last run of ASCII digits in its stem
/// (`shot_v2.0042.png` -> 42).
pub fn frame_number_in_name(file_name: &str) -> Option<i64> {
    let stem = Path::new(file_name).file_stem()?.to_str()?;
    let end = stem.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = stem[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let digits = &stem[start..end];
    if digits.len() > 18 {
        return None;
    }
    digits.parse().ok()
}

/// Every PNG/TIFF/EXR file in `dir` with the frame number parsed from its name, sorted by frame.
/// Other files are ignored; an image without a number, or two images with one number, is an error.
pub fn scan_folder(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot list folder `{}`", dir.display()), e))?;
    let mut by_frame: BTreeMap<i64, PathBuf> = BTreeMap::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::io(format!("cannot list folder `{}`", dir.display()), e))?;
        let path = entry.path();
        if Format::from_path(&path).is_none() || !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(t) = frame_number_in_name(&name) else {
            return Err(Error::param(
                "input",
                format!("image `{}` has no frame number in its name", path.display()),
            ));
        };
        if let Some(other) = by_frame.insert(t, path.clone()) {
            let (a, b) = if other < path {
                (other, path)
            } else {
                (path, other)
            };
            return Err(Error::param(
                "input",
                format!(
                    "`{}` and `{}` both claim frame {t}",
                    a.display(),
                    b.display()
                ),
            ));
        }
    }
    Ok(by_frame.into_iter().collect())
}

/// Where frames come from or go to: a pattern or a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeqSpec {
    Pattern(Pattern),
    Folder(PathBuf),
}

impl SeqSpec {
    /// The input argument: a pattern, or an existing folder.
    pub fn input(s: &str) -> Result<SeqSpec> {
        if let Some(p) = Pattern::parse(s)? {
            return Ok(SeqSpec::Pattern(p));
        }
        let path = PathBuf::from(s);
        if path.is_dir() {
            Ok(SeqSpec::Folder(path))
        } else if path.is_file() {
            Err(Error::param(
                "input",
                format!("`{s}` is a single file; give a frame pattern such as `shot/%04d.png` or a folder of frames"),
            ))
        } else {
            Err(Error::param("input", format!("`{s}` does not exist (give a frame pattern such as `shot/%04d.png` or a folder)")))
        }
    }

    /// The output argument: a pattern (its extension picks the format) or a folder (created if
    /// missing; frames keep the input's file names).
    pub fn output(s: &str) -> Result<SeqSpec> {
        if let Some(p) = Pattern::parse(s)? {
            let Some(format) = p.format() else {
                return Err(Error::param(
                    "output",
                    format!("`{s}`: the file extension must be .png, .tif, .tiff or .exr"),
                ));
            };
            if !format.writable() {
                let why = crate::imageio::not_written(format, Path::new(s));
                return Err(Error::param("output", why));
            }
            return Ok(SeqSpec::Pattern(p));
        }
        let path = PathBuf::from(s);
        if path.is_file() || (!path.is_dir() && Format::from_path(&path).is_some()) {
            return Err(Error::param(
                "output",
                format!("`{s}` looks like a single file; give a frame pattern such as `out/%04d.png` or a folder"),
            ));
        }
        Ok(SeqSpec::Folder(path))
    }
}

/// A contiguous input shot: one file per frame, `first..=last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSequence {
    pub first: i64,
    pub last: i64,
    files: Vec<PathBuf>,
}

impl InputSequence {
    /// Finds the frames of `spec`; fails if there are none or if one inside the range is missing.
    pub fn resolve(spec: &SeqSpec) -> Result<InputSequence> {
        let (found, what) = match spec {
            SeqSpec::Pattern(p) => (p.scan()?, format!("pattern `{p}`")),
            SeqSpec::Folder(d) => (scan_folder(d)?, format!("folder `{}`", d.display())),
        };
        let (Some(first), Some(last)) = (found.first(), found.last()) else {
            let msg = match spec {
                SeqSpec::Pattern(_) => format!("{what} matches no file"),
                SeqSpec::Folder(_) => {
                    format!("{what} holds no .png, .tif, .tiff, .exr or .jpg image")
                }
            };
            return Err(Error::param("input", msg));
        };
        let (first, last) = (first.0, last.0);
        for (i, pair) in found.windows(2).enumerate() {
            if pair[1].0 != pair[0].0 + 1 {
                let missing = pair[0].0 + 1;
                let expected = match spec {
                    SeqSpec::Pattern(p) => {
                        format!("`{}` does not exist", p.path(missing).display())
                    }
                    SeqSpec::Folder(_) => format!(
                        "no image between `{}` and `{}`",
                        found[i].1.display(),
                        found[i + 1].1.display()
                    ),
                };
                return Err(Error::param(
                    "input",
                    format!("{what}: frame {missing} is missing ({expected}); frames {first}-{last} must all exist"),
                ));
            }
        }
        Ok(InputSequence {
            first,
            last,
            files: found.into_iter().map(|(_, p)| p).collect(),
        })
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file of frame `t` (`None` outside `first..=last`).
    pub fn path(&self, t: i64) -> Option<&Path> {
        if t < self.first || t > self.last {
            return None;
        }
        self.files
            .get((t - self.first) as usize)
            .map(PathBuf::as_path)
    }

    /// Every (frame, file), in order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Path)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, p)| (self.first + i as i64, p.as_path()))
    }
}

/// The output file of frame `t` whose input is `input`.
pub fn output_path(spec: &SeqSpec, t: i64, input: &Path) -> PathBuf {
    match spec {
        SeqSpec::Pattern(p) => p.path(t),
        SeqSpec::Folder(d) => d.join(input.file_name().unwrap_or(input.as_os_str())),
    }
}

/// Parses `A-B` (inclusive) or a single frame `A`.
pub fn parse_frame_range(s: &str) -> Result<(i64, i64)> {
    let err = || {
        Error::param(
            "frame range",
            format!("`{s}`: write FIRST-LAST, e.g. 10-20, or a single frame"),
        )
    };
    let s2 = s.trim();
    let (a, b) = match s2.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s2, s2),
    };
    let a: i64 = a.parse().map_err(|_| err())?;
    let b: i64 = b.parse().map_err(|_| err())?;
    if a < 0 || b < a {
        return Err(Error::param(
            "frame range",
            format!("`{s}`: the last frame must not come before the first"),
        ));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_formats_and_matches() {
        let p = Pattern::parse("shot/%04d.png").unwrap().unwrap();
        assert_eq!(p.path(7), PathBuf::from("shot/0007.png"));
        assert_eq!(p.path(12345), PathBuf::from("shot/12345.png"));
        assert_eq!(p.frame_of("0007.png"), Some(7));
        assert_eq!(p.frame_of("12345.png"), Some(12345));
        assert_eq!(p.frame_of("007.png"), None);
        assert_eq!(p.frame_of("00007.png"), None);
        assert_eq!(p.frame_of("0007.tif"), None);
        assert_eq!(p.frame_of("x0007.png"), None);
        assert_eq!(p.format(), Some(Format::Png));

        let q = Pattern::parse("a_%d_b.EXR").unwrap().unwrap();
        assert_eq!(q.path(0), PathBuf::from("a_0_b.EXR"));
        assert_eq!(q.frame_of("a_15_b.EXR"), Some(15));
        assert_eq!(q.frame_of("a_015_b.EXR"), None);
        assert_eq!(q.dir(), Path::new("."));
        assert_eq!(q.format(), Some(Format::Exr));

        let r = Pattern::parse("100%%/f%03d.tif").unwrap().unwrap();
        assert_eq!(r.path(5), PathBuf::from("100%/f005.tif"));
    }

    #[test]
    fn pattern_rejects_what_it_cannot_mean() {
        assert_eq!(Pattern::parse("shot/frames").unwrap(), None);
        assert_eq!(Pattern::parse("50%%.png").unwrap(), None);
        for bad in [
            "a/%04d_%04d.png",
            "a/%4d.png",
            "a/%s.png",
            "a/%04x.png",
            "a/%.png",
            "%04d/f.png",
        ] {
            let e = Pattern::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn frame_number_is_the_last_digit_run_of_the_stem() {
        assert_eq!(frame_number_in_name("shot_v2.0042.png"), Some(42));
        assert_eq!(frame_number_in_name("17.exr"), Some(17));
        assert_eq!(frame_number_in_name("frame12b.tif"), Some(12));
        assert_eq!(frame_number_in_name("cover.png"), None);
        assert_eq!(frame_number_in_name("99999999999999999999.png"), None);
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vdiff-seq-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn folder_scan_sorts_ignores_and_complains() {
        let d = temp_dir("folder");
        for n in ["f_10.png", "f_9.png", "f_11.png", "notes.txt"] {
            std::fs::write(d.join(n), b"x").unwrap();
        }
        std::fs::create_dir(d.join("sub_3.png")).unwrap();
        let found = scan_folder(&d).unwrap();
        let frames: Vec<i64> = found.iter().map(|f| f.0).collect();
        assert_eq!(frames, vec![9, 10, 11]);
        assert_eq!(found[0].1, d.join("f_9.png"));

        let seq = InputSequence::resolve(&SeqSpec::Folder(d.clone())).unwrap();
        assert_eq!((seq.first, seq.last, seq.len()), (9, 11, 3));
        assert_eq!(seq.path(10), Some(d.join("f_10.png").as_path()));
        assert_eq!(seq.path(12), None);
        assert_eq!(
            output_path(&SeqSpec::Folder("out".into()), 10, seq.path(10).unwrap()),
            PathBuf::from("out/f_10.png")
        );

        std::fs::write(d.join("g_10.png"), b"x").unwrap();
        let e = scan_folder(&d).unwrap_err().to_string();
        assert!(
            e.contains("f_10.png") && e.contains("g_10.png") && e.contains("frame 10"),
            "{e}"
        );
        std::fs::remove_file(d.join("g_10.png")).unwrap();

        std::fs::write(d.join("cover.png"), b"x").unwrap();
        let e = scan_folder(&d).unwrap_err().to_string();
        assert!(e.contains("cover.png"), "{e}");
        std::fs::remove_file(d.join("cover.png")).unwrap();

        std::fs::remove_file(d.join("f_10.png")).unwrap();
        let e = InputSequence::resolve(&SeqSpec::Folder(d.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("frame 10 is missing") && e.contains("f_9.png"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn pattern_resolution_finds_range_and_gaps() {
        let d = temp_dir("pattern");
        for t in [3, 4, 5, 7] {
            std::fs::write(d.join(format!("{t:04}.png")), b"x").unwrap();
        }
        std::fs::write(d.join("03.png"), b"x").unwrap();
        let pat = format!("{}/%04d.png", d.display());
        let spec = SeqSpec::input(&pat).unwrap();
        let e = InputSequence::resolve(&spec).unwrap_err().to_string();
        assert!(
            e.contains("frame 6 is missing") && e.contains("0006.png"),
            "{e}"
        );
        std::fs::write(d.join("0006.png"), b"x").unwrap();
        let seq = InputSequence::resolve(&spec).unwrap();
        assert_eq!((seq.first, seq.last), (3, 7));
        assert_eq!(
            seq.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            vec![3, 4, 5, 6, 7]
        );

        let none = SeqSpec::input(&format!("{}/%04d.exr", d.display())).unwrap();
        let e = InputSequence::resolve(&none).unwrap_err().to_string();
        assert!(
            e.contains("%04d.exr") && e.contains("matches no file"),
            "{e}"
        );
        let gone = SeqSpec::input(&format!("{}/nope/%04d.exr", d.display())).unwrap();
        assert!(InputSequence::resolve(&gone)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn input_and_output_arguments() {
        let d = temp_dir("args");
        std::fs::write(d.join("one.png"), b"x").unwrap();
        let file = d.join("one.png").display().to_string();
        assert!(SeqSpec::input(&file)
            .unwrap_err()
            .to_string()
            .contains("single file"));
        assert!(SeqSpec::input(&format!("{}/missing", d.display()))
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        assert_eq!(
            SeqSpec::input(&d.display().to_string()).unwrap(),
            SeqSpec::Folder(d.clone())
        );
        assert!(SeqSpec::output(&file)
            .unwrap_err()
            .to_string()
            .contains("single file"));
        assert!(SeqSpec::output("new/out.exr")
            .unwrap_err()
            .to_string()
            .contains("single file"));
        assert!(SeqSpec::output("out/%04d.jpg")
            .unwrap_err()
            .to_string()
            .contains(".png"));
        assert_eq!(
            SeqSpec::output("new_folder").unwrap(),
            SeqSpec::Folder("new_folder".into())
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn frame_ranges() {
        assert_eq!(parse_frame_range("10-20").unwrap(), (10, 20));
        assert_eq!(parse_frame_range(" 4 ").unwrap(), (4, 4));
        for bad in ["20-10", "a-b", "", "1-", "-3"] {
            assert!(parse_frame_range(bad).is_err(), "{bad}");
        }
    }
}

//! Image files for the command line: PNG (8/16-bit), TIFF (8/16-bit, float) and OpenEXR
//! (half, float) read into f32 pictures and written back at a chosen depth; JPEG is read only
//! (a denoiser's output should not be re-compressed lossily). `vdiff render` reads
//! frames here, converts them to the engine's bottom-up `RgbImage` and writes the results back
//! through a temporary file so no half-written frame is ever left under the real name.
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use exr::prelude::{f16, Encoding, Image, SpecificChannels, Vec2};
use exr::prelude::{ReadChannels, ReadLayers, WritableImage};
use image::codecs::png::PngEncoder;
use image::codecs::tiff::TiffEncoder;
use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageReader};

use crate::engine::{Rect, RgbImage};
use crate::{Error, Result};

/// A file format, chosen by the file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Png,
    Tiff,
    Exr,
    /// Read only.
    Jpeg,
}

impl Format {
    /// `.png`, `.tif`/`.tiff`, `.exr` or `.jpg`/`.jpeg` (any case); `None` for anything else.
    pub fn from_path(p: &Path) -> Option<Format> {
        let ext = p.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some(Format::Png),
            "tif" | "tiff" => Some(Format::Tiff),
            "exr" => Some(Format::Exr),
            "jpg" | "jpeg" => Some(Format::Jpeg),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Png => "PNG",
            Format::Tiff => "TIFF",
            Format::Exr => "OpenEXR",
            Format::Jpeg => "JPEG",
        }
    }

    /// The depths VDiff writes this format at (none for JPEG, which it only reads).
    pub fn depths(self) -> &'static [Depth] {
        match self {
            Format::Png => &[Depth::U8, Depth::U16],
            Format::Tiff => &[Depth::U8, Depth::U16, Depth::Float],
            Format::Exr => &[Depth::Half, Depth::Float],
            Format::Jpeg => &[],
        }
    }

    /// Whether VDiff writes this format at all.
    pub fn writable(self) -> bool {
        !self.depths().is_empty()
    }

    pub fn supports(self, d: Depth) -> bool {
        self.depths().contains(&d)
    }

    /// The depth a frame of depth `d` gets in this format when the user asks for none: `d` itself
    /// where possible, else the nearest depth that loses nothing (8-bit fits exactly in half).
    pub fn keep_depth(self, d: Depth) -> Depth {
        if self.supports(d) {
            return d;
        }
        match (self, d) {
            (Format::Exr, Depth::U8) => Depth::Half,
            (Format::Exr, _) => Depth::Float,
            (Format::Tiff, _) => Depth::Float,
            (Format::Png, _) | (Format::Jpeg, _) => Depth::U16,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bits per channel of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Depth {
    U8,
    U16,
    Half,
    Float,
}

impl Depth {
    pub fn name(self) -> &'static str {
        match self {
            Depth::U8 => "8",
            Depth::U16 => "16",
            Depth::Half => "half",
            Depth::Float => "float",
        }
    }
}

impl fmt::Display for Depth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Depth {
    type Err = Error;
    fn from_str(s: &str) -> Result<Depth> {
        match s.trim().to_ascii_lowercase().as_str() {
            "8" => Ok(Depth::U8),
            "16" => Ok(Depth::U16),
            "half" | "f16" => Ok(Depth::Half),
            "float" | "f32" | "32" => Ok(Depth::Float),
            _ => Err(Error::param(
                "depth",
                format!("`{s}`: use 8, 16, half or float"),
            )),
        }
    }
}

/// What a file holds, read from its header only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub format: Format,
    pub width: usize,
    pub height: usize,
    pub depth: Depth,
    pub alpha: bool,
}

/// A decoded frame in file order (row 0 = top), channel values as stored: integers scaled to
/// [0,1], floats untouched. Grey files are expanded to RGB.
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    /// The file's depth (what an output keeps by default).
    pub depth: Depth,
    /// RGB interleaved, `width * height * 3`, top row first.
    pub rgb: Vec<f32>,
    /// Alpha, `width * height`, top row first; `None` when the file has none.
    pub alpha: Option<Vec<f32>>,
}

impl Picture {
    /// The engine's view: rect `(0, 0, w, h)`, y up, so file row 0 (top) becomes y = h - 1.
    pub fn to_rgb_image(&self) -> RgbImage {
        let rect = Rect::new(0, 0, self.width as i64, self.height as i64);
        let row = self.width * 3;
        let mut data = Vec::with_capacity(self.rgb.len());
        for src in self.rgb.chunks_exact(row.max(1)).rev() {
            data.extend_from_slice(src);
        }
        RgbImage { rect, data }
    }

    /// The inverse of [`Picture::to_rgb_image`]: `img` must cover `(0, 0, width, height)`;
    /// its rows are flipped back to file order. Alpha and depth come from the caller.
    pub fn from_rgb_image(
        img: &RgbImage,
        depth: Depth,
        alpha: Option<Vec<f32>>,
    ) -> Result<Picture> {
        let (w, h) = (img.rect.width() as usize, img.rect.height() as usize);
        if img.rect.x0 != 0 || img.rect.y0 != 0 || img.data.len() != w * h * 3 {
            return Err(Error::image(
                "frame",
                format!("expected a whole frame from (0, 0), got {:?}", img.rect),
            ));
        }
        if alpha.as_ref().is_some_and(|a| a.len() != w * h) {
            return Err(Error::image(
                "frame",
                "alpha plane does not match the frame size",
            ));
        }
        let mut rgb = Vec::with_capacity(img.data.len());
        for src in img.data.chunks_exact((w * 3).max(1)).rev() {
            rgb.extend_from_slice(src);
        }
        Ok(Picture {
            width: w,
            height: h,
            depth,
            rgb,
            alpha,
        })
    }
}

fn format_of(path: &Path) -> Result<Format> {
    Format::from_path(path).ok_or_else(|| {
        Error::image(
            path.display().to_string(),
            "unknown extension: use .png, .tif, .tiff or .exr (or, for inputs, .jpg or .jpeg)",
        )
    })
}

fn image_err(path: &Path, e: impl fmt::Display) -> Error {
    Error::image(path.display().to_string(), e.to_string())
}

fn depth_of_color(path: &Path, c: image::ColorType) -> Result<(Depth, bool)> {
    use image::ColorType as C;
    Ok(match c {
        C::L8 | C::Rgb8 => (Depth::U8, false),
        C::La8 | C::Rgba8 => (Depth::U8, true),
        C::L16 | C::Rgb16 => (Depth::U16, false),
        C::La16 | C::Rgba16 => (Depth::U16, true),
        C::Rgb32F => (Depth::Float, false),
        C::Rgba32F => (Depth::Float, true),
        other => {
            return Err(image_err(
                path,
                format!("unsupported pixel layout {other:?}"),
            ))
        }
    })
}

fn open_reader(path: &Path, format: Format) -> Result<ImageReader<BufReader<File>>> {
    let file = File::open(path)
        .map_err(|e| Error::io(format!("cannot open image `{}`", path.display()), e))?;
    let mut r = ImageReader::new(BufReader::new(file));
    r.set_format(match format {
        Format::Png => image::ImageFormat::Png,
        Format::Jpeg => image::ImageFormat::Jpeg,
        _ => image::ImageFormat::Tiff,
    });
    // Film frames are large; the default allocation cap would refuse 8K float TIFFs.
    r.no_limits();
    Ok(r)
}

/// Reads the size, depth and alpha presence of an image without decoding its pixels.
pub fn read_header(path: &Path) -> Result<Header> {
    let format = format_of(path)?;
    match format {
        Format::Exr => {
            let meta =
                exr::meta::MetaData::read_from_file(path, false).map_err(|e| image_err(path, e))?;
            let header = meta
                .headers
                .first()
                .ok_or_else(|| image_err(path, "no image layer"))?;
            let (depth, alpha) = exr_layout(path, &header.channels)?;
            let size = header.layer_size;
            Ok(Header {
                format,
                width: size.0,
                height: size.1,
                depth,
                alpha,
            })
        }
        _ => {
            let decoder = open_reader(path, format)?
                .into_decoder()
                .map_err(|e| image_err(path, e))?;
            let (w, h) = decoder.dimensions();
            let (depth, alpha) = depth_of_color(path, decoder.color_type())?;
            Ok(Header {
                format,
                width: w as usize,
                height: h as usize,
                depth,
                alpha,
            })
        }
    }
}

/// Depth and alpha presence of an EXR layer from its R, G, B (and optional A) channels.
fn exr_layout(path: &Path, channels: &exr::meta::attribute::ChannelList) -> Result<(Depth, bool)> {
    use exr::meta::attribute::SampleType;
    let find = |name: &str| channels.list.iter().find(|c| c.name.eq(name));
    let mut depth = Depth::Half;
    for name in ["R", "G", "B"] {
        let c = find(name)
            .ok_or_else(|| image_err(path, "needs R, G and B channels (no RGB layer found)"))?;
        if c.sample_type != SampleType::F16 {
            depth = Depth::Float;
        }
    }
    Ok((depth, find("A").is_some()))
}

/// Decodes a whole image file.
pub fn read(path: &Path) -> Result<Picture> {
    match format_of(path)? {
        Format::Exr => read_exr(path),
        format => {
            let img = open_reader(path, format)?
                .decode()
                .map_err(|e| image_err(path, e))?;
            picture_from_dynamic(path, img)
        }
    }
}

fn picture_from_dynamic(path: &Path, img: DynamicImage) -> Result<Picture> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (depth, alpha) = depth_of_color(path, img.color())?;
    let n = width * height;
    let (rgb, a): (Vec<f32>, Option<Vec<f32>>) = match depth {
        Depth::U8 => {
            let to = |v: u8| v as f32 / 255.0;
            if alpha {
                let buf = img.into_rgba8();
                split_rgba(buf.as_raw(), n, to)
            } else {
                (
                    img.into_rgb8().as_raw().iter().map(|&v| to(v)).collect(),
                    None,
                )
            }
        }
        Depth::U16 => {
            let to = |v: u16| v as f32 / 65535.0;
            if alpha {
                let buf = img.into_rgba16();
                split_rgba(buf.as_raw(), n, to)
            } else {
                (
                    img.into_rgb16().as_raw().iter().map(|&v| to(v)).collect(),
                    None,
                )
            }
        }
        _ => {
            if alpha {
                let buf = img.into_rgba32f();
                split_rgba(buf.as_raw(), n, |v| v)
            } else {
                (img.into_rgb32f().into_raw(), None)
            }
        }
    };
    Ok(Picture {
        width,
        height,
        depth,
        rgb,
        alpha: a,
    })
}

fn split_rgba<T: Copy>(raw: &[T], n: usize, to: impl Fn(T) -> f32) -> (Vec<f32>, Option<Vec<f32>>) {
    let mut rgb = Vec::with_capacity(n * 3);
    let mut a = Vec::with_capacity(n);
    for px in raw.chunks_exact(4) {
        rgb.extend([to(px[0]), to(px[1]), to(px[2])]);
        a.push(to(px[3]));
    }
    (rgb, Some(a))
}

fn read_exr(path: &Path) -> Result<Picture> {
    struct Pixels {
        width: usize,
        rgb: Vec<f32>,
        alpha: Vec<f32>,
    }
    let image = exr::prelude::read()
        .no_deep_data()
        .largest_resolution_level()
        .rgba_channels(
            |size, _channels| Pixels {
                width: size.0,
                rgb: vec![0.0; size.0 * size.1 * 3],
                alpha: vec![1.0; size.0 * size.1],
            },
            |px: &mut Pixels, pos: Vec2<usize>, (r, g, b, a): (f32, f32, f32, f32)| {
                let i = pos.1 * px.width + pos.0;
                px.rgb[i * 3..i * 3 + 3].copy_from_slice(&[r, g, b]);
                px.alpha[i] = a;
            },
        )
        .first_valid_layer()
        .all_attributes()
        .from_file(path)
        .map_err(|e| image_err(path, e))?;
    let layer = image.layer_data;
    let channels = &layer.channel_data.channels;
    let half = [&channels.0, &channels.1, &channels.2]
        .iter()
        .all(|c| c.sample_type == exr::meta::attribute::SampleType::F16);
    let has_alpha = channels.3.is_some();
    let px = layer.channel_data.pixels;
    Ok(Picture {
        width: layer.size.0,
        height: layer.size.1,
        depth: if half { Depth::Half } else { Depth::Float },
        rgb: px.rgb,
        alpha: has_alpha.then_some(px.alpha),
    })
}

/// Writes `pic` to `path` at `depth` (which the format must support), through a temporary file
/// in the same folder that is renamed into place, so a reader never sees half a frame.
pub fn write(path: &Path, pic: &Picture, depth: Depth) -> Result<()> {
    let format = format_of(path)?;
    if !format.writable() {
        return Err(Error::param("output", not_written(format, path)));
    }
    if !format.supports(depth) {
        return Err(Error::param(
            "depth",
            format!(
                "{format} cannot store {depth} (`{}`): use one of {}",
                path.display(),
                depth_list(format)
            ),
        ));
    }
    if pic.rgb.len() != pic.width * pic.height * 3
        || pic
            .alpha
            .as_ref()
            .is_some_and(|a| a.len() != pic.width * pic.height)
    {
        return Err(Error::image(
            path.display().to_string(),
            "picture buffers do not match its size",
        ));
    }
    let tmp = temp_path(path);
    let written = match format {
        Format::Exr => write_exr(&tmp, pic, depth),
        _ => write_with_image(&tmp, format, pic, depth),
    };
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(
            format!(
                "cannot move the finished frame into place as `{}`",
                path.display()
            ),
            e,
        )
    })
}

/// Why `path` cannot be an output: its format is read, never written.
pub fn not_written(format: Format, path: &Path) -> String {
    format!(
        "`{}`: VDiff reads {format} but does not write it (it is lossy and would add its own \
         artefacts to the denoised frames): write .png, .tif or .exr",
        path.display()
    )
}

/// The depths of `format`, for messages ("8, 16").
pub fn depth_list(format: Format) -> String {
    format
        .depths()
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `dir/.name.vdiff-tmp-PID`: same folder (so the rename is atomic), hidden, never a frame name.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.vdiff-tmp-{}", std::process::id()))
}

fn quantize(v: f32, max: f32) -> f32 {
    // NaN maps to 0: integer files cannot hold it, and black is the least surprising stand-in.
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    (v * max).round()
}

fn interleave<T>(pic: &Picture, conv: impl Fn(f32) -> T) -> Vec<T> {
    match &pic.alpha {
        None => pic.rgb.iter().map(|&v| conv(v)).collect(),
        Some(a) => {
            let mut out = Vec::with_capacity(a.len() * 4);
            for (px, &al) in pic.rgb.chunks_exact(3).zip(a) {
                out.extend([conv(px[0]), conv(px[1]), conv(px[2]), conv(al)]);
            }
            out
        }
    }
}

fn write_with_image(tmp: &Path, format: Format, pic: &Picture, depth: Depth) -> Result<()> {
    let (w, h) = (pic.width as u32, pic.height as u32);
    let file = File::create(tmp)
        .map_err(|e| Error::io(format!("cannot create `{}`", tmp.display()), e))?;
    let mut out = BufWriter::new(file);
    let alpha = pic.alpha.is_some();
    let bad = || Error::image(tmp.display().to_string(), "buffer size mismatch");
    let dynimg = match depth {
        Depth::U8 => {
            let data = interleave(pic, |v| quantize(v, 255.0) as u8);
            if alpha {
                DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, data).ok_or_else(bad)?)
            } else {
                DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, data).ok_or_else(bad)?)
            }
        }
        Depth::U16 => {
            let data = interleave(pic, |v| quantize(v, 65535.0) as u16);
            if alpha {
                DynamicImage::ImageRgba16(ImageBuffer::from_raw(w, h, data).ok_or_else(bad)?)
            } else {
                DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, data).ok_or_else(bad)?)
            }
        }
        Depth::Float | Depth::Half => {
            let data = interleave(pic, |v| v);
            if alpha {
                DynamicImage::ImageRgba32F(ImageBuffer::from_raw(w, h, data).ok_or_else(bad)?)
            } else {
                DynamicImage::ImageRgb32F(ImageBuffer::from_raw(w, h, data).ok_or_else(bad)?)
            }
        }
    };
    let encoded = match format {
        Format::Png => dynimg.write_with_encoder(PngEncoder::new(&mut out)),
        _ => dynimg.write_with_encoder(TiffEncoder::new(&mut out)),
    };
    encoded.map_err(|e| image_err(tmp, e))?;
    out.flush()
        .map_err(|e| Error::io(format!("cannot write `{}`", tmp.display()), e))
}

fn write_exr(tmp: &Path, pic: &Picture, depth: Depth) -> Result<()> {
    let (w, h) = (pic.width, pic.height);
    let px = |x: usize, y: usize| {
        let i = y * w + x;
        (
            pic.rgb[i * 3],
            pic.rgb[i * 3 + 1],
            pic.rgb[i * 3 + 2],
            pic.alpha.as_ref().map_or(1.0, |a| a[i]),
        )
    };
    // ZIP over scanlines: lossless and the format every compositor reads fastest.
    let enc = Encoding::SMALL_LOSSLESS;
    let result = match (depth, pic.alpha.is_some()) {
        (Depth::Half, false) => {
            let ch = SpecificChannels::rgb(|Vec2(x, y)| {
                let (r, g, b, _) = px(x, y);
                (f16::from_f32(r), f16::from_f32(g), f16::from_f32(b))
            });
            Image::from_encoded_channels((w, h), enc, ch)
                .write()
                .to_file(tmp)
        }
        (Depth::Half, true) => {
            let ch = SpecificChannels::rgba(|Vec2(x, y)| {
                let (r, g, b, a) = px(x, y);
                (
                    f16::from_f32(r),
                    f16::from_f32(g),
                    f16::from_f32(b),
                    f16::from_f32(a),
                )
            });
            Image::from_encoded_channels((w, h), enc, ch)
                .write()
                .to_file(tmp)
        }
        (_, false) => {
            let ch = SpecificChannels::rgb(|Vec2(x, y)| {
                let (r, g, b, _) = px(x, y);
                (r, g, b)
            });
            Image::from_encoded_channels((w, h), enc, ch)
                .write()
                .to_file(tmp)
        }
        (_, true) => {
            let ch = SpecificChannels::rgba(|Vec2(x, y)| px(x, y));
            Image::from_encoded_channels((w, h), enc, ch)
                .write()
                .to_file(tmp)
        }
    };
    result.map_err(|e| image_err(tmp, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vdiff-imageio-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A picture whose values are exactly representable at `depth`, with a distinct top row.
    fn sample(depth: Depth, alpha: bool) -> Picture {
        let (w, h) = (7, 5);
        let q = |i: usize| -> f32 {
            match depth {
                Depth::U8 => (i * 37 % 256) as f32 / 255.0,
                Depth::U16 => (i * 4099 % 65536) as f32 / 65535.0,
                Depth::Half => f16::from_f32(i as f32 * 0.173 - 1.0).to_f32(),
                Depth::Float => i as f32 * 0.1234567 - 2.5,
            }
        };
        let rgb = (0..w * h * 3).map(q).collect();
        let alpha = alpha.then(|| (0..w * h).map(|i| q(i * 5 + 1)).collect());
        Picture {
            width: w,
            height: h,
            depth,
            rgb,
            alpha,
        }
    }

    #[test]
    fn every_format_and_depth_round_trips_exactly() {
        let d = dir("roundtrip");
        for (ext, format) in [
            ("png", Format::Png),
            ("tif", Format::Tiff),
            ("exr", Format::Exr),
        ] {
            for &depth in format.depths() {
                for alpha in [false, true] {
                    let pic = sample(depth, alpha);
                    let path = d.join(format!("f_{depth}_{alpha}.{ext}"));
                    write(&path, &pic, depth).unwrap();
                    let head = read_header(&path).unwrap();
                    assert_eq!(
                        head,
                        Header {
                            format,
                            width: 7,
                            height: 5,
                            depth,
                            alpha
                        },
                        "{}",
                        path.display()
                    );
                    let back = read(&path).unwrap();
                    assert_eq!(back, pic, "{}", path.display());
                    assert!(!temp_path(&path).exists());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn integer_depths_clamp_and_round() {
        let d = dir("quantize");
        let pic = Picture {
            width: 2,
            height: 1,
            depth: Depth::Float,
            rgb: vec![-0.5, 0.5, 1.5, f32::NAN, 0.25, 1.0 / 255.0 * 0.49],
            alpha: None,
        };
        let path = d.join("q.png");
        write(&path, &pic, Depth::U8).unwrap();
        let back = read(&path).unwrap();
        let bytes: Vec<u8> = back.rgb.iter().map(|v| (v * 255.0).round() as u8).collect();
        assert_eq!(bytes, vec![0, 128, 255, 0, 64, 0]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn engine_view_flips_rows() {
        let pic = sample(Depth::Float, false);
        let img = pic.to_rgb_image();
        assert_eq!(img.rect, Rect::new(0, 0, 7, 5));
        // File row 0 (top) is y = height - 1.
        assert_eq!(
            &img.data[img.offset(0, 4)..img.offset(0, 4) + 21],
            &pic.rgb[0..21]
        );
        assert_eq!(
            &img.data[img.offset(0, 0)..img.offset(0, 0) + 21],
            &pic.rgb[4 * 21..5 * 21]
        );
        let back = Picture::from_rgb_image(&img, Depth::Float, None).unwrap();
        assert_eq!(back, pic);
        let off = RgbImage {
            rect: Rect::new(1, 0, 8, 5),
            data: img.data.clone(),
        };
        assert!(Picture::from_rgb_image(&off, Depth::Float, None).is_err());
    }

    #[test]
    fn depth_rules() {
        assert_eq!("half".parse::<Depth>().unwrap(), Depth::Half);
        assert_eq!("16".parse::<Depth>().unwrap(), Depth::U16);
        assert!("12"
            .parse::<Depth>()
            .unwrap_err()
            .to_string()
            .contains("8, 16, half or float"));
        assert_eq!(Format::Exr.keep_depth(Depth::U8), Depth::Half);
        assert_eq!(Format::Exr.keep_depth(Depth::U16), Depth::Float);
        assert_eq!(Format::Png.keep_depth(Depth::Float), Depth::U16);
        assert_eq!(Format::Tiff.keep_depth(Depth::Half), Depth::Float);
        assert_eq!(Format::Tiff.keep_depth(Depth::U16), Depth::U16);
        let d = dir("unsupported");
        let e = write(&d.join("x.png"), &sample(Depth::U8, false), Depth::Half)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PNG cannot store half") && e.contains("x.png"),
            "{e}"
        );
        assert!(!d.join("x.png").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn jpeg_is_read_only() {
        for name in ["a.jpg", "b.JPEG"] {
            assert_eq!(Format::from_path(Path::new(name)), Some(Format::Jpeg));
        }
        assert!(!Format::Jpeg.writable() && Format::Png.writable());
        let d = dir("jpeg");
        let p = d.join("out.jpg");
        let e = write(&p, &sample(Depth::U8, false), Depth::U8)
            .unwrap_err()
            .to_string();
        assert!(e.contains("JPEG") && e.contains(".png"), "{e}");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "a file was left");
        let e = crate::sequence::SeqSpec::output(&format!("{}/%04d.jpg", d.display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("JPEG"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn unreadable_files_name_the_file() {
        let d = dir("bad");
        for name in ["broken.png", "broken.tif", "broken.exr"] {
            let p = d.join(name);
            std::fs::write(&p, b"definitely not an image").unwrap();
            let e = read_header(&p).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
        let e = read(&d.join("missing.png")).unwrap_err().to_string();
        assert!(e.contains("missing.png"), "{e}");
        let e = read(&d.join("notes.txt")).unwrap_err().to_string();
        assert!(e.contains("notes.txt") && e.contains("extension"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

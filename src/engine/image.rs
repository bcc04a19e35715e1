//! The plain pixel container the engine works on: an RGB f32 buffer over a `Rect`. The OFX layer
//! and the command line convert to and from it; nothing here knows a host.
use crate::geometry::Rect;

/// RGB f32 pixels, interleaved, rows in increasing y, covering `rect` exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub rect: Rect,
    pub data: Vec<f32>,
}

impl RgbImage {
    pub fn new(rect: Rect) -> Self {
        RgbImage {
            rect,
            data: vec![0.0; rect.area() * 3],
        }
    }

    /// Copy of `r` (which must lie inside this image) as a new image.
    pub fn crop(&self, r: &Rect) -> crate::Result<RgbImage> {
        if !self.rect.contains(r) {
            return Err(crate::Error::image(
                "region",
                format!("{r:?} lies outside the available pixels {:?}", self.rect),
            ));
        }
        let mut out = RgbImage::new(*r);
        let w = r.width() as usize * 3;
        for y in r.y0..r.y1 {
            let src = self.offset(r.x0, y);
            let dst = ((y - r.y0) as usize) * w;
            out.data[dst..dst + w].copy_from_slice(&self.data[src..src + w]);
        }
        Ok(out)
    }

    /// Index of the first channel of pixel (x, y).
    pub fn offset(&self, x: i64, y: i64) -> usize {
        (((y - self.rect.y0) * self.rect.width() + (x - self.rect.x0)) * 3) as usize
    }

    /// Planar [3, h, w] copy of the region `r` (inside this image).
    pub fn planar(&self, r: &Rect) -> Vec<f32> {
        let (w, h) = (r.width() as usize, r.height() as usize);
        let mut out = vec![0.0; 3 * w * h];
        for (j, y) in (r.y0..r.y1).enumerate() {
            let row = self.offset(r.x0, y);
            for i in 0..w {
                for c in 0..3 {
                    out[c * w * h + j * w + i] = self.data[row + i * 3 + c];
                }
            }
        }
        out
    }
}

/// Replaces NaN by 0 and clamps infinities, so one bad pixel cannot spread through a network.
pub fn sanitize(v: f32) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(-SANE_LIMIT, SANE_LIMIT)
    }
}

/// Largest magnitude a source value keeps (half-float max): HDR survives, infinities do not.
pub const SANE_LIMIT: f32 = 65504.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_and_planar_agree() {
        let r = Rect::new(-2, 3, 4, 7);
        let mut img = RgbImage::new(r);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = i as f32;
        }
        let sub = Rect::new(0, 4, 3, 6);
        let c = img.crop(&sub).unwrap();
        let p = img.planar(&sub);
        for (j, y) in (4..6).enumerate() {
            for (i, x) in (0..3).enumerate() {
                for ch in 0..3 {
                    assert_eq!(c.data[c.offset(x, y) + ch], img.data[img.offset(x, y) + ch]);
                    assert_eq!(p[ch * 6 + j * 3 + i], img.data[img.offset(x, y) + ch]);
                }
            }
        }
        assert!(img.crop(&Rect::new(-3, 3, 0, 4)).is_err());
    }

    #[test]
    fn sanitize_removes_non_finite() {
        assert_eq!(sanitize(f32::NAN), 0.0);
        assert_eq!(sanitize(f32::INFINITY), SANE_LIMIT);
        assert_eq!(sanitize(-f32::INFINITY), -SANE_LIMIT);
        assert_eq!(sanitize(3.5), 3.5);
    }
}

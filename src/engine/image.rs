//! Plain pixel containers the engine works on: an absolute-coordinate rectangle and an RGB f32
//! buffer. The OFX layer and the command line convert to and from these; nothing here knows a host.

/// Half-open rectangle in absolute pixel coordinates at the render scale (y grows upward, OFX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

impl Rect {
    pub const fn new(x0: i64, y0: i64, x1: i64, y1: i64) -> Self {
        Rect { x0, y0, x1, y1 }
    }
    pub fn width(&self) -> i64 {
        (self.x1 - self.x0).max(0)
    }
    pub fn height(&self) -> i64 {
        (self.y1 - self.y0).max(0)
    }
    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }
    pub fn area(&self) -> usize {
        (self.width() * self.height()) as usize
    }
    pub fn intersect(&self, o: &Rect) -> Rect {
        let r = Rect::new(
            self.x0.max(o.x0),
            self.y0.max(o.y0),
            self.x1.min(o.x1),
            self.y1.min(o.y1),
        );
        if r.is_empty() {
            Rect::default()
        } else {
            r
        }
    }
    /// Smallest rectangle holding both; an empty side is ignored.
    pub fn union(&self, o: &Rect) -> Rect {
        if self.is_empty() {
            return *o;
        }
        if o.is_empty() {
            return *self;
        }
        Rect::new(
            self.x0.min(o.x0),
            self.y0.min(o.y0),
            self.x1.max(o.x1),
            self.y1.max(o.y1),
        )
    }
    pub fn contains(&self, o: &Rect) -> bool {
        o.is_empty() || (o.x0 >= self.x0 && o.y0 >= self.y0 && o.x1 <= self.x1 && o.y1 <= self.y1)
    }
}

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
    fn intersect_union_contains() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, -5, 15, 5);
        assert_eq!(a.intersect(&b), Rect::new(5, 0, 10, 5));
        assert_eq!(a.union(&b), Rect::new(0, -5, 15, 10));
        assert!(a.contains(&Rect::new(1, 1, 2, 2)));
        assert!(!a.contains(&b));
        assert!(a.intersect(&Rect::new(20, 20, 30, 30)).is_empty());
    }

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

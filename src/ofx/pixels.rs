//! Safe views of image memory as OFX lays it out: pixel depth, components, bounds and a row
//! stride that may be negative. `ofx::clip` builds these over host buffers; `effect::pixels`
//! converts through them; tests build them over plain `Vec<u8>`s. No unsafe code here.
use std::ffi::CStr;

use openfx::sys::generic::core::{
    kOfxBitDepthByte, kOfxBitDepthFloat, kOfxBitDepthHalf, kOfxBitDepthShort,
};
use openfx::sys::image_effect_v1::image_effect::{kOfxImageComponentRGB, kOfxImageComponentRGBA};

use crate::geometry::Rect;
use crate::{Error, Result};

/// Bits per channel of an OFX image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Depth {
    Byte,
    Short,
    Half,
    Float,
}

impl Depth {
    pub const ALL: [Depth; 4] = [Depth::Byte, Depth::Short, Depth::Half, Depth::Float];

    /// Bytes per channel.
    pub fn bytes(self) -> usize {
        match self {
            Depth::Byte => 1,
            Depth::Short | Depth::Half => 2,
            Depth::Float => 4,
        }
    }

    pub fn ofx_name(self) -> &'static CStr {
        match self {
            Depth::Byte => kOfxBitDepthByte,
            Depth::Short => kOfxBitDepthShort,
            Depth::Half => kOfxBitDepthHalf,
            Depth::Float => kOfxBitDepthFloat,
        }
    }

    /// Parses an `OfxBitDepth*` string; anything else is a clear format error.
    pub fn from_ofx(s: &str) -> Result<Depth> {
        Depth::ALL
            .into_iter()
            .find(|d| d.ofx_name().to_bytes() == s.as_bytes())
            .ok_or_else(|| {
                Error::PixelFormat(format!(
                    "pixel depth `{s}` is not supported (Byte, Short, Half or Float)"
                ))
            })
    }
}

/// Channels of an OFX image. Alpha-only images are refused at describe time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Components {
    Rgba,
    Rgb,
}

impl Components {
    pub const ALL: [Components; 2] = [Components::Rgba, Components::Rgb];

    pub fn count(self) -> usize {
        match self {
            Components::Rgba => 4,
            Components::Rgb => 3,
        }
    }

    pub fn ofx_name(self) -> &'static CStr {
        match self {
            Components::Rgba => kOfxImageComponentRGBA,
            Components::Rgb => kOfxImageComponentRGB,
        }
    }

    pub fn from_ofx(s: &str) -> Result<Components> {
        Components::ALL
            .into_iter()
            .find(|c| c.ofx_name().to_bytes() == s.as_bytes())
            .ok_or_else(|| {
                Error::PixelFormat(format!("components `{s}` are not supported (RGBA or RGB)"))
            })
    }
}

/// Geometry of one image buffer. `row_bytes` is the signed distance in bytes from row y to row
/// y+1; the buffer pointer addresses the first pixel of row `bounds.y0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub bounds: Rect,
    pub row_bytes: isize,
    pub depth: Depth,
    pub components: Components,
}

impl Layout {
    /// A layout whose rows hold at least `bounds.width()` pixels; anything else would make rows
    /// overlap, and is refused.
    pub fn new(
        bounds: Rect,
        row_bytes: isize,
        depth: Depth,
        components: Components,
    ) -> Result<Layout> {
        if bounds.x1 < bounds.x0 || bounds.y1 < bounds.y0 {
            return Err(Error::image(
                "bounds",
                format!("inverted image bounds {bounds:?}"),
            ));
        }
        let l = Layout {
            bounds,
            row_bytes,
            depth,
            components,
        };
        let need = l.row_len();
        if need > 0 && bounds.height() > 1 && row_bytes.unsigned_abs() < need {
            return Err(Error::image(
                "row bytes",
                format!(
                    "{row_bytes} bytes per row cannot hold {} pixels of {} bytes",
                    bounds.width(),
                    l.pixel_bytes()
                ),
            ));
        }
        if need > 0 && l.span() > isize::MAX as usize {
            return Err(Error::image(
                "bounds",
                format!("image {bounds:?} is too large to address"),
            ));
        }
        Ok(l)
    }

    pub fn pixel_bytes(&self) -> usize {
        self.depth.bytes() * self.components.count()
    }

    /// Bytes of pixel data in one row.
    pub fn row_len(&self) -> usize {
        self.bounds.width() as usize * self.pixel_bytes()
    }

    /// Bytes from the lowest-addressed row start to the end of the highest-addressed row.
    pub fn span(&self) -> usize {
        let h = self.bounds.height() as usize;
        if h == 0 || self.row_len() == 0 {
            return 0;
        }
        (h - 1)
            .saturating_mul(self.row_bytes.unsigned_abs())
            .saturating_add(self.row_len())
    }

    /// Offset of the lowest-addressed byte relative to the buffer pointer (row `bounds.y0`):
    /// zero for top-down strides, `(h-1) * row_bytes` (negative) for bottom-up ones (MLT).
    pub fn lowest_offset(&self) -> isize {
        let h = self.bounds.height() as isize;
        if self.row_bytes < 0 && h > 0 {
            (h - 1) * self.row_bytes
        } else {
            0
        }
    }

    /// Offset of the first byte of pixel (x, y) from the lowest-addressed byte; None outside.
    pub fn offset(&self, x: i64, y: i64) -> Option<usize> {
        let b = &self.bounds;
        if x < b.x0 || x >= b.x1 || y < b.y0 || y >= b.y1 {
            return None;
        }
        let row = (y - b.y0) as isize * self.row_bytes - self.lowest_offset();
        Some(row as usize + (x - b.x0) as usize * self.pixel_bytes())
    }
}

/// Where a rectangle of an image lies in its buffer, for copies that go row by row in address
/// order (CUDA images, `ofx::cuda`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RectSpan {
    /// Offset of the lowest-addressed row's first pixel from the buffer pointer (row
    /// `bounds.y0`'s first pixel, as `kOfxImagePropData` points).
    pub first: isize,
    /// Distance between rows in bytes (positive).
    pub pitch: usize,
    /// Bytes of one row of the rectangle.
    pub width: usize,
    pub rows: usize,
}

impl Layout {
    /// The layout of a tightly packed copy of `rect ∩ bounds` with this image's row order; its
    /// bytes start at the lowest address, as `PixelsRef` and `PixelsMut` expect.
    pub fn packed(&self, rect: Rect) -> Result<Layout> {
        let rect = rect.intersect(&self.bounds);
        let row = rect.width() as isize * self.pixel_bytes() as isize;
        let sign = if self.row_bytes < 0 { -1 } else { 1 };
        Layout::new(rect, sign * row, self.depth, self.components)
    }

    /// Where `rect` (inside the bounds) lies; None when it is empty or outside.
    pub fn rect_span(&self, rect: Rect) -> Option<RectSpan> {
        if rect.is_empty() || rect.intersect(&self.bounds) != rect {
            return None;
        }
        let lowest_row = if self.row_bytes < 0 {
            rect.y1 - 1
        } else {
            rect.y0
        };
        let off = self.offset(rect.x0, lowest_row)?;
        Some(RectSpan {
            first: self.lowest_offset() + off as isize,
            pitch: self.row_bytes.unsigned_abs(),
            width: rect.width() as usize * self.pixel_bytes(),
            rows: rect.height() as usize,
        })
    }
}

/// Read-only pixels: the whole buffer, from its lowest address.
#[derive(Clone, Copy, Debug)]
pub struct PixelsRef<'a> {
    bytes: &'a [u8],
    layout: Layout,
}

impl<'a> PixelsRef<'a> {
    /// `bytes` starts at the lowest address of the image (see `Layout::lowest_offset`).
    pub fn new(bytes: &'a [u8], layout: Layout) -> Result<Self> {
        if bytes.len() < layout.span() {
            return Err(Error::image(
                "buffer",
                format!(
                    "{} bytes cannot hold an image of {} bytes",
                    bytes.len(),
                    layout.span()
                ),
            ));
        }
        Ok(PixelsRef { bytes, layout })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Pixels of row y from `x0` (clipped to the bounds) to the end of the row.
    pub fn row_from(&self, x0: i64, y: i64) -> Option<&'a [u8]> {
        let x0 = x0.max(self.layout.bounds.x0);
        let start = self.layout.offset(x0, y)?;
        let len = (self.layout.bounds.x1 - x0) as usize * self.layout.pixel_bytes();
        self.bytes.get(start..start + len)
    }
}

/// Writable pixels, confined to a window: one slice per row covering only the window's columns,
/// so nothing outside the window can be written, and renders of disjoint windows of one buffer
/// never hold overlapping references.
#[derive(Debug)]
pub struct PixelsMut<'a> {
    rows: Vec<&'a mut [u8]>,
    window: Rect,
    depth: Depth,
    components: Components,
}

impl<'a> PixelsMut<'a> {
    /// Splits `buf` (starting at the lowest address, as in `PixelsRef::new`) into the rows of
    /// `window ∩ layout.bounds`.
    pub fn from_buffer(buf: &'a mut [u8], layout: Layout, window: Rect) -> Result<Self> {
        if buf.len() < layout.span() {
            return Err(Error::image(
                "buffer",
                format!(
                    "{} bytes cannot hold an image of {} bytes",
                    buf.len(),
                    layout.span()
                ),
            ));
        }
        let window = window.intersect(&layout.bounds);
        let pb = layout.pixel_bytes();
        let len = window.width() as usize * pb;
        // Row slices in address order, then handed out by y.
        let mut spans: Vec<(i64, usize)> = (window.y0..window.y1)
            .filter_map(|y| layout.offset(window.x0, y).map(|o| (y, o)))
            .collect();
        spans.sort_by_key(|&(_, o)| o);
        let mut rows: Vec<(i64, &'a mut [u8])> = Vec::with_capacity(spans.len());
        let mut rest: &'a mut [u8] = buf;
        let mut consumed = 0usize;
        for (y, off) in spans {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(off - consumed);
            let (row, tail) = tail.split_at_mut(len);
            rows.push((y, row));
            rest = tail;
            consumed = off + len;
        }
        rows.sort_by_key(|&(y, _)| y);
        Ok(PixelsMut::from_rows(
            rows.into_iter().map(|(_, r)| r).collect(),
            window,
            layout.depth,
            layout.components,
        ))
    }

    /// Rows of `window` in increasing y, each exactly `window.width()` pixels long.
    pub(crate) fn from_rows(
        rows: Vec<&'a mut [u8]>,
        window: Rect,
        depth: Depth,
        components: Components,
    ) -> Self {
        PixelsMut {
            rows,
            window,
            depth,
            components,
        }
    }

    pub fn window(&self) -> Rect {
        self.window
    }
    pub fn depth(&self) -> Depth {
        self.depth
    }
    pub fn components(&self) -> Components {
        self.components
    }

    /// The window's pixels of row y.
    pub fn row_mut(&mut self, y: i64) -> Option<&mut [u8]> {
        if y < self.window.y0 || y >= self.window.y1 {
            return None;
        }
        self.rows
            .get_mut((y - self.window.y0) as usize)
            .map(|r| &mut **r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(rb: isize) -> Layout {
        Layout::new(Rect::new(-2, 3, 2, 6), rb, Depth::Short, Components::Rgb).unwrap()
    }

    #[test]
    fn offsets_follow_the_row_stride_sign() {
        // 4 px * 6 bytes = 24 bytes of pixels per row, padded to 32.
        let up = layout(32);
        assert_eq!(up.span(), 2 * 32 + 24);
        assert_eq!(up.offset(-2, 3), Some(0));
        assert_eq!(up.offset(-1, 4), Some(32 + 6));
        let down = layout(-32);
        assert_eq!(down.lowest_offset(), -64);
        assert_eq!(down.offset(-2, 3), Some(64)); // bottom row is highest in memory
        assert_eq!(down.offset(-2, 5), Some(0));
        assert_eq!(down.offset(2, 5), None);
        assert_eq!(down.offset(-2, 6), None);
    }

    #[test]
    fn refuses_overlapping_rows_and_short_buffers() {
        assert!(Layout::new(Rect::new(0, 0, 4, 2), 10, Depth::Float, Components::Rgba).is_err());
        assert!(Layout::new(Rect::new(0, 0, 4, 2), -63, Depth::Float, Components::Rgba).is_err());
        assert!(Layout::new(Rect::new(0, 2, 4, 0), 64, Depth::Float, Components::Rgba).is_err());
        let l = Layout::new(Rect::new(0, 0, 4, 2), -64, Depth::Float, Components::Rgba).unwrap();
        assert!(PixelsRef::new(&[0u8; 100], l).is_err());
        assert!(PixelsRef::new(&[0u8; 128], l).is_ok());
        assert!(Depth::from_ofx("OfxBitDepthDouble").is_err());
        assert!(Components::from_ofx("OfxImageComponentAlpha").is_err());
        assert_eq!(Depth::from_ofx("OfxBitDepthHalf").unwrap(), Depth::Half);
    }

    #[test]
    fn packed_copies_keep_the_row_order_and_drop_the_padding() {
        for rb in [160isize, -160] {
            let l =
                Layout::new(Rect::new(-2, 3, 6, 9), rb, Depth::Float, Components::Rgba).unwrap();
            let p = l.packed(Rect::new(0, 4, 10, 6)).unwrap();
            assert_eq!(p.bounds, Rect::new(0, 4, 6, 6));
            assert_eq!(p.row_bytes, rb.signum() * 6 * 16);
            assert_eq!(p.span(), 2 * 6 * 16);
            let s = l.rect_span(p.bounds).unwrap();
            assert_eq!((s.pitch, s.width, s.rows), (160, 96, 2));
            // Copying `rows` rows of `width` bytes from `first`, `pitch` apart, lands every pixel
            // where the packed layout reads it: check against a buffer of row/column tags.
            let mut buf = vec![0u8; l.span()];
            for y in 3..9 {
                for x in -2..6 {
                    let o = l.offset(x, y).unwrap();
                    buf[o] = (y * 16 + x + 2) as u8;
                }
            }
            let start = (s.first - l.lowest_offset()) as usize;
            let mut copy = Vec::new();
            for r in 0..s.rows {
                let a = start + r * s.pitch;
                copy.extend_from_slice(&buf[a..a + s.width]);
            }
            let px = PixelsRef::new(&copy, p).unwrap();
            for y in 4..6 {
                let row = px.row_from(0, y).unwrap();
                for x in 0..6 {
                    assert_eq!(
                        row[x as usize * 16],
                        (y * 16 + x + 2) as u8,
                        "rb {rb} x {x} y {y}"
                    );
                }
            }
        }
        let l = Layout::new(Rect::new(0, 0, 4, 4), 64, Depth::Float, Components::Rgba).unwrap();
        assert!(l.rect_span(Rect::new(0, 1, 0, 3)).is_none());
        assert!(l.rect_span(Rect::new(0, 1, 5, 3)).is_none());
    }

    #[test]
    fn mutable_rows_cover_only_the_window() {
        for rb in [32isize, -32] {
            let l = layout(rb);
            let mut buf = vec![0u8; l.span()];
            {
                let mut px = PixelsMut::from_buffer(&mut buf, l, Rect::new(-1, 4, 1, 10)).unwrap();
                assert_eq!(px.window(), Rect::new(-1, 4, 1, 6));
                for y in 4..6 {
                    px.row_mut(y).unwrap().fill(y as u8);
                }
                assert!(px.row_mut(3).is_none());
            }
            for y in 3..6 {
                for x in -2..2 {
                    let o = l.offset(x, y).unwrap();
                    let inside = (-1..1).contains(&x) && (4..6).contains(&y);
                    let want = if inside { y as u8 } else { 0 };
                    assert!(
                        buf[o..o + 6].iter().all(|&b| b == want),
                        "rb {rb} x {x} y {y}"
                    );
                }
            }
            // Padding bytes between rows stay untouched.
            let touched = buf.iter().filter(|&&b| b != 0).count();
            assert_eq!(touched, 2 * 2 * 6);
        }
    }
}

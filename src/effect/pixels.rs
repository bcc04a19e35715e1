//! Pixel conversion between host images (Byte, Short, Half, Float; RGBA or RGB; any row order)
//! and the engine's RGB f32 `RgbImage`, and back into the output window with alpha passed through.
use crate::engine::{Rect, RgbImage};
use crate::ofx::pixels::{Components, Depth, PixelsMut, PixelsRef};

/// IEEE half (binary16) bits to f32: exact for every half value.
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// f32 to the nearest half (ties to even); values beyond the half range become infinities,
/// NaN stays NaN (callers sanitise first).
pub fn f32_to_f16(v: f32) -> u16 {
    half::f16::from_f32(v).to_bits()
}

/// One channel value from its bytes, in 0..1 units for integer depths.
fn decode(depth: Depth, b: &[u8]) -> f32 {
    match depth {
        Depth::Byte => b[0] as f32 / 255.0,
        Depth::Short => u16::from_ne_bytes([b[0], b[1]]) as f32 / 65535.0,
        Depth::Half => f16_to_f32(u16::from_ne_bytes([b[0], b[1]])),
        Depth::Float => f32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
    }
}

/// Writes one channel. Integer depths clamp to [0, 1]; float depths keep out-of-range values;
/// nothing non-finite is ever written (NaN becomes 0, infinities the largest finite value).
fn encode(depth: Depth, v: f32, out: &mut [u8]) {
    let v = if v.is_nan() { 0.0 } else { v };
    match depth {
        Depth::Byte => out[0] = (v.clamp(0.0, 1.0) * 255.0).round() as u8,
        Depth::Short => {
            out[..2].copy_from_slice(&((v.clamp(0.0, 1.0) * 65535.0).round() as u16).to_ne_bytes())
        }
        Depth::Half => {
            out[..2].copy_from_slice(&f32_to_f16(v.clamp(-65504.0, 65504.0)).to_ne_bytes())
        }
        Depth::Float => out[..4].copy_from_slice(&v.clamp(f32::MIN, f32::MAX).to_ne_bytes()),
    }
}

/// The RGB of `rect` from a source image; pixels the image does not cover are black (OFX: an
/// image is transparent black outside its bounds). Values are raw: the engine sanitises.
pub fn read_rgb(src: &PixelsRef<'_>, rect: Rect) -> RgbImage {
    let mut out = RgbImage::new(rect);
    let l = *src.layout();
    let (cb, pb) = (l.depth.bytes(), l.pixel_bytes());
    let inner = rect.intersect(&l.bounds);
    let w = rect.width() as usize;
    for y in inner.y0..inner.y1 {
        let Some(row) = src.row_from(inner.x0, y) else {
            continue;
        };
        let base = ((y - rect.y0) as usize * w + (inner.x0 - rect.x0) as usize) * 3;
        let n = inner.width() as usize;
        for (i, px) in row.chunks_exact(pb).take(n).enumerate() {
            for c in 0..3 {
                out.data[base + i * 3 + c] = decode(l.depth, &px[c * cb..]);
            }
        }
    }
    out
}

/// Alpha of pixel (x, y) of the source as the output should carry it: the source's alpha where
/// it has one (non-finite -> 0), 1 for RGB sources, 0 outside the source's bounds or without a
/// source (an unconnected input is transparent black).
pub(crate) fn source_alpha(src: Option<&PixelsRef<'_>>, x: i64, y: i64) -> f32 {
    let Some(src) = src else { return 0.0 };
    let l = src.layout();
    match src.row_from(x, y) {
        None => 0.0,
        Some(_) if l.components == Components::Rgb => 1.0,
        Some(px) => {
            let a = decode(l.depth, &px[3 * l.depth.bytes()..]);
            if a.is_finite() {
                a
            } else {
                0.0
            }
        }
    }
}

/// Writes `rgb` into the output window (`dst.window()`), alpha taken from `alpha_src` at the
/// same pixel (`None`: no source, transparent). Pixels of the window that `rgb` does not cover become black.
/// Nothing outside the window is touched: `dst` holds only the window's rows.
pub fn write_window(dst: &mut PixelsMut<'_>, rgb: &RgbImage, alpha_src: Option<&PixelsRef<'_>>) {
    let window = dst.window();
    let (depth, comps) = (dst.depth(), dst.components());
    let (cb, pb) = (depth.bytes(), depth.bytes() * comps.count());
    for y in window.y0..window.y1 {
        let Some(row) = dst.row_mut(y) else { continue };
        for (i, px) in row.chunks_exact_mut(pb).enumerate() {
            let x = window.x0 + i as i64;
            let inside = x >= rgb.rect.x0 && x < rgb.rect.x1 && y >= rgb.rect.y0 && y < rgb.rect.y1;
            for c in 0..3 {
                let v = if inside {
                    rgb.data[rgb.offset(x, y) + c]
                } else {
                    0.0
                };
                encode(depth, v, &mut px[c * cb..]);
            }
            if comps == Components::Rgba {
                encode(depth, source_alpha(alpha_src, x, y), &mut px[3 * cb..]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofx::pixels::Layout;

    #[test]
    fn half_conversion_round_trips_every_finite_half() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f32_to_f16(f) & 0x7c00 == 0x7c00 && f32_to_f16(f) & 0x3ff != 0);
                continue;
            }
            assert_eq!(f32_to_f16(f), h, "half {h:#06x} -> {f}");
        }
        // Known values (IEEE 754 binary16 table).
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        // Rounding: ties to even, overflow to infinity, underflow to zero.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(70000.0), 0x7c00);
        assert_eq!(f32_to_f16(2f32.powi(-26)), 0);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
    }

    /// A test image: value of channel c at (x, y), per depth, in a buffer of row stride `rb`.
    fn image(
        bounds: Rect,
        depth: Depth,
        comps: Components,
        rb_sign: isize,
        f: impl Fn(i64, i64, usize) -> f32,
    ) -> (Vec<u8>, Layout) {
        let pb = depth.bytes() * comps.count();
        let rb = (bounds.width() as usize * pb + 8) as isize * rb_sign; // padded rows
        let l = Layout::new(bounds, rb, depth, comps).unwrap();
        let mut buf = vec![0u8; l.span()];
        for y in bounds.y0..bounds.y1 {
            for x in bounds.x0..bounds.x1 {
                let o = l.offset(x, y).unwrap();
                for c in 0..comps.count() {
                    encode(depth, f(x, y, c), &mut buf[o + c * depth.bytes()..]);
                }
            }
        }
        (buf, l)
    }

    fn value(x: i64, y: i64, c: usize) -> f32 {
        ((x * 7 + y * 13 + c as i64 * 5).rem_euclid(50)) as f32 / 50.0
    }

    /// Largest error a round trip through a depth may add.
    fn tolerance(d: Depth) -> f32 {
        match d {
            Depth::Byte => 0.5 / 255.0 + 1e-6,
            Depth::Short => 0.5 / 65535.0 + 1e-6,
            Depth::Half => 1e-3,
            Depth::Float => 0.0,
        }
    }

    #[test]
    fn reads_every_depth_and_components_with_either_row_order() {
        let bounds = Rect::new(-3, 2, 5, 7);
        let rect = Rect::new(-5, 3, 2, 9); // partly outside the image
        for depth in Depth::ALL {
            for comps in Components::ALL {
                for sign in [1, -1] {
                    let (buf, l) = image(bounds, depth, comps, sign, value);
                    let src = PixelsRef::new(&buf, l).unwrap();
                    let rgb = read_rgb(&src, rect);
                    assert_eq!(rgb.rect, rect);
                    for y in rect.y0..rect.y1 {
                        for x in rect.x0..rect.x1 {
                            for c in 0..3 {
                                let got = rgb.data[rgb.offset(x, y) + c];
                                let inside = x >= bounds.x0
                                    && x < bounds.x1
                                    && y >= bounds.y0
                                    && y < bounds.y1;
                                let want = if inside { value(x, y, c) } else { 0.0 };
                                assert!(
                                    (got - want).abs() <= tolerance(depth),
                                    "{depth:?} {comps:?} rb {sign} ({x},{y},{c}) {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn writes_only_the_window_with_alpha_passed_through() {
        let bounds = Rect::new(0, 0, 6, 5);
        let window = Rect::new(1, 1, 4, 3);
        for depth in Depth::ALL {
            for comps in Components::ALL {
                for sign in [1, -1] {
                    // Source with alpha 0.25 + x/10 (and one non-finite alpha for Float/Half).
                    let alpha = |x: i64, y: i64| {
                        if (x, y) == (2, 2) {
                            f32::NAN
                        } else {
                            0.25 + x as f32 / 10.0
                        }
                    };
                    let (sbuf, sl) = image(bounds, depth, Components::Rgba, sign, |x, y, c| {
                        if c == 3 {
                            alpha(x, y)
                        } else {
                            0.5
                        }
                    });
                    let src = PixelsRef::new(&sbuf, sl).unwrap();
                    let (mut obuf, ol) = image(bounds, depth, comps, sign, |_, _, _| 0.75); // sentinel
                    let before = obuf.clone();
                    let mut rgb = RgbImage::new(Rect::new(1, 1, 3, 3)); // covers only part of the window
                    for y in 1..3 {
                        for x in 1..3 {
                            let o = rgb.offset(x, y);
                            rgb.data[o..o + 3].copy_from_slice(&[1.5, -0.25, 0.125]);
                        }
                    }
                    {
                        let mut dst = PixelsMut::from_buffer(&mut obuf, ol, window).unwrap();
                        write_window(&mut dst, &rgb, Some(&src));
                    }
                    for y in bounds.y0..bounds.y1 {
                        for x in bounds.x0..bounds.x1 {
                            let o = ol.offset(x, y).unwrap();
                            let px = &obuf[o..o + ol.pixel_bytes()];
                            let in_window =
                                x >= window.x0 && x < window.x1 && y >= window.y0 && y < window.y1;
                            if !in_window {
                                assert_eq!(
                                    px,
                                    &before[o..o + ol.pixel_bytes()],
                                    "{depth:?} {comps:?} ({x},{y}) touched"
                                );
                                continue;
                            }
                            let cb = depth.bytes();
                            let ch = |c: usize| decode(depth, &px[c * cb..]);
                            let covered = x < 3;
                            let want = if !covered {
                                [0.0, 0.0, 0.0]
                            } else if matches!(depth, Depth::Byte | Depth::Short) {
                                [1.0, 0.0, 0.125]
                            } else {
                                [1.5, -0.25, 0.125]
                            };
                            for (c, w) in want.iter().enumerate() {
                                assert!(
                                    (ch(c) - w).abs() <= tolerance(depth).max(1e-3),
                                    "{depth:?} {comps:?} ({x},{y},{c})"
                                );
                            }
                            if comps == Components::Rgba {
                                let a = ch(3);
                                let src_a =
                                    decode(depth, &sbuf[sl.offset(x, y).unwrap() + 3 * cb..]);
                                let want = if src_a.is_finite() { src_a } else { 0.0 };
                                assert!(
                                    a.is_finite() && (a - want).abs() <= tolerance(depth),
                                    "{depth:?} alpha ({x},{y}) {a} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rgb_sources_give_opaque_alpha_and_missing_pixels_transparent() {
        let (sbuf, sl) = image(
            Rect::new(0, 0, 2, 2),
            Depth::Float,
            Components::Rgb,
            1,
            |_, _, _| 0.5,
        );
        let src = PixelsRef::new(&sbuf, sl).unwrap();
        assert_eq!(source_alpha(Some(&src), 1, 1), 1.0);
        assert_eq!(source_alpha(Some(&src), 2, 1), 0.0);
        assert_eq!(source_alpha(None, 1, 1), 0.0);
    }

    #[test]
    fn non_finite_values_never_reach_the_output() {
        for depth in Depth::ALL {
            for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut b = [0u8; 4];
                encode(depth, v, &mut b);
                assert!(decode(depth, &b).is_finite(), "{depth:?} {v}");
            }
        }
    }
}

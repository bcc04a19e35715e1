//! Coordinates and times between the host and the engine: canonical <-> pixel rectangles at a
//! render scale and pixel aspect ratio, frame numbers, and the shot a render belongs to.
use crate::engine::{Rect, Shot};

/// A rectangle in canonical coordinates (x1, y1, x2, y2), as OFX passes them.
pub type RectD = [f64; 4];

/// Pixel coordinates never leave this range (hosts use ±INT_MAX-ish values for "infinite").
const LIMIT: f64 = i32::MAX as f64;
/// Canonical values a hair beyond a pixel edge (float error) do not add a pixel.
const EPS: f64 = 1e-6;

fn sane_scale(s: f64) -> f64 {
    if s.is_finite() && s > 0.0 {
        s
    } else {
        1.0
    }
}

/// Canonical -> pixels at `scale` (x, y) and pixel aspect `par`, rounded outward.
pub fn to_pixels(r: RectD, scale: (f64, f64), par: f64) -> Rect {
    let (sx, sy) = (sane_scale(scale.0) / sane_scale(par), sane_scale(scale.1));
    let lo = |v: f64| {
        if v.is_nan() {
            0
        } else {
            (v + EPS).floor().clamp(-LIMIT, LIMIT) as i64
        }
    };
    let hi = |v: f64| {
        if v.is_nan() {
            0
        } else {
            (v - EPS).ceil().clamp(-LIMIT, LIMIT) as i64
        }
    };
    let out = Rect::new(lo(r[0] * sx), lo(r[1] * sy), hi(r[2] * sx), hi(r[3] * sy));
    if out.x1 < out.x0 || out.y1 < out.y0 {
        Rect::default()
    } else {
        out
    }
}

/// Pixels -> canonical at `scale` and `par` (exact inverse of `to_pixels` on pixel edges).
pub fn to_canonical(r: Rect, scale: (f64, f64), par: f64) -> RectD {
    let (sx, sy) = (sane_scale(scale.0) / sane_scale(par), sane_scale(scale.1));
    [
        r.x0 as f64 / sx,
        r.y0 as f64 / sy,
        r.x1 as f64 / sx,
        r.y1 as f64 / sy,
    ]
}

/// The integer frame of a host time (fields and sub-frame times round to the nearest frame).
pub fn frame_of(t: f64) -> i64 {
    if t.is_finite() {
        t.round().clamp(-LIMIT, LIMIT) as i64
    } else {
        0
    }
}

/// The shot of a render: the source clip's frame range, else the effect's, else everything
/// (a host that says nothing still gets a fixed, render-order independent chunk grid).
pub fn shot(clip_range: Option<(f64, f64)>, effect_range: Option<(f64, f64)>) -> Shot {
    match clip_range.or(effect_range) {
        Some((a, b)) if frame_of(a) <= frame_of(b) => Shot {
            first: frame_of(a),
            last: frame_of(b),
        },
        _ => Shot {
            first: i32::MIN as i64,
            last: i32::MAX as i64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_and_canonical_rects_round_trip() {
        let px = Rect::new(-3, 5, 17, 40);
        for (scale, par) in [
            ((1.0, 1.0), 1.0),
            ((0.5, 0.5), 1.0),
            ((0.25, 0.5), 2.0),
            ((1.0, 1.0), 0.9),
        ] {
            assert_eq!(
                to_pixels(to_canonical(px, scale, par), scale, par),
                px,
                "{scale:?} {par}"
            );
        }
    }

    #[test]
    fn rounding_goes_outward_and_odd_values_are_tamed() {
        assert_eq!(
            to_pixels([0.2, 0.2, 9.5, 9.5], (1.0, 1.0), 1.0),
            Rect::new(0, 0, 10, 10)
        );
        assert_eq!(
            to_pixels([0.0, 0.0, 1920.0, 1080.0], (0.5, 0.5), 1.0),
            Rect::new(0, 0, 960, 540)
        );
        assert_eq!(
            to_pixels([0.0, 0.0, 1920.0, 1080.0], (0.5, 0.5), 2.0),
            Rect::new(0, 0, 480, 540)
        );
        assert_eq!(
            to_pixels([0.0, 0.0, 1.0000000001, 2.0], (1.0, 1.0), 1.0),
            Rect::new(0, 0, 1, 2)
        );
        let inf = to_pixels(
            [f64::NEG_INFINITY, -1e300, f64::INFINITY, 1e300],
            (1.0, 1.0),
            1.0,
        );
        assert_eq!(
            inf,
            Rect::new(
                -(i32::MAX as i64),
                -(i32::MAX as i64),
                i32::MAX as i64,
                i32::MAX as i64
            )
        );
        assert_eq!(
            to_pixels([5.0, 5.0, 1.0, 1.0], (1.0, 1.0), 1.0),
            Rect::default()
        );
        assert_eq!(
            to_pixels([0.0, 0.0, 4.0, 4.0], (0.0, f64::NAN), -1.0),
            Rect::new(0, 0, 4, 4)
        );
    }

    #[test]
    fn frames_and_shots() {
        assert_eq!(frame_of(3.4), 3);
        assert_eq!(frame_of(-2.5), -3);
        assert_eq!(frame_of(f64::NAN), 0);
        assert_eq!(
            shot(Some((1.0, 24.0)), Some((0.0, 99.0))),
            Shot { first: 1, last: 24 }
        );
        assert_eq!(shot(None, Some((0.0, 99.0))), Shot { first: 0, last: 99 });
        assert_eq!(shot(None, None).first, i32::MIN as i64);
    }
}

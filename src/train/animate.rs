//! Turns a still photo into a short clip with a smooth synthetic camera move (sub-pixel pan,
//! zoom and a slight roll, eased in and out, bicubic resampling), so that photos become training
//! sequences with real temporal coherence. Used by `vdiff prepare`; not on the render path.
use super::rng::Rng;

/// A camera move: the source point under the output centre, the zoom (source pixels per output
/// pixel) and the roll (radians) at the first and the last frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Motion {
    pub frames: usize,
    pub out_w: usize,
    pub out_h: usize,
    pub centre: [(f64, f64); 2],
    pub zoom: [f64; 2],
    pub angle: [f64; 2],
}

/// Pixels kept clear of the source border, so the bicubic footprint never leaves the photo.
const MARGIN: f64 = 2.5;

impl Motion {
    /// A random smooth move inside a `src_w` x `src_h` photo, or `None` when the photo is too
    /// small for an output of at least `min_out` pixels per side.
    pub fn plan(
        src_w: usize,
        src_h: usize,
        frames: usize,
        max_out: usize,
        min_out: usize,
        rng: &mut Rng,
    ) -> Option<Motion> {
        // Output a bit smaller than the photo so there is room to move; even sizes for codecs.
        let out_w = ((src_w as f64 * 0.7) as usize).min(max_out) & !1;
        let out_h = ((src_h as f64 * 0.7) as usize).min(max_out) & !1;
        if out_w < min_out || out_h < min_out || frames == 0 {
            return None;
        }
        let zoom = [0.9 + 0.25 * rng.uniform(), 0.9 + 0.25 * rng.uniform()];
        // Roll within +-2 degrees.
        let angle = [(rng.uniform() - 0.5) * 0.07, (rng.uniform() - 0.5) * 0.07];
        // Half extent of the source window at the largest zoom and roll of the move (the extent
        // is monotonic in both over these small ranges), so any centre in the box below is valid.
        let z = zoom[0].max(zoom[1]);
        let a = angle[0].abs().max(angle[1].abs());
        let (c, s) = (a.cos(), a.sin());
        let hx = z * (c * out_w as f64 + s * out_h as f64) / 2.0 + MARGIN;
        let hy = z * (s * out_w as f64 + c * out_h as f64) / 2.0 + MARGIN;
        let (lo_x, hi_x) = (hx, src_w as f64 - hx);
        let (lo_y, hi_y) = (hy, src_h as f64 - hy);
        if lo_x > hi_x || lo_y > hi_y {
            return None;
        }
        let start = (
            lo_x + (hi_x - lo_x) * rng.uniform(),
            lo_y + (hi_y - lo_y) * rng.uniform(),
        );
        // Pan 0.2..2.5 output pixels per frame on average, in a random direction, clamped in.
        let dir = std::f64::consts::TAU * rng.uniform();
        let len = (0.2 + 2.3 * rng.uniform()) * frames as f64;
        let end = (
            (start.0 + len * dir.cos()).clamp(lo_x, hi_x),
            (start.1 + len * dir.sin()).clamp(lo_y, hi_y),
        );
        Some(Motion {
            frames,
            out_w,
            out_h,
            centre: [start, end],
            zoom,
            angle,
        })
    }

    /// Camera state (centre, zoom, angle) at frame t: smoothstep easing between the two ends.
    pub fn at(&self, t: usize) -> ((f64, f64), f64, f64) {
        let u = if self.frames > 1 {
            t as f64 / (self.frames - 1) as f64
        } else {
            0.0
        };
        let e = u * u * (3.0 - 2.0 * u);
        let lerp = |a: f64, b: f64| a + (b - a) * e;
        (
            (
                lerp(self.centre[0].0, self.centre[1].0),
                lerp(self.centre[0].1, self.centre[1].1),
            ),
            lerp(self.zoom[0], self.zoom[1]),
            lerp(self.angle[0], self.angle[1]),
        )
    }

    /// Renders frame t from an interleaved RGB source (values kept as they are, not clamped).
    pub fn render(&self, src: &[f32], src_w: usize, src_h: usize, t: usize) -> Vec<f32> {
        let ((cx, cy), z, a) = self.at(t);
        let (c, s) = (a.cos() * z, a.sin() * z);
        let mut out = vec![0.0f32; self.out_w * self.out_h * 3];
        for j in 0..self.out_h {
            let dy = j as f64 + 0.5 - self.out_h as f64 / 2.0;
            for i in 0..self.out_w {
                let dx = i as f64 + 0.5 - self.out_w as f64 / 2.0;
                // Pixel centres sit at k + 0.5: shift to index space for the sampler.
                let sx = cx + c * dx - s * dy - 0.5;
                let sy = cy + s * dx + c * dy - 0.5;
                let px = bicubic(src, src_w, src_h, sx, sy);
                out[(j * self.out_w + i) * 3..][..3].copy_from_slice(&px);
            }
        }
        out
    }
}

/// Catmull-Rom (Keys, a = -0.5) weights for the 4 taps around fractional offset f in [0, 1).
fn cubic_weights(f: f64) -> [f64; 4] {
    let f2 = f * f;
    let f3 = f2 * f;
    [
        -0.5 * f3 + f2 - 0.5 * f,
        1.5 * f3 - 2.5 * f2 + 1.0,
        -1.5 * f3 + 2.0 * f2 + 0.5 * f,
        0.5 * f3 - 0.5 * f2,
    ]
}

/// Bicubic sample of an interleaved RGB image at index-space (x, y), edges clamped.
pub fn bicubic(src: &[f32], w: usize, h: usize, x: f64, y: f64) -> [f32; 3] {
    let (x0, y0) = (x.floor(), y.floor());
    let (wx, wy) = (cubic_weights(x - x0), cubic_weights(y - y0));
    let (x0, y0) = (x0 as i64, y0 as i64);
    let mut acc = [0.0f64; 3];
    for (n, wyn) in wy.iter().enumerate() {
        let yy = (y0 - 1 + n as i64).clamp(0, h as i64 - 1) as usize;
        for (m, wxm) in wx.iter().enumerate() {
            let xx = (x0 - 1 + m as i64).clamp(0, w as i64 - 1) as usize;
            let p = &src[(yy * w + xx) * 3..][..3];
            let wgt = wyn * wxm;
            for ch in 0..3 {
                acc[ch] += wgt * f64::from(p[ch]);
            }
        }
    }
    [acc[0] as f32, acc[1] as f32, acc[2] as f32]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_interpolates_exactly_at_pixels_and_reproduces_ramps() {
        let (w, h) = (8usize, 6usize);
        // A linear ramp in x and y: Catmull-Rom reproduces linear functions exactly inside.
        let src: Vec<f32> = (0..w * h * 3)
            .map(|k| {
                let (p, c) = (k / 3, k % 3);
                ((p % w) as f32) * 0.1 + ((p / w) as f32) * 0.05 + c as f32
            })
            .collect();
        let at = |x: f64, y: f64, c: usize| x as f32 * 0.1 + y as f32 * 0.05 + c as f32;
        let p = bicubic(&src, w, h, 3.0, 2.0);
        assert!((p[1] - at(3.0, 2.0, 1)).abs() < 1e-6);
        let p = bicubic(&src, w, h, 3.37, 2.81);
        for c in 0..3 {
            assert!((p[c] - at(3.37, 2.81, c)).abs() < 1e-5, "{p:?}");
        }
    }

    #[test]
    fn motion_stays_inside_the_photo_and_is_smooth() {
        for k in 0..200 {
            let mut rng = Rng::new(9, k, 0);
            let (sw, sh) = (200 + (k as usize * 37) % 500, 160 + (k as usize * 53) % 400);
            let m = Motion::plan(sw, sh, 24, 480, 96, &mut rng).expect("large enough");
            let mut prev: Option<(f64, f64)> = None;
            for t in 0..24 {
                let ((cx, cy), z, a) = m.at(t);
                // Every output corner maps inside the photo with the bicubic margin.
                for (dx, dy) in [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)] {
                    let (dx, dy) = (dx * m.out_w as f64 / 2.0, dy * m.out_h as f64 / 2.0);
                    let sx = cx + z * (a.cos() * dx - a.sin() * dy);
                    let sy = cy + z * (a.sin() * dx + a.cos() * dy);
                    assert!(
                        sx >= 2.0 && sx <= sw as f64 - 2.0,
                        "k {k} t {t} x {sx} of {sw}"
                    );
                    assert!(
                        sy >= 2.0 && sy <= sh as f64 - 2.0,
                        "k {k} t {t} y {sy} of {sh}"
                    );
                }
                if let Some((px, py)) = prev {
                    // Smooth: at most ~4 px of pan per frame (2.5 px mean, eased).
                    assert!(((cx - px).powi(2) + (cy - py).powi(2)).sqrt() < 4.0);
                }
                prev = Some((cx, cy));
            }
        }
        assert!(Motion::plan(100, 100, 24, 480, 96, &mut Rng::new(0, 0, 0)).is_none());
    }

    #[test]
    fn render_of_a_static_unit_zoom_move_is_a_crop() {
        let (w, h) = (40usize, 30usize);
        let src: Vec<f32> = (0..w * h * 3)
            .map(|k| ((k * 7919) % 101) as f32 / 101.0)
            .collect();
        let m = Motion {
            frames: 2,
            out_w: 10,
            out_h: 8,
            centre: [(20.0, 15.0); 2],
            zoom: [1.0; 2],
            angle: [0.0; 2],
        };
        let f = m.render(&src, w, h, 1);
        // Output pixel (i, j) is source pixel (15 + i, 11 + j) exactly.
        for j in 0..8 {
            for i in 0..10 {
                for c in 0..3 {
                    let e = src[((11 + j) * w + 15 + i) * 3 + c];
                    assert!((f[(j * 10 + i) * 3 + c] - e).abs() < 1e-6);
                }
            }
        }
    }
}

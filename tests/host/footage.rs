//! Synthetic source footage the host serves on the Source clip: smooth moving structure plus
//! deterministic per-pixel noise (a pure function of frame and pixel), optionally with NaN pixels.

use super::config::Rect;

#[derive(Clone, Debug)]
pub struct Footage {
    pub width: i32,
    pub height: i32,
    /// Inclusive frame range.
    pub first: i64,
    pub last: i64,
    pub seed: u64,
    /// Standard deviation of the added noise, in [0,1] units.
    pub noise: f32,
    /// (frame, x, y) whose RGB are NaN.
    pub nan_pixels: Vec<(i64, i32, i32)>,
    /// Largest code of an integer file the footage stands for (255, 65535): values are
    /// rounded to codes / max, as a real host reading that file would give them. None: exact.
    pub quantize: Option<f32>,
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Footage {
    pub fn new(width: i32, height: i32, first: i64, last: i64) -> Footage {
        Footage {
            width,
            height,
            first,
            last,
            seed: 7,
            noise: 0.04,
            nan_pixels: vec![],
            quantize: None,
        }
    }

    pub fn rect(&self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }

    pub fn has_frame(&self, t: i64) -> bool {
        t >= self.first && t <= self.last
    }

    /// Approximately normal noise from a counter hash (sum of uniforms).
    fn noise_at(&self, t: i64, x: i32, y: i32, c: u32) -> f32 {
        let mut h = mix64(self.seed ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        h = mix64(h ^ ((x as u32 as u64) << 32 | y as u32 as u64));
        h = mix64(h ^ c as u64);
        let s: f32 = (0..4)
            .map(|k| ((h >> (16 * k)) & 0xffff) as f32 / 65535.0)
            .sum();
        (s - 2.0) * (12.0f32 / 4.0).sqrt()
    }

    /// RGBA of pixel (x, y) of frame t (alpha 1).
    pub fn pixel(&self, t: i64, x: i32, y: i32) -> [f32; 4] {
        if self.nan_pixels.contains(&(t, x, y)) {
            return [f32::NAN, f32::NAN, f32::NAN, 1.0];
        }
        let (fx, fy, ft) = (x as f32, y as f32, t as f32);
        let cx = self.width as f32 * (0.3 + 0.05 * ft);
        let cy = self.height as f32 * 0.5;
        let disc = if (fx - cx).powi(2) + (fy - cy).powi(2) < (self.height as f32 * 0.25).powi(2) {
            0.35
        } else {
            0.0
        };
        let base = [
            0.45 + 0.3 * (0.11 * fx + 0.07 * fy + 0.3 * ft).sin(),
            0.15 + 0.6 * (((x as i64 + 2 * t).rem_euclid(32)) as f32 / 32.0),
            0.2 + disc + 0.2 * (0.05 * fy - 0.2 * ft).cos(),
        ];
        let mut out = [0.0f32, 0.0, 0.0, 1.0];
        for c in 0..3 {
            out[c] = (base[c] + self.noise * self.noise_at(t, x, y, c as u32)).clamp(0.0, 1.0);
            if let Some(max) = self.quantize {
                out[c] = (out[c] * max).round() / max;
            }
        }
        out
    }

    /// Pixel of frame t at render scale `s` (nearest full-resolution sample).
    pub fn pixel_scaled(&self, t: i64, x: i32, y: i32, s: f64) -> [f32; 4] {
        if s == 1.0 {
            return self.pixel(t, x, y);
        }
        let fx = ((x as f64 + 0.5) / s).floor() as i32;
        let fy = ((y as f64 + 0.5) / s).floor() as i32;
        self.pixel(t, fx.clamp(0, self.width - 1), fy.clamp(0, self.height - 1))
    }

    /// Frame size at render scale `s`.
    pub fn rect_at(&self, s: f64) -> Rect {
        Rect::new(
            0,
            0,
            (self.width as f64 * s).ceil() as i32,
            (self.height as f64 * s).ceil() as i32,
        )
    }
}

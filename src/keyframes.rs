//! Parameter curves for the command line: `FRAME:VALUE,...` keyframes, linear between keys and
//! held outside them, for real and integer parameters (the plugin's own keyframes come from the
//! host).
use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A value that keyframes can carry: parsed from text and interpolated between keys.
pub trait KeyValue: Copy + PartialEq + fmt::Debug {
    fn parse_value(s: &str) -> Option<Self>;
    /// `a + (b - a) * num / den` with `0 <= num <= den`, `den > 0`.
    fn lerp(a: Self, b: Self, num: i64, den: i64) -> Self;
}

impl KeyValue for f64 {
    fn parse_value(s: &str) -> Option<f64> {
        s.parse::<f64>().ok().filter(|v| v.is_finite())
    }
    fn lerp(a: f64, b: f64, num: i64, den: i64) -> f64 {
        a + (b - a) * (num as f64 / den as f64)
    }
}

impl KeyValue for i64 {
    fn parse_value(s: &str) -> Option<i64> {
        s.parse().ok()
    }
    /// The interpolated value rounded half away from zero, computed exactly in i128.
    fn lerp(a: i64, b: i64, num: i64, den: i64) -> i64 {
        let d = den as i128;
        let n = a as i128 * d + (b as i128 - a as i128) * num as i128;
        let q = if n >= 0 {
            (n + d / 2) / d
        } else {
            -((-n + d / 2) / d)
        };
        q as i64
    }
}

/// A parameter over time: one constant, or keys `FRAME:VALUE,...` interpolated linearly between
/// keys and held before the first and after the last.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyframes<V> {
    /// Sorted by frame, frames unique, at least one key.
    keys: Vec<(i64, V)>,
}

/// A real-valued parameter curve.
pub type Curve = Keyframes<f64>;
/// An integer parameter curve (steps, seed, radius, tile size): interpolated then rounded.
pub type IntCurve = Keyframes<i64>;

impl<V: KeyValue> Keyframes<V> {
    pub fn constant(v: V) -> Self {
        Keyframes { keys: vec![(0, v)] }
    }

    /// The value at frame `t`.
    pub fn at(&self, t: i64) -> V {
        let i = self.keys.partition_point(|&(f, _)| f <= t);
        if i == 0 {
            return self.keys[0].1;
        }
        if i == self.keys.len() {
            return self.keys[i - 1].1;
        }
        let (t0, v0) = self.keys[i - 1];
        let (t1, v1) = self.keys[i];
        V::lerp(v0, v1, t - t0, t1 - t0)
    }

    /// Every key's value (for range checks).
    pub fn values(&self) -> impl Iterator<Item = V> + '_ {
        self.keys.iter().map(|&(_, v)| v)
    }

    pub fn keys(&self) -> &[(i64, V)] {
        &self.keys
    }
}

impl<V: KeyValue> FromStr for Keyframes<V> {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let err = |msg: String| Error::param("keyframes", msg);
        let s = s.trim();
        if s.is_empty() {
            return Err(err("empty value".into()));
        }
        if !s.contains(':') {
            return V::parse_value(s)
                .map(Keyframes::constant)
                .ok_or_else(|| err(format!("`{s}` is not a valid number")));
        }
        let mut keys: Vec<(i64, V)> = Vec::new();
        for item in s.split(',') {
            let item = item.trim();
            let Some((f, v)) = item.split_once(':') else {
                return Err(err(format!(
                    "`{item}` has no frame: write FRAME:VALUE,... e.g. 0:0.1,48:0.6"
                )));
            };
            let f: i64 = f
                .trim()
                .parse()
                .map_err(|_| err(format!("`{}` in `{item}` is not a frame number", f.trim())))?;
            let v = V::parse_value(v.trim())
                .ok_or_else(|| err(format!("`{}` in `{item}` is not a valid number", v.trim())))?;
            if keys.iter().any(|&(g, _)| g == f) {
                return Err(err(format!("frame {f} is keyed twice")));
            }
            keys.push((f, v));
        }
        keys.sort_by_key(|&(f, _)| f);
        Ok(Keyframes { keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_interpolate_linearly_and_hold() {
        let c: Curve = "48:0.6, 0:0.1".parse().unwrap();
        assert_eq!(c.keys(), &[(0, 0.1), (48, 0.6)]);
        assert_eq!(c.at(-5), 0.1);
        assert_eq!(c.at(0), 0.1);
        assert!((c.at(24) - 0.35).abs() < 1e-12);
        assert!((c.at(12) - 0.225).abs() < 1e-12);
        assert_eq!(c.at(48), 0.6);
        assert_eq!(c.at(1000), 0.6);

        let three: Curve = "0:0,10:1,20:0".parse().unwrap();
        assert!((three.at(5) - 0.5).abs() < 1e-12);
        assert!((three.at(15) - 0.5).abs() < 1e-12);
        assert_eq!(three.at(10), 1.0);

        let k: Curve = "0.25".parse().unwrap();
        assert_eq!(k.at(-100), 0.25);
        assert_eq!(k.at(100), 0.25);
    }

    #[test]
    fn integer_curves_round_half_away_from_zero() {
        let s: IntCurve = "0:2,4:8".parse().unwrap();
        assert_eq!(
            (0..=4).map(|t| s.at(t)).collect::<Vec<_>>(),
            vec![2, 4, 5, 7, 8]
        );
        let d: IntCurve = "0:8,4:2".parse().unwrap();
        assert_eq!(
            (0..=4).map(|t| d.at(t)).collect::<Vec<_>>(),
            vec![8, 7, 5, 4, 2]
        );
        let neg: IntCurve = "0:-3,2:0".parse().unwrap();
        assert_eq!(neg.at(1), -2);
        let big: IntCurve = "9223372036854775807".parse().unwrap();
        assert_eq!(big.at(3), i64::MAX);
        assert!("2.5".parse::<IntCurve>().is_err());
    }

    #[test]
    fn keyframe_parse_errors_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("abc", "`abc` is not a valid number"),
            ("0:0.1,x:0.2", "`x` in `x:0.2` is not a frame number"),
            ("0:0.1,4:y", "`y` in `4:y` is not a valid number"),
            ("0:0.1,0.3", "`0.3` has no frame"),
            ("0:0.1,0:0.2", "frame 0 is keyed twice"),
            ("nan", "not a valid number"),
            ("0:inf", "not a valid number"),
        ];
        for (text, want) in cases {
            let e = text.parse::<Curve>().unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}

//! The plain-value snapshot of the effect's parameters that a render reads at a time, from the
//! table in `crate::params` (which describe walks, and the command line builds its flags from).
use std::ffi::CStr;

use crate::engine::{FrameParams, NoiseClipping};
use crate::model::device::DeviceChoice;
use crate::model::registry::ModelSource;
use crate::sampling::SamplerKind;
use crate::Result;

pub use crate::params::*;

/// Where parameter values come from: the host's parameter set, or a table in tests.
pub trait ParamValues {
    fn double(&self, id: &'static CStr, t: f64) -> Result<f64>;
    /// Integers and choice indices.
    fn int(&self, id: &'static CStr, t: f64) -> Result<i32>;
    fn string(&self, id: &'static CStr) -> Result<String>;
}

/// A double at t, inside its declared range; a non-finite value (hosts pass what users type)
/// falls back to the default.
fn double_at(p: &dyn ParamValues, id: &'static CStr, t: f64) -> Result<f64> {
    let v = p.double(id, t)?;
    Ok(match def(id).map(|d| d.kind) {
        Some(Kind::Double {
            default, min, max, ..
        }) => {
            if v.is_finite() {
                v.clamp(min, max)
            } else {
                default
            }
        }
        _ => v,
    })
}

/// An integer at t, inside its declared range.
pub fn int_at(p: &dyn ParamValues, id: &'static CStr, t: f64) -> Result<i32> {
    let v = p.int(id, t)?;
    Ok(match def(id).map(|d| d.kind) {
        Some(Kind::Int { min, max, .. }) => v.clamp(min, max),
        _ => v,
    })
}

/// A choice's option index; out-of-range indices fall back to the default.
fn choice_at(p: &dyn ParamValues, id: &'static CStr, t: f64) -> Result<usize> {
    let v = p.int(id, t)?;
    Ok(match def(id).map(|d| d.kind) {
        Some(Kind::Choice { options, default }) => usize::try_from(v)
            .ok()
            .filter(|&i| i < options.len())
            .unwrap_or(default),
        _ => 0,
    })
}

/// Per-frame parameters at time t (read at every frame of a temporal window).
pub fn frame_params(p: &dyn ParamValues, t: f64) -> Result<FrameParams> {
    Ok(FrameParams {
        noise_level: double_at(p, ids::NOISE_LEVEL, t)? as f32,
        strength: double_at(p, ids::STRENGTH, t)? as f32,
        detail: double_at(p, ids::DETAIL, t)? as f32,
        smoothing: double_at(p, ids::TEMPORAL_SMOOTHING, t)? as f32,
        mix: double_at(p, ids::MIX, t)? as f32,
    })
}

/// Everything a render reads at the frame it renders, as plain values.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderParams {
    pub frame: FrameParams,
    pub steps: u32,
    pub sampler: SamplerKind,
    pub seed: u64,
    pub radius: u32,
    pub tile_size: u32,
    pub clipping: NoiseClipping,
    pub model: ModelSource,
    pub device: DeviceChoice,
}

pub fn render_params(p: &dyn ParamValues, t: f64) -> Result<RenderParams> {
    let sampler_label = SAMPLER_OPTIONS[choice_at(p, ids::SAMPLER, t)?];
    Ok(RenderParams {
        frame: frame_params(p, t)?,
        steps: int_at(p, ids::STEPS, t)? as u32,
        sampler: sampler_label.parse()?,
        // Seeds are >= 0 (declared range), so the value is the command line's --seed as is.
        seed: int_at(p, ids::SEED, t)?.max(0) as u64,
        radius: int_at(p, ids::TEMPORAL_RADIUS, t)? as u32,
        tile_size: int_at(p, ids::TILE_SIZE, t)? as u32,
        clipping: NoiseClipping::ALL[choice_at(p, ids::NOISE_CLIPPING, t)?],
        model: model_source(p)?,
        device: device_choice(p, t)?,
    })
}

/// The model the user chose: empty path = the built-in model.
pub fn model_source(p: &dyn ParamValues) -> Result<ModelSource> {
    Ok(ModelSource::from_param(&p.string(ids::MODEL_FILE)?))
}

/// The device choice; options are listed in `DeviceChoice::ALL` order.
pub fn device_choice(p: &dyn ParamValues, t: f64) -> Result<DeviceChoice> {
    Ok(DeviceChoice::ALL
        .get(choice_at(p, ids::DEVICE, t)?)
        .copied()
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::path::PathBuf;

    /// Parameter values from a map (missing ids: the table default), keyed by id; doubles may
    /// vary with time through a closure.
    struct Fake {
        doubles: HashMap<&'static CStr, Box<dyn Fn(f64) -> f64>>,
        ints: HashMap<&'static CStr, i32>,
        strings: HashMap<&'static CStr, String>,
    }

    impl Fake {
        fn new() -> Self {
            Fake {
                doubles: HashMap::new(),
                ints: HashMap::new(),
                strings: HashMap::new(),
            }
        }
    }

    impl ParamValues for Fake {
        fn double(&self, id: &'static CStr, t: f64) -> Result<f64> {
            if let Some(f) = self.doubles.get(id) {
                return Ok(f(t));
            }
            match def(id).map(|d| d.kind) {
                Some(Kind::Double { default, .. }) => Ok(default),
                _ => Err(crate::Error::param(id.to_string_lossy(), "not a double")),
            }
        }
        fn int(&self, id: &'static CStr, _t: f64) -> Result<i32> {
            if let Some(v) = self.ints.get(id) {
                return Ok(*v);
            }
            match def(id).map(|d| d.kind) {
                Some(Kind::Int { default, .. }) => Ok(default),
                Some(Kind::Choice { default, .. }) => Ok(default as i32),
                _ => Err(crate::Error::param(id.to_string_lossy(), "not an int")),
            }
        }
        fn string(&self, id: &'static CStr) -> Result<String> {
            Ok(self.strings.get(id).cloned().unwrap_or_default())
        }
    }

    #[test]
    fn ids_are_unique_and_defaults_lie_in_range() {
        let mut seen = HashSet::new();
        for p in PARAMS {
            assert!(seen.insert(p.id), "duplicate id {:?}", p.id);
            assert!(
                !p.label.is_empty() && p.hint.len() > 20,
                "{:?} needs a label and a readable hint",
                p.id
            );
            match p.kind {
                Kind::Double {
                    default,
                    min,
                    max,
                    display_min,
                    display_max,
                    increment,
                    ..
                } => {
                    assert!(min <= default && default <= max, "{:?}", p.id);
                    assert!(
                        min <= display_min && display_min < display_max && display_max <= max,
                        "{:?}",
                        p.id
                    );
                    assert!(increment > 0.0);
                }
                Kind::Int {
                    default,
                    min,
                    max,
                    display_min,
                    display_max,
                } => {
                    assert!(min <= default && default <= max, "{:?}", p.id);
                    assert!(
                        min <= display_min && display_min < display_max && display_max <= max,
                        "{:?}",
                        p.id
                    );
                }
                Kind::Choice { options, default } => assert!(default < options.len()),
                Kind::FilePath | Kind::PushButton => {}
            }
        }
        let groups: HashSet<_> = Group::ALL.iter().map(|g| g.id()).collect();
        assert_eq!(groups.len(), Group::ALL.len());
        assert!(
            groups.iter().all(|g| !seen.contains(g)),
            "group ids must not clash with parameter ids"
        );
    }

    /// DESIGN.md's parameter table, copied: the declared table must not drift from it.
    #[test]
    fn table_matches_the_design() {
        fn double(id: &CStr) -> (f64, f64, f64) {
            match def(id).map(|d| d.kind) {
                Some(Kind::Double {
                    default, min, max, ..
                }) => (default, min, max),
                k => panic!("{id:?} is {k:?}"),
            }
        }
        fn int(id: &CStr) -> (i32, i32, i32) {
            match def(id).map(|d| d.kind) {
                Some(Kind::Int {
                    default, min, max, ..
                }) => (default, min, max),
                k => panic!("{id:?} is {k:?}"),
            }
        }
        assert_eq!(double(ids::NOISE_LEVEL), (0.04, 0.0, 0.5));
        assert_eq!(double(ids::STRENGTH), (0.0, 0.0, 1.0));
        assert_eq!(double(ids::DETAIL), (0.0, 0.0, 1.0));
        assert_eq!(double(ids::MIX), (1.0, 0.0, 1.0));
        assert_eq!(double(ids::TEMPORAL_SMOOTHING), (0.5, 0.0, 2.0));
        assert_eq!(int(ids::STEPS), (1, 1, 100));
        assert_eq!(int(ids::SEED).0, 0);
        assert_eq!(int(ids::TEMPORAL_RADIUS), (4, 0, 8));
        assert_eq!(int(ids::TILE_SIZE), (512, 64, 4096));
        assert!(matches!(
            def(ids::SAMPLER).map(|d| d.kind),
            Some(Kind::Choice {
                options: ["Euler", "Heun", "DPM++ 2M"],
                default: 2
            })
        ));
        assert!(matches!(
            def(ids::DEVICE).map(|d| d.kind),
            Some(Kind::Choice {
                options: ["Auto", "CPU", "GPU"],
                default: 0
            })
        ));
        assert!(matches!(
            def(ids::NOISE_CLIPPING).map(|d| d.kind),
            Some(Kind::Choice {
                options: ["Auto", "Clipped", "Not Clipped"],
                default: 0
            })
        ));
        assert!(matches!(
            def(ids::MODEL_FILE).map(|d| d.kind),
            Some(Kind::FilePath)
        ));
        for b in [ids::ANALYZE_NOISE, ids::CLEAR_CACHE] {
            assert!(matches!(def(b).map(|d| d.kind), Some(Kind::PushButton)));
        }
        assert_eq!(PARAMS.len(), 15);
        let labels: Vec<&str> = SamplerKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels, SAMPLER_OPTIONS);
        let labels: Vec<&str> = DeviceChoice::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels, DEVICE_OPTIONS);
        let labels: Vec<&str> = NoiseClipping::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels, CLIPPING_OPTIONS);
    }

    #[test]
    fn defaults_give_the_documented_render_params() {
        let r = render_params(&Fake::new(), 0.0).unwrap();
        assert_eq!(
            r.frame,
            FrameParams {
                noise_level: 0.04,
                strength: 0.0,
                detail: 0.0,
                smoothing: 0.5,
                mix: 1.0
            }
        );
        assert_eq!(
            (r.steps, r.sampler, r.seed, r.radius, r.tile_size),
            (1, SamplerKind::DpmPp2m, 0, 4, 512)
        );
        assert_eq!(r.model, ModelSource::BuiltIn);
        assert_eq!(r.device, DeviceChoice::Auto);
        assert_eq!(r.clipping, NoiseClipping::Auto);
    }

    #[test]
    fn values_are_read_at_their_time_and_kept_in_range() {
        let mut f = Fake::new();
        f.doubles.insert(ids::STRENGTH, Box::new(|t| t / 10.0));
        f.doubles.insert(ids::NOISE_LEVEL, Box::new(|_| f64::NAN));
        f.doubles.insert(ids::MIX, Box::new(|_| 7.0));
        f.ints.insert(ids::STEPS, 0);
        f.ints.insert(ids::TEMPORAL_RADIUS, 99);
        f.ints.insert(ids::SEED, -5);
        f.ints.insert(ids::SAMPLER, 0);
        f.ints.insert(ids::DEVICE, 9);
        f.ints.insert(ids::NOISE_CLIPPING, 2);
        f.doubles
            .insert(ids::TEMPORAL_SMOOTHING, Box::new(|_| -1.0));
        f.strings
            .insert(ids::MODEL_FILE, "  /models/m.safetensors ".into());
        let a = frame_params(&f, 3.0).unwrap();
        let b = frame_params(&f, 5.0).unwrap();
        assert!((a.strength - 0.3).abs() < 1e-6 && (b.strength - 0.5).abs() < 1e-6);
        assert_eq!((a.noise_level, a.mix, a.smoothing), (0.04, 1.0, 0.0));
        let r = render_params(&f, 3.0).unwrap();
        assert_eq!(
            (r.steps, r.radius, r.seed, r.sampler, r.device),
            (1, 8, 0, SamplerKind::Euler, DeviceChoice::Auto)
        );
        assert_eq!(r.clipping, NoiseClipping::Unclipped);
        assert_eq!(
            r.model,
            ModelSource::File(PathBuf::from("/models/m.safetensors"))
        );
    }
}

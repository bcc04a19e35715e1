//! The effect's parameters, declared once: id, label, hint, default, range and kind of every
//! control (describe walks this table), and the plain-value snapshot a render reads at a time.
use std::ffi::CStr;

use crate::engine::{FrameParams, NoiseClipping};
use crate::model::device::DeviceChoice;
use crate::model::registry::ModelSource;
use crate::sampling::SamplerKind;
use crate::Result;

/// Parameter ids: stable, hosts save projects by them (DESIGN.md "Parameters").
pub mod ids {
    use std::ffi::CStr;
    pub const NOISE_LEVEL: &CStr = c"noiseLevel";
    pub const ANALYZE_NOISE: &CStr = c"analyzeNoise";
    pub const STRENGTH: &CStr = c"strength";
    pub const STEPS: &CStr = c"steps";
    pub const SAMPLER: &CStr = c"sampler";
    pub const DETAIL: &CStr = c"detail";
    pub const SEED: &CStr = c"seed";
    pub const TEMPORAL_RADIUS: &CStr = c"temporalRadius";
    pub const TEMPORAL_SMOOTHING: &CStr = c"temporalSmoothing";
    pub const NOISE_CLIPPING: &CStr = c"noiseClipping";
    pub const MIX: &CStr = c"mix";
    pub const MODEL_FILE: &CStr = c"modelFile";
    pub const DEVICE: &CStr = c"device";
    pub const TILE_SIZE: &CStr = c"tileSize";
    pub const CLEAR_CACHE: &CStr = c"clearCache";
}

/// The page all controls sit on, and the groups on it.
pub const PAGE: &CStr = c"Controls";
pub const PAGE_LABEL: &str = "Controls";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Noise,
    Sampler,
    Temporal,
    ModelPerformance,
}

impl Group {
    pub const ALL: [Group; 4] = [
        Group::Noise,
        Group::Sampler,
        Group::Temporal,
        Group::ModelPerformance,
    ];

    pub fn id(self) -> &'static CStr {
        match self {
            Group::Noise => c"groupNoise",
            Group::Sampler => c"groupSampler",
            Group::Temporal => c"groupTemporal",
            Group::ModelPerformance => c"groupModel",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Group::Noise => "Noise",
            Group::Sampler => "Sampler",
            Group::Temporal => "Temporal",
            Group::ModelPerformance => "Model & Performance",
        }
    }
}

/// What kind of control a parameter is, with its default and ranges.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Double {
        default: f64,
        min: f64,
        max: f64,
        display_min: f64,
        display_max: f64,
        increment: f64,
        digits: i32,
    },
    Int {
        default: i32,
        min: i32,
        max: i32,
        display_min: i32,
        display_max: i32,
    },
    Choice {
        options: &'static [&'static str],
        default: usize,
    },
    /// A file path string (not animated).
    FilePath,
    PushButton,
}

impl Kind {
    /// Numbers animate (keyframes over a shot); choices, paths and buttons do not.
    pub fn animates(&self) -> bool {
        matches!(self, Kind::Double { .. } | Kind::Int { .. })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ParamDef {
    pub id: &'static CStr,
    pub label: &'static str,
    pub hint: &'static str,
    pub group: Option<Group>,
    pub kind: Kind,
}

/// Sampler and device labels, in `SamplerKind::ALL` / `DeviceChoice::ALL` order (a unit test
/// holds them together).
pub const SAMPLER_OPTIONS: &[&str] = &["Euler", "Heun", "DPM++ 2M"];
pub const DEVICE_OPTIONS: &[&str] = &["Auto", "CPU", "GPU"];
pub const CLIPPING_OPTIONS: &[&str] = &["Auto", "Clipped", "Not Clipped"];

/// Every parameter, in page order.
pub const PARAMS: &[ParamDef] = &[
    ParamDef {
        id: ids::NOISE_LEVEL,
        label: "Noise Level",
        hint: "How noisy the footage already is, as a standard deviation in 0-1 pixel units \
               (0.04 is about 10 on a 0-255 scale). Use Analyze Noise to measure it on a frame. \
               0 treats the footage as clean.",
        group: Some(Group::Noise),
        kind: Kind::Double {
            default: 0.04,
            min: 0.0,
            max: 0.5,
            display_min: 0.0,
            display_max: 0.2,
            increment: 0.005,
            digits: 3,
        },
    },
    ParamDef {
        id: ids::ANALYZE_NOISE,
        label: "Analyze Noise",
        hint: "Measures the noise of the source at the current frame and sets Noise Level \
               (as a key at this frame when Noise Level is animated).",
        group: Some(Group::Noise),
        kind: Kind::PushButton,
    },
    ParamDef {
        id: ids::NOISE_CLIPPING,
        label: "Noise Clipping",
        hint: "Whether the footage's noise was clipped at black and white, as in every 8- to \
               16-bit file. Clipping makes dark and bright areas noisier on one side only, and \
               a denoised result would come out lifted (greyish blacks) unless corrected. Auto \
               corrects at black where the source has (almost) no negative values and at white \
               where it has none above 1; choose Not Clipped for float footage whose noise was \
               kept.",
        group: Some(Group::Noise),
        kind: Kind::Choice {
            options: CLIPPING_OPTIONS,
            default: 0,
        },
    },
    ParamDef {
        id: ids::STRENGTH,
        label: "Strength",
        hint: "Extra noise added on top of the footage's own before diffusion: 0 only removes \
               the footage's noise, higher values let the model re-create more detail, 1 \
               re-generates the image.",
        group: Some(Group::Noise),
        kind: Kind::Double {
            default: 0.0,
            min: 0.0,
            max: 1.0,
            display_min: 0.0,
            display_max: 1.0,
            increment: 0.01,
            digits: 3,
        },
    },
    ParamDef {
        id: ids::STEPS,
        label: "Steps",
        hint: "Sampler steps. With Strength 0, one step gives the model's best estimate of the \
               clean frame (the steadiest and fastest); with Strength above 0, use 8 to 20 \
               steps so that the re-created detail is sampled rather than averaged.",
        group: Some(Group::Sampler),
        kind: Kind::Int {
            default: 1,
            min: 1,
            max: 100,
            display_min: 1,
            display_max: 50,
        },
    },
    ParamDef {
        id: ids::SAMPLER,
        label: "Sampler",
        hint: "Sampling method. DPM++ 2M gives the best quality per step; Heun costs two model \
               runs per step; Euler is the simplest.",
        group: Some(Group::Sampler),
        kind: Kind::Choice {
            options: SAMPLER_OPTIONS,
            default: 2,
        },
    },
    ParamDef {
        id: ids::DETAIL,
        label: "Detail",
        hint: "Fresh noise injected at every step (stochastic sampling): 0 is smooth and \
               deterministic in look, higher values keep more fine grain and texture.",
        group: Some(Group::Sampler),
        kind: Kind::Double {
            default: 0.0,
            min: 0.0,
            max: 1.0,
            display_min: 0.0,
            display_max: 1.0,
            increment: 0.01,
            digits: 3,
        },
    },
    ParamDef {
        id: ids::SEED,
        label: "Seed",
        hint: "Seed of the added noise. The same seed gives the same result on every render \
               and machine; change it for a different variation.",
        group: Some(Group::Sampler),
        kind: Kind::Int {
            default: 0,
            min: 0,
            max: i32::MAX,
            display_min: 0,
            display_max: 1000,
        },
    },
    ParamDef {
        id: ids::TEMPORAL_RADIUS,
        label: "Temporal Radius",
        hint: "The model denoises runs of 2r+1 frames together, and each frame is smoothed over \
               the r frames on each side. Larger values flicker less and cost memory (and host \
               frames) more than time; 0 processes frames one by one.",
        group: Some(Group::Temporal),
        kind: Kind::Int {
            default: 2,
            min: 0,
            max: 8,
            display_min: 0,
            display_max: 8,
        },
    },
    ParamDef {
        id: ids::TEMPORAL_SMOOTHING,
        label: "Temporal Smoothing",
        hint: "Averages each denoised frame with the denoised frames within Temporal Radius \
               wherever they agree, which removes the residual shimmer of static areas. 0 turns \
               it off; higher values also smooth across slow motion (and may soften it).",
        group: Some(Group::Temporal),
        kind: Kind::Double {
            default: 0.5,
            min: 0.0,
            max: 2.0,
            display_min: 0.0,
            display_max: 2.0,
            increment: 0.05,
            digits: 2,
        },
    },
    ParamDef {
        id: ids::MODEL_FILE,
        label: "Model File",
        hint: "A VDiff model (.safetensors) trained with `vdiff train`. Leave empty to use the \
               model built into the plugin.",
        group: Some(Group::ModelPerformance),
        kind: Kind::FilePath,
    },
    ParamDef {
        id: ids::DEVICE,
        label: "Device",
        hint: "Where the model runs. Auto uses a GPU when this build and machine have one, \
               else the CPU; GPU fails with a message where there is none.",
        group: Some(Group::ModelPerformance),
        kind: Kind::Choice {
            options: DEVICE_OPTIONS,
            default: 0,
        },
    },
    ParamDef {
        id: ids::TILE_SIZE,
        label: "Tile Size",
        hint: "Large frames are processed in overlapping tiles of this many pixels; lower it \
               if rendering runs out of memory. The result does not depend on it much.",
        group: Some(Group::ModelPerformance),
        kind: Kind::Int {
            default: 512,
            min: 64,
            max: 4096,
            display_min: 64,
            display_max: 2048,
        },
    },
    ParamDef {
        id: ids::CLEAR_CACHE,
        label: "Clear Cache",
        hint: "Empties the cache of computed frames shared by all instances (frees memory).",
        group: Some(Group::ModelPerformance),
        kind: Kind::PushButton,
    },
    ParamDef {
        id: ids::MIX,
        label: "Mix",
        hint: "Blend with the source: 1 shows the full effect, 0 the untouched source.",
        group: None,
        kind: Kind::Double {
            default: 1.0,
            min: 0.0,
            max: 1.0,
            display_min: 0.0,
            display_max: 1.0,
            increment: 0.01,
            digits: 3,
        },
    },
];

/// The table entry of a parameter id.
pub fn def(id: &CStr) -> Option<&'static ParamDef> {
    PARAMS.iter().find(|p| p.id == id)
}

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
        assert_eq!(int(ids::TEMPORAL_RADIUS), (2, 0, 8));
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
            (1, SamplerKind::DpmPp2m, 0, 2, 512)
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

//! The effect's parameters, declared once for the whole product: id, label, hint, default, range
//! and kind of every control. The plugin describes its controls from this table, the command
//! line builds its effect flags from it, the engine takes its limits from it and a test holds the
//! README's parameter table to it. Plain data: it imports nothing from the crate.
use std::ffi::CStr;

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

pub const NOISE_LEVEL: ParamDef = ParamDef {
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
};

pub const ANALYZE_NOISE: ParamDef = ParamDef {
    id: ids::ANALYZE_NOISE,
    label: "Analyze Noise",
    hint: "Measures the noise of the source at the current frame and sets Noise Level \
           (as a key at this frame when Noise Level is animated).",
    group: Some(Group::Noise),
    kind: Kind::PushButton,
};

pub const NOISE_CLIPPING: ParamDef = ParamDef {
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
};

pub const STRENGTH: ParamDef = ParamDef {
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
};

pub const STEPS: ParamDef = ParamDef {
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
};

pub const SAMPLER: ParamDef = ParamDef {
    id: ids::SAMPLER,
    label: "Sampler",
    hint: "Sampling method. DPM++ 2M gives the best quality per step; Heun costs two model \
           runs per step; Euler is the simplest.",
    group: Some(Group::Sampler),
    kind: Kind::Choice {
        options: SAMPLER_OPTIONS,
        default: 2,
    },
};

pub const DETAIL: ParamDef = ParamDef {
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
};

pub const SEED: ParamDef = ParamDef {
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
};

pub const TEMPORAL_RADIUS: ParamDef = ParamDef {
    id: ids::TEMPORAL_RADIUS,
    label: "Temporal Radius",
    hint: "The model denoises runs of 2r+1 frames together, and each frame is smoothed over \
           the r frames on each side (near the shot's first and last frames, over the 2r \
           nearest inside it). Larger values flicker less and cost memory (and host frames) \
           more than time; 0 processes frames one by one.",
    group: Some(Group::Temporal),
    kind: Kind::Int {
        default: 4,
        min: 0,
        max: 8,
        display_min: 0,
        display_max: 8,
    },
};

pub const TEMPORAL_SMOOTHING: ParamDef = ParamDef {
    id: ids::TEMPORAL_SMOOTHING,
    label: "Temporal Smoothing",
    hint: "Averages each denoised frame with the denoised frames within Temporal Radius, \
           each first moved onto it by a motion search, wherever they then agree: this removes \
           the residual shimmer of static and moving areas alike. At Strength 0 it also filters \
           the source frames, averaged the same way, against that result frequency by \
           frequency, which gives back fine detail the model took for noise. 0 turns it off; \
           higher values also average where the motion was not matched exactly (and may \
           soften it).",
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
};

pub const MODEL_FILE: ParamDef = ParamDef {
    id: ids::MODEL_FILE,
    label: "Model File",
    hint: "A VDiff model (.safetensors) trained with `vdiff train`. Leave empty to use the \
           model built into the plugin.",
    group: Some(Group::ModelPerformance),
    kind: Kind::FilePath,
};

pub const DEVICE: ParamDef = ParamDef {
    id: ids::DEVICE,
    label: "Device",
    hint: "Where the model runs. Auto uses a GPU when this build and machine have one, \
           else the CPU; GPU fails with a message where there is none.",
    group: Some(Group::ModelPerformance),
    kind: Kind::Choice {
        options: DEVICE_OPTIONS,
        default: 0,
    },
};

pub const TILE_SIZE: ParamDef = ParamDef {
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
};

pub const CLEAR_CACHE: ParamDef = ParamDef {
    id: ids::CLEAR_CACHE,
    label: "Clear Cache",
    hint: "Empties the cache of computed frames shared by all instances (frees memory).",
    group: Some(Group::ModelPerformance),
    kind: Kind::PushButton,
};

pub const MIX: ParamDef = ParamDef {
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
};

/// Every parameter, in page order.
pub const PARAMS: &[ParamDef] = &[
    NOISE_LEVEL,
    ANALYZE_NOISE,
    NOISE_CLIPPING,
    STRENGTH,
    STEPS,
    SAMPLER,
    DETAIL,
    SEED,
    TEMPORAL_RADIUS,
    TEMPORAL_SMOOTHING,
    MODEL_FILE,
    DEVICE,
    TILE_SIZE,
    CLEAR_CACHE,
    MIX,
];

/// The table entry of a parameter id.
pub fn def(id: &CStr) -> Option<&'static ParamDef> {
    PARAMS.iter().find(|p| p.id == id)
}

/// The range of a number parameter, as (min, max); `None` for other kinds. Usable in constants.
pub const fn double_range(def: &ParamDef) -> (f64, f64) {
    match def.kind {
        Kind::Double { min, max, .. } => (min, max),
        Kind::Int { min, max, .. } => (min as f64, max as f64),
        _ => panic!("not a number parameter"),
    }
}

/// The range of an integer parameter, as (min, max). Usable in constants.
pub const fn int_range(def: &ParamDef) -> (i32, i32) {
    match def.kind {
        Kind::Int { min, max, .. } => (min, max),
        _ => panic!("not an integer parameter"),
    }
}

/// The default of a real parameter. Usable in constants.
pub const fn double_default(def: &ParamDef) -> f64 {
    match def.kind {
        Kind::Double { default, .. } => default,
        _ => panic!("not a real parameter"),
    }
}

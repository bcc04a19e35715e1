//! Host configuration: what the emulated host advertises (the host property set) and how it
//! drives the plugin (row order, temporal access, instances per frame, threads). Presets mimic
//! Natron 2.5, MLT 7.x (src/modules/openfx) and DaVinci Resolve as described in DESIGN.md.

use std::ffi::CStr;
use std::hash::{Hash, Hasher};

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::image_effect::*;

/// Pixel depth of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Depth {
    Byte,
    Short,
    Half,
    Float,
}

impl Depth {
    pub const ALL: [Depth; 4] = [Depth::Byte, Depth::Short, Depth::Half, Depth::Float];

    pub fn ofx(self) -> &'static CStr {
        match self {
            Depth::Byte => kOfxBitDepthByte,
            Depth::Short => kOfxBitDepthShort,
            Depth::Half => kOfxBitDepthHalf,
            Depth::Float => kOfxBitDepthFloat,
        }
    }

    pub fn name(self) -> &'static str {
        self.ofx().to_str().unwrap_or("?")
    }

    pub fn bytes(self) -> usize {
        match self {
            Depth::Byte => 1,
            Depth::Short | Depth::Half => 2,
            Depth::Float => 4,
        }
    }

    pub fn from_ofx(s: &str) -> Option<Depth> {
        Depth::ALL.into_iter().find(|d| d.name() == s)
    }
}

/// Components of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Comps {
    Rgba,
    Rgb,
    Alpha,
}

impl Comps {
    pub const ALL: [Comps; 3] = [Comps::Rgba, Comps::Rgb, Comps::Alpha];

    pub fn ofx(self) -> &'static CStr {
        match self {
            Comps::Rgba => kOfxImageComponentRGBA,
            Comps::Rgb => kOfxImageComponentRGB,
            Comps::Alpha => kOfxImageComponentAlpha,
        }
    }

    pub fn name(self) -> &'static str {
        self.ofx().to_str().unwrap_or("?")
    }

    pub fn count(self) -> usize {
        match self {
            Comps::Rgba => 4,
            Comps::Rgb => 3,
            Comps::Alpha => 1,
        }
    }

    pub fn from_ofx(s: &str) -> Option<Comps> {
        Comps::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// Image effect contexts the host can instantiate in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    Filter,
    General,
}

impl Context {
    pub fn ofx(self) -> &'static CStr {
        match self {
            Context::Filter => kOfxImageEffectContextFilter,
            Context::General => kOfxImageEffectContextGeneral,
        }
    }

    pub fn name(self) -> &'static str {
        self.ofx().to_str().unwrap_or("?")
    }
}

/// Memory layout of the host's images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowOrder {
    /// Row 0 (lowest y) first in memory, positive row bytes.
    BottomUp,
    /// NOTE: MLT: top row first in memory, data pointer at the last (lowest-y) row and
    /// NEGATIVE row bytes (mltofx_set_source_clip_data).
    TopDownNegative,
}

/// Which region the host fetches for a source image when the plugin passes no region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceBounds {
    /// Always the whole frame (Resolve, MLT).
    FullFrame,
    /// The region of interest the plugin returned, clipped to the frame (Natron, Nuke).
    Roi,
}

/// A host's thread-safety handling of the plugin's render calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostFlavour {
    /// One long-lived instance; the plugin is driven action by action.
    LongLived,
    /// NOTE: MLT: every frame gets a fresh instance created by Load + Describe +
    /// DescribeInContext on the instance handle itself (Load repeated without Unload), image
    /// handles are the clip property sets, release is a no-op, only the current frame exists.
    Mlt,
}

#[derive(Clone, Debug)]
pub struct HostConfig {
    /// kOfxPropName of the host (plugins sometimes switch on it).
    pub name: String,
    pub label: String,
    pub version: [i32; 3],
    pub api_version: [i32; 2],
    pub flavour: HostFlavour,
    /// Contexts the host supports (host property) and the one it instantiates in.
    pub contexts: Vec<Context>,
    pub context: Context,
    /// Contexts DescribeInContext is sent for (if the plugin supports them).
    pub describe_contexts: Vec<Context>,
    pub depths: Vec<Depth>,
    pub comps: Vec<Comps>,
    /// Depth the host's footage has; used when the plugin supports it.
    pub native_depth: Depth,
    /// Components the host's footage has (kOfxImageClipPropUnmappedComponents).
    pub native_comps: Comps,
    /// A depth string the host hands out no matter what the plugin declared (bad-input tests).
    pub forced_depth: Option<String>,
    pub temporal_access: bool,
    pub tiles: bool,
    pub multi_resolution: bool,
    pub multiple_clip_depths: bool,
    pub row_order: RowOrder,
    /// Extra bytes at the end of each row (the spec allows padding).
    pub row_padding: usize,
    pub source_bounds: SourceBounds,
    /// NOTE: MLT: parameters only have a value at the frame being rendered;
    /// paramGetValueAtTime ignores its time argument.
    pub params_at_current_time_only: bool,
    pub calls_frames_needed: bool,
    pub calls_is_identity: bool,
    pub sends_instance_changed: bool,
    pub sends_purge_caches: bool,
    pub sends_unload: bool,
    /// Render scale applied to all images (1 = full resolution).
    pub render_scale: f64,
    /// Number of host threads one frame's render window is split over when the plugin is fully
    /// thread safe and allows host frame threading (Natron).
    pub tile_threads: usize,
    /// Once this many progress updates have been received, abort() answers 1 and
    /// progressUpdate answers kOfxStatReplyNo.
    pub abort_after_progress: Option<usize>,
    /// MLT's progress and abort are no-ops (recorded, but never abort).
    pub progress_noop: bool,
    /// Value of multiThreadNumCPUs.
    pub num_cpus: u32,
    /// Suites fetchSuite answers NULL for (name, version).
    pub missing_suites: Vec<(String, i32)>,
    /// Whether a render on an instance-safe plugin is serialised per instance (all real hosts).
    pub honour_thread_safety: bool,
    /// OFX 1.5 CUDA render.
    pub cuda_render: CudaRender,
}

/// Whether the host renders with CUDA images (OFX 1.5), as Resolve does on NVIDIA GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaRender {
    /// The host says it does not support CUDA render.
    Off,
    /// The host supports it and uses it when the plugin says "true": device copies of every
    /// image and a stream of the host's (`host::cuda`; builds with `--features cuda` and a GPU).
    Offered,
    /// A host that sets kOfxImageEffectPropCudaEnabled whatever the plugin said, with host
    /// memory behind the pointers: the plugin must refuse without reading them as device memory.
    Forced,
}

impl HostConfig {
    /// Natron 2.5: tiles, temporal access, General context, frames on several threads, Byte /
    /// Short / Float, positive row bytes, source images limited to the region of interest.
    pub fn natron() -> Self {
        HostConfig {
            name: "fr.inria.Natron".into(),
            label: "Natron".into(),
            version: [2, 5, 0],
            api_version: [1, 4],
            flavour: HostFlavour::LongLived,
            contexts: vec![Context::Filter, Context::General],
            context: Context::General,
            describe_contexts: vec![Context::Filter, Context::General],
            depths: vec![Depth::Byte, Depth::Short, Depth::Float],
            comps: vec![Comps::Rgba, Comps::Rgb, Comps::Alpha],
            native_depth: Depth::Float,
            native_comps: Comps::Rgba,
            forced_depth: None,
            temporal_access: true,
            tiles: true,
            multi_resolution: true,
            multiple_clip_depths: true,
            row_order: RowOrder::BottomUp,
            row_padding: 0,
            source_bounds: SourceBounds::Roi,
            params_at_current_time_only: false,
            calls_frames_needed: true,
            calls_is_identity: true,
            sends_instance_changed: true,
            sends_purge_caches: true,
            sends_unload: true,
            render_scale: 1.0,
            tile_threads: 2,
            abort_after_progress: None,
            progress_noop: false,
            num_cpus: 4,
            missing_suites: vec![],
            honour_thread_safety: true,
            cuda_render: CudaRender::Off,
        }
    }

    /// MLT 7.x openfx module, modelled on src/modules/openfx/{mlt_openfx.c,filter_openfx.c}.
    pub fn mlt() -> Self {
        HostConfig {
            name: "MLT".into(),
            label: "MLT".into(),
            version: [7, 41, 0],
            api_version: [1, 5],
            flavour: HostFlavour::Mlt,
            contexts: vec![Context::Filter],
            context: Context::Filter,
            describe_contexts: vec![Context::Filter],
            depths: vec![Depth::Byte, Depth::Short, Depth::Half, Depth::Float],
            comps: vec![Comps::Rgba, Comps::Rgb],
            native_depth: Depth::Byte,
            native_comps: Comps::Rgba,
            forced_depth: None,
            temporal_access: false,
            tiles: false,
            multi_resolution: false,
            multiple_clip_depths: false,
            row_order: RowOrder::TopDownNegative,
            row_padding: 0,
            source_bounds: SourceBounds::FullFrame,
            params_at_current_time_only: true,
            calls_frames_needed: false,
            calls_is_identity: false,
            sends_instance_changed: false,
            sends_purge_caches: false,
            sends_unload: false,
            render_scale: 1.0,
            tile_threads: 1,
            abort_after_progress: None,
            progress_noop: true,
            num_cpus: 2,
            missing_suites: vec![],
            honour_thread_safety: true,
            cuda_render: CudaRender::Off,
        }
    }

    /// DaVinci Resolve (CPU path): Float RGBA only, full frames, temporal access.
    pub fn resolve() -> Self {
        HostConfig {
            name: "DaVinciResolve".into(),
            label: "DaVinci Resolve".into(),
            version: [19, 0, 0],
            api_version: [1, 4],
            flavour: HostFlavour::LongLived,
            contexts: vec![Context::Filter, Context::General],
            context: Context::Filter,
            describe_contexts: vec![Context::Filter, Context::General],
            depths: vec![Depth::Float],
            comps: vec![Comps::Rgba],
            native_depth: Depth::Float,
            native_comps: Comps::Rgba,
            forced_depth: None,
            temporal_access: true,
            tiles: false,
            multi_resolution: false,
            multiple_clip_depths: false,
            row_order: RowOrder::BottomUp,
            row_padding: 0,
            source_bounds: SourceBounds::FullFrame,
            params_at_current_time_only: false,
            calls_frames_needed: true,
            calls_is_identity: true,
            sends_instance_changed: true,
            sends_purge_caches: true,
            sends_unload: true,
            render_scale: 1.0,
            tile_threads: 1,
            abort_after_progress: None,
            progress_noop: false,
            num_cpus: 2,
            missing_suites: vec![],
            honour_thread_safety: true,
            cuda_render: CudaRender::Off,
        }
    }

    /// Nuke: one long-lived instance renders many frames in horizontal bands (Nuke's row
    /// buckets) on several threads, with temporal access; Float images only (Nuke converts
    /// everything to 32-bit float), RGBA or RGB.
    pub fn nuke() -> Self {
        // What differs from Natron's profile (same API flavour, tiles and temporal access).
        HostConfig {
            name: "uk.co.thefoundry.nuke".into(),
            label: "Nuke".into(),
            version: [15, 1, 0],
            context: Context::Filter,
            depths: vec![Depth::Float],
            comps: vec![Comps::Rgba, Comps::Rgb],
            multiple_clip_depths: false,
            ..HostConfig::natron()
        }
    }

    /// Identity of what the host property set advertises: hosts with equal keys can share one
    /// loaded copy of the plugin binary (a plugin may legitimately cache host capabilities).
    pub fn caps_key(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &self.name,
            &self.label,
            self.version,
            self.api_version,
            &self.contexts,
            &self.depths,
            &self.comps,
            self.temporal_access,
            self.tiles,
            self.multi_resolution,
            self.multiple_clip_depths,
        )
            .hash(&mut h);
        (self.flavour, self.row_order).hash(&mut h);
        h.finish()
    }

    /// Short name for file names and diagnostics.
    pub fn short_name(&self) -> String {
        self.label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase()
    }
}

/// Pixel rectangle, half-open, OFX orientation (y up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x1: i32,
    pub y1: i32,
    pub x2: i32,
    pub y2: i32,
}

impl Rect {
    pub const fn new(x1: i32, y1: i32, x2: i32, y2: i32) -> Rect {
        Rect { x1, y1, x2, y2 }
    }

    pub fn width(&self) -> i32 {
        (self.x2 - self.x1).max(0)
    }

    pub fn height(&self) -> i32 {
        (self.y2 - self.y1).max(0)
    }

    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }

    pub fn area(&self) -> usize {
        self.width() as usize * self.height() as usize
    }

    pub fn intersect(&self, o: &Rect) -> Rect {
        let r = Rect::new(
            self.x1.max(o.x1),
            self.y1.max(o.y1),
            self.x2.min(o.x2),
            self.y2.min(o.y2),
        );
        if r.x2 <= r.x1 || r.y2 <= r.y1 {
            Rect::new(r.x1, r.y1, r.x1, r.y1)
        } else {
            r
        }
    }

    pub fn contains_rect(&self, o: &Rect) -> bool {
        o.is_empty() || (o.x1 >= self.x1 && o.y1 >= self.y1 && o.x2 <= self.x2 && o.y2 <= self.y2)
    }

    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x1 && x < self.x2 && y >= self.y1 && y < self.y2
    }

    /// Canonical coordinates of this pixel rectangle at render scale `s`.
    pub fn to_canonical(self, s: f64) -> [f64; 4] {
        [
            self.x1 as f64 / s,
            self.y1 as f64 / s,
            self.x2 as f64 / s,
            self.y2 as f64 / s,
        ]
    }

    /// Smallest pixel rectangle at scale `s` covering a canonical rectangle.
    pub fn from_canonical(r: [f64; 4], s: f64) -> Rect {
        let clamp = |v: f64| v.clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        Rect::new(
            clamp((r[0] * s).floor()),
            clamp((r[1] * s).floor()),
            clamp((r[2] * s).ceil()),
            clamp((r[3] * s).ceil()),
        )
    }

    /// Splits into `n` horizontal strips (fewer if the rectangle is shorter than `n` rows).
    pub fn strips(&self, n: usize) -> Vec<Rect> {
        let n = n.max(1).min(self.height().max(1) as usize);
        (0..n)
            .map(|i| {
                let y1 = self.y1 + (self.height() as i64 * i as i64 / n as i64) as i32;
                let y2 = self.y1 + (self.height() as i64 * (i as i64 + 1) / n as i64) as i32;
                Rect::new(self.x1, y1, self.x2, y2)
            })
            .filter(|r| !r.is_empty())
            .collect()
    }
}

impl std::fmt::Display for Rect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{},{})x[{},{})", self.x1, self.x2, self.y1, self.y2)
    }
}

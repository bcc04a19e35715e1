//! Describe and DescribeInContext: the effect's capabilities, clips and parameters, walked from
//! the tables in `effect` and `effect::params`. Cheap and loads nothing: some hosts describe the
//! plugin for every frame.
use super::actions::effect;
use super::params::{Group, Kind, ParamDef, PAGE, PAGE_LABEL, PARAMS};
use super::{DESCRIPTION, GROUPING, LABEL, OUTPUT, SOURCE, VERSION_MAJOR, VERSION_MINOR};
use crate::ofx::core_consts::*;
use crate::ofx::effect_consts::*;
use crate::ofx::param_consts::*;
use crate::ofx::pixels::{Components, Depth};
use crate::ofx::{Call, ParamSet, PropSet, Reply};
use crate::Result;

/// Properties a host may not know (older API versions): a failure is logged, not fatal.
fn optional(r: Result<()>, what: &str) {
    if let Err(e) = r {
        log::debug!("describe: optional property {what} not set: {e}");
    }
}

pub fn describe(call: &Call<'_>) -> Result<Reply> {
    let fx = effect(call)?;
    let p = fx.props()?;
    p.set_string(kOfxPropLabel, 0, LABEL)?;
    optional(p.set_string(kOfxPropShortLabel, 0, LABEL), "short label");
    optional(p.set_string(kOfxPropLongLabel, 0, LABEL), "long label");
    optional(
        p.set_string(kOfxPropPluginDescription, 0, DESCRIPTION),
        "description",
    );
    p.set_string(kOfxImageEffectPluginPropGrouping, 0, GROUPING)?;
    optional(
        p.set_ints(
            kOfxPropVersion,
            &[VERSION_MAJOR as i32, VERSION_MINOR as i32],
        ),
        "version",
    );
    optional(
        p.set_string(
            kOfxPropVersionLabel,
            0,
            &format!("{VERSION_MAJOR}.{VERSION_MINOR}"),
        ),
        "version label",
    );

    let contexts =
        [kOfxImageEffectContextFilter, kOfxImageEffectContextGeneral].map(|c| c.to_string_lossy());
    p.set_strings(kOfxImageEffectPropSupportedContexts, &contexts)?;
    let depths = Depth::ALL.map(|d| d.ofx_name().to_string_lossy());
    p.set_strings(kOfxImageEffectPropSupportedPixelDepths, &depths)?;

    p.set_int(kOfxImageEffectPropSupportsTiles, 0, 1)?;
    p.set_int(kOfxImageEffectPropTemporalClipAccess, 0, 1)?;
    p.set_int(kOfxImageEffectPropSupportsMultiResolution, 0, 1)?;
    // One depth for all clips: the host maps them, so the output depth is the source's.
    p.set_int(kOfxImageEffectPropSupportsMultipleClipDepths, 0, 0)?;
    optional(
        p.set_int(kOfxImageEffectPropSupportsMultipleClipPARs, 0, 0),
        "multiple clip PARs",
    );
    optional(
        p.set_int(kOfxImageEffectPluginPropSingleInstance, 0, 0),
        "single instance",
    );
    optional(
        p.set_int(kOfxImageEffectPluginPropFieldRenderTwiceAlways, 0, 0),
        "field render twice",
    );
    // Renders may run concurrently on any instances: the engine bounds concurrent model runs
    // and computes a shared chunk once.
    p.set_string(
        kOfxImageEffectPluginRenderThreadSafety,
        0,
        &kOfxImageEffectRenderFullySafe.to_string_lossy(),
    )?;
    // NOTE: Natron assumes host frame threading is on unless told otherwise, and then renders
    // tiles of one frame on several threads: each would run the model over the same chunk.
    p.set_int(kOfxImageEffectPluginPropHostFrameThreading, 0, 0)?;
    describe_gpu_render(&p);
    Ok(Reply::Ok)
}

/// CUDA render (OFX 1.5), in builds with CUDA: the host may hand the Render action device
/// images and a stream (`ofx::cuda`). Builds without it say nothing, which means "false".
#[cfg(feature = "cuda")]
fn describe_gpu_render(p: &crate::ofx::PropSet<'_>) {
    use openfx::sys::image_effect_v1::gpu_render::{
        kOfxImageEffectPropCudaRenderSupported, kOfxImageEffectPropCudaStreamSupported,
    };
    optional(
        p.set_string(kOfxImageEffectPropCudaRenderSupported, 0, "true"),
        "CUDA render",
    );
    optional(
        p.set_string(kOfxImageEffectPropCudaStreamSupported, 0, "true"),
        "CUDA streams",
    );
}

#[cfg(not(feature = "cuda"))]
fn describe_gpu_render(_: &crate::ofx::PropSet<'_>) {}

pub fn describe_in_context(call: &Call<'_>) -> Result<Reply> {
    let fx = effect(call)?;
    let comps = Components::ALL.map(|c| c.ofx_name().to_string_lossy());

    let src = fx.define_clip(SOURCE)?;
    src.set_strings(kOfxImageEffectPropSupportedComponents, &comps)?;
    src.set_int(kOfxImageEffectPropTemporalClipAccess, 0, 1)?;
    src.set_int(kOfxImageEffectPropSupportsTiles, 0, 1)?;
    optional(
        src.set_int(kOfxImageClipPropOptional, 0, 0),
        "source optional",
    );
    optional(src.set_int(kOfxImageClipPropIsMask, 0, 0), "source is mask");

    let out = fx.define_clip(OUTPUT)?;
    out.set_strings(kOfxImageEffectPropSupportedComponents, &comps)?;
    out.set_int(kOfxImageEffectPropSupportsTiles, 0, 1)?;

    define_params(&fx.params()?)?;
    Ok(Reply::Ok)
}

/// The page, its groups and every parameter of the table.
fn define_params(set: &ParamSet<'_>) -> Result<()> {
    let mut children: Vec<String> = Vec::new();
    for g in Group::ALL {
        let p = set.define(kOfxParamTypeGroup, g.id())?;
        p.set_string(kOfxPropLabel, 0, g.label())?;
        optional(p.set_int(kOfxParamPropGroupOpen, 0, 1), "group open");
    }
    let mut last_group = None;
    for def in PARAMS {
        if def.group.is_some() && def.group != last_group {
            if let Some(g) = def.group {
                children.push(g.id().to_string_lossy().into_owned());
            }
        }
        last_group = def.group;
        define_param(set, def)?;
        children.push(def.id.to_string_lossy().into_owned());
    }
    let page = set.define(kOfxParamTypePage, PAGE)?;
    page.set_string(kOfxPropLabel, 0, PAGE_LABEL)?;
    optional(
        page.set_strings(kOfxParamPropPageChild, &children),
        "page children",
    );
    Ok(())
}

fn define_param(set: &ParamSet<'_>, def: &ParamDef) -> Result<()> {
    let kind = match def.kind {
        Kind::Double { .. } => kOfxParamTypeDouble,
        Kind::Int { .. } => kOfxParamTypeInteger,
        Kind::Choice { .. } => kOfxParamTypeChoice,
        Kind::FilePath => kOfxParamTypeString,
        Kind::PushButton => kOfxParamTypePushButton,
    };
    let p: PropSet<'_> = set.define(kind, def.id)?;
    p.set_string(kOfxPropLabel, 0, def.label)?;
    optional(p.set_string(kOfxParamPropHint, 0, def.hint), "hint");
    optional(
        p.set_string(kOfxParamPropScriptName, 0, &def.id.to_string_lossy()),
        "script name",
    );
    if let Some(g) = def.group {
        optional(
            p.set_string(kOfxParamPropParent, 0, &g.id().to_string_lossy()),
            "parent",
        );
    }
    if def.kind != Kind::PushButton {
        optional(
            p.set_int(kOfxParamPropAnimates, 0, def.kind.animates() as i32),
            "animates",
        );
    }
    match def.kind {
        Kind::Double {
            default,
            min,
            max,
            display_min,
            display_max,
            increment,
            digits,
        } => {
            optional(
                p.set_string(
                    kOfxParamPropDoubleType,
                    0,
                    &kOfxParamDoubleTypePlain.to_string_lossy(),
                ),
                "double type",
            );
            p.set_double(kOfxParamPropDefault, 0, default)?;
            p.set_double(kOfxParamPropMin, 0, min)?;
            p.set_double(kOfxParamPropMax, 0, max)?;
            optional(
                p.set_double(kOfxParamPropDisplayMin, 0, display_min),
                "display min",
            );
            optional(
                p.set_double(kOfxParamPropDisplayMax, 0, display_max),
                "display max",
            );
            optional(
                p.set_double(kOfxParamPropIncrement, 0, increment),
                "increment",
            );
            optional(p.set_int(kOfxParamPropDigits, 0, digits), "digits");
        }
        Kind::Int {
            default,
            min,
            max,
            display_min,
            display_max,
        } => {
            p.set_int(kOfxParamPropDefault, 0, default)?;
            p.set_int(kOfxParamPropMin, 0, min)?;
            p.set_int(kOfxParamPropMax, 0, max)?;
            optional(
                p.set_int(kOfxParamPropDisplayMin, 0, display_min),
                "display min",
            );
            optional(
                p.set_int(kOfxParamPropDisplayMax, 0, display_max),
                "display max",
            );
        }
        Kind::Choice { options, default } => {
            p.set_strings(kOfxParamPropChoiceOption, options)?;
            p.set_int(kOfxParamPropDefault, 0, default as i32)?;
        }
        Kind::FilePath => {
            p.set_string(kOfxParamPropDefault, 0, "")?;
            optional(
                p.set_string(
                    kOfxParamPropStringMode,
                    0,
                    &kOfxParamStringIsFilePath.to_string_lossy(),
                ),
                "string mode",
            );
            optional(
                p.set_int(kOfxParamPropStringFilePathExists, 0, 1),
                "file path exists",
            );
        }
        Kind::PushButton => {}
    }
    Ok(())
}

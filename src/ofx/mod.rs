//! The OFX boundary, and the only module with `unsafe` code: the exported entry points, the
//! host's suites, and small typed views over the host's handles (property sets, parameters,
//! clips, images with positive or negative row bytes). `effect` sees only these safe views;
//! nothing here knows about diffusion.
mod clip;
#[cfg(feature = "cuda")]
pub mod cuda;
mod effect;
pub mod entry;
mod host;
mod params;
pub mod pixels;
mod props;

use std::ffi::CStr;

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::image_effect::*;

pub use clip::{Clip, Image, Memory, Readable};
pub use effect::{ImageEffect, MessageKind};
pub use host::Host;
pub use params::{Param, ParamSet};
pub use pixels::{Components, Depth, Layout, PixelsMut, PixelsRef};
pub use props::PropSet;

/// The OFX string constants, for `effect` (names of properties, actions, contexts, clips).
pub use openfx::sys::generic::core as core_consts;
pub use openfx::sys::image_effect_v1::image_effect as effect_consts;
pub use openfx::sys::image_effect_v1::param as param_consts;

/// The actions the plugin knows; anything else is `Other` and answered with "reply default".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Load,
    Unload,
    Describe,
    DescribeInContext,
    CreateInstance,
    DestroyInstance,
    PurgeCaches,
    InstanceChanged,
    GetRegionOfDefinition,
    GetRegionsOfInterest,
    GetFramesNeeded,
    GetClipPreferences,
    IsIdentity,
    Render,
    BeginSequenceRender,
    EndSequenceRender,
    Other,
}

impl Action {
    const TABLE: [(&'static CStr, Action); 16] = [
        (kOfxActionLoad, Action::Load),
        (kOfxActionUnload, Action::Unload),
        (kOfxActionDescribe, Action::Describe),
        (
            kOfxImageEffectActionDescribeInContext,
            Action::DescribeInContext,
        ),
        (kOfxActionCreateInstance, Action::CreateInstance),
        (kOfxActionDestroyInstance, Action::DestroyInstance),
        (kOfxActionPurgeCaches, Action::PurgeCaches),
        (kOfxActionInstanceChanged, Action::InstanceChanged),
        (
            kOfxImageEffectActionGetRegionOfDefinition,
            Action::GetRegionOfDefinition,
        ),
        (
            kOfxImageEffectActionGetRegionsOfInterest,
            Action::GetRegionsOfInterest,
        ),
        (
            kOfxImageEffectActionGetFramesNeeded,
            Action::GetFramesNeeded,
        ),
        (
            kOfxImageEffectActionGetClipPreferences,
            Action::GetClipPreferences,
        ),
        (kOfxImageEffectActionIsIdentity, Action::IsIdentity),
        (kOfxImageEffectActionRender, Action::Render),
        (
            kOfxImageEffectActionBeginSequenceRender,
            Action::BeginSequenceRender,
        ),
        (
            kOfxImageEffectActionEndSequenceRender,
            Action::EndSequenceRender,
        ),
    ];

    pub fn parse(name: &CStr) -> Action {
        Self::TABLE
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Action::Other, |&(_, a)| a)
    }

    /// Actions called on the plugin as a whole rather than on an effect handle.
    pub fn needs_effect(self) -> bool {
        !matches!(
            self,
            Action::Load | Action::Unload | Action::PurgeCaches | Action::Other
        )
    }
}

/// The arguments of one action, as safe views valid for the call.
pub struct Call<'a> {
    pub action: Action,
    /// The action's name as the host sent it (for logs).
    pub name: &'a CStr,
    pub effect: Option<ImageEffect<'a>>,
    pub in_args: Option<PropSet<'a>>,
    pub out_args: Option<PropSet<'a>>,
    pub host: &'a Host,
}

/// What a handled action tells the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The action was trapped and done: `kOfxStatOK`.
    Ok,
    /// Not trapped, the host applies its default: `kOfxStatReplyDefault`.
    Default,
}

/// What kind of failure an effect's error is, for the status the host receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The host (or the user) stopped the render: `kOfxStatFailed`, logged quietly.
    Aborted,
    /// Pixels the effect cannot take: `kOfxStatErrImageFormat`.
    ImageFormat,
    /// Memory ran out: `kOfxStatErrMemory`.
    Memory,
    /// Anything else: `kOfxStatFailed`.
    Failed,
}

/// The error type of an [`OfxEffect`](entry::OfxEffect): shown as text, classified by the
/// effect itself (the boundary knows nothing of its variants).
pub trait EffectError: std::fmt::Display {
    fn failure(&self) -> Failure;
}

/// Why an action did not complete, as the boundary sees it.
#[derive(Debug)]
pub enum Fail {
    /// A null or unusable handle from the host.
    BadHandle(&'static str),
    /// The host lacks a suite or function the plugin cannot do without.
    MissingHostFeature(String),
    /// What the effect's own code reported.
    Effect { failure: Failure, message: String },
}

impl Fail {
    pub fn effect(e: &impl EffectError) -> Fail {
        Fail::Effect {
            failure: e.failure(),
            message: e.to_string(),
        }
    }
}

/// THE mapping from an action's outcome (including a caught panic) to the status returned to
/// the host. Every entry point goes through here.
pub fn status_of(outcome: &std::thread::Result<Result<Reply, Fail>>) -> OfxStatus {
    match outcome {
        Err(_) => kOfxStatFailed,
        Ok(Ok(Reply::Ok)) => kOfxStatOK,
        Ok(Ok(Reply::Default)) => kOfxStatReplyDefault,
        Ok(Err(Fail::BadHandle(_))) => kOfxStatErrBadHandle,
        Ok(Err(Fail::MissingHostFeature(_))) => kOfxStatErrMissingHostFeature,
        Ok(Err(Fail::Effect { failure, .. })) => match failure {
            Failure::ImageFormat => kOfxStatErrImageFormat,
            Failure::Memory => kOfxStatErrMemory,
            Failure::Aborted | Failure::Failed => kOfxStatFailed,
        },
    }
}

/// Symbolic name of a status, for messages and logs.
pub fn status_name(st: OfxStatus) -> &'static str {
    const NAMES: [(OfxStatus, &str); 16] = [
        (kOfxStatOK, "kOfxStatOK"),
        (kOfxStatFailed, "kOfxStatFailed"),
        (kOfxStatErrFatal, "kOfxStatErrFatal"),
        (kOfxStatErrUnknown, "kOfxStatErrUnknown"),
        (
            kOfxStatErrMissingHostFeature,
            "kOfxStatErrMissingHostFeature",
        ),
        (kOfxStatErrUnsupported, "kOfxStatErrUnsupported"),
        (kOfxStatErrExists, "kOfxStatErrExists"),
        (kOfxStatErrFormat, "kOfxStatErrFormat"),
        (kOfxStatErrMemory, "kOfxStatErrMemory"),
        (kOfxStatErrBadHandle, "kOfxStatErrBadHandle"),
        (kOfxStatErrBadIndex, "kOfxStatErrBadIndex"),
        (kOfxStatErrValue, "kOfxStatErrValue"),
        (kOfxStatReplyYes, "kOfxStatReplyYes"),
        (kOfxStatReplyNo, "kOfxStatReplyNo"),
        (kOfxStatReplyDefault, "kOfxStatReplyDefault"),
        (kOfxStatErrImageFormat, "kOfxStatErrImageFormat"),
    ];
    NAMES
        .iter()
        .find(|(s, _)| *s == st)
        .map_or("unknown status", |(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn run(f: impl FnOnce() -> Result<Reply, Fail>) -> OfxStatus {
        status_of(&std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
    }

    #[test]
    fn outcomes_map_to_statuses() {
        assert_eq!(run(|| Ok(Reply::Ok)), kOfxStatOK);
        assert_eq!(run(|| Ok(Reply::Default)), kOfxStatReplyDefault);
        assert_eq!(run(|| Err(Fail::BadHandle("effect"))), kOfxStatErrBadHandle);
        assert_eq!(
            run(|| Err(Fail::MissingHostFeature("x".into()))),
            kOfxStatErrMissingHostFeature
        );
        let fail = |failure| {
            move || {
                Err(Fail::Effect {
                    failure,
                    message: "x".into(),
                })
            }
        };
        assert_eq!(run(fail(Failure::Aborted)), kOfxStatFailed);
        assert_eq!(run(fail(Failure::Failed)), kOfxStatFailed);
        assert_eq!(run(fail(Failure::ImageFormat)), kOfxStatErrImageFormat);
        assert_eq!(run(fail(Failure::Memory)), kOfxStatErrMemory);
    }

    #[test]
    fn a_panic_becomes_a_failure_status() {
        let st = run(|| panic!("boom"));
        assert_eq!(st, kOfxStatFailed);
    }

    #[test]
    fn actions_parse_by_name() {
        assert_eq!(Action::parse(kOfxImageEffectActionRender), Action::Render);
        assert_eq!(Action::parse(kOfxActionLoad), Action::Load);
        assert_eq!(Action::parse(c"OfxActionSomethingNew"), Action::Other);
        assert!(!Action::Other.needs_effect());
        assert!(Action::Render.needs_effect());
        assert_eq!(
            status_name(kOfxStatErrImageFormat),
            "kOfxStatErrImageFormat"
        );
    }
}

//! What the user is told: errors they can act on (a persistent message on the instance, posted
//! once and cleared when the next render succeeds) and one-off notes such as the missing
//! temporal access of a host.
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::ofx::{ImageEffect, MessageKind};
use crate::Error;

/// Per-instance state (kOfxPropInstanceData).
#[derive(Default)]
pub struct Instance {
    /// The error text currently shown on this instance, if any.
    shown: Mutex<Option<String>>,
}

const MESSAGE_ID: &str = "net.vdiff.VideoDiffusion.error";

/// The sentence shown for an error: what went wrong (the library's message, which states facts)
/// and what to do about it in the plugin (chosen by the error's kind).
pub fn user_text(e: &Error) -> String {
    let advice = match e {
        Error::Model { .. } => {
            "Set Model File to a VDiff .safetensors model (made by `vdiff train`), or clear it to use the built-in model."
        }
        Error::Device(_) => "Set Device to Auto or CPU.",
        Error::PixelFormat(_) => "Give the effect 8-bit, 16-bit, half or float images with RGBA or RGB components.",
        Error::OutOfMemory(_) => "Lower Tile Size or Temporal Radius, or set Device to CPU.",
        Error::Param { .. } => "Check the effect's settings.",
        _ => "See the log for details (set VDIFF_LOG to a file to keep it).",
    };
    format!("Video Diffusion: {e}. {advice}")
}

/// Shows `e` to the user on this instance (persistent where the host can), unless the same
/// text is already shown.
pub fn report(fx: &ImageEffect<'_>, e: &Error) {
    let text = user_text(e);
    let inst = fx.instance_data::<Instance>();
    if let Some(i) = inst {
        if i.shown.lock().as_deref() == Some(text.as_str()) {
            return;
        }
    }
    if !fx.set_persistent_message(MessageKind::Error, MESSAGE_ID, &text) {
        fx.message(MessageKind::Error, MESSAGE_ID, &text);
    }
    if let Some(i) = inst {
        *i.shown.lock() = Some(text);
    }
}

/// Clears a shown error (after a successful render or a fixed setting).
pub fn clear(fx: &ImageEffect<'_>) {
    match fx.instance_data::<Instance>() {
        Some(i) => {
            if i.shown.lock().take().is_some() {
                fx.clear_persistent_message();
            }
        }
        // Without instance state we cannot know: clearing is harmless.
        None => fx.clear_persistent_message(),
    }
}

static NO_TEMPORAL_NOTED: AtomicBool = AtomicBool::new(false);

/// Says once per process that the host gives no temporal access, so frames render one by one.
pub fn note_no_temporal_access(fx: &ImageEffect<'_>) {
    if NO_TEMPORAL_NOTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let text = format!(
        "Video Diffusion: {} gives no access to neighbouring frames, so each frame is processed \
         alone (Temporal Radius 0). Expect more flicker than in hosts with temporal access.",
        fx.host().name()
    );
    log::warn!("{text}");
    fx.message(
        MessageKind::Message,
        "net.vdiff.VideoDiffusion.temporal",
        &text,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_errors_name_the_file_and_say_what_to_do() {
        let t = user_text(&Error::model("/tmp/none.safetensors", "file not found"));
        assert!(
            t.contains("/tmp/none.safetensors") && t.contains("file not found"),
            "{t}"
        );
        assert!(t.contains("Model File"), "{t}");
        let t = user_text(&Error::Device("no GPU in this build".into()));
        assert!(t.contains("Device") && t.contains("no GPU"), "{t}");
        let t = user_text(&Error::PixelFormat(
            "components `OfxImageComponentAlpha` are not supported".into(),
        ));
        assert!(t.contains("RGBA or RGB"), "{t}");
    }

    #[test]
    fn advice_is_said_once() {
        let t = user_text(&Error::Device("no usable CUDA GPU (driver missing)".into()));
        assert_eq!(t.matches("Auto or CPU").count(), 1, "{t}");
        let t = user_text(&Error::model("/m.safetensors", "not a VDiff model"));
        assert_eq!(t.matches("vdiff train").count(), 1, "{t}");
    }
}

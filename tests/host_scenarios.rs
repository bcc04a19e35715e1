//! Host scenarios: the built plugin driven by the in-repo host (`tests/host/`) the way Natron,
//! MLT and Resolve drive it, plus bad input. Every scenario checks its frames are deterministic,
//! finite and confined to the render window, and ends with every fetched image released and no
//! OFX contract violation recorded (`HostState::assert_clean`).
//!
//! Kept fast: 96x64 frames, 2 steps, temporal radius 1 (2 where the window matters), the built-in
//! model on the CPU.

use std::collections::HashMap;
use std::path::Path;

use openfx::sys::generic::core::*;
use openfx::sys::image_effect_v1::image_effect::*;
use openfx::sys::image_effect_v1::param::kOfxParamPropChoiceOption;

use crate::common::{assert_all_finite, assert_bytes_eq, mean_abs_diff, shuffled, temp_dir};
use crate::host::*;

const W: i32 = 96;
const H: i32 = 64;
const FULL: Rect = Rect::new(0, 0, W, H);

fn footage() -> Footage {
    Footage::new(W, H, 0, 11)
}

/// Fast settings with the built-in model.
fn project() -> Project {
    Project::new(footage())
        .set("steps", 2)
        .set("temporalRadius", 1)
        .set("noiseLevel", 0.04)
        .set("strength", 0.3)
        .set("seed", 11)
        .set("modelFile", "")
        .choice("sampler", "Euler")
}

fn start(cfg: HostConfig) -> Host {
    Host::start(cfg).unwrap_or_else(|e| panic!("host did not start: {e}"))
}

fn instance<'h>(h: &'h Host, p: &Project) -> Instance<'h> {
    let i = h
        .create_instance(p.footage.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    i.apply(p, None);
    i
}

/// A frame that rendered, is finite, and left the output untouched outside its window.
fn check_ok(h: &Host, fo: &FrameOut, what: &str) {
    assert_eq!(
        fo.status,
        kOfxStatOK,
        "{what}: render of t={} returned {}\n{}",
        fo.t,
        status_name(fo.status),
        h.state.dump()
    );
    assert!(!fo.window.is_empty(), "{what}: empty window");
    assert_all_finite(what, fo.pixels().into_iter().flatten());
    if let Err(e) = fo.image.check_untouched_outside(fo.window, fo.sentinel) {
        panic!("{what}: {e}");
    }
}

/// Byte equality of two frames over `r`.
fn same(what: &str, a: &FrameOut, b: &FrameOut, r: Rect) {
    assert_eq!(
        a.image.pixel_bytes(),
        b.image.pixel_bytes(),
        "{what}: different pixel formats"
    );
    assert_bytes_eq(
        what,
        &a.bytes(Some(r)),
        &b.bytes(Some(r)),
        a.image.pixel_bytes(),
        r.width() as usize,
    );
}

fn by_time(v: Vec<FrameOut>) -> HashMap<i64, FrameOut> {
    v.into_iter().map(|f| (f.t, f)).collect()
}

fn pixels_f32(fo: &FrameOut) -> Vec<f32> {
    fo.pixels()
        .into_iter()
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

fn source_f32(inst: &Instance<'_>, t: i64, r: Rect) -> Vec<f32> {
    inst.source_image(t, r)
        .read(r)
        .into_iter()
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

fn finish_clean(h: Host) -> std::sync::Arc<HostState> {
    let st = h.finish();
    st.assert_clean();
    st
}

/// A small valid model file (the tiny test configuration).
fn write_tiny_model(path: &Path) {
    let cfg = vdiff::model::UNetConfig::tiny();
    let (varmap, _net) = vdiff::model::init_varmap(&cfg, 5, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("init_varmap: {e}"));
    vdiff::model::save(&varmap, &cfg, path)
        .unwrap_or_else(|e| panic!("save {}: {e}", path.display()));
}

/// A copy of a valid model whose first matrix has one row too many: a config / shape mismatch.
fn write_wrong_shape_model(valid: &Path, path: &Path) {
    let bytes = std::fs::read(valid).unwrap_or_else(|e| panic!("{}: {e}", valid.display()));
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).expect("valid safetensors header");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut tensors = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let victim = tensors
        .iter()
        .position(|(_, t)| t.shape().len() >= 2)
        .expect("a tensor with two or more dimensions");
    let (name, view) = &tensors[victim];
    let mut shape = view.shape().to_vec();
    shape[0] += 1;
    let elem = view.data().len() / view.shape().iter().product::<usize>().max(1);
    let grown = vec![0u8; shape.iter().product::<usize>() * elem];
    let mut out: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
    for (n, v) in &tensors {
        if n == name {
            out.push((
                n.clone(),
                safetensors::tensor::TensorView::new(v.dtype(), shape.clone(), &grown)
                    .expect("tensor view"),
            ));
        } else {
            out.push((
                n.clone(),
                safetensors::tensor::TensorView::new(v.dtype(), v.shape().to_vec(), v.data())
                    .expect("tensor view"),
            ));
        }
    }
    let data = safetensors::serialize(out, meta.metadata().clone()).expect("serialize");
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn natron_lifecycle_descriptor_and_instance_actions() {
    let h = start(HostConfig::natron());
    let d = h.descriptor();
    let contexts = d.props.strs(kOfxImageEffectPropSupportedContexts);
    for c in [Context::Filter, Context::General] {
        assert!(
            contexts.iter().any(|s| s == c.name()),
            "contexts {contexts:?} lack {}",
            c.name()
        );
        assert!(
            h.context_descriptor(c).is_some(),
            "not described in {}",
            c.name()
        );
    }
    assert_eq!(h.lib().identifier(), PLUGIN_ID);
    let names = h.state.action_names();
    assert_eq!(
        names,
        [
            "OfxActionLoad",
            "OfxActionDescribe",
            "OfxImageEffectActionDescribeInContext",
            "OfxImageEffectActionDescribeInContext"
        ],
        "discovery sequence"
    );

    let p = project();
    let inst = h
        .create_instance(p.footage.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    let ids = [
        "noiseLevel",
        "analyzeNoise",
        "noiseClipping",
        "strength",
        "steps",
        "sampler",
        "detail",
        "seed",
        "temporalRadius",
        "temporalSmoothing",
        "mix",
        "modelFile",
        "device",
        "tileSize",
        "clearCache",
    ];
    for id in ids {
        inst.param(id);
    }
    assert_eq!(
        inst.param("sampler").props.strs(kOfxParamPropChoiceOption),
        ["Euler", "Heun", "DPM++ 2M"]
    );
    assert_eq!(
        inst.param("device").props.strs(kOfxParamPropChoiceOption),
        ["Auto", "CPU", "GPU"]
    );
    assert_eq!(
        inst.param("noiseClipping")
            .props
            .strs(kOfxParamPropChoiceOption),
        ["Auto", "Clipped", "Not Clipped"]
    );
    let defaults: [(&str, PVal); 11] = [
        ("noiseLevel", 0.04.into()),
        ("strength", 0.0.into()),
        ("steps", 1.into()),
        ("sampler", 2.into()),
        ("detail", 0.0.into()),
        ("seed", 0.into()),
        ("temporalRadius", 4.into()),
        ("mix", 1.0.into()),
        ("tileSize", 512.into()),
        ("temporalSmoothing", 0.5.into()),
        ("noiseClipping", 0.into()),
    ];
    for (id, v) in defaults {
        assert_eq!(inst.param(id).static_value(), v, "default of {id}");
    }
    assert_eq!(inst.param("modelFile").static_value(), PVal::from(""));
    inst.apply(&p, None);

    let t = 5.0;
    let (st, rod) = inst.region_of_definition(t);
    assert_eq!(st, kOfxStatOK, "GetRegionOfDefinition");
    assert_eq!(
        rod,
        [0.0, 0.0, W as f64, H as f64],
        "RoD of a filter is the source frame"
    );
    for (t, need) in [(5.0, [4.0, 6.0]), (0.0, [0.0, 1.0]), (11.0, [10.0, 11.0])] {
        let (st, ranges) = inst.frames_needed(t);
        assert_eq!(st, kOfxStatOK, "GetFramesNeeded({t})");
        let covers = |f: f64| ranges.chunks(2).any(|r| r[0] <= f && f <= r[1]);
        assert!(
            covers(need[0]) && covers(need[1]),
            "frames needed at {t}: {ranges:?} do not cover {need:?}"
        );
        assert!(
            ranges.iter().all(|&f| (0.0..=11.0).contains(&f)),
            "frames needed at {t} leave the clip: {ranges:?}"
        );
    }
    let window = Rect::new(0, 0, 48, 32);
    let (st, rois) = inst.regions_of_interest(t, window);
    assert_eq!(st, kOfxStatOK, "GetRegionsOfInterest");
    let roi = rois["Source"];
    assert!(
        roi[0] <= 0.0 && roi[1] <= 0.0 && roi[2] >= 48.0 && roi[3] >= 32.0,
        "RoI {roi:?} does not cover the window"
    );

    let (st, id) = inst.is_identity(t, FULL);
    assert!(
        st == kOfxStatReplyDefault && id.is_none(),
        "strength 0.3 is not an identity: {} {id:?}",
        status_name(st)
    );
    inst.set("strength", 0.0);
    inst.set("noiseLevel", 0.0);
    let (_, id) = inst.is_identity(t, FULL);
    assert_eq!(
        id,
        Some(("Source".to_string(), t)),
        "strength 0 and noise 0 is the identity"
    );
    inst.set("strength", 0.3);
    inst.set("noiseLevel", 0.04);
    inst.set("mix", 0.0);
    let (_, id) = inst.is_identity(t, FULL);
    assert_eq!(id, Some(("Source".to_string(), t)), "mix 0 is the identity");
    inst.set("mix", 1.0);

    let fo = inst.render_frame(5, &RenderOpts::default());
    check_ok(&h, &fo, "full frame");

    // Analyze Noise sets Noise Level from the source; noisier footage measures noisier.
    let mut estimates = Vec::new();
    for noise in [0.01f32, 0.08] {
        let f = Footage { noise, ..footage() };
        let i = h
            .create_instance(std::sync::Arc::new(f))
            .unwrap_or_else(|e| panic!("{e}"));
        i.set_time(3.0);
        assert_eq!(
            i.push_button("analyzeNoise"),
            kOfxStatOK,
            "Analyze Noise\n{}",
            h.state.dump()
        );
        let v = i
            .param("noiseLevel")
            .value_at(3.0)
            .as_f64()
            .expect("a double");
        assert!(
            v.is_finite() && (0.0..=0.5).contains(&v),
            "Analyze Noise set {v}"
        );
        estimates.push(v);
        i.destroy();
    }
    assert!(
        estimates[1] > estimates[0],
        "noise estimates {estimates:?} do not grow with the footage's noise"
    );
    assert!(
        h.state
            .plugin_edits
            .lock()
            .unwrap()
            .iter()
            .any(|(_, n)| n == "noiseLevel"),
        "Analyze Noise did not set noiseLevel"
    );

    assert_eq!(inst.push_button("clearCache"), kOfxStatOK, "Clear Cache");
    let st = inst.purge_caches();
    assert!(
        st == kOfxStatOK || st == kOfxStatReplyDefault,
        "PurgeCaches returned {}",
        status_name(st)
    );
    let again = inst.render_frame(5, &RenderOpts::default().sentinel(0x11));
    check_ok(&h, &again, "after purge");
    same("render after PurgeCaches", &fo, &again, FULL);
    inst.destroy();

    let st = finish_clean(h);
    let names = st.action_names();
    assert_eq!(names.last().map(String::as_str), Some("OfxActionUnload"));
    assert_eq!(
        st.count_action("OfxActionCreateInstance"),
        st.count_action("OfxActionDestroyInstance")
    );
}

#[test]
fn natron_tiles_and_strips_match_the_full_frame() {
    let h = start(HostConfig::natron());
    let p = project().set("tileSize", 64);
    let inst = instance(&h, &p);
    let t = 4;
    let full = inst.render_frame(t, &RenderOpts::default().strips(1));
    check_ok(&h, &full, "full frame");
    let windows = [
        Rect::new(0, 0, 48, 32),
        Rect::new(48, 0, 96, 32),
        Rect::new(0, 32, 48, 64),
        Rect::new(48, 32, 96, 64),
        Rect::new(13, 7, 71, 50),
        Rect::new(0, 63, 96, 64),
        Rect::new(95, 0, 96, 64),
    ];
    for (k, w) in windows.into_iter().enumerate() {
        let fo = inst.render_frame(t, &RenderOpts::default().window(w).sentinel(0x3C).strips(1));
        check_ok(&h, &fo, &format!("window {w}"));
        assert_eq!(fo.window, w);
        same(&format!("window {w} vs the full frame"), &full, &fo, w);
        if k == 4 {
            let tight = inst.render_frame(t, &RenderOpts::default().window(w).tight());
            check_ok(&h, &tight, "output bounds = render window");
            same("tight output bounds", &full, &tight, w);
        }
    }
    // One frame in three Render calls into one output image (how Natron splits a frame).
    let strips = inst.render_frame(t, &RenderOpts::default().strips(3).sentinel(0x77));
    check_ok(&h, &strips, "three strips");
    same("three strips vs one render", &full, &strips, FULL);
    // The same bytes again on this instance, and on a fresh instance after the caches are purged.
    let again = inst.render_frame(t, &RenderOpts::default().sentinel(0x5A));
    same("re-render", &full, &again, FULL);
    inst.purge_caches();
    inst.destroy();
    let fresh = instance(&h, &p);
    let fo = fresh.render_frame(t, &RenderOpts::default().window(Rect::new(20, 10, 90, 60)));
    check_ok(&h, &fo, "fresh instance");
    same("fresh instance", &full, &fo, Rect::new(20, 10, 90, 60));
    fresh.destroy();
    finish_clean(h);
}

#[test]
fn natron_frames_on_four_threads_in_random_order_equal_sequential() {
    let h = start(HostConfig::natron());
    let p = project().set("seed", 21);
    let frames: Vec<i64> = (0..8).collect();
    let inst = instance(&h, &p);
    let seq = by_time(inst.render_frames(&frames, 1, &RenderOpts::default()));
    inst.purge_caches();
    inst.destroy();
    let order: Vec<i64> = shuffled(frames.len(), 7)
        .into_iter()
        .map(|i| frames[i])
        .collect();
    let inst = instance(&h, &p);
    let par = by_time(inst.render_frames(&order, 4, &RenderOpts::default().sentinel(0x42)));
    for t in &frames {
        check_ok(&h, &seq[t], "sequential");
        check_ok(&h, &par[t], "threaded");
        same(
            &format!("frame {t}: 4 threads in order {order:?} vs sequential"),
            &seq[t],
            &par[t],
            FULL,
        );
    }
    inst.destroy();
    finish_clean(h);
}

#[test]
fn natron_keyframed_strength_is_honoured_per_frame() {
    let h = start(HostConfig::natron());
    let keys = [(0.0, PVal::from(0.0)), (6.0, PVal::from(0.9))];
    let p = project().set("noiseLevel", 0.0).keys("strength", &keys);
    let inst = instance(&h, &p);
    let frames: Vec<i64> = (0..=6).collect();
    let out = by_time(inst.render_frames(&frames, 1, &RenderOpts::default()));
    // Frame 0: strength 0 and no footage noise -> the host is told to pass the source through,
    // and the plugin's own Render (forced) gives exactly the source too.
    assert_eq!(
        out[&0].identity,
        Some(("Source".to_string(), 0.0)),
        "frame 0 should be an identity"
    );
    let forced = inst.render_frame(0, &RenderOpts::default().no_identity());
    check_ok(&h, &forced, "forced render of the identity frame");
    let src = inst.source_image(0, FULL);
    assert_bytes_eq(
        "frame 0 (strength 0, noise 0) vs its source",
        &forced.bytes(None),
        &src.raw(FULL),
        src.pixel_bytes(),
        W as usize,
    );
    let mut diffs = Vec::new();
    for t in 1..=6 {
        check_ok(&h, &out[&t], "keyed frame");
        assert!(out[&t].identity.is_none(), "frame {t} has strength > 0");
        let d = mean_abs_diff(&pixels_f32(&out[&t]), &source_f32(&inst, t, FULL));
        assert!(
            d > 0.0,
            "frame {t} equals its source although its strength is > 0"
        );
        diffs.push(d);
    }
    assert!(
        diffs[5] > diffs[0],
        "strength 0.9 changes less than 0.15: {diffs:?}"
    );
    inst.destroy();

    // With radius 0 a frame depends on its own parameters only: the keyed value at t=3 (0.45 by
    // linear interpolation, read at the render time) gives what a static 0.45 gives.
    let keyed = instance(&h, &p.clone().set("temporalRadius", 0));
    let a = keyed.render_frame(3, &RenderOpts::default());
    keyed.destroy();
    let flat = instance(
        &h,
        &p.clone().set("temporalRadius", 0).set("strength", 0.45),
    );
    let b = flat.render_frame(3, &RenderOpts::default());
    flat.destroy();
    check_ok(&h, &a, "keyed");
    check_ok(&h, &b, "static");
    same("keyed strength at t=3 vs static 0.45", &a, &b, FULL);
    finish_clean(h);
}

#[test]
fn natron_half_render_scale() {
    let cfg = HostConfig {
        render_scale: 0.5,
        ..HostConfig::natron()
    };
    let h = start(cfg);
    let inst = instance(&h, &project());
    let a = inst.render_frame(2, &RenderOpts::default());
    check_ok(&h, &a, "scale 0.5");
    assert_eq!(
        a.window,
        Rect::new(0, 0, W / 2, H / 2),
        "the frame at scale 0.5"
    );
    let b = inst.render_frame(
        2,
        &RenderOpts::default()
            .window(Rect::new(10, 5, 40, 30))
            .sentinel(1),
    );
    check_ok(&h, &b, "scale 0.5 window");
    same(
        "scale 0.5: window vs frame",
        &a,
        &b,
        Rect::new(10, 5, 40, 30),
    );
    inst.destroy();
    finish_clean(h);
}

#[test]
fn natron_rgb_footage_renders_rgb_like_the_rgba_colour_channels() {
    let p = project();
    let h = start(HostConfig::natron());
    let inst = instance(&h, &p);
    let rgba = inst.render_frame(5, &RenderOpts::default());
    check_ok(&h, &rgba, "RGBA");
    inst.destroy();
    finish_clean(h);

    let h = start(HostConfig {
        native_comps: Comps::Rgb,
        ..HostConfig::natron()
    });
    let inst = instance(&h, &p);
    assert_eq!(
        inst.output_format().1,
        Comps::Rgb,
        "output components follow an RGB source"
    );
    let w = Rect::new(5, 3, 90, 60);
    let rgb = inst.render_frame(5, &RenderOpts::default().window(w));
    check_ok(&h, &rgb, "RGB");
    let a: Vec<f32> = rgba
        .image
        .read(w)
        .into_iter()
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let b: Vec<f32> = rgb
        .image
        .read(w)
        .into_iter()
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let a_bytes: Vec<u8> = a.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let b_bytes: Vec<u8> = b.iter().flat_map(|v| v.to_ne_bytes()).collect();
    assert_bytes_eq(
        "RGB render vs the colour channels of the RGBA render",
        &a_bytes,
        &b_bytes,
        12,
        w.width() as usize,
    );
    inst.destroy();
    finish_clean(h);
}

#[test]
fn padded_rows_give_the_same_pixels() {
    // The spec allows row bytes larger than width x pixel size; 20 is not a multiple of a pixel.
    let p = project();
    let w = Rect::new(7, 9, 81, 55);
    let h = start(HostConfig::natron());
    let inst = instance(&h, &p);
    let tight = inst.render_frame(3, &RenderOpts::default().window(w));
    check_ok(&h, &tight, "unpadded rows");
    inst.destroy();
    finish_clean(h);
    let h = start(HostConfig {
        row_padding: 20,
        ..HostConfig::natron()
    });
    let inst = instance(&h, &p);
    let padded = inst.render_frame(3, &RenderOpts::default().window(w));
    check_ok(&h, &padded, "padded rows");
    same("padded vs unpadded rows", &tight, &padded, w);
    inst.destroy();
    finish_clean(h);
}

#[test]
fn host_without_persistent_messages_or_progress_still_works() {
    let cfg = HostConfig {
        missing_suites: vec![
            ("OfxMessageSuite".into(), 2),
            ("OfxProgressSuite".into(), 1),
            ("OfxProgressSuite".into(), 2),
        ],
        ..HostConfig::natron()
    };
    let h = start(cfg);
    let inst = instance(&h, &project());
    let fo = inst.render_frame(2, &RenderOpts::default());
    check_ok(&h, &fo, "no progress suite");
    assert!(
        h.state.progress_events().is_empty(),
        "progress reported without a progress suite"
    );
    inst.set("modelFile", "/nonexistent-vdiff-dir/model.safetensors");
    let fo = inst.render_frame(2, &RenderOpts::default().no_identity());
    check_passed_through(&h, &inst, &fo, "a missing model without message suite v2");
    let msgs = h.state.messages();
    assert!(
        msgs.iter().any(|m| m.kind == MessageKind::Message
            && m.mtype == "OfxMessageError"
            && m.text.contains("/nonexistent-vdiff-dir/model.safetensors")),
        "without message suite v2 the error goes through message(): {msgs:#?}"
    );
    assert!(
        msgs.iter().all(|m| m.kind == MessageKind::Message),
        "v2 calls without a v2 suite: {msgs:#?}"
    );
    inst.destroy();
    finish_clean(h);
}

/// MLT (instance per frame, Load again without Unload, negative row bytes, no temporal access,
/// parameters at the current frame only) gives what a temporal host gives with radius 0.
fn mlt_matches_single_frame_renders(depth: Depth) {
    let keys = [(0.0, PVal::from(0.1)), (4.0, PVal::from(0.5))];
    let p = project().keys("strength", &keys);
    let frames = [0i64, 2, 3];
    let cfg = HostConfig {
        native_depth: depth,
        ..HostConfig::mlt()
    };
    let h = start(cfg);
    let out = h
        .render_frames(&p, &frames, 2, &RenderOpts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let again = h
        .render_frames(&p, &frames, 1, &RenderOpts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    for (a, b) in out.iter().zip(&again) {
        check_ok(&h, a, "MLT frame");
        assert_eq!(
            a.image.row_bytes(),
            -(W * 4 * depth.bytes() as i32),
            "MLT row bytes are negative"
        );
        assert_eq!(a.image.depth, DepthSpec::Known(depth));
        same(
            &format!("MLT {depth:?} frame {} re-rendered", a.t),
            a,
            b,
            FULL,
        );
    }
    let st = h.finish();
    st.assert_clean();
    let n = 1 + 2 * frames.len();
    assert_eq!(
        st.count_action("OfxActionLoad"),
        n,
        "MLT loads again for every instance"
    );
    assert_eq!(st.count_action("OfxImageEffectActionDescribeInContext"), n);
    assert_eq!(
        st.count_action("OfxActionUnload"),
        1,
        "MLT unloads once, after detection"
    );
    for never in [
        "OfxImageEffectActionGetFramesNeeded",
        "OfxImageEffectActionIsIdentity",
        "OfxActionInstanceChanged",
    ] {
        assert_eq!(st.count_action(never), 0, "MLT never sends {never}");
    }

    let cfg = HostConfig {
        native_depth: depth,
        ..HostConfig::natron()
    };
    let h = start(cfg);
    let inst = instance(&h, &p.clone().set("temporalRadius", 0));
    assert_eq!(inst.output_format().0, DepthSpec::Known(depth));
    for a in &out {
        let r = inst.render_frame(a.t, &RenderOpts::default().no_identity());
        check_ok(&h, &r, "single-frame reference");
        same(
            &format!(
                "MLT {depth:?} frame {} vs a radius-0 render with positive row bytes",
                a.t
            ),
            a,
            &r,
            FULL,
        );
    }
    inst.destroy();
    finish_clean(h);
}

#[test]
fn mlt_byte_frames_match_single_frame_renders() {
    mlt_matches_single_frame_renders(Depth::Byte);
}

#[test]
fn mlt_short_frames_match_single_frame_renders() {
    mlt_matches_single_frame_renders(Depth::Short);
}

#[test]
fn mlt_no_temporal_access_message_is_emitted_once() {
    // A host identity of its own gives a fresh plugin copy: the note is once per process.
    let cfg = HostConfig {
        version: [7, 41, 1],
        ..HostConfig::mlt()
    };
    let h = start(cfg);
    let out = h
        .render_frames(&project(), &[1, 2, 3], 1, &RenderOpts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    for fo in &out {
        check_ok(&h, fo, "MLT");
    }
    let st = h.finish();
    st.assert_clean();
    let notes: Vec<_> = st
        .messages()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Message && m.text.to_lowercase().contains("temporal"))
        .collect();
    assert_eq!(
        notes.len(),
        1,
        "expected one no-temporal-access message, got {notes:#?}\n{}",
        st.dump()
    );
}

#[test]
fn resolve_float_rgba_full_frames() {
    let h = start(HostConfig::resolve());
    let p = project().set("temporalRadius", 2);
    let inst = instance(&h, &p);
    assert_eq!(
        inst.output_format(),
        (DepthSpec::Known(Depth::Float), Comps::Rgba)
    );
    let frames: Vec<i64> = (0..6).collect();
    let handled = |s: OfxStatus| s == kOfxStatOK || s == kOfxStatReplyDefault;
    assert!(
        handled(inst.begin_sequence(0.0, 5.0)),
        "BeginSequenceRender([0, 5])"
    );
    let out = inst.render_frames(&frames, 1, &RenderOpts::default().no_sequence());
    assert!(
        handled(inst.end_sequence(0.0, 5.0)),
        "EndSequenceRender([0, 5])"
    );
    for fo in &out {
        check_ok(&h, fo, "Resolve frame");
        assert_eq!(fo.window, FULL);
    }
    let (_, ranges) = inst.frames_needed(3.0);
    assert!(
        ranges.chunks(2).any(|r| r[0] <= 1.0 && 5.0 <= r[1]),
        "radius 2 at t=3 needs 1..5: {ranges:?}"
    );
    inst.purge_caches();
    inst.destroy();
    let fresh = instance(&h, &p);
    let order = [4i64, 0, 5, 2];
    let again = by_time(fresh.render_frames(&order, 2, &RenderOpts::default()));
    for t in order {
        same(
            &format!("Resolve frame {t} on a fresh instance"),
            &out[t as usize],
            &again[&t],
            FULL,
        );
    }
    fresh.destroy();
    finish_clean(h);
}

#[test]
fn natron_tiled_and_resolve_full_frame_agree() {
    let keys = [(0.0, PVal::from(0.2)), (8.0, PVal::from(0.6))];
    let p = project()
        .set("temporalRadius", 2)
        .set("tileSize", 64)
        .keys("strength", &keys);
    let frames = [2i64, 5];
    let h = start(HostConfig::natron());
    let inst = instance(&h, &p);
    let mut natron = Vec::new();
    for &t in &frames {
        let pieces = [
            Rect::new(0, 0, 50, 64),
            Rect::new(50, 0, 96, 40),
            Rect::new(50, 40, 96, 64),
        ];
        let mut parts = Vec::new();
        for w in pieces {
            let fo = inst.render_frame(t, &RenderOpts::default().window(w).strips(2));
            check_ok(&h, &fo, "Natron tile");
            parts.push(fo);
        }
        natron.push((t, parts, pieces));
    }
    inst.destroy();
    finish_clean(h);

    let h = start(HostConfig::resolve());
    let inst = instance(&h, &p);
    for (t, parts, pieces) in &natron {
        let full = inst.render_frame(*t, &RenderOpts::default());
        check_ok(&h, &full, "Resolve frame");
        for (part, w) in parts.iter().zip(pieces) {
            same(
                &format!("frame {t}, Natron tile {w} vs Resolve full frame"),
                part,
                &full,
                *w,
            );
        }
    }
    inst.destroy();
    finish_clean(h);
}

#[test]
fn nuke_bands_on_a_long_lived_instance_match_full_frames() {
    let p = project().set("temporalRadius", 1).set("tileSize", 64);
    let h = start(HostConfig::nuke());
    let inst = instance(&h, &p);
    assert_eq!(
        inst.output_format(),
        (DepthSpec::Known(Depth::Float), Comps::Rgba)
    );
    // Nuke asks for horizontal bands, not in frame order, and comes back to frames it has
    // rendered before on the same instance.
    let bands = [
        Rect::new(0, 40, 96, 64),
        Rect::new(0, 0, 96, 20),
        Rect::new(0, 20, 96, 40),
    ];
    let mut nuke = Vec::new();
    for t in [3i64, 1, 3] {
        let mut parts = Vec::new();
        for w in bands {
            let fo = inst.render_frame(t, &RenderOpts::default().window(w).strips(2));
            check_ok(&h, &fo, "Nuke band");
            parts.push(fo);
        }
        nuke.push((t, parts));
    }
    for (w, (a, b)) in bands.iter().zip(nuke[0].1.iter().zip(&nuke[2].1)) {
        same("frame 3 rendered again on the same instance", a, b, *w);
    }
    inst.destroy();
    finish_clean(h);

    let h = start(HostConfig::resolve());
    let inst = instance(&h, &p);
    for (t, parts) in &nuke[..2] {
        let full = inst.render_frame(*t, &RenderOpts::default());
        check_ok(&h, &full, "Resolve frame");
        for (part, w) in parts.iter().zip(&bands) {
            same(
                &format!("frame {t}, Nuke band {w} vs a full frame"),
                part,
                &full,
                *w,
            );
        }
    }
    inst.destroy();
    finish_clean(h);
}

/// A frame the plugin could not denoise (a bad Model File) and passed through unchanged, so
/// that a batch render still finishes (Natron abandons the whole render when a frame fails).
fn check_passed_through(h: &Host, inst: &Instance<'_>, fo: &FrameOut, what: &str) {
    check_ok(h, fo, what);
    assert_eq!(
        pixels_f32(fo),
        source_f32(inst, fo.t, fo.window),
        "{what}: the frame was not passed through unchanged"
    );
}

#[test]
fn missing_model_file_is_reported_and_recoverable() {
    let dir = temp_dir("missing-model");
    let missing = dir.join("no-such-model.safetensors");
    let valid = dir.join("tiny.safetensors");
    write_tiny_model(&valid);
    let h = start(HostConfig::natron());
    let inst = instance(&h, &project());
    inst.set("modelFile", missing.to_str().unwrap());
    let fo = inst.render_frame(3, &RenderOpts::default().no_identity());
    check_passed_through(&h, &inst, &fo, "render with a missing model file");
    let (kind, text) = inst
        .persistent_message()
        .unwrap_or_else(|| panic!("no persistent message\n{}", h.state.dump()));
    assert_eq!(kind, "OfxMessageError");
    assert!(
        text.contains("no-such-model.safetensors"),
        "message does not name the file: {text}"
    );

    inst.set("modelFile", "");
    let fo = inst.render_frame(3, &RenderOpts::default());
    check_ok(&h, &fo, "back to the built-in model");
    assert_eq!(
        inst.persistent_message(),
        None,
        "the error message stayed after the fix"
    );

    inst.set("modelFile", valid.to_str().unwrap());
    let fo = inst.render_frame(3, &RenderOpts::default());
    check_ok(&h, &fo, "a valid model file");
    assert_eq!(inst.persistent_message(), None);
    inst.destroy();
    finish_clean(h);

    // MLT sends no InstanceChanged: the render itself reports, and the next frame recovers.
    let h = start(HostConfig::mlt());
    let bad = project().set("modelFile", missing.to_str().unwrap());
    let out = h
        .render_frames(&bad, &[2], 1, &RenderOpts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    check_ok(&h, &out[0], "MLT render with a missing model");
    let named = h
        .state
        .messages()
        .iter()
        .any(|m| m.mtype == "OfxMessageError" && m.text.contains("no-such-model.safetensors"));
    assert!(
        named,
        "MLT: no error message naming the file\n{}",
        h.state.dump()
    );
    let out = h
        .render_frames(&project(), &[2], 1, &RenderOpts::default())
        .unwrap_or_else(|e| panic!("{e}"));
    check_ok(&h, &out[0], "MLT after the fix");
    finish_clean(h);
}

#[test]
fn truncated_and_wrong_shape_model_files_are_reported_and_passed_through() {
    let dir = temp_dir("bad-models");
    let valid = dir.join("tiny.safetensors");
    write_tiny_model(&valid);
    let bytes = std::fs::read(&valid).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let wrong = dir.join("wrong-shapes.safetensors");
    write_wrong_shape_model(&valid, &wrong);

    let h = start(HostConfig::natron());
    let inst = instance(&h, &project());
    for bad in [&truncated, &wrong] {
        let name = bad.file_name().unwrap().to_string_lossy().into_owned();
        inst.set("modelFile", bad.to_str().unwrap());
        let fo = inst.render_frame(4, &RenderOpts::default().no_identity());
        check_passed_through(&h, &inst, &fo, &format!("render with {name}"));
        let (_, text) = inst
            .persistent_message()
            .unwrap_or_else(|| panic!("no message for {name}\n{}", h.state.dump()));
        assert!(
            text.contains(&name),
            "the message for {name} does not name it: {text}"
        );
        assert_eq!(
            h.state.images_fetched(),
            h.state.images_released(),
            "{name}: images leaked"
        );
        inst.set("modelFile", "");
        let fo = inst.render_frame(4, &RenderOpts::default());
        check_ok(&h, &fo, &format!("after {name}"));
    }
    inst.destroy();
    finish_clean(h);
}

#[test]
fn nan_source_pixels_give_finite_output() {
    let mut f = footage();
    f.nan_pixels = vec![
        (3, 10, 10),
        (4, 0, 0),
        (4, 50, 30),
        (4, 95, 63),
        (5, 40, 20),
    ];
    let p = Project {
        footage: std::sync::Arc::new(f),
        ..project()
    };
    let h = start(HostConfig::natron());
    let inst = instance(&h, &p);
    let fo = inst.render_frame(4, &RenderOpts::default());
    check_ok(&h, &fo, "NaN in the source");
    let w = Rect::new(30, 10, 70, 40);
    let part = inst.render_frame(4, &RenderOpts::default().window(w).sentinel(9));
    check_ok(&h, &part, "NaN in the source, window");
    same("NaN source: window vs frame", &fo, &part, w);
    // Mix 0 passes the source through: the NaNs must not reach the output either.
    inst.set("mix", 0.0);
    let passed = inst.render_frame(4, &RenderOpts::default().no_identity());
    check_ok(&h, &passed, "mix 0 over NaN pixels");
    inst.destroy();
    finish_clean(h);
}

#[test]
fn zero_sized_render_window_is_harmless() {
    let h = start(HostConfig::natron());
    let inst = instance(&h, &project());
    for w in [Rect::new(10, 10, 10, 10), Rect::new(0, 5, 96, 5)] {
        let fo = inst.render_frame(2, &RenderOpts::default().window(w).sentinel(0x66));
        assert!(
            fo.status == kOfxStatOK || fo.status == kOfxStatFailed,
            "empty window {w}: {}\n{}",
            status_name(fo.status),
            h.state.dump()
        );
        if let Err(e) = fo
            .image
            .check_untouched_outside(Rect::new(0, 0, 0, 0), 0x66)
        {
            panic!("empty window {w} wrote pixels: {e}");
        }
        // Nothing to render is not a failure to show the user.
        assert_eq!(
            inst.persistent_message(),
            None,
            "empty window {w} left an error message\n{}",
            h.state.dump()
        );
    }
    let fo = inst.render_frame(2, &RenderOpts::default());
    check_ok(&h, &fo, "after empty windows");
    inst.destroy();
    finish_clean(h);
}

#[test]
fn unsupported_pixel_depth_is_refused_without_leaks() {
    let cfg = HostConfig {
        forced_depth: Some("OfxBitDepthWeird".into()),
        ..HostConfig::natron()
    };
    let h = start(cfg);
    let inst = instance(&h, &project());
    let fo = inst.render_frame(3, &RenderOpts::default().no_identity());
    assert!(
        [
            kOfxStatErrUnsupported,
            kOfxStatFailed,
            kOfxStatErrImageFormat
        ]
        .contains(&fo.status),
        "an undeclared depth gave {}\n{}",
        status_name(fo.status),
        h.state.dump()
    );
    assert!(
        inst.persistent_message().is_some(),
        "no message for an unsupported depth\n{}",
        h.state.dump()
    );
    inst.destroy();
    finish_clean(h);

    // Half is declared: a host handing Half images (MLT's 16-bit path) is served.
    let cfg = HostConfig {
        forced_depth: Some("OfxBitDepthHalf".into()),
        ..HostConfig::natron()
    };
    let h = start(cfg);
    let inst = instance(&h, &project());
    let fo = inst.render_frame(3, &RenderOpts::default());
    check_ok(&h, &fo, "Half images");
    inst.destroy();
    finish_clean(h);
}

#[test]
fn host_abort_stops_the_render_without_leaks_or_stale_cache() {
    let h = start(HostConfig::natron());
    let p = project().set("seed", 4242).set("steps", 3);
    let inst = instance(&h, &p);
    h.state.set_abort_after(Some(1));
    let fo = inst.render_frame(6, &RenderOpts::default());
    assert_eq!(
        fo.status,
        kOfxStatFailed,
        "a render the host aborted after its first progress update returned {}\n{}",
        status_name(fo.status),
        h.state.dump()
    );
    let updates = h
        .state
        .progress_events()
        .iter()
        .filter(|e| matches!(e, ProgressEvent::Update(_)))
        .count();
    assert!(
        updates >= 1,
        "the plugin reported no progress before stopping"
    );
    assert_eq!(
        h.state.images_fetched(),
        h.state.images_released(),
        "aborted render leaked images"
    );
    let errors = h
        .state
        .messages()
        .into_iter()
        .filter(|m| m.mtype == "OfxMessageError")
        .count();
    assert_eq!(
        errors,
        0,
        "an abort is not an error to show\n{}",
        h.state.dump()
    );
    h.state.set_abort_after(None);
    let after = inst.render_frame(6, &RenderOpts::default());
    check_ok(&h, &after, "after the abort");
    inst.purge_caches();
    let clean = inst.render_frame(6, &RenderOpts::default().sentinel(3));
    same(
        "render after an abort vs after purging the caches",
        &after,
        &clean,
        FULL,
    );
    let ev = h.state.progress_events();
    let starts = ev
        .iter()
        .filter(|e| matches!(e, ProgressEvent::Start(_)))
        .count();
    let ends = ev.iter().filter(|e| **e == ProgressEvent::End).count();
    assert_eq!(
        starts, ends,
        "progress started {starts} times, ended {ends}"
    );
    inst.destroy();
    finish_clean(h);
}

/// The plugin binary holds the render path and nothing of the command line: image file
/// formats, argument parsing, progress bars, training and benchmarks stay in `vdiff`.
#[test]
fn plugin_binary_links_no_command_line_code() {
    let plugin = crate::host::plugin::plugin_path().expect("the built plugin");
    let out = std::process::Command::new("nm")
        .arg("-C")
        .arg(&plugin)
        .output()
        .expect("nm (binutils) reads the plugin's symbol table");
    assert!(out.status.success(), "nm {}", plugin.display());
    let symbols = String::from_utf8_lossy(&out.stdout);
    // The render path is there (so an empty or stripped table cannot pass)...
    for needed in ["vdiff::engine", "vdiff::model", "vdiff::effect"] {
        assert!(
            symbols.contains(needed),
            "no {needed} symbols in {}",
            plugin.display()
        );
    }
    // ...and the command line's crates and modules are not.
    for cli in [
        "exr::",
        "image::codecs",
        "png::",
        "tiff::",
        "clap_builder::",
        "indicatif::",
        "vdiff::imageio",
        "vdiff::sequence",
        "vdiff::metrics",
        "vdiff::bench",
        "vdiff::bundle",
        "vdiff::train",
    ] {
        let n = symbols.lines().filter(|l| l.contains(cli)).count();
        assert_eq!(n, 0, "the plugin links {n} symbols of {cli}");
    }
}

/// The plugin's kOfxImageEffectPropCudaRenderSupported, as described ("false" where unset).
fn declared_cuda_render(inst: &Instance<'_>) -> String {
    use openfx::sys::image_effect_v1::gpu_render::kOfxImageEffectPropCudaRenderSupported;
    inst.effect
        .props
        .str(kOfxImageEffectPropCudaRenderSupported, 0)
        .unwrap_or_else(|| "false".into())
}

/// Resolve with OFX 1.5 CUDA render offered.
fn resolve_cuda() -> HostConfig {
    HostConfig {
        cuda_render: CudaRender::Offered,
        ..HostConfig::resolve()
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn a_build_without_cuda_declines_cuda_render_and_renders_from_host_memory() {
    let p = project().set("temporalRadius", 2);
    let frames = [1i64, 4];
    let h = start(resolve_cuda());
    let inst = instance(&h, &p);
    assert_eq!(declared_cuda_render(&inst), "false");
    let offered = by_time(inst.render_frames(&frames, 1, &RenderOpts::default()));
    inst.destroy();
    finish_clean(h);
    let h = start(HostConfig::resolve());
    let inst = instance(&h, &p);
    let plain = by_time(inst.render_frames(&frames, 1, &RenderOpts::default()));
    for t in frames {
        check_ok(&h, &offered[&t], "Resolve offering CUDA render");
        same(&format!("frame {t}"), &offered[&t], &plain[&t], FULL);
    }
    inst.destroy();
    finish_clean(h);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_images_forced_on_a_build_without_cuda_are_refused_unread() {
    // A host that sets kOfxImageEffectPropCudaEnabled although the plugin never declared CUDA
    // render: its pointers may be device memory, so the render fails with a message and writes
    // nothing (here they are host memory, so a plugin that read them would pass unnoticed).
    let h = start(HostConfig {
        cuda_render: CudaRender::Forced,
        ..HostConfig::resolve()
    });
    let inst = instance(&h, &project());
    let fo = inst.render_frame(3, &RenderOpts::default().sentinel(0x5D));
    assert_eq!(
        fo.status,
        kOfxStatFailed,
        "render with forced CUDA images: {}",
        status_name(fo.status)
    );
    if let Err(e) = fo
        .image
        .check_untouched_outside(Rect::new(0, 0, 0, 0), 0x5D)
    {
        panic!("the output was written: {e}");
    }
    let said = h
        .state
        .messages()
        .iter()
        .any(|m| m.mtype == "OfxMessageError" && m.text.contains("CUDA"));
    assert!(said, "no error message about CUDA\n{}", h.state.dump());
    inst.destroy();
    let st = h.finish();
    assert_eq!(st.images_fetched(), st.images_released());
}

/// With a GPU: the host hands float device images and its stream; the plugin renders on the
/// device and writes the output device to device. The frames are the bytes a host memory render
/// writes, in any order and on several threads, also with top-down rows at a negative pitch and
/// padded rows. Without a GPU there is nothing to run: the test says so and passes.
#[cfg(feature = "cuda")]
#[test]
fn cuda_render_writes_the_bytes_of_a_host_memory_render() {
    if crate::host::cuda::Gpu::shared().is_none() {
        let h = start(resolve_cuda());
        let inst = instance(&h, &project());
        assert_eq!(declared_cuda_render(&inst), "true");
        eprintln!("no CUDA GPU here: the CUDA render profile did not run");
        inst.destroy();
        finish_clean(h);
        return;
    }
    let p = project().set("temporalRadius", 2);
    let frames: Vec<i64> = (0..6).collect();
    let h = start(HostConfig::resolve());
    let inst = instance(&h, &p);
    let cpu = by_time(inst.render_frames(&frames, 1, &RenderOpts::default()));
    inst.destroy();
    finish_clean(h);
    let layouts = [
        resolve_cuda(),
        HostConfig {
            row_order: crate::host::config::RowOrder::TopDownNegative,
            row_padding: 24,
            ..resolve_cuda()
        },
    ];
    for config in layouts {
        let what = format!("CUDA render, rows {:?}", config.row_order);
        let h = start(config);
        let inst = instance(&h, &p);
        assert_eq!(declared_cuda_render(&inst), "true");
        let order = [4i64, 0, 5, 2, 1, 3];
        let gpu = by_time(inst.render_frames(&order, 2, &RenderOpts::default().sentinel(0x42)));
        for &t in &frames {
            check_ok(&h, &gpu[&t], &what);
            same(&format!("{what}, frame {t}"), &gpu[&t], &cpu[&t], FULL);
        }
        inst.destroy();
        finish_clean(h);
    }
}

//! Engine contract tests on a tiny model: identity, order, window and thread independence,
//! per-frame parameters, shot bounds, the cache, aborts and bad pixels.
use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use super::plan::chunks_for;
use super::*;
use crate::sampling::noise::gaussian;
use crate::sampling::SamplerKind;

pub(crate) fn tiny_model() -> Arc<crate::model::Model> {
    crate::model::test_support::tiny_model(7)
}

/// A synthetic moving clip: smooth content drifting one pixel a frame, plus fixed-seed noise.
struct Clip {
    params: Box<dyn Fn(i64) -> FrameParams + Send + Sync>,
    fetched: Mutex<Vec<(i64, Rect)>>,
    /// (frame, value added everywhere): an upstream edit.
    edit: Mutex<Option<(i64, f32)>>,
    /// (x, y, value) planted in every frame.
    plant: Option<(i64, i64, f32)>,
}

const W: i64 = 96;
const H: i64 = 72;
const BOUNDS: Rect = Rect::new(0, 0, W, H);
const SHOT: Shot = Shot { first: 0, last: 7 };

impl Clip {
    fn new(params: impl Fn(i64) -> FrameParams + Send + Sync + 'static) -> Self {
        Clip {
            params: Box::new(params),
            fetched: Mutex::new(Vec::new()),
            edit: Mutex::new(None),
            plant: None,
        }
    }
    fn noisy() -> Self {
        Clip::new(|_| FrameParams {
            noise_level: 0.05,
            strength: 0.2,
            detail: 0.3,
            smoothing: 0.5,
            mix: 1.0,
        })
    }
    fn pixel(&self, t: i64, x: i64, y: i64, c: u32) -> f32 {
        let u = (x + t) as f32 / W as f32;
        let v = y as f32 / H as f32;
        let base = 0.5 + 0.3 * (6.0 * u).sin() * (4.0 * v).cos() + 0.05 * c as f32;
        let edit = match *self.edit.lock() {
            Some((f, d)) if f == t => d,
            _ => 0.0,
        };
        match self.plant {
            Some((px, py, val)) if px == x && py == y => val,
            _ => base + 0.05 * gaussian(1234, t, c, x, y, 0) + edit,
        }
    }
}

impl Frames for Clip {
    fn fetch(&self, t: i64, rect: Rect) -> crate::Result<RgbImage> {
        self.fetched.lock().push((t, rect));
        let mut img = RgbImage::new(rect);
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                let o = img.offset(x, y);
                for c in 0..3 {
                    img.data[o + c] = self.pixel(t, x, y, c as u32);
                }
            }
        }
        Ok(img)
    }
    fn params(&self, t: i64) -> FrameParams {
        (self.params)(t)
    }
}

fn settings() -> Settings {
    Settings {
        model: tiny_model(),
        sampler: SamplerKind::DpmPp2m,
        steps: 2,
        seed: 5,
        radius: 1,
        tile_size: 64,
        render_scale: 1.0,
        clipping: NoiseClipping::Auto,
    }
}

fn request(t: i64, window: Rect) -> Request {
    Request {
        t,
        window,
        bounds: BOUNDS,
        shot: SHOT,
        settings: settings(),
    }
}

fn render_on(cache: &ChunkCache, clip: &Clip, t: i64, window: Rect) -> RgbImage {
    render_with(cache, &request(t, window), clip, &NoControl).expect("render")
}

fn bits(img: &RgbImage) -> Vec<u32> {
    img.data.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn identity_at_zero_strength_and_noise_runs_no_model() {
    let clip = Clip::new(|_| FrameParams {
        noise_level: 0.0,
        strength: 0.0,
        detail: 0.5,
        smoothing: 0.5,
        mix: 1.0,
    });
    let cache = ChunkCache::new(1 << 30);
    for t in [0, 3, 7] {
        let out = render_on(&cache, &clip, t, BOUNDS);
        assert_eq!(out, clip.fetch(t, BOUNDS).unwrap(), "frame {t}");
    }
    let mix0 = Clip::new(|_| FrameParams {
        mix: 0.0,
        ..FrameParams::default()
    });
    assert_eq!(
        render_on(&cache, &mix0, 2, BOUNDS),
        mix0.fetch(2, BOUNDS).unwrap()
    );
    assert_eq!(cache.stats().computed, 0);
}

#[test]
fn denoising_changes_the_frame_and_stays_finite() {
    let clip = Clip::noisy();
    let out = render_on(&ChunkCache::new(1 << 30), &clip, 3, BOUNDS);
    let src = clip.fetch(3, BOUNDS).unwrap();
    assert!(out.data.iter().all(|v| v.is_finite()));
    let diff: f32 = out
        .data
        .iter()
        .zip(&src.data)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / src.data.len() as f32;
    assert!(diff > 1e-3, "output equals the source (mean |diff| {diff})");
}

#[test]
fn render_order_does_not_matter() {
    let clip = Clip::noisy();
    let ascending: Vec<i64> = (0..8).collect();
    let descending: Vec<i64> = (0..8).rev().collect();
    let shuffled = vec![5, 0, 7, 2, 6, 1, 4, 3];
    let run = |order: &[i64]| {
        let cache = ChunkCache::new(1 << 30);
        let mut out: Vec<(i64, Vec<u32>)> = order
            .iter()
            .map(|&t| (t, bits(&render_on(&cache, &clip, t, BOUNDS))))
            .collect();
        out.sort_by_key(|(t, _)| *t);
        out
    };
    let a = run(&ascending);
    assert_eq!(a, run(&descending));
    assert_eq!(a, run(&shuffled));
    // And a cold cache for every frame gives the same bytes as reuse.
    for (t, b) in &a {
        assert_eq!(
            &bits(&render_on(&ChunkCache::new(1 << 30), &clip, *t, BOUNDS)),
            b,
            "frame {t}"
        );
    }
}

#[test]
fn render_window_does_not_matter() {
    let clip = Clip::noisy();
    let full = render_on(&ChunkCache::new(1 << 30), &clip, 4, BOUNDS);
    let quadrants = [
        Rect::new(0, 0, W / 2, H / 2),
        Rect::new(W / 2, 0, W, H / 2),
        Rect::new(0, H / 2, W / 2, H),
        Rect::new(W / 2, H / 2, W, H),
    ];
    for window in quadrants
        .into_iter()
        .chain([Rect::new(13, 7, 50, 41), Rect::new(95, 71, 96, 72)])
    {
        let part = render_on(&ChunkCache::new(1 << 30), &clip, 4, window);
        assert_eq!(part.rect, window);
        assert_part_of(&part, &full);
    }
}

/// Every pixel of `part` has the bytes of the same pixel of `whole`.
fn assert_part_of(part: &RgbImage, whole: &RgbImage) {
    let window = part.rect;
    for y in window.y0..window.y1 {
        for x in window.x0..window.x1 {
            for c in 0..3 {
                let (a, b) = (
                    part.data[part.offset(x, y) + c],
                    whole.data[whole.offset(x, y) + c],
                );
                assert_eq!(a.to_bits(), b.to_bits(), "{window:?} at ({x},{y},{c})");
            }
        }
    }
}

#[test]
fn threads_match_sequential_and_compute_each_chunk_once() {
    let clip = Arc::new(Clip::noisy());
    let sequential: Vec<Vec<u32>> = {
        let cache = ChunkCache::new(1 << 30);
        (0..8)
            .map(|t| bits(&render_on(&cache, &clip, t, BOUNDS)))
            .collect()
    };
    let cache = Arc::new(ChunkCache::new(1 << 30));
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let (cache, clip) = (cache.clone(), clip.clone());
            std::thread::spawn(move || {
                // Each thread asks every frame, in its own pseudo-random order.
                let mut order: Vec<i64> = (0..8).collect();
                order.sort_by_key(|&t| gaussian(i, t, 0, 0, 0, 9).to_bits());
                order
                    .into_iter()
                    .map(|t| (t, bits(&render_on(&cache, &clip, t, BOUNDS))))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for (t, b) in h.join().expect("thread") {
            assert_eq!(b, sequential[t as usize], "frame {t}");
        }
    }
    let chunks: HashSet<i64> = (0..8)
        .flat_map(|t| chunks_for(t, 1, SHOT))
        .map(|c| c.index)
        .collect();
    let tiles = TileGrid::new(64).tiles_for(BOUNDS, BOUNDS).len();
    assert_eq!(cache.stats().computed, chunks.len() * tiles);
}

#[test]
fn per_frame_parameters_are_honoured_inside_a_window() {
    // Strength keyed to zero at frame 2 (with no footage noise): that frame is untouched while
    // its neighbours, sharing its windows, are denoised.
    let clip = Clip::new(|t| FrameParams {
        noise_level: if t == 2 { 0.0 } else { 0.04 },
        strength: if t == 2 { 0.0 } else { 0.1 * t as f32 },
        detail: 0.0,
        smoothing: 0.5,
        mix: 1.0,
    });
    let cache = ChunkCache::new(1 << 30);
    assert_eq!(
        render_on(&cache, &clip, 2, BOUNDS),
        clip.fetch(2, BOUNDS).unwrap()
    );
    assert_ne!(
        render_on(&cache, &clip, 3, BOUNDS),
        clip.fetch(3, BOUNDS).unwrap()
    );
    // A neighbour's strength changes frame 3's result: windows read every frame's parameters.
    let other = Clip::new(|t| FrameParams {
        noise_level: if t == 2 { 0.0 } else { 0.04 },
        strength: if t == 2 {
            0.0
        } else if t == 4 {
            0.9
        } else {
            0.1 * t as f32
        },
        detail: 0.0,
        smoothing: 0.5,
        mix: 1.0,
    });
    assert_ne!(
        bits(&render_on(&cache, &clip, 3, BOUNDS)),
        bits(&render_on(&cache, &other, 3, BOUNDS))
    );
}

#[test]
fn windows_never_read_outside_the_shot() {
    let clip = Clip::noisy();
    let cache = ChunkCache::new(1 << 30);
    for t in [0, 7] {
        render_on(&cache, &clip, t, BOUNDS);
    }
    for (t, r) in clip.fetched.lock().iter() {
        assert!((SHOT.first..=SHOT.last).contains(t), "fetched frame {t}");
        assert!(BOUNDS.contains(r));
    }
}

#[test]
fn cache_budget_purge_and_stale_sources() {
    let clip = Clip::noisy();
    let cache = ChunkCache::new(1 << 30);
    let first = render_on(&cache, &clip, 3, BOUNDS);
    let computed = cache.stats().computed;
    // Same request again: served from the cache.
    assert_eq!(render_on(&cache, &clip, 3, BOUNDS), first);
    assert_eq!(cache.stats().computed, computed);
    // An upstream edit of a neighbour inside the window is recomputed, not served stale.
    *clip.edit.lock() = Some((4, 0.1));
    let edited = render_on(&cache, &clip, 3, BOUNDS);
    assert!(cache.stats().computed > computed);
    assert_ne!(edited, first);
    // Purge frees every byte.
    assert!(cache.stats().bytes > 0);
    cache.purge();
    assert_eq!(cache.stats().bytes, 0);
    // A small budget holds across a whole shot.
    let one_chunk_tile = 3 * 3 * 64 * 64 * 4;
    let small = ChunkCache::new(2 * one_chunk_tile);
    for t in 0..8 {
        render_on(&small, &clip, t, BOUNDS);
        assert!(
            small.stats().bytes <= 2 * one_chunk_tile,
            "{:?}",
            small.stats()
        );
    }
}

#[test]
fn the_same_weights_in_another_precision_get_chunks_of_their_own() {
    let clip = Clip::noisy();
    let cache = ChunkCache::new(1 << 30);
    let half = crate::model::test_support::try_tiny_model_as(7, candle_core::DType::F16)
        .expect("f16 model");
    assert_eq!(half.id(), tiny_model().id());
    let with = |model: &Arc<crate::model::Model>, cache: &ChunkCache| {
        let mut req = request(3, BOUNDS);
        req.settings.model = model.clone();
        render_with(cache, &req, &clip, &NoControl).expect("render")
    };
    let f32_first = render_on(&cache, &clip, 3, BOUNDS);
    let computed = cache.stats().computed;
    // The f16 model computes its own chunks, and gives what it gives in a cache of its own.
    let f16 = with(&half, &cache);
    assert!(cache.stats().computed > computed, "{:?}", cache.stats());
    assert_eq!(bits(&f16), bits(&with(&half, &ChunkCache::new(1 << 30))));
    assert_ne!(bits(&f16), bits(&f32_first));
    // And the f32 chunks are still there, unchanged.
    let computed = cache.stats().computed;
    assert_eq!(bits(&render_on(&cache, &clip, 3, BOUNDS)), bits(&f32_first));
    assert_eq!(cache.stats().computed, computed);
}

#[test]
fn abort_stops_and_caches_nothing() {
    struct Abort;
    impl Control for Abort {
        fn aborted(&self) -> bool {
            true
        }
    }
    let clip = Clip::noisy();
    let cache = ChunkCache::new(1 << 30);
    let r = render_with(&cache, &request(3, BOUNDS), &clip, &Abort);
    assert!(matches!(r, Err(crate::Error::Aborted)), "{r:?}");
    assert_eq!(cache.stats().entries, 0);
    render_on(&cache, &clip, 3, BOUNDS);
}

#[test]
fn bad_pixels_never_spread_and_hdr_survives() {
    let mut nan = Clip::noisy();
    nan.plant = Some((30, 30, f32::NAN));
    let out = render_on(&ChunkCache::new(1 << 30), &nan, 3, BOUNDS);
    assert!(out.data.iter().all(|v| v.is_finite()));
    let mut inf = Clip::noisy();
    inf.plant = Some((30, 30, f32::INFINITY));
    assert!(render_on(&ChunkCache::new(1 << 30), &inf, 3, BOUNDS)
        .data
        .iter()
        .all(|v| v.is_finite()));
    let mut hdr = Clip::noisy();
    hdr.plant = Some((10, 10, 8.0));
    let out = render_on(&ChunkCache::new(1 << 30), &hdr, 3, BOUNDS);
    let v = out.data[out.offset(10, 10)];
    assert!(v > 6.0, "highlight lost: {v}");
}

#[test]
fn bad_settings_are_errors() {
    let clip = Clip::noisy();
    let mut req = request(3, BOUNDS);
    req.settings.steps = 0;
    assert!(matches!(
        render(&req, &clip, &NoControl),
        Err(crate::Error::Param { .. })
    ));
    let mut req = request(3, BOUNDS);
    req.settings.render_scale = f64::NAN;
    assert!(render(&req, &clip, &NoControl).is_err());
    // An empty window is not an error: nothing to do.
    let r = render(&request(3, Rect::new(5, 5, 5, 9)), &clip, &NoControl).unwrap();
    assert!(r.data.is_empty());
}

/// A dark, flat clip whose noise was clipped at black, as an 8-bit file stores it.
struct DarkClip;

impl Frames for DarkClip {
    fn fetch(&self, t: i64, rect: Rect) -> crate::Result<RgbImage> {
        let mut img = RgbImage::new(rect);
        for y in rect.y0..rect.y1 {
            for x in rect.x0..rect.x1 {
                let o = img.offset(x, y);
                for c in 0..3 {
                    let z = gaussian(77, t, c as u32, x, y, 0);
                    img.data[o + c] = (0.02 + 0.05 * z).clamp(0.0, 1.0);
                }
            }
        }
        Ok(img)
    }
    fn params(&self, _t: i64) -> FrameParams {
        FrameParams {
            noise_level: 0.05,
            ..FrameParams::default()
        }
    }
}

fn mean(img: &RgbImage) -> f64 {
    img.data.iter().map(|&v| v as f64).sum::<f64>() / img.data.len() as f64
}

#[test]
fn clipped_noise_is_corrected_per_mode() {
    let cache = ChunkCache::new(1 << 30);
    let with = |clipping| {
        let mut req = request(3, BOUNDS);
        req.settings.clipping = clipping;
        render_with(&cache, &req, &DarkClip, &NoControl).expect("render")
    };
    let auto = with(NoiseClipping::Auto);
    let kept = with(NoiseClipping::Unclipped);
    let forced = with(NoiseClipping::Clipped);
    // The source lies in 0..1, so Auto corrects both ends, like Clipped.
    assert_eq!(bits(&auto), bits(&forced));
    // The clipped noise lifts the source's mean from 0.02 to about 0.035; a denoiser keeps that
    // lift unless corrected, and the correction takes most of it away.
    let (src, a, k) = (
        mean(&DarkClip.fetch(3, BOUNDS).unwrap()),
        mean(&auto),
        mean(&kept),
    );
    assert!(src > 0.03, "source mean {src}");
    assert!(a < k - 0.008, "corrected mean {a}, uncorrected {k}");
    assert!(auto.data.iter().all(|v| (0.0..=1.0).contains(v)));
    // The correction follows the cache: every mode was served the same chunks.
    let tiles = TileGrid::new(64).tiles_for(BOUNDS, BOUNDS).len();
    assert_eq!(cache.stats().computed, 2 * tiles);
}

#[test]
fn temporal_smoothing_is_read_per_frame_and_steadies_static_areas() {
    // A static scene (no drift) with fresh noise per frame.
    struct Still(f32);
    impl Frames for Still {
        fn fetch(&self, t: i64, rect: Rect) -> crate::Result<RgbImage> {
            // Mid-grey: the dark clip's noise lifted well clear of black.
            DarkClip.fetch(t, rect).map(|mut img| {
                img.data.iter_mut().for_each(|v| *v += 0.4);
                img
            })
        }
        fn params(&self, _t: i64) -> FrameParams {
            FrameParams {
                noise_level: 0.05,
                smoothing: self.0,
                ..FrameParams::default()
            }
        }
    }
    let cache = ChunkCache::new(1 << 30);
    let frames = |amount: f32| -> Vec<RgbImage> {
        (2..5)
            .map(|t| render_with(&cache, &request(t, BOUNDS), &Still(amount), &NoControl).unwrap())
            .collect()
    };
    let change = |v: &[RgbImage]| -> f64 {
        v.windows(2)
            .map(|p| {
                p[0].data
                    .iter()
                    .zip(&p[1].data)
                    .map(|(a, b)| ((a - b) as f64).abs())
                    .sum::<f64>()
            })
            .sum()
    };
    let (off, on) = (frames(0.0), frames(1.0));
    assert!(
        change(&on) < 0.7 * change(&off),
        "frame-to-frame change {} with smoothing, {} without",
        change(&on),
        change(&off)
    );
}

#[test]
fn smoothing_crosses_chunk_edges_and_is_skipped_without_it() {
    // Radius 1: chunks [0, 2] and [3, 5]; frame 2 is smoothed over frames 1..3.
    struct Lifted {
        amount: f32,
        lift3: f32,
    }
    impl Frames for Lifted {
        fn fetch(&self, t: i64, rect: Rect) -> crate::Result<RgbImage> {
            let lift = 0.4 + if t == 3 { self.lift3 } else { 0.0 };
            DarkClip.fetch(t, rect).map(|mut img| {
                img.data.iter_mut().for_each(|v| *v += lift);
                img
            })
        }
        fn params(&self, _t: i64) -> FrameParams {
            FrameParams {
                noise_level: 0.05,
                smoothing: self.amount,
                ..FrameParams::default()
            }
        }
    }
    let frame2 = |amount: f32, lift3: f32| {
        let cache = ChunkCache::new(1 << 30);
        let clip = Lifted { amount, lift3 };
        let out = render_with(&cache, &request(2, BOUNDS), &clip, &NoControl).unwrap();
        (bits(&out), cache.stats().computed)
    };
    let tiles = TileGrid::new(64).tiles_for(BOUNDS, BOUNDS).len();
    // With smoothing, frame 3 (in the next chunk) moves frame 2's result: no seam at the edge.
    let (a, computed) = frame2(1.0, 0.0);
    assert_ne!(a, frame2(1.0, 0.01).0);
    assert_eq!(computed, 2 * tiles);
    // Without, frame 2 comes from its own chunk alone, and only that chunk is computed.
    let (b, computed) = frame2(0.0, 0.0);
    assert_eq!(b, frame2(0.0, 0.01).0);
    assert_eq!(computed, tiles);
}

/// A render of `window` kept on the model's device, brought back as an image to compare.
fn render_resident_on(cache: &ChunkCache, clip: &Clip, t: i64, window: Rect) -> RgbImage {
    resident_image(cache, &request(t, window), clip)
}

/// `render_resident` of `req`, checked for its shape and brought back as an image.
fn resident_image(cache: &ChunkCache, req: &Request, clip: &Clip) -> RgbImage {
    let out = render_resident(cache, req, clip, &NoControl).expect("render");
    let window = req.window.intersect(&req.bounds);
    assert_eq!(
        out.dims(),
        [window.height() as usize, window.width() as usize, 3]
    );
    let mut img = RgbImage::new(window);
    img.data = out.flatten_all().unwrap().to_vec1().unwrap();
    img
}

/// The host and device renders of `req`, each with a cold cache, agree to float rounding.
fn assert_device_agrees(req: &Request, clip: &Clip, what: &str) {
    let host = render_with(&ChunkCache::new(1 << 30), req, clip, &NoControl).expect("render");
    let device = resident_image(&ChunkCache::new(1 << 30), req, clip);
    let (worst, psnr) = compare(&host, &device);
    assert!(
        worst < 1e-5 && psnr > 120.0,
        "{what}: off by {worst} ({psnr:.1} dB)"
    );
}

/// Largest difference and PSNR (peak 1) of two renders of one window.
fn compare(a: &RgbImage, b: &RgbImage) -> (f32, f64) {
    assert_eq!(a.rect, b.rect);
    let worst = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let mse = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.data.len() as f64;
    (worst, -10.0 * mse.max(1e-30).log10())
}

#[test]
fn a_render_kept_on_the_device_matches_the_host_render() {
    // Strength above 0 (smoothing alone), Strength 0 (detail given back from the sources, the
    // defaults' path), a partial Mix, and noise clipped at black on a dark clip.
    let cases: Vec<(&str, Clip)> = vec![
        ("strength", Clip::noisy()),
        (
            "restore",
            Clip::new(|_| FrameParams {
                noise_level: 0.05,
                strength: 0.0,
                ..FrameParams::default()
            }),
        ),
        (
            "mix",
            Clip::new(|_| FrameParams {
                mix: 0.4,
                ..FrameParams::default()
            }),
        ),
    ];
    for (name, clip) in &cases {
        for (t, window) in [(0, BOUNDS), (4, Rect::new(13, 7, 50, 41)), (7, BOUNDS)] {
            let what = format!("{name}, frame {t}, {window:?}");
            assert_device_agrees(&request(t, window), clip, &what);
        }
    }
    // Other radii, tile sizes, a proxy scale and noise clipped at both ends whatever the values.
    let clip = Clip::new(|_| FrameParams {
        noise_level: 0.05,
        strength: 0.0,
        ..FrameParams::default()
    });
    for (radius, tile_size, render_scale, clipping) in [
        (0, 64, 1.0, NoiseClipping::Clipped),
        (2, 48, 0.5, NoiseClipping::Auto),
    ] {
        let mut req = request(3, Rect::new(5, 9, 90, 60));
        req.settings = Settings {
            radius,
            tile_size,
            render_scale,
            clipping,
            ..settings()
        };
        assert_device_agrees(&req, &clip, &format!("radius {radius}, tiles {tile_size}"));
    }
    // Identity: the sources themselves, sanitised alike.
    let off = Clip::new(|_| FrameParams {
        mix: 0.0,
        ..FrameParams::default()
    });
    let host = render_on(&ChunkCache::new(1 << 30), &off, 3, BOUNDS);
    let device = render_resident_on(&ChunkCache::new(1 << 30), &off, 3, BOUNDS);
    assert_eq!(bits(&host), bits(&device));
}

#[test]
fn a_render_kept_on_the_device_is_the_same_in_any_order_window_and_cache_state() {
    let clip = Clip::noisy();
    let shared = ChunkCache::new(1 << 30);
    let full: Vec<Vec<u32>> = [5i64, 0, 7, 2, 6, 1, 4, 3]
        .iter()
        .map(|&t| (t, bits(&render_resident_on(&shared, &clip, t, BOUNDS))))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    for t in 0..8 {
        let cold = render_resident_on(&ChunkCache::new(1 << 30), &clip, t, BOUNDS);
        assert_eq!(bits(&cold), full[t as usize], "frame {t}");
    }
    let window = Rect::new(13, 7, 50, 41);
    let part = render_resident_on(&shared, &clip, 4, window);
    assert_part_of(&part, &render_resident_on(&shared, &clip, 4, BOUNDS));
}

#[test]
fn a_render_kept_on_the_device_recomputes_after_an_upstream_edit() {
    let clip = Clip::noisy();
    let cache = ChunkCache::new(1 << 30);
    let first = render_resident_on(&cache, &clip, 3, BOUNDS);
    let computed = cache.stats().computed;
    assert_eq!(
        bits(&render_resident_on(&cache, &clip, 3, BOUNDS)),
        bits(&first)
    );
    assert_eq!(cache.stats().computed, computed, "served from the cache");
    // The smallest edit a float source can carry, on one neighbour: its chunks are recomputed.
    *clip.edit.lock() = Some((4, 1e-6));
    render_resident_on(&cache, &clip, 3, BOUNDS);
    assert!(cache.stats().computed > computed);
    // Host and device chunks never stand in for each other.
    let before = cache.stats().computed;
    render_on(&cache, &clip, 3, BOUNDS);
    assert!(cache.stats().computed > before);
}

#[test]
fn a_device_source_of_the_wrong_shape_is_a_clear_error() {
    struct Short(Clip);
    impl Frames for Short {
        fn fetch(&self, t: i64, rect: Rect) -> crate::Result<RgbImage> {
            self.0.fetch(t, rect)
        }
        fn params(&self, t: i64) -> FrameParams {
            self.0.params(t)
        }
        fn fetch_on(
            &self,
            _t: i64,
            rect: Rect,
            device: &candle_core::Device,
        ) -> crate::Result<candle_core::Tensor> {
            let (w, h) = (rect.width() as usize, rect.height() as usize);
            Ok(candle_core::Tensor::zeros(
                (h, w - 1, 3),
                candle_core::DType::F32,
                device,
            )?)
        }
    }
    let err = render_resident(
        &ChunkCache::new(1 << 30),
        &request(2, BOUNDS),
        &Short(Clip::noisy()),
        &NoControl,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("frame") && err.contains("tensor"), "{err}");
}

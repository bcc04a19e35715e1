//! Criterion benchmarks of the engine on the built-in model: cost per megapixel-frame per
//! sampler step at 960x540 and 1920x1080, and the cost of serving a cached frame, alone and
//! smoothed over four cached neighbours.
//! `vdiff bench` gives the amortised whole-shot figures.
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use vdiff::bench::SyntheticClip;
use vdiff::engine::{
    render_with, ChunkCache, FrameParams, NoControl, NoiseClipping, Rect, Request, Settings, Shot,
};
use vdiff::model::device::DeviceChoice;
use vdiff::model::registry::{self, ModelSource};
use vdiff::sampling::SamplerKind;

fn settings(steps: u32) -> Settings {
    Settings {
        model: registry::get(&ModelSource::BuiltIn, DeviceChoice::Cpu).expect("built-in model"),
        sampler: SamplerKind::DpmPp2m,
        steps,
        seed: 0,
        radius: 2,
        tile_size: 512,
        render_scale: 1.0,
        clipping: NoiseClipping::Auto,
    }
}

fn bench(c: &mut Criterion) {
    let params = FrameParams {
        noise_level: 0.04,
        strength: 0.0,
        detail: 0.0,
        smoothing: 0.5,
        mix: 1.0,
    };
    let mut g = c.benchmark_group("engine");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for (w, h) in [(960i64, 540i64), (1920, 1080)] {
        let clip = SyntheticClip::new(w, h, 0.04, params);
        let bounds = Rect::new(0, 0, w, h);
        let req = |s: Settings| Request {
            t: 0,
            window: bounds,
            bounds,
            shot: Shot { first: 0, last: 0 },
            settings: s,
        };
        // One frame, one chunk, one step, cold cache: the per-step cost (divide by megapixels).
        g.bench_function(format!("chunk_1step_{w}x{h}"), |b| {
            b.iter(|| {
                render_with(
                    &ChunkCache::new(usize::MAX),
                    &req(settings(1)),
                    &clip,
                    &NoControl,
                )
                .expect("render")
            })
        });
        // A frame whose chunks are cached: fetch, hash, smoothing and clipping correction only.
        let cache = ChunkCache::new(usize::MAX);
        render_with(&cache, &req(settings(1)), &clip, &NoControl).expect("render");
        g.bench_function(format!("cached_frame_{w}x{h}"), |b| {
            b.iter(|| render_with(&cache, &req(settings(1)), &clip, &NoControl).expect("render"))
        });
        // The middle frame of a five-frame shot, its chunks cached: adds the temporal smoothing
        // over its four neighbours, each moved onto it by the motion search first.
        let mid = || Request {
            t: 2,
            shot: Shot { first: 0, last: 4 },
            ..req(settings(1))
        };
        render_with(&cache, &mid(), &clip, &NoControl).expect("render");
        g.bench_function(format!("cached_frame_smoothed_{w}x{h}"), |b| {
            b.iter(|| render_with(&cache, &mid(), &clip, &NoControl).expect("render"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

#!/usr/bin/env python3
"""Classic denoisers compared with VDiff: the ffmpeg filter chain of each method at a given noise
sigma (0-255 scale), in one place for benches/compare_denoisers.sh and benches/compare/tune.py.

Every chain takes and returns rgb24 frames. Filters run in 16-bit planar formats where they can
(so format conversions cost nothing: an identity chain gives PSNR = inf) and on RGB planes, where
the noise is white and independent per channel. hqdn3d only takes YUV: it runs in yuv444p16.

atadenoise and fftdnoiz cap their strength settings (atadenoise thresholds <= 0.3 of the range;
fftdnoiz sigma <= 100 in ffmpeg 5.1 but only 30 in older builds) below what sigma 25-50 needs, so
their chains scale the values down by SCALE before the filter and back up after (16-bit lutrgb:
no precision is lost).

Parameters: chosen per sigma by benches/compare/tune.py (best PSNR on 8-frame 256x256 centre crops
of the three validation clips; see TUNED below). That tunes the baselines on the validation clips
themselves, which favours them: the comparison with VDiff is conservative.

Usage: methods.py chain METHOD SIGMA      prints the -vf chain
       methods.py list                    prints the method names
"""
import sys

# Multipliers of sigma (or absolute settings) per method and sigma, from tune.py grids (the best
# of each grid, widened until the best was inside it, except at a filter's own limit). Keys are
# the template fields below; a method's entry for the nearest tuned sigma is used.
TUNED = {
    "hqdn3d": {10: dict(ks=2.0, kt=1.0), 25: dict(ks=2.5, kt=0.5), 50: dict(ks=2.5, kt=0.5)},
    "nlmeans": {10: dict(s=8.0), 25: dict(s=20.0), 50: dict(s=30.0)},  # 30: the filter's maximum
    "bm3d": {10: dict(m=20), 25: dict(m=40), 50: dict(m=80)},
    # At sigma 50 the best thresholds exceed the range: atadenoise becomes a plain 9-frame average.
    "atadenoise": {
        10: dict(ka=4, kb=4, frames=9),
        25: dict(ka=4, kb=8, frames=9),
        50: dict(ka=32, kb=8, frames=9),
    },
    "fftdnoiz": {
        10: dict(k=1.0, block=32, overlap=0.5),
        25: dict(k=3.0, block=32, overlap=0.5),
        50: dict(k=6.0, block=32, overlap=0.5),
    },
    "dctdnoiz": {10: dict(k=1.0, n=3), 25: dict(k=1.0, n=4), 50: dict(k=1.0, n=4)},
    "vaguedenoiser": {
        10: dict(k=2.0, percent=85),
        25: dict(k=2.0, percent=100),
        50: dict(k=2.0, percent=100),
    },
    # OpenCV fastNlMeansDenoisingColoredMulti (not an ffmpeg chain: see denoise_opencv.py).
    "opencv": {10: dict(k=0.45), 25: dict(k=0.9), 50: dict(k=0.6)},
}

FFMPEG_METHODS = ["hqdn3d", "nlmeans", "bm3d", "atadenoise", "fftdnoiz", "dctdnoiz", "vaguedenoiser"]

# Scale-down factors for the capped filters: atadenoise's thresholds need the most room.
SCALE = {"atadenoise": 0.05, "fftdnoiz": 0.25}


def params(method, sigma, **overrides):
    table = TUNED[method]
    nearest = min(table, key=lambda s: abs(s - sigma))
    p = dict(table[nearest])
    p.update(overrides)
    return p


def scaled(inner, f):
    """Run `inner` on values multiplied by f (16-bit), then divide back."""
    down = f"lutrgb=r=val*{f}:g=val*{f}:b=val*{f}"
    up = f"lutrgb=r=val/{f}:g=val/{f}:b=val/{f}"
    return f"format=rgb48le,{down},format=gbrp16le,{inner},format=rgb48le,{up},format=rgb24"


def chain(method, sigma, **overrides):
    p = params(method, sigma, **overrides)
    s = float(sigma)
    if method == "hqdn3d":
        # Spatial (ks) and temporal (kt) strengths grow with the noise; chroma at 3/4 of luma
        # as in the defaults (4:3:6:4.5).
        ls, lt = p["ks"] * s, p["kt"] * s
        cs, ct = 0.75 * ls, 0.75 * lt
        return f"format=yuv444p16le,hqdn3d={ls:.3f}:{cs:.3f}:{lt:.3f}:{ct:.3f},format=rgb24"
    if method == "nlmeans":
        # s is the filter's own strength (1..30), p=7 patches, r=15 research window (defaults).
        return f"format=gbrp,nlmeans=s={p['s']:.3f}:p=7:r=15,format=rgb24"
    if method == "bm3d":
        # Two-pass BM3D: a basic estimate, then the final Wiener step guided by it. ffmpeg 5.1's
        # sigma is not on the 8-bit scale: measured, the useful setting is ~80 x the noise sigma.
        sg = p["m"] * s
        opts = f"sigma={sg:.3f}:block=4:bstep=4:group=16:range=9"
        return (
            f"format=gbrp,split[a][b];[a]bm3d={opts}:estim=basic[r];"
            f"[b][r]bm3d={opts}:estim=final:ref=1,format=rgb24"
        )
    if method == "atadenoise":
        # Thresholds are fractions of the range; in scaled data sigma/255 becomes f*sigma/255.
        f = SCALE["atadenoise"]
        a = min(0.3, p["ka"] * f * s / 255.0)
        b = min(5.0, p["kb"] * f * s / 255.0)
        inner = f"atadenoise=0a={a:.5f}:0b={b:.5f}:1a={a:.5f}:1b={b:.5f}:2a={a:.5f}:2b={b:.5f}:s={p['frames']}"
        return scaled(inner, f)
    if method == "fftdnoiz":
        # sigma = k x the scaled noise sigma (8-bit units); the best k is well above 1.
        f = SCALE["fftdnoiz"]
        sg = min(100.0, p["k"] * f * s)
        return scaled(f"fftdnoiz=sigma={sg:.4f}:block={p['block']}:overlap={p['overlap']}:prev=1:next=1", f)
    if method == "dctdnoiz":
        return f"format=gbrp,dctdnoiz=sigma={p['k'] * s:.3f}:n={p['n']},format=rgb24"
    if method == "vaguedenoiser":
        return f"format=gbrp,vaguedenoiser=threshold={p['k'] * s:.3f}:method=garrote:nsteps=6:percent={p['percent']},format=rgb24"
    raise SystemExit(f"unknown method {method}")


def opencv_args(sigma, **overrides):
    p = params("opencv", sigma, **overrides)
    h = p["k"] * float(sigma)
    return dict(h=h, h_color=h, template=7, search=21, temporal=5)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "list":
        print(" ".join(FFMPEG_METHODS))
    elif len(sys.argv) == 4 and sys.argv[1] == "chain":
        print(chain(sys.argv[2], float(sys.argv[3])))
    elif len(sys.argv) == 3 and sys.argv[1] == "opencv":
        a = opencv_args(float(sys.argv[2]))
        print(f"--h {a['h']:.3f} --h-color {a['h_color']:.3f} --template {a['template']} --search {a['search']} --temporal {a['temporal']}")
    else:
        raise SystemExit(__doc__)

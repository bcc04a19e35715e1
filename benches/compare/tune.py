#!/usr/bin/env python3
"""Picks the settings of a classic denoiser for one noise sigma: runs the method's chain from
methods.py with each candidate setting on 8-frame 256x256 centre crops of the validation clips and
prints the mean PSNR per candidate (best last). Tooling for choosing methods.TUNED; slow methods
are fine here because the crops are small.

Usage: tune.py DATA_DIR METHOD SIGMA 'KEY=V1,V2,...' ['KEY2=...']
  DATA_DIR holds val/<clip> and noisy<SIGMA>/<clip> (vdiff prepare --out / --noisy).
Example: tune.py /tmp/vdiff-data hqdn3d 25 k=0.4,0.6,0.8,1.0
"""
import itertools
import os
import subprocess
import sys
import tempfile

import numpy as np
import cv2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import methods  # noqa: E402

FRAMES, CROP, START = 8, 256, 0
CLIPS = ["vtest", "box", "megamind"]


def crop_seq(src, dst):
    os.makedirs(dst, exist_ok=True)
    if len(os.listdir(dst)) == FRAMES:
        return
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-start_number", str(START), "-i",
         os.path.join(src, "%04d.png"), "-frames:v", str(FRAMES), "-vf", f"crop={CROP}:{CROP}",
         "-start_number", "0", os.path.join(dst, "%04d.png")],
        check=True,
    )


def load(d):
    return np.stack([cv2.imread(os.path.join(d, f"{i:04d}.png")).astype(np.float64) for i in range(FRAMES)])


def psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a - b) ** 2))


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    data, method, sigma = sys.argv[1], sys.argv[2], float(sys.argv[3])
    grid = {}
    for spec in sys.argv[4:]:
        k, vs = spec.split("=", 1)
        grid[k] = [float(v) if "." in v else int(v) for v in vs.split(",")]
    cache = os.path.join(data, ".tune")
    s = int(sigma)
    clips = []
    for c in CLIPS:
        cc, nc = os.path.join(cache, "clean", c), os.path.join(cache, f"noisy{s}", c)
        crop_seq(os.path.join(data, "val", c), cc)
        crop_seq(os.path.join(data, f"noisy{s}", c), nc)
        clips.append((c, load(cc), nc))
    results = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        ov = dict(zip(keys, values))
        scores = []
        with tempfile.TemporaryDirectory() as tmp:
            for c, clean, nc in clips:
                out = os.path.join(tmp, c)
                os.makedirs(out)
                if method == "opencv":
                    a = methods.opencv_args(sigma, **ov)
                    cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "denoise_opencv.py"), nc, out,
                           "--h", str(a["h"]), "--h-color", str(a["h_color"]), "--temporal", str(a["temporal"])]
                else:
                    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", os.path.join(nc, "%04d.png"),
                           "-filter_complex", methods.chain(method, sigma, **ov), "-start_number", "0",
                           os.path.join(out, "%04d.png")]
                subprocess.run(cmd, check=True)
                scores.append(psnr(clean, load(out)))
        results.append((np.mean(scores), ov, scores))
        print(f"{np.mean(scores):7.3f}  {ov}  {[round(x, 2) for x in scores]}", flush=True)
    results.sort(key=lambda r: r[0])
    print(f"best for {method} at sigma {s}: {results[-1][1]} -> {results[-1][0]:.3f} dB")


if __name__ == "__main__":
    main()

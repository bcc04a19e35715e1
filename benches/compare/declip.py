#!/usr/bin/env python3
"""Applies VDiff's clipped-noise correction (src/engine/declip.rs) to the output of another
denoiser: each value is mapped through the inverse of the clipped-Gaussian mean
E[clip(x + sigma Z, 0, 1)] (Foi, Signal Processing 2009). An ablation for the comparison: it
shows how much of VDiff's lead comes from knowing that 8-bit noise is clipped.

Usage: declip.py IN_DIR OUT_DIR SIGMA   (SIGMA on the 0-255 scale; PNG frames)
"""
import math
import os
import sys

import cv2
import numpy as np


def clipped_mean(mu, sigma):
    cdf = lambda z: 0.5 * math.erfc(-z / math.sqrt(2.0))
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    a, b = -mu / sigma, (1.0 - mu) / sigma
    return mu * (cdf(b) - cdf(a)) + sigma * (pdf(a) - pdf(b)) + (1.0 - cdf(b))


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, dst, sigma = sys.argv[1], sys.argv[2], float(sys.argv[3]) / 255.0
    mu = np.linspace(0.0, 1.0, 2049)
    g = np.array([clipped_mean(m, sigma) for m in mu])
    os.makedirs(dst, exist_ok=True)
    for name in sorted(n for n in os.listdir(src) if n.endswith(".png")):
        y = cv2.imread(os.path.join(src, name)).astype(np.float64) / 255.0
        x = np.interp(y, g, mu)  # below g[0] gives 0, above g[-1] gives 1
        cv2.imwrite(os.path.join(dst, name), np.round(x * 255.0).astype(np.uint8))


if __name__ == "__main__":
    main()

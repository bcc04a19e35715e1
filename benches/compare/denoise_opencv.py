#!/usr/bin/env python3
"""OpenCV's fastNlMeansDenoisingColoredMulti over a folder of PNG frames (temporal NL-means in
Lab): each frame is denoised with a window of `--temporal` frames centred on it; near the clip
ends the window shrinks symmetrically (the function needs the frame at the window's centre).
Needs opencv-python-headless (PyPI).

Usage: denoise_opencv.py IN_DIR OUT_DIR --h H --h-color HC [--template 7 --search 21 --temporal 5]
"""
import argparse
import os
import sys

try:
    import cv2
except ImportError:
    sys.exit("denoise_opencv.py needs OpenCV: pip install opencv-python-headless")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--h", type=float, required=True)
    ap.add_argument("--h-color", type=float, required=True)
    ap.add_argument("--template", type=int, default=7)
    ap.add_argument("--search", type=int, default=21)
    ap.add_argument("--temporal", type=int, default=5)
    a = ap.parse_args()
    names = sorted(n for n in os.listdir(a.src) if n.lower().endswith(".png"))
    if not names:
        sys.exit(f"{a.src}: no PNG frames")
    frames = [cv2.imread(os.path.join(a.src, n), cv2.IMREAD_COLOR) for n in names]
    os.makedirs(a.dst, exist_ok=True)
    half = a.temporal // 2
    for i, n in enumerate(names):
        r = min(half, i, len(frames) - 1 - i)
        out = cv2.fastNlMeansDenoisingColoredMulti(
            frames[i - r : i + r + 1], r, 2 * r + 1, None, a.h, a.h_color, a.template, a.search
        )
        cv2.imwrite(os.path.join(a.dst, n), out)


if __name__ == "__main__":
    main()

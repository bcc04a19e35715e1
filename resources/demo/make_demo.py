#!/usr/bin/env python3
"""Regenerates the `vdiff demo` clip in this folder (see PROVENANCE.md).

Reads raw RGB24 frames (320x240) on stdin, adds Gaussian noise of sigma SIGMA (in 0..1 image
units, i.e. SIGMA*255 code values) from Python's seeded Mersenne Twister, rounds and clamps to
8 bits, and writes noisy_0000.png, noisy_0001.png, ... into the folder given as argument.
Standard library only, so the output is the same on every machine with the same Python.

    ffmpeg -v error -i /usr/share/doc/opencv-doc/examples/data/vtest.avi \
        -vf "select='between(n,300,311)',scale=320:240:flags=area" -fps_mode passthrough \
        -f rawvideo -pix_fmt rgb24 - | python3 resources/demo/make_demo.py resources/demo
"""
import random
import struct
import sys
import zlib

W, H = 320, 240
SIGMA = 0.05
SEED = 20240611


def png(path, rows):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def main():
    out = sys.argv[1]
    rng = random.Random(SEED)
    size = W * H * 3
    n = 0
    while True:
        frame = sys.stdin.buffer.read(size)
        if len(frame) < size:
            break
        noisy = [min(255, max(0, round(v + rng.gauss(0.0, SIGMA * 255.0)))) for v in frame]
        rows = [noisy[y * W * 3:(y + 1) * W * 3] for y in range(H)]
        png(f"{out}/noisy_{n:04d}.png", rows)
        n += 1
    print(f"wrote {n} frames, sigma {SIGMA}, seed {SEED}", file=sys.stderr)


if __name__ == "__main__":
    main()

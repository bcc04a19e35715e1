#!/usr/bin/env python3
"""Turns the JSON lines of benches/compare_denoisers.sh (one per sigma, method and clip) into a
markdown table per validation set: per sigma and method, PSNR / SSIM / flicker averaged over the
clips (the mean of the per-clip figures), and seconds per frame (total time / total frames); then
VDiff against each anchor on the frames that anchor ran on (the ablations are not anchors); a
last table lists every clip.

Usage: table.py RESULTS.jsonl [TITLE [ABOUT]] > TABLE.md   (ABOUT: a provenance line, kept as
a comment at the top)
"""
import json
import sys
from collections import OrderedDict


SETS = {
    "val": "the public validation clips (vtest, box, megamind), used for tuning",
    "holdout": "the held-out clips (src/train/holdout.rs), never trained, tuned or selected on",
}


def mean(g, key):
    return sum(r[key] for r in g) / len(g)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    for r in rows:
        r.setdefault("set", "val")
    title = sys.argv[2] if len(sys.argv) > 2 else "Denoiser comparison"
    out = [f"<!-- {sys.argv[3]} -->"] if len(sys.argv) > 3 else []
    out += [f"# {title}", ""]
    out.append("PSNR in dB and SSIM (11x11 Gaussian window, per RGB channel) against the clean frames;")
    out.append("flicker = mean |temporal difference error| on the 0-255 scale (lower is steadier).")
    out.append("Means are over the clips of a set (24 frames each unless the method says otherwise);")
    out.append("`vdiff (first N frames)` is the same VDiff render scored on the frames a slow anchor ran on;")
    out.append("`vdiff (N frames)` on the frames ffmpeg's bm3d ran on (`bm3d (N frames)`, from frame 10).")
    sets = [s for s in SETS if any(r["set"] == s for r in rows)]
    sets += sorted({r["set"] for r in rows} - set(sets))
    for vset in sets:
        out += table(vset, [r for r in rows if r["set"] == vset])
    print("\n".join(out))


def table(vset, rows):
    groups = OrderedDict()
    for r in rows:
        groups.setdefault((r["sigma"], r["method"]), []).append(r)
    clips = sorted({r["clip"] for r in rows})
    out = ["", f"## Set `{vset}`: {SETS.get(vset, vset)}", "",
           f"Clips: {', '.join(clips)}.", "",
           "| sigma | method | PSNR | SSIM | flicker | s/frame |",
           "|---:|---|---:|---:|---:|---:|"]
    for sigma in sorted({k[0] for k in groups}):
        keys = [k for k in groups if k[0] == sigma]
        best_psnr = max(mean(groups[k], "psnr") for k in keys)
        best_flicker = min(mean(groups[k], "flicker") for k in keys)
        for k in keys:
            g = groups[k]
            psnr, ssim, flick = mean(g, "psnr"), mean(g, "ssim"), mean(g, "flicker")
            frames = sum(r["frames"] for r in g)
            secs = sum(r["seconds"] for r in g)
            spf = f"{secs / frames:.3f}" if frames and secs > 0 else "-"
            p = f"**{psnr:.2f}**" if psnr == best_psnr else f"{psnr:.2f}"
            f = f"**{flick:.2f}**" if flick == best_flicker else f"{flick:.2f}"
            out.append(f"| {sigma:g} | {k[1]} | {p} | {ssim:.4f} | {f} | {spf} |")
    out += target(groups)
    out += ["", f"Per clip (`{vset}`):", "",
            "| sigma | method | clip | frames | PSNR | SSIM | flicker | s/frame |",
            "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        spf = f"{r['seconds'] / r['frames']:.3f}" if r["seconds"] > 0 else "-"
        out.append(
            f"| {r['sigma']:g} | {r['method']} | {r['clip']} | {r['frames']} | {r['psnr']:.2f} | "
            f"{r['ssim']:.4f} | {r['flicker']:.2f} | {spf} |"
        )
    return out


def is_anchor(method):
    """Every method VDiff is measured against: not the noisy input, VDiff itself or an ablation."""
    return method != "noisy" and not method.startswith("vdiff") and "+" not in method


def frames_of(method):
    """The frame subset a row was scored on: the text in its brackets ('first 4 frames' for the
    official anchors, '4 frames' for ffmpeg's bm3d, which starts at BM3D_START), else None (all)."""
    if method.endswith(" frames)") and " (" in method:
        return method.rsplit(" (", 1)[1][:-1]
    return None


def target(groups):
    """VDiff (default settings) against every anchor, each on the frames that anchor ran on."""
    out = ["", "VDiff against each anchor on the same frames (the target: +1 dB over the best at "
           "sigma 25, at least equal at 10 and 50; flicker no worse than the steadiest):", "",
           "| sigma | anchor | frames | anchor PSNR / flicker | VDiff PSNR / flicker | margin |",
           "|---:|---|---|---:|---:|---:|"]
    for sigma in sorted({k[0] for k in groups}):
        for (s, m) in groups:
            if s != sigma or not is_anchor(m):
                continue
            n = frames_of(m)
            # VDiff's render scored on the same subset; none scored there: no margin.
            vkey = (sigma, "vdiff" if n is None else f"vdiff ({n})")
            if vkey not in groups or len(groups[vkey]) != len(groups[(s, m)]):
                continue
            a, v = groups[(s, m)], groups[vkey]
            margin = mean(v, "psnr") - mean(a, "psnr")
            out.append(f"| {sigma:g} | {m} | {'all' if n is None else n.removesuffix(' frames')} | "
                       f"{mean(a, 'psnr'):.2f} / {mean(a, 'flicker'):.2f} | "
                       f"{mean(v, 'psnr'):.2f} / {mean(v, 'flicker'):.2f} | {margin:+.2f} |")
    return out


if __name__ == "__main__":
    main()

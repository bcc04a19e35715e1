#!/usr/bin/env python3
"""Turns the JSON lines of benches/compare_denoisers.sh (one per sigma, method and clip) into a
markdown table: per sigma and method, PSNR / SSIM / flicker averaged over the clips (the mean of
the per-clip figures), and seconds per frame (total time / total frames); then VDiff against the
quality target (at least 1 dB above the best classic PSNR, flicker no worse than the steadiest
classic method; the ablations are not classic methods); a last table lists every clip.

Usage: table.py RESULTS.jsonl [TITLE [ABOUT]] > TABLE.md   (ABOUT: a provenance line, kept as
a comment at the top)
"""
import json
import sys
from collections import OrderedDict


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    title = sys.argv[2] if len(sys.argv) > 2 else "Denoiser comparison"
    groups = OrderedDict()
    for r in rows:
        groups.setdefault((r["sigma"], r["method"]), []).append(r)
    out = [f"<!-- {sys.argv[3]} -->"] if len(sys.argv) > 3 else []
    out += [f"# {title}", ""]
    out.append("Mean over the validation clips (vtest, box, megamind; 24 frames each unless noted).")
    out.append("PSNR in dB and SSIM (11x11 Gaussian window, per RGB channel) against the clean frames;")
    out.append("flicker = mean |temporal difference error| on the 0-255 scale (lower is steadier).")
    out.append("")
    out.append("| sigma | method | PSNR | SSIM | flicker | s/frame |")
    out.append("|---:|---|---:|---:|---:|---:|")
    for sigma in sorted({k[0] for k in groups}):
        keys = [k for k in groups if k[0] == sigma]
        best_psnr = max(sum(r["psnr"] for r in groups[k]) / len(groups[k]) for k in keys)
        best_flicker = min(sum(r["flicker"] for r in groups[k]) / len(groups[k]) for k in keys)
        for k in keys:
            g = groups[k]
            n = len(g)
            psnr = sum(r["psnr"] for r in g) / n
            ssim = sum(r["ssim"] for r in g) / n
            flick = sum(r["flicker"] for r in g) / n
            frames = sum(r["frames"] for r in g)
            secs = sum(r["seconds"] for r in g)
            spf = f"{secs / frames:.3f}" if frames and secs > 0 else "-"
            p = f"**{psnr:.2f}**" if psnr == best_psnr else f"{psnr:.2f}"
            f = f"**{flick:.2f}**" if flick == best_flicker else f"{flick:.2f}"
            out.append(f"| {sigma:g} | {k[1]} | {p} | {ssim:.4f} | {f} | {spf} |")
    out += target(groups)
    out.append("")
    out.append("Per clip:")
    out.append("")
    out.append("| sigma | method | clip | frames | PSNR | SSIM | flicker | s/frame |")
    out.append("|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        spf = f"{r['seconds'] / r['frames']:.3f}" if r["seconds"] > 0 else "-"
        out.append(
            f"| {r['sigma']:g} | {r['method']} | {r['clip']} | {r['frames']} | {r['psnr']:.2f} | "
            f"{r['ssim']:.4f} | {r['flicker']:.2f} | {spf} |"
        )
    print("\n".join(out))


def is_classic(method):
    return method != "noisy" and not method.startswith("vdiff") and "+" not in method


def target(groups):
    """VDiff (default settings) against the best classic figures, per sigma."""
    mean = lambda g, key: sum(r[key] for r in g) / len(g)
    out = ["", "VDiff against the target (+1 dB over the best classic PSNR, flicker no worse than "
           "the steadiest classic method):", "",
           "| sigma | best classic PSNR | VDiff PSNR | margin | least classic flicker | VDiff flicker | met |",
           "|---:|---|---:|---:|---|---:|---|"]
    for sigma in sorted({k[0] for k in groups}):
        if (sigma, "vdiff") not in groups:
            continue
        classic = [(m, groups[(s, m)]) for (s, m) in groups if s == sigma and is_classic(m)]
        if not classic:
            continue
        bp = max(classic, key=lambda c: mean(c[1], "psnr"))
        bf = min(classic, key=lambda c: mean(c[1], "flicker"))
        v = groups[(sigma, "vdiff")]
        vp, vf = mean(v, "psnr"), mean(v, "flicker")
        margin = vp - mean(bp[1], "psnr")
        met = "yes" if margin >= 1.0 and vf <= mean(bf[1], "flicker") else "no"
        out.append(f"| {sigma:g} | {mean(bp[1], 'psnr'):.2f} ({bp[0]}) | {vp:.2f} | {margin:+.2f} | "
                   f"{mean(bf[1], 'flicker'):.2f} ({bf[0]}) | {vf:.2f} | {met} |")
    return out


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Compares VDiff with published denoisers (FFDNet, the official BM3D and BM4D: see
# compare/anchors.py), ffmpeg's filters (hqdn3d, nlmeans, bm3d, atadenoise, fftdnoiz, dctdnoiz,
# vaguedenoiser) and OpenCV's fastNlMeansDenoisingColoredMulti on the same noisy frames: the
# clips of each validation set with white Gaussian noise of sigma 10, 25 and 50 (0-255 scale,
# fixed seed, rounded and clipped to 8 bits), scored by `vdiff eval`. Writes a markdown table per
# set (sigma, method, PSNR, SSIM, flicker, seconds per frame). Tooling, not product.
#
# Two sets: `val` (the public clips of `vdiff prepare`, used for tuning) and `holdout` (never
# trained, tuned or selected on: `benches/holdout/fetch.sh SRC && vdiff prepare --holdout SRC
# --out DATA_DIR/holdout`; the script does both when HOLDOUT_SOURCES names a folder).
#
# Usage: benches/compare_denoisers.sh [DATA_DIR] [TABLE.md]
#   DATA_DIR  holds val/<clip> (made by `vdiff prepare --out DATA_DIR` if missing) and
#             holdout/<clip>; default data/
#   TABLE.md  default DATA_DIR/compare.md; the raw results go to DATA_DIR/compare/results.jsonl
# Environment:
#   SETS="val holdout"     the validation sets to run
#   SIGMAS="10 25 50"      noise levels (0-255 scale)
#   METHODS="noisy ffdnet bm3d-official bm4d hqdn3d nlmeans bm3d atadenoise fftdnoiz dctdnoiz
#            vaguedenoiser opencv vdiff"
#                          plus the ablations, when named: vdiff-unclipped (Noise Clipping off),
#                          vdiff-plain (no Temporal Smoothing either: the network alone) and
#                          dctdnoiz+declip (dctdnoiz followed by VDiff's clipped-noise correction)
#   VDIFF=path/to/vdiff    binary to use (default: `cargo build --release`, target/release/vdiff)
#   MODEL=FILE             weights for the VDiff rows (default: the built-in model)
#   VDIFF_ARGS="..."       extra `vdiff render` flags (default settings otherwise)
#   BM3D_FRAMES=4          ffmpeg's bm3d is slow: it runs on this many frames per clip (from BM3D_START=10)
#   REF_BM3D_FRAMES=4      the official BM3D runs on the first this many frames of each clip,
#   REF_BM4D_FRAMES=8      the official BM4D on the first this many (one volume);
#                          VDiff is also scored on those same frames, for the margins
#   BENCH_PYTHON=python3   the Python of benches/compare/setup-anchors.sh (FFDNet, BM3D, BM4D, OpenCV)
#   SEED=0                 noise seed
# Rows already in results.jsonl for other methods or sigmas are kept, so METHODS=vdiff re-scores
# a new model against the classic rows of an earlier run (same SEED and data) without redoing them.
# Needs: ffmpeg; for the anchors and the OpenCV rows, BENCH_PYTHON from setup-anchors.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
data="${1:-$root/data}"
table="${2:-$data/compare.md}"
SIGMAS="${SIGMAS:-10 25 50}"
METHODS="${METHODS:-noisy ffdnet bm3d-official bm4d hqdn3d nlmeans bm3d atadenoise fftdnoiz dctdnoiz vaguedenoiser opencv vdiff vdiff-unclipped vdiff-plain dctdnoiz+declip}"
SETS="${SETS:-val holdout}"
BM3D_FRAMES="${BM3D_FRAMES:-4}"
REF_BM3D_FRAMES="${REF_BM3D_FRAMES:-4}"
REF_BM4D_FRAMES="${REF_BM4D_FRAMES:-8}"
PY="${BENCH_PYTHON:-python3}"
BM3D_START="${BM3D_START:-10}"
SEED="${SEED:-0}"

command -v ffmpeg >/dev/null || { echo "ffmpeg is needed: apt-get install ffmpeg" >&2; exit 1; }
if [ -z "${VDIFF:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
    VDIFF="$root/target/release/vdiff"
fi
case " $SETS " in *" val "*) [ -d "$data/val" ] || "$VDIFF" prepare --out "$data" ;; esac
case " $SETS " in *" holdout "*)
    if [ ! -d "$data/holdout" ]; then
        [ -n "${HOLDOUT_SOURCES:-}" ] || { echo "no $data/holdout: set HOLDOUT_SOURCES=DIR to fetch and prepare it" >&2; exit 1; }
        "$here/holdout/fetch.sh" "$HOLDOUT_SOURCES"
        "$VDIFF" prepare --holdout "$HOLDOUT_SOURCES" --out "$data/holdout"
    fi ;;
esac

work="$data/compare"
mkdir -p "$work"
results="$work/results.jsonl"
touch "$results"
# Drop the rows this run redoes (a method's key is the first word of its label).
python3 - "$results" "$SIGMAS" "$METHODS" "$SETS" <<'EOF'
import json, sys
path, sigmas, methods = sys.argv[1], set(map(float, sys.argv[2].split())), set(sys.argv[3].split())
sets = set(sys.argv[4].split())
rows = [json.loads(l) for l in open(path) if l.strip()]
keep = [r for r in rows if not (r.get("set", "val") in sets and r["sigma"] in sigmas
                                and r["method"].split()[0] in methods)]
with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in keep)
EOF

now() { date +%s.%N; }

# record SIGMA METHOD CLIP CLEAN_DIR OUT_DIR SECONDS (the set is $set)
record() {
    local json
    json="$("$VDIFF" eval --json "$4" "$5")"
    python3 - "$1" "$2" "$3" "$6" "$json" "$set" >> "$results" <<'EOF'
import json, sys
sigma, method, clip, secs, m, vset = sys.argv[1:7]
m = json.loads(m)
print(json.dumps(dict(set=vset, sigma=float(sigma), method=method, clip=clip, seconds=float(secs),
                      frames=m["frames"], psnr=m["psnr"], ssim=m["ssim"], flicker=m["flicker"])))
EOF
    printf '%-8s %-5s %-16s %-9s PSNR %6.2f  flicker %6.2f  %6.1f s\n' "$set" "$1" "$2" "$3" \
        "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['psnr'])" "$json")" \
        "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['flicker'])" "$json")" "$6"
}

# ffmpeg FILTERGRAPH IN_DIR OUT_DIR: PNG sequence through a filter graph, frame names kept 0-based.
run_ffmpeg() {
    rm -rf "$3"; mkdir -p "$3"
    ffmpeg -nostdin -hide_banner -loglevel error -y -i "$2/%04d.png" -filter_complex "$1" \
        -start_number 0 "$3/%04d.png"
}

# subset SRC DST [COUNT [START]]: COUNT frames (default BM3D_FRAMES) of SRC from START (default
# BM3D_START) as DST/0000.png...
subset() {
    local n=${3:-$BM3D_FRAMES} start=${4:-$BM3D_START}
    rm -rf "$2"; mkdir -p "$2"
    for ((i = 0; i < n; i++)); do
        cp "$1/$(printf %04d $((start + i))).png" "$2/$(printf %04d "$i").png"
    done
}

for set in $SETS; do
clips=$(cd "$data/$set" && ls -d -- */ | tr -d /)
for s in $SIGMAS; do
    noisy="$data/noisy-$set$s"
    "$VDIFF" prepare --noisy "$s" --seed "$SEED" --from "$data/$set" --out "$noisy" >/dev/null
    for m in $METHODS; do
        for c in $clips; do
            clean="$data/$set/$c"
            in="$noisy/$c"
            out="$work/$set/s$s/$m/$c"
            label="$m"
            case "$m" in
            noisy)
                record "$s" noisy "$c" "$clean" "$in" 0
                continue
                ;;
            bm3d)
                subset "$clean" "$work/$set/s$s/bm3d-clean/$c"
                subset "$in" "$work/$set/s$s/bm3d-noisy/$c"
                clean="$work/$set/s$s/bm3d-clean/$c"
                in="$work/$set/s$s/bm3d-noisy/$c"
                label="bm3d ($BM3D_FRAMES frames)"
                ;;
            esac
            t0=$(now)
            case "$m" in
            ffdnet)
                rm -rf "$out"
                "$PY" "$here/compare/anchors.py" ffdnet "$in" "$out" "$s"
                ;;
            bm3d-official | bm4d)
                n=$REF_BM3D_FRAMES
                [ "$m" = bm4d ] && n=$REF_BM4D_FRAMES
                rm -rf "$out"
                "$PY" "$here/compare/anchors.py" "${m%-official}" "$in" "$out" "$s" "$n"
                subset "$clean" "$work/$set/s$s/first$n/$c" "$n" 0
                clean="$work/$set/s$s/first$n/$c"
                label="$m (first $n frames)"
                ;;
            opencv)
                # shellcheck disable=SC2046
                "$PY" "$here/compare/denoise_opencv.py" "$in" "$out" $(python3 "$here/compare/methods.py" opencv "$s")
                label="opencv nlmeans-multi"
                ;;
            vdiff | vdiff-unclipped | vdiff-plain)
                rm -rf "$out"; mkdir -p "$out"
                level=$(python3 -c "print($s / 255)")
                ablation=""
                case "$m" in
                vdiff-unclipped) ablation="--noise-clipping unclipped" ;;
                vdiff-plain) ablation="--noise-clipping unclipped --temporal-smoothing 0" ;;
                esac
                # shellcheck disable=SC2086
                "$VDIFF" render "$in" "$out" --noise-level "$level" ${MODEL:+--model "$MODEL"} ${VDIFF_ARGS:-} $ablation >/dev/null
                ;;
            dctdnoiz+declip)
                run_ffmpeg "$(python3 "$here/compare/methods.py" chain dctdnoiz "$s")" "$in" "$out.dct"
                "$PY" "$here/compare/declip.py" "$out.dct" "$out" "$s"
                rm -rf "$out.dct"
                ;;
            *)
                run_ffmpeg "$(python3 "$here/compare/methods.py" chain "$m" "$s")" "$in" "$out"
                ;;
            esac
            t1=$(now)
            record "$s" "$label" "$c" "$clean" "$out" "$(python3 -c "print($t1 - $t0)")"
            if [ "$m" = vdiff ]; then
                # The same render scored on the frames the slow anchors ran on, for the margins.
                for n in $(printf '%s\n' "$REF_BM3D_FRAMES" "$REF_BM4D_FRAMES" | sort -un); do
                    subset "$clean" "$work/$set/s$s/first$n/$c" "$n" 0
                    subset "$out" "$out.first$n" "$n" 0
                    record "$s" "vdiff (first $n frames)" "$c" "$work/$set/s$s/first$n/$c" "$out.first$n" 0
                done
                # And on the frames ffmpeg's bm3d runs on (BM3D_FRAMES from BM3D_START).
                subset "$clean" "$work/$set/s$s/bm3d-clean/$c"
                subset "$out" "$out.bm3d"
                record "$s" "vdiff ($BM3D_FRAMES frames)" "$c" "$work/$set/s$s/bm3d-clean/$c" "$out.bm3d" 0
            fi
        done
    done
done
done

# Where and with what the rows were measured (the seconds per frame are this machine's).
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
cv=$("$PY" -c "import cv2; print(cv2.__version__)" 2>/dev/null || echo "not installed")
anchors=$("$PY" -c "import importlib.metadata as m; print(', '.join(p + ' ' + m.version(p) for p in ('ffdnet', 'bm3d', 'bm4d', 'torch')))" 2>/dev/null || echo "anchors not installed")
rev=$(git -C "$root" describe --always --dirty 2>/dev/null || echo "unknown")
about="Written by benches/compare_denoisers.sh on $(date -u +%F) (methods: $METHODS; sigmas: $SIGMAS). \
$(ffmpeg -version | head -1 | cut -d' ' -f1-3), OpenCV $cv, $anchors, VDiff $rev at its default settings \
(render flags: ${VDIFF_ARGS:-none but --noise-level}) with ${MODEL:-the built-in model}; $(nproc) cores of ${cpu:-an unknown CPU}. Rows of \
methods this run did not redo come from earlier runs."
python3 "$here/compare/table.py" "$results" "Denoisers on the VDiff validation sets (noise seed $SEED)" "$about" > "$table"
echo "wrote $table"

#!/usr/bin/env bash
# Compares classic denoisers (ffmpeg's hqdn3d, nlmeans, bm3d, atadenoise, fftdnoiz, dctdnoiz,
# vaguedenoiser; OpenCV's fastNlMeansDenoisingColoredMulti) with VDiff on the same noisy frames:
# the validation clips of `vdiff prepare` with white Gaussian noise of sigma 10, 25 and 50 (0-255
# scale, fixed seed), scored by `vdiff eval`. Writes a markdown table (sigma, method, PSNR, SSIM,
# flicker, seconds per frame). Tooling, not product.
#
# Usage: benches/compare_denoisers.sh [DATA_DIR] [TABLE.md]
#   DATA_DIR  holds val/<clip> (made by `vdiff prepare --out DATA_DIR` if missing); default data/
#   TABLE.md  default DATA_DIR/compare.md; the raw results go to DATA_DIR/compare/results.jsonl
# Environment:
#   SIGMAS="10 25 50"      noise levels (0-255 scale)
#   METHODS="noisy hqdn3d nlmeans bm3d atadenoise fftdnoiz dctdnoiz vaguedenoiser opencv vdiff"
#                          plus the ablations, when named: vdiff-unclipped (Noise Clipping off),
#                          vdiff-plain (no Temporal Smoothing either: the network alone) and
#                          dctdnoiz+declip (dctdnoiz followed by VDiff's clipped-noise correction)
#   VDIFF=path/to/vdiff    binary to use (default: `cargo build --release`, target/release/vdiff)
#   MODEL=FILE             weights for the VDiff rows (default: the built-in model)
#   VDIFF_ARGS="..."       extra `vdiff render` flags (default settings otherwise)
#   BM3D_FRAMES=4          bm3d is slow: it runs on this many frames per clip (from BM3D_START=10)
#   SEED=0                 noise seed
# Rows already in results.jsonl for other methods or sigmas are kept, so METHODS=vdiff re-scores
# a new model against the classic rows of an earlier run (same SEED and data) without redoing them.
# Needs: ffmpeg; python3 with opencv-python-headless and numpy for the OpenCV rows.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
data="${1:-$root/data}"
table="${2:-$data/compare.md}"
SIGMAS="${SIGMAS:-10 25 50}"
METHODS="${METHODS:-noisy hqdn3d nlmeans bm3d atadenoise fftdnoiz dctdnoiz vaguedenoiser opencv vdiff vdiff-unclipped vdiff-plain dctdnoiz+declip}"
BM3D_FRAMES="${BM3D_FRAMES:-4}"
BM3D_START="${BM3D_START:-10}"
SEED="${SEED:-0}"
CLIPS="vtest box megamind"

command -v ffmpeg >/dev/null || { echo "ffmpeg is needed: apt-get install ffmpeg" >&2; exit 1; }
if [ -z "${VDIFF:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
    VDIFF="$root/target/release/vdiff"
fi
[ -d "$data/val" ] || "$VDIFF" prepare --out "$data"

work="$data/compare"
mkdir -p "$work"
results="$work/results.jsonl"
touch "$results"
# Drop the rows this run redoes (a method's key is the first word of its label).
python3 - "$results" "$SIGMAS" "$METHODS" <<'EOF'
import json, sys
path, sigmas, methods = sys.argv[1], set(map(float, sys.argv[2].split())), set(sys.argv[3].split())
rows = [json.loads(l) for l in open(path) if l.strip()]
keep = [r for r in rows if not (r["sigma"] in sigmas and r["method"].split()[0] in methods)]
with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in keep)
EOF

now() { date +%s.%N; }

# record SIGMA METHOD CLIP CLEAN_DIR OUT_DIR SECONDS
record() {
    local json
    json="$("$VDIFF" eval --json "$4" "$5")"
    python3 - "$1" "$2" "$3" "$6" "$json" >> "$results" <<'EOF'
import json, sys
sigma, method, clip, secs, m = sys.argv[1:6]
m = json.loads(m)
print(json.dumps(dict(sigma=float(sigma), method=method, clip=clip, seconds=float(secs),
                      frames=m["frames"], psnr=m["psnr"], ssim=m["ssim"], flicker=m["flicker"])))
EOF
    printf '%-5s %-16s %-9s PSNR %6.2f  flicker %6.2f  %6.1f s\n' "$1" "$2" "$3" \
        "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['psnr'])" "$json")" \
        "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['flicker'])" "$json")" "$6"
}

# ffmpeg FILTERGRAPH IN_DIR OUT_DIR: PNG sequence through a filter graph, frame names kept 0-based.
run_ffmpeg() {
    rm -rf "$3"; mkdir -p "$3"
    ffmpeg -nostdin -hide_banner -loglevel error -y -i "$2/%04d.png" -filter_complex "$1" \
        -start_number 0 "$3/%04d.png"
}

# subset SRC DST: frames BM3D_START.. of SRC as DST/0000.png...
subset() {
    rm -rf "$2"; mkdir -p "$2"
    for ((i = 0; i < BM3D_FRAMES; i++)); do
        cp "$1/$(printf %04d $((BM3D_START + i))).png" "$2/$(printf %04d "$i").png"
    done
}

for s in $SIGMAS; do
    noisy="$data/noisy$s"
    "$VDIFF" prepare --noisy "$s" --seed "$SEED" --from "$data/val" --out "$noisy" >/dev/null
    for m in $METHODS; do
        for c in $CLIPS; do
            clean="$data/val/$c"
            in="$noisy/$c"
            out="$work/s$s/$m/$c"
            label="$m"
            case "$m" in
            noisy)
                record "$s" noisy "$c" "$clean" "$in" 0
                continue
                ;;
            bm3d)
                subset "$clean" "$work/s$s/bm3d-clean/$c"
                subset "$in" "$work/s$s/bm3d-noisy/$c"
                clean="$work/s$s/bm3d-clean/$c"
                in="$work/s$s/bm3d-noisy/$c"
                label="bm3d ($BM3D_FRAMES frames)"
                ;;
            esac
            t0=$(now)
            case "$m" in
            opencv)
                # shellcheck disable=SC2046
                python3 "$here/compare/denoise_opencv.py" "$in" "$out" $(python3 "$here/compare/methods.py" opencv "$s")
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
                python3 "$here/compare/declip.py" "$out.dct" "$out" "$s"
                rm -rf "$out.dct"
                ;;
            *)
                run_ffmpeg "$(python3 "$here/compare/methods.py" chain "$m" "$s")" "$in" "$out"
                ;;
            esac
            t1=$(now)
            record "$s" "$label" "$c" "$clean" "$out" "$(python3 -c "print($t1 - $t0)")"
        done
    done
done

# Where and with what the rows were measured (the seconds per frame are this machine's).
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
cv=$(python3 -c "import cv2; print(cv2.__version__)" 2>/dev/null || echo "not installed")
rev=$(git -C "$root" describe --always --dirty 2>/dev/null || echo "unknown")
about="Written by benches/compare_denoisers.sh on $(date -u +%F) (methods: $METHODS; sigmas: $SIGMAS). \
$(ffmpeg -version | head -1 | cut -d' ' -f1-3), OpenCV $cv, VDiff $rev at its default settings \
(render flags: ${VDIFF_ARGS:-none but --noise-level}) with ${MODEL:-the built-in model}; $(nproc) cores of ${cpu:-an unknown CPU}. Rows of \
methods this run did not redo come from earlier runs."
python3 "$here/compare/table.py" "$results" "Denoisers on the VDiff validation clips (noise seed $SEED)" "$about" > "$table"
echo "wrote $table"

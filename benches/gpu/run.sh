#!/usr/bin/env bash
# The GPU checks, run on a machine with an NVIDIA GPU and driver but no Rust: render on CUDA
# (determinism across re-renders and --frames pieces, agreement with the CPU), the engine
# benchmark at 1080p and 2160p, training steps per second and training determinism, then, with
# TRAIN_DATA set, a fine-tune of the shipped model on that footage for TRAIN_SECONDS. Results go
# to OUT (default gpu-results/): log.txt and a few small files; frames stay in a scratch folder.
#
# Build the binary elsewhere (README, "NVIDIA GPUs"), strip it, and bring it along:
#   .ci/cuda-toolchain.sh DIR && . DIR/env.sh && cargo build --release --features cuda
#   strip -o vdiff-cuda target/release/vdiff && gzip -k vdiff-cuda
#   (there) [TRAIN_DATA=dir TRAIN_SECONDS=300 TRAIN_DEADLINE=540] benches/gpu/run.sh vdiff-cuda [OUT]
# With OFX_TEST (the integration test binary of that build: `cargo test --release --features cuda
# --no-run` names it) and VDIFF_PLUGIN (its plugin, built by `cargo build --release --features
# cuda --lib`: target/release/libvdiff.so), the in-repo host also renders through OFX CUDA render
# (device images on the host's stream) and compares the bytes with a host-memory render. Stripped
# and gzipped, the test binary is about 15 MB and vdiff about 27 MB: strip the plugin too, and send
# it in a second run if the three do not fit.
# The CUDA libraries come from CUDA_LIBS (folders, colon-separated) or from the PyPI nvidia-*
# packages of python3 (nvidia-cublas, nvidia-curand, nvidia-cuda-nvrtc, nvidia-cuda-runtime).
# Every stage has its own time limit and a failing stage does not stop the next.
set -uo pipefail
[ $# -ge 1 ] || { sed -n '2,20p' "$0"; exit 2; }
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
out=${2:-gpu-results}
mkdir -p "$out"; out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
if [ -z "${CUDA_LIBS:-}" ]; then
    CUDA_LIBS=$(python3 - <<'PY'
import glob, os
import nvidia
dirs = set()
for root in nvidia.__path__:
    for lib in glob.glob(os.path.join(root, "**", "lib"), recursive=True):
        if glob.glob(os.path.join(lib, "*.so*")):
            dirs.add(lib)
print(":".join(sorted(dirs)))
PY
)
fi
export LD_LIBRARY_PATH="$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec > >(tee "$out/log.txt") 2>&1
t0=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - t0 )) s)"; }
# run LIMIT CMD...: the command under a time limit; its failure is reported, not fatal.
run() {
    local limit=$1; shift
    timeout "$limit" "$@"
    local rc=$?
    [ $rc -eq 0 ] || echo "!! exit $rc: $*"
    return $rc
}

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
nproc
"$bin" --version

step "clip: the built-in demo clip, rendered on the CPU"
run 120 "$bin" demo --out "$work/demo" --device cpu
clip="$work/demo/noisy/%04d.png"

step "CUDA render, twice, and in two pieces"
run 120 "$bin" render "$clip" "$work/gpu-a/%04d.png" --noise-level 0.05 --device cuda
run 60 "$bin" render "$clip" "$work/gpu-b/%04d.png" --noise-level 0.05 --device cuda
run 60 "$bin" render "$clip" "$work/gpu-c/%04d.png" --noise-level 0.05 --device cuda --frames 0-4
run 60 "$bin" render "$clip" "$work/gpu-c/%04d.png" --noise-level 0.05 --device cuda --frames 5-11
same=yes
for f in "$work"/demo/denoised/*.png; do
    n=$(basename "$f")
    cmp -s "$work/gpu-a/$n" "$work/gpu-b/$n" || { echo "re-render differs: $n"; same=no; }
    cmp -s "$work/gpu-a/$n" "$work/gpu-c/$n" || { echo "pieces differ: $n"; same=no; }
done
echo "deterministic on the GPU: $same"

step "CUDA against the CPU (the CPU frames as reference)"
run 60 "$bin" eval "$work/demo/denoised" "$work/gpu-a" | tee "$out/gpu-vs-cpu.txt"

step "the stages after the network on the CPU cores (VDIFF_RESIDENT=0), against the GPU's"
run 120 env VDIFF_RESIDENT=0 "$bin" render "$clip" "$work/gpu-host/%04d.png" --noise-level 0.05 --device cuda
run 60 "$bin" eval "$work/gpu-host" "$work/gpu-a" | tee "$out/resident-vs-host-stages.txt"
run 120 env VDIFF_RESIDENT=0 "$bin" bench --device cuda --size 1920x1080 --frames 8 | tee "$out/bench-cuda-host-stages.txt"

step "a GPU build asked for the CPU"
run 60 "$bin" render "$clip" "$work/cpu-again/%04d.png" --noise-level 0.05 --device cpu --frames 0-1
cmp "$work/cpu-again/0000.png" "$work/demo/denoised/0000.png" && echo "same bytes as the demo's CPU render"

if [ -n "${OFX_TEST:-}" ] && [ -n "${VDIFF_PLUGIN:-}" ]; then
    step "OFX CUDA render in the in-repo host (device images, the host's stream)"
    VDIFF_PLUGIN=$(cd "$(dirname "$VDIFF_PLUGIN")" && pwd)/$(basename "$VDIFF_PLUGIN")
    export VDIFF_PLUGIN
    run 240 "$OFX_TEST" --exact host_scenarios::cuda_render_writes_the_bytes_of_a_host_memory_render \
        --nocapture | tee "$out/ofx-cuda.txt"
fi

step "engine benchmark on CUDA (defaults; cached neighbour frame included)"
run 240 "$bin" bench --device cuda --size 1920x1080 --size 3840x2160 --frames 24 | tee "$out/bench-cuda.txt"

step "training on CUDA: steps per second, and the same seed twice"
mkdir -p "$work/train-data"
cp -r "$work/demo/denoised" "$work/train-data/clip"
for r in a b; do
    run 120 "$bin" train --device gpu --data "$work/train-data" --out "$work/train-$r.safetensors" \
        --steps 40 --checkpoint-every 0 --batch 8 --frames 9 --crop 96 --seed 0 | tail -n 2
done
cmp "$work/train-a.safetensors" "$work/train-b.safetensors" && echo "training deterministic: yes"
tail -n 2 "$work/train-a.loss.csv"
# Where training on the GPU failed, the fine-tune below still runs, on the CPU cores.
device=gpu
[ -f "$work/train-a.safetensors" ] || { device=cpu; echo "!! the fine-tune runs on the CPU"; }

# TRAIN_DEADLINE (seconds after the start): the fine-tune ends by then, however long the
# checks before it took.
if [ -n "${TRAIN_DEADLINE:-}" ]; then
    room=$(( TRAIN_DEADLINE - ($(date +%s) - t0) ))
    [ "${TRAIN_SECONDS:-0}" -le "$room" ] || TRAIN_SECONDS=$room
fi
if [ -n "${TRAIN_DATA:-}" ] && [ "${TRAIN_SECONDS:-0}" -gt 30 ]; then
    # Fine-tune the shipped model: a constant learning rate for two thirds of the time (stopped
    # by SIGINT, which finishes the step and writes the checkpoint), then a cosine cool-down
    # sized from the measured step rate to fit the last third.
    # The recipe of the shipped stages 5 and 6: half the windows with their noise clipped, as
    # the 8-bit training frames store it, and most noise levels low (the defaults' median 0.055).
    flags=${TRAIN_FLAGS:---batch 32 --frames 9 --crop 64 --lr 2e-4 --warmup 100 --seed 5 --clip-noise 0.5}
    model="$out/gpu-tuned.safetensors"
    step "fine-tune on $TRAIN_DATA: ${TRAIN_SECONDS} s ($flags)"
    a_secs=$(( TRAIN_SECONDS * 2 / 3 ))
    # shellcheck disable=SC2086
    timeout -s INT "$a_secs" "$bin" train --device "$device" --data "$TRAIN_DATA" \
        --init "$repo/resources/vdiff-default.safetensors" --out "$model" --steps 1000000 \
        --checkpoint-every 500 $flags | tail -n 2
    last=$(tail -n 1 "$out/gpu-tuned.loss.csv")
    done_steps=$(echo "$last" | cut -d, -f1)
    secs=$(echo "$last" | cut -d, -f7)
    left=$(( TRAIN_SECONDS - a_secs ))
    more=$(awk -v n="$done_steps" -v s="$secs" -v l="$left" 'BEGIN { printf "%d", 0.85 * l * n / s }')
    echo "stage A: $done_steps steps in $secs s; cool-down: $more steps"
    cp "$model" "$out/gpu-tuned-a.safetensors"
    if [ "$more" -gt 0 ]; then
        timeout -s INT "$(( left + 20 ))" "$bin" train --device "$device" \
            --resume "$out/gpu-tuned.ckpt.safetensors" \
            --out "$model" --steps $(( done_steps + more )) --cooldown "$more" \
            --checkpoint-every 500 | tail -n 2
    fi
    rm -f "$out/gpu-tuned.ckpt.safetensors"
    tail -n 3 "$out/gpu-tuned.loss.csv"
fi

step "done"
rm -rf "$work"

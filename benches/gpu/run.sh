#!/usr/bin/env bash
# The GPU checks, run on a machine with an NVIDIA GPU and driver but no Rust: render on CUDA
# (determinism across re-renders and --frames pieces, agreement with the CPU), the engine
# benchmark at 1080p and 2160p, and training steps per second. Results go to OUT (default
# gpu-results/): a log and the numbers.
#
# Build the binary elsewhere (README, "NVIDIA GPUs"), strip it, and bring it along:
#   .ci/cuda-toolchain.sh DIR && . DIR/env.sh && cargo build --release --features cuda
#   strip -o vdiff-cuda target/release/vdiff && gzip -k vdiff-cuda
#   (there) benches/gpu/run.sh vdiff-cuda [OUT]
# The CUDA libraries come from CUDA_LIBS (folders, colon-separated) or from the PyPI nvidia-*
# packages of python3 (nvidia-cublas, nvidia-curand, nvidia-cuda-nvrtc, nvidia-cuda-runtime).
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,13p' "$0"; exit 2; }
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
out=${2:-gpu-results}
mkdir -p "$out"; out=$(cd "$out" && pwd)
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
log="$out/log.txt"
exec > >(tee "$log") 2>&1
step() { echo; echo "== $* ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
nproc
"$bin" --version || true

step "clip: the built-in demo clip, rendered on the CPU"
"$bin" demo --out "$out/demo" --device cpu --temporal-radius 2
clip="$out/demo/noisy/%04d.png"
cp -r "$out/demo/denoised" "$out/cpu"

step "CUDA render, twice, and in two pieces"
"$bin" render "$clip" "$out/gpu-a/%04d.png" --noise-level 0.05 --device cuda
"$bin" render "$clip" "$out/gpu-b/%04d.png" --noise-level 0.05 --device cuda
"$bin" render "$clip" "$out/gpu-c/%04d.png" --noise-level 0.05 --device cuda --frames 0-4
"$bin" render "$clip" "$out/gpu-c/%04d.png" --noise-level 0.05 --device cuda --frames 5-11
same=yes
for f in "$out"/gpu-a/*.png; do
    n=$(basename "$f")
    cmp -s "$f" "$out/gpu-b/$n" || { echo "re-render differs: $n"; same=no; }
    cmp -s "$f" "$out/gpu-c/$n" || { echo "pieces differ: $n"; same=no; }
done
echo "deterministic on the GPU: $same"

step "CUDA against the CPU (PSNR of the GPU frames, the CPU frames as reference)"
"$bin" eval "$out/cpu" "$out/gpu-a" | tee "$out/gpu-vs-cpu.txt"

step "no GPU asked of a GPU build: --device cpu still works"
"$bin" render "$clip" "$out/cpu-again/%04d.png" --noise-level 0.05 --device cpu --frames 0-1

step "engine benchmark on CUDA (defaults; cached neighbour frame included)"
"$bin" bench --device cuda --size 1920x1080 --size 3840x2160 --frames 16 | tee "$out/bench-cuda.txt"

step "training steps per second on CUDA"
mkdir -p "$out/train-data"
cp -r "$out/demo/noisy" "$out/train-data/clip"
"$bin" train --device gpu --data "$out/train-data" --out "$out/train.safetensors" --steps 60 \
    --checkpoint-every 0 --batch 8 --frames 5 --crop 96 --seed 0 | tail -n 5
tail -n 3 "$out"/train.loss.csv || true

step "done"

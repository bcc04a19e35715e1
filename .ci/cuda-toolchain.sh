#!/usr/bin/env bash
# Sets up what `cargo build --features cuda` needs on a machine with neither a GPU nor a CUDA
# install: the CUDA 13.0 compiler from PyPI (nvcc, its headers, NVVM, the runtime), and stub
# libraries to link against in place of the NVIDIA driver (libcuda) and the CUDA libraries
# candle links (cuBLAS, cuBLASLt, cuRAND, NVRTC). The stubs only satisfy the linker: the built
# program loads the real libraries, so it runs only where the NVIDIA driver is installed.
#
#   .ci/cuda-toolchain.sh DIR && . DIR/env.sh && cargo build --release --features cuda
#
# 13.0 matches driver 580 (CUDA 13.0). nvvm is pinned too: left free, pip brings 13.x PTX that
# a 13.0 driver cannot load. CUDA_COMPUTE_CAP defaults to 90 (Hopper: H100/H200); set it before
# sourcing env.sh for another GPU (e.g. 89 for Ada, 80 for A100).
# Needs: python3 with pip, a C compiler, cargo (to find the cudarc sources the stubs are generated from).
set -euo pipefail
[ $# -eq 1 ] || { sed -n '2,13p' "$0"; exit 2; }
mkdir -p "$1"; dir=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
cu="$dir/pypi/nvidia/cu13"

if [ ! -x "$cu/bin/nvcc" ]; then
    # --target installs nothing into the system Python; the variable lets Debian's pip do it.
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --no-deps --target "$dir/pypi" \
        nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 \
        nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88
fi
"$cu/bin/nvcc" --version | grep -q "release 13.0" || { echo "nvcc is not CUDA 13.0" >&2; exit 1; }

# Stubs: every function cudarc's bindings declare for each library (a superset of what the
# program references), each returning an error code, under the real library's soname.
ver=$(grep -A1 '^name = "cudarc"$' "$repo/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')
(cd "$repo" && cargo fetch --quiet)
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$ver" | head -n1)
[ -d "$src" ] || { echo "cudarc $ver sources not found" >&2; exit 1; }
mkdir -p "$dir/stubs"
while read -r module lib soname; do
    grep -oE '^pub unsafe fn [A-Za-z_0-9]+' "$src/src/$module/sys/mod.rs" | sort -u |
        awk '{ print "int " $4 "(void) { return 999; }" }' >"$dir/stubs/$lib.c"
    cc -shared -fPIC -Wl,-soname,"$soname" -o "$dir/stubs/lib$lib.so" "$dir/stubs/$lib.c"
done <<'LIBS'
driver cuda libcuda.so.1
cublas cublas libcublas.so.13
cublaslt cublasLt libcublasLt.so.13
curand curand libcurand.so.10
nvrtc nvrtc libnvrtc.so.13
LIBS
ln -sf "$cu/lib/libcudart.so.13" "$dir/stubs/libcudart.so"

cat >"$dir/env.sh" <<ENV
# Source this before cargo ... --features cuda (written by .ci/cuda-toolchain.sh).
export PATH="$cu/bin:\$PATH"
export NVCC="$cu/bin/nvcc"
export CUDA_ROOT="$cu"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH="$dir/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
ENV
echo "CUDA toolchain in $dir: . $dir/env.sh"

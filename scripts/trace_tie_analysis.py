#!/usr/bin/env python3
"""Why three reference traces are tie-sensitive (see tests/optim_traces.rs).

Recomputes the step-1 scores of adam_mv_filter, adam_gv_filter and
mofo_rmsprop_momentum with our formulas (SPEC.md section 2), once with
torch's float32 sqrt and once with a correctly rounded sqrt (numpy), and
reports whether the top-k (ties to the smaller index) equals the set of
entries the reference changed. torch's float32 sqrt on x86-64 is MKL's
vsSqrt kernel (rsqrtps + one correction, not correctly rounded), which
src/kernels/torch_sqrt.rs re-implements for our filter scores; with it
`mofo replay` reproduces these traces in f32. Needs torch and numpy (not
part of CI):

    python scripts/trace_tie_analysis.py [../shared/reference/optim]
"""
import json, math, sys

import numpy as np
import torch

ref = sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/optim"


def topk(score, k):
    vals = score.tolist()
    return set(sorted(range(len(vals)), key=lambda i: (-vals[i], i))[:k])


def scores(trace, g, sqrt):
    b = trace["base"]
    eps = np.float32(b["eps"])
    if b["kind"] == "adam":
        b1, b2 = b["betas"]
        m = np.float32(1 - b1) * g                       # lerp from 0
        v = (np.float32(1 - b2) * g) * g                 # addcmul order
        denom = sqrt(v / np.float32(1 - b2)) + eps       # sqrt(v / bc2) + eps
        num = np.abs(m / np.float32(1 - b1)) if trace["filter"]["kind"] == "mv" else np.abs(g)
        return num / denom
    sq = (np.float32(1 - b["alpha"]) * g) * g
    return np.abs(g / (sqrt(sq) + eps))                  # |momentum buffer| at step 1


torch_sqrt = lambda x: torch.from_numpy(x).sqrt().numpy()
for name in ["adam_mv_filter", "adam_gv_filter", "mofo_rmsprop_momentum"]:
    t = json.load(open(f"{ref}/{name}.json"))
    for blk in t["blocks"]:
        n = blk["name"]
        x = np.array(t["init"][n], np.float32)
        e = np.array(t["expected"][0][n], np.float32)
        g = np.array(t["grads"][0][n], np.float32)
        chosen = set(np.nonzero(e != x)[0].tolist())
        k = min(x.size, max(1, math.ceil(t["filter"]["fraction"] * x.size - 1e-9)))
        with_torch = topk(scores(t, g, torch_sqrt), k) == chosen
        with_ieee = topk(scores(t, g, np.sqrt), k) == chosen
        print(f"{name:24} {n:30} torch sqrt: {with_torch!s:5}  correctly rounded sqrt: {with_ieee}")

x = torch.rand(1_000_000, generator=torch.Generator().manual_seed(0)) * 10
off = (x.sqrt().numpy() != np.sqrt(x.numpy())).mean()
print(f"torch {torch.__version__} float32 sqrt differs from the correctly rounded one on {off:.1%} of 1e6 inputs")

"""PyTorch's AdamW step with a finiteness check of the gradients, on CPU.

`mofo bench optim`'s default step checks that every gradient is finite
before it changes anything (a non-finite gradient leaves θ and the state
untouched and is reported). PyTorch's fused AdamW step makes no such check,
so ../shared/bench/torch_optim_bench.py times less work than our default
step. This script times, on the same tensors (GPT-2-small-shaped, scale
0.25 = 40.6M parameters), the ways a PyTorch user gets that guarantee:

- adamw_fused_ms: the fused step alone (no check; as torch_optim_bench.py);
- adamw_fused_gradscaler_ms: torch.amp.GradScaler("cpu", init_scale=1.0)
  around the fused step, PyTorch's own skip-on-inf path (scaler.step checks
  the gradients for inf/NaN in a pass of its own, then the fused kernel
  takes found_inf and skips the step if it is set);
- adamw_fused_normcheck_ms: torch.nn.utils.get_total_norm of the gradients,
  the step only when it is finite (clip_grad_norm_'s read without the clip).

Each is the median of REPS steps after one untimed. Prints JSON, ms per step.
Usage: python torch_optim_checked_bench.py [scale] [reps]
"""
import json
import math
import sys
import time

import torch

torch.manual_seed(0)
scale = float(sys.argv[1]) if len(sys.argv) > 1 else 0.25
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 9
d = int(768 * math.sqrt(scale) // 64 * 64)
shapes = [(50304, d)]
for _ in range(12):
    shapes += [(3 * d, d), (d, d), (4 * d, d), (d, 4 * d), (d,), (d,), (3 * d,), (4 * d,)]
params = [torch.nn.Parameter(torch.randn(*s) * 0.02) for s in shapes]
n = sum(p.numel() for p in params)
for p in params:
    p.grad = torch.randn_like(p) * 1e-3
grads = [p.grad for p in params]


def timeit(fn):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2] * 1e3


out = {"params": n, "threads": torch.get_num_threads(), "torch": torch.__version__}

opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
out["adamw_fused_ms"] = timeit(opt.step)

opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
# growth_interval so large that the scale stays 1.0: the gradients are not
# rescaled, only checked.
scaler = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=1 << 30)
# The scale tensor is made by the first scale() call (of the loss, in
# training).
scaler.scale(torch.ones(()))


def scaled_step():
    scaler.step(opt)
    scaler.update()


out["adamw_fused_gradscaler_ms"] = timeit(scaled_step)
# The check found nothing, so no step was skipped: the scale is still 1.0
# and every call stepped (one untimed, then the timed ones).
assert scaler.get_scale() == 1.0
assert int(opt.state[params[0]]["step"]) == reps + 1

opt = torch.optim.AdamW(params, lr=1e-5, fused=True)


def norm_checked_step():
    if torch.isfinite(torch.nn.utils.get_total_norm(grads)):
        opt.step()
    else:
        raise RuntimeError("non-finite gradient")


out["adamw_fused_normcheck_ms"] = timeit(norm_checked_step)
print(json.dumps(out))

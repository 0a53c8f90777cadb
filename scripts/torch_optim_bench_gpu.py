"""One optimizer step in PyTorch on a CUDA GPU, for `mofo bench optim --device cuda`.

The tensors of ../shared/bench/torch_optim_bench.py (GPT-2-small-shaped, scale
0.25 = 40.6M parameters) on the GPU; each step is timed to
torch.cuda.synchronize() (median of REPS after WARMUP untimed). Prints JSON,
ms per step: AdamW (foreach), AdamW (fused), and MoFO written as the
published implementation does it (per-tensor torch.topk threshold on |m|,
then a masked Adam update).
Usage: python torch_optim_bench_gpu.py [scale] [reps]
"""
import json
import math
import sys
import time

import torch

torch.manual_seed(0)
scale = float(sys.argv[1]) if len(sys.argv) > 1 else 0.25
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 21
dev = torch.device("cuda")
d = int(768 * math.sqrt(scale) // 64 * 64)
shapes = [(50304, d)]
for _ in range(12):
    shapes += [(3 * d, d), (d, d), (4 * d, d), (d, 4 * d), (d,), (d,), (3 * d,), (4 * d,)]
params = [torch.nn.Parameter(torch.randn(*s, device=dev) * 0.02) for s in shapes]
n = sum(p.numel() for p in params)
for p in params:
    p.grad = torch.randn_like(p) * 1e-3


def timeit(fn, warmup=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2] * 1e3


out = {"params": n, "device": torch.cuda.get_device_name(), "torch": torch.__version__}
opt = torch.optim.AdamW(params, lr=1e-5, foreach=True)
out["adamw_foreach_ms"] = timeit(opt.step)
opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
out["adamw_fused_ms"] = timeit(opt.step)

state = {p: (torch.zeros_like(p), torch.zeros_like(p)) for p in params}
step = [0]


def mofo_step(frac=0.1, lr=1e-5, b1=0.9, b2=0.999, eps=1e-8):
    step[0] += 1
    t = step[0]
    with torch.no_grad():
        for p in params:
            m, v = state[p]
            g = p.grad
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            h = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
            k = max(1, int(p.numel() * frac))
            thr = torch.topk(m.abs().view(-1), k)[0].min()
            p.addcdiv_(torch.where(m.abs() >= thr, m, 0), h, value=-lr / (1 - b1 ** t))


out["mofo_topk_ms"] = timeit(mofo_step)
src = torch.empty(4 * n, device=dev)
dst = torch.empty_like(src)
out["copy_gb_per_s"] = 2 * 16 * n / (timeit(lambda: dst.copy_(src)) * 1e6)
print(json.dumps(out))

#!/usr/bin/env python3
"""Compare `mofo forward` output with transformers + torch on the same model.

Usage (needs torch, transformers, safetensors: see ../shared/bench/README.md):
    mofo init-model --config CONFIG.json --seed 7 --out /tmp/m
    echo '[[1,5,9,13,2,7,40,3],[4,4,4,4,8,8,8,8]]' > /tmp/ids.json
    mofo forward --model /tmp/m --input-ids /tmp/ids.json --out /tmp/out.safetensors
    python3 scripts/transformers_parity.py /tmp/m /tmp/ids.json /tmp/out.safetensors

Prints the largest logit difference, both losses and the worst gradient error
relative to max(1, max |grad|) over all parameters (the parity tolerances are
1e-4, 1e-5 and 1e-4).
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

model_dir, ids_path, ours_path = sys.argv[1:4]
m = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation="eager").float()
ids = torch.tensor(json.load(open(ids_path)))
out = m(input_ids=ids, labels=ids)
out.loss.backward()
ours = load_file(ours_path)
print("max |logits - ours|:", (out.logits - ours["logits"]).abs().max().item())
print("loss: transformers", out.loss.item(), "ours", ours["loss"].item())
worst = 0.0
for name, p in m.named_parameters():
    g = ours["grad." + name]
    worst = max(worst, ((p.grad - g).abs().max() / max(1.0, p.grad.abs().max().item())).item())
print("worst gradient error / max(1, max|grad|):", worst)

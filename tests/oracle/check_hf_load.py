#!/usr/bin/env python3
"""A lowp checkpoint loads in Hugging Face transformers and gives the same loss (issue 4).

Usage: check_hf_load.py CKPT_DIR TEXT_FILE B T LOWP_LOSS
Loads CKPT_DIR (model.safetensors + config.json written by `lowp train --out`) with
transformers' AutoModelForCausalLM, computes the mean cross-entropy over the first B x T
validation tokens of TEXT_FILE exactly as `lowp eval` takes them (byte-level tokens; the
validation split is the last floor(0.1 n) bytes of an ASCII file; batch row b is
val[b T : b T + T], targets shifted by one), in float64, and compares with lowp's figure.
Exit 0 when they agree to 1e-5 relative."""
import sys

import torch
from transformers import AutoModelForCausalLM

ckpt, text, B, T, lowp_loss = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
data = open(text, "rb").read()
assert all(b < 128 for b in data), "the check needs an ASCII file (no UTF-8 boundary shift)"
val = data[len(data) - int(len(data) * 0.1):]
ids = torch.tensor([list(val[b * T:b * T + T]) for b in range(B)])
tgt = torch.tensor([list(val[b * T + 1:b * T + T + 1]) for b in range(B)])
model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float64, attn_implementation="eager")
model.eval()
with torch.no_grad():
    logits = model(ids).logits
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1)).item()
rel = abs(loss - lowp_loss) / abs(loss)
print(f"{type(model).__name__}: transformers loss {loss:.7f}, lowp {lowp_loss:.7f}, relative difference {rel:.2e}")
sys.exit(0 if rel < 1e-5 else 1)

# Generates dynamic_map_signed.f32: bitsandbytes' functional.create_dynamic_map(signed=True,
# max_exponent_bits=7, total_bits=8) (the signed branch, transcribed), run with torch 2.11.0 on the
# GPU machine's CPU (x86, AVX512 build: its linspace uses fused multiply-adds).
# Run: OUT=<dir> /opt/torch/.venv/bin/python gen_dynamic_map.py
import os

import torch


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2**total_bits
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


create_dynamic_map().numpy().tofile(os.environ["OUT"] + "/dynamic_map_signed.f32")

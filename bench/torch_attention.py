#!/usr/bin/env python3
"""PyTorch's causal attention kernels at GPT-2's shapes: the reference for bench_cuda_attention.

    python3 bench/torch_attention.py

F.scaled_dot_product_attention(q, k, v, is_causal=True) on bf16 (B, NH, T, 64) tensors under
each SDPA backend (FLASH, CUDNN, EFFICIENT), forward then backward (dq, dk, dv from a random
dout), median of 10 timed runs (CUDA events) after 3 warm-ups. TFLOP/s count the causal work as
bench_cuda_attention does: forward 2 * 2 * B * NH * T * T * hs / 2, backward 2.5 times that.
One JSON line per result."""
import json
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [("gpt2-124M", 16, 12, 1024, 64), ("gpt2-774M", 8, 20, 1024, 64)]
BACKENDS = [("FLASH", SDPBackend.FLASH_ATTENTION), ("CUDNN", SDPBackend.CUDNN_ATTENTION),
            ("EFFICIENT", SDPBackend.EFFICIENT_ATTENTION)]


def median_ms(fn, warmup=3, reps=10):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def main():
    torch.manual_seed(0)
    print(f"# {torch.cuda.get_device_name()}, PyTorch {torch.__version__}")
    for name, B, NH, T, hs in SHAPES:
        q, k, v = (torch.randn(B, NH, T, hs, device="cuda", dtype=torch.bfloat16,
                               requires_grad=True) for _ in range(3))
        dout = torch.randn(B, NH, T, hs, device="cuda", dtype=torch.bfloat16)
        fwd_flops = 2 * 2 * B * NH * T * T * hs / 2
        for label, backend in BACKENDS:
            with sdpa_kernel([backend]):
                try:
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                except RuntimeError as e:  # a backend that refuses the shape
                    print(json.dumps({"model": name, "backend": label, "error": str(e)[:80]}))
                    continue
                fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
                bwd = median_ms(lambda: torch.autograd.grad(out, (q, k, v), dout,
                                                            retain_graph=True))
            print(json.dumps({"model": name, "B": B, "NH": NH, "T": T, "hs": hs,
                              "backend": label, "fwd_ms": round(fwd, 4), "bwd_ms": round(bwd, 4),
                              "fwd_tflops": round(fwd_flops / fwd / 1e9, 1),
                              "bwd_tflops": round(2.5 * fwd_flops / bwd / 1e9, 1)}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch DDP side of lowp's multi-GPU benchmark (issue 7), launched by torchrun.

    torchrun --standalone --nproc_per_node N bench/torch_ddp.py [--model gpt2-350m]
        [--batch 8] [--seq 1024] [--vocab 50304] [--steps 20] [--warmup 5]

The model, its initialization and the step are bench/torch_gpt2.py's bf16 mode (nanoGPT's
GPT-2, bf16 autocast, fused AdamW lr 6e-4 betas 0.9/0.95 weight decay 0.1 on matrices, gradient
clipping at 1.0), wrapped in DistributedDataParallel (NCCL, default 25 MB buckets, gradients
all-reduced in fp32 during the backward) and then torch.compile'd (DDPOptimizer splits the graph
at the bucket boundaries so that the all-reduces overlap the backward). --batch is per GPU:
each rank trains on its own random tokens, so the global batch is N x batch.

Rank 0 prints one JSON line: impl "pytorch-ddp", gpus, model, batch (per GPU), seq,
tokens_per_s (all GPUs together: N x B x T x steps / time), step_ms, peak_mem_gib (rank 0's),
loss_first, loss_last, warmup_s, torch. Timing: --warmup steps (compilation), then --steps steps
between torch.cuda.synchronize() and a barrier."""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt2 import GPT, MODELS  # noqa: E402  (the same model as the 1-GPU benchmark)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gpt2-350m", choices=list(MODELS))
    ap.add_argument("--batch", type=int, default=8, help="per GPU")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank))
    torch.cuda.set_device(local)
    torch.set_float32_matmul_precision("high")
    L, H, C = MODELS[args.model]
    B, T, V = args.batch, args.seq, args.vocab
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    with torch.device("cuda"):
        model = GPT(L, H, C, V, T, nn.Linear)
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    fwd = torch.compile(DDP(model, device_ids=[local]))
    gen = torch.Generator(device="cuda").manual_seed(1234 + rank)
    losses = []

    def step():
        x = torch.randint(0, V, (B, T), device="cuda", generator=gen)
        y = torch.randint(0, V, (B, T), device="cuda", generator=gen)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    dist.barrier()
    warmup_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        first, last = losses[0].item(), losses[-1].item()
        rec = {"impl": "pytorch-ddp", "mode": "bf16-compile", "gpus": world, "model": args.model,
               "batch": B, "seq": T, "vocab": V, "steps": args.steps,
               "tokens_per_s": round(world * B * T * args.steps / dt, 1),
               "step_ms": round(dt / args.steps * 1e3, 3),
               "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
               "loss_first": first if math.isfinite(first) else None,
               "loss_last": last if math.isfinite(last) else None,
               "warmup_s": round(warmup_s, 1), "torch": torch.__version__,
               "device": torch.cuda.get_device_name()}
        print(json.dumps(rec), flush=True)
        print(f"pytorch DDP {world} GPU(s) {args.model} B={B}/GPU: "
              f"{rec['tokens_per_s']:,.0f} tok/s, peak {rec['peak_mem_gib']:.1f} GiB, "
              f"warmup {warmup_s:.0f} s", file=sys.stderr, flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

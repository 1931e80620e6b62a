#!/usr/bin/env python3
"""PyTorch side of lowp's GPU training benchmark (issue 5).

Trains GPT-2-shaped models on random tokens with PyTorch and prints one JSON line per
(model, mode, batch) on stdout and a readable line on stderr. bench/gpu_train.sh runs lowp's own
GPU training benchmark and then this script in the same session on the GPU machine, and feeds
the JSON lines of both to bench/compare_table.py, which prints them side by side.

    python3 bench/torch_gpt2.py [--models gpt2-124m,gpt2-350m,gpt2-774m] [--modes bf16,fp8]
        [--batch 16[,8,...]] [--seq 1024] [--vocab 50304] [--steps 20] [--warmup 5]
        [--compile model|regional|none] [--peak-tflops 989] [--profile N]

Model: nanoGPT's GPT-2 (wte + wpe, pre-LayerNorm blocks with biases, causal attention through
F.scaled_dot_product_attention, GELU(tanh) MLP, LM head tied to wte), initialized like nanoGPT
(normal 0.02, residual projections 0.02/sqrt(2L)). Sizes: gpt2-124m (L12 H12 C768), gpt2-350m
(L24 H16 C1024), gpt2-774m (L36 H20 C1280). Random tokens, fresh each step.

Modes (each with fp32 master weights, fused AdamW lr 6e-4 betas 0.9/0.95 weight decay 0.1 on
matrices, gradient clipping at norm 1.0):
  bf16  torch.autocast(bfloat16) around the forward pass.
  fp8   as bf16, but every nn.Linear of the transformer blocks is an Fp8Linear: input and weight
        quantized per tensor to float8_e4m3fn with current scaling (scale = 448/amax), the output
        gradient to float8_e5m2 (scale = 57344/amax); fprop, dgrad and wgrad are
        torch._scaled_mm with those tensor-wise scales (fprop with fast accumulation, as in
        torchao's and Transformer Engine's defaults). The tied LM head stays bf16.
The JSON "mode" is "<mode>-compile" when torch.compile ran, else "<mode>-eager".
--compile model (default) compiles the whole model (loss included); --compile regional compiles
each block and the head+loss separately (identical blocks reuse one compiled graph, so it is
much faster to compile: use it to fit a time limit); --compile none runs eagerly. If compiling
fails, the run goes on eagerly, says so on stderr and reports "compiled": false with
"compile_error".

Measurement: --warmup steps (not timed; compilation happens there), then peak memory statistics
are reset and --steps steps are timed between torch.cuda.synchronize() calls with
time.perf_counter(). tokens_per_s = B*T*steps/time; peak_mem_gib = max_memory_allocated()/2^30
over the timed steps; loss_first is the loss of the very first step (before any update),
loss_last that of the last timed step.
MFU is nanoGPT's estimate_mfu: flops_per_token = 6*N + 12*L*H*Q*T with N = the parameter count
without the position embedding (wte counts once, as the tied head) and Q = C/H, and
mfu = flops_per_token * tokens_per_s / (peak_tflops * 1e12), as a fraction. The peak is the H100
SXM's dense bf16 989 TFLOP/s for every mode (fp8 too), so MFU is a normalized throughput.

Output keys: impl ("pytorch"), mode, model, batch, seq, vocab, n_params, flops_per_token,
tokens_per_s, step_ms, mfu, peak_mem_gib, loss_first, loss_last, nan, compiled, compile_scope,
warmup_s, steps, device, torch; "error" when a run failed (e.g. "out of memory"; then no
figures), "compile_error" when it fell back to eager.
Exit status: 0, or 1 if any run failed or had a NaN/inf loss; every configuration is tried.
Time (estimated, not yet measured): the 3 models x 2 modes with --compile model take several
minutes, mostly compilation (warmup_s says how long each took); --compile regional compiles
much faster. Run models separately (--models) to stay within a time limit per command.
Memory: 774M at B=16 T=1024 is estimated at well under 80 GB (about 12.4 GB of weights, gradients
and AdamW state plus the activations); if it runs out of memory, that row says so: run it again
with --batch 8.
"""
import argparse
import gc
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = {"gpt2-124m": (12, 12, 768), "gpt2-350m": (24, 16, 1024), "gpt2-774m": (36, 20, 1280)}
E4M3_MAX, E5M2_MAX = 448.0, 57344.0


def quantize(x, fmt, fmax):
    """Current per-tensor scaling: (x*s in fmt, 1/s as an fp32 0-d tensor), s = fmax/amax|x|."""
    amax = x.abs().amax().float().clamp(min=1e-12)  # all-zero tensors: huge scale, zeros out
    scale = fmax / amax
    # Clamp before the cast: PyTorch's float8 casts do not saturate (out of range gives NaN).
    q = (x.float() * scale).clamp(-fmax, fmax).to(fmt).contiguous()
    return q, scale.reciprocal()


class Fp8Matmul(torch.autograd.Function):
    """y = x @ w.T with x, w in e4m3 and dy in e5m2, each scaled per tensor (current scaling).

    torch._scaled_mm wants its first operand row-major and its second column-major (the .t() of
    a row-major tensor); the scales passed are the dequantization scales 1/s.
    """

    @staticmethod
    def forward(ctx, x, w):  # x (M, K), w (N, K)
        xq, xs = quantize(x, torch.float8_e4m3fn, E4M3_MAX)
        wq, ws = quantize(w, torch.float8_e4m3fn, E4M3_MAX)
        ctx.save_for_backward(xq, xs, wq, ws)
        ctx.x_dtype = x.dtype
        return torch._scaled_mm(xq, wq.t(), xs, ws, out_dtype=torch.bfloat16, use_fast_accum=True)

    @staticmethod
    def backward(ctx, dy):  # dy (M, N)
        xq, xs, wq, ws = ctx.saved_tensors
        dyq, dys = quantize(dy, torch.float8_e5m2, E5M2_MAX)
        # dgrad: dx (M, K) = dy (M, N) @ w (N, K), w handed over column-major
        dx = torch._scaled_mm(dyq, wq.t().contiguous().t(), dys, ws, out_dtype=torch.bfloat16)
        # wgrad: dw (N, K) = dy.T (N, M) @ x (M, K), x handed over column-major; fp32 like w
        dw = torch._scaled_mm(dyq.t().contiguous(), xq.t().contiguous().t(), dys, xs,
                              out_dtype=torch.float32)
        return dx.to(ctx.x_dtype), dw


class Fp8Linear(nn.Linear):
    def __init__(self, fan_in, fan_out):
        # _scaled_mm needs every dimension to be a multiple of 16 (M = B*T is checked at run time)
        assert fan_in % 16 == 0 and fan_out % 16 == 0, (fan_in, fan_out)
        super().__init__(fan_in, fan_out)

    def forward(self, x):
        y = Fp8Matmul.apply(x.reshape(-1, x.shape[-1]), self.weight)
        return y.view(*x.shape[:-1], -1) + self.bias.to(y.dtype)


class Block(nn.Module):
    def __init__(self, n_head, C, linear):
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.attn_proj = linear(C, 3 * C), linear(C, C)
        self.c_fc, self.mlp_proj = linear(C, 4 * C), linear(4 * C, C)

    def forward(self, x):  # (B, T, C)
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = [t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Q)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, n_layer, n_head, C, vocab, seq, linear):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, C), nn.Embedding(seq, C)
        self.h = nn.ModuleList([Block(n_head, C, linear) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(C)
        for name, p in self.named_parameters():  # nanoGPT's initialization
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))
            elif name.endswith("weight") and p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith("bias") and "ln_" not in name:
                nn.init.zeros_(p)

    def embed(self, idx):  # (B, T) -> (B, T, C)
        return self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))

    def head_loss(self, x, targets):  # LM head tied to wte, then mean cross-entropy
        logits = F.linear(self.ln_f(x), self.wte.weight)  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    def forward(self, idx, targets):
        x = self.embed(idx)
        for block in self.h:
            x = block(x)
        return self.head_loss(x, targets)


def compiled_forward(model, scope):
    """The forward function to train with: the whole model compiled, its repeated parts, or none."""
    if scope == "model":
        return torch.compile(model)
    if scope == "regional":
        blocks = [torch.compile(b) for b in model.h]
        head = torch.compile(model.head_loss)

        def forward(idx, targets):
            x = model.embed(idx)
            for block in blocks:
                x = block(x)
            return head(x, targets)
        return forward
    return model


def fmt(loss):
    return "nan" if loss is None else f"{loss:.4f}"


def first_line(e):
    return (f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0])[:300]


def profile_step(step, top):
    """Prints on stderr where one step's GPU time goes: the top kernels by total time."""
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    events.sort(key=lambda e: -e.device_time_total)
    total = sum(e.device_time_total for e in events)
    print(f"  one step's kernels: {total / 1e3:.2f} ms", file=sys.stderr)
    for e in events[:top]:
        print(f"  {e.device_time_total / 1e3:8.3f} ms {e.count:5d}x  {e.key[:100]}",
              file=sys.stderr)


def bench(args, name, mode, B, rec):
    """Trains one configuration and fills rec with its figures."""
    L, H, C = MODELS[name]
    T, V = args.seq, args.vocab
    if mode == "fp8" and (B * T) % 16:
        raise ValueError(f"fp8 needs B*T to be a multiple of 16, got {B * T}")
    torch.manual_seed(0)
    with torch.device("cuda"):  # initialize on the GPU: much faster than on the CPU for 774M
        model = GPT(L, H, C, V, T, Fp8Linear if mode == "fp8" else nn.Linear)
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    n_params = sum(p.numel() for p in params) - model.wpe.weight.numel()
    gen = torch.Generator(device="cuda").manual_seed(1234)
    fwd = compiled_forward(model, args.compile)
    compiled = args.compile != "none"
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
    try:
        step()  # compiles, when compiling
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as e:  # compilation failed: go on eagerly, and say so
        if not compiled:
            raise
        rec["compile_error"] = first_line(e)
        print(f"  torch.compile failed ({rec['compile_error']}); falling back to eager",
              file=sys.stderr)
        torch._dynamo.reset()
        fwd, compiled = model, False
        opt.zero_grad(set_to_none=True)
        losses.clear()
        step()
    for _ in range(args.warmup - 1):
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0

    if args.profile:
        profile_step(step, args.profile)
    loss_first, loss_last = losses[0].item(), losses[-1].item()
    nan = not all(math.isfinite(v) for v in torch.stack(losses).float().tolist())
    tokens_per_s = B * T * args.steps / dt
    flops_per_token = 6 * n_params + 12 * L * H * (C // H) * T
    rec.update(
        mode=f"{mode}-{'compile' if compiled else 'eager'}", n_params=n_params,
        flops_per_token=flops_per_token, tokens_per_s=round(tokens_per_s, 1),
        step_ms=round(dt / args.steps * 1e3, 3),
        mfu=round(flops_per_token * tokens_per_s / (args.peak_tflops * 1e12), 4),
        peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3),
        loss_first=loss_first if math.isfinite(loss_first) else None,
        loss_last=loss_last if math.isfinite(loss_last) else None, nan=nan, compiled=compiled,
        warmup_s=round(warmup_s, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--modes", default="bf16,fp8")
    ap.add_argument("--batch", default="16", help="one batch size or a comma-separated list")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", choices=["model", "regional", "none"], default="model")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after timing, profile one step and print its N longest kernels")
    args = ap.parse_args()
    models = args.models.split(",")
    modes = args.modes.split(",")
    batches = [int(b) for b in args.batch.split(",") if b.isdigit()]
    bad = [m for m in models if m not in MODELS] + [m for m in modes if m not in ("bf16", "fp8")]
    if len(batches) != len(args.batch.split(",")):
        bad.append(args.batch)
    if (bad or args.warmup < 1 or args.steps < 1 or min(batches, default=0) < 1
            or args.profile < 0):
        ap.error(f"bad value(s) {bad}: models are {list(MODELS)}, modes bf16 and fp8, "
                 "warmup, steps and batch at least 1, profile at least 0")
    if not torch.cuda.is_available():
        sys.exit("torch_gpt2.py: no CUDA device")
    device = torch.cuda.get_device_name()
    torch.set_float32_matmul_precision("high")
    print(f"pytorch {torch.__version__} on {device}, T={args.seq} V={args.vocab} "
          f"steps={args.steps} warmup={args.warmup} compile={args.compile}", file=sys.stderr)

    failed = False
    for name in models:
        for mode in modes:
            for B in batches:
                label = "eager" if args.compile == "none" else "compile"
                rec = {"impl": "pytorch", "mode": f"{mode}-{label}", "model": name,
                       "batch": B, "seq": args.seq, "vocab": args.vocab, "steps": args.steps,
                       "compile_scope": args.compile, "device": device, "torch": torch.__version__}
                try:
                    if mode == "fp8" and torch.cuda.get_device_capability() < (8, 9):
                        raise RuntimeError("fp8 needs a GPU of compute capability 8.9 or newer")
                    bench(args, name, mode, B, rec)
                except torch.cuda.OutOfMemoryError:
                    rec["error"] = "out of memory"
                except Exception as e:
                    rec["error"] = first_line(e)
                # A fresh state for the next configuration: free the model, optimizer and graphs.
                gc.collect()
                torch._dynamo.reset()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                print(json.dumps(rec), flush=True)
                if "error" in rec:
                    failed = True
                    print(f"pytorch {rec['mode']:13s} {name} B={B}: FAILED: {rec['error']}",
                          file=sys.stderr, flush=True)
                    continue
                failed |= rec["nan"]
                print(f"pytorch {rec['mode']:13s} {name} B={B} T={args.seq}: "
                      f"{rec['tokens_per_s']:,.0f} tok/s, MFU {rec['mfu'] * 100:.1f}%, "
                      f"peak {rec['peak_mem_gib']:.1f} GiB, loss {fmt(rec['loss_first'])} -> "
                      f"{fmt(rec['loss_last'])}{' NaN!' if rec['nan'] else ''}, "
                      f"warmup {rec['warmup_s']:.0f} s", file=sys.stderr, flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch reference for lowp's fp32 transformer (issue 4, "parity with PyTorch").

For a tiny config of each architecture (gpt2, llama) this builds the Hugging Face reference model
(GPT2LMHeadModel / LlamaForCausalLM, which also pins the HF tensor names and layouts lowp's
checkpoint iterator must produce), runs it in float64 on the CPU, and writes
tests/data/parity/<arch>.bin with: the config, the initial parameters (HF names and HF layouts,
float32 values; the reference itself uses exactly these float32 values, widened to float64),
inputs/targets, logits, loss, every parameter's gradient, and the losses and gradient norms of 10
AdamW steps on the same batch. The C test tests/unit/test_parity.c reads it.

The training step matches lowp's exactly:
  loss = mean cross-entropy over all B*T tokens (no ignored tokens, targets given explicitly,
         no shift inside the model);
  total_norm = global L2 norm of all grads; coef = clip / (total_norm + 1e-6); grads *= coef if
         coef < 1 (torch.nn.utils.clip_grad_norm_);
  torch.optim.AdamW, decoupled weight decay applied to parameters with dim >= 2 only (the
         nanoGPT / llm.c rule: every weight matrix and embedding, no biases, no norm weights).

File format (little-endian): 8-byte magic b"LOWPPAR1", uint32 record count, then records:
  uint32 name_len, name bytes (utf-8, no NUL), uint32 dtype (0 float32, 1 int32, 2 float64),
  uint32 ndim, uint64 dims[ndim], data (row-major).
Records: "config_i" int32 [arch(0 gpt2, 1 llama), n_layer, n_head, n_embd, ctx, vocab, ffn_hidden,
  B, T, steps, tied], "config_f" float64 [norm_eps, rope_theta, lr, beta1, beta2, adam_eps,
  weight_decay, clip], "inputs" int32 (B,T), "targets" int32 (B,T), "logits" f32 (B,T,V),
  "loss" f32 (1), "param:<hf name>" f32 (HF shape), "grad:<hf name>" f32 (HF shape),
  "step_losses" f32 (steps), "step_gradnorms" f32 (steps; global norm before clipping).

Run: python3 tests/oracle/torch_parity.py --out tests/data/parity   (needs torch, transformers)
"""
import argparse
import os
import struct
import sys

import torch
import torch.nn.functional as F

MAGIC = b"LOWPPAR1"


def tiny_config(arch):
    return dict(arch=arch, n_layer=2, n_head=4, n_embd=64, ctx=64, vocab=256,
                ffn=256 if arch == "gpt2" else 192,  # gpt2: 4*dim; llama: 8/3*dim up to x32
                B=2, T=16, steps=10, norm_eps=1e-5, rope_theta=10000.0, lr=1e-3,
                beta1=0.9, beta2=0.95, adam_eps=1e-8, weight_decay=0.1, clip=1.0)


def build_gpt2(c):
    from transformers import GPT2Config, GPT2LMHeadModel
    kw = dict(vocab_size=c["vocab"], n_positions=c["ctx"], n_embd=c["n_embd"],
              n_layer=c["n_layer"], n_head=c["n_head"], n_inner=c["ffn"],
              activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
              layer_norm_epsilon=c["norm_eps"], tie_word_embeddings=True,
              scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
              reorder_and_upcast_attn=False)
    conf = GPT2Config(**kw)
    conf._attn_implementation = "eager"
    return GPT2LMHeadModel(conf)


def build_llama(c):
    from transformers import LlamaConfig, LlamaForCausalLM
    kw = dict(vocab_size=c["vocab"], hidden_size=c["n_embd"], intermediate_size=c["ffn"],
              num_hidden_layers=c["n_layer"], num_attention_heads=c["n_head"],
              num_key_value_heads=c["n_head"], head_dim=c["n_embd"] // c["n_head"],
              max_position_embeddings=c["ctx"], rms_norm_eps=c["norm_eps"],
              attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
              hidden_act="silu", attention_dropout=0.0)
    try:  # transformers 5.x
        conf = LlamaConfig(rope_parameters={"rope_type": "default",
                                            "rope_theta": c["rope_theta"]}, **kw)
    except TypeError:  # 4.x
        conf = LlamaConfig(rope_theta=c["rope_theta"], **kw)
    conf._attn_implementation = "eager"
    model = LlamaForCausalLM(conf)
    # Check RoPE really uses theta (rotate_half over the full head dim, inv_freq = theta^(-2i/d)).
    hs = c["n_embd"] // c["n_head"]
    want = 1.0 / (c["rope_theta"] ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    got = model.model.rotary_emb.inv_freq.double()
    assert torch.allclose(got, want, rtol=1e-6), (got, want)
    return model


def perturb_(model, gen):
    """Non-trivial norm weights and biases (HF inits them to 1 and 0, which hides bugs), then
    round every parameter to float32 so the file holds exactly what the reference used."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = ("ln_" in name or "norm" in name)
            if is_norm and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            p.copy_(p.float().double())


def write_file(path, records):
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<I", len(records)))
        for name, t in records:
            t = t.detach().cpu().contiguous()
            code = {torch.float32: (0, "f"), torch.int32: (1, "i"), torch.float64: (2, "d")}
            dtype, fmt = code[t.dtype]
            nb = name.encode("utf-8")
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<II", dtype, t.dim()))
            f.write(struct.pack("<%dQ" % t.dim(), *t.shape))
            flat = t.reshape(-1).tolist()
            f.write(struct.pack("<%d%s" % (len(flat), fmt), *flat))


def loss_of(model, inputs, targets, V):
    logits = model(input_ids=inputs).logits
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    return logits, loss


def run(arch, outdir, seed):
    c = tiny_config(arch)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_gpt2(c) if arch == "gpt2" else build_llama(c)
    model = model.to(torch.float64)
    model.train()
    if arch == "gpt2":
        assert model.lm_head.weight is model.transformer.wte.weight, "tied head expected"
    perturb_(model, gen)
    params = list(model.named_parameters())  # tied lm_head appears once (as wte)

    B, T, V = c["B"], c["T"], c["vocab"]
    inputs = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)

    recs = []
    recs.append(("config_i", torch.tensor(
        [0 if arch == "gpt2" else 1, c["n_layer"], c["n_head"], c["n_embd"], c["ctx"], V,
         c["ffn"], B, T, c["steps"], 1 if arch == "gpt2" else 0], dtype=torch.int32)))
    recs.append(("config_f", torch.tensor(
        [c["norm_eps"], c["rope_theta"], c["lr"], c["beta1"], c["beta2"], c["adam_eps"],
         c["weight_decay"], c["clip"]], dtype=torch.float64)))
    recs.append(("inputs", inputs.to(torch.int32)))
    recs.append(("targets", targets.to(torch.int32)))
    for name, p in params:
        recs.append(("param:" + name, p.float()))

    logits, loss = loss_of(model, inputs, targets, V)
    loss.backward()
    recs.append(("logits", logits.float()))
    recs.append(("loss", loss.float().reshape(1)))
    for name, p in params:
        recs.append(("grad:" + name, p.grad.float()))
    print("%s: %d parameter tensors, %d values, loss %.8f" %
          (arch, len(params), sum(p.numel() for _, p in params), loss.item()))

    decay = [p for _, p in params if p.dim() >= 2]
    nodecay = [p for _, p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c["weight_decay"]},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["adam_eps"],
                            foreach=False, fused=False)
    losses, norms = [], []
    for step in range(c["steps"]):
        opt.zero_grad(set_to_none=True)
        _, loss = loss_of(model, inputs, targets, V)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], c["clip"])
        losses.append(loss.item())
        norms.append(float(norm))
        opt.step()
    print("%s: step losses %s" % (arch, " ".join("%.6f" % x for x in losses)))
    print("%s: grad norms  %s" % (arch, " ".join("%.4f" % x for x in norms)))
    recs.append(("step_losses", torch.tensor(losses, dtype=torch.float32)))
    recs.append(("step_gradnorms", torch.tensor(norms, dtype=torch.float32)))

    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, arch + ".bin")
    write_file(path, recs)
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data",
                                                  "parity"))
    ap.add_argument("--arch", default="gpt2,llama")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    import transformers
    print("torch %s, transformers %s, python %s" % (torch.__version__, transformers.__version__,
                                                    sys.version.split()[0]))
    for arch in a.arch.split(","):
        run(arch, a.out, a.seed)


if __name__ == "__main__":
    main()

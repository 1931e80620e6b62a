"""Reference safetensors files from PyTorch + the safetensors package (run on the GPU machine,
which has both; nothing here needs a GPU). Writes, into the directory given as argv[1]:

  torch_ref.safetensors  tensors of many dtypes and shapes (0-d, empty, awkward), saved by
                         safetensors.torch.save_file with metadata {"format": "pt"}
  torch_ref.f32          the expected float32 value of every element (tensor.float()), tensors
                         in name order, concatenated, little-endian
  reference_verdicts.txt for each malformed file under argv[2] (if given): "ok" or "rejected"
                         by safetensors.safe_open, to compare with lowp's reader

tests/unit/test_safetensors.c reads both files: lowp must decode every element to exactly the
expected float32, and its writer must reproduce the reference file byte for byte."""
import os
import struct
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(20241122)


def rnd(*shape):
    return torch.randn(*shape, generator=g) * 3


t = {}
t["f32.a"] = rnd(2, 3)
t["bf16.row"] = torch.cat([rnd(13), torch.tensor([float("inf"), float("nan"), -0.0, 1e-40])]).to(torch.bfloat16)
t["f16.h"] = torch.tensor([[65504.0, 2.0**-24, -1.5, float("-inf"), 0.1]]).to(torch.float16)
t["e4m3"] = torch.tensor([448.0, -2.0**-9, float("nan"), -0.0, 0.3, 17.0, 1.0]).to(torch.float8_e4m3fn)
t["e5m2"] = torch.tensor([57344.0, 2.0**-16, float("inf"), -3.0, 0.3]).to(torch.float8_e5m2)
t["i64.scalar"] = torch.tensor(-(2**40) - 7, dtype=torch.int64)  # 0-d
t["i32.empty"] = torch.zeros((0, 3), dtype=torch.int32)
t["u8"] = torch.arange(250, 256, dtype=torch.uint8).reshape(2, 3)
t["i8"] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
t["bool"] = torch.tensor([True, False, True])
t["f64"] = torch.tensor([0.1, -1e300, 1e-320], dtype=torch.float64)
t["i16"] = torch.tensor([-32768, 12345], dtype=torch.int16)
if hasattr(torch, "float8_e8m0fnu"):
    t["e8m0"] = torch.tensor([1.0, 2.0**-127, 2.0**127, 0.25]).to(torch.float8_e8m0fnu)
save_file(t, os.path.join(out, "torch_ref.safetensors"), metadata={"format": "pt"})

with open(os.path.join(out, "torch_ref.f32"), "wb") as f:
    for name in sorted(t):
        v = t[name].to(torch.float32).reshape(-1).tolist()
        f.write(struct.pack("<%df" % len(v), *v))
print("tensors:", sorted(t))
print("bytes:", os.path.getsize(os.path.join(out, "torch_ref.safetensors")))

if len(sys.argv) > 2:
    lines = []
    for name in sorted(os.listdir(sys.argv[2])):
        try:
            with safe_open(os.path.join(sys.argv[2], name), framework="pt") as f:
                for k in f.keys():
                    f.get_tensor(k)
            verdict = "ok"
        except Exception as e:  # noqa: BLE001 - any rejection counts
            verdict = "rejected (%s)" % str(e).splitlines()[0][:100]
        lines.append("%s %s" % (name, verdict))
    with open(os.path.join(out, "reference_verdicts.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

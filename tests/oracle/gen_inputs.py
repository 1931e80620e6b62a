#!/usr/bin/env python3
"""Deterministic float32 cast inputs for the encode oracles (Python standard library only).

For every format, writes tests/data/oracle/<fmt>.in.f32 (raw little-endian float32): the
format's own values (every finite code; bf16/fp16 subsampled), every midpoint between
neighbours (the ties) and the float32 values one ulp either side of it, values around max and
max + half a step, the subnormal boundaries, +-0, +-Inf, NaNs of both signs (quiet, signaling,
with payload), float32 subnormals and 2000 random values log-uniform across and beyond the
format's range, both signs.

The format values are computed here from (exponent bits, mantissa bits, bias, NaN/Inf rule)
alone, independently of lowp's C code; gen_ml_dtypes.py checks them against ml_dtypes.

Usage: python3 tests/oracle/gen_inputs.py [output_dir]   (default tests/data/oracle)
"""
import math
import os
import random
import struct
import sys

# name: (exp_bits, man_bits, bias, signed, special); special as in src/format/formats.def
FORMATS = {
    "bf16": (8, 7, 127, True, "ieee"),
    "fp16": (5, 10, 15, True, "ieee"),
    "e4m3": (4, 3, 7, True, "fn"),
    "e5m2": (5, 2, 15, True, "ieee"),
    "e4m3fnuz": (4, 3, 8, True, "fnuz"),
    "e5m2fnuz": (5, 2, 16, True, "fnuz"),
    "e3m4": (3, 4, 3, True, "ieee"),
    "e8m0": (8, 0, 127, False, "fn"),
    "e2m3": (2, 3, 1, True, "none"),
    "e3m2": (3, 2, 3, True, "none"),
    "e2m1": (2, 1, 1, True, "none"),
}

N_RANDOM = 2000
MAX_INPUTS = 40000


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bits_f32(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


def to_f32(x):
    """Round a Python float (double) to the nearest float32 (Inf beyond float32's range)."""
    if abs(x) >= 2.0**128:
        return math.copysign(math.inf, x)
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:  # between max float32 and 2^128: round to nearest by hand
        return math.copysign(3.4028234663852886e38 if abs(x) < 3.4028235677973366e38 else math.inf, x)


def f32_next(x, up):
    """The float32 neighbour of a finite float32 x toward +Inf (up) or -Inf."""
    b = f32_bits(x)
    if x == 0.0:
        return bits_f32(1) if up else bits_f32(0x80000001)
    if (x > 0) == up:
        return bits_f32(b + 1)
    return bits_f32(b - 1)


def positive_values(eb, mb, bias, signed, special):
    """Every finite positive value of the format (and zero where it has one), ascending."""
    mag_bits = eb + mb
    vals = []
    for mag in range(1 << mag_bits):
        e_field, man = mag >> mb, mag & ((1 << mb) - 1)
        if special == "ieee" and e_field == (1 << eb) - 1:
            continue  # Inf / NaN
        if special == "fn" and mag == (1 << mag_bits) - 1:
            continue  # the all-ones NaN
        if not signed:  # e8m0: a pure power of two, no zero, no subnormals
            vals.append(2.0 ** (e_field - bias))
        elif e_field == 0:
            vals.append(man * 2.0 ** (1 - bias - mb))
        else:
            vals.append((1 + man * 2.0**-mb) * 2.0 ** (e_field - bias))
    return sorted(set(vals))


def subsample(vals, stride):
    """For bf16/fp16: every `stride`-th value, plus the bottom and top 64 and binade edges."""
    keep = []
    n = len(vals)
    for i, v in enumerate(vals):
        edge = i < 64 or i >= n - 64
        binade = i + 1 < n and math.frexp(vals[i + 1])[1] != math.frexp(v)[1]
        if edge or binade or i % stride == 0 or (i > 0 and math.frexp(vals[i - 1])[1] != math.frexp(v)[1]):
            keep.append(i)
    return keep


def inputs_for(name, fmt, seed):
    eb, mb, bias, signed, special = fmt
    vals = positive_values(eb, mb, bias, signed, special)
    stride = 1 if len(vals) < 1000 else 10
    keep = subsample(vals, stride) if stride > 1 else range(len(vals))
    out = []
    for i in keep:
        v = vals[i]
        out.append(v)
        if i + 1 < len(vals):
            mid = (v + vals[i + 1]) / 2.0  # exact in double; a float32 for all these formats
            m = to_f32(mid)
            out += [m, f32_next(m, False), f32_next(m, True)]
    vmax = vals[-1]
    step = vmax - vals[-2]
    tie = to_f32(vmax + step / 2.0)  # first value that rounds past max (RNE)
    for x in (vmax, vmax + step / 4.0, tie, vmax + step, 2.0 * vmax, 1e30, 3.4028234663852886e38):
        x = to_f32(x)
        if math.isfinite(x):
            out += [x, f32_next(x, False), f32_next(x, True)]
    tiny = vals[1] if vals[0] == 0.0 else vals[0]  # min subnormal (min value for e8m0)
    for x in (tiny, tiny / 2.0, tiny / 4.0, tiny * 0.75, tiny * 1.5):
        x = to_f32(x)
        if x != 0.0:
            out += [x, f32_next(x, False), f32_next(x, True)]
    # float32 subnormals and zero
    out += [bits_f32(b) for b in (0x00000001, 0x00000002, 0x00400000, 0x007FFFFF, 0x00800000)]
    rng = random.Random(seed)
    lo = math.log2(tiny) - 6.0
    hi = min(math.log2(vmax) + 6.0, 127.99)
    for _ in range(N_RANDOM // 2):
        out.append(to_f32(2.0 ** rng.uniform(lo, hi)))
    # both signs of everything so far
    out = out + [-x for x in out]
    out += [0.0, -0.0, math.inf, -math.inf]
    bits = [f32_bits(x) for x in out]
    bits += [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FA00000,
             0xFFA00001]
    seen, uniq = set(), []
    for b in bits:
        if b not in seen:
            seen.add(b)
            uniq.append(b)
    if len(uniq) > MAX_INPUTS:
        raise SystemExit("%s: %d inputs, more than %d" % (name, len(uniq), MAX_INPUTS))
    return uniq


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "data", "oracle")
    os.makedirs(outdir, exist_ok=True)
    for k, (name, fmt) in enumerate(FORMATS.items()):
        bits = inputs_for(name, fmt, seed=20240 + k)
        with open(os.path.join(outdir, name + ".in.f32"), "wb") as f:
            f.write(struct.pack("<%dI" % len(bits), *bits))
        print("%-9s %6d inputs" % (name, len(bits)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ml_dtypes encode oracle: for every tests/data/oracle/<fmt>.in.f32 (written by gen_inputs.py),
cast the float32 inputs with numpy/ml_dtypes (round to nearest even, the format's own
non-saturating overflow rule) and write one code per input to <fmt>.mldtypes.u8 (uint16
little-endian .u16 for bf16/fp16).

It also checks that the format values gen_inputs.py derived from the bit layout are exactly
ml_dtypes' finite values, so the inputs really hit every code, tie and boundary.

Needs numpy and ml_dtypes. Usage: python3 tests/oracle/gen_ml_dtypes.py [dir]
"""
import os
import sys

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_inputs  # noqa: E402  (same directory)

TYPES = {
    "bf16": ("bfloat16", 16),
    "fp16": ("float16", 16),  # numpy's own
    "e4m3": ("float8_e4m3fn", 8),
    "e5m2": ("float8_e5m2", 8),
    "e4m3fnuz": ("float8_e4m3fnuz", 8),
    "e5m2fnuz": ("float8_e5m2fnuz", 8),
    "e3m4": ("float8_e3m4", 8),
    "e8m0": ("float8_e8m0fnu", 8),
    "e2m3": ("float6_e2m3fn", 6),
    "e3m2": ("float6_e3m2fn", 6),
    "e2m1": ("float4_e2m1fn", 4),
}


def check_values(name, t, bits):
    """ml_dtypes' finite non-negative values == the ones gen_inputs.py enumerates."""
    codes = np.arange(1 << bits, dtype=np.uint16 if bits == 16 else np.uint8)
    vals = codes.view(t).astype(np.float64)
    ours = sorted(set(gen_inputs.positive_values(*gen_inputs.FORMATS[name])))
    theirs = sorted(set(float(v) for v in vals if np.isfinite(v) and v >= 0))
    if ours != theirs:
        raise SystemExit("%s: gen_inputs values differ from ml_dtypes (%d vs %d values)"
                         % (name, len(ours), len(theirs)))


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "data", "oracle")
    print("numpy %s ml_dtypes %s python %s" % (np.__version__, ml_dtypes.__version__,
                                               sys.version.split()[0]))
    missing = []
    for name, (tname, bits) in TYPES.items():
        t = np.float16 if tname == "float16" else getattr(ml_dtypes, tname, None)
        if t is None:  # older ml_dtypes: say so, write nothing (the C test skips the file)
            print("%-9s SKIPPED: ml_dtypes %s has no %s" % (name, ml_dtypes.__version__, tname))
            missing.append(name)
            continue
        path = os.path.join(d, name + ".in.f32")
        x = np.fromfile(path, dtype="<f4")
        check_values(name, t, bits)
        with np.errstate(all="ignore"):  # overflow to Inf/NaN is the point
            y = x.astype(t)
        if bits == 16:
            codes = y.view(np.uint16).astype("<u2")
            ext = "u16"
        else:
            # sub-byte types are stored one per byte, code in the low bits
            codes = y.view(np.uint8) & np.uint8((1 << bits) - 1)
            ext = "u8"
        out = os.path.join(d, "%s.mldtypes.%s" % (name, ext))
        codes.tofile(out)
        print("%-9s %6d inputs -> %s" % (name, x.size, out))
    if missing:
        sys.exit("missing ml_dtypes types for: " + " ".join(missing))


if __name__ == "__main__":
    main()

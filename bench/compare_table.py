#!/usr/bin/env python3
"""Markdown table of GPU training benchmark results: lowp and PyTorch side by side (issue 5).

    python3 bench/compare_table.py [FILE ...]      (no FILE or "-": standard input)

Reads JSON lines, one object per (impl, model, mode, batch), as printed by lowp's GPU training
benchmark ("impl": "lowp", "mode" a lowp recipe name) and by bench/torch_gpt2.py
("impl": "pytorch"); any other line is ignored, so whole logs can be fed in. Keys used: impl,
model, mode, batch, tokens_per_s, mfu (a fraction), peak_mem_gib, loss_first, loss_last, and
optionally error, nan, seq, device.

Prints one table, rows grouped by model (in order of first appearance), with each row's
tokens/s over that of PyTorch bf16-compile (bf16-eager if compiling failed) and over that of
lowp bf16 for the same model and batch; where the baseline ran only at another batch size, the
ratio is taken against it and marked with *. A baseline that is missing or failed gives "-".
"""
import json
import sys


def read_rows(files):
    rows = []
    for f in files:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "impl" in row and "model" in row and "mode" in row:
                rows.append(row)
    return rows


def ok(row):
    return "error" not in row and not row.get("nan") and row.get("tokens_per_s")


def baseline(rows, row, impl, modes):
    """The baseline row for row's model: same batch if there is one, else any (flagged)."""
    for mode in modes:
        cands = [r for r in rows if r["impl"] == impl and r["mode"] == mode
                 and r["model"] == row["model"] and ok(r)]
        same = [r for r in cands if r.get("batch") == row.get("batch")]
        if same:
            return same[0], ""
        if cands:
            return cands[0], "*"
    return None, ""


def ratio(rows, row, impl, modes):
    base, flag = baseline(rows, row, impl, modes)
    if base is None or not ok(row):
        return "-"
    return f"{row['tokens_per_s'] / base['tokens_per_s']:.2f}x{flag}"


def num(row, key, fmt):
    v = row.get(key)
    return "-" if v is None else fmt.format(v)


def table(rows):
    models = list(dict.fromkeys(r["model"] for r in rows))
    out = ["| model | impl | mode | batch | tokens/s | MFU | peak GiB | loss first -> last "
           "| vs PyTorch bf16 | vs lowp bf16 |",
           "|---|---|---|---:|---:|---:|---:|---|---:|---:|"]
    flagged = False
    for model in models:
        for r in (r for r in rows if r["model"] == model):
            mode = r["mode"] + (" (NaN loss)" if r.get("nan") else "")
            if "error" in r:
                figures = [f"failed: {r['error']}", "-", "-", "-"]
            else:
                figures = [num(r, "tokens_per_s", "{:,.0f}"),
                           "-" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%",
                           num(r, "peak_mem_gib", "{:.1f}"),
                           f"{num(r, 'loss_first', '{:.3f}')} -> {num(r, 'loss_last', '{:.3f}')}"]
            vs_pt = ratio(rows, r, "pytorch", ("bf16-compile", "bf16-eager"))
            vs_lowp = ratio(rows, r, "lowp", ("bf16",))
            flagged |= vs_pt.endswith("*") or vs_lowp.endswith("*")
            out.append("| " + " | ".join([model, r["impl"], mode, str(r.get("batch", "-"))]
                                         + figures + [vs_pt, vs_lowp]) + " |")
    seqs = sorted({str(r["seq"]) for r in rows if "seq" in r})
    devices = sorted({r["device"] for r in rows if r.get("device")})
    notes = []
    if seqs:
        notes.append(f"T = {', '.join(seqs)}")
    if devices:
        notes.append(f"device: {', '.join(devices)}")
    notes.append("MFU = (6N + 12LHQT) tokens/s over the dense bf16 peak, for every mode "
                 "(bench/torch_gpt2.py)")
    if flagged:
        notes.append("* baseline measured at another batch size")
    return "\n".join(out + ["", "; ".join(notes) + "."])


def main():
    files = [sys.stdin if p == "-" else open(p) for p in sys.argv[1:]] or [sys.stdin]
    rows = read_rows(files)
    if not rows:
        sys.exit("compare_table.py: no result lines found")
    print(table(rows))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Sum the kernel times of an Nsight Compute CSV by kernel family.

    ncu --csv --metrics gpu__time_duration.sum ... > run.csv
    python3 bench/ncu_summary.py run.csv [--top 40]

Prints, per kernel name (templates folded into their base name), the number of launches, the
total time and its share of the whole: where a training step's time goes."""
import csv
import re
import sys
from collections import defaultdict


def family(name):
    name = name.replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    name = re.sub(r"^void ", "", name)
    name = re.sub(r"<.*", "", name)  # template arguments
    name = re.sub(r"\(.*", "", name)  # parameter list
    return name.strip()[:90]


def main():
    path = sys.argv[1]
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 40
    total_ns, count = defaultdict(float), defaultdict(int)
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # skip ncu's own log lines
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        scale = {"nsecond": 1, "ns": 1, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6}
        value *= scale.get(row.get("Metric Unit", "ns"), 1)
        k = family(row["Kernel Name"])
        total_ns[k] += value
        count[k] += 1
    whole = sum(total_ns.values())
    print(f"{'kernel':90s} {'launches':>8s} {'ms':>9s} {'share':>6s}")
    for k, v in sorted(total_ns.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{k:90s} {count[k]:8d} {v / 1e6:9.3f} {100 * v / whole:5.1f}%")
    print(f"{'total':90s} {sum(count.values()):8d} {whole / 1e6:9.3f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Compares two builds' coport-bench-primitives, run interleaved.

    primitives_ratios.py [--rounds R] [--quick] [--json FILE] BINARY_A BINARY_B

Runs BINARY_A and BINARY_B alternately, R rounds each (A B, B A, A B, ...),
so that noise from other work on the machine hits both alike, and takes the
median of each figure over the rounds (each run already reports the median
of its own repeats). Prints:

  - per binary, each bridge figure / its experimental::channel baseline
    measured by the same binary (the pairs the program names in its "ratio"
    lines): below 1.0 the bridge primitive is the faster;
  - per figure, A / B: below 1.0 binary A is the faster.

A and B may be the same binary (the spread of A / B around 1.0 then shows the
noise). --quick passes --quick to both binaries (a smoke run, not figures to
quote). --json FILE also writes the medians and ratios as JSON. Exits 1 when
a run fails or the two binaries report different figures.
"""
import argparse
import json
import statistics
import subprocess
import sys


def run_once(binary, quick):
    cmd = [binary] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    figures, pairs = {}, []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        if d["kind"] == "measurement":
            figures[d["name"]] = float(d["value"])
        elif d["kind"] == "ratio":
            numerator, denominator = d["name"].split("/")
            pairs.append((numerator, denominator))
    if not figures:
        sys.exit(f"{' '.join(cmd)} reported no figure")
    return figures, pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="runs of each binary (default 5)")
    ap.add_argument("--quick", action="store_true", help="pass --quick to the binaries")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("binary_a")
    ap.add_argument("binary_b")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")

    runs = {"A": [], "B": []}
    pairs = {}
    binaries = {"A": args.binary_a, "B": args.binary_b}
    for r in range(args.rounds):
        order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
        for which in order:
            print(f"round {r + 1}/{args.rounds}: {which}", file=sys.stderr)
            figures, p = run_once(binaries[which], args.quick)
            runs[which].append(figures)
            pairs[which] = p

    medians = {}
    for which, rs in runs.items():
        names = set(rs[0])
        if any(set(f) != names for f in rs):
            sys.exit(f"binary {which} reported different figures in different runs")
        medians[which] = {n: statistics.median(f[n] for f in rs) for n in rs[0]}
    if set(medians["A"]) != set(medians["B"]):
        sys.exit("the two binaries report different figures: "
                 f"{sorted(set(medians['A']) ^ set(medians['B']))}")

    out = {"rounds": args.rounds, "binary_a": args.binary_a, "binary_b": args.binary_b,
           "medians_ns": medians, "bridge_over_asio": {}, "a_over_b": {}}
    print(f"medians of {args.rounds} interleaved runs each; A = {args.binary_a}, B = {args.binary_b}")
    print()
    print(f"{'bridge figure / its Asio baseline (same binary)':62} {'A':>7} {'B':>7}")
    for numerator, denominator in pairs["A"]:
        name = f"{numerator}/{denominator}"
        ra = medians["A"][numerator] / medians["A"][denominator]
        rb = medians["B"][numerator] / medians["B"][denominator]
        out["bridge_over_asio"][name] = {"A": ra, "B": rb}
        print(f"{name:62} {ra:7.2f} {rb:7.2f}")
    print()
    print(f"{'figure':34} {'A ns/op':>9} {'B ns/op':>9} {'A / B':>7}")
    for name in sorted(medians["A"]):
        a, b = medians["A"][name], medians["B"][name]
        out["a_over_b"][name] = a / b
        print(f"{name:34} {a:9.1f} {b:9.1f} {a / b:7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()

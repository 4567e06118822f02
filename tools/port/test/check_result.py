#!/usr/bin/env python3
"""Checks what coport-port wrote in its --json report (coport-port/1).

    check_result.py REPORT.json [--ported LEGACY=COROUTINE]... [--registered POINT]...
                    [--left LEGACY=CALL]... [--refused LEGACY=REASON-TEXT]... [-- COMMAND...]

With a COMMAND (coport-port ... --json REPORT.json ...), it runs it first,
which must exit with 0.

--ported: LEGACY (a name the report's function ends with) was ported fully
as COROUTINE; --left: ported, with CALL left in run_in_fiber; --refused: not
ported, with REASON-TEXT in its reason; --registered: POINT got its ported
form. Every function in the report must be named by one option, and every
registration by --registered: a result nobody expected fails too.
"""
import argparse
import json
import subprocess
import sys


def pairs(values, what):
    out = {}
    for v in values:
        key, eq, val = v.partition("=")
        if not eq:
            sys.exit(f"check_result.py: {what} {v!r}: expected NAME=VALUE")
        out.setdefault(key, []).append(val)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report")
    ap.add_argument("--ported", action="append", default=[])
    ap.add_argument("--left", action="append", default=[])
    ap.add_argument("--refused", action="append", default=[])
    ap.add_argument("--registered", action="append", default=[])
    argv = sys.argv[1:]
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    opts = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if command:
        p = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        print(p.stdout, end="")
        if p.returncode != 0:
            print(f"FAIL {command[0]} exited with status {p.returncode}")
            return 1
    with open(opts.report, encoding="utf-8") as f:
        report = json.load(f)
    problems = []
    if report.get("format") != "coport-port/1":
        problems.append(f"format {report.get('format')!r}, not coport-port/1")
    ported, left, refused = pairs(opts.ported, "--ported"), pairs(opts.left, "--left"), pairs(opts.refused, "--refused")
    named = set(ported) | set(left) | set(refused)

    def owner(function):
        hits = [n for n in named if function == n or function.endswith("::" + n)]
        return hits[0] if hits else None

    seen = set()
    for r in report.get("results", []):
        n = owner(r["function"])
        if n is None:
            problems.append(f"unexpected result: {r}")
            continue
        seen.add(n)
        if n in ported and not (r["status"] == "ported" and r["as"] in ported[n]):
            problems.append(f"{r['function']}: wanted ported fully as {ported[n]}, got {r['status']} as {r['as']}")
        if n in left and not (r["status"] == "ported_with_run_in_fiber" and
                              sorted(r["left_in_fiber"]) == sorted(left[n])):
            problems.append(f"{r['function']}: wanted ported with {left[n]} left in run_in_fiber, got "
                            f"{r['status']} {r['left_in_fiber']}")
        if n in refused and not (r["status"] == "not_ported" and all(t in (r["reason"] or "") for t in refused[n])):
            problems.append(f"{r['function']}: wanted not ported because {refused[n]}, got {r['status']}: "
                            f"{r['reason']}")
    for n in sorted(named - seen):
        problems.append(f"{n}: not in the report")
    registered = sorted(r["point"] for r in report.get("registrations", []) if r["registered"])
    if registered != sorted(opts.registered):
        problems.append(f"registered {registered}, wanted {sorted(opts.registered)}")
    counts = {}
    for r in report.get("results", []):
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"{opts.report}: {counts.get('ported', 0)} ported fully, "
          f"{counts.get('ported_with_run_in_fiber', 0)} with run_in_fiber left, "
          f"{counts.get('not_ported', 0)} not ported; {len(registered)} registered")
    for p in problems:
        print("FAIL " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

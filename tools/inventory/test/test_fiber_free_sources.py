#!/usr/bin/env python3
"""inventory_fiber_free_sources: the real inventory over coport's own
fiber-free libraries (messaging, coro_executor, migration, rabbit, and the
bridge's coroutine side: loop.cpp, native_loop.cpp, report.cpp), with
coport's functions counted as the program's (--include-runtime). Code that
builds without Boost.Fiber cannot block a fiber: anything the inventory finds
there is a false positive of the checks. Coroutine-heavy code with many
Asio handlers, so it exercises both checks' analyses.

    test_fiber_free_sources.py --inventory BUILD/tools/coport-inventory -p BUILD
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SOURCES = (r"/(messaging/src/[a-z_]+/[a-z_]+|coro_executor/src/[a-z_]+|migration/src/[a-z_]+|rabbit/src/[a-z_]+"
           r"|bridge/src/(loop|native_loop|report))\.cpp$")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--inventory", required=True)
    p.add_argument("-p", dest="build", required=True)
    p.add_argument("--expect-units", type=int, required=True,
                   help="how many translation units the filter must select (a filter that selects "
                        "nothing would find nothing)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "inventory.json")
        start = time.monotonic()
        r = subprocess.run([a.inventory, "-p", a.build, "--filter", SOURCES, "--include-runtime",
                            "--json", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        secs = time.monotonic() - start
        print(r.stdout)
        if r.returncode != 0:
            print(f"FAIL: coport-inventory exited with status {r.returncode}")
            return 1
        with open(out) as f:
            inv = json.load(f)
    s = inv["summary"]
    problems = []
    if s["translation_units"] != a.expect_units:
        problems.append(f"{s['translation_units']} translation units inventoried, {a.expect_units} expected")
    for key in ("fiber_blocking_functions", "coroutines_reaching_fiber_blocking",
                "thread_blocking_in_coroutines", "failures"):
        if s[key] != 0:
            problems.append(f"{key}: {s[key]} (false positives: this code has no fibers)")
    if s["cross_world"]["total"] != 0:
        problems.append(f"cross-world calls: {s['cross_world']}")
    if not inv["ready"]:
        problems.append(f"verdict: {inv['verdict']}")
    print(f"fiber-free sources: {s['translation_units']} translation units in {secs:.1f} s")
    for pr in problems:
        print("FAIL: " + pr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

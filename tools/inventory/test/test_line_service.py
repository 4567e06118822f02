#!/usr/bin/env python3
"""inventory_line_service: the real inventory (clang-tidy-16 and the coport-*
plugin) over each stage of the line service (examples/line_service), one run
per stage, against what the sources contain (SPEC: tools/tidy/SPEC.md).

    test_line_service.py --inventory BUILD/tools/coport-inventory -p BUILD
                         --stage2-source BUILD/examples/line_service/kv_on_coport.cpp

Each stage's expectations below were read off its source: every call that
blocks a fiber (Boost.Fiber's primitives, coport's marked calls, an Asio
operation given a fiber token), by line, so that a site the inventory misses
or invents fails the test. Prints each stage's counts and wall time.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# Stage 1, kv_legacy.cpp on Boost.Fiber's Asio example scheduler and token.
LEGACY_SITES = {
    # handle: the map's and the counts' fiber mutex, the channel push, the
    # yield in INCR, the future's get, the FLUSH condition wait
    49, 53, 56, 60, 66, 69, 78, 81, 83,
    75,  # the STATS worker lambda's lock (a fiber of its own: fibers::async)
    91, 92, 93, 97,  # flusher: pop, yield, lock, lock
    106, 118, 121,  # session: async_read_until and async_write with yield[ec], lock
    130, 131,  # accept_clients: async_accept with yield[ec], lock
    150, 154, 156, 159, 160, 164, 165,  # stop_on_signal: async_wait with yield[ec], 3 locks, 3 waits
}
LEGACY_TOKEN_SITES = {106, 118, 130, 150}
LEGACY_FUNCTIONS = {45: "handle", 74: "STATS lambda", 89: "flusher", 102: "session",
                    126: "accept_clients", 147: "stop_on_signal"}

# Stage 3, kv_mixed.cpp: bridge::mutex / event / status_channel (marked),
# Boost.Fiber's yield and future, use_fiber.
MIXED_SITES = {
    63, 66,  # incr_fiber: bridge::mutex through std::unique_lock, this_fiber::yield
    84,  # get_fiber
    107, 111, 121, 125, 126,  # service::handle: lock, status_channel::push, future::get, push, event::wait
    114, 115,  # service::handle: GET and INCR through their migration points' fiber form, point::call
    118,  # the STATS worker lambda's lock
    152, 164, 167,  # session: async_read_until and async_write with use_fiber[ec], lock
    176, 178,  # accept_clients: async_accept with use_fiber[ec], lock
    189, 193, 197, 199,  # stop_on_signal: async_wait with use_fiber[ec], lock, two event waits
}
MIXED_USE_FIBER = {152, 164, 176, 189}
MIXED_DIRECT = {62: "incr_fiber", 83: "get_fiber", 102: "service::handle", 117: "STATS lambda",
                148: "session", 172: "accept_clients", 185: "stop_on_signal"}
# main's legacy forms of the two migration points call incr_fiber / get_fiber
MIXED_THROUGH = {224: ["incr_fiber"], 232: ["get_fiber"]}

STAGES = [
    # name, --filter, file, expectations
    ("1 legacy (Boost.Fiber)", r"examples/line_service/kv_legacy\.cpp$", "kv_legacy.cpp", dict(
        sites=LEGACY_SITES, token_sites=LEGACY_TOKEN_SITES,
        # Boost.Fiber's example scheduler and token (round_robin.hpp,
        # yield.hpp) are in namespace boost::fibers: Boost.Fiber's side,
        # which port.py replaces, not the program's (FINDINGS.md, 2)
        direct=LEGACY_FUNCTIONS, through={}, other={},
        coroutines=0, cross_world={"await": 0, "use_fiber": 0, "run_in_fiber": 0, "hosted": 0},
        thread=0, ready=False)),
    ("2 on coport (port.py)", r"kv_on_coport\.cpp$", "kv_on_coport.cpp", dict(
        # the same source: the same lines, the token now coport's use_fiber
        sites=LEGACY_SITES, token_sites=LEGACY_TOKEN_SITES,
        direct=LEGACY_FUNCTIONS, through={}, other={},
        coroutines=0, cross_world={"await": 0, "use_fiber": 4, "run_in_fiber": 0, "hosted": 0},
        cross_world_lines={"use_fiber": LEGACY_TOKEN_SITES},
        thread=0, ready=False)),
    ("3 mixed", r"examples/line_service/kv_mixed\.cpp$", "kv_mixed.cpp", dict(
        sites=MIXED_SITES, token_sites=MIXED_USE_FIBER,
        direct=MIXED_DIRECT, through=MIXED_THROUGH, other={},
        coroutines=0, cross_world={"await": 0, "use_fiber": 4, "run_in_fiber": 0, "hosted": 0},
        cross_world_lines={"use_fiber": MIXED_USE_FIBER},
        thread=0, ready=False)),
    ("4 ported", r"examples/line_service/kv_ported\.cpp$", "kv_ported.cpp", dict(
        sites=set(), token_sites=set(), direct={}, through={}, other={},
        coroutines=0, cross_world={"await": 0, "use_fiber": 0, "run_in_fiber": 0, "hosted": 0},
        thread=0, ready=True)),
]

problems = []


def check(cond, what):
    if not cond:
        problems.append(what)
        print(f"  FAIL: {what}")


def base(path):
    return os.path.basename(path)


def check_stage(name, main_file, r, e):
    s = r["summary"]
    check(s["translation_units"] == 1, f"{name}: {s['translation_units']} translation units, not 1")
    check(not r["failures"], f"{name}: failed: {r['failures']}")
    fns = r["functions"]
    in_main = [f for f in fns if base(f["file"]) == main_file]
    # every blocking site of the source, once, and nothing else
    sites = [(b["line"], b["column"]) for f in in_main for b in f["blocks"] if base(b["file"]) == main_file]
    lines = sorted({line for line, _ in sites})
    check(lines == sorted(e["sites"]),
          f"{name}: blocking sites in {main_file}: missed {sorted(e['sites'] - set(lines))}, "
          f"unexpected {sorted(set(lines) - e['sites'])}")
    check(len(set(sites)) == len(e["sites"]), f"{name}: {len(set(sites))} blocking sites, not {len(e['sites'])}")
    tokens = {b["line"] for f in in_main for b in f["blocks"] if b["kind"] == "token"}
    check(tokens == e["token_sites"], f"{name}: fiber-token sites {sorted(tokens)}, not {sorted(e['token_sites'])}")
    # the functions, direct and through calls
    direct = {f["line"] for f in in_main if f["directly"]}
    through = {f["line"]: f for f in in_main if not f["directly"]}
    check(direct == set(e["direct"]), f"{name}: directly blocking functions at lines {sorted(direct)}, "
                                      f"not {sorted(e['direct'])} ({', '.join(e['direct'].values())})")
    check(set(through) == set(e["through"]), f"{name}: blocking through calls at lines {sorted(through)}, "
                                             f"not {sorted(e['through'])}")
    for line, tail in e["through"].items():
        chain = through.get(line, {}).get("chain", [])
        check(len(chain) >= 3 and chain[1].endswith(tail[0]),
              f"{name}: the function at line {line}: chain {chain}, expected through {tail}")
    others = [f for f in fns if base(f["file"]) != main_file]
    expected_others = {(fname, line) for fname, o in e["other"].items() for line in o["functions"]}
    got_others = {(base(f["file"]), f["line"]) for f in others}
    check(got_others == expected_others, f"{name}: functions outside {main_file}: {sorted(got_others)}, "
                                         f"not {sorted(expected_others)}")
    for fname, o in e["other"].items():
        got = {b["line"] for f in others for b in f["blocks"] if base(b["file"]) == fname}
        check(got == o["sites"], f"{name}: blocking sites in {fname}: {sorted(got)}, not {sorted(o['sites'])}")
    n_fns = len(e["direct"]) + len(e["through"]) + len(expected_others)
    check(s["fiber_blocking_functions"] == n_fns, f"{name}: {s['fiber_blocking_functions']} fiber-blocking "
                                                  f"functions, not {n_fns}")
    check(s["coroutines_reaching_fiber_blocking"] == e["coroutines"],
          f"{name}: {s['coroutines_reaching_fiber_blocking']} coroutines reaching fiber-blocking code, "
          f"not {e['coroutines']}: {[c['name'] + ': ' + ' -> '.join(c['chain']) for c in r['coroutines']]}")
    cw = {k: s["cross_world"][k] for k in e["cross_world"]}
    check(cw == e["cross_world"], f"{name}: cross-world {cw}, not {e['cross_world']}")
    for kind, lines in e.get("cross_world_lines", {}).items():
        got = {x["line"] for x in r["cross_world"] if x["kind"] == kind and base(x["file"]) == main_file}
        check(got == lines, f"{name}: {kind} at lines {sorted(got)}, not {sorted(lines)}")
    check(s["thread_blocking_in_coroutines"] == e["thread"],
          f"{name}: {s['thread_blocking_in_coroutines']} thread-blocking calls in coroutines, not {e['thread']}")
    verdict = "ready for removing Boost.Fiber"
    if e["ready"]:
        check(r["verdict"] == verdict, f"{name}: verdict {r['verdict']!r}")
    else:
        check(r["verdict"].startswith("not " + verdict + ": "), f"{name}: verdict {r['verdict']!r}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--inventory", required=True)
    p.add_argument("-p", dest="build", required=True)
    p.add_argument("--stage2-source", required=True)
    p.add_argument("--jobs", default="2")
    args = p.parse_args()
    if not os.path.isfile(args.stage2_source):
        print(f"{args.stage2_source}: stage 2's source is generated by the build of coport-kv-on-coport; "
              "build the tree first", file=sys.stderr)
        return 1
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, flt, main_file, e in STAGES:
            out = os.path.join(tmp, "stage.json")
            start = time.monotonic()
            proc = subprocess.run([args.inventory, "-p", args.build, "--filter", flt, "--json", out,
                                   "--jobs", args.jobs], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            secs = time.monotonic() - start
            print(f"== stage {name}: {secs:.1f} s, exit status {proc.returncode}")
            print(proc.stdout, end="")
            if proc.returncode != 0 or not os.path.isfile(out):
                print(proc.stderr, end="")
                check(False, f"stage {name}: the inventory failed (exit status {proc.returncode})")
                continue
            with open(out, encoding="utf-8") as f:
                r = json.load(f)
            check_stage(f"stage {name}", main_file, r, e)
            s = r["summary"]
            summary.append(f"stage {name}: {s['fiber_blocking_functions']} fiber-blocking functions "
                           f"({s['directly']} directly, {s['through_calls']} through calls), "
                           f"{s['coroutines_reaching_fiber_blocking']} coroutines reaching them, cross-world "
                           + ", ".join(f"{k} {s['cross_world'][k]}" for k in ("await", "use_fiber", "run_in_fiber",
                                                                             "hosted"))
                           + f"; {r['verdict']}; {secs:.1f} s")
        # A function nothing marks, named with --fiber-blocking (the checks'
        # FiberBlockingFunctions): stage 4's two coroutines that parse a
        # number reach it.
        out = os.path.join(tmp, "option.json")
        proc = subprocess.run([args.inventory, "-p", args.build, "--filter", r"examples/line_service/kv_ported\.cpp$",
                               "--fiber-blocking", "^kv::amount$", "--json", out, "--jobs", args.jobs],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        print("== stage 4 with --fiber-blocking '^kv::amount$'")
        print(proc.stdout, end="")
        if proc.returncode != 0 or not os.path.isfile(out):
            print(proc.stderr, end="")
            check(False, f"--fiber-blocking: the inventory failed (exit status {proc.returncode})")
        else:
            with open(out, encoding="utf-8") as f:
                r = json.load(f)
            got = sorted((c["line"], c["chain"][-1]) for c in r["coroutines"])
            check(got == [(87, "kv::amount"), (127, "kv::amount")],
                  f"--fiber-blocking '^kv::amount$': coroutines reaching it at lines 87 (incr) and 127 "
                  f"(service::handle), got {got}")
            check(not r["ready"], "--fiber-blocking: the verdict is 'not ready'")
    print("\n".join(summary))
    if problems:
        print(f"{len(problems)} check(s) failed")
        return 1
    print("inventory_line_service: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""inventory_merge: the inventory's merge, call graph and report on the
hand-written facts of facts/ (coport-inventory-facts/1, tools/tidy/SPEC.md).

    one.cpp    app::serve (a coroutine) calls app::store_flush, defined only
               in two.cpp; app::fiber_main uses a fiber token and calls
               common::helper; a lambda calls app::fiber_main; the four
               cross-world kinds; a thread-blocking call in the coroutine and
               one outside it (not counted)
    two.cpp    app::store_flush calls legacy::flush_to_disk (marked, declared
               only) and common::helper; app::locker calls coport's marked
               bridge::mutex::lock; app::idle blocks nothing
    common.hpp common::helper, defined in both units: one blocking call seen
               by both, one more seen only by two.cpp
    three.cpp  a coroutine that calls only coport's internals (not followed:
               the runtime, not the program) and a plain function

Runs coport_inventory.py --no-run on the facts, and once through a stand-in
clang-tidy (fake_clang_tidy.py) to check the driving: the selection, the
progress, a failed unit reported while the others still count.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "..", "coport_inventory.py")
FACTS = os.path.join(HERE, "facts")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")


def inventory(*args):
    proc = subprocess.run([sys.executable, TOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def by_name(rows):
    return {r["name"]: r for r in rows}


with tempfile.TemporaryDirectory() as tmp:
    out_json = os.path.join(tmp, "inventory.json")
    out_facts = os.path.join(tmp, "program-facts.json")

    # ---- the whole program
    rc, text, err = inventory("--facts-dir", FACTS, "--no-run", "--json", out_json, "--program-facts", out_facts)
    print(text, err, sep="")
    check(rc == 0, f"exit status {rc}, not 0")
    with open(out_json, encoding="utf-8") as f:
        r = json.load(f)
    s = r["summary"]
    check(r["format"] == "coport-inventory/1", "format")
    check(s["translation_units"] == 3, f"translation units {s['translation_units']}")
    check(s["fiber_blocking_functions"] == 5, f"fiber-blocking functions {s['fiber_blocking_functions']}, not 5")
    check(s["directly"] == 4 and s["through_calls"] == 1, f"directly {s['directly']}, through {s['through_calls']}")
    check(s["coroutines_reaching_fiber_blocking"] == 1, f"coroutines {s['coroutines_reaching_fiber_blocking']}")
    check(s["cross_world"] == {"await": 1, "use_fiber": 1, "run_in_fiber": 1, "hosted": 1, "total": 4},
          f"cross-world {s['cross_world']}")
    check(s["thread_blocking_in_coroutines"] == 1, f"thread-blocking {s['thread_blocking_in_coroutines']}")
    check(r["failures"] == [], f"failures {r['failures']}")

    fns = by_name(r["functions"])
    check(sorted(fns) == sorted(["common::helper", "app::fiber_main", "(lambda at one.cpp:40:12)",
                                 "app::store_flush", "app::locker"]), f"functions {sorted(fns)}")
    # the header function: one function, the blocking calls of both units, once each
    helper = fns.get("common::helper", {})
    check([(b["line"], b["what"]) for b in helper.get("blocks", [])] ==
          [(10, "boost::fibers::mutex::lock"), (12, "boost::fibers::condition_variable::wait")],
          f"common::helper's blocks {helper.get('blocks')}")
    check(helper.get("blocks", [{}])[0].get("via") == ["std::lock_guard<boost::fibers::mutex>::lock_guard"], "via")
    check([(c["name"], c["file"], c["line"]) for c in helper.get("callers", [])] ==
          [("app::fiber_main", "one.cpp", 32), ("app::store_flush", "two.cpp", 13)],
          f"common::helper's callers {helper.get('callers')}")
    check(helper.get("reached_by_coroutines") == ["app::serve"], "common::helper reached by app::serve through two.cpp")
    # defined only in two.cpp, called from one.cpp: its place is its definition's
    flush = fns.get("app::store_flush", {})
    check((flush.get("file"), flush.get("line")) == ("two.cpp", 10), f"app::store_flush at {flush.get('file')}")
    check(flush.get("directly") is True, "a call to a marked function blocks directly")
    check(flush.get("chain") == ["app::store_flush", "legacy::flush_to_disk"], f"chain {flush.get('chain')}")
    check([(c["name"], c["file"], c["line"]) for c in flush.get("callers", [])] == [("app::serve", "one.cpp", 22)],
          f"app::store_flush's callers {flush.get('callers')}")
    check(flush.get("reached_by_coroutines") == ["app::serve"], "app::store_flush reached by app::serve")
    lam = fns.get("(lambda at one.cpp:40:12)", {})
    check(lam.get("directly") is False, "the lambda blocks through a call")
    check(lam.get("chain") == ["(lambda at one.cpp:40:12)", "app::fiber_main",
                               "boost::asio::async_read with coport::bridge::use_fiber_t"],
          f"the lambda's chain {lam.get('chain')}")
    fm = fns.get("app::fiber_main", {})
    check(fm.get("chain") == ["app::fiber_main", "boost::asio::async_read with coport::bridge::use_fiber_t"],
          f"the shortest chain of app::fiber_main {fm.get('chain')}")
    check(fns.get("app::locker", {}).get("chain") == ["app::locker", "coport::bridge::mutex::lock"], "app::locker")
    check("app::idle" not in fns and "coport::bridge::detail::helper" not in fns,
          "a function that blocks nothing, and coport's own, are not reported")

    # the chain across units: a coroutine of one.cpp, a function of two.cpp, a marked declaration
    cos = by_name(r["coroutines"])
    check(list(cos) == ["app::serve"], f"coroutines {list(cos)}")
    check(cos.get("app::serve", {}).get("chain") == ["app::serve", "app::store_flush", "legacy::flush_to_disk"],
          f"app::serve's chain {cos.get('app::serve', {}).get('chain')}")
    check([(x["line"], x["file"]) for x in cos.get("app::serve", {}).get("chain_sites", [])] ==
          [(22, "one.cpp"), (12, "two.cpp")], "the chain's call sites")

    cw = [(x["kind"], x["file"], x["line"], x["function"]) for x in r["cross_world"]]
    check(cw == [("await", "one.cpp", 24, "app::serve"), ("use_fiber", "one.cpp", 34, "app::fiber_main"),
                 ("run_in_fiber", "one.cpp", 26, "app::serve"), ("hosted", "one.cpp", 36, "app::fiber_main")],
          f"cross-world sites {cw}")
    check([(t["what"], t["line"]) for t in r["thread_blocking"]] == [("std::this_thread::sleep_for", 25)],
          f"thread-blocking {r['thread_blocking']}")

    check(r["verdict"] == "not ready for removing Boost.Fiber: 4 reason(s)", f"verdict {r['verdict']}")
    check("verdict: not ready for removing Boost.Fiber: 4 reason(s)" in text, "the verdict in the text")
    check("  fiber-blocking functions: 5 (4 directly, 1 through calls)" in text, "the summary in the text")
    check("  cross-world calls: await 1, use_fiber 1, run_in_fiber 1, hosted 1" in text, "cross-world in the text")
    check("one.cpp:20 app::serve: app::serve -> app::store_flush -> legacy::flush_to_disk" in text,
          "the coroutine's chain in the text")

    with open(out_facts, encoding="utf-8") as f:
        pf = json.load(f)
    check(pf.get("format") == "coport-program-facts/1", "program facts' format")
    chains = {b["usr"]: b["chain"] for b in pf.get("blocking", [])}
    check(sorted(chains) == sorted(["c:@N@common@F@helper#", "c:@N@app@F@fiber_main#", "c:one.cpp@F@main#@Sa",
                                    "c:@N@app@F@store_flush#", "c:@N@app@F@locker#",
                                    "c:@N@legacy@F@flush_to_disk#"]),
          f"program facts' functions {sorted(chains)}")
    check(chains.get("c:@N@app@F@store_flush#") == ["app::store_flush", "legacy::flush_to_disk"],
          "program facts' chain across units")
    check(chains.get("c:one.cpp@F@main#@Sa", [""])[0] == "(lambda at /src/app/one.cpp:40:12)",
          "program facts name functions as clang does")

    # ---- a ported unit alone: ready
    rc, text, _ = inventory("--facts-dir", FACTS, "--no-run", "--filter", r"three\.cpp$")
    check(rc == 0 and "verdict: ready for removing Boost.Fiber\n" in text and
          "coport inventory: 1 translation unit(s)" in text, f"three.cpp alone: rc {rc}\n{text}")
    rc, text, _ = inventory("--facts-dir", FACTS, "--no-run", "--exclude", "one|two")
    check("verdict: ready for removing Boost.Fiber\n" in text, "--exclude")

    # ---- bad input: exit status 2, naming the file
    rc, _, err = inventory("-p", tmp)
    check(rc == 2 and "compile_commands.json" in err and "CMAKE_EXPORT_COMPILE_COMMANDS" in err,
          f"no compile_commands.json: rc {rc}, {err!r}")
    bad_dir = os.path.join(tmp, "bad-facts")
    os.mkdir(bad_dir)
    with open(os.path.join(bad_dir, "0000000000000000.json"), "w") as f:
        f.write("{not json")
    rc, text, _ = inventory("--facts-dir", bad_dir, "--no-run")
    check(rc == 1 and "unreadable facts file" in text, f"an unreadable facts file: rc {rc}")

    # ---- the driving, with a stand-in clang-tidy: one unit fails, the others count
    build = os.path.join(tmp, "build")
    os.mkdir(build)
    with open(os.path.join(build, "compile_commands.json"), "w") as f:
        json.dump([{"directory": build, "file": f"/src/app/{n}.cpp", "command": f"c++ -c /src/app/{n}.cpp"}
                   for n in ("one", "two", "three", "bad")], f)
    plugin = os.path.join(tmp, "libcoport_tidy.so")
    open(plugin, "w").close()
    rc, text, err = inventory("-p", build, "--clang-tidy", os.path.join(HERE, "fake_clang_tidy.py"),
                              "--plugin", plugin, "--filter", "app/(one|two|bad)", "--jobs", "2",
                              "--json", out_json)
    print(text, err, sep="")
    with open(out_json, encoding="utf-8") as f:
        r = json.load(f)
    check(rc == 1, f"a failed unit: exit status {rc}, not 1")
    check(r["summary"]["translation_units"] == 2 and r["summary"]["fiber_blocking_functions"] == 5,
          f"the others still count: {r['summary']}")
    check([f["file"] for f in r["failures"]] == ["bad.cpp"] and "flaot" in r["failures"][0]["stderr_tail"]
          and "Found compiler error(s)." in r["failures"][0]["stderr_tail"],
          f"the failure, with its errors: {r['failures']}")
    check(r["verdict"] == "not ready for removing Boost.Fiber: 5 reason(s)" and
          "1 translation unit(s) failed, not counted" in r["reasons"], f"a failed unit is a reason: {r['reasons']}")
    rc2, text2, _ = inventory("-p", build, "--clang-tidy", os.path.join(HERE, "fake_clang_tidy.py"),
                              "--plugin", plugin, "--filter", r"app/(three|bad)\.cpp")
    check(rc2 == 1 and "verdict: not ready for removing Boost.Fiber: 1 reason(s)" in text2,
          f"a clean unit and a failed one are not ready: rc {rc2}\n{text2}")
    check("[3/3]" in err and "bad.cpp" in err, "progress on stderr")
    rc, _, err = inventory("-p", build, "--clang-tidy", os.path.join(HERE, "fake_clang_tidy.py"),
                           "--plugin", plugin, "--filter", "nothing-matches")
    check(rc == 2, f"an empty selection: exit status {rc}, not 2")

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("inventory_merge: all checks passed")

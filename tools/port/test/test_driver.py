#!/usr/bin/env python3
"""port_driver: coport-port (coport_port.py) with a stand-in clang-tidy
(fake_clang_tidy.py): the diff applies with patch -p1 and gives the ported
files, --in-place and --diff, one header's fix from two units merged once,
conflicting fixes, a unit that does not compile, a crash and a plugin
without the check (exit 2, nothing written), a function not found (exit 1),
--json and the summary, the options passed to the check, --point (the
check's option Points, a point's lambda ported and registered, a point not
found), --output-dir (the sources left as they are, each FILE and changed
header written there, a file already identical not rewritten, two files of
one name refused), and usage errors.

    test_driver.py [--verbose]
"""
import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "..", "coport_port.py")
FAKE = os.path.join(HERE, "fake_clang_tidy.py")

SOURCES = {
    "src/a.cpp": """#include "common.hpp"

namespace fx {

void nap() {
  sleep();
}

void blocked() {
  helper();
}

void mixed() {
  x();
}

void pointed() {
  y();
}

void unpointed() {
  z();
}

}  // namespace fx
""",
    "src/b.cpp": """#include "common.hpp"

void user() { fx::shared(); }
""",
    # ends without a newline: the diff must say so for patch to apply it
    "src/common.hpp": """#pragma once
namespace fx {
inline void shared() {
  wait();
}""",
    "src/bad.cpp": "int main() {\n  flaot x;\n}\n",
    "src/points.cpp": """// Migration points whose legacy forms are lambdas.
namespace fx {

void declare(migration::registry& points, bridge::runtime& rt) {
  migration::point<int(int)> twice(
      points, "fx.twice",
      {.legacy = [](int n) { return twice_fiber(n); }},
      rt);
  migration::point<int(int)> mixed(
      points, "fx.mixed",
      {.legacy = [&rt](int n) { return mixed_fiber(rt, n); }},
      rt);
  migration::point<int(int)> blocked(
      points, "fx.blocked",
      {.legacy = [](int n) { return blocked_fiber(n); }},
      rt);
}

}  // namespace fx
""",
}


def form(bare):
    return (f"\n\n// The coroutine form of fx::{bare}, written by coport-port.\n"
            f"boost::asio::awaitable<void> {bare}_coroutine() {{\n  co_return;\n}}")


def ported_points(text, *points):
    """TEXT with the fake's ported forms of POINTS' legacy lambdas inserted after them."""
    for point in points:
        start = text.index(".legacy = [", text.index(f'"{point}",'))
        end = text.index("}}", start) + 1
        lambda_ = text[start + len(".legacy = "):end]
        indent = start - (text.rindex("\n", 0, start) + 1)
        text = text[:end] + ",\n" + " " * indent + ".ported = " + lambda_.replace("_fiber(", "_coroutine(") \
            + text[end:]
    return text


def ported(text, *bares):
    """TEXT with the fake's coroutine forms of BARES inserted after each function."""
    for bare in bares:
        start = text.index(f"void {bare}(")
        end = text.index("\n}", start) + 2
        text = text[:end] + form(bare) + text[end:]
    return text


class Tree:
    def __init__(self, tmp, name):
        self.root = os.path.join(tmp, name)
        for rel, text in SOURCES.items():
            path = os.path.join(self.root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        build = os.path.join(self.root, "build")
        os.makedirs(build)
        with open(os.path.join(build, "compile_commands.json"), "w", encoding="utf-8") as f:
            json.dump([{"directory": build, "file": os.path.join(self.root, "src", n),
                        "command": f"/usr/bin/c++ -std=c++20 -I../src -c ../src/{n}"}
                       for n in ("a.cpp", "b.cpp", "bad.cpp", "points.cpp")], f)

    def read(self, rel):
        with open(os.path.join(self.root, rel), encoding="utf-8") as f:
            return f.read()

    def bytes(self, rel):
        """REL's bytes, None when it is missing."""
        try:
            with open(os.path.join(self.root, rel), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def json(self, rel):
        """REL's JSON, {} when it is missing; REL a .jsonl: a list of its lines' JSON."""
        data = self.bytes(rel)
        if rel.endswith(".jsonl"):
            return [json.loads(line) for line in (data or b"").decode("utf-8").splitlines()]
        return json.loads(data) if data is not None else {}

    def unchanged(self):
        """The sources as written, byte for byte."""
        return all(self.bytes(rel) == text.encode("utf-8") for rel, text in SOURCES.items())

    def exists(self, rel):
        return os.path.exists(os.path.join(self.root, rel))


class Test:
    def __init__(self, tmp, verbose):
        self.tmp = tmp
        self.verbose = verbose
        self.failures = []
        self.fake = os.path.join(tmp, "clang-tidy")
        with open(self.fake, "w", encoding="utf-8") as f:
            f.write(f"#!/bin/sh\nexec '{sys.executable}' '{FAKE}' \"$@\"\n")
        os.chmod(self.fake, 0o755)
        self.plugin = os.path.join(tmp, "libcoport_tidy.so")
        open(self.plugin, "w").close()
        self.count = 0

    def run(self, tree, args, mode=""):
        env = dict(os.environ, FAKE_PORT_MODE=mode, FAKE_PORT_LOG=os.path.join(tree.root, "log.jsonl"))
        cmd = [sys.executable, DRIVER, "--clang-tidy", self.fake, "--plugin", self.plugin] + args
        p = subprocess.run(cmd, cwd=tree.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.verbose:
            print(f"$ {' '.join(args)}  [exit {p.returncode}]\n{p.stdout}{p.stderr}")
        return p

    def expect(self, label, ok, p=None):
        self.count += 1
        print(f"{'ok  ' if ok else 'FAIL'} {label}")
        if not ok:
            self.failures.append(label)
            if p is not None:
                print(f"    exit {p.returncode}\n    stdout: {p.stdout!r}\n    stderr: {p.stderr!r}")

    def tree(self, name):
        return Tree(self.tmp, name)


ALL = ["--function", "fx::nap", "--function", "shared", "--function", "blocked", "--function", "fx::mixed",
       "--function", "pointed", "--function", "unpointed"]
EXPECTED_A = ported(SOURCES["src/a.cpp"], "nap", "mixed", "pointed", "unpointed")
EXPECTED_COMMON = ported(SOURCES["src/common.hpp"], "shared")
EXPECTED_POINTS = ported_points(SOURCES["src/points.cpp"], "fx.twice", "fx.mixed")


def test_diff(t):
    tree = t.tree("diff")
    p = t.run(tree, ["-p", "build"] + ALL + ["--json", "out.json", "src/a.cpp", "src/b.cpp"])
    t.expect("diff: exit 0", p.returncode == 0, p)
    t.expect("diff: the files are not touched", tree.unchanged())
    t.expect("diff: headers a/PATH b/PATH, relative to the current directory",
             "--- a/src/a.cpp\n+++ b/src/a.cpp\n" in p.stdout and "--- a/src/common.hpp\n" in p.stdout, p)
    t.expect("diff: b.cpp has no change", "b.cpp" not in p.stdout, p)
    t.expect("diff: one header fix from two units counted once", p.stdout.count("fx::shared, written") == 1, p)
    t.expect("diff: the header's missing final newline is marked", "\\ No newline at end of file" in p.stdout, p)

    copy = t.tree("diff-applied")
    a = subprocess.run(["patch", "-p1", "--quiet", "--batch"], cwd=copy.root, input=p.stdout, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t.expect("diff: applies with patch -p1", a.returncode == 0)
    if a.returncode:
        print("    " + a.stdout)
    t.expect("diff: patched a.cpp is the ported file", copy.read("src/a.cpp") == EXPECTED_A)
    t.expect("diff: patched common.hpp is the ported file", copy.read("src/common.hpp") == EXPECTED_COMMON)
    t.expect("diff: b.cpp untouched by the patch", copy.read("src/b.cpp") == SOURCES["src/b.cpp"])

    lines = p.stderr.splitlines()
    t.expect("summary: totals", "coport-port: 4 ported fully, 1 ported with run_in_fiber left, 1 not ported; "
             "1 registered with migration points" in lines, p)
    t.expect("summary: one line per result", all(any(line.startswith("coport-port: ") and line.endswith(": " + text)
                                                      for line in lines) for text in (
        "ported 'fx::nap' as 'fx::nap_coroutine'",
        "not ported 'fx::blocked': it calls 'fx::helper' through a function pointer",
        "ported 'fx::mixed' as 'fx::mixed_coroutine', with 2 call(s) left in run_in_fiber: "
        "fx::wait_for<int, char>, fx::drain",
        "registered 'fx::pointed_coroutine' as the ported form of migration point 'fx.pointed'",
        "not registered 'fx::unpointed_coroutine' with migration point 'fx.unpointed': "
        "the point has a ported form already")), p)
    t.expect("summary: the header's result once, at its place",
             sum("fx::shared" in line for line in lines) == 1
             and "coport-port: src/common.hpp:3: ported 'fx::shared' as 'fx::shared_coroutine'" in lines, p)
    t.expect("summary: nothing not found", "not found" not in p.stderr, p)

    with open(os.path.join(tree.root, "out.json"), encoding="utf-8") as f:
        data = json.load(f)
    by_name = {r["function"]: r for r in data["results"]}
    t.expect("json: format", data["format"] == "coport-port/1")
    t.expect("json: six results", sorted(by_name) == ["fx::blocked", "fx::mixed", "fx::nap", "fx::pointed",
                                                      "fx::shared", "fx::unpointed"] and len(data["results"]) == 6)
    t.expect("json: a ported result", by_name.get("fx::nap") == {
        "function": "fx::nap", "as": "fx::nap_coroutine", "status": "ported", "left_in_fiber": [],
        "reason": None, "file": "src/a.cpp", "line": 5})
    t.expect("json: run_in_fiber left, names with commas kept whole", by_name.get("fx::mixed", {}).get("status")
             == "ported_with_run_in_fiber" and by_name["fx::mixed"]["left_in_fiber"]
             == ["fx::wait_for<int, char>", "fx::drain"])
    t.expect("json: not ported, with its reason", by_name.get("fx::blocked", {}).get("as", 0) is None
             and by_name["fx::blocked"]["status"] == "not_ported"
             and by_name["fx::blocked"]["reason"] == "it calls 'fx::helper' through a function pointer")
    t.expect("json: registrations", data["registrations"] == [
        {"point": "fx.pointed", "function": "fx::pointed_coroutine", "registered": True, "reason": None,
         "file": "src/a.cpp", "line": 17},
        {"point": "fx.unpointed", "function": "fx::unpointed_coroutine", "registered": False,
         "reason": "the point has a ported form already", "file": "src/a.cpp", "line": 21}])
    t.expect("json: files changed", data["files_changed"] == ["src/a.cpp", "src/common.hpp"])

    with open(os.path.join(tree.root, "log.jsonl"), encoding="utf-8") as f:
        runs = [json.loads(line) for line in f]
    t.expect("options: Functions passed to every unit", len(runs) == 2 and all(
        r["options"] == {"coport-port.Functions": "fx::nap;shared;blocked;fx::mixed;pointed;unpointed"}
        for r in runs))
    t.expect("options: -p names a database with the two units, -- not given",
             all("-p" in r["args"] and "--" not in r["args"] for r in runs))


def test_in_place(t):
    tree = t.tree("in-place")
    a = os.path.join(tree.root, "src", "a.cpp")
    os.chmod(a, 0o640)
    p = t.run(tree, ["-p", "build"] + ALL + ["--in-place", "src/a.cpp", "src/b.cpp"])
    t.expect("in-place: exit 0, no diff on stdout", p.returncode == 0 and p.stdout == "", p)
    t.expect("in-place: a.cpp ported", tree.read("src/a.cpp") == EXPECTED_A)
    t.expect("in-place: common.hpp ported once", tree.read("src/common.hpp") == EXPECTED_COMMON)
    t.expect("in-place: b.cpp unchanged", tree.read("src/b.cpp") == SOURCES["src/b.cpp"])
    t.expect("in-place: the mode kept", stat.S_IMODE(os.stat(a).st_mode) == 0o640)
    t.expect("in-place: no temporary file left", sorted(os.listdir(os.path.join(tree.root, "src")))
             == ["a.cpp", "b.cpp", "bad.cpp", "common.hpp", "points.cpp"])

    tree = t.tree("diff-file")
    p = t.run(tree, ["-p", "build", "--function", "nap", "--diff", "out.diff", "src/a.cpp"])
    with open(os.path.join(tree.root, "out.diff"), encoding="utf-8") as f:
        diff = f.read()
    t.expect("--diff FILE: written there, not on stdout", p.returncode == 0 and p.stdout == ""
             and "+boost::asio::awaitable<void> nap_coroutine() {" in diff and tree.unchanged(), p)


def test_fixed_args(t):
    tree = t.tree("fixed")
    p = t.run(tree, ["--function", "nap", "--coroutine-form", "fx::old=fx::old_coroutine",
                     "--coroutine-form", "fx::f=fx::g", "--fiber-blocking", "lib::wait'x\"y\\z, #1: {a}",
                     "--extra-arg=-DX=1", "src/a.cpp", "--", "-std=c++20", "-Isrc"])
    t.expect("--: exit 0, a diff", p.returncode == 0 and "+++ b/src/a.cpp" in p.stdout, p)
    with open(os.path.join(tree.root, "log.jsonl"), encoding="utf-8") as f:
        run = json.loads(f.readline())
    t.expect("--: the options reach the check intact", run["options"] == {
        "coport-port.Functions": "nap", "coport-port.CoroutineForms": "fx::old=fx::old_coroutine;fx::f=fx::g",
        "coport-port.FiberBlockingFunctions": "lib::wait'x\"y\\z, #1: {a}"}, p)
    args = run["args"]
    t.expect("--: the compiler's arguments after --, no -p",
             "-p" not in args and args[args.index("--"):] == ["--", "-std=c++20", "-Isrc"]
             and "--extra-arg=-DX=1" in args and "--header-filter=.*" in args)


def test_failures(t):
    tree = t.tree("conflict")
    p = t.run(tree, ["-p", "build", "--function", "shared", "--in-place", "--json", "out.json",
                     "src/a.cpp", "src/b.cpp"], mode="conflict")
    t.expect("conflict: exit 2, both diagnostics named", p.returncode == 2 and "conflict" in p.stderr
             and p.stderr.count("ported 'fx::shared' as 'fx::shared_coroutine'") >= 2
             and "(from src/a.cpp)" in p.stderr and "(from src/b.cpp)" in p.stderr, p)
    t.expect("conflict: nothing written", tree.unchanged() and not os.path.exists(os.path.join(tree.root, "out.json")))
    p = t.run(tree, ["-p", "build", "--function", "shared", "src/a.cpp", "src/b.cpp"], mode="conflict")
    t.expect("conflict: no diff printed", p.returncode == 2 and p.stdout == "", p)

    tree = t.tree("bad")
    p = t.run(tree, ["-p", "build", "--function", "nap", "--in-place", "--json", "out.json",
                     "src/a.cpp", "src/bad.cpp"])
    t.expect("compile error: exit 2, clang-tidy's output shown", p.returncode == 2
             and "does not compile" in p.stderr and "unknown type name 'flaot'" in p.stderr, p)
    t.expect("compile error: nothing written", tree.unchanged()
             and not os.path.exists(os.path.join(tree.root, "out.json")))

    tree = t.tree("crash")
    p = t.run(tree, ["-p", "build", "--function", "nap", "src/a.cpp"], mode="crash")
    t.expect("crash: exit 2, said so", p.returncode == 2 and "crashed" in p.stderr
             and "Stack dump" in p.stderr and p.stdout == "", p)

    p = t.run(tree, ["-p", "build", "--function", "nap", "src/a.cpp"], mode="nocheck")
    t.expect("no check in the plugin: exit 2, unknown check", p.returncode == 2
             and "unknown check coport-port" in p.stderr, p)

    tree = t.tree("missing")
    p = t.run(tree, ["-p", "build", "--function", "fx::nap", "--function", "nosuch", "--json", "out.json",
                     "src/a.cpp"])
    t.expect("not found: exit 1, named", p.returncode == 1
             and "coport-port: 'nosuch' not found in src/a.cpp" in p.stderr.splitlines(), p)
    t.expect("not found: what was found is written", "+boost::asio::awaitable<void> nap_coroutine() {" in p.stdout
             and os.path.exists(os.path.join(tree.root, "out.json")), p)
    p = t.run(tree, ["-p", "build", "--function", "other::nap", "src/a.cpp"])
    t.expect("not found: a qualified name matches only its own scope", p.returncode == 1
             and "'other::nap' not found" in p.stderr, p)


def test_points(t):
    tree = t.tree("points")
    p = t.run(tree, ["-p", "build", "--function", "nap", "--point", "fx.twice", "--point", "fx.mixed",
                     "--point", "fx.blocked", "--json", "out.json", "src/a.cpp", "src/points.cpp"])
    t.expect("point: exit 0", p.returncode == 0, p)
    t.expect("point: the diff ports the legacy lambdas",
             "+++ b/src/points.cpp\n" in p.stdout
             and "+       .ported = [](int n) { return twice_coroutine(n); }},\n" in p.stdout
             and "+       .ported = [&rt](int n) { return mixed_coroutine(rt, n); }},\n" in p.stdout
             and "blocked_coroutine" not in p.stdout and tree.unchanged(), p)
    copy = t.tree("points-applied")
    a = subprocess.run(["patch", "-p1", "--quiet", "--batch"], cwd=copy.root, input=p.stdout, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t.expect("point: the patched points.cpp is the ported file", a.returncode == 0
             and copy.bytes("src/points.cpp") == EXPECTED_POINTS.encode("utf-8")
             and copy.bytes("src/a.cpp") == ported(SOURCES["src/a.cpp"], "nap").encode("utf-8"), a)

    lines = p.stderr.splitlines()
    t.expect("point: a summary line per result and registration", all(line in lines for line in (
        "coport-port: src/points.cpp:7: ported 'fx.twice [legacy]' as 'fx.twice [ported]'",
        "coport-port: src/points.cpp:7: registered 'fx.twice [ported]' as the ported form of migration point "
        "'fx.twice'",
        "coport-port: src/points.cpp:11: ported 'fx.mixed [legacy]' as 'fx.mixed [ported]', with 1 call(s) left "
        "in run_in_fiber: fx::drain",
        "coport-port: src/points.cpp:11: registered 'fx.mixed [ported]' as the ported form of migration point "
        "'fx.mixed'",
        "coport-port: src/points.cpp:15: not ported 'fx.blocked [legacy]': it calls 'fx::helper' through a "
        "function pointer",
        "coport-port: 2 ported fully, 1 ported with run_in_fiber left, 1 not ported; "
        "2 registered with migration points")), p)
    t.expect("point: nothing not found (a point not ported is found)", "not found" not in p.stderr, p)

    data = tree.json("out.json")
    by_name = {r["function"]: r for r in data.get("results", [])}
    t.expect("point: json results", by_name.get("fx.twice [legacy]") == {
        "function": "fx.twice [legacy]", "as": "fx.twice [ported]", "status": "ported", "left_in_fiber": [],
        "reason": None, "file": "src/points.cpp", "line": 7}
        and by_name.get("fx.mixed [legacy]", {}).get("status") == "ported_with_run_in_fiber"
        and by_name["fx.mixed [legacy]"]["left_in_fiber"] == ["fx::drain"]
        and by_name.get("fx.blocked [legacy]", {}).get("status") == "not_ported"
        and by_name["fx.blocked [legacy]"]["as"] is None
        and by_name["fx.blocked [legacy]"]["reason"] == "it calls 'fx::helper' through a function pointer"
        and sorted(by_name) == ["fx.blocked [legacy]", "fx.mixed [legacy]", "fx.twice [legacy]", "fx::nap"])
    t.expect("point: json registrations", data.get("registrations") == [
        {"point": "fx.twice", "function": "fx.twice [ported]", "registered": True, "reason": None,
         "file": "src/points.cpp", "line": 7},
        {"point": "fx.mixed", "function": "fx.mixed [ported]", "registered": True, "reason": None,
         "file": "src/points.cpp", "line": 11}])
    t.expect("point: json files changed", data.get("files_changed") == ["src/a.cpp", "src/points.cpp"])

    runs = tree.json("log.jsonl")
    t.expect("point: Points passed to every unit, ;-joined", len(runs) == 2 and all(
        r["options"] == {"coport-port.Functions": "nap", "coport-port.Points": "fx.twice;fx.mixed;fx.blocked"}
        for r in runs))

    tree = t.tree("points-only")
    p = t.run(tree, ["-p", "build", "--point", "fx.twice", "src/points.cpp"])
    t.expect("point without --function: exit 0, ported", p.returncode == 0
             and "+       .ported = [](int n) { return twice_coroutine(n); }},\n" in p.stdout
             and "coport-port: 1 ported fully, 0 ported with run_in_fiber left, 0 not ported; "
                 "1 registered with migration points" in p.stderr.splitlines(), p)
    run = (tree.json("log.jsonl") or [{"options": {}}])[0]
    t.expect("point without --function: Points given, no function", run["options"].get("coport-port.Points")
             == "fx.twice" and not run["options"].get("coport-port.Functions"), p)

    tree = t.tree("points-missing")
    p = t.run(tree, ["-p", "build", "--point", "fx.twice", "--point", "fx.nosuch", "--json", "out.json",
                     "src/points.cpp"])
    t.expect("point not found: exit 1, named", p.returncode == 1
             and "coport-port: 'fx.nosuch' not found in src/points.cpp" in p.stderr.splitlines()
             and "'fx.twice' not found" not in p.stderr, p)
    t.expect("point not found: what was found is written", "twice_coroutine" in p.stdout
             and tree.exists("out.json"), p)
    p = t.run(tree, ["-p", "build", "--function", "nap", "--point", "nap", "src/a.cpp"])
    t.expect("point not found: a function of the name is not the point", p.returncode == 1
             and "coport-port: 'nap' not found in src/a.cpp" in p.stderr.splitlines()
             and "ported 'fx::nap' as 'fx::nap_coroutine'" in p.stderr, p)


def listing(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else None


def test_output_dir(t):
    tree = t.tree("output-dir")
    out = os.path.join(tree.root, "gen", "ported")
    args = ["-p", "build"] + ALL + ["--output-dir", "gen/ported", "--json", "out.json", "src/a.cpp", "src/b.cpp"]
    p = t.run(tree, args)
    t.expect("output-dir: exit 0, no diff on stdout", p.returncode == 0 and p.stdout == "", p)
    t.expect("output-dir: the sources unchanged, byte for byte", tree.unchanged()
             and listing(os.path.join(tree.root, "src")) == ["a.cpp", "b.cpp", "bad.cpp", "common.hpp",
                                                             "points.cpp"])
    t.expect("output-dir: each FILE and the changed header written there, nothing else",
             listing(out) == ["a.cpp", "b.cpp", "common.hpp"])
    t.expect("output-dir: a.cpp ported", tree.bytes("gen/ported/a.cpp") == EXPECTED_A.encode("utf-8"))
    t.expect("output-dir: the header ported, its fix from two units once",
             tree.bytes("gen/ported/common.hpp") == EXPECTED_COMMON.encode("utf-8"))
    t.expect("output-dir: b.cpp, unchanged, copied as is",
             tree.bytes("gen/ported/b.cpp") == SOURCES["src/b.cpp"].encode("utf-8"))
    data = tree.json("out.json")
    t.expect("output-dir: json files changed are the sources", data.get("files_changed") == ["src/a.cpp", "src/common.hpp"])
    t.expect("output-dir: the summary as ever", "coport-port: 4 ported fully, 1 ported with run_in_fiber left, "
             "1 not ported; 1 registered with migration points" in p.stderr.splitlines(), p)

    # Again: nothing differs, so nothing is rewritten (time stamps and inodes
    # kept); a stale copy is rewritten.
    old = 1_000_000_000
    os.makedirs(out, exist_ok=True)  # failed above if it is not there
    for name in os.listdir(out):
        os.utime(os.path.join(out, name), (old, old))
    with open(os.path.join(out, "common.hpp"), "w", encoding="utf-8") as f:
        f.write("stale\n")
    os.utime(os.path.join(out, "common.hpp"), (old, old))
    before = {name: os.stat(os.path.join(out, name)) for name in os.listdir(out)}
    p = t.run(tree, args)
    after = {name: os.stat(os.path.join(out, name)) for name in os.listdir(out)}
    if sorted(before) != ["a.cpp", "b.cpp", "common.hpp"] or sorted(after) != sorted(before):
        t.expect("output-dir again: the same three files", False)
        return
    t.expect("output-dir again: exit 0", p.returncode == 0 and p.stdout == "", p)
    t.expect("output-dir again: identical files not rewritten (mtime and inode kept)",
             all(after[n].st_mtime == old and after[n].st_ino == before[n].st_ino for n in ("a.cpp", "b.cpp")),
             p)
    t.expect("output-dir again: a stale file rewritten", tree.bytes("gen/ported/common.hpp") == EXPECTED_COMMON.encode("utf-8")
             and after["common.hpp"].st_mtime != old)
    t.expect("output-dir again: no temporary file left, sources unchanged",
             listing(out) == ["a.cpp", "b.cpp", "common.hpp"] and tree.unchanged())

    tree = t.tree("output-dir-same-name")
    os.makedirs(os.path.join(tree.root, "src", "dup"))
    dup = "namespace fx {\n\nvoid nap() {\n  sleep();\n}\n\n}  // namespace fx\n"
    with open(os.path.join(tree.root, "src", "dup", "a.cpp"), "w", encoding="utf-8") as f:
        f.write(dup)
    p = t.run(tree, ["--function", "nap", "--output-dir", "out", "--json", "out.json", "src/a.cpp", "src/dup/a.cpp",
                     "--", "-std=c++20", "-Isrc"])
    t.expect("output-dir, two changed files of one name: exit 2, both named", p.returncode == 2
             and "have the same name" in p.stderr and "src/a.cpp" in p.stderr and "src/dup/a.cpp" in p.stderr
             and p.stdout == "", p)
    t.expect("output-dir, two changed files of one name: nothing written", not tree.exists("out")
             and not tree.exists("out.json") and tree.unchanged() and tree.read("src/dup/a.cpp") == dup)


def test_usage(t):
    tree = t.tree("usage")
    cases = [
        ("neither --function nor --point", ["-p", "build", "src/a.cpp"], "--function NAME or --point NAME"),
        ("--point with ;", ["-p", "build", "--point", "a;b", "src/points.cpp"], "not a migration point's name"),
        ("empty --point", ["-p", "build", "--function", "nap", "--point", " ", "src/points.cpp"],
         "not a migration point's name"),
        ("no FILE", ["-p", "build", "--function", "nap"], "FILE"),
        ("neither -p nor --", ["--function", "nap", "src/a.cpp"], "-p BUILD_DIR"),
        ("both -p and --", ["-p", "build", "--function", "nap", "src/a.cpp", "--", "-std=c++20"], "not both"),
        ("bad --coroutine-form", ["-p", "build", "--function", "nap", "--coroutine-form", "fx::a", "src/a.cpp"],
         "LEGACY=COROUTINE"),
        ("--in-place with --diff", ["-p", "build", "--function", "nap", "--in-place", "--diff", "x", "src/a.cpp"],
         "not allowed"),
        ("--output-dir with --in-place", ["-p", "build", "--function", "nap", "--in-place", "--output-dir", "out",
                                          "src/a.cpp"], "argument --output-dir: not allowed with argument --in-place"),
        ("--output-dir with --diff", ["-p", "build", "--function", "nap", "--output-dir", "out", "--diff", "x",
                                      "src/a.cpp"], "argument --diff: not allowed with argument --output-dir"),
        ("no such FILE", ["-p", "build", "--function", "nap", "src/nope.cpp"], "no such file"),
        ("FILE not in the database", ["-p", "build", "--function", "nap", "src/common.hpp"],
         "not a translation unit"),
        ("no database", ["-p", "src", "--function", "nap", "src/a.cpp"], "compile_commands.json"),
        ("bad --jobs", ["-p", "build", "--function", "nap", "--jobs", "0", "src/a.cpp"], "--jobs"),
    ]
    for label, args, says in cases:
        p = t.run(tree, args)
        t.expect(f"usage: {label}: exit 2", p.returncode == 2 and says in p.stderr and tree.unchanged()
                 and not tree.exists("out") and not tree.exists("x") and p.stdout == "", p)
    p = subprocess.run([sys.executable, DRIVER, "--plugin", os.path.join(t.tmp, "none.so"), "--clang-tidy", t.fake,
                        "-p", "build", "--function", "nap", "src/a.cpp"], cwd=tree.root,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t.expect("usage: no plugin: exit 2", p.returncode == 2 and "--plugin" in p.stderr, p)
    p = subprocess.run([sys.executable, DRIVER, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t.expect("--help: the usage and the exit status", p.returncode == 0 and "coport-port -p BUILD_DIR" in p.stdout
             and "Exit status" in p.stdout, p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--verbose", action="store_true")
    opts = ap.parse_args()
    if not shutil.which("patch"):
        print("test_driver.py: patch (Debian package patch) is needed")
        return 1
    with tempfile.TemporaryDirectory(prefix="coport-port-test-") as tmp:
        t = Test(tmp, opts.verbose)
        for test in (test_diff, test_in_place, test_fixed_args, test_failures, test_points, test_output_dir,
                     test_usage):
            test(t)
    print(f"port_driver: {t.count - len(t.failures)} of {t.count} passed")
    return 1 if t.failures else 0


if __name__ == "__main__":
    sys.exit(main())

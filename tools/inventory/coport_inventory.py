#!/usr/bin/env python3
"""coport-inventory: what a program still has to port before Boost.Fiber can go.

    coport-inventory -p BUILD_DIR [--filter REGEX] [--exclude REGEX] [--jobs N]
                     [--json FILE] [--program-facts FILE] [--clang-tidy EXE]
                     [--plugin SO] [--facts-dir DIR] [--keep-facts]
    coport-inventory --facts-dir DIR --no-run [...]

The static twin of coport's migration report. It runs the clang-tidy check
coport-inventory-facts (the coport-* module, libcoport_tidy.so) on every
translation unit of BUILD_DIR/compile_commands.json, merges their facts by
USR (a function defined in a header appears in many units) and, over the
whole program's call graph, reports:

  - the functions that can block fibers (a Boost.Fiber or coport blocking
    call, an Asio operation given a fiber token, a COPORT_FIBER_BLOCKING
    marker, or a call to such a function, through any translation unit),
    each with one shortest chain to what blocks, its callers and the
    coroutines that reach it;
  - the coroutine bodies that still reach fiber-blocking code;
  - the cross-world call sites (await, use_fiber, run_in_fiber, hosted);
  - the thread-blocking calls in coroutines (they stop the loop thread;
    they do not count as fiber-blocking);

and the verdict in the migration report's words: "ready for removing
Boost.Fiber" once no fiber-blocking function and no cross-world call is left.

coport's own code (functions in namespace coport, or defined under an
include/coport/ directory) is the runtime, not the program: its marked calls
are where chains end, and it is neither followed into nor reported.

Exit status: 0 when it ran (whatever it found), 1 when some translation unit
failed, 2 on bad usage or input.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import heapq
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

# What the drivers of the coport-* module share: tools/tidy/ in the source
# tree, <prefix>/lib*/coport/ (beside the module) once installed.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [os.path.join(_HERE, "..", "tidy")] + sorted(
    glob.glob(os.path.join(_HERE, "..", "lib*", "coport")) + glob.glob(os.path.join(_HERE, "..", "lib*", "*", "coport")))
from coport_tidy_run import (UsageError, builds_pch, check_programs, entry_file, for_clang,  # noqa: E402
                             load_compile_commands)

FACTS_FORMAT = "coport-inventory-facts/1"
PROGRAM_FACTS_FORMAT = "coport-program-facts/1"
REPORT_FORMAT = "coport-inventory/1"
GOAL = "removing Boost.Fiber"  # the migration report's goal (bridge/report.hpp)
CROSS_WORLD_KINDS = ("await", "use_fiber", "run_in_fiber", "hosted")
FIBER_KINDS = ("fiber", "token")
RUNTIME_FILE = re.compile(r"(^|/)include/coport/")
RUNTIME_NAME = re.compile(r"^(::)?coport::")


# ---------------------------------------------------------------- running


def source_root_of(build_dir: str | None, files: list[str]) -> str | None:
    """The source tree's root: CMake's home directory, else the common directory of the sources."""
    if build_dir:
        try:
            with open(os.path.join(build_dir, "CMakeCache.txt"), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("CMAKE_HOME_DIRECTORY:"):
                        return os.path.normpath(line.split("=", 1)[1].strip())
        except OSError:
            pass
    dirs = [os.path.dirname(f) for f in files if os.path.isabs(f)]
    if not dirs:
        return None
    root = os.path.commonpath(dirs)
    return root if root != "/" else None


def tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_facts(args, files: list[str], facts_dir: str) -> list[dict]:
    """Runs the facts check on each file, args.jobs at a time. Returns the failures."""
    def quoted(text: str) -> str:
        return "'%s'" % text.replace("'", "''")

    config = "{CheckOptions: {coport-inventory-facts.Directory: %s" % quoted(facts_dir)
    if args.fiber_blocking:
        config += ", coport-inventory-facts.FiberBlockingFunctions: %s" % quoted(";".join(args.fiber_blocking))
    config += "}}"
    failures: list[dict] = []
    done = 0
    lock = threading.Lock()
    n = len(files)

    def one(path: str):
        cmd = [args.clang_tidy, f"--load={args.plugin}", "--checks=-*,coport-inventory-facts",
               f"--config={config}", "--quiet", "--extra-arg=-Wno-unknown-warning-option"]
        cmd += [f"--extra-arg-before={a}" for a in args.extra_arg_before]
        cmd += [f"--extra-arg={a}" for a in args.extra_arg]
        cmd += ["-p", args.database_dir, path]
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
            status, out, err = proc.returncode, proc.stdout, proc.stderr
        except OSError as e:
            status, out, err = -1, "", f"cannot run {args.clang_tidy}: {e}"
        return path, status, out, err, time.monotonic() - start

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for path, status, out, err, secs in _as_completed(pool, one, files):
            with lock:
                done += 1
                shown = args.display(path)
                if status != 0:
                    # clang-tidy prints the compiler's errors on stdout, its summary on stderr
                    errors = [line for line in out.splitlines() if ": error: " in line][:5]
                    failures.append({"file": shown, "path": path, "status": status,
                                     "stderr_tail": "\n".join(errors + [tail(err, 6)]).strip()})
                    print(f"[{done}/{n}] {shown} ({secs:.1f} s) FAILED (exit status {status})",
                          file=sys.stderr, flush=True)
                else:
                    print(f"[{done}/{n}] {shown} ({secs:.1f} s)", file=sys.stderr, flush=True)
    return failures


def _as_completed(pool, fn, items):
    futures = [pool.submit(fn, item) for item in items]
    for fut in concurrent.futures.as_completed(futures):
        yield fut.result()


def read_facts_dir(facts_dir: str) -> tuple[list[dict], list[dict]]:
    """Every facts file of the directory; unreadable ones come back as failures."""
    units, failures = [], []
    for path in sorted(glob.glob(os.path.join(facts_dir, "*.json"))):
        try:
            with open(path, encoding="utf-8") as f:
                facts = json.load(f)
        except (OSError, ValueError) as e:
            failures.append({"file": path, "status": None, "stderr_tail": f"unreadable facts file: {e}"})
            continue
        if not isinstance(facts, dict) or facts.get("format") != FACTS_FORMAT:
            failures.append({"file": path, "status": None,
                             "stderr_tail": f"not a {FACTS_FORMAT} file (format {facts.get('format')!r})"
                             if isinstance(facts, dict) else f"not a {FACTS_FORMAT} file"})
            continue
        facts["_path"] = path
        units.append(facts)
    return units, failures


# ---------------------------------------------------------------- merging


class Function:
    __slots__ = ("usr", "name", "file", "line", "column", "defined", "coroutine", "marked",
                 "blocks", "calls", "cross_world", "runtime")

    def __init__(self, usr: str):
        self.usr = usr
        self.name = usr
        self.file = ""
        self.line = 0
        self.column = 0
        self.defined = False
        self.coroutine = False
        self.marked = False
        self.blocks: dict[tuple, dict] = {}
        self.calls: dict[tuple, dict] = {}
        self.cross_world: dict[tuple, dict] = {}
        self.runtime = False


def _site(d: dict) -> tuple:
    return (d.get("file", ""), int(d.get("line", 0)), int(d.get("column", 0)))


def merge(units: list[dict], include_runtime: bool = False) -> dict[str, Function]:
    """Joins the functions of every unit by USR; sites deduplicated by file:line:column."""
    functions: dict[str, Function] = {}
    for unit in units:
        for fd in unit.get("functions", []):
            usr = fd.get("usr") or f"{fd.get('name')}@{fd.get('file')}:{fd.get('line')}"
            f = functions.get(usr)
            if f is None:
                f = functions[usr] = Function(usr)
            defined = bool(fd.get("defined"))
            # The definition's place wins over a declaration's.
            if not f.file or (defined and not f.defined):
                f.name = fd.get("name", usr)
                f.file = fd.get("file", "")
                f.line = int(fd.get("line", 0))
                f.column = int(fd.get("column", 0))
            f.defined |= defined
            f.coroutine |= bool(fd.get("coroutine"))
            f.marked |= bool(fd.get("marked"))
            for b in fd.get("blocks", []):
                f.blocks.setdefault(_site(b) + (b.get("what", ""),), b)
            for c in fd.get("calls", []):
                f.calls.setdefault(_site(c) + (c.get("usr", ""),), c)
            for x in fd.get("cross_world", []):
                f.cross_world.setdefault(_site(x) + (x.get("kind", ""),), x)
    for f in functions.values():
        f.runtime = not include_runtime and bool(RUNTIME_NAME.match(f.name) or RUNTIME_FILE.search(f.file))
    # A call's callee may be listed under its USR only by the caller's unit.
    for f in list(functions.values()):
        for c in f.calls.values():
            usr = c.get("usr")
            if usr and usr not in functions:
                g = functions[usr] = Function(usr)
                g.name = c.get("name", usr)
                g.runtime = not include_runtime and bool(RUNTIME_NAME.match(g.name))
    return functions


# ---------------------------------------------------------------- the graph


def sorted_sites(sites) -> list[dict]:
    return sorted(sites, key=lambda d: (d.get("file", ""), int(d.get("line", 0)), int(d.get("column", 0))))


class Analysis:
    """Which functions block fibers, with one shortest chain each, over the merged call graph."""

    def __init__(self, functions: dict[str, Function]):
        self.functions = functions
        self.chain: dict[str, list[str]] = {}
        self.chain_sites: dict[str, list[dict]] = {}  # the call or block site of each step
        self._solve()

    def follows(self, g: Function) -> bool:
        """Whether a call to g runs g's body in the caller's fiber, as the checks see it."""
        if g.coroutine:
            return False  # calling a coroutine runs nothing yet; it is reported on its own
        if g.runtime:
            return False  # coport's internals: only its marked calls count
        return g.defined

    def _solve(self):
        fs = self.functions
        callers: dict[str, list[tuple[str, dict]]] = {}
        for f in fs.values():
            for c in sorted_sites(f.calls.values()):
                callers.setdefault(c.get("usr", ""), []).append((f.usr, c))
        # Dijkstra over chain lengths: a marked function is a chain of itself,
        # an own blocking call one step, each call one more.
        best: dict[str, int] = {}
        heap: list[tuple[int, str, str]] = []
        for f in fs.values():
            own = [b for b in sorted_sites(f.blocks.values()) if b.get("kind") in FIBER_KINDS]
            if f.marked:
                best[f.usr] = 1
                self.chain[f.usr] = [f.name]
                self.chain_sites[f.usr] = []
            elif own:
                best[f.usr] = 2
                self.chain[f.usr] = [f.name, own[0].get("what", "?")]
                self.chain_sites[f.usr] = [own[0]]
            else:
                continue
            heapq.heappush(heap, (best[f.usr], f.name, f.usr))
        while heap:
            d, _, usr = heapq.heappop(heap)
            if best.get(usr) != d:
                continue
            g = fs[usr]
            if not (g.marked or self.follows(g)):
                continue  # blocks, but a caller does not reach it by calling it
            for caller_usr, site in callers.get(usr, []):
                f = fs[caller_usr]
                if best.get(caller_usr, 1 << 30) <= d + 1:
                    continue
                best[caller_usr] = d + 1
                self.chain[caller_usr] = [f.name] + self.chain[usr]
                self.chain_sites[caller_usr] = [site] + self.chain_sites[usr]
                heapq.heappush(heap, (d + 1, f.name, caller_usr))

    def blocks(self, f: Function) -> bool:
        return f.usr in self.chain

    def direct(self, f: Function) -> bool:
        """Blocks by what it calls itself: a blocking call, a marker, a call to a marked function."""
        if f.marked or any(b.get("kind") in FIBER_KINDS for b in f.blocks.values()):
            return True
        return any(self.functions[c["usr"]].marked for c in f.calls.values()
                   if c.get("usr") in self.functions)

    def reach(self, f: Function) -> set[str]:
        """The fiber-blocking functions that f's body reaches through calls."""
        seen: set[str] = set()
        stack = [f.usr]
        while stack:
            u = stack.pop()
            for c in self.functions[u].calls.values():
                v = c.get("usr")
                g = self.functions.get(v)
                if g is None or v in seen or not self.blocks(g):
                    continue
                if not (self.follows(g) or g.marked):
                    continue
                seen.add(v)
                if self.follows(g):
                    stack.append(v)
        return seen


# ---------------------------------------------------------------- the report


class Paths:
    def __init__(self, root: str | None):
        self.root = root

    def __call__(self, path: str) -> str:
        if not path:
            return "?"
        if self.root and os.path.isabs(path):
            p = os.path.normpath(path)
            if p == self.root or p.startswith(self.root.rstrip("/") + "/"):
                return os.path.relpath(p, self.root)
        return path

    def name(self, name: str) -> str:
        """Lambdas are named after their place: shorten the path in it."""
        def repl(m):
            return "(lambda at " + self(m.group(1)) + ":"
        return re.sub(r"\(lambda at (/[^:()]+):", repl, name)


def build_report(functions: dict[str, Function], paths: Paths, units: int, seconds: float,
                 failures: list[dict]) -> dict:
    a = Analysis(functions)
    program = [f for f in functions.values() if not f.runtime]

    def loc(d: dict) -> dict:
        return {"file": paths(d.get("file", "")), "line": int(d.get("line", 0)), "column": int(d.get("column", 0))}

    def steps(usr: str) -> list[dict]:
        return [dict(loc(s), **({"what": s["what"]} if "what" in s else {"callee": paths.name(s.get("name", ""))}))
                for s in a.chain_sites.get(usr, [])]

    blocking = sorted((f for f in program if f.defined and not f.coroutine and a.blocks(f)),
                      key=lambda f: (paths(f.file), f.line, f.column, f.name))
    coroutines = sorted((f for f in program if f.defined and f.coroutine and a.blocks(f)),
                        key=lambda f: (paths(f.file), f.line, f.column, f.name))
    all_coroutines = [f for f in program if f.defined and f.coroutine]
    reached_by: dict[str, list[Function]] = {}
    for c in all_coroutines:
        for usr in a.reach(c):
            reached_by.setdefault(usr, []).append(c)

    callers_of: dict[str, list[tuple[Function, dict]]] = {}
    for f in functions.values():
        for c in f.calls.values():
            callers_of.setdefault(c.get("usr", ""), []).append((f, c))

    fn_rows = []
    for f in blocking:
        own = [dict(loc(b), what=b.get("what", "?"), kind=b.get("kind"), via=b.get("via", []))
               for b in sorted_sites(f.blocks.values()) if b.get("kind") in FIBER_KINDS]
        marked_calls = [dict(loc(c), what=paths.name(c.get("name", "?")), kind="marked", via=[])
                        for c in sorted_sites(f.calls.values())
                        if c.get("usr") in functions and functions[c["usr"]].marked
                        and not any(o["line"] == int(c.get("line", 0)) and o["column"] == int(c.get("column", 0))
                                    and o["file"] == paths(c.get("file", "")) for o in own)]
        fn_rows.append({
            "usr": f.usr, "name": paths.name(f.name), **loc({"file": f.file, "line": f.line, "column": f.column}),
            "marked": f.marked, "directly": a.direct(f),
            "blocks": own + marked_calls,
            "chain": [paths.name(n) for n in a.chain[f.usr]], "chain_sites": steps(f.usr),
            "callers": [dict(loc(c), name=paths.name(g.name), usr=g.usr)
                        for g, c in sorted(callers_of.get(f.usr, []),
                                           key=lambda gc: (paths(gc[1].get("file", "")), int(gc[1].get("line", 0)),
                                                           int(gc[1].get("column", 0)), gc[0].name))],
            "reached_by_coroutines": sorted({paths.name(c.name) for c in reached_by.get(f.usr, [])}),
        })
    co_rows = [{"usr": f.usr, "name": paths.name(f.name),
                **loc({"file": f.file, "line": f.line, "column": f.column}),
                "chain": [paths.name(n) for n in a.chain[f.usr]], "chain_sites": steps(f.usr)}
               for f in coroutines]
    cross = []
    for f in program:
        for x in f.cross_world.values():
            cross.append(dict(loc(x), kind=x.get("kind", "?"), what=x.get("what", ""),
                              function=paths.name(f.name)))
    cross.sort(key=lambda r: (CROSS_WORLD_KINDS.index(r["kind"]) if r["kind"] in CROSS_WORLD_KINDS else 99,
                              r["file"], r["line"], r["column"]))
    thread = []
    for f in program:
        if not (f.defined and f.coroutine):
            continue
        for b in f.blocks.values():
            if b.get("kind") == "thread":
                thread.append(dict(loc(b), what=b.get("what", "?"), function=paths.name(f.name)))
    thread.sort(key=lambda r: (r["file"], r["line"], r["column"]))

    direct = sum(1 for r in fn_rows if r["directly"])
    by_kind = {k: sum(1 for r in cross if r["kind"] == k) for k in CROSS_WORLD_KINDS}
    reasons = []
    if fn_rows:
        reasons.append(f"{len(fn_rows)} fiber-blocking function(s)")
    if co_rows:
        reasons.append(f"{len(co_rows)} coroutine body(ies) still reaching fiber-blocking code")
    if cross:
        reasons.append(f"{len(cross)} cross-world call site(s)")
    if thread:
        reasons.append(f"{len(thread)} thread-blocking call(s) in coroutines")
    if failures:
        reasons.append(f"{len(failures)} translation unit(s) failed, not counted")
    ready = not reasons
    verdict = f"ready for {GOAL}" if ready else f"not ready for {GOAL}: {len(reasons)} reason(s)"
    return {
        "format": REPORT_FORMAT,
        "root": paths.root,
        "summary": {
            "translation_units": units, "seconds": round(seconds, 3),
            "fiber_blocking_functions": len(fn_rows), "directly": direct, "through_calls": len(fn_rows) - direct,
            "coroutines_reaching_fiber_blocking": len(co_rows),
            "cross_world": dict(by_kind, total=len(cross)),
            "thread_blocking_in_coroutines": len(thread),
            "failures": len(failures),
        },
        "ready": ready, "verdict": verdict, "reasons": reasons,
        "functions": fn_rows, "coroutines": co_rows, "cross_world": cross,
        "thread_blocking": thread, "failures": failures,
        "_analysis": a,
    }


def program_facts(report: dict, functions: dict[str, Function]) -> dict:
    """coport-program-facts/1: every function of the program that blocks fibers, with its chain."""
    a: Analysis = report["_analysis"]
    rows = []
    for f in sorted(functions.values(), key=lambda f: (f.name, f.usr)):
        if f.runtime or f.coroutine or not a.blocks(f):
            continue
        rows.append({"usr": f.usr, "name": f.name, "chain": a.chain[f.usr]})
    return {"format": PROGRAM_FACTS_FORMAT, "blocking": rows}


def to_text(r: dict) -> str:
    s = r["summary"]
    cw = s["cross_world"]
    out = [f"coport inventory: {s['translation_units']} translation unit(s) ({s['seconds']:.1f} s)"
           + (f", {s['failures']} failed" if s["failures"] else ""),
           f"  fiber-blocking functions: {s['fiber_blocking_functions']} "
           f"({s['directly']} directly, {s['through_calls']} through calls)",
           f"  coroutine bodies still reaching fiber-blocking code: {s['coroutines_reaching_fiber_blocking']}",
           "  cross-world calls: " + ", ".join(f"{k} {cw[k]}" for k in CROSS_WORLD_KINDS),
           f"  thread-blocking calls in coroutines: {s['thread_blocking_in_coroutines']}",
           f"verdict: {r['verdict']}"]
    out += [f"  - {reason}" for reason in r["reasons"]]

    def at(d):
        return f"{os.path.basename(d['file'])}:{d['line']}"

    if r["functions"]:
        out += ["", "fiber-blocking functions"]
        for f in r["functions"]:
            out.append(f"  {f['file']}:{f['line']} {f['name']}")
            if f["directly"]:
                if f["marked"] and not f["blocks"]:
                    out.append("    directly: marked COPORT_FIBER_BLOCKING")
                for b in f["blocks"]:
                    via = f" via {' -> '.join(b['via'])}" if b.get("via") else ""
                    kind = " (fiber token)" if b["kind"] == "token" else ""
                    out.append(f"    directly: {b['what']}{kind}{via} ({at(b)})")
            else:
                out.append(f"    through: {' -> '.join(f['chain'])}")
            callers = ", ".join(f"{c['name']} ({at(c)})" for c in f["callers"]) or "none"
            out.append(f"    callers: {callers}")
            out.append(f"    reached by coroutines: {', '.join(f['reached_by_coroutines']) or 'none'}")
    if r["coroutines"]:
        out += ["", "coroutine bodies reaching fiber-blocking code"]
        for c in r["coroutines"]:
            out.append(f"  {c['file']}:{c['line']} {c['name']}: {' -> '.join(c['chain'])}")
    if r["cross_world"]:
        out += ["", "cross-world calls"]
        for x in r["cross_world"]:
            out.append(f"  {x['kind']:<12} {x['file']}:{x['line']} in {x['function']}")
    if r["thread_blocking"]:
        out += ["", "thread-blocking calls in coroutines"]
        for t in r["thread_blocking"]:
            out.append(f"  {t['file']}:{t['line']} {t['what']} in {t['function']}")
    if r["failures"]:
        out += ["", "failed translation units (not counted)"]
        for f in r["failures"]:
            status = f" (exit status {f['status']})" if f.get("status") is not None else ""
            out.append(f"  {f['file']}{status}")
            out += ["    " + line for line in f["stderr_tail"].splitlines()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(prog="coport-inventory", description=__doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-p", dest="build_dir", help="the build tree (its compile_commands.json)")
    p.add_argument("--filter", help="only translation units whose file matches this regular expression")
    p.add_argument("--exclude", help="not the translation units whose file matches this regular expression")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="clang-tidy runs at a time")
    p.add_argument("--json", help="write the inventory as JSON (coport-inventory/1) to this file")
    p.add_argument("--program-facts", help="write coport-program-facts/1 (the checks' ProgramFacts option)")
    p.add_argument("--clang-tidy", default=shutil.which("clang-tidy-16") or "clang-tidy-16",
                   help="clang-tidy 16 (default: clang-tidy-16 on PATH)")
    p.add_argument("--plugin", help="libcoport_tidy.so (default: ../lib/coport/ next to this program)")
    p.add_argument("--facts-dir", help="where the facts files go (default: a temporary directory)")
    p.add_argument("--keep-facts", action="store_true", help="keep the facts files (with --facts-dir or in /tmp)")
    p.add_argument("--no-run", action="store_true", help="run nothing: merge the facts already in --facts-dir")
    p.add_argument("--extra-arg", action="append", default=[], metavar="ARG",
                   help="an argument appended to each compile command (clang-tidy's --extra-arg)")
    p.add_argument("--extra-arg-before", action="append", default=[], metavar="ARG",
                   help="an argument put first in each compile command (clang-tidy's --extra-arg-before)")
    p.add_argument("--root", help="paths are shown relative to this directory (default: the source tree)")
    p.add_argument("--fiber-blocking", action="append", default=[], metavar="REGEX",
                   help="a function (its qualified name) that blocks fibers though nothing marks it, e.g. a "
                        "third-party library's; repeatable (the checks' option FiberBlockingFunctions)")
    p.add_argument("--include-runtime", action="store_true",
                   help="report coport's own functions too (by default they are the runtime, not the program)")
    args = p.parse_args(argv)
    if args.no_run and not args.facts_dir:
        p.error("--no-run needs --facts-dir")
    if not args.no_run and not args.build_dir:
        p.error("-p BUILD_DIR is required")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


def compile_regex(text, what):
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as e:
        raise UsageError(f"{what} {text!r}: not a regular expression: {e}") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UsageError as e:
        print(f"coport-inventory: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    start = time.monotonic()
    flt = compile_regex(args.filter, "--filter")
    exc = compile_regex(args.exclude, "--exclude")

    def selected(path: str) -> bool:
        return (flt is None or flt.search(path) is not None) and (exc is None or exc.search(path) is None)

    entries = load_compile_commands(args.build_dir, " and run cmake again") if args.build_dir else []
    all_files = [entry_file(e) for e in entries]
    root = os.path.normpath(args.root) if args.root else source_root_of(args.build_dir, all_files)
    paths = Paths(root)
    args.display = paths
    failures: list[dict] = []
    temp_dir = None

    if args.no_run:
        if not os.path.isdir(args.facts_dir):
            raise UsageError(f"{args.facts_dir}: no such directory of facts files")
        units, bad = read_facts_dir(args.facts_dir)
        failures += bad
        units = [u for u in units if selected(u.get("main_file", ""))]
        if root is None:
            paths.root = source_root_of(None, [u.get("main_file", "") for u in units])
    else:
        files = sorted({f for f in all_files if selected(f)})
        if not files:
            raise UsageError(f"no translation unit of {os.path.join(args.build_dir, 'compile_commands.json')} "
                             "matches --filter/--exclude")
        args.plugin = check_programs(args.plugin, args.clang_tidy)
        if args.facts_dir:
            facts_dir = os.path.abspath(args.facts_dir)
            os.makedirs(facts_dir, exist_ok=True)
        else:
            facts_dir = temp_dir = tempfile.mkdtemp(prefix="coport-inventory-")
        args.database_dir = tempfile.mkdtemp(prefix="coport-inventory-db-")
        try:
            with open(os.path.join(args.database_dir, "compile_commands.json"), "w", encoding="utf-8") as f:
                json.dump([for_clang(e) for e in entries if not builds_pch(e)], f)
            print(f"coport-inventory: {len(files)} translation unit(s), {args.jobs} at a time", file=sys.stderr)
            failures += run_facts(args, files, facts_dir)
            units, bad = read_facts_dir(facts_dir)
            failures += bad
            wanted = {os.path.realpath(f) for f in files}
            failed = {os.path.realpath(f["path"]) for f in failures if "path" in f}
            units = [u for u in units
                     if os.path.realpath(u.get("main_file", "")) in wanted
                     and os.path.realpath(u.get("main_file", "")) not in failed]
            have = {os.path.realpath(u.get("main_file", "")) for u in units}
            for f in files:
                if os.path.realpath(f) not in have and os.path.realpath(f) not in failed:
                    failures.append({"file": paths(f), "status": 0,
                                     "stderr_tail": "clang-tidy wrote no facts for it (is the check "
                                                    "coport-inventory-facts in the plugin?)"})
        finally:
            shutil.rmtree(args.database_dir, ignore_errors=True)
            if temp_dir and not args.keep_facts:
                shutil.rmtree(temp_dir, ignore_errors=True)
            elif temp_dir:
                print(f"coport-inventory: facts kept in {temp_dir}", file=sys.stderr)

    functions = merge(units, include_runtime=args.include_runtime)
    report = build_report(functions, paths, len(units), time.monotonic() - start, failures)
    sys.stdout.write(to_text(report))
    if args.json:
        data = {k: v for k, v in report.items() if not k.startswith("_")}
        data["failures"] = [{k: v for k, v in f.items() if k != "path"} for f in failures]
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    if args.program_facts:
        with open(args.program_facts, "w", encoding="utf-8") as f:
            json.dump(program_facts(report, functions), f, indent=1)
            f.write("\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Runs coport-port over its fixtures with the real clang-tidy and plugin.

    run_fixtures.py --clang-tidy EXE --plugin SO --port PROGRAM --source-dir SRC
                    [--fiber-examples DIR] [--update] [--verbose] [FIXTURE.cpp...]

A fixture is fixtures/NAME.cpp (all of them when none is given) with, in
comments:

  // PORT-ARGS: --function fx::nap --coroutine-form a=b ...
      coport-port's options (several lines are joined).
  // PORT-RESULT: ported 'fx::nap' as 'fx::nap_coroutine'
      a line coport-port must print on stderr (after its `FILE:LINE: `);
      one per directive.
  // PORT-UNCHANGED
      nothing may change (every function refused): there is no
      NAME.expected.cpp, the result must equal NAME.cpp.

and its expected result, NAME.expected.cpp: the whole file after porting.
The runner copies NAME.cpp into a temporary directory, runs there

    PROGRAM --clang-tidy EXE --plugin SO PORT-ARGS --in-place NAME.cpp -- COMPILE ARGS

(COMPILE ARGS: those of tools/tidy/test/check_fixture.py, -std=c++20, the
bridge's and the migration library's include directories,
-DCOPORT_BRIDGE_FIBERS=1, Boost.Fiber's Asio example) and fails (exit 1)
when coport-port does not exit with 0, when the result differs from
NAME.expected.cpp by one byte (a unified diff is printed), when the result
does not compile (clang++-16 -fsyntax-only), when
coport-fiber-blocking-in-coroutine warns on it (a coroutine form written by
coport-port must not block fibers; the calls it left in run_in_fiber must be
reported as such, at least one per function listed), or when a PORT-RESULT
line is missing.

--update rewrites NAME.expected.cpp from the result (for fixture authors:
read the diff before committing it); the other checks still run.
"""

import argparse
import difflib
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tidy", "test"))
from check_fixture import compile_args  # noqa: E402  (tools/tidy/test)

DIRECTIVE_RE = re.compile(r"//\s*(PORT-ARGS|PORT-RESULT)\s*:(.*)$")
BLOCKING_CHECK = "coport-fiber-blocking-in-coroutine"


def find_clangxx(clang_tidy):
    """clang++-16 next to clang-tidy-16 (or in the LLVM directory it links to), else on PATH."""
    found = shutil.which(clang_tidy) or clang_tidy
    dirs = [os.path.dirname(os.path.abspath(found)), os.path.dirname(os.path.realpath(found))]
    for d in dirs:
        for name in ("clang++-16", "clang++"):
            path = os.path.join(d, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return shutil.which("clang++-16")


def run(cmd, opts, **kw):
    if opts.verbose:
        print("$ " + " ".join(shlex.quote(c) for c in cmd))
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                           timeout=opts.timeout, **kw)
    except subprocess.TimeoutExpired:
        return None, "", f"did not finish in {opts.timeout} s"
    except OSError as e:
        return None, "", f"cannot run {cmd[0]}: {e}"
    if opts.verbose:
        print(p.stdout + p.stderr, end="")
    return p.returncode, p.stdout, p.stderr


def indented(text, lines=30):
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def check_fixture(opts, path):
    """Returns True when the fixture ports as expected."""
    name = os.path.basename(path)
    stem = name[:-len(".cpp")]
    expected_path = os.path.join(os.path.dirname(os.path.abspath(path)), stem + ".expected.cpp")
    port_args, results = [], []
    unchanged = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            unchanged = unchanged or re.search(r"//\s*PORT-UNCHANGED\b", line) is not None
            m = DIRECTIVE_RE.search(line)
            if m and m.group(1) == "PORT-ARGS":
                port_args += shlex.split(m.group(2))
            elif m:
                results.append(m.group(2).strip())
    failures = []
    if not port_args:
        failures.append("no // PORT-ARGS: line (at least --function NAME)")
    args = compile_args(opts)
    program = os.path.abspath(opts.port) if os.path.sep in opts.port else opts.port
    port = [sys.executable, program] if program.endswith(".py") else [program]
    with tempfile.TemporaryDirectory(prefix="coport-port-fixture-") as tmp:
        work = os.path.join(tmp, name)
        shutil.copyfile(path, work)
        rc, out, err = (None, "", "") if failures else run(
            port + ["--clang-tidy", opts.clang_tidy, "--plugin", opts.plugin] + port_args
            + ["--in-place", name, "--"] + args, opts, cwd=tmp)
        if not failures and rc != 0:
            failures.append(f"coport-port exited with status {rc} (wanted 0); its output:\n" + indented(out + err))
            if "unknown check coport-port" in err:
                failures.append(f"{opts.plugin} does not provide the check coport-port "
                                "(not built yet, or it did not load)")
        if not failures:
            with open(work, "rb") as f:
                actual = f.read()
            # (a) the whole result, byte for byte
            if unchanged:
                with open(path, "rb") as f:
                    if f.read() != actual:
                        failures.append("the file changed, but the fixture says PORT-UNCHANGED")
                if os.path.exists(expected_path):
                    failures.append(f"{os.path.basename(expected_path)} exists, but the fixture says PORT-UNCHANGED")
            elif opts.update:
                with open(expected_path, "wb") as f:
                    f.write(actual)
                print(f"{name}: wrote {os.path.basename(expected_path)}")
            elif not os.path.exists(expected_path):
                failures.append(f"no {os.path.basename(expected_path)} (write it, or run with --update)")
            else:
                with open(expected_path, "rb") as f:
                    expected = f.read()
                if actual != expected:
                    diff = difflib.unified_diff(
                        expected.decode("utf-8", "replace").splitlines(keepends=True),
                        actual.decode("utf-8", "replace").splitlines(keepends=True),
                        os.path.basename(expected_path), f"{name} (ported)")
                    failures.append("the result differs from the expected file:\n" + indented("".join(diff), 200))
            # (b) the result compiles
            clangxx = find_clangxx(opts.clang_tidy)
            if clangxx:
                rc2, out2, err2 = run([clangxx, "-fsyntax-only"] + args + [work], opts)
                if rc2 != 0:
                    failures.append(f"the result does not compile ({os.path.basename(clangxx)} -fsyntax-only):\n"
                                    + indented(out2 + err2))
            else:
                failures.append("no clang++-16 next to clang-tidy or on PATH to compile the result with "
                                "(scripts/setup.sh installs clang-16)")
            # (c) what was written does not block fibers
            rc3, out3, err3 = run([opts.clang_tidy, "--load=" + opts.plugin, "--checks=-*," + BLOCKING_CHECK,
                                   "--quiet", work, "--"] + args, opts)
            warnings = [line for line in out3.splitlines() if f"[{BLOCKING_CHECK}]" in line and "warning:" in line]
            # A call left in run_in_fiber is reported as such, once per
            # call the summary lists (and nothing else may be).
            left = [line for line in warnings if "in a fiber, where coport-port left it" in line]
            warnings = [line for line in warnings if line not in left]
            left_listed = sum(len(r.split(", ")) for r in re.findall(r"call\(s\) left in run_in_fiber: (.*)$", err,
                                                                     re.MULTILINE))
            if len(left) < left_listed:
                failures.append(f"{BLOCKING_CHECK} reports {len(left)} call(s) left in a fiber; the summary lists "
                                f"{left_listed}:\n" + indented("\n".join(left)))
            errors = [line for line in (out3 + err3).splitlines()
                      if re.search(r"\b(error|fatal error):", line) or "Stack dump" in line]
            if warnings:
                failures.append(f"{BLOCKING_CHECK} warns on the result:\n" + indented("\n".join(warnings)))
            if rc3 != 0 or errors:
                failures.append(f"clang-tidy ({BLOCKING_CHECK}) failed on the result (status {rc3}):\n"
                                + indented(out3 + err3))
            # (d) the summary
            summary = [line for line in err.splitlines() if line.startswith("coport-port: ")]
            for want in results:
                if not any(line.endswith(": " + want) for line in summary):
                    failures.append(f"no summary line '{want}' (PORT-RESULT); coport-port said:\n"
                                    + indented("\n".join(summary)))
    print(f"{name}: {'ok' if not failures else 'FAILED'}")
    for f in failures:
        print("  FAIL " + f)
    return not failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clang-tidy", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--port", required=True, help="coport-port (the build tree's launcher, or coport_port.py)")
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--fiber-examples", help="the directory of Boost.Fiber's yield.hpp and round_robin.hpp")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--update", action="store_true", help="rewrite NAME.expected.cpp from the result")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("fixtures", nargs="*")
    opts = ap.parse_args()
    fixtures = opts.fixtures or sorted(glob.glob(os.path.join(HERE, "fixtures", "*.cpp")))
    fixtures = [f for f in fixtures if not f.endswith(".expected.cpp")]
    if not fixtures:
        ap.error("no fixture")
    results = [check_fixture(opts, f) for f in fixtures]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

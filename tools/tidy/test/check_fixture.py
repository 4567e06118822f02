#!/usr/bin/env python3
"""Runs the coport-* clang-tidy checks over a fixture and compares what they
report with what the fixture expects.

    check_fixture.py --clang-tidy EXE --plugin SO --source-dir SRC [--verbose] FIXTURE.cpp...
    check_fixture.py --self-test [--clang-tidy EXE --plugin SO --source-dir SRC]

Directives, in comments of the fixture:

  // CHECK-MESSAGES: :[[@LINE-1]]:COL: warning: TEXT [check-name]
      A warning is expected at that line (@LINE is the directive's own line;
      @LINE+N, @LINE-N, or a plain line number) and column, from check
      `check-name`, whose message contains TEXT. In TEXT, `{{re}}` is a
      regular expression (for the paths clang writes into lambdas' names)
      and [[@LINE+-N]] a line number, as above.
  // CHECK-NOTES: :[[@LINE-1]]:COL: note: TEXT
      The same for a note. Notes are compared only when the fixture has at
      least one CHECK-NOTES line; then every note in the fixture file must be
      expected and every expected note found.
  // KNOWN-MISS: reason
      A documented false negative: no warning may appear on this line (when
      one does, the fixture is out of date and fails). Counted and listed.
  // TIDY-CONFIG: {CheckOptions: {...}}
      Passed to clang-tidy as --config, with Checks set to -*,coport-*; `%S`
      is replaced by the fixture's directory. Several TIDY-CONFIG lines are
      joined with spaces.
  // TIDY-ARGS: -DX=1 ...
      Extra compiler arguments.
  // CHECK-FIXES: TEXT
      A line the checks' fix-its must produce (TEXT as in CHECK-MESSAGES:
      literal, `{{re}}` a regular expression; `{{^}}` and `{{$}}` anchor
      it). Searched in the fixed file, not the fixture, see below.
  // CHECK-FIXED-CLEAN
      After the fix-its, no coport-fiber-blocking-in-coroutine warning may
      remain in the fixed file.

Only diagnostics located in the fixture file are compared. The run fails
(exit 1) on a missing or an unexpected diagnostic, on a known miss that is
diagnosed, on a malformed directive, on any `error:` in clang-tidy's output
(a fixture that does not compile proves nothing), and when clang-tidy
crashes or exits with a status other than 0.

Fix-its. A fixture with a CHECK-FIXES or a CHECK-FIXED-CLEAN line is, after
the run above, copied to a temporary directory (same base name; its own
directory stays on the quoted-include path) and clang-tidy runs on the copy
with the same arguments plus --fix (the fixes of warnings are applied; not
--fix-errors). Then, in the fixed copy:
  - the CHECK-FIXES patterns must be found in order: each one in a line
    after the line the previous one matched. A pattern is searched in the
    whole line with leading and trailing whitespace stripped; in a line
    holding a directive (`// CHECK-...`, `// KNOWN-MISS...`, `// TIDY-...`)
    only the code before the directive counts, and a line that is only a
    directive is skipped, so a CHECK-FIXES never matches itself;
  - clang-tidy runs once more (checks -*,coport-*): the fixed copy must
    compile (any `error:` fails, with the offending lines); the coport
    warnings that remain are listed, and with CHECK-FIXED-CLEAN those of
    coport-fiber-blocking-in-coroutine fail.
A missing fix shows the pattern, the line it was expected after and the
fixed file around the place where the search started. The unified diff
original -> fixed is printed with --verbose and when the fixture fails.
Fixtures without these two directives run clang-tidy once, as before.
"""

import argparse
import difflib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

CHECKS = "-*,coport-*"

# Boost.Fiber's Asio example (boost::fibers::asio::yield, round_robin): the
# directory that holds yield.hpp and round_robin.hpp.
FIBER_ASIO_EXAMPLE_DIRS = [
    "/usr/share/doc/libboost1.81-doc/examples/libs/fiber/examples/asio",
    "/usr/share/doc/libboost1.81-doc/examples/fiber/asio",
]

DIRECTIVE_NAMES = "CHECK-MESSAGES|CHECK-NOTES|CHECK-FIXES|KNOWN-MISS|TIDY-CONFIG|TIDY-ARGS"
DIRECTIVE_RE = re.compile(r"//\s*(%s)\s*:(.*)$" % DIRECTIVE_NAMES)
FIXED_CLEAN_RE = re.compile(r"//\s*CHECK-FIXED-CLEAN\b")
# Where a directive starts in a line of the fixed file: the rest of the line
# is no match target for CHECK-FIXES.
ANY_DIRECTIVE_RE = re.compile(r"//\s*(?:CHECK-[A-Z-]+|KNOWN-MISS|TIDY-CONFIG|TIDY-ARGS)\b")
FIBER_CHECK = "coport-fiber-blocking-in-coroutine"
EXPECT_RE = re.compile(
    r"^\s*:(?:\[\[@LINE(?P<off>[+-]\d+)?\]\]|(?P<abs>\d+)):(?P<col>\d+):\s*"
    r"(?P<kind>warning|note):\s*(?P<text>.*?)\s*$")
CHECK_NAME_RE = re.compile(r"^(?P<text>.*?)\s*\[(?P<check>[A-Za-z0-9_.,-]+)\]$")
DIAG_RE = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+):\s*(?P<kind>warning|note|error|fatal error):\s*"
    r"(?P<msg>.*?)(?:\s\[(?P<check>[A-Za-z0-9_.,-]+)\])?\s*$")


class Expectation:
    def __init__(self, kind, line, col, text, check, directive_line):
        self.kind = kind
        self.line = line
        self.col = col
        self.text = text
        self.check = check
        self.directive_line = directive_line
        self.pattern = text_pattern(text)

    def matches(self, d):
        return (d.kind == self.kind and d.line == self.line and d.col == self.col
                and (self.check is None or d.check == self.check)
                and self.pattern.search(d.msg) is not None)

    def __str__(self):
        check = " [%s]" % self.check if self.check else ""
        return "%d:%d: %s: %s%s (directive on line %d)" % (
            self.line, self.col, self.kind, self.text, check, self.directive_line)


class Diagnostic:
    def __init__(self, kind, line, col, msg, check):
        self.kind = kind
        self.line = line
        self.col = col
        self.msg = msg
        self.check = check

    def __str__(self):
        check = " [%s]" % self.check if self.check else ""
        return "%d:%d: %s: %s%s" % (self.line, self.col, self.kind, self.msg, check)


def text_pattern(text):
    """TEXT as a regular expression: literal, except `{{re}}` parts."""
    out = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            out.append(re.escape(text[pos:]))
            break
        end = text.find("}}", start + 2)
        if end < 0:
            raise ValueError("unterminated {{ in %r" % text)
        out.append(re.escape(text[pos:start]))
        out.append("(?:%s)" % text[start + 2:end])
        pos = end + 2
    return re.compile("".join(out))


class Fixture:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.expected = []        # Expectation
        self.known_misses = []    # (line, reason)
        self.config = []          # TIDY-CONFIG pieces
        self.args = []            # TIDY-ARGS
        self.problems = []        # malformed directives
        self.has_notes = False
        self.fixes = []           # CHECK-FIXES: (directive line, text, pattern)
        self.fixed_clean = False  # CHECK-FIXED-CLEAN
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                self._parse_line(n, line.rstrip("\n"))

    def _parse_line(self, n, line):
        if FIXED_CLEAN_RE.search(line):
            self.fixed_clean = True
            return
        m = DIRECTIVE_RE.search(line)
        if not m:
            # A comment that starts like a directive but is not one (a
            # missing colon) would otherwise be silently ignored.
            d = re.search(r"//\s*(%s)\b" % DIRECTIVE_NAMES, line)
            if d:
                self.problems.append("line %d: %s without ':' (directive not understood)" % (n, d.group(1)))
            return
        what, rest = m.group(1), m.group(2).strip()
        if what == "CHECK-FIXES":
            if not rest:
                self.problems.append("line %d: CHECK-FIXES without TEXT" % n)
                return
            try:
                self.fixes.append((n, rest, text_pattern(rest)))
            except (ValueError, re.error) as err:
                self.problems.append("line %d: bad CHECK-FIXES TEXT: %s" % (n, err))
            return
        if what == "KNOWN-MISS":
            if not rest:
                self.problems.append("line %d: KNOWN-MISS without a reason" % n)
            self.known_misses.append((n, rest))
            return
        if what == "TIDY-CONFIG":
            self.config.append(rest.replace("%S", os.path.dirname(self.path)))
            return
        if what == "TIDY-ARGS":
            self.args.extend(shlex.split(rest.replace("%S", os.path.dirname(self.path))))
            return
        e = EXPECT_RE.match(rest)
        if not e:
            self.problems.append("line %d: malformed %s: %s" % (n, what, rest))
            return
        kind = e.group("kind")
        if (what == "CHECK-MESSAGES") != (kind == "warning"):
            self.problems.append("line %d: %s expects a %s" % (n, what, "warning" if what == "CHECK-MESSAGES" else "note"))
            return
        target = int(e.group("abs")) if e.group("abs") else n + int(e.group("off") or 0)
        # [[@LINE]], [[@LINE+N]] and [[@LINE-N]] in TEXT name lines too.
        text = re.sub(r"\[\[@LINE([+-]\d+)?\]\]", lambda m: str(n + int(m.group(1) or 0)), e.group("text"))
        check = None
        if kind == "warning":
            c = CHECK_NAME_RE.match(text)
            if not c:
                self.problems.append("line %d: CHECK-MESSAGES without [check-name]" % n)
                return
            text, check = c.group("text"), c.group("check")
        else:
            self.has_notes = True
        try:
            self.expected.append(Expectation(kind, target, int(e.group("col")), text, check, n))
        except (ValueError, re.error) as err:
            self.problems.append("line %d: bad TEXT: %s" % (n, err))

    def wants_fix_run(self):
        return bool(self.fixes) or self.fixed_clean

    def config_text(self):
        """The --config value: Checks set here, the fixture's options kept."""
        body = " ".join(self.config).strip()
        if not body:
            return "{Checks: '%s'}" % CHECKS
        if not (body.startswith("{") and body.endswith("}")):
            raise ValueError("TIDY-CONFIG must be a YAML flow mapping {...}: %s" % body)
        inner = body[1:-1].strip()
        return "{Checks: '%s'%s}" % (CHECKS, (", " + inner) if inner else "")


def fiber_asio_example_dir(explicit):
    dirs = [explicit] if explicit else FIBER_ASIO_EXAMPLE_DIRS
    for d in dirs:
        if os.path.isfile(os.path.join(d, "yield.hpp")) and os.path.isfile(os.path.join(d, "round_robin.hpp")):
            return d
    raise SystemExit("check_fixture.py: Boost.Fiber's Asio example (yield.hpp, round_robin.hpp) not found in %s"
                     % ", ".join(dirs))


def compile_args(opts):
    """How a fixture is compiled: C++20, coport's headers with the fiber
    side, Boost.Fiber's Asio example (also tools/port/test/run_fixtures.py)."""
    src = os.path.abspath(opts.source_dir)
    return ["-std=c++20",
            "-I", os.path.join(src, "bridge", "include"),
            "-I", os.path.join(src, "migration", "include"),
            "-I", os.path.join(src, "messaging", "include"),
            "-DCOPORT_BRIDGE_FIBERS=1",
            "-I", fiber_asio_example_dir(opts.fiber_examples)]


def same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def run_clang_tidy(opts, fx, path=None, tidy_args=()):
    """clang-tidy on the fixture, or on PATH (a copy of it: the fixture's
    directory is then added to the quoted-include path) with TIDY_ARGS."""
    path = path or fx.path
    copy_args = [] if path == fx.path else ["-iquote", os.path.dirname(fx.path)]
    cmd = [opts.clang_tidy, "--load=" + opts.plugin, "--checks=" + CHECKS,
           "--config=" + fx.config_text(), "--quiet"] + list(tidy_args) + [path, "--"] + \
        compile_args(opts) + fx.args + copy_args
    if opts.verbose:
        print("$ " + " ".join(shlex.quote(c) for c in cmd))
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           errors="replace", timeout=opts.timeout)
    except subprocess.TimeoutExpired:
        return None, "", "clang-tidy did not finish in %d s" % opts.timeout
    return p.returncode, p.stdout, p.stderr


def parse_diagnostics(out, err, path):
    """(warnings, notes) located in PATH, and the error lines (anywhere)."""
    warnings, notes, errors = [], [], []
    for raw in (out + "\n" + err).splitlines():
        m = DIAG_RE.match(raw)
        if m and m.group("kind") in ("error", "fatal error"):
            errors.append(raw)
            continue
        if not m:
            if re.search(r"\berror:", raw) or "Stack dump" in raw or "PLEASE submit a bug report" in raw:
                errors.append(raw)
            continue
        if not same_file(m.group("file"), path):
            continue
        d = Diagnostic(m.group("kind"), int(m.group("line")), int(m.group("col")), m.group("msg"), m.group("check"))
        (warnings if d.kind == "warning" else notes).append(d)
    return warnings, notes, errors


def status_failure(what, rc, err):
    if rc is None:
        return err
    if rc != 0:
        return "%s exited with status %d%s" % (what, rc, " (killed by a signal: a crash)" if rc < 0 else "")
    return None


def fix_target(line):
    """The text of a fixed file's line that CHECK-FIXES patterns are searched
    in, or None: the code before any directive, whitespace stripped."""
    d = ANY_DIRECTIVE_RE.search(line)
    if d:
        line = line[:d.start()]
    line = line.strip()
    return line if line or not d else None


def context_lines(lines, at, around=3):
    """Lines AT-AROUND..AT+AROUND (0-based AT) of LINES, numbered, AT marked."""
    out = []
    for i in range(max(0, at - around), min(len(lines), at + around + 1)):
        out.append("      %s%5d | %s" % (">" if i == at else " ", i + 1, lines[i]))
    if at >= len(lines):
        out.append("      > (end of the file, %d lines)" % len(lines))
    return out


def match_fixes(fx, lines):
    """Searches FX's CHECK-FIXES patterns in LINES (the fixed file), in order.
    Returns (number found, failure or None)."""
    start = 0          # the search starts at this line (0-based)
    prev = None        # (fixed line index, CHECK-FIXES directive line) matched last
    for k, (dline, text, pattern) in enumerate(fx.fixes):
        for i in range(start, len(lines)):
            target = fix_target(lines[i])
            if target is not None and pattern.search(target):
                prev = (i, dline)
                start = i + 1
                break
        else:
            where = ("after line %d of the fixed file (matched by the CHECK-FIXES on line %d): %s"
                     % (prev[0] + 1, prev[1], fix_target(lines[prev[0]]))) if prev else "anywhere in the fixed file"
            msg = ["CHECK-FIXES on line %d not found in the fixed file: %s" % (dline, text),
                   "      pattern: %s" % pattern.pattern,
                   "      expected " + where,
                   "      the fixed file where the search started (line %d):" % (start + 1)]
            msg += context_lines(lines, start)
            rest = len(fx.fixes) - k - 1
            if rest:
                msg.append("      (%d later CHECK-FIXES not searched)" % rest)
            return k, "\n".join(msg)
    return len(fx.fixes), None


def check_fix_its(opts, fx):
    """Runs clang-tidy --fix on a copy of the fixture and checks the fixed
    copy. Returns (failures, informational lines, diff lines)."""
    failures, info, diff = [], [], []
    tmp = tempfile.mkdtemp(prefix="coport-tidy-fix-")
    try:
        copy = os.path.join(tmp, os.path.basename(fx.path))
        shutil.copyfile(fx.path, copy)
        rc, out, err = run_clang_tidy(opts, fx, copy, ["--fix"])
        if opts.verbose:
            print(out, end="")
            print(err, end="", file=sys.stdout)
        _, _, errors = parse_diagnostics(out, err, copy)
        bad = status_failure("clang-tidy --fix", rc, err)
        if bad:
            failures.append(bad)
        for e in errors:
            failures.append("clang-tidy --fix reported an error: " + e)
        applied = re.search(r"applied (\d+) of (\d+) suggested fix", out + err)
        if "Fixes have NOT been applied" in out + err:
            failures.append("clang-tidy did not apply the fixes (compiler errors)")
        if failures:
            return failures, info, diff

        with open(fx.path, encoding="utf-8") as f:
            original = f.read().splitlines()
        with open(copy, encoding="utf-8", errors="replace") as f:
            fixed = f.read().splitlines()
        diff = list(difflib.unified_diff(original, fixed, fx.path, "%s (fixed)" % fx.path, lineterm=""))
        info.append("fix-its: %d lines of the fixture changed%s" % (
            sum(1 for d in diff if d.startswith("-") and not d.startswith("---")),
            " (clang-tidy applied %s of %s suggested fixes)" % applied.groups() if applied else ""))

        found, miss = match_fixes(fx, fixed)
        if fx.fixes:
            info.append("fix-its: %d of %d CHECK-FIXES found in order" % (found, len(fx.fixes)))
        if miss:
            failures.append(miss)

        # The fixed copy must compile; what the checks still report there.
        rc, out, err = run_clang_tidy(opts, fx, copy)
        if opts.verbose:
            print(out, end="")
            print(err, end="", file=sys.stdout)
        warnings, _, errors = parse_diagnostics(out, err, copy)
        if errors:
            msg = ["the fixed copy does not compile:"]
            for e in errors:
                msg.append("      " + e)
                m = DIAG_RE.match(e)
                if m and same_file(m.group("file"), copy) and 0 < int(m.group("line")) <= len(fixed):
                    msg.append("      %5s | %s" % (m.group("line"), fixed[int(m.group("line")) - 1]))
            failures.append("\n".join(msg))
        bad = status_failure("clang-tidy on the fixed copy", rc, err)
        if bad and not (errors and rc == 1):
            failures.append(bad)
        coport = [w for w in warnings if (w.check or "").startswith("coport-")]
        info.append("fix-its: %d coport warnings remain in the fixed copy" % len(coport))
        for w in coport:
            info.append("  remains: %s" % w)
        if fx.fixed_clean:
            left = [w for w in coport if w.check == FIBER_CHECK]
            if left:
                failures.append("CHECK-FIXED-CLEAN, but %d %s warnings remain in the fixed copy:\n%s" % (
                    len(left), FIBER_CHECK, "\n".join("      %s" % w for w in left)))
        return failures, info, diff
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_fixture(opts, path):
    """Returns True when the fixture's expectations hold."""
    name = os.path.basename(path)
    try:
        fx = Fixture(path)
        config = fx.config_text()
    except (OSError, ValueError) as err:
        print("%s: cannot read the fixture: %s" % (name, err))
        return False
    failures = ["malformed directive: " + p for p in fx.problems]
    if opts.verbose:
        print("--config=" + config)
    rc, out, err = run_clang_tidy(opts, fx)
    if opts.verbose:
        print(out, end="")
        print(err, end="", file=sys.stdout)

    found_warnings, found_notes, errors = parse_diagnostics(out, err, fx.path)

    bad = status_failure("clang-tidy", rc, err)
    if bad:
        failures.append(bad)
    for e in errors:
        failures.append("clang-tidy reported an error: " + e)

    expected = [e for e in fx.expected if e.kind == "warning"]
    found = list(found_warnings)
    if fx.has_notes:
        expected += [e for e in fx.expected if e.kind == "note"]
        found += found_notes

    # One found diagnostic per expectation; the most specific (longest
    # TEXT) expectations first, so that a short TEXT does not take the
    # diagnostic a longer one needs.
    unmatched = list(found)
    missing = []
    for e in sorted(expected, key=lambda e: -len(e.text)):
        for d in unmatched:
            if e.matches(d):
                unmatched.remove(d)
                break
        else:
            missing.append(e)
    missing.sort(key=lambda e: (e.line, e.col))

    known_lines = {line: reason for line, reason in fx.known_misses}
    diagnosed_misses = [d for d in found_warnings if d.line in known_lines]
    false_positives = [d for d in unmatched if d not in diagnosed_misses]

    for d in false_positives:
        near = [e for e in missing if e.line == d.line and e.kind == d.kind]
        hint = ("  (expected here: %s)" % "; ".join(str(e) for e in near)) if near else ""
        failures.append("false positive (unexpected %s): %s%s" % (d.kind, d, hint))
    for e in missing:
        failures.append("false negative (expected %s not reported): %s" % (e.kind, e))
    for d in diagnosed_misses:
        failures.append("known miss on line %d is now diagnosed (update the fixture): %s" % (d.line, d))

    fix_info, diff = [], []
    if fx.wants_fix_run():
        if rc != 0 or errors:
            failures.append("fix-its not checked: the run on the fixture itself failed")
        else:
            fix_failures, fix_info, diff = check_fix_its(opts, fx)
            failures += fix_failures

    print("%s: %d expected, %d found, %d false positives, %d false negatives, %d known misses"
          % (name, len(expected), len(found), len(false_positives), len(missing), len(fx.known_misses)))
    for line, reason in fx.known_misses:
        print("  known miss, line %d: %s" % (line, reason))
    for i in fix_info:
        print("  " + i)
    for f in failures:
        print("  FAIL " + f)
    if failures and not opts.verbose and (rc != 0 or errors):
        tail = (out + err).strip().splitlines()[-30:]
        print("  clang-tidy's output (last lines):")
        for t in tail:
            print("    " + t)
    if diff and (failures or opts.verbose):
        print("  the fix-its, original -> fixed:")
        for d in diff:
            print("    " + d)
    return not failures


# --------------------------------------------------------------------------
# Self-test: the runner must fail on a missing, an unexpected, a misplaced
# diagnostic, a diagnosed known miss, a compile error and a crash, and pass
# on a fixture whose expectations hold; with CHECK-FIXES, fail on a fix that
# is missing, not applied, out of order or does not compile, and on a
# warning left despite CHECK-FIXED-CLEAN. Part one drives the runner with a
# stand-in clang-tidy that prints a fixed output (or, in the fix-* modes,
# warns on each `NAME.lock();` and with --fix rewrites the file it is given
# as a fix-it would); part two (when the real clang-tidy and plugin are
# given) with the real ones on a small fixture that needs no Boost.

FAKE_TIDY = r'''#!/usr/bin/env python3
import os, re, sys
fixture = [a for a in sys.argv[1:] if a.endswith(".cpp")][0]
mode = os.environ["FAKE_TIDY_MODE"]
w = "%s:{}:{}: warning: {} [coport-fiber-blocking-in-coroutine]" % fixture
n = "%s:{}:{}: note: {}" % fixture
if os.environ.get("FAKE_TIDY_LOG"):
    with open(os.environ["FAKE_TIDY_LOG"], "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\n")
if mode.startswith("fix"):
    with open(fixture) as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines, start=1):
        code = line.split("//")[0]
        if "BROKEN" in code:
            print("%s:%d:1: error: expected ';' after expression [clang-diagnostic-error]" % (fixture, i))
            sys.exit(1)
        m = re.search(r"\b\w+\.lock\(\);", code)
        if m:
            print(w.format(i, m.start() + 1, "coroutine 'f' calls fiber-blocking 'boost::fibers::mutex::lock'"))
    if "--fix" in sys.argv:
        # fix: every NAME.lock(); fix-partial: the first one only;
        # fix-broken: a fix that does not compile; fix-none: no fix-its.
        to = {"fix": r"co_await \1.scoped_lock();", "fix-partial": r"co_await \1.scoped_lock();",
              "fix-broken": r"co_await \1.scoped_lock() BROKEN;", "fix-none": None}[mode]
        applied = 0
        for i, line in enumerate(lines):
            code, sep, comment = line.partition("//")
            if to and not (mode == "fix-partial" and applied):
                code, k = re.subn(r"\b(\w+)\.lock\(\);", to, code)
                applied += k
            lines[i] = code + sep + comment
        with open(fixture, "w") as f:
            f.write("\n".join(lines))
        if applied:
            sys.stderr.write("clang-tidy applied %d of %d suggested fixes.\n" % (applied, applied))
    sys.exit(0)
print(w.format(4, 5, "coroutine 'f' calls fiber-blocking 'boost::fibers::mutex::lock'; co_await m.scoped_lock()"))
print(w.format(8, 3, "coroutine 'g' calls 'h', which blocks fibers: h -> boost::fibers::mutex::lock"))
print(n.format(2, 3, "'h' calls fiber-blocking 'boost::fibers::mutex::lock' here"))
print("/usr/include/some/header.hpp:1:1: warning: elsewhere [coport-fiber-blocking-in-coroutine]")
if mode == "extra":
    print(w.format(6, 7, "coroutine 'k' calls fiber-blocking 'boost::this_fiber::yield'"))
if mode == "error":
    print("%s:11:1: error: unknown type name 'foo' [clang-diagnostic-error]" % fixture)
    sys.exit(1)
if mode == "crash":
    sys.stderr.write("PLEASE submit a bug report\nStack dump:\n")
    os.kill(os.getpid(), 11)
if mode == "status":
    sys.exit(3)
'''

FAKE_FIXTURE = """void h() {
  m.lock();
  // CHECK-NOTES: :[[@LINE-1]]:3: note: 'h' calls fiber-blocking 'boost::fibers::mutex::lock' here
  co_await x; m.lock();
  // CHECK-MESSAGES: :[[@LINE-1]]:{col}: warning: calls fiber-blocking 'boost::fibers::mutex::lock' [{check}]


  h();
  // CHECK-MESSAGES: :[[@LINE-1]]:3: warning: coroutine 'g' calls 'h', which blocks fibers: h -> {{.*}}::lock [coport-fiber-blocking-in-coroutine]
  int k = 0;  // {known}
"""

# For the fix-* modes: {fix_a}, {fix_b} and {end} are directive lines.
FIX_FIXTURE = """task f() {
  a.lock();
  // CHECK-MESSAGES: :[[@LINE-1]]:3: warning: calls fiber-blocking 'boost::fibers::mutex::lock' [coport-fiber-blocking-in-coroutine]
  {fix_a}
  b.lock();  // CHECK-MESSAGES: :[[@LINE]]:3: warning: calls fiber-blocking 'boost::fibers::mutex::lock' [coport-fiber-blocking-in-coroutine]
  {fix_b}
  {end}
}
"""
FIX_A = "// CHECK-FIXES: {{^}}co_await a.scoped_lock();{{$}}"
FIX_B = "// CHECK-FIXES: co_await {{b}}.scoped_lock();"

# A fixture for the real checks: a minimal coroutine type and the markers.
LIVE_FIXTURE = """#include <coport/bridge/blocking.hpp>
#include <coroutine>
struct task {{
  struct promise_type {{
    task get_return_object() {{ return {{}}; }}
    std::suspend_never initial_suspend() noexcept {{ return {{}}; }}
    std::suspend_never final_suspend() noexcept {{ return {{}}; }}
    void return_void() {{}}
    void unhandled_exception() {{}}
  }};
}};
COPORT_FIBER_BLOCKING void flush_all();
void helper() {{ flush_all(); }}
void plain() {{ flush_all(); }}
task step() {{
  flush_all();
  {first}
  helper();
  {second}
  co_return;
}}
"""
LIVE_FIRST = "// CHECK-MESSAGES: :[[@LINE-1]]:%d: warning: coroutine 'step' calls fiber-blocking 'flush_all' [coport-fiber-blocking-in-coroutine]"
LIVE_SECOND = "// CHECK-MESSAGES: :[[@LINE-1]]:3: warning: coroutine 'step' calls 'helper', which blocks fibers: helper -> flush_all [coport-fiber-blocking-in-coroutine]"
# Lines no fix-it touches (plain() is no coroutine; co_return stays), found in
# order in the fixed copy; the call of helper() has no fix and stays diagnosed.
LIVE_FIX_PLAIN = "// CHECK-FIXES: {{^}}void plain() { flush_all(); }{{$}}"
LIVE_FIX_RETURN = "// CHECK-FIXES: {{^}}co_return;"


def self_test(opts):
    me = os.path.abspath(__file__)
    ok = True

    def run(args, env=None):
        p = subprocess.run([sys.executable, me] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env)
        return p.returncode, p.stdout

    def expect(label, want_rc, args, env=None, must_say=None, after=None):
        """AFTER, when given, is called after the run and returns what is
        wrong (or None)."""
        nonlocal ok
        rc, out = run(args, env)
        says = [must_say] if isinstance(must_say, str) else list(must_say or [])
        wrong = after() if after else None
        good = rc == want_rc and all(s in out for s in says) and not wrong
        print("self-test %-56s %s (exit %d, wanted %d%s)%s" % (
            label, "ok" if good else "FAILED", rc, want_rc,
            ", saying %s" % " and ".join(repr(s) for s in says) if says else "",
            ": " + wrong if wrong else ""))
        if not good or opts.verbose:
            print("    " + out.replace("\n", "\n    "))
        ok = ok and good

    with tempfile.TemporaryDirectory(prefix="coport-tidy-selftest-") as tmp:
        fake = os.path.join(tmp, "fake-clang-tidy")
        with open(fake, "w") as f:
            f.write(FAKE_TIDY)
        os.chmod(fake, 0o755)
        examples = fiber_asio_example_dir(opts.fiber_examples)

        def fixture(fname, col=5, check="coport-fiber-blocking-in-coroutine", known="KNOWN-MISS: a reason",
                    text=FAKE_FIXTURE):
            path = os.path.join(tmp, fname)
            with open(path, "w") as f:
                f.write(text.replace("{col}", str(col)).replace("{check}", check).replace("{known}", known))
            return path

        log = os.path.join(tmp, "fake-clang-tidy.log")

        def fake_run(mode, path):
            env = dict(os.environ, FAKE_TIDY_MODE=mode, FAKE_TIDY_LOG=log)
            if os.path.exists(log):
                os.remove(log)
            return (["--clang-tidy", fake, "--plugin", "/nonexistent.so", "--source-dir", tmp,
                     "--fiber-examples", examples, path], env)

        def runs(want, path=None, text=None):
            """Checks the stand-in ran WANT times and PATH still holds TEXT."""
            def check():
                with open(log) as f:
                    n = len(f.read().splitlines())
                if n != want:
                    return "clang-tidy ran %d times, wanted %d" % (n, want)
                if path:
                    with open(path) as f:
                        if f.read() != text:
                            return "the fixture itself was changed"
                return None
            return check

        good = fixture("good.cpp")
        expect("fake: expectations hold", 0, *fake_run("plain", good), must_say="0 false positives")
        expect("fake: unexpected warning", 1, *fake_run("extra", good), must_say="false positive")
        expect("fake: wrong column (missing + unexpected)", 1,
               *fake_run("plain", fixture("col.cpp", col=6)), must_say="false negative")
        expect("fake: wrong check name", 1,
               *fake_run("plain", fixture("check.cpp", check="coport-blocking-on-loop")), must_say="false negative")
        no_note = FAKE_FIXTURE.replace("// CHECK-NOTES: :[[@LINE-1]]:3: note:", "// (no notes here)")
        expect("fake: notes ignored without CHECK-NOTES", 0,
               *fake_run("plain", fixture("nonotes.cpp", text=no_note)))
        wrong_note = FAKE_FIXTURE.replace("calls fiber-blocking 'boost::fibers::mutex::lock' here",
                                          "calls fiber-blocking 'boost::fibers::timed_mutex::lock' here")
        expect("fake: wrong note", 1, *fake_run("plain", fixture("note.cpp", text=wrong_note)),
               must_say="false negative (expected note")
        moved = FAKE_FIXTURE.replace("co_await x; m.lock();", "co_await x; m.lock();  // KNOWN-MISS: stale")
        expect("fake: diagnosed known miss", 1, *fake_run("plain", fixture("known.cpp", text=moved)),
               must_say="is now diagnosed")
        expect("fake: malformed directive", 1,
               *fake_run("plain", fixture("bad.cpp", known="KNOWN-MISS")), must_say="malformed")
        expect("fake: compile error", 1, *fake_run("error", good), must_say="reported an error")
        expect("fake: crash", 1, *fake_run("crash", good), must_say="crash")
        expect("fake: exit status", 1, *fake_run("status", good), must_say="status 3")
        expect("fake: no CHECK-FIXES, one clang-tidy run", 0, *fake_run("plain", good), after=runs(1))

        def fix_fixture(fname, fix_a=FIX_A, fix_b=FIX_B, end=""):
            text = FIX_FIXTURE.replace("{fix_a}", fix_a).replace("{fix_b}", fix_b).replace("{end}", end)
            return fixture(fname, text=text), text

        path, text = fix_fixture("fix_good.cpp")
        expect("fake fixes: found in order", 0, *fake_run("fix", path),
               must_say=["2 expected, 2 found, 0 false positives", "2 of 2 CHECK-FIXES found in order",
                         "0 coport warnings remain"],
               after=runs(3, path, text))
        expect("fake fixes: not applied (no CHECK-FIXES matches itself)", 1, *fake_run("fix-none", path),
               must_say=["CHECK-FIXES on line 4 not found", "anywhere in the fixed file", ">    1 | task f() {"])
        path, text = fix_fixture("fix_missing.cpp",
                                 fix_b="// CHECK-FIXES: co_await b.scoped_lock(boost::asio::use_awaitable);")
        expect("fake fixes: pattern missing", 1, *fake_run("fix", path),
               must_say=["CHECK-FIXES on line 6 not found", "after line 2 of the fixed file",
                         ">    3 |", "+  co_await a.scoped_lock();"])
        path, text = fix_fixture("fix_order.cpp", fix_a="", fix_b=FIX_B + "\n  " + FIX_A)
        expect("fake fixes: out of order", 1, *fake_run("fix", path),
               must_say=["CHECK-FIXES on line 7 not found", "after line 5 of the fixed file"])
        path, text = fix_fixture("fix_broken.cpp", fix_a="// CHECK-FIXES: co_await a.scoped_lock()",
                                 fix_b="// CHECK-FIXES: co_await b.scoped_lock()")
        expect("fake fixes: fixed copy does not compile", 1, *fake_run("fix-broken", path),
               must_say=["2 of 2 CHECK-FIXES found", "the fixed copy does not compile",
                         "co_await a.scoped_lock() BROKEN;"])
        path, text = fix_fixture("fix_clean.cpp", end="// CHECK-FIXED-CLEAN")
        expect("fake fixes: CHECK-FIXED-CLEAN, all fixed", 0, *fake_run("fix", path),
               must_say="0 coport warnings remain")
        path, text = fix_fixture("fix_unclean.cpp", fix_b="", end="// CHECK-FIXED-CLEAN")
        expect("fake fixes: CHECK-FIXED-CLEAN, a warning left", 1, *fake_run("fix-partial", path),
               must_say=["1 of 1 CHECK-FIXES found", "CHECK-FIXED-CLEAN, but 1"])

        if opts.clang_tidy and opts.plugin and opts.source_dir:
            base = ["--clang-tidy", opts.clang_tidy, "--plugin", opts.plugin, "--source-dir", opts.source_dir,
                    "--fiber-examples", examples]

            def live(fname, first, second):
                path = os.path.join(tmp, fname)
                with open(path, "w") as f:
                    f.write(LIVE_FIXTURE.format(first=first, second=second))
                return base + [path]

            expect("live: expectations hold", 0, live("live_good.cpp", LIVE_FIRST % 3, LIVE_SECOND),
                   must_say="2 expected, 2 found, 0 false positives, 0 false negatives")
            expect("live: missing expectation (false positive)", 1, live("live_fp.cpp", LIVE_FIRST % 3, ""),
                   must_say="1 false positives")
            expect("live: wrong column (false negative)", 1, live("live_fn.cpp", LIVE_FIRST % 4, LIVE_SECOND),
                   must_say="1 false negatives")
            fixes = "\n  ".join([LIVE_SECOND, LIVE_FIX_PLAIN, LIVE_FIX_RETURN])
            expect("live fixes: found in order, the fixed copy compiles", 0,
                   live("live_fix.cpp", LIVE_FIRST % 3, fixes),
                   must_say=["2 of 2 CHECK-FIXES found in order", "remains: ",
                             "'helper', which blocks fibers"])
            fixes = "\n  ".join([LIVE_SECOND, LIVE_FIX_RETURN, LIVE_FIX_PLAIN])
            expect("live fixes: out of order", 1, live("live_fix_order.cpp", LIVE_FIRST % 3, fixes),
                   must_say="1 of 2 CHECK-FIXES found")
            fixes = "\n  ".join([LIVE_SECOND, "// CHECK-FIXED-CLEAN"])
            expect("live fixes: CHECK-FIXED-CLEAN, a warning left", 1,
                   live("live_fix_clean.cpp", LIVE_FIRST % 3, fixes), must_say="CHECK-FIXED-CLEAN, but")
        else:
            print("self-test: live part skipped (no --clang-tidy/--plugin/--source-dir)")
    print("self-test: %s" % ("passed" if ok else "FAILED"))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clang-tidy")
    ap.add_argument("--plugin")
    ap.add_argument("--source-dir")
    ap.add_argument("--fiber-examples", help="the directory of Boost.Fiber's yield.hpp and round_robin.hpp")
    ap.add_argument("--timeout", type=int, default=110)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("fixtures", nargs="*")
    opts = ap.parse_args()
    if opts.self_test:
        return 0 if self_test(opts) else 1
    if not (opts.clang_tidy and opts.plugin and opts.source_dir and opts.fixtures):
        ap.error("--clang-tidy, --plugin, --source-dir and at least one fixture are required")
    results = [check_fixture(opts, f) for f in opts.fixtures]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""coport-port: writes the C++20 coroutine form of Boost.Fiber functions next to them.

    coport-port -p BUILD_DIR --function NAME... [--point NAME]...
                [--coroutine-form LEGACY=COROUTINE]...
                [--in-place | --diff FILE | --output-dir DIR]
                [--json FILE] [--jobs N] [--fiber-blocking REGEX]... [--program-facts FILE]
                [--clang-tidy EXE] [--plugin SO] [--extra-arg ARG]... FILE...
    coport-port [same options, no -p] FILE... -- COMPILER ARGS

It runs the clang-tidy check coport-port (the coport-* module,
libcoport_tidy.so) alone on each FILE, a translation unit of
BUILD_DIR/compile_commands.json, or, after `--`, any file compiled with
COMPILER ARGS as clang-tidy takes them (`-std=c++20 -I include ...`). For
each legacy function named by --function (qualified, `kv::incr_fiber`, or
not, `incr_fiber`, which matches any qualified name ending in
`::incr_fiber`) the check writes its coroutine form right after it and
registers the two forms as a migration point where the program has one;
calls of a function given with --coroutine-form LEGACY=COROUTINE (its
coroutine form exists already) become `co_await COROUTINE(...)`. For
each --point NAME, a migration point (`migration::point` made with
`.legacy = [..]{..}`) or an RPC method (`endpoint::add("NAME", ..., [..]{..})`)
whose legacy form is a lambda, the lambda's coroutine form becomes the
point's ported form.

The fixes of every unit are merged (the same fix from several units, for a
function in a header, counts once) and given as a unified diff on stdout,
paths relative to the current directory, so that

    coport-port -p build --function kv::incr_fiber src/kv.cpp | git apply

applies them; --diff FILE writes the diff to FILE, --in-place edits the
files instead, and --output-dir DIR writes each FILE and each changed
file to DIR under its own name, leaving the sources as they are (a build
can compile the ported copy). On stderr, one line per function and per
migration point,
`FILE:LINE: ported 'F' as 'G'`, `... not ported 'F': REASON`, and so on,
then the totals; --json FILE writes them as coport-port/1.

Exit status: 0 when it ran (a function "not ported" is a result, with its
reason); 1 when a requested function was not found in any FILE (what was
found is written all the same); 2 on bad usage, when a FILE does not
compile or clang-tidy fails, and when two units' fixes conflict (then
nothing is written).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# What the drivers of the coport-* module share: tools/tidy/ in the source
# tree, <prefix>/lib*/coport/ (beside the module) once installed.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [os.path.join(_HERE, "..", "tidy")] + sorted(
    glob.glob(os.path.join(_HERE, "..", "lib*", "coport")) + glob.glob(os.path.join(_HERE, "..", "lib*", "*", "coport")))
from coport_tidy_run import UsageError, check_programs, entry_file, for_clang, load_compile_commands  # noqa: E402

try:
    import yaml
except ImportError:  # reported when first needed: --help works without it
    yaml = None

CHECK = "coport-port"
REPORT_FORMAT = "coport-port/1"
DIAG_RE = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+):\s*(?P<kind>warning|note|error|fatal error):\s*"
    r"(?P<msg>.*?)(?:\s\[(?P<check>[A-Za-z0-9_.,-]+)\])?\s*$")
# The check's messages (tools/tidy/SPEC.md), most specific first.
PORTED_IN_FIBER_RE = re.compile(
    r"^ported '(?P<f>.+?)' as '(?P<g>.+?)', with (?P<n>\d+) call\(s\) left in run_in_fiber: (?P<left>.*)$")
PORTED_RE = re.compile(r"^ported '(?P<f>.+?)' as '(?P<g>.+)'$")
NOT_PORTED_RE = re.compile(r"^not ported '(?P<f>.+?)': (?P<reason>.*)$")
REGISTERED_RE = re.compile(r"^registered '(?P<g>.+?)' as the ported form of migration point '(?P<p>.+)'$")
NOT_REGISTERED_RE = re.compile(r"^not registered '(?P<g>.+?)' with migration point '(?P<p>.+?)': (?P<reason>.*)$")
CRASH_MARKS = ("Stack dump", "PLEASE submit a bug report", "LLVM ERROR")


class Failure(Exception):
    """A unit that does not compile, clang-tidy failing, conflicting fixes: exit status 2."""


# ---------------------------------------------------------------- input


def display(path: str) -> str:
    """PATH relative to the current directory when under it, else absolute."""
    real, cwd = os.path.realpath(path), os.path.realpath(os.getcwd())
    if real == cwd or real.startswith(cwd.rstrip("/") + "/"):
        return os.path.relpath(real, cwd)
    return os.path.abspath(path)


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def split_names(text: str) -> list[str]:
    """`a, b<int, char>, c` -> [a, b<int, char>, c]: commas inside <>, () and [] are kept."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "<([":
            depth += 1
        elif ch in ">)]" and depth:
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def name_matches(reported: str, requested: str) -> bool:
    """Whether the check's qualified name REPORTED is the function the user named."""
    r = reported[2:] if reported.startswith("::") else reported
    q = requested[2:] if requested.startswith("::") else requested
    bare = re.sub(r"\(.*\)$", "", r)  # a parameter list, if the check prints one
    return any(x == q or x.endswith("::" + q) for x in (r, bare))


# ---------------------------------------------------------------- running


def check_config(args) -> str:
    """--config for clang-tidy: JSON, which is YAML, so any text is quoted safely."""
    options = {f"{CHECK}.Functions": ";".join(args.function)}
    if args.point:
        options[f"{CHECK}.Points"] = ";".join(args.point)
    if args.coroutine_form:
        options[f"{CHECK}.CoroutineForms"] = ";".join(args.coroutine_form)
    if args.fiber_blocking:
        options[f"{CHECK}.FiberBlockingFunctions"] = ";".join(args.fiber_blocking)
    if args.program_facts:
        options[f"{CHECK}.ProgramFacts"] = os.path.abspath(args.program_facts)
    return json.dumps({"Checks": f"-*,{CHECK}", "CheckOptions": options}, ensure_ascii=False)


def require_check(args):
    """The plugin must have the check: otherwise clang-tidy says only "no checks enabled"."""
    cmd = [args.clang_tidy, f"--load={args.plugin}", f"--checks=-*,{CHECK}", "--list-checks"]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as e:
        raise UsageError(f"cannot run {args.clang_tidy}: {e}") from None
    if not re.search(rf"^\s*{re.escape(CHECK)}\s*$", p.stdout, re.M):
        raise Failure(f"clang-tidy: unknown check {CHECK}: {args.plugin} does not provide it "
                      f"(clang-tidy --list-checks found no {CHECK})\n{tail(p.stdout, 6)}")


def run_unit(args, config: str, path: str, fixes_file: str) -> dict:
    cmd = [args.clang_tidy, f"--load={args.plugin}", f"--checks=-*,{CHECK}", f"--config={config}",
           "--quiet", "--header-filter=.*", f"--export-fixes={fixes_file}",
           "--extra-arg=-Wno-unknown-warning-option"]
    cmd += [f"--extra-arg={a}" for a in args.extra_arg]
    if args.compiler_args is None:
        cmd += ["-p", args.database_dir, path]
    else:
        cmd += [path, "--"] + args.compiler_args
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
        status, out, err = p.returncode, p.stdout, p.stderr
    except OSError as e:
        status, out, err = -1, "", f"cannot run {args.clang_tidy}: {e}"
    return {"path": path, "status": status, "stdout": out, "stderr": err, "fixes_file": fixes_file}


def unit_problem(unit: dict) -> str | None:
    """Why a unit's run does not count (a compile error, a crash, a failure), or None."""
    out, err = unit["stdout"], unit["stderr"]
    errors = []
    for line in (out + "\n" + err).splitlines():
        m = DIAG_RE.match(line)
        if (m and m.group("kind") in ("error", "fatal error")) or any(mark in line for mark in CRASH_MARKS):
            errors.append(line)
    if unit["status"] == 0 and not errors:
        return None
    if unit["status"] < 0:
        what = f"clang-tidy crashed (signal {-unit['status']})" if unit["status"] != -1 else "clang-tidy did not run"
    elif errors:
        what = "it does not compile" if any(": error: " in e or "fatal error:" in e for e in errors) \
            else "clang-tidy failed"
    else:
        what = f"clang-tidy exited with status {unit['status']}"
    return f"{display(unit['path'])}: {what}; clang-tidy's output (last lines):\n" + \
        "\n".join("  " + line for line in tail("\n".join(x for x in (out + "\n" + err).splitlines() if x.strip()))
                   .splitlines())


def read_fixes(unit: dict) -> list[dict]:
    """The check's diagnostics in the unit's --export-fixes file (none when it wrote no file)."""
    path = unit["fixes_file"]
    if not os.path.exists(path):
        return []
    if yaml is None:
        raise UsageError("Python's yaml module is missing (Debian: apt-get install python3-yaml)")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as e:
        raise Failure(f"{display(unit['path'])}: clang-tidy's fixes ({path}) are unreadable: {e}") from None
    out = []
    for d in (data or {}).get("Diagnostics") or []:
        if d.get("DiagnosticName") != CHECK:
            continue
        msg = d.get("DiagnosticMessage") or {}
        base = d.get("BuildDirectory") or os.path.dirname(unit["path"])
        reps = []
        for r in msg.get("Replacements") or []:
            fp = r.get("FilePath") or ""
            if not fp:
                continue
            if not os.path.isabs(fp):
                fp = os.path.join(base, fp)
            reps.append({"path": os.path.realpath(fp), "offset": int(r.get("Offset", 0)),
                         "length": int(r.get("Length", 0)), "text": str(r.get("ReplacementText") or "")})
        out.append({"message": str(msg.get("Message", "")), "unit": unit["path"], "replacements": reps})
    return out


# ---------------------------------------------------------------- merging


def overlap(a: dict, b: dict) -> bool:
    if a["length"] == 0 and b["length"] == 0:
        return a["offset"] == b["offset"]
    if a["length"] == 0:
        return b["offset"] < a["offset"] < b["offset"] + b["length"]
    if b["length"] == 0:
        return a["offset"] < b["offset"] < a["offset"] + a["length"]
    return a["offset"] < b["offset"] + b["length"] and b["offset"] < a["offset"] + a["length"]


def what(r: dict) -> str:
    """A replacement, for a conflict's report."""
    kind = f"the insertion at byte {r['offset']}" if r["length"] == 0 else \
        f"the replacement of bytes {r['offset']}-{r['offset'] + r['length']}"
    return f"{kind} of \"{r['message']}\" (from {display(r['unit'])})"


def merge_fixes(diagnostics: list[dict]) -> dict[str, list[dict]]:
    """Replacements by file; identical ones once. Raises Failure on a conflict."""
    seen: dict[tuple, dict] = {}
    for d in diagnostics:
        for r in d["replacements"]:
            seen.setdefault((r["path"], r["offset"], r["length"], r["text"]),
                            dict(r, message=d["message"], unit=d["unit"]))
    by_file: dict[str, list[dict]] = {}
    for r in seen.values():
        by_file.setdefault(r["path"], []).append(r)
    conflicts = []
    for path, reps in sorted(by_file.items()):
        reps.sort(key=lambda r: (r["offset"], r["length"], r["text"]))
        for i, a in enumerate(reps):
            for b in reps[i + 1:]:
                if b["offset"] > a["offset"] + a["length"]:
                    break
                if overlap(a, b):
                    conflicts.append(f"{display(path)}: {what(a)} conflicts with {what(b)}")
    if conflicts:
        raise Failure("conflicting fixes, nothing written:\n" + "\n".join("  " + c for c in conflicts))
    return by_file


def apply(path: str, reps: list[dict]) -> tuple[bytes, bytes]:
    """The file's bytes before and after its replacements (sorted, none overlapping)."""
    try:
        with open(path, "rb") as f:
            old = f.read()
    except OSError as e:
        raise Failure(f"{display(path)}: cannot read it to apply the fixes: {e}") from None
    out, pos = [], 0
    for r in reps:
        if r["offset"] < pos or r["offset"] + r["length"] > len(old):
            raise Failure(f"{display(path)}: a fix at byte {r['offset']} lies outside the file "
                          f"({len(old)} bytes): did it change while coport-port ran?")
        out.append(old[pos:r["offset"]])
        out.append(r["text"].encode("utf-8", "surrogateescape"))
        pos = r["offset"] + r["length"]
    out.append(old[pos:])
    return old, b"".join(out)


def lines_of(data: bytes) -> list[str]:
    text = data.decode("utf-8", "surrogateescape")
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def unified_diff(changes: list[tuple[str, bytes, bytes]]) -> bytes:
    out = []
    for path, old, new in changes:
        shown = display(path)
        for line in difflib.unified_diff(lines_of(old), lines_of(new), f"a/{shown}", f"b/{shown}", n=3):
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def write_atomically(path: str, data: bytes):
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------- results


def collect(units: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """The check's results, registrations and other messages, deduplicated by text."""
    seen = set()
    results, registrations, other = [], [], []
    for unit in units:
        for line in unit["stdout"].splitlines():
            m = DIAG_RE.match(line)
            if not m or m.group("kind") != "warning" or m.group("check") != CHECK:
                continue
            text = m.group("msg")
            if text in seen:
                continue
            seen.add(text)
            where = {"file": display(m.group("file")), "line": int(m.group("line"))}
            row = None
            if (x := PORTED_IN_FIBER_RE.match(text)):
                row = {"function": x["f"], "as": x["g"], "status": "ported_with_run_in_fiber",
                       "left_in_fiber": split_names(x["left"]), "reason": None}
            elif (x := PORTED_RE.match(text)):
                row = {"function": x["f"], "as": x["g"], "status": "ported", "left_in_fiber": [], "reason": None}
            elif (x := NOT_PORTED_RE.match(text)):
                row = {"function": x["f"], "as": None, "status": "not_ported", "left_in_fiber": [],
                       "reason": x["reason"]}
            if row is not None:
                results.append(dict(row, **where, text=text))
                continue
            if (x := REGISTERED_RE.match(text)):
                registrations.append({"point": x["p"], "function": x["g"], "registered": True, "reason": None,
                                      **where, "text": text})
            elif (x := NOT_REGISTERED_RE.match(text)):
                registrations.append({"point": x["p"], "function": x["g"], "registered": False,
                                      "reason": x["reason"], **where, "text": text})
            else:
                other.append(dict(where, text=text))

    def key(r):
        return (r["file"], r["line"], r["text"])
    return sorted(results, key=key), sorted(registrations, key=key), sorted(other, key=key)


def summary(results, registrations, other, missing, files) -> str:
    out = [f"coport-port: {r['file']}:{r['line']}: {r['text']}"
           for r in sorted(results + registrations + other, key=lambda r: (r["file"], r["line"], r["text"]))]
    count = {s: sum(1 for r in results if r["status"] == s)
             for s in ("ported", "ported_with_run_in_fiber", "not_ported")}
    out.append(f"coport-port: {count['ported']} ported fully, {count['ported_with_run_in_fiber']} ported with "
               f"run_in_fiber left, {count['not_ported']} not ported; "
               f"{sum(1 for r in registrations if r['registered'])} registered with migration points")
    shown = ", ".join(display(f) for f in files)
    out += [f"coport-port: '{name}' not found in {shown}" for name in missing]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main


def parse_args(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    compiler_args = None
    if "--" in argv:
        i = argv.index("--")
        argv, compiler_args = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="coport-port", description=__doc__.split("\n\n")[2],
                                usage=__doc__.split("\n\n")[1].strip("\n").replace("    coport-port", "coport-port", 1),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[3:]))
    p.add_argument("files", nargs="*", metavar="FILE", help="the source files to port in")
    p.add_argument("-p", dest="build_dir", help="the build tree (its compile_commands.json)")
    p.add_argument("--function", action="append", default=[], metavar="NAME",
                   help="a legacy (Boost.Fiber) function to port, qualified or not; repeatable")
    p.add_argument("--coroutine-form", action="append", default=[], metavar="LEGACY=COROUTINE",
                   help="LEGACY's coroutine form exists already as COROUTINE (qualified names): its calls "
                        "become co_await COROUTINE(...); repeatable")
    p.add_argument("--point", action="append", default=[], metavar="NAME",
                   help="a migration point (or RPC method) whose legacy form, a lambda, gets its coroutine form "
                        "as the point's ported form; repeatable")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--in-place", action="store_true", help="edit the files instead of printing a diff")
    out.add_argument("--diff", metavar="FILE", help="write the unified diff to FILE instead of stdout")
    out.add_argument("--output-dir", metavar="DIR",
                     help="write each FILE, and each other file that changes, to DIR under its own name, "
                          "leaving the sources as they are")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON (coport-port/1) to FILE")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="clang-tidy runs at a time")
    p.add_argument("--fiber-blocking", action="append", default=[], metavar="REGEX",
                   help="a function (its qualified name) that blocks fibers though nothing marks it; "
                        "repeatable (the check's option FiberBlockingFunctions)")
    p.add_argument("--program-facts", metavar="FILE",
                   help="coport-program-facts/1 from coport-inventory (the check's option ProgramFacts)")
    p.add_argument("--clang-tidy", default=shutil.which("clang-tidy-16") or "clang-tidy-16",
                   help="clang-tidy 16 (default: clang-tidy-16 on PATH)")
    p.add_argument("--plugin", help="libcoport_tidy.so (default: ../lib/coport/ next to this program)")
    p.add_argument("--extra-arg", action="append", default=[], metavar="ARG",
                   help="an argument appended to each compile command (clang-tidy's --extra-arg)")
    args = p.parse_args(argv)
    args.compiler_args = compiler_args
    if not args.function and not args.point:
        p.error("give at least one --function NAME or --point NAME")
    if not args.files:
        p.error("give the source files to run on (FILE...)")
    if args.build_dir is None and compiler_args is None:
        p.error("give -p BUILD_DIR (its compile_commands.json) or the compiler's arguments after --")
    if args.build_dir is not None and compiler_args is not None:
        p.error("give -p BUILD_DIR or the compiler's arguments after --, not both")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    for name in args.function:
        if not name.strip() or ";" in name:
            p.error(f"--function {name!r}: not a function name")
    for name in args.point:
        if not name.strip() or ";" in name:
            p.error(f"--point {name!r}: not a migration point's name")
    for form in args.coroutine_form:
        legacy, eq, coro = form.partition("=")
        if not eq or not legacy.strip() or not coro.strip() or ";" in form:
            p.error(f"--coroutine-form {form!r}: expected LEGACY=COROUTINE (two qualified names)")
    return args


def write_output_dir(directory: str, files: list[str], changes: list[tuple[str, bytes, bytes]]):
    """Each FILE and each changed file, as it is after porting, to DIRECTORY/<its name>."""
    out = {path: new for path, _, new in changes}
    for f in files:
        if f not in out:
            with open(f, "rb") as src:
                out[f] = src.read()
    names = {}
    for path in out:
        other = names.setdefault(os.path.basename(path), path)
        if other != path:
            raise UsageError(f"--output-dir: {display(other)} and {display(path)} have the same name")
    os.makedirs(directory, exist_ok=True)
    for path, data in out.items():
        target = os.path.join(directory, os.path.basename(path))
        if os.path.exists(target):
            with open(target, "rb") as f:
                if f.read() == data:
                    continue  # unchanged: its time stamp too, for the build
        write_atomically(target, data)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (UsageError, Failure) as e:
        print(f"coport-port: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    files = []
    for f in args.files:
        if not os.path.isfile(f):
            raise UsageError(f"{f}: no such file")
        files.append(os.path.abspath(f))
    files = list(dict.fromkeys(files))
    args.plugin = check_programs(args.plugin, args.clang_tidy)
    if args.program_facts and not os.path.isfile(args.program_facts):
        raise UsageError(f"{args.program_facts}: no such file (--program-facts)")
    if yaml is None:
        raise UsageError("Python's yaml module is missing (Debian: apt-get install python3-yaml)")

    work = tempfile.mkdtemp(prefix="coport-port-")
    try:
        if args.compiler_args is None:
            entries = load_compile_commands(args.build_dir, ", or give the compiler's arguments after --")
            real = {os.path.realpath(f) for f in files}
            mine = [for_clang(e) for e in entries if os.path.realpath(entry_file(e)) in real]
            have = {os.path.realpath(entry_file(e)) for e in mine}
            absent = [display(f) for f in files if os.path.realpath(f) not in have]
            if absent:
                raise UsageError(f"not a translation unit of {os.path.join(args.build_dir, 'compile_commands.json')}: "
                                 f"{', '.join(absent)} (give the sources that include it, or the compiler's "
                                 "arguments after --)")
            args.database_dir = os.path.join(work, "db")
            os.mkdir(args.database_dir)
            with open(os.path.join(args.database_dir, "compile_commands.json"), "w", encoding="utf-8") as f:
                json.dump(mine, f)
        require_check(args)
        config = check_config(args)
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(args.jobs, len(files))) as pool:
            units = list(pool.map(lambda i: run_unit(args, config, files[i], os.path.join(work, f"fixes-{i}.yaml")),
                                  range(len(files))))
        problems = [p for p in map(unit_problem, units) if p]
        if problems:
            raise Failure(f"{len(problems)} of {len(units)} file(s) failed, nothing written:\n" + "\n".join(problems))
        diagnostics = [d for unit in units for d in read_fixes(unit)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    by_file = merge_fixes(diagnostics)
    changes = []
    for path in sorted(by_file, key=display):
        old, new = apply(path, by_file[path])
        if old != new:
            changes.append((path, old, new))
    results, registrations, other = collect(units)
    missing = [n for n in args.function if not any(name_matches(r["function"], n) for r in results)]
    missing += [n for n in args.point if not any(r["function"] == n + " [legacy]" for r in results)]

    if args.in_place:
        for path, _, new in changes:
            write_atomically(path, new)
    elif args.output_dir:
        write_output_dir(args.output_dir, files, changes)
    else:
        diff = unified_diff(changes)
        if args.diff:
            with open(args.diff, "wb") as f:
                f.write(diff)
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(diff)
            sys.stdout.buffer.flush()
    if args.json:
        data = {"format": REPORT_FORMAT,
                "results": [{k: r[k] for k in ("function", "as", "status", "left_in_fiber", "reason", "file", "line")}
                            for r in results],
                "registrations": [{k: r[k] for k in ("point", "function", "registered", "reason", "file", "line")}
                                  for r in registrations],
                "files_changed": [display(path) for path, _, _ in changes]}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    sys.stderr.write(summary(results, registrations, other, missing, files))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

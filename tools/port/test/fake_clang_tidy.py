#!/usr/bin/env python3
"""Stands in for clang-tidy and the check coport-port in test_driver.py.

For each name of the option coport-port.Functions it looks for `void NAME(`
in the source and the headers it includes with quotes (same directory),
and "ports" it as the check would: a warning `ported 'fx::NAME' as
'fx::NAME_coroutine'` and, in the export-fixes file, an insertion of the
coroutine form right after the function's closing brace (the first line
that is `}`). Some names give the other results:

  blocked   not ported 'fx::blocked': REASON
  mixed     ported with 2 call(s) left in run_in_fiber
  pointed   also registered with migration point 'fx.pointed'
  unpointed also not registered with migration point 'fx.unpointed'

For each name P of the option coport-port.Points it looks for the point
made as `"P",` followed by `{.legacy = [..](..) { .. }}` (on one line) and
ports the lambda as the check would: warnings `ported 'P [legacy]' as
'P [ported]'` and `registered 'P [ported]' as the ported form of migration
point 'P'`, the latter with the insertion of `,\n .ported = LAMBDA` (the
legacy lambda with its `X_fiber(` calls made `X_coroutine(`, aligned under
`.legacy`) right after the legacy lambda. By the point's last part:

  blocked   not ported 'P [legacy]': REASON (no fix, no registration)
  mixed     ported with 1 call(s) left in run_in_fiber

A source named bad.cpp does not compile. FAKE_PORT_MODE=conflict makes the
inserted text depend on the unit (two units porting one header's function
then conflict); FAKE_PORT_MODE=crash crashes; FAKE_PORT_MODE=nocheck: the
plugin has no coport-port check. FAKE_PORT_LOG=FILE: each run appends its
parsed --config and arguments there as a JSON line.
"""
import json
import os
import re
import signal
import sys

import yaml

args = sys.argv[1:]
mode = os.environ.get("FAKE_PORT_MODE", "")
assert any(a.startswith("--load=") for a in args), args
assert "--checks=-*,coport-port" in args, args

if "--list-checks" in args:
    if mode == "nocheck":
        print("Error: no checks enabled.", file=sys.stderr)
        sys.exit(1)
    print("Enabled checks:\n    coport-port\n")
    sys.exit(0)

config = yaml.safe_load(next(a for a in args if a.startswith("--config="))[len("--config="):])
assert config["Checks"] == "-*,coport-port", config
options = config["CheckOptions"]
if os.environ.get("FAKE_PORT_LOG"):
    with open(os.environ["FAKE_PORT_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"options": options, "args": args}) + "\n")

fixes_file = next(a for a in args if a.startswith("--export-fixes="))[len("--export-fixes="):]
before = args[:args.index("--")] if "--" in args else args
source = os.path.abspath(before[-1])  # the driver puts the file last (before --)

if os.path.basename(source) == "bad.cpp":
    print(f"{source}:3:1: error: unknown type name 'flaot' [clang-diagnostic-error]")
    print("Found compiler error(s).", file=sys.stderr)
    sys.exit(1)
if mode == "crash":
    sys.stderr.write("PLEASE submit a bug report to https://github.com/llvm/llvm-project/issues/\nStack dump:\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSEGV)


def read(path):
    with open(path, "rb") as f:
        return f.read()


files = [source]
for inc in re.findall(rb'#include "([^"]+)"', read(source)):
    files.append(os.path.join(os.path.dirname(source), inc.decode()))

diagnostics = []


def emit(path, data, offset, messages):
    """The warnings at byte OFFSET of PATH, as clang-tidy prints and exports them."""
    line = data[:offset].count(b"\n") + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    for message, reps in messages:
        print(f"{path}:{line}:{column}: warning: {message} [coport-port]")
        print(data.decode().splitlines()[line - 1])
        print(" " * (column - 1) + "^")
        diagnostics.append({"DiagnosticName": "coport-port",
                            "DiagnosticMessage": {"Message": message, "FilePath": path,
                                                  "FileOffset": offset, "Replacements": reps},
                            "Level": "Warning", "BuildDirectory": os.getcwd()})


for name in [n for n in options["coport-port.Functions"].split(";") if n]:
    bare = name.split("::")[-1]
    for path in files:
        data = read(path)
        m = re.search(rb"(?m)^(?:inline )?void " + re.escape(bare.encode()) + rb"\(", data)
        if not m:
            continue
        end = data.index(b"\n}", m.end()) + 2
        qualified = "fx::" + bare
        form = qualified + "_coroutine"
        text = f"\n\n// The coroutine form of {qualified}, written by coport-port.\n" \
               f"boost::asio::awaitable<void> {bare}_coroutine() {{\n  co_return;\n}}"
        if mode == "conflict":
            text += f"  // from {os.path.basename(source)}"
        messages = []
        if bare == "blocked":
            messages.append((f"not ported '{qualified}': it calls 'fx::helper' through a function pointer", []))
        else:
            reps = [{"FilePath": path, "Offset": end, "Length": 0, "ReplacementText": text}]
            if bare == "mixed":
                messages.append((f"ported '{qualified}' as '{form}', with 2 call(s) left in run_in_fiber: "
                                 "fx::wait_for<int, char>, fx::drain", reps))
            else:
                messages.append((f"ported '{qualified}' as '{form}'", reps))
        if bare == "pointed":
            messages.append((f"registered '{form}' as the ported form of migration point 'fx.pointed'", []))
        if bare == "unpointed":
            messages.append((f"not registered '{form}' with migration point 'fx.unpointed': "
                             "the point has a ported form already", []))
        # the real check prints a function's results at its name (column 6 after `void `)
        emit(path, data, m.start() + data[m.start():m.end()].index(b"void ") + 5, messages)

for point in [n for n in options.get("coport-port.Points", "").split(";") if n]:
    last = point.split(".")[-1]
    for path in files:
        data = read(path)
        m = re.search(rb'"' + re.escape(point.encode()) + rb'",\s*\{(\.legacy = )(\[[^\n]*?\})\}', data)
        if not m:
            continue
        legacy, coro = f"{point} [legacy]", f"{point} [ported]"
        if last == "blocked":
            messages = [(f"not ported '{legacy}': it calls 'fx::helper' through a function pointer", [])]
        else:
            indent = m.start(1) - (data.rfind(b"\n", 0, m.start(1)) + 1)
            text = ",\n" + " " * indent + ".ported = " + m.group(2).decode().replace("_fiber(", "_coroutine(")
            reps = [{"FilePath": path, "Offset": m.end(2), "Length": 0, "ReplacementText": text}]
            left = ", with 1 call(s) left in run_in_fiber: fx::drain" if last == "mixed" else ""
            messages = [(f"ported '{legacy}' as '{coro}'{left}", []),
                        (f"registered '{coro}' as the ported form of migration point '{point}'", reps)]
        emit(path, data, m.start(1), messages)

if diagnostics:
    # clang-tidy's layout: a YAML document, strings quoted when they need it.
    with open(fixes_file, "w", encoding="utf-8") as f:
        f.write("---\n")
        yaml.safe_dump({"MainSourceFile": source, "Diagnostics": diagnostics}, f,
                       default_flow_style=False, sort_keys=False, width=1000)
        f.write("...\n")
    print(f"{len(diagnostics)} warnings generated.", file=sys.stderr)

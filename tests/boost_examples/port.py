#!/usr/bin/env python3
"""Moves a program written on Boost.Fiber's Asio example scheduler onto coport.

    port.py SOURCE DEST

The program's own shape stays: its includes of the example scheduler and
completion token become coport's bridge header, the line that installs the
scheduler makes a coport runtime over the same io_context, running that
io_context becomes running the runtime, and the `yield` completion token
becomes `coport::bridge::use_fiber`. Every rule must apply at least once (a
source of another shape fails here, not later at run time). Prints how many
lines changed.
"""
import difflib
import re
import sys

RULES = [
    # (pattern, replacement, what it moves)
    (re.compile(r'^#include "(\.\./)?round_robin\.hpp"$', re.M),
     '#include <coport/bridge/bridge.hpp>', "the scheduler's include"),
    (re.compile(r'^#include "(\.\./)?yield\.hpp"$', re.M),
     '#include <coport/bridge/bridge.hpp>', "the completion token's include"),
    (re.compile(r'boost::fibers::use_scheduling_algorithm< boost::fibers::asio::round_robin >\( (\w+)\);'),
     r'coport::bridge::runtime coport_runtime( \1);', "the scheduler"),
    (re.compile(r'\b(io_ctx|io_context)->run\(\);'),
     'coport_runtime.run();', "running the io_context"),
    (re.compile(r'boost::fibers::asio::yield\b'),
     'coport::bridge::use_fiber', "the completion token"),
]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, dest = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        original = f.read()
    ported = original
    for pattern, replacement, what in RULES:
        ported, n = pattern.subn(replacement, ported)
        if n == 0:
            print(f"port.py: {source}: nothing matched for {what}", file=sys.stderr)
            return 1
    changed = sum(1 for line in difflib.ndiff(original.splitlines(), ported.splitlines())
                  if line.startswith("- "))
    with open(dest, "w", encoding="utf-8") as f:
        f.write(ported)
    print(f"port.py: {source}: {changed} lines changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

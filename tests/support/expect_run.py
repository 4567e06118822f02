#!/usr/bin/env python3
"""Runs a command and checks its exit status and its output: what ctest's
PASS_REGULAR_EXPRESSION cannot do alone (with it, ctest ignores the exit
status, so a program that prints the expected text and then fails, or whose
sanitizer report at exit turns the status non-zero, would pass).

  expect_run.py [--exit N] [--output RE]... [--stdout RE]... [--stderr RE]...
                [--not-output RE]... [--ignore-sanitizer-reports] -- COMMAND [ARGS...]

  --exit N        the exit status required (default 0)
  --output RE     must match stdout and stderr together (as ctest matches)
  --stdout RE     must match stdout
  --stderr RE     must match stderr
  --not-output RE must match neither
  --ignore-sanitizer-reports
                  for checking this script itself, whose output quotes one

Patterns are Python regular expressions, searched with DOTALL ('.' crosses
lines), so a pattern written for PASS_REGULAR_EXPRESSION keeps its meaning.
Any sanitizer report in the output fails the run whatever the status.
Prints the command's output, then one line saying what failed; exits 0 when
every check holds, 1 otherwise.
"""
import argparse
import re
import subprocess
import sys

# The first line of any AddressSanitizer, LeakSanitizer, ThreadSanitizer or
# UndefinedBehaviorSanitizer report.
SANITIZER_REPORT = re.compile(
    r"^(==\d+==ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|"
    r"ThreadSanitizer: reported|.*: runtime error: )", re.MULTILINE)


def main() -> int:
    parser = argparse.ArgumentParser(prog="expect_run.py")
    parser.add_argument("--exit", type=int, default=0, dest="status")
    parser.add_argument("--output", action="append", default=[])
    parser.add_argument("--stdout", action="append", default=[])
    parser.add_argument("--stderr", action="append", default=[])
    parser.add_argument("--not-output", action="append", default=[])
    parser.add_argument("--ignore-sanitizer-reports", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run (after --)")

    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as e:
        print(f"expect_run: cannot run {command[0]}: {e}")
        return 1
    out = done.stdout.decode(errors="replace")
    err = done.stderr.decode(errors="replace")
    sys.stdout.write(out)
    sys.stdout.write(err)

    failures = []
    if done.returncode != args.status:
        failures.append(f"exit status {done.returncode}, expected {args.status}")
    for name, text, patterns in (("output", out + err, args.output), ("stdout", out, args.stdout),
                                 ("stderr", err, args.stderr)):
        failures += [f"{name} does not match: {p}" for p in patterns if not re.search(p, text, re.DOTALL)]
    failures += [f"output matches: {p}" for p in args.not_output if re.search(p, out + err, re.DOTALL)]
    if not args.ignore_sanitizer_reports and SANITIZER_REPORT.search(out + err):
        failures.append("a sanitizer report is in the output")
    for f in failures:
        print(f"expect_run: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

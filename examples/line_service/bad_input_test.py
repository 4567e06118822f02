#!/usr/bin/env python3
"""Bad requests to a stage of the line-protocol service get error replies.

    bad_input_test.py -- PROGRAM [ARGS...]

Starts PROGRAM, reads "listening on PORT", and sends, on one connection,
requests that are malformed (unknown verbs, wrong word counts, an empty
line), INCRs on a value that is not an integer, by an amount that is not
one, and past the range of a 64-bit integer: each must get one reply line
starting with "ERROR", and the connection must keep serving (a GET after
them reads what was set before). Then, on a second connection, a line of
100 000 bytes: the reply is an error line, and the service closes that
connection (after the reply: no reset). Finally SIGTERM must end the program with exit 0.
"""
import re
import signal
import socket
import subprocess
import sys

BAD = [
    "NONSENSE",
    "",
    "   ",
    "GET",
    "GET a b",
    "SET a",
    "SET a b c",
    "INCR n",
    "INCR n x",
    "INCR n 1.5",
    "INCR n 99999999999999999999999",
    "INCR word 1",
    "INCR big 1",
    "STATS now",
    "FLUSH all",
]


def fail(why, proc=None):
    print(f"FAIL: {why}")
    if proc:
        proc.kill()
        out, _ = proc.communicate()
        print("--- program output:\n" + out)
    sys.exit(1)


def main():
    program = sys.argv[sys.argv.index("--") + 1:]
    proc = subprocess.Popen(program, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = None
    for line in proc.stdout:
        m = re.match(r"listening on (\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        fail("no 'listening on PORT' line", proc)

    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        f = s.makefile("rw", newline="\n")

        def request(line):
            f.write(line + "\n")
            f.flush()
            reply = f.readline()
            if not reply:
                fail(f"the connection closed after '{line}'", proc)
            return reply.rstrip("\n")

        for setup, want in [("SET word abc", "OK"), ("SET big 9223372036854775807", "OK"), ("SET kept 1", "OK")]:
            if request(setup) != want:
                fail(f"'{setup}' did not answer {want}", proc)
        for line in BAD:
            reply = request(line)
            if not reply.startswith("ERROR"):
                fail(f"'{line}' answered '{reply}', not an error", proc)
        if request("GET big") != "VALUE 9223372036854775807":
            fail("an INCR that overflowed changed the value", proc)
        if request("GET kept") != "VALUE 1":
            fail("the connection stopped serving after the bad requests", proc)

    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"x" * 100_000 + b"\n")
        f = s.makefile("r", newline="\n")
        reply = f.readline()
        if not reply.startswith("ERROR"):
            fail(f"a 100 000-byte line answered '{reply.rstrip()}', not an error", proc)
        if f.readline() != "":
            fail("the connection stayed open after the line that was too long", proc)

    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        fail("the program did not exit within 60 s of SIGTERM", proc)
    if proc.returncode != 0:
        print(out)
        fail(f"exit status {proc.returncode} after SIGTERM")
    print(f"ok: {len(BAD)} bad requests and a 100 000-byte line answered with errors")


main()

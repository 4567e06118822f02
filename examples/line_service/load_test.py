#!/usr/bin/env python3
"""Load test of one stage of the line-protocol service (coport-kv-*).

    load_test.py [--under-load-stop] [--expect TEXT]... [--expect-re REGEX]... -- PROGRAM [ARGS...]

Starts PROGRAM, reads "listening on PORT", and runs CLIENTS connections at
once. Each checks every reply: its own keys read back what it set, INCR on
counters shared by every client returns a running total, FLUSH counts at
least the SETs acknowledged before it. Then, with the load finished, each
shared counter must equal the sum of every increment acknowledged (no lost
update), and SIGTERM must end the program with exit 0 and "stopped: Q
queued, F flushed" with Q == F (everything accepted was flushed).

With --under-load-stop the SIGTERM arrives while the clients are still
sending (once each has had 20 replies): the program must still exit 0 with
Q == F and F >= the SETs acknowledged. --expect: text the output must hold; --expect-re: a regular expression
something in it must match (Python's re.search).
Fails on a sanitizer report in the output.
"""
import asyncio
import os
import re
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "support"))
from expect_run import SANITIZER_REPORT  # noqa: E402

CLIENTS = 50
ROUNDS = 40
COUNTERS = 4


def fail(why, out=""):
    print(f"FAIL: {why}")
    if out:
        print("--- program output:\n" + out)
    sys.exit(1)


async def request(reader, writer, line):
    writer.write((line + "\n").encode())
    await writer.drain()
    reply = await reader.readline()
    if not reply:
        raise ConnectionError("connection closed")
    return reply.decode().rstrip("\n")


async def client(port, n, totals, acked_sets, replies_seen, forever):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sets = 0
    try:
        i = 0
        while forever or i < ROUNDS:
            key = f"c{n}_{i}"
            r = await request(reader, writer, f"SET {key} {i}")
            if r != "OK":
                raise AssertionError(f"SET {key}: {r}")
            sets += 1
            acked_sets[0] += 1
            r = await request(reader, writer, f"GET {key}")
            if r != f"VALUE {i}":
                raise AssertionError(f"GET {key} after SET {i}: {r}")
            ctr = f"ctr{(n + i) % COUNTERS}"
            amount = n % 7 + 1
            r = await request(reader, writer, f"INCR {ctr} {amount}")
            if not r.startswith("VALUE "):
                raise AssertionError(f"INCR {ctr}: {r}")
            totals[ctr] = totals.get(ctr, 0) + amount
            if i % 10 == 0:
                r = await request(reader, writer, "STATS")
                if not r.startswith("STATS keys="):
                    raise AssertionError(f"STATS: {r}")
                r = await request(reader, writer, "FLUSH")
                m = re.fullmatch(r"FLUSHED (\d+)", r)
                if not m or int(m.group(1)) < sets:
                    raise AssertionError(f"FLUSH after {sets} SETs of this client: {r}")
            r = await request(reader, writer, "NONSENSE")
            if not r.startswith("ERROR"):
                raise AssertionError(f"an unknown request: {r}")
            i += 1
            replies_seen[n] = i
    except (ConnectionError, OSError):
        if not forever:
            raise
    finally:
        writer.close()


async def main():
    argv = sys.argv[1:]
    args = argv[:argv.index("--")]
    under_load = "--under-load-stop" in args
    expect = [args[i + 1] for i, a in enumerate(args) if a == "--expect"]
    expect_re = [args[i + 1] for i, a in enumerate(args) if a == "--expect-re"]
    program = argv[argv.index("--") + 1:]
    proc = await asyncio.create_subprocess_exec(*program, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    # Lines before "listening on" are kept for the output's checks (a
    # sanitizer's start-up warning comes first, for one).
    output = []
    port = None
    while port is None:
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        except asyncio.TimeoutError:
            line = ""
        if not line:
            proc.kill()
            fail("no 'listening on PORT' line", "".join(output))
        output.append(line)
        m = re.match(r"listening on (\d+)", line)
        if m:
            port = int(m.group(1))

    async def drain():
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            output.append(line.decode())
    drainer = asyncio.create_task(drain())

    totals, acked_sets, seen = {}, [0], {}
    tasks = [asyncio.create_task(client(port, n, totals, acked_sets, seen, under_load)) for n in range(CLIENTS)]
    if under_load:
        while len(seen) < CLIENTS or min(seen.values()) < 20:
            if any(t.done() for t in tasks):
                break  # a client failed before the stop: gather() below reports it
            await asyncio.sleep(0.01)  # polling the clients' own progress, not timing the program
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.gather(*tasks)
        except AssertionError as e:
            await proc.wait()
            fail(str(e), "".join(output))
    else:
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
        except AssertionError as e:
            proc.kill()
            fail(str(e), "".join(output))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for ctr, total in sorted(totals.items()):
            r = await request(reader, writer, f"GET {ctr}")
            if r != f"VALUE {total}":
                proc.kill()
                fail(f"{ctr} reads '{r}' after increments summing to {total}: an update was lost")
        writer.close()
        proc.send_signal(signal.SIGTERM)
    try:
        status = await asyncio.wait_for(proc.wait(), 60)
    except asyncio.TimeoutError:
        proc.kill()
        fail("the program did not exit within 60 s of SIGTERM", "".join(output))
    await drainer
    out = "".join(output)
    if status != 0:
        fail(f"exit status {status} after SIGTERM", out)
    if SANITIZER_REPORT.search(out):
        fail("a sanitizer report is in the output", out)
    m = re.search(r"stopped: (\d+) queued, (\d+) flushed", out)
    if not m or m.group(1) != m.group(2):
        fail("not everything queued was flushed", out)
    if int(m.group(2)) < acked_sets[0]:
        fail(f"{acked_sets[0]} SETs acknowledged but {m.group(2)} flushed", out)
    for text in expect:
        if text not in out:
            fail(f"the output lacks '{text}'", out)
    for pattern in expect_re:
        if not re.search(pattern, out):
            fail(f"nothing in the output matches /{pattern}/", out)
    print(f"ok: {CLIENTS} clients, {acked_sets[0]} SETs acknowledged and flushed, "
          f"counters {dict(sorted(totals.items())) if not under_load else '(stopped under load)'}")


asyncio.run(main())

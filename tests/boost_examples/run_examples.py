#!/usr/bin/env python3
"""Runs one of Boost.Fiber's Asio examples stock and on coport, and checks
that both variants behave the same.

    run_examples.py autoecho STOCK COPORT
    run_examples.py ps STOCK_SERVER COPORT_SERVER PUBLISHER SUBSCRIBER

autoecho: each variant exits 0, prints "done.", and echoes the same multiset
of messages (every message a client sent, handled by the server and replied).
ps: for each server variant, a publisher registers a queue, two subscribers
subscribe to it, and each published line reaches both subscribers; the
servers have no way to be asked to stop, so they are killed. Any sanitizer
report in any program's output fails the test.
"""
import collections
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from expect_run import SANITIZER_REPORT  # noqa: E402

# A ceiling so that a broken program fails the test instead of hanging it;
# never reached by a working one (each step waits for an event, not a time).
CEILING = 30


class failure(Exception):
    pass


def check_sanitizers(name, text):
    if SANITIZER_REPORT.search(text):
        raise failure(f"{name}: a sanitizer report is in the output:\n{text}")


def run_autoecho(binary):
    p = subprocess.run([binary], capture_output=True, text=True, timeout=CEILING * 2)
    out = p.stdout + p.stderr
    check_sanitizers(binary, out)
    if p.returncode != 0 or "done." not in p.stdout:
        raise failure(f"{binary}: exit status {p.returncode}, output:\n{out}")
    sent = collections.Counter(re.findall(r": Sending: (.*)$", p.stdout, re.M))
    handled = collections.Counter(re.findall(r": handled: (.*)$", p.stdout, re.M))
    replied = collections.Counter(re.findall(r": Reply  : (.*)$", p.stdout, re.M))
    if not sent or sent != handled or sent != replied:
        raise failure(f"{binary}: sent {dict(sent)}, handled {dict(handled)}, replied {dict(replied)}")
    return handled


class program:
    """A running program whose output lines are read as they come."""

    def __init__(self, args, stdin=False):
        self.name = os.path.basename(args[0])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text, count=1):
        """Returns once `count` lines so far contain `text`."""
        while sum(text in l for l in self.seen) < count:
            try:
                line = self.lines.get(timeout=CEILING)
            except queue.Empty:
                raise failure(f"{self.name}: no line with {text!r}; output so far:\n" + "\n".join(self.seen))
            if line is None:
                raise failure(f"{self.name}: ended (status {self.proc.wait()}) before printing {text!r}:\n"
                              + "\n".join(self.seen))
            self.seen.append(line)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        while True:
            line = self.lines.get(timeout=CEILING)
            if line is None:
                break
            self.seen.append(line)
        check_sanitizers(self.name, "\n".join(self.seen))


def wait_listening(server, ports):
    """Returns once the server listens on every port. It prints nothing when
    it starts, and a probe connection would count as a client: the kernel's
    socket table is read instead, until the ceiling."""
    wanted = {f"{p:04X}" for p in ports}
    for _ in range(CEILING * 100):
        with open("/proc/net/tcp") as f:
            listening = {l.split()[1].split(":")[1] for l in f.readlines()[1:] if l.split()[3] == "0A"}
        if wanted <= listening:
            return
        if server.proc.poll() is not None:
            break
        time.sleep(0.01)
    server.kill()
    raise failure(f"{server.name}: not listening on {ports}; output:\n" + "\n".join(server.seen))


def run_ps(server_binary, publisher_binary, subscriber_binary, messages):
    server = program([server_binary])
    clients = []
    try:
        wait_listening(server, (9997, 9998))
        publisher = program([publisher_binary, "127.0.0.1", "coport"], stdin=True)
        clients.append(publisher)
        server.wait_for("new queue 'coport' registered")
        subscribers = [program([subscriber_binary, "127.0.0.1", "coport"]) for _ in range(2)]
        clients.extend(subscribers)
        server.wait_for("new subscription to queue 'coport'", count=2)
        for message in messages:
            publisher.send(message)
            # One at a time: two messages in flight could arrive in one read.
            for s in subscribers:
                s.wait_for(f"published: {message}")
            server.wait_for(f"subscriber::run(): '{message}' written", count=2)
    finally:
        for c in clients:
            c.kill()
        server.kill()
    return server.seen


def main():
    mode = sys.argv[1]
    try:
        if mode == "autoecho":
            stock, ported = sys.argv[2:4]
            a = run_autoecho(stock)
            b = run_autoecho(ported)
            if a != b:
                raise failure(f"echoed messages differ: stock {dict(a)}, coport {dict(b)}")
            print(f"autoecho: stock and coport echoed the same {sum(a.values())} messages")
        elif mode == "ps":
            stock, ported, publisher, subscriber = sys.argv[2:6]
            messages = ["first message", "second message", "third message"]
            for server in (stock, ported):
                run_ps(server, publisher, subscriber, messages)
                print(f"ps: {os.path.basename(server)}: {len(messages)} messages reached 2 subscribers")
        else:
            raise failure(f"unknown mode {mode!r}")
    except failure as e:
        print(f"run_examples.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

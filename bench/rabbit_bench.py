#!/usr/bin/python3
"""RPC over RabbitMQ: coport against oslo.messaging on the same broker.

    /usr/bin/python3 bench/rabbit_bench.py --server-bin B --client-bin C
        [--seconds 5] [--concurrency 1,50] [--impl both|coport|oslo] [--json FILE]

Starts a private broker (tests/rabbit/broker.py) and, for each concurrency,
measures calls of echo({"value": "x"}) with N concurrent callers for S
seconds:

  coport   coport-example-server --executor coro, and coport-example-client
           bench --concurrency N --seconds S
  oslo     oslo.messaging's eventlet RPC server and an eventlet RPC client
           with N green threads (tests/rabbit/oslo_peer.py bench-server /
           bench-client), the usual way OpenStack services run

Prints a table and two ratios:

  rabbit.call_c50    coport calls/s / oslo calls/s at concurrency 50 (aim 20)
  rabbit.latency_c1  oslo p50 / coport p50 latency at concurrency 1 (aim 5)

(and rabbit.call_c<N>, without an aim, for the other concurrencies).

With --json FILE it also writes one JSON object per line: the measurements
("kind": "measurement") and the ratios ("kind": "ratio", with numerator,
denominator, ratio, aim and met), the shape bench/check_bench_json.cmake
reads. Run it with the distribution's Python (it has oslo.messaging).
"""

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RABBIT_TESTS = os.path.join(HERE, "..", "tests", "rabbit")
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, RABBIT_TESTS)
import broker  # noqa: E402

PYTHON = "/usr/bin/python3"
OSLO_PEER = os.path.join(RABBIT_TESTS, "oslo_peer.py")


def redact(text):
    return str(text).replace(broker.PASSWORD, "***")


class Server:
    """A server program; started, waited for (`ready`), stopped."""

    def __init__(self, name, cmd, ready_timeout=60):
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put, True),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append, False),
                         daemon=True).start()
        deadline = time.monotonic() + ready_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, left))
                ended = line is None  # stdout closed: the program ended
            except queue.Empty:
                line, ended = None, False
            if line is not None and line.strip() == "ready":
                return
            if ended or left <= 0:
                self.stop()
                raise RuntimeError("%s did not print `ready` (exit %s):\n%s" % (
                    name, self.proc.poll(), redact("\n".join(self.stderr[-20:]))))

    @staticmethod
    def _pump(stream, sink, mark_end):
        for raw in iter(stream.readline, b""):
            sink(raw.decode("utf-8", "replace").rstrip("\n"))
        if mark_end:
            sink(None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_client(name, cmd, seconds):
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        raise RuntimeError("%s did not finish" % name)
    out = r.stdout.decode("utf-8", "replace").strip()
    err = r.stderr.decode("utf-8", "replace").strip()
    try:
        result = json.loads(out.splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError("%s printed no JSON result (exit %d):\n%s\n%s" % (
            name, r.returncode, redact(out[-2000:]), redact(err[-2000:])))
    if r.returncode != 0:
        print("warning: %s exited %d: %s" % (name, r.returncode, redact(err[-500:])),
              file=sys.stderr)
    return result


def bench_coport(a, url, levels):
    topic = "bench-coport-%d" % os.getpid()
    srv = Server("coport-example-server", [a.server_bin, "--transport", url, "--topic", topic,
                                           "--server", "bench", "--executor", "coro"])
    try:
        results = {}
        for n in levels:
            results[n] = run_client("coport-example-client bench", [
                a.client_bin, "--transport", url, "--topic", topic, "bench",
                "--concurrency", str(n), "--seconds", str(a.seconds)], a.seconds)
            show(results[n], "coport")
        return results
    finally:
        srv.stop()


def bench_oslo(a, url, levels):
    topic = "bench-oslo-%d" % os.getpid()
    srv = Server("oslo bench-server", [PYTHON, OSLO_PEER, "bench-server", "--url", url,
                                       "--topic", topic, "--server", "bench"])
    try:
        results = {}
        for n in levels:
            results[n] = run_client("oslo bench-client", [
                PYTHON, OSLO_PEER, "bench-client", "--url", url, "--topic", topic,
                "--concurrency", str(n), "--seconds", str(a.seconds)], a.seconds)
            show(results[n], "oslo")
        return results
    finally:
        srv.stop()


def show(r, impl):
    print("  %-7s concurrency %3d: %9.1f calls/s  p50 %8.3f ms  p99 %8.3f ms  (%d calls)" % (
        impl, r.get("concurrency", 0), r.get("calls_per_s", 0.0), r.get("p50_ms", 0.0),
        r.get("p99_ms", 0.0), r.get("calls", 0)), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description="coport vs oslo.messaging RPC over RabbitMQ")
    p.add_argument("--server-bin", help="coport-example-server")
    p.add_argument("--client-bin", help="coport-example-client")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", default="1,50", help="comma-separated levels (1,50)")
    p.add_argument("--impl", choices=["both", "coport", "oslo"], default="both")
    p.add_argument("--json", help="also write one JSON object per figure to this file")
    a = p.parse_args(argv)
    levels = [int(x) for x in a.concurrency.split(",") if x]
    if a.impl in ("both", "coport") and not (a.server_bin and a.client_bin):
        p.error("--server-bin and --client-bin are required (or --impl oslo)")

    state = tempfile.mkdtemp(prefix="coport-rabbit-bench-")
    b = broker.Broker(state)
    results = {}
    try:
        t0 = time.monotonic()
        b.start()
        print("broker %s up in %.1fs; %gs per measurement, concurrency %s" % (
            b.node, time.monotonic() - t0, a.seconds, ",".join(map(str, levels))), flush=True)
        if a.impl in ("both", "coport"):
            results["coport"] = bench_coport(a, b.url, levels)
        if a.impl in ("both", "oslo"):
            results["oslo"] = bench_oslo(a, b.url, levels)
    except RuntimeError as e:
        print("rabbit_bench: %s" % redact(e), file=sys.stderr)
        return 1
    finally:
        b.stop()
        shutil.rmtree(state, ignore_errors=True)

    lines = []
    print("\n%-8s %5s %12s %10s %10s %9s" % ("impl", "conc", "calls/s", "p50 ms", "p99 ms",
                                            "calls"))
    for impl in ("coport", "oslo"):
        for n in levels:
            r = results.get(impl, {}).get(n)
            if not r:
                continue
            print("%-8s %5d %12.1f %10.3f %10.3f %9d" % (impl, n, r["calls_per_s"], r["p50_ms"],
                                                         r["p99_ms"], r["calls"]))
            for key, unit in (("calls_per_s", "calls/s"), ("p50_ms", "ms"), ("p99_ms", "ms")):
                lines.append({"name": "rabbit.%s.%s_c%d" % (impl, key, n), "kind": "measurement",
                              "value": r[key], "unit": unit, "impl": impl, "concurrency": n,
                              "calls": r["calls"], "seconds": r["seconds"]})

    def ratio(name, numerator, denominator, aim, num_name, den_name):
        value = numerator / denominator if numerator and denominator else None
        met = (value is not None and value >= aim) if aim is not None else None
        print("%-18s %8s  %s / %s%s" % (
            name, "%.2f" % value if value is not None else "n/a", num_name, den_name,
            "" if aim is None else "  aim >= %g: %s" % (aim, "yes" if met else "NO")))
        lines.append({"name": name, "kind": "ratio", "value": value, "unit": "x",
                      "numerator": numerator, "denominator": denominator, "ratio": value,
                      "numerator_name": num_name, "denominator_name": den_name,
                      "aim": aim, "aim_is": "at least", "met": met})

    c, o = results.get("coport", {}), results.get("oslo", {})
    if c and o:
        print()
        for n in levels:
            if n in c and n in o:
                ratio("rabbit.call_c%d" % n, c[n]["calls_per_s"], o[n]["calls_per_s"],
                      20 if n == 50 else None,
                      "coport calls/s (c=%d)" % n, "oslo calls/s (c=%d)" % n)
        if 1 in c and 1 in o:
            ratio("rabbit.latency_c1", o[1]["p50_ms"], c[1]["p50_ms"], 5,
                  "oslo p50 ms (c=1)", "coport p50 ms (c=1)")
    if a.json:
        with open(a.json, "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        print("\nwrote %d figures to %s" % (len(lines), a.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""RPC over RabbitMQ: coport against oslo.messaging and against rabbitmq-c
alone, on the same broker.

    /usr/bin/python3 bench/rabbit_bench.py --server-bin B --client-bin C
        [--amqp-bin A] [--seconds 5] [--concurrency 1,50]
        [--impl all|both|coport|oslo|amqp[,...]] [--cluster] [--json FILE]

Starts a private broker (tests/rabbit/broker.py) and, for each concurrency,
measures calls of echo({"value": "x"}) with N concurrent callers for S
seconds:

  coport   coport-example-server --executor coro, and coport-example-client
           bench --concurrency N --seconds S
  oslo     oslo.messaging's eventlet RPC server and an eventlet RPC client
           with N green threads (tests/rabbit/oslo_peer.py bench-server /
           bench-client), the usual way OpenStack services run
  amqp     the floor: coport-bench-amqp server and client, rabbitmq-c alone
           with the broker doing per call what it does for coport's
           (publisher confirms, persistent messages, manual acks, prefetch
           64; see bench/amqp_floor.cpp), N calls in flight. With coport
           too, it is measured in pairs with coport: --pairs windows of
           --pair-seconds each, one coport and one floor back to back,
           alternating which goes first, as coport-bench pairs the sides
           of its ratios (both servers run throughout)

Prints a table and the ratios:

  rabbit.call_c50    coport calls/s / oslo calls/s at concurrency 50 (aim 20)
  rabbit.latency_c1  oslo p50 / coport p50 latency at concurrency 1 (aim 5)
  rabbit.coport_over_amqp_c<N>       coport calls/s / amqp calls/s: how close
                                     coport comes to what the broker allows
  rabbit.coport_over_amqp_latency_c1 coport p50 / amqp p50 at concurrency 1

(the last two the median of the per-pair ratios, with their min and max;
the floor's own figures are the medians of its windows).

(and rabbit.call_c<N>, without an aim, for the other concurrencies). --impl
all (the default) runs amqp only when --amqp-bin is given; both is coport
and oslo.

With --cluster, the same run then measures coport and oslo once more
against a private three-node cluster (broker.start_cluster()) through its
failover list with ?rabbit_quorum_queue=true: the RPC queues are quorum
queues replicated on the three nodes (every message written on a majority
before the broker confirms it), the callers and servers connected to the
first node, which leads the queues. Its figures are named
rabbit.cluster.<impl>.<key>_c<N>, and its ratios

  rabbit.cluster.call_c<N>     coport calls/s / oslo calls/s on the cluster
  rabbit.cluster.latency_c1    oslo p50 / coport p50 on the cluster
  rabbit.cluster.coport_over_single_c<N>   coport calls/s on the cluster /
                                           on the single broker

(no aims: the figures of a replicated setup, beside the single broker's).

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
import statistics
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


def bench_amqp(a, url, levels):
    topic = "bench-amqp-%d" % os.getpid()
    srv = Server("coport-bench-amqp server", [a.amqp_bin, "server", "--url", url, "--topic", topic])
    try:
        results = {}
        for n in levels:
            results[n] = run_client("coport-bench-amqp client", [
                a.amqp_bin, "client", "--url", url, "--topic", topic,
                "--concurrency", str(n), "--seconds", str(a.seconds)], a.seconds)
            show(results[n], "amqp")
        return results
    finally:
        srv.stop()


def bench_pairs(a, url, levels):
    """coport and the floor in pairs of windows, per level: a list of
    {"coport": result, "amqp": result}, one per pair."""
    pid = os.getpid()
    servers = [
        Server("coport-example-server", [a.server_bin, "--transport", url, "--topic",
                                         "bench-pair-coport-%d" % pid, "--server", "bench",
                                         "--executor", "coro"]),
    ]
    try:
        servers.append(Server("coport-bench-amqp server", [a.amqp_bin, "server", "--url", url,
                                                           "--topic", "bench-pair-amqp-%d" % pid]))
        clients = {
            "coport": ("coport-example-client bench", [
                a.client_bin, "--transport", url, "--topic", "bench-pair-coport-%d" % pid, "bench"]),
            "amqp": ("coport-bench-amqp client", [
                a.amqp_bin, "client", "--url", url, "--topic", "bench-pair-amqp-%d" % pid]),
        }
        results = {}
        for n in levels:
            pairs = []
            for r in range(a.pairs):
                order = ("coport", "amqp") if r % 2 == 0 else ("amqp", "coport")
                pair = {}
                for impl in order:
                    name, cmd = clients[impl]
                    pair[impl] = run_client(name, cmd + ["--concurrency", str(n), "--seconds",
                                                         str(a.pair_seconds)], a.pair_seconds)
                pairs.append(pair)
                c, f = pair["coport"]["calls_per_s"], pair["amqp"]["calls_per_s"]
                print("  pair %d/%d concurrency %3d: coport %9.1f calls/s, rabbitmq-c %9.1f calls/s,"
                      " ratio %.2f" % (r + 1, a.pairs, n, c, f, c / f if f else float("nan")),
                      flush=True)
            results[n] = pairs
        return results
    finally:
        for srv in servers:
            srv.stop()


def floor_summary(pairs, n):
    """The floor's figures at one level: the medians of its windows."""
    runs = [p["amqp"] for p in pairs]
    return {"concurrency": n, "calls": sum(r["calls"] for r in runs), "seconds": runs[0]["seconds"],
            "calls_per_s": statistics.median(r["calls_per_s"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs), "repeats": len(runs)}


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
    p = argparse.ArgumentParser(description="coport vs oslo.messaging and rabbitmq-c RPC over RabbitMQ")
    p.add_argument("--server-bin", help="coport-example-server")
    p.add_argument("--client-bin", help="coport-example-client")
    p.add_argument("--amqp-bin", help="coport-bench-amqp (the rabbitmq-c floor)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", default="1,50", help="comma-separated levels (1,50)")
    p.add_argument("--impl", default="all",
                   help="comma-separated: coport, oslo, amqp; all (amqp with --amqp-bin) or both "
                        "(coport,oslo)")
    p.add_argument("--pairs", type=int, default=5,
                   help="pairs of coport and floor windows per concurrency (5)")
    p.add_argument("--pair-seconds", type=float,
                   help="seconds per window of a pair (the larger of 2 and --seconds / 5)")
    p.add_argument("--cluster", action="store_true",
                   help="also measure coport and oslo on a three-node cluster with quorum queues")
    p.add_argument("--json", help="also write one JSON object per figure to this file")
    a = p.parse_args(argv)
    if a.pair_seconds is None:
        a.pair_seconds = max(2.0, a.seconds / 5)
    if a.pairs < 1:
        p.error("--pairs wants at least 1")
    levels = [int(x) for x in a.concurrency.split(",") if x]
    impls = set()
    for word in a.impl.split(","):
        if word == "all":
            impls |= {"coport", "oslo"} | ({"amqp"} if a.amqp_bin else set())
        elif word == "both":
            impls |= {"coport", "oslo"}
        elif word in ("coport", "oslo", "amqp"):
            impls.add(word)
        elif word:
            p.error("--impl: unknown implementation %r" % word)
    if "coport" in impls and not (a.server_bin and a.client_bin):
        p.error("--server-bin and --client-bin are required (or --impl oslo)")
    if "amqp" in impls and not a.amqp_bin:
        p.error("--impl amqp needs --amqp-bin")

    state = tempfile.mkdtemp(prefix="coport-rabbit-bench-")
    b = broker.Broker(state)
    results = {}
    pairs = {}
    try:
        t0 = time.monotonic()
        b.start()
        print("broker %s up in %.1fs; %gs per measurement, concurrency %s" % (
            b.node, time.monotonic() - t0, a.seconds, ",".join(map(str, levels))), flush=True)
        # coport's own windows, then coport and the floor in pairs.
        if "coport" in impls:
            results["coport"] = bench_coport(a, b.url, levels)
        if "amqp" in impls and "coport" in impls:
            pairs = bench_pairs(a, b.url, levels)
            results["amqp"] = {n: floor_summary(pairs[n], n) for n in levels}
        elif "amqp" in impls:
            results["amqp"] = bench_amqp(a, b.url, levels)
        if "oslo" in impls:
            results["oslo"] = bench_oslo(a, b.url, levels)
    except RuntimeError as e:
        print("rabbit_bench: %s" % redact(e), file=sys.stderr)
        return 1
    finally:
        b.stop()
        shutil.rmtree(state, ignore_errors=True)

    cluster_results = {}
    if a.cluster and impls & {"coport", "oslo"}:
        state = tempfile.mkdtemp(prefix="coport-rabbit-bench-cluster-")
        c = broker.Cluster(state)
        try:
            t0 = time.monotonic()
            c.start()
            url = c.url + "?rabbit_quorum_queue=true"
            print("cluster of %d nodes up in %.1fs; quorum queues" % (
                len(c.nodes), time.monotonic() - t0), flush=True)
            if "coport" in impls:
                cluster_results["coport"] = bench_coport(a, url, levels)
            if "oslo" in impls:
                cluster_results["oslo"] = bench_oslo(a, url, levels)
        except (RuntimeError, broker.BrokerError) as e:
            print("rabbit_bench: cluster: %s" % redact(e), file=sys.stderr)
            return 1
        finally:
            c.stop()
            shutil.rmtree(state, ignore_errors=True)

    lines = []
    print("\n%-8s %-7s %5s %12s %10s %10s %9s" % ("impl", "broker", "conc", "calls/s", "p50 ms",
                                                  "p99 ms", "calls"))
    for prefix, where, table in (("rabbit.", "single", results),
                                 ("rabbit.cluster.", "cluster", cluster_results)):
        for impl in ("coport", "amqp", "oslo"):
            for n in levels:
                r = table.get(impl, {}).get(n)
                if not r:
                    continue
                print("%-8s %-7s %5d %12.1f %10.3f %10.3f %9d" % (
                    impl, where, n, r["calls_per_s"], r["p50_ms"], r["p99_ms"], r["calls"]))
                for key, unit in (("calls_per_s", "calls/s"), ("p50_ms", "ms"), ("p99_ms", "ms")):
                    line = {"name": "%s%s.%s_c%d" % (prefix, impl, key, n),
                            "kind": "measurement", "value": r[key], "unit": unit, "impl": impl,
                            "concurrency": n, "calls": r["calls"], "seconds": r["seconds"]}
                    if "repeats" in r:
                        line["repeats"] = r["repeats"]  # a median of that many windows
                    if table is cluster_results:
                        line["broker"] = "cluster of 3, quorum queues"
                    lines.append(line)

    def ratio(name, numerator, denominator, aim, num_name, den_name, samples=None):
        """numerator / denominator; with samples (per-pair ratios), their
        median, numerator and denominator then being the sides' medians."""
        if samples:
            value = statistics.median(samples)
        else:
            value = numerator / denominator if numerator and denominator else None
        met = (value is not None and value >= aim) if aim is not None else None
        spread = " (%.2f..%.2f)" % (min(samples), max(samples)) if samples else ""
        print("%-34s %8s%s  %s / %s%s" % (
            name, "%.2f" % value if value is not None else "n/a", spread, num_name, den_name,
            "" if aim is None else "  aim >= %g: %s" % (aim, "yes" if met else "NO")))
        line = {"name": name, "kind": "ratio", "value": value, "unit": "x",
                "numerator": numerator, "denominator": denominator, "ratio": value,
                "numerator_name": num_name, "denominator_name": den_name,
                "aim": aim, "aim_is": "at least", "met": met}
        if samples:
            line.update({"min": min(samples), "max": max(samples), "samples": len(samples)})
        lines.append(line)

    c, o, f = results.get("coport", {}), results.get("oslo", {}), results.get("amqp", {})
    if c or o or f:
        print()
    if c and o:
        for n in levels:
            if n in c and n in o:
                ratio("rabbit.call_c%d" % n, c[n]["calls_per_s"], o[n]["calls_per_s"],
                      20 if n == 50 else None,
                      "coport calls/s (c=%d)" % n, "oslo calls/s (c=%d)" % n)
        if 1 in c and 1 in o:
            ratio("rabbit.latency_c1", o[1]["p50_ms"], c[1]["p50_ms"], 5,
                  "oslo p50 ms (c=1)", "coport p50 ms (c=1)")
    if pairs:
        def paired(n, key):
            sides = [(q["coport"][key], q["amqp"][key]) for q in pairs[n]]
            return (statistics.median(x for x, _ in sides), statistics.median(y for _, y in sides),
                    [x / y for x, y in sides if y])
        for n in levels:
            num, den, samples = paired(n, "calls_per_s")
            ratio("rabbit.coport_over_amqp_c%d" % n, num, den, None, "coport calls/s (c=%d, pairs)" % n,
                  "rabbitmq-c calls/s (c=%d, pairs)" % n, samples)
        if 1 in levels:
            num, den, samples = paired(1, "p50_ms")
            ratio("rabbit.coport_over_amqp_latency_c1", num, den, None, "coport p50 ms (c=1, pairs)",
                  "rabbitmq-c p50 ms (c=1, pairs)", samples)
    cc, co = cluster_results.get("coport", {}), cluster_results.get("oslo", {})
    if cc and co:
        for n in levels:
            if n in cc and n in co:
                ratio("rabbit.cluster.call_c%d" % n, cc[n]["calls_per_s"], co[n]["calls_per_s"],
                      None, "coport calls/s (cluster, c=%d)" % n, "oslo calls/s (cluster, c=%d)" % n)
        if 1 in cc and 1 in co:
            ratio("rabbit.cluster.latency_c1", co[1]["p50_ms"], cc[1]["p50_ms"], None,
                  "oslo p50 ms (cluster, c=1)", "coport p50 ms (cluster, c=1)")
    if cc and c:
        for n in levels:
            if n in cc and n in c:
                ratio("rabbit.cluster.coport_over_single_c%d" % n, cc[n]["calls_per_s"],
                      c[n]["calls_per_s"], None, "coport calls/s (cluster, c=%d)" % n,
                      "coport calls/s (single broker, c=%d)" % n)
    if a.json:
        with open(a.json, "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        print("\nwrote %d figures to %s" % (len(lines), a.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())

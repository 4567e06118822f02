#!/usr/bin/python3
"""coport-example-client against oslo.messaging servers.

Two oslo.messaging RPC servers (oslo_peer.py server, threading executor)
serve one topic as p1 and p2; every case runs one coport-example-client:
calls of echo (string, nested object, unicode) and add; a cast whose
effect shows in counts(); a fanout cast that reaches both servers; each
cast handled exactly once (markers sent after it on the same path show
that no late duplicate follows); a server-specific target; a version too
high (exit 1, UnsupportedVersion); an unknown method (exit 1,
NoSuchMethod); a remote ExampleError (exit 1, class and message printed);
a timeout (exit 2, well before the reply). The broker's queues must be
those oslo.messaging 14 declares with the URL's options
(harness.check_queue_types), and an oslo.messaging server and a coport
server, client and notifier must declare each kind of queue alike
(harness.compare_declarations).
"""

import json
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

SERVERS = ("p1", "p2")


def test(h):
    topic = h.topic()
    h.step("two oslo.messaging servers on topic %s" % topic)
    servers = [h.start(name, h.peer_cmd("server", h.url, topic, "--server", name))
               for name in SERVERS]
    for s in servers:
        s.wait_ready()

    def client(name, *command, timeout=30, **options):
        return h.run(name, h.client_cmd(h.url, topic, *command, timeout=timeout, **options),
                     timeout=timeout + 30)

    def counts(server):
        return h.call_json("counts on %s" % server,
                           h.client_cmd(h.url, topic, "call", "counts", "{}", server=server,
                                        timeout=20), timeout=60)

    def echo_counts():
        return {s: counts(s).get("echo", 0) for s in SERVERS}

    def add_counts():
        return {s: counts(s).get("add", 0) for s in SERVERS}

    h.step("calls")
    for label, value in (("string", "hello from coport"),
                         ("nested object", {"a": [1, 2.5, None, True, False],
                                            "b": {"c": "d", "e": [], "f": {}}, "n": -7}),
                         ("unicode", "grüße, мир, 世界, \u2603 \U0001F600"),
                         ("list", [1, "two", [3], {"four": 4}])):
        r = client("call echo " + label, "call", "echo", json.dumps({"value": value}))
        got = r.json() if r.rc == 0 else None
        h.expect(r.rc == 0 and got == value, "call echo (%s) returns its value" % label,
                 r.describe())
    r = client("call add", "call", "add", '{"a": 2, "b": 3}')
    h.expect(r.rc == 0 and r.json() == 5, "call add(2, 3) returns 5", r.describe())

    h.step("cast")
    before = echo_counts()
    r = client("cast echo", "cast", "echo", '{"value": "cast"}')
    h.expect(r.rc == 0, "cast echo exits 0", r.describe())
    h.poll(lambda: sum(echo_counts().values()) >= sum(before.values()) + 1, 20,
           "the cast handled by one server")
    h.ok("the cast shows in counts()")
    # Marker calls on the topic, sent once the cast's publish was confirmed,
    # until both servers have handled one: each has then taken everything
    # published on the topic before them, a duplicate of the cast included.
    markers = add_counts()
    for i in range(10):
        r = client("marker call %d" % i, "call", "add", '{"a": 0, "b": 0}')
        h.require(r.rc == 0 and r.json() == 0, "marker call %d on the topic" % i, r.describe())
        if all(c > markers[s] for s, c in add_counts().items()):
            break
    else:
        h.require(False, "the marker calls reached p1 and p2")
    after = echo_counts()
    h.expect(sum(after.values()) == sum(before.values()) + 1,
             "the cast was handled exactly once", "%r -> %r" % (before, after))

    h.step("fanout cast")
    before = echo_counts()
    r = client("fanout cast", "cast", "echo", '{"value": "fanout"}', fanout=True)
    h.expect(r.rc == 0, "fanout cast exits 0", r.describe())
    h.poll(lambda: all(c >= before[s] + 1 for s, c in echo_counts().items()), 20,
           "the fanout cast on p1 and p2")
    # A marker cast on the same fanout path: once both servers have handled
    # it, their fanout queues delivered everything published before it.
    markers = add_counts()
    r = client("marker fanout cast", "cast", "add", '{"a": 0, "b": 0}', fanout=True)
    h.require(r.rc == 0, "the marker fanout cast exits 0", r.describe())
    h.poll(lambda: all(c >= markers[s] + 1 for s, c in add_counts().items()), 20,
           "the marker fanout cast on p1 and p2")
    after = echo_counts()
    h.expect(all(after[s] == before[s] + 1 for s in SERVERS),
             "the fanout cast reached both servers exactly once (%r -> %r)" % (before, after))

    h.step("server-specific target")
    before = echo_counts()
    for i in range(4):
        r = client("call echo on p2", "call", "echo", json.dumps({"value": i}), server="p2")
        h.require(r.rc == 0 and r.json() == i, "call echo on p2 (%d)" % i, r.describe())
    after = echo_counts()
    h.expect(after == {"p1": before["p1"], "p2": before["p2"] + 4},
             "only p2 handled the server-specific calls", "%r -> %r" % (before, after))

    h.step("errors")
    r = client("version 2.0", "call", "echo", '{"value": 1}', version="2.0")
    h.expect(r.rc == 1 and "UnsupportedVersion" in r.output(),
             "a call asking for version 2.0: exit 1 and UnsupportedVersion", r.describe())
    r = client("compatible version", "call", "echo", '{"value": 1}', version="1.2")
    h.expect(r.rc == 0 and r.json() == 1, "a call asking for version 1.2 succeeds", r.describe())
    r = client("unknown method", "call", "no_such_method", '{"value": 1}')
    h.expect(r.rc == 1 and "NoSuchMethod" in r.output(),
             "an unknown method: exit 1 and NoSuchMethod", r.describe())
    message = "it failed on purpose: ünïcödé"
    r = client("fail", "call", "fail", json.dumps({"message": message}))
    h.expect(r.rc == 1 and "ExampleError" in r.out and message in r.out,
             "fail(): exit 1, `ExampleError: <message>` on stdout", r.describe())

    h.step("timeout")
    ms = int(3000 * harness.TIME_SCALE)
    t0 = time.monotonic()
    r = client("timeout", "call", "sleep_ms", json.dumps({"ms": ms}), timeout=1)
    took = time.monotonic() - t0
    h.expect(r.rc == 2, "sleep_ms(%d) with --timeout 1: exit 2" % ms, r.describe())
    # The reply would come after `ms`; the stand-ins of --self-test need ~1.5 s to start.
    limit = ms / 1000.0 - 0.1 + (2.0 if h.self_test else 0.0)
    h.expect(took < limit, "the timeout ended the client before the reply (%.1fs)" % took)
    r = client("call after timeout", "call", "add", '{"a": 40, "b": 2}')
    h.expect(r.rc == 0 and r.json() == 42, "a call after the timeout succeeds", r.describe())

    h.step("the queues on the wire, as oslo.messaging declares them with the URL's options")
    h.check_queue_types(topic, servers=SERVERS, fanouts=2)

    h.step("stop the servers")
    for s in servers:
        h.expect(s.alive(), "%s still running" % s.name, "" if s.alive() else s.tail())
    h.stop_all(servers)

    h.compare_declarations()


if __name__ == "__main__":
    sys.exit(harness.main(test, "interop_coport_client", __doc__))

#!/usr/bin/python3
"""A coport server lives through a restart of its broker.

coport-example-server serves a topic; coport-example-client calls it. The
broker is stopped (a call meanwhile must fail within its timeout, exit 2
or 3), then started again on the same ports and data. The server must
reconnect and declare its queues again: the first call after the restart
is retried a few times (each with a 5 s timeout), then it must succeed;
after that calls on the topic, on the server's own queue and a fanout
cast work again, and no call hangs. The server then stops cleanly. Needs a broker of its own (skipped, 77, with an external
COPORT_TEST_RABBIT_URL).
"""

import json
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

CALL_TIMEOUT = 5
RECONNECT_WITHIN = 90  # seconds after the broker is back


def test(h):
    b = h.need_state()
    topic = h.topic()
    h.step("coport server r1 (executor %s) on topic %s" % (h.args.executor, topic))
    srv = h.start("r1", h.server_cmd(h.url, topic, server="r1"))
    srv.wait_ready()

    def call(name, method, args, **options):
        return h.run(name, h.client_cmd(h.url, topic, "call", method, json.dumps(args),
                                        timeout=CALL_TIMEOUT, **options),
                     timeout=CALL_TIMEOUT + 30)

    r = call("call before the restart", "echo", {"value": "before"})
    h.require(r.rc == 0 and r.json() == "before", "a call before the restart", r.describe())

    h.step("stop the broker")
    t0 = time.monotonic()
    b.stop()
    h.log("broker stopped in %.1fs" % (time.monotonic() - t0))
    r = call("call without a broker", "echo", {"value": "nobody"})
    h.expect(r.rc in (2, 3) and r.seconds < CALL_TIMEOUT + 10,
             "a call while the broker is down fails within its timeout (exit %s, %.1fs)"
             % (r.rc, r.seconds), r.describe())

    h.step("start the broker again (same ports and data)")
    t0 = time.monotonic()
    b.start_again()
    h.log("broker back after %.1fs" % (time.monotonic() - t0))
    h.expect(srv.alive(), "the server survived the broker's absence",
             "" if srv.alive() else srv.tail())

    h.step("the first call after the restart (retried)")
    h.until_served(lambda n: call("call after the restart #%d" % n, "echo", {"value": n}),
                   RECONNECT_WITHIN, "the server serves again after the restart")

    h.step("the server works as before")
    slow = []
    for i in range(20):
        r = call("call %d" % i, "add", {"a": i, "b": 1000})
        if not (r.rc == 0 and r.json() == i + 1000):
            h.require(False, "call add #%d after the restart" % i, r.describe())
        if r.seconds > CALL_TIMEOUT:
            slow.append(r.seconds)
    h.ok("20 calls on the topic answered")
    h.expect(not slow, "none of them took longer than %ds" % CALL_TIMEOUT, repr(slow))
    r = call("call on r1", "echo", {"value": "r1"}, server="r1")
    h.expect(r.rc == 0 and r.json() == "r1", "a call on the server's own queue (r1)",
             r.describe())
    r = h.run("oslo call", h.oslo_client_cmd(h.url, topic, "call", "echo", '{"value": "oslo"}',
                                             timeout=CALL_TIMEOUT), timeout=60)
    h.expect(r.rc == 0 and r.json() == "oslo", "an oslo.messaging call", r.describe())

    def echo_count():
        r = call("counts", "counts", {}, server="r1")
        h.require(r.rc == 0, "counts() on r1", r.describe())
        return r.json().get("echo", 0)
    before = echo_count()
    r = h.run("fanout cast", h.client_cmd(h.url, topic, "cast", "echo", '{"value": "fan"}',
                                          fanout=True, timeout=CALL_TIMEOUT), timeout=60)
    h.expect(r.rc == 0, "a fanout cast", r.describe())
    h.poll(lambda: echo_count() == before + 1, 20, "the fanout cast on r1")
    h.ok("the fanout cast reached r1 (its fanout queue is back)")

    h.step("stop the server")
    rc = srv.stop(timeout=30)
    h.expect(rc == 0, "r1 exited 0 on SIGTERM (got %s)" % rc, "" if rc == 0 else srv.tail())


if __name__ == "__main__":
    sys.exit(harness.main(test, "broker_restart", __doc__))

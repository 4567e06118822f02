#!/usr/bin/python3
"""A coport server lives through a frozen broker and a killed one.

coport-example-server (r1) serves a topic; coport-example-client calls it,
each call with a 5 s timeout. What is guaranteed, and checked:

1. Network pause: the broker's VM is stopped with SIGSTOP for 8 s (its
   connections stay open, nothing answers). A call made meanwhile ends
   within its timeout (exit 2, or 3 when the send is refused); nothing
   hangs. After SIGCONT calls are answered again within 60 s, and a call
   sent during the pause is not executed twice (RPC is at most once: the
   server's counts() grows by at most one for it).
2. Crash: the broker gets SIGKILL (no clean shutdown, no close frames). A
   call meanwhile fails within its timeout; the broker is started again on
   the same ports and data; the server reconnects and declares its queues
   again, and serves within 90 s; 20 calls after that are all answered.
3. The server survived both and stops cleanly on SIGTERM (exit 0).

Needs a broker of its own (skipped, 77, with an external
COPORT_TEST_RABBIT_URL).
"""

import json
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

CALL_TIMEOUT = 5
PAUSE_SECONDS = 8
BACK_WITHIN = 60        # seconds after SIGCONT
RECONNECT_WITHIN = 90   # seconds after the killed broker is back


def test(h):
    b = h.need_state()
    topic = h.topic()
    h.step("coport server r1 (executor %s) on topic %s" % (h.args.executor, topic))
    srv = h.start("r1", h.server_cmd(h.url, topic, server="r1"))
    srv.wait_ready()

    def call(name, method, args, timeout=CALL_TIMEOUT, **options):
        return h.run(name, h.client_cmd(h.url, topic, "call", method, json.dumps(args),
                                        timeout=timeout, **options),
                     timeout=timeout + 30)

    def add_count():
        r = call("counts", "counts", {}, server="r1", timeout=20)
        h.require(r.rc == 0, "counts() on r1", r.describe())
        return r.json().get("add", 0)

    r = call("call before the faults", "echo", {"value": "before"})
    h.require(r.rc == 0 and r.json() == "before", "a call before the faults", r.describe())

    h.step("1. the broker frozen (SIGSTOP) for %ds" % PAUSE_SECONDS)
    before = add_count()
    b.pause()
    paused_at = time.monotonic()
    try:
        # The only add of this phase: counts() tells how often it ran.
        r = call("call while frozen", "add", {"a": 1, "b": 2})
        h.expect(r.rc in (2, 3) and r.seconds < CALL_TIMEOUT + 10,
                 "a call while the broker is frozen ends within its timeout (exit %s, %.1fs)"
                 % (r.rc, r.seconds), r.describe())
        left = PAUSE_SECONDS - (time.monotonic() - paused_at)
        if left > 0:
            time.sleep(left)  # the fault's length, not an ordering wait
    finally:
        b.resume()
    h.log("broker resumed after %.1fs" % (time.monotonic() - paused_at))
    h.until_served(lambda n: call("call after SIGCONT #%d" % n, "echo", {"value": n}),
                   BACK_WITHIN, "the server serves again after SIGCONT")
    # The frozen call may still reach the server once the broker wakes up,
    # after its caller gave up (it expires with its timeout otherwise); it
    # must never run twice.
    ran = add_count() - before
    h.expect(ran in (0, 1), "the call sent while frozen ran at most once (%d times)" % ran)

    h.step("2. the broker killed (SIGKILL), then started again")
    b.kill9()
    h.log("broker killed")
    r = call("call without a broker", "echo", {"value": "nobody"})
    h.expect(r.rc in (2, 3) and r.seconds < CALL_TIMEOUT + 10,
             "a call while the broker is dead fails within its timeout (exit %s, %.1fs)"
             % (r.rc, r.seconds), r.describe())
    t0 = time.monotonic()
    b.start_again()
    h.log("broker back after %.1fs" % (time.monotonic() - t0))
    h.expect(srv.alive(), "the server survived the broker's crash", "" if srv.alive() else srv.tail())
    h.until_served(lambda n: call("call after the crash #%d" % n, "echo", {"value": n}),
                   RECONNECT_WITHIN, "the server serves again after the crash")
    for i in range(20):
        r = call("call %d" % i, "add", {"a": i, "b": 1000})
        h.require(r.rc == 0 and r.json() == i + 1000, "call add #%d after the crash" % i, r.describe())
    h.ok("20 calls after the crash answered")

    h.step("3. stop the server")
    rc = srv.stop(timeout=30)
    h.expect(rc == 0, "r1 exited 0 on SIGTERM (got %s)" % rc, "" if rc == 0 else srv.tail())


if __name__ == "__main__":
    sys.exit(harness.main(test, "broker_faults", __doc__))

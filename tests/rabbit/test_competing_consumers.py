#!/usr/bin/python3
"""Two coport servers consume one topic; one of them dies under load.

Servers c1 and c2 (coport-example-server) serve the same topic; an
oslo.messaging client calls echo on the topic (no server named), one call
after the other:

1. 200 calls: all answered, and counts() shows that both servers took a
   share (the sum is 200).
2. 400 calls; after the first 100 answers c2 gets SIGKILL. At most the one
   call in flight at that moment may be lost (a MessagingTimeout after the
   usual 5 s timeout); every later call is answered, by c1.
"""

import json
import signal
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

CALL_TIMEOUT = 5


def test(h):
    topic = h.topic()
    h.step("servers c1 and c2 (executor %s) on topic %s" % (h.args.executor, topic))
    c1 = h.start("c1", h.server_cmd(h.url, topic, server="c1"))
    c2 = h.start("c2", h.server_cmd(h.url, topic, server="c2"))
    for c in (c1, c2):
        c.wait_ready()

    def echo_count(server):
        r = h.run("counts on " + server, h.oslo_client_cmd(
            h.url, topic, "call", "counts", "{}", server=server, timeout=10), timeout=60)
        h.require(r.rc == 0, "counts() on %s" % server, r.describe())
        return r.json().get("echo", 0)

    def loop(name, count, interval_ms):
        return h.start(name, h.peer_cmd(
            "call-loop", h.url, topic, "--count", str(count), "--timeout", str(CALL_TIMEOUT),
            "--interval-ms", str(interval_ms)))

    def results(child, timeout):
        child.wait_line(lambda l: '"done"' in l, timeout, "the end of the calls")
        recs = [json.loads(l) for l in child.stdout if l.startswith("{")]
        return [r for r in recs if "i" in r], recs[-1]

    h.step("1. 200 calls on the topic")
    first = loop("calls-1", 200, 0)
    recs, summary = results(first, 200)
    failed = [r for r in recs if not r["ok"]]
    h.expect(not failed and summary["ok"] == 200, "all 200 calls answered",
             "failures: %r" % failed[:5])
    n1, n2 = echo_count("c1"), echo_count("c2")
    h.expect(n1 > 0 and n2 > 0, "both servers served (c1 %d, c2 %d)" % (n1, n2))
    h.expect(n1 + n2 == 200, "the servers handled 200 echo calls in all (%d)" % (n1 + n2))
    first.wait_exit(30)

    h.step("2. 400 calls; SIGKILL of c2 after 100 answers")
    second = loop("calls-2", 400, 2)
    kill_at = second.wait_line(lambda l: l.startswith('{"i": 99,'), 120, "the 100th answer")
    c2.signal(signal.SIGKILL)
    h.log("c2 killed after %d answers" % (kill_at + 1))
    c2_status = c2.wait_exit(10)
    h.expect(c2_status == -signal.SIGKILL, "c2 died of SIGKILL (%s)" % c2_status)
    recs, summary = results(second, 400 * 0.5 + 60)
    failed = [r for r in recs if not r["ok"]]
    detail = "failed calls: %r" % failed[:5]
    h.expect(len(failed) <= 1, "at most the call in flight at the kill was lost (%d lost)"
             % len(failed), detail)
    for r in failed:
        h.expect("MessagingTimeout" in r.get("error", "") and 99 <= r["i"] <= 110,
                 "the lost call (#%d) timed out right after the kill" % r["i"], detail)
    last_failure = max([r["i"] for r in failed], default=99)
    later = [r for r in recs if r["i"] > last_failure]
    h.expect(all(r["ok"] for r in later),
             "every later call (%d) was answered" % len(later), detail)
    slow = [r for r in later if r["ms"] > CALL_TIMEOUT * 1000]
    h.expect(not slow, "no later call took longer than the %ds timeout" % CALL_TIMEOUT,
             "slow calls: %r" % slow[:5])
    answered_late = sum(1 for r in later if r["ok"])
    gained = echo_count("c1") - n1
    h.expect(gained >= answered_late,
             "c1 answered the calls after the kill (%d more echo calls, %d answered after it)"
             % (gained, answered_late))
    second.wait_exit(30)

    h.step("stop c1")
    h.expect(c1.alive(), "c1 still running", "" if c1.alive() else c1.tail())
    rc = c1.stop(timeout=30)
    h.expect(rc == 0, "c1 exited 0 on SIGTERM (got %s)" % rc, "" if rc == 0 else c1.tail())


if __name__ == "__main__":
    sys.exit(harness.main(test, "competing_consumers", __doc__))

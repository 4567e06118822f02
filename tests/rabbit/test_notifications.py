#!/usr/bin/python3
"""Notifications between oslo.messaging and coport.

1. oslo.messaging notifiers -> coport-example-listener: priorities info and
   error in the oslo envelope (driver messagingv2) and one info
   notification sent bare (driver messaging, the version 1 format); the
   listener must print each with its priority, event type, publisher and
   payload.
2. coport-example-client notify -> an oslo.messaging listener (priorities
   info and error).
3. Listener pools: one coport notification reaches an oslo.messaging
   listener of pool A and a coport listener of pool B.
4. A coport notification sent while no listener exists waits in the
   topic's default queue (as oslo.messaging's notifier arranges) and an
   oslo.messaging listener started later receives it.
5. The broker's queues (each topic's, the pools') are those oslo.messaging
   14 declares with the URL's options (harness.check_queue_types: with
   --url-query rabbit_quorum_queue=true, quorum and durable).
"""

import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402


def _records(h, child, count, what, timeout=30):
    """The notifications `child` printed (JSON lines after `ready`), once
    there are `count` of them or `timeout` seconds have passed."""
    ready = next(i for i, line in enumerate(child.stdout) if line.strip() == "ready")
    try:
        child.wait_lines(count, timeout, what, start=ready + 1)
    except harness.TestFailure:
        pass
    lines = child.stdout[ready + 1:ready + 1 + count]
    h.expect(len(lines) == count, "%s printed %d notifications (%s)" % (child.name, count, what),
             "only %d within %ds\n%s" % (len(lines), timeout, child.tail()))
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            raise harness.TestFailure("%s printed a line that is not JSON: %r" % (child.name, line))
    return out


def _wait_exit(h, child, records, count):
    """A listener with --count N ends by itself (status 0) after N."""
    if len(records) < count:
        return
    rc = child.wait_exit(30)
    h.expect(rc == 0, "%s exited 0 after --count %d (got %s)" % (child.name, count, rc),
             "" if rc == 0 else child.tail())


def _check(h, records, expected, who):
    by_type = {r.get("event_type"): r for r in records}
    for want in expected:
        got = by_type.get(want["event_type"])
        if got is None:
            h.expect(False, "%s received %s" % (who, want["event_type"]),
                     "received: %r" % records)
            continue
        same = all(got.get(k) == v for k, v in want.items())
        h.expect(same, "%s received %s (priority %s) intact" % (who, want["event_type"],
                                                              want["priority"]),
                 "expected %r\n  got %r" % (want, got))


def test(h):
    t_a, t_b, t_c, t_d = (h.topic(s) for s in ("-a", "-b", "-c", "-d"))

    h.step("listeners: coport on %s, oslo on %s, pools A (oslo) and B (coport) on %s"
           % (t_a, t_b, t_c))
    coport_a = h.start("coport-listener", h.listener_cmd(h.url, t_a, count=3))
    oslo_b = h.start("oslo-listener", h.peer_cmd("listen", h.url, t_b, "--count", "2",
                                                 "--timeout", "120"))
    pool_a = h.start("oslo-listener-pool-A", h.peer_cmd("listen", h.url, t_c, "--count", "1",
                                                        "--pool", "pool-a", "--timeout", "120"))
    pool_b = h.start("coport-listener-pool-B", h.listener_cmd(h.url, t_c, pool="pool-b",
                                                              count=1))
    for c in (coport_a, oslo_b, pool_a, pool_b):
        c.wait_ready()

    h.step("1. oslo.messaging notifiers -> coport listener")
    sent = [
        dict(priority="info", event_type="coport.test.start", publisher_id="oslo-peer.a",
             payload={"n": 1, "text": "grüße 世界", "list": [1, None, True]}),
        dict(priority="error", event_type="coport.test.failed", publisher_id="oslo-peer.a",
             payload={"n": 2, "why": "on purpose"}),
    ]
    for n in sent:
        r = h.run("notify " + n["event_type"], h.peer_cmd(
            "notify", h.url, t_a, "--priority", n["priority"], "--event-type", n["event_type"],
            "--publisher", n["publisher_id"], "--payload", json.dumps(n["payload"])))
        h.require(r.rc == 0, "oslo notify %s (%s)" % (n["event_type"], n["priority"]),
                  r.describe())
    v1 = dict(priority="info", event_type="coport.test.v1", publisher_id="oslo-peer.v1",
              payload={"n": 3, "format": "version 1, no envelope"})
    r = h.run("notify v1", h.peer_cmd(
        "notify", h.url, t_a, "--driver", "messaging", "--priority", "info",
        "--event-type", v1["event_type"], "--publisher", v1["publisher_id"],
        "--payload", json.dumps(v1["payload"])))
    h.require(r.rc == 0, "oslo notify %s (bare, driver messaging)" % v1["event_type"],
              r.describe())
    records = _records(h, coport_a, 3, "3 oslo notifications")
    _check(h, records, sent + [v1], "the coport listener")
    _wait_exit(h, coport_a, records, 3)

    h.step("2. coport notifier -> oslo.messaging listener")
    sent = [
        dict(priority="info", event_type="coport.test.created", publisher_id="coport-test.b",
             payload={"id": 7, "name": "ünïcödé"}),
        dict(priority="error", event_type="coport.test.broken", publisher_id="coport-test.b",
             payload={"id": 8, "nested": {"k": [1, 2]}}),
    ]
    for n in sent:
        r = h.run("coport notify " + n["event_type"], h.client_cmd(
            h.url, t_b, "notify", "--priority", n["priority"], "--publisher", n["publisher_id"],
            n["event_type"], json.dumps(n["payload"])))
        h.require(r.rc == 0, "coport notify %s (%s)" % (n["event_type"], n["priority"]),
                  r.describe())
    records = _records(h, oslo_b, 2, "2 coport notifications")
    _check(h, records, sent, "the oslo listener")
    _wait_exit(h, oslo_b, records, 2)

    h.step("3. pools: one notification, one listener per pool")
    n = dict(priority="info", event_type="coport.test.pooled", publisher_id="coport-test.c",
             payload={"pools": ["pool-a", "pool-b"]})
    r = h.run("coport notify pooled", h.client_cmd(
        h.url, t_c, "notify", "--priority", "info", "--publisher", n["publisher_id"],
        n["event_type"], json.dumps(n["payload"])))
    h.require(r.rc == 0, "coport notify to the pools", r.describe())
    for child, who in ((pool_a, "the oslo listener of pool A"),
                       (pool_b, "the coport listener of pool B")):
        records = _records(h, child, 1, who)
        _check(h, records, [n], who)
        _wait_exit(h, child, records, 1)

    h.step("4. a notification sent before any listener exists")
    n = dict(priority="info", event_type="coport.test.early", publisher_id="coport-test.d",
             payload={"early": True})
    r = h.run("coport notify early", h.client_cmd(
        h.url, t_d, "notify", "--priority", "info", "--publisher", n["publisher_id"],
        n["event_type"], json.dumps(n["payload"])))
    h.require(r.rc == 0, "coport notify with no listener", r.describe())
    late = h.start("oslo-listener-late", h.peer_cmd("listen", h.url, t_d, "--count", "1",
                                                    "--timeout", "60"))
    late.wait_ready()
    records = _records(h, late, 1, "the early notification", timeout=30)
    _check(h, records, [n], "the oslo listener started afterwards")
    _wait_exit(h, late, records, 1)

    h.step("the queues on the wire, as oslo.messaging declares them with the URL's options")
    h.check_queue_types([t_a, t_b, t_c, t_d], rpc=False, replies=False, queues=[
        t_a + ".info", t_a + ".error", t_b + ".info", t_b + ".error", "pool-a", "pool-b",
        t_d + ".info"])


if __name__ == "__main__":
    sys.exit(harness.main(test, "notifications", __doc__))

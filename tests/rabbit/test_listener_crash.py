#!/usr/bin/python3
"""Notifications are at least once: a listener's crash loses none.

Two coport-example-listener processes of one pool on one topic. A is slow:
it handles one notification at a time (--max-in-flight 1) and holds each
for HOLD_MS after printing it before its handler returns and the
notification is acknowledged (--handle-ms). B is a plain listener started
after A's death.

1. A starts; SENT notifications (payload {"n": 1..SENT}) are published
   with coport-example-client notify. The broker delivers them all to A's
   connection (prefetch 64): A prints them one by one.
2. Once A has printed KILL_AFTER of them, the broker must show the pool's
   queue holding SENT - (KILL_AFTER - 1) messages, all unacknowledged:
   A acknowledged the ones whose handler returned and not the one it still
   holds in its handler. Then A gets SIGKILL (no close, no ack, no
   requeue of its own).
3. The broker requeues what A held: SENT - (KILL_AFTER - 1) ready messages.
   B starts in the same pool with --count that many, prints them and exits
   0.

Guaranteed, and checked: every notification sent is printed by A or B
(none lost); an acknowledged one is not delivered again (B never prints
A's first KILL_AFTER - 1); one taken but not acknowledged when its
listener dies, whether in its handler or still waiting in the listener's
connection, is delivered again, to another listener of the pool: B prints
all of those, and the one A was holding is printed twice (by A and B).
Not guaranteed: exactly once, or any order.

Breaking changes it catches: acknowledging a notification when it is taken
rather than when its handler is done (the broker shows one message fewer
before the kill, and the held one is not delivered again), acknowledging
more than the handled message (a multiple ack, a wrong delivery tag: fewer
messages requeued, B misses some), a pool whose listeners do not share one
queue (B gets nothing), a listener with --count that does not exit 0. A
listener library changed to acknowledge each notification before running
its handler failed three checks: the broker's figures before the kill
(17 unacknowledged), the requeued count, and the redelivery of #3.

Needs a broker of its own (skipped, 77, with an external
COPORT_TEST_RABBIT_URL): it reads the queue's figures with rabbitmqctl.
"""

import json
import signal
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

SENT = 20
KILL_AFTER = 3      # A gets SIGKILL once it has printed this many
# A's handling time: the window for the broker's figures (longer under the
# sanitizers, harness.TIME_SCALE).
HOLD_MS = int(6000 * harness.TIME_SCALE)
EVENT = "coport.test.crash"


def test(h):
    if h.self_test:
        raise harness.Skip("needs coport-example-listener --handle-ms (no oslo.messaging stand-in)")
    b = h.need_state()
    topic, pool = h.topic(), h.topic("-pool")

    def queue():
        """The pool's queue on the broker: (ready, unacknowledged, consumers)."""
        try:
            rows = json.loads(b.ctl("list_queues", "--formatter", "json", "name", "messages_ready",
                                    "messages_unacknowledged", "consumers"))
        except (ValueError, harness.broker.BrokerError) as e:
            raise harness.TestFailure("rabbitmqctl list_queues: %s" % e)
        for r in rows:
            if r["name"] == pool:
                return r["messages_ready"], r["messages_unacknowledged"], r["consumers"]
        raise harness.TestFailure("no queue %s on the broker" % pool)

    def settled(what):
        """The pool queue's ready messages once no consumer is left and
        the broker has requeued what the last one held."""
        def check():
            ready, unacked, consumers = queue()
            return (ready,) if unacked == 0 and consumers == 0 else None
        return h.poll(check, 30, what)[0]

    def printed(child):
        """The n of the notifications `child` printed after `ready`."""
        ready = child.stdout.index("ready")
        out = []
        for line in list(child.stdout[ready + 1:]):
            try:
                n = json.loads(line)
            except ValueError:
                raise harness.TestFailure("%s printed a line that is not JSON: %r" % (child.name, line))
            if n.get("event_type") != EVENT:
                h.require(False, "%s printed only this test's notifications" % child.name, repr(n))
            out.append(n["payload"]["n"])
        return out

    h.step("listener A (held %d ms each, one at a time) in pool %s on topic %s"
           % (HOLD_MS, pool, topic))
    a = h.start("A", h.listener_cmd(h.url, topic, pool=pool) +
                ["--handle-ms", str(HOLD_MS), "--max-in-flight", "1"])
    a.wait_ready()

    h.step("1. %d notifications" % SENT)
    for i in range(1, SENT + 1):
        r = h.run("notify #%d" % i, h.client_cmd(h.url, topic, "notify", EVENT,
                                                 json.dumps({"n": i})))
        if r.rc != 0:
            h.require(False, "notify #%d" % i, r.describe())
    h.ok("%d notifications sent" % SENT)

    h.step("2. A holds #%d of what it printed: SIGKILL" % KILL_AFTER)
    ready_at = a.stdout.index("ready")
    a.wait_lines(KILL_AFTER, KILL_AFTER * HOLD_MS / 1000.0 + 60,
                 "%d notifications printed by A" % KILL_AFTER, start=ready_at + 1)
    held = SENT - (KILL_AFTER - 1)

    def acks_arrived():
        q = queue()
        return q if q[0] + q[1] <= held else None

    # Within A's hold of its last one: its earlier acks reach the broker.
    ready, unacked, consumers = h.poll(acks_arrived, HOLD_MS / 1000.0,
                                       "the acknowledgements of A's first %d on the broker"
                                       % (KILL_AFTER - 1))
    a.signal(signal.SIGKILL)
    rc = a.wait_exit(10)
    h.expect(rc == -signal.SIGKILL, "A died of SIGKILL (%s)" % rc)
    by_a = printed(a)
    h.require(len(by_a) == KILL_AFTER,
              "A was still holding #%d when it was killed (it printed %d)" % (KILL_AFTER, len(by_a)),
              "HOLD_MS (%d) is too short for rabbitmqctl on this machine" % HOLD_MS)
    h.expect((ready, unacked, consumers) == (0, held, 1),
             "before the kill the broker had %d of %d unacknowledged, held by A: the %d A had "
             "handled were acknowledged, the one in its handler was not (ready %d, "
             "unacknowledged %d, consumers %d)"
             % (held, SENT, KILL_AFTER - 1, ready, unacked, consumers))

    h.step("3. the broker requeues what A held; B takes it")
    requeued = settled("A's messages requeued (no consumer, none unacknowledged)")
    h.expect(requeued == held, "%d requeued for the pool (%d)" % (held, requeued))
    if requeued == 0:
        h.require(False, "the broker requeued something for B")
    listener_b = h.start("B", h.listener_cmd(h.url, topic, pool=pool, count=requeued))
    listener_b.wait_ready()
    listener_b.wait_lines(requeued, 60, "%d notifications printed by B" % requeued,
                          start=listener_b.stdout.index("ready") + 1)
    rc = listener_b.wait_exit(30)
    h.expect(rc == 0, "B exited 0 after --count %d (got %s)" % (requeued, rc),
             "" if rc == 0 else listener_b.tail())
    by_b = printed(listener_b)

    everything = set(range(1, SENT + 1))
    missing = everything - set(by_a) - set(by_b)
    h.expect(not missing, "every notification printed by A or B (%d of %d)"
             % (len(everything - missing), SENT), "never printed: %s" % sorted(missing))
    h.expect(len(by_b) == len(set(by_b)), "B printed each once", "B: %r" % by_b)
    finished, in_handler = set(by_a[:-1]), by_a[-1]
    h.expect(not finished & set(by_b), "none of those A had finished (%s) came again"
             % ", ".join("#%d" % n for n in sorted(finished)), "B: %r" % by_b)
    duplicates = sorted(set(by_a) & set(by_b))
    h.expect(duplicates == [in_handler],
             "the one A held in its handler (#%d) came again, to B" % in_handler,
             "printed by both: %s" % duplicates)
    left = settled("B's connection gone from the broker")
    h.expect(left == 0, "B acknowledged all it printed: the pool's queue is empty (%d left)"
             % left)

    h.log("figures: sent %d; printed by A %d, then SIGKILL while it held #%d (acknowledged "
          "%d); requeued %d; printed by B %d; redelivered duplicates %d (%s); never printed %d"
          % (SENT, len(by_a), in_handler, SENT - requeued, requeued, len(by_b),
             len(duplicates), ", ".join("#%d" % n for n in duplicates) or "none", len(missing)))


if __name__ == "__main__":
    sys.exit(harness.main(test, "listener_crash", __doc__))

#!/usr/bin/python3
"""A topic's queues declared quorum by one side and classic by the other:
the broker refuses the second declaration as inequivalent, and coport must
say so and stop, not hang or retry.

1. An oslo.messaging server declares topic T with rabbit_quorum_queue=true.
   A coport server started on T with a classic URL (once per executor of
   --executors) must fail to start: exit non-zero within START_LIMIT
   seconds without printing `ready`, its stderr naming the queue T,
   x-queue-type, the broker's value (quorum) and what coport asked for,
   the refusal logged once (no retry loop). The same with
   amqp_durable_queues=true, where the queue's durability agrees and only
   x-queue-type differs. The oslo.messaging server still serves T, whose
   queue is still quorum.
2. The reverse: a coport server on quorum serves topic T2; oslo.messaging
   servers started on T2 with a classic URL (plain, and with
   amqp_durable_queues=true) -- what oslo.messaging does is logged, not
   asserted; the coport server must go on serving T2, whose queue stays
   quorum.
3. A coport client on quorum calls a topic whose exchange X an
   oslo.messaging server declared classic (not durable): the client's
   declaration of X (durable) is refused; it must exit non-zero well before
   its call timeout, with an error naming X and 'durable'. X still serves
   classic callers.
"""

import json
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

START_LIMIT = 30 * harness.TIME_SCALE  # a refused start must end within it
CALL_TIMEOUT = 20  # the refused client's --timeout: it must end well before
QUORUM_KEYS = ("rabbit_quorum_queue", "rabbit_quorum_delivery_limit",
               "rabbit_quorum_max_memory_length", "rabbit_quroum_max_memory_length",
               "rabbit_quorum_max_memory_bytes", "rabbit_quroum_max_memory_bytes")


def _classic(url):
    """`url` without the quorum options (--url-query may have added them)."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
             if k not in QUORUM_KEYS]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _refusals(lines):
    return [l for l in lines if "inequivalent" in l or "PRECONDITION_FAILED" in l]


def _queue_row(h, name):
    return h.broker_queues().get(name)


def _refused_start(h, name, cmd, queue):
    """A coport server whose queue `queue` the broker holds as quorum,
    started classic: it must end, non-zero, naming what was refused."""
    t0 = time.monotonic()
    child = h.start(name, cmd)
    rc = child.wait_exit(START_LIMIT)
    took = time.monotonic() - t0
    if rc is None:
        h.expect(False, "%s: a refused start ends within %.0fs" % (name, START_LIMIT),
                 child.tail())
        child.kill()
        return
    h.expect(rc != 0, "%s exited non-zero (%s) after %.1fs" % (name, rc, took), child.tail())
    h.expect("ready" not in [l.strip() for l in child.stdout],
             "%s did not print `ready`" % name, child.tail())
    refusals = _refusals(child.stderr + child.stdout)
    for line in refusals:
        h.log("  %s: %s" % (name, line.strip()[:800]))
    # With a classic URL coport's queue is not durable either: the broker
    # (3.10) compares durability first and names only that ('durable'),
    # which does not tell the operator that the queue is quorum; coport must
    # name x-queue-type all the same (e.g. by declaring it again, as durable
    # as the broker has it, to learn the next inequivalent argument).
    named = [l for l in child.stderr if "inequivalent" in l and "x-queue-type" in l and queue in l]
    h.expect(bool(named), "%s: its stderr names the queue %s and x-queue-type in a line with "
             "'inequivalent'" % (name, queue), child.tail())
    h.expect(any("quorum" in l for l in named),
             "%s: ... and the broker's value (quorum)" % name, child.tail())
    h.expect(any(("classic" in l or "none" in l or "not set" in l) for l in named),
             "%s: ... and what coport asked for (classic / none)" % name, child.tail())
    # Refused once: no retry loop (each retry would declare, and be refused,
    # and log it, again).
    logged = [l for l in child.stderr if "[error]" in l and "inequivalent" in l]
    connects = [l for l in child.stderr if "connected to" in l]
    h.expect(len(logged) == 1, "%s: the refusal logged once, not retried (%d time(s); %d "
             "connection(s))" % (name, len(logged), len(connects)), child.tail())


def _oslo_reaction(h, name, cmd, within=30):
    """Starts an oslo.messaging server that the broker will refuse and logs
    what it does within `within` seconds (not asserted); returns its
    status (None: still running, then killed)."""
    t0 = time.monotonic()
    child = h.start(name, cmd)
    try:
        child.wait_line(lambda l: l.strip() == "ready", within, "`ready`")
        ready = True
    except harness.TestFailure:
        ready = False
    rc = child.wait_exit(0.1 if ready else 5)
    took = time.monotonic() - t0
    refusals = _refusals(child.stderr)
    if ready:
        what = "printed `ready` after %.1fs and runs" % took
    elif rc is None:
        what = "still running after %.0fs without `ready`" % took
    else:
        what = "exited %s after %.1fs" % (rc, took)
    h.log("oslo.messaging (%s): %s; %d refusal line(s) in its log%s" % (
        name, what, len(refusals), (", the last: " + refusals[-1].strip()[:600]) if refusals
        else ""))
    if rc is None:
        child.stop(10)
    return rc


def test(h):
    if h.self_test:
        raise harness.Skip("what coport prints on a refused declaration: no oslo.messaging "
                           "stand-in")
    h.need_state()
    classic = _classic(h.url)
    quorum = harness.with_query(classic, "rabbit_quorum_queue=true")
    durable_classic = harness.with_query(classic, "amqp_durable_queues=true")
    executors = [e for e in h.args.executors.split(",") if e]

    # ---- 1 ----
    t1 = h.topic("-1")
    h.step("1. an oslo.messaging server declares %s quorum" % t1)
    py = h.start("oslo-quorum-server", h.peer_cmd("server", quorum, t1, "--server", "p1"))
    py.wait_ready()
    row = _queue_row(h, t1)
    h.require(row is not None and row["type"] == "quorum", "the queue %s is quorum" % t1,
              repr(row))
    for executor in executors:
        h.step("1. a coport server (executor %s, classic URL) on %s must refuse to start"
               % (executor, t1))
        _refused_start(h, "coport-classic-%s" % executor,
                       h.server_cmd(classic, t1, server="c-%s" % executor, executor=executor), t1)
    h.step("1. the same with amqp_durable_queues=true: only x-queue-type differs")
    _refused_start(h, "coport-durable-classic",
                   h.server_cmd(durable_classic, t1, server="c-durable", executor=executors[-1]),
                   t1)
    r = h.run("oslo call on %s" % t1, h.oslo_client_cmd(quorum, t1, "call", "echo",
                                                       '{"value": 1}', timeout=20), timeout=60)
    h.expect(r.rc == 0 and r.json() == 1, "the oslo.messaging server still serves %s" % t1,
             r.describe())
    row = _queue_row(h, t1)
    h.expect(row is not None and row["type"] == "quorum" and row["durable"],
             "the queue %s is still quorum and durable" % t1, repr(row))
    h.expect(py.alive(), "the oslo.messaging server still runs", "" if py.alive() else py.tail())
    h.stop_all([py])

    # ---- 2 ----
    t2 = h.topic("-2")
    h.step("2. a coport server on quorum serves %s; oslo.messaging servers come classic" % t2)
    cp = h.start("coport-quorum-server", h.server_cmd(quorum, t2, server="c1",
                                                      executor=executors[-1]))
    cp.wait_ready()
    row = _queue_row(h, t2)
    h.require(row is not None and row["type"] == "quorum" and row["durable"],
              "the queue %s is quorum and durable" % t2, repr(row))
    _oslo_reaction(h, "oslo-classic-server", h.peer_cmd("server", classic, t2, "--server", "p2"))
    _oslo_reaction(h, "oslo-durable-classic-server",
                   h.peer_cmd("server", durable_classic, t2, "--server", "p3"))
    h.expect(cp.alive(), "the coport server still runs", "" if cp.alive() else cp.tail())
    r = h.run("coport call on %s" % t2, h.client_cmd(quorum, t2, "call", "echo", '{"value": 2}',
                                                     timeout=20), timeout=60)
    h.expect(r.rc == 0 and r.json() == 2, "the coport server still serves %s" % t2,
             r.describe())
    row = _queue_row(h, t2)
    h.expect(row is not None and row["type"] == "quorum" and row["durable"],
             "the queue %s is still quorum and durable" % t2, repr(row))
    codes = h.stop_all([cp])
    h.expect(codes[cp.name] == 0, "the coport server exited 0 on SIGTERM (got %s)"
             % codes[cp.name], "" if codes[cp.name] == 0 else cp.tail())

    # ---- 3 ----
    t3 = h.topic("-3")
    exchange = h.topic("-x")
    h.step("3. an oslo.messaging server on exchange %s (classic: not durable), topic %s"
           % (exchange, t3))
    py = h.start("oslo-classic-exchange-server", h.peer_cmd(
        "server", classic, t3, "--server", "p4", "--exchange", exchange))
    py.wait_ready()
    ex = h.broker_exchanges().get(exchange)
    h.require(ex is not None and not ex["durable"], "the exchange %s is not durable" % exchange,
              repr(ex))
    h.step("3. a coport client on quorum calls %s on %s" % (t3, exchange))
    r = h.run("coport quorum call", h.client_cmd(quorum, t3, timeout=CALL_TIMEOUT) + [
        "--exchange", exchange, "call", "echo", '{"value": 3}'], timeout=CALL_TIMEOUT + 30)
    h.log("the coport client: %s" % r.describe())
    h.expect(r.rc not in (0, 2, None), "the refused call exits non-zero, not on its timeout "
             "(exit %s)" % r.rc, r.describe())
    h.expect(r.seconds < CALL_TIMEOUT / 2.0, "... well before its %ds timeout (%.1fs)" % (
        CALL_TIMEOUT, r.seconds), r.describe())
    lines = (r.err + "\n" + r.out).splitlines()
    named = [l for l in lines if exchange in l and "durable" in l]
    h.expect(bool(named), "... with an error naming the exchange and 'durable'", r.describe())
    # The program's own message says that the broker refused a declaration
    # (a send completes with an error code: errc::declare_refused); the
    # driver's error line above it names the exchange and the argument.
    own = [l for l in r.err.splitlines() if l.startswith("coport-example-client:")]
    h.expect(any("the broker refused a declaration" in l for l in own),
             "... and its own message says the broker refused a declaration: %s"
             % (own[-1][:300] if own else "(none)"), r.describe())
    h.expect(len([l for l in lines if "cannot be declared" in l]) == 1,
             "... logged once", r.describe())
    r = h.run("oslo classic call", h.peer_cmd("client", classic, t3, "--exchange", exchange,
                                              "--timeout", "20", "call", "echo", '{"value": 4}'),
              timeout=60)
    h.expect(r.rc == 0 and r.json() == 4, "the exchange %s still serves classic callers"
             % exchange, r.describe())
    h.stop_all([py])
    # JSON of the rows seen, for the record.
    h.log("queues: %s" % json.dumps({n: (r["type"], r["durable"]) for n, r in
                                     h.broker_queues().items() if not n.startswith("reply_")},
                                    sort_keys=True))


def _configure(p):
    p.add_argument("--executors", default="fiber,coro",
                   help="the coport servers' executors to try, comma-separated")


if __name__ == "__main__":
    sys.exit(harness.main(test, "quorum_mismatch", __doc__, configure=_configure))

#!/usr/bin/python3
"""coport serves through the loss of RabbitMQ cluster nodes, with quorum queues.

Runs against the three-node cluster of with_broker.py --cluster (skipped,
77, without one) through its failover list, with the query

    ?rabbit_quorum_queue=true&heartbeat=4&connect_timeout=2

so that the RPC queues (the topic's and each server's) are quorum queues
replicated on the three nodes, a broker that stops answering is noticed
within about two heartbeats (8 s), and a coport program whose first host
is paused tries the next one after 2 s. The same URL serves the coport
programs and the oslo.messaging ones (oslo_peer.py sets its query's
options in [oslo_messaging_rabbit], heartbeat as
heartbeat_timeout_threshold, and drops coport's connect_timeout).

Two coport servers serve one topic, one on each executor
(coport-example-server --executor fiber and --executor coro; with
--executors coro only the second, for a tree built without fibers). The
load, kept up from before the first fault to after the last:

  coport calls  coport-example-client call add {"a": 1000000, "b": I},
                one begun every EVERY seconds (0.1) whatever the earlier
                ones do, at most MAX_IN_FLIGHT at a time (timeout
                CALL_TIMEOUT); answered when it prints 1000000 + I
  coport casts  coport-example-client cast sleep_ms {"ms": 0}, at the same
                pace; confirmed when it exits 0 (the client exits once the
                broker confirmed the message)
  oslo calls    oslo_peer.py call-loop: oslo.messaging calls of echo one
                after the other, INTERVAL_MS apart (timeout CALL_TIMEOUT)

Each method belongs to one kind of load, so the servers' counts() (summed
over both servers, less what they counted before the load) tell how often
each ran.

Phases, each ordered by polling for its conditions (no sleeps between
steps):

  1. kill9     the node leading the topic's queue gets SIGKILL
  2. rejoin    it is started again (same name, ports and data); the
               cluster runs three nodes again and the queue has its three
               members
  3. stop      another node (the leader, unless it is the one killed
               before) is stopped gracefully; then started again and
               rejoined
  4. pause     the node leading the topic's queue is stopped with SIGSTOP
               for PAUSE_SECONDS (three heartbeats), then resumed: its
               clients see a partition (their heartbeats time out, they
               reconnect to another node), the other nodes a frozen peer
               (shorter than the distribution's net_ticktime, 45 to 75 s,
               so the cluster does not split)

After each fault, every kind of caller must have a call answered that began
after the fault, within RECOVER_WITHIN seconds (60, times
COPORT_TEST_TIME_SCALE) of the check's start (for the pause: of the
resume), and each server must answer counts() on its own queue again.
Recovery time is from the fault to the end of the first such answered
call. During the pause RabbitMQ 3.10 stays up for what is already set up
on the other nodes (consumers, quorum queues, whose leader moves), but
every declaration or binding anywhere in the cluster waits for the frozen
node (its database transactions include it) until it is resumed or seen
down: a program that lost its connection to the paused node reconnects to
another but cannot declare its queues there, so serving comes back with
the resume, not before.

Checked at the end (and printed as one block of figures):

  - no call hung: every coport call ended within CALL_TIMEOUT + SLACK
    (killed and counted as hung otherwise), every oslo call within
    CALL_TIMEOUT + PAUSE_SECONDS + SLACK. A call begun during the pause
    can end past its own CALL_TIMEOUT (up to the resume, about 12 s in the
    runs so far): it waits for its reply queue's declaration, which waits
    for the frozen node, and the call's timeout does not bound that wait
    (coport's rpc_timeout, 30 s, does). An oslo.messaging client's wait
    is bounded by the resume alone (its reconnection to the paused node
    and its declarations wait for it; 24 s was seen on a loaded machine),
    so its calls get the pause on top;
  - RPC methods ran at most once: answered <= handled <= attempted, for
    add (coport) and for echo (oslo; plus one call the loop may have had
    in flight when it was stopped). A request can still reach the servers
    twice: the ack of its first delivery lost with the connection it went
    out on (to the node that was paused), or an oslo.messaging client
    publishing it again after a reconnection (it publishes without
    confirms; coport's client never sends a request twice). oslo.messaging's
    own servers drop a request whose _unique_id is among the last 16 they
    took; coport's servers do not, and such a request fails this check
    (seen in one run in ten of the oslo calls here);
  - casts are at least once: every confirmed cast was handled (polled
    until the servers' count reaches the confirmed count, DRAIN_WITHIN
    seconds); lost = confirmed - handled must be 0;
  - the servers survived and stop cleanly on SIGTERM (exit 0).

Wall time: 60 to 80 s for the test, plus 15 to 25 s for the cluster's
start, on a busy two-core machine (ctest: 58 to 78 s in all).
"""

import json
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import broker  # noqa: E402
import harness  # noqa: E402

QUERY = "rabbit_quorum_queue=true&heartbeat=4&connect_timeout=2"
HEARTBEAT = 4
CALL_TIMEOUT = 6            # seconds, every call
SLACK = 10 * harness.TIME_SCALE   # a client program's start and end around its call
EVERY = 0.1                 # seconds between two coport calls, and two casts
MAX_IN_FLIGHT = 40          # coport calls (and casts) at a time
INTERVAL_MS = 20            # between two oslo calls
PAUSE_SECONDS = 3 * HEARTBEAT
# Past this, a call hung: a coport call ends within its timeout and its
# program's start and end; an oslo.messaging call begun in the pause may
# also wait for the resume (see above).
HUNG_AFTER = {"coport": CALL_TIMEOUT + SLACK, "oslo": CALL_TIMEOUT + PAUSE_SECONDS + SLACK}
RECOVER_WITHIN = 60 * harness.TIME_SCALE
REJOIN_WITHIN = 90 * harness.TIME_SCALE
DRAIN_WITHIN = 30 * harness.TIME_SCALE
WARM_CALLS = 3              # answered calls of each kind before the first fault


class Load:
    """The coport calls and casts, each started by a pacer thread every
    EVERY seconds in a thread of its own (at most MAX_IN_FLIGHT at a time:
    the pace does not stop when a fault holds calls up, so that recovery is
    seen as soon as it happens), and the oslo call loop. Every call is
    recorded as (kind, start, end, outcome), outcome answered, failed or
    hung; every cast as (start, end, outcome), outcome confirmed, failed or
    hung."""

    def __init__(self, h, url, topic):
        self.h = h
        self.url = url
        self.topic = topic
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.calls = []
        self.casts = []
        self.pacers = []
        self.notes = []    # wrong answers, for the failure's detail
        self.slots = {"call": threading.Semaphore(MAX_IN_FLIGHT),
                      "cast": threading.Semaphore(MAX_IN_FLIGHT)}

    def _call(self, i):
        h = self.h
        t0 = time.monotonic()
        r = h.run("coport call %d" % i, h.client_cmd(
            self.url, self.topic, "call", "add", json.dumps({"a": 1000000, "b": i}),
            timeout=CALL_TIMEOUT), timeout=HUNG_AFTER["coport"])
        t1 = time.monotonic()
        if r.rc is None:
            outcome = "hung"
        elif r.rc == 0:
            try:
                answer = json.loads(r.out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                answer = None
            outcome = "answered" if answer == 1000000 + i else "failed"
            if outcome == "failed":
                with self.lock:
                    self.notes.append(r.describe())
        else:
            outcome = "failed"
        with self.lock:
            self.calls.append(("coport", t0, t1, outcome))

    def _cast(self, i):
        h = self.h
        t0 = time.monotonic()
        r = h.run("coport cast %d" % i, h.client_cmd(
            self.url, self.topic, "cast", "sleep_ms", '{"ms": 0}', timeout=CALL_TIMEOUT),
            timeout=HUNG_AFTER["coport"])
        outcome = "hung" if r.rc is None else "confirmed" if r.rc == 0 else "failed"
        with self.lock:
            self.casts.append((t0, time.monotonic(), outcome))

    def _pacer(self, what, fn):
        slots = self.slots[what]

        def one(i):
            try:
                fn(i)
            finally:
                slots.release()
        i = 0
        due = time.monotonic()
        while not self.stop.is_set():
            if not slots.acquire(timeout=0.5):
                continue
            i += 1
            threading.Thread(target=one, args=(i,), daemon=True).start()
            due += EVERY
            self.stop.wait(max(0.0, due - time.monotonic()))  # the load's pace

    def start(self):
        h = self.h
        self.oslo = h.start("oslo calls", h.peer_cmd(
            "call-loop", self.url, self.topic, "--count", "1000000", "--timeout",
            str(CALL_TIMEOUT), "--interval-ms", str(INTERVAL_MS), "--ready"))
        self.oslo.wait_ready()
        for what, fn in (("call", self._call), ("cast", self._cast)):
            self.pacers.append(threading.Thread(target=self._pacer, args=(what, fn), daemon=True))
        for t in self.pacers:
            t.start()

    def oslo_calls(self):
        """The oslo calls so far, as coport's: (kind, start, end, outcome)."""
        rows = []
        for line in list(self.oslo.stdout):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "i" not in rec:
                continue
            start = rec["start"]
            end = start + rec["ms"] / 1000.0
            hung = rec["ms"] > HUNG_AFTER["oslo"] * 1000
            rows.append(("oslo", start, end, "hung" if hung else
                         "answered" if rec["ok"] else "failed"))
        return rows

    def all_calls(self):
        with self.lock:
            return list(self.calls) + self.oslo_calls()

    def first_answer_after(self, t):
        """{kind: end of the first answered call begun at or after t}."""
        first = {}
        for kind, start, end, outcome in self.all_calls():
            if outcome == "answered" and start >= t and (kind not in first or end < first[kind]):
                first[kind] = end
        return first

    def finish(self):
        """Stops the load; returns how many oslo calls may have been in
        flight, begun but not reported, when the loop was stopped (1)."""
        self.stop.set()
        for t in self.pacers:
            t.join(10)
        deadline = time.monotonic() + CALL_TIMEOUT + SLACK + 30
        for slots in self.slots.values():  # every call and cast has ended
            for _ in range(MAX_IN_FLIGHT):
                slots.acquire(timeout=max(0.1, deadline - time.monotonic()))
        self.oslo.stop(timeout=10)
        return 1


def test(h):
    c = h.need_cluster()
    if h.self_test:
        raise harness.Skip("needs the coport programs (the stand-ins do not take the query)")
    executors = [e for e in h.args.executors.split(",") if e]
    url = h.url + "?" + h.args.query
    quorum = "rabbit_quorum_queue=true" in h.args.query
    topic = h.topic()
    figures = {"phases": []}

    h.step("coport servers (executors %s) on topic %s, through the failover list of %d nodes"
           % (", ".join(executors), topic, len(c.nodes)))
    servers = []
    for e in executors:
        srv = h.start(e, h.server_cmd(url, topic, server=e, executor=e))
        srv.wait_ready()
        servers.append(srv)

    def call(name, method, args, server=None):
        return h.run(name, h.client_cmd(url, topic, "call", method, json.dumps(args),
                                        server=server, timeout=CALL_TIMEOUT),
                     timeout=CALL_TIMEOUT + SLACK)

    def counts(e):
        r = call("counts on %s" % e, "counts", {}, server=e)
        return r.json() if r.rc == 0 else None

    def queue_state():
        """The broker's view of the test's queues, for a failure's detail."""
        try:
            out = c._ask("list_queues", "name", "type", "leader", "consumers", "messages_ready",
                         "messages_unacknowledged", timeout=30)
        except broker.BrokerError as e:
            return "  (no queue list: %s)\n" % e
        return "  -- the cluster's queues of the test --\n" + "".join(
            "  | %s\n" % l for l in out.splitlines() if topic in l or "name" in l)

    def all_counts(within, what):
        """counts() of every server, each asked until it answers."""
        got = {}
        for e, srv in zip(executors, servers):
            try:
                got[e] = h.poll(lambda e=e: counts(e), within, "%s: counts() on %s" % (what, e),
                                interval=0.5)
            except harness.TestFailure as failure:
                h.require(False, str(failure), srv.tail(40) + queue_state())
        return got

    h.until_served(lambda n: call("first call #%d" % n, "echo", {"value": n}), RECOVER_WITHIN,
                   "the servers answer")
    queues = [topic] + ["%s.%s" % (topic, e) for e in executors]
    for q in queues if quorum else []:
        members = h.poll(lambda q=q: (lambda m: m if m == [1, 2, 3] else None)(c.members_of(q)),
                         30, "queue %s with a member on each node" % q)
        h.ok("queue %s: quorum, members on nodes %s, leader node %s"
             % (q, members, c.leader_of(q)))

    before = all_counts(RECOVER_WITHIN, "before the load")
    h.step("load: a coport call and a coport cast every %gs, oslo calls one after the other"
           % EVERY)
    load = Load(h, url, topic)
    load.start()

    def warm():
        answered = {}
        for kind, _, _, outcome in load.all_calls():
            answered[kind] = answered.get(kind, 0) + (outcome == "answered")
        return all(answered.get(k, 0) >= WARM_CALLS for k in ("coport", "oslo"))
    h.poll(warm, RECOVER_WITHIN, "%d answered calls of each kind" % WARM_CALLS)
    h.ok("both kinds of callers are answered")

    def recovered(name, t_fault):
        """Waits until every kind of caller has had a call answered that
        began after t_fault and each server answers on its own queue."""
        first = h.poll(lambda: (lambda f: f if len(f) == 2 else None)(
            load.first_answer_after(t_fault)), RECOVER_WITHIN,
            "%s: a call of each kind answered after the fault" % name)
        all_counts(RECOVER_WITHIN, name)
        took = {k: v - t_fault for k, v in first.items()}
        h.ok("%s: served again: coport callers after %.1fs, oslo callers after %.1fs; "
             "both servers answer" % (name, took["coport"], took["oslo"]))
        figures["phases"].append((name, t_fault, took))

    def rejoined(name, n):
        names = sorted(b.node for b in c.nodes)
        h.poll(lambda: sorted(c.running_nodes()) == names, REJOIN_WITHIN,
               "%s: the cluster runs its %d nodes" % (name, len(names)))
        if quorum:
            h.poll(lambda: c.members_of(topic) == [1, 2, 3], REJOIN_WITHIN,
                   "%s: the topic's queue has its three members" % name)
        h.ok("%s: node %d is back in the cluster; the topic's queue has members on nodes "
             "1, 2, 3 (leader node %s)" % (name, n, c.leader_of(topic)))

    h.step("1. kill9: the leader of the topic's queue gets SIGKILL")
    killed = c.leader_of(topic) if quorum else 1
    h.require(killed is not None, "the topic's queue has a leader (node %s)" % killed)
    t = time.monotonic()
    c.kill9(killed)
    h.log("node %d (%s) killed" % (killed, c.node(killed).node))
    recovered("kill9 of node %d" % killed, t)
    h.ok("the queue's new leader is node %s" % c.leader_of(topic))

    h.step("2. rejoin: node %d started again" % killed)
    t = time.monotonic()
    c.start_again(killed)
    h.log("node %d started again in %.1fs" % (killed, time.monotonic() - t))
    rejoined("rejoin of node %d" % killed, killed)
    recovered("rejoin of node %d" % killed, t)

    h.step("3. stop: another node stopped gracefully, then started again")
    leader = c.leader_of(topic)
    stopped = leader if leader not in (None, killed) else next(
        n for n in range(1, len(c.nodes) + 1) if n != killed)
    t = time.monotonic()
    c.stop_node(stopped)
    h.log("node %d stopped in %.1fs (it led the queue: %s)" % (
        stopped, time.monotonic() - t, "yes" if stopped == leader else "no"))
    recovered("graceful stop of node %d" % stopped, t)
    t = time.monotonic()
    c.start_again(stopped)
    h.log("node %d started again in %.1fs" % (stopped, time.monotonic() - t))
    rejoined("restart of node %d" % stopped, stopped)
    recovered("restart of node %d" % stopped, t)

    h.step("4. pause: the leader of the topic's queue stopped (SIGSTOP) for %ds" % PAUSE_SECONDS)
    paused = c.leader_of(topic) if quorum else 1
    h.require(paused is not None, "the topic's queue has a leader (node %s)" % paused)
    t = time.monotonic()
    c.pause(paused)
    h.log("node %d paused" % paused)
    try:
        time.sleep(PAUSE_SECONDS)  # the fault's length, not an ordering wait
    finally:
        c.resume(paused)
    h.log("node %d resumed after %.1fs" % (paused, time.monotonic() - t))
    recovered("pause of node %d" % paused, t)
    rejoined("resume of node %d" % paused, paused)

    h.step("the load stops; the servers' counts")
    in_flight = load.finish()
    for srv in servers:
        h.expect(srv.alive(), "server %s survived the faults" % srv.name,
                 "" if srv.alive() else srv.tail())
    calls = load.all_calls()
    casts = list(load.casts)

    def handled(method, got):
        return sum(got[e].get(method, 0) - before[e].get(method, 0) for e in executors)

    confirmed = sum(1 for x in casts if x[2] == "confirmed")
    t_drain = time.monotonic()
    after = h.poll(lambda: (lambda got: got if handled("sleep_ms", got) >= confirmed else None)(
        all_counts(RECOVER_WITHIN, "drain")), DRAIN_WITHIN,
        "every confirmed cast handled (%d)" % confirmed, interval=0.5)
    h.ok("the casts drained in %.1fs" % (time.monotonic() - t_drain))

    h.step("figures")
    rows = {}
    for kind in ("coport", "oslo"):
        mine = [x for x in calls if x[0] == kind]
        rows[kind] = {o: sum(1 for x in mine if x[3] == o) for o in ("answered", "failed", "hung")}
        rows[kind]["attempted"] = len(mine)
        rows[kind]["longest"] = max((x[2] - x[1] for x in mine), default=0.0)
    rows["coport"]["handled"] = handled("add", after)
    rows["oslo"]["handled"] = handled("echo", after)
    rows["oslo"]["attempted"] += in_flight
    cast_rows = {o: sum(1 for x in casts if x[2] == o) for o in ("confirmed", "failed", "hung")}
    cast_rows["sent"] = len(casts)
    cast_rows["handled"] = handled("sleep_ms", after)
    lost = max(0, cast_rows["confirmed"] - cast_rows["handled"])

    lines = ["figures (call timeout %ds, heartbeat %ds, pause %ds, bound %.0fs per phase):"
             % (CALL_TIMEOUT, HEARTBEAT, PAUSE_SECONDS, RECOVER_WITHIN)]
    lines.append("  %-28s %9s %9s   %s" % ("phase", "coport s", "oslo s", "calls begun in it: "
                                          "attempted/answered/failed"))
    bounds = [p[1] for p in figures["phases"]] + [float("inf")]
    for (name, t_fault, took), t_next in zip(figures["phases"], bounds[1:]):
        inside = [x for x in calls if t_fault <= x[1] < t_next]
        lines.append("  %-28s %9.1f %9.1f   %d/%d/%d" % (
            name, took["coport"], took["oslo"], len(inside),
            sum(1 for x in inside if x[3] == "answered"),
            sum(1 for x in inside if x[3] != "answered")))
    for kind in ("coport", "oslo"):
        r = rows[kind]
        lines.append("  %-6s calls: attempted %d, answered %d, failed (timed out or refused) %d, "
                     "hung %d, handled by the servers %d (at least %d run twice); longest %.1fs"
                     % (kind, r["attempted"], r["answered"], r["failed"], r["hung"], r["handled"],
                        max(0, r["handled"] - r["attempted"]), r["longest"]))
    lines.append("  casts: sent %d, confirmed %d, failed %d, hung %d, handled %d; lost %d"
                 % (cast_rows["sent"], cast_rows["confirmed"], cast_rows["failed"],
                    cast_rows["hung"], cast_rows["handled"], lost))
    h.log("\n".join(lines))

    for kind in ("coport", "oslo"):
        r = rows[kind]
        h.expect(r["hung"] == 0, "%s calls: none hung past %.0fs (longest %.1fs)"
                 % (kind, HUNG_AFTER[kind], r["longest"]))
        h.expect(r["answered"] <= r["handled"] <= r["attempted"],
                 "%s calls ran at most once: %d answered <= %d handled <= %d attempted"
                 % (kind, r["answered"], r["handled"], r["attempted"]),
                 "" if kind == "coport" else
                 "  A request can reach the servers twice: its first delivery's ack lost with a\n"
                 "  connection (to the paused node), or an oslo.messaging client publishing it\n"
                 "  again after a reconnection (it publishes without confirms). oslo.messaging's\n"
                 "  servers drop a _unique_id among the last 16 they took; coport's do not.")
    h.expect(not load.notes, "no call answered with a wrong result",
             "\n".join(load.notes[:3]))
    h.expect(cast_rows["hung"] == 0, "no cast hung past %.0fs" % HUNG_AFTER["coport"])
    h.expect(lost == 0, "no confirmed cast lost: %d confirmed, %d handled"
             % (cast_rows["confirmed"], cast_rows["handled"]))
    h.expect(cast_rows["confirmed"] > 0 and rows["coport"]["answered"] > 0
             and rows["oslo"]["answered"] > 0, "there was load of every kind")

    h.step("stop the servers")
    for name, rc in h.stop_all(servers).items():
        h.expect(rc == 0, "%s exited 0 on SIGTERM (got %s)" % (name, rc))


def configure(p):
    p.add_argument("--executors", default="fiber,coro",
                   help="the coport servers' executors, one server each (fiber,coro)")
    p.add_argument("--query", default=QUERY,
                   help="the URL's query (%s); without rabbit_quorum_queue=true the queues "
                        "are classic and their members are not checked" % QUERY)


if __name__ == "__main__":
    sys.exit(harness.main(test, "cluster_node_loss", __doc__, configure=configure))

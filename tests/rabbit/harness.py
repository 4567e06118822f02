"""What the RabbitMQ test drivers (test_*.py) share: their command line,
child processes whose output is read line by line (waits have timeouts,
never sleeps), progress lines, and the check that no child printed the
broker password.

A driver is a function taking a Harness; harness.main(fn) runs it:

    def test(h):
        srv = h.start("server", h.server_cmd(h.url, topic, server="s1"))
        srv.wait_ready()
        r = h.run("call", h.client_cmd(h.url, topic, "call", "echo", '{"value": 1}'))
        h.expect(r.rc == 0, "call echo exited %s" % r.rc)

    if __name__ == "__main__":
        sys.exit(harness.main(test, "my_test"))

Exit status: 0 passed, 1 failed, 77 skipped. With --self-test the coport
programs are replaced by oslo.messaging stand-ins (oslo_peer.py), so that
a driver can be checked before the coport programs exist.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import broker  # noqa: E402
# The first line of any sanitizer report, as the checker of the other
# tests reads it.
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from expect_run import SANITIZER_REPORT  # noqa: E402

PYTHON = "/usr/bin/python3"  # the interpreter with oslo.messaging
OSLO_PEER = os.path.join(HERE, "oslo_peer.py")
PASSWORD = broker.PASSWORD
SKIP = 77


class TestFailure(Exception):
    """Ends the driver: the check cannot go on."""


class Skip(Exception):
    pass


class _Terminated(BaseException):
    pass


def _url_passwords(url):
    """The passwords of a URL, one per host of a failover list
    (rabbit://u:p@h1:p1,u:p@h2:p2/)."""
    try:
        netloc = urllib.parse.urlsplit(url).netloc if url else ""
        return [urllib.parse.urlsplit("x://%s/" % part).password for part in netloc.split(",")]
    except ValueError:
        return []


def with_query(url, query):
    """`url` with `query` (k=v&k2=v2) added to its query; the keys it
    already has stay."""
    if not url or not query:
        return url
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(
        query="&".join(q for q in (parts.query, query.lstrip("?&")) if q)))


def url_options(url):
    """The query of a rabbit:// URL as {key: value} (the last value of a key)."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query,
                                       keep_blank_values=True)) if url else {}


def _true(value):
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _arguments(raw):
    """rabbitmqctl's JSON arguments [[key, type, value], ...] as {key: value}:
    the broker takes an integer of any width as the same argument."""
    out = {}
    for item in raw or []:
        if isinstance(item, list) and len(item) == 3:
            out[item[0]] = item[2]
    return out


def _ctl_json(text):
    """The JSON rows rabbitmqctl --formatter json printed (a line of
    "Timeout: ..." or "Listing ..." may come before them)."""
    start = text.find("[")
    if start < 0:
        raise TestFailure("rabbitmqctl printed no JSON:\n%s" % text[-2000:])
    return json.loads(text[start:])


# Passwords no program may print: the private brokers' and that of an
# external broker given by COPORT_TEST_RABBIT_URL.
SECRETS = sorted({p for p in [PASSWORD] + _url_passwords(os.environ.get("COPORT_TEST_RABBIT_URL"))
                  if p and len(p) >= 4}, key=len, reverse=True)

# Stretches the windows a test's checks need between two of its own steps
# (not its timeouts): scripts/sanitize.sh sets 3, where every program runs
# several times slower while rabbitmqctl does not get faster.
TIME_SCALE = float(os.environ.get("COPORT_TEST_TIME_SCALE", "1") or "1")


def redact(text):
    text = str(text)
    for secret in SECRETS:
        text = text.replace(secret, "***")
    return text


def _quote(cmd):
    out = []
    for a in cmd:
        a = redact(a)
        out.append(a if a and all(c.isalnum() or c in "-_./:=,@%+" for c in a) else "'%s'" % a)
    return " ".join(out)


class Child:
    """A program running in the background; stdout and stderr are read by
    threads into lists of lines that the test can wait on."""

    def __init__(self, harness, name, cmd, env=None):
        self.h = harness
        self.name = name
        self.cmd = cmd
        self.stdout = []
        self.stderr = []
        self._cond = threading.Condition()
        self._stdout_done = False
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.pid = self.proc.pid
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, lines):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                lines.append(line)
                self._cond.notify_all()
            if self.h.verbose:
                self.h.log("    %s%s| %s" % (self.name, "" if lines is self.stdout else "!",
                                             redact(line)))
        stream.close()
        with self._cond:
            if lines is self.stdout:
                self._stdout_done = True
            self._cond.notify_all()

    def alive(self):
        return self.proc.poll() is None

    def wait_line(self, predicate, timeout, what, start=0):
        """Index of the first stdout line (from `start`) for which
        predicate(line) holds; fails after `timeout` seconds or if the
        program ends first."""
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.stdout):
                    if predicate(self.stdout[i]):
                        return i
                    i += 1
                if self._stdout_done:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        if self._stdout_done:
            self.wait_exit(5)  # closed its output: ending
        state = "ended with status %s" % self.proc.poll() if not self.alive() else \
            "still running after %.0fs" % timeout
        raise TestFailure("%s: %s not seen; the program %s\n%s" % (
            self.name, what, state, self.tail()))

    def wait_ready(self, timeout=60):
        t0 = time.monotonic()
        self.wait_line(lambda l: l.strip() == "ready", timeout, "`ready`")
        self.h.log("%s is ready (%.1fs)" % (self.name, time.monotonic() - t0))

    def wait_lines(self, count, timeout, what, start=0):
        """The `count` stdout lines from `start`, once they are there."""
        if count > 0:
            self.wait_line(lambda l: True, timeout, what, start=start + count - 1)
        with self._cond:
            return list(self.stdout[start:start + count])

    def wait_exit(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._readers:
            t.join(5)
        return rc

    def stop(self, timeout=30, sig=signal.SIGTERM):
        """Signals the program and waits for it; SIGKILL if it does not end
        in time. Returns its exit status (None if it had to be killed)."""
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        rc = self.wait_exit(timeout)
        if rc is None:
            self.kill()
        return rc

    def signal(self, sig=signal.SIGTERM):
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def kill(self):
        if self.alive():
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        self.wait_exit(10)

    def output(self):
        with self._cond:
            return "\n".join(self.stdout + self.stderr)

    def tail(self, n=25):
        with self._cond:
            out = self.stdout[-n:]
            err = self.stderr[-n:]
        text = "  -- %s stdout (last %d lines) --\n" % (self.name, len(out))
        text += "".join("  | %s\n" % redact(l) for l in out)
        text += "  -- %s stderr (last %d lines) --\n" % (self.name, len(err))
        text += "".join("  | %s\n" % redact(l) for l in err)
        return text


class Result:
    def __init__(self, name, cmd, rc, out, err, seconds):
        self.name, self.cmd, self.rc, self.out, self.err, self.seconds = \
            name, cmd, rc, out, err, seconds

    def output(self):
        return self.out + "\n" + self.err

    def describe(self):
        return "%s exited %s after %.1fs\n  $ %s\n  stdout: %s\n  stderr: %s" % (
            self.name, "on timeout (killed)" if self.rc is None else self.rc, self.seconds,
            _quote(self.cmd), redact(self.out.strip())[-2000:] or "(empty)",
            redact(self.err.strip())[-2000:] or "(empty)")

    def json(self):
        try:
            return json.loads(self.out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise TestFailure("%s: no JSON on stdout\n%s" % (self.name, self.describe()))


class Harness:
    def __init__(self, test_name, args):
        self.test_name = test_name
        self.args = args
        self.verbose = args.verbose
        self.self_test = args.self_test
        self.t0 = time.monotonic()
        self.children = []
        self.results = []
        self.failures = []
        self.url = with_query(os.environ.get("COPORT_TEST_RABBIT_URL", ""),
                              getattr(args, "url_query", None))
        self.state_dir = os.environ.get("COPORT_TEST_RABBIT_STATE")
        self.tls_url = os.environ.get("COPORT_TEST_RABBIT_TLS_URL")
        self.ca_file = os.environ.get("COPORT_TEST_RABBIT_CA")
        self.wrong_ca_file = os.environ.get("COPORT_TEST_RABBIT_WRONG_CA")
        self._lock = threading.Lock()

    # ---- progress ----
    def log(self, msg):
        with self._lock:
            sys.stdout.write("[%s %6.1fs] %s\n" % (self.test_name, time.monotonic() - self.t0,
                                                   redact(msg)))
            sys.stdout.flush()

    def step(self, msg):
        self.log("== %s" % msg)

    def ok(self, msg):
        self.log("ok   %s" % msg)

    def expect(self, cond, msg, detail=""):
        """A failed expectation is recorded and the test goes on."""
        if cond:
            self.ok(msg)
            return True
        self.failures.append(msg)
        self.log("FAIL %s%s" % (msg, ("\n" + detail) if detail else ""))
        return False

    def require(self, cond, msg, detail=""):
        """A failed requirement ends the test."""
        if not self.expect(cond, msg, detail):
            raise TestFailure(msg)

    def topic(self, suffix=""):
        return "coport-%s%s-%d" % (self.test_name.replace("_", "-"), suffix, os.getpid())

    # ---- programs ----
    def _bin(self, option):
        path = getattr(self.args, option)
        if not path:
            raise TestFailure("--%s is required (or --self-test)" % option.replace("_", "-"))
        if not os.access(path, os.X_OK):
            raise TestFailure("%s is not an executable program" % path)
        return path

    def server_cmd(self, url, topic, server=None, executor=None):
        executor = executor or self.args.executor
        if self.self_test:
            cmd = [PYTHON, OSLO_PEER, "server", "--transport", url, "--topic", topic,
                   "--executor", {"fiber": "threading", "coro": "eventlet"}.get(executor, executor)]
        else:
            cmd = [self._bin("server_bin"), "--transport", url, "--topic", topic]
            if executor:
                cmd += ["--executor", executor]
        if server:
            cmd += ["--server", server]
        return cmd

    def client_cmd(self, url, topic, *command, server=None, fanout=False, version=None,
                   timeout=None):
        if self.self_test:
            cmd = [PYTHON, OSLO_PEER, "client", "--transport", url, "--topic", topic]
        else:
            cmd = [self._bin("client_bin"), "--transport", url, "--topic", topic]
        if server:
            cmd += ["--server", server]
        if fanout:
            cmd += ["--fanout"]
        if version:
            cmd += ["--version", version]
        if timeout is not None:
            cmd += ["--timeout", str(timeout)]
        return cmd + list(command)

    def listener_cmd(self, url, topic, pool=None, count=None):
        if self.self_test:
            cmd = [PYTHON, OSLO_PEER, "listen", "--transport", url, "--topic", topic]
        else:
            cmd = [self._bin("listener_bin"), "--transport", url, "--topic", topic]
        if pool:
            cmd += ["--pool", pool]
        if count is not None:
            cmd += ["--count", str(count)]
        return cmd

    def peer_cmd(self, command, url, topic, *args):
        """An oslo.messaging program of oslo_peer.py."""
        return [PYTHON, OSLO_PEER, command, "--url", url, "--topic", topic] + list(args)

    def oslo_client_cmd(self, url, topic, *command, server=None, fanout=False, version=None,
                        timeout=None):
        cmd = [PYTHON, OSLO_PEER, "client", "--url", url, "--topic", topic]
        if server:
            cmd += ["--server", server]
        if fanout:
            cmd += ["--fanout"]
        if version:
            cmd += ["--version", version]
        if timeout is not None:
            cmd += ["--timeout", str(timeout)]
        return cmd + list(command)

    def stop_all(self, children, timeout=30):
        """SIGTERM to all at once, then waits for each: {name: exit status
        or None when it had to be killed}."""
        for c in children:
            c.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        return {c.name: c.stop(timeout=max(0.1, deadline - time.monotonic())) for c in children}

    def start(self, name, cmd):
        if self.verbose:
            self.log("start %s: %s" % (name, _quote(cmd)))
        child = Child(self, name, cmd)
        self.children.append(child)
        return child

    def run(self, name, cmd, timeout=60, env=None):
        """Runs a program to its end (killed after `timeout` seconds), with
        `env` added to the environment."""
        t0 = time.monotonic()
        if self.verbose:
            self.log("run %s: %s" % (name, _quote(cmd)))
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(os.environ, **(env or {})))
        try:
            out, err = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            rc = None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        r = Result(name, cmd, rc, out.decode("utf-8", "replace"),
                   err.decode("utf-8", "replace"), time.monotonic() - t0)
        self.results.append(r)
        if self.verbose:
            self.log(r.describe())
        return r

    def call_json(self, name, cmd, timeout=60):
        """Runs a client call that must succeed; returns its JSON result."""
        r = self.run(name, cmd, timeout)
        if r.rc != 0:
            raise TestFailure("%s failed\n%s" % (name, r.describe()))
        return r.json()

    def poll(self, fn, timeout, what, interval=0.2):
        """Calls fn() until it returns a true value, which it returns."""
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TestFailure("%s: not seen within %.0fs" % (what, timeout))
            time.sleep(interval)

    def until_served(self, call, within, what, expected_miss=None):
        """Calls call(attempt) (a Result of one client call whose JSON
        result must be `attempt`) once a second until one is answered;
        each attempt must end within its own timeout, and one must be
        answered within `within` seconds. expected_miss(result), when
        given, tells which unanswered attempts are expected; any other
        fails the test. Returns the seconds it took."""
        t0 = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            r = call(attempt)
            if r.rc == 0 and r.json() == attempt:
                took = time.monotonic() - t0
                self.ok("%s: answered at attempt %d, %.1fs" % (what, attempt, took))
                return took
            self.log("attempt %d: exit %s after %.1fs: %s" % (
                attempt, r.rc, r.seconds, (r.err.strip().splitlines() or [r.out.strip()])[-1][:200]))
            if r.rc is None:
                self.require(False, "a client call ends within its timeout", r.describe())
            if expected_miss is not None and not expected_miss(r):
                self.require(False, "%s: attempt %d missed as expected" % (what, attempt),
                             r.describe())
            if time.monotonic() - t0 > within:
                self.require(False, "%s within %ds" % (what, within), r.describe())
            time.sleep(1)

    # ---- requirements of the environment ----
    def need_state(self):
        if not self.state_dir:
            raise Skip("needs a broker of its own (COPORT_TEST_RABBIT_STATE, set by "
                       "with_broker.py when it starts one)")
        return broker.load(self.state_dir)

    def need_cluster(self):
        """The cluster with_broker.py --cluster started (a broker.Cluster)."""
        if not (self.state_dir and os.environ.get("COPORT_TEST_RABBIT_CLUSTER") == "1"
                and broker.is_cluster(self.state_dir)):
            raise Skip("needs a RabbitMQ cluster of its own (COPORT_TEST_RABBIT_CLUSTER and "
                       "COPORT_TEST_RABBIT_STATE, set by with_broker.py --cluster)")
        return broker.load_cluster(self.state_dir)

    def need_tls(self):
        if not (self.tls_url and self.ca_file and self.wrong_ca_file):
            raise Skip("needs a TLS broker (with_broker.py --tls)")

    # ---- what the broker holds ----
    def options(self):
        """The query of the test's URL, {key: value}."""
        return url_options(self.url)

    def quorum(self):
        """Whether the URL asks for quorum queues (rabbit_quorum_queue=true)."""
        return _true(self.options().get("rabbit_quorum_queue", "false"))

    def broker_queues(self):
        """{name: row} of the queues on the test's broker; a row has type,
        durable, auto_delete and arguments ({key: value})."""
        rows = _ctl_json(self.need_state().ctl(
            "list_queues", "name", "type", "arguments", "durable", "auto_delete",
            "--formatter", "json", "--quiet"))
        return {r["name"]: dict(r, arguments=_arguments(r.get("arguments"))) for r in rows}

    def broker_exchanges(self):
        """{name: row} of the exchanges on the test's broker (type, durable,
        auto_delete)."""
        rows = _ctl_json(self.need_state().ctl(
            "list_exchanges", "name", "type", "durable", "auto_delete",
            "--formatter", "json", "--quiet"))
        return {r["name"]: r for r in rows}

    def expected_queue(self, kind):
        """What oslo.messaging 14 declares, with the URL's options, for a
        queue of `kind` (impl_rabbit's _get_queue_arguments, the
        declare_*_consumer and _publish_and_creates_default_queue): "topic"
        for the topic, server and notification queues (durable with
        amqp_durable_queues or rabbit_quorum_queue, quorum with the latter),
        "transient" for the reply and fanout queues (classic, not durable,
        x-expires from rabbit_transient_queues_ttl)."""
        o = self.options()
        quorum = _true(o.get("rabbit_quorum_queue", "false"))
        args = {}
        if _true(o.get("rabbit_ha_queues", "false")):
            args["x-ha-policy"] = "all"
        if kind == "topic":
            durable = quorum or _true(o.get("amqp_durable_queues", o.get("durable", "false")))
            auto_delete = _true(o.get("amqp_auto_delete", "false"))
            if quorum:
                args["x-queue-type"] = "quorum"
                for arg, keys in (("x-delivery-limit", ("rabbit_quorum_delivery_limit",)),
                                  ("x-max-in-memory-length", ("rabbit_quorum_max_memory_length",
                                                              "rabbit_quroum_max_memory_length")),
                                  ("x-max-in-memory-bytes", ("rabbit_quorum_max_memory_bytes",
                                                             "rabbit_quroum_max_memory_bytes"))):
                    value = next((int(o[k]) for k in keys if k in o), 0)
                    if value:
                        args[arg] = value
        else:
            quorum = durable = auto_delete = False
            ttl = int(float(o.get("rabbit_transient_queues_ttl",
                                  o.get("transient_queues_ttl", "1800"))))
            if ttl > 0:
                args["x-expires"] = ttl * 1000
        return {"type": "quorum" if quorum else "classic", "durable": durable,
                "auto_delete": auto_delete, "arguments": args}

    def _log_rows(self, rows):
        """One line per queue; reply queues declared alike share one."""
        def text(r):
            return "%s durable=%s auto_delete=%s %s" % (
                r["type"], str(r["durable"]).lower(), str(r["auto_delete"]).lower(),
                json.dumps(r["arguments"], sort_keys=True))
        replies = {}
        for name in sorted(rows):
            if name.startswith("reply_"):
                replies.setdefault(text(rows[name]), []).append(name)
            else:
                self.log("  queue %s: %s" % (name, text(rows[name])))
        for t, names in replies.items():
            self.log("  queue %s: %s" % (names[0] if len(names) == 1 else
                                         "reply_* (%d of them)" % len(names), t))

    def check_queue_types(self, topics, servers=(), fanouts=0, replies=True, queues=(),
                          rpc=True):
        """Checks on the wire that the broker holds the queues of `topics`
        (one or a list) as oslo.messaging 14 declares them with the URL's
        options (expected_queue). Of kind "topic" -- quorum and durable with
        rabbit_quorum_queue=true --: the topic queue (with `rpc`), `T.S` for
        each of `servers`, the other `queues` (pools), which must all be
        there, and any other queue `T.*` (notification queues). Of kind
        "transient": at least `fanouts` queues `T_fanout_*` per topic and,
        with `replies`, every reply_* queue (at least one). The topic
        exchange (openstack) must be as durable as the topic queues, a
        fanout exchange neither durable nor kept. A run that silently
        declared classic queues cannot pass."""
        topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.state_dir:  # an external broker; main() skips a quorum run there
            self.log("the queues are not checked: no broker of its own")
            return
        rows = self.broker_queues()
        exchanges = self.broker_exchanges()
        what = ", ".join(topics)
        required = [n for t in topics for n in ([t] if rpc else []) +
                    ["%s.%s" % (t, s) for s in servers]] + list(queues)
        topic_names = sorted(set(required) | {n for n in rows for t in topics
                                              if n.startswith(t + ".")})
        fanout_names = sorted(n for n in rows for t in topics if n.startswith(t + "_fanout_"))
        reply_names = sorted(n for n in rows if replies and n.startswith("reply_"))
        self.log("the broker's queues of %s%s:" % (what, " and the reply queues" if replies
                                                  else ""))
        self._log_rows({n: rows[n] for n in topic_names + fanout_names + reply_names
                        if n in rows})
        want_topic = self.expected_queue("topic")
        want_transient = self.expected_queue("transient")

        def same(name, want):
            r = rows.get(name)
            if r is None:
                return "%s: missing" % name
            got = {k: r[k] for k in want}
            return None if got == want else "%s: %r, expected %r" % (name, got, want)

        bad = [m for m in (same(n, want_topic) for n in topic_names) if m]
        self.expect(topic_names and not bad, "%s: the topic queues (%d) are %s, durable=%s, "
                    "arguments %s" % (what, len(topic_names), want_topic["type"],
                                      want_topic["durable"],
                                      json.dumps(want_topic["arguments"], sort_keys=True)),
                    "\n".join("  " + m for m in bad))

        if fanouts or replies:
            bad = [m for m in (same(n, want_transient) for n in fanout_names + reply_names) if m]
            for t in topics:
                n = sum(1 for f in fanout_names if f.startswith(t + "_fanout_"))
                if n < fanouts:
                    bad.append("%d fanout queues %s_fanout_*, expected at least %d" % (
                        n, t, fanouts))
            if replies and not reply_names:
                bad.append("no reply_* queue")
            self.expect(not bad, "%s: the %s queues (%d) are classic, not durable, arguments %s"
                        % (what, "fanout and reply" if replies else "fanout",
                           len(fanout_names + reply_names),
                           json.dumps(want_transient["arguments"], sort_keys=True)),
                        "\n".join("  " + m for m in bad))

        bad = []
        ex = exchanges.get("openstack")
        if ex is None or (ex["durable"], ex["auto_delete"]) != (want_topic["durable"],
                                                                want_topic["auto_delete"]):
            bad.append("openstack: %r, expected durable=%s auto_delete=%s" % (
                ex, want_topic["durable"], want_topic["auto_delete"]))
        for t in topics:
            ex = exchanges.get(t + "_fanout")
            if ex is not None and (ex["durable"], ex["auto_delete"]) != (False, True):
                bad.append("%s_fanout: %r, expected durable=False auto_delete=True" % (t, ex))
        self.expect(not bad, "the exchanges: openstack durable=%s, fanout exchanges not "
                    "durable, auto-deleted" % want_topic["durable"], "\n".join(bad))

    def compare_declarations(self):
        """The same kinds of queue declared by oslo.messaging and by coport,
        each on a topic of its own: an oslo.messaging server and a coport
        server (server d1), a call to each from a client of the same kind
        (its reply queue), a notification from each while no listener
        exists (the topic's default queue). Queue by queue, the broker must
        hold the same type, durability, auto-delete and arguments."""
        if not self.state_dir:
            self.log("the declarations are not compared: no broker of its own")
            return
        t_py, t_cp = self.topic("-decl-py"), self.topic("-decl-coport")
        self.step("declarations: oslo.messaging on %s, coport on %s" % (t_py, t_cp))
        servers = [self.start("decl-oslo-server", self.peer_cmd("server", self.url, t_py,
                                                                "--server", "d1")),
                   self.start("decl-coport-server", self.server_cmd(self.url, t_cp, server="d1"))]
        for s in servers:
            s.wait_ready()
        replies = {}
        for who, topic, cmd in (
                ("oslo", t_py, self.oslo_client_cmd(self.url, t_py, "call", "echo",
                                                    '{"value": 1}', timeout=30)),
                ("coport", t_cp, self.client_cmd(self.url, t_cp, "call", "echo",
                                                 '{"value": 1}', timeout=30))):
            before = set(n for n in self.broker_queues() if n.startswith("reply_"))
            r = self.run("%s call on %s" % (who, topic), cmd, timeout=60)
            self.require(r.rc == 0 and r.json() == 1, "%s client: call echo" % who, r.describe())
            after = set(n for n in self.broker_queues() if n.startswith("reply_"))
            replies[who] = sorted(after - before)
        for who, cmd in (
                ("oslo", self.peer_cmd("notify", self.url, t_py, "--event-type", "coport.decl",
                                       "--payload", "{}")),
                ("coport", self.client_cmd(self.url, t_cp, "notify", "coport.decl", "{}"))):
            r = self.run("%s notify" % who, cmd, timeout=60)
            self.require(r.rc == 0, "%s notifier: notify with no listener" % who, r.describe())
        rows = self.broker_queues()
        exchanges = self.broker_exchanges()

        def fanout(topic):
            return sorted(n for n in rows if n.startswith(topic + "_fanout_"))

        pairs = [("topic queue", [t_py], [t_cp]),
                 ("server queue", [t_py + ".d1"], [t_cp + ".d1"]),
                 ("fanout queue", fanout(t_py), fanout(t_cp)),
                 ("reply queue", replies["oslo"], replies["coport"]),
                 ("notification queue", [t_py + ".info"], [t_cp + ".info"])]
        for kind, py, cp in pairs:
            py_rows = {n: rows[n] for n in py if n in rows}
            cp_rows = {n: rows[n] for n in cp if n in rows}
            self.log("%s, oslo.messaging's:" % kind)
            self._log_rows(py_rows)
            self.log("%s, coport's:" % kind)
            self._log_rows(cp_rows)

            def norm(r):
                return (r["type"], r["durable"], r["auto_delete"],
                        json.dumps(r["arguments"], sort_keys=True))
            got_py = sorted({norm(r) for r in py_rows.values()})
            got_cp = sorted({norm(r) for r in cp_rows.values()})
            self.expect(len(py_rows) == 1 and got_py == got_cp,
                        "%s: coport declares it as oslo.messaging does %s" % (
                            kind, got_py[0] if len(got_py) == 1 else got_py),
                        "  oslo.messaging: %r\n  coport: %r" % (got_py, got_cp))
        ex_py, ex_cp = exchanges.get(t_py + "_fanout"), exchanges.get(t_cp + "_fanout")
        self.expect(ex_py is not None and ex_cp is not None and
                    (ex_py["type"], ex_py["durable"], ex_py["auto_delete"]) ==
                    (ex_cp["type"], ex_cp["durable"], ex_cp["auto_delete"]),
                    "fanout exchange: coport declares it as oslo.messaging does",
                    "  oslo.messaging: %r\n  coport: %r" % (ex_py, ex_cp))
        self.check_queue_types(t_py, servers=["d1"], fanouts=1, replies=False,
                               queues=[t_py + ".info"])
        self.check_queue_types(t_cp, servers=["d1"], fanouts=1, replies=True,
                               queues=[t_cp + ".info"])
        codes = self.stop_all(servers)
        for s in servers:
            self.expect(codes[s.name] == 0, "%s exited 0 on SIGTERM (got %s)" % (
                s.name, codes[s.name]), "" if codes[s.name] == 0 else s.tail())

    # ---- the end ----
    def cleanup(self):
        for c in self.children:
            if c.alive():
                c.kill()

    def check_password(self):
        texts = [(c.name, c.output()) for c in self.children]
        texts += [(r.name, r.output()) for r in self.results]
        leaks = []
        for name, text in texts:
            for line in text.splitlines():
                if any(secret in line for secret in SECRETS):
                    leaks.append("%s: %s" % (name, redact(line)[:300]))
        self.expect(not leaks, "no program printed the broker password (%d outputs checked)"
                    % len(texts), "\n".join("  " + l for l in leaks[:10]))

    def check_sanitizer_reports(self):
        """In a sanitizer tree a program may print a report and still exit
        as the test expects (killed on purpose, or its status not the
        subject): any report in any output fails the test."""
        texts = [(c.name, c.output()) for c in self.children]
        texts += [(r.name, r.output()) for r in self.results]
        found = ["%s: %s" % (name, text[m.start():].splitlines()[0][:200])
                 for name, text in texts for m in [SANITIZER_REPORT.search(text)] if m]
        self.expect(not found, "no program printed a sanitizer report (%d outputs checked)"
                    % len(texts), "\n".join("  " + l for l in found[:10]))


def _on_signal(signum, frame):
    raise _Terminated(signum)


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--server-bin", help="coport-example-server")
    p.add_argument("--client-bin", help="coport-example-client")
    p.add_argument("--listener-bin", help="coport-example-listener")
    p.add_argument("--executor", default="coro", help="fiber or coro (coport servers)")
    p.add_argument("--url-query", metavar="Q",
                   help="added to the broker URL's query for every program, coport's and "
                        "oslo.messaging's (e.g. rabbit_quorum_queue=true)")
    p.add_argument("--self-test", action="store_true",
                   help="oslo.messaging stand-ins for the coport programs")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="echo the programs' output and command lines")
    return p


def main(test, name, description="", argv=None, configure=None):
    p = parser(description or name)
    if configure:
        configure(p)
    args = p.parse_args(argv)
    if args.self_test:
        name += "_selftest"
    h = Harness(name, args)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    status = 1
    try:
        if not h.url:
            raise Skip("COPORT_TEST_RABBIT_URL is not set (run it through with_broker.py)")
        h.log("broker %s%s" % (redact(h.url), " (self-test: oslo.messaging stand-ins)"
                               if args.self_test else ""))
        if h.quorum() and not h.state_dir:
            raise Skip("rabbit_quorum_queue=true: checking the queues on the wire needs a "
                       "broker of its own (COPORT_TEST_RABBIT_STATE)")
        test(h)
    except Skip as e:
        h.log("SKIPPED: %s" % e)
        h.cleanup()
        return SKIP
    except TestFailure as e:
        if str(e) not in h.failures:
            h.failures.append(str(e).splitlines()[0])
            h.log("FAIL %s" % e)
    except _Terminated as e:
        h.failures.append("terminated by signal %d" % e.args[0])
        h.log("terminated by signal %d" % e.args[0])
    except Exception as e:  # a bug in the driver is a failure, shown in full
        import traceback
        h.failures.append("%s: %s" % (type(e).__name__, e))
        h.log("ERROR in the test driver:\n%s" % traceback.format_exc())
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        h.cleanup()
    h.check_password()
    h.check_sanitizer_reports()
    if h.failures:
        h.log("FAILED (%d): %s" % (len(h.failures), "; ".join(h.failures)))
        status = 1
    else:
        h.log("PASSED")
        status = 0
    return status

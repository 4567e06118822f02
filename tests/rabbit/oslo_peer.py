#!/usr/bin/python3
"""The Python side of coport's RabbitMQ interoperability tests and benchmark:
programs built on the unmodified oslo.messaging of the distribution.

    oslo_peer.py server       --url U --topic T [--server S] [--executor threading|eventlet]
                              [--exchange E]
    oslo_peer.py client-suite --url U --topic T --server S [--fanout-servers S1,S2]
                              [--peer coport|python]
    oslo_peer.py notify       --url U --topic T --event-type E --payload JSON
                              [--priority info] [--publisher ID] [--driver messagingv2|messaging]
    oslo_peer.py listen       --url U --topic T --count N [--pool NAME] [--timeout SECONDS]
    oslo_peer.py client       --url U --topic T [--server S] [--fanout] [--version V]
                              [--exchange E] [--timeout SECONDS] call|cast|notify ...
                              (coport-example-client's command line and exit codes)
    oslo_peer.py call-loop    --url U --topic T --count N [--timeout SECONDS]
    oslo_peer.py bench-server --url U --topic T [--server S]
    oslo_peer.py bench-client --url U --topic T --concurrency N --seconds S

The servers expose the same endpoint as coport-example-server (version 1.3,
no namespace): echo(value), add(a, b), sleep_ms(ms), fail(message) raising
ExampleError, counts(). --transport is another name of --url, the same
rabbit:// URL the coport programs get: its query's driver options
(rabbit_quorum_queue, rabbit_ha_queues, amqp_durable_queues, heartbeat,
... see URL_OPTIONS) are set in [oslo_messaging_rabbit] before the
transport exists, and coport's own keys are not passed on. Programs
that wait for traffic print `ready` (one line, flushed) once they consume;
results are printed as JSON lines.

Run it with the distribution's interpreter (/usr/bin/python3), which has
oslo.messaging. The bench programs and `--executor eventlet` monkey-patch
the process with eventlet before anything else is imported, as an
eventlet-based OpenStack service does.
"""

import sys

_EVENTLET = (len(sys.argv) > 1 and sys.argv[1] in ("bench-server", "bench-client")) or (
    "--executor" in sys.argv
    and sys.argv.index("--executor") + 1 < len(sys.argv)
    and sys.argv[sys.argv.index("--executor") + 1] == "eventlet")
if _EVENTLET:
    import eventlet
    eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import warnings  # noqa: E402

from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402
from oslo_messaging._drivers import amqp  # noqa: E402
from oslo_messaging._drivers import base as driver_base  # noqa: E402
from oslo_messaging._drivers import common as rpc_common  # noqa: E402
from oslo_messaging._drivers import impl_rabbit  # noqa: E402
from oslo_messaging.rpc import dispatcher as rpc_dispatcher  # noqa: E402

VERSION = "1.3"
PASSWORD_HINT = "coport-s3cret-pw"  # never printed: see _redact()
# As harness.TIME_SCALE: stretches the windows of the suite's timing checks.
TIME_SCALE = float(os.environ.get("COPORT_TEST_TIME_SCALE", "1") or "1")


def _redact(text):
    return str(text).replace(PASSWORD_HINT, "***")


def _setup_logging(verbose):
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.simplefilter("ignore")
    # Keep the broker password out of anything logged (URLs in errors).
    for handler in logging.getLogger().handlers:
        handler.addFilter(_RedactFilter())


class _RedactFilter(logging.Filter):
    def filter(self, record):
        try:
            msg = record.getMessage()
        except Exception:
            return True
        if PASSWORD_HINT in msg:
            record.msg = _redact(msg)
            record.args = ()
        return True


_CONF_READY = []
RABBIT_GROUP = "oslo_messaging_rabbit"


def _conf():
    # The global configuration object: parts of oslo.messaging (the metrics
    # of the RPC client) register their options on it and nowhere else.
    if not _CONF_READY:
        cfg.CONF([], project="coport-oslo-peer", default_config_files=[],
                 default_config_dirs=[])
        # The rabbit driver's options, registered as its driver will
        # register them, so that the URL's can be set before it exists.
        group = cfg.OptGroup(name=RABBIT_GROUP, title="RabbitMQ driver options")
        cfg.CONF.register_group(group)
        for opts in (impl_rabbit.rabbit_opts, amqp.amqp_opts, driver_base.base_opts):
            cfg.CONF.register_opts(opts, group=group)
        _CONF_READY.append(True)
    return cfg.CONF


def _bool(v):
    low = v.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValueError("%r is not a boolean" % v)


def _int(v):
    return int(v)


def _seconds(v):
    # coport takes fractions of a second; oslo's options are whole seconds.
    return int(float(v))


# rabbit:// URL query keys (the names coport-example-* read) -> the
# [oslo_messaging_rabbit] option of oslo.messaging 14 and its type. The
# correctly spelt max_memory names map to oslo 14's misspelt options.
URL_OPTIONS = {
    "rabbit_quorum_queue": ("rabbit_quorum_queue", _bool),
    "rabbit_quorum_delivery_limit": ("rabbit_quorum_delivery_limit", _int),
    "rabbit_quorum_max_memory_length": ("rabbit_quroum_max_memory_length", _int),
    "rabbit_quroum_max_memory_length": ("rabbit_quroum_max_memory_length", _int),
    "rabbit_quorum_max_memory_bytes": ("rabbit_quroum_max_memory_bytes", _int),
    "rabbit_quroum_max_memory_bytes": ("rabbit_quroum_max_memory_bytes", _int),
    "rabbit_ha_queues": ("rabbit_ha_queues", _bool),
    "rabbit_transient_queues_ttl": ("rabbit_transient_queues_ttl", _seconds),
    "transient_queues_ttl": ("rabbit_transient_queues_ttl", _seconds),
    "kombu_failover_strategy": ("kombu_failover_strategy", str),
    "amqp_durable_queues": ("amqp_durable_queues", _bool),
    "durable": ("amqp_durable_queues", _bool),
    "amqp_auto_delete": ("amqp_auto_delete", _bool),
    "heartbeat_timeout_threshold": ("heartbeat_timeout_threshold", _seconds),
    "heartbeat": ("heartbeat_timeout_threshold", _seconds),
    "rabbit_qos_prefetch_count": ("rabbit_qos_prefetch_count", _int),
    "prefetch": ("rabbit_qos_prefetch_count", _int),
}


def _oslo_url(url):
    """Applies the URL's query to [oslo_messaging_rabbit] of the global
    configuration (URL_OPTIONS) and returns the URL oslo.messaging is to
    see: the other keys that name one of its rabbit options (ssl,
    ssl_ca_file, ...) stay in its query, where the driver reads them;
    coport's own keys (rpc_timeout, send_timeout, ...) are dropped, as the
    driver would refuse them (NoSuchOptError)."""
    conf = _conf()
    parts = urllib.parse.urlsplit(url)
    keep = []
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in URL_OPTIONS:
            name, convert = URL_OPTIONS[key]
            try:
                conf.set_override(name, convert(value), group=RABBIT_GROUP)
            except ValueError as e:
                raise SystemExit("oslo_peer: %s=%s in the URL: %s" % (key, value, e))
        elif key in conf[RABBIT_GROUP]:
            keep.append((key, value))
        else:
            logging.getLogger("oslo_peer").info("URL parameter %s is not oslo.messaging's: "
                                                "not passed on", key)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(keep)))


def rpc_transport(url):
    url = _oslo_url(url)
    return oslo_messaging.get_rpc_transport(_conf(), url=url)


def notification_transport(url):
    url = _oslo_url(url)
    return oslo_messaging.get_notification_transport(_conf(), url=url)


def _say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _Stopper:
    """SIGTERM / SIGINT set an event that the main thread waits on."""

    def __init__(self):
        self.event = threading.Event()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame):
        self.event.set()

    def wait(self, timeout=None):
        # Short waits keep the main thread responsive to signals.
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self.event.wait(0.2)
        return True


# ---------------------------------------------------------------- server ----

class ExampleError(Exception):
    """What fail(message) raises; same class name and module as coport's."""


ExampleError.__module__ = "coport.example"


class ExampleEndpoint:
    target = oslo_messaging.Target(version=VERSION)

    def __init__(self, sleep):
        self._sleep = sleep
        self._lock = threading.Lock()
        self._counts = {}

    def _count(self, name):
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1

    def echo(self, ctxt, value):
        self._count("echo")
        return value

    def add(self, ctxt, a, b):
        self._count("add")
        return a + b

    def sleep_ms(self, ctxt, ms):
        self._count("sleep_ms")
        self._sleep(ms / 1000.0)
        return ms

    def fail(self, ctxt, message):
        self._count("fail")
        raise ExampleError(message)

    def counts(self, ctxt):
        self._count("counts")
        with self._lock:
            return dict(self._counts)


def _run_server(url, topic, server, executor, exchange=None):
    if executor == "eventlet":
        sleep = eventlet.sleep
    else:
        sleep = time.sleep
    stopper = _Stopper()
    transport = rpc_transport(url)
    target = oslo_messaging.Target(topic=topic, server=server, exchange=exchange)
    srv = oslo_messaging.get_rpc_server(
        transport, target, [ExampleEndpoint(sleep)], executor=executor,
        access_policy=rpc_dispatcher.DefaultRPCAccessPolicy)
    srv.start()
    _say("ready")
    stopper.wait()
    srv.stop()
    srv.wait()
    transport.cleanup()
    return 0


def cmd_server(a):
    return _run_server(a.url, a.topic, a.server or socket.gethostname(), a.executor,
                       a.exchange)


def cmd_bench_server(a):
    return _run_server(a.url, a.topic, a.server or socket.gethostname(), "eventlet")


# ---------------------------------------------------------------- client ----

def _client(transport, topic, timeout, server=None):
    target = oslo_messaging.Target(topic=topic, server=server)
    return oslo_messaging.get_rpc_client(transport, target, timeout=timeout)


def _oslo_version():
    try:
        from importlib import metadata
        return metadata.version("oslo.messaging")
    except Exception:
        return "(version unknown)"


def _remote_class(exc):
    """The remote exception's class name, however oslo surfaced it."""
    if isinstance(exc, oslo_messaging.RemoteError):
        return exc.exc_type or ""
    return type(exc).__name__


def _remote_message(exc):
    if isinstance(exc, oslo_messaging.RemoteError):
        return exc.value or ""
    return str(exc)


class Suite:
    """Checks one by one; each prints `ok <case>` or `FAIL <case>: detail`."""

    def __init__(self):
        self.failed = []

    def case(self, name, fn):
        start = time.monotonic()
        try:
            fn()
        except AssertionError as e:
            self.failed.append(name)
            _say("FAIL %s: %s" % (name, _redact(e)))
        except Exception as e:  # an unexpected exception is a failure too
            self.failed.append(name)
            _say("FAIL %s: unexpected %s: %s" % (name, type(e).__name__, _redact(e)))
        else:
            _say("ok %s (%.2fs)" % (name, time.monotonic() - start))


def _poll(predicate, timeout, what):
    """Calls predicate() until it returns a true value (returned) or fails."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError("%s not seen within %.0fs" % (what, timeout))
        time.sleep(0.05)


def cmd_client_suite(a):
    transport = rpc_transport(a.url)
    ctxt = {}
    servers = [a.server] + [s for s in (a.fanout_servers or "").split(",")
                            if s and s != a.server]
    topic_client = _client(transport, a.topic, a.timeout)
    by_server = {s: _client(transport, a.topic, a.timeout, server=s) for s in servers}
    main = by_server[a.server]
    suite = Suite()
    _say("client suite: oslo.messaging %s against %s servers %s on topic %s" % (
        _oslo_version(), a.peer, ",".join(servers), a.topic))

    def counts(server):
        return by_server[server].call(ctxt, "counts")

    def echo_counts():
        return {s: counts(s).get("echo", 0) for s in servers}

    def check_echo(value):
        got = topic_client.call(ctxt, "echo", value=value)
        assert got == value, "echo(%r) returned %r" % (value, got)

    suite.case("echo_string", lambda: check_echo("hello coport"))
    suite.case("echo_nested", lambda: check_echo(
        {"a": [1, 2.5, None, True], "b": {"c": "d", "e": []}, "n": -7}))
    suite.case("echo_unicode", lambda: check_echo("grüße, мир, 世界, \u2603 \U0001F600"))
    suite.case("echo_list", lambda: check_echo([1, "two", [3], {"four": 4}]))
    suite.case("echo_empty_string", lambda: check_echo(""))

    def add():
        got = topic_client.call(ctxt, "add", a=2, b=3)
        assert got == 5, "add(2, 3) returned %r" % (got,)
        got = topic_client.call(ctxt, "add", a=1.5, b=-0.25)
        assert abs(got - 1.25) < 1e-9, "add(1.5, -0.25) returned %r" % (got,)
    suite.case("add", add)

    def server_specific():
        before = echo_counts()
        for _ in range(5):
            got = main.prepare(server=a.server).call(ctxt, "echo", value="to %s" % a.server)
            assert got == "to %s" % a.server, "echo returned %r" % (got,)
        after = echo_counts()
        for s in servers:
            want = before[s] + (5 if s == a.server else 0)
            assert after[s] == want, "server %s handled %d echo calls, expected %d (%r -> %r)" % (
                s, after[s] - before[s], want - before[s], before, after)
    suite.case("server_specific_target", server_specific)

    def add_counts():
        return {s: counts(s).get("add", 0) for s in servers}

    def call_markers(client, over):
        """Calls add on `client`'s path, after a cast on it was seen handled,
        until every server of `over` has handled one: each consumer of the
        queue has then taken everything published before them, a duplicate
        of the cast included."""
        before = add_counts()
        for _ in range(10 * len(over)):
            client.call(ctxt, "add", a=0, b=0)
            after = add_counts()
            if all(after[s] > before[s] for s in over):
                return
        raise AssertionError("marker calls did not reach every server of %s: %r -> %r" % (
            ",".join(over), before, after))

    def cast_to_server():
        before = counts(a.server).get("echo", 0)
        main.cast(ctxt, "echo", value="cast to %s" % a.server)
        _poll(lambda: counts(a.server).get("echo", 0) >= before + 1, 10,
              "the cast on server %s" % a.server)
        call_markers(main, [a.server])
        got = counts(a.server).get("echo", 0)
        assert got == before + 1, "server %s handled the cast %d times" % (a.server, got - before)
    suite.case("cast_server_specific", cast_to_server)

    def cast_to_topic():
        before = sum(echo_counts().values())
        topic_client.cast(ctxt, "echo", value="cast to the topic")
        _poll(lambda: sum(echo_counts().values()) >= before + 1, 10, "the cast on the topic")
        call_markers(topic_client, servers)
        got = sum(echo_counts().values())
        assert got == before + 1, "the cast on the topic was handled %d times" % (got - before)
    suite.case("cast_topic", cast_to_topic)

    def fanout():
        before = echo_counts()
        fanout_client = topic_client.prepare(fanout=True)
        fanout_client.cast(ctxt, "echo", value="fanout")
        _poll(lambda: all(c >= before[s] + 1 for s, c in echo_counts().items()), 10,
              "the fanout cast on every server of %s" % ",".join(servers))
        # A marker cast on the same fanout path: once every server has
        # handled it, its queue delivered everything published before it.
        markers = add_counts()
        fanout_client.cast(ctxt, "add", a=0, b=0)
        _poll(lambda: all(c >= markers[s] + 1 for s, c in add_counts().items()), 10,
              "the marker fanout cast on every server of %s" % ",".join(servers))
        after = echo_counts()
        assert all(after[s] == before[s] + 1 for s in servers), \
            "the fanout cast was not handled exactly once by every server: %r -> %r" % (
                before, after)
    suite.case("fanout_cast_%d_servers" % len(servers), fanout)

    def version_too_high():
        try:
            topic_client.prepare(version="2.0").call(ctxt, "echo", value="v2")
        except (oslo_messaging.RemoteError, oslo_messaging.UnsupportedVersion) as e:
            cls = _remote_class(e)
            assert "UnsupportedVersion" in cls, "error class %r (%s)" % (cls, e)
        else:
            raise AssertionError("a call asking for version 2.0 succeeded")
    suite.case("version_too_high", version_too_high)

    def compatible_version():
        got = topic_client.prepare(version="1.1").call(ctxt, "echo", value="v1.1")
        assert got == "v1.1", "echo returned %r" % (got,)
    suite.case("compatible_lower_version", compatible_version)

    def unknown_method():
        try:
            topic_client.call(ctxt, "no_such_method", value=1)
        except oslo_messaging.RemoteError as e:
            assert e.exc_type == "NoSuchMethod", "exc_type %r (%s)" % (e.exc_type, e)
        else:
            raise AssertionError("calling an unknown method succeeded")
    suite.case("unknown_method", unknown_method)

    def fail():
        msg = "it failed on purpose: ünïcödé"
        try:
            topic_client.call(ctxt, "fail", message=msg)
        except oslo_messaging.RemoteError as e:
            assert e.exc_type == "ExampleError", "exc_type %r (%s)" % (e.exc_type, e)
            assert msg in (e.value or ""), "message %r, expected %r" % (e.value, msg)
        else:
            raise AssertionError("fail() succeeded")
    suite.case("remote_error", fail)

    def timeout():
        # The reply comes after `ms`; the 1 s timeout must end the call before.
        ms = int(3000 * TIME_SCALE)
        start = time.monotonic()
        try:
            topic_client.prepare(timeout=1).call(ctxt, "sleep_ms", ms=ms)
        except oslo_messaging.MessagingTimeout:
            took = time.monotonic() - start
            assert took < ms / 1000.0 - 0.1, "MessagingTimeout only after %.1fs" % took
        else:
            raise AssertionError("sleep_ms(%d) with a 1s timeout returned" % ms)
    suite.case("timeout", timeout)

    def after_timeout():
        # The late reply of the previous case must not confuse later calls.
        for i in range(3):
            got = topic_client.call(ctxt, "add", a=i, b=100)
            assert got == 100 + i, "add(%d, 100) returned %r" % (i, got)
    suite.case("calls_after_timeout", after_timeout)

    def concurrent():
        errors = []
        results = {}

        ms = int(300 * TIME_SCALE)

        def worker(i):
            try:
                results[i] = topic_client.call(ctxt, "sleep_ms", ms=ms)
            except Exception as e:
                errors.append(e)
        start = time.monotonic()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - start
        assert not errors, "errors: %r" % errors
        assert all(v == ms for v in results.values()) and len(results) == 8, results
        # Eight sleeps in sequence would take 8 * ms (2.4 s unscaled).
        assert took < 2.0 * TIME_SCALE, "8 concurrent sleep_ms(%d) took %.2fs: not concurrent" % (
            ms, took)
    suite.case("concurrent_sleeps", concurrent)

    transport.cleanup()
    if suite.failed:
        _say("FAILED %d case(s): %s" % (len(suite.failed), ", ".join(suite.failed)))
        return 1
    _say("all cases passed")
    return 0


def _probe(transport):
    """Connects once (one retry) and raises if the broker cannot be
    reached: an oslo.messaging call would otherwise retry the connection
    of its reply queue forever, where coport's client gives up (exit 3)."""
    with transport._driver._get_connection(rpc_common.PURPOSE_SEND, retry=1):
        pass


def cmd_client(a):
    """The command line of coport-example-client (call, cast, notify) on
    oslo.messaging, with its exit codes: 0 done (a call prints its JSON
    result), 1 remote error (`CLASS: message` on stdout), 2 timeout,
    3 anything else (message on stderr). Lets the tests check themselves
    against oslo.messaging alone."""
    try:
        if a.client_command == "notify":
            transport = notification_transport(a.url)
            try:
                _probe(transport)
                notifier = oslo_messaging.Notifier(
                    transport, publisher_id=a.publisher or "oslo-peer",
                    driver="messagingv2", topics=[a.topic])
                getattr(notifier, a.priority.lower())({}, a.event_type, json.loads(a.payload))
            finally:
                transport.cleanup()
            return 0
        transport = rpc_transport(a.url)
        try:
            _probe(transport)
            target = oslo_messaging.Target(topic=a.topic, server=a.server, fanout=a.fanout,
                                           exchange=a.exchange, version=a.version)
            client = oslo_messaging.get_rpc_client(transport, target, timeout=a.timeout)
            args = json.loads(a.args)
            if a.client_command == "cast":
                client.cast({}, a.method, **args)
                return 0
            try:
                result = client.call({}, a.method, **args)
            except oslo_messaging.MessagingTimeout:
                print("timeout: no reply within %ss" % a.timeout, file=sys.stderr)
                return 2
            except (oslo_messaging.RemoteError, oslo_messaging.UnsupportedVersion) as e:
                _say("%s: %s" % (_remote_class(e), _remote_message(e)))
                return 1
            _say(json.dumps(result))
            return 0
        finally:
            transport.cleanup()
    except Exception as e:
        print("error: %s: %s" % (type(e).__name__, _redact(e)), file=sys.stderr)
        return 3


def cmd_call_loop(a):
    """`count` calls of echo, one after the other, on the topic: prints one
    JSON line per call {"i":..,"ok":bool,"ms":..,"start":..,"error":..} and
    a summary. start is the call's start on the monotonic clock
    (CLOCK_MONOTONIC, which the test driver's time.monotonic() reads too)."""
    transport = rpc_transport(a.url)
    client = _client(transport, a.topic, a.timeout)
    ok = failed = 0
    if a.ready:
        _say("ready")
    for i in range(a.count):
        start = time.monotonic()
        rec = {"i": i, "start": round(start, 4)}
        try:
            got = client.call({}, "echo", value=i)
            rec["ok"] = got == i
            if got != i:
                rec["error"] = "echo returned %r" % (got,)
        except Exception as e:
            rec["ok"] = False
            rec["error"] = "%s: %s" % (type(e).__name__, _redact(e))
        rec["ms"] = round((time.monotonic() - start) * 1000.0, 2)
        ok += rec["ok"]
        failed += not rec["ok"]
        _say(json.dumps(rec))
        if a.interval_ms:
            time.sleep(a.interval_ms / 1000.0)
    _say(json.dumps({"done": True, "ok": ok, "failed": failed}))
    transport.cleanup()
    return 0 if failed == 0 else 1


def _percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def cmd_bench_client(a):
    transport = rpc_transport(a.url)
    client = _client(transport, a.topic, a.timeout)
    ctxt = {}
    # Warm up: the reply queue and the connections exist before timing.
    for _ in range(3):
        client.call(ctxt, "echo", value="x")
    latencies = []
    errors = []
    deadline = [0.0]

    def worker():
        while time.monotonic() < deadline[0]:
            t0 = time.monotonic()
            try:
                client.call(ctxt, "echo", value="x")
            except Exception as e:
                errors.append("%s: %s" % (type(e).__name__, _redact(e)))
                continue
            latencies.append(time.monotonic() - t0)

    pool = eventlet.GreenPool(a.concurrency)
    start = time.monotonic()
    deadline[0] = start + a.seconds
    for _ in range(a.concurrency):
        pool.spawn(worker)
    pool.waitall()
    elapsed = time.monotonic() - start
    latencies.sort()
    result = {
        "impl": "oslo",
        "concurrency": a.concurrency,
        "calls": len(latencies),
        "seconds": round(elapsed, 3),
        "calls_per_s": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(_percentile(latencies, 50) * 1000.0, 3),
        "p99_ms": round(_percentile(latencies, 99) * 1000.0, 3),
    }
    if errors:
        result["errors"] = len(errors)
        print("bench-client: %d errors, first: %s" % (len(errors), errors[0]), file=sys.stderr)
    _say(json.dumps(result))
    transport.cleanup()
    return 0 if not errors else 1


# ---------------------------------------------------------- notifications ----

def cmd_notify(a):
    transport = notification_transport(a.url)
    notifier = oslo_messaging.Notifier(transport, publisher_id=a.publisher, driver=a.driver,
                                       topics=[a.topic])
    send = getattr(notifier, a.priority.lower())
    send({}, a.event_type, json.loads(a.payload))
    transport.cleanup()
    return 0


class _NotificationEndpoint:
    def __init__(self, on_notification):
        self._on = on_notification

    def _make(priority):
        def handler(self, ctxt, publisher_id, event_type, payload, metadata):
            self._on({"priority": priority, "event_type": event_type,
                      "publisher_id": publisher_id, "payload": payload})
            return oslo_messaging.NotificationResult.HANDLED
        handler.__name__ = priority
        return handler

    audit = _make("audit")
    debug = _make("debug")
    info = _make("info")
    warn = _make("warn")
    error = _make("error")
    critical = _make("critical")
    sample = _make("sample")


def cmd_listen(a):
    stopper = _Stopper()
    lock = threading.Lock()
    seen = [0]

    def on_notification(record):
        with lock:
            if seen[0] >= a.count:
                return
            seen[0] += 1
            _say(json.dumps(record))
            if seen[0] >= a.count:
                stopper.event.set()

    transport = notification_transport(a.url)
    listener = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic=a.topic)],
        [_NotificationEndpoint(on_notification)], executor="threading", pool=a.pool)
    listener.start()
    _say("ready")
    finished = stopper.wait(a.timeout)
    listener.stop()
    listener.wait()
    transport.cleanup()
    if not finished:
        print("listen: %d of %d notifications within %ss" % (seen[0], a.count, a.timeout),
              file=sys.stderr)
        return 2
    return 0 if seen[0] >= a.count else 2


# ------------------------------------------------------------------ main ----

def main(argv=None):
    p = argparse.ArgumentParser(description="oslo.messaging peer programs for coport's tests")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, server_required=False):
        sp.add_argument("--url", "--transport", dest="url",
                        default=os.environ.get("COPORT_TEST_RABBIT_URL"),
                        help="transport URL (default: $COPORT_TEST_RABBIT_URL)")
        sp.add_argument("--topic", required=True)
        sp.add_argument("--server", required=server_required)
        sp.add_argument("--verbose", "-v", action="store_true")

    sp = sub.add_parser("server")
    common(sp)
    sp.add_argument("--executor", choices=["threading", "eventlet"], default="threading")
    sp.add_argument("--exchange", help="the control exchange; default: the transport's "
                    "(openstack)")
    sp.set_defaults(fn=cmd_server)

    sp = sub.add_parser("bench-server")
    common(sp)
    sp.set_defaults(fn=cmd_bench_server)

    sp = sub.add_parser("client-suite")
    common(sp, server_required=True)
    sp.add_argument("--fanout-servers", default="",
                    help="comma-separated servers on the topic that the fanout must reach")
    sp.add_argument("--peer", choices=["coport", "python"], default="coport",
                    help="what serves the topic (only changes the banner)")
    sp.add_argument("--timeout", type=float, default=20.0)
    sp.set_defaults(fn=cmd_client_suite)

    sp = sub.add_parser("client", help="coport-example-client's command line on oslo")
    common(sp)
    sp.add_argument("--exchange", help="the control exchange; default: the transport's "
                    "(openstack)")
    sp.add_argument("--fanout", action="store_true")
    sp.add_argument("--version")
    sp.add_argument("--timeout", type=float, default=60.0)
    csub = sp.add_subparsers(dest="client_command", required=True)
    for name in ("call", "cast"):
        c = csub.add_parser(name)
        c.add_argument("method")
        c.add_argument("args", nargs="?", default="{}")
    c = csub.add_parser("notify")
    c.add_argument("--priority", default="info")
    c.add_argument("--publisher")
    c.add_argument("event_type")
    c.add_argument("payload")
    sp.set_defaults(fn=cmd_client)

    sp = sub.add_parser("call-loop")
    common(sp)
    sp.add_argument("--count", type=int, required=True)
    sp.add_argument("--timeout", type=float, default=10.0)
    sp.add_argument("--interval-ms", type=float, default=0.0)
    sp.add_argument("--ready", action="store_true", help="print `ready` once connected")
    sp.set_defaults(fn=cmd_call_loop)

    sp = sub.add_parser("bench-client")
    common(sp)
    sp.add_argument("--concurrency", type=int, default=1)
    sp.add_argument("--seconds", type=float, default=5.0)
    sp.add_argument("--timeout", type=float, default=30.0)
    sp.set_defaults(fn=cmd_bench_client)

    sp = sub.add_parser("notify")
    common(sp)
    sp.add_argument("--event-type", required=True)
    sp.add_argument("--payload", required=True, help="JSON")
    sp.add_argument("--priority", default="info",
                    choices=["audit", "debug", "info", "warn", "warning", "error",
                             "critical", "sample"])
    sp.add_argument("--publisher", default="oslo-peer")
    sp.add_argument("--driver", choices=["messagingv2", "messaging"], default="messagingv2",
                    help="messagingv2 wraps the notification in the oslo envelope, "
                         "messaging (version 1) sends it bare")
    sp.set_defaults(fn=cmd_notify)

    sp = sub.add_parser("listen")
    common(sp)
    sp.add_argument("--count", type=int, default=1)
    sp.add_argument("--pool")
    sp.add_argument("--timeout", type=float, default=None,
                    help="give up (exit 2) after this many seconds")
    sp.set_defaults(fn=cmd_listen)

    a = p.parse_args(argv)
    if not a.url:
        p.error("--url is required (or set COPORT_TEST_RABBIT_URL)")
    _setup_logging(a.verbose)
    return a.fn(a)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # oslo.messaging 14 leaves a non-daemon thread behind (the RPC client's
    # metrics sender, blocked on a queue) that holds up the interpreter's
    # exit by several seconds; every transport is cleaned up by now.
    os._exit(status)

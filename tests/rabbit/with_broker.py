#!/usr/bin/python3
"""Runs a command next to a private RabbitMQ broker.

    with_broker.py [--tls | --cluster] [--private-broker] [--status-is-count] [--keep]
                   -- CMD ARGS...

Starts a broker (broker.py) in a fresh temporary directory, exports

    COPORT_TEST_RABBIT_URL      rabbit://coport:...@127.0.0.1:PORT/
    COPORT_TEST_RABBIT_STATE    the broker's state directory (broker.load())
    and with --tls:
    COPORT_TEST_RABBIT_TLS_URL  rabbit://...@localhost:TLSPORT/?ssl=true&ssl_ca_file=...
    COPORT_TEST_RABBIT_CA       the CA that signed the broker's certificate
    COPORT_TEST_RABBIT_WRONG_CA an unrelated CA

With --cluster it starts a cluster of three nodes instead
(broker.start_cluster(): one node name, port pair and data directory each,
one Erlang cookie, quorum queues replicated on all three) and exports

    COPORT_TEST_RABBIT_URL      the failover list rabbit://coport:...@127.0.0.1:P1,
                                coport:...@127.0.0.1:P2,coport:...@127.0.0.1:P3/
    COPORT_TEST_RABBIT_STATE    the cluster's state directory (broker.load_cluster())
    COPORT_TEST_RABBIT_CLUSTER  1

It then runs CMD, stops the broker or the cluster (also when interrupted
or terminated), removes the directory and exits with CMD's status. With --status-is-count, CMD's
status is a count of failures (a Catch2 program's), so 77 from it exits 1:
ctest reads 77 as "skipped", which only this script may say.

If COPORT_TEST_RABBIT_URL is already set, that broker is used and none is
started; tests that need to restart the broker or need TLS then exit with
77 (skipped) unless the matching variables are set as well; with
--private-broker or --cluster this script skips CMD itself (exit 77, with
the reason).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import broker  # noqa: E402


USAGE = ("usage: with_broker.py [--tls | --cluster] [--private-broker] [--status-is-count] "
         "[--keep] -- CMD ARGS...")


class _Terminated(BaseException):
    pass


def _on_signal(signum, frame):
    raise _Terminated(signum)


def _run(cmd, env):
    """Runs cmd; a signal to us is passed on to it before we clean up."""
    child = subprocess.Popen(cmd, env=env)
    try:
        return child.wait()
    except BaseException:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        raise


def main(argv):
    tls = False
    keep = False
    private = False
    cluster = False
    status_is_count = False
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt == "--tls":
            tls = True
        elif opt == "--keep":
            keep = True
        elif opt == "--private-broker":
            private = True
        elif opt == "--cluster":
            cluster = True
        elif opt == "--status-is-count":
            status_is_count = True
        else:
            print(USAGE, file=sys.stderr)
            return 2
    if not argv or len(argv) < 2 or (tls and cluster):
        print(USAGE, file=sys.stderr)
        return 2
    cmd = argv[1:]

    def status_of(status):
        if status_is_count and status == 77:
            print("with_broker: the command failed 77 checks (not a skip)", file=sys.stderr, flush=True)
            return 1
        return status

    if os.environ.get("COPORT_TEST_RABBIT_URL"):
        if cluster:
            print("skipped: the command needs a RabbitMQ cluster of its own (it kills, stops "
                  "and pauses its nodes), and COPORT_TEST_RABBIT_URL names an existing broker",
                  flush=True)
            return 77
        if private:
            print("skipped: the command needs a private broker (it restarts it or uses its TLS "
                  "listener), and COPORT_TEST_RABBIT_URL names an existing one", flush=True)
            return 77
        print("with_broker: using the broker of COPORT_TEST_RABBIT_URL", flush=True)
        return status_of(subprocess.call(cmd))

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    state = tempfile.mkdtemp(prefix="coport-rabbit-")
    b = broker.Cluster(state) if cluster else broker.Broker(state, tls=tls)
    status = 1
    try:
        t0 = time.monotonic()
        try:
            b.start()
        except broker.BrokerError as e:
            print("with_broker: the %s did not start: %s" % ("cluster" if cluster else "broker", e),
                  file=sys.stderr, flush=True)
            return 1
        if cluster:
            print("with_broker: cluster of %d nodes up in %.1fs on 127.0.0.1:%s" % (
                len(b.nodes), time.monotonic() - t0, ",".join(str(n.port) for n in b.nodes)),
                flush=True)
        else:
            print("with_broker: broker %s up in %.1fs on 127.0.0.1:%d%s" % (
                b.node, time.monotonic() - t0, b.port,
                " (TLS on %d)" % b.tls_port if tls else ""), flush=True)
        env = dict(os.environ)
        env["COPORT_TEST_RABBIT_URL"] = b.url
        env["COPORT_TEST_RABBIT_STATE"] = state
        if cluster:
            env["COPORT_TEST_RABBIT_CLUSTER"] = "1"
        else:
            env.pop("COPORT_TEST_RABBIT_CLUSTER", None)
        if tls:
            env["COPORT_TEST_RABBIT_TLS_URL"] = b.tls_url
            env["COPORT_TEST_RABBIT_CA"] = b.ca_file
            env["COPORT_TEST_RABBIT_WRONG_CA"] = b.wrong_ca_file
        else:
            for k in ("COPORT_TEST_RABBIT_TLS_URL", "COPORT_TEST_RABBIT_CA",
                      "COPORT_TEST_RABBIT_WRONG_CA"):
                env.pop(k, None)
        status = status_of(_run(cmd, env))
        if status != 0 and status != 77:
            print("with_broker: the command failed (%d); the broker's log:\n%s"
                  % (status, b.log_tail(15 if cluster else 30)), file=sys.stderr, flush=True)
        return status
    except _Terminated as e:
        print("with_broker: terminated by signal %d; stopping the broker" % e.args[0],
              file=sys.stderr, flush=True)
        status = 128 + e.args[0]
        return status
    finally:
        # A second signal during the cleanup must not leave the broker behind.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            # A test may have restarted it (same node, new processes):
            # broker.json (each node's, for a cluster) has the latest.
            first = b
            try:
                b = broker.load_cluster(state) if cluster else broker.load(state)
            except broker.BrokerError:
                pass
            b.stop()
            first.stop()  # also reaps the processes this one started
        finally:
            if b.is_running():
                print("with_broker: the %s is still running!" % (
                    "cluster" if cluster else "broker %s" % b.node), file=sys.stderr)
            if keep:
                print("with_broker: kept %s" % state, file=sys.stderr)
            else:
                shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

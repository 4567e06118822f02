#!/usr/bin/env python3
"""A private RabbitMQ broker for coport's tests and benchmarks.

Every broker gets its own node name, its own free TCP ports on 127.0.0.1
and its own data, logs, configuration and Erlang cookie under one state
directory, so several can run side by side (ctest --parallel) without
touching a system-wide RabbitMQ.

As a module:

    import broker
    b = broker.start("/tmp/state", tls=True)
    b.url, b.tls_url, b.ca_file, b.wrong_ca_file
    b.restart()            # same node, ports and data: durable queues survive
    b.stop(); b.start_again()   # the same in two steps
    b.kill9(); b.pause(); b.resume()
    b.stop()               # never leaves beam.smp running
    broker.load("/tmp/state")   # the broker another process started there

From the shell:

    broker.py start DIR [--tls]    prints the URLs as JSON, leaves it running
    broker.py stop DIR
    broker.py restart DIR
    broker.py kill9|pause|resume|status|log DIR
    broker.py delete-queues DIR PREFIX   deletes them; prints their names as JSON

A cluster (Cluster below: three nodes by default, joined, one Erlang
cookie, quorum queues replicated on every node):

    c = broker.start_cluster("/tmp/state")
    c.url                  rabbit://coport:PW@127.0.0.1:P1,coport:PW@127.0.0.1:P2,.../
    c.nodes                the Broker of each node (node 1 is c.nodes[0])
    c.leader_of(queue), c.members_of(queue)   node numbers (1-based)
    c.running_nodes()      the names of the nodes the cluster sees running
    c.kill9(n); c.stop_node(n); c.start_again(n)   (it rejoins)
    c.pause(n); c.resume(n)
    c.stop()               never leaves beam.smp running
    broker.load_cluster("/tmp/state")

    broker.py start-cluster DIR [--nodes N]   prints the URL and nodes as JSON
    broker.py stop-cluster|cluster-status|cluster-log DIR
    broker.py node-kill9|node-stop|node-start|node-pause|node-resume DIR N
    broker.py leader|members DIR QUEUE        node numbers as JSON
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
USER = "coport"
PASSWORD = "coport-s3cret-pw"
STATE_FILE = "broker.json"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


class BrokerError(RuntimeError):
    pass


def _port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Listening ports (AMQP, TLS, distribution) come from 10000-19999; the CLI
# tools of a node listen at its distribution port + 10000..10010, so in
# 20000-30009. The two ranges do not meet: a broker started beside another
# one cannot find its AMQP port taken by the other's rabbitmqctl. Both stay
# below the kernel's ephemeral range (32768+).
LISTEN_PORTS = (10000, 20000)
CTL_PORT_OFFSET = 10000
# A port seen free can still be taken before the broker binds it (another
# test's broker chose it in the same instant): start() then tries again on
# new ports, this many times in all.
START_ATTEMPTS = 3


def _lost_port_race(startup_error):
    """Whether a failed start was a listener finding its port in use."""
    return "eaddrinuse" in startup_error.lower()


def _free_ports(count, taken=()):
    """`count` distinct free ports in LISTEN_PORTS."""
    chosen = []
    rng = random.Random(os.getpid() ^ int(time.time() * 1e6))
    for _ in range(2000):
        port = rng.randrange(*LISTEN_PORTS)
        if port in chosen or port in taken:
            continue
        if _port_is_free(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise BrokerError("no free TCP port found on 127.0.0.1")


def _pid_alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purpose.
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def _proc_state(pid):
    """The process state letter of /proc/PID/stat ("T" when stopped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _pgid_alive(pgid):
    """Whether a process of group `pgid` runs (zombies do not count)."""
    if not pgid:
        return False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields: state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _openssl(args, cwd):
    res = subprocess.run(["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        raise BrokerError("openssl %s failed:\n%s" % (" ".join(args), res.stdout))


def make_certificates(directory):
    """A test CA, a server certificate for localhost / 127.0.0.1 signed by
    it, and a second, unrelated CA (wrong-ca.pem) for negative tests."""
    os.makedirs(directory, exist_ok=True)
    for name, cn in (("ca", "coport test CA"), ("wrong-ca", "coport unrelated CA")):
        _openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                  "-days", "30", "-subj", "/CN=%s" % cn,
                  "-keyout", "%s.key" % name, "-out", "%s.pem" % name], directory)
    with open(os.path.join(directory, "server-ext.cnf"), "w") as f:
        f.write("basicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature, keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n"
                "subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    _openssl(["req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", "/CN=localhost",
              "-keyout", "server.key", "-out", "server.csr"], directory)
    _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
              "-CAcreateserial", "-days", "30", "-sha256", "-extfile", "server-ext.cnf",
              "-out", "server.pem"], directory)


class Broker:
    """One private RabbitMQ node; its description lives in state_dir/broker.json."""

    def __init__(self, state_dir, tls=False, node=None, port=None, dist_port=None,
                 tls_port=None, pgid=None, home=None):
        self.state_dir = os.path.abspath(state_dir)
        # HOME of the node and its CLI tools, where the Erlang cookie lives:
        # the state directory, or the cluster's (one cookie for its nodes).
        self.home = os.path.abspath(home) if home else None
        self.tls = tls
        self.node = node
        self.port = port
        self.dist_port = dist_port
        self.tls_port = tls_port
        self.pgid = pgid
        self._proc = None  # set when this process launched the node

    # ---- paths and URLs ----
    def _path(self, *parts):
        return os.path.join(self.state_dir, *parts)

    @property
    def pid_file(self):
        return self._path("rabbit.pid")

    @property
    def log_dir(self):
        return self._path("log")

    @property
    def ca_file(self):
        return self._path("tls", "ca.pem") if self.tls else None

    @property
    def wrong_ca_file(self):
        return self._path("tls", "wrong-ca.pem") if self.tls else None

    @property
    def url(self):
        return "rabbit://%s:%s@127.0.0.1:%d/" % (USER, PASSWORD, self.port)

    @property
    def tls_url(self):
        # By name: the certificate names both localhost and 127.0.0.1, but
        # some TLS clients (rabbitmq-c) check DNS names only. The listener
        # is on 127.0.0.1, which is what localhost resolves to.
        if not self.tls:
            return None
        return "rabbit://%s:%s@localhost:%d/?ssl=true&ssl_ca_file=%s" % (
            USER, PASSWORD, self.tls_port, self.ca_file)

    def describe(self):
        d = {"url": self.url, "state_dir": self.state_dir, "node": self.node,
             "port": self.port, "dist_port": self.dist_port}
        if self.tls:
            d.update(tls_url=self.tls_url, tls_port=self.tls_port, ca_file=self.ca_file,
                     wrong_ca_file=self.wrong_ca_file)
        return d

    def beam_pid(self):
        try:
            with open(self.pid_file) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def log_tail(self, lines=40):
        parts = []
        for name in ("console.log", "%s.log" % self.node):
            text = _tail(os.path.join(self.log_dir, name), lines)
            if text:
                parts.append("---- %s (last lines) ----\n%s" % (name, text))
        return "\n".join(parts) or "(no broker log)"

    # ---- persistence, so that another process can stop or restart it ----
    def _save(self):
        d = {"tls": self.tls, "node": self.node, "port": self.port,
             "dist_port": self.dist_port, "tls_port": self.tls_port, "pgid": self.pgid}
        if self.home:
            d["home"] = self.home
        tmp = self._path(STATE_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(d, f)
        os.replace(tmp, self._path(STATE_FILE))

    # ---- environment ----
    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update({
            "HOME": self.home or self.state_dir,  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": self._path("mnesia"),
            "RABBITMQ_LOG_BASE": self.log_dir,
            "RABBITMQ_CONFIG_FILE": self._path("rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": self._path("advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": self._path("rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": self._path("enabled_plugins"),
            "RABBITMQ_PID_FILE": self.pid_file,
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.dist_port + CTL_PORT_OFFSET),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.dist_port + CTL_PORT_OFFSET + 10),
        })
        return env

    def ctl(self, *args, timeout=60, check=True):
        cmd = [os.path.join(RABBIT_BIN, "rabbitmqctl"), "-n", self.node] + list(args)
        try:
            res = subprocess.run(cmd, env=self._env(), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BrokerError("rabbitmqctl %s timed out after %ss" % (args[0], timeout))
        if check and res.returncode != 0:
            raise BrokerError("rabbitmqctl %s failed (%d):\n%s" %
                              (" ".join(a if a != PASSWORD else "***" for a in args),
                               res.returncode, res.stdout))
        return res.stdout

    def delete_queues(self, prefix):
        """Deletes the queues whose name starts with `prefix`, as an operator
        would; returns their names."""
        out = self.ctl("list_queues", "name", "--quiet", "--no-table-headers")
        names = [n.strip() for n in out.splitlines() if n.strip().startswith(prefix)]
        for n in names:
            self.ctl("delete_queue", n)
        return names

    # ---- files ----
    def _write_config(self):
        for d in ("mnesia", "log"):
            os.makedirs(self._path(d), exist_ok=True)
        lines = [
            "listeners.tcp.1 = 127.0.0.1:%d" % self.port,
            "loopback_users = none",
            # Tests must not stall on a nearly full disk of a build machine.
            "disk_free_limit.absolute = 10MB",
            # The test user, created with the database on first boot (in
            # place of guest): quicker than three rabbitmqctl runs.
            "default_vhost = /",
            "default_user = %s" % USER,
            "default_pass = %s" % PASSWORD,
            "default_user_tags.administrator = true",
            "default_permissions.configure = .*",
            "default_permissions.read = .*",
            "default_permissions.write = .*",
        ]
        if self.tls:
            if not os.path.exists(self._path("tls", "server.pem")):
                make_certificates(self._path("tls"))
            lines += [
                "listeners.ssl.1 = 127.0.0.1:%d" % self.tls_port,
                "ssl_options.cacertfile = %s" % self._path("tls", "ca.pem"),
                "ssl_options.certfile = %s" % self._path("tls", "server.pem"),
                "ssl_options.keyfile = %s" % self._path("tls", "server.key"),
                "ssl_options.verify = verify_none",
                "ssl_options.fail_if_no_peer_cert = false",
            ]
        with open(self._path("rabbitmq.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(self._path("enabled_plugins"), "w") as f:
            f.write("[].\n")
        with open(self._path("rabbitmq-env.conf"), "w") as f:
            f.write("# private test broker: no settings from /etc/rabbitmq\n")

    # ---- life cycle ----
    def _launch(self):
        self._write_config()
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass
        console = open(os.path.join(self.log_dir, "console.log"), "ab")
        try:
            self._proc = subprocess.Popen(
                [os.path.join(RABBIT_BIN, "rabbitmq-server")], env=self._env(),
                cwd=self.state_dir, stdin=subprocess.DEVNULL, stdout=console,
                stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            console.close()
        self.pgid = self._proc.pid
        self._save()

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        waiter = subprocess.Popen(
            [os.path.join(RABBIT_BIN, "rabbitmqctl"), "-n", self.node, "wait",
             self.pid_file, "--timeout", "60"],
            env=self._env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        try:
            while True:
                rc = waiter.poll()
                if rc is not None:
                    out = waiter.stdout.read()
                    if rc != 0:
                        raise BrokerError("broker %s did not start (rabbitmqctl wait: %d):\n%s\n%s"
                                          % (self.node, rc, out, self.log_tail()))
                    break
                if self._proc is not None and self._proc.poll() is not None:
                    raise BrokerError("broker %s exited with status %s while starting:\n%s"
                                      % (self.node, self._proc.returncode, self.log_tail()))
                if time.monotonic() > deadline:
                    waiter.kill()
                    out, _ = waiter.communicate()
                    raise BrokerError("broker %s not ready after %.0fs (rabbitmqctl wait still waiting):\n%s\n%s"
                                      % (self.node, START_TIMEOUT, out, self.log_tail()))
                time.sleep(0.1)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
            waiter.stdout.close()
        self._wait_port(self.port, deadline)
        if self.tls:
            self._wait_port(self.tls_port, deadline)

    def _wait_port(self, port, deadline):
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerError("broker %s does not listen on port %d:\n%s"
                                      % (self.node, port, self.log_tail()))
                time.sleep(0.05)

    def start(self):
        """Starts a fresh node: new ports, node name and (if tls) certificates."""
        os.makedirs(self.state_dir, exist_ok=True)
        for attempt in range(1, START_ATTEMPTS + 1):
            ports = _free_ports(3 if self.tls else 2)
            self.port, self.dist_port = ports[0], ports[1]
            self.tls_port = ports[2] if self.tls else None
            self.node = "coport-test-%d-%06x@localhost" % (os.getpid(), random.getrandbits(24))
            try:  # a fresh node: its console log starts empty
                os.unlink(os.path.join(self.log_dir, "console.log"))
            except FileNotFoundError:
                pass
            self._launch()
            try:
                self._wait_ready()
                return self
            except BrokerError as e:
                self.stop()
                if attempt == START_ATTEMPTS or not _lost_port_race(str(e)):
                    raise
                print("broker: a port of %s was taken before it could listen (attempt %d of "
                      "%d); starting again on other ports" % (self.node, attempt, START_ATTEMPTS),
                      file=sys.stderr, flush=True)
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def start_again(self):
        """Starts a stopped node again: same node name, ports and data."""
        for port in [self.port, self.dist_port] + ([self.tls_port] if self.tls else []):
            deadline = time.monotonic() + 30
            while not _port_is_free(port):
                if time.monotonic() > deadline:
                    raise BrokerError("port %d still taken; cannot restart %s" % (port, self.node))
                time.sleep(0.1)
        self._launch()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def is_running(self):
        return _pid_alive(self.beam_pid()) or _pgid_alive(self.pgid)

    def stop(self, timeout=STOP_TIMEOUT):
        """Graceful stop; the process group is killed if it lingers."""
        pid = self.beam_pid()
        if _pid_alive(pid):
            try:
                self.ctl("stop", self.pid_file, timeout=timeout, check=False)
            except BrokerError:
                pass
        self._kill_rest(deadline=time.monotonic() + 5)

    def _kill_rest(self, deadline):
        pid = self.beam_pid()
        while time.monotonic() < deadline and (_pid_alive(pid) or _pgid_alive(self.pgid)):
            self._reap()
            time.sleep(0.1)
        if _pgid_alive(self.pgid):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 10
        while time.monotonic() < end and (_pid_alive(pid) or _pgid_alive(self.pgid)):
            self._reap()
            time.sleep(0.05)
        self._reap(block=True)

    def _reap(self, block=False):
        if self._proc is not None:
            try:
                if block:
                    self._proc.wait(timeout=5)
                else:
                    self._proc.poll()
            except subprocess.TimeoutExpired:
                pass

    def restart(self):
        """Stops the node and starts it again on the same ports, node name
        and data: durable queues and their persistent messages survive."""
        self.stop()
        self.start_again()
        return self

    def kill9(self):
        """SIGKILL of the Erlang VM and everything in its process group (no
        clean shutdown); restart() brings it back on the same data."""
        pid = self.beam_pid()
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        self._kill_rest(deadline=time.monotonic())

    def pause(self, timeout=10):
        """SIGSTOP of the Erlang VM: connections stay open, nothing answers.
        Returns once the kernel reports the VM stopped (the signal is
        delivered asynchronously)."""
        pid = self._require_pid()
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while _proc_state(pid) != "T":
            if time.monotonic() > deadline:
                raise BrokerError("broker %s did not stop within %ds of SIGSTOP" % (self.node, timeout))
            time.sleep(0.01)

    def resume(self):
        os.kill(self._require_pid(), signal.SIGCONT)

    def _require_pid(self):
        pid = self.beam_pid()
        if not _pid_alive(pid):
            raise BrokerError("broker %s is not running" % self.node)
        return pid


# ---- a cluster of nodes ----

CLUSTER_FILE = "cluster.json"
CLUSTER_NODES = 3


def _in_parallel(fns):
    """Runs the functions in threads; returns their results, or raises the
    first exception one of them raised (after all have ended)."""
    results = [None] * len(fns)
    errors = []

    def run(i, fn):
        try:
            results[i] = fn()
        except BaseException as e:  # noqa: B902 -- passed on below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class Cluster:
    """Several private RabbitMQ nodes on 127.0.0.1 joined in one cluster.

    Each node is a Broker with its own node name, ports, data and logs in
    state_dir/node<N>; all of them share one Erlang cookie (HOME is
    state_dir for every node and its CLI tools). The nodes boot in
    parallel, then the second and later ones join the first
    (rabbitmqctl stop_app; join_cluster; start_app). The cluster's
    description is state_dir/cluster.json (load_cluster() reads it), each
    node's its broker.json.

    Quorum queues declared in it get a member on every node: RabbitMQ's
    default initial group size (quorum_cluster_size) is 3 in 3.10, and each
    node's advanced.config sets it to the number of nodes all the same, so
    that the replication does not depend on a default. It also sets
    cluster_partition_handling to pause_minority (RabbitMQ's advice for
    three nodes or more): a node that was cut off from the others long
    enough for them to see it down (a pause of more than net_ticktime,
    45 to 75 s) stops serving and comes back by itself once it sees them,
    instead of leaving the cluster split.
    """

    def __init__(self, state_dir, size=CLUSTER_NODES, nodes=None):
        self.state_dir = os.path.abspath(state_dir)
        self.size = size
        self.nodes = nodes or [Broker(self._node_dir(i), home=self.state_dir)
                               for i in range(1, size + 1)]

    def _node_dir(self, i):
        return os.path.join(self.state_dir, "node%d" % i)

    # ---- description ----
    @property
    def url(self):
        """The failover list of every node's AMQP listener."""
        return "rabbit://%s/" % ",".join("%s:%s@127.0.0.1:%d" % (USER, PASSWORD, b.port)
                                          for b in self.nodes)

    def describe(self):
        return {"url": self.url, "state_dir": self.state_dir,
                "nodes": [b.describe() for b in self.nodes]}

    def index_of(self, node_name):
        """The number (1-based) of the node called node_name, or None."""
        for i, b in enumerate(self.nodes, 1):
            if b.node == node_name:
                return i
        return None

    def node(self, n):
        """Node number n (1-based), a Broker."""
        if not 1 <= n <= len(self.nodes):
            raise BrokerError("the cluster has nodes 1 to %d, not %s" % (len(self.nodes), n))
        return self.nodes[n - 1]

    def _save(self):
        d = {"size": self.size, "nodes": [os.path.basename(b.state_dir) for b in self.nodes]}
        tmp = os.path.join(self.state_dir, CLUSTER_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(d, f)
        os.replace(tmp, os.path.join(self.state_dir, CLUSTER_FILE))

    def log_tail(self, lines=20):
        return "\n".join("==== node %d (%s) ====\n%s" % (i, b.node, b.log_tail(lines))
                         for i, b in enumerate(self.nodes, 1))

    # ---- life cycle ----
    def _write_cookie(self):
        path = os.path.join(self.state_dir, ".erlang.cookie")
        if os.path.exists(path):
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as f:
            f.write("COPORTTEST%016X" % random.getrandbits(64))

    def _progress(self, t0, what):
        print("broker: cluster %s: %s (%.1fs)" % (os.path.basename(self.state_dir), what,
                                                  time.monotonic() - t0),
              file=sys.stderr, flush=True)

    def start(self, progress=True):
        """Boots the nodes in parallel on fresh ports, joins them to the
        first and waits until all run as one cluster."""
        os.makedirs(self.state_dir, exist_ok=True)
        self._write_cookie()
        t0 = time.monotonic()
        for attempt in range(1, START_ATTEMPTS + 1):
            # All ports chosen at once: the nodes do not pick the same.
            ports = _free_ports(2 * len(self.nodes))
            base = "coport-test-%d-%06x" % (os.getpid(), random.getrandbits(24))
            for i, b in enumerate(self.nodes, 1):
                os.makedirs(b.state_dir, exist_ok=True)
                b.port, b.dist_port = ports[2 * i - 2], ports[2 * i - 1]
                b.node = "%s-%d@localhost" % (base, i)
                # Not in rabbitmq.conf's schema: the advanced configuration,
                # which start_again() leaves as it is.
                with open(os.path.join(b.state_dir, "advanced.config"), "w") as f:
                    f.write("[{rabbit, [{quorum_cluster_size, %d},\n"
                            "           {cluster_partition_handling, pause_minority}]}].\n"
                            % len(self.nodes))
                try:
                    os.unlink(os.path.join(b.log_dir, "console.log"))
                except FileNotFoundError:
                    pass
            self._save()
            try:
                for b in self.nodes:
                    b._launch()
                _in_parallel([b._wait_ready for b in self.nodes])
                if progress:
                    self._progress(t0, "%d nodes booted" % len(self.nodes))
                self._join()
                if progress:
                    self._progress(t0, "%d nodes joined" % len(self.nodes))
                return self
            except BrokerError as e:
                self.stop()
                if attempt == START_ATTEMPTS or not _lost_port_race(str(e)):
                    raise
                print("broker: a port of the cluster was taken before it could listen (attempt "
                      "%d of %d); starting again on other ports" % (attempt, START_ATTEMPTS),
                      file=sys.stderr, flush=True)
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _join(self):
        first, others = self.nodes[0], self.nodes[1:]
        # Each node in its own thread; the joins themselves one at a time
        # (each changes the cluster's schema), the rest overlaps.
        turns = [threading.Event() for _ in others] + [threading.Event()]
        turns[0].set()

        def join(i, b):
            try:
                b.ctl("stop_app")
                if not turns[i].wait(START_TIMEOUT):
                    raise BrokerError("%s: the node before it did not join" % b.node)
                b.ctl("join_cluster", first.node)
            finally:
                turns[i + 1].set()
            b.ctl("start_app")
        _in_parallel([lambda i=i, b=b: join(i, b) for i, b in enumerate(others)])
        want = sorted(b.node for b in self.nodes)
        deadline = time.monotonic() + START_TIMEOUT
        while sorted(self.running_nodes()) != want:
            if time.monotonic() > deadline:
                raise BrokerError("the cluster runs %s, not %s" % (self.running_nodes(), want))
            time.sleep(0.1)

    def stop(self):
        """Stops every node (in parallel); never leaves beam.smp running."""
        _in_parallel([b.stop for b in self.nodes])

    def is_running(self):
        return any(b.is_running() for b in self.nodes)

    # Per node: n is the node's number, 1-based.
    def kill9(self, n):
        self.node(n).kill9()

    def stop_node(self, n):
        self.node(n).stop()

    def start_again(self, n):
        """Starts a stopped or killed node again (same name, ports and data):
        it is still a member and rejoins the cluster."""
        self.node(n).start_again()

    def pause(self, n):
        self.node(n).pause()

    def resume(self, n):
        self.node(n).resume()

    # ---- questions, asked of a node that answers ----
    def _ask(self, *args, timeout=20):
        """rabbitmqctl ARGS on the first running, not paused node that answers."""
        errors = []
        for b in self.nodes:
            pid = b.beam_pid()
            if not _pid_alive(pid) or _proc_state(pid) == "T":
                continue
            try:
                return b.ctl(*args, timeout=timeout)
            except BrokerError as e:
                errors.append(str(e))
        raise BrokerError("no node of the cluster answered rabbitmqctl %s:\n%s"
                          % (args[0], "\n".join(errors) or "(none runs)"))

    # Both read the node's own database (rabbitmqctl eval), never the other
    # nodes: they answer while a node is paused, where cluster_status or
    # list_queues wait for it.
    def running_nodes(self):
        """The names of the nodes the cluster sees running."""
        return _NODE_NAME.findall(self._ask("eval", "rabbit_nodes:all_running()."))

    def _leader_and_members(self, queue, vhost="/"):
        if not _SAFE_NAME.match(queue) or not _SAFE_NAME.match(vhost):
            raise BrokerError("unexpected characters in queue %r or vhost %r" % (queue, vhost))
        out = self._ask("eval", (
            'case rabbit_amqqueue:lookup(rabbit_misc:r(<<"%s">>, queue, <<"%s">>)) of '
            '{ok, Q} -> case amqqueue:get_type(Q) of rabbit_quorum_queue -> '
            '{_, L} = amqqueue:get_pid(Q), '
            '[L | maps:get(nodes, amqqueue:get_type_state(Q))]; _ -> [] end; '
            '_ -> [] end.') % (vhost, queue))
        names = _NODE_NAME.findall(out)
        return (names[0], names[1:]) if names else (None, [])

    def leader_of(self, queue):
        """The number (1-based) of the node leading quorum queue `queue`
        (None: no such quorum queue)."""
        return self.index_of(self._leader_and_members(queue)[0])

    def members_of(self, queue):
        """The numbers of the nodes holding a member of quorum queue
        `queue`, sorted."""
        return sorted(i for i in map(self.index_of, self._leader_and_members(queue)[1]) if i)


_NODE_NAME = re.compile(r"'([^'@\s]+@[^'\s]+)'")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.:/-]*$")


def start_cluster(state_dir, nodes=CLUSTER_NODES, progress=True):
    return Cluster(state_dir, size=nodes).start(progress=progress)


def load_cluster(state_dir):
    """The cluster a previous start_cluster() (perhaps in another process)
    left in state_dir."""
    state_dir = os.path.abspath(state_dir)
    try:
        with open(os.path.join(state_dir, CLUSTER_FILE)) as f:
            d = json.load(f)
    except OSError as e:
        raise BrokerError("no cluster state in %s: %s" % (state_dir, e))
    return Cluster(state_dir, size=d["size"],
                   nodes=[load(os.path.join(state_dir, n)) for n in d["nodes"]])


def is_cluster(state_dir):
    return os.path.exists(os.path.join(os.path.abspath(state_dir), CLUSTER_FILE))


def start(state_dir, tls=False):
    return Broker(state_dir, tls=tls).start()


def load(state_dir):
    """The broker a previous start() (perhaps in another process) left in state_dir."""
    state_dir = os.path.abspath(state_dir)
    try:
        with open(os.path.join(state_dir, STATE_FILE)) as f:
            d = json.load(f)
    except OSError as e:
        raise BrokerError("no broker state in %s: %s" % (state_dir, e))
    return Broker(state_dir, tls=d["tls"], node=d["node"], port=d["port"],
                  dist_port=d["dist_port"], tls_port=d.get("tls_port"), pgid=d.get("pgid"),
                  home=d.get("home"))


def stop(state_dir):
    load(state_dir).stop()


def restart(state_dir):
    return load(state_dir).restart()


CLUSTER_COMMANDS = ["start-cluster", "stop-cluster", "cluster-status", "cluster-log", "leader",
                    "members", "node-kill9", "node-stop", "node-start", "node-pause",
                    "node-resume"]


def _cluster_command(p, a):
    if a.command == "start-cluster":
        c = start_cluster(a.state_dir, nodes=a.nodes)
        print(json.dumps(c.describe()), flush=True)
        return 0
    c = load_cluster(a.state_dir)
    if a.command == "stop-cluster":
        c.stop()
    elif a.command == "cluster-status":
        d = c.describe()
        for b, n in zip(c.nodes, d["nodes"]):
            n["running"] = b.is_running()
            n["paused"] = _proc_state(b.beam_pid()) == "T"
        d["running_nodes"] = c.running_nodes() if c.is_running() else []
        print(json.dumps(d), flush=True)
    elif a.command == "cluster-log":
        print(c.log_tail(100))
    elif a.command in ("leader", "members"):
        if not a.prefix:
            p.error("%s needs a queue" % a.command)
        print(json.dumps(c.leader_of(a.prefix) if a.command == "leader"
                         else c.members_of(a.prefix)), flush=True)
    else:
        try:
            n = int(a.prefix or "")
        except ValueError:
            p.error("%s needs the node's number" % a.command)
        {"node-kill9": c.kill9, "node-stop": c.stop_node, "node-start": c.start_again,
         "node-pause": c.pause, "node-resume": c.resume}[a.command](n)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="private RabbitMQ broker for coport's tests")
    p.add_argument("command", choices=["start", "stop", "restart", "kill9", "pause", "resume",
                                       "status", "log", "delete-queues"] + CLUSTER_COMMANDS)
    p.add_argument("state_dir")
    p.add_argument("prefix", nargs="?", help="delete-queues: the names' prefix; "
                   "node-*: the node's number (1-based); leader, members: the queue")
    p.add_argument("--tls", action="store_true", help="also listen with TLS (start only)")
    p.add_argument("--nodes", type=int, default=CLUSTER_NODES,
                   help="start-cluster: how many nodes (%d)" % CLUSTER_NODES)
    a = p.parse_args(argv)
    try:
        if a.command in CLUSTER_COMMANDS:
            return _cluster_command(p, a)
        if a.command == "start":
            b = start(a.state_dir, tls=a.tls)
            print(json.dumps(b.describe()), flush=True)
            return 0
        b = load(a.state_dir)
        if a.command == "stop":
            b.stop()
        elif a.command == "restart":
            b.restart()
            print(json.dumps(b.describe()), flush=True)
        elif a.command == "kill9":
            b.kill9()
        elif a.command == "pause":
            b.pause()
        elif a.command == "resume":
            b.resume()
        elif a.command == "status":
            d = b.describe()
            d["running"] = b.is_running()
            print(json.dumps(d), flush=True)
        elif a.command == "log":
            print(b.log_tail(200))
        elif a.command == "delete-queues":
            if not a.prefix:
                p.error("delete-queues needs a prefix")
            print(json.dumps(b.delete_queues(a.prefix)), flush=True)
        return 0
    except BrokerError as e:
        print("broker.py: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

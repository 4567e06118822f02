"""coport-demo serving its admin HTTP server (--http), for the admin tests.

    with ServedDemo(demo_path, token="s3cret", args=[...]) as d:
        d.base_url, d.token, d.lines, d.get(path), d.post(path, body, headers)

The demo runs its traffic, prints its report and then keeps serving until
SIGTERM; entering returns once it printed the "serving until" line, so the
service is idle and its figures no longer change. Leaving sends SIGTERM and
raises AssertionError unless the demo exits 0 within its deadline.
ServedDemo(None, url=..., token=...) uses a server already running.
"""

import http.client
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse

TIME_SCALE = float(os.environ.get("COPORT_TEST_TIME_SCALE", "1") or "1")
START_WITHIN = 120 * TIME_SCALE  # the demo's traffic, report and start
STOP_WITHIN = 30 * TIME_SCALE


def point_name(row):
    """The name a report row's point has on /metrics and in POST /policy:
    "endpoint.method", or the method alone for a point without an endpoint."""
    return row["endpoint"] + "." + row["method"] if row.get("endpoint") else row["method"]


class ServedDemo:
    def __init__(self, demo_path, token="", args=(), url=None):
        self.demo_path = demo_path
        self.token = token
        self.args = list(args)
        self.base_url = url.rstrip("/") if url else None
        self.lines = []
        self.proc = None
        self._served = threading.Event()
        self._reader = None

    def __enter__(self):
        if self.demo_path is None:
            return self
        env = dict(os.environ)
        env["COPORT_ADMIN_TOKEN"] = self.token
        self.proc = subprocess.Popen(
            [self.demo_path, "--http", "127.0.0.1:0", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
            start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._served.wait(START_WITHIN) or self.base_url is None:
            self._kill()
            raise AssertionError("coport-demo did not start serving within %.0f s; its stdout:\n%s"
                                 % (START_WITHIN, "\n".join(self.lines)))
        return self

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            m = re.match(r"^admin http: (http://[0-9.]+:[0-9]+)/$", line)
            if m:
                self.base_url = m.group(1)
            if line.startswith("serving until SIGINT or SIGTERM: "):
                self._served.set()
        self._served.set()  # the demo ended: __enter__ reports it

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __exit__(self, kind, value, tb):
        if self.proc is None:
            return False
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            status = self.proc.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError("coport-demo did not stop within %.0f s of SIGTERM" % STOP_WITHIN)
        self._reader.join(STOP_WITHIN)
        if kind is None and status != 0:
            raise AssertionError("coport-demo exited %d after SIGTERM; its stdout ends:\n%s"
                                 % (status, "\n".join(self.lines[-20:])))
        return False

    def request(self, method, path, body=None, headers=None):
        """(status, headers as a dict with lower-case names, body bytes)"""
        u = urllib.parse.urlsplit(self.base_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30 * TIME_SCALE)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body, headers=None):
        return self.request("POST", path, body, headers)

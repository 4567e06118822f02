"""coport-example-server --http: the admin HTTP server of a plain RPC
service, on either executor. Usage: test_example_server_http.py SERVER fiber|coro

Starts the server on memory:// with --http 127.0.0.1:0 and the token in
$COPORT_ADMIN_TOKEN, then checks: /metrics has a policy series for every
method of the report and the loops' series on fiber_executor; POST /policy
without the token is refused (401) and with it sets example.echo's policy
(legacy where it has both forms, its one form's policy in a build without
fibers, where it has only its ported form), which /migration.json, /metrics
and /policy/changes then show; SIGTERM stops the server with exit status 0.
"""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from served_demo import START_WITHIN, STOP_WITHIN, ServedDemo, point_name  # noqa: E402


def fail(what):
    print("FAIL: " + what)
    sys.exit(1)


def main():
    server, executor = sys.argv[1], sys.argv[2]
    token = secrets.token_hex(12)
    env = dict(os.environ, COPORT_ADMIN_TOKEN=token)
    proc = subprocess.Popen([server, "--transport", "memory://", "--topic", "example", "--executor", executor,
                             "--http", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            start_new_session=True)
    lines, ready = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    errors = []
    threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()
    try:
        if not ready.wait(START_WITHIN) or not any(l.startswith("ready") for l in lines):
            proc.wait(STOP_WITHIN)
            fail("no 'ready' line; stdout: %r; stderr: %r" % (lines, errors[-5:]))
        urls = [m.group(1) for m in (re.match(r"^admin http: (http://[0-9.]+:[0-9]+)/$", l) for l in lines) if m]
        if not urls:
            fail("no 'admin http:' line before 'ready'; stdout: %r" % lines)
        http = ServedDemo(None, url=urls[0], token=token)

        status, _, body = http.get("/migration.json")
        report = json.loads(body)
        points = [point_name(r) for r in report["methods"]]
        if status != 200 or "example.echo" not in points:
            fail("/migration.json: %d %r" % (status, body[:300]))
        status, headers, body = http.get("/metrics")
        text = body.decode()
        for p in points:
            if not re.search(r'^coport_migration_policy\{point="%s",policy="[^"]+"\} 1$' % re.escape(p), text, re.M):
                fail("/metrics has no policy series for %s" % p)
        if not re.search(r'^coport_transport_connected\{transport="example",driver="memory"\} 1$', text, re.M):
            fail("/metrics has no coport_transport_connected series for the server's transport")
        loops = re.findall(r'^coport_loop_busy_seconds_total\{loop="([^"]+)"\}', text, re.M)
        if executor == "fiber" and not loops:
            fail("/metrics has no coport_loop_* series on fiber_executor")
        if executor == "coro" and loops:
            fail("/metrics has loop series on coro_executor, which runs on no coport loop: %r" % loops)

        echo = [r for r in report["methods"] if r["method"] == "echo"][0]
        before, wanted = echo["policy"], ("legacy" if echo["kinds"] == "both" else echo["policy"])
        change = json.dumps({"point": "example.echo", "policy": wanted, "by": "test"}).encode()
        status, _, _ = http.post("/policy", change, {"Content-Type": "application/json"})
        if status != 401:
            fail("POST /policy without the token answered %d, expected 401" % status)
        status, _, body = http.post("/policy", change, {"Authorization": "Bearer " + token})
        if status != 200 or json.loads(body) != {"point": "example.echo", "policy": wanted, "previous": before}:
            fail("POST /policy with the token: %d %r" % (status, body))
        echo = [r for r in json.loads(http.get("/migration.json")[2])["methods"] if r["method"] == "echo"][0]
        if echo["policy"] != wanted:
            fail("/migration.json shows echo under %r after the change to %r" % (echo["policy"], wanted))
        if ('coport_migration_policy{point="example.echo",policy="%s"} 1' % wanted) not in http.get("/metrics")[2].decode():
            fail("/metrics does not show the new policy")
        changes = json.loads(http.get("/policy/changes")[2])["changes"]
        if [(c["point"], c["from"], c["to"], c["who"]) for c in changes] != [("example.echo", before, wanted, "test")]:
            fail("/policy/changes: %r" % changes)
        if any(token in e for e in errors):
            fail("the token was logged")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            status = proc.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            fail("the server did not stop within %.0f s of SIGTERM" % STOP_WITHIN)
    if status != 0:
        fail("the server exited %d after SIGTERM; stderr ends: %r" % (status, errors[-5:]))
    print("example server --http (%s): as expected" % executor)


if __name__ == "__main__":
    main()

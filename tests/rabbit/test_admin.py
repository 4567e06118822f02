#!/usr/bin/python3
"""The admin endpoint of a running service, over the broker.

Server a (coport-example-server --admin-token, fiber_executor) starts with
echo on policy legacy and add on shadow; server b serves the same topic
without --admin. coport-example-client, as an operator would use it:

1. calls of echo and add on a, then `report` (the table) and `report --json`:
   each method's policy, the calls counted on the form that served them,
   the shadow comparisons of add, and a "not ready" verdict naming echo.
2. `set-policy echo ported` answers the previous policy, and the next calls
   of echo run its coroutine form (the report's figures move there).
3. the token from COPORT_ADMIN_TOKEN instead of the command line; refusals:
   no token or a wrong one (admin_denied), an unknown method
   (invalid_policy), a server without --admin (UnsupportedVersion); a bad
   policy is refused by the client itself (exit 64). The token never shows
   in the server's log.
4. `set-policy echo legacy` (rollback) and both servers still serve calls.
"""

import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

TOKEN = "admin-s3cret-token"


def test(h):
    if h.self_test:
        raise harness.Skip("the admin endpoint is coport's own: no oslo.messaging stand-in")
    topic = h.topic()
    h.step("server a (admin on, echo legacy, add shadow) and b (admin off) on topic %s" % topic)
    a = h.start("a", h.server_cmd(h.url, topic, server="a", executor="fiber") + [
        "--admin-token", TOKEN, "--native", "--policy", "echo=legacy", "--policy", "example.add=shadow"])
    b = h.start("b", h.server_cmd(h.url, topic, server="b", executor="fiber"))
    for s in (a, b):
        s.wait_ready()

    def client(name, *command, server="a", token=TOKEN):
        cmd = h.client_cmd(h.url, topic, server=server, timeout=20)
        if token is not None:
            cmd += ["--admin-token", token]
        return h.run(name, cmd + list(command), timeout=60)

    def report():
        r = client("report --json", "report", "--json")
        h.require(r.rc == 0, "report --json exits 0", r.describe())
        rep = r.json()
        return rep, {m["method"]: m for m in rep["methods"]}

    def form(row, kind):
        return next(f for f in row["forms"] if f["kind"] == kind)

    h.step("1. calls, then the report")
    for i in range(5):
        r = client("call echo", "call", "echo", json.dumps({"value": i}))
        h.require(r.rc == 0 and r.json() == i, "echo(%d) on a" % i, r.describe())
    for x in range(3):
        r = client("call add", "call", "add", json.dumps({"a": x, "b": 1}))
        h.require(r.rc == 0 and r.json() == x + 1, "add(%d, 1) on a" % x, r.describe())

    r = client("report", "report")
    h.expect(r.rc == 0, "report exits 0", r.describe())
    lines = r.out.splitlines()
    h.expect(any("echo" in l and "legacy" in l for l in lines), "the table shows echo under legacy",
             r.describe())
    h.expect(any("add" in l and "shadow" in l for l in lines), "the table shows add under shadow",
             r.describe())
    h.expect("not ready for coro_executor" in r.out and "example.echo is served under policy legacy" in r.out,
             "the verdict: not ready, naming echo's policy", r.describe())

    rep, methods = report()
    h.expect(rep["executor"] == "fiber_executor", "the report comes from fiber_executor", repr(rep["executor"]))
    h.expect(set(methods) >= {"echo", "add", "sleep_ms", "fail", "counts"},
             "the report lists every method", repr(sorted(methods)))
    echo, add = methods["echo"], methods["add"]
    h.expect(echo["policy"] == "legacy" and add["policy"] == "shadow" and methods["counts"]["policy"] == "ported",
             "policies from the command line (echo legacy, add shadow, the others ported)",
             repr({m: v["policy"] for m, v in methods.items()}))
    h.expect(form(echo, "fiber")["calls"] == 5 and form(echo, "coroutine")["calls"] == 0,
             "echo's 5 calls ran its fiber form", json.dumps(echo))
    h.expect(add["shadow"] == {"calls": 3, "mismatches": 0},
             "add's 3 calls were compared in shadow, without a mismatch", json.dumps(add))
    h.expect(form(add, "fiber")["calls"] == 3 and form(add, "coroutine")["calls"] == 3,
             "in shadow both forms of add ran each call", json.dumps(add))

    h.step("2. set-policy echo ported")
    r = client("set-policy echo ported", "set-policy", "echo", "ported")
    h.expect(r.rc == 0 and r.json() == {"method": "echo", "policy": "ported", "previous": "legacy"},
             "set-policy answers the method, the policy and the previous one", r.describe())
    for i in range(4):
        r = client("call echo", "call", "echo", json.dumps({"value": "p%d" % i}))
        h.require(r.rc == 0 and r.json() == "p%d" % i, "echo on a after the change", r.describe())
    _, methods = report()
    echo = methods["echo"]
    h.expect(echo["policy"] == "ported" and form(echo, "fiber")["calls"] == 5
             and form(echo, "coroutine")["calls"] == 4,
             "the next 4 calls ran the coroutine form, the fiber form kept its 5", json.dumps(echo))

    h.step("3. refusals")
    r = h.run("report with the token in the environment",
              h.client_cmd(h.url, topic, "report", server="a", timeout=20),
              env={"COPORT_ADMIN_TOKEN": TOKEN})
    h.expect(r.rc == 0 and "verdict:" in r.out, "the client takes the token from COPORT_ADMIN_TOKEN",
             r.describe())
    r = client("report without a token", "report", token=None)
    h.expect(r.rc == 1 and r.out.startswith("admin_denied"), "no token: exit 1, admin_denied", r.describe())
    r = client("set-policy with a wrong token", "set-policy", "echo", "legacy", token="wrong")
    h.expect(r.rc == 1 and r.out.startswith("admin_denied"), "a wrong token: exit 1, admin_denied",
             r.describe())
    r = client("set-policy of an unknown method", "set-policy", "no_such_method", "legacy")
    h.expect(r.rc == 1 and r.out.startswith("invalid_policy") and "no_such_method" in r.out,
             "an unknown method: exit 1, invalid_policy naming it", r.describe())
    r = client("set-policy sometimes", "set-policy", "echo", "sometimes")
    h.expect(r.rc == 64 and "sometimes" in r.err, "a bad policy: exit 64 from the client", r.describe())
    r = client("report from b", "report", server="b")
    h.expect(r.rc == 1 and r.out.startswith("UnsupportedVersion"),
             "a server without --admin: exit 1, UnsupportedVersion", r.describe())
    _, methods = report()
    h.expect(methods["echo"]["policy"] == "ported", "the refused calls changed nothing",
             methods["echo"]["policy"])

    h.step("4. rollback, and both servers still serve")
    r = client("set-policy echo legacy", "set-policy", "echo", "legacy")
    h.expect(r.rc == 0 and r.json()["previous"] == "ported", "rollback to legacy", r.describe())
    for server in ("a", "b"):
        r = client("call add on " + server, "call", "add", '{"a": 40, "b": 2}', server=server)
        h.expect(r.rc == 0 and r.json() == 42, "%s still serves calls" % server, r.describe())
    _, methods = report()
    h.expect(methods["echo"]["policy"] == "legacy", "the report shows echo back on legacy",
             methods["echo"]["policy"])

    h.step("stop the servers")
    for s in (a, b):
        h.expect(s.alive(), "%s still running" % s.name, "" if s.alive() else s.tail())
    status = h.stop_all([a, b])
    h.expect(status == {"a": 0, "b": 0}, "both servers exit 0 on SIGTERM", repr(status))
    h.expect(TOKEN not in a.output(), "the admin token is not in server a's log")


if __name__ == "__main__":
    sys.exit(harness.main(test, "admin", __doc__))

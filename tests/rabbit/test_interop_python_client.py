#!/usr/bin/python3
"""oslo.messaging's RPC client against coport servers.

Two coport-example-server programs (--executor fiber or coro) serve one
topic as servers s1 and s2; oslo_peer.py client-suite runs its cases
against them: calls with strings, nested objects, unicode and lists, add,
casts (server-specific and on the topic, checked through counts()), a
fanout cast that must reach both servers, a server-specific target,
a version too high (UnsupportedVersion), an unknown method (NoSuchMethod),
a remote ExampleError with its message, a timeout, calls after the
timeout, concurrent calls. Every case of CASES must report once (`ok` or
`FAIL`), and no other: a case the suite skips, repeats or does not know,
or a suite that ends early, fails the test. Then both servers must stop
cleanly on SIGTERM. The broker's queues must be those oslo.messaging 14
declares with the URL's options (harness.check_queue_types: with
--url-query rabbit_quorum_queue=true, quorum topic and server queues).
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

# What oslo_peer.py client-suite runs, in its order (fanout to s1 and s2).
CASES = ("echo_string", "echo_nested", "echo_unicode", "echo_list", "echo_empty_string", "add",
         "server_specific_target", "cast_server_specific", "cast_topic", "fanout_cast_2_servers",
         "version_too_high", "compatible_lower_version", "unknown_method", "remote_error",
         "timeout", "calls_after_timeout", "concurrent_sleeps")


def test(h):
    topic = h.topic("-" + h.args.executor)
    h.step("two coport servers (executor %s) on topic %s" % (h.args.executor, topic))
    servers = [h.start(name, h.server_cmd(h.url, topic, server=name))
               for name in ("s1", "s2")]
    for s in servers:
        s.wait_ready()

    h.step("oslo.messaging client suite against s1, fanout to s1 and s2")
    suite = h.start("client-suite", h.peer_cmd(
        "client-suite", h.url, topic, "--server", "s1", "--fanout-servers", "s1,s2",
        "--peer", "python" if h.self_test else "coport"))
    reported = []  # case names, in the order of their `ok` / `FAIL` lines
    failed = []
    summary = None
    seen = 0
    while summary is None:
        try:
            i = suite.wait_line(lambda l: l.startswith(("ok ", "FAIL ", "FAILED", "all cases",
                                                         "client suite")),
                                120, "the next case result", start=seen)
        except harness.TestFailure as e:
            h.expect(False, "the client suite ran to its summary line", str(e))
            break
        line = suite.stdout[i]
        seen = i + 1
        if line.startswith("ok "):
            reported.append(line[3:].split(" ", 1)[0])
            h.ok("suite: " + line[3:])
        elif line.startswith("FAIL "):
            reported.append(line[5:].split(":", 1)[0])
            failed.append(reported[-1])
            h.expect(False, "suite: " + line[5:])
        elif line.startswith("client suite"):
            h.log(line)
        else:
            h.log(line)
            summary = line
    missing = [c for c in CASES if c not in reported]
    repeated = sorted({c for c in reported if reported.count(c) > 1})
    unknown = [c for c in reported if c not in CASES]
    h.expect(not missing and not repeated and not unknown,
             "the suite reported each of its %d cases once (%d reports)"
             % (len(CASES), len(reported)),
             "  missing: %s\n  repeated: %s\n  unknown: %s" % (
                 ", ".join(missing) or "-", ", ".join(repeated) or "-",
                 ", ".join(unknown) or "-"))
    if summary is not None:
        want = ("FAILED %d case(s): %s" % (len(failed), ", ".join(failed)) if failed
                else "all cases passed")
        h.expect(summary == want, "the suite's summary matches its cases (%r)" % summary,
                 "  expected %r" % want)
    rc = suite.wait_exit(30)
    h.expect(rc == 0, "the client suite exited 0 (got %s)" % rc,
             "" if rc == 0 else suite.tail())
    for s in servers:
        h.expect(s.alive(), "%s still running after the suite" % s.name,
                 "" if s.alive() else s.tail())

    h.step("the queues on the wire, as oslo.messaging declares them with the URL's options")
    h.check_queue_types(topic, servers=("s1", "s2"), fanouts=2)

    h.step("graceful stop (SIGTERM)")
    codes = h.stop_all(servers)
    for s in servers:
        h.expect(codes[s.name] == 0, "%s exited 0 on SIGTERM (got %s)" % (s.name, codes[s.name]),
                 "" if codes[s.name] == 0 else s.tail())


if __name__ == "__main__":
    sys.exit(harness.main(test, "interop_python_client", __doc__))

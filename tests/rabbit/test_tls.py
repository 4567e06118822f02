#!/usr/bin/python3
"""RPC over TLS (rabbit://...?ssl=true&ssl_ca_file=CA).

A coport server connects through the broker's TLS listener; the coport
client (over TLS, and over plain TCP too) and oslo.messaging (over TLS)
call it. With ssl_ca_file naming a CA that did not sign the broker's
certificate, the coport client must fail (exit 3) with a clear message
about the certificate, without hanging and without printing the password.
Needs with_broker.py --tls (skipped, 77, otherwise).
"""

import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402

TIMEOUT = 10


def test(h):
    h.need_tls()
    topic = h.topic()
    tls_url = h.tls_url
    wrong_url = tls_url.replace(h.ca_file, h.wrong_ca_file)
    h.require(wrong_url != tls_url, "the TLS URL names the CA file", harness.redact(tls_url))

    h.step("coport server over TLS on topic %s" % topic)
    srv = h.start("tls-server", h.server_cmd(tls_url, topic, server="t1"))
    srv.wait_ready()

    def call(name, url, method, args, **options):
        return h.run(name, h.client_cmd(url, topic, "call", method, json.dumps(args),
                                        timeout=TIMEOUT, **options), timeout=TIMEOUT + 30)

    h.step("calls")
    r = call("coport call over TLS", tls_url, "echo", {"value": "über TLS"})
    h.expect(r.rc == 0 and r.json() == "über TLS", "coport client over TLS: echo", r.describe())
    r = call("coport call over TLS (add)", tls_url, "add", {"a": 20, "b": 22}, server="t1")
    h.expect(r.rc == 0 and r.json() == 42, "coport client over TLS: add on t1", r.describe())
    r = call("coport call over TCP", h.url, "echo", {"value": "plain"})
    h.expect(r.rc == 0 and r.json() == "plain",
             "coport client over plain TCP reaches the TLS server", r.describe())
    r = h.run("oslo call over TLS", h.oslo_client_cmd(
        tls_url, topic, "call", "echo", '{"value": "oslo TLS"}', timeout=TIMEOUT), timeout=60)
    h.expect(r.rc == 0 and r.json() == "oslo TLS", "oslo.messaging over TLS: echo",
             r.describe())

    h.step("a CA that did not sign the broker's certificate")
    r = call("coport call, wrong CA", wrong_url, "echo", {"value": "never"})
    text = r.output()
    h.expect(r.rc == 3, "the client fails with exit 3 (got %s)" % r.rc, r.describe())
    h.expect(r.seconds < TIMEOUT + 5, "it fails without hanging (%.1fs)" % r.seconds)
    words = ("certificate", "verify", "ssl", "tls", "handshake")
    h.expect(r.err.strip() and any(w in text.lower() for w in words),
             "its message speaks of the certificate / TLS", r.describe())
    h.expect(not any(p in text for p in harness.SECRETS),
             "its output does not contain the password")

    h.step("stop the server")
    rc = srv.stop(timeout=30)
    h.expect(rc == 0, "the server exited 0 on SIGTERM (got %s)" % rc,
             "" if rc == 0 else srv.tail())


if __name__ == "__main__":
    sys.exit(harness.main(test, "tls", __doc__))

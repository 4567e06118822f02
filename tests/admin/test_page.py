#!/usr/bin/env python3
"""The /migration dashboard page in headless Chromium, and its policy form.

    test_page.py DEMO_PATH [--screenshot OUT.png]
    test_page.py --url http://127.0.0.1:PORT --token T [--screenshot OUT.png]

Starts coport-demo serving its admin HTTP server (through served_demo.ServedDemo), then:
  1. dumps the page's DOM with `chromium --headless=new --dump-dom --virtual-time-budget` and checks
     it against /migration.json: the verdict, the reasons, one element per point with its policy,
     metering.stats' shadow mismatches and their examples, an SVG chart per point with calls;
  2. drives the page through the Chrome DevTools Protocol: waits for it to render twice, takes a
     screenshot, then fills the page's own policy form and clicks its buttons (wrong token, no
     token, a change to rest.usage, its rollback, a bad policy text), checking each answer shown
     by the page and the server's state (/migration.json, /policy/changes).
Steps wait for conditions (DOM or endpoint polled), each within 60 s times
COPORT_TEST_TIME_SCALE. Prints `FAIL: <what>` and exits 1 on failure, exits 0 after
`page: as expected (screenshot: PATH)`.
"""

import argparse
import base64
import html.parser
import json
import os
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from served_demo import TIME_SCALE as SCALE, ServedDemo, point_name  # noqa: E402

WAIT = 60 * SCALE
POINT = "rest.usage"          # the point whose policy the form changes
SHADOWED = "metering.stats"   # the point the demo shadows with mismatching answers


class Fail(Exception):
    def __init__(self, what, context=""):
        super().__init__(what)
        self.what, self.context = what, context


def log(line):
    print("page: " + line, flush=True)


def wait_for(what, probe, timeout=None, context=None):
    """Polls probe() until it returns a true value (returned); Fail after the deadline."""
    deadline = time.monotonic() + (timeout or WAIT)
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Fail("timed out after %.0f s waiting for %s" % (timeout or WAIT, what),
                       context() if context else "last probe: %r" % (value,))
        time.sleep(0.1)


def import_websocket():
    try:
        import websocket
    except ImportError:
        # an interpreter other than Debian's: websocket-client is pure Python, use Debian's copy
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import websocket
        except ImportError:
            raise Fail("no Python module `websocket` (install Debian's python3-websocket)")
    return websocket


def find_chromium():
    for c in (os.environ.get("COPORT_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise Fail("chromium not found (install Debian's chromium, or set COPORT_CHROMIUM): "
               "the dashboard page cannot be checked")


# ---------------------------------------------------------------- chromium processes

class Chromium:
    """A headless chromium in its own process group, killed as a group."""

    def __init__(self, exe, user_data_dir, extra, out_path, err_path):
        self.out_path, self.err_path = out_path, err_path
        cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--user-data-dir=" + user_data_dir, "--no-first-run", "--no-default-browser-check",
               "--disable-extensions", "--disable-sync", "--disable-background-networking",
               "--disable-component-update", "--mute-audio", "--hide-scrollbars"] + extra
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        self.pgid = self.proc.pid

    def stderr_tail(self, n=15):
        try:
            with open(self.err_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.pgid is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            if self.wait(5 * SCALE) is None:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        self._signal(signal.SIGKILL)  # helpers left behind by the browser process
        self.pgid = None

    def _signal(self, sig):
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


# ---------------------------------------------------------------- a DOM from --dump-dom

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.iter()

    def find(self, pred):
        return [n for n in self.iter() if pred(n)]

    def by_id(self, ident):
        found = self.find(lambda n: n.attrs.get("id") == ident)
        return found[0] if found else None

    def html(self, limit=1500):
        inner = "".join(c if isinstance(c, str) else c.html(limit) for c in self.children)
        attrs = "".join(' %s="%s"' % (k, v) for k, v in self.attrs.items())
        return ("<%s%s>%s</%s>" % (self.tag, attrs, inner, self.tag))[:limit]


class TreeBuilder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.root = Node("#document", {}, None)
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.stack[-1])
        self.stack[-1].children.append(n)
        if tag not in VOID:
            self.stack.append(n)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, attrs, self.stack[-1]))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse_dom(text):
    b = TreeBuilder()
    b.feed(text)
    b.close()
    return b.root


# ---------------------------------------------------------------- the server's state

def get_json(demo, path):
    status, _, body = demo.get(path)
    if status != 200:
        raise Fail("GET %s answered %d" % (path, status), body[:500].decode(errors="replace"))
    return json.loads(body)


def policy_of(demo, point):
    for m in get_json(demo, "/migration.json")["methods"]:
        if point_name(m) == point:
            return m["policy"]
    raise Fail("/migration.json has no point %s" % point)


def changes_of(demo):
    return get_json(demo, "/policy/changes")["changes"]


# ---------------------------------------------------------------- 1. the dumped DOM

def dump_dom(exe, tmp, url):
    """The page's DOM after 5 s of virtual time (two refreshes or more); retried until rendered."""
    attempt = 0

    def once():
        nonlocal attempt
        attempt += 1
        ud = os.path.join(tmp, "dump-profile-%d" % attempt)
        out, err = os.path.join(tmp, "dom-%d.html" % attempt), os.path.join(tmp, "dump-%d.err" % attempt)
        c = Chromium(exe, ud, ["--dump-dom", "--virtual-time-budget=5000", "--window-size=1280,900", url],
                     out, err)
        try:
            rc = c.wait(WAIT)
            if rc is None:
                raise Fail("chromium --dump-dom did not finish in %.0f s" % WAIT, c.stderr_tail())
            if rc != 0:
                raise Fail("chromium --dump-dom exited with status %d" % rc, c.stderr_tail())
        finally:
            c.kill()
        with open(out, encoding="utf-8", errors="replace") as f:
            text = f.read()
        dom = parse_dom(text)
        body = dom.find(lambda n: n.tag == "body")
        if body and body[0].attrs.get("data-loaded") == "1":
            return text, dom
        log("dump %d: the page has not rendered yet (body %r), again" % (attempt, body[0].attrs if body else None))
        return None

    last = {}

    def probe():
        r = once()
        last["r"] = r
        return r

    def context():
        path = os.path.join(tmp, "dom-%d.html" % attempt)
        try:
            with open(path, errors="replace") as f:
                text = f.read()
            return text[max(text.find("<body"), 0):][:3000]
        except OSError:
            return ""
    return wait_for("the dumped page to have body data-loaded=\"1\"", probe, context=context)


def check_dom(dom, report):
    def ctx(node):
        return node.html(3000) if node else "(missing)"

    verdict = dom.by_id("verdict")
    if verdict is None or verdict.text().strip() != report["verdict"]:
        raise Fail("#verdict is not the report's verdict %r" % report["verdict"], ctx(verdict))
    reasons = dom.by_id("reasons")
    if not report["reasons"]:
        raise Fail("the demo's report has no reasons: nothing to check in #reasons")
    items = [li.text().strip() for li in (reasons.find(lambda n: n.tag == "li") if reasons else [])]
    for r in report["reasons"]:
        if r not in items:
            raise Fail("#reasons lacks the reason %r" % r, ctx(reasons))
    fe = dom.by_id("fetch-error")
    if fe is None or "hidden" not in fe.attrs:
        raise Fail("#fetch-error is shown", ctx(fe))
    lr = dom.by_id("last-refresh")
    if lr is None or not lr.attrs.get("data-time"):
        raise Fail("#last-refresh has no time", ctx(lr))

    points = dom.by_id("points")
    if points is None:
        raise Fail("no #points", dom.html(3000))
    methods = report["methods"]
    if not methods:
        raise Fail("the demo's report has no points")
    with_calls = 0
    for m in methods:
        name = point_name(m)
        els = points.find(lambda n: n.attrs.get("data-point") == name)
        if len(els) != 1:
            raise Fail("#points has %d elements for point %s (want 1)" % (len(els), name), ctx(points))
        e = els[0]
        if e.attrs.get("data-policy") != m["policy"] or m["policy"] not in e.text():
            raise Fail("point %s does not show its policy %s" % (name, m["policy"]), ctx(e))
        calls = sum(f["calls"] for f in m["forms"])
        if e.attrs.get("data-calls") != str(calls):
            raise Fail("point %s shows %s calls, the report %d" % (name, e.attrs.get("data-calls"), calls), ctx(e))
        for f in m["forms"]:
            form = {"fiber": "legacy", "coroutine": "ported"}.get(f["kind"], f["kind"])
            rows = e.find(lambda n: n.tag == "tr" and n.attrs.get("data-form") == form)
            if len(rows) != 1 or "{:,}".format(f["calls"]) not in rows[0].text():
                raise Fail("point %s: no row for its %s form with %d calls" % (name, form, f["calls"]), ctx(e))
        if calls:
            with_calls += 1
            svgs = e.find(lambda n: n.tag == "svg")
            lines = e.find(lambda n: n.tag == "polyline")
            if not svgs or not lines:
                raise Fail("point %s has calls but no chart (svg with lines)" % name, ctx(e))
    if not with_calls:
        raise Fail("no point of the report has calls")

    stats = [m for m in methods if point_name(m) == SHADOWED]
    if not stats:
        raise Fail("the report has no point %s" % SHADOWED)
    mm = stats[0]["shadow"]["mismatches"]
    if not mm:
        raise Fail("the report shows no shadow mismatch for %s: nothing to check" % SHADOWED)
    e = points.find(lambda n: n.attrs.get("data-point") == SHADOWED)[0]
    shadow = e.find(lambda n: "shadow" in n.attrs.get("class", "").split())
    if e.attrs.get("data-shadow-mismatches") != str(mm) or not shadow or \
            "%s mismatches" % "{:,}".format(mm) not in shadow[0].text():
        raise Fail("point %s does not show its %d shadow mismatches" % (SHADOWED, mm), ctx(e))

    box = dom.by_id("mismatches")
    examples = [x for x in report.get("mismatches", []) if point_name(x) == SHADOWED]
    if not examples:
        raise Fail("the report lists no mismatch example of %s" % SHADOWED)
    rows = box.find(lambda n: n.tag == "tr" and n.attrs.get("data-point") == SHADOWED) if box else []
    texts = [r.text() for r in rows]

    def leaves(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from leaves(x)
        elif isinstance(v, list):
            for x in v:
                yield from leaves(x)
        elif isinstance(v, str):
            yield v
    shown = [x for x in examples
             if any(all(s in t for s in [x["legacy"], x["ported"]] + list(leaves(x.get("args")))) for t in texts)]
    if not shown:
        raise Fail("#mismatches shows no example of %s (args, legacy and ported answers)" % SHADOWED, ctx(box))
    return len(methods), with_calls, len(shown)


# ---------------------------------------------------------------- 2. CDP

class CDP:
    def __init__(self, websocket, url):
        self.ws = websocket.create_connection(url, timeout=WAIT, suppress_origin=True)
        self.next_id = 0

    def call(self, method, params=None, timeout=None):
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + (timeout or WAIT)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("no answer from chromium to %s" % method)
            self.ws.settimeout(left)
            msg = json.loads(self.ws.recv())
            if msg.get("id") == ident:
                if "error" in msg:
                    raise Fail("CDP %s failed: %s" % (method, msg["error"]))
                return msg.get("result", {})

    def eval(self, expression, await_promise=False):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": await_promise})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise Fail("JavaScript error in the page: %s" % d.get("exception", {}).get("description", d.get("text")),
                       expression)
        return r["result"].get("value")

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


def start_cdp(exe, tmp, websocket, browsers):
    ud = os.path.join(tmp, "cdp-profile")
    c = Chromium(exe, ud, ["--remote-debugging-port=0", "--window-size=1280,900", "about:blank"],
                 os.path.join(tmp, "cdp.out"), os.path.join(tmp, "cdp.err"))
    browsers.append(c)
    port_file = os.path.join(ud, "DevToolsActivePort")

    def port():
        if c.proc.poll() is not None:
            raise Fail("chromium exited with status %d before opening its DevTools port" % c.proc.returncode,
                       c.stderr_tail())
        try:
            with open(port_file) as f:
                lines = f.read().split("\n")
            return int(lines[0]) if len(lines) >= 2 and lines[0].strip() else None
        except (OSError, ValueError):
            return None
    p = wait_for("chromium's DevToolsActivePort file", port, context=c.stderr_tail)

    def page():
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % p, timeout=10) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
        return pages[0]["webSocketDebuggerUrl"] if pages else None
    return CDP(websocket, wait_for("a page target in chromium", page, context=c.stderr_tail))


JS_FILL = """(() => {
  const a = %s, set = (id, v) => {
    const e = document.getElementById(id);
    e.value = v;
    e.dispatchEvent(new Event("input", {bubbles: true}));
    e.dispatchEvent(new Event("change", {bubbles: true}));
    return e.value;
  };
  if (set("policy-point", a.point) !== a.point) return {error: "#policy-point has no option " + a.point};
  set("policy-value", a.value); set("policy-by", a.by); set("policy-token", a.token);
  const seq = document.getElementById("policy-result").dataset.seq;
  document.getElementById(a.button).click();
  return {seq};
})()"""

JS_RESULT = """(() => {
  const r = document.getElementById("policy-result");
  return {seq: r.dataset.seq, status: r.dataset.status, text: r.textContent, cls: r.className};
})()"""


def use_form(cdp, point, value, by, token, button):
    """Fills the page's policy form, clicks a button, returns #policy-result once it changed."""
    r = cdp.eval(JS_FILL % json.dumps({"point": point, "value": value, "by": by, "token": token,
                                       "button": button}))
    if r.get("error"):
        raise Fail(r["error"], cdp.eval("document.getElementById('policy-form').outerHTML"))
    return wait_for("#policy-result to show the answer after clicking #%s" % button,
                    lambda: (lambda x: x if x["seq"] != r["seq"] else None)(cdp.eval(JS_RESULT)),
                    context=lambda: cdp.eval("document.getElementById('policy-result').outerHTML"))


def expect_result(res, status, what, *words):
    if res["status"] != str(status) or str(status) not in res["text"] or any(w not in res["text"] for w in words):
        raise Fail("%s: #policy-result should show %d%s" % (what, status, " and " + ", ".join(words) if words else ""),
                   json.dumps(res))
    log("%s: the page shows %r" % (what, res["text"]))


def expect_unchanged(demo, what, policy, log_before):
    now = policy_of(demo, POINT)
    if now != policy:
        raise Fail("%s: %s's policy changed to %s (was %s)" % (what, POINT, now, policy))
    ch = changes_of(demo)
    if ch != log_before:
        raise Fail("%s: a policy change was logged" % what, json.dumps(ch[-3:]))


def one_more(before, after):
    """after is before plus one change at its end (the server keeps the last 100)"""
    return bool(after) and after != before and after[:-1] in (before, before[1:])


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise Fail("the screenshot %s is not a PNG" % path, repr(head))
    return struct.unpack(">II", head[16:24])


def drive(cdp, demo, shot):
    base = demo.base_url.rstrip("/")
    cdp.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                    "mobile": False})
    nav = cdp.call("Page.navigate", {"url": base + "/migration"})
    if nav.get("errorText"):
        raise Fail("loading %s/migration: %s" % (base, nav["errorText"]))

    def body():
        return cdp.eval("document.body ? document.body.outerHTML.slice(0, 4000) : document.documentElement.outerHTML")
    wait_for("the page to render twice (data-loaded, 2 samples for the charts)",
             lambda: cdp.eval("!!document.body && document.body.dataset.loaded === '1' && "
                              "+(document.getElementById('points')?.dataset.samples || 0) >= 2 && "
                              "document.querySelectorAll('#points svg polyline').length > 0"),
             context=body)
    log("the page rendered (%s samples)" % cdp.eval("document.getElementById('points').dataset.samples"))

    metrics = cdp.call("Page.getLayoutMetrics")
    size = metrics.get("cssContentSize") or metrics.get("contentSize")
    height = int(min(max(size["height"], 900), 4000))
    shotr = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                 "clip": {"x": 0, "y": 0, "width": 1280, "height": height,
                                                          "scale": 1}})
    data = base64.b64decode(shotr["data"])
    with open(shot, "wb") as f:
        f.write(data)
    w, h = png_size(shot)
    if w != 1280 or h < 900 or len(data) < 30000:
        raise Fail("the screenshot is %dx%d, %d bytes: want 1280 wide, 900+ high, 30+ KB" % (w, h, len(data)))
    log("screenshot %dx%d, %d bytes" % (w, h, len(data)))

    initial = policy_of(demo, POINT)
    if initial == "ported":
        raise Fail("%s is already ported: setting it to ported would check nothing" % POINT)
    before = changes_of(demo)
    by = "page-test-" + secrets.token_hex(3)
    log("%s is %s, %d change(s) logged; the form acts as %r" % (POINT, initial, len(before), by))

    res = use_form(cdp, POINT, "ported", by, "wrong-" + secrets.token_hex(8), "policy-set")
    expect_result(res, 401, "a wrong token")
    expect_unchanged(demo, "a wrong token", initial, before)

    res = use_form(cdp, POINT, "ported", by, "", "policy-set")
    expect_result(res, 401, "no token")
    expect_unchanged(demo, "no token", initial, before)

    res = use_form(cdp, POINT, "ported", by, demo.token, "policy-set")
    expect_result(res, 200, "the right token", "ported", initial)
    if policy_of(demo, POINT) != "ported":
        raise Fail("after a 200, /migration.json shows %s %s, not ported" % (POINT, policy_of(demo, POINT)))
    ch = changes_of(demo)
    want = {"who": by, "point": POINT, "from": initial, "to": "ported"}
    if not one_more(before, ch) or any(ch[-1].get(k) != v for k, v in want.items()):
        raise Fail("/policy/changes does not end with one new change %s" % json.dumps(want), json.dumps(ch[-3:]))
    log("/policy/changes logged %s" % json.dumps(ch[-1]))
    js_changes = ("[...document.querySelectorAll('#changes tr')].some(r => r.dataset.who === %s && "
                  "r.dataset.point === %s && r.dataset.to === 'ported' && r.textContent.includes(%s))"
                  % (json.dumps(by), json.dumps(POINT), json.dumps(by)))
    wait_for("#changes to show the change by %s" % by, lambda: cdp.eval(js_changes),
             context=lambda: cdp.eval("document.getElementById('changes').outerHTML.slice(0, 3000)"))
    js_policy = "document.querySelector('#points [data-point=%s]')?.dataset.policy === %s"
    wait_for("the page to show %s ported" % POINT, lambda: cdp.eval(js_policy % (json.dumps(POINT), "'ported'")),
             context=body)
    log("the page shows the change in #changes and %s ported" % POINT)

    res = use_form(cdp, POINT, "", by, demo.token, "policy-rollback")
    expect_result(res, 200, "a rollback", initial)
    if policy_of(demo, POINT) != initial:
        raise Fail("after the rollback, /migration.json shows %s %s, not %s" % (POINT, policy_of(demo, POINT), initial))
    wait_for("the page to show %s %s again" % (POINT, initial),
             lambda: cdp.eval(js_policy % (json.dumps(POINT), json.dumps(initial))), context=body)
    before = changes_of(demo)

    res = use_form(cdp, POINT, "canary:150", by, demo.token, "policy-set")
    expect_result(res, 400, "a bad policy text")
    expect_unchanged(demo, "a bad policy text", initial, before)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("demo", nargs="?", help="the coport-demo executable")
    ap.add_argument("--screenshot", help="where to write the page's screenshot (PNG)")
    ap.add_argument("--url", help="use a server already running at this base URL (development)")
    ap.add_argument("--token", help="its admin token, with --url")
    a = ap.parse_args()
    if not a.demo and not (a.url and a.token):
        ap.error("give DEMO_PATH, or --url and --token")

    def stop(sig, _frame):
        raise KeyboardInterrupt("signal %d" % sig)
    signal.signal(signal.SIGTERM, stop)

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="coport-page-")
    browsers = []
    shot = os.path.abspath(a.screenshot) if a.screenshot else os.path.join(tmp, "migration.png")
    try:
        exe = find_chromium()
        websocket = import_websocket()
        if a.url:
            served = ServedDemo(None, url=a.url, token=a.token)
        else:
            served = ServedDemo(a.demo, token=secrets.token_hex(16),
                                args=["--calls", "500", "--notifications", "100", "--stall-threshold", "0"])
        with served as demo:
            log("serving at %s" % demo.base_url)
            try:
                report = get_json(demo, "/migration.json")
                text, dom = dump_dom(exe, tmp, demo.base_url.rstrip("/") + "/migration")
                try:
                    points, charted, examples = check_dom(dom, report)
                except Fail as e:
                    e.context = e.context or text[:3000]
                    raise
                log("dumped DOM: verdict, %d reasons, %d points with their policies, %d charts, "
                    "%s's mismatches and %d example(s)" % (len(report["reasons"]), points, charted,
                                                           SHADOWED, examples))
                cdp = start_cdp(exe, tmp, websocket, browsers)
                try:
                    drive(cdp, demo, shot)
                finally:
                    cdp.close()
            finally:
                for b in browsers:
                    b.kill()
        log("demo stopped (%.1f s in all)" % (time.monotonic() - started))
        print("page: as expected (screenshot: %s)" % (shot if a.screenshot else "not kept"), flush=True)
        return 0
    except Fail as e:
        print("FAIL: %s" % e.what, flush=True)
        if e.context:
            print("context:\n%s" % e.context, flush=True)
        return 1
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        return 1
    except KeyboardInterrupt as e:
        print("FAIL: interrupted (%s)" % e, flush=True)
        return 1
    except Exception:
        traceback.print_exc()
        print("FAIL: unexpected error", flush=True)
        return 1
    finally:
        for b in browsers:
            b.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

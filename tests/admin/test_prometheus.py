#!/usr/bin/env python3
"""A real Prometheus server scrapes coport-demo's admin server, and what it
stored must equal the migration report the service answers.

    test_prometheus.py DEMO_PATH            start coport-demo --http and scrape it
    test_prometheus.py --url http://H:P     scrape an admin server already running

The demo runs its traffic, prints its report and the "serving until" line,
and then stays idle: its figures no longer change. A Prometheus process of
our own (its own config, data directory, port and process group) scrapes it
every second; once a scrape taken after the "serving until" line is stored,
every migration figure of GET /migration.json is compared with the series
Prometheus stored, through its HTTP query API, at that scrape's timestamp.

Prints progress lines; on failure "FAIL: ..." with the compared values and
exit status 1; on success "prometheus: N series stored equal the report".
Deadlines scale with the environment variable COPORT_TEST_TIME_SCALE.
Python standard library only.
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from served_demo import TIME_SCALE, ServedDemo, point_name  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"
JOB = "coport-demo"
SCRAPE_WITHIN = 60 * TIME_SCALE     # Prometheus up, target up, a post-serving scrape stored
READY_WITHIN = 60 * TIME_SCALE      # Prometheus answers /-/ready
STOP_WITHIN = 15 * TIME_SCALE       # Prometheus exits after SIGTERM
HTTP_TIMEOUT = 10 * TIME_SCALE      # one HTTP request
START_ATTEMPTS = 5                  # free ports tried (another process may take one first)
POLL = 0.2                          # seconds between two looks at a condition
MIN_COMPARED = 20                   # fewer comparisons: the test tested nothing

# The contract's bucket bounds of coport_migration_call_duration_seconds:
# powers of four microseconds, then +Inf (compared as the floats of the le
# labels Prometheus stored).
LE_BOUNDS = [float(le) for le in (
    "1e-06", "4e-06", "1.6e-05", "6.4e-05", "0.000256", "0.001024", "0.004096", "0.016384",
    "0.065536", "0.262144", "1.048576", "4.194304", "16.777216", "67.108864", "+Inf")]

FORM_OF_KIND = {"fiber": "legacy", "coroutine": "ported"}


class Failure(Exception):
    pass


class Terminated(BaseException):
    """SIGTERM: everything is stopped and removed on the way out."""


def say(text):
    print(text, flush=True)


def wait_until(what, within, look):
    """Polls look() until it answers something true, and returns that; fails
    after `within` seconds with the last thing look() described."""
    deadline = time.monotonic() + within
    last = None
    while True:
        ok, last = look()
        if ok:
            return last
        if time.monotonic() >= deadline:
            raise Failure("waited %.0f s for %s; last seen: %s" % (within, what, last))
        time.sleep(POLL)


def http_get(url):
    """(status, body bytes); (None, reason) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return None, str(e).encode()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label_value(text):
    """A PromQL string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(**labels):
    return "{" + ",".join("%s=%s" % (k, label_value(v)) for k, v in [("job", JOB), *labels.items()]) + "}"


class Prometheus:
    """Our own Prometheus process, in its own process group."""

    def __init__(self, workdir, target):
        self.workdir = workdir
        self.target = target
        self.proc = None
        self.url = None
        self.log = None

    def write_config(self):
        path = os.path.join(self.workdir, "prometheus.yml")
        with open(path, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: %s\n"
                    "    metrics_path: /metrics\n"
                    "    static_configs:\n"
                    "      - targets: [\"%s\"]\n" % (JOB, self.target))
        return path

    def log_tail(self, lines=15):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:]).rstrip()
        except OSError:
            return "(no log)"

    def start(self):
        config = self.write_config()
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            self.url = "http://127.0.0.1:%d" % port
            self.log = os.path.join(self.workdir, "prometheus-%d.log" % attempt)
            data = os.path.join(self.workdir, "data-%d" % attempt)
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + data,
                     "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            if self.wait_ready():
                return
            tail = self.log_tail()
            proc, self.proc = self.proc, None
            if "address already in use" not in tail:
                raise Failure("prometheus exited with status %s before it was ready; its log ends:\n%s"
                              % (proc.returncode, tail))
            say("prometheus: port %d was taken meanwhile, another one" % port)
        raise Failure("prometheus found no free port in %d attempts" % START_ATTEMPTS)

    def wait_ready(self):
        """True once /-/ready answers 200; False if the process ended first."""
        deadline = time.monotonic() + READY_WITHIN
        while True:
            status, _ = http_get(self.url + "/-/ready")
            if status == 200:
                return True
            try:
                self.proc.wait(POLL)  # the poll interval, and the exit we look for
                return False
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                raise Failure("prometheus did not answer 200 on /-/ready within %.0f s (last: %s); its log ends:\n%s"
                              % (READY_WITHIN, status, self.log_tail()))

    def stop(self):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            say("prometheus: still running %.0f s after SIGTERM, killed" % STOP_WITHIN)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def api(self, path, **params):
        """The `data` of a successful API answer."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        status, body = http_get(url)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
            raise Failure("prometheus %s %s answered %s: %s"
                          % (path, params, status, body[:500].decode(errors="replace")))
        return answer["data"]

    def query(self, promql, at=None):
        """[(labels, value)] of an instant vector query."""
        params = {"query": promql}
        if at is not None:
            params["time"] = at
        data = self.api("/api/v1/query", **params)
        if data.get("resultType") != "vector":
            raise Failure("prometheus: %s is a %s, not a vector" % (promql, data.get("resultType")))
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]


class Comparison:
    """What Prometheus stored, at one evaluation time, against the report."""

    def __init__(self, prom, at):
        self.prom = prom
        self.at = at
        self.compared = 0
        self.failures = []

    def fail(self, text):
        self.failures.append(text)

    def one(self, promql):
        """The value of the query's single series, or None (a failure noted)."""
        result = self.prom.query(promql, self.at)
        if len(result) != 1:
            self.fail("%s: %d series stored, 1 expected: %s" % (promql, len(result), result))
            return None
        return result[0][1]

    def equal(self, promql, expected):
        value = self.one(promql)
        if value is None:
            return
        self.compared += 1
        if value != float(expected):
            self.fail("%s: prometheus %r, report %r" % (promql, value, expected))

    def form(self, point, row_form):
        kind = row_form.get("kind")
        form = FORM_OF_KIND.get(kind)
        if form is None:
            self.fail("point %s: a form of kind %r, neither fiber nor coroutine" % (point, kind))
            return
        sel = selector(point=point, form=form)
        calls = row_form["calls"]
        for family, key in (("coport_migration_calls_total", "calls"),
                            ("coport_migration_errors_total", "errors"),
                            ("coport_migration_cancelled_total", "cancelled"),
                            ("coport_migration_implicit_yields_total", "implicit_yields"),
                            ("coport_migration_stalls_total", "stalls")):
            self.equal(family + sel, row_form[key])
        self.histogram(sel, calls, row_form)

    def histogram(self, sel, calls, row_form):
        name = "coport_migration_call_duration_seconds"
        self.equal(name + "_count" + sel, calls)

        buckets = self.prom.query(name + "_bucket" + sel, self.at)
        try:
            buckets = sorted((float(labels["le"]), value) for labels, value in buckets)
        except (KeyError, ValueError):
            self.fail("%s_bucket%s: a bucket without a numeric le: %s" % (name, sel, buckets))
            return
        bounds = [le for le, _ in buckets]
        self.compared += 1
        if bounds != LE_BOUNDS:
            self.fail("%s_bucket%s: le %s stored, the contract's are %s" % (name, sel, bounds, LE_BOUNDS))
            return
        for (le_a, a), (le_b, b) in zip(buckets, buckets[1:]):
            if b < a:
                self.fail("%s_bucket%s: not cumulative: le=%g holds %g, le=%g holds %g"
                          % (name, sel, le_a, a, le_b, b))
        if buckets[-1][1] != float(calls):
            self.fail("%s_bucket%s le=+Inf: prometheus %r, report calls %r" % (name, sel, buckets[-1][1], calls))

        total = self.one(name + "_sum" + sel)
        if total is not None:
            self.compared += 1
            if (calls > 0 and not total > 0) or (calls == 0 and total != 0):
                self.fail("%s_sum%s: prometheus %r with %d call(s) in the report" % (name, sel, total, calls))

        if calls > 0:
            for q, key in ((0.5, "p50_us"), (0.99, "p99_us")):
                self.quantile(q, name + "_bucket" + sel, row_form[key] * 1e-6)

    def quantile(self, q, buckets, reported):
        # Both sides estimate the same quantile from the same records, each to
        # within a bucket. The service's histogram has four buckets per power
        # of two and reports the upper bound of the bucket holding the
        # quantile's record; /metrics sums those buckets into powers of four
        # microseconds, whose bounds are bounds of the fine buckets too, so the
        # fine bucket lies inside one exported bucket (L, 4L]. Prometheus finds
        # that same exported bucket (the first whose cumulative count reaches
        # q * count: counts are integers, so it is where ceil(q * count) is)
        # and interpolates linearly inside it, landing in [L, 4L], while the
        # report's value is in (L, 4L]: the two differ by at most a factor of
        # 4. The exceptions are the end buckets: below 1 µs Prometheus
        # interpolates from 0, and past the last finite bound it answers that
        # bound.
        value = self.one("histogram_quantile(%g, %s)" % (q, buckets))
        if value is None:
            return
        self.compared += 1
        first, last = LE_BOUNDS[0], LE_BOUNDS[-2]
        if reported <= first:
            ok = 0 <= value <= first
        elif reported > last:
            ok = value == last
        else:
            ok = reported / 4 * (1 - 1e-9) <= value <= reported * 4 * (1 + 1e-9)
        if not ok:
            self.fail("histogram_quantile(%g, %s): prometheus %.9g s, report %.9g s: more than a factor of 4 apart"
                      % (q, buckets, value, reported))

    def row(self, row):
        point = point_name(row)
        for f in row["forms"]:
            self.form(point, f)

        policies = self.prom.query("coport_migration_policy" + selector(point=point), self.at)
        self.compared += 1
        if len(policies) != 1 or policies[0][0].get("policy") != row["policy"] or policies[0][1] != 1:
            self.fail("coport_migration_policy%s: stored %s, report policy %r (one series, value 1, expected)"
                      % (selector(point=point), [(l.get("policy"), v) for l, v in policies], row["policy"]))

        self.equal("coport_migration_shadow_calls_total" + selector(point=point), row["shadow"]["calls"])
        self.equal("coport_migration_shadow_mismatches_total" + selector(point=point), row["shadow"]["mismatches"])
        return point, [FORM_OF_KIND.get(f.get("kind")) for f in row["forms"]]

    def report(self, report):
        stored_forms = {(l.get("point"), l.get("form"))
                        for l, _ in self.prom.query("coport_migration_calls_total" + selector(), self.at)}
        report_forms = set()
        for row in report["methods"]:
            point, forms = self.row(row)
            report_forms.update((point, f) for f in forms)
        # Both ways: no series for a point or form the report does not hold.
        if stored_forms != report_forms:
            self.fail("coport_migration_calls_total: (point, form) stored but not in the report %s, "
                      "in the report but not stored %s"
                      % (sorted(stored_forms - report_forms), sorted(report_forms - stored_forms)))

        self.equal("coport_migration_ready" + selector(), 1 if report["ready"] else 0)
        self.equal("coport_migration_not_ready_reasons" + selector(), len(report["reasons"]))

        work = self.prom.query('{__name__=~"coport_work_.*",job="%s",runtime="metering"}' % JOB, self.at)
        self.compared += 1
        if not work:
            self.fail('no coport_work_* series with runtime="metering" stored')


def wait_for_scrape(prom, target, served_at):
    """The timestamp of a stored scrape of the target taken after served_at,
    once the target is up."""
    def look():
        up = prom.query("up" + selector())
        targets = [t for t in prom.api("/api/v1/targets", state="active")["activeTargets"]
                   if t.get("labels", {}).get("job") == JOB]
        health = [(t.get("scrapeUrl"), t.get("health"), t.get("lastError")) for t in targets]
        stamps = [v for _, v in prom.query("timestamp(coport_migration_calls_total%s)" % selector())]
        seen = "up %s, targets %s, coport_migration_calls_total stamped %s (serving line read at %.3f)" % (
            [v for _, v in up], health, stamps, served_at)
        # The target's timestamp is taken as its scrape starts, from the same
        # clock; the margin covers Prometheus aligning it by a few ms.
        fresh = bool(stamps) and min(stamps) > served_at + 0.05
        ok = (len(up) == 1 and up[0][1] == 1 and len(targets) == 1 and targets[0].get("health") == "up"
              and fresh)
        return ok, (min(stamps) if ok else seen)
    return wait_until("the target up and a scrape after the serving line stored", SCRAPE_WITHIN, look)


def run(demo, workdir, prom_holder):
    if demo.demo_path is not None:
        if not any(line.startswith("serving until ") for line in demo.lines):
            raise Failure("coport-demo did not print its \"serving until\" line; its stdout ends:\n"
                          + "\n".join(demo.lines[-20:]))
    served_at = time.time()  # the serving line was read before this
    target = urllib.parse.urlsplit(demo.base_url).netloc
    say("demo: serving at %s" % demo.base_url)

    prom = Prometheus(workdir, target)
    prom_holder.append(prom)
    prom.start()
    say("prometheus: ready at %s, scraping %s every second" % (prom.url, target))

    stamp = wait_for_scrape(prom, target, served_at)
    # Every query is evaluated just after that scrape, which then is the
    # latest sample of each series (the next one comes a second later).
    at = "%.4f" % (stamp + 0.0005)
    say("prometheus: target up; the scrape at %.3f (after the serving line) is stored" % stamp)

    status, _, body = demo.get("/migration.json")
    if status != 200:
        raise Failure("GET /migration.json answered %s: %s" % (status, body[:300]))
    report = json.loads(body)
    say("report: %d rows, %d forms, ready %s, %d reason(s)"
        % (len(report["methods"]), sum(len(r["forms"]) for r in report["methods"]),
           report["ready"], len(report["reasons"])))

    check = Comparison(prom, at)
    check.report(report)
    say("compared %d series" % check.compared)
    if check.compared < MIN_COMPARED:
        check.fail("only %d series compared, at least %d expected" % (check.compared, MIN_COMPARED))
    return check


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", nargs="?", help="the coport-demo executable")
    parser.add_argument("--url", help="an admin server already running (http://HOST:PORT)")
    opts = parser.parse_args()
    if (opts.demo is None) == (opts.url is None):
        parser.error("give either DEMO_PATH or --url")
    if not os.path.isfile(PROMETHEUS) or not os.access(PROMETHEUS, os.X_OK):
        say("FAIL: %s is missing: this test needs a Prometheus server (Debian package prometheus)" % PROMETHEUS)
        return 1

    def terminated(signum, frame):
        raise Terminated()
    signal.signal(signal.SIGTERM, terminated)

    token = secrets.token_hex(16)
    if opts.url:
        demo = ServedDemo(None, url=opts.url, token=token)
    else:
        demo = ServedDemo(opts.demo, token=token,
                          args=["--calls", "500", "--notifications", "100", "--stall-threshold", "0"])
    workdir = tempfile.mkdtemp(prefix="coport-prometheus-")
    failures = []
    compared = 0
    prom_holder = []
    demo_open = False  # entered (or being entered), not yet left
    started = time.monotonic()
    try:
        try:
            demo_open = True
            demo.__enter__()
        except Exception as e:
            failures.append("%s: %s" % (type(e).__name__, e))
        else:
            try:
                check = run(demo, workdir, prom_holder)
                failures += check.failures
                compared = check.compared
            except Failure as e:
                failures.append(str(e))
            except Exception as e:  # a malformed answer, say: reported, then cleaned up
                failures.append("%s: %s" % (type(e).__name__, e))
            for prom in prom_holder:
                prom.stop()
            try:
                demo_open = False
                demo.__exit__(None, None, None)  # checks the demo's exit status
            except AssertionError as e:
                failures.append(str(e))
    except (Terminated, KeyboardInterrupt) as e:
        failures.append("interrupted (%s)" % ("SIGTERM" if isinstance(e, Terminated) else "SIGINT"))
    finally:
        for prom in prom_holder:
            prom.stop()
        if demo_open:  # a failure or an interruption on the way: stop it all the same
            try:
                demo.__exit__(Failure, None, None)
            except Exception as e:
                failures.append("stopping coport-demo: %s: %s" % (type(e).__name__, e))
        shutil.rmtree(workdir, ignore_errors=True)

    for text in failures:
        say("FAIL: " + text)
    if failures:
        return 1
    say("prometheus: %d series stored equal the report (%.1f s)" % (compared, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())

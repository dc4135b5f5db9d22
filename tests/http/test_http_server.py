"""prom's HTTP server (src/http) on the sd-event loop with a fake snapshot: /metrics parsed by
prometheus_client's strict parsers (Prometheus text and OpenMetrics), /health and /active
status codes following the snapshot, bad requests answered, a stuck client not blocking the
others, no thread per request, and a listen failure reported, not crashed on."""
import argparse
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

try:
    import prometheus_client  # noqa: F401
except ImportError:  # Debian's python3-prometheus-client when another python3 runs the test
    sys.path.append("/usr/lib/python3/dist-packages")
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--server", required=True)
a = ap.parse_args()


def fetch(port, path, accept=None, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


class Fake:
    def __init__(self, *args):
        self.p = subprocess.Popen([a.server, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.first = self.p.stdout.readline().strip()

    @property
    def port(self):
        assert self.first.startswith("port "), self.first
        return int(self.first.split()[1])

    def say(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "ok"

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(10)


def samples(families):
    out = {}
    for fam in families:
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


f = Fake()
try:
    port = f.port
    # /active: 503 on a passive, 200 on the active; /health follows the store.
    assert fetch(port, "/active")[0] == 503
    assert fetch(port, "/health")[0] == 200
    f.say("role active")
    code, _, body = fetch(port, "/active")
    assert (code, body) == (200, "active\n"), (code, body)
    f.say("store 0")
    code, _, body = fetch(port, "/health")
    assert code == 503 and "store unreachable" in body, (code, body)
    assert fetch(port, "/active")[0] == 200, "an active whose store is down stays the active until its deadline"
    f.say("store 1")
    f.say("running 0")
    assert fetch(port, "/health")[0] == 503 and fetch(port, "/active")[0] == 503
    f.say("running 1")
    # No error: the last-error gauge is there, at 0 (an alert needs no absent()).
    assert samples(parse_prometheus(fetch(port, "/metrics")[2]))[("prom_last_error_timestamp_seconds", ())] == 0

    f.say("token 42")
    f.say("lease 2.5")
    f.say("last-error 1795857293250000")
    f.say("action ensure-active 1 0.2")
    f.say("action ensure-active 0 3")
    f.say("action ensure-passive 1 0.004")
    for v in (0.0004, 0.003, 0.2, 9):
        f.say(f"store-latency {v}")

    # Prometheus text format (what Prometheus asks for by default).
    code, ctype, text = fetch(port, "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4"), (code, ctype)
    prom = samples(parse_prometheus(text))
    # OpenMetrics, parsed by the strict parser (it rejects a missing # EOF, bad suffixes, ...).
    code, ctype, text_om = fetch(port, "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert code == 200 and ctype.startswith("application/openmetrics-text"), (code, ctype)
    om = samples(parse_openmetrics(text_om))
    for s in (prom, om):
        assert s[("prom_active", ())] == 1
        assert s[("prom_role", (("role", "active"),))] == 1 and s[("prom_role", (("role", "passive"),))] == 0
        assert s[("prom_fencing_token", ())] == 42
        assert s[("prom_role_transitions_total", ())] == 1
        assert s[("prom_store_healthy", ())] == 1
        assert s[("prom_lease_remaining_seconds", ())] == 2.5
        assert s[("prom_last_error_timestamp_seconds", ())] == 1795857293.25
        assert s[("prom_build_info", (("app", 'fake"app\\'), ("replica", "0"), ("version", "test")))] == 1
        assert s[("prom_action_runs_total", (("action", "ensure-active"),))] == 2
        assert s[("prom_action_failures_total", (("action", "ensure-active"),))] == 1
        assert s[("prom_action_failures_total", (("action", "ensure-passive"),))] == 0
        assert s[("prom_action_duration_seconds_bucket", (("action", "ensure-active"), ("le", "0.25")))] == 1
        assert s[("prom_action_duration_seconds_bucket", (("action", "ensure-active"), ("le", "+Inf")))] == 2
        assert abs(s[("prom_action_duration_seconds_sum", (("action", "ensure-active"),))] - 3.2) < 1e-9
        assert s[("prom_store_request_duration_seconds_bucket", (("le", "0.001"),))] == 1
        assert s[("prom_store_request_duration_seconds_bucket", (("le", "0.005"),))] == 2
        assert s[("prom_store_request_duration_seconds_bucket", (("le", "2.5"),))] == 3
        assert s[("prom_store_request_duration_seconds_count", ())] == 4

    # HEAD works, other methods and paths do not.
    assert fetch(port, "/active", method="HEAD")[0] == 200
    assert fetch(port, "/active", method="POST")[0] == 405
    assert fetch(port, "/nope")[0] == 404

    # A client that sends half a request and stalls does not block anyone (one thread, no
    # thread per request: MHD runs on the loop).
    stuck = socket.create_connection(("127.0.0.1", port))
    stuck.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    for _ in range(20):
        assert fetch(port, "/active")[0] == 200
    took = time.monotonic() - t0
    assert took < 5, took
    with open(f"/proc/{f.p.pid}/status") as st:
        threads = [line for line in st if line.startswith("Threads:")][0].split()[1]
    assert threads == "1", f"{threads} threads: MHD must not run threads of its own"
    stuck.close()

    # Listening where another listens: a clear error, no crash.
    g = Fake(f"127.0.0.1:{port}")
    assert g.first == f"error: cannot listen on 127.0.0.1:{port}: Address already in use", g.first
    assert g.p.wait(10) == 1
    h = Fake("localhost:9479")
    assert h.first.startswith('error: cannot listen on "localhost:9479": the host must be an IPv4 address'), h.first
    h.p.wait(10)
finally:
    f.close()
print("http server: ok")

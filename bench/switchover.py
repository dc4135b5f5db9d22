"""Switchover from a node that hosts no replica (promctl -c, through the store) against the same
switchover over D-Bus on the active's node: 3 replicas on one local etcd (TTL 2 s), N
switchovers each way to the next replica. Prints, per path, promctl's wall time (the command
returns once the target ran ensure-active) median/p90/max, and the gap without an active taken
from the replicas' history (stop of the old to start of the new), and the requests etcd served
during the rounds (its own /metrics: daemons and promctl together).
Usage: python3 bench/switchover.py --prom build/prom [--rounds 20]"""
import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "tools"))
import history_check  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--prom", required=True)
ap.add_argument("--rounds", type=int, default=20)
a, _ = ap.parse_known_args()
sys.argv = [sys.argv[0], "--prom", a.prom]
from harness import Test, wait_for  # noqa: E402


def etcd_requests(endpoint):
    """grpc requests etcd has served (its own Prometheus metrics)."""
    text = urllib.request.urlopen(endpoint + "/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("grpc_server_handled_total{"))


def gaps(history, since):
    """Seconds without an active for each handover after `since` (stop of one, start of the next)."""
    events = [e for e in history_check.parse(history) if e[0] >= since]
    out = []
    for n, (t, kind, _, _) in enumerate(events):
        if kind == "stop":
            nxt = next((e for e in events[n + 1:] if e[1] == "start"), None)
            if nxt:
                out.append(nxt[0] - t)
    return out


def summary(name, xs):
    xs = sorted(xs)
    return (f"{name}: n={len(xs)} median {statistics.median(xs) * 1000:.0f} ms, "
            f"p90 {xs[int(len(xs) * 0.9) - 1] * 1000:.0f} ms, max {xs[-1] * 1000:.0f} ms")


with Test("bench-switchover") as t:
    promctl = t.promctl
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = t.session_bus()
    elsewhere = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=t.session_bus())
    etcd = t.etcd(1)
    c = t.cluster(etcd, replicas=3, bus="session")
    c.start()
    active = c.wait_one_active(10)
    conf = c.conf(active)
    wait_for(lambda: subprocess.run([promctl, "--bus", "session", "-c", conf, "status"], capture_output=True,
                                    env=elsewhere).returncode == 0, 10, "one active in the store")
    for path in ("store", "dbus"):
        walls = []
        since = time.time()
        before = etcd_requests(etcd.endpoints[0])
        for k in range(a.rounds):
            target = c.ids[(c.ids.index(active) + 1) % len(c.ids)]
            cmd = [promctl, "--bus", "session"] + (["-c", conf] if path == "store" else []) + ["switchover", target]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=elsewhere if path == "store" else os.environ)
            walls.append(time.perf_counter() - t0)
            assert r.returncode == 0, (path, r)
            wait_for(lambda: c.actives() == [target], 5, "the target active")
            active = target
            time.sleep(0.3)
            if path == "store":  # the store shows it (the D-Bus path does not wait for that)
                wait_for(lambda: subprocess.run([promctl, "--bus", "session", "-c", conf, "status"],
                                                capture_output=True, env=elsewhere).returncode == 0, 5, "store")
        requests = etcd_requests(etcd.endpoints[0]) - before
        print(summary(f"{path:5s} promctl switchover wall time", walls))
        print(summary(f"{path:5s} no active (history)", gaps(c.history, since)))
        print(f"{path:5s} etcd requests during the {a.rounds} rounds: {requests:.0f}")
    c.check_history()
    t.ok = True

#!/usr/bin/env python3
"""prom failover benchmark (numbers, not assertions).

Crash failover: kill -9 the active's prom and its service, until the new active's
ensure-active starts (its history line). Graceful handover: SIGTERM the active, from its
ensure-passive returning to the new active's ensure-active starting. Each over --runs runs,
at prom's default TTL (5 s) on default etcd, and with etcd tuned
(--heartbeat-interval 20 --election-timeout 200) and a 1 s TTL. Then idle CPU, RSS and store
requests per second of one daemon over --idle seconds (through a counting TCP proxy).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def last(c, kind, replica):
    return [e[0] for e in c.events() if e[1] == kind and e[2] == replica][-1]


def crash_runs(c, runs, ttl):
    out = []
    for _ in range(runs):
        old = c.wait_one_active(3 * ttl + 5)
        time.sleep(ttl / 2)
        t0 = time.time()
        c.crash_node(old)
        new = c.wait_one_active(3 * ttl + 5, exclude=(old,))
        out.append(last(c, "start", new) - t0)
        c.start(old)
        time.sleep(ttl / 2)
    return out


def graceful_runs(c, runs, ttl):
    out = []
    for _ in range(runs):
        old = c.wait_one_active(3 * ttl + 5)
        time.sleep(0.3)
        c.stop(old)
        new = c.wait_one_active(3 * ttl + 5, exclude=(old,))
        out.append(last(c, "start", new) - last(c, "stop", old))
        c.start(old)
        time.sleep(0.3)
    return out


def scenario(t, name, runs, tuned, timeout_ms, margin_ms):
    etcd = t.etcd(1, tuned=tuned)
    c = t.cluster(etcd, subdir=name, timeout_ms=timeout_ms, margin_ms=margin_ms, monitor_ms=min(1000, timeout_ms // 2),
                  app="bench")
    c.start()
    ttl = max(timeout_ms / 1000, 1)
    crash = crash_runs(c, runs, ttl)
    graceful = graceful_runs(c, runs, ttl)
    c.check_history()
    c.stop()
    for k in range(etcd.n):
        etcd.kill(k)
    return crash, graceful


def idle(t, seconds):
    etcd = t.etcd(1)
    c = t.cluster(etcd, subdir="idle", timeout_ms=5000, margin_ms=1250, monitor_ms=1000, replicas=1,
                  app="idle")
    c.start()
    c.wait_one_active(15)
    time.sleep(3)
    pid = c.procs["0"].pid
    hz = os.sysconf("SC_CLK_TCK")

    def cpu():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / hz

    def rss_kib():
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def requests():
        # etcd's own count of the RPCs it started (gRPC gateway calls included)
        with urllib.request.urlopen(etcd.endpoints[0] + "/metrics", timeout=5) as r:
            return sum(float(line.rsplit(" ", 1)[1]) for line in r.read().decode().splitlines()
                       if line.startswith("grpc_server_started_total") and "etcdserverpb" in line)

    c0, r0, t0 = cpu(), requests(), time.monotonic()
    time.sleep(seconds)
    c1, r1, t1 = cpu(), requests(), time.monotonic()
    # actions run as children of prom and are not in its own CPU time: that is the daemon alone
    return 100 * (c1 - c0) / (t1 - t0), rss_kib(), (r1 - r0) / (t1 - t0)


def row(name, xs):
    return f"| {name} | {len(xs)} | {statistics.median(xs) * 1000:.0f} | {pct(xs, 95) * 1000:.0f} | {min(xs) * 1000:.0f} | {max(xs) * 1000:.0f} |"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prom", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--only-idle", action="store_true", help="skip the failover runs")
    a = ap.parse_args()
    sys.argv = [sys.argv[0], "--prom", a.prom]
    with harness.Test("bench") as t:
        results = []
        for name, tuned, timeout_ms, margin_ms in () if a.only_idle else (("default TTL 5 s", False, 5000, 1250),
                                                                          ("etcd tuned, TTL 1 s", True, 1000, 250)):
            harness.log(f"{name}: {a.runs} crash and {a.runs} graceful runs")
            crash, graceful = scenario(t, name.replace(" ", "_").replace(",", ""), a.runs, tuned, timeout_ms, margin_ms)
            results.append((f"crash failover, {name}", crash))
            results.append((f"graceful handover, {name}", graceful))
        harness.log(f"idle daemon for {a.idle:.0f} s")
        cpu, rss, rps = idle(t, a.idle)
    print()
    if results:
        print("| scenario | runs | median ms | p95 ms | min ms | max ms |")
        print("|---|---|---|---|---|---|")
        for name, xs in results:
            print(row(name, xs))
    print()
    print(f"idle active daemon (TTL 5 s, monitor 1 s) over {a.idle:.0f} s: CPU {cpu:.3f} %, RSS {rss / 1024:.1f} MiB, "
          f"store requests {rps:.2f}/s (etcd's count)")


if __name__ == "__main__":
    main()

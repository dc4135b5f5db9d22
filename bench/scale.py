#!/usr/bin/env python3
"""Scale: N apps x 3 replicas (300 prom daemons by default) on one 3-member etcd on this machine
for --seconds; counts spurious role changes (any start/stop after every app settled: target 0)
and reports the CPU of etcd and of all prom daemons, and etcd's request rate.

    bench/scale.py --prom BUILD/prom [--apps 100] [--seconds 600]
"""
import argparse
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402


def cpu_seconds(pids):
    hz = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / hz
        except FileNotFoundError:
            pass
    return total


def etcd_requests(etcd):
    total = 0.0
    for ep in etcd.endpoints:
        with urllib.request.urlopen(ep + "/metrics", timeout=5) as r:
            total += sum(float(line.rsplit(" ", 1)[1]) for line in r.read().decode().splitlines()
                         if line.startswith("grpc_server_started_total") and "etcdserverpb" in line)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prom", required=True)
    ap.add_argument("--apps", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=600)
    a = ap.parse_args()
    sys.argv = [sys.argv[0], "--prom", a.prom]
    with harness.Test("scale") as t:
        etcd = t.etcd(3)
        clusters = []
        for k in range(a.apps):
            c = t.cluster(etcd, subdir=f"app{k}", app=f"app{k}", timeout_ms=5000, margin_ms=1250, monitor_ms=4000)
            c.start()
            clusters.append(c)
        harness.log(f"{a.apps} apps x 3 replicas started")
        harness.wait_for(lambda: all(len(c.actives()) == 1 for c in clusters), 120, "one active in every app")
        time.sleep(10)
        settled = time.time()
        before = {id(c): len(c.events()) for c in clusters}
        prom_pids = [p.pid for c in clusters for p in c.procs.values()]
        etcd_pids = [p.pid for p in etcd.procs]
        p0, e0, r0, t0 = cpu_seconds(prom_pids), cpu_seconds(etcd_pids), etcd_requests(etcd), time.monotonic()
        harness.log(f"settled; measuring for {a.seconds:.0f} s")
        time.sleep(a.seconds)
        p1, e1, r1, t1 = cpu_seconds(prom_pids), cpu_seconds(etcd_pids), etcd_requests(etcd), time.monotonic()
        spurious = sum(len(c.events()) - before[id(c)] for c in clusters)
        alive = sum(1 for c in clusters for p in c.procs.values() if p.poll() is None)
        for c in clusters:
            c.check_history()
        dt = t1 - t0
        print()
        print(f"{a.apps} apps x 3 replicas ({alive} prom daemons alive), 3-member etcd on loopback, {dt:.0f} s after settling "
              f"at {time.strftime('%H:%M:%S', time.localtime(settled))}:")
        print(f"- spurious role changes: {spurious}")
        print(f"- etcd CPU (3 members together): {100 * (e1 - e0) / dt:.1f} % of one core")
        print(f"- prom CPU (all daemons together, without their actions): {100 * (p1 - p0) / dt:.1f} % of one core")
        print(f"- etcd requests: {(r1 - r0) / dt:.0f}/s")


if __name__ == "__main__":
    main()

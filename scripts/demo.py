#!/usr/bin/env python3
"""prom demo: three replicas on a private etcd, a node crash, a measured takeover.
Everything shown is read live: roles and tokens from each daemon's own log lines, the leader
key from etcd, the replica's state from its state file."""
import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402

ROLE = re.compile(r"role \S+ -> (\S+) \(token (\d+), leader (\S+)\)")


def daemon_view(c, i):
    try:
        lines = c.log(i).splitlines()
    except FileNotFoundError:
        return "-", "-", "-"
    for line in reversed(lines):
        m = ROLE.search(line)
        if m:
            return m.group(1), m.group(2), m.group(3)
    return "starting", "-", "-"


def table(c, etcd, note, dead=()):
    key = None
    try:
        key = etcd.get("/prom/demo/leader")
    except AssertionError:
        pass
    out = ["\033[H\033[J", "prom demo — 3 replicas of a toy service, etcd on " + etcd.endpoints[0], "",
           f"{'replica':<9}{'prom':<10}{'role (prom)':<14}{'token':<8}{'leader':<8}{'service':<9}", "-" * 58]
    for i in c.ids:
        running = c.procs.get(i) and c.procs[i].poll() is None and i not in dead
        role, token, leader = daemon_view(c, i) if running else ("-", "-", "-")
        service = c.state(i)
        mark = "\033[1;32m" if service == "active" else ""
        out.append(f"{mark}{i:<9}{'running' if running else 'DOWN':<10}{role:<14}{token:<8}{leader:<8}{service:<9}\033[0m")
    out += ["", f"etcd leader key: {key['value'] + ' (fencing token ' + str(key['create_revision']) + ')' if key else 'none'}",
            "", note]
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()


def show(c, etcd, note, seconds, dead=()):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        table(c, etcd, note, dead)
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prom", required=True)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    sys.argv = [sys.argv[0], "--prom", a.prom] + (["--keep"] if a.keep else [])
    with harness.Test("demo") as t:
        etcd = t.etcd(1)
        c = t.cluster(etcd, timeout_ms=3000, margin_ms=750, monitor_ms=500, app="demo")
        c.start()
        t0 = time.monotonic()
        active = c.wait_one_active(10)
        show(c, etcd, f"replica {active} became active {time.monotonic() - t0:.2f} s after start. "
                      "Lease TTL 3 s: a dead active is replaced within about 3.5 s.", 4)
        show(c, etcd, f"killing node {active}: kill -9 its prom, and its service dies with it ...", 1.5)
        crashed = time.monotonic()
        c.kill(active)
        c.crash_replica(active)
        new = None
        while new is None:
            actives = [i for i in c.actives() if i != active]
            new = actives[0] if actives else None
            table(c, etcd, f"node {active} is down; waiting for its lease to expire "
                           f"({time.monotonic() - crashed:.1f} s) ...", dead=(active,))
            if time.monotonic() - crashed > 20:
                raise SystemExit("no takeover within 20 s")
            time.sleep(0.05)
        took = time.monotonic() - crashed
        show(c, etcd, f"replica {new} took over {took:.2f} s after node {active} crashed (measured).", 4,
             dead=(active,))
        c.start(active)
        show(c, etcd, f"node {active} restarted: it rejoins as passive.", 5)
        c.check_history()
        table(c, etcd, f"done. Takeover after a node crash: {took:.2f} s. History checked: never two actives.")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; everything the demo started was stopped")

#!/usr/bin/env python3
"""prom demo: three replicas on a private etcd and a private D-Bus session bus, a node crash, a
measured takeover. Everything shown is read live: roles, leaders and tokens from the daemons'
D-Bus API (promctl status), the leader key from etcd, the toy service's state from its file."""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402

PROMCTL = None


def daemon_views():
    """replica -> (role, token, leader) from promctl status over the demo's bus."""
    r = subprocess.run([PROMCTL, "--bus", "session", "status"], capture_output=True, text=True)
    views = {}
    for line in r.stdout.splitlines()[1:]:
        f = line.split()
        if len(f) >= 5:
            views[f[0]] = (f[2], f[4], f[3])
    return views


def table(c, etcd, note, dead=()):
    key = None
    try:
        key = etcd.get("/prom/demo/leader")
    except AssertionError:
        pass
    views = daemon_views()
    out = ["\033[H\033[J", "prom demo — 3 replicas of a toy service, etcd on " + etcd.endpoints[0], "",
           f"{'replica':<9}{'prom':<10}{'role (prom)':<14}{'token':<8}{'leader':<8}{'service':<9}", "-" * 58]
    for i in c.ids:
        running = c.procs.get(i) and c.procs[i].poll() is None and i not in dead
        role, token, leader = views.get(i, ("starting", "-", "-")) if running else ("-", "-", "-")
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
    global PROMCTL
    PROMCTL = os.path.join(os.path.dirname(os.path.abspath(a.prom)), "promctl")
    sys.argv = [sys.argv[0], "--prom", a.prom] + (["--keep"] if a.keep else [])
    with harness.Test("demo") as t:
        etcd = t.etcd(1)
        # A private session bus: the daemons offer their D-Bus API there, no root needed.
        bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE,
                               text=True)
        t.cleanup.append(bus)
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().strip()
        c = t.cluster(etcd, timeout_ms=3000, margin_ms=750, monitor_ms=500, app="demo", bus="session")
        c.start()
        t0 = time.monotonic()
        active = c.wait_one_active(10)
        show(c, etcd, f"replica {active} became active {time.monotonic() - t0:.2f} s after start. "
                      "Lease TTL 3 s: a dead active is replaced within about 3.5 s.", 4)
        show(c, etcd, f"killing node {active}: kill -9 its prom, and its service dies with it ...", 1.5)
        crashed = time.monotonic()
        c.crash_node(active)
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

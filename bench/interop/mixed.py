#!/usr/bin/env python3
"""Figures for a mixed PROM/prom cluster (bench/RESULTS.md): replicas 0 and 2 are PROM 1.0.6
(tests/tools/prom_peer.py), replica 1 is prom, on the MUSIC emulator.

    mixed.py --prom BUILD/prom [--takeovers 10] [--restarts 20] [--timeout-ms 3000]

- takeovers: kill -9 of the active node (daemon, actions, service), alternating PROM -> prom and
  prom -> PROM; time until the other kind's replica is active;
- restarts: kill -9 of the active prom alone, relaunched 0.3 s later (same id and runtime
  directory), then a window of 2 x timeout; a restart "changed roles" when the history got a
  line in that window. After such a restart the lock is moved back to prom.
Prints one line per event and a summary; the history is checked with history_check.py."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "integration"))
import argparse  # noqa: E402

import harness  # noqa: E402
from harness import log  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--prom", required=True)
ap.add_argument("--takeovers", type=int, default=10)
ap.add_argument("--restarts", type=int, default=20)
ap.add_argument("--timeout-ms", type=int, default=3000)
ap.add_argument("--keep", action="store_true")
a = ap.parse_args()
harness.args = lambda: a

PEER = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "tools", "prom_peer.py")
PEERS = ("0", "2")
T = a.timeout_ms / 1000


def start(c, i):
    if i in PEERS:
        out = open(os.path.join(c.dir, f"prom{i}.log"), "a")
        c.procs[i] = harness.subprocess.Popen([sys.executable, PEER, "-i", i, "-c", c.conf(i)], stdout=out,
                                              stderr=harness.subprocess.STDOUT)
    else:
        c.start(i)


def kind(i):
    return "PROM" if i in PEERS else "prom"


def crash(c, victim):
    t0 = time.monotonic()
    c.crash_node(victim)
    new = c.wait_one_active(4 * T + 10, exclude=(victim,))
    took = time.monotonic() - t0
    start(c, victim)
    return new, took


with harness.Test("bench-mixed") as t:
    music = t.music(1)
    c = t.cluster(None, music=music, replicas=3, timeout_ms=a.timeout_ms, monitor_ms=300, retry_backoff_ms=200)
    start(c, "0")
    harness.wait_for(lambda: c.actives() == ["0"], 10, "PROM 0 active")
    start(c, "1")
    time.sleep(2 * T)
    active = "0"
    times = {}
    for _ in range(a.takeovers):
        new, took = crash(c, active)
        key = f"{kind(active)} -> {kind(new)}"
        times.setdefault(key, []).append(took)
        log(f"takeover {key}: {took:.3f} s")
        time.sleep(T)
        active = new
    start(c, "2")
    changed = 0
    for n in range(a.restarts):
        while active != "1":
            active, _ = crash(c, active)
            time.sleep(T)
        time.sleep(T)
        before = open(c.history).read()
        c.kill("1")
        time.sleep(0.3)
        c.start("1")
        time.sleep(2 * T)
        added = open(c.history).read()[len(before):]
        if added:
            changed += 1
            log(f"restart {n + 1}: roles changed: " + " | ".join(added.splitlines()))
            active = c.wait_one_active(4 * T + 10)
        else:
            log(f"restart {n + 1}: no role change")
    problems, overlaps = harness.history_check.check(c.events(), 0.0)
    for k, v in times.items():
        v.sort()
        log(f"SUMMARY takeover {k}: n={len(v)} min {v[0]:.2f} median {v[len(v) // 2]:.2f} max {v[-1]:.2f} s")
    log(f"SUMMARY restarts of the active prom: {changed} of {a.restarts} changed roles; "
        f"overlaps: {len(overlaps)}" + (f", longest {max(o[0] for o in overlaps):.3f} s" if overlaps else ""))
    for p in problems:
        log("SUMMARY history: " + p)

"""system tier: the fence held by PID 1 (prom(8), FENCE) under real systemd 252. One container
(nspawn, systemd as PID 1, its own etcd), two replicas prom@0 and prom@1 whose actions start and
stop demo@0 / demo@1 (replica 0 with script actions, replica 1 with unit actions). demo@N logs
its own start (ExecStartPre=) and stop (ExecStopPost=) to a history file that
tests/tools/history_check.py judges: any overlap of two running demo units fails.

Scenarios, each on the replica that is active at the time:
  resume   kill -9 of the active's prom, config valid: systemd restarts it, it resumes with 0
           role changes and demo never stops (the fence armed at its death is cancelled).
  freeze   kill -STOP of the active's prom for 2 x TTL, then kill -CONT: 0 overlap, and then
           exactly one active (--freezes N repeats it at random keepalive phases).
  broken   the config made invalid, then kill -9 of the active's prom (it cannot start again):
           its demo is stopped before the peer's demo starts. Run twice, once per replica: the
           second time /usr/bin/prom is made unexecutable instead.
Exits non-zero if any scenario saw an overlap or a role change where none may be; prints the
figures of every scenario first."""
import argparse
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import history_check  # noqa: E402
from nspawn import Container, require_root_and_tools  # noqa: E402
from harness import log, wait_for  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--build", required=True, help="build directory to install from")
ap.add_argument("--keep", action="store_true")
ap.add_argument("--only", default="resume,freeze,broken", help="comma-separated scenarios")
ap.add_argument("--freezes", type=int, default=1, help="how many freezes (bench/RESULTS.md: 20)")
ap.add_argument("--seed", type=int, default=13, help="seed of the freeze phases")
a = ap.parse_args()
require_root_and_tools()

# resume runs at the default lease (TTL 5 s, margin 1.25 s): a restarted prom is back well within
# its deadline. freeze and broken run at TTL 2 s (margin 0.75 s), where the old unit let a frozen
# prom's replica outlive its lease (issue 13: 0.69 s of two running units).
CONFIG = """app-name = "fence"
replicas = ["0", "1"]
[store]
endpoints = ["http://127.0.0.1:2379"]
[election]
timeout-ms = {ttl_ms}
demote-margin-ms = {margin_ms}
[actions]
timeout-ms = {action_ms}
retry-backoff-ms = 200
ensure-active = { start-unit = "demo@%i.service" }
ensure-passive = { stop-unit = "demo@%i.service" }
[replica.0]
priority = 10
ensure-active = "systemctl start demo@0.service"
ensure-passive = ["/bin/systemctl", "stop", "demo@0.service"]
"""
HISTORY = "/var/lib/demo-history"
DEMO = """[Unit]
Description=demo replica %i (logs its running interval for the history checker)
[Service]
ExecStartPre=/usr/local/bin/demo-history start %i
ExecStart=/bin/sleep infinity
ExecStopPost=/usr/local/bin/demo-history stop %i
"""
DEMO_HISTORY = """#!/bin/sh
echo "$1 $2 - $(date +%s.%N)" >> /var/lib/demo-history
"""

results = []  # (scenario, ok, figures)
TTL = 5.0


def config_text(ttl_ms, margin_ms, action_ms):
    return CONFIG.replace("{ttl_ms}", str(ttl_ms)).replace("{margin_ms}", str(margin_ms)).replace("{action_ms}",
                                                                                                   str(action_ms))


def configure(c, ttl_ms, margin_ms, action_ms):
    """Writes the config and restarts both proms (the passive first), leaving one active."""
    global TTL
    TTL = ttl_ms / 1000
    c.write("/etc/prom/prom.conf", config_text(ttl_ms, margin_ms, action_ms))
    c.run("prom", "--check-config", "--id", "0")
    act = one_active(c)
    for i in sorted("01", key=lambda i: i == act):
        c.run("systemctl", "restart", f"prom@{i}")
        time.sleep(0.5)
    act = settle(c)
    log(f"TTL {TTL:.0f} s, margin {margin_ms} ms: replica {act} active; watchdog in force on prom@{act}: "
        f"{c.show(f'prom@{act}', 'WatchdogUSec')}")


def fence_timing(c, unit, since):
    """prom-fence's own account of when it demoted, relative to the deadline."""
    j = c.journal("-u", unit, "--since", f"@{since:.6f}", "-o", "cat")
    return [line.split("; ", 1)[1] for line in j.splitlines() if "demoting" in line and "; " in line]


def overlaps_since(c, since):
    """Overlaps of demo units that began at or after since (realtime s). Token problems are
    judged once for the whole run, by the history check at the end."""
    _, overlaps = history_check.check(history_check.parse(c.path(HISTORY)))
    return [o for o in overlaps if max(o[1][2], o[2][2]) >= since]


def role(c, i):
    r = c.run("busctl", "get-property", f"org.prom.Prom1.Replica_{i}", "/org/prom/Prom1", "org.prom.Prom1.Replica",
              "Role", check=False)
    return r.stdout.split('"')[1] if r.returncode == 0 else None


def demo_active(c, i):
    return c.run("systemctl", "is-active", f"demo@{i}.service", check=False).stdout.strip() == "active"


def one_active(c):
    roles = {i: role(c, i) for i in "01"}
    running = [i for i in "01" if demo_active(c, i)]
    act = [i for i, r in roles.items() if r == "active"]
    if len(act) == 1 and running == act and sorted(roles.values()) == ["active", "passive"]:
        return act[0]
    return None


def settle(c, timeout=30):
    return wait_for(lambda: one_active(c), timeout, "exactly one active replica (prom role and demo unit)", step=0.2)


def history_lines_since(c, since):
    out = []
    for line in open(c.path(HISTORY)):
        p = line.split()
        if len(p) == 4 and float(p[3]) >= since:
            out.append(line.strip())
    return out


def scenario_resume(c):
    act = settle(c)
    peer = "1" if act == "0" else "0"
    inv = c.show(f"demo@{act}.service", "InvocationID")
    restarts = int(c.show(f"prom@{act}", "NRestarts"))
    t0 = time.time()
    c.run("kill", "-9", c.show(f"prom@{act}", "MainPID"))
    wait_for(lambda: int(c.show(f"prom@{act}", "NRestarts")) > restarts, 10, "systemd to restart prom", step=0.05)
    wait_for(lambda: role(c, act) == "active", 10, f"prom@{act} to resume", step=0.05)
    resumed = time.time() - t0
    # Past the deadline the fence was armed for: the fence must not have demoted the resumed replica.
    time.sleep(TTL)
    changes = c.journal("-u", f"prom@{act}", "-u", f"prom@{peer}", "MESSAGE_ID=6d1c5f0b8e9a4c2fa1b7e3d9c4f20a57",
                        "--since", f"@{t0:.6f}", "-o", "cat")
    lines = history_lines_since(c, t0)
    same = c.show(f"demo@{act}.service", "InvocationID") == inv
    ok = same and not lines and role(c, peer) == "passive" and "-> active" in changes and \
        "promoting" not in changes and "demoting" not in changes
    log(f"resume: prom@{act} killed -9, resumed in {resumed:.2f} s; demo@{act} same invocation: {same}; "
        f"history since: {lines}; role changes: {changes.strip() or 'none'}")
    fence = c.journal("-u", f"prom-fence@{act}", "--since", f"@{t0:.6f}", "-o", "cat").strip()
    log(f"resume: prom-fence@{act}: {fence or '(never ran)'}")
    results.append((f"resume (kill -9, valid config, TTL {TTL:.0f} s)", ok, f"resumed in {resumed:.2f} s, demo stopped: {not same}, "
                    f"history lines {len(lines)}"))


def scenario_freeze(c, count):
    """count freezes of whichever prom is active, each at a random phase of its keepalive cycle."""
    rng = random.Random(a.seed)
    froze_with_overlap = 0
    worst = 0.0
    outcomes = []
    timings = []
    for n in range(count):
        act = settle(c)
        time.sleep(rng.uniform(0, TTL / 3))
        t0 = time.time()
        pid = c.show(f"prom@{act}", "MainPID")
        c.run("kill", "-STOP", pid)
        time.sleep(2 * TTL)
        c.run("kill", "-CONT", pid, check=False)
        now_active = settle(c)
        overlaps = overlaps_since(c, t0)
        watchdog = "Watchdog timeout" in c.journal("-u", f"prom@{act}", "--since", f"@{t0:.6f}", "-o", "cat")
        timing = fence_timing(c, f"prom-fence@{act}", t0) + fence_timing(c, f"prom@{act}", t0)
        timings += timing
        if overlaps:
            froze_with_overlap += 1
            worst = max([worst] + [o[0] for o in overlaps])
        outcomes.append("same" if now_active == act else "moved")
        log(f"freeze {n + 1}/{count}: prom@{act} stopped for {2 * TTL:.0f} s; watchdog fired: {watchdog}; "
            f"active now: {now_active}; fence: {timing or 'did not demote'}; "
            f"overlaps: {[(round(o[0], 3), o[1][0], o[2][0]) for o in overlaps]}")
    results.append((f"freeze x{count} (kill -STOP {2 * TTL:.0f} s, TTL {TTL:.0f} s)", froze_with_overlap == 0,
                    f"{froze_with_overlap}/{count} with overlap, worst {worst:.3f} s; afterwards "
                    f"the frozen replica active again {outcomes.count('same')}x, the peer {outcomes.count('moved')}x; "
                    f"fence demotions: {len(timings)}"))


def scenario_broken(c, how):
    """how: "config" (made invalid: ExecStartPre= --check-config fails) or "binary" (prom not
    executable: every Exec of prom fails with 203/EXEC; prom-fence is a separate binary)."""
    act = settle(c)
    peer = "1" if act == "0" else "0"
    good = open(c.path("/etc/prom/prom.conf")).read()
    if how == "config":
        c.write("/etc/prom/prom.conf", good + "\n[election\nthis is not TOML\n")
        assert c.run("prom", "--check-config", "--id", act, check=False).returncode == 78
    else:
        c.run("chmod", "a-x", "/usr/bin/prom")
    t0 = time.time()
    c.run("kill", "-9", c.show(f"prom@{act}", "MainPID"))
    wait_for(lambda: role(c, peer) == "active" and demo_active(c, peer), 30, f"replica {peer} to take over", step=0.1)
    took = time.time() - t0
    time.sleep(1)
    stuck = demo_active(c, act)
    state = c.show(f"prom@{act}", "ActiveState") + "/" + c.show(f"prom@{act}", "Result")
    fence = c.journal("-u", f"prom-fence@{act}", "-u", f"prom@{act}", "--since", f"@{t0:.6f}", "-o", "cat",
                      "--grep", "prom-fence").strip()
    # Restore and let the replica rejoin; an overlap still running is then closed by prom itself.
    c.write("/etc/prom/prom.conf", good)
    c.run("chmod", "a+x", "/usr/bin/prom")
    c.run("systemctl", "reset-failed", f"prom@{act}", check=False)
    c.run("systemctl", "restart", f"prom@{act}")
    settle(c)
    overlaps = overlaps_since(c, t0)
    stop = start = None
    for line in history_lines_since(c, t0):
        kind, rep, _, t = line.split()
        if kind == "stop" and rep == act and stop is None:
            stop = float(t)
        if kind == "start" and rep == peer and start is None:
            start = float(t)
    gap = (start - stop) if (start and stop) else None
    worst = max((o[0] for o in overlaps), default=0.0)
    log(f"broken: prom@{act} killed -9 with {'an invalid config' if how == 'config' else 'its binary not executable'} ({state}); replica {peer} took over after {took:.2f} s; "
        f"demo@{act} still running then: {stuck}; demo@{act} stop -> demo@{peer} start: "
        f"{'%.3f s' % gap if gap is not None else 'no stop'}; overlaps: {[(round(o[0], 3), o[1][0], o[2][0]) for o in overlaps]}")
    log(f"broken: fence: {fence or '(never ran)'}")
    ok = not overlaps and not stuck and gap is not None and gap > 0
    kinds = "script actions" if act == "0" else "unit actions"
    timing = fence_timing(c, f"prom-fence@{act}", t0) + fence_timing(c, f"prom@{act}", t0)
    what = "invalid config" if how == "config" else "prom not executable"
    results.append((f"kill -9, {what} ({kinds}, TTL {TTL:.0f} s)", ok,
                    f"{len(overlaps)} overlaps, worst {worst:.3f} s; stop->start gap "
                    f"{'%.3f s' % gap if gap is not None else 'none'}; prom@{act} {state}; fence: {timing or 'did not demote'}"))


with Container(a.build, "promfence", keep=a.keep) as c:
    c.write("/etc/systemd/system/demo@.service", DEMO)
    c.write("/usr/local/bin/demo-history", DEMO_HISTORY, 0o755)
    c.write(HISTORY, "")
    c.write("/etc/prom/prom.conf", config_text(5000, 1250, 1000))
    c.run("systemctl", "daemon-reload")
    c.run("prom", "--check-config", "--id", "0")
    c.run("systemctl", "start", "prom@0")
    wait_for(lambda: role(c, "0") == "active", 20, "replica 0 (priority 10) to become active")
    c.run("systemctl", "start", "prom@1")
    settle(c)
    only = a.only.split(",")
    if "resume" in only:
        configure(c, 5000, 1250, 1000)
        scenario_resume(c)
    configure(c, 2000, 750, 700)
    if "freeze" in only:
        scenario_freeze(c, a.freezes)
    if "broken" in only:
        scenario_broken(c, "config")
        scenario_broken(c, "binary")
    checker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "history_check.py")
    verdict = subprocess.run([sys.executable, checker, c.path(HISTORY)], capture_output=True, text=True)
    log("history_check.py: " + verdict.stdout.strip().replace("\n", "; "))
    print("\nscenario | ok | figures")
    for name, ok, fig in results:
        print(f"{name} | {'PASS' if ok else 'FAIL'} | {fig}")
    failed = [n for n, ok, _ in results if not ok]
    if failed or verdict.returncode != 0:
        c.failed = True
        raise SystemExit(f"FAILED: {', '.join(failed) or 'history_check.py'}")
    log("the fence tier passed")

"""Hostile store tier (issue 9): prom against a fake etcd gateway that answers one kind of
request badly, for every kind in fake_etcd.MODES (invalid JSON, wrong types, huge, endless and
dripping bodies, redirects, deep nesting, invalid UTF-8, absurd TTLs, stale revisions, 3xx/4xx/
5xx, HTML, truncated chunks, ...). For each: no crash (no signal, no sanitizer report), no hang
(SIGTERM ends it within 10 s), RSS under 64 MB, and never active beyond the lease the fake
store really held (its own record of grants and renewals at the TTL prom asked for, whatever
a reply claimed). Cases run in parallel, each with its own fake server and prom."""
import argparse
import bisect
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import fake_etcd  # noqa: E402

RUN_S = 6.0  # each case: prom runs this long against the fake store, then gets SIGTERM
TTL_MS = 2000
RSS_LIMIT_KB = 64 * 1024
# A watch cancelled at once was reopened 120 times in 6 s before the fix.
MAX_WATCH_OPENS = 40

ACTION = r"""#!/bin/sh
# act.sh active|passive: records when the toy service starts serving and when it has stopped
# (prom re-runs ensure-active on every monitor tick: only a change is recorded).
dir=$(dirname "$0")
cur=$(cat "$dir/state" 2>/dev/null || echo passive)
[ "$cur" = "$1" ] && exit 0
if [ "$1" = active ]; then echo "start $(date +%s.%N)" >> "$dir/history"; echo active > "$dir/state"; exit 2; fi
echo passive > "$dir/state"
echo "stop $(date +%s.%N)" >> "$dir/history"
exit 2
"""


def conf(endpoint, script, rid):
    return f"""app-name = "hostile"
replicas = ["{rid}"]
[store]
endpoints = ["{endpoint}"]
connect-timeout-ms = 300
[election]
timeout-ms = {TTL_MS}
monitor-interval-ms = 500
demote-margin-ms = 500
[actions]
retry-attempts = 2
retry-backoff-ms = 200
timeout-ms = 400
ensure-active = ["{script}", "active"]
ensure-passive = ["{script}", "passive"]
"""


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def active_beyond_lease(history, acks, stopped_at):
    """Moments prom was active while the fake store held no lease of it (or None)."""
    events = []
    for line in history:
        kind, t = line.split()
        events.append((float(t), kind))
    intervals, start = [], None
    for t, kind in events:
        if kind == "start" and start is None:
            start = t
        elif kind == "stop" and start is not None:
            intervals.append((start, t))
            start = None
    if start is not None:
        intervals.append((start, stopped_at))
    times = [a[0] for a in acks]
    for s, e in intervals:
        t = s
        while t <= e:
            k = bisect.bisect_right(times, t) - 1
            if k < 0 or t > acks[k][0] + acks[k][2] + 0.05:
                return t
            t += 0.01
    return None


def run_case(prom, mode, workdir, bus):
    # One replica id per case: they share one D-Bus daemon, where prom publishes what the
    # store said (Leader, LastError) and where invalid UTF-8 used to make it exit.
    rid = "h" + str(fake_etcd.MODES.index(mode))
    d = os.path.join(workdir, mode)
    os.makedirs(d)
    script = os.path.join(d, "act.sh")
    with open(script, "w") as f:
        f.write(ACTION)
    os.chmod(script, 0o755)
    fake = fake_etcd.FakeEtcd(mode)
    with open(os.path.join(d, "prom.conf"), "w") as f:
        f.write(conf(fake.endpoint, script, rid))
    # ASan keeps freed memory in a quarantine of 256 MB by default, which RSS then counts:
    # bounded to 4 MB, RSS measures what prom holds (plus that bound) in both builds.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = dict(os.environ, RUNTIME_DIRECTORY=os.path.join(d, "run"),
               ASAN_OPTIONS=(asan + ":" if asan else "") + "quarantine_size_mb=4")
    env.pop("JOURNAL_STREAM", None)
    logpath = os.path.join(d, "prom.log")
    problems = []
    with open(logpath, "w") as out:
        p = subprocess.Popen([prom, "-i", rid, "-c", os.path.join(d, "prom.conf"), "--bus", bus], stdout=out,
                             stderr=subprocess.STDOUT, env=env)
    peak = 0
    end = time.monotonic() + RUN_S
    while time.monotonic() < end and p.poll() is None:
        peak = max(peak, rss_kb(p.pid))
        time.sleep(0.1)
    if p.poll() is not None:
        problems.append(f"prom exited by itself with {p.returncode} while the store misbehaved")
    else:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            problems.append("hang: prom did not exit within 10 s of SIGTERM")
            p.kill()
            p.wait()
    stopped_at = time.time()
    fake.stop()
    if p.returncode is not None and p.returncode < 0:
        problems.append(f"crash: prom died of signal {-p.returncode}")
    text = open(logpath, errors="replace").read()
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "fatal:"):
        if marker in text:
            problems.append(f"'{marker}' in the log")
    if peak > RSS_LIMIT_KB:
        problems.append(f"RSS {peak // 1024} MB over {RSS_LIMIT_KB // 1024} MB")
    hist_path = os.path.join(d, "history")
    history = open(hist_path).read().split("\n") if os.path.exists(hist_path) else []
    history = [h for h in history if h.strip()]
    beyond = active_beyond_lease(history, list(fake.store.acks), stopped_at)
    if beyond is not None:
        problems.append(f"active at {beyond:.2f} without a lease held by the store")
    starts = sum(1 for h in history if h.startswith("start"))
    demotions = text.count("-> demoting")
    if mode in ("watch-stale-revisions", "watch-stale-other-holder") and (starts != 1 or demotions):
        problems.append(f"stale watch events changed the role: {starts} starts, {demotions} demotions (want 1, 0)")
    # A reply older than one seen on another connection is no sign of a stale member.
    if mode == "reordered-replies" and ("stale reply" in text or starts != 1):
        problems.append(f"a late reply to a concurrent request was taken for a stale member ({starts} starts)")
    # Bytes that never finish a line are not progress: a dripping watch is given up (about
    # every TTL/3) and reopened, or a DELETE behind it would never arrive.
    if mode == "watch-dripping" and fake.watch_opens < 3:
        problems.append(f"a dripping watch stream was kept: {fake.watch_opens} opens in {RUN_S} s")
    if mode.startswith("watch-") and fake.watch_opens > MAX_WATCH_OPENS:
        problems.append(f"the watch was opened {fake.watch_opens} times in {RUN_S} s")
    # (watch-flood names another holder in valid events: passive is right there)
    if mode.startswith("watch-") and mode != "watch-flood" and starts == 0:
        problems.append("never active although every request but the watch was answered well")
    return mode, problems, peak, fake.watch_opens, starts, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prom", required=True)
    ap.add_argument("--mode", action="append", help="run only these modes")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    modes = a.mode or fake_etcd.MODES
    workdir = tempfile.mkdtemp(prefix="prom-hostile-")
    print(f"{len(modes)} hostile store modes, {a.jobs} at a time, work directory {workdir}", flush=True)
    t0 = time.monotonic()
    failed = 0
    # The D-Bus side is part of what is tested (invalid UTF-8 once made prom exit there): no
    # silent fallback to --bus none.
    if not shutil.which("dbus-daemon"):
        sys.exit("dbus-daemon is missing (scripts/deps.sh installs it)")
    dbus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE,
                            text=True)
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = dbus.stdout.readline().strip()
    bus = "session"
    try:
        with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
            results = list(pool.map(lambda m: run_case(a.prom, m, workdir, bus), modes))
    finally:
        dbus.kill()
        dbus.wait()
    for mode, problems, peak, opens, starts, text in results:
        status = "ok" if not problems else "FAIL"
        print(f"{status:4} {mode:32} rss {peak / 1024:5.1f} MB  watch opens {opens:3}  starts {starts}"
              + ("" if not problems else "  " + "; ".join(problems)), flush=True)
        if problems:
            failed += 1
            print("\n".join("      " + l for l in text.splitlines()[-15:]))
    print(f"{len(modes) - failed} passed, {failed} failed ({time.monotonic() - t0:.0f} s)")
    if not failed and not a.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

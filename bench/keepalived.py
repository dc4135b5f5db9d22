#!/usr/bin/env python3
"""prom and keepalived side by side, in the same harness and the same run (numbers, not
assertions). Three network-namespace nodes on one bridge. keepalived: VRRP whose notify FIFO
feeds start/stop lines to a history file; prom: an etcd member per node and script
actions writing the same kind of history. For each: crash failover (kill -9 of the active's
daemon, the service dies with it) and graceful stop (SIGTERM), --runs runs each, at defaults
(keepalived advert_int 1; prom TTL 5 s on default etcd) and tuned (keepalived VRRPv3
advert_int 0.1; etcd --heartbeat-interval 20 --election-timeout 200, prom TTL 1 s). Then a
partition of the active node: the history checker's verdict for both.
--fast adds prom's fast mode (peer support over UDP, prom(8) FAST MODE) in the same run: at
its defaults (heartbeat 50 ms, support 400 ms, default etcd) next to keepalived's defaults, and
tuned (heartbeat 25 ms, support 200 ms, tuned etcd) next to keepalived's tuned, plus the idle
CPU of each fast-mode daemon. The crash kills prom and its service only: the node's etcd member
lives on (a crash of the etcd leader's host is not measured here).

    bench/keepalived.py --prom BUILD/prom [--runs 20] [--fast] [--crash-only] [--sides keepalived,prom,prom-fast]
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "faults"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "tools"))
import history_check  # noqa: E402
from harness import log, wait_for  # noqa: E402
from nemesis import Net, Node, write_config, write_fast_config  # noqa: E402



def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))]


class Side:
    """Common to both: a work directory with history and toy states."""

    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.history = os.path.join(self.dir, "history")
        open(self.history, "w").close()

    def state(self, i):
        try:
            return open(os.path.join(self.dir, f"state.{i}")).read().strip()
        except FileNotFoundError:
            return "passive"

    def actives(self):
        return [i for i in range(3) if self.state(i) == "active"]

    def one_active(self, timeout, exclude=()):
        def ok():
            a = self.actives()
            return a[0] + 1 if len(a) == 1 and a[0] not in exclude else None
        return wait_for(ok, timeout, "exactly one active") - 1

    def crash_record(self, i):
        if self.state(i) == "active":
            with open(self.history, "a") as f:
                f.write(f"stop {i} - {time.time():.9f}\n")
            with open(os.path.join(self.dir, f"state.{i}"), "w") as f:
                f.write("passive\n")

    def last(self, kind, i, after):
        xs = [e[0] for e in history_check.parse(self.history) if e[1] == kind and e[2] == str(i) and e[0] >= after]
        return xs[0] if xs else None


class Keepalived(Side):
    """keepalived's state changes come in order through its notify FIFO (notify scripts run
    concurrently and can race each other); a reader thread turns them into history lines."""

    def __init__(self, root, net, tuned):
        super().__init__(root, "keepalived-tuned" if tuned else "keepalived")
        self.net, self.tuned = net, tuned
        self.procs = [None] * 3
        self.lock = threading.Lock()
        vip = net.ip[0].rsplit(".", 1)[0] + ".100"
        for i in range(3):
            fifo = os.path.join(self.dir, f"k{i}.fifo")
            os.mkfifo(fifo)
            threading.Thread(target=self._read, args=(i, fifo), daemon=True).start()
            with open(os.path.join(self.dir, f"k{i}.conf"), "w") as f:
                f.write(f"""global_defs {{
  router_id node{i}
  notify_fifo {fifo}
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface vn{i}{net.tag}
  virtual_router_id {50 + int(tuned)}
  priority 100
  nopreempt
  advert_int {"0.1" if tuned else "1"}
  {"version 3" if tuned else ""}
  virtual_ipaddress {{
    {vip}/24
  }}
}}
""")

    def _read(self, i, fifo):
        while True:
            with open(fifo) as f:  # reopened whenever a keepalived instance ends
                for line in f:
                    parts = line.split()
                    # MASTER_RX_LOWER_PRI and other events are not state changes
                    if len(parts) >= 3 and parts[0] == "INSTANCE" and parts[2] in ("MASTER", "BACKUP", "FAULT", "STOP"):
                        self._transition(i, "active" if parts[2] == "MASTER" else "passive")

    def _transition(self, i, new):
        with self.lock:
            if self.state(i) == new:
                return
            with open(self.history, "a") as f:
                f.write(f"{'start' if new == 'active' else 'stop'} {i} - {time.time():.9f}\n")
            with open(os.path.join(self.dir, f"state.{i}"), "w") as f:
                f.write(new + "\n")

    def start(self, i):
        d = self.dir
        # keepalived refuses to start while its old pid files name a process that still exists
        # (a killed child can linger as a zombie here): they are ours, remove them.
        for suffix in ("pid", "vrrp.pid", "chk.pid"):
            try:
                os.remove(os.path.join(d, f"k{i}.{suffix}"))
            except FileNotFoundError:
                pass
        out = open(os.path.join(d, f"k{i}.log"), "a")
        self.procs[i] = subprocess.Popen(
            ["ip", "netns", "exec", self.net.ns[i], "keepalived", "--dont-fork", "--log-console", "--vrrp",
             "-f", os.path.join(d, f"k{i}.conf"), "-p", os.path.join(d, f"k{i}.pid"), "-r", os.path.join(d, f"k{i}.vrrp.pid"),
             "-c", os.path.join(d, f"k{i}.chk.pid")], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def crash(self, i):
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait()
        self._transition(i, "passive")  # its service dies with the node

    def stop(self, i):
        self.procs[i].send_signal(signal.SIGTERM)
        self.procs[i].wait(20)

    def stop_all(self):
        for i in range(3):
            if self.procs[i] and self.procs[i].poll() is None:
                os.killpg(self.procs[i].pid, signal.SIGKILL)
                self.procs[i].wait()


class Prom(Side):
    def __init__(self, root, net, tuned, prom, fast=False):
        super().__init__(root, ("prom-fast" if fast else "prom") + ("-tuned" if tuned else ""))
        self.net = net
        self.nodes = [Node(i, net, self.dir, prom) for i in range(3)]
        ttl, margin = (1000, 250) if tuned else (5000, 1250)
        if fast:
            ttl, margin = (2000, 500) if tuned else (5000, 1250)
        write_config(self.dir, net, "bench", ttl, margin, min(1000, ttl // 2))
        if fast:
            # fast mode at its defaults (50/400) or tuned (25/200); same key file on every node
            write_fast_config(self.dir, net, *((25, 200) if tuned else (50, 400)))
        self.tuned = tuned
        for n in self.nodes:
            n.start_etcd_tuned = tuned
        for n in self.nodes:
            self._start_etcd(n)

    def _start_etcd(self, n):
        if self.tuned:
            # Node.start_etcd with the tuned raft timings
            orig = n.run_in_ns

            def run(cmd, name, orig=orig):
                if cmd and cmd[0].endswith("etcd"):
                    cmd = cmd + ["--heartbeat-interval", "20", "--election-timeout", "200"]
                return orig(cmd, name)
            n.run_in_ns = run
        n.start_etcd()

    def start(self, i):
        self.nodes[i].start_prom()

    def crash(self, i):
        self.nodes[i].kill_prom(with_actions=True)
        self.crash_record(i)

    def stop(self, i):
        self.nodes[i].stop_prom()

    def stop_all(self):
        for n in self.nodes:
            n.stop_prom()
            n.kill_etcd()


def idle_cpu(side, seconds=30):
    """CPU seconds per second of each prom daemon while nothing happens (utime + stime)."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu(pid):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick
    pids = [n.prom_pid() for n in side.nodes]
    before = [cpu(p) for p in pids]
    time.sleep(seconds)
    return [(cpu(p) - b) / seconds for p, b in zip(pids, before)]


def measure(side, runs, settle, crash_only=False):
    crash, graceful = [], []
    for i in range(3):
        side.start(i)
    for _ in range(runs):
        old = side.one_active(settle + 10)
        time.sleep(settle)
        t0 = time.time()
        side.crash(old)
        new = side.one_active(settle + 15, exclude=(old,))
        crash.append(side.last("start", new, t0) - t0)
        side.start(old)
        time.sleep(settle)
    for _ in range(0 if crash_only else runs):
        old = side.one_active(settle + 10)
        time.sleep(settle / 2)
        t0 = time.time()
        side.stop(old)
        new = side.one_active(settle + 15, exclude=(old,))
        graceful.append(side.last("start", new, t0) - side.last("stop", old, t0))
        side.start(old)
        time.sleep(settle)
    return crash, graceful


def partition(side, net, seconds):
    active = side.one_active(20)
    time.sleep(1)
    cut = time.time()
    # Blocked at the switch: the port leaves the bridge, the node's link stays up (with the
    # link down keepalived only enters FAULT).
    subprocess.run(["ip", "link", "set", net.hostveth[active], "nomaster"], check=True)
    time.sleep(seconds)
    subprocess.run(["ip", "link", "set", net.hostveth[active], "master", net.bridge], check=True)
    time.sleep(5)
    # only what began during the partition (keepalived's crash runs flap between equal masters)
    _, overlaps = history_check.check(history_check.parse(side.history))
    during = [o for o in overlaps if max(o[1][2], o[2][2]) >= cut]
    return during, max((o[0] for o in during), default=0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prom", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--partition-only", action="store_true", help="skip the failover runs")
    ap.add_argument("--fast", action="store_true", help="add prom's fast mode (same run)")
    ap.add_argument("--crash-only", action="store_true", help="no graceful-stop runs")
    ap.add_argument("--sides", default="keepalived,prom,prom-fast", help="which sides to run (comma-separated)")
    a = ap.parse_args()
    sides = set(a.sides.split(","))
    if not a.fast:
        sides.discard("prom-fast")
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, VRRP)")
    root = tempfile.mkdtemp(prefix="prom-vs-keepalived-")
    log(f"work directory {root}")
    rows, parts, fast_rows, cpu_rows = [], [], [], []
    runs = 0 if a.partition_only else a.runs
    for tuned in (False, True):
        net = Net(str(os.getpid() % 100000 + int(tuned)), f"10.{180 + int(tuned)}.{os.getpid() % 250}")
        label = "tuned" if tuned else "defaults"
        kc = kg = pc = pg = []
        kp = pp = fp = None
        try:
            if "keepalived" in sides:
                k = Keepalived(root, net, tuned)
                log(f"keepalived ({'advert_int 0.1, VRRPv3' if tuned else 'advert_int 1'}): {runs} crash + {0 if a.crash_only else runs} graceful")
                kc, kg = measure(k, runs, 1.0 if not tuned else 0.5, a.crash_only)
                kp = partition(k, net, 10)
                k.stop_all()
            if "prom" in sides:
                p = Prom(root, net, tuned, a.prom)
                time.sleep(3)  # the etcd cluster forms
                log(f"prom ({'etcd tuned, TTL 1 s' if tuned else 'TTL 5 s'}): {runs} crash + {0 if a.crash_only else runs} graceful")
                pc, pg = measure(p, runs, 1.0 if tuned else 2.0, a.crash_only)
                pp = partition(p, net, 10)
                p.stop_all()
            if "prom-fast" in sides:
                f = Prom(root, net, tuned, a.prom, fast=True)
                time.sleep(3)
                f.start(0), f.start(1), f.start(2)
                f.one_active(15)
                time.sleep(2)
                cpu = idle_cpu(f)
                cpu_rows.append((label, cpu))
                for n in f.nodes:
                    n.stop_prom()
                log(f"prom fast mode ({'25/200 ms, etcd tuned' if tuned else '50/400 ms'}): {runs} crash")
                fc, _ = measure(f, runs, 1.0, True)
                fp = partition(f, net, 10)
                f.stop_all()
                fast_rows.append((label, kc, fc))
            if kc or pc:
                rows.append((f"crash, {label}", kc, pc))
            if kg or pg:
                rows.append((f"graceful stop, {label}", kg, pg))
            parts.append((label, kp, pp, fp))
        finally:
            net.destroy()
    print()
    if fast_rows:
        print("| node crash (prom + service killed) | keepalived median / p95 ms | prom fast mode median / p95 ms | fast / keepalived (median) |")
        print("|---|---|---|---|")
        for label, k, f in fast_rows:
            ks = f"{statistics.median(k) * 1000:.0f} / {pct(k, 95) * 1000:.0f}" if k else "-"
            ratio = f"{statistics.median(f) / statistics.median(k):.2f}" if k and f else "-"
            fs = f"{statistics.median(f) * 1000:.0f} / {pct(f, 95) * 1000:.0f}" if f else "-"
            print(f"| {label} | {ks} | {fs} | {ratio} |")
        print()
        for label, cpu in cpu_rows:
            print(f"Idle CPU per fast-mode daemon ({label}): " + ", ".join(f"{c * 100:.2f} %" for c in cpu))
        print()
    print("| scenario | keepalived median / p95 ms | prom median / p95 ms | prom / keepalived (median) |")
    print("|---|---|---|---|")
    for name, k, p in rows if not a.partition_only else []:
        if not k or not p:
            continue
        print(f"| {name} | {statistics.median(k) * 1000:.0f} / {pct(k, 95) * 1000:.0f} | "
              f"{statistics.median(p) * 1000:.0f} / {pct(p, 95) * 1000:.0f} | {statistics.median(p) / statistics.median(k):.2f} |")
    print()
    print("Partition of the active node for 10 s (history checker):")
    def verdict(name, r):
        return f"{name} not run" if r is None else f"{name} {len(r[0])} overlap(s), longest {r[1]:.3f} s"
    for label, kp, pp, fp in parts:
        print(f"- {label}: " + "; ".join([verdict("keepalived", kp), verdict("prom", pp), verdict("prom fast mode", fp)]))


if __name__ == "__main__":
    main()

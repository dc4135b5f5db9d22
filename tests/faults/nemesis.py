#!/usr/bin/env python3
"""Multi-node fault injection: three nodes, each a network namespace on one bridge with an etcd
member, a prom daemon and a toy replica; randomized faults from a printed seed (rerun with
--seed). Every active interval and token goes to the shared history, checked at the end.

Faults: kill -9 prom; node crash (prom, its actions and the replica killed *and* the node's
link cut: a crashed machine closes no TCP connection); freeze (SIGSTOP prom and replica for
2 x TTL, then SIGCONT); partition the active node (its link down); partition a passive; cut the
node hosting the first endpoint (whatever runs there); every endpoint refusing connections for
2 x TTL (all etcd members stopped; prom's CPU meanwhile is reported); kill an etcd member; kill
the etcd leader; quorum loss (two etcd members stopped, then restored); restart prom
(graceful). The cluster heals between faults.

Per run it prints: faults by kind, overlaps (zero allowed outside freeze; the freeze's bounded
overlap is reported separately), tokens never shared or reused, failover latency per fault
kind, and the fraction of time with an active replica outside quorum loss.

With --fast, prom runs in fast mode (peer support over UDP, heartbeat 25 ms, support 200 ms)
and the faults also include: one-way loss of the active's peer datagrams (outgoing or incoming,
nftables), 30 % random loss on the active's peer input, and prom freezes of 50, 150 and 500 ms
(longer than fast mode's 50 ms stop margin: their overlaps are reported with the freezes).

    nemesis.py --prom BUILD/prom --faults N [--seed S] [--summary FILE] [--fast]
"""
import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import history_check  # noqa: E402
from harness import ETCD, TOY_REPLICA, kill_with_actions, log, post, prom_toml, wait_for  # noqa: E402

TTL_MS, MARGIN_MS = 2000, 500
KINDS = ["kill-prom", "node-crash", "freeze", "partition-active", "partition-passive", "cut-first-endpoint",
         "all-endpoints-refuse", "kill-etcd-member", "kill-etcd-leader", "quorum-loss", "restart-prom"]
# --fast only (appended, so that the schedules of lease-mode seeds stay the same)
FAST_KINDS = ["peer-out-cut", "peer-in-cut", "peer-loss", "freeze-50ms", "freeze-150ms", "freeze-500ms"]


def peer_filter(ns, hook, rule):
    """nftables in one node: drop fast mode's peer datagrams (UDP 7947) on input or output."""
    sh("ip", "netns", "exec", ns, "nft", "add table inet prompeer")
    sh("ip", "netns", "exec", ns, "nft", f"add chain inet prompeer {hook} {{ type filter hook {hook} priority 0 ; }}")
    sh("ip", "netns", "exec", ns, "nft", f"add rule inet prompeer {hook} {rule}")


def peer_filter_clear(ns):
    sh("ip", "netns", "exec", ns, "nft", "delete table inet prompeer", check=False)


def write_fast_config(workdir, net, heartbeat_ms=25, support_ms=200):
    """Fast mode on top of write_config's prom.conf (tuned timings by default, one key file)."""
    key = os.path.join(workdir, "peer.key")
    with open(key, "w") as f:
        f.write(os.urandom(24).hex())
    conf = os.path.join(workdir, "prom.conf")
    text = open(conf).read().replace(
        "[election]\n", f'[election]\nmode = "fast"\nheartbeat-ms = {heartbeat_ms}\nsupport-ms = {support_ms}\npeer-key-file = "{key}"\n', 1)
    for i in range(3):
        text += f'[replica.{i}]\naddress = "{net.ip[i]}:7947"\n'
    with open(conf, "w") as f:
        f.write(text)



def cpu_seconds(pid):
    """utime + stime of a process, in seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class Net:
    """Three namespaces on a bridge: the nodes."""

    def __init__(self, tag, subnet):
        self.tag = tag
        self.bridge = f"brp{tag}"
        self.ns = [f"promn{i}-{tag}" for i in range(3)]
        self.hostveth = [f"vp{i}{tag}" for i in range(3)]
        self.ip = [f"{subnet}.{i + 1}" for i in range(3)]
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "link", "set", self.bridge, "up")
        # The test itself (in the host namespace) reaches the nodes through the bridge.
        sh("ip", "addr", "add", f"{subnet}.254/24", "dev", self.bridge)
        for i in range(3):
            sh("ip", "netns", "add", self.ns[i])
            sh("ip", "link", "add", self.hostveth[i], "type", "veth", "peer", "name", f"vn{i}{tag}")
            sh("ip", "link", "set", f"vn{i}{tag}", "netns", self.ns[i])
            sh("ip", "link", "set", self.hostveth[i], "master", self.bridge, "up")
            sh("ip", "-n", self.ns[i], "addr", "add", f"{self.ip[i]}/24", "dev", f"vn{i}{tag}")
            sh("ip", "-n", self.ns[i], "link", "set", f"vn{i}{tag}", "up")
            sh("ip", "-n", self.ns[i], "link", "set", "lo", "up")

    def cut(self, i):
        sh("ip", "link", "set", self.hostveth[i], "down")

    def heal(self, i):
        sh("ip", "link", "set", self.hostveth[i], "up")

    def destroy(self):
        for i in range(3):
            sh("ip", "netns", "del", self.ns[i], check=False)
            sh("ip", "link", "del", self.hostveth[i], check=False)
        sh("ip", "link", "del", self.bridge, check=False)


class Node:
    def __init__(self, i, net, workdir, prom):
        self.i, self.id, self.net, self.dir, self.prom = i, str(i), net, workdir, prom
        self.etcd = None
        self.promp = None
        self.started_etcd = False

    def run_in_ns(self, cmd, log_name):
        out = open(os.path.join(self.dir, log_name), "a")
        return subprocess.Popen(["ip", "netns", "exec", self.net.ns[self.i], *cmd], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start_etcd(self):
        ip = self.net.ip[self.i]
        cluster = ",".join(f"m{k}=http://{self.net.ip[k]}:2380" for k in range(3))
        self.etcd = self.run_in_ns([ETCD, "--name", f"m{self.i}", "--data-dir", os.path.join(self.dir, f"m{self.i}.etcd"),
                                    "--listen-client-urls", f"http://{ip}:2379", "--advertise-client-urls", f"http://{ip}:2379",
                                    "--listen-peer-urls", f"http://{ip}:2380", "--initial-advertise-peer-urls",
                                    f"http://{ip}:2380", "--initial-cluster", cluster, "--initial-cluster-token", self.net.tag,
                                    "--initial-cluster-state", "existing" if self.started_etcd else "new",
                                    "--pre-vote"],  # as etcd 3.4 should run: a rejoining member deposes no leader
                                   f"etcd{self.i}.log")
        self.started_etcd = True

    def kill_etcd(self, sig=signal.SIGKILL):
        if self.etcd and self.etcd.poll() is None:
            os.killpg(self.etcd.pid, sig)
            self.etcd.wait(30)

    def start_prom(self):
        env = f"RUNTIME_DIRECTORY={os.path.join(self.dir, f'run{self.i}')}"
        self.promp = self.run_in_ns(["env", env, self.prom, "-i", self.id, "-c", os.path.join(self.dir, "prom.conf"),
                                     "--bus", "none"], f"prom{self.i}.log")

    def prom_pid(self):
        # ip netns exec execs the command: the Popen pid is prom's (through env, which execs too)
        return self.promp.pid

    def signal_prom(self, sig):
        if self.promp and self.promp.poll() is None:
            os.kill(self.prom_pid(), sig)

    def kill_prom(self, with_actions=False):
        if not self.promp or self.promp.poll() is not None:
            return
        if with_actions:
            kill_with_actions(self.promp)
        else:
            self.promp.kill()
            self.promp.wait(10)

    def stop_prom(self):
        if self.promp and self.promp.poll() is None:
            os.kill(self.prom_pid(), signal.SIGCONT)
            os.kill(self.prom_pid(), signal.SIGTERM)
            try:
                self.promp.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.prom_pid(), signal.SIGKILL)
                self.promp.wait()


def write_config(workdir, net, app, ttl_ms, margin_ms, monitor_ms):
    """The toy replica script and prom.conf shared by the three nodes (WORKDIR/prom.conf)."""
    script = os.path.join(workdir, "ensure.sh")
    with open(script, "w") as f:
        f.write(TOY_REPLICA)
    os.chmod(script, 0o755)
    with open(os.path.join(workdir, "prom.conf"), "w") as f:
        f.write(prom_toml(app, ["0", "1", "2"], [f"http://{ip}:2379" for ip in net.ip], script, timeout_ms=ttl_ms,
                          monitor_ms=monitor_ms, margin_ms=margin_ms, action_timeout_ms=1000))


class Suite:
    def __init__(self, a):
        self.a = a
        self.dir = tempfile.mkdtemp(prefix="prom-faults-")
        tag = str(os.getpid() % 100000)
        self.net = Net(tag, f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}")
        self.nodes = [Node(i, self.net, self.dir, a.prom) for i in range(3)]
        self.history = os.path.join(self.dir, "history")
        open(self.history, "w").close()
        write_config(self.dir, self.net, "faults", TTL_MS, MARGIN_MS, 500)
        self.kinds = KINDS + (FAST_KINDS if a.fast else [])
        if a.fast:
            write_fast_config(self.dir, self.net)
        self.freeze_windows = []
        self.quorum_loss = []
        self.refuse_cpu = []  # per all-endpoints-refuse: the busiest prom's share of a core
        self.latency = {k: [] for k in self.kinds}
        self.count = {k: 0 for k in self.kinds}

    def state(self, i):
        try:
            return open(os.path.join(self.dir, f"state.{i}")).read().strip()
        except FileNotFoundError:
            return "passive"

    def actives(self):
        return [n.i for n in self.nodes if self.state(n.i) == "active"]

    def crash_replica(self, i):
        if self.state(i) == "active":
            with open(self.history, "a") as f:
                f.write(f"stop {i} - {time.time():.9f}\n")
            with open(os.path.join(self.dir, f"state.{i}"), "w") as f:
                f.write("passive\n")

    def etcd_leader(self):
        for n in self.nodes:
            if n.etcd and n.etcd.poll() is None:
                try:
                    st = post(f"http://{self.net.ip[n.i]}:2379/v3/maintenance/status", {}, 1)
                    if st.get("leader"):
                        return next(m.i for m in self.nodes if m.etcd and m.etcd.poll() is None and
                                    self.member_id(m.i) == st["leader"])
                except Exception:
                    continue
        return None

    def member_id(self, i):
        try:
            return post(f"http://{self.net.ip[i]}:2379/v3/maintenance/status", {}, 1)["header"]["member_id"]
        except Exception:
            return None

    def one_active(self, timeout):
        def ok():
            a = self.actives()
            return a[0] + 1 if len(a) == 1 else None
        return wait_for(ok, timeout, "exactly one active replica") - 1

    def settle(self):
        for n in self.nodes:
            self.net.heal(n.i)
            if n.etcd is None or n.etcd.poll() is not None:
                n.start_etcd()
            if n.promp is None or n.promp.poll() is not None:
                n.start_prom()
        return self.one_active(20)

    def fault(self, kind, rng):
        active = self.settle()
        time.sleep(rng.uniform(0.5, 1.5))
        passive = rng.choice([n.i for n in self.nodes if n.i != active])
        t0 = time.time()
        n = self.nodes[active]
        expect_takeover = True
        if kind == "kill-prom":
            n.kill_prom()  # the replica keeps running: the restarted prom resumes (no failover)
            n.start_prom()
            expect_takeover = False
        elif kind == "node-crash":
            # A crashed machine closes no TCP connection: its link goes with it.
            self.net.cut(active)
            n.kill_prom(with_actions=True)
            self.crash_replica(active)
        elif kind == "freeze":
            n.signal_prom(signal.SIGSTOP)
            time.sleep(2 * TTL_MS / 1000)
            n.signal_prom(signal.SIGCONT)
            self.freeze_windows.append((t0, time.time() + 2.0))
        elif kind == "partition-active":
            self.net.cut(active)
        elif kind == "partition-passive":
            self.net.cut(passive)
            expect_takeover = False
        elif kind == "cut-first-endpoint":
            # Node 0 hosts the first endpoint of every prom: the passives' requests and
            # watch are there; a takeover is due only when node 0 was the active.
            self.net.cut(0)
            expect_takeover = active == 0
        elif kind == "all-endpoints-refuse":
            for node in self.nodes:
                node.kill_etcd(signal.SIGKILL)  # nothing listens: every connection is refused
            w0 = time.time()
            cpu0 = [cpu_seconds(node.prom_pid()) for node in self.nodes]
            time.sleep(2 * TTL_MS / 1000)
            cpu = max((cpu_seconds(node.prom_pid()) - c) for node, c in zip(self.nodes, cpu0)) / (time.time() - w0)
            self.refuse_cpu.append(cpu)
            self.quorum_loss.append((t0, time.time()))
            for node in self.nodes:
                node.start_etcd()
            expect_takeover = False
        elif kind == "kill-etcd-member":
            self.nodes[rng.randrange(3)].kill_etcd()
            expect_takeover = False
        elif kind == "kill-etcd-leader":
            leader = self.etcd_leader()
            if leader is not None:
                self.nodes[leader].kill_etcd()
            expect_takeover = False
        elif kind == "quorum-loss":
            for k in rng.sample(range(3), 2):
                self.nodes[k].kill_etcd(signal.SIGTERM)
            time.sleep(3 * TTL_MS / 1000)
            self.quorum_loss.append((t0, time.time()))
            for node in self.nodes:
                if node.etcd.poll() is not None:
                    node.start_etcd()
            expect_takeover = False
        elif kind == "restart-prom":
            n.stop_prom()
            n.start_prom()
        # ---- fast mode faults ----
        elif kind in ("peer-out-cut", "peer-in-cut"):
            # One way: the active's heartbeats (or the answers to them) are lost; it loses its
            # majority, stops, and the passives take over by withdrawal.
            ns = self.net.ns[active]
            if kind == "peer-out-cut":
                peer_filter(ns, "output", "udp dport 7947 drop")
            else:
                peer_filter(ns, "input", "udp dport 7947 drop")
            time.sleep(2 * TTL_MS / 1000)
            peer_filter_clear(ns)
        elif kind == "peer-loss":
            ns = self.net.ns[active]
            peer_filter(ns, "input", "udp dport 7947 numgen random mod 100 < 30 drop")
            time.sleep(2 * TTL_MS / 1000)
            peer_filter_clear(ns)
            expect_takeover = False  # may or may not happen: no bound to check
        elif kind.startswith("freeze-"):
            ms = int(kind[len("freeze-"):-2])
            n.signal_prom(signal.SIGSTOP)
            time.sleep(ms / 1000)
            n.signal_prom(signal.SIGCONT)
            self.freeze_windows.append((t0, time.time() + 2.0))
            expect_takeover = False
        if expect_takeover:
            # After a graceful restart, or a freeze during which etcd's leader changes kept
            # resetting the lease, the same replica may win again: any new start counts.
            others = (lambda: [i for i in self.actives() if i != active]) if kind not in ("restart-prom", "freeze") else (
                lambda: [e for e in history_check.parse(self.history) if e[1] == "start" and e[0] >= t0])
            try:
                wait_for(lambda: len(others()) > 0, 3 * TTL_MS / 1000 + 5, "a takeover")
                starts = [e[0] for e in history_check.parse(self.history) if e[1] == "start" and e[0] >= t0]
                if starts:
                    self.latency[kind].append(starts[0] - t0)
            except AssertionError:
                log(f"{kind}: no takeover within the bound")
                raise
        else:
            time.sleep(TTL_MS / 1000 + 1)
        self.count[kind] += 1
        for i in range(3):
            self.net.heal(i)
        if kind == "freeze":
            # the frozen replica's overlap ends when its prom has demoted it
            time.sleep(1.0)

    def active_fraction(self, start, end):
        ivs = history_check.intervals(history_check.parse(self.history), end_time=end)
        covered = []
        for _, _, s, e in ivs:
            s, e = max(s, start), min(e if e is not None else end, end)
            if e > s:
                covered.append((s, e))
        for qs, qe in self.quorum_loss:
            covered.append((qs, qe + 3 * TTL_MS / 1000))  # excluded: nobody can be elected then
        covered.sort()
        total, cur_s, cur_e = 0.0, None, None
        for s, e in covered:
            if cur_e is None or s > cur_e:
                if cur_e is not None:
                    total += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e is not None:
            total += cur_e - cur_s
        return total / (end - start)

    def run(self):
        seed = self.a.seed if self.a.seed is not None else random.randrange(1 << 30)
        log(f"seed {seed} (rerun with --seed {seed}); work directory {self.dir}")
        rng = random.Random(seed)
        for n in self.nodes:
            n.start_etcd()
        wait_for(lambda: self.etcd_leader() is not None, 30, "the etcd cluster")
        for n in self.nodes:
            n.start_prom()
        self.one_active(15)
        start = time.time()
        pool = self.a.kinds.split(",") if self.a.kinds else self.kinds
        kinds = [pool[k % len(pool)] for k in range(self.a.faults)]
        rng.shuffle(kinds)
        for k, kind in enumerate(kinds):
            log(f"fault {k + 1}/{len(kinds)}: {kind}")
            self.fault(kind, rng)
        self.settle()
        end = time.time()
        events = history_check.parse(self.history)
        problems, overlaps = history_check.check(events)
        freeze_overlaps, other = [], []
        for o in overlaps:
            begin = max(o[1][2], o[2][2])
            (freeze_overlaps if any(fs <= begin <= fe + 2 * TTL_MS / 1000 for fs, fe in self.freeze_windows) else other).append(o)
        token_problems = [p for p in problems if p.startswith("token")]
        fraction = self.active_fraction(start, end)
        lines = [f"seed {seed}, {sum(self.count.values())} faults over {end - start:.0f} s, TTL {TTL_MS} ms, margin {MARGIN_MS} ms"
                 + (", fast mode (heartbeat 25 ms, support 200 ms)" if self.a.fast else ""),
                 "",
                 "| fault | count | failover median ms | max ms |", "|---|---|---|---|"]
        for kind in self.kinds:
            xs = self.latency[kind]
            lines.append(f"| {kind} | {self.count[kind]} | {statistics.median(xs) * 1000:.0f} | {max(xs) * 1000:.0f} |" if xs
                         else f"| {kind} | {self.count[kind]} | - | - |")
        lines += ["",
                  f"overlapping active intervals outside freeze: {len(other)}",
                  f"freeze overlaps (a frozen active resumed after a takeover): {len(freeze_overlaps)}, max "
                  f"{max((o[0] for o in freeze_overlaps), default=0):.3f} s",
                  f"token problems (shared or backwards): {len(token_problems)}",
                  f"time with an active replica, outside quorum loss: {100 * fraction:.1f} %"]
        if self.refuse_cpu:
            lines.append(f"prom CPU while every endpoint refused (busiest daemon): max {100 * max(self.refuse_cpu):.2f} % of a core")
        summary = "\n".join(lines)
        print(summary)
        if self.a.summary:
            with open(self.a.summary, "w") as f:
                f.write(summary + "\n")
        bad = other or token_problems
        for o in other:
            print("VIOLATION overlap:", o)
        for p in token_problems:
            print("VIOLATION:", p)
        return 1 if bad else 0

    def cleanup(self):
        for n in self.nodes:
            try:
                n.stop_prom()
            except Exception:
                pass
            n.kill_etcd()
        self.net.destroy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prom", required=True)
    ap.add_argument("--faults", type=int, default=18)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--summary")
    ap.add_argument("--kinds", help="comma-separated fault kinds to draw from (default: all)")
    ap.add_argument("--fast", action="store_true", help="prom in fast mode, plus the peer-network faults")
    a = ap.parse_args()
    if a.kinds:
        unknown = set(a.kinds.split(",")) - set(KINDS)
        if unknown:
            sys.exit(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        sys.exit("the fault suite needs root (network namespaces); CI runs it as root")
    s = Suite(a)
    try:
        rc = s.run()
    finally:
        s.cleanup()
    sys.exit(rc)


if __name__ == "__main__":
    main()

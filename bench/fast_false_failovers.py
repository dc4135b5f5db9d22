#!/usr/bin/env python3
"""False failovers of prom's fast mode on a lossy peer network: three network-namespace nodes
(etcd member, prom in fast mode, toy service each), random loss of the peer datagrams (UDP
port 7947) in every node's input with nftables, nothing else happening, for --minutes. Every
`start` in the history after the first is a failover no crash asked for. Delay and jitter are
not injected (this kernel has no netem; they would need a relay between the peers).

    bench/fast_false_failovers.py --prom BUILD/prom [--minutes 10] [--loss 1] [--tuned]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "faults"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "tools"))
import history_check  # noqa: E402
from harness import log  # noqa: E402
from keepalived import Prom  # noqa: E402
from nemesis import Net  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prom", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--loss", type=int, default=1, help="percent of peer datagrams dropped at each receiver")
    ap.add_argument("--tuned", action="store_true", help="25/200 ms and tuned etcd (else the defaults 50/400 ms)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, nftables)")
    root = tempfile.mkdtemp(prefix="prom-fast-loss-")
    tag = str(os.getpid() % 100000)
    net = Net(tag, f"10.{190 + int(a.tuned)}.{os.getpid() % 250}")
    try:
        p = Prom(root, net, a.tuned, a.prom, fast=True)
        for ns in net.ns:
            rules = (f"add table inet promloss\n"
                     f"add chain inet promloss in {{ type filter hook input priority 0; }}\n"
                     f"add rule inet promloss in udp dport 7947 numgen random mod 100 < {a.loss} counter drop\n")
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)
        time.sleep(3)
        for i in range(3):
            p.start(i)
        first = p.one_active(20)
        log(f"{'tuned 25/200 ms' if a.tuned else 'defaults 50/400 ms'}, {a.loss} % peer loss: {first} active; "
            f"watching for {a.minutes} min")
        time.sleep(a.minutes * 60)
        events = history_check.parse(p.history)
        starts = [e for e in events if e[1] == "start"]
        problems, overlaps = history_check.check(events)
        dropped = 0
        for ns in net.ns:
            out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "promloss"], capture_output=True,
                                 text=True).stdout
            dropped += int(out.split("counter packets ")[1].split()[0]) if "counter packets " in out else 0
        p.stop_all()
        print(f"fast mode {'tuned (heartbeat 25 ms, support 200 ms)' if a.tuned else 'defaults (heartbeat 50 ms, support 400 ms)'}, "
              f"{a.loss} % random loss of peer datagrams at every node, {a.minutes} min: "
              f"{len(starts) - 1} false failover(s), {len(overlaps)} overlap(s), {len(problems)} history violation(s); {dropped} datagrams dropped")
    finally:
        net.destroy()


if __name__ == "__main__":
    main()

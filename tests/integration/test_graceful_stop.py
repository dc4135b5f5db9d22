"""Graceful stop: SIGTERM to the active runs ensure-passive, deletes the leader key and revokes
the lease; a passive takes over at once (watch-driven), long before the TTL."""
import time

from harness import Test, log

with Test("graceful-stop") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd, timeout_ms=5000, margin_ms=1250)
    c.start()
    for round_ in range(3):
        old = c.wait_one_active(10.0)
        time.sleep(0.5)
        c.stop(old)
        assert c.procs[old].returncode == 0, c.procs[old].returncode
        new = c.wait_one_active(2.0, exclude=(old,))
        ev = c.events()
        stop = [e[0] for e in ev if e[1] == "stop" and e[2] == old][-1]
        start = [e[0] for e in ev if e[1] == "start" and e[2] == new][-1]
        log(f"round {round_}: {old} stopped; {new} started {1000 * (start - stop):.1f} ms after its ensure-passive")
        assert start - stop < 1.0
        c.start(old)
    c.check_history()

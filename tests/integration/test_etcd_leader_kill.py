"""Three etcd members; killing the etcd leader (twice) causes no failover of prom: the daemons
move to the other endpoints and keep their lease."""
import time

from harness import Test, log, wait_for

with Test("etcd-leader-kill") as t:
    etcd = t.etcd(3)
    c = t.cluster(etcd, timeout_ms=5000, margin_ms=1250, monitor_ms=1000)
    c.start()
    active = c.wait_one_active(10.0)
    time.sleep(2.0)
    before = open(c.history).read()
    for round_ in range(2):
        leader = wait_for(lambda: etcd.leader() is not None, 15, "an etcd leader") and etcd.leader()
        log(f"round {round_}: killing etcd leader m{leader}")
        etcd.kill(leader)
        time.sleep(8.0)
        assert c.actives() == [active], c.actives()
        etcd.start(leader)
        wait_for(etcd.healthy, 15, "etcd healthy again")
        time.sleep(2.0)
    assert open(c.history).read() == before, "a role changed:\n" + open(c.history).read()
    for i in c.ids:
        assert "role active -> demoting" not in c.log(i)
    log("no role change across two etcd leader kills")
    c.check_history()

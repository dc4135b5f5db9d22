"""prom crash: kill -9 the active's prom and start it again at once. The restarted prom finds
its lease (persisted in RUNTIME_DIRECTORY) and its leader key alive and resumes as active: no
role change anywhere, and the replica is never stopped."""
import time

from harness import Test, log

with Test("prom-crash") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd)
    c.start()
    active = c.wait_one_active(4.0)
    time.sleep(1.0)
    before = open(c.history).read()
    token = etcd.get("/prom/itest/leader")["create_revision"]
    for _ in range(3):
        c.kill(active)
        c.start(active)
        time.sleep(3.0)  # longer than the TTL: a failover would have happened by now
        assert c.actives() == [active], c.actives()
    assert open(c.history).read() == before, "the history changed:\n" + open(c.history).read()
    assert etcd.get("/prom/itest/leader")["create_revision"] == token
    assert "resumed: this replica still holds the leader key" in c.log(active), c.log(active)
    log(f"replica {active} resumed 3 times with token {token}; no failover, never stopped")
    c.check_history()

"""Node crash: kill -9 the active's prom and its replica; another replica is active within
TTL + 1 s, with a greater fencing token, and never two at once."""
import time

from harness import Test, log

TTL = 2.0
with Test("node-crash") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd)
    c.start()
    for round_ in range(3):
        old = c.wait_one_active(2 * TTL)
        old_token = etcd.get("/prom/itest/leader")["create_revision"]
        time.sleep(0.7)
        t0 = time.monotonic()
        c.crash_node(old)
        new = c.wait_one_active(TTL + 1.0 + 0.5, exclude=(old,))
        took = time.monotonic() - t0
        log(f"round {round_}: {old} crashed, {new} active after {took:.3f} s")
        assert took <= TTL + 1.0, f"takeover took {took:.3f} s > TTL + 1 s"
        assert etcd.get("/prom/itest/leader")["create_revision"] > old_token
        c.start(old)  # the node comes back and rejoins as passive
        time.sleep(1.0)
        assert c.state(old) == "passive"
    c.check_history()

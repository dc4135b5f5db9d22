"""Clean start: exactly one active within 2 x TTL, the others passive; on one etcd member
and on three."""
import time

from harness import Test, log

for members in (1, 3):
    with Test(f"clean-start-{members}") as t:
        etcd = t.etcd(members)
        c = t.cluster(etcd)
        t0 = time.monotonic()
        c.start()
        active = c.wait_one_active(2 * 2.0)
        log(f"{members} member(s): replica {active} active after {time.monotonic() - t0:.3f} s")
        time.sleep(2.0)  # stays that way
        assert c.actives() == [active], c.actives()
        key = etcd.get("/prom/itest/leader")
        assert key and key["value"] == active, key
        for i in c.ids:
            if i != active:
                assert "role starting -> passive" in c.log(i), c.log(i)
        assert f"role promoting -> active (token {key['create_revision']}, leader {active})" in c.log(active)
        c.check_history()

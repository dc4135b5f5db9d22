"""etcd stopped entirely: the active demotes at its local deadline, the passives stay passive;
once etcd is back there is exactly one active again."""
import time

from harness import Test, log

TTL, MARGIN = 2.0, 0.5
with Test("etcd-down") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd, timeout_ms=int(TTL * 1000), margin_ms=int(MARGIN * 1000))
    c.start()
    old = c.wait_one_active(2 * TTL)
    time.sleep(1.0)
    t0 = time.time()
    etcd.kill(0)
    from harness import wait_for
    wait_for(lambda: not c.actives(), TTL + 1.0, "the active to demote")
    stop = [e[0] for e in c.events() if e[1] == "stop"][-1]
    log(f"etcd killed; active {old} demoted after {stop - t0:.3f} s")
    assert stop - t0 <= TTL - MARGIN + 0.2
    time.sleep(3 * TTL)
    assert not c.actives(), f"a passive became active without a store: {c.actives()}"
    t1 = time.monotonic()
    etcd.start(0)
    new = c.wait_one_active(3 * TTL + 5)
    log(f"etcd back; replica {new} active {time.monotonic() - t1:.3f} s after etcd restarted")
    time.sleep(TTL)
    assert c.actives() == [new]
    c.check_history()

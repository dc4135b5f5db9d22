"""Store unreachable from the active only (its TCP proxy to etcd black-holed): the active
demotes at its local deadline, strictly before the server-side lease expiry lets a passive
take over; no overlap in real time. After the partition heals it rejoins as passive."""
import time

from harness import Test, log

TTL, MARGIN = 2.0, 0.5
with Test("partition") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd, proxies=True, timeout_ms=int(TTL * 1000), margin_ms=int(MARGIN * 1000))
    c.start()
    for round_ in range(2):
        old = c.wait_one_active(2 * TTL)
        time.sleep(1.0)
        t0 = time.time()
        for p in c.proxies[old]:
            p.cut()
        new = c.wait_one_active(TTL + 2.0, exclude=(old,))
        ev = c.events()
        stop = [e[0] for e in ev if e[1] == "stop" and e[2] == old][-1]
        start = [e[0] for e in ev if e[1] == "start" and e[2] == new][-1]
        log(f"round {round_}: cut {old} at 0; it demoted at {stop - t0:.3f} s; {new} started at {start - t0:.3f} s "
            f"(gap {start - stop:.3f} s)")
        assert stop < start, "the new active started before the old one stopped"
        assert stop - t0 <= TTL - MARGIN + 0.2, f"demotion at {stop - t0:.3f} s is later than the local deadline"
        for p in c.proxies[old]:
            p.heal()
        time.sleep(TTL + 1.0)
        assert c.actives() == [new], c.actives()
    assert "lease deadline passed" in c.log(old)
    c.check_history()

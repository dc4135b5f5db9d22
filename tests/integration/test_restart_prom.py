"""restart-prom: the active runs a peer's restart-prom once that peer's member key (bound to
its lease) has been missing for longer than the timeout; rate-limited, and never for a live
peer."""
import os
import time

from harness import Test, log, wait_for

TTL = 2.0
with Test("restart-prom") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd, timeout_ms=int(TTL * 1000), margin_ms=500, restart_prom=True)
    restarts = os.path.join(c.dir, "restarts")
    c.start()
    active = c.wait_one_active(2 * TTL)
    time.sleep(2 * TTL)
    assert not os.path.exists(restarts), open(restarts).read()
    dead = next(i for i in c.ids if i != active)
    t0 = time.time()
    c.kill(dead)

    def lines():
        try:
            return [line.split() for line in open(restarts)]
        except FileNotFoundError:
            return []

    wait_for(lambda: lines(), 4 * TTL + 3, "restart-prom to run")
    first = lines()[0]
    log(f"prom {dead} killed; the active ran restart-prom for {first[1]} after {float(first[2]) - t0:.3f} s")
    assert first[1] == dead
    # The member key expires TTL + 0.5 s after the last keepalive, then must stay missing for TTL.
    assert float(first[2]) - t0 >= TTL, "restarted before the peer could have been missing for the timeout"
    time.sleep(3 * TTL)
    assert len(lines()) == 1, f"not rate-limited: {lines()}"
    c.start(dead)  # what the restart-prom command would have done
    time.sleep(2 * TTL)
    assert len(lines()) == 1
    assert c.actives() == [active]
    c.check_history()

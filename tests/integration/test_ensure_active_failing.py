"""ensure-active failing: after retry-attempts failures in a row the active runs
ensure-passive and resigns, and a healthy replica takes over."""
import os
import time

from harness import Test, log

with Test("ensure-active-failing") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd, retry_attempts=3, retry_backoff_ms=200)
    c.start()
    bad = c.wait_one_active(4.0)
    token = etcd.get("/prom/itest/leader")["create_revision"]
    t0 = time.monotonic()
    open(os.path.join(c.dir, f"fail.{bad}"), "w").close()
    new = c.wait_one_active(5.0, exclude=(bad,))
    log(f"replica {bad} failing; {new} took over after {time.monotonic() - t0:.3f} s")
    assert etcd.get("/prom/itest/leader")["create_revision"] > token
    assert "ensure-active failed 3 times: resigning" in c.log(bad), c.log(bad)
    assert c.log(bad).count("ensure-active failed (") >= 3
    time.sleep(3.0)
    assert c.actives() == [new]
    c.check_history()

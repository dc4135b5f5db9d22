"""A second `prom --id 0` on the node (another config, the same runtime directory) is refused
with a message naming the running one, and touches nothing of it: the lease file, the member
key and the leader key stay as they were, and the running replica keeps its role."""
import os
import subprocess
import time

from harness import Test, log

with Test("duplicate-id") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd)
    c.start()
    active = c.wait_one_active(4.0)
    time.sleep(0.5)
    run = os.path.join(c.dir, f"run{active}")
    lease_before = open(os.path.join(run, "lease")).read().split()[0]  # the deadline moves on
    leader_before = etcd.get("/prom/itest/leader")
    other = os.path.join(c.dir, "other.conf")
    with open(c.conf(active)) as src, open(other, "w") as dst:
        dst.write(src.read().replace('app-name = "itest"', 'app-name = "itest"\n# another file'))
    second = subprocess.run([c.prom, "-i", active, "-c", other, "--bus", "none"], capture_output=True, text=True, timeout=10,
                            env=dict(os.environ, RUNTIME_DIRECTORY=run))
    log(f"second prom: exit {second.returncode}: {second.stderr.strip()}")
    assert second.returncode != 0, second
    assert f"already run by prom (pid {c.procs[active].pid}" in second.stderr, second.stderr
    time.sleep(2.5)  # longer than the TTL
    assert open(os.path.join(run, "lease")).read().split()[0] == lease_before
    assert etcd.get("/prom/itest/leader") == leader_before
    assert etcd.get(f"/prom/itest/members/{active}") is not None
    assert c.actives() == [active]
    c.check_history()

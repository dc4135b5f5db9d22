"""Every endpoint refuses connections (issue 9 item 2): each request tries each endpoint once
and reports the failure (before the fix the rotation never ended: ~100,000 connects in 3 s,
65 % of a core, and no failure ever reached the core). Bounded CPU and a reported failure."""
import os
import time

from harness import Test, free_port, log, wait_for

TTL = 3.0
HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime + stime


with Test("all-endpoints-refuse") as t:
    etcd = t.etcd(1)  # only for the cluster's shape; the replica is pointed at closed ports
    c = t.cluster(etcd, replicas=1, timeout_ms=int(TTL * 1000), margin_ms=750)
    closed = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    with open(c.conf("0")) as f:
        text = f.read()
    with open(c.conf("0"), "w") as f:
        f.write(text.replace(f'endpoints = ["{etcd.endpoints[0]}"]', "endpoints = " + str(closed).replace("'", '"')))
    t_start = time.time()
    c.start()
    pid = c.procs["0"].pid
    wait_for(lambda: "failed on every endpoint" in c.log("0"), TTL, "a store failure reported within one TTL")
    log(f"failure reported {time.time() - t_start:.2f} s after start")
    time.sleep(1.0)
    cpu0, w0 = cpu_seconds(pid), time.time()
    time.sleep(10.0)
    cpu = (cpu_seconds(pid) - cpu0) / (time.time() - w0)
    assert c.procs["0"].poll() is None, "prom exited"
    failures = c.log("0").count("failed on every endpoint")
    log(f"all endpoints refusing for 10 s: prom used {100 * cpu:.2f} % of a core; {failures} failures reported")
    assert cpu < 0.05, f"prom used {100 * cpu:.1f} % of a core while every endpoint refused"
    assert not c.actives(), c.actives()

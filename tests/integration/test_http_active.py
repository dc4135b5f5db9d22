"""/active, /health and /metrics of real daemons on real etcd (3 replicas): polled every 50 ms
through a crash failover and a graceful handover, /active never answers 200 on two replicas,
answers it on exactly one once the cluster settled, and only on the replica whose toy service is
active; /metrics parses with prometheus_client's strict OpenMetrics parser; /health turns 503
when etcd is gone; a port already taken is a warning, not a crash."""
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

from harness import Test, free_port, log, wait_for

try:
    import prometheus_client  # noqa: F401
except ImportError:
    sys.path.append("/usr/lib/python3/dist-packages")
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics  # noqa: E402


def status(port, path="/active"):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=0.5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None  # not listening (prom down)


with Test("http-active") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd)
    ports = {i: free_port() for i in c.ids}
    for i in c.ids:
        with open(c.conf(i), "a") as f:
            f.write(f'[http]\nlisten = "127.0.0.1:{ports[i]}"\n')
    c.start()
    first = c.wait_one_active(5)
    wait_for(lambda: all(status(ports[i]) is not None for i in c.ids), 5, "every replica listening")

    samples = []  # (time, {replica: status})
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            samples.append((time.monotonic(), {i: status(ports[i]) for i in c.ids}))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        wait_for(lambda: samples and [i for i, s in samples[-1][1].items() if s == 200] == [first], 5, "/active 200 on the active")
        # Crash failover: the active's prom and its actions die (SIGKILL).
        log(f"killing the active {first}")
        c.crash_node(first)
        second = c.wait_one_active(10, exclude=(first,))
        wait_for(lambda: [i for i, s in samples[-1][1].items() if s == 200] == [second], 5, "/active 200 on the new active")
        # Graceful handover: SIGTERM to the new active.
        log(f"stopping the active {second}")
        c.stop(second)
        third = c.wait_one_active(10, exclude=(first, second))
        wait_for(lambda: [i for i, s in samples[-1][1].items() if s == 200] == [third], 5, "/active 200 on the last active")
        time.sleep(0.5)
    finally:
        stop.set()
        poller.join()
    two = [s for s in samples if sum(v == 200 for v in s[1].values()) > 1]
    assert not two, f"/active answered 200 on two replicas: {two[:3]}"
    none = [s for s in samples if not any(v == 200 for v in s[1].values())]
    log(f"{len(samples)} polls; {len(none)} without an active (failover windows), never two")
    c.check_history()

    # /metrics of the live active, parsed strictly.
    req = urllib.request.Request(f"http://127.0.0.1:{ports[third]}/metrics", headers={"Accept": "application/openmetrics-text"})
    with urllib.request.urlopen(req, timeout=2) as r:
        fams = {f.name: f for f in parse_openmetrics(r.read().decode())}
    value = {s.name: s.value for f in fams.values() for s in f.samples if not s.labels}
    assert value["prom_active"] == 1 and value["prom_store_healthy"] == 1, value
    assert value["prom_fencing_token"] > 0 and value["prom_role_transitions_total"] >= 2, value
    assert value["prom_store_request_duration_seconds_count"] > 0, value
    assert 0 < value["prom_lease_remaining_seconds"] <= 2, value
    runs = {s.labels["action"]: s.value for s in fams["prom_action_runs"].samples}
    assert runs.get("ensure-active", 0) >= 1, runs

    # A replica whose port is taken runs on with a warning.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        with open(c.conf(second), "a") as f:
            f.write(f'[replica.{second}]\nhttp-listen = "127.0.0.1:{blocker.getsockname()[1]}"\n')
        c.start(second)
        wait_for(lambda: "http: cannot listen on" in c.log(second), 5, "the warning")
        assert "Address already in use" in c.log(second), c.log(second)
        wait_for(lambda: "role starting -> passive" in c.log(second).split("http: cannot listen")[-1], 5, "a passive after all")
        assert c.procs[second].poll() is None

    # etcd gone: /health says 503 on the live replicas.
    etcd.kill(0)
    wait_for(lambda: status(ports[third], "/health") == 503, 10, "/health 503 without etcd")
    t.ok = True

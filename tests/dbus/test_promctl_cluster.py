"""promctl -c CONFIG, the cluster seen from the store: status lists every configured replica of
the app (a down one included) from a node that hosts none of them (no local daemon on its bus),
--json for scripts, exit 0 with one active and 4 with the store gone; switchover to a down
replica is refused with a non-zero exit and no role change; switchover to a live replica
returns once that replica is active, naming both and the new token."""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Test, log, wait_for  # noqa: E402

with Test("promctl-cluster") as t:
    promctl = t.promctl
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = t.session_bus()
    # An empty bus: the "other node" from which the operator looks.
    elsewhere = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=t.session_bus())

    etcd = t.etcd(1)
    c = t.cluster(etcd, replicas=3, bus="session")
    c.start("0")
    c.start("1")  # replica 2 is configured but down
    active = c.wait_one_active(10)
    conf = c.conf(active)

    def ctl(*args, env=None):
        r = subprocess.run([promctl, "--bus", "session", "-c", conf, *args], capture_output=True, text=True, timeout=40,
                           env=env or os.environ)
        log(f"promctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    # The member key says "active" once ensure-active ran and the key was rewritten.
    wait_for(lambda: ctl("status", env=elsewhere).returncode == 0, 5, "the store showing one active")
    r = ctl("status", env=elsewhere)
    assert r.returncode == 0, r
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[2:-1] if line.strip()}
    assert rows[active][1] == "active" and rows["2"][1] == "down", rows
    r = ctl("status", "--json", env=elsewhere)  # DESIGN: status [--json] [--watch]
    doc = json.loads(r.stdout)
    assert doc["leader"] == active and doc["exit"] == 0, doc
    assert {x["id"]: x["role"] for x in doc["replicas"]}["2"] == "down", doc

    # --watch refreshes until interrupted (one JSON document per line with --json).
    w = subprocess.Popen([promctl, "--bus", "session", "-c", conf, "status", "--watch", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=elsewhere)
    time.sleep(2.5)
    w.send_signal(signal.SIGINT)
    out, _ = w.communicate(timeout=10)
    docs = [json.loads(line) for line in out.splitlines() if line.strip()]
    log(f"--watch: {len(docs)} refreshes in 2.5 s, exit {w.returncode}")
    assert len(docs) >= 2 and all(d["leader"] == active for d in docs) and w.returncode == 0, (out, w.returncode)

    before = open(c.history).read()
    r = ctl("switchover", "2")
    assert r.returncode != 0 and "down" in r.stderr, r
    time.sleep(1.0)
    assert c.actives() == [active] and open(c.history).read() == before, "a refused switchover changed roles"

    target = "0" if active == "1" else "1"
    r = ctl("switchover", target)
    assert r.returncode == 0 and f"{active} -> {target} (token" in r.stdout, r
    # It returned once the target held the key; its ensure-active follows within moments.
    wait_for(lambda: c.actives() == [target], 5, "the target active")
    c.check_history()

    etcd.kill(0)
    r = ctl("status", env=elsewhere)
    assert r.returncode == 4 and "unreachable" in r.stdout, r
    t.ok = True

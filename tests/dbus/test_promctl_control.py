"""promctl -c CONFIG moves the cluster through the store from a node that hosts none of its
replicas (an empty bus): switchover returns once the target ran ensure-active; resign hands the
role on; a replica paused through the store is refused as a switchover target; a request
written for an older fencing token is not obeyed by the current active; the cluster-wide pause
is kept in the store, so that after a restart of every prom no replica takes over until
`resume --cluster`, and then one does."""
import base64
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Test, log, post, wait_for  # noqa: E402

with Test("promctl-control") as t:
    promctl = t.promctl
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = t.session_bus()
    elsewhere = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=t.session_bus())

    etcd = t.etcd(1)
    c = t.cluster(etcd, replicas=3, bus="session")
    c.start()
    a = c.wait_one_active(10)
    conf = c.conf(a)

    def ctl(*args):
        r = subprocess.run([promctl, "--bus", "session", "-c", conf, *args], capture_output=True, text=True, timeout=60,
                           env=elsewhere)
        log(f"promctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def status():
        return json.loads(ctl("status", "--json").stdout)

    def roles(doc):
        return {x["id"]: x for x in doc["replicas"]}

    # The member key says "active" once ensure-active ran and the key was rewritten.
    wait_for(lambda: status()["exit"] == 0, 5, "the store showing one active")

    # Switchover from elsewhere: it returns once the target is active (its ensure-active ran).
    b = next(i for i in c.ids if i != a)
    r = ctl("switchover", b)
    assert r.returncode == 0 and f"{a} -> {b} (token" in r.stdout, r
    assert c.actives() == [b], f"promctl returned before {b}'s ensure-active: actives {c.actives()}"

    # Resign from elsewhere: another replica takes over, and promctl says which.
    r = ctl("resign")
    assert r.returncode == 0 and r.stdout.startswith(f"{b} -> "), r
    a = r.stdout.split()[2]
    assert a != b and c.actives() == [a], (r.stdout, c.actives())

    # A replica paused through the store is shown paused and refused as a target.
    p = next(i for i in c.ids if i != a)
    r = ctl("pause", p)
    assert r.returncode == 0, r
    assert roles(status())[p]["paused"] is True
    before = open(c.history).read()
    r = ctl("switchover", p)
    assert r.returncode == 2 and "paused" in r.stderr, r
    assert ctl("resume", p).returncode == 0
    wait_for(lambda: roles(status())[p]["paused"] is False, 5, f"replica {p} resumed")

    # Ctrl-C withdraws a request not carried out yet: the target, frozen while promctl waits,
    # does not pause when it thaws (it sees the request and its withdrawal together).
    c.signal(p, signal.SIGSTOP)
    w = subprocess.Popen([promctl, "--bus", "session", "-c", conf, "pause", p], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=elsewhere)
    time.sleep(0.6)
    w.send_signal(signal.SIGINT)
    out, err = w.communicate(timeout=10)
    log(f"promctl pause {p} interrupted: exit {w.returncode}\n{out}{err}")
    c.signal(p, signal.SIGCONT)
    assert w.returncode == 130 and "withdrawn" in err, (w.returncode, err)
    time.sleep(1.5)
    assert roles(status())[p]["paused"] is False, f"replica {p} carried out a withdrawn request"

    # The request's lease lives while promctl waits (renewed), not just its first 5 s: a target
    # frozen for 6.5 s still finds the request when it thaws, and promctl reports it done.
    c.signal(p, signal.SIGSTOP)
    w = subprocess.Popen([promctl, "--bus", "session", "--timeout", "15000", "-c", conf, "pause", p],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=elsewhere)
    time.sleep(6.5)
    c.signal(p, signal.SIGCONT)
    out, err = w.communicate(timeout=30)
    log(f"promctl pause {p} across a 6.5 s freeze: exit {w.returncode}\n{out}{err}")
    assert w.returncode == 0 and "done" in out, (w.returncode, out, err)
    assert ctl("resume", p).returncode == 0

    # A refusal through the store exits as over D-Bus: an operator's config naming a replica
    # the daemons do not know (a member key for it exists) gets InvalidArgs from the active, 2.
    lease = int(post(etcd.endpoints[0] + "/v3/lease/grant", {"TTL": "60"})["ID"])
    member = json.dumps({"id": "9", "role": "passive", "pid": 1})
    post(etcd.endpoints[0] + "/v3/kv/put", {"key": base64.b64encode(b"/prom/itest/members/9").decode(),
                                            "value": base64.b64encode(member.encode()).decode(), "lease": str(lease)})
    conf9 = os.path.join(t.dir, "prom9.conf")
    with open(conf9, "w") as f:
        f.write(open(conf).read().replace('replicas = ["0", "1", "2"]', 'replicas = ["0", "1", "2", "9"]', 1))
    r = subprocess.run([promctl, "--bus", "session", "-c", conf9, "switchover", "9"], capture_output=True, text=True,
                       timeout=60, env=elsewhere)
    log(f"promctl switchover 9 (unknown to the daemons): exit {r.returncode}\n{r.stdout}{r.stderr}")
    assert r.returncode == 2 and "InvalidArgs" in r.stderr, r
    post(etcd.endpoints[0] + "/v3/lease/revoke", {"ID": str(lease)})
    before = open(c.history).read()

    # A request for an older token (the active changed since it was written) is not obeyed.
    old = status()["token"] - 1
    key = f"/prom/itest/control/requests/stale{old}"
    value = json.dumps({"op": "resign", "token": old, "by": "test"})
    post(etcd.endpoints[0] + "/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                            "value": base64.b64encode(value.encode()).decode()}, 2)
    time.sleep(2.0)
    assert c.actives() == [a] and open(c.history).read() == before, "a request for another token was obeyed"

    # A switchover without a target needs a passive that may take over: with every passive
    # paused it is refused before anything is written (else the active would hand over to
    # nobody and promctl would time out).
    passives = [i for i in c.ids if i != a]
    for i in passives:
        assert ctl("pause", i).returncode == 0
    r = ctl("switchover")
    assert r.returncode == 2 and "no live, unpaused passive" in r.stderr, r
    assert c.actives() == [a]
    for i in passives:
        assert ctl("resume", i).returncode == 0

    # The cluster pause: kept in the store, so it outlives a restart of every prom.
    r = ctl("pause", "--cluster")
    assert r.returncode == 0 and "cluster paused" in r.stdout, r
    doc = status()
    assert doc["cluster_paused"] is True and all(x["paused"] for x in doc["replicas"]), doc
    r = ctl("switchover")
    assert r.returncode == 2 and "paused" in r.stderr, r
    assert ctl("resign").returncode == 2
    # Over D-Bus on the active's node too: nobody would take over.
    r = subprocess.run([promctl, "--bus", "session", "resign"], capture_output=True, text=True, timeout=30)
    log(f"promctl resign (D-Bus): exit {r.returncode}\n{r.stdout}{r.stderr}")
    assert r.returncode == 2 and "org.prom.Prom1.Error.Paused" in r.stderr, r
    c.stop()  # the active hands over as it stops; paused, nobody takes over
    c.start()
    time.sleep(3 * 2.0)
    doc = status()
    log(f"after a restart of every prom, paused: actives {c.actives()}, exit {doc['exit']}")
    assert c.actives() == [] and doc["exit"] == 3 and doc["cluster_paused"] is True, (c.actives(), doc)
    wait_for(lambda: all(x.get("paused") for x in roles(status()).values()), 5, "every restarted replica paused")
    r = ctl("resume", "--cluster")
    assert r.returncode == 0 and "resumed" in r.stdout, r
    c.wait_one_active(10)
    wait_for(lambda: status()["exit"] == 0, 5, "the store showing one active")
    c.check_history()
    t.ok = True

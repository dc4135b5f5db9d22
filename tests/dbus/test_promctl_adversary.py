"""promctl -c and the store's control keys under abuse (review of #11), with real etcd and prom:

- what anyone with write access to the app's prefix may leave there (a large value of another
  key of the app, thousands of request keys, a request larger than prom reads in one reply)
  never stops the election: a kill -9 of the active is still taken over, promctl -c status
  still reads the cluster, and prom does not log a line per retry forever;
- a prom restarted while its lease lives (kill -9, restart) rewrites its member key: promctl -c
  status shows the new pid, and the restarted replica's pause ends with resume --cluster;
- a request whose key prom could not delete (an id that does not survive sanitizing) is not
  carried out (it was, again at every restart of the replica it named);
- a switchover back to the replica that just handed over takes no TTL (it took one);
- a write that etcd refuses (a role that may only read) is exit 5, access denied (it was 4).

Each part failed on the code before its fix."""
import base64
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Etcd, Test, log, post, wait_for  # noqa: E402


def b64(s):
    return base64.b64encode(s.encode()).decode()


with Test("promctl-adversary") as t:
    promctl = t.promctl
    etcd = t.etcd(1)
    c = t.cluster(etcd, replicas=3)
    c.start()
    a = c.wait_one_active(10)
    conf = c.conf(a)

    def ctl(*args):
        r = subprocess.run([promctl, "-c", conf, *args], capture_output=True, text=True, timeout=60)
        log(f"promctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def status():
        r = ctl("status", "--json")
        doc = json.loads(r.stdout)
        assert doc["exit"] == r.returncode, (doc, r.returncode)
        return doc

    def member(doc, i):
        return next(x for x in doc["replicas"] if x["id"] == i)

    def put(key, value):
        post(etcd.endpoints[0] + "/v3/kv/put", {"key": b64(key), "value": b64(value)}, 10)

    wait_for(lambda: status()["exit"] == 0, 5, "the store showing one active")

    # --- A restarted prom rewrites its member key (kill -9 of the active's prom alone: the
    # service stays active, the restarted prom resumes its lease and its role).
    ctl("pause", "--cluster")
    before = member(status(), a)["pid"]
    c.kill(a)
    c.start(a)
    pid = c.procs[a].pid
    assert before != pid
    wait_for(lambda: member(status(), a)["pid"] == pid, 5, f"the member key of {a} showing the restarted prom's pid")
    doc = status()
    assert doc["leader"] == a and c.actives() == [a], (doc, c.actives())  # resumed, nobody took over
    r = ctl("resume", "--cluster")
    assert r.returncode == 0, r
    wait_for(lambda: not any(x["paused"] for x in status()["replicas"]), 5, "every replica unpaused after resume --cluster")

    # Switching back to the replica that just handed over is as fast as the first switchover
    # (it waited out its resign cooldown, and the others gave it one TTL: ~2 s of no active).
    b = next(i for i in c.ids if i != a)
    assert ctl("switchover", b).returncode == 0
    wait_for(lambda: status()["exit"] == 0, 5, f"the store showing {b} active")
    r = ctl("switchover", a)
    assert r.returncode == 0, r
    ms = float(r.stdout.split(" in ")[1].split()[0])
    assert ms < 1000, f"switchover back to {a} took {ms} ms (TTL 2000 ms)"
    wait_for(lambda: status()["exit"] == 0, 5, f"the store showing {a} active")

    # A request prom could not delete (its key's id does not survive sanitizing: 300 bytes)
    # is not carried out: it would be again by every restart of the replica it names.
    p = next(i for i in c.ids if i != a)
    put("/prom/itest/control/requests/" + "L" * 300, json.dumps({"op": "pause", "target": p, "by": "test"}))
    time.sleep(1.5)
    assert member(status(), p)["paused"] is False, f"replica {p} obeyed a request it cannot delete"

    # --- Keys other than the election's in the app's prefix: another key of the app (sorted
    # between control/ and leader) large enough to fill prom's 1 MiB reply on its own, and
    # thousands of request keys on no lease (128 puts per txn: etcd's limit).
    put("/prom/itest/history/blob", "x" * 800_000)
    junk = json.dumps({"op": "pause", "target": "nobody", "by": "flood"})
    for first in range(0, 3000, 128):
        post(etcd.endpoints[0] + "/v3/kv/txn", {"success": [
            {"request_put": {"key": b64(f"/prom/itest/control/requests/flood{n:05d}"), "value": b64(junk)}}
            for n in range(first, min(first + 128, 3000))]}, 10)
    log("wrote an 800 kB key of the app and 3000 request keys")

    def taken_over(old):
        c.crash_node(old)
        t0 = time.monotonic()
        new = c.wait_one_active(15, exclude=(old,))
        log(f"{old} killed: {new} active after {time.monotonic() - t0:.1f} s")
        wait_for(lambda: status()["leader"] == new, 5, f"promctl -c status showing {new} as the leader")
        return new

    b = taken_over(a)
    c.start(a)

    # A request larger than prom reads in one reply: prom reads the leader key and the cluster
    # pause without the requests (and says so), and the election goes on.
    # Named to sort before the flood: within the first kMaxControlKeys keys prom reads.
    put("/prom/itest/control/requests/0huge", json.dumps({"op": "pause", "target": "nobody", "by": "y" * 900_000}))
    time.sleep(1.0)
    lines = {i: len(c.log(i).splitlines()) for i in c.ids}
    d = taken_over(b)
    # Bounded logging: a few lines per takeover, not one per retry (the old code wrote two
    # lines every 0.6 s per replica while it could not read the leader key).
    time.sleep(2.0)
    grown = {i: len(c.log(i).splitlines()) - lines[i] for i in c.ids if i != b}
    log(f"log lines written since the huge request: {grown}")
    assert all(n < 40 for n in grown.values()), grown
    assert d != b
    assert any("too large to read" in c.log(i) for i in c.ids), "no replica read around the huge request"

    # The cluster pause is still read with the huge request in the store.
    r = ctl("pause", "--cluster")
    assert r.returncode == 0 and "not yet shown" not in r.stdout, r
    assert status()["cluster_paused"] is True
    assert ctl("resume", "--cluster").returncode == 0

    # Without it (every read whole again), the pause is read whatever the number of other keys
    # under control/, sorted before control/pause, and of requests.
    post(etcd.endpoints[0] + "/v3/kv/deleterange", {"key": b64("/prom/itest/control/requests/0huge")}, 10)
    for first in range(0, 300, 100):
        post(etcd.endpoints[0] + "/v3/kv/txn", {"success": [
            {"request_put": {"key": b64(f"/prom/itest/control/a{n:05d}"), "value": b64("junk")}}
            for n in range(first, first + 100)]}, 10)
    r = ctl("pause", "--cluster")
    assert r.returncode == 0 and "not yet shown" not in r.stdout, r
    assert status()["cluster_paused"] is True
    c.kill(d)  # its prom alone: restarted, it reads the pause and stays active
    c.start(d)
    pid = c.procs[d].pid
    wait_for(lambda: member(status(), d)["pid"] == pid, 5, f"the restarted prom of {d} in the store")
    assert member(status(), d)["paused"] is True and status()["leader"] == d
    assert ctl("resume", "--cluster").returncode == 0

    c.check_history()

    # etcd refusing a write (a user whose role may only read the prefix) is access denied,
    # exit 5 as promctl(1) says, not 4: the store is there, and a takeover still works.
    os.makedirs(os.path.join(t.dir, "ro"))
    ro = Etcd(os.path.join(t.dir, "ro"))  # its own data directory
    ro.start()
    t.etcds.append(ro)
    ep = ro.endpoints[0]
    ro.enable_auth("viewer", "s3cret", perm="READ")
    pw = os.path.join(t.dir, "viewer.pw")
    with open(pw, "w") as f:
        f.write("s3cret\n")
    conf = os.path.join(t.dir, "viewer.conf")
    with open(conf, "w") as f:
        f.write(open(c.conf(d)).read().replace(etcd.endpoints[0], ep).replace(
            "connect-timeout-ms = 300", f'connect-timeout-ms = 300\nuserid = "viewer"\npassword-file = "{pw}"'))
    assert ctl("status").returncode == 3  # reads: nobody runs on this store
    for args in (["pause", "--cluster"], ["resume", "--cluster"]):
        r = ctl(*args)
        assert r.returncode == 5 and "permission denied" in r.stderr, r
    t.ok = True

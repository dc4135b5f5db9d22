"""Migration from PROM: prom daemons and PROM 1.0.6 replicas (tests/tools/prom_peer.py, PROM's
algorithm without Java) on one MUSIC store (the emulator, one location) and one config.json.

1. the emulator answers as MUSIC does (first ZooKeeper reference x-0000000000, a request body
   on a kept-alive connection, rows?lockref= selects nothing, Content-Type enforced);
2. takeover both ways: kill -9 of the active node (its daemon and its actions), PROM -> prom
   and prom -> PROM, within timeout + 3 s;
3. kill -9 of an active prom alone, relaunched 0.3 s later with the same id and runtime
   directory, among PROM peers: no role change, and its row never looks dead (no heartbeat of 0
   while its lock reference heads the queue);
3b. ensure-active exiting 1 (PROM's FAIL_RESTART): prom resigns to a PROM replica, PROM replicas release to prom;
4. wall-clock skew, the documented limit of mixed clusters: a PROM replica whose clock is ahead
   by more than prom-timeout deposes a healthy prom active; one whose clock is behind replaces a
   crashed prom active only after timeout + skew. A released lock reference is never written back
   by prom with isactive true;
5. the migration in the order prom.conf(5) gives: a PROM passive replaced by prom in place (same
   place in the queue, no role change), then the PROM active through a failover, then a node
   crash and restarts of the active prom in the all-prom cluster.
The history (tests/tools/history_check.py) is checked after each part; only the skew case may
overlap (it is the limit being shown)."""
import http.client
import json
import os
import signal
import subprocess
import sys
import time

from harness import Test, log, wait_for

PEER = os.path.join(os.path.dirname(__file__), "..", "tools", "prom_peer.py")
TIMEOUT, MONITOR = 2.0, 0.3
PROM_IDS, PEER_IDS = ("1",), ("0", "2")
LOCK = "prom_itest.Replicas.PROM_ADMIN"


def raw(music, method, path, body=None, ctype="application/json", conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", music.ports[0], timeout=3)
    headers = {"Accept": "application/json"}
    if ctype:
        headers["Content-Type"] = ctype
    c.request(method, "/MUSIC/rest/v2" + path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"{}")


def check_emulator(music):
    # One kept-alive connection: the keyspace POST's body must not be read as the next request.
    conn = http.client.HTTPConnection("127.0.0.1", music.ports[0], timeout=3)
    st, _ = raw(music, "POST", "/keyspaces/prom_probe", {"replicationInfo": {"class": "SimpleStrategy",
                "replication_factor": 3}, "durabilityOfWrites": "true", "consistencyInfo": {"type": "eventual"}}, conn=conn)
    assert st == 200, st
    st, body = raw(music, "POST", "/keyspaces/prom_probe/tables/Replicas", {"fields": {
        "id": "text", "isactive": "boolean", "timeoflastupdate": "varint", "lockref": "text", "PRIMARY KEY": "(id)"},
        "consistencyInfo": {"type": "eventual"}}, conn=conn)
    assert st == 200 and body["status"] == "SUCCESS", (st, body)
    for rid, ref in (("a", ""), ("b", "$x$1")):
        st, _ = raw(music, "POST", "/keyspaces/prom_probe/tables/Replicas/rows",
                    {"values": {"id": rid, "lockref": ref}, "consistencyInfo": {"type": "eventual"}})
        assert st == 200
    st, body = raw(music, "GET", "/keyspaces/prom_probe/tables/Replicas/rows?lockref=")
    assert body["result"] == {}, f"rows?lockref= selected {body['result']}"
    st, body = raw(music, "POST", "/locks/create/prom_probe.Replicas.PROM_ADMIN")
    assert body["lock"]["lock"] == "$prom_probe.Replicas.PROM_ADMIN$x-0000000000", body
    st, body = raw(music, "POST", "/keyspaces/prom_probe/tables/Replicas/rows", {"values": {"id": "c"}},
                   ctype="application/x-www-form-urlencoded")
    assert st == 415, (st, body)
    st, body = raw(music, "POST", "/keyspaces/prom_probe/tables/Replicas/rows", {"values": {"id": "c"}}, ctype=None)
    assert st == 415, (st, body)
    log("emulator: first reference x-0000000000, bodies drained, blank query values kept, Content-Type enforced")


def start_peer(c, i, offset_ms=0, passive=False):
    env = dict(os.environ, PROM_PEER_CLOCK_OFFSET_MS=str(offset_ms))
    out = open(os.path.join(c.dir, f"prom{i}.log"), "a")
    c.procs[i] = subprocess.Popen([sys.executable, PEER, "-i", i, "-c", c.conf(i)] + (["-p"] if passive else []),
                                  stdout=out, stderr=subprocess.STDOUT, env=env)


def start(c, i, **kw):
    if i in PEER_IDS:
        start_peer(c, i, **kw)
    else:
        c.start(i)


def stop(c, i):
    p = c.procs[i]
    p.send_signal(signal.SIGCONT)
    p.terminate()
    p.wait(10)


def check_rows(music):
    """prom's rows as a PROM peer could have read them at any moment: never dead while its lock
    reference heads the queue, never a released reference with isactive true."""
    released = {}
    problems = []
    for e in music.journal():
        if e["op"] == "release":
            released.setdefault(e["ref"], e["t"])
            continue
        row = e["row"]
        if row["id"] not in PROM_IDS:
            continue
        ref = row.get("lockref")
        beat = row.get("timeoflastupdate")
        if ref and e["heads"].get(LOCK) == ref and (beat is None or e["t"] * 1000 - beat > TIMEOUT * 1000):
            problems.append(f"{e['t']:.3f}: prom {row['id']} heads the queue with a row that looks dead: {row}")
        if ref and ref in released and released[ref] <= e["t"] and row.get("isactive") is True:
            problems.append(f"{e['t']:.3f}: prom {row['id']} wrote back its released reference as active: {row}")
    assert not problems, "\n".join(problems)


def crash_and_time(c, victim, limit=TIMEOUT + 6):
    t0 = time.monotonic()
    c.crash_node(victim)
    new = c.wait_one_active(limit, exclude=(victim,))
    return new, time.monotonic() - t0


def kind(i):
    return "PROM" if i in PEER_IDS else "prom"


with Test("prom-interop") as t:
    music = t.music(1)  # one location: every request of prom's bootstrap must work
    check_emulator(music)
    c = t.cluster(None, music=music, replicas=3, timeout_ms=int(TIMEOUT * 1000), monitor_ms=int(MONITOR * 1000),
                  retry_backoff_ms=200)

    # --- 2. takeover both ways: PROM 0 and prom 1 ----------------------------------------------
    start(c, "0")  # PROM was there first: it holds the queue's first reference
    wait_for(lambda: c.actives() == ["0"], 10, "PROM 0 to become active")
    start(c, "1")
    time.sleep(2 * TIMEOUT)
    assert c.actives() == ["0"], c.actives()
    times = {"PROM->prom": [], "prom->PROM": []}
    active = "0"
    for _ in range(4):
        new, took = crash_and_time(c, active)
        log(f"{kind(active)} {active} crashed (node); {kind(new)} {new} active after {took:.3f} s")
        assert kind(new) != kind(active), (active, new)
        times[f"{kind(active)}->{kind(new)}"].append(took)
        assert took <= TIMEOUT + 3, f"takeover took {took:.3f} s"
        start(c, active)
        time.sleep(TIMEOUT)
        assert c.actives() == [new], c.actives()
        active = new
    for k, v in times.items():
        log(f"takeover {k}: " + ", ".join(f"{x:.2f}" for x in v) + " s")
    c.check_history()
    check_rows(music)

    # --- 3. restart of an active prom among PROM peers ----------------------------------------
    if active != "1":
        new, took = crash_and_time(c, active)
        start(c, active)
        active = new
    assert active == "1"
    start(c, "2")
    time.sleep(2 * TIMEOUT)
    assert c.actives() == ["1"], c.actives()
    before = open(c.history).read()
    for n in range(5):
        c.kill("1")
        time.sleep(0.3)
        c.start("1")
        time.sleep(1.5 * TIMEOUT)  # longer than prom-timeout: a PROM peer would have released it by now
        assert c.actives() == ["1"], f"restart {n + 1}: actives {c.actives()}"
    changes = open(c.history).read()[len(before):]
    assert not changes, "a role changed:\n" + changes
    log("prom 1 killed alone and relaunched 5 times among PROM peers 0 and 2: 0 role changes")
    c.check_history()
    check_rows(music)

    # --- 3b. exit code 1 of ensure-active, on each kind -------------------------------------------
    def fail(i, on):
        path = os.path.join(c.dir, f"fail.{i}")
        if on:
            open(path, "w").close()
        else:
            os.unlink(path)

    t0 = time.monotonic()
    fail("1", True)  # prom gives up after retry-attempts failures: ensure-passive, then it releases
    new = c.wait_one_active(TIMEOUT + 5, exclude=("1",))
    log(f"ensure-active of prom 1 exits 1: it resigned, {kind(new)} {new} active after {time.monotonic() - t0:.3f} s")
    assert new in PEER_IDS
    fail("1", False)
    t0 = time.monotonic()
    for i in PEER_IDS:
        fail(i, True)  # PROM gives up after no-of-retry-attempts failures: it releases its lock
    wait_for(lambda: c.actives() == ["1"], TIMEOUT + 8, "prom 1 to be active")
    log(f"ensure-active of both PROM replicas exits 1: prom 1 active after {time.monotonic() - t0:.3f} s")
    for i in PEER_IDS:
        fail(i, False)
    time.sleep(TIMEOUT)
    assert c.actives() == ["1"], c.actives()
    c.check_history()
    check_rows(music)

    # --- 4. wall-clock skew ------------------------------------------------------------------
    # A PROM replica 2 timeouts ahead sees the live prom active as dead: it releases its lock.
    stop(c, "2")
    t0 = time.monotonic()
    start(c, "2", offset_ms=int(2 * TIMEOUT * 1000))
    new = c.wait_one_active(TIMEOUT + 6, exclude=("1",))
    log(f"PROM 2 with its clock {2 * TIMEOUT:.0f} s ahead: healthy prom 1 deposed, {kind(new)} {new} active "
        f"after {time.monotonic() - t0:.3f} s")
    time.sleep(TIMEOUT)
    overlaps = c.check_history(allow_overlap=TIMEOUT)
    log("overlap while deposed: " + (", ".join(f"{o[0]:.3f} s" for o in overlaps) or "none"))
    check_rows(music)  # prom 1 learnt the loss without writing its released reference back

    # A PROM replica 3 s behind replaces a crashed prom active only after timeout + 3 s.
    SKEW = 3.0
    for i in PEER_IDS:
        if c.state(i) == "active":  # (the replica ahead may have deposed another PROM since)
            c.crash_node(i)  # the node goes, with its service
        else:
            stop(c, i)
    active = c.wait_one_active(4 * TIMEOUT + 5)
    for i in PEER_IDS:
        start(c, i, offset_ms=-int(SKEW * 1000))
    for _ in range(3):
        time.sleep(TIMEOUT)
        if c.actives() == ["1"]:
            break
        # a restarted replica reused a reference ahead of prom's: move the lock on to prom
        active = c.actives()[0]
        new, _ = crash_and_time(c, active, TIMEOUT + SKEW + 6)
        start(c, active, offset_ms=-int(SKEW * 1000))
    assert c.actives() == ["1"], c.actives()
    new, took = crash_and_time(c, "1", TIMEOUT + SKEW + 6)
    log(f"PROM replicas {SKEW:.0f} s behind: crashed prom 1 replaced by {kind(new)} {new} after {took:.3f} s "
        f"(timeout {TIMEOUT} s)")
    # (the crashed active last wrote its row up to one keepalive period, TIMEOUT / 3, before)
    assert took >= TIMEOUT + SKEW - 1.0, f"replaced after {took:.3f} s: the skew did not delay the takeover"
    c.check_history(allow_overlap=TIMEOUT)

    # --- 5. the migration, in the documented order ---------------------------------------------
    c.start("1")
    time.sleep(TIMEOUT)
    active = c.wait_one_active(TIMEOUT)
    passive = next(i for i in PEER_IDS if i != active)
    assert active in PEER_IDS, active
    # a PROM passive replaced in place by prom: same id, same place in the queue, no role change
    before = open(c.history).read()
    stop(c, passive)
    ref = music.state()["keyspaces"]["prom_itest"]["Replicas"]["rows"][passive]["lockref"]
    c.start(passive)
    time.sleep(1.5 * TIMEOUT)
    assert c.actives() == [active] and open(c.history).read() == before, (c.actives(), open(c.history).read())
    assert music.state()["keyspaces"]["prom_itest"]["Replicas"]["rows"][passive]["lockref"] == ref
    # the PROM active last: its PROM, then at once its service; prom takes over, then replaces it
    t0 = time.monotonic()
    c.kill(active)
    c.crash_replica(active)
    new = c.wait_one_active(TIMEOUT + 3, exclude=(active,))
    log(f"PROM {passive} (passive) replaced by prom in place; PROM {active} (active) stopped: prom {new} "
        f"active after {time.monotonic() - t0:.3f} s")
    c.start(active)
    time.sleep(1.5 * TIMEOUT)
    assert c.actives() == [new], c.actives()
    # no PROM left: a node crash is a plain prom takeover
    last, took = crash_and_time(c, new, TIMEOUT + 3)
    log(f"all prom: node {new} crashed, {last} active after {took:.3f} s")
    c.start(new)
    time.sleep(TIMEOUT)
    before = open(c.history).read()
    for n in range(2):
        c.kill(last)
        time.sleep(0.3)
        c.start(last)
        time.sleep(1.5 * TIMEOUT)
        assert c.actives() == [last], f"all prom, restart {n + 1}: actives {c.actives()}"
    assert open(c.history).read() == before, "a role changed:\n" + open(c.history).read()[len(before):]
    log(f"all prom: active prom {last} killed alone and relaunched twice: 0 role changes")
    c.check_history(allow_overlap=TIMEOUT)
    check_rows(music)

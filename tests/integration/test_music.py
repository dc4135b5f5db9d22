"""MUSIC backend: three daemons on an unmodified PROM-style config.json against the MUSIC REST
emulator (tests/tools/music_emulator.py, two locations of one cluster): clean start; node crash
takeover within timeout + 1 s; first location down -> the second is used without a role
change; all locations down -> the active demotes at its deadline; garbage replies -> logged
errors, no crash; rows in PROM's column layout and types."""
import time

from harness import Test, log, wait_for

TIMEOUT, MONITOR = 3.0, 0.3
with Test("music") as t:
    music = t.music(2)
    c = t.cluster(None, music=music, timeout_ms=int(TIMEOUT * 1000), monitor_ms=int(MONITOR * 1000), retry_backoff_ms=200)
    c.start()
    t0 = time.monotonic()
    active = c.wait_one_active(2 * TIMEOUT)
    log(f"clean start: replica {active} active after {time.monotonic() - t0:.3f} s")
    time.sleep(2 * TIMEOUT)
    assert c.actives() == [active], c.actives()
    # The first lock reference is x-0000000000, as ZooKeeper numbers it: a holder with fencing
    # token 0 is a holder (the election must not read token 0 as "not held" and stay promoting).
    roles = [line.split("role ", 1)[1].split(" (")[0] for line in c.log(active).splitlines() if " role " in line]
    assert roles and roles[-1].endswith("-> active"), f"replica {active} (token 0) reports: {roles}"

    # rows after a run: PROM's layout and types
    st = music.state()
    table = st["keyspaces"]["prom_itest"]["Replicas"]
    assert table["fields"] == {"id": "text", "isactive": "boolean", "timeoflastupdate": "varint", "lockref": "text"}, table
    rows = table["rows"]
    assert set(rows) == {"PROM_ADMIN", "0", "1", "2"}, rows.keys()
    for i in c.ids:
        r = rows[i]
        assert isinstance(r["isactive"], bool) and isinstance(r["timeoflastupdate"], int) and isinstance(r["lockref"], str), r
        assert abs(r["timeoflastupdate"] / 1000 - time.time()) < 5, r
        assert r["lockref"].startswith("$prom_itest.Replicas.PROM_ADMIN$x-"), r
        assert r["isactive"] == (i == active), (i, r)
    queue = st["locks"]["prom_itest.Replicas.PROM_ADMIN"]
    assert queue[0] == rows[active]["lockref"], (queue, rows)
    log("rows and lock queue in PROM's layout")

    # node crash
    old = active
    time.sleep(0.5)
    t0 = time.monotonic()
    c.crash_node(old)
    active = c.wait_one_active(TIMEOUT + 3, exclude=(old,))
    took = time.monotonic() - t0
    log(f"node {old} crashed; {active} active after {took:.3f} s")
    assert took <= TIMEOUT + 1.0, f"takeover took {took:.3f} s > timeout + 1 s"
    c.start(old)
    time.sleep(2)
    assert c.actives() == [active]

    # first location down: the second answers, nothing changes
    before = open(c.history).read()
    music.fault(0, "down")
    time.sleep(3 * TIMEOUT)
    assert open(c.history).read() == before, "a role changed while only the first MUSIC location was down"
    music.fault(0, "ok")
    log("first MUSIC location down for 3 timeouts: no role change")

    # garbage replies: logged, no crash
    for mode in ("garbage", "html", "empty", "truncated", "nostatus", "500"):
        for k in range(2):
            music.fault(k, mode)
        time.sleep(0.8)
        for i in c.ids:
            assert c.procs[i].poll() is None, f"prom {i} died on {mode} replies"
    for k in range(2):
        music.fault(k, "ok")
    for i in c.ids:
        assert "MUSIC http://127.0.0.1" in c.log(i), c.log(i)[-2000:]
    active = c.wait_one_active(3 * TIMEOUT + 5)
    log(f"garbage, HTML, empty, truncated, status-less and 500 replies: logged, no crash; {active} active")
    time.sleep(TIMEOUT)

    # all locations down: the active demotes at its deadline, nobody else becomes active
    time.sleep(0.5)
    t0 = time.time()
    for k in range(2):
        music.fault(k, "down")
    wait_for(lambda: not c.actives(), TIMEOUT + 2, "the active to demote")
    stop = [e[0] for e in c.events() if e[1] == "stop"][-1]
    log(f"all MUSIC locations down: the active demoted after {stop - t0:.3f} s (timeout {TIMEOUT} s, margin {TIMEOUT / 4} s)")
    assert stop - t0 <= TIMEOUT - TIMEOUT / 4 + 0.3
    time.sleep(TIMEOUT)
    assert not c.actives()
    for k in range(2):
        music.fault(k, "ok")
    active = c.wait_one_active(4 * TIMEOUT + 5)
    log(f"MUSIC back: replica {active} active")
    c.check_history()

"""promctl -c CONFIG status on MUSIC (PROM's rows and lock queue, through the MUSIC emulator):
three replicas configured, two running; from a node with no daemon on its bus, status shows the
active (the holder of the lock queue's head), the passive, and the third replica down (no row),
exit 0, also with --json; after kill -9 of the active's node its row goes down once its
heartbeat is older than the timeout, and once the other replica has taken over, status shows it
active; with MUSIC gone, exit 4. promctl only reads: on the MUSIC location that only promctl
uses, every request is a GET of the lock holder or of the rows (no lock reference created, no
acquire, no release, no row written)."""
import json
import os
import subprocess
import time
import urllib.request

from harness import Test, log, wait_for

TIMEOUT, MONITOR = 3.0, 0.3
with Test("promctl-music") as t:
    promctl = os.path.join(os.path.dirname(os.path.abspath(t.a.prom)), "promctl")
    # An empty bus: the "other node" from which the operator looks.
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = t.session_bus()
    music = t.music(3)
    c = t.cluster(None, music=music, timeout_ms=int(TIMEOUT * 1000), monitor_ms=int(MONITOR * 1000), retry_backoff_ms=200)
    # The daemons use the first two locations; promctl's copy of the config names only the
    # third (another location of the same MUSIC cluster), so that every request on it is promctl's.
    for i in c.ids:
        path = os.path.join(c.conf(i), "config.json")
        cfg = json.load(open(path))
        cfg["music-location"] = music.locations[:2]
        json.dump(cfg, open(path, "w"), indent=2)
    ctl_conf = os.path.join(t.dir, "ctlconf")
    os.makedirs(ctl_conf)
    cfg["music-location"] = music.locations[2:]
    json.dump(cfg, open(os.path.join(ctl_conf, "config.json"), "w"), indent=2)

    def ctl(*args, conf=ctl_conf, quiet=False):
        r = subprocess.run([promctl, "--bus", "session", "-c", conf, *args], capture_output=True, text=True, timeout=40)
        if not quiet:
            log(f"promctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def status(quiet=False):
        r = ctl("status", "--json", quiet=quiet)
        assert r.returncode in (0, 3, 6), r  # the store answered
        doc = json.loads(r.stdout)
        assert doc["exit"] == r.returncode, (doc, r)
        return doc, {x["id"]: x["role"] for x in doc["replicas"]}

    c.start("0")
    c.start("1")  # replica 2 is configured but never started: no row
    active = c.wait_one_active(4 * TIMEOUT)
    other = "1" if active == "0" else "0"
    # The passive's row is written at its start; the holder's row says isactive once it holds.
    wait_for(lambda: status(quiet=True)[1] == {active: "active", other: "passive", "2": "down"}, 2 * TIMEOUT,
             "status to show the active, the passive and the down replica")

    r = ctl("status")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert f"store MUSIC {music.locations[2]}, leader {active}, token " in lines[0], lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:-1] if line.strip()}
    assert rows[active][1] == "active" and rows[other][1] == "passive" and rows["2"][1] == "down", rows
    assert lines[-1] == f"active: {active}", lines
    doc, roles = status()
    assert doc["leader"] == active and doc["store"] == "ok" and doc["exit"] == 0, doc
    lockref = music.state()["keyspaces"]["prom_itest"]["Replicas"]["rows"][active]["lockref"]
    assert doc["token"] == int(lockref.rsplit("-", 1)[1]), (doc, lockref)
    # The replicas' own file (their locations) gives the same view.
    r = ctl("status", "--json", conf=c.conf(other))
    assert r.returncode == 0 and json.loads(r.stdout)["leader"] == active, r

    # kill -9 of the active's node: its row stays until its heartbeat is older than the timeout.
    old = active
    c.crash_node(old)
    killed = time.monotonic()
    doc, roles = status()
    assert roles[old] != "down" and doc["leader"] == old, (roles, doc)
    wait_for(lambda: status(quiet=True)[1][old] == "down", TIMEOUT + 3, f"replica {old}'s row to show down")
    down_after = time.monotonic() - killed
    log(f"replica {old} down in promctl status {down_after:.2f} s after the kill (timeout {TIMEOUT} s)")
    # Its last heartbeat was at most a heartbeat period before the kill.
    assert down_after >= TIMEOUT - 1.5, down_after
    active = c.wait_one_active(TIMEOUT + 5, exclude=(old,))
    assert active == other
    wait_for(lambda: status(quiet=True)[0]["leader"] == active and status(quiet=True)[1][active] == "active", 5,
             f"status to show replica {active} active")
    doc, roles = status()
    assert doc["exit"] == 0 and roles == {active: "active", old: "down", "2": "down"}, (doc, roles)
    assert doc["token"] > int(lockref.rsplit("-", 1)[1]), doc  # a later holder has a larger token
    c.check_history()

    # Read only: everything promctl sent went to the third location, and all of it was GETs of
    # the lock holder and of the rows.
    with urllib.request.urlopen(f"http://127.0.0.1:{music.control}/calls", timeout=5) as resp:
        calls = json.loads(resp.read()).get(str(music.ports[2]), {})
    log(f"promctl's requests on the third location: {calls}")
    allowed = {"GET /MUSIC/rest/v2/locks/enquire/prom_itest.Replicas.PROM_ADMIN",
               "GET /MUSIC/rest/v2/keyspaces/prom_itest/tables/Replicas/rows"}
    assert calls and set(calls) <= allowed, calls

    music.stop()
    r = ctl("status")
    assert r.returncode == 4 and "unreachable" in r.stdout, r
    r = ctl("status", "--json")
    assert r.returncode == 4 and json.loads(r.stdout)["store"] == "unreachable", r
    t.ok = True

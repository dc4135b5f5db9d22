"""promctl -c CONFIG status on MUSIC (PROM's rows and lock queue, through the MUSIC emulator):
rows laid out by hand read as PROM reads them (heartbeat older than the timeout or none = down,
the lock holder's row = active once it says so, a row that says active without the lock = a
second active, exit 6); three replicas configured, two running; from a node with no daemon on its bus, status shows the
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
    promctl = t.promctl
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

    # Rows and a lock queue laid out by hand for another app (no daemon runs for it), written
    # through the first location: each way a row can read, promctl judging it by this clock.
    def rest(method, path, body=None):
        req = urllib.request.Request(music.locations[0] + path, method=method, headers={"Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    board = {k: v for k, v in cfg.items() if not k.startswith(("ensure-", "restart-prom-"))}
    board.update({"app-name": "board", "replica-id-list": list("abcde"), "music-location": music.locations[2:]})
    for r in "abcde":
        board[f"ensure-active-{r}"] = board[f"ensure-passive-{r}"] = "/bin/true"
    board_conf = os.path.join(t.dir, "boardconf")
    os.makedirs(board_conf)
    json.dump(board, open(os.path.join(board_conf, "config.json"), "w"), indent=2)
    rest("POST", "/keyspaces/prom_board", {"replicationInfo": {"class": "SimpleStrategy", "replication_factor": 3}})
    rest("POST", "/keyspaces/prom_board/tables/Replicas", {"fields": {"id": "text", "isactive": "boolean",
                                                                      "timeoflastupdate": "varint", "lockref": "text",
                                                                      "PRIMARY KEY": "(id)"}})
    lock = "prom_board.Replicas.PROM_ADMIN"
    ref_a, ref_b = (rest("POST", f"/locks/create/{lock}")["lock"]["lock"] for _ in range(2))

    def row(i, isactive, age_ms, lockref=""):
        beat = 0 if age_ms is None else int(time.time() * 1000) - age_ms
        rest("POST", "/keyspaces/prom_board/tables/Replicas/rows",
             {"values": {"id": i, "isactive": isactive, "timeoflastupdate": beat, "lockref": lockref}})

    def board_status():
        r = ctl("status", "--json", conf=board_conf)
        doc = json.loads(r.stdout)
        return r.returncode, doc, {x["id"]: x["role"] for x in doc["replicas"]}

    ms = int(TIMEOUT * 1000)
    # a heads the queue but has not marked its row yet; b lost the lock without noticing (its row
    # still says active); c's heartbeat is older than the timeout, d's is PROM's bootstrap 0, e
    # has no row.
    row("a", False, 0, ref_a)
    row("b", True, 0, ref_b)
    row("c", False, ms + 1000)
    row("d", False, None)
    code, doc, roles = board_status()
    assert roles == {"a": "promoting", "b": "active", "c": "down", "d": "down", "e": "down"}, roles
    assert code == 3 and doc["leader"] == "a" and doc["token"] == 0, doc
    row("a", True, 0, ref_a)
    code, doc, roles = board_status()
    assert code == 6 and roles["a"] == roles["b"] == "active", (code, doc)
    row("b", False, 200, ref_b)
    row("c", False, ms - 1000)  # younger than the timeout: up again
    code, doc, roles = board_status()
    assert code == 0 and doc["leader"] == "a" and roles == {"a": "active", "b": "passive", "c": "passive", "d": "down",
                                                          "e": "down"}, (code, roles)
    # A holder whose row is older than the timeout: the leader is down, nobody is active.
    row("a", True, ms + 1000, ref_a)
    code, doc, roles = board_status()
    assert code == 3 and doc["leader"] == "a" and roles["a"] == "down", (code, doc)
    # The head of the queue named by no row (just created, its row not written yet): no leader.
    rest("DELETE", f"/locks/release/{ref_a}")
    rest("DELETE", f"/locks/release/{ref_b}")
    rest("POST", f"/locks/create/{lock}")
    code, doc, roles = board_status()
    assert code == 3 and doc["leader"] == "" and "active" not in roles.values(), (code, doc)
    assert len(music.state()["locks"][lock]) == 1, "promctl joined the lock queue"

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
    allowed = {f"GET /MUSIC/rest/v2/{p}" for app in ("itest", "board")
               for p in (f"locks/enquire/prom_{app}.Replicas.PROM_ADMIN", f"keyspaces/prom_{app}/tables/Replicas/rows")}
    assert calls and set(calls) <= allowed, calls

    music.stop()
    r = ctl("status")
    assert r.returncode == 4 and "unreachable" in r.stdout, r
    r = ctl("status", "--json")
    assert r.returncode == 4 and json.loads(r.stdout)["store"] == "unreachable", r
    t.ok = True

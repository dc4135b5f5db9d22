#!/usr/bin/env python3
"""A PROM 1.0.6 replica for mixed-cluster tests without Java: the algorithm of PROM's
PromDaemon (bootstrap, lock queue use, wall-clock liveness on timeoflastupdate, release of dead
holders, takeover wait, exit-code handling of the ensure scripts) and its MUSIC calls, on the
same config.json. It exists so that prom can be tested beside PROM; it is not a replacement.

    prom_peer.py -i ID [-p] -c CONFIG_DIR          (reads CONFIG_DIR/config.json, as PROM does)

Differences from PROM 1.0.6, all for the tests:
- a music-location that is already a URL (http://127.0.0.1:PORT/MUSIC/rest/v2) is used as is:
  the emulator runs on free ports, PROM hard-codes :8080;
- PROM_PEER_CLOCK_OFFSET_MS shifts this replica's wall clock (written heartbeats and liveness
  checks alike), to show what unsynchronised clocks do to a PROM replica;
- the ensure scripts get PROM_FENCING_TOKEN = the number at the end of the lock reference
  (prom's fencing token) so that the tests' history checker can order both kinds; PROM sets no
  environment;
- SIGTERM ends the process (PROM has no signal handling; the JVM would end the same way).
"""
import argparse
import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ALREADY_RUNNING, SUCCESS_RESTART, FAIL_RESTART = "ALREADY_RUNNING", "SUCCESS_RESTART", "FAIL_RESTART"


def log(msg):
    print(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} prom-peer: {msg}", flush=True)


class Config:
    """ConfigReader: config.json is read again on every lookup, as PROM does."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "config.json")

    def get(self, key, default=None):
        with open(self.path) as f:
            v = json.load(f).get(key)
        return default if v is None else v

    def str(self, key, default=""):
        return str(self.get(key, default))


class Music:
    """MusicHandle: every call tries the locations in config order, from the first."""

    def __init__(self, cfg):
        self.cfg = cfg

    def urls(self):
        version = self.cfg.str("music-version", "2")
        out = []
        for loc in self.cfg.get("music-location", []):
            out.append(loc.rstrip("/") if loc.startswith("http") else f"http://{loc}:8080/MUSIC/rest/v{version}")
        return out

    def timeout(self):
        t = int(self.cfg.str("music-connection-timeout-ms", "-1"))
        if t <= 0:
            t = int(self.cfg.str("prom-timeout")) // max(1, len(self.cfg.get("music-location", [])))
        return t / 1000

    def headers(self):
        h = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.cfg.str("aid"):
            h["aid"] = self.cfg.str("aid")
        if self.cfg.str("namespace"):
            h["ns"] = self.cfg.str("namespace")
        user, password = self.cfg.str("userid"), self.cfg.str("password")
        if user and password:
            h["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return h

    def request(self, method, path, body=None, accept=(200,)):
        """(http status, parsed body) from the first location that answers with an accepted
        status and JSON, else None (PROM moves on for any exception)."""
        data = json.dumps(body).encode() if body is not None else None
        for base in self.urls():
            req = urllib.request.Request(base + path, data=data, method=method, headers=self.headers())
            try:
                with urllib.request.urlopen(req, timeout=self.timeout()) as r:
                    status, raw = r.status, r.read()
            except urllib.error.HTTPError as e:
                status, raw = e.code, e.read()
            except Exception as e:  # noqa: BLE001 - PROM catches everything and tries the next
                log(f"MUSIC {base}: {e}")
                continue
            if status not in accept:
                log(f"MUSIC {base}{path}: HTTP {status}")
                continue
            try:
                return status, json.loads(raw or b"{}")
            except ValueError:
                log(f"MUSIC {base}{path}: not JSON")
                continue
        return None

    # The calls PROM makes (reference table in the test docs: create keyspace .. release).
    def insert(self, ks, values):
        r = self.request("POST", f"/keyspaces/{ks}/tables/Replicas/rows",
                         {"values": values, "consistencyInfo": {"type": "eventual"}})
        if not r or r[1].get("status") != "SUCCESS":
            log(f"insert failed: {r}")

    def update(self, ks, key, value, values):
        r = self.request("PUT", f"/keyspaces/{ks}/tables/Replicas/rows?{key}={value}",
                         {"values": values, "consistencyInfo": {"type": "eventual"}})
        if not r or r[1].get("status") != "SUCCESS":
            log(f"Unable to update the table: {r}")

    def row(self, ks, key, value):
        r = self.request("GET", f"/keyspaces/{ks}/tables/Replicas/rows?{key}={value}")
        if r is None:
            return None
        return r[1].get("result") or {}

    def create_lock_ref(self, name):
        r = self.request("POST", f"/locks/create/{name}")
        if r is None or r[1].get("status") != "SUCCESS" or "lock" not in r[1]:
            return ""
        return r[1]["lock"].get("lock", "")

    def acquire(self, ref):
        r = self.request("GET", f"/locks/acquire/{ref}", accept=(200, 400))
        return r[1] if r else {"status": "FAILURE"}

    def enquire(self, name):
        r = self.request("GET", f"/locks/enquire/{name}")
        if r is None:
            return None
        holder = (r[1].get("lock") or {}).get("lock-holder")
        return None if holder == "No lock holder!" else holder

    def release(self, ref):
        self.request("DELETE", f"/locks/release/{ref}", accept=(200, 201, 202, 204))


class PromDaemon:
    def __init__(self, rid, cfg):
        self.id = rid
        self.cfg = cfg
        self.music = Music(cfg)
        self.offset_ms = int(os.environ.get("PROM_PEER_CLOCK_OFFSET_MS", "0"))
        self.lock_ref = None
        self.boot_strap()

    def now_ms(self):
        # System.currentTimeMillis(), shifted when the test says so.
        return int(time.time() * 1000) + self.offset_ms

    def boot_strap(self):
        app = self.cfg.str("app-name", "null")
        self.ks = f"prom_{app}"
        m = self.music
        m.request("POST", f"/keyspaces/{self.ks}", {
            "replicationInfo": {"class": "SimpleStrategy", "replication_factor": 3}, "durabilityOfWrites": "true",
            "consistencyInfo": {"type": "eventual"}}, accept=(200, 400))
        m.request("POST", f"/keyspaces/{self.ks}/tables/Replicas", {
            "fields": {"id": "text", "isactive": "boolean", "timeoflastupdate": "varint", "lockref": "text",
                       "PRIMARY KEY": "(id)"}, "consistencyInfo": {"type": "eventual"}}, accept=(200, 400))
        m.request("POST", f"/keyspaces/{self.ks}/tables/Replicas/index/lockref", accept=(200, 204, 400))
        # PROM 1.0.6 writes timeoflastupdate 0 on every start, its own row included.
        m.insert(self.ks, {"id": "PROM_ADMIN", "isactive": "false", "timeoflastupdate": "0"})
        m.insert(self.ks, {"id": self.id, "isactive": "false", "timeoflastupdate": "0"})
        self.lock_name = f"{self.ks}.Replicas.PROM_ADMIN"

    # --- lock -------------------------------------------------------------------------------
    def acquire_lock(self):
        if self.lock_ref is None:
            return False
        r = self.music.acquire(self.lock_ref)
        # A FAILURE without a message counts as a stale reference (PROM's default-value quirk).
        if r.get("status") == "FAILURE" and r.get("message", "Lockid doesn't exist") == "Lockid doesn't exist":
            log(f"lock reference {self.lock_ref} is stale: creating a new one")
            self.lock_ref = self.music.create_lock_ref(self.lock_name)
            r = self.music.acquire(self.lock_ref)
        self.music.enquire(self.lock_name)  # PROM logs the holder on every acquire
        return r.get("status") == "SUCCESS"

    def is_active_lock_holder(self):
        ok = self.acquire_lock()
        if ok:
            self.music.insert(self.ks, {"id": self.id, "isactive": "true"})
        return ok

    def release_lock(self, ref):
        if ref is None:
            log("There is no lock entry")
            return
        if ref == "":
            log("Already unlocked")
            return
        rows = self.music.row(self.ks, "lockref", ref) or {}
        rid = next(iter(rows.values()))["id"] if rows else "UNKNOWN"
        self.music.release(ref)
        if ref == self.lock_ref:
            self.lock_ref = None
        if rid != "UNKNOWN":
            self.music.update(self.ks, "id", rid, {"isactive": "false", "lockref": ""})

    # --- health -----------------------------------------------------------------------------
    def update_health(self, active):
        self.music.insert(self.ks, {"id": self.id, "timeoflastupdate": str(self.now_ms()),
                                    "lockref": self.lock_ref, "isactive": "true" if active else "false"})

    def is_replica_alive(self, rid):
        rows = self.music.row(self.ks, "id", rid)
        if not rows:
            return False
        t = next(iter(rows.values())).get("timeoflastupdate")
        if t is None:
            return False
        return self.now_ms() - int(t) <= int(self.cfg.str("prom-timeout"))

    def release_lock_if_active_is_dead(self, active_ref):
        rows = self.music.row(self.ks, "lockref", active_ref) if active_ref else None
        if rows:
            holder = next(iter(rows.values()))["id"]
            if self.is_replica_alive(holder):
                return
            log(f"Active {holder} is suspected dead. Releasing it's lock")
            self.release_lock(active_ref)
        elif active_ref:
            log(f"Unknown active lockholder {active_ref}: releasing it (probably corrupt/stale data)")
            self.music.release(active_ref)
        else:
            log("*****No lock holders. Make sure there are healthy sites*****")

    # --- ensure scripts -------------------------------------------------------------------
    def run_script(self, key):
        cmd = self.cfg.str(key)
        env = dict(os.environ, PROM_FENCING_TOKEN=str(token(self.lock_ref)))
        try:
            # split on single spaces and no shell, as PROM's ProcessBuilder call
            p = subprocess.run(cmd.split(" "), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                               start_new_session=True)  # own group: a node crash kills it too
        except OSError as e:
            log(f"{key}: {e}")
            return FAIL_RESTART
        if p.stderr:
            sys.stdout.write(p.stderr.decode(errors="replace"))
        return {0: ALREADY_RUNNING, 2: SUCCESS_RESTART}.get(p.returncode, FAIL_RESTART)

    def ensure(self, mode):
        attempts = int(self.cfg.str("no-of-retry-attempts"))
        for _ in range(attempts):
            r = self.run_script(f"ensure-{mode}-{self.id}")
            if r != FAIL_RESTART:
                return r
            time.sleep(int(self.cfg.str("restart-backoff-time", "0")) / 1000)
        return FAIL_RESTART

    # --- flows ------------------------------------------------------------------------------
    def sleep(self, default="0"):
        time.sleep(int(self.cfg.str("core-monitor-sleep-time", default)) / 1000)

    def start_as_passive_replica(self):
        while True:
            holder = self.music.enquire(self.lock_name)
            rows = self.music.row(self.ks, "lockref", holder) if holder else None
            if rows:
                row = next(iter(rows.values()))
                if row.get("isactive") is True and self.is_replica_alive(row["id"]):
                    return
            self.sleep("1000")

    def start_ha_flow(self, passive):
        if passive:
            self.start_as_passive_replica()
        rows = self.music.row(self.ks, "id", self.id) or {}
        previous = next(iter(rows.values())).get("lockref") if rows else None
        self.lock_ref = previous if previous else self.music.create_lock_ref(self.lock_name)
        log(f"lock reference {self.lock_ref}")
        while True:
            if self.is_active_lock_holder():
                self.active_flow()
            else:
                self.passive_flow()

    def active_flow(self):
        log("active flow")
        while True:
            if not self.acquire_lock():
                log("I no longer have the lock! Make myself passive")
                return
            if self.ensure("active") == FAIL_RESTART:
                log("ensure-active failed: giving up lock and starting passive flow")
                self.release_lock(self.lock_ref)
                return
            self.update_health(True)
            for peer in self.cfg.get("replica-id-list", []):
                if peer != self.id and not self.is_replica_alive(peer):
                    cmd = self.cfg.str(f"restart-prom-{peer}")
                    if cmd:
                        threading.Thread(target=subprocess.run, args=(cmd.split(" "),), daemon=True).start()
                    self.music.acquire(self.lock_ref)
            self.sleep()

    def passive_flow(self):
        log("passive flow")
        while True:
            r = self.ensure("passive")
            if r == ALREADY_RUNNING:
                if self.lock_ref is None:
                    self.lock_ref = self.music.create_lock_ref(self.lock_name)
            elif r == SUCCESS_RESTART:
                # PROM always takes a new reference here, leaving any old one in the queue.
                self.lock_ref = self.music.create_lock_ref(self.lock_name)
            else:
                self.release_lock(self.lock_ref)
            self.update_health(False)
            active_ref = self.music.enquire(self.lock_name)
            self.release_lock_if_active_is_dead(active_ref)
            if self.is_active_lock_holder():
                self.take_over_from_current_active(active_ref)
                return
            self.sleep()

    def take_over_from_current_active(self, old_ref):
        if not old_ref or old_ref == self.lock_ref:
            return
        start = time.monotonic()
        timeout = int(self.cfg.str("prom-timeout")) / 1000
        waited = False
        while True:
            rows = self.music.row(self.ks, "lockref", old_ref)
            row = next(iter(rows.values())) if rows else None
            if not row or row.get("isactive") is None or row.get("isactive") is False:
                break
            waited = True
            if time.monotonic() - start > timeout:
                self.music.update(self.ks, "lockref", old_ref, {"isactive": "false"})
                break
            self.update_health(False)  # PROM busy-loops here; no sleep
        log(f"took over from {old_ref}" + (f" after waiting {time.monotonic() - start:.3f} s for its row"
                                           if waited else ""))


def token(ref):
    m = re.search(r"(\d+)$", ref or "")
    return int(m.group(1)) if m else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-i", "--id", required=True)
    ap.add_argument("-p", "--passive", action="store_true")
    ap.add_argument("-c", "--config", default=".")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log(f"--Prom Daemon version 1.0.6 (test peer)--replica id {a.id}---START---{'passive' if a.passive else 'active'}")
    PromDaemon(a.id, Config(a.config)).start_ha_flow(a.passive)


if __name__ == "__main__":
    main()

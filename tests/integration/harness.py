"""Test harness for prom's integration tests: real etcd members on 127.0.0.1 with free ports,
prom daemons with script actions writing a shared history, a TCP proxy that can black-hole a
daemon's traffic to etcd, and the history checker. Everything is started by the tests and
stopped by PID."""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import history_check  # noqa: E402

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prom", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    return ap.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_for(pred, timeout, what, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def post(url, body, timeout=2.0):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


class Etcd:
    """One or more etcd members (a cluster) on loopback."""

    def __init__(self, workdir, members=1, tuned=False):
        self.dir = workdir
        self.n = members
        self.tuned = tuned
        self.client = [free_port() for _ in range(members)]
        self.peer = [free_port() for _ in range(members)]
        self.procs = [None] * members
        self.started = [False] * members
        self.cluster = ",".join(f"m{i}=http://127.0.0.1:{self.peer[i]}" for i in range(members))

    @property
    def endpoints(self):
        return [f"http://127.0.0.1:{p}" for p in self.client]

    def start(self, i=None):
        for k in ([i] if i is not None else range(self.n)):
            cmd = [ETCD, "--name", f"m{k}", "--data-dir", os.path.join(self.dir, f"m{k}.etcd"),
                   "--listen-client-urls", self.endpoints[k], "--advertise-client-urls", self.endpoints[k],
                   "--listen-peer-urls", f"http://127.0.0.1:{self.peer[k]}",
                   "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer[k]}",
                   "--initial-cluster", self.cluster, "--initial-cluster-token", f"prom-{os.getpid()}",
                   "--initial-cluster-state", "existing" if self.started[k] else "new",
                   # As an operator should run etcd 3.4 (its default is off): a member that rejoins
                   # after a partition must not depose the leader and cost the active its lease.
                   "--pre-vote"]
            if self.tuned:
                cmd += ["--heartbeat-interval", "20", "--election-timeout", "200"]
            out = open(os.path.join(self.dir, f"etcd{k}.log"), "a")
            self.procs[k] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            self.started[k] = True
        if i is None:
            wait_for(self.healthy, 30, "etcd to become healthy")

    def healthy(self):
        for ep in self.endpoints:
            try:
                with urllib.request.urlopen(ep + "/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return True
            except Exception:
                pass
        return False

    def signal(self, i, sig):
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                p.wait(30)

    def stop(self, i=None):
        for k in ([i] if i is not None else range(self.n)):
            self.signal(k, signal.SIGTERM)

    def kill(self, i):
        self.signal(i, signal.SIGKILL)

    def leader(self):
        """Index of the etcd leader member, or None."""
        for k, ep in enumerate(self.endpoints):
            if not self.procs[k] or self.procs[k].poll() is not None:
                continue
            try:
                st = post(ep + "/v3/maintenance/status", {}, 1)
                if st.get("leader") and st.get("leader") == st["header"]["member_id"]:
                    return k
            except Exception:
                pass
        return None

    def enable_auth(self, user, password, perm="READWRITE", prefix="/prom/"):
        """etcd auth on: root, and user with a role that may perm (READ, WRITE, READWRITE) the
        keys under prefix, as prom's deployment guide sets it up."""
        ep = self.endpoints[0]
        enc = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        post(ep + "/v3/auth/user/add", {"name": "root", "password": "rootpw"})
        post(ep + "/v3/auth/user/grant", {"user": "root", "role": "root"})
        post(ep + "/v3/auth/user/add", {"name": user, "password": password})
        post(ep + "/v3/auth/role/add", {"name": user + "-role"})
        post(ep + "/v3/auth/role/grant", {"name": user + "-role", "perm": {"permType": perm, "key": enc(prefix),
                                                                         "range_end": enc(end)}})
        post(ep + "/v3/auth/user/grant", {"user": user, "role": user + "-role"})
        post(ep + "/v3/auth/enable", {})

    def get(self, key):
        for k, ep in enumerate(self.endpoints):
            if not self.procs[k] or self.procs[k].poll() is not None:
                continue
            try:
                r = post(ep + "/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()}, 2)
                kvs = r.get("kvs") or []
                if not kvs:
                    return None
                kv = kvs[0]
                return {"value": base64.b64decode(kv.get("value", "")).decode(),
                        "create_revision": int(kv["create_revision"]), "lease": int(kv.get("lease", 0))}
            except Exception:
                continue
        raise AssertionError("no etcd member answered")


class MusicEmulator:
    """tests/tools/music_emulator.py on free ports: one shared state, several locations."""

    def __init__(self, workdir, locations=2, user=None, password=None):
        self.ports = [free_port() for _ in range(locations)]
        self.control = free_port()
        cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "..", "tools", "music_emulator.py"),
               "--ports", ",".join(map(str, self.ports)), "--control", str(self.control)]
        if user:
            cmd += ["--user", user, "--password", password or ""]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "music.log"), "a"),
                                     text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    @property
    def locations(self):
        return [f"http://127.0.0.1:{p}/MUSIC/rest/v2" for p in self.ports]

    def fault(self, index, mode, delay_ms=0):
        req = urllib.request.Request(f"http://127.0.0.1:{self.control}/fault", method="POST",
                                     data=json.dumps({"port": self.ports[index], "mode": mode, "delay_ms": delay_ms}).encode())
        urllib.request.urlopen(req, timeout=2).read()

    def state(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control}/state", timeout=2) as r:
            return json.loads(r.read())

    def journal(self):
        """Every row write and lock release so far (music_emulator.py /journal)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control}/journal", timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Proxy:
    """TCP proxy in front of etcd. cut() black-holes it like a partition: connections stay open
    but nothing is forwarded, and new connections are accepted and then ignored."""

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.blackhole = False
        self.requests = 0  # HTTP requests seen from the client side
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            if self.blackhole:
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                c.close()
                continue
            # The 2 s was for connecting only: left on, it ended every silent watch stream after
            # 2 s and so hid a client stuck on a cut-off member (issue 9 item 1).
            u.settimeout(None)
            with self.lock:
                self.conns.append(u)
            threading.Thread(target=self._pipe, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()

    def _pipe(self, a, b, from_client):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if from_client:
                    self.requests += data.count(b"POST /v3/")
                while self.blackhole:
                    time.sleep(0.05)  # data in flight is lost with the partition
                    data = b""
                if data:
                    b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.blackhole = True

    def heal(self):
        # A healed partition: old connections are dead to TCP by now; drop them.
        with self.lock:
            conns, self.conns = self.conns, []
        self.blackhole = False
        for c in conns:
            try:
                c.close()
            except OSError:
                pass


TOY_REPLICA = r"""#!/bin/sh
# toy replica: ensure.sh ID active|passive. State in $DIR/state.ID, history in $DIR/history.
id=$1; mode=$2; dir=$(dirname "$0")
[ "$mode" = active ] && [ -e "$dir/fail.$id" ] && { echo "refusing to start: $dir/fail.$id exists"; exit 1; }
cur=$(cat "$dir/state.$id" 2>/dev/null || echo passive)
[ "$cur" = "$mode" ] && exit 0
[ -e "$dir/slow.$id" ] && sleep "$(cat "$dir/slow.$id")"
if [ "$mode" = active ]; then ev=start; else ev=stop; fi
# history first: whoever sees the state change finds its history line already written
echo "$ev $id $PROM_FENCING_TOKEN $(date +%s.%N)" >> "$dir/history"
echo "$mode" > "$dir/state.$id"
echo "$ev with token $PROM_FENCING_TOKEN (role $PROM_ROLE, leader $PROM_LEADER)"
exit 2
"""


def prom_toml(app, ids, endpoints, script, timeout_ms, monitor_ms, margin_ms, retry_attempts=3, retry_backoff_ms=200,
              action_timeout_ms=1500):
    """The prom.conf of the tests: SCRIPT ID active|passive as the actions."""
    return f"""app-name = "{app}"
replicas = {json.dumps(ids)}
[store]
endpoints = {json.dumps(endpoints)}
connect-timeout-ms = 300
[election]
timeout-ms = {timeout_ms}
monitor-interval-ms = {monitor_ms}
demote-margin-ms = {margin_ms}
[actions]
retry-attempts = {retry_attempts}
retry-backoff-ms = {retry_backoff_ms}
timeout-ms = {action_timeout_ms}
ensure-active = ["{script}", "%i", "active"]
ensure-passive = ["{script}", "%i", "passive"]
"""


def kill_with_actions(proc):
    """kill -9 of a prom and of the actions it is running (each in its own process group)."""
    proc.send_signal(signal.SIGSTOP)  # frozen first: it cannot start another action meanwhile
    r = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    for child in r.stdout.split():
        try:
            os.killpg(int(child), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.kill()
    proc.wait(10)


class Cluster:
    """N prom daemons on one etcd (or one proxy per replica), with toy replicas."""

    def __init__(self, prom, etcd, workdir, replicas=3, timeout_ms=2000, margin_ms=500, monitor_ms=500,
                 retry_attempts=3, retry_backoff_ms=200, action_timeout_ms=1500, proxies=False, app="itest",
                 restart_prom=False, bus="none", music=None):
        self.prom = prom
        self.etcd = etcd
        self.dir = workdir
        self.ids = [str(i) for i in range(replicas)]
        self.procs = {}
        self.proxies = {}
        self.bus = bus  # "session": the bus at DBUS_SESSION_BUS_ADDRESS
        self.script = os.path.join(workdir, "ensure.sh")
        with open(self.script, "w") as f:
            f.write(TOY_REPLICA)
        os.chmod(self.script, 0o755)
        self.history = os.path.join(workdir, "history")
        open(self.history, "a").close()
        self.timeout_ms = timeout_ms
        for i in self.ids:
            endpoints = etcd.endpoints if etcd else []
            if proxies:
                self.proxies[i] = [Proxy(int(ep.rsplit(":", 1)[1])) for ep in etcd.endpoints]
                endpoints = [p.endpoint for p in self.proxies[i]]
            if music:
                # An unmodified PROM config.json (PROM's -c DIR reads DIR/config.json).
                d = os.path.join(workdir, f"conf{i}")
                os.makedirs(d, exist_ok=True)
                cfg = {"app-name": app, "aid": "", "namespace": "", "userid": "", "password": "",
                       "prom-timeout": str(timeout_ms), "restart-backoff-time": str(retry_backoff_ms),
                       "core-monitor-sleep-time": str(monitor_ms), "no-of-retry-attempts": str(retry_attempts),
                       "replica-id-list": self.ids, "music-location": music.locations, "music-version": 2,
                       "music-connection-timeout-ms": 300}
                for r in self.ids:
                    cfg[f"ensure-active-{r}"] = f"{self.script} {r} active"
                    cfg[f"ensure-passive-{r}"] = f"{self.script} {r} passive"
                with open(os.path.join(d, "config.json"), "w") as f:
                    json.dump(cfg, f, indent=2)
                continue
            conf = prom_toml(app, self.ids, endpoints, self.script, timeout_ms=timeout_ms, monitor_ms=monitor_ms,
                             margin_ms=margin_ms, retry_attempts=retry_attempts, retry_backoff_ms=retry_backoff_ms,
                             action_timeout_ms=action_timeout_ms)
            if restart_prom:
                # Records the request; the test itself restarts the peer.
                conf += ('restart-prom = ["/bin/sh", "-c", "echo restart %i $(date +%s.%N) >> ' +
                         os.path.join(workdir, "restarts") + '"]\n')
            with open(self.conf(i), "w") as f:
                f.write(conf)

    def conf(self, i):
        d = os.path.join(self.dir, f"conf{i}")
        return d if os.path.isdir(d) else os.path.join(self.dir, f"prom{i}.conf")

    def start(self, i=None, extra=()):
        for k in ([i] if i is not None else self.ids):
            env = dict(os.environ, RUNTIME_DIRECTORY=os.path.join(self.dir, f"run{k}"))
            env.pop("JOURNAL_STREAM", None)
            out = open(os.path.join(self.dir, f"prom{k}.log"), "a")
            self.procs[k] = subprocess.Popen([self.prom, "-i", k, "-c", self.conf(k), "--bus", self.bus, *extra],
                                             stdout=out, stderr=subprocess.STDOUT, env=env)

    def signal(self, i, sig):
        p = self.procs.get(i)
        if p and p.poll() is None:
            p.send_signal(sig)

    def kill(self, i):
        self.signal(i, signal.SIGKILL)
        self.procs[i].wait(10)

    def crash_node(self, i):
        """Node crash: prom, any action it is running (own process groups) and the service die."""
        kill_with_actions(self.procs[i])
        self.crash_replica(i)

    def crash_replica(self, i):
        """The node's service dies with it: recorded in the history like any stop."""
        if self.state(i) == "active":
            with open(os.path.join(self.dir, f"state.{i}"), "w") as f:
                f.write("passive\n")
            with open(self.history, "a") as f:
                f.write(f"stop {i} - {time.time():.9f}\n")

    def stop(self, i=None, timeout=20):
        for k in ([i] if i is not None else list(self.procs)):
            p = self.procs.get(k)
            if p and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def state(self, i):
        try:
            with open(os.path.join(self.dir, f"state.{i}")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return "passive"

    def actives(self):
        return [i for i in self.ids if self.state(i) == "active"]

    def wait_one_active(self, timeout, exclude=()):
        def one():
            a = [i for i in self.actives() if i not in exclude]
            return a[0] if len(a) == 1 and len(self.actives()) == 1 else None
        return wait_for(one, timeout, "exactly one active replica")

    def events(self):
        return history_check.parse(self.history)

    def log(self, i):
        with open(os.path.join(self.dir, f"prom{i}.log")) as f:
            return f.read()

    def check_history(self, allow_overlap=0.0):
        problems, overlaps = history_check.check(self.events(), allow_overlap)
        assert not problems, "history violations:\n" + "\n".join(problems) + "\n" + open(self.history).read()
        return overlaps


class Test:
    """Work directory, cleanup of every process started, and a summary line per scenario."""

    def __init__(self, name):
        self.a = args()
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"prom-{name}-")
        self.etcds = []
        self.clusters = []
        self.cleanup = []  # other processes to stop at the end
        self.ok = False

    @property
    def promctl(self):
        """The promctl built beside the prom under test."""
        return os.path.join(os.path.dirname(os.path.abspath(self.a.prom)), "promctl")

    def session_bus(self):
        """A private dbus-daemon --session, stopped at the end; returns its address."""
        bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1", "--nopidfile"],
                               stdout=subprocess.PIPE, text=True)
        self.cleanup.append(bus)
        return bus.stdout.readline().strip()

    def music(self, locations=2, **kw):
        m = MusicEmulator(self.dir, locations, **kw)
        self.cleanup.append(m.proc)
        return m

    def etcd(self, members=1, tuned=False):
        e = Etcd(self.dir, members, tuned)
        e.start()
        self.etcds.append(e)
        return e

    def cluster(self, etcd, subdir=None, **kw):
        d = self.dir
        if subdir:
            d = os.path.join(self.dir, subdir)
            os.makedirs(d, exist_ok=True)
        c = Cluster(self.a.prom, etcd, d, **kw)
        self.clusters.append(c)
        return c

    def __enter__(self):
        log(f"{self.name}: work directory {self.dir}")
        return self

    def __exit__(self, exc_type, exc, tb):
        for c in self.clusters:
            c.stop(timeout=5)
        if exc_type is None:
            # A sanitizer report in any daemon's log fails the test, also for daemons that
            # were killed before their exit code could tell.
            for c in self.clusters:
                for i in c.ids:
                    try:
                        text = c.log(i)
                    except FileNotFoundError:
                        continue
                    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                        if marker in text:
                            exc_type = AssertionError
                            print(f"--- prom{i}.log has a sanitizer report ({marker})")
                            print(text[text.index(marker) - 200:][:4000])
                            break
        for e in self.etcds:
            for k in range(e.n):
                e.kill(k)
        for p in self.cleanup:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        if exc_type is not None:
            for c in self.clusters:
                for i in c.ids:
                    print(f"--- prom{i}.log (last 40 lines)")
                    try:
                        print("\n".join(c.log(i).splitlines()[-40:]))
                    except FileNotFoundError:
                        pass
                print("--- history\n" + open(c.history).read())
        elif not self.a.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if exc_type is AssertionError and exc is None:
            raise AssertionError("sanitizer report in a daemon log")
        return False

"""promctl against stand-in daemons on a private bus: a frozen daemon costs one row and one
timeout, not the table; strings from daemons (and through them from the store) cannot reach
the terminal as escape sequences; the exit status of status says whether there is exactly one
active (0), none (3), the store is unreachable (4), or several actives (6)."""
import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Test, log, wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"  # Debian's, with python3-dbus and python3-gi


def props(replica, role, leader, healthy=True, error=""):
    return {"ReplicaId": replica, "AppName": "app", "Role": role, "Leader": leader, "FencingToken": 5,
            "StoreHealthy": healthy, "Paused": False, "LastTransitionUSec": int(time.time() * 1e6), "LastError": error}


with Test("promctl") as t:
    promctl = t.promctl
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=t.session_bus())
    fakes = {}

    def fake(replica, p):
        if replica in fakes:
            stop(replica)
        proc = subprocess.Popen([PY, os.path.join(HERE, "fake_replica.py"), replica, json.dumps(p)], env=env,
                                stdout=subprocess.PIPE, text=True)
        t.cleanup.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        fakes[replica] = proc
        return proc

    def stop(replica):
        proc = fakes.pop(replica)
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(10)

    def status(*extra):
        t0 = time.monotonic()
        r = subprocess.run([promctl, "--bus", "session", *extra, "status"], env=env, capture_output=True, timeout=20)
        took = time.monotonic() - t0
        out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
        log(f"status exit {r.returncode} in {took:.2f} s\n{out}{err}")
        return r.returncode, out, err, took, r.stdout + r.stderr

    fake("0", props("0", "active", "0"))
    fake("1", props("1", "passive", "0", error="\x1b]0;owned\x07\x1b[2J\u009b31m\nFAKE ROW"))
    code, out, err, took, raw = status()
    assert code == 0 and "active: 0" in out, (code, out, err)
    # Escapes and newlines from a daemon are shown escaped, never passed to the terminal.
    assert b"\x1b" not in raw and b"\x07" not in raw and "\u009b".encode() not in raw, raw
    assert "\\x1b]0;owned\\x07\\x1b[2J\\xc2\\x9b31m\\x0aFAKE ROW" in out, out
    assert len(out.strip().splitlines()) == 4, out  # header, 2 rows, summary: no injected row
    assert "ago]" not in out, out  # no LastErrorUSec (a daemon before it existed): the text alone

    # LAST-ERROR starts with the error's age from LastErrorUSec, in at most two units; the
    # margins let the check pass however long the fakes take to start.
    def aged(replica, seconds_ago, error="store unreachable"):
        return dict(props(replica, "passive", "0", error=error), LastErrorUSec=int((time.time() - seconds_ago) * 1e6))

    fake("0", dict(props("0", "active", "0"), LastErrorUSec=0))
    fake("1", aged("1", 2 * 86400 + 3 * 3600 + 30))
    fake("2", aged("2", 5 * 3600 + 7 * 60 + 10))
    fake("3", aged("3", 3 * 60 + 12))
    code, out, err, took, raw = status()
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert rows["1"].endswith(" [2d3h ago] store unreachable"), out
    assert rows["2"].endswith(" [5h7m ago] store unreachable"), out
    assert re.search(r" \[3m1[2-9]s ago\] store unreachable$", rows["3"]), out
    fake("1", aged("1", 5 * 3600 + 20))
    fake("2", aged("2", -100))  # the clock was stepped back since: no negative age
    fake("3", aged("3", 0, error=""))  # no error, whatever the time says
    code, out, err, took, raw = status()
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert rows["1"].endswith(" [5h ago] store unreachable"), out
    assert rows["2"].endswith(" [0s ago] store unreachable"), out
    assert "ago" not in rows["3"] and "ago" not in rows["0"], out
    stop("2")
    stop("3")

    # A frozen daemon: its row says so, the other rows are there, and it costs one timeout.
    frozen = fake("2", props("2", "passive", "0"))
    frozen.send_signal(signal.SIGSTOP)
    code, out, err, took, raw = status("--timeout", "500")
    assert took < 3, f"status took {took:.2f} s with one frozen daemon"
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "NO-REPLY" in rows["2"] and "no reply within 500 ms" in rows["2"], out
    assert "active" in rows["0"].split() and "passive" in rows["1"].split(), out
    assert code == 0, code
    # Two frozen daemons still cost one timeout: they are asked at once.
    frozen3 = fake("3", props("3", "passive", "0"))
    frozen3.send_signal(signal.SIGSTOP)
    code, out, err, took, raw = status("--timeout", "500")
    assert took < 3 and code == 0, (took, code)
    stop("2")
    stop("3")

    # No active: exit 3.
    fake("0", props("0", "passive", ""))
    fake("1", props("1", "passive", ""))
    code, out, err, took, raw = status()
    assert code == 3 and "no active replica" in err, (code, err)
    # The leader named by the store is a local replica that is still promoting: not active yet.
    fake("0", props("0", "promoting", "0"))
    code, out, err, took, raw = status()
    assert code == 3 and "not active yet" in err, (code, err)
    # Store unreachable from every replica: exit 4, and a stale leader is marked "?".
    fake("0", props("0", "active", "0", healthy=False))
    fake("1", props("1", "passive", "0", healthy=False))
    code, out, err, took, raw = status()
    assert code == 4 and "store is unreachable" in err, (code, err)
    assert "0?" in out.splitlines()[2].split(), out
    # Two local actives: exit 6.
    fake("0", props("0", "active", "0"))
    fake("1", props("1", "active", "1"))
    code, out, err, took, raw = status()
    assert code == 6, code
    # On a terminal a long LAST-ERROR is cut to the window; piped, it is kept whole.
    long_error = "curl: (7) Failed to connect to 10.0.0.1 port 2379 after 1000 ms: Couldn't connect to server; " * 3
    fake("1", props("1", "passive", "0", error=long_error))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    p = subprocess.Popen([promctl, "--bus", "session", "status"], env=env, stdout=slave, stderr=subprocess.DEVNULL)
    p.wait(20)
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    lines = tty.decode().splitlines()
    assert all(len(line) <= 140 for line in lines), [len(line) for line in lines]
    assert any(line.endswith("...") for line in lines), lines
    code, out, err, took, raw = status()
    assert long_error.strip() in out, out

    # Bad --timeout is a usage error.
    r = subprocess.run([promctl, "--timeout", "soon", "status"], env=env, capture_output=True, text=True)
    assert r.returncode == 64 and "--timeout takes milliseconds" in r.stderr, r
    for k in list(fakes):
        stop(k)

    # The same with real daemons on real etcd: one active (exit 0), a frozen passive costs
    # its row only, and with etcd gone status says so (exit 4) instead of exit 0.
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = env["DBUS_SESSION_BUS_ADDRESS"]
    etcd = t.etcd(1)
    c = t.cluster(etcd, replicas=2, bus="session")
    c.start()
    active = c.wait_one_active(10)
    passive = next(i for i in c.ids if i != active)
    wait_for(lambda: status()[0] == 0, 10, "promctl status exit 0 with real daemons")
    c.signal(passive, signal.SIGSTOP)
    code, out, err, took, raw = status("--timeout", "500")
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert code == 0 and took < 3 and "NO-REPLY" in rows[passive] and "active" in rows[active].split(), (code, took, out)
    c.signal(passive, signal.SIGCONT)
    etcd.kill(0)
    wait_for(lambda: status()[0] == 4, 15, "promctl status exit 4 with etcd down")
    t.ok = True

"""Fast mode (peer support over authenticated UDP, prom(8) FAST MODE): three prom daemons on one
etcd. kill -9 of the active's prom with its actions (a node crash): another replica is active
well under a second later, judged from the shared history by tests/tools/history_check.py, with
a greater fencing token and never two actives. Then a forged withdrawal (wrong HMAC) sent to a
passive that already withdrew the active's epoch causes no takeover; the same datagram signed
with the real key does (control: the test can fail)."""
import hashlib
import hmac
import json
import os
import socket
import statistics
import struct
import subprocess
import time

from harness import Test, free_port, log
import history_check

# fast mode's defaults: the stop margin (support / 4 = 100 ms) must absorb scheduling stalls of a
# loaded CI machine; the tuned 25/200 ms are measured by bench/keepalived.py --fast.
HEARTBEAT_MS = 50
SUPPORT_MS = 400
KEY = b"integration-test-peer-key-0123456789"


def datagram(key, sender, epoch, withdrawn, counter=1):
    """A heartbeat in the wire format of src/peer/codec.hpp."""
    body = b"PRM1" + bytes([1, 0, len(sender)]) + sender.encode().ljust(32, b"\0") + os.urandom(16)
    body += struct.pack(">QqQq", counter, epoch, 1, withdrawn) + bytes(16)
    return body + hmac.new(key, body, hashlib.sha256).digest()


def fast_conf(c, ports, blackhole=None):
    """Appends fast mode to every replica's prom.conf. blackhole = (from, to): from's config
    sends to's datagrams to a dead port (a one-way cut from -> to)."""
    keyfile = os.path.join(c.dir, "peer.key")
    with open(keyfile, "wb") as f:
        f.write(KEY)
    for i in c.ids:
        path = c.conf(i)
        text = open(path).read().replace(
            "[election]\n", f'[election]\nmode = "fast"\nheartbeat-ms = {HEARTBEAT_MS}\nsupport-ms = {SUPPORT_MS}\n'
                            f'peer-key-file = "{keyfile}"\n', 1)
        for r in c.ids:
            port = ports[r]
            if blackhole and (i, r) == blackhole:
                port = free_port()
            text += f'[replica.{r}]\naddress = "127.0.0.1:{port}"\n'
            if blackhole and r == blackhole[0]:
                text += "priority = 10\n"  # the replica whose datagrams are cut campaigns first
        with open(path, "w") as f:
            f.write(text)


def takeover_gaps(history):
    """Seconds from each crash (a stop with no token: the harness's crash line) to the next start."""
    events = history_check.parse(history)
    gaps = []
    for n, (t, kind, replica, token) in enumerate(events):
        if kind == "stop" and token is None:
            nxt = next((e for e in events[n + 1:] if e[1] == "start"), None)
            if nxt:
                gaps.append(nxt[0] - t)
    return gaps


with Test("fast-mode") as t:
    etcd = t.etcd(1)
    # TTL 2 s: the etcd lease alone would take about 2-2.5 s after a crash.
    c = t.cluster(etcd, timeout_ms=2000, margin_ms=500, monitor_ms=500)
    ports = {i: free_port() for i in c.ids}
    fast_conf(c, ports)
    c.start()
    for round_ in range(3):
        old = c.wait_one_active(5)
        key = etcd.get("/prom/itest/leader")
        assert key["value"].endswith("\nmode=fast"), f"leader key not marked fast: {key['value']!r}"
        time.sleep(1.0)
        c.crash_node(old)
        new = c.wait_one_active(1.5, exclude=(old,))
        assert etcd.get("/prom/itest/leader")["create_revision"] > key["create_revision"]
        log(f"round {round_}: {old} crashed, {new} active")
        c.start(old)
        time.sleep(1.0)
        assert c.state(old) == "passive"
    gaps = takeover_gaps(c.history)
    log("takeover after a node crash (history): " + ", ".join(f"{g * 1000:.0f} ms" for g in gaps) +
        f"; median {statistics.median(gaps) * 1000:.0f} ms")
    assert len(gaps) == 3, gaps
    # Support 400 ms + a guarded delete and a campaign on etcd + ensure-active: well under 1 s
    # (the lease path needs TTL 2 s + up to 0.5 s). CI machines are loaded: 0.8 s bound.
    assert max(gaps) < 0.8, f"fast takeover took {max(gaps):.3f} s"
    # promctl -c reads a fast key ("HOLDER\nmode=fast") as the daemons do: one active, mode fast.
    promctl = t.promctl
    deadline = time.monotonic() + 5
    while True:
        r = subprocess.run([promctl, "--bus", "session", "-c", c.conf(new), "status", "--json"], capture_output=True,
                           text=True, timeout=30, env={k: v for k, v in os.environ.items() if "DBUS" not in k})
        doc = json.loads(r.stdout)
        if doc["exit"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    log(f"promctl -c status in fast mode: exit {doc['exit']}, leader {doc.get('leader')}")
    assert doc["exit"] == 0 and [doc["leader"]] == c.actives(), (doc, c.actives())
    assert all(x["mode"] == "fast" for x in doc["replicas"] if x["role"] != "down"), doc
    c.check_history()
    c.stop()

    # Forged withdrawals. Replica 0's config sends its datagrams for 2 to a dead port: 2 never
    # hears 0 and withdraws 0's epoch, while 1 keeps supporting 0 (0 keeps its majority). One
    # more withdrawal "from 1" would let 2 take over.
    c2 = t.cluster(etcd, subdir="forged", app="forged", timeout_ms=2000, margin_ms=500, monitor_ms=500)
    ports2 = {i: free_port() for i in c2.ids}
    fast_conf(c2, ports2, blackhole=("0", "2"))
    c2.start()
    assert c2.wait_one_active(5) == "0"
    time.sleep(1.0)
    key = etcd.get("/prom/forged/leader")
    epoch = key["create_revision"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for n in range(20):
        sock.sendto(datagram(b"a wrong key of sufficient length!!", "1", 0, epoch, n + 1), ("127.0.0.1", ports2["2"]))
        time.sleep(0.01)
    time.sleep(1.0)
    assert etcd.get("/prom/forged/leader")["create_revision"] == epoch, "a forged withdrawal caused a takeover"
    assert c2.actives() == ["0"]
    assert "bad HMAC" in c2.log("2"), "replica 2 did not report the forged datagram"
    c2.check_history()
    log("forged withdrawal (wrong HMAC): rejected, no takeover")
    # Control: the same withdrawal signed with the real key is a majority at replica 2.
    sock.sendto(datagram(KEY, "1", 0, epoch, 1), ("127.0.0.1", ports2["2"]))
    def same_key():
        k = etcd.get("/prom/forged/leader")
        return k is not None and k["create_revision"] == epoch
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2 and same_key():
        time.sleep(0.02)
    assert not same_key(), "control: a signed withdrawal did not take over"
    log("control: the same withdrawal with the real key takes over (what the HMAC prevents)")

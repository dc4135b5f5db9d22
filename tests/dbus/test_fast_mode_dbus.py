"""Fast mode on D-Bus: three real prom daemons in fast mode on a private bus. Every replica's
Mode property is "fast"; the active's PeerSupport counts its two supporting peers, a passive's
is 0; promctl status shows both (MODE, SUPPORT); once a passive is killed the active's
PeerSupport drops to 1 (with PropertiesChanged, read back through the property)."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Test, free_port, log, wait_for  # noqa: E402

KEY = b"dbus-test-peer-key-0123456789abcdef"


def fast_conf(c):
    keyfile = os.path.join(c.dir, "peer.key")
    with open(keyfile, "wb") as f:
        f.write(KEY)
    ports = {i: free_port() for i in c.ids}
    for i in c.ids:
        path = c.conf(i)
        text = open(path).read().replace(
            "[election]\n", f'[election]\nmode = "fast"\nheartbeat-ms = 50\nsupport-ms = 400\npeer-key-file = "{keyfile}"\n', 1)
        for r in c.ids:
            text += f'[replica.{r}]\naddress = "127.0.0.1:{ports[r]}"\n'
        with open(path, "w") as f:
            f.write(text)


with Test("fast-mode-dbus") as t:
    promctl = t.promctl
    address = t.session_bus()
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = address  # the daemons inherit it
    etcd = t.etcd(1)
    c = t.cluster(etcd, bus="session")
    fast_conf(c)
    c.start()
    active = c.wait_one_active(5)

    def prop(replica, name):
        r = subprocess.run(["busctl", f"--address={address}", "get-property", f"org.prom.Prom1.Replica_{replica}",
                            "/org/prom/Prom1", "org.prom.Prom1.Replica", name], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        return r.stdout.split(None, 1)[1].strip().strip('"')

    for i in c.ids:
        assert prop(i, "Mode") == "fast", prop(i, "Mode")
    wait_for(lambda: prop(active, "PeerSupport") == "2", 5, "the active supported by both peers")
    for i in c.ids:
        if i != active:
            assert prop(i, "PeerSupport") == "0"
    r = subprocess.run([promctl, "--bus", "session", "status"], capture_output=True, text=True, timeout=20)
    log("promctl status:\n" + r.stdout)
    header = r.stdout.splitlines()[0].split()
    assert "MODE" in header and "SUPPORT" in header, header
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:] if line.split() and line.split()[0] in c.ids}
    assert rows[active][header.index("MODE")] == "fast" and rows[active][header.index("SUPPORT")] == "2", rows[active]
    passive = next(i for i in c.ids if i != active)
    c.kill(passive)
    wait_for(lambda: prop(active, "PeerSupport") == "1", 5, "PeerSupport to drop to 1")
    assert c.actives() == [active], "losing one of two supporters must not cost the active its role"
    log(f"active {active}: PeerSupport 2, then 1 after {passive} was killed; still active")
    c.check_history()

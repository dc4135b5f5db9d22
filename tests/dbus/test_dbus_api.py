"""dbus tier: the org.prom.Prom1 API of real prom daemons on a private dbus-daemon configured
like the system bus (method calls denied by default) plus the shipped policy file
dbus/org.prom.Prom1.conf: properties, PropertiesChanged, RoleChanged, each method's success
and named errors, and denial for an unprivileged caller."""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Test, log, wait_for  # noqa: E402

POLICY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "dbus", "org.prom.Prom1.conf"))
IFACE = "org.prom.Prom1.Replica"
PATH = "/org/prom/Prom1"

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=SOCKET</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>POLICY</include>
</busconfig>
"""


class Bus:
    def __init__(self, workdir):
        self.socket = os.path.join(workdir, "bus.socket")
        conf = os.path.join(workdir, "bus.conf")
        with open(conf, "w") as f:
            f.write(BUS_CONF.replace("SOCKET", self.socket).replace("POLICY", POLICY))
        self.proc = subprocess.Popen(["dbus-daemon", "--config-file=" + conf, "--nofork", "--nopidfile"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(self.socket), 10, "dbus-daemon socket")
        os.chmod(workdir, 0o755)
        self.address = "unix:path=" + self.socket

    def busctl(self, *args, user=None, check=True):
        cmd = ["busctl", "--address=" + self.address, *args]
        if user:
            cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {r.stderr.strip()}")
        return r

    def prop(self, replica, name, user=None):
        return self.props(replica, name, user=user)[0]

    def props(self, replica, *names, user=None):
        """Several properties in one call, so that they are read from one state of the daemon."""
        out = []
        lines = self.busctl("get-property", f"org.prom.Prom1.Replica_{replica}", PATH, IFACE, *names, user=user).stdout
        for line in lines.splitlines():
            kind, value = line.split(" ", 1)
            value = value.strip()
            out.append(value.strip('"') if kind == "s" else value == "true" if kind == "b" else int(value))
        assert len(out) == len(names), lines
        return out

    def call(self, replica, method, *args, user=None):
        sig = ["s", *args] if args else []
        return self.busctl("call", f"org.prom.Prom1.Replica_{replica}", PATH, IFACE, method, *sig, user=user, check=False)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


with Test("dbus-api") as t:
    etcd = t.etcd(1)
    bus = Bus(t.dir)
    promctl = t.promctl
    monitor_out = open(os.path.join(t.dir, "monitor.txt"), "w")
    monitor = subprocess.Popen(["dbus-monitor", "--address", bus.address, f"type='signal',interface='{IFACE}'",
                                "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"],
                               stdout=monitor_out, stderr=subprocess.STDOUT)
    try:
        # --bus session talks to DBUS_SESSION_BUS_ADDRESS: here, our system-like private bus
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = bus.address
        c = t.cluster(etcd, replicas=2, timeout_ms=5000, margin_ms=1250, bus="session")
        c.start()
        active = c.wait_one_active(10)
        passive = next(i for i in c.ids if i != active)
        wait_for(lambda: bus.call(passive, "Resume").returncode == 0, 10, "the D-Bus names")

        # properties
        assert bus.prop(active, "Role") == "active"
        assert bus.prop(passive, "Role") == "passive"
        assert bus.prop(active, "ReplicaId") == active
        assert bus.prop(active, "AppName") == "itest"
        assert bus.prop(passive, "Leader") == active
        token = bus.prop(active, "FencingToken")
        assert token == etcd.get("/prom/itest/leader")["create_revision"], token
        assert bus.prop(active, "StoreHealthy") is True
        assert bus.prop(active, "Paused") is False
        assert abs(bus.prop(active, "LastTransitionUSec") / 1e6 - time.time()) < 60
        # No error yet: LastError is "" and its time 0 (not the time of start or of a transition).
        assert bus.props(active, "LastError", "LastErrorUSec") == ["", 0]
        log(f"properties ok: {active} active with token {token}")

        # Pause / Resume and PropertiesChanged
        assert bus.call(passive, "Pause").returncode == 0
        assert bus.prop(passive, "Paused") is True
        assert bus.call(passive, "Resume").returncode == 0
        assert bus.prop(passive, "Paused") is False

        # named errors
        r = bus.call(passive, "Resign")
        assert r.returncode != 0 and "is passive, not active" in r.stderr, r.stderr
        r = bus.call(active, "Switchover", "nosuch")
        assert r.returncode != 0 and "is not another replica" in r.stderr, r.stderr
        r = subprocess.run(["dbus-send", "--bus=" + bus.address, "--print-reply", f"--dest=org.prom.Prom1.Replica_{passive}",
                            PATH, f"{IFACE}.Resign"], capture_output=True, text=True)
        assert "org.prom.Prom1.Error.NotActive" in r.stderr, r.stderr
        r = subprocess.run(["dbus-send", "--bus=" + bus.address, "--print-reply", f"--dest=org.prom.Prom1.Replica_{active}",
                            PATH, f"{IFACE}.Switchover", "string:nosuch"], capture_output=True, text=True)
        assert "org.prom.Prom1.Error.InvalidArgs" in r.stderr, r.stderr

        # an unprivileged caller reads but cannot act
        assert bus.prop(active, "Role", user="nobody") == "active"
        r = bus.call(active, "Resign", user="nobody")
        assert r.returncode != 0 and "Access denied" in r.stderr, r.stderr
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "dbus-send", "--bus=" + bus.address,
                            "--print-reply", f"--dest=org.prom.Prom1.Replica_{active}", PATH, f"{IFACE}.Switchover", "string:"],
                           capture_output=True, text=True)
        assert "org.freedesktop.DBus.Error.AccessDenied" in r.stderr, r.stderr
        assert bus.prop(active, "Role") == "active"
        log("named errors and the policy's denial ok")

        # Switchover: RoleChanged on both, Leader follows
        assert bus.call(active, "Switchover", passive).returncode == 0
        wait_for(lambda: bus.prop(passive, "Role") == "active", 5, "the switchover")
        assert bus.prop(active, "Role") == "passive"
        assert bus.prop(active, "Leader") == passive
        new_token = bus.prop(passive, "FencingToken")
        assert new_token > token
        # Resign hands back (the resigner stays out for one TTL; the other takes over)
        assert bus.call(passive, "Resign").returncode == 0
        wait_for(lambda: bus.prop(active, "Role") == "active", 10, "the resign handover")
        time.sleep(0.5)
        c.check_history()

        # StoreUnavailable: the store is gone but the active has not reached its deadline yet
        killed = time.time()
        etcd.kill(0)
        wait_for(lambda: bus.prop(active, "StoreHealthy") is False, 5, "StoreHealthy to turn false")
        r = subprocess.run(["dbus-send", "--bus=" + bus.address, "--print-reply", f"--dest=org.prom.Prom1.Replica_{active}",
                            PATH, f"{IFACE}.Resign"], capture_output=True, text=True)
        assert "org.prom.Prom1.Error.StoreUnavailable" in r.stderr or "NotActive" in r.stderr, r.stderr
        assert bus.prop(active, "LastError") != ""
        # LastErrorUSec: when the store stopped answering (after the kill, not later than now), and
        # it stays there while the failing requests take turns in LastError's text.
        since = bus.prop(active, "LastErrorUSec")
        assert killed <= since / 1e6 <= time.time(), (killed, since)
        texts = set()
        for _ in range(6):
            time.sleep(0.4)
            error, usec = bus.props(active, "LastError", "LastErrorUSec")
            texts.add(error)
            assert error.startswith("etcd ") and usec == since, (since, usec, texts)
        log(f"LastErrorUSec {since} held through {len(texts)} texts: {texts}")
        # promctl status shows the error's age in LAST-ERROR.
        r = subprocess.run([promctl, "--bus", "session", "status"], capture_output=True, text=True, timeout=20)
        row = next(line for line in r.stdout.splitlines() if line.split()[0] == active)
        m = re.search(r"\[(\d+)s ago\] etcd ", row)
        assert m and abs(int(m.group(1)) - (time.time() - since / 1e6)) <= 2, r.stdout
        log(f"promctl status: {row}")
        # Recovery clears LastError and its time (read together: a new error may follow at once).
        etcd.start(0)
        wait_for(lambda: bus.props(active, "StoreHealthy", "LastError", "LastErrorUSec") == [True, "", 0], 20,
                 "StoreHealthy with LastError and LastErrorUSec cleared after etcd is back")

        time.sleep(0.5)
        monitor.send_signal(signal.SIGINT)
        monitor.wait(5)
        text = open(os.path.join(t.dir, "monitor.txt")).read()
        assert f'member=RoleChanged' in text
        for old, new in (("active", "demoting"), ("demoting", "passive"), ("passive", "promoting"), ("promoting", "active")):
            assert f'string "{old}"\n   string "{new}"' in text, f"no RoleChanged {old} -> {new}:\n{text[-3000:]}"
        assert 'string "Paused"' in text and 'string "Role"' in text and 'string "FencingToken"' in text
        assert 'string "LastErrorUSec"' in text
        log("PropertiesChanged and RoleChanged seen on the bus")
    finally:
        if monitor.poll() is None:
            monitor.kill()
        c.stop()
        bus.stop()

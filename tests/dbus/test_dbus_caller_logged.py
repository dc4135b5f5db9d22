"""dbus tier: every privileged org.prom.Prom1 call (Switchover, Resign, Pause, Resume) is logged
with the caller's uid and pid as the bus daemon reports them, also when the call is refused,
and a caller-chosen argument reaches the log escaped (no terminal escapes, no new lines)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Test, log, wait_for  # noqa: E402

IFACE = "org.prom.Prom1.Replica"
PATH = "/org/prom/Prom1"
# A private session-type bus: who may call is test_dbus_api.py's subject; this one is about
# what prom writes down about the caller.
BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=SOCKET</listen>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

with Test("dbus-caller-logged") as t:
    etcd = t.etcd(1)
    sock = os.path.join(t.dir, "bus.socket")
    conf = os.path.join(t.dir, "bus.conf")
    with open(conf, "w") as f:
        f.write(BUS_CONF.replace("SOCKET", sock))
    bus = subprocess.Popen(["dbus-daemon", "--config-file=" + conf, "--nofork", "--nopidfile"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    address = "unix:path=" + sock
    c = None
    try:
        wait_for(lambda: os.path.exists(sock), 10, "dbus-daemon socket")
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
        c = t.cluster(etcd, replicas=2, timeout_ms=5000, margin_ms=1250, bus="session")
        c.start()
        active = c.wait_one_active(10)
        passive = next(i for i in c.ids if i != active)

        def call(replica, method, *args):
            # python's pid is not busctl's: the caller is a child whose pid we know.
            p = subprocess.Popen(["busctl", "--address=" + address, "call", f"org.prom.Prom1.Replica_{replica}", PATH, IFACE,
                                  method, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = p.communicate(timeout=10)
            return p.pid, p.returncode, err

        wait_for(lambda: call(passive, "Resume")[1] == 0, 10, "the D-Bus names")
        uid = os.getuid()
        pid, rc, err = call(passive, "Pause")
        assert rc == 0, err
        wait_for(lambda: f"D-Bus Pause called by uid {uid} pid {pid} (" in c.log(passive), 5, "the Pause caller in the log")
        pid, rc, err = call(passive, "Resume")
        assert rc == 0, err
        wait_for(lambda: f"D-Bus Resume called by uid {uid} pid {pid} (" in c.log(passive), 5, "the Resume caller")
        pid, rc, err = call(passive, "Resign")
        assert rc != 0
        wait_for(lambda: f"D-Bus Resign by uid {uid} pid {pid} (" in c.log(passive) and "refused: org.prom.Prom1.Error.NotActive"
                 in c.log(passive), 5, "the refused Resign and its caller")
        pid, rc, err = call(active, "Switchover", "s", "x\x1b[2J\ny")
        assert rc != 0
        wait_for(lambda: f'D-Bus Switchover("x\\x1b[2J\\x0ay") called by uid {uid} pid {pid} (' in c.log(active), 5,
                 "the escaped Switchover target")
        pid, rc, err = call(active, "Switchover", "s", passive)
        assert rc == 0, err
        wait_for(lambda: f'D-Bus Switchover("{passive}") called by uid {uid} pid {pid} (' in c.log(active), 5,
                 "the Switchover caller")
        log("Pause, Resume, Resign (refused) and Switchover are logged with the caller's uid and pid")
    finally:
        if c:
            c.stop()
        bus.terminate()
        bus.wait(5)

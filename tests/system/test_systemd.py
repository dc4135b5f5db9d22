"""system tier: prom as an OS service under real systemd (PID 1 in a systemd-nspawn container
over an overlay of the host root, its own network namespace). Installed from the .deb that
cpack -G DEB builds (dpkg -i inside the running container, whose postinst creates the group
and reloads systemd and dbus), next to the packaged etcd.service; two replicas prom@0 and prom@1 whose unit actions start and
stop demo@0/demo@1. Asserted with systemctl, busctl and journalctl as an operator would."""
import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import log, wait_for  # noqa: E402
from nspawn import Container, require_root_and_tools  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--build", required=True, help="build directory to install from")
ap.add_argument("--keep", action="store_true")
a = ap.parse_args()

require_root_and_tools()


CONFIG = """app-name = "demo"
replicas = ["0", "1"]
[store]
endpoints = ["http://127.0.0.1:2379"]
[election]
timeout-ms = 5000
demote-margin-ms = 1250
[actions]
timeout-ms = 1000
retry-backoff-ms = 200
ensure-active = { start-unit = "demo@%i.service" }
ensure-passive = { stop-unit = "demo@%i.service" }
"""


def role(i):
    r = inside("busctl", "get-property", f"org.prom.Prom1.Replica_{i}", "/org/prom/Prom1", "org.prom.Prom1.Replica", "Role",
               check=False)
    return r.stdout.split('"')[1] if r.returncode == 0 else None


def unit_state(u):
    return inside("systemctl", "is-active", u, check=False).stdout.strip()


DEMO = "[Unit]\nDescription=demo replica %i\n[Service]\nExecStart=/bin/sleep infinity\n"
with Container(a.build, "promtest", keep=a.keep, files={"/etc/systemd/system/demo@.service": DEMO}) as c:
    inside = c.run
    assert inside("getent", "group", "prom", check=False).returncode == 0, "postinst did not create the prom group"
    c.write("/etc/prom/prom.conf", CONFIG)
    inside("prom", "--check-config", "--id", "0")
    inside("systemctl", "enable", "--now", "prom@0", "prom@1")
    active = wait_for(lambda: next((i for i in "01" if role(i) == "active"), None), 20, "an active replica")
    passive = "1" if active == "0" else "0"
    assert role(passive) == "passive", role(passive)
    assert unit_state(f"demo@{active}.service") == "active"
    assert unit_state(f"demo@{passive}.service") != "active"
    log(f"prom@{active} active (demo@{active} running), prom@{passive} passive")

    # systemctl status shows the STATUS= line
    status = inside("systemctl", "status", f"prom@{active}", check=False).stdout
    assert re.search(r"Status: \"active, leader " + active + r", token \d+\"", status), status
    # journalctl -u prom@N PROM_ROLE=active finds the transition
    j = inside("journalctl", "-u", f"prom@{active}", "PROM_ROLE=active", "--no-pager", "-o", "cat").stdout
    assert "-> active" in j, j
    j = inside("journalctl", "-u", f"prom@{active}", "MESSAGE_ID=6d1c5f0b8e9a4c2fa1b7e3d9c4f20a57", "--no-pager", "-o",
               "cat").stdout
    assert "role promoting -> active" in j, j
    log("systemctl status shows the STATUS line; journalctl finds the transition by PROM_ROLE and MESSAGE_ID")

    # an unprivileged caller may read but not switch over
    assert inside("busctl", "get-property", f"org.prom.Prom1.Replica_{active}", "/org/prom/Prom1", "org.prom.Prom1.Replica",
                  "Role", user="nobody").stdout.strip() == 's "active"'
    r = inside("busctl", "call", f"org.prom.Prom1.Replica_{active}", "/org/prom/Prom1", "org.prom.Prom1.Replica",
               "Switchover", "s", "", user="nobody", check=False)
    assert r.returncode != 0 and "Access denied" in r.stderr, r.stdout + r.stderr
    assert role(active) == "active"
    log("an unprivileged Switchover is refused")

    # promctl status
    out = inside("promctl", "status").stdout
    assert re.search(rf"^{active}\s+demo\s+active", out, re.M), out

    # reload keeps the role
    inside("systemctl", "reload", f"prom@{active}")
    time.sleep(1)
    assert role(active) == "active" and unit_state(f"prom@{active}") == "active"
    j = inside("journalctl", "-u", f"prom@{active}", "--no-pager", "-o", "cat").stdout
    assert "reload: actions reloaded" in j, j
    log("systemctl reload keeps the role")

    # systemctl stop of the active moves the demo unit to the other within 1 s
    t0 = time.monotonic()
    inside("systemctl", "stop", f"prom@{active}")
    stopped = time.monotonic()
    wait_for(lambda: unit_state(f"demo@{passive}.service") == "active", 5, "the demo unit to move")
    moved = time.monotonic() - stopped
    log(f"systemctl stop prom@{active} took {stopped - t0:.3f} s; demo@{passive} active {moved:.3f} s later")
    assert unit_state(f"demo@{active}.service") != "active"
    assert moved < 1.0, f"the demo unit moved after {moved:.3f} s"
    assert role(passive) == "active"
    inside("systemctl", "start", f"prom@{active}")
    wait_for(lambda: role(active) == "passive", 10, "the stopped replica to rejoin as passive")
    active, passive = passive, active

    # a SIGSTOPped prom is killed by the watchdog and restarted by systemd
    before = int(inside("systemctl", "show", "-p", "NRestarts", "--value", f"prom@{active}").stdout.strip())
    inside("systemctl", "kill", "-s", "SIGSTOP", f"prom@{active}")
    wait_for(lambda: int(inside("systemctl", "show", "-p", "NRestarts", "--value", f"prom@{active}").stdout.strip()) > before,
             20, "the watchdog restart")
    wait_for(lambda: role(active) in ("active", "passive") and unit_state(f"prom@{active}") == "active", 20,
             "prom to be back")
    j = inside("journalctl", "-u", f"prom@{active}", "--no-pager").stdout
    assert "Watchdog timeout" in j, j[-2000:]
    log(f"SIGSTOPped prom@{active} was killed by the watchdog and restarted; it is {role(active)} now")
    roles = sorted(role(i) for i in "01")
    wait_for(lambda: sorted(role(i) for i in "01") == ["active", "passive"], 15, "one active, one passive")
    log("the system tier passed")

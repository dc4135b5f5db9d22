"""system tier: prom as an OS service under real systemd (PID 1 in a systemd-nspawn container
over an overlay of the host root, its own network namespace). Installed from the .deb that
cpack -G DEB builds (dpkg -i inside the running container, whose postinst creates the group
and reloads systemd and dbus), next to the packaged etcd.service; two replicas prom@0 and prom@1 whose unit actions start and
stop demo@0/demo@1. Asserted with systemctl, busctl and journalctl as an operator would."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import log, wait_for  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--build", required=True, help="build directory to install from")
ap.add_argument("--keep", action="store_true")
a = ap.parse_args()

if os.geteuid() != 0:
    sys.exit("the system tier needs root (systemd-nspawn, overlay mounts); CI runs it as root")
for tool in ("systemd-nspawn", "nsenter"):
    if not shutil.which(tool):
        sys.exit(f"{tool} is missing (package systemd-container)")


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

D = tempfile.mkdtemp(prefix="prom-system-")
root = os.path.join(D, "root")
for d in ("upper", "work", "root"):
    os.makedirs(os.path.join(D, d))
subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={D}/upper,workdir={D}/work", root], check=True)
nspawn = None
pid1 = None


def inside(*cmd, check=True, user=None, timeout=30):
    full = ["nsenter", "-t", str(pid1), "-a"]
    if user:
        full += ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"]
    r = subprocess.run(full + list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}: {r.stdout}{r.stderr}")
    return r


def role(i):
    r = inside("busctl", "get-property", f"org.prom.Prom1.Replica_{i}", "/org/prom/Prom1", "org.prom.Prom1.Replica", "Role",
               check=False)
    return r.stdout.split('"')[1] if r.returncode == 0 else None


def unit_state(u):
    return inside("systemctl", "is-active", u, check=False).stdout.strip()


try:
    # The container's own files, in the upper layer only.
    os.remove(os.path.join(root, "etc/machine-id"))
    wants = os.path.join(root, "etc/systemd/system")
    os.makedirs(os.path.join(wants, "multi-user.target.wants"), exist_ok=True)
    for masked in ("systemd-networkd-wait-online.service", "systemd-timesyncd.service", "keepalived.service",
                   "postgresql.service", "redis-server.service", "nginx.service", "memcached.service", "ssh.service",
                   "docker.service", "containerd.service"):
        p = os.path.join(wants, masked)
        if os.path.lexists(p):
            os.remove(p)
        os.symlink("/dev/null", p)
    etcd_unit = os.path.join(wants, "multi-user.target.wants", "etcd.service")
    if not os.path.lexists(etcd_unit):
        os.symlink("/lib/systemd/system/etcd.service", etcd_unit)
    subprocess.run(["cpack", "-G", "DEB"], cwd=a.build, check=True, capture_output=True)
    deb = max((f for f in os.listdir(a.build) if f.startswith("prom_") and f.endswith(".deb")),
              key=lambda f: os.path.getmtime(os.path.join(a.build, f)))
    shutil.copy(os.path.join(a.build, deb), os.path.join(root, "var", "tmp", "prom.deb"))
    with open(os.path.join(root, "etc/systemd/system/demo@.service"), "w") as f:
        f.write("[Unit]\nDescription=demo replica %i\n[Service]\nExecStart=/bin/sleep infinity\n")

    console = open(os.path.join(D, "console.log"), "w")
    nspawn = subprocess.Popen(["systemd-nspawn", "-q", "-D", root, "--boot", "--register=no", "--keep-unit", "--link-journal=no",
                               "--private-network", "-M", "promtest"], stdout=console, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)

    def find_pid1():
        r = subprocess.run(["pgrep", "-P", str(nspawn.pid), "-x", "systemd"], capture_output=True, text=True)
        return int(r.stdout.split()[0]) if r.returncode == 0 else None

    pid1 = wait_for(find_pid1, 30, "the container's systemd")
    t0 = time.monotonic()
    wait_for(lambda: inside("systemctl", "is-system-running", check=False).stdout.strip() in ("running", "degraded"), 90,
             "the container to boot")
    log(f"container booted in {time.monotonic() - t0:.1f} s")
    wait_for(lambda: inside("etcdctl", "endpoint", "health", check=False).returncode == 0, 30, "etcd in the container")
    r = inside("dpkg", "-i", "/var/tmp/prom.deb", timeout=120)
    assert inside("getent", "group", "prom", check=False).returncode == 0, "postinst did not create the prom group"
    log(f"installed {deb} with dpkg -i")
    with open(os.path.join(root, "etc/prom/prom.conf"), "w") as f:
        f.write(CONFIG)
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
finally:
    if pid1:
        subprocess.run(["nsenter", "-t", str(pid1), "-a", "journalctl", "--no-pager", "-n", "200", "-o", "short-monotonic"],
                       stdout=open(os.path.join(D, "journal.txt"), "w"), stderr=subprocess.STDOUT, timeout=30)
        subprocess.run(["nsenter", "-t", str(pid1), "-a", "systemctl", "poweroff"], capture_output=True, timeout=30)
    if nspawn:
        try:
            nspawn.wait(60)
        except subprocess.TimeoutExpired:
            nspawn.kill()
            nspawn.wait()
    subprocess.run(["umount", root])
    if sys.exc_info()[0] is not None:
        print(open(os.path.join(D, "journal.txt")).read()[-6000:] if os.path.exists(os.path.join(D, "journal.txt")) else "")
    if not a.keep and sys.exc_info()[0] is None:
        shutil.rmtree(D, ignore_errors=True)

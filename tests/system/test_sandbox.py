"""system tier: what an action can and cannot do inside the shipped prom@.service sandbox, and
what the shipped drop-in examples add. prom runs under real systemd (systemd-nspawn over an
overlay of the host root, as test_systemd.py), installed from the .deb; its ensure-active is a
probe script that tries what failover actions commonly do and writes down what worked. The
expectations below are the decisions documented in prom@.service and the examples; a change of
the sandbox that breaks a documented action kind fails here. Also checks the unit's
`systemd-analyze security` exposure, and that the package's maintainer scripts restart
instances on upgrade and stop and disable them on removal."""
import argparse
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import log, wait_for  # noqa: E402
from nspawn import Container, require_root_and_tools  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--build", required=True, help="build directory to package from")
ap.add_argument("--keep", action="store_true")
a = ap.parse_args()

require_root_and_tools()
SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

PROBE = r"""#!/bin/sh
# Runs as prom's ensure-active, inside prom@0.service's sandbox.
out=/var/lib/probe/result.tmp
mkdir -p /var/lib/probe && : > $out
p() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name ok" >> $out; else echo "$name fail" >> $out; fi; }
# documented as working in the shipped sandbox
p vip-ip-addr sh -c 'ip addr add 192.0.2.10/32 dev lo && ip addr del 192.0.2.10/32 dev lo'
p nft nft list ruleset
p write-var sh -c 'mkdir -p /var/lib/app && echo x > /var/lib/app/f'
p write-run sh -c 'mkdir -p /run/app && echo x > /run/app/f'
p write-srv sh -c 'mkdir -p /srv/app && echo x > /srv/app/f'
p write-opt sh -c 'mkdir -p /opt/app && echo x > /opt/app/f'
p write-tmp sh -c 'echo x > /tmp/f'
p chown sh -c 'echo x > /var/lib/app/owned && chown nobody:nogroup /var/lib/app/owned'
p runuser sh -c '[ "$(runuser -u nobody -- id -u)" = 65534 ]'
p see-other-user pgrep -u nobody -x sleep
p hidden-from-app-user sh -c '! runuser -u nobody -- pgrep -u root -x systemd'
p signal-other-user sh -c 'kill -0 $(pgrep -u nobody -x sleep)'
p start-unit systemctl start demo.service
p store-etcd etcdctl --endpoints http://127.0.0.1:2379 endpoint health
p read-root-home ls /root
p no-core-dumps sh -c '[ "$(ulimit -c)" = 0 ]'
p no-credentials-directory sh -c '[ -z "$CREDENTIALS_DIRECTORY" ]'
# documented as needing a drop-in, or as not available to actions
p af-packet python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)'
p write-etc sh -c 'echo x > /etc/app/role'
p write-usr-local sh -c 'echo x > /usr/local/probe'
p mount mount -t tmpfs none /mnt
p unshare unshare -U true
p jit-memory python3 -c 'import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)'
echo done >> $out
mv $out /var/lib/probe/result
exit 2
"""

WORKS = ["vip-ip-addr", "nft", "write-var", "write-run", "write-srv", "write-opt", "write-tmp", "chown", "runuser",
         "see-other-user", "hidden-from-app-user", "signal-other-user", "start-unit", "store-etcd", "read-root-home", "no-core-dumps",
         "no-credentials-directory"]
REFUSED = ["af-packet", "write-etc", "write-usr-local", "mount", "unshare", "jit-memory"]
# vip-actions.conf adds AF_PACKET and CAP_NET_RAW, write-paths.conf makes /etc/app writable.
WITH_DROP_INS = {"af-packet": "ok", "write-etc": "ok"}

CONFIG = """app-name = "probe"
replicas = ["0"]
[store]
endpoints = ["http://127.0.0.1:2379"]
[election]
timeout-ms = 10000
demote-margin-ms = 2500
monitor-interval-ms = 9000
[actions]
timeout-ms = 2000
ensure-active = "/usr/local/sbin/prom-probe"
ensure-passive = "exit 0"
"""

def probe_results():
    inside("rm", "-f", "/var/lib/probe/result")
    inside("systemctl", "start", "prom@0")
    path = c.path("/var/lib/probe/result")
    wait_for(lambda: os.path.exists(path), 60, "the probe action to finish")
    text = open(path).read()
    inside("systemctl", "stop", "prom@0")
    assert text.endswith("done\n"), text
    return dict(line.split() for line in text.splitlines()[:-1])


def exposure(unit):
    out = inside("systemd-analyze", "security", "--no-pager", unit).stdout
    return float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))


FILES = {"/etc/systemd/system/demo.service": "[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/sleep infinity\n",
         "/usr/local/sbin/prom-probe": (PROBE, 0o755)}
# ReadWritePaths= of the drop-in example needs /etc/app to exist.
with Container(a.build, "promsandbox", keep=a.keep, files=FILES, dirs=("/etc/app",)) as c:
    inside = c.run
    c.write("/etc/prom/prom.conf", CONFIG)
    # A process of another user, as an application's would be.
    inside("systemd-run", "--unit=other-user", "--uid=nobody", "/bin/sleep", "600")

    base = exposure("prom@0.service")
    log(f"systemd-analyze security prom@0.service: {base}")
    assert base <= 3.0, f"the shipped sandbox scores {base}, more exposed than the documented 2.9"

    got = probe_results()
    failures = [f"{k}: expected ok, got {got.get(k)}" for k in WORKS if got.get(k) != "ok"]
    failures += [f"{k}: expected refused, got {got.get(k)}" for k in REFUSED if got.get(k) != "fail"]
    assert not failures, "shipped sandbox:\n" + "\n".join(failures)
    log(f"shipped sandbox: {len(WORKS)} documented action kinds work, {len(REFUSED)} refused as documented")

    dropin = c.path("/etc/systemd/system/prom@.service.d")
    os.makedirs(dropin, exist_ok=True)
    for example in ("vip-actions.conf", "write-paths.conf"):
        shutil.copy(c.path(f"/usr/share/doc/prom/examples/{example}"), dropin)
    inside("systemctl", "daemon-reload")
    got = probe_results()
    expected = {**{k: "ok" for k in WORKS}, **{k: "fail" for k in REFUSED}, **WITH_DROP_INS}
    failures = [f"{k}: expected {v}, got {got.get(k)}" for k, v in expected.items() if got.get(k) != v]
    assert not failures, "with vip-actions.conf and write-paths.conf:\n" + "\n".join(failures)
    log("vip-actions.conf adds AF_PACKET (arping), write-paths.conf makes /etc/app writable; the rest unchanged")


    # The maintainer scripts: reinstalling (dpkg's upgrade path) restarts a running instance
    # on the new binary and it stays active; removing the package stops and disables it.
    inside("systemctl", "enable", "--now", "prom@0")
    show = lambda prop: inside("systemctl", "show", "-p", prop, "--value", "prom@0").stdout.strip()  # noqa: E731
    wait_for(lambda: show("StatusText").startswith("active"), 30, "prom@0 to be active")
    before, status = show("MainPID"), show("StatusText")
    inside("dpkg", "-i", "/var/tmp/prom.deb", timeout=120)
    wait_for(lambda: show("MainPID") not in ("0", before) and show("StatusText").startswith("active"), 30,
             "prom@0 restarted by the upgrade and active again")
    # A restart is a graceful stop (the active hands over) and a start: with this single
    # replica it is elected again, with a new token.
    log(f"upgrade: prom@0 restarted (pid {before} -> {show('MainPID')}): {status!r} -> {show('StatusText')!r}")
    inside("dpkg", "-r", "prom", timeout=120)
    state = inside("systemctl", "is-active", "prom@0", check=False).stdout.strip()
    assert state in ("inactive", "failed", "unknown"), state
    wants = c.path("/etc/systemd/system/multi-user.target.wants/prom@0.service")
    assert not os.path.lexists(wants), "dpkg -r left prom@0 enabled"
    log(f"dpkg -r: prom@0 is {state} and no longer enabled")
    log("the sandbox probe passed")

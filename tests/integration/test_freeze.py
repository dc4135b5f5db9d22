"""Freeze: SIGSTOP the active's prom and its replica for 2 x TTL, then SIGCONT (the replica
first: the dangerous order). A passive takes over while they are frozen. The resumed prom
demotes before doing anything else. The overlap in the history is reported; after prom
resumed it lasts only as long as its ensure-passive run. A token-checking resource shows that
no write carrying the old token is accepted after the new active wrote."""
import os
import signal
import sys
import time

from harness import Cluster, Test, log, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import fenced_resource  # noqa: E402

RESOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "fenced_resource.py")
SERVICE = r"""#!/bin/sh
# ensure.sh ID active|passive: the replica is a writer to a fenced resource.
id=$1; mode=$2; dir=$(dirname "$0"); pidf="$dir/writer.$id.pid"
running() { [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }
if [ "$mode" = active ]; then
  running && exit 0
  python3 RESOURCE writer "$dir/resource.json" "$id" "$PROM_FENCING_TOKEN" >/dev/null 2>&1 &
  echo $! > "$pidf"
  echo "start $id $PROM_FENCING_TOKEN $(date +%s.%N)" >> "$dir/history"
  exit 2
fi
running || exit 0
kill -9 "$(cat "$pidf")"; rm -f "$pidf"
echo "stop $id $PROM_FENCING_TOKEN $(date +%s.%N)" >> "$dir/history"
exit 2
""".replace("RESOURCE", RESOURCE)

TTL = 2.0
with Test("freeze") as t:
    etcd = t.etcd(1)
    c = t.cluster(etcd, timeout_ms=int(TTL * 1000), margin_ms=500)
    with open(c.script, "w") as f:
        f.write(SERVICE)

    def writer_pid(i):
        try:
            with open(os.path.join(c.dir, f"writer.{i}.pid")) as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            return None

    def active():
        alive = [i for i in c.ids if writer_pid(i)]
        return alive[0] if len(alive) == 1 else None

    c.start()
    old = wait_for(active, 2 * TTL, "one active writer")
    old_token = etcd.get("/prom/itest/leader")["create_revision"]
    time.sleep(1.0)
    wpid = writer_pid(old)
    frozen_at = time.time()
    c.signal(old, signal.SIGSTOP)
    os.kill(wpid, signal.SIGSTOP)
    new = wait_for(lambda: next((i for i in c.ids if i != old and writer_pid(i)), None), TTL + 2, "a new active")
    new_token = etcd.get("/prom/itest/leader")["create_revision"]
    time.sleep(2 * TTL - (time.time() - frozen_at))
    os.kill(wpid, signal.SIGCONT)
    time.sleep(0.3)
    resumed_at = time.time()
    c.signal(old, signal.SIGCONT)
    wait_for(lambda: writer_pid(old) is None, 5, "the resumed replica to be stopped")
    time.sleep(0.5)

    ev = c.events()
    stop = [e[0] for e in ev if e[1] == "stop" and e[2] == old][-1]
    start = [e[0] for e in ev if e[1] == "start" and e[2] == new][-1]
    overlap = stop - start
    log(f"frozen {old} (token {old_token}) for {2 * TTL:.1f} s; {new} (token {new_token}) active "
        f"{start - frozen_at:.3f} s after the freeze")
    log(f"measured overlap {overlap:.3f} s; after prom resumed it took {stop - resumed_at:.3f} s to stop the replica")
    assert new_token > old_token
    assert stop - resumed_at < 1.0, "ensure-passive after resume took too long"
    # The first thing the resumed prom did was to demote.
    after = c.log(old).split("role promoting -> active", 1)[1]
    first_role_change = next(line for line in after.splitlines() if "role " in line and " -> " in line)
    assert "active -> demoting" in first_role_change and "lease deadline passed" in first_role_change, first_role_change
    # The history checker sees exactly this overlap and nothing else wrong.
    overlaps = c.check_history(allow_overlap=overlap + 0.001)
    assert len(overlaps) == 1, overlaps
    # Fencing: after the new active's first accepted write, no write with the old token got in.
    res = fenced_resource.load(os.path.join(c.dir, "resource.json"))["log"]
    first_new = next(w["t"] for w in res if w["token"] == new_token and w["accepted"])
    late_old = [w for w in res if w["token"] == old_token and w["t"] > first_new]
    assert late_old, "the resumed replica never tried to write (the scenario did not exercise fencing)"
    assert not any(w["accepted"] for w in late_old), late_old
    log(f"{len(late_old)} write(s) with the old token {old_token} after the new active wrote: all rejected")

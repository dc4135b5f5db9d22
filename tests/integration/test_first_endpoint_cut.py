"""A cut-off etcd member that is the *first* endpoint (issue 9 item 1). Three etcd members,
every replica with its own black-holing proxy in front of each. The active's node is cut off
entirely, and with it the member the passives use first: their requests and their watch on
that member get no answer, and no TCP connection closes (a cut link closes none). The passives
must move their requests and their watch to a member that answers within about TTL/3 + the
request timeout, so that the takeover comes at about TTL + 0.5 s (etcd's expiry) after the
cut, not when TCP gives up (9.3 s and 11.2 s at TTL 3 s before the fix)."""
import time

from harness import Test, log

TTL, MARGIN = 3.0, 0.75
BOUND = TTL + 2.0  # lease expiry (TTL + 0.5 s) + the move to another member + ensure-active
with Test("first-endpoint-cut") as t:
    etcd = t.etcd(3)
    c = t.cluster(etcd, proxies=True, timeout_ms=int(TTL * 1000), margin_ms=int(MARGIN * 1000), monitor_ms=500)
    c.start()
    old = c.wait_one_active(3 * TTL)
    time.sleep(TTL)  # settled: every passive's requests and watch are on member 0, the first endpoint
    t0 = time.time()
    for p in c.proxies[old]:
        p.cut()
    for i in c.ids:
        c.proxies[i][0].cut()
    new = c.wait_one_active(4 * TTL, exclude=(old,))
    ev = c.events()
    stop = [e[0] for e in ev if e[1] == "stop" and e[2] == old][-1]
    start = [e[0] for e in ev if e[1] == "start" and e[2] == new][-1]
    log(f"cut node of {old} (first endpoint) at 0: it demoted at {stop - t0:.3f} s; {new} took over at "
        f"{start - t0:.3f} s (bound {BOUND:.1f} s)")
    assert stop < start, "the new active started before the old one stopped"
    assert start - t0 <= BOUND, f"takeover {start - t0:.3f} s after the cut, bound {BOUND} s"
    c.check_history()

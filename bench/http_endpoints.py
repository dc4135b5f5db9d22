"""Cost of the health and metrics endpoints (src/http) on the sd-event loop: 2000 keep-alive
GETs of /active and of /metrics against tests/http/fake_snapshot_server, latency median and
p99, and the server's CPU time and thread count afterwards.
Usage: python3 bench/http_endpoints.py --server build/tests/http_fake_server"""
import argparse
import http.client
import os
import subprocess
import time

ap = argparse.ArgumentParser()
ap.add_argument("--server", required=True)
ap.add_argument("--requests", type=int, default=2000)
a = ap.parse_args()
p = subprocess.Popen([a.server], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
port = int(p.stdout.readline().split()[1])
for path in ("/active", "/metrics"):
    c = http.client.HTTPConnection("127.0.0.1", port)
    lat = []
    for _ in range(a.requests):
        t0 = time.perf_counter()
        c.request("GET", path)
        c.getresponse().read()
        lat.append(time.perf_counter() - t0)
    c.close()
    lat.sort()
    print(f"{path}: {a.requests} keep-alive GETs, median {lat[len(lat) // 2] * 1e6:.0f} us, "
          f"p99 {lat[len(lat) * 99 // 100] * 1e6:.0f} us")
with open(f"/proc/{p.pid}/stat") as f:
    st = f.read().split()
cpu_ms = (int(st[13]) + int(st[14])) * 1000 / os.sysconf("SC_CLK_TCK")
print(f"server CPU for {2 * a.requests} requests: {cpu_ms:.0f} ms; threads {st[19]}")
p.stdin.close()
p.wait()

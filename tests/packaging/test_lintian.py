"""packaging tier: builds the .deb (and its -dbgsym .ddeb) with `cpack -G DEB` from a build
directory, as scripts/test and the system tier do, and runs lintian on both. Any lintian error
fails; warnings are printed and fail too unless listed in ACCEPTED_WARNINGS with the reason.
Also checks what lintian does not: the maintainer scripts an admin expects, the dependencies,
that the shipped binaries carry no debug information while the .ddeb does, and that
`mandoc -Tlint` is silent on the man pages."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

# Warnings accepted on purpose, with why (none today: the package is lintian-clean).
ACCEPTED_WARNINGS = {}

ap = argparse.ArgumentParser()
ap.add_argument("--build", required=True, help="configured and built build directory")
a = ap.parse_args()

for tool in ("cpack", "lintian", "dpkg-deb"):
    if not shutil.which(tool):
        sys.exit(f"{tool} is missing")

out = tempfile.mkdtemp(prefix="prom-lintian-")
failures = []
try:
    r = subprocess.run(["cpack", "-G", "DEB", "--config", os.path.join(a.build, "CPackConfig.cmake"), "-B", out],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"cpack failed:\n{r.stdout}{r.stderr}")
    debs = sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".deb"))
    ddebs = sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".ddeb"))
    if len(debs) != 1 or len(ddebs) != 1:
        sys.exit(f"expected one .deb and one -dbgsym .ddeb, got {os.listdir(out)}")
    deb, ddeb = debs[0], ddebs[0]

    r = subprocess.run(["lintian", "--tag-display-limit", "0", deb, ddeb], capture_output=True, text=True)
    tags = [line for line in r.stdout.splitlines() if line[:2] in ("E:", "W:")]
    print(r.stdout, end="")
    for line in tags:
        tag = line.split()[2]
        if line.startswith("E:"):
            failures.append(f"lintian error: {line}")
        elif tag not in ACCEPTED_WARNINGS:
            failures.append(f"lintian warning not explained in ACCEPTED_WARNINGS: {line}")
    print(f"lintian: {sum(t.startswith('E:') for t in tags)} errors, {sum(t.startswith('W:') for t in tags)} warnings")

    fields = subprocess.run(["dpkg-deb", "-f", deb], capture_output=True, text=True, check=True).stdout
    control = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line and not line.startswith(" "))
    if "dbus" not in [d.strip().split()[0] for d in control.get("Depends", "").split(",")]:
        failures.append(f"Depends lacks dbus: {control.get('Depends')}")
    if "etcd-server" not in control.get("Recommends", ""):
        failures.append(f"Recommends lacks etcd-server: {control.get('Recommends')}")

    ctl = os.path.join(out, "control")
    subprocess.run(["dpkg-deb", "-e", deb, ctl], check=True)
    for script in ("preinst", "postinst", "prerm", "postrm"):
        p = os.path.join(ctl, script)
        if not os.access(p, os.X_OK):
            failures.append(f"no executable {script}")
    prerm = open(os.path.join(ctl, "prerm")).read()
    if "stop 'prom@*.service'" not in prerm:
        failures.append("prerm does not stop the prom@ instances")
    if "prom@*.service" not in open(os.path.join(ctl, "postrm")).read():
        failures.append("postrm does not disable the prom@ instances")

    tree = os.path.join(out, "tree")
    subprocess.run(["dpkg-deb", "-x", deb, tree], check=True)
    subprocess.run(["dpkg-deb", "-x", ddeb, tree], check=True)
    for binary in ("usr/bin/prom", "usr/bin/promctl"):
        sections = subprocess.run(["readelf", "-S", "-W", os.path.join(tree, binary)], capture_output=True, text=True,
                                  check=True).stdout
        if ".debug_info" in sections or ".symtab" in sections:
            failures.append(f"{binary} is not stripped")
        note = subprocess.run(["readelf", "-n", os.path.join(tree, binary)], capture_output=True, text=True).stdout
        build_id = note.split("Build ID: ")[1].split()[0]
        debug = os.path.join(tree, "usr/lib/debug/.build-id", build_id[:2], build_id[2:] + ".debug")
        if not os.path.exists(debug):
            failures.append(f"no debug file {debug} for {binary} in the .ddeb")
        elif ".debug_info" not in subprocess.run(["readelf", "-S", "-W", debug], capture_output=True, text=True).stdout:
            failures.append(f"{debug} holds no .debug_info")

    # The man pages as written (lintian checks the compressed copies less strictly): mandoc's
    # lint, style included, has nothing to say about them.
    man = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "man")
    if shutil.which("mandoc"):
        for page in sorted(os.listdir(man)):
            r = subprocess.run(["mandoc", "-Tlint", os.path.join(man, page)], capture_output=True, text=True)
            if r.stdout or r.stderr:
                failures.append(f"mandoc -Tlint {page}:\n{r.stdout}{r.stderr}")
    else:
        print("mandoc is not installed (apt-get install mandoc): man pages not linted")
finally:
    shutil.rmtree(out, ignore_errors=True)

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)

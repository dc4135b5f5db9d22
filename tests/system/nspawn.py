"""Real systemd as PID 1 in a systemd-nspawn container over an overlay of the host root, with
prom installed from the .deb that cpack builds (dpkg -i inside, as an operator would). Used by
test_systemd.py and test_fence.py (recipe and pitfalls: DESIGN.md §4)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import log, wait_for  # noqa: E402

# Units of the host image that a test container must not boot.
MASKED = ("systemd-networkd-wait-online.service", "systemd-timesyncd.service", "keepalived.service",
          "postgresql.service", "redis-server.service", "nginx.service", "memcached.service", "ssh.service",
          "docker.service", "containerd.service")


def require_root_and_tools():
    if os.geteuid() != 0:
        sys.exit("the system tier needs root (systemd-nspawn, overlay mounts); CI runs it as root")
    for tool in ("systemd-nspawn", "nsenter", "cpack"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (package systemd-container / cmake)")


class Container:
    """One booted container with etcd running and prom's .deb installed. Use as a context manager:
    it powers off and unmounts also when the test fails."""

    def __init__(self, build, name, keep=False, files=None, dirs=()):
        self.build = build
        self.files = files or {}  # path inside -> content or (content, mode), written before the boot
        self.dirs = dirs          # directories to create before the boot
        self.name = name
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix=f"prom-{name}-")
        self.root = os.path.join(self.dir, "root")
        self.nspawn = None
        self.pid1 = None
        self.failed = False

    def path(self, p):
        """A path inside the container, seen from the host (the overlay's merged view)."""
        return os.path.join(self.root, p.lstrip("/"))

    def write(self, p, text, mode=0o644):
        full = self.path(p)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
        os.chmod(full, mode)

    def __enter__(self):
        for d in ("upper", "work", "root"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir=/,upperdir={self.dir}/upper,workdir={self.dir}/work", self.root], check=True)
        try:
            self._boot()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _boot(self):
        os.remove(self.path("/etc/machine-id"))
        units = self.path("/etc/systemd/system")
        os.makedirs(os.path.join(units, "multi-user.target.wants"), exist_ok=True)
        for masked in MASKED:
            p = os.path.join(units, masked)
            if os.path.lexists(p):
                os.remove(p)
            os.symlink("/dev/null", p)
        etcd_unit = os.path.join(units, "multi-user.target.wants", "etcd.service")
        if not os.path.lexists(etcd_unit):
            os.symlink("/lib/systemd/system/etcd.service", etcd_unit)
        subprocess.run(["cpack", "-G", "DEB"], cwd=self.build, check=True, capture_output=True)
        deb = max((f for f in os.listdir(self.build) if f.startswith("prom_") and f.endswith(".deb")),
                  key=lambda f: os.path.getmtime(os.path.join(self.build, f)))
        shutil.copy(os.path.join(self.build, deb), self.path("/var/tmp/prom.deb"))
        for p, text in self.files.items():
            self.write(p, *(text if isinstance(text, tuple) else (text,)))
        for d in self.dirs:
            os.makedirs(self.path(d), exist_ok=True)
        # Container images often carry a policy-rc.d that forbids maintainer scripts to start or
        # stop services (exit 101); the container is to behave like a normal host.
        if os.path.lexists(self.path("/usr/sbin/policy-rc.d")):
            os.remove(self.path("/usr/sbin/policy-rc.d"))
        console = open(os.path.join(self.dir, "console.log"), "w")
        self.nspawn = subprocess.Popen(["systemd-nspawn", "-q", "-D", self.root, "--boot", "--register=no", "--keep-unit",
                                        "--link-journal=no", "--private-network", "-M", self.name],
                                       stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)

        def find_pid1():
            r = subprocess.run(["pgrep", "-P", str(self.nspawn.pid), "-x", "systemd"], capture_output=True, text=True)
            return int(r.stdout.split()[0]) if r.returncode == 0 else None

        self.pid1 = wait_for(find_pid1, 30, "the container's systemd")
        t0 = time.monotonic()
        wait_for(lambda: self.run("systemctl", "is-system-running", check=False).stdout.strip() in ("running", "degraded"),
                 90, "the container to boot")
        log(f"container {self.name} booted in {time.monotonic() - t0:.1f} s")
        wait_for(lambda: self.run("etcdctl", "endpoint", "health", check=False).returncode == 0, 30, "etcd in the container")
        self.run("dpkg", "-i", "/var/tmp/prom.deb", timeout=120)
        log(f"installed {deb} with dpkg -i")

    def run(self, *cmd, check=True, timeout=30, user=None):
        full = ["nsenter", "-t", str(self.pid1), "-a"]
        if user:
            full += ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"]
        r = subprocess.run(full + list(cmd), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def show(self, unit, prop):
        return self.run("systemctl", "show", "-p", prop, "--value", unit, check=False).stdout.strip()

    def journal(self, *args):
        return self.run("journalctl", "--no-pager", *args, check=False).stdout

    def __exit__(self, kind, value, tb):
        if self.pid1:
            with open(os.path.join(self.dir, "journal.txt"), "w") as f:
                subprocess.run(["nsenter", "-t", str(self.pid1), "-a", "journalctl", "--no-pager", "-n", "400", "-o",
                                "short-monotonic"], stdout=f, stderr=subprocess.STDOUT, timeout=30)
            subprocess.run(["nsenter", "-t", str(self.pid1), "-a", "systemctl", "poweroff"], capture_output=True, timeout=30)
        if self.nspawn:
            try:
                self.nspawn.wait(60)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        subprocess.run(["umount", self.root])
        if kind is not None or self.failed:
            j = os.path.join(self.dir, "journal.txt")
            if os.path.exists(j):
                print(open(j).read()[-8000:])
            log(f"container files kept in {self.dir}")
        elif not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

"""integration: prom against a real etcd that serves clients over TLS and requires client
certificates (--client-cert-auth), with certificates this test makes with openssl. The right CA
with a valid client certificate works (a replica becomes active); a wrong CA, no client
certificate and an expired client certificate are refused, no replica becomes active, and
prom's log says "TLS:" and which setting to check."""
import os
import ssl
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ETCD, Etcd, Test, log, wait_for  # noqa: E402


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}: {r.stderr}")


CA_CONF = """[ca]
default_ca = test_ca
[test_ca]
dir = .
database = index.txt
new_certs_dir = .
certificate = ca.pem
private_key = ca.key
serial = serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
"""


def make_certs(d):
    """ca (right), other-ca (wrong), server (SAN 127.0.0.1), client, client-expired (by ca)."""
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj",
                f"/CN=prom test {ca}", cwd=d)
    # etcd's HTTP gateway dials etcd's own gRPC port with the server certificate: with
    # --client-cert-auth that certificate must be valid for client authentication too.
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth"),
                      ("client", "extendedKeyUsage=clientAuth"), ("client-expired", "extendedKeyUsage=clientAuth")):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=prom test {name}", cwd=d)
        if name != "client-expired":
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days",
                    "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    # x509 -req cannot backdate; openssl ca can: valid for one day in 2020.
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write(CA_CONF)
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    openssl("ca", "-batch", "-config", "ca.cnf", "-in", "client-expired.csr", "-out", "client-expired.pem", "-notext",
            "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", "client-expired.ext", cwd=d)
    for key in os.listdir(d):
        if key.endswith(".key"):
            os.chmod(os.path.join(d, key), 0o600)


class TlsEtcd(Etcd):
    """One etcd member serving clients on https:// only, client certificates required."""

    def __init__(self, workdir, certs):
        super().__init__(workdir, 1)
        self.certs = certs

    @property
    def endpoints(self):
        return [f"https://127.0.0.1:{p}" for p in self.client]

    def start(self, i=None):
        c = self.certs
        cmd = [ETCD, "--name", "m0", "--data-dir", os.path.join(self.dir, "m0.etcd"), "--listen-client-urls",
               self.endpoints[0], "--advertise-client-urls", self.endpoints[0], "--listen-peer-urls",
               f"http://127.0.0.1:{self.peer[0]}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer[0]}",
               "--initial-cluster", self.cluster, "--cert-file", f"{c}/server.pem", "--key-file", f"{c}/server.key",
               "--client-cert-auth", "--trusted-ca-file", f"{c}/ca.pem"]
        self.procs[0] = subprocess.Popen(cmd, stdout=open(os.path.join(self.dir, "etcd0.log"), "a"), stderr=subprocess.STDOUT)
        self.started[0] = True
        wait_for(self.healthy, 30, "etcd with TLS to become healthy")

    def healthy(self):
        ctx = ssl.create_default_context(cafile=f"{self.certs}/ca.pem")
        ctx.load_cert_chain(f"{self.certs}/client.pem", f"{self.certs}/client.key")
        try:
            with urllib.request.urlopen(self.endpoints[0] + "/health", timeout=1, context=ctx) as r:
                return b'"true"' in r.read()
        except Exception:
            return False


with Test("etcd-tls") as t:
    certs = os.path.join(t.dir, "certs")
    make_certs(certs)
    etcd = TlsEtcd(t.dir, certs)
    t.etcds.append(etcd)
    etcd.start()
    log(f"etcd serves {etcd.endpoints[0]} with client-cert-auth")

    def cluster(name, **tls):
        c = t.cluster(etcd, subdir=name, replicas=1, timeout_ms=3000, margin_ms=750)
        lines = "".join(f'{k} = "{v}"\n' for k, v in tls.items())
        path = c.conf("0")
        text = open(path).read().replace("[store]\n", "[store]\n" + lines, 1)
        with open(path, "w") as f:
            f.write(text)
        return c

    good = cluster("right-ca", **{"ca-file": f"{certs}/ca.pem", "cert-file": f"{certs}/client.pem",
                                  "key-file": f"{certs}/client.key"})
    good.start()
    good.wait_one_active(15)
    assert "TLS:" not in good.log("0"), good.log("0")
    good.stop()
    log("right CA and client certificate: the replica became active")

    refused = {
        "wrong-ca": ({"ca-file": f"{certs}/other-ca.pem", "cert-file": f"{certs}/client.pem",
                      "key-file": f"{certs}/client.key"}, "ca-file"),
        "no-client-cert": ({"ca-file": f"{certs}/ca.pem"}, "cert-file"),
        "expired-client-cert": ({"ca-file": f"{certs}/ca.pem", "cert-file": f"{certs}/client-expired.pem",
                                 "key-file": f"{certs}/client-expired.key"}, "cert-file"),
    }
    for name, (tls, check) in refused.items():
        c = cluster(name, **tls)
        c.start()
        text = wait_for(lambda: (lambda s: s if "TLS:" in s else None)(c.log("0")), 15, f"{name}: a TLS message in the log")
        line = next(line for line in text.splitlines() if "TLS:" in line)
        assert check in line, f"{name}: the TLS message does not say to check {check}: {line}"
        time.sleep(0.5)
        assert c.actives() == [], f"{name}: a replica became active"
        c.stop()
        log(f"{name}: refused; prom says: {line.split('TLS:', 1)[1].strip()[:160]}")

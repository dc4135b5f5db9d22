"""prom --check-config catches what operators get wrong before a replica wins and fails: a
missing action program (at PATH:LINE:COLUMN of the key), credentials in an endpoint URL (without
repeating the password), and it is silent on a correct configuration."""
import os
import subprocess

from harness import Test, log

with Test("check-config") as t:
    script = os.path.join(t.dir, "ensure.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(script, 0o755)

    def check(text, *extra):
        path = os.path.join(t.dir, "prom.conf")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([t.a.prom, "--check-config", "-c", path, *extra], capture_output=True, text=True, timeout=30)
        log(f"exit {r.returncode}: {r.stderr.strip()}")
        return path, r

    head = 'app-name = "app"\nreplicas = ["0", "1"]\n[actions]\n'

    # A correct configuration: exit 0 and not one warning.
    path, r = check(head + f'ensure-active = ["{script}", "%i", "active"]\nensure-passive = "{script} %i passive"\n')
    assert r.returncode == 0 and r.stderr == "", r

    # The program of an argv action does not exist: exit 78 (EX_CONFIG), placed at the key.
    path, r = check(head + f'ensure-active = ["{t.dir}/missing.sh", "%i"]\nensure-passive = "{script} %i passive"\n')
    assert r.returncode == 78, r
    assert f"{path}:4:17: actions.ensure-active: program {t.dir}/missing.sh does not exist" in r.stderr, r.stderr

    # The first word of a shell action, not executable.
    os.chmod(script, 0o644)
    path, r = check(head + f'ensure-active = ["/bin/true"]\nensure-passive = "{script} %i passive"\n')
    assert r.returncode == 78, r
    assert f"{path}:5:18: actions.ensure-passive: program {script} is not executable (mode 0644)" in r.stderr, r.stderr
    os.chmod(script, 0o755)

    # Only this replica's actions with --id: replica 1's program lives on node 1.
    text = head + f'ensure-active = ["/bin/true"]\nensure-passive = ["/bin/true"]\n[replica.1]\nensure-active = ["/opt/node1-only"]\n'
    path, r = check(text, "--id", "0")
    assert r.returncode == 0, r
    path, r = check(text, "--id", "1")
    assert r.returncode == 78 and f"{path}:7:17: replica.1.ensure-active: program /opt/node1-only does not exist" in r.stderr, r

    # Credentials in an endpoint URL: refused, and the password is not printed.
    path, r = check(head + 'ensure-active = ["/bin/true"]\nensure-passive = ["/bin/true"]\n'
                    '[store]\nendpoints = ["http://root:s3cr3t@127.0.0.1:2379"]\n')
    assert r.returncode == 78 and "http://***@127.0.0.1:2379 carries credentials in the URL" in r.stderr, r
    assert "s3cr3t" not in r.stderr + r.stdout, r
    t.ok = True

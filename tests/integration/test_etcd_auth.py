"""etcd with authentication: prom logs in with store.userid and the password from
store.password-file (token in Authorization, re-authenticated when it expires), with a role
limited to its prefix; a wrong password is a clear error and no replica becomes active."""
import os
import time

from harness import Test, log, wait_for


with Test("etcd-auth") as t:
    etcd = t.etcd(1)
    ep = etcd.endpoints[0]
    etcd.enable_auth("prom", "s3cret")
    pw = os.path.join(t.dir, "etcd.pw")
    with open(pw, "w") as f:
        f.write("s3cret\n")
    c = t.cluster(etcd)
    for i in c.ids:
        with open(c.conf(i)) as f:
            text = f.read()
        with open(c.conf(i), "w") as f:
            f.write(text.replace("connect-timeout-ms = 300", f'connect-timeout-ms = 300\nuserid = "prom"\npassword-file = "{pw}"'))
    c.start()
    active = c.wait_one_active(6)
    log(f"with etcd authentication: replica {active} active")
    # Requests wait for the token being fetched (issue 9 item 3): none goes out without one.
    for i in c.ids:
        assert "user name is empty" not in c.log(i), f"replica {i} sent a request without its token:\n" + c.log(i)
    old = active
    c.crash_node(old)
    active = c.wait_one_active(5, exclude=(old,))
    log(f"node crash with authentication: {active} took over")
    c.start(old)
    time.sleep(2)
    c.check_history()
    c.stop()

    # a wrong password: a clear error, nobody active
    with open(pw, "w") as f:
        f.write("wrong\n")
    for i in c.ids:
        open(os.path.join(c.dir, f"state.{i}"), "w").write("passive\n")
    c.start()
    wait_for(lambda: "authentication failed" in c.log("0"), 10, "the authentication error in the log")
    time.sleep(3)
    assert not c.actives(), c.actives()
    log("a wrong password: 'authentication failed' logged, no replica active")

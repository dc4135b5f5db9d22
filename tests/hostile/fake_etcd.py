"""A fake etcd v3 JSON gateway for the hostile tier: a small, correct in-memory etcd (leases,
the leader key, txn, watch) that can answer one kind of request badly on purpose. It speaks
raw HTTP/1.1 over a socket so that it can also send what no HTTP library would: truncated
chunks, endless or dripping bodies, garbage status lines. It binds 127.0.0.1 only.

It also keeps the facts the checker needs: when each lease was granted or renewed and for
how long prom asked, so "active only while the store held its lease" can be checked against
what the store really did, whatever TTL a hostile reply claimed."""
import base64
import json
import socket
import threading
import time


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


class Store:
    """The in-memory etcd: one key space, leases, revisions, watchers."""

    def __init__(self):
        self.lock = threading.Condition()
        self.rev = 1
        self.kv = {}  # key bytes -> dict(value, create, mod, version, lease)
        self.leases = {}  # id -> dict(ttl, expiry)
        self.events = []  # (rev, key, type, kv-json)
        self.next_lease = 7587869000000000001
        self.acks = []  # (time, lease, requested ttl): each grant or successful keepalive
        threading.Thread(target=self._expire, daemon=True).start()

    def _kv_json(self, key):
        e = self.kv[key]
        d = {"key": b64(key), "create_revision": str(e["create"]), "mod_revision": str(e["mod"]),
             "version": str(e["version"])}
        if e["value"]:
            d["value"] = b64(e["value"])
        if e["lease"]:
            d["lease"] = str(e["lease"])
        return d

    def header(self):
        return {"cluster_id": "1", "member_id": "2", "revision": str(self.rev), "raft_term": "2"}

    def put(self, key, value, lease):
        self.rev += 1
        old = self.kv.get(key)
        self.kv[key] = {"value": value, "create": old["create"] if old else self.rev, "mod": self.rev,
                        "version": (old["version"] + 1) if old else 1, "lease": lease}
        self.events.append((self.rev, key, "PUT", self._kv_json(key)))
        self.lock.notify_all()

    def delete(self, key):
        if key not in self.kv:
            return False
        self.rev += 1
        del self.kv[key]
        self.events.append((self.rev, key, "DELETE", {"key": b64(key), "mod_revision": str(self.rev)}))
        self.lock.notify_all()
        return True

    def _expire(self):
        while True:
            time.sleep(0.05)
            with self.lock:
                now = time.monotonic()
                for lid, l in list(self.leases.items()):
                    if l["expiry"] <= now:
                        del self.leases[lid]
                        for k in [k for k, e in self.kv.items() if e["lease"] == lid]:
                            self.delete(k)

    def grant(self, ttl):
        ttl = max(1, min(int(ttl), 3600))
        with self.lock:
            lid = self.next_lease
            self.next_lease += 1
            self.leases[lid] = {"ttl": ttl, "expiry": time.monotonic() + ttl}
            self.acks.append((time.time(), lid, ttl))
            return lid, ttl

    def keepalive(self, lid):
        with self.lock:
            l = self.leases.get(lid)
            if not l:
                return None
            l["expiry"] = time.monotonic() + l["ttl"]
            self.acks.append((time.time(), lid, l["ttl"]))
            return l["ttl"]

    def revoke(self, lid):
        with self.lock:
            if self.leases.pop(lid, None) is None:
                return False
            for k in [k for k, e in self.kv.items() if e["lease"] == lid]:
                self.delete(k)
            return True


def int_of(v, default=0):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


class FakeEtcd:
    """One listening socket; `mode` says which replies go bad (see MODES in the test)."""

    def __init__(self, mode="healthy"):
        self.mode = mode
        self.store = Store()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = {}  # path -> count
        self.watch_opens = 0
        self.watch_key = None
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    # --- HTTP ------------------------------------------------------------------------------
    def _serve(self, c):
        buf = b""
        try:
            while not self.stopped:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
                n = int(headers.get("content-length", "0"))
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                self.requests[path] = self.requests.get(path, 0) + 1
                try:
                    req = json.loads(body or b"{}")
                except ValueError:
                    req = {}
                if not self._handle(c, path, req, headers):
                    return
        except (OSError, ValueError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    @staticmethod
    def send(c, status, body, ctype="application/json", extra=""):
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        c.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)

    @staticmethod
    def chunk(c, data):
        if isinstance(data, str):
            data = data.encode()
        c.sendall(b"%x\r\n" % len(data) + data + b"\r\n")

    def _handle(self, c, path, req, headers):
        """Returns False to close the connection."""
        m = self.mode
        unary = path != "/v3/watch"
        target = MODE_TARGET.get(m, "all")
        hit = unary and (target == "all" or path.endswith(target))
        if hit and m in RAW:
            return RAW[m](self, c, path, req)
        if path == "/v3/watch":
            return self._watch(c, req)
        reply = self._etcd(path, req, headers)
        if reply is None:
            self.send(c, "404 Not Found", "404 page not found\n", "text/plain")
            return True
        status, obj = reply
        if m in REORDER and path == REORDER[m]:
            # Another client writes (in the watched range) while this reply is on its way, so the
            # watch delivers a newer revision before it: replies to concurrent requests and watch
            # events arrive in any order, all of them linearizable.
            with self.store.lock:
                self.store.put((self.watch_key or b"/") + b"another-client", b"x", 0)
            time.sleep(0.3)
        if hit and m in MUTATE:
            obj = MUTATE[m](self, path, obj)
        self.send(c, status, obj)
        return True

    # --- etcd semantics --------------------------------------------------------------------
    def _etcd(self, path, req, headers):
        s = self.store
        if path == "/v3/auth/authenticate":
            return "200 OK", {"header": s.header(), "token": "tok.1"}
        if path == "/v3/lease/grant":
            lid, ttl = s.grant(int_of(req.get("TTL"), 1))
            with s.lock:
                return "200 OK", {"header": s.header(), "ID": str(lid), "TTL": str(ttl)}
        if path == "/v3/lease/keepalive":
            lid = int_of(req.get("ID"))
            ttl = s.keepalive(lid)
            r = {"header": s.header(), "ID": str(lid)}
            if ttl:
                r["TTL"] = str(ttl)
            return "200 OK", {"result": r}
        if path == "/v3/lease/revoke":
            if s.revoke(int_of(req.get("ID"))):
                return "200 OK", {"header": s.header()}
            return "404 Not Found", {"error": "etcdserver: requested lease not found", "code": 5,
                                     "message": "etcdserver: requested lease not found"}
        with s.lock:
            if path == "/v3/kv/range":
                return "200 OK", self._range(req)
            if path == "/v3/kv/put":
                s.put(base64.b64decode(req.get("key", "")), base64.b64decode(req.get("value", "")), int_of(req.get("lease")))
                return "200 OK", {"header": s.header()}
            if path == "/v3/kv/txn":
                ok = True
                for cmp in req.get("compare", []):
                    k = base64.b64decode(cmp.get("key", ""))
                    have = s.kv[k]["create"] if k in s.kv else 0
                    ok = ok and have == int_of(cmp.get("create_revision"))
                responses = []
                for op in req.get("success" if ok else "failure", []):
                    if "request_put" in op:
                        p = op["request_put"]
                        s.put(base64.b64decode(p["key"]), base64.b64decode(p.get("value", "")), int_of(p.get("lease")))
                        responses.append({"response_put": {"header": s.header()}})
                    elif "request_delete_range" in op:
                        s.delete(base64.b64decode(op["request_delete_range"]["key"]))
                        responses.append({"response_delete_range": {"header": s.header()}})
                    elif "request_range" in op:
                        responses.append({"response_range": self._range(op["request_range"])})
                r = {"header": s.header(), "responses": responses}
                if ok:
                    r["succeeded"] = True
                return "200 OK", r
        return None

    def _range(self, req):
        s = self.store
        key = base64.b64decode(req.get("key", ""))
        end = base64.b64decode(req["range_end"]) if req.get("range_end") else None
        keys = sorted(k for k in s.kv if (k == key if end is None else key <= k < end))
        r = {"header": s.header()}
        if keys:
            r["count"] = str(len(keys))
            if not req.get("count_only"):
                r["kvs"] = [s._kv_json(k) for k in keys]
        return r

    def _watch(self, c, req):
        self.watch_opens += 1
        m = self.mode
        cr = req.get("create_request", {})
        key = base64.b64decode(cr.get("key", ""))
        end = base64.b64decode(cr["range_end"]) if cr.get("range_end") else None
        self.watch_key = key
        start = int_of(cr.get("start_revision"))
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        if m in WATCH:
            return WATCH[m](self, c, key, start)
        s = self.store
        with s.lock:
            created = {"result": {"header": s.header(), "created": True}}
        self.chunk(c, json.dumps(created) + "\n")
        sent = start - 1
        while not self.stopped:
            with s.lock:
                evs = [e for e in s.events if e[0] > sent and e[0] >= start and
                       (e[1] == key if end is None else key <= e[1] < end)]
                if not evs:
                    s.lock.wait(0.5)
                    continue
                hdr = s.header()
            for rev, _, typ, kv in evs:
                ev = {"kv": kv}
                if typ == "DELETE":
                    ev["type"] = "DELETE"
                self.chunk(c, json.dumps({"result": {"header": hdr, "events": [ev]}}) + "\n")
                sent = rev
        return False


# --- the bad replies --------------------------------------------------------------------------
def _raw(data, close=True):
    def f(self, c, path, req):
        c.sendall(data if isinstance(data, bytes) else data.encode())
        return not close
    return f


def _status(status, body, ctype="application/json", extra=""):
    def f(self, c, path, req):
        self.send(c, status, body, ctype, extra)
        return True
    return f


def _endless(self, c, path, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    self.chunk(c, '{"header":{"revision":"5"},"kvs":[')
    end = time.monotonic() + 30
    while time.monotonic() < end and not self.stopped:
        self.chunk(c, "0," * 8192)
    return False


def _drip(self, c, path, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    for ch in '{"header":{"revision":"5"},"result":{"TTL":"2"}}' * 100:
        if self.stopped:
            break
        self.chunk(c, ch)
        time.sleep(0.1)
    return False


def _silent(self, c, path, req):
    end = time.monotonic() + 30
    while time.monotonic() < end and not self.stopped:
        time.sleep(0.1)
    return False


def _huge_zeros(self, c, path, req):
    # Just under 4 MiB: the most the old reply cap let through (it cost 250-315 MB).
    body = b'{"header":{"revision":"5"},"kvs":[' + b"0," * 2000000 + b"0]}"
    self.send(c, "200 OK", body)
    return True


def _deep(self, c, path, req):
    self.send(c, "200 OK", '{"header":{"revision":"5"},"kvs":' + "[" * 100000 + "]" * 100000 + "}")
    return True


def _truncated_chunk(self, c, path, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n{\"header\":{\"rev")
    return False


def _bad_chunk_size(self, c, path, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    return False


def _short_content(self, c, path, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"header\":")
    return False


def _mutate_value(value):
    """Replaces the leader key's value in range/txn replies."""
    def f(self, path, obj):
        def fix(kvs):
            for kv in kvs:
                kv["value"] = value
        if "kvs" in obj:
            fix(obj["kvs"])
        for r in obj.get("responses", []):
            fix(r.get("response_range", {}).get("kvs", []))
        return obj
    return f


def _set(field, value, where="top"):
    def f(self, path, obj):
        if where == "result" and "result" in obj:
            obj["result"][field] = value
        elif where == "kvs":
            for kv in obj.get("kvs", []):
                kv[field] = value
            for r in obj.get("responses", []):
                for kv in r.get("response_range", {}).get("kvs", []):
                    kv[field] = value
        elif where == "top":
            obj[field] = value
        elif where == "ranges":  # a range reply, or each range of a txn reply
            if "responses" not in obj:
                obj[field] = value
            for r in obj.get("responses", []):
                if "response_range" in r:
                    r["response_range"][field] = value
        return obj
    return f


def _drop(field, where="top"):
    def f(self, path, obj):
        (obj.get("result", {}) if where == "result" else obj).pop(field, None)
        return obj
    return f


def _invalid_utf8_body(self, c, path, req):
    self.send(c, "200 OK", b'{"header":{"revision":"5"},"error":"\xff\xfe\xc3","message":"\xed\xa0\x80"}')
    return True


def _error_body_cut_multibyte(self, c, path, req):
    # An error reply of 300+ bytes whose cut at 300 falls in the middle of a multibyte character.
    self.send(c, "500 Internal Server Error", ("x" * 299 + "\u20ac" * 50).encode())
    return True


RAW = {
    "invalid-json": _status("200 OK", "{not json"),
    "html-200": _status("200 OK", "<html><body>hello</body></html>", "text/html"),
    "html-502": _status("502 Bad Gateway", "<html><body>502 Bad Gateway</body></html>", "text/html"),
    "empty-200": _status("200 OK", ""),
    "json-array": _status("200 OK", "[1,2,3]"),
    "json-scalar": _status("200 OK", "42"),
    "redirect-301": _status("301 Moved Permanently", "", extra="Location: http://127.0.0.1:1/v3/kv/range\r\n"),
    "redirect-307-self": _status("307 Temporary Redirect", "", extra="Location: /v3/kv/range\r\n"),
    "status-400": _status("400 Bad Request", '{"error":"bad","message":"bad","code":3}'),
    "status-401": _status("401 Unauthorized", '{"error":"invalid auth token","message":"invalid auth token","code":16}'),
    "status-403": _status("403 Forbidden", '{"error":"permission denied","message":"permission denied","code":7}'),
    "status-404-text": _status("404 Not Found", "404 page not found\n", "text/plain"),
    "status-429": _status("429 Too Many Requests", "slow down"),
    "status-500": _status("500 Internal Server Error", '{"error":"boom","message":"boom","code":2}'),
    "status-503-noleader": _status("503 Service Unavailable", '{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}'),
    "status-999": _raw(b"HTTP/1.1 999 What\r\nContent-Length: 2\r\n\r\n{}"),
    "not-http": _raw(b"SSH-2.0-OpenSSH_9.2\r\n"),
    "garbage-status-line": _raw(b"HTTP/1.1 abc\r\n\r\n{}"),
    "close-at-once": _raw(b""),
    "silent": _silent,
    "endless-body": _endless,
    "dripping-body": _drip,
    "huge-zeros": _huge_zeros,
    "deep-nesting": _deep,
    "truncated-chunk": _truncated_chunk,
    "bad-chunk-size": _bad_chunk_size,
    "short-content-length": _short_content,
    "gzip-garbage": _status("200 OK", b"\x1f\x8b\x08\x00garbage", extra="Content-Encoding: gzip\r\n"),
    "invalid-utf8-json": _invalid_utf8_body,
    "error-body-cut-multibyte": _error_body_cut_multibyte,
}

MUTATE = {
    "wrong-types": lambda self, path, obj: {k: ({} if k in ("ID", "TTL", "header", "kvs") else v) for k, v in obj.items()},
    "ttl-negative": _set("TTL", "-5"),
    "ttl-huge": _set("TTL", "100000000"),
    "ttl-overflow": _set("TTL", "9223372036854775807"),
    "ttl-overflow-ms": _set("TTL", "9223372036854775"),
    "ttl-float": _set("TTL", "3.5e10"),
    "keepalive-ttl-huge": _set("TTL", "100000000", "result"),
    "keepalive-ttl-overflow": _set("TTL", "9223372036854775", "result"),
    "keepalive-other-lease": _set("ID", "12345", "result"),
    "keepalive-no-result": _drop("result"),
    "lease-id-zero": _set("ID", "0"),
    "revision-missing": _drop("header"),
    "succeeded-as-string": _set("succeeded", "true"),
    "leader-value-invalid-utf8": _mutate_value(b64(b"\xff\x1b[2J\xc3")),
    "leader-value-huge": _mutate_value(b64(b"x" * 300000)),
    "leader-value-not-base64": _mutate_value("!!!not base64"),
    "create-revision-zero": _set("create_revision", "0", "kvs"),
    "create-revision-negative": _set("create_revision", "-7", "kvs"),
    "kvs-not-array": _set("kvs", {"a": 1}, "ranges"),
    "unicode-escapes-control": _set("error", "\u001b]0;pwned\u0007"),
}

MODE_TARGET = {
    "ttl-negative": "lease/grant", "ttl-huge": "lease/grant", "ttl-overflow": "lease/grant",
    "ttl-overflow-ms": "lease/grant", "ttl-float": "lease/grant", "lease-id-zero": "lease/grant",
    "keepalive-ttl-huge": "lease/keepalive", "keepalive-ttl-overflow": "lease/keepalive",
    "keepalive-other-lease": "lease/keepalive", "keepalive-no-result": "lease/keepalive",
    # The leader read is a txn of two ranges (the leader key and control/) since review11.
    "create-revision-zero": "kv/txn", "create-revision-negative": "kv/txn", "kvs-not-array": "kv/txn",
    "leader-value-invalid-utf8": "kv/txn", "leader-value-huge": "kv/txn", "leader-value-not-base64": "kv/txn",
    "succeeded-as-string": "kv/txn", "revision-missing": "kv/txn",
}


# --- bad watch streams -----------------------------------------------------------------------
def _w_cancel(self, c, key, start):
    self.chunk(c, '{"result":{"header":{"revision":"2"},"canceled":true,"cancel_reason":"mvcc: required revision has been compacted","compact_revision":"9"}}\n')
    time.sleep(30)  # etcd keeps a cancelled stream open
    return False


def _created_then_key(self, c, key):
    """Sends "created", waits for prom to create the key, and sends its PUT event like etcd."""
    s = self.store
    with s.lock:
        self.chunk(c, json.dumps({"result": {"header": s.header(), "created": True}}) + "\n")
        end = time.monotonic() + 5
        while key not in s.kv and time.monotonic() < end:
            s.lock.wait(0.1)
        if key not in s.kv:
            return None, None, None
        kv, hdr, rev = s._kv_json(key), s.header(), s.rev
    self.chunk(c, json.dumps({"result": {"header": hdr, "events": [{"kv": kv}]}}) + "\n")
    return kv, hdr, rev


def _w_stale(self, c, key, start):
    """A PUT at the current revision, then a DELETE and PUTs at lower revisions than seen."""
    kv, hdr, rev = self._created_then_key(c, key)
    if kv is None:
        return False
    for k in range(20):
        old = max(1, rev - 1 - k % 3)
        ev = {"type": "DELETE", "kv": {"key": kv["key"], "mod_revision": str(old)}}
        self.chunk(c, json.dumps({"result": {"header": hdr, "events": [ev]}}) + "\n")
        time.sleep(0.2)
    time.sleep(30)
    return False


def _w_stale_other(self, c, key, start):
    """Our key at the current revision, then "another holder" at lower revisions (replayed or
    from a lagging store): applying it would demote the active for nothing."""
    kv, hdr, rev = self._created_then_key(c, key)
    if kv is None:
        return False
    for k in range(20):
        old = max(1, rev - 1)
        other = {"key": kv["key"], "create_revision": str(old), "mod_revision": str(old), "value": b64("intruder"),
                 "lease": "42"}
        self.chunk(c, json.dumps({"result": {"header": hdr, "events": [{"kv": other}]}}) + "\n")
        time.sleep(0.2)
    time.sleep(30)
    return False


def _w_drip(self, c, key, start):
    line = json.dumps({"result": {"header": {"revision": "3"}, "created": True}})
    for ch in line * 1000:
        if self.stopped:
            break
        self.chunk(c, ch)
        time.sleep(0.05)
    return False


def _w_endless(self, c, key, start):
    end = time.monotonic() + 30
    while time.monotonic() < end and not self.stopped:
        self.chunk(c, "x" * 65536)
    return False


def _w_line(line, then_sleep=30):
    def f(self, c, key, start):
        self.chunk(c, line)
        time.sleep(then_sleep)
        return False
    return f


def _w_flood(self, c, key, start):
    """Thousands of events with growing revisions for an unrelated holder: bounded work."""
    end = time.monotonic() + 5
    rev = 10 ** 6
    while time.monotonic() < end and not self.stopped:
        rev += 1
        kv = {"key": b64(key), "create_revision": str(rev), "mod_revision": str(rev), "value": b64("other"),
              "lease": "99"}
        self.chunk(c, json.dumps({"result": {"header": {"revision": str(rev)}, "events": [{"kv": kv}]}}) + "\n")
    return False


WATCH = {
    "watch-cancel-at-once": _w_cancel,
    "watch-stale-revisions": _w_stale,
    "watch-stale-other-holder": _w_stale_other,
    "watch-dripping": _w_drip,
    "watch-endless-line": _w_endless,
    "watch-invalid-json": _w_line("{nope\n"),
    "watch-deep-nesting": _w_line("[" * 100000 + "\n"),
    "watch-error-no-newline": _w_line('{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}', 0),
    "watch-invalid-utf8-holder": _w_line(json.dumps({"result": {"header": {"revision": "99"}, "events": [{"kv": {
        "key": "eA==", "create_revision": "99", "mod_revision": "99", "value": b64(b"\xff\x1b]0;x\x07\xc3"), "lease": "5"}}]}}) + "\n"),
    "watch-event-create-revision-zero": _w_line(json.dumps({"result": {"header": {"revision": "99"}, "events": [{"kv": {
        "key": "eA==", "create_revision": "0", "mod_revision": "99", "value": b64("zz")}}]}}) + "\n"),
    "watch-events-wrong-type": _w_line('{"result":{"header":{"revision":"9"},"events":{"kv":1}}}\n'),
    "watch-flood": _w_flood,
}

FakeEtcd._created_then_key = _created_then_key
# Healthy replies, delivered late and out of order with other requests' replies.
REORDER = {"reordered-replies": "/v3/kv/put"}

MODES = sorted(set(RAW) | set(MUTATE) | set(WATCH) | set(REORDER))

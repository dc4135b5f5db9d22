#!/usr/bin/env python3
"""An emulator of the MUSIC REST API as PROM 1.0.6 uses it (MUSIC 3.0-style replies, ZooKeeper
lock references), for prom's tests: keyspace/table/index creation, row upsert/update/select,
and a FIFO lock queue per lock name (create, acquire = head of queue, enquire, release).
Several ports share one state, like the locations of one MUSIC cluster; each port can be made
to misbehave (down, slow, HTTP 500, garbage, HTML, empty, truncated, no "status").

    music_emulator.py --ports P1,P2 --control PC [--user U --password W]
    POST http://127.0.0.1:PC/fault  {"port": P1, "mode": "ok|down|slow|500|garbage|html|empty|truncated|nostatus", "delay_ms": N}
    GET  http://127.0.0.1:PC/state   the rows and lock queues, as JSON
    GET  http://127.0.0.1:PC/journal every row write (the row after it, with the heads of the lock
                                     queues then) and every lock release, with wall-clock times
    GET  http://127.0.0.1:PC/calls   the requests each port answered, counted by "METHOD path"
                                     (without the query): what a client given one port did
"""
import argparse
import base64
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"keyspaces": {}, "locks": {}, "seq": {}, "requests": 0}
FAULTS = {}
CALLS = {}  # port -> {"METHOD /path": count}
AUTH = {}
# What peers could have seen between two polls: a row state that lasts a few milliseconds
# (a heartbeat of 0, a released lock reference written back) is in here.
JOURNAL = []


def journal_row(row):
    heads = {name: q[0] for name, q in STATE["locks"].items() if q}
    JOURNAL.append({"t": time.time(), "op": "row", "row": dict(row), "heads": heads})

COLUMN_TYPES = {"id": "text", "isactive": "boolean", "timeoflastupdate": "varint", "lockref": "text"}


def convert(table, column, value):
    # MUSIC converts each value to the column's CQL type (MusicUtil.convertToActualDataType).
    kind = table["fields"].get(column)
    if kind is None:
        raise ValueError(f"Undefined column name {column}")
    if value is None:
        return None
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "varint":
        return int(value)
    return str(value)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        fault = FAULTS.get(self.server.server_port, {})
        mode = fault.get("mode", "ok")
        data = json.dumps(body).encode()
        if mode == "500":
            code, data = 500, json.dumps({"status": "FAILURE", "error": "Internal Server Error"}).encode()
        elif mode == "garbage":
            data = b"\x00\xffnot json at all{{{"
        elif mode == "html":
            code, data = 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        elif mode == "empty":
            data = b""
        elif mode == "truncated":
            data = data[: max(1, len(data) // 2)]
        elif mode == "nostatus":
            code, data = 400, json.dumps({"Exception": "Missing required header: aid"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if mode != "html" else "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-minorVersion", "0")
        self.send_header("X-patchVersion", "24")
        self.send_header("X-latestVersion", "3.0.24")
        self.end_headers()
        self.wfile.write(data)

    def drain(self):
        # Every request's body is read before routing, also where the route ignores it: with
        # keep-alive an unread body would be parsed as the next request on the connection.
        n = int(self.headers.get("Content-Length") or 0)
        self.raw = self.rfile.read(n) if n else b""

    def body(self):
        return json.loads(self.raw) if self.raw.strip() else {}

    def handle_one(self, method):
        self.drain()
        port = self.server.server_port
        fault = FAULTS.get(port, {})
        if fault.get("mode") == "down":
            # a dead location: the connection is dropped without an answer
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault.get("mode") == "slow":
            time.sleep(fault.get("delay_ms", 5000) / 1000)
        url = urllib.parse.urlsplit(self.path)
        with LOCK:
            STATE["requests"] += 1
            calls = CALLS.setdefault(str(port), {})
            calls[f"{method} {url.path}"] = calls.get(f"{method} {url.path}", 0) + 1
        # Blank values are kept: rows?lockref= asks for the rows whose lockref is "".
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        if parts[:3] != ["MUSIC", "rest", "v2"]:
            return self.reply(404, {"Exception": "Not Found"})
        if AUTH:
            h = self.headers.get("Authorization", "")
            ok = h.startswith("Basic ") and base64.b64decode(h[6:]).decode() == f"{AUTH['user']}:{AUTH['password']}"
            if not ok:
                return self.reply(401, {"Exception": "Authentication error"})
        # MUSIC's resources @Consumes(application/json): JAX-RS answers 415 to any other media
        # type, and a body without a Content-Type is not JSON to it either.
        ctype = self.headers.get("Content-Type")
        media = ctype.split(";")[0].strip().lower() if ctype else None
        if (media is not None and media != "application/json") or (media is None and self.raw):
            return self.reply(415, {"Exception": f"Unsupported Media Type: {ctype or 'none'}"})
        p = parts[3:]
        try:
            with LOCK:
                return self.route(method, p, query)
        except (ValueError, KeyError, json.JSONDecodeError) as e:
            return self.reply(400, {"status": "FAILURE", "error": str(e)})

    def route(self, method, p, query):
        ks = STATE["keyspaces"]
        if p[0] == "keyspaces":
            if len(p) == 2 and method == "POST":
                if p[1] in ks:
                    return self.reply(400, {"status": "FAILURE", "error": f"err:Keyspace {p[1]} already exists"})
                ks[p[1]] = {}
                return self.reply(200, {"status": "SUCCESS", "message": f"Keyspace {p[1]} Created"})
            space = ks.get(p[1])
            if space is None:
                return self.reply(400, {"status": "FAILURE", "error": f"Keyspace {p[1]} does not exist"})
            if len(p) == 4 and method == "POST":
                if p[3] in space:
                    return self.reply(400, {"status": "FAILURE", "error": f"Table {p[1]}.{p[3]} already exists"})
                fields = self.body()["fields"]
                space[p[3]] = {"fields": {k: v for k, v in fields.items() if k != "PRIMARY KEY"}, "rows": {}}
                return self.reply(200, {"status": "SUCCESS", "message": f"TableName {p[3]} Created under keyspace {p[1]}"})
            table = space.get(p[3])
            if table is None:
                return self.reply(400, {"status": "FAILURE", "error": f"Table {p[1]}.{p[3]} does not exist"})
            if len(p) == 6 and p[4] == "index" and method == "POST":
                return self.reply(200, {"status": "SUCCESS", "message": "Index Created"})
            if len(p) == 5 and p[4] == "rows":
                rows = table["rows"]
                if method == "POST":
                    values = self.body()["values"]
                    row = rows.setdefault(str(values["id"]), {"id": str(values["id"]), "isactive": None,
                                                            "timeoflastupdate": None, "lockref": None})
                    for k, v in values.items():
                        row[k] = convert(table, k, v)
                    journal_row(row)
                    return self.reply(200, {"status": "SUCCESS", "message": "Insert Successful"})
                if method == "PUT":
                    values = self.body()["values"]
                    if "id" not in query:
                        # Cassandra needs the whole primary key in an UPDATE's WHERE.
                        return self.reply(400, {"status": "FAILURE", "error": "Unable to update the table"})
                    row = rows.setdefault(query["id"], {"id": query["id"], "isactive": None, "timeoflastupdate": None,
                                                        "lockref": None})
                    for k, v in values.items():
                        row[k] = convert(table, k, v)
                    journal_row(row)
                    return self.reply(200, {"status": "SUCCESS", "message": "Update Successful"})
                if method == "GET":
                    # A blank value selects nothing: real MUSIC answers rows?lockref= (PROM's query
                    # when the lock queue is empty) with no rows, not with every row.
                    found = [r for r in rows.values()
                             if all(v != "" and str(r.get(k)) == v for k, v in query.items())]
                    result = {f"row {i}": r for i, r in enumerate(found)}
                    body = {"status": "SUCCESS", "result": result}
                    if not found:
                        body["error"] = "No data found"
                    return self.reply(200, body)
        if p[0] == "locks":
            locks = STATE["locks"]
            if p[1] == "create" and method == "POST":
                name = p[2]
                if len(name.split(".")) < 3:
                    return self.reply(400, {"status": "FAILURE", "error": "Lock Id is null"})
                # ZooKeeper numbers a parent's sequential children from 0: the first reference
                # of a lock is x-0000000000.
                seq = STATE["seq"].get(name, 0)
                STATE["seq"][name] = seq + 1
                ref = f"${name}$x-{seq:010d}"
                locks.setdefault(name, []).append(ref)
                return self.reply(200, {"status": "SUCCESS", "lock": {"lock": ref}})
            if p[1] == "acquire" and method == "GET":
                ref = p[2]
                name = ref.split("$")[1] if ref.count("$") >= 2 else ""
                queue = locks.get(name, [])
                if ref not in queue:
                    return self.reply(400, {"status": "FAILURE", "lock": {"lock": ref}, "message": "Lockid doesn't exist"})
                if queue[0] != ref:
                    return self.reply(400, {"status": "FAILURE", "lock": {"lock": ref},
                                            "message": "Not your turn, someone else has the lock"})
                return self.reply(200, {"status": "SUCCESS", "lock": {"lock": ref}, "message": "You already have the lock!"})
            if p[1] == "enquire" and method == "GET":
                name = p[2]
                if name not in locks:
                    holder = "No lock holder!"
                else:
                    holder = locks[name][0] if locks[name] else ""
                return self.reply(200, {"status": "SUCCESS", "error": "", "lock": {"lock": name, "lock-holder": holder}})
            if p[1] == "release" and method == "DELETE":
                ref = p[2]
                name = ref.split("$")[1] if ref.count("$") >= 2 else ""
                if ref not in locks.get(name, []):
                    return self.reply(400, {"Exception": "Lock doesn't exists. Release lock operation failed."})
                locks[name].remove(ref)
                JOURNAL.append({"t": time.time(), "op": "release", "ref": ref})
                return self.reply(200, {"status": "SUCCESS", "lock": {"lock": ref, "lock-status": "UNLOCKED"}})
        return self.reply(404, {"Exception": "Not Found"})

    def do_GET(self):
        self.handle_one("GET")

    def do_POST(self):
        self.handle_one("POST")

    def do_PUT(self):
        self.handle_one("PUT")

    def do_DELETE(self):
        self.handle_one("DELETE")


class Control(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        FAULTS[int(body["port"])] = body
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        with LOCK:
            data = json.dumps(JOURNAL if self.path == "/journal" else CALLS if self.path == "/calls" else STATE).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True)
    ap.add_argument("--control", type=int, required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    a = ap.parse_args()
    if a.user:
        AUTH.update(user=a.user, password=a.password or "")
    servers = [ThreadingHTTPServer(("127.0.0.1", int(p)), Handler) for p in a.ports.split(",")]
    servers.append(ThreadingHTTPServer(("127.0.0.1", a.control), Control))
    for s in servers:
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()

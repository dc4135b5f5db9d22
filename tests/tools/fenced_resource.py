#!/usr/bin/env python3
"""A toy resource that checks fencing tokens, as a storage service should: a write carrying a
token lower than the highest it has accepted is rejected. State in a JSON file, serialised
with flock.

    fenced_resource.py write FILE REPLICA TOKEN   exit 0 accepted, 1 rejected
    fenced_resource.py writer FILE REPLICA TOKEN  write every 100 ms until killed
"""
import fcntl
import json
import os
import sys
import time


def write(path, replica, token):
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                state = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            state = {"max_token": 0, "log": []}
        ok = token >= state["max_token"]
        if ok:
            state["max_token"] = token
        state["log"].append({"t": time.time(), "replica": replica, "token": token, "accepted": ok})
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)
        return ok


def load(path):
    with open(path) as f:
        return json.load(f)


if __name__ == "__main__":
    cmd, path, replica, token = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if cmd == "write":
        sys.exit(0 if write(path, replica, token) else 1)
    while True:
        write(path, replica, token)
        time.sleep(0.1)

#!/usr/bin/env python3
"""History checker: reads the shared history file that every replica's actions append to and
fails on any overlap of active intervals, or any fencing token that goes backwards or is
shared by two replicas.

Line format (one per transition, CLOCK_REALTIME seconds):
    start REPLICA TOKEN TIME     the replica became active (ensure-active switched it)
    stop  REPLICA TOKEN TIME     the replica stopped being active (ensure-passive, or a crash)

Usage: history_check.py HISTORY [--allow-overlap SECONDS]   (exit 0 = ok, 1 = violation)
"""
import argparse
import sys


def parse(path):
    events = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4 or parts[0] not in ("start", "stop"):
                raise ValueError(f"{path}:{n}: malformed history line: {line.rstrip()}")
            kind, replica, token, t = parts
            events.append((float(t), kind, replica, None if token == "-" else int(token)))
    events.sort(key=lambda e: e[0])
    return events


def intervals(events, end_time=None):
    """[(replica, token, start, stop)] with stop None while still active."""
    open_ = {}
    out = []
    for t, kind, replica, token in events:
        if kind == "start":
            if replica in open_:
                continue  # already active: a repeated start changes nothing
            open_[replica] = (token, t)
        elif replica in open_:
            tok, start = open_.pop(replica)
            out.append((replica, tok, start, t))
    for replica, (tok, start) in open_.items():
        out.append((replica, tok, start, end_time))
    out.sort(key=lambda i: i[2])
    return out


def check(events, allow_overlap=0.0):
    """Returns (violations, overlaps): overlaps are (seconds, a, b) pairs of intervals."""
    problems = []
    overlaps = []
    ivs = intervals(events)
    inf = float("inf")
    for i, a in enumerate(ivs):
        for b in ivs[i + 1:]:
            if a[0] == b[0]:
                continue
            a_end = a[3] if a[3] is not None else inf
            b_end = b[3] if b[3] is not None else inf
            overlap = min(a_end, b_end) - max(a[2], b[2])
            if overlap > 0:
                overlaps.append((overlap, a, b))
                if overlap > allow_overlap:
                    problems.append(f"replicas {a[0]} and {b[0]} both active for {overlap:.3f} s "
                                    f"(tokens {a[1]} and {b[1]}, from {max(a[2], b[2]):.3f})")
    owner = {}
    last_token = None
    for t, kind, replica, token in events:
        if kind != "start" or token is None:
            continue
        if token in owner and owner[token] != replica:
            problems.append(f"token {token} used by replicas {owner[token]} and {replica}")
        owner.setdefault(token, replica)
        if last_token is not None and token < last_token:
            problems.append(f"token went backwards: {replica} started with {token} after {last_token}")
        last_token = token if last_token is None else max(last_token, token)
    return problems, overlaps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("history")
    ap.add_argument("--allow-overlap", type=float, default=0.0)
    args = ap.parse_args()
    events = parse(args.history)
    problems, overlaps = check(events, args.allow_overlap)
    ivs = intervals(events)
    print(f"{len(ivs)} active intervals, {len(set(e[3] for e in events if e[3] is not None))} tokens")
    for o in overlaps:
        print(f"overlap {o[0]:.3f} s between {o[1][0]} and {o[2][0]}")
    for p in problems:
        print("VIOLATION:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""ctl_flood.py - a hostile client of SPOOL/ctl.sock, for t_ctl_flood.sh.

    ctl_flood.py idle  SOCKET N SECONDS   open N connections at once and
                                          keep them open, each re-made as
                                          soon as the daemon closes it (at
                                          most 500 a second)
    ctl_flood.py loris SOCKET N SECONDS   N connections sending one byte of
                                          "PING" a second, never a newline
    ctl_flood.py probe SOCKET N SECONDS   N PROBE requests spread over
                                          SECONDS, one connection each
    ctl_flood.py ping  SOCKET N SECONDS   N PINGs spread over SECONDS,
                                          each timed from connect to reply

Prints one JSON object with what it saw: connections made, refused with an
"ERR" line, closed without a word, the longest a connection stayed open,
and for probe every reply.
"""
import json
import resource
import selectors
import socket
import sys
import time


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
    except OSError:
        s.close()
        return None
    s.setblocking(False)
    return s


def idle(path, n, seconds):
    raise_nofile(n + 64)
    sel = selectors.DefaultSelector()
    st = {"connects": 0, "connect_failed": 0, "refused_err": 0,
          "closed_silent": 0, "max_open": 0, "held_longest_ms": 0,
          "first_err": ""}
    born = {}
    end = time.monotonic() + seconds
    # all N at once, then re-made at up to 500 a second
    budget, tick = float(n), time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        budget = min(budget + (now - tick) * 500, float(n))
        tick = now
        while len(born) < n and budget >= 1:
            budget -= 1
            s = connect(path)
            if s is None:
                st["connect_failed"] += 1
                break
            st["connects"] += 1
            born[s] = time.monotonic()
            sel.register(s, selectors.EVENT_READ)
        st["max_open"] = max(st["max_open"], len(born))
        for key, _ in sel.select(0.05):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data.startswith(b"ERR"):
                st["refused_err"] += 1
                if not st["first_err"]:
                    st["first_err"] = data.decode(errors="replace").strip()
            else:
                st["closed_silent"] += 1
            held = int((time.monotonic() - born.pop(s)) * 1000)
            st["held_longest_ms"] = max(st["held_longest_ms"], held)
            sel.unregister(s)
            s.close()
    st["open_at_end"] = len(born)
    for s in born:
        s.close()
    return st


def loris(path, n, seconds):
    conns = []
    for _ in range(n):
        s = connect(path)
        if s is not None:
            conns.append([s, time.monotonic(), None])
    st = {"connected": len(conns), "closed_after_ms": []}
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end and any(c[2] is None for c in conns):
        for c in conns:
            if c[2] is not None:
                continue
            try:
                c[0].send(b"PING"[i % 4:i % 4 + 1])
                c[0].recv(4096)  # EOF or a reply: the daemon ended it
                c[2] = time.monotonic()
            except BlockingIOError:
                pass
            except OSError:
                c[2] = time.monotonic()
        i += 1
        time.sleep(1)
    for c in conns:
        st["closed_after_ms"].append(
            None if c[2] is None else int((c[2] - c[1]) * 1000))
        c[0].close()
    return st


def probe(path, n, seconds):
    st = {"replies": []}
    for _ in range(n):
        t0 = time.monotonic()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        reply = b""
        try:
            s.connect(path)
            s.sendall(b"PROBE\n")
            while True:
                b = s.recv(65536)
                if not b:
                    break
                reply += b
        except OSError as e:
            reply = ("CLIENT ERROR %s" % e).encode()
        s.close()
        st["replies"].append(reply.decode(errors="replace"))
        time.sleep(max(0, seconds / n - (time.monotonic() - t0)))
    return st


def ping(path, n, seconds):
    st = {"pings": 0, "failed": [], "max_ms": 0}
    for _ in range(n):
        t0 = time.monotonic()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        reply = b""
        try:
            s.connect(path)
            s.sendall(b"PING\n")
            while not reply.endswith(b"\n"):
                b = s.recv(4096)
                if not b:
                    break
                reply += b
        except OSError as e:
            reply = ("CLIENT ERROR %s" % e).encode()
        s.close()
        ms = int((time.monotonic() - t0) * 1000)
        st["pings"] += 1
        st["max_ms"] = max(st["max_ms"], ms)
        if not reply.startswith(b"OK pid="):
            st["failed"].append(reply.decode(errors="replace").strip())
        time.sleep(max(0, seconds / n - (time.monotonic() - t0)))
    return st


if __name__ == "__main__":
    mode, path, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        float(sys.argv[4])
    print(json.dumps({"idle": idle, "loris": loris,
                      "probe": probe, "ping": ping}[mode](path, n, secs)))

#!/usr/bin/env python3
"""sink_tool.py - reads what capture_sink.py stored, and spool files.

Subcommands (DIR is a sink directory):
  envelopes DIR             one line per transaction: N from=<..> to=a,b
  rcpt-counts DIR           "COUNT ADDRESS" per envelope recipient
  msgids DIR [--after N]    "COUNT MESSAGE-ID" per distinct Message-ID
                            (of the transactions numbered above N)
  find-msgid DIR MSGID      numbers of the transactions carrying MSGID
  body DIR N [--strip-received]
                            the captured bytes of transaction N, optionally
                            without the Received: fields a relay prepended
  spool-message FILE [--strip-received]
                            the message part of a spool file, optionally
                            without its leading Received: fields (root's
                            spoolctl puts "from userid 0" there)
  spool-envelope FILE       the envelope of a spool file as JSON
  spool-pending SPOOL       Message-IDs of spool files (new/, cur/) with
                            a recipient still to deliver
  tally SUBMITTED COUNTS [--queued FILE] [--allowed FILE]
                            prints "submitted=N delivered=N (unique=N
                            duplicates=N) queued=N lost=N" for the keys in
                            SUBMITTED, COUNTS holding "COUNT KEY" lines (as
                            msgids prints); --queued lists keys still in the
                            spool; --allowed the keys in flight at a crash,
                            once per crash (each allows one more copy). Prints each problem; exit 1 if any.
  json EXPR                 evaluates EXPR with d = JSON from stdin, prints
                            the result (JSON for lists/dicts)
  verify DIR LIST --from ADDR --rcpt ADDR [--strip-received]
         [--received-with WORD]
                            LIST holds "TAG MSGID FILE" lines: each MSGID
                            must be in DIR exactly once, with envelope
                            sender ADDR and the one recipient ADDR, and the
                            bytes of FILE (after the leading Received:
                            fields with --strip-received); with
                            --received-with, the first Received: field
                            names "with WORD" (e.g. ESMTPSA: TLS and AUTH).
                            Prints one line per problem; exit 1 if any.

Failure policy: any malformed input raises, which exits non-zero with a
traceback: the tests treat that as a failure, never as an empty answer.
"""

import json
import os
import re
import sys


def transactions(directory):
    names = sorted(n[:-4] for n in os.listdir(directory)
                   if n.endswith(".env") and not n.startswith("."))
    for n in names:
        with open(os.path.join(directory, n + ".env")) as f:
            env = json.load(f)
        yield n, env


def read_eml(directory, n):
    with open(os.path.join(directory, n + ".eml"), "rb") as f:
        return f.read()


def header_fields(data):
    """Splits the header section into whole fields (with folds)."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end + 2]
    fields = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields


def message_id(data):
    for f in header_fields(data):
        m = re.match(rb"(?i)message-id:\s*(.*)", f, re.S)
        if m:
            return re.sub(rb"\s+", b"", m.group(1)).decode("utf-8", "replace")
    return None


def strip_received(data):
    """Removes the Received: fields at the top of the message."""
    pos = 0
    while re.match(rb"(?i)received:", data[pos:pos + 9]):
        nxt = data.find(b"\r\n", pos)
        while nxt >= 0 and data[nxt + 2:nxt + 3] in (b" ", b"\t"):
            nxt = data.find(b"\r\n", nxt + 2)
        if nxt < 0:
            raise ValueError("unterminated Received: field")
        pos = nxt + 2
    return data[pos:]


def spool_split(path):
    with open(path, "rb") as f:
        data = f.read()
    end = data.find(b"\n\n")
    if not data.startswith(b"SPOOLD ") or end < 0:
        raise ValueError("%s: not a spool file" % path)
    return data[:end + 1], data[end + 2:]


def spool_pending(spool):
    """Message-IDs of the spool files in new/ and cur/ that still have a
    recipient to deliver (an R line)."""
    mids = []
    for sub in ("new", "cur"):
        d = os.path.join(spool, sub)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if name.startswith("."):
                continue
            try:
                head, body = spool_split(os.path.join(d, name))
            except FileNotFoundError:
                continue  # delivered and removed while we looked
            if any(l.startswith(b"R ") for l in head.split(b"\n")):
                mids.append(message_id(body))
    return mids


def read_keys(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]


def tally(submitted, counts, opts):
    """The 'tally' subcommand: the count line and the problems found.
    SUBMITTED lists one key per accepted message, COUNTS holds
    "COUNT KEY" per delivered key (msgids' output); --queued FILE lists
    keys still in the spool, --allowed FILE the keys that were in flight
    at a crash, once per crash: each listing allows one more copy."""
    queued, allowed = set(), None
    for i in range(0, len(opts), 2):
        if opts[i] == "--queued":
            queued = set(read_keys(opts[i + 1]))
        elif opts[i] == "--allowed":
            allowed = {}
            for k in read_keys(opts[i + 1]):
                allowed[k] = allowed.get(k, 0) + 1
        else:
            raise ValueError("tally: unknown option %r" % opts[i])
    sub = read_keys(submitted)
    got = {}
    for line in read_keys(counts):
        n, key = line.split(None, 1)
        got[key] = got.get(key, 0) + int(n)
    subset = set(sub)
    delivered = sum(got.get(k, 0) for k in subset)
    unique = sum(1 for k in subset if got.get(k, 0) > 0)
    still = sum(1 for k in subset if got.get(k, 0) == 0 and k in queued)
    lost = [k for k in sub if got.get(k, 0) == 0 and k not in queued]
    problems = ["lost: %s" % k for k in lost[:10]]
    problems += ["unknown message delivered: %s" % k
                 for k in sorted(set(got) - subset)[:10]]
    if len(subset) != len(sub):
        problems.append("submitted keys are not distinct")
    for k in sorted(subset):
        # each crash it was in flight at allows one more copy
        if allowed is not None and got.get(k, 0) > 1 + allowed.get(k, 0):
            problems.append("%s arrived %d times, in flight at %d crash(es)"
                            % (k, got[k], allowed.get(k, 0)))
    line = ("submitted=%d delivered=%d (unique=%d duplicates=%d) queued=%d "
            "lost=%d" % (len(sub), delivered, unique, delivered - unique,
                         still, len(lost)))
    return line, problems


def verify(directory, listfile, opts):
    """The 'verify' subcommand: returns the list of problems found."""
    flags = {"--from": None, "--rcpt": None, "--received-with": None}
    strip = False
    i = 0
    while i < len(opts):
        if opts[i] == "--strip-received":
            strip = True
            i += 1
        elif opts[i] in flags and i + 1 < len(opts):
            flags[opts[i]] = opts[i + 1]
            i += 2
        else:
            raise ValueError("verify: bad option %r" % opts[i])
    by_mid = {}
    for n, env in transactions(directory):
        mid = message_id(read_eml(directory, n))
        by_mid.setdefault(mid, []).append((n, env))
    problems = []
    with open(listfile) as f:
        wanted = [line.split() for line in f if line.strip()]
    for tag, mid, path in wanted:
        found = by_mid.get(mid, [])
        if len(found) != 1:
            problems.append("%s: %s found %d times" % (tag, mid, len(found)))
            continue
        n, env = found[0]
        if flags["--from"] is not None and env["mail_from"] != flags["--from"]:
            problems.append("%s: envelope sender <%s>, want <%s>"
                            % (tag, env["mail_from"], flags["--from"]))
        if flags["--rcpt"] is not None and env["rcpt_to"] != [flags["--rcpt"]]:
            problems.append("%s: recipients %s, want [%s]"
                            % (tag, env["rcpt_to"], flags["--rcpt"]))
        data = read_eml(directory, n)
        if flags["--received-with"] is not None:
            fields = [f for f in header_fields(data)
                      if f.lower().startswith(b"received:")]
            word = b"with " + flags["--received-with"].encode()
            if not fields or word not in re.sub(rb"\s+", b" ", fields[0]):
                problems.append("%s: first Received: field lacks %r: %r"
                                % (tag, word.decode(), fields[:1]))
        if strip:
            data = strip_received(data)
        with open(path, "rb") as f:
            want = f.read()
        if data != want:
            problems.append("%s: transaction %s: %d bytes differ from %s "
                            "(%d bytes)" % (tag, n, len(data), path,
                                            len(want)))
    return problems


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 64
    cmd, args = argv[1], argv[2:]
    out = sys.stdout
    if cmd == "envelopes":
        for n, env in transactions(args[0]):
            out.write("%s from=<%s> to=%s\n"
                      % (n, env["mail_from"], ",".join(env["rcpt_to"])))
    elif cmd == "rcpt-counts":
        counts = {}
        for _, env in transactions(args[0]):
            for r in env["rcpt_to"]:
                counts[r] = counts.get(r, 0) + 1
        for r in sorted(counts):
            out.write("%d %s\n" % (counts[r], r))
    elif cmd == "msgids":
        counts = {}
        after = int(args[2]) if args[1:2] == ["--after"] else 0
        for n, _ in transactions(args[0]):
            if int(n) <= after:
                continue
            mid = message_id(read_eml(args[0], n))
            counts[mid] = counts.get(mid, 0) + 1
        for mid in sorted(counts, key=str):
            out.write("%d %s\n" % (counts[mid], mid))
    elif cmd == "find-msgid":
        for n, _ in transactions(args[0]):
            if message_id(read_eml(args[0], n)) == args[1]:
                out.write(n + "\n")
    elif cmd == "body":
        data = read_eml(args[0], args[1])
        if "--strip-received" in args[2:]:
            data = strip_received(data)
        sys.stdout.buffer.write(data)
    elif cmd == "spool-message":
        data = spool_split(args[0])[1]
        if "--strip-received" in args[1:]:
            data = strip_received(data)
        sys.stdout.buffer.write(data)
    elif cmd == "spool-envelope":
        head = spool_split(args[0])[0].decode("utf-8")
        env = {"sender": None, "rcpt": [], "done": [], "failed": []}
        for line in head.split("\n")[1:-1]:
            key, val = line[:1], line[2:]
            if key == "S":
                env["sender"] = val
            elif key == "R":
                env["rcpt"].append(val)
            elif key == "D":
                env["done"].append(val)
            elif key == "F":
                env["failed"].append(val)
        out.write(json.dumps(env) + "\n")
    elif cmd == "spool-pending":
        for mid in spool_pending(args[0]):
            out.write(mid + "\n")
    elif cmd == "tally":
        line, problems = tally(args[0], args[1], args[2:])
        out.write(line + "\n")
        for p in problems:
            out.write(p + "\n")
        return 1 if problems else 0
    elif cmd == "verify":
        problems = verify(args[0], args[1], args[2:])
        for p in problems:
            out.write(p + "\n")
        return 1 if problems else 0
    elif cmd == "json":
        d = json.load(sys.stdin)
        r = eval(args[0], {"d": d, "len": len, "sorted": sorted,
                           "set": set, "all": all, "any": any})
        out.write((json.dumps(r) if isinstance(r, (list, dict)) else str(r))
                  + "\n")
    else:
        print("sink_tool: unknown command %r" % cmd, file=sys.stderr)
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

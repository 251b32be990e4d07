#!/usr/bin/env python3
"""ab.py - two builds of spoold side by side, one message at a time each.

A change that should cost a fraction of a millisecond cannot be seen by
running two builds one after the other on a machine whose speed drifts by
more than that between runs. This script runs both daemons at once, each
relaying to its own capture sink on 127.0.0.1, and submits to them in turn
(A then B, then B then A, ...), so that whatever slows the machine slows
both. It prints, per build, the submit and submit-to-arrival latency p50
and p99, and the median of the paired differences B - A with the
interquartile range of those differences.

    python3 bench/ab.py --a SPOOLD:SPOOLCTL --b SPOOLD:SPOOLCTL [-n 1000]
                        [--submit-user nobody] [--a-group G] [--b-group G]

Each side's submitter runs as root, or as --submit-user through a copy of
that side's spoolctl made setgid to its group (`none`: a plain copy, for a
spoolctl of the earlier model whose spool anyone could write). Run as root.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the systems and sinks of the main benchmark)


def side(work, name, pair, user, group):
    spoold, spoolctl = pair.split(":")
    root = os.path.join(work, name)
    os.makedirs(root)
    os.chmod(root, 0o755)
    port = bench.free_port()
    sink = bench.CaptureSink(root, port)
    system = bench.Spoold(root, spoold, spoolctl, port, user, group)
    system.start()
    return system, sink


def summary(values):
    return "p50=%.3f p99=%.3f" % (bench.pct(values, 50),
                                  bench.pct(values, 99))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, metavar="SPOOLD:SPOOLCTL")
    p.add_argument("--b", required=True, metavar="SPOOLD:SPOOLCTL")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--submit-user")
    p.add_argument("--a-group", default="spoold-submit")
    p.add_argument("--b-group", default="spoold-submit")
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("ab: run as root")
    work = tempfile.mkdtemp(prefix="spoold-ab.")
    os.chmod(work, 0o755)
    systems = {}
    try:
        systems["A"] = side(work, "a", a.a, a.submit_user, a.a_group)
        systems["B"] = side(work, "b", a.b, a.submit_user, a.b_group)
        starts = {"A": {}, "B": {}}
        submit = {"A": [], "B": []}
        for i in range(a.n):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            for name in order:
                system, sink = systems[name]
                tag = "ab.%s.%d" % (name, i)
                t0, t1 = bench.submit_one(system, tag)
                starts[name][i] = t0
                submit[name].append((t1 - t0) / 1e6)
        e2e = {}
        for name, (system, sink) in systems.items():
            bench.wait_count(sink, a.n, 120)
            arrivals = sink.arrivals()
            e2e[name] = {i: (arrivals["ab.%s.%d" % (name, i)] - t0) / 1e6
                         for i, t0 in starts[name].items()}
        lines = ["n=%d submit_user=%s" % (a.n, a.submit_user or "root")]
        for name, pair in (("A", a.a), ("B", a.b)):
            lines.append("%s %s submit_ms %s latency_ms %s"
                         % (name, pair, summary(submit[name]),
                            summary(list(e2e[name].values()))))
        for what, va, vb in (
                ("submit", submit["A"], submit["B"]),
                ("latency", [e2e["A"][i] for i in range(a.n)],
                 [e2e["B"][i] for i in range(a.n)])):
            d = sorted(b - x for x, b in zip(va, vb))
            q = statistics.quantiles(d, n=4)
            lines.append("B-A %s_ms median=%.3f iqr=%.3f..%.3f"
                         % (what, statistics.median(d), q[0], q[2]))
        print("\n".join(lines))
    finally:
        for system, sink in systems.values():
            system.stop()
            sink.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

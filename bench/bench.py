#!/usr/bin/env python3
"""bench.py - spoold next to a Postfix null client, on loopback.

Both systems take the same messages through their sendmail interface and
relay them to the same SMTP sink on 127.0.0.1. For each system the
benchmark prints one line of key=value figures (medians over the runs) and
then the ratios spoold/Postfix measured in the same run; everything also
goes to the --out file. Needs root (Postfix's master) and the postfix
package (postfix, smtp-sink, sendmail, postqueue).

Workloads:
  live      N messages submitted one process at a time, then by 8
            submitters in parallel: submissions/s, submit latency p50/p99,
            first submit to last arrival, submit-to-arrival latency
            p50/p99 (sequential, from the arrival times at a capture
            sink), CPU seconds per 1000 messages of all processes of the
            system and of the submitters;
  drain     the relay down, N messages queued, the relay up, a flush:
            time until all arrived, CPU per 1000;
  footprint idle RSS and PSS of the resident processes, summed;
  disk      fsync'd create+rename+directory fsync per second, the floor
            under any durable submit;
  scale     (spoold only) SCALE messages queued with the relay down: RSS
            and idle CPU over a quiet period, `spoolctl list` and
            `status` times, then the drain rate.
"""

import argparse
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
CAPTURE_SINK = os.path.join(SRC, "tests", "integration", "capture_sink.py")
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg),
          file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, secs=15):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


# ---- processes ---------------------------------------------------------

def proc_stat(pid):
    """(utime+stime, cutime+cstime) in seconds, and the ppid."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ppid = int(fields[1])
    own = (int(fields[11]) + int(fields[12])) / CLK
    children = (int(fields[13]) + int(fields[14])) / CLK
    return own, children, ppid


def descendants(root):
    """root and every live process below it."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = proc_stat(int(d))[2]
            except (OSError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def tree_cpu(root):
    """CPU seconds of a process tree: the live processes' own time plus
    what exited children left in their parents' counters."""
    total = 0.0
    for p in descendants(root):
        try:
            own, children, _ = proc_stat(p)
            total += own + children
        except (OSError, IndexError):
            pass
    return total


def proc_kib(pid, field):
    """A kB field of /proc/PID/status (VmHWM, RssAnon...)."""
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"%s:\s+(\d+)" % field, f.read()).group(1))


def tree_memory(root):
    """(RSS, PSS) in KiB summed over a process tree."""
    rss = pss = 0
    for p in descendants(root):
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---- sinks -------------------------------------------------------------

# every sink process started, so that a failed run stops them all
SINKS = []

class FastSink:
    """Postfix's smtp-sink, counting messages (-c); with writes, each
    message is also written to a file of its own (-d), as a relay that
    stores its mail does."""

    def __init__(self, work, port, writes=False):
        self.port = port
        self.out = open(os.path.join(work, "smtp-sink-%d.out" % port), "w+")
        args = ["smtp-sink", "-u", "postfix", "-c"]
        if writes:
            dump = os.path.join(work, "dump-%d" % port)
            os.makedirs(dump)
            shutil.chown(dump, "postfix")
            args += ["-d", dump + "/"]
        self.proc = subprocess.Popen(
            args + ["127.0.0.1:%d" % port, "1000"], stdout=self.out,
            stderr=subprocess.STDOUT)
        SINKS.append(self.proc)
        wait_port(port)

    def count(self):
        self.out.flush()
        with open(self.out.name) as f:
            found = re.findall(r"mesg=(\d+)", f.read())
        return int(found[-1]) if found else 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.out.close()


class CaptureSink:
    """tests/integration/capture_sink.py: each message a file, whose
    mtime is its arrival time."""

    def __init__(self, work, port):
        self.port = port
        self.dir = os.path.join(work, "capture-%d" % port)
        self.proc = subprocess.Popen(
            [sys.executable, CAPTURE_SINK, "--port", str(port), "--dir",
             self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        SINKS.append(self.proc)
        wait_port(port)

    def arrivals(self):
        """Message-ID -> arrival time (ns since the epoch)."""
        out = {}
        for name in os.listdir(self.dir):
            if not name.endswith(".eml"):
                continue
            path = os.path.join(self.dir, name)
            with open(path, "rb") as f:
                head = f.read(2048)
            m = re.search(rb"Message-ID: <([^>@]+)@", head)
            if m:
                out[m.group(1).decode()] = os.stat(path).st_mtime_ns
        return out

    def count(self):
        return sum(1 for n in os.listdir(self.dir) if n.endswith(".eml"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def wait_count(sink, n, secs):
    deadline = time.monotonic() + secs
    while True:
        c = sink.count()
        if c >= n:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError("sink has %d of %d messages after %d s"
                               % (c, n, secs))
        time.sleep(0.01)


# ---- the systems -------------------------------------------------------

class Spoold:
    name = "spoold"

    def __init__(self, work, spoold, spoolctl, relay_port,
                 submit_user=None, submit_group="spoold-submit"):
        self.work = os.path.join(work, "spoold")
        os.makedirs(self.work)
        os.chmod(self.work, 0o755)
        self.spoolctl = spoolctl
        self.spoold = spoold
        self.conf = os.path.join(self.work, "spoold.conf")
        self.spool = os.path.join(self.work, "spool")
        self.proc = None
        self.as_user = None
        if submit_user:
            # another user submits as spoold-setup installs spoolctl: a
            # setgid copy; "none" keeps it plain (a spoolctl of the earlier
            # model, whose spool anyone could write)
            self.spoolctl = os.path.join(self.work, "spoolctl")
            shutil.copy(spoolctl, self.spoolctl)
            if submit_group != "none":
                shutil.chown(self.spoolctl, "root", submit_group)
                os.chmod(self.spoolctl, 0o2755)
            pw = pwd.getpwnam(submit_user)
            self.as_user = {"user": pw.pw_uid, "group": pw.pw_gid,
                            "extra_groups": []}
        self.set_relay(relay_port)

    def set_relay(self, port):
        with open(self.conf, "w") as f:
            f.write("[spool]\ndir = %s\n\n[delivery]\nroute = sink\n"
                    "retry = 1h\nmax_age = 1d\n\n[transport sink]\n"
                    "type = smtp\nhost = 127.0.0.1\nport = %d\n"
                    "tls = none\ntimeout = 10s\nconnect_timeout = 2s\n"
                    % (self.spool, port))

    def submit_cmd(self):
        # spoolctl is sendmail when called by that name
        return ["sendmail", "-t"], self.spoolctl

    def submit_as(self):
        return self.as_user or {}

    def env(self):
        e = dict(os.environ)
        e["SPOOLD_CONFIG"] = self.conf
        return e

    def start(self):
        self.log = open(os.path.join(self.work, "spoold.log"), "a")
        # the log is appended to: only this start's "ready" counts
        offset = self.log.tell()
        self.proc = subprocess.Popen([self.spoold, "-c", self.conf, "-f"],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(self.log.name) as f:
                f.seek(offset)
                if "ready" in f.read():
                    return
            time.sleep(0.02)
        raise RuntimeError("spoold not ready")

    def pid(self):
        return self.proc.pid

    def flush(self):
        subprocess.run([self.spoolctl, "-c", self.conf, "flush"],
                       stdout=subprocess.DEVNULL, check=True)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(15)
            self.log.close()
            self.proc = None

    def reset(self):
        self.stop()
        shutil.rmtree(self.spool, ignore_errors=True)


MASTER_CF = [
    "pickup     unix  n - n 60 1 pickup",
    "cleanup    unix  n - n -  0 cleanup",
    "qmgr       unix  n - n 300 1 qmgr",
    "rewrite    unix  - - n -  - trivial-rewrite",
    "bounce     unix  - - n -  0 bounce",
    "defer      unix  - - n -  0 bounce",
    "trace      unix  - - n -  0 bounce",
    "verify     unix  - - n -  1 verify",
    "flush      unix  n - n 1000? 0 flush",
    "proxymap   unix  - - n -  - proxymap",
    "smtp       unix  - - n -  - smtp",
    "relay      unix  - - n -  - smtp",
    "showq      unix  n - n -  - showq",
    "error      unix  - - n -  - error",
    "retry      unix  - - n -  - error",
    "discard    unix  - - n -  - discard",
    "anvil      unix  - - n -  1 anvil",
    "scache     unix  - - n -  1 scache",
    "postlog    unix-dgram n - n - 1 postlogd",
]


class Postfix:
    name = "postfix"

    def __init__(self, work, relay_port):
        self.dir = os.path.join(work, "postfix")
        self.confdir = os.path.join(self.dir, "conf")
        os.makedirs(self.confdir)
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(os.path.join(self.dir, "queue"))
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        self.port = free_port()
        self.relay_port = relay_port
        self.running = False
        self.write_conf()

    def write_conf(self):
        with open(os.path.join(self.confdir, "main.cf"), "w") as f:
            f.write("""compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = nullclient.bench.invalid
mydomain = bench.invalid
myorigin = $myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{p}
local_transport = error:local delivery disabled
alias_maps =
alias_database =
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
smtp_connect_timeout = 2s
biff = no
""".format(d=self.dir, p=self.relay_port))
        # the services a null client uses; its smtpd listens on loopback
        # only and is not used
        with open(os.path.join(self.confdir, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n - n - - smtpd\n" % self.port)
            for line in MASTER_CF:
                f.write(line + "\n")
        subprocess.run(["postfix", "-c", self.confdir, "check"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def set_relay(self, port):
        self.relay_port = port
        self.write_conf()

    def submit_cmd(self):
        return ["sendmail", "-C", self.confdir, "-t"], "/usr/sbin/sendmail"

    def submit_as(self):
        return {}

    def env(self):
        return dict(os.environ)

    def start(self):
        subprocess.run(["postfix", "-c", self.confdir, "start"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        self.running = True

    def pid(self):
        with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
            return int(f.read().split()[0])

    def flush(self):
        subprocess.run(["postqueue", "-c", self.confdir, "-f"], check=True)

    def stop(self):
        if self.running:
            subprocess.run(["postfix", "-c", self.confdir, "stop"],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            # stop returns before every child is gone
            time.sleep(1)
            self.running = False

    def reset(self):
        self.stop()
        subprocess.run(["postsuper", "-c", self.confdir, "-d", "ALL"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---- workloads ---------------------------------------------------------

BODY = ("This is a benchmark notification. " * 26 + "\n") * 1  # ~1 KiB


def message(tag):
    return ("From: bench <bench@bench.invalid>\n"
            "To: sink@bench.invalid\n"
            "Subject: alarm %s\n"
            "Message-ID: <%s@bench.invalid>\n\n%s" % (tag, tag, BODY)).encode()


def submit_one(system, tag):
    t0 = time.time_ns()
    args, exe = system.submit_cmd()
    r = subprocess.run(args, executable=exe, input=message(tag),
                       env=system.env(), stdout=subprocess.DEVNULL,
                       **system.submit_as())
    t1 = time.time_ns()
    if r.returncode != 0:
        raise RuntimeError("%s submit exited %d" % (system.name,
                                                      r.returncode))
    return t0, t1


def in_parallel(worker, tags, k=8):
    """worker(part) on k threads, each with every kth tag; a failure in
    any thread fails the run."""
    errors = []

    def guarded(part):
        try:
            worker(part)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=guarded, args=(tags[i::k],))
               for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def submit_all(system, tags):
    for tag in tags:
        submit_one(system, tag)


def live(system, work, n, parallel, run):
    """One live run; returns a dict of figures."""
    port = free_port()
    sink = CaptureSink(work, port)
    system.set_relay(port)
    system.start()
    time.sleep(0.5)
    cpu_daemon0 = tree_cpu(system.pid())
    cpu_sub0 = children_cpu()
    tags = ["%s.%s.%d.%d" % (system.name, "p" if parallel else "s", run, i)
            for i in range(n)]
    starts = {}
    lat = []
    lock = threading.Lock()

    def worker(part):
        for tag in part:
            t0, t1 = submit_one(system, tag)
            with lock:
                starts[tag] = t0
                lat.append((t1 - t0) / 1e6)

    t_first = time.monotonic()
    if parallel:
        in_parallel(worker, tags)
    else:
        worker(tags)
    t_submitted = time.monotonic()
    t_last = wait_count(sink, n, 600)
    time.sleep(0.5)
    cpu_daemon = tree_cpu(system.pid()) - cpu_daemon0
    cpu_sub = children_cpu() - cpu_sub0
    arrivals = sink.arrivals()
    e2e = [(arrivals[t] - starts[t]) / 1e6 for t in tags if t in arrivals]
    dup = sink.count() - len(arrivals)
    system.reset()
    sink.stop()
    return {
        "submit_per_s": n / (t_submitted - t_first),
        "submit_p50_ms": pct(lat, 50),
        "submit_p99_ms": pct(lat, 99),
        "all_arrived_s": t_last - t_first,
        "latency_p50_ms": pct(e2e, 50),
        "latency_p99_ms": pct(e2e, 99),
        "cpu_per_1000_s": (cpu_daemon + cpu_sub) * 1000.0 / n,
        "daemon_cpu_per_1000_s": cpu_daemon * 1000.0 / n,
        "duplicates": dup,
    }


def drain(system, work, n, run, writes=False):
    port = free_port()
    system.set_relay(port)
    system.start()
    tags = ["%s.d.%d.%d" % (system.name, run, i) for i in range(n)]
    in_parallel(lambda part: submit_all(system, part), tags)
    # every message tried once against the closed port and deferred
    time.sleep(3)
    sink = FastSink(work, port, writes)
    cpu0 = tree_cpu(system.pid())
    t0 = time.monotonic()
    system.flush()
    t1 = wait_count(sink, n, 900)
    cpu = tree_cpu(system.pid()) - cpu0
    system.reset()
    sink.stop()
    w = "_writing" if writes else ""
    return {"drain%s_s" % w: t1 - t0,
            "drain%s_cpu_per_1000_s" % w: cpu * 1000.0 / n}


def footprint(system, work):
    port = free_port()
    sink = FastSink(work, port)
    system.set_relay(port)
    system.start()
    # one message through, so every process that delivery needs is up
    submit_one(system, "%s.footprint" % system.name)
    wait_count(sink, 1, 60)
    time.sleep(2)
    rss, pss = tree_memory(system.pid())
    system.reset()
    sink.stop()
    return {"idle_rss_kib": rss, "idle_pss_kib": pss}


def disk_rate(work, secs=2.0):
    d = os.path.join(work, "disk")
    os.makedirs(os.path.join(d, "tmp"))
    os.makedirs(os.path.join(d, "new"))
    dfd = os.open(os.path.join(d, "new"), os.O_RDONLY | os.O_DIRECTORY)
    data = b"x" * 1024
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        tmp = os.path.join(d, "tmp", str(n))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(d, "new", str(n)))
        os.fsync(dfd)
        n += 1
    el = time.monotonic() - t0
    os.close(dfd)
    shutil.rmtree(d)
    return {"durable_writes_per_s": n / el, "durable_write_ms": el * 1000 / n}


def scale(sp, work, n, quiet_s):
    port = free_port()
    sp.set_relay(port)
    sp.start()
    tags = ["scale.%d" % i for i in range(n)]
    # one failed message, kept for failed_keep as an operator's would be,
    # so that the idle CPU includes looking for expired ones; made first,
    # as the first look after it comes within 30 s
    refused = "%014x%s" % (time.time_ns() // 1000, os.urandom(5).hex())
    with open(os.path.join(sp.spool, "new", refused), "wb") as f:
        f.write(b"not a spool file\n")
    in_parallel(lambda part: submit_all(sp, part), tags)
    time.sleep(5)  # picked up and tried once
    cpu0 = tree_cpu(sp.pid())
    time.sleep(quiet_s)
    idle_cpu = tree_cpu(sp.pid()) - cpu0
    rss, _ = tree_memory(sp.pid())
    anon_idle = proc_kib(sp.pid(), "RssAnon")
    t0 = time.monotonic()
    subprocess.run([sp.spoolctl, "-c", sp.conf, "list"],
                   stdout=subprocess.DEVNULL, check=True)
    list_s = time.monotonic() - t0
    t0 = time.monotonic()
    subprocess.run([sp.spoolctl, "-c", sp.conf, "status"],
                   stdout=subprocess.DEVNULL, check=True)
    status_s = time.monotonic() - t0
    sink = FastSink(work, port)
    # the LMDB map is file-backed and shows in RSS; what spoold allocates
    # itself is the anonymous part, sampled through the drain
    anon_peak = [0]
    draining = threading.Event()

    def sample_anon():
        while not draining.wait(0.05):
            anon_peak[0] = max(anon_peak[0], proc_kib(sp.pid(), "RssAnon"))
    sampler = threading.Thread(target=sample_anon)
    sampler.start()
    t0 = time.monotonic()
    try:
        sp.flush()
        t1 = wait_count(sink, n, 1800)
    finally:
        draining.set()
        sampler.join()
    hwm = proc_kib(sp.pid(), "VmHWM")
    anon = proc_kib(sp.pid(), "RssAnon")
    sp.reset()
    sink.stop()
    return {"scale_n": n, "scale_rss_kib": rss,
            "scale_rss_anon_idle_kib": anon_idle, "scale_peak_rss_kib": hwm,
            "scale_rss_anon_peak_kib": anon_peak[0],
            "scale_rss_anon_after_drain_kib": anon,
            "scale_idle_cpu_s": idle_cpu, "scale_quiet_s": quiet_s,
            "scale_list_s": list_s, "scale_status_s": status_s,
            "scale_drain_per_s": n / (t1 - t0)}


def spawn_floor(n=500):
    """A process that only starts and pipes the message to cat, started as
    the submitters are: the floor under any sendmail interface."""
    lat = []
    for i in range(n):
        t0 = time.time_ns()
        subprocess.run(["cat"], input=message("spawn.%d" % i),
                       stdout=subprocess.DEVNULL, check=True)
        lat.append((time.time_ns() - t0) / 1e6)
    return {"spawn_cat_p50_ms": pct(lat, 50)}


def sink_rate(work, n=4000):
    """How fast the fast sink takes ~1 KiB messages from one client and
    from four (spoold's default concurrency), each keeping its connection
    open (-d), measured with Postfix's smtp-source: to show the sink is not
    the bottleneck."""
    out = {}
    for sessions, writes, key in (
            (1, False, "sink_per_s_one_client"),
            (4, False, "sink_per_s_four_clients"),
            (4, True, "sink_writing_per_s_four_clients")):
        port = free_port()
        sink = FastSink(work, port, writes)
        t0 = time.monotonic()
        subprocess.run(["smtp-source", "-d", "-s", str(sessions), "-m",
                        str(n), "-l", "1024", "-f", "bench@bench.invalid",
                        "-t", "sink@bench.invalid", "127.0.0.1:%d" % port],
                       check=True, stdout=subprocess.DEVNULL)
        wait_count(sink, n, 120)
        out[key] = n / (time.monotonic() - t0)
        sink.stop()
    return out


# ---- report ------------------------------------------------------------

# The performance targets: (name, spoold's figure, Postfix's or the
# floor's, the highest ratio allowed). Each line says whether it is met.
def targets(s, q, common, n):
    rows = [
        ("idle_pss", s["idle_pss_kib"], q["idle_pss_kib"], 0.5),
        ("idle_rss", s["idle_rss_kib"], q["idle_rss_kib"], 0.25),
        ("par8_latency_p99", s["par8_latency_p99_ms"],
         q["par8_latency_p99_ms"], 0.5),
        ("par8_latency_p50", s["par8_latency_p50_ms"],
         q["par8_latency_p50_ms"], 1 / 3),
        ("seq_cpu_per_1000", s["seq_cpu_per_1000_s"],
         q["seq_cpu_per_1000_s"], 0.2),
        ("par8_cpu_per_1000", s["par8_cpu_per_1000_s"],
         q["par8_cpu_per_1000_s"], 0.2),
        ("seq_all_arrived", s["seq_all_arrived_s"], q["seq_all_arrived_s"],
         0.32),
        # the drain against the sink's own time for n messages from four
        # connections: within 10 %
        ("drain_vs_sink", s["drain_s"],
         n / common["sink_per_s_four_clients"], 1.1),
        ("drain_writing_vs_sink", s["drain_writing_s"],
         n / common["sink_writing_per_s_four_clients"], 1.1),
    ]
    out = []
    for name, mine, other, limit in rows:
        r = ratio(mine, other)
        out.append("target %s ratio=%.3g limit=%.3g %s"
                   % (name, r, limit, "met" if r <= limit else "NOT met"))
    # an absolute figure: it moves with the machine's cost of starting a
    # process, which the same line prints
    p50 = s["seq_latency_p50_ms"]
    out.append("target seq_latency_p50_ms value=%.3g limit=2.6 %s "
               "spawn_cat_p50_ms=%.3g"
               % (p50, "met" if p50 <= 2.6 else "NOT met",
                  common["spawn_cat_p50_ms"]))
    return out


def ratio(a, b):
    """a / b; at a small N a CPU figure can be 0 clock ticks."""
    return a / b if b else float("nan")


def medians(runs):
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def fmt(d):
    return " ".join("%s=%s" % (k, ("%.3g" % v) if isinstance(v, float)
                               else v) for k, v in d.items())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=10000,
                   help="messages per live and drain run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scale", type=int, default=100000,
                   help="messages of the scale run (0: skip)")
    p.add_argument("--quiet", type=float, default=60,
                   help="seconds of idle CPU measured in the scale run")
    p.add_argument("--spoold", default=shutil.which("spoold") or
                   os.path.join(SRC, "build", "spoold", "spoold"))
    p.add_argument("--spoolctl", default=shutil.which("spoolctl") or
                   os.path.join(SRC, "build", "spoolctl", "spoolctl"))
    p.add_argument("--out", default="bench-results.txt")
    p.add_argument("--systems", default="postfix,spoold",
                   help="which systems to run (ratios need both)")
    p.add_argument("--submit-user",
                   help="spoold's submitters run as this user, through a "
                   "copy of spoolctl setgid --submit-group")
    p.add_argument("--submit-group", default="spoold-submit",
                   help='"none": a plain copy (a spoolctl of the earlier '
                   "model)")
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (Postfix's master needs it)")
    for tool in ("postfix", "smtp-sink", "postqueue", "postsuper"):
        if not shutil.which(tool):
            sys.exit("bench: %s missing (apt-get install postfix)" % tool)
    for b in (a.spoold, a.spoolctl):
        if not os.access(b, os.X_OK):
            sys.exit("bench: %s is not an executable" % b)

    work = tempfile.mkdtemp(prefix="spoold-bench.")
    os.chmod(work, 0o755)
    sp = Spoold(work, a.spoold, a.spoolctl, 25, a.submit_user,
                a.submit_group)
    pf = Postfix(work, 25)
    systems = [s for s in (pf, sp) if s.name in a.systems.split(",")]
    results = {"spoold": {}, "postfix": {}}
    lines = []
    try:
        common = {}
        common.update(disk_rate(work))
        common.update(spawn_floor())
        log("disk and process start: " + fmt(common))
        # The systems take turns run by run (Postfix's run 0, spoold's run
        # 0, Postfix's run 1...), and the sink's capacity is measured in
        # each drain run: a machine that slows down during the benchmark
        # then slows both sides of every ratio, not one.
        for mode, par in (("seq", False), ("par8", True)):
            runs = {system.name: [] for system in systems}
            for r in range(a.runs):
                for system in systems:
                    runs[system.name].append(live(system, work, a.n, par, r))
                    log("%s live %s run %d: %s"
                        % (system.name, mode, r,
                           fmt(runs[system.name][-1])))
            for system in systems:
                for k, v in medians(runs[system.name]).items():
                    results[system.name]["%s_%s" % (mode, k)] = v
        sinks = []
        for writes in (False, True):
            runs = {system.name: [] for system in systems}
            for r in range(a.runs):
                if not writes:
                    sinks.append(sink_rate(work))
                    log("sink run %d: %s" % (r, fmt(sinks[-1])))
                for system in systems:
                    runs[system.name].append(
                        drain(system, work, a.n, r, writes))
                    log("%s drain run %d: %s"
                        % (system.name, r, fmt(runs[system.name][-1])))
            for system in systems:
                results[system.name].update(medians(runs[system.name]))
        common.update(medians(sinks))
        for system in systems:
            results[system.name].update(footprint(system, work))
        if a.scale > 0 and sp in systems:
            results["spoold"].update(scale(sp, work, a.scale, a.quiet))
            log("spoold scale: done")
    finally:
        sp.stop()
        pf.stop()
        for proc in SINKS:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    head = ("date=%s host=%s cores=%d n=%d runs=%d %s"
            % (time.strftime("%Y-%m-%d"), socket.gethostname(),
               os.cpu_count(), a.n, a.runs, fmt(common)))
    if a.submit_user:
        head += " submit_user=%s submit_group=%s" % (a.submit_user,
                                                     a.submit_group)
    lines.append(head)
    for system in systems:
        lines.append("system=%s %s" % (system.name,
                                       fmt(results[system.name])))
    s, q = results["spoold"], results["postfix"]
    ratios = {} if len(systems) < 2 else {
        "seq_all_arrived": ratio(s["seq_all_arrived_s"], q["seq_all_arrived_s"]),
        "par8_submit_rate": ratio(s["par8_submit_per_s"], q["par8_submit_per_s"]),
        "drain_speedup": ratio(q["drain_s"], s["drain_s"]),
        "drain_cpu": ratio(s["drain_cpu_per_1000_s"], q["drain_cpu_per_1000_s"]),
        "seq_cpu": ratio(s["seq_cpu_per_1000_s"], q["seq_cpu_per_1000_s"]),
        "idle_rss": ratio(s["idle_rss_kib"], q["idle_rss_kib"]),
    }
    if ratios:
        lines.append("ratios spoold/postfix %s" % fmt(ratios))
        lines += targets(s, q, common, a.n)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

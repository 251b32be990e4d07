#!/usr/bin/env python3
"""capture_sink.py - a small SMTP server that stores what it receives.

Used by the integration tests as the final hop: every completed transaction
becomes DIR/NNNNNN.eml (the DATA bytes after un-dot-stuffing, CRLF kept) and
DIR/NNNNNN.env (JSON: mail_from, rcpt_to, helo, peer). Both are written to a
temporary name and renamed, .eml first, so a reader that sees a .env file
always sees its complete .eml too.

--rate-limit N/SECONDS makes it a relay with a sending limit, a token
bucket like rspamd's: it holds N, gains N per SECONDS, and a MAIL FROM
that finds it empty gets "450 4.7.0 rate limit exceeded"; --refusals FILE
then holds the count of those refusals.

--gate FILE lets a test stop the client after the relay stored a message
and before the client read the 250 (the at-least-once window).

Failure policy: a malformed command gets a 5xx reply and the session goes
on; a client that disconnects mid-DATA leaves nothing behind. The sink
exits 0 on SIGTERM/SIGINT, and non-zero if it cannot bind its port.

Python 3 standard library only (asyncio), so it runs wherever python3 does.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import time

MAX_LINE = 4096
# DATA lines may legally be long before a relay re-encodes them; the
# stream limit only bounds memory per line.
STREAM_LIMIT = 1024 * 1024
MAX_DATA = 64 * 1024 * 1024


def parse_path(arg, keyword):
    """Returns the address inside 'KEYWORD:<addr> params', or None."""
    if not arg.upper().startswith(keyword):
        return None
    rest = arg[len(keyword):].lstrip()
    if not rest.startswith("<"):
        return None
    end = rest.find(">")
    if end < 0:
        return None
    return rest[1:end]


class Store:
    """Numbers and writes captured transactions atomically."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        existing = [int(n[:6]) for n in os.listdir(directory)
                    if n.endswith(".env") and n[:6].isdigit()]
        self.next = max(existing, default=0) + 1

    def _write(self, name, data):
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
        os.rename(tmp, os.path.join(self.dir, name))

    def save(self, mail_from, rcpt_to, helo, peer, data):
        n = "%06d" % self.next
        self.next += 1
        self._write(n + ".eml", data)
        env = {"mail_from": mail_from, "rcpt_to": rcpt_to, "helo": helo,
               "peer": peer}
        self._write(n + ".env", json.dumps(env).encode() + b"\n")
        return n


class Session:
    def __init__(self, server, reader, writer):
        self.srv = server
        self.r = reader
        self.w = writer
        self.helo = None
        self.reset()

    def reset(self):
        self.mail_from = None
        self.rcpt_to = []

    async def reply(self, text):
        self.w.write(text.encode() + b"\r\n")
        await self.w.drain()

    async def read_line(self):
        line = await self.r.readuntil(b"\n")
        if len(line) > MAX_LINE:
            raise ValueError("line too long")
        return line

    async def read_data(self):
        """Reads DATA up to the lone dot; returns the un-stuffed bytes or
        None if the message exceeded MAX_DATA (then everything up to the
        dot was still consumed)."""
        chunks = []
        size = 0
        too_big = False
        while True:
            line = await self.r.readuntil(b"\n")
            if line == b".\r\n" or line == b".\n":
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size > MAX_DATA:
                too_big = True
                chunks = []
            if not too_big:
                chunks.append(line)
        return None if too_big else b"".join(chunks)

    async def run(self):
        peer = self.w.get_extra_info("peername")
        self.peer = "%s:%s" % (peer[0], peer[1]) if peer else "?"
        await self.reply("220 capture-sink ESMTP ready")
        while True:
            try:
                raw = await self.read_line()
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except (ValueError, asyncio.LimitOverrunError):
                await self.reply("500 5.5.2 line too long")
                return
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            handler = getattr(self, "cmd_" + verb.lower(), None)
            if handler is None:
                await self.reply("502 5.5.2 command not recognized")
                continue
            if await handler(arg.strip()) is False:
                return

    async def cmd_ehlo(self, arg):
        if not arg:
            await self.reply("501 5.5.4 EHLO needs a domain")
            return
        self.helo = arg
        self.reset()
        await self.reply("250-capture-sink\r\n250-PIPELINING\r\n"
                         "250-8BITMIME\r\n250-SIZE %d\r\n"
                         "250 ENHANCEDSTATUSCODES" % MAX_DATA)

    async def cmd_helo(self, arg):
        if not arg:
            await self.reply("501 5.5.4 HELO needs a domain")
            return
        self.helo = arg
        self.reset()
        await self.reply("250 capture-sink")

    async def cmd_mail(self, arg):
        if self.helo is None:
            await self.reply("503 5.5.1 send EHLO first")
            return
        if self.mail_from is not None:
            await self.reply("503 5.5.1 nested MAIL command")
            return
        addr = parse_path(arg, "FROM:")
        if addr is None:
            await self.reply("501 5.5.4 syntax: MAIL FROM:<address>")
            return
        if not self.srv.rate_take():
            await self.reply("450 4.7.0 rate limit exceeded")
            return
        self.mail_from = addr
        await self.reply("250 2.1.0 ok")

    async def cmd_rcpt(self, arg):
        if self.mail_from is None:
            await self.reply("503 5.5.1 need MAIL first")
            return
        addr = parse_path(arg, "TO:")
        if addr is None or addr == "":
            await self.reply("501 5.5.4 syntax: RCPT TO:<address>")
            return
        code = self.srv.reject_rcpt.get(addr.lower())
        if code is not None:
            await self.reply("%d %s.1.1 <%s> rejected by test"
                             % (code, str(code)[0], addr))
            return
        self.rcpt_to.append(addr)
        await self.reply("250 2.1.5 ok")

    async def cmd_data(self, arg):
        if self.mail_from is None or not self.rcpt_to:
            await self.reply("503 5.5.1 need MAIL and RCPT first")
            return
        await self.reply("354 end data with <CR><LF>.<CR><LF>")
        try:
            data = await self.read_data()
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        except asyncio.LimitOverrunError:
            await self.reply("500 5.5.2 data line too long")
            return False
        if self.srv.data_delay > 0:
            # a slow relay: deliveries stay in flight for a while
            await asyncio.sleep(self.srv.data_delay)
        if data is None:
            await self.reply("552 5.3.4 message too big")
        elif self.srv.data_code is not None:
            await self.reply("%d %s.0.0 data refused by test"
                             % (self.srv.data_code,
                                str(self.srv.data_code)[0]))
        else:
            n = self.srv.store.save(self.mail_from, self.rcpt_to, self.helo,
                                    self.peer, data)
            await self.gate_wait(n)
            await self.reply("250 2.0.0 ok queued as %s" % n)
            self.gate_mark(".replied", n)
        self.reset()

    def gate_mark(self, suffix, n):
        if self.srv.gate is not None:
            with open(self.srv.gate + suffix, "a") as f:
                f.write(n + "\n")

    async def gate_wait(self, n):
        """With --gate FILE: while FILE exists, hold the 250 of a stored
        message, so a test can stop the client between the relay taking
        the message and the client hearing of it."""
        if self.srv.gate is None or not os.path.exists(self.srv.gate):
            return
        self.gate_mark(".held", n)
        while os.path.exists(self.srv.gate):
            await asyncio.sleep(0.02)

    async def cmd_rset(self, arg):
        self.reset()
        await self.reply("250 2.0.0 ok")

    async def cmd_noop(self, arg):
        await self.reply("250 2.0.0 ok")

    async def cmd_quit(self, arg):
        await self.reply("221 2.0.0 bye")
        return False


class Server:
    def __init__(self, opts):
        self.store = Store(opts.dir)
        self.reject_rcpt = {}
        for spec in opts.reject_rcpt:
            addr, _, code = spec.rpartition("=")
            if not addr or not code.isdigit() or not 400 <= int(code) < 600:
                raise SystemExit("capture_sink: bad --reject-rcpt %r "
                                 "(want ADDR=CODE, CODE 4xx or 5xx)" % spec)
            self.reject_rcpt[addr.lower()] = int(code)
        self.data_code = opts.data_code
        self.data_delay = opts.data_delay
        self.gate = opts.gate
        self.rate = None
        self.refusals = 0
        self.refusals_file = opts.refusals
        if opts.rate_limit is not None:
            count, _, secs = opts.rate_limit.partition("/")
            try:
                self.rate = (int(count), float(secs))
            except ValueError:
                raise SystemExit("capture_sink: bad --rate-limit %r (want "
                                 "N/SECONDS)" % opts.rate_limit)
            self.tokens = float(self.rate[0])
            self.tokens_at = time.monotonic()
        self.write_refusals()

    def write_refusals(self):
        if self.refusals_file is None:
            return
        tmp = self.refusals_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % self.refusals)
        os.rename(tmp, self.refusals_file)

    def rate_take(self):
        """One token of the --rate-limit bucket; False when it is empty."""
        if self.rate is None:
            return True
        now = time.monotonic()
        count, secs = self.rate
        self.tokens = min(float(count), self.tokens +
                          (now - self.tokens_at) * count / secs)
        self.tokens_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.refusals += 1
        self.write_refusals()
        return False

    async def handle(self, reader, writer):
        try:
            await Session(self, reader, writer).run()
        except ConnectionError:
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass


async def main_async(opts):
    srv = Server(opts)
    tls = None
    if opts.tls_cert is not None:
        # implicit TLS (port 465 style): the handshake comes first
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(opts.tls_cert, opts.tls_key)
    server = await asyncio.start_server(srv.handle, opts.host, opts.port,
                                        limit=STREAM_LIMIT, ssl=tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The harness waits for this line before it points anything at us.
    print("capture_sink ready on %s:%d" % (opts.host, opts.port), flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True,
                   help="where NNNNNN.eml / NNNNNN.env files go")
    p.add_argument("--reject-rcpt", action="append", default=[],
                   metavar="ADDR=CODE",
                   help="answer CODE to RCPT TO:<ADDR> (repeatable)")
    p.add_argument("--data-code", type=int, default=None,
                   help="answer this code after every DATA instead of 250")
    p.add_argument("--data-delay", type=float, default=0.0,
                   help="wait this many seconds before the final reply")
    p.add_argument("--rate-limit", default=None, metavar="N/SECONDS",
                   help="refuse MAIL FROM with 450 4.7.0 beyond N "
                   "messages per SECONDS (a token bucket holding N)")
    p.add_argument("--refusals", default=None, metavar="FILE",
                   help="keep the count of --rate-limit refusals in FILE")
    p.add_argument("--gate", default=None, metavar="FILE",
                   help="while FILE exists, hold each 250 after DATA; "
                   "append the transaction number to FILE.held when one "
                   "is held and to FILE.replied once it was sent")
    p.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="speak implicit TLS with this certificate chain")
    p.add_argument("--tls-key", default=None, metavar="FILE",
                   help="the private key of --tls-cert")
    opts = p.parse_args()
    if (opts.tls_cert is None) != (opts.tls_key is None):
        p.error("--tls-cert and --tls-key go together")
    try:
        asyncio.run(main_async(opts))
    except OSError as e:
        print("capture_sink: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""fault_relay.py - capture_sink.py with the faults of a misbehaving relay.

Runs the capture sink (same storage, same options, same "capture_sink
ready" line) and adds, all off by default:

  --fault STAGE=CODE[:TIMES]  answer CODE at STAGE instead of going on:
                              greeting, ehlo (EHLO and HELO), mail, rcpt,
                              data (the DATA command), dot (after the
                              payload, which is then not stored); only the
                              first TIMES times if given (counted over all
                              connections). After a 421 the relay closes
                              the connection, as RFC 5321 says; after a
                              refused greeting it answers only QUIT.
  --reply STAGE=TEXT          answer TEXT (a whole reply line, code first;
                              Python escapes such as \x1b and \x9b give raw
                              bytes) at STAGE (not dot) instead of going on,
                              as --fault does: e.g. a refusal that carries
                              terminal escapes. A 421 ends the connection.
  --drop-after-data TIMES     store the payload, then close the connection
                              without a reply: a relay that took the
                              message and died before saying so. The first
                              TIMES transactions.
  --no-greeting               accept connections and never say anything.
  --byte-delay SECONDS        write every reply one byte at a time.
  --faulty-connections N      the faults above (not the drop) apply to the
                              first N connections only; later ones are
                              served normally: a relay that recovers.
  --endless STAGE             at STAGE (greeting, ehlo, mail, rcpt, data,
                              dot) answer a multi-line reply that never
                              ends: "CODE-endless line N" lines, one every
                              --endless-interval seconds (default 0.05;
                              0: as fast as the client reads), so no read
                              waits long. When the client gives up, logs
                              "endless reply cut after N lines at UNIXTIME".

Every accepted connection is logged on stdout as
"connection N from PEER at UNIXTIME", so a test can count how often the
relay was tried and when. It binds 127.0.0.1 unless --host says otherwise
and stops on SIGTERM, like the sink.

Failure policy: a bad option exits non-zero with a message before binding.
"""

import argparse
import asyncio
import codecs
import os
import sys
import time

# the import must leave no __pycache__ in the source tree
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capture_sink  # noqa: E402  (the directory goes on the path first)

STAGES = ("greeting", "ehlo", "mail", "rcpt", "data", "dot")


class Faults:
    """What to do wrong, and how many times are left."""

    def __init__(self, opts):
        self.codes = {}  # stage -> [code, times left or None: always]
        for spec in opts.fault:
            stage, _, rest = spec.partition("=")
            code, _, times = rest.partition(":")
            if (stage not in STAGES or not code.isdigit()
                    or not 400 <= int(code) < 600
                    or (times and not times.isdigit())):
                raise SystemExit("fault_relay: bad --fault %r (want "
                                 "STAGE=CODE[:TIMES], STAGE one of %s)"
                                 % (spec, ", ".join(STAGES)))
            self.codes[stage] = [int(code), int(times) if times else None]
        self.texts = {}  # stage -> the raw reply line
        for spec in opts.reply:
            stage, _, text = spec.partition("=")
            raw = codecs.escape_decode(text.encode())[0]
            if stage not in STAGES[:-1] or not raw[:3].isdigit():
                raise SystemExit("fault_relay: bad --reply %r (want "
                                 "STAGE=CODE TEXT, STAGE one of %s)"
                                 % (spec, ", ".join(STAGES[:-1])))
            self.texts[stage] = raw
        self.drops_left = opts.drop_after_data
        self.no_greeting = opts.no_greeting
        self.byte_delay = opts.byte_delay
        self.faulty_connections = opts.faulty_connections
        self.connections = 0
        if opts.endless is not None and opts.endless not in STAGES:
            raise SystemExit("fault_relay: bad --endless %r (want one of %s)"
                             % (opts.endless, ", ".join(STAGES)))
        self.endless = opts.endless
        self.endless_interval = opts.endless_interval

    def due(self, stage):
        f = self.codes.get(stage)
        if f is None or f[1] == 0:
            return None
        if f[1] is not None:
            f[1] -= 1
        return f[0]

    def drop_due(self):
        if self.drops_left <= 0:
            return False
        self.drops_left -= 1
        return True


FAULTS = None  # set by main() before the server starts


class FaultSession(capture_sink.Session):
    refusing = False  # the greeting was refused: only QUIT is answered
    faulty = True  # this connection gets the faults

    async def reply(self, text):
        if FAULTS.byte_delay <= 0 or not self.faulty:
            return await super().reply(text)
        data = text.encode() + b"\r\n"
        for i in range(len(data)):
            self.w.write(data[i:i + 1])
            await self.w.drain()
            await asyncio.sleep(FAULTS.byte_delay)

    async def stream_endless(self, code):
        """Sends continuation lines of a reply until the client hangs up,
        then ends the connection."""
        n = 0
        try:
            while not self.w.is_closing():
                n += 1
                self.w.write(b"%d-endless line %d of a reply that never "
                             b"ends\r\n" % (code, n))
                await self.w.drain()
                if FAULTS.endless_interval > 0:
                    await asyncio.sleep(FAULTS.endless_interval)
                elif n % 64 == 0:
                    await asyncio.sleep(0)  # let the loop breathe
        except (ConnectionError, OSError):
            pass
        print("endless reply cut after %d lines at %.3f" % (n, time.time()),
              flush=True)
        raise ConnectionResetError("endless reply cut")

    async def fault(self, stage):
        """Answers the fault due at stage, if any: True when it did. A 421
        ends the connection."""
        if FAULTS.endless == stage and self.faulty:
            await self.stream_endless(220 if stage == "greeting" else
                                      354 if stage == "data" else 250)
        text = FAULTS.texts.get(stage) if self.faulty else None
        if text is not None:
            self.w.write(text + b"\r\n")
            await self.w.drain()
            if text.startswith(b"421"):
                raise ConnectionResetError("421 sent")
            return True
        code = FAULTS.due(stage) if self.faulty else None
        if code is None:
            return False
        await self.reply("%d %s.3.0 %s refused by fault_relay"
                         % (code, str(code)[0], stage))
        if code == 421:
            raise ConnectionResetError("421 sent")
        return True

    async def run(self):
        FAULTS.connections += 1
        self.faulty = (FAULTS.faulty_connections is None
                       or FAULTS.connections <= FAULTS.faulty_connections)
        peer = self.w.get_extra_info("peername")
        print("connection %d from %s:%s at %.3f"
              % (FAULTS.connections, peer[0] if peer else "?",
                 peer[1] if peer else "?", time.time()), flush=True)
        if FAULTS.no_greeting and self.faulty:
            while await self.r.read(4096):
                pass  # silent until the client gives up
            return None
        self.refusing = await self.fault("greeting")
        if not self.refusing:
            return await super().run()
        while True:
            try:
                line = await self.read_line()
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if line.strip().upper() == b"QUIT":
                await self.reply("221 2.0.0 bye")
                return None
            await self.reply("503 5.5.1 no service")

    async def cmd_ehlo(self, arg):
        if arg and await self.fault("ehlo"):
            return None
        return await super().cmd_ehlo(arg)

    async def cmd_helo(self, arg):
        if arg and await self.fault("ehlo"):
            return None
        return await super().cmd_helo(arg)

    async def cmd_mail(self, arg):
        if (self.helo is not None and self.mail_from is None
                and await self.fault("mail")):
            return None
        return await super().cmd_mail(arg)

    async def cmd_rcpt(self, arg):
        if self.mail_from is not None and await self.fault("rcpt"):
            return None
        return await super().cmd_rcpt(arg)

    async def cmd_data(self, arg):
        if self.mail_from is None or not self.rcpt_to:
            return await super().cmd_data(arg)
        if await self.fault("data"):
            self.reset()
            return None
        endless = FAULTS.endless == "dot" and self.faulty
        drop = not endless and FAULTS.drop_due()
        code = None if drop or not self.faulty else FAULTS.due("dot")
        if not drop and not endless and code is None:
            return await super().cmd_data(arg)
        await self.reply("354 end data with <CR><LF>.<CR><LF>")
        try:
            data = await self.read_data()
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        if endless:
            await self.stream_endless(250)
        if drop:
            self.srv.store.save(self.mail_from, self.rcpt_to, self.helo,
                                self.peer, data or b"")
            print("dropped the connection after the payload", flush=True)
            return False
        await self.reply("%d %s.3.0 data refused by fault_relay"
                         % (code, str(code)[0]))
        if code == 421:
            return False
        self.reset()
        return None


def main():
    global FAULTS
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--fault", action="append", default=[])
    p.add_argument("--reply", action="append", default=[])
    p.add_argument("--drop-after-data", type=int, default=0)
    p.add_argument("--no-greeting", action="store_true")
    p.add_argument("--byte-delay", type=float, default=0.0)
    p.add_argument("--faulty-connections", type=int, default=None)
    p.add_argument("--endless", default=None)
    p.add_argument("--endless-interval", type=float, default=0.05)
    opts, rest = p.parse_known_args()
    FAULTS = Faults(opts)
    # the sink's server builds sessions from its module's Session
    capture_sink.Session = FaultSession
    sys.argv = [sys.argv[0]] + rest
    return capture_sink.main()


if __name__ == "__main__":
    sys.exit(main())

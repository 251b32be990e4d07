#!/usr/bin/env python3
"""push_standin.py - ntfy, Gotify, Matrix, Telegram and a webhook receiver,
on 127.0.0.1 behind the tests' nginx (which adds TLS), written from each
service's published API:

  ntfy      POST /ntfy/<topic>, body = message, headers Title (RFC 2047
            words decoded, as ntfy does), Priority 1-5, Tags; Authorization:
            Bearer <token> when a token is set. At most 4,096 bytes of
            message (more becomes an attachment in ntfy).
  gotify    POST /gotify/message, header X-Gotify-Key, JSON {"title",
            "message", "priority"}; 401 with a wrong key.
  matrix    PUT /matrix/_matrix/client/v3/rooms/<room id, URL-encoded>/send/
            m.room.message/<txnId>, Authorization: Bearer, JSON {"msgtype":
            "m.text", "body"}; the same (token, txnId) is the same event
            (the spec's idempotency), answered with the same event_id.
  telegram  POST /telegram/bot<token>/sendMessage, JSON {"chat_id", "text"},
            text of 1 to 4,096 characters (UTF-16 units) or 400 "message is
            too long"; 401 with a wrong token.
  webhook   POST /webhook/hook, JSON with id, from, to, subject, date, text;
            Authorization: Bearer when a token is set.

Every request is appended to DIR/requests.jsonl (service, method, path,
headers, body, status, violations): a request that breaks its API's rules
is a violation, answered 400 and recorded, so the test can fail on it.
Accepted notifications go to DIR/events.jsonl. DIR/control.json, re-read
at each request, holds the tokens and the faults to play:
  {"tokens": {"ntfy": "...", ...}, "rooms": {...}, "chats": {...},
   "fault": {"ntfy": {"status": 429, "retry_after": "5"} | {"hang": 30}
             | {"drop_after_event": 1}, with "times": N to play it N
             times only }}
"""
import argparse
import base64
import email.header
import json
import os
import re
import socketserver
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

LOCK = threading.Lock()
MATRIX_TXNS = {}  # (token, txn) -> event_id


def utf16_len(s):
    return len(s.encode("utf-16-le")) // 2


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("push_standin: " + (fmt % args) + "\n")

    def control(self):
        try:
            with open(os.path.join(self.server.dir, "control.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def record(self, name, data, fname="requests.jsonl"):
        with LOCK, open(os.path.join(self.server.dir, fname), "a") as f:
            f.write(json.dumps(data, ensure_ascii=False) + "\n")

    def answer(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.answer(200, {"healthy": True})

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def handle_any(self, method):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        ctl = self.control()
        path = self.path
        svc = path.split("/")[1] if path.count("/") >= 2 else "?"
        rec = {"service": svc, "method": method, "path": path,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": raw.decode("utf-8", "replace"), "violations": [],
               "time": time.time()}
        fault = ctl.get("fault", {}).get(svc, {})
        if fault.get("times") and ("status" in fault or fault.get("hang")):
            self.fault_used(ctl, svc)
        if fault.get("hang"):
            rec["status"] = "hang"
            self.record(svc, rec)
            time.sleep(fault["hang"])
            self.close_connection = True
            return
        if "status" in fault:
            rec["status"] = fault["status"]
            self.record(svc, rec)
            extra = {}
            if "retry_after" in fault:
                extra["Retry-After"] = fault["retry_after"]
            self.answer(fault["status"], {"error": "fault"}, extra)
            return
        handler = getattr(self, "svc_" + svc, None)
        if handler is None:
            rec["violations"].append("unknown service path")
            status, obj, event = 404, {"error": "not found"}, None
        else:
            status, obj, event = handler(method, path, rec, raw, ctl)
        if rec["violations"] and status < 400:
            status, obj, event = 400, {"error": rec["violations"]}, None
        rec["status"] = status
        self.record(svc, rec)
        if event is not None:
            event["service"] = svc
            self.record(svc, event, "events.jsonl")
        if event is not None and fault.get("drop_after_event"):
            # the event is in, the answer is lost: the client sees the
            # connection close (nginx answers it 502)
            fault["times"] = 1
            self.fault_used(ctl, svc)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.answer(status, obj)

    def fault_used(self, ctl, svc):
        """Counts down a fault's "times"; at 0 the fault is gone."""
        fault = ctl["fault"][svc]
        fault["times"] -= 1
        if fault["times"] <= 0:
            ctl["fault"].pop(svc)
        path = os.path.join(self.server.dir, "control.json")
        with LOCK:
            with open(path + ".tmp", "w") as f:
                json.dump(ctl, f)
            os.replace(path + ".tmp", path)

    # ---- the services ---------------------------------------------------

    def bearer_ok(self, rec, token):
        got = self.headers.get("Authorization")
        if token is None:
            if got is not None:
                rec["violations"].append("Authorization without a token")
            return True
        return got == "Bearer " + token

    def json_body(self, rec, raw):
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip() != "application/json":
            rec["violations"].append("Content-Type %r" % ctype)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            rec["violations"].append("not JSON: %s" % e)
            return {}

    def svc_ntfy(self, method, path, rec, raw, ctl):
        m = re.fullmatch(r"/ntfy/([-_A-Za-z0-9]{1,64})", path)
        if method not in ("POST", "PUT") or m is None:
            rec["violations"].append("not POST /ntfy/<topic>")
            return 404, {}, None
        if not self.bearer_ok(rec, ctl.get("tokens", {}).get("ntfy")):
            return 403, {"code": 40301, "error": "forbidden"}, None
        title = self.headers.get("Title", "")
        try:
            title = str(email.header.make_header(
                email.header.decode_header(title)))
        except Exception as e:
            rec["violations"].append("Title not decodable: %s" % e)
        prio = self.headers.get("Priority", "3")
        if prio not in ("1", "2", "3", "4", "5"):
            rec["violations"].append("Priority %r" % prio)
        if len(raw) > 4096:
            rec["violations"].append("message over 4096 bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            rec["violations"].append("message not UTF-8")
            text = ""
        tags = [t for t in self.headers.get("Tags", "").split(",") if t]
        ev = {"topic": m.group(1), "title": title, "text": text,
              "priority": int(prio) if prio.isdigit() else None,
              "tags": tags}
        return 200, {"id": "x%d" % time.time_ns(), "event": "message",
                     "topic": m.group(1), "message": text}, ev

    def svc_gotify(self, method, path, rec, raw, ctl):
        if method != "POST" or path != "/gotify/message":
            rec["violations"].append("not POST /gotify/message")
            return 404, {}, None
        if self.headers.get("X-Gotify-Key") != ctl.get("tokens", {}).get(
                "gotify"):
            return 401, {"error": "Unauthorized", "errorCode": 401,
                         "errorDescription": "you need to provide a valid "
                         "access token"}, None
        d = self.json_body(rec, raw)
        if not isinstance(d.get("message"), str) or not d.get("message"):
            rec["violations"].append("message missing")
        if not isinstance(d.get("title", ""), str):
            rec["violations"].append("title not a string")
        if not isinstance(d.get("priority", 0), int):
            rec["violations"].append("priority not an integer")
        extra = set(d) - {"title", "message", "priority", "extras"}
        if extra:
            rec["violations"].append("unknown fields %s" % sorted(extra))
        ev = {"title": d.get("title"), "text": d.get("message"),
              "priority": d.get("priority")}
        return 200, {"id": int(time.time()), "appid": 1,
                     "message": d.get("message")}, ev

    def svc_matrix(self, method, path, rec, raw, ctl):
        m = re.fullmatch(r"/matrix/_matrix/client/v3/rooms/([^/]+)/send/"
                         r"m\.room\.message/([^/]+)", path)
        if method != "PUT" or m is None:
            rec["violations"].append("not PUT .../send/m.room.message/txn")
            return 404, {"errcode": "M_UNRECOGNIZED"}, None
        token = ctl.get("tokens", {}).get("matrix")
        if self.headers.get("Authorization") != "Bearer %s" % token:
            return 401, {"errcode": "M_UNKNOWN_TOKEN",
                         "error": "Invalid access token"}, None
        room = urllib.parse.unquote(m.group(1))
        if "!" in m.group(1) or ":" in m.group(1):
            rec["violations"].append("room id not URL-encoded")
        if room != ctl.get("rooms", {}).get("matrix"):
            return 403, {"errcode": "M_FORBIDDEN"}, None
        d = self.json_body(rec, raw)
        if d.get("msgtype") != "m.text" or not isinstance(d.get("body"),
                                                          str):
            rec["violations"].append("not an m.text with a body")
        if len(raw) > 65536:
            rec["violations"].append("event over 65536 bytes")
        txn = m.group(2)
        with LOCK:
            known = MATRIX_TXNS.get((token, txn))
            if known is None and not rec["violations"]:
                known = MATRIX_TXNS[(token, txn)] = "$ev%d" % time.time_ns()
                new = True
            else:
                new = False
        ev = None
        if new:
            ev = {"room": room, "txn": txn, "text": d.get("body"),
                  "event_id": known}
        return 200, {"event_id": known}, ev

    def svc_telegram(self, method, path, rec, raw, ctl):
        m = re.fullmatch(r"/telegram/bot([^/]+)/sendMessage", path)
        if method != "POST" or m is None:
            rec["violations"].append("not POST /bot<token>/sendMessage")
            return 404, {"ok": False, "error_code": 404}, None
        if m.group(1) != ctl.get("tokens", {}).get("telegram"):
            return 401, {"ok": False, "error_code": 401,
                         "description": "Unauthorized"}, None
        d = self.json_body(rec, raw)
        text = d.get("text")
        if str(d.get("chat_id")) != str(ctl.get("chats", {}).get(
                "telegram")):
            return 400, {"ok": False, "error_code": 400,
                         "description": "Bad Request: chat not found"}, None
        if not isinstance(text, str) or not text:
            rec["violations"].append("text missing")
            text = ""
        if utf16_len(text) > 4096:
            return 400, {"ok": False, "error_code": 400,
                         "description": "Bad Request: message is too long"}, \
                None
        ev = {"chat_id": d.get("chat_id"), "text": text}
        return 200, {"ok": True, "result": {"message_id": time.time_ns(),
                                            "text": text}}, ev

    def svc_webhook(self, method, path, rec, raw, ctl):
        if method != "POST" or path != "/webhook/hook":
            rec["violations"].append("not POST /webhook/hook")
            return 404, {}, None
        if not self.bearer_ok(rec, ctl.get("tokens", {}).get("webhook")):
            return 401, {"error": "unauthorized"}, None
        d = self.json_body(rec, raw)
        for k in ("id", "from", "to", "subject", "date", "text"):
            if k not in d:
                rec["violations"].append("no %s" % k)
        ev = dict(d)
        return 200, {"ok": True}, ev


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.dir = a.dir
    print("push_standin ready on 127.0.0.1:%d" % a.port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()

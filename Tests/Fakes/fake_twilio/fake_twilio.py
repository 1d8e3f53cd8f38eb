#!/usr/bin/env python3
"""A fake Twilio Programmable Messaging API for Chorus's tests.

It implements the Message resource's create call the SMS connector uses, as
documented at https://www.twilio.com/docs/messaging/api/message-resource :

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json
        HTTP Basic auth AccountSid:AuthToken, application/x-www-form-urlencoded:
        To, From or MessagingServiceSid, Body, MediaUrl (repeatable), StatusCallback
    -> 201 and the Message resource JSON (sid "SM…", status "queued", num_segments, …)
    -> documented errors: {"code": 21211, "message": "...", "more_info": "...", "status": 400}
       20003 (401, bad credentials), 21211 (invalid To), 21604 (To missing),
       21603 (From missing), 21602/21619 (no Body and no MediaUrl), 21610 (unsubscribed
       recipient), 21617 (body over 1600 characters), 21623 (over 10 media), 20429 (429)

It then delivers status callbacks on command, the way Twilio does: a signed
form POST to the message's StatusCallback URL with MessageSid, SmsSid,
MessageStatus, SmsStatus, AccountSid, From, To, ApiVersion and, for failed and
undelivered, ErrorCode. The X-Twilio-Signature header is computed with
Twilio's own library (twilio.request_validator.RequestValidator), so the
connector's signature check is tested against Twilio's code, not its own.

Admin API for tests (JSON):

    GET  /admin/messages     {"messages": [{"sid", "params" (name -> list of values), "status", "num_segments", ...}]}
    POST /admin/errors       {"status": 429, "code": 20429, "message": "...", "retry_after": 1, "count": 1}:
                             the next `count` create calls fail so
    POST /admin/opt_out      {"number": "+1..."}: the carrier-level STOP list (21610 on send)
    POST /admin/status       {"sid": "SM…", "statuses": ["sent", "delivered"] or
                              [{"status": "undelivered", "error_code": "30003"}]}: POSTs the callbacks
                             in order, answers {"deliveries": [{"status", "http_status", "body"}]}
    POST /admin/sign         {"url", "params": {name: value}}: {"signature"} by RequestValidator
    POST /admin/reset        forget messages, errors and the STOP list
    GET  /admin/violations   {"violations": [...]}: requests that did not follow the documented API

Usage: fake_twilio.py --account-sid AC… --auth-token … [--port 0]; prints "PORT <n>" once listening.
"""

import argparse
import base64
import email.utils
import json
import re
import secrets
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from twilio.request_validator import RequestValidator
except ImportError:  # pragma: no cover - the tests install it first
    sys.stderr.write("fake_twilio.py needs Twilio's Python library: python3 -m pip install twilio\n")
    sys.exit(2)

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
KNOWN_PARAMS = {"To", "From", "MessagingServiceSid", "Body", "MediaUrl", "StatusCallback", "ApplicationSid",
                "MaxPrice", "ProvideFeedback", "Attempt", "ValidityPeriod", "ForceDelivery", "ContentRetention",
                "AddressRetention", "SmartEncoded", "PersistentAction", "ShortenUrls", "ScheduleType", "SendAt",
                "SendAsMms", "ContentSid", "ContentVariables", "RiskCheck"}

GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENDED = set("\f^{}\\[~]|€")


def segments(body):
    """(encoding, segments, units) of a body, computed independently of the connector."""
    if all(c in GSM_BASIC or c in GSM_EXTENDED for c in body):
        sizes = [2 if c in GSM_EXTENDED else 1 for c in body]
        single, per_part, encoding = 160, 153, "GSM-7"
    else:
        sizes = [len(c.encode("utf-16-le")) // 2 for c in body]
        single, per_part, encoding = 70, 67, "UCS-2"
    total = sum(sizes)
    if total <= single:
        return encoding, 1, total
    parts, used = 1, 0
    for s in sizes:
        if used + s > per_part:
            parts, used = parts + 1, 0
        used += s
    return encoding, parts, total


class State:
    def __init__(self, account_sid, auth_token):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.validator = RequestValidator(auth_token)
        self.lock = threading.RLock()
        self.messages = []
        self.errors = []
        self.opted_out = set()
        self.violations = []

    def reset(self):
        with self.lock:
            self.messages.clear()
            self.errors.clear()
            self.opted_out.clear()
            self.violations.clear()


def twilio_error(status, code, message):
    return status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeTwilio/1.0"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def state(self):
        return self.server.state

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def violation(self, what):
        with self.state.lock:
            self.state.violations.append({"path": self.path, "violation": what})

    # -- routing ----------------------------------------------------------------------------------

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/admin/messages":
            with self.state.lock:
                return self.reply(200, {"messages": list(self.state.messages)})
        if path == "/admin/violations":
            with self.state.lock:
                return self.reply(200, {"violations": list(self.state.violations)})
        return self.reply(*twilio_error(404, 20404, "The requested resource was not found"))

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        raw = self.body()
        m = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/Messages\.json", path)
        if m:
            return self.create_message(m.group(1), raw)
        if path.startswith("/admin/"):
            try:
                payload = json.loads(raw or b"{}")
            except ValueError as e:
                return self.reply(400, {"error": f"bad JSON: {e}"})
            return self.admin(path, payload)
        return self.reply(*twilio_error(404, 20404, "The requested resource was not found"))

    # -- the Messages API -------------------------------------------------------------------------

    def create_message(self, account, raw):
        st = self.state
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{st.account_sid}:{st.auth_token}".encode()).decode()
        if auth != expected or account != st.account_sid:
            self.violation("bad credentials or account in path")
            return self.reply(*twilio_error(401, 20003, "Authenticate"))
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            self.violation(f"Content-Type {ctype!r}")
            return self.reply(*twilio_error(400, 20001, "Content-Type must be application/x-www-form-urlencoded"))
        try:
            pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
        except (ValueError, UnicodeDecodeError) as e:
            self.violation(f"malformed form body: {e}")
            return self.reply(*twilio_error(400, 20001, f"Malformed form body: {e}"))
        params = {}
        for k, v in pairs:
            params.setdefault(k, []).append(v)
        for k in params:
            if k not in KNOWN_PARAMS:
                self.violation(f"unknown parameter {k}")
        for k, vs in params.items():
            if k != "MediaUrl" and len(vs) > 1:
                self.violation(f"parameter {k} given {len(vs)} times")

        with st.lock:
            if st.errors:
                err = st.errors[0]
                err["count"] -= 1
                if err["count"] <= 0:
                    st.errors.pop(0)
                headers = {"Retry-After": str(err["retry_after"])} if err.get("retry_after") is not None else None
                status, body = twilio_error(err.get("status", 400), err.get("code", 21211), err.get("message", "Scripted error"))
                self.record(params, None, status, body)
                return self.reply(status, body, headers)

        one = lambda k: (params.get(k) or [None])[0]
        to, sender, service = one("To"), one("From"), one("MessagingServiceSid")
        body = one("Body") or ""
        media = params.get("MediaUrl", [])
        callback = one("StatusCallback")
        if not to:
            return self.fail(params, 400, 21604, "A 'To' phone number is required.")
        if not E164.match(to):
            return self.fail(params, 400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender and not service:
            return self.fail(params, 400, 21603, "A 'From' phone number is required.")
        if not body and not media:
            return self.fail(params, 400, 21619 if service else 21602, "A text message body or media urls must be specified.")
        if len(body) > 1600:
            return self.fail(params, 400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if len(media) > 10:
            return self.fail(params, 400, 21623, "The number of media files exceeds the allowed limit of 10.")
        if any(not u.startswith(("http://", "https://")) for u in media):
            return self.fail(params, 400, 21620, "Invalid media URL(s).")
        if callback is not None and not callback.startswith(("http://", "https://")):
            return self.fail(params, 400, 21609, "Invalid StatusCallback URL.")
        with st.lock:
            if to in st.opted_out:
                return self.fail(params, 400, 21610, "Attempt to send to unsubscribed recipient", locked=True)

        encoding, num_segments, units = segments(body)
        sid = "SM" + secrets.token_hex(16)
        now = email.utils.formatdate(usegmt=True).replace("GMT", "+0000")
        resource = {
            "account_sid": st.account_sid, "api_version": "2010-04-01", "body": body,
            "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": sender, "messaging_service_sid": service,
            "num_media": str(len(media)), "num_segments": str(num_segments), "price": None, "price_unit": "USD",
            "sid": sid, "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{st.account_sid}/Messages/{sid}/Media.json"},
            "to": to, "uri": f"/2010-04-01/Accounts/{st.account_sid}/Messages/{sid}.json",
        }
        self.record(params, resource, 201, resource, encoding=encoding, units=units)
        return self.reply(201, resource)

    def fail(self, params, status, code, message, locked=False):
        status, body = twilio_error(status, code, message)
        if locked:
            self.state.messages.append({"sid": None, "params": params, "http_status": status, "response": body})
        else:
            self.record(params, None, status, body)
        return self.reply(status, body)

    def record(self, params, resource, status, body, encoding=None, units=None):
        entry = {"sid": resource["sid"] if resource else None, "params": params, "http_status": status, "response": body}
        if resource:
            entry.update({"status": resource["status"], "num_segments": int(resource["num_segments"]),
                          "encoding": encoding, "units": units, "from": resource["from"], "to": resource["to"]})
        with self.state.lock:
            self.state.messages.append(entry)

    # -- admin --------------------------------------------------------------------------------------

    def admin(self, path, payload):
        st = self.state
        if path == "/admin/reset":
            st.reset()
            return self.reply(200, {"ok": True})
        if path == "/admin/errors":
            e = dict(payload)
            e.setdefault("count", 1)
            with st.lock:
                st.errors.append(e)
            return self.reply(200, {"ok": True})
        if path == "/admin/opt_out":
            with st.lock:
                st.opted_out.add(payload["number"])
            return self.reply(200, {"ok": True})
        if path == "/admin/sign":
            params = {k: str(v) for k, v in (payload.get("params") or {}).items()}
            return self.reply(200, {"signature": st.validator.compute_signature(payload["url"], params)})
        if path == "/admin/status":
            return self.deliver_statuses(payload)
        return self.reply(404, {"error": f"no admin route {path}"})

    def deliver_statuses(self, payload):
        st = self.state
        sid = payload.get("sid")
        with st.lock:
            message = next((m for m in st.messages if m["sid"] == sid), None)
        if message is None:
            return self.reply(404, {"error": f"no message {sid}"})
        callback = (message["params"].get("StatusCallback") or [None])[0]
        if not callback:
            return self.reply(400, {"error": f"message {sid} was sent without a StatusCallback"})
        deliveries = []
        for item in payload.get("statuses", []):
            if isinstance(item, str):
                item = {"status": item}
            params = {
                "MessageSid": sid, "SmsSid": sid, "AccountSid": st.account_sid, "ApiVersion": "2010-04-01",
                "MessageStatus": item["status"], "SmsStatus": item["status"],
                "From": message.get("from") or "", "To": message.get("to") or "",
            }
            if message["params"].get("MessagingServiceSid"):
                params["MessagingServiceSid"] = message["params"]["MessagingServiceSid"][0]
            if item.get("error_code") is not None:
                params["ErrorCode"] = str(item["error_code"])
            if item["status"] in ("delivered", "undelivered"):
                params["RawDlrDoneDate"] = "2611231000"
            signature = st.validator.compute_signature(callback, params)
            data = urllib.parse.urlencode(params).encode()
            req = urllib.request.Request(callback, data=data, method="POST", headers={
                "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature,
                "User-Agent": "TwilioProxy/1.1"})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    deliveries.append({"status": item["status"], "http_status": resp.status, "body": resp.read().decode("utf-8", "replace")})
            except urllib.error.HTTPError as e:
                deliveries.append({"status": item["status"], "http_status": e.code, "body": e.read().decode("utf-8", "replace")})
            except OSError as e:
                deliveries.append({"status": item["status"], "http_status": 0, "body": str(e)})
            with st.lock:
                message["status"] = item["status"]
        return self.reply(200, {"deliveries": deliveries})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--account-sid", required=True)
    ap.add_argument("--auth-token", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args.account_sid, args.auth_token)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

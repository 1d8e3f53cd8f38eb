#!/usr/bin/env python3
"""A fake Slack Web API for Chorus's tests (Python standard library; slack_sdk optional).

It answers the Web API methods the Slack connector uses, on ``/api/<method>``
like https://slack.com/api, with Slack's documented envelopes
(https://docs.slack.dev/apis/web-api/):

    HTTP 200 {"ok": true, ...}
    HTTP 200 {"ok": false, "error": "channel_not_found"}
    HTTP 429 Retry-After: 3  {"ok": false, "error": "ratelimited"}

Every call must carry ``Authorization: Bearer <token>`` (else ``not_authed`` /
``invalid_auth``) and a body in a content type the method accepts
(``application/json`` for chat.* and reactions.*; form encoding for
everything, and only form encoding for files.*). Arguments are checked
against the method's documented shape: required arguments, ``ts`` formats,
and Block Kit blocks (types, text objects, Slack's length limits and element
counts; when slack_sdk is installed its Block Kit models also validate every
block). A call that does not follow the documentation is answered with the
error Slack gives (``invalid_arguments``, ``invalid_blocks``, …) and recorded
as a *violation*, so a test can assert that the connector sent nothing
malformed.

Methods: chat.postMessage, chat.update, chat.delete, reactions.add,
reactions.remove, files.getUploadURLExternal (+ POST to the returned
upload_url), files.completeUploadExternal.

Admin API for tests (JSON):

    POST /admin/errors      {"method", "error" | "http_status", "retry_after", "count"}: the next
                            `count` calls of `method` ("*" = any) fail so (http_status 429 sends
                            Retry-After: retry_after and {"ok":false,"error":"ratelimited"})
    POST /admin/blobs       {"name", "content"}: a file served at GET /blobs/<name> (for uploads by URL)
    POST /admin/reset       forget requests, violations, errors, messages
    GET  /admin/requests    {"requests": [{"method", "params", "content_type", "status", "t"}]} (?method=chat.postMessage)
    GET  /admin/violations  {"violations": [...]}
    GET  /admin/messages    {"messages": [...]}: what the workspace now shows (posts, edits, deletions, files)
    GET  /admin/reactions   {"reactions": [[channel, ts, name], ...]}

Usage: fake_slack.py --token xoxb-... [--port 0]; prints "PORT <n>" once listening.
"""

import argparse
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:  # Slack's own Block Kit models, when available, double-check every block.
    from slack_sdk.models.blocks import Block
    from slack_sdk.errors import SlackObjectFormationError
except Exception:  # pragma: no cover - the tests install slack_sdk
    Block = None
    SlackObjectFormationError = Exception

TS = re.compile(r"^\d{10}\.\d{6}$")
CHANNEL = re.compile(r"^[CDGUW][A-Z0-9]{2,}$")

LOCK = threading.Lock()
STATE = {
    "requests": [], "violations": [], "errors": [], "messages": {}, "reactions": set(), "blobs": {},
    "uploads": {}, "next_ts": 1700000000, "next_file": 1, "port": 0,
}


class ApiError(Exception):
    def __init__(self, error, detail=""):
        super().__init__(error)
        self.error = error
        self.detail = detail


def next_ts():
    STATE["next_ts"] += 1
    return "%d.%06d" % (STATE["next_ts"], STATE["next_ts"] % 1000000)


def violation(method, error, detail):
    STATE["violations"].append({"method": method, "error": error, "detail": detail})
    raise ApiError(error, detail)


# ---------------------------------------------------------------------------
# Block Kit checks, from https://docs.slack.dev/reference/block-kit/blocks
# ---------------------------------------------------------------------------

def text_object(method, path, t, types=("plain_text", "mrkdwn"), limit=3000):
    if not isinstance(t, dict) or t.get("type") not in types:
        violation(method, "invalid_blocks", "%s: expected a text object of type %s" % (path, "/".join(types)))
    if not isinstance(t.get("text"), str) or not t["text"]:
        violation(method, "invalid_blocks", "%s.text: required, non-empty" % path)
    if len(t["text"]) > limit:
        violation(method, "invalid_blocks", "%s.text: longer than %d" % (path, limit))
    extra = set(t) - {"type", "text", "emoji", "verbatim"}
    if extra:
        violation(method, "invalid_blocks", "%s: unknown fields %s" % (path, sorted(extra)))


def element(method, path, el, action_ids):
    kind = el.get("type") if isinstance(el, dict) else None
    if kind == "button":
        text_object(method, path + ".text", el.get("text"), ("plain_text",), 75)
        aid = el.get("action_id")
        if not isinstance(aid, str) or not aid or len(aid) > 255:
            violation(method, "invalid_blocks", "%s.action_id: required, at most 255 characters" % path)
        if aid in action_ids:
            violation(method, "invalid_blocks", "%s.action_id: %r is not unique in the message" % (path, aid))
        action_ids.add(aid)
        if "value" in el and (not isinstance(el["value"], str) or len(el["value"]) > 2000):
            violation(method, "invalid_blocks", "%s.value: a string of at most 2000 characters" % path)
        if "url" in el and (not isinstance(el["url"], str) or len(el["url"]) > 3000 or not el["url"].startswith(("http://", "https://"))):
            violation(method, "invalid_blocks", "%s.url: an http(s) URL of at most 3000 characters" % path)
        if "style" in el and el["style"] not in ("primary", "danger"):
            violation(method, "invalid_blocks", "%s.style: primary or danger" % path)
        extra = set(el) - {"type", "text", "action_id", "value", "url", "style", "confirm", "accessibility_label"}
        if extra:
            violation(method, "invalid_blocks", "%s: unknown fields %s" % (path, sorted(extra)))
    elif kind == "static_select":
        text_object(method, path + ".placeholder", el.get("placeholder"), ("plain_text",), 150)
        aid = el.get("action_id")
        if not isinstance(aid, str) or not aid:
            violation(method, "invalid_blocks", "%s.action_id: required" % path)
        action_ids.add(aid)
        options = el.get("options")
        groups = el.get("option_groups")
        if (options is None) == (groups is None):
            violation(method, "invalid_blocks", "%s: exactly one of options and option_groups" % path)
        all_options = options or [o for g in groups for o in g.get("options", [])]
        if not 1 <= len(all_options) <= 100:
            violation(method, "invalid_blocks", "%s: 1 to 100 options" % path)
        for i, o in enumerate(all_options):
            text_object(method, "%s.options[%d].text" % (path, i), o.get("text"), ("plain_text",), 75)
            if not isinstance(o.get("value"), str) or not o["value"] or len(o["value"]) > 150:
                violation(method, "invalid_blocks", "%s.options[%d].value: 1 to 150 characters" % (path, i))
    else:
        violation(method, "invalid_blocks", "%s.type: unsupported element %r" % (path, kind))


def check_blocks(method, blocks):
    if not isinstance(blocks, list):
        violation(method, "invalid_blocks_format", "blocks must be an array")
    if len(blocks) > 50:
        violation(method, "invalid_blocks", "more than 50 blocks")
    action_ids = set()
    for i, b in enumerate(blocks):
        path = "blocks[%d]" % i
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "section":
            if "text" not in b and "fields" not in b:
                violation(method, "invalid_blocks", path + ": a section needs text or fields")
            if "text" in b:
                text_object(method, path + ".text", b["text"])
            if "accessory" in b:
                element(method, path + ".accessory", b["accessory"], action_ids)
            extra = set(b) - {"type", "text", "fields", "accessory", "block_id", "expand"}
        elif kind == "actions":
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 25:
                violation(method, "invalid_blocks", path + ".elements: 1 to 25 elements")
            for j, el in enumerate(els):
                element(method, "%s.elements[%d]" % (path, j), el, action_ids)
            extra = set(b) - {"type", "elements", "block_id"}
        elif kind == "header":
            text_object(method, path + ".text", b.get("text"), ("plain_text",), 150)
            extra = set(b) - {"type", "text", "block_id"}
        elif kind == "context":
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 10:
                violation(method, "invalid_blocks", path + ".elements: 1 to 10 elements")
            for j, el in enumerate(els):
                text_object(method, "%s.elements[%d]" % (path, j), el)
            extra = set(b) - {"type", "elements", "block_id"}
        elif kind == "image":
            if not isinstance(b.get("image_url"), str) or not b["image_url"].startswith(("http://", "https://")):
                violation(method, "invalid_blocks", path + ".image_url: an http(s) URL")
            if not isinstance(b.get("alt_text"), str) or not b["alt_text"] or len(b["alt_text"]) > 2000:
                violation(method, "invalid_blocks", path + ".alt_text: 1 to 2000 characters")
            if "title" in b:
                text_object(method, path + ".title", b["title"], ("plain_text",), 2000)
            extra = set(b) - {"type", "image_url", "alt_text", "title", "block_id", "slack_file"}
        else:
            violation(method, "invalid_blocks", "%s.type: unsupported block %r" % (path, kind))
        if extra:
            violation(method, "invalid_blocks", "%s: unknown fields %s" % (path, sorted(extra)))
        if "block_id" in b and (not isinstance(b["block_id"], str) or len(b["block_id"]) > 255):
            violation(method, "invalid_blocks", path + ".block_id: at most 255 characters")
        if Block is not None:
            try:
                parsed = Block.parse(b)
                if parsed is None:
                    violation(method, "invalid_blocks", "%s: slack_sdk does not know this block" % path)
                parsed.validate_json()
            except SlackObjectFormationError as e:
                violation(method, "invalid_blocks", "%s: slack_sdk: %s" % (path, e))


# ---------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------

def require(method, params, *names):
    for n in names:
        v = params.get(n)
        if v is None or v == "":
            violation(method, "invalid_arguments", "missing required argument %r" % n)


def check_ts(method, params, name):
    v = params.get(name)
    if v is not None and (not isinstance(v, str) or not TS.match(v)):
        violation(method, "invalid_arguments" if name != "thread_ts" else "invalid_thread_ts", "%s: expected a Slack ts, found %r" % (name, v))


def check_channel(method, params, name="channel"):
    v = params.get(name)
    if not isinstance(v, str) or not CHANNEL.match(v):
        violation(method, "channel_not_found", "%s: %r is not a channel id" % (name, v))


def content(method, params):
    blocks = params.get("blocks")
    if isinstance(blocks, str):  # form encoding carries blocks as JSON text
        try:
            blocks = json.loads(blocks)
        except ValueError:
            violation(method, "invalid_blocks_format", "blocks is not JSON")
    if blocks is not None:
        check_blocks(method, blocks)
    text = params.get("text")
    if text is not None and not isinstance(text, str):
        violation(method, "invalid_arguments", "text must be a string")
    if not text and not blocks and not params.get("attachments"):
        violation(method, "no_text", "text, blocks or attachments is required")
    if text and len(text) > 40000:
        violation(method, "msg_too_long", "text longer than 40000 characters")
    return text, blocks


def post_message(params):
    m = "chat.postMessage"
    require(m, params, "channel")
    check_channel(m, params)
    check_ts(m, params, "thread_ts")
    text, blocks = content(m, params)
    for flag in ("mrkdwn", "reply_broadcast", "unfurl_links", "unfurl_media"):
        if flag in params and not isinstance(params[flag], bool) and params[flag] not in ("true", "false"):
            violation(m, "invalid_arguments", "%s must be a boolean" % flag)
    ts = next_ts()
    msg = {"type": "message", "channel": params["channel"], "ts": ts, "text": text or "", "user": "U0FAKEBOT",
           "bot_id": "B0FAKEBOT"}
    if blocks is not None:
        msg["blocks"] = blocks
    if params.get("thread_ts"):
        msg["thread_ts"] = params["thread_ts"]
    STATE["messages"][(params["channel"], ts)] = msg
    return {"channel": params["channel"], "ts": ts, "message": {k: v for k, v in msg.items() if k != "channel"}}


def existing(m, params):
    require(m, params, "channel", "ts")
    check_channel(m, params)
    check_ts(m, params, "ts")
    msg = STATE["messages"].get((params["channel"], params["ts"]))
    if msg is None or msg.get("deleted"):
        raise ApiError("message_not_found")
    return msg


def update(params):
    m = "chat.update"
    msg = existing(m, params)
    text, blocks = content(m, params)
    msg["text"] = text or ""
    if blocks is not None:
        msg["blocks"] = blocks
    msg["edited"] = True
    return {"channel": params["channel"], "ts": params["ts"], "text": msg["text"]}


def delete(params):
    msg = existing("chat.delete", params)
    msg["deleted"] = True
    return {"channel": params["channel"], "ts": params["ts"]}


def reaction(params, add):
    m = "reactions.add" if add else "reactions.remove"
    require(m, params, "channel", "timestamp", "name")
    check_channel(m, params)
    check_ts(m, params, "timestamp")
    name = params["name"]
    if ":" in name or " " in name:
        violation(m, "invalid_name", "name %r: the reaction's name, without colons" % name)
    key = (params["channel"], params["timestamp"], name)
    if add:
        if key in STATE["reactions"]:
            raise ApiError("already_reacted")
        STATE["reactions"].add(key)
    else:
        if key not in STATE["reactions"]:
            raise ApiError("no_reaction")
        STATE["reactions"].discard(key)
    return {}


def get_upload_url(params):
    m = "files.getUploadURLExternal"
    require(m, params, "filename", "length")
    try:
        length = int(params["length"])
    except (TypeError, ValueError):
        violation(m, "invalid_arguments", "length must be an integer")
    if length <= 0:
        violation(m, "invalid_arguments", "length must be positive")
    fid = "F0FAKE%04d" % STATE["next_file"]
    STATE["next_file"] += 1
    STATE["uploads"][fid] = {"filename": params["filename"], "length": length, "content": None}
    return {"upload_url": "http://127.0.0.1:%d/upload/%s" % (STATE["port"], fid), "file_id": fid}


def complete_upload(params):
    m = "files.completeUploadExternal"
    require(m, params, "files")
    try:
        files = json.loads(params["files"])
    except (TypeError, ValueError):
        violation(m, "invalid_arguments", "files must be a JSON array")
    if not isinstance(files, list) or not files:
        violation(m, "invalid_arguments", "files must be a non-empty JSON array")
    channel = params.get("channel_id")
    if channel is not None:
        check_channel(m, params, "channel_id")
    check_ts(m, params, "thread_ts")
    if params.get("thread_ts") and not channel:
        violation(m, "invalid_arguments", "thread_ts needs channel_id")
    out = []
    for f in files:
        if not isinstance(f, dict) or set(f) - {"id", "title"} or not f.get("id"):
            violation(m, "invalid_arguments", "each file is {id, title}")
        up = STATE["uploads"].get(f["id"])
        if up is None or up["content"] is None:
            raise ApiError("file_not_found")
        info = {"id": f["id"], "name": up["filename"], "title": f.get("title") or up["filename"], "size": up["length"]}
        if channel:
            ts = next_ts()
            info["shares"] = {"public": {channel: [{"ts": ts, "reply_count": 0}]}}
            msg = {"type": "message", "subtype": "file_share", "channel": channel, "ts": ts,
                   "text": params.get("initial_comment", ""), "files": [info["id"]]}
            if params.get("thread_ts"):
                msg["thread_ts"] = params["thread_ts"]
            STATE["messages"][(channel, ts)] = msg
        out.append(info)
    return {"files": out}


METHODS = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "reactions.add": lambda p: reaction(p, True),
    "reactions.remove": lambda p: reaction(p, False),
    "files.getUploadURLExternal": get_upload_url,
    "files.completeUploadExternal": complete_upload,
}
FORM_ONLY = {"files.getUploadURLExternal", "files.completeUploadExternal"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    token = ""

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8" if not isinstance(body, bytes) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        with LOCK:
            if url.path == "/admin/requests":
                reqs = [r for r in STATE["requests"] if "method" not in q or r["method"] == q["method"][0]]
                return self.reply(200, {"requests": reqs})
            if url.path == "/admin/violations":
                return self.reply(200, {"violations": STATE["violations"]})
            if url.path == "/admin/messages":
                return self.reply(200, {"messages": list(STATE["messages"].values())})
            if url.path == "/admin/reactions":
                return self.reply(200, {"reactions": sorted(list(r) for r in STATE["reactions"])})
            if url.path.startswith("/blobs/"):
                blob = STATE["blobs"].get(url.path[len("/blobs/"):])
                if blob is None:
                    return self.reply(404, {"error": "no such blob"})
                return self.reply(200, blob)
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        url = urllib.parse.urlparse(self.path)
        raw = self.body()
        with LOCK:
            if url.path.startswith("/admin/"):
                return self.admin(url.path, raw)
            if url.path.startswith("/upload/"):
                fid = url.path[len("/upload/"):]
                up = STATE["uploads"].get(fid)
                if up is None:
                    return self.reply(404, b"no such upload")
                if len(raw) != up["length"]:
                    STATE["violations"].append({"method": "upload", "error": "length_mismatch",
                                                "detail": "announced %d bytes, sent %d" % (up["length"], len(raw))})
                    return self.reply(400, b"length mismatch")
                up["content"] = raw
                STATE["requests"].append({"method": "upload", "params": {"file_id": fid, "bytes": len(raw)},
                                          "content_type": self.headers.get("Content-Type"), "status": 200, "t": time.time()})
                return self.reply(200, ("OK - %d" % len(raw)).encode())
            if url.path.startswith("/api/"):
                return self.api(url.path[len("/api/"):], raw)
        self.reply(404, {"error": "not found"})

    def admin(self, path, raw):
        body = json.loads(raw or b"null")
        if path == "/admin/errors":
            STATE["errors"].append(dict(body, count=body.get("count", 1)))
        elif path == "/admin/blobs":
            STATE["blobs"][body["name"]] = body["content"].encode()
        elif path == "/admin/reset":
            for k in ("requests", "violations", "errors"):
                STATE[k] = []
            STATE["messages"] = {}
            STATE["reactions"] = set()
        else:
            return self.reply(404, {"error": "unknown admin path"})
        return self.reply(200, {"ok": True})

    def api(self, method, raw):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        record = {"method": method, "params": None, "content_type": ctype, "status": 200, "t": time.time()}
        STATE["requests"].append(record)
        auth = self.headers.get("Authorization")
        if not auth:
            return self.reply(200, {"ok": False, "error": "not_authed"})
        if auth != "Bearer " + self.token:
            return self.reply(200, {"ok": False, "error": "invalid_auth"})
        try:
            if ctype == "application/json":
                if method in FORM_ONLY:
                    violation(method, "invalid_form_data", "%s takes form-encoded arguments, not JSON" % method)
                params = json.loads(raw or b"{}")
                if not isinstance(params, dict):
                    violation(method, "invalid_json", "the body must be a JSON object")
                if "charset=utf-8" not in (self.headers.get("Content-Type") or "").lower().replace(" ", ""):
                    STATE["warnings"] = STATE.get("warnings", []) + ["missing_charset"]
            elif ctype == "application/x-www-form-urlencoded":
                params = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode(), keep_blank_values=True).items()}
            else:
                violation(method, "invalid_form_data", "unsupported content type %r" % ctype)
            record["params"] = params
            for e in STATE["errors"]:
                if e["count"] > 0 and e["method"] in (method, "*"):
                    e["count"] -= 1
                    if e.get("http_status") == 429:
                        record["status"] = 429
                        return self.reply(429, {"ok": False, "error": "ratelimited"},
                                          [("Retry-After", str(e.get("retry_after", 1)))])
                    if e.get("http_status"):
                        record["status"] = e["http_status"]
                        return self.reply(e["http_status"], b"upstream failure")
                    return self.reply(200, {"ok": False, "error": e["error"]})
            impl = METHODS.get(method)
            if impl is None:
                return self.reply(200, {"ok": False, "error": "unknown_method"})
            result = impl(params)
        except ApiError as e:
            out = {"ok": False, "error": e.error}
            if e.detail:
                out["response_metadata"] = {"messages": ["[ERROR] " + e.detail]}
            return self.reply(200, out)
        out = {"ok": True}
        out.update(result)
        return self.reply(200, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--token", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    Handler.token = args.token
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    STATE["port"] = server.server_address[1]
    print("PORT %d" % STATE["port"], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

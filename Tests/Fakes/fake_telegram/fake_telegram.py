#!/usr/bin/env python3
"""A fake Telegram Bot API server for Chorus's tests (Python standard library only).

It answers the Bot API methods the Telegram connector uses, on
``/bot<token>/<method>`` like https://api.telegram.org, with the documented
envelopes (https://core.telegram.org/bots/api#making-requests):

    {"ok": true, "result": ...}
    {"ok": false, "error_code": 400, "description": "Bad Request: ..."}
    {"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 3",
     "parameters": {"retry_after": 3}}

Every request is checked against the method's documented parameters (types,
required fields, lengths); a request that does not follow them is answered
400 like Telegram would, and also recorded as a *violation*, so a test can
assert that the connector sent nothing malformed.

getUpdates implements long polling as documented: ``offset`` confirms every
update with a smaller id (they are never returned again), ``limit`` caps the
batch (1-100), ``timeout`` waits up to that many seconds for an update, and a
webhook set with setWebhook makes getUpdates fail with 409.

Admin API for tests (JSON):

    POST /admin/updates      an Update or an array of them, queued for getUpdates
    POST /admin/errors       {"method", "error_code", "description", "retry_after", "count"}:
                             the next `count` calls of `method` ("*" = any) fail so
    POST /admin/files        {"file_id", "content"}: a file for getFile and /file/bot<token>/<path>
    POST /admin/reset        forget requests, violations, errors and updates
    GET  /admin/requests     {"requests": [{"method", "params", "t", "status"}]} (?method=sendMessage)
    GET  /admin/violations   {"violations": [...]}
    GET  /admin/state        {"pending_updates", "confirmed_offset", "webhook_url", "get_updates_calls"}

Usage: fake_telegram.py --token 123:ABC [--port 0]; prints "PORT <n>" once listening.
"""

import argparse
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---------------------------------------------------------------------------
# Parameter specifications, from https://core.telegram.org/bots/api
# Types: chat_id (Integer or String "@username"), int, str, bool, float, object, array,
# markup (InlineKeyboardMarkup / ReplyKeyboardMarkup / ReplyKeyboardRemove / ForceReply),
# input_file (a file_id or an HTTP URL; uploads are not supported by the fake).
# ---------------------------------------------------------------------------

COMMON_SEND = {
    "business_connection_id": "str", "message_thread_id": "int", "disable_notification": "bool",
    "protect_content": "bool", "allow_paid_broadcast": "bool", "message_effect_id": "str",
    "reply_parameters": "reply_parameters", "reply_markup": "markup",
}
CAPTIONED = {"caption": "caption", "parse_mode": "parse_mode", "caption_entities": "array", "show_caption_above_media": "bool",
             "has_spoiler": "bool"}

SPECS = {
    "getMe": ({}, {}),
    "getUpdates": ({}, {"offset": "int", "limit": "int", "timeout": "int", "allowed_updates": "update_kinds"}),
    "setWebhook": ({"url": "str"}, {"certificate": "str", "ip_address": "str", "max_connections": "int",
                                     "allowed_updates": "update_kinds", "drop_pending_updates": "bool", "secret_token": "secret_token"}),
    "deleteWebhook": ({}, {"drop_pending_updates": "bool"}),
    "getWebhookInfo": ({}, {}),
    "sendMessage": ({"chat_id": "chat_id", "text": "text"},
                    dict(COMMON_SEND, parse_mode="parse_mode", entities="array", link_preview_options="object")),
    "sendPhoto": ({"chat_id": "chat_id", "photo": "input_file"}, dict(COMMON_SEND, **CAPTIONED)),
    "sendDocument": ({"chat_id": "chat_id", "document": "input_file"},
                     dict(COMMON_SEND, thumbnail="input_file", disable_content_type_detection="bool", **CAPTIONED)),
    "sendAudio": ({"chat_id": "chat_id", "audio": "input_file"},
                  dict(COMMON_SEND, duration="int", performer="str", title="str", thumbnail="input_file", **CAPTIONED)),
    "sendVoice": ({"chat_id": "chat_id", "voice": "input_file"}, dict(COMMON_SEND, duration="int", **CAPTIONED)),
    "sendVideo": ({"chat_id": "chat_id", "video": "input_file"},
                  dict(COMMON_SEND, duration="int", width="int", height="int", thumbnail="input_file", supports_streaming="bool",
                       **CAPTIONED)),
    "sendSticker": ({"chat_id": "chat_id", "sticker": "input_file"}, dict(COMMON_SEND, emoji="str")),
    "sendLocation": ({"chat_id": "chat_id", "latitude": "latitude", "longitude": "longitude"},
                     dict(COMMON_SEND, horizontal_accuracy="float", live_period="int", heading="int", proximity_alert_radius="int")),
    "sendVenue": ({"chat_id": "chat_id", "latitude": "latitude", "longitude": "longitude", "title": "str", "address": "str"},
                  dict(COMMON_SEND, foursquare_id="str", foursquare_type="str", google_place_id="str", google_place_type="str")),
    "sendContact": ({"chat_id": "chat_id", "phone_number": "str", "first_name": "str"},
                    dict(COMMON_SEND, last_name="str", vcard="str")),
    "sendChatAction": ({"chat_id": "chat_id", "action": "chat_action"}, {"business_connection_id": "str", "message_thread_id": "int"}),
    "editMessageText": ({"text": "text"}, {"business_connection_id": "str", "chat_id": "chat_id", "message_id": "int",
                                            "inline_message_id": "str", "parse_mode": "parse_mode", "entities": "array",
                                            "link_preview_options": "object", "reply_markup": "inline_markup"}),
    "deleteMessage": ({"chat_id": "chat_id", "message_id": "int"}, {}),
    "setMessageReaction": ({"chat_id": "chat_id", "message_id": "int"}, {"reaction": "reactions", "is_big": "bool"}),
    "answerCallbackQuery": ({"callback_query_id": "str"}, {"text": "str", "show_alert": "bool", "url": "str", "cache_time": "int"}),
    "answerPreCheckoutQuery": ({"pre_checkout_query_id": "str", "ok": "bool"}, {"error_message": "str"}),
    "sendInvoice": ({"chat_id": "chat_id", "title": "invoice_title", "description": "invoice_description", "payload": "invoice_payload",
                     "currency": "currency", "prices": "prices"},
                    dict(COMMON_SEND, provider_token="str", max_tip_amount="int", suggested_tip_amounts="array", start_parameter="str",
                         provider_data="str", photo_url="str", photo_size="int", photo_width="int", photo_height="int",
                         need_name="bool", need_phone_number="bool", need_email="bool", need_shipping_address="bool",
                         send_phone_number_to_provider="bool", send_email_to_provider="bool", is_flexible="bool")),
    "getFile": ({"file_id": "str"}, {}),
}

UPDATE_KINDS = {
    "message", "edited_message", "channel_post", "edited_channel_post", "business_connection", "business_message",
    "edited_business_message", "deleted_business_messages", "message_reaction", "message_reaction_count", "inline_query",
    "chosen_inline_result", "callback_query", "shipping_query", "pre_checkout_query", "purchased_paid_media", "poll",
    "poll_answer", "my_chat_member", "chat_member", "chat_join_request", "chat_boost", "removed_chat_boost",
}
CHAT_ACTIONS = {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice", "upload_document",
                "choose_sticker", "find_location", "record_video_note", "upload_video_note"}
PARSE_MODES = {"HTML", "MarkdownV2", "Markdown"}
INLINE_BUTTON_ACTIONS = {"url", "callback_data", "web_app", "login_url", "switch_inline_query", "switch_inline_query_current_chat",
                         "switch_inline_query_chosen_chat", "copy_text", "callback_game", "pay"}


def utf16_len(s):
    return len(s.encode("utf-16-le")) // 2


class BadRequest(Exception):
    def __init__(self, description, code=400, parameters=None):
        super().__init__(description)
        self.description = description
        self.code = code
        self.parameters = parameters


def check_type(name, kind, v):
    """Raises BadRequest when parameter `name` does not have type `kind`."""
    def bad(why):
        raise BadRequest("Bad Request: %s: %s" % (name, why))
    if kind == "chat_id":
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and (v.startswith("@") or re.fullmatch(r"-?\d+", v)))):
            bad("expected an Integer or a String @channelusername, got %r" % (v,))
    elif kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            bad("expected an Integer")
    elif kind in ("float", "latitude", "longitude"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            bad("expected a Float")
        limit = 90 if kind == "latitude" else 180 if kind == "longitude" else None
        if limit is not None and not -limit <= v <= limit:
            bad("out of range")
    elif kind == "bool":
        if not isinstance(v, bool):
            bad("expected a Boolean")
    elif kind in ("str", "secret_token", "currency", "invoice_title", "invoice_description", "invoice_payload", "input_file", "text",
                  "caption", "parse_mode", "chat_action"):
        if not isinstance(v, str):
            bad("expected a String")
        if kind == "text" and not 1 <= utf16_len(v) <= 4096:
            bad("message text must be 1-4096 characters")
        if kind == "caption" and utf16_len(v) > 1024:
            bad("caption is too long")
        if kind == "parse_mode" and v not in PARSE_MODES:
            bad("unsupported parse_mode %r" % v)
        if kind == "chat_action" and v not in CHAT_ACTIONS:
            bad("unknown chat action %r" % v)
        if kind == "secret_token" and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", v):
            bad("secret token must be 1-256 characters A-Z, a-z, 0-9, _ and -")
        if kind == "currency" and not re.fullmatch(r"[A-Z]{3}", v):
            bad("currency must be a three-letter ISO 4217 code")
        if kind == "invoice_title" and not 1 <= len(v) <= 32:
            bad("invoice title must be 1-32 characters")
        if kind == "invoice_description" and not 1 <= len(v) <= 255:
            bad("invoice description must be 1-255 characters")
        if kind == "invoice_payload" and not 1 <= len(v.encode()) <= 128:
            bad("invoice payload must be 1-128 bytes")
        if kind == "input_file" and not v:
            bad("empty file")
    elif kind == "object":
        if not isinstance(v, dict):
            bad("expected an Object")
    elif kind == "array":
        if not isinstance(v, list):
            bad("expected an Array")
    elif kind == "update_kinds":
        if not isinstance(v, list) or any(k not in UPDATE_KINDS for k in v):
            bad("expected an Array of update kinds")
    elif kind == "reactions":
        if not isinstance(v, list):
            bad("expected an Array of ReactionType")
        for r in v:
            if not isinstance(r, dict) or r.get("type") != "emoji" or not isinstance(r.get("emoji"), str) or set(r) - {"type", "emoji"}:
                bad("expected ReactionTypeEmoji objects {\"type\":\"emoji\",\"emoji\":...}")
    elif kind == "reply_parameters":
        if not isinstance(v, dict) or not isinstance(v.get("message_id"), int):
            bad("ReplyParameters need an Integer message_id")
        allowed = {"message_id", "chat_id", "allow_sending_without_reply", "quote", "quote_parse_mode", "quote_entities", "quote_position"}
        if set(v) - allowed:
            bad("unknown ReplyParameters fields %s" % sorted(set(v) - allowed))
    elif kind == "prices":
        if not isinstance(v, list) or not v:
            bad("expected a non-empty Array of LabeledPrice")
        for p in v:
            if not isinstance(p, dict) or set(p) != {"label", "amount"} or not isinstance(p["label"], str) or not p["label"] \
                    or isinstance(p["amount"], bool) or not isinstance(p["amount"], int):
                bad("LabeledPrice must be {\"label\": String, \"amount\": Integer}")
    elif kind in ("markup", "inline_markup"):
        check_markup(name, v, inline_only=(kind == "inline_markup"))
    else:
        bad("fake: unknown kind %s" % kind)


def check_markup(name, v, inline_only):
    def bad(why):
        raise BadRequest("Bad Request: %s: %s" % (name, why))
    if not isinstance(v, dict):
        bad("expected a keyboard Object")
    if "inline_keyboard" in v:
        rows = v["inline_keyboard"]
        if set(v) != {"inline_keyboard"} or not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            bad("inline_keyboard must be an Array of Array of InlineKeyboardButton")
        for row in rows:
            for b in row:
                if not isinstance(b, dict) or not isinstance(b.get("text"), str) or not b["text"]:
                    bad("InlineKeyboardButton needs a text")
                actions = set(b) - {"text"}
                if len(actions) != 1 or not actions <= INLINE_BUTTON_ACTIONS:
                    bad("InlineKeyboardButton needs exactly one action field, got %s" % sorted(actions))
                if "callback_data" in b and not 1 <= len(b["callback_data"].encode()) <= 64:
                    bad("BUTTON_DATA_INVALID")
                if "url" in b and not re.match(r"^(https?|tg)://", b["url"]):
                    bad("BUTTON_URL_INVALID")
        return
    if inline_only:
        bad("only an InlineKeyboardMarkup is allowed here")
    if "keyboard" in v:
        allowed = {"keyboard", "is_persistent", "resize_keyboard", "one_time_keyboard", "input_field_placeholder", "selective"}
        if set(v) - allowed:
            bad("unknown ReplyKeyboardMarkup fields %s" % sorted(set(v) - allowed))
        rows = v["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            bad("keyboard must be an Array of Array of KeyboardButton")
        for row in rows:
            for b in row:
                if isinstance(b, str):
                    continue
                if not isinstance(b, dict) or not isinstance(b.get("text"), str) or not b["text"]:
                    bad("KeyboardButton needs a text")
        return
    if v.get("remove_keyboard") is True or v.get("force_reply") is True:
        return
    bad("unknown reply_markup")


def validate(method, params):
    required, optional = SPECS[method]
    for k in required:
        if k not in params:
            raise BadRequest("Bad Request: parameter %s is required" % k)
    for k, v in params.items():
        kind = required.get(k) or optional.get(k)
        if kind is None:
            raise BadRequest("Bad Request: unexpected parameter %s for %s" % (k, method))
        check_type(k, kind, v)


class State:
    def __init__(self, token):
        self.token = token
        self.bot_id = int(token.split(":")[0])
        self.lock = threading.Condition()
        self.updates = []          # pending (unconfirmed) updates, sorted by update_id
        self.confirmed_offset = 0
        self.requests = []
        self.violations = []
        self.errors = []
        self.files = {}
        self.messages = {}         # (chat_id, message_id) -> Message
        self.next_message_id = {}  # chat_id -> next id
        self.webhook_url = ""
        self.get_updates_calls = 0

    def bot_user(self):
        return {"id": self.bot_id, "is_bot": True, "first_name": "Chorus Test Bot", "username": "chorus_test_bot"}

    @staticmethod
    def chat(chat_id):
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            return {"id": -1001000000000 - (abs(hash(chat_id)) % 1000000), "type": "channel", "title": chat_id[1:]}
        cid = int(chat_id)
        if cid > 0:
            return {"id": cid, "type": "private", "first_name": "Customer"}
        if str(cid).startswith("-100"):
            return {"id": cid, "type": "supergroup", "title": "Group %d" % cid}
        return {"id": cid, "type": "group", "title": "Group %d" % cid}


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeTelegram/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def st(self):
        return self.server.state

    def reply(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, verb):
        url = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        if url.path.startswith("/admin/"):
            return self.admin(verb, url, body)
        m = re.fullmatch(r"/file/bot([^/]+)/(.+)", url.path)
        if m and verb == "GET":
            if m.group(1) != self.st.token:
                return self.reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            for f in self.st.files.values():
                if f["file_path"] == m.group(2):
                    data = f["content"]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
            return self.reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        m = re.fullmatch(r"/bot([^/]*)/([A-Za-z]+)", url.path)
        if not m:
            return self.reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        token, method = m.group(1), m.group(2)
        if token != self.st.token:
            return self.reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        # Parameters: query string, then a JSON or form body (https://core.telegram.org/bots/api#making-requests).
        params = {k: v for k, v in urllib.parse.parse_qsl(url.query)}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body:
            if ctype == "application/json":
                try:
                    parsed = json.loads(body)
                except ValueError:
                    return self.fail(method, {}, BadRequest("Bad Request: can't parse JSON object"))
                if not isinstance(parsed, dict):
                    return self.fail(method, {}, BadRequest("Bad Request: expected a JSON object"))
                params.update(parsed)
            elif ctype == "application/x-www-form-urlencoded":
                params.update(urllib.parse.parse_qsl(body.decode()))
            else:
                return self.fail(method, {}, BadRequest("Bad Request: fake supports JSON and form bodies only"))
        with self.st.lock:
            entry = {"method": method, "params": params, "t": time.time(), "status": 200}
            self.st.requests.append(entry)
        if method not in SPECS:
            entry["status"] = 404
            return self.reply(404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"})
        try:
            validate(method, params)
        except BadRequest as e:
            with self.st.lock:
                self.st.violations.append({"method": method, "params": params, "description": e.description})
            return self.fail(method, entry, e)
        scripted = self.take_error(method)
        if scripted:
            return self.fail(method, entry, scripted)
        try:
            result = getattr(self, "m_" + method)(params)
        except BadRequest as e:
            return self.fail(method, entry, e)
        self.reply(200, {"ok": True, "result": result})

    def fail(self, method, entry, e):
        if entry:
            entry["status"] = e.code
        obj = {"ok": False, "error_code": e.code, "description": e.description}
        if e.parameters:
            obj["parameters"] = e.parameters
        self.reply(e.code, obj)

    def take_error(self, method):
        with self.st.lock:
            for err in self.st.errors:
                if err["method"] in (method, "*") and err["count"] > 0:
                    err["count"] -= 1
                    code = int(err.get("error_code", 400))
                    params = None
                    desc = err.get("description")
                    if code == 429:
                        ra = int(err.get("retry_after", 1))
                        params = {"retry_after": ra}
                        desc = desc or "Too Many Requests: retry after %d" % ra
                    if err.get("migrate_to_chat_id"):
                        params = {"migrate_to_chat_id": int(err["migrate_to_chat_id"])}
                    return BadRequest(desc or "Bad Request", code=code, parameters=params)
        return None

    # -- admin -------------------------------------------------------------

    def admin(self, verb, url, body):
        st = self.st
        try:
            data = json.loads(body) if body else None
        except ValueError:
            return self.reply(400, {"error": "admin: malformed JSON"})
        path = url.path
        query = dict(urllib.parse.parse_qsl(url.query))
        with st.lock:
            if verb == "POST" and path == "/admin/updates":
                items = data if isinstance(data, list) else [data]
                for u in items:
                    if not isinstance(u, dict) or not isinstance(u.get("update_id"), int):
                        return self.reply(400, {"error": "admin: each update needs an integer update_id"})
                st.updates.extend(items)
                st.updates.sort(key=lambda u: u["update_id"])
                st.lock.notify_all()
                return self.reply(200, {"queued": len(items)})
            if verb == "POST" and path == "/admin/errors":
                st.errors.append(dict(data, count=int(data.get("count", 1))))
                return self.reply(200, {"ok": True})
            if verb == "POST" and path == "/admin/files":
                fid = data["file_id"]
                content = data.get("content", "").encode()
                st.files[fid] = {"file_id": fid, "file_unique_id": "u" + fid[-8:], "file_size": len(content),
                                 "file_path": "documents/file_%d" % len(st.files), "content": content}
                return self.reply(200, {"ok": True})
            if verb == "POST" and path == "/admin/reset":
                st.requests.clear(); st.violations.clear(); st.errors.clear(); st.updates.clear()
                return self.reply(200, {"ok": True})
            if verb == "GET" and path == "/admin/requests":
                reqs = [r for r in st.requests if "method" not in query or r["method"] == query["method"]]
                return self.reply(200, {"requests": reqs})
            if verb == "GET" and path == "/admin/violations":
                return self.reply(200, {"violations": st.violations})
            if verb == "GET" and path == "/admin/state":
                return self.reply(200, {"pending_updates": len(st.updates), "confirmed_offset": st.confirmed_offset,
                                        "webhook_url": st.webhook_url, "get_updates_calls": st.get_updates_calls})
        self.reply(404, {"error": "admin: no such route"})

    # -- methods -----------------------------------------------------------

    def m_getMe(self, p):
        return self.st.bot_user()

    def m_getUpdates(self, p):
        st = self.st
        if st.webhook_url:
            raise BadRequest("Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                             code=409)
        offset = int(p.get("offset", 0))
        limit = int(p.get("limit", 100))
        timeout = int(p.get("timeout", 0))
        if not 1 <= limit <= 100:
            limit = 100
        deadline = time.monotonic() + timeout
        with st.lock:
            st.get_updates_calls += 1
            # An offset confirms every update with a smaller id: they are forgotten.
            if offset > 0:
                st.updates = [u for u in st.updates if u["update_id"] >= offset]
                st.confirmed_offset = max(st.confirmed_offset, offset)
            elif offset < 0:
                st.updates = st.updates[offset:]
            while not st.updates and time.monotonic() < deadline:
                st.lock.wait(max(0.0, deadline - time.monotonic()))
            return list(st.updates[:limit])

    def m_setWebhook(self, p):
        self.st.webhook_url = p["url"]
        return True

    def m_deleteWebhook(self, p):
        self.st.webhook_url = ""
        return True

    def m_getWebhookInfo(self, p):
        return {"url": self.st.webhook_url, "has_custom_certificate": False, "pending_update_count": len(self.st.updates)}

    def new_message(self, p, **content):
        st = self.st
        with st.lock:
            chat = State.chat(p["chat_id"])
            mid = st.next_message_id.get(chat["id"], 1)
            st.next_message_id[chat["id"]] = mid + 1
            msg = {"message_id": mid, "from": st.bot_user(), "chat": chat, "date": int(time.time())}
            if "message_thread_id" in p:
                msg["message_thread_id"] = p["message_thread_id"]
            if "reply_parameters" in p:
                target = st.messages.get((chat["id"], p["reply_parameters"]["message_id"]))
                if target:
                    msg["reply_to_message"] = target
            msg.update(content)
            if isinstance(p.get("reply_markup"), dict) and "inline_keyboard" in p["reply_markup"]:
                msg["reply_markup"] = p["reply_markup"]
            st.messages[(chat["id"], mid)] = msg
            return msg

    def m_sendMessage(self, p):
        return self.new_message(p, text=p["text"])

    def file_obj(self, ref, kind):
        fid = ref if not ref.startswith("http") else "FAKE%s%08d" % (kind.upper(), abs(hash(ref)) % 10 ** 8)
        return {"file_id": fid, "file_unique_id": "U" + fid[-10:]}

    def media_message(self, p, field):
        content = {field: self.file_obj(p[field], field)}
        if field == "photo":
            content["photo"] = [dict(self.file_obj(p[field], field), width=90, height=90), dict(self.file_obj(p[field], field), width=800, height=800)]
        if "caption" in p:
            content["caption"] = p["caption"]
        return self.new_message(p, **content)

    def m_sendPhoto(self, p):
        return self.media_message(p, "photo")

    def m_sendDocument(self, p):
        return self.media_message(p, "document")

    def m_sendAudio(self, p):
        return self.media_message(p, "audio")

    def m_sendVoice(self, p):
        return self.media_message(p, "voice")

    def m_sendVideo(self, p):
        return self.media_message(p, "video")

    def m_sendSticker(self, p):
        return self.media_message(p, "sticker")

    def m_sendLocation(self, p):
        return self.new_message(p, location={"latitude": p["latitude"], "longitude": p["longitude"]})

    def m_sendVenue(self, p):
        loc = {"latitude": p["latitude"], "longitude": p["longitude"]}
        return self.new_message(p, location=loc, venue={"location": loc, "title": p["title"], "address": p["address"]})

    def m_sendContact(self, p):
        c = {"phone_number": p["phone_number"], "first_name": p["first_name"]}
        if "last_name" in p:
            c["last_name"] = p["last_name"]
        return self.new_message(p, contact=c)

    def m_sendInvoice(self, p):
        total = sum(x["amount"] for x in p["prices"])
        return self.new_message(p, invoice={"title": p["title"], "description": p["description"], "start_parameter": "",
                                            "currency": p["currency"], "total_amount": total})

    def m_sendChatAction(self, p):
        return True

    def m_editMessageText(self, p):
        st = self.st
        if "inline_message_id" in p:
            return True
        if "chat_id" not in p or "message_id" not in p:
            raise BadRequest("Bad Request: chat_id and message_id are required when inline_message_id is not given")
        with st.lock:
            chat = State.chat(p["chat_id"])
            msg = st.messages.get((chat["id"], p["message_id"]))
            if msg is None:
                raise BadRequest("Bad Request: message to edit not found")
            if "text" not in msg:
                raise BadRequest("Bad Request: there is no text in the message to edit")
            if msg["text"] == p["text"] and msg.get("reply_markup") == p.get("reply_markup"):
                raise BadRequest("Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message")
            msg["text"] = p["text"]
            msg["edit_date"] = int(time.time())
            if "reply_markup" in p:
                msg["reply_markup"] = p["reply_markup"]
            return msg

    def m_deleteMessage(self, p):
        st = self.st
        with st.lock:
            chat = State.chat(p["chat_id"])
            if st.messages.pop((chat["id"], p["message_id"]), None) is None:
                raise BadRequest("Bad Request: message to delete not found")
        return True

    def m_setMessageReaction(self, p):
        return True

    def m_answerCallbackQuery(self, p):
        return True

    def m_answerPreCheckoutQuery(self, p):
        return True

    def m_getFile(self, p):
        f = self.st.files.get(p["file_id"])
        if f is None:
            raise BadRequest("Bad Request: invalid file_id")
        return {k: f[k] for k in ("file_id", "file_unique_id", "file_size", "file_path")}


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that went away (a chorusd killed mid-poll) is expected in these tests.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--token", required=True, help="the bot token the fake accepts")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.state = State(args.token)
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

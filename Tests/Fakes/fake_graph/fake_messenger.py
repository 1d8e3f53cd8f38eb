#!/usr/bin/env python3
"""A fake Meta Graph API (Messenger Platform Send API subset) for Chorus's tests.

Serves both Messenger (Facebook Page) and Instagram Messaging, which share
the Send API. Started by the tests as a subprocess:

    python3 fake_messenger.py --token TOKEN --id 106378219046701 [--id 17841405822304914] [--version v21.0]

Each --id is a page id or Instagram account id whose messages endpoint
exists. It listens on 127.0.0.1 on a free port and prints ``PORT <n>`` on
stdout once ready. It checks what the connector sends against the documented
request shapes of the Send API and answers with the documented responses and
errors.

Graph endpoints (bearer token required):
  POST /{version}/{id}/messages              send a message or a sender action:
      {"recipient": {"id": PSID}, "messaging_type": "RESPONSE"|"UPDATE"|"MESSAGE_TAG", "tag"?: TAG,
       "reply_to"?: {"mid": MID}, "message": {"text" | "attachment", "quick_replies"?, "metadata"?}}
      {"recipient": {"id": PSID}, "sender_action": "mark_seen"|"typing_on"|"typing_off"}
      {"recipient": {"id": PSID}, "sender_action": "react"|"unreact", "payload": {"message_id": MID, "reaction"?: NAME}}
    answers {"recipient_id": PSID, "message_id": "m_FAKE000001"} (sender actions: {"recipient_id": PSID})
  POST /{version}/{id}/message_attachments   Attachment Upload API, multipart/form-data with
                                             message={"attachment":{"type","payload":{"is_reusable":true}}} and filedata
    answers {"attachment_id": "1857777774821032"}

Media the connector downloads (no token; like Meta's CDN):
  GET /cdn/{name}                            bytes registered with /_admin/media

Admin endpoints for the tests (no token):
  GET  /_admin/requests          every request received: [{method, path, headers, json, errors}]
  POST /_admin/reset             forget requests, queued errors and media
  POST /_admin/errors            queue scripted answers for the next sends:
                                 {"count": N, "status": 400, "error": {...Graph error...}, "headers": {"Retry-After": "1"}}
  POST /_admin/media             {"name": "...", "mime_type": "image/jpeg", "data": "<text>"}: serve /cdn/{name}

Bodies that break the documented shapes get HTTP 400 with Graph error 100
("Invalid parameter") naming the problem, as the real API does.
"""
import argparse
import email.parser
import email.policy
import json
import re

from graph_fake_common import LOCK, STATE, GraphHandler, graph_error, serve

ARGS = None

MESSAGING_TYPES = {"RESPONSE", "UPDATE", "MESSAGE_TAG"}
TAGS = {"HUMAN_AGENT", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "CUSTOMER_FEEDBACK"}
SENDER_ACTIONS = {"mark_seen", "typing_on", "typing_off", "react", "unreact"}
REACTIONS = {"love", "like", "laugh", "wow", "sad", "angry"}
ATTACHMENT_TYPES = {"image", "video", "audio", "file", "template"}
TEMPLATE_TYPES = {"generic", "button", "media", "receipt"}




def check_button(b):
    t = b.get("type")
    if t == "web_url":
        if not b.get("url") or not b.get("title"):
            return ["web_url buttons need url and title"]
    elif t == "postback":
        if not b.get("payload") or not b.get("title"):
            return ["postback buttons need title and payload"]
    elif t not in ("phone_number", "account_link", "account_unlink", "game_play"):
        return ["unknown button type %r" % t]
    if len(b.get("title", "")) > 20:
        return ["button titles are at most 20 characters"]
    return []


def check_send(body):
    """Returns a list of problems with a POST /messages body (empty: valid)."""
    p = []
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    rcp = body.get("recipient")
    if not isinstance(rcp, dict) or not isinstance(rcp.get("id"), str) or not rcp["id"]:
        p.append("recipient.id is required")
    if "sender_action" in body:
        sa = body["sender_action"]
        if sa not in SENDER_ACTIONS:
            p.append("unknown sender_action %r" % sa)
        if "message" in body:
            p.append("sender_action cannot be sent with a message")
        if sa in ("react", "unreact"):
            pl = body.get("payload") or {}
            if not pl.get("message_id"):
                p.append("%s needs payload.message_id" % sa)
            if sa == "react" and pl.get("reaction") not in REACTIONS:
                p.append("react needs payload.reaction, one of %s" % sorted(REACTIONS))
        extra = set(body) - {"recipient", "sender_action", "payload"}
        if extra:
            p.append("unexpected fields %s" % sorted(extra))
        return p
    mt = body.get("messaging_type")
    if mt not in MESSAGING_TYPES:
        p.append("messaging_type must be one of %s" % sorted(MESSAGING_TYPES))
    if mt == "MESSAGE_TAG" and body.get("tag") not in TAGS:
        p.append("MESSAGE_TAG needs a tag, one of %s" % sorted(TAGS))
    if "reply_to" in body and not (isinstance(body["reply_to"], dict) and isinstance(body["reply_to"].get("mid"), str)):
        p.append("reply_to.mid must be a string")
    m = body.get("message")
    if not isinstance(m, dict):
        return p + ["message is required"]
    if ("text" in m) == ("attachment" in m):
        p.append("message needs exactly one of text and attachment")
    if "text" in m:
        if not isinstance(m["text"], str) or not m["text"]:
            p.append("message.text must be a non-empty string")
        elif len(m["text"]) > 2000:
            p.append("message.text is longer than 2000 characters")
    qr = m.get("quick_replies")
    if qr is not None:
        if not isinstance(qr, list) or not 1 <= len(qr) <= 13:
            p.append("quick_replies must have 1 to 13 entries")
        else:
            for q in qr:
                if q.get("content_type") == "text" and (not q.get("title") or not q.get("payload")):
                    p.append("text quick replies need title and payload")
                if len(q.get("title", "")) > 20:
                    p.append("quick reply titles are at most 20 characters")
    a = m.get("attachment")
    if a is not None:
        t = a.get("type")
        pl = a.get("payload")
        if t not in ATTACHMENT_TYPES or not isinstance(pl, dict):
            p.append("attachment needs a type (%s) and a payload" % sorted(ATTACHMENT_TYPES))
        elif t == "template":
            tt = pl.get("template_type")
            if tt not in TEMPLATE_TYPES:
                p.append("unknown template_type %r" % tt)
            elif tt == "button":
                if not pl.get("text") or not isinstance(pl.get("buttons"), list) or not 1 <= len(pl["buttons"]) <= 3:
                    p.append("button templates need text and 1 to 3 buttons")
                else:
                    for b in pl["buttons"]:
                        p += check_button(b)
            elif tt in ("generic", "media"):
                els = pl.get("elements")
                if not isinstance(els, list) or not 1 <= len(els) <= 10:
                    p.append("%s templates need 1 to 10 elements" % tt)
                elif tt == "generic":
                    for e in els:
                        if not e.get("title"):
                            p.append("generic template elements need a title")
                        for b in e.get("buttons", []):
                            p += check_button(b)
        else:
            if ("url" in pl) + ("attachment_id" in pl) != 1:
                p.append("attachment payload needs exactly one of url and attachment_id")
    return p


class Handler(GraphHandler):
    def do_GET(self):
        if self.path.startswith("/_admin/requests"):
            return self.answer_requests()
        self.record(b"", {}, [])
        m = re.fullmatch(r"/cdn/([^/?]+)", self.path)
        if m:
            return self.answer_media(m.group(1))
        return self.answer(404, graph_error(803, "Some of the aliases you requested do not exist"))

    def scripted(self):
        with LOCK:
            s = STATE["errors"].pop(0) if STATE["errors"] else None
            STATE["counter"] += 1
            return s, STATE["counter"]

    def upload(self, body):
        ctype = self.headers.get("Content-Type") or ""
        if not ctype.startswith("multipart/form-data"):
            self.record(body, None, ["attachment upload must be multipart/form-data"])
            return self.answer(400, graph_error(100, "Invalid parameter"))
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        fields, file_part = {}, None
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "filedata":
                file_part = part
            elif name:
                fields[name] = part.get_payload(decode=True).decode()
        errors = []
        try:
            meta = json.loads(fields.get("message", ""))
            t = meta["attachment"]["type"]
            if t not in ("image", "video", "audio", "file"):
                errors.append("message.attachment.type %r" % t)
        except (ValueError, KeyError, TypeError):
            errors.append("message must be {\"attachment\": {\"type\", \"payload\"}} as JSON")
        if file_part is None:
            errors.append("filedata is required")
        self.record(body, {"fields": fields, "filename": file_part.get_filename() if file_part else None,
                           "file_type": file_part.get_content_type() if file_part else None,
                           "size": len(file_part.get_payload(decode=True)) if file_part else 0}, errors)
        if errors:
            return self.answer(400, graph_error(100, "Invalid parameter: " + "; ".join(errors)))
        with LOCK:
            STATE["counter"] += 1
            n = STATE["counter"]
        return self.answer(200, {"attachment_id": "18577777%08d" % n})

    def do_POST(self):
        body = self.read_body()
        if self.path.startswith("/_admin/"):
            return self.answer_admin_post(body, "name")
        m = re.fullmatch(r"/(v[0-9.]+)/([0-9]+|me)/(messages|message_attachments)", self.path)
        if not m or m.group(1) != ARGS.version or (m.group(2) != "me" and m.group(2) not in ARGS.id):
            self.record(body, None, ["unknown path"])
            return self.answer(400, graph_error(100, "Unsupported post request", etype="GraphMethodException", subcode=33))
        if not self.authorized():
            self.record(body, None, ["bad token"])
            return self.answer(401, graph_error(190, "Invalid OAuth access token - Cannot parse access token"))
        if m.group(3) == "message_attachments":
            return self.upload(body)
        try:
            parsed = json.loads(body)
        except ValueError:
            self.record(body, None, ["body is not JSON"])
            return self.answer(400, graph_error(100, "Invalid parameter"))
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            self.record(body, parsed, ["content type"])
            return self.answer(400, graph_error(100, "Invalid parameter"))
        errors = check_send(parsed)
        self.record(body, parsed, errors)
        if errors:
            return self.answer(400, graph_error(100, "Invalid parameter: " + "; ".join(errors)))
        scripted, n = self.scripted()
        if scripted is not None:
            return self.answer(int(scripted.get("status", 400)), {"error": scripted.get("error", {})}, headers=scripted.get("headers"))
        rid = parsed["recipient"]["id"]
        if "sender_action" in parsed:
            return self.answer(200, {"recipient_id": rid})
        return self.answer(200, {"recipient_id": rid, "message_id": "m_FAKE%06d" % n})


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--token", required=True)
    ap.add_argument("--id", action="append", required=True, help="a page id or Instagram account id (repeatable)")
    ap.add_argument("--version", default="v21.0")
    ARGS = ap.parse_args()
    serve(Handler, ARGS.token)


if __name__ == "__main__":
    main()

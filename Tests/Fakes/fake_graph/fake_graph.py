#!/usr/bin/env python3
"""A fake Meta Graph API (WhatsApp Cloud API subset) for Chorus's tests.

Started by the tests as a subprocess:

    python3 fake_graph.py --token TOKEN --phone-number-id 106540352242922 [--version v21.0]

It listens on 127.0.0.1 on a free port and prints ``PORT <n>`` on stdout once
ready. It checks what the connector sends against the documented request
shapes of the Cloud API and answers with the documented responses and errors.

Graph endpoints:
  POST /{version}/{phone-number-id}/messages   send a message, mark as read, typing indicator
  POST /{version}/{phone-number-id}/media      upload media (multipart/form-data: messaging_product, type, file)
  GET  /{version}/{media-id}                   media object (url, mime_type, sha256, file_size)
  GET  /media-download/{media-id}              the media bytes (needs the bearer token, like lookaside.fbsbx.com)
  GET  /public-files/{media-id}                the same bytes without a token (a plain file host, for upload tests)

Admin endpoints for the tests (no token):
  GET  /_admin/requests          every request received: [{method, path, headers, json, errors}]
  POST /_admin/reset             forget requests, queued errors and media
  POST /_admin/errors            queue scripted answers for the next sends:
                                 {"count": N, "status": 429, "error": {...Graph error...}, "headers": {"Retry-After": "1"}}
  POST /_admin/media             {"id": "...", "mime_type": "image/jpeg", "data": "<text>"}: serve a media file

Request bodies that break the documented shapes get HTTP 400 with Graph
error 100 ("Invalid parameter") naming the problem, as the real API does.
"""
import argparse
import email.parser
import email.policy
import hashlib
import json
import re
import sys

from graph_fake_common import LOCK, STATE, GraphHandler, graph_error, serve

ARGS = None




# --- Request shape checks, after the Cloud API reference (messages endpoint) ---

MEDIA_TYPES = {"image", "audio", "video", "document", "sticker"}
TYPES = {"text", "image", "audio", "video", "document", "sticker", "location", "contacts", "interactive", "template", "reaction"}


def check_message(body):
    """Returns a list of problems with a POST /messages body (empty: valid)."""
    p = []
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    if body.get("messaging_product") != "whatsapp":
        p.append("messaging_product must be \"whatsapp\"")
    if "status" in body:
        # Mark as read / typing indicator.
        if body.get("status") != "read":
            p.append("status must be \"read\"")
        if not isinstance(body.get("message_id"), str) or not body["message_id"]:
            p.append("message_id is required")
        if "typing_indicator" in body and body["typing_indicator"] != {"type": "text"}:
            p.append("typing_indicator must be {\"type\": \"text\"}")
        extra = set(body) - {"messaging_product", "status", "message_id", "typing_indicator"}
        if extra:
            p.append("unexpected fields %s" % sorted(extra))
        return p
    to, rcp = body.get("to"), body.get("recipient")
    if not (isinstance(to, str) and re.fullmatch(r"\+?[0-9]{5,20}", to)) and not (isinstance(rcp, str) and rcp):
        p.append("to must be a phone number (or recipient a business-scoped user id)")
    if body.get("recipient_type", "individual") != "individual":
        p.append("recipient_type must be individual")
    t = body.get("type", "text")
    if t not in TYPES:
        p.append("unknown type %r" % t)
        return p
    if t not in body:
        p.append("type is %s but there is no %s object" % (t, t))
        return p
    o = body[t]
    if "context" in body and not (isinstance(body["context"], dict) and isinstance(body["context"].get("message_id"), str)):
        p.append("context.message_id must be a string")
    if t == "text":
        if not isinstance(o.get("body"), str) or not o["body"]:
            p.append("text.body is required")
        elif len(o["body"]) > 4096:
            p.append("text.body is longer than 4096 characters")
        if "preview_url" in o and not isinstance(o["preview_url"], bool):
            p.append("text.preview_url must be a boolean")
    elif t in MEDIA_TYPES:
        if ("id" in o) == ("link" in o):
            p.append("%s needs exactly one of id and link" % t)
        if "caption" in o and t not in ("image", "video", "document"):
            p.append("%s cannot have a caption" % t)
        if "filename" in o and t != "document":
            p.append("only documents have a filename")
    elif t == "location":
        if not isinstance(o.get("latitude"), (int, float)) or not isinstance(o.get("longitude"), (int, float)):
            p.append("location.latitude and location.longitude are numbers")
    elif t == "contacts":
        if not isinstance(o, list) or not o:
            p.append("contacts must be a non-empty array")
        else:
            for c in o:
                if not isinstance(c.get("name"), dict) or not c["name"].get("formatted_name"):
                    p.append("contacts[].name.formatted_name is required")
    elif t == "reaction":
        if not isinstance(o.get("message_id"), str) or "emoji" not in o:
            p.append("reaction needs message_id and emoji")
    elif t == "template":
        if not isinstance(o.get("name"), str) or not o["name"]:
            p.append("template.name is required")
        if not isinstance(o.get("language"), dict) or not isinstance(o["language"].get("code"), str):
            p.append("template.language.code is required")
        for c in o.get("components", []):
            if c.get("type") not in ("header", "body", "button", "footer", "carousel", "limited_time_offer"):
                p.append("template component type %r" % c.get("type"))
            if c.get("type") == "button" and ("sub_type" not in c or "index" not in c):
                p.append("button components need sub_type and index")
            for prm in c.get("parameters", []):
                if "type" not in prm:
                    p.append("template parameters need a type")
    elif t == "interactive":
        it = o.get("type")
        action = o.get("action")
        if not isinstance(action, dict):
            p.append("interactive.action is required")
            return p
        if it in ("button", "list", "cta_url", "product_list", "order_details") and not (isinstance(o.get("body"), dict) and o["body"].get("text")):
            p.append("interactive %s needs body.text" % it)
        if it == "button":
            b = action.get("buttons")
            if not isinstance(b, list) or not 1 <= len(b) <= 3:
                p.append("action.buttons must have 1 to 3 buttons")
            else:
                for x in b:
                    if x.get("type") != "reply" or not x.get("reply", {}).get("id") or not 1 <= len(x.get("reply", {}).get("title", "")) <= 20:
                        p.append("reply buttons are {type: reply, reply: {id, title (1-20 chars)}}")
        elif it == "list":
            if not action.get("button") or not isinstance(action.get("sections"), list) or not action["sections"]:
                p.append("list needs action.button and action.sections")
            else:
                rows = sum(len(s.get("rows", [])) for s in action["sections"])
                if not 1 <= rows <= 10:
                    p.append("list needs 1 to 10 rows")
        elif it == "cta_url":
            prm = action.get("parameters", {})
            if action.get("name") != "cta_url" or not prm.get("display_text") or not prm.get("url"):
                p.append("cta_url needs action {name: cta_url, parameters: {display_text, url}}")
        elif it == "product":
            if not action.get("catalog_id") or not action.get("product_retailer_id"):
                p.append("product needs catalog_id and product_retailer_id")
        elif it == "product_list":
            if not action.get("catalog_id") or not action.get("sections") or not isinstance(o.get("header"), dict):
                p.append("product_list needs header, catalog_id and sections")
        elif it == "order_details":
            prm = action.get("parameters", {})
            if action.get("name") != "review_and_pay":
                p.append("order_details action.name must be review_and_pay")
            for k in ("reference_id", "type", "payment_configuration", "currency", "total_amount", "order"):
                if k not in prm:
                    p.append("order_details parameters need %s" % k)
        else:
            p.append("unknown interactive type %r" % it)
    return p


class Handler(GraphHandler):
    def do_GET(self):
        if self.path.startswith("/_admin/requests"):
            return self.answer_requests()
        self.record(b"", {}, [])
        m = re.fullmatch(r"/public-files/([^/?]+)", self.path)
        if m:
            # A plain file server (no token): stands in for a consumer's file host in upload tests.
            return self.answer_media(m.group(1))
        if not self.authorized():
            return self.answer(401, graph_error(190, "Invalid OAuth access token - Cannot parse access token"))
        m = re.fullmatch(r"/media-download/([^/?]+)", self.path)
        if m:
            with LOCK:
                media = STATE["media"].get(m.group(1))
            if media is None:
                return self.answer(404, graph_error(100, "Unsupported get request", etype="GraphMethodException", subcode=33))
            return self.answer(200, raw=media["data"], ctype=media["mime_type"])
        m = re.fullmatch(r"/(v[0-9.]+)/([^/?]+)", self.path)
        if m and m.group(1) == ARGS.version:
            with LOCK:
                media = STATE["media"].get(m.group(2))
            if media is None:
                return self.answer(400, graph_error(100, "Unsupported get request. Object with ID '%s' does not exist" % m.group(2),
                                                    etype="GraphMethodException", subcode=33))
            port = self.server.server_address[1]
            return self.answer(200, {"messaging_product": "whatsapp", "url": "http://127.0.0.1:%d/media-download/%s" % (port, m.group(2)),
                                     "mime_type": media["mime_type"], "sha256": hashlib.sha256(media["data"]).hexdigest(),
                                     "file_size": len(media["data"]), "id": m.group(2)})
        return self.answer(404, graph_error(803, "Some of the aliases you requested do not exist"))

    def upload(self, body):
        """POST /{version}/{phone-number-id}/media: multipart/form-data with messaging_product, type and file."""
        ctype = self.headers.get("Content-Type") or ""
        if not ctype.startswith("multipart/form-data"):
            self.record(body, None, ["media upload must be multipart/form-data"])
            return self.answer(400, graph_error(100, "Invalid parameter", details="expected multipart/form-data"))
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        fields, file_part = {}, None
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                file_part = part
            elif name:
                fields[name] = part.get_content().strip() if isinstance(part.get_content(), str) else part.get_payload(decode=True).decode()
        errors = []
        if fields.get("messaging_product") != "whatsapp":
            errors.append("messaging_product must be whatsapp")
        if not fields.get("type"):
            errors.append("type (the MIME type) is required")
        if file_part is None:
            errors.append("file is required")
        self.record(body, {"fields": fields, "filename": file_part.get_filename() if file_part else None,
                           "file_type": file_part.get_content_type() if file_part else None}, errors)
        if errors:
            return self.answer(400, graph_error(100, "Invalid parameter", details="; ".join(errors)))
        with LOCK:
            STATE["counter"] += 1
            media_id = "9%08d" % STATE["counter"]
            STATE["media"][media_id] = {"mime_type": fields["type"], "data": file_part.get_payload(decode=True)}
        return self.answer(200, {"id": media_id})

    def do_POST(self):
        body = self.read_body()
        if self.path.startswith("/_admin/"):
            return self.answer_admin_post(body, "id")
        m = re.fullmatch(r"/(v[0-9.]+)/([0-9]+)/media", self.path)
        if m and m.group(1) == ARGS.version and m.group(2) == ARGS.phone_number_id:
            if not self.authorized():
                self.record(body, None, ["bad token"])
                return self.answer(401, graph_error(190, "Invalid OAuth access token - Cannot parse access token"))
            return self.upload(body)
        try:
            parsed = json.loads(body)
        except ValueError:
            self.record(body, None, ["body is not JSON"])
            return self.answer(400, graph_error(100, "Invalid parameter", details="request body is not JSON"))
        m = re.fullmatch(r"/(v[0-9.]+)/([0-9]+)/messages", self.path)
        if not m or m.group(1) != ARGS.version or m.group(2) != ARGS.phone_number_id:
            self.record(body, parsed, ["unknown path"])
            return self.answer(400, graph_error(100, "Unsupported post request", etype="GraphMethodException", subcode=33))
        if not self.authorized():
            self.record(body, parsed, ["bad token"])
            return self.answer(401, graph_error(190, "Invalid OAuth access token - Cannot parse access token"))
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            self.record(body, parsed, ["content type"])
            return self.answer(400, graph_error(100, "Invalid parameter", details="Content-Type must be application/json"))
        errors = check_message(parsed)
        self.record(body, parsed, errors)
        if errors:
            return self.answer(400, graph_error(100, "Invalid parameter", details="; ".join(errors)))
        with LOCK:
            scripted = STATE["errors"].pop(0) if STATE["errors"] else None
            STATE["counter"] += 1
            n = STATE["counter"]
        if scripted is not None:
            return self.answer(int(scripted.get("status", 400)), {"error": scripted.get("error", {})}, headers=scripted.get("headers"))
        if "status" in parsed:
            return self.answer(200, {"success": True})
        to = parsed.get("to") or parsed.get("recipient")
        return self.answer(200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                                 "messages": [{"id": "wamid.FAKE%06d" % n}]})


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--token", required=True)
    ap.add_argument("--phone-number-id", required=True)
    ap.add_argument("--version", default="v21.0")
    ARGS = ap.parse_args()
    serve(Handler, ARGS.token)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A fake Azure Bot Framework for Chorus's Teams connector tests (standard library + PyJWT + cryptography).

It plays the three services a bot talks to, with the documented request and answer shapes
(https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-authentication):

    GET  /v1/.well-known/openidconfiguration   OpenID metadata: {"issuer", "jwks_uri", ...}
    GET  /v1/.well-known/keys                  the JWKS ({"keys": [{"kty":"RSA","kid","n","e","endorsements"}]})
    POST /botframework.com/oauth2/v2.0/token   client credentials (form: grant_type=client_credentials,
                                               client_id, client_secret, scope) -> {"token_type":"Bearer",
                                               "expires_in":3600,"ext_expires_in":3600,"access_token"};
                                               wrong credentials -> 400 {"error":"invalid_client",...}
    Connector API under the service URL <base>/amer/
    (https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-api-reference):
    POST   /amer/v3/conversations/{conversationId}/activities              -> 201 {"id"}
    POST   /amer/v3/conversations/{conversationId}/activities/{activityId} -> 201 {"id"} (a reply)
    PUT    /amer/v3/conversations/{conversationId}/activities/{activityId} -> 200 {"id"}
    DELETE /amer/v3/conversations/{conversationId}/activities/{activityId} -> 200
    Errors: {"error": {"code", "message"}} (401 without a valid bearer token, 400 BadArgument for a
    malformed activity, 404 ActivityNotFound, scripted 429 with Retry-After / 5xx).

Every Connector API call must carry a token this fake issued. Activities are checked against the
documented shape (type; a message needs text or attachments; attachments need contentType; Adaptive
Cards need type AdaptiveCard, a version, body/actions of known types; a reply's replyToId matches the
path); a call that does not is answered 400 BadArgument and recorded as a violation.

Admin API for tests (JSON):
    POST /admin/mint        {"claims": {...}, "key": "good"|"rogue", "kid", "alg"}: a JWT signed with PyJWT
                            (defaults: iss https://api.botframework.com, aud = app id, exp now+3600,
                            nbf now-60, serviceurl = <base>/amer/) -> {"token"}
    POST /admin/errors      {"method", "path_contains", "http_status", "retry_after", "count"}
    POST /admin/reset       forget requests, violations, errors, tokens issued count
    GET  /admin/requests    {"requests": [{"method","path","body","content_type","auth"}]}
    GET  /admin/violations  {"violations": [...]}
    GET  /admin/stats       {"tokens_issued", "jwks_fetches", "metadata_fetches"}

Usage: fake_botframework.py --app-id ID --app-password PW; prints "PORT <n>" once listening.
"""

import argparse
import base64
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt  # PyJWT
from cryptography.hazmat.primitives.asymmetric import rsa

LOCK = threading.Lock()
GOOD_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROGUE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "fake-bf-key-1"
STATE = {"requests": [], "violations": [], "errors": [], "tokens": set(), "tokens_issued": 0,
         "jwks_fetches": 0, "metadata_fetches": 0, "next_id": 1, "activities": {}, "port": 0}
ARGS = None

ADAPTIVE_ELEMENTS = {"TextBlock", "Image", "Container", "ColumnSet", "FactSet", "ImageSet", "ActionSet",
                     "Input.Text", "Input.Number", "Input.Date", "Input.Time", "Input.Toggle", "Input.ChoiceSet", "RichTextBlock"}
ADAPTIVE_ACTIONS = {"Action.Submit", "Action.OpenUrl", "Action.ShowCard", "Action.Execute", "Action.ToggleVisibility"}


def b64url_uint(v):
    raw = v.to_bytes((v.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def base():
    return "http://127.0.0.1:%d" % STATE["port"]


def check_activity(a, path_reply_id=None):
    """Problems with an activity, per the Connector API reference (empty when it is well-formed)."""
    problems = []
    if not isinstance(a, dict):
        return ["the body is not a JSON object"]
    t = a.get("type")
    if t not in ("message", "typing", "endOfConversation", "event", "invoke"):
        problems.append("type %r is not an activity type" % (t,))
    if t == "message" and not a.get("text") and not a.get("attachments"):
        problems.append("a message needs text or attachments")
    if "text" in a and not isinstance(a["text"], str):
        problems.append("text is not a string")
    if a.get("textFormat") not in (None, "markdown", "plain", "xml"):
        problems.append("textFormat %r" % a.get("textFormat"))
    if path_reply_id is not None and a.get("replyToId") not in (None, path_reply_id):
        problems.append("replyToId does not match the path")
    for i, att in enumerate(a.get("attachments") or []):
        if not isinstance(att, dict) or not att.get("contentType"):
            problems.append("attachments[%d] needs a contentType" % i)
            continue
        if att["contentType"] == "application/vnd.microsoft.card.adaptive":
            c = att.get("content")
            if not isinstance(c, dict) or c.get("type") != "AdaptiveCard" or not c.get("version"):
                problems.append("attachments[%d]: an Adaptive Card needs type AdaptiveCard and a version" % i)
                continue
            for el in c.get("body") or []:
                if el.get("type") not in ADAPTIVE_ELEMENTS:
                    problems.append("attachments[%d]: unknown element %r" % (i, el.get("type")))
                if el.get("type") == "TextBlock" and not isinstance(el.get("text"), str):
                    problems.append("attachments[%d]: TextBlock without text" % i)
                if el.get("type") == "Input.ChoiceSet" and (not el.get("id") or not el.get("choices")):
                    problems.append("attachments[%d]: Input.ChoiceSet needs id and choices" % i)
            for ac in c.get("actions") or []:
                if ac.get("type") not in ADAPTIVE_ACTIONS:
                    problems.append("attachments[%d]: unknown action %r" % (i, ac.get("type")))
                if ac.get("type") == "Action.OpenUrl" and not str(ac.get("url", "")).startswith(("http://", "https://")):
                    problems.append("attachments[%d]: Action.OpenUrl needs a url" % i)
                if not ac.get("title"):
                    problems.append("attachments[%d]: an action needs a title" % i)
        elif not att.get("contentUrl") and "content" not in att:
            problems.append("attachments[%d] needs contentUrl or content" % i)
    return problems


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, status, obj, headers=()):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        raw = self.read_body()
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/admin/"):
            return self.admin(method, path, raw)
        if method == "GET" and path == "/v1/.well-known/openidconfiguration":
            with LOCK:
                STATE["metadata_fetches"] += 1
            return self.send_json(200, {"issuer": "https://api.botframework.com", "authorization_endpoint": "https://invalid.botframework.com",
                                        "jwks_uri": base() + "/v1/.well-known/keys", "id_token_signing_alg_values_supported": ["RS256"],
                                        "token_endpoint_auth_methods_supported": ["private_key_jwt"]})
        if method == "GET" and path == "/v1/.well-known/keys":
            with LOCK:
                STATE["jwks_fetches"] += 1
            pub = GOOD_KEY.public_key().public_numbers()
            return self.send_json(200, {"keys": [{"kty": "RSA", "use": "sig", "kid": KID, "n": b64url_uint(pub.n), "e": b64url_uint(pub.e),
                                                  "endorsements": ["msteams", "webchat", "emulator"]}]})
        if method == "POST" and path == "/botframework.com/oauth2/v2.0/token":
            return self.token(raw)
        if path.startswith("/amer/v3/conversations/"):
            return self.connector(method, path, raw)
        self.send_json(404, {"error": {"code": "NotFound", "message": path}})

    def token(self, raw):
        ctype = self.headers.get("Content-Type", "")
        form = dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True))
        record = {"method": "POST", "path": "/token", "body": {k: ("***" if k == "client_secret" else v) for k, v in form.items()},
                  "content_type": ctype.split(";")[0], "auth": None}
        with LOCK:
            STATE["requests"].append(record)
        if not ctype.startswith("application/x-www-form-urlencoded"):
            return self.send_json(400, {"error": "invalid_request", "error_description": "form encoding expected"})
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "https://api.botframework.com/.default":
            return self.send_json(400, {"error": "invalid_request", "error_description": "grant_type/scope"})
        if form.get("client_id") != ARGS.app_id or form.get("client_secret") != ARGS.app_password:
            return self.send_json(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
        with LOCK:
            STATE["tokens_issued"] += 1
            tok = "fake-access-token-%d" % STATE["tokens_issued"]
            STATE["tokens"].add(tok)
        self.send_json(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})

    def scripted(self, method, path):
        with LOCK:
            for e in STATE["errors"]:
                if e["count"] > 0 and e.get("method", method) == method and e.get("path_contains", "") in path:
                    e["count"] -= 1
                    return e
        return None

    def connector(self, method, path, raw):
        pieces = [urllib.parse.unquote(p) for p in path[len("/amer/v3/conversations/"):].split("/")]
        auth = self.headers.get("Authorization", "")
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"_unparsable": raw.decode(errors="replace")}
        record = {"method": method, "path": "/v3/conversations/" + "/".join(pieces), "conversation": pieces[0],
                  "activity_id": pieces[2] if len(pieces) > 2 else None, "body": body,
                  "content_type": (self.headers.get("Content-Type") or "").split(";")[0], "auth": auth}
        with LOCK:
            STATE["requests"].append(record)
        if not auth.startswith("Bearer ") or auth[7:] not in STATE["tokens"]:
            return self.send_json(401, {"error": {"code": "Unauthorized", "message": "Authorization has been denied for this request."}})
        e = self.scripted(method, path)
        if e:
            hdrs = [("Retry-After", str(e["retry_after"]))] if e.get("retry_after") is not None else []
            return self.send_json(e.get("http_status", 500), {"error": {"code": e.get("code", "ServiceError"), "message": "scripted"}}, hdrs)
        if len(pieces) < 2 or pieces[1] != "activities" or len(pieces) > 3:
            return self.send_json(404, {"error": {"code": "NotFound", "message": "no such route"}})
        conv, act = pieces[0], (pieces[2] if len(pieces) == 3 else None)
        if method in ("POST", "PUT"):
            problems = check_activity(body, act if method == "POST" else None)
            if record["content_type"] != "application/json":
                problems.append("Content-Type %r" % record["content_type"])
            if problems:
                with LOCK:
                    STATE["violations"].append({"request": record, "problems": problems})
                return self.send_json(400, {"error": {"code": "BadArgument", "message": "; ".join(problems)}})
        if method == "POST":
            with LOCK:
                new_id = "1%012d" % STATE["next_id"]
                STATE["next_id"] += 1
                STATE["activities"][(conv, new_id)] = body
            return self.send_json(201, {"id": new_id})
        if act is None:
            return self.send_json(405, {"error": {"code": "MethodNotAllowed", "message": method}})
        with LOCK:
            known = (conv, act) in STATE["activities"]
            if known and method == "PUT":
                STATE["activities"][(conv, act)] = body
            if known and method == "DELETE":
                del STATE["activities"][(conv, act)]
        if not known:
            return self.send_json(404, {"error": {"code": "ActivityNotFound", "message": "Unknown activity"}})
        return self.send_json(200, {"id": act} if method == "PUT" else None)

    def admin(self, method, path, raw):
        data = json.loads(raw) if raw else {}
        if path == "/admin/mint":
            now = int(time.time())
            claims = {"iss": "https://api.botframework.com", "aud": ARGS.app_id, "exp": now + 3600, "nbf": now - 60,
                      "serviceurl": base() + "/amer/"}
            for k, v in (data.get("claims") or {}).items():
                if v is None:
                    claims.pop(k, None)
                else:
                    claims[k] = v
            key = GOOD_KEY if data.get("key", "good") == "good" else ROGUE_KEY
            tok = jwt.encode(claims, key, algorithm=data.get("alg", "RS256"), headers={"kid": data.get("kid", KID)})
            return self.send_json(200, {"token": tok})
        with LOCK:
            if path == "/admin/errors":
                STATE["errors"].append(dict(data))
                return self.send_json(200, {"ok": True})
            if path == "/admin/reset":
                for k in ("requests", "violations", "errors"):
                    STATE[k] = []
                return self.send_json(200, {"ok": True})
            if path == "/admin/requests":
                return self.send_json(200, {"requests": STATE["requests"]})
            if path == "/admin/violations":
                return self.send_json(200, {"violations": STATE["violations"]})
            if path == "/admin/stats":
                return self.send_json(200, {k: STATE[k] for k in ("tokens_issued", "jwks_fetches", "metadata_fetches")})
        self.send_json(404, {"error": "no such admin route"})


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--app-password", required=True)
    ap.add_argument("--port", type=int, default=0)
    ARGS = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    STATE["port"] = server.server_address[1]
    print("PORT %d" % STATE["port"], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

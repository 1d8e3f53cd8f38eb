"""What the two fake Graph API servers share.

fake_graph.py (WhatsApp Cloud API) and fake_messenger.py (Messenger and
Instagram Send API) run as separate processes; each imports this module for
the request log and scripted-error state, the Graph error envelope, the HTTP
plumbing of a handler (answer, body, recording, bearer-token check) and the
start-up that prints ``PORT <n>`` for the tests.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"requests": [], "errors": [], "media": {}, "counter": 0}


def graph_error(code, message, etype="OAuthException", subcode=None, details=None, title=None):
    """A Graph API error body: {"error": {message, type, code, fbtrace_id, ...}}."""
    err = {"message": message, "type": etype, "code": code, "fbtrace_id": "AbCdEfFakeTrace"}
    if subcode is not None:
        err["error_subcode"] = subcode
    if details is not None:
        err["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if title is not None:
        err["error_user_title"] = title
    return {"error": err}


class GraphHandler(BaseHTTPRequestHandler):
    """HTTP plumbing shared by the fakes' handlers; `token` is the access token the fake accepts."""
    protocol_version = "HTTP/1.1"
    token = ""

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, obj=None, headers=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def record(self, body, parsed, errors):
        with LOCK:
            STATE["requests"].append({"method": self.command, "path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "json": parsed, "raw": body.decode("utf-8", "replace") if parsed is None else None,
                                      "errors": errors})

    def answer_requests(self):
        """GET /_admin/requests: every request received so far."""
        with LOCK:
            return self.answer(200, {"requests": STATE["requests"]})

    def answer_admin_post(self, body, media_key):
        """POST /_admin/reset, /_admin/errors (script `count` error answers) and /_admin/media (register bytes
        under the request's `media_key` field)."""
        req = json.loads(body or b"{}")
        with LOCK:
            if self.path == "/_admin/reset":
                STATE["requests"].clear(); STATE["errors"].clear(); STATE["media"].clear()
            elif self.path == "/_admin/errors":
                for _ in range(int(req.get("count", 1))):
                    STATE["errors"].append(req)
            elif self.path == "/_admin/media":
                STATE["media"][req[media_key]] = {"mime_type": req.get("mime_type", "application/octet-stream"),
                                                  "data": req.get("data", "").encode()}
            else:
                return self.answer(404, {"error": "unknown admin path"})
        return self.answer(200, {"ok": True})

    def answer_media(self, name):
        """Serves bytes registered with /_admin/media (no token), or 404."""
        with LOCK:
            media = STATE["media"].get(name)
        if media is None:
            return self.answer(404, raw=b"not found", ctype="text/plain")
        return self.answer(200, raw=media["data"], ctype=media["mime_type"])

    def authorized(self):
        return self.headers.get("Authorization") == "Bearer " + self.token


def serve(handler_class, token):
    """Listens on 127.0.0.1 on a free port, prints ``PORT <n>`` and serves until killed."""
    handler_class.token = token
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass

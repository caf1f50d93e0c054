#!/usr/bin/env python3
"""A deliberately vulnerable JSON API, the target of `cargo xtask detect-quality`: attack
tools (sqlmap, wfuzz, ffuf, hydra) and our attack scripts run against it inside network
namespaces, while benign clients use it as intended. Test traffic only.

What is vulnerable, and how far (nothing here touches anything outside the process):
- /api/users?id= and /api/search?q=: real SQL injection into an in-memory SQLite database
  (string formatting), so sqlmap can find and exploit it.
- /api/login (JSON or form): a failure is a 401 (JSON) or the form page again with a
  message (form, 200); a success returns an HS256 JWT signed with the secret "secret" and
  no expiry. /api/admin: Basic authentication.
- /api/me: accepts a token whose alg is none, or which has expired.
- /api/files?name=: path traversal, answered with canned file contents (nothing is read).
- /api/fetch?url=, /api/ping?host=, /api/render?template=, /api/directory?user=,
  /api/products (query or JSON filters), /api/import (XML): accept anything and echo a
  canned answer; nothing is fetched, run or rendered.
- /api/report?id=: a Python traceback in the response when id is not a number.
- Anything else: 404.
"""
import base64
import hashlib
import hmac
import http.server
import json
import sqlite3
import sys
import threading
import time
import urllib.parse

DB = sqlite3.connect(":memory:", check_same_thread=False)
DB.executescript(
    """
    CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, password TEXT);
    INSERT INTO users VALUES (1, 'alice', 'alice@example.com', 'wonderland');
    INSERT INTO users VALUES (2, 'bob', 'bob@example.com', 'builder');
    INSERT INTO users VALUES (3, 'carol', 'carol@example.com', 'c4r0l!');
    CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL);
    INSERT INTO products VALUES (1, 'red shoes', 59.9), (2, 'blue hat', 19.5), (3, 'green scarf', 25.0);
    """
)
LOCK = threading.Lock()
USERS = {"alice": "wonderland", "bob": "builder", "carol": "c4r0l!", "admin": "letmein"}


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(user):
    h = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64url(json.dumps({"sub": user, "iat": int(time.time())}).encode())
    sig = hmac.new(b"secret", f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(sig)}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, obj, ctype="application/json"):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def query(self):
        u = urllib.parse.urlsplit(self.path)
        return u.path, urllib.parse.parse_qs(u.query, keep_blank_values=True)

    def sql(self, q):
        with LOCK:
            try:
                return 200, [list(r) for r in DB.execute(q).fetchall()]
            except Exception as e:  # the error text is what sqlmap reads
                return 500, {"error": str(e)}

    def handle_any(self):
        path, q = self.query()
        raw = self.body()
        one = lambda k, d="": (q.get(k) or [d])[0]
        if path == "/api/users":
            status, rows = self.sql(f"SELECT id, name, email FROM users WHERE id = {one('id', '1')}")
            return self.reply(status, {"users": rows} if status == 200 else rows)
        if path.startswith("/api/users/"):
            status, rows = self.sql(f"SELECT id, name, email FROM users WHERE id = {path[11:] or '0'}")
            return self.reply(status, {"users": rows} if status == 200 else rows)
        if path == "/api/search":
            status, rows = self.sql(f"SELECT id, name, price FROM products WHERE name LIKE '%{one('q')}%'")
            return self.reply(status, {"products": rows} if status == 200 else rows)
        if path == "/api/login":
            ctype = self.headers.get("Content-Type", "")
            if "json" in ctype:
                try:
                    d = json.loads(raw or b"{}")
                except ValueError:
                    d = {}
            else:
                d = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
            user, pw = d.get("username"), d.get("password")
            if isinstance(user, str) and USERS.get(user) == pw:
                return self.reply(200, {"token": token(user)})
            if "json" in ctype:
                return self.reply(401, {"error": "invalid credentials"})
            # A web form's failure: the page again, with a message (as most forms do).
            return self.reply(200, b"<html><body><p>Login failed: invalid credentials</p></body></html>", "text/html")
        if path == "/api/admin":
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    if USERS.get(user) == pw and user == "admin":
                        return self.reply(200, {"admin": True})
                except Exception:
                    pass
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="admin"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/api/me":
            auth = self.headers.get("Authorization", "")
            try:
                parts = auth.split(" ", 1)[1].split(".")
                claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
                return self.reply(200, {"user": claims.get("sub")})
            except Exception:
                return self.reply(401, {"error": "no token"})
        if path == "/api/files":
            name = one("name")
            if ".." in name or name.startswith("/"):
                return self.reply(200, b"root:x:0:0:root:/root:/bin/bash\n", "text/plain")
            return self.reply(200, {"file": name, "size": 1024})
        if path == "/api/fetch":
            return self.reply(200, {"fetched": one("url"), "bytes": 0})
        if path == "/api/ping":
            return self.reply(200, {"output": f"PING {one('host')}: 1 packets transmitted, 1 received"})
        if path == "/api/render":
            return self.reply(200, {"html": f"<p>{one('template')}</p>"})
        if path == "/api/directory":
            return self.reply(200, {"entries": [one("user")]})
        if path == "/api/products":
            return self.reply(200, {"products": [[1, "red shoes", 59.9]]})
        if path == "/api/import":
            return self.reply(200, {"imported": len(raw)})
        if path == "/api/report":
            rid = one("id", "1")
            if not rid.isdigit():
                trace = (
                    "Traceback (most recent call last):\n"
                    '  File "/srv/api/reports.py", line 42, in get_report\n'
                    "    rid = int(request.args['id'])\n"
                    f"ValueError: invalid literal for int() with base 10: {rid[:40]!r}\n"
                )
                return self.reply(500, trace.encode(), "text/plain")
            return self.reply(200, {"report": int(rid), "rows": 12})
        if path in ("/api/health", "/"):
            return self.reply(200, {"ok": True})
        return self.reply(404, {"error": "not found"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


Server((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()

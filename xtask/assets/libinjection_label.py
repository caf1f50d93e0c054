"""Label request values with libinjection (an independent peer) for detect-quality.

Reads JSON lines {"check": "sqli" | "xss", "uri": "/path?name=value"} on stdin and writes one
line per input: 1 when libinjection judges the decoded value of the query's first parameter
an injection of that kind, else 0.
Needs the libinjection-python package (detect-quality installs it in a virtualenv).
"""
import json
import sys
import urllib.parse

import libinjection

for line in sys.stdin:
    item = json.loads(line)
    query = item["uri"].partition("?")[2]
    text = urllib.parse.unquote_plus(query.partition("=")[2])
    if item["check"] == "sqli":
        hit = libinjection.is_sql_injection(text)["is_sqli"]
    else:
        hit = libinjection.is_xss(text)["is_xss"]
    print(1 if hit else 0, flush=False)

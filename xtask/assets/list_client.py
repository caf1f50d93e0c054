#!/usr/bin/env python3
"""Send the requests listed in a file ("METHOD HOST PATH" per line) over a few keep-alive
connections, in order. Prints how many got an answer."""
import http.client
import sys

server, port, listing = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conns = [http.client.HTTPConnection(server, port, timeout=10) for _ in range(4)]
done = 0
with open(listing) as f:
    for i, line in enumerate(f):
        method, host, path = line.rstrip("\n").split(" ", 2)
        c = conns[i % len(conns)]
        body = b'{"name":"x"}' if method in ("POST", "PUT", "PATCH") else None
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        r.read()
        done += 1
print(done)

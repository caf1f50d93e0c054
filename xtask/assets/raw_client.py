#!/usr/bin/env python3
"""Test clients that curl cannot be: pipelining, and a connection that the capture joins in
the middle. Each prints one line per request it made: METHOD PATH STATUS."""
import os
import socket
import sys
import time


def read_response(f):
    status = f.readline()
    code = status.split()[1].decode()
    length, chunked = None, False
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.lower() == "content-length":
            length = int(v)
        if k.lower() == "transfer-encoding" and "chunked" in v.lower():
            chunked = True
    return code, length, chunked


def drain(f, length, chunked, head):
    if head:
        return
    if chunked:
        while True:
            n = int(f.readline().split(b";")[0], 16)
            if n == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            f.read(n + 2)
    elif length:
        f.read(length)


def pipeline(host, port, paths):
    s = socket.create_connection((host, port))
    reqs = b"".join(b"%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: apiwatch-pipeline\r\n\r\n" % (m.encode(), p.encode(), host.encode()) for m, p in paths)
    s.sendall(reqs)
    f = s.makefile("rb")
    for m, p in paths:
        code, length, chunked = read_response(f)
        drain(f, length, chunked, m == "HEAD")
        print(m, p, code, flush=True)
    s.close()


def slow(host, port, paths, gofile):
    """One keep-alive connection; after the first request, waits until `gofile` exists (the
    recording starts during the wait), then makes the others."""
    s = socket.create_connection((host, port))
    f = s.makefile("rb")
    for i, (m, p) in enumerate(paths):
        s.sendall(b"%s %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (m.encode(), p.encode(), host.encode()))
        code, length, chunked = read_response(f)
        drain(f, length, chunked, m == "HEAD")
        print(m, p, code, "before-capture" if i == 0 else "", flush=True)
        if i == 0:
            for _ in range(600):
                if os.path.exists(gofile):
                    break
                time.sleep(0.05)
    s.close()


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "pipeline":
        pipeline(host, port, [tuple(x.split(" ", 1)) for x in sys.argv[4:]])
    else:
        slow(host, port, [tuple(x.split(" ", 1)) for x in sys.argv[5:]], sys.argv[4])

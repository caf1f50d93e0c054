#!/usr/bin/env python3
"""Hostile HTTP clients, for the robustness captures: each attack on its own connection to a
real server. Prints one line per attack: NAME STATUS (or NAME closed)."""
import random
import socket
import sys


def attack(host, port, name, payload, read=True):
    s = socket.create_connection((host, port), timeout=5)
    try:
        for i in range(0, len(payload), 65536):
            s.sendall(payload[i:i + 65536])
    except OSError:
        pass
    status = "closed"
    if read:
        try:
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"HTTP/"):
                status = data.split(b" ", 2)[1].decode()
        except OSError:
            pass
    s.close()
    print(name, status, flush=True)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(42)
    attack(host, port, "huge-header", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    attack(host, port, "many-headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(3000)) + b"\r\n")
    attack(host, port, "garbage", bytes(rnd.getrandbits(8) for _ in range(65536)))
    attack(host, port, "endless-chunk", b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n" + b"z" * 2_000_000)
    attack(host, port, "bogus-length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\nabc")
    attack(host, port, "cut-head", b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Partial: yes", read=False)
    attack(host, port, "fine-after", b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


if __name__ == "__main__":
    main()

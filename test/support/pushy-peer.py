#!/usr/bin/python3
"""A peer that does not wait for its answer: it sends an MQTT 3.1.1 CONNECT and then
PINGREQs (MQTT 3.1.1 sections 3.1 and 3.12) in one go, more than a server reads at once,
waits, and only then reads what the server wrote until the connection ends.

  pushy-peer.py HOST PORT PINGS [CA_FILE]   (a CA file: over TLS, server name localhost)

Prints one JSON line: the first bytes it read (hex) and how the connection ended for it,
"eof" (the server's orderly end) or "reset" (the kernel's reset: what closing a socket
with unread bytes sends).
"""
import json
import socket
import ssl
import sys
import time

host, port, pings = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CONNECT = bytes([0x10, 0x0E, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x3C, 0x00, 0x02]) + b"c1"
s = socket.create_connection((host, port), timeout=10)
if len(sys.argv) > 4:
    ctx = ssl.create_default_context(cafile=sys.argv[4])
    s = ctx.wrap_socket(s, server_hostname="localhost")
ended = "eof"
try:
    s.sendall(CONNECT + bytes([0xC0, 0x00]) * pings)
except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
    pass  # the server stopped reading or closed: what it wrote is still to be read
time.sleep(0.2)
got = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
except (ConnectionResetError, ssl.SSLError) as e:
    ended = "reset" if isinstance(e, ConnectionResetError) or "EOF" not in str(e) else "eof"
print(json.dumps({"head": got[:4].hex(), "ended": ended}))

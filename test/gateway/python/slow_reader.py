"""A client that stops reading: it streams a chat completion through the gateway over a raw
socket whose receive buffer is made small before it connects (SO_RCVBUF, which also turns off the
kernel's receive-buffer autotuning), reads the response head and stops. Only the standard library.

usage: slow_reader.py <host> <port> <tenant>
Prints JSON lines:
  {"event": "stopped", "rcvbuf", "bytes"}   the head was read; nothing more is read until stdin
                                            gets a line
  {"event": "end", "bytes", "how", "errorEvent", "wellFormedEnd"}
                                            what it read after being told to read on: `how` is
                                            "eof" (the server ended the response) or "reset"
"""

import json
import socket
import sys


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main() -> None:
    host, port, tenant = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connect: the window the client advertises is fixed from the handshake on.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, port))
    body = json.dumps({"model": "m", "messages": [], "stream": True}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-killswitch-tenant: {tenant}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    s.sendall(head + body)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(1024)
        if not chunk:
            break
        got += chunk
    emit(event="stopped", rcvbuf=s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), bytes=len(got))
    sys.stdin.readline()  # blocked here: the gateway's writes fill the buffers and wait
    how = "eof"
    tail = got[-4096:]
    total = len(got)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            total += len(chunk)
            tail = (tail + chunk)[-4096:]
    except ConnectionResetError:
        how = "reset"
    text = tail.decode("utf-8", "replace")
    emit(
        event="end",
        bytes=total,
        how=how,
        errorEvent="event: error" in text,
        # A chunked response that ended well: the last chunk (0) after the error event.
        wellFormedEnd=text.endswith("0\r\n\r\n"),
    )


if __name__ == "__main__":
    main()

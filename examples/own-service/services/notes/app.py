"""notes: a small JSON API on Python's standard library, its state in Redis.

    POST /notes {"text": "..."}  -> 201 {"id": 1, "text": "...", "by": "notes1"}
    GET  /notes/<id>             -> 200 {"id": 1, "text": "...", "by": ...} | 404
    GET  /notes                  -> 200 {"count": N}
    GET  /health                 -> 200 {"ok": true}   (the process; Redis is not asked)
Redis unreachable or slow (1 s) -> 503 {"error": "kv unavailable: ..."}. Every answer carries
`X-Served-By`. A new Redis connection per request, and no `traceparent` sent to Redis: hoplab's
trace ties that connection to the request by timing, and says so."""

from __future__ import annotations

import argparse
import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REDIS_TIMEOUT_S = 1.0


class KvError(Exception):
    pass


def redis(address: tuple[str, int], *command: str):
    """One command over RESP on a fresh connection: the reply (int, str, None) or KvError."""
    payload = f"*{len(command)}\r\n".encode() + b"".join(
        f"${len(part.encode())}\r\n".encode() + part.encode() + b"\r\n" for part in command)
    try:
        with socket.create_connection(address, timeout=REDIS_TIMEOUT_S) as conn:
            conn.sendall(payload)
            reader = conn.makefile("rb")
            line = reader.readline()
            if not line:
                raise KvError("connection closed")
            kind, rest = line[:1], line[1:].rstrip(b"\r\n")
            if kind == b"-":
                raise KvError(rest.decode())
            if kind == b":":
                return int(rest)
            if kind == b"+":
                return rest.decode()
            if kind == b"$":
                size = int(rest)
                return None if size < 0 else reader.read(size + 2)[:-2].decode()
            raise KvError(f"unexpected reply {line[:20]!r}")
    except OSError as exc:
        raise KvError(f"{type(exc).__name__}: {exc}") from None


class Api(BaseHTTPRequestHandler):
    server_version = "notes/1"
    kv: tuple[str, int]
    name: str

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Served-By", self.name)
        self.end_headers()
        self.wfile.write(data)

    def guarded(self, handler) -> None:
        try:
            handler()
        except KvError as exc:
            self.answer(503, {"error": f"kv unavailable: {exc}", "by": self.name})

    def do_GET(self) -> None:
        if self.path == "/health":
            return self.answer(200, {"ok": True, "by": self.name})
        if self.path == "/notes":
            return self.guarded(lambda: self.answer(200, {"count": int(redis(self.kv, "GET", "notes:seq") or 0),
                                                          "by": self.name}))
        if self.path.startswith("/notes/") and self.path[7:].isdigit():
            def one():
                stored = redis(self.kv, "GET", f"note:{self.path[7:]}")
                if stored is None:
                    return self.answer(404, {"error": "no such note", "by": self.name})
                return self.answer(200, {**json.loads(stored), "by": self.name})
            return self.guarded(one)
        self.answer(404, {"error": "not found", "by": self.name})

    def do_POST(self) -> None:
        if self.path != "/notes":
            return self.answer(404, {"error": "not found", "by": self.name})
        try:
            length = int(self.headers.get("Content-Length") or 0)
            text = json.loads(self.rfile.read(min(length, 65536)) or b"{}").get("text")
        except (ValueError, AttributeError):
            text = None
        if not isinstance(text, str) or not text or len(text) > 1000:
            return self.answer(400, {"error": "expected JSON {\"text\": \"1..1000 characters\"}", "by": self.name})

        def create():
            note_id = redis(self.kv, "INCR", "notes:seq")
            note = {"id": note_id, "text": text}
            redis(self.kv, "SET", f"note:{note_id}", json.dumps(note))
            self.answer(201, {**note, "by": self.name})
        self.guarded(create)

    def log_message(self, fmt: str, *args) -> None:  # one line per request, with its trace context
        print(f"{self.address_string()} {fmt % args} traceparent={self.headers.get('traceparent', '-')}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    # From the environment too, for the image variant (image/Dockerfile, notes-image.yaml's env;
    # hoplab sets HOPLAB_NODE in an image node's container).
    parser.add_argument("--redis", default=os.environ.get("NOTES_REDIS", "127.0.0.1:6379"))
    parser.add_argument("--name", default=os.environ.get("HOPLAB_NODE") or socket.gethostname())
    args = parser.parse_args()
    host, port = args.redis.rsplit(":", 1)
    Api.kv, Api.name = (host, int(port)), args.name
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer(("0.0.0.0", args.port), Api).serve_forever()


if __name__ == "__main__":
    main()

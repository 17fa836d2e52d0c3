"""The engine client's own wire handling (backends/engine.py), against a Unix socket that
speaks the Docker API's exec protocol as the engine does: the HTTP head, `101 UPGRADED`, then
multiplexed frames. The real engine is exercised end to end (tests/e2e)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from hoplab.backends import engine
from hoplab.backends.engine import Engine, EngineUnreachable, _Demux


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class FakeEngine:
    """Answers one connection at a time: `/_ping` with OK, `/exec/<id>/start` with the frames
    given (optionally holding the connection open), and records what was sent to it."""

    def __init__(self, path, frames: bytes = b"", hold: bool = False):
        self.path, self.frames, self.hold = str(path), frames, hold
        self.received: list[bytes] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(4)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1)
            body_length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")))
            body = conn.recv(body_length) if body_length else b""
            if b"/_ping" in head:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            else:
                # the head and the first frames in one write: nothing may be lost to buffering
                conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + self.frames)
                if not self.hold:
                    rest = b""
                    while chunk := conn.recv(4096):  # stdin until the client half-closes
                        rest += chunk
                    self.received.append(rest)
                else:
                    threading.Event().wait(5)
            self.received.append(head + body)
            conn.close()

    def close(self):
        self.server.close()


@pytest.fixture
def socket_path(tmp_path):
    return tmp_path / "docker.sock"


def test_demux_splits_frames_across_chunk_boundaries():
    stream = frame(1, b"hello ") + frame(2, b"oops\n") + frame(1, b"world\n")
    demux, got = _Demux(), []
    for i in range(0, len(stream), 3):  # three bytes at a time: headers split too
        got += list(demux.feed(stream[i:i + 3]))
    assert got == [(1, b"hello "), (2, b"oops\n"), (1, b"world\n")]  # whole frames, in order


def test_demux_keeps_a_partial_frame_until_it_is_whole():
    demux = _Demux()
    assert list(demux.feed(frame(1, b"abcdef")[:10])) == []
    assert list(demux.feed(frame(1, b"abcdef")[10:])) == [(1, b"abcdef")]


def test_reachable_pings_the_socket(socket_path):
    assert not Engine(str(socket_path)).reachable()  # nothing there
    fake = FakeEngine(socket_path)
    try:
        assert Engine(str(socket_path)).reachable()
    finally:
        fake.close()


def test_exec_stream_is_read_right_after_the_head_with_input_sent(socket_path):
    fake = FakeEngine(socket_path, frames=frame(1, b"out\n") + frame(2, b"err\n"))
    try:
        eng = Engine(str(socket_path))
        conn = eng._exec_start("abc", tty=False, deadline=None)
        conn.sendall(b"to stdin")
        conn.shutdown(socket.SHUT_WR)
        got = list(engine._frames(conn, deadline=time.monotonic() + 5))
        conn.close()
    finally:
        fake.close()
    assert got == [(1, b"out\n"), (2, b"err\n")]
    fake.thread.join(2)
    assert fake.received[0] == b"to stdin"
    assert b"POST /v1.41/exec/abc/start HTTP/1.1" in fake.received[1]
    assert b'"Tty": false' in fake.received[1]


def test_a_silent_exec_times_out_at_its_deadline(socket_path):
    fake = FakeEngine(socket_path, frames=frame(1, b"partial"), hold=True)
    try:
        eng = Engine(str(socket_path))
        conn = eng._exec_start("abc", tty=False, deadline=None)
        frames = engine._frames(conn, deadline=time.monotonic() + 0.3)
        assert next(frames) == (1, b"partial")
        with pytest.raises((TimeoutError, socket.timeout)):
            next(frames)
        conn.close()
    finally:
        fake.close()


def test_only_a_local_socket_is_accepted(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.1:2375")
    with pytest.raises(EngineUnreachable, match="DOCKER_HOST"):
        engine.socket_path()
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    assert engine.socket_path() == "/run/other.sock"
    monkeypatch.delenv("DOCKER_HOST")
    assert engine.socket_path() == engine.DEFAULT_SOCKET


def test_an_engine_that_is_not_there_is_a_backend_error(socket_path):
    eng = Engine(str(socket_path))
    with pytest.raises(EngineUnreachable, match="make up"):
        eng.containers("io.hoplab.lab=x")
    with pytest.raises(EngineUnreachable):
        eng.run("c", ["true"], timeout=2)

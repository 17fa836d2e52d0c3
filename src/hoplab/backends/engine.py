"""The Docker engine, through the Docker SDK (the `docker` package): one connection to the
engine's Unix socket per `Engine`, a timeout on every call, and the engine's errors turned into
`BackendError`s that say what failed. Compose (bring-up, `down`) stays a command of its own:
`docker compose up --wait` is the fastest way to start a project and wait for its health."""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from hoplab.backends.base import BackendError

DEFAULT_SOCKET = "/var/run/docker.sock"
API_VERSION = "1.41"  # Docker 20.10 and later; pinned, so no version round trip on connect
CALL_TIMEOUT = 30.0  # seconds, for every API call that is not given its own
PING_TIMEOUT = 3.0
_PR_SET_PDEATHSIG = 1
_STDOUT, _STDERR = 1, 2


class EngineError(BackendError):
    """The engine refused or failed a call; the message names the call and the engine's reason."""


class EngineUnreachable(EngineError):
    """No Docker engine answers on the socket."""


class NotFound(EngineError):
    """The object (container, image, network, volume) does not exist."""


class NotRunning(EngineError):
    """The container exists but is not running."""


def socket_path() -> str:
    """The engine's Unix socket: DOCKER_HOST when it names one, else Docker's default. hoplab
    changes the host's own bridges and firewall, so it only ever drives the local engine."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if host:
        raise EngineUnreachable(f"DOCKER_HOST={host}: hoplab drives the local engine only (a unix:// socket)")
    return DEFAULT_SOCKET


def _die_with_parent() -> None:
    # A Compose run outlives a killed `hoplab up` otherwise, and goes on creating containers
    # after `hoplab clean` has looked for them.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Engine:
    """The calls hoplab makes on the engine. Containers, networks and volumes are named by id or
    name; what comes back is the engine's own JSON (as `docker inspect` shows it)."""

    def __init__(self, path: str | None = None, timeout: float = CALL_TIMEOUT):
        self.path = path or socket_path()
        self.timeout = timeout

    @cached_property
    def api(self):
        import docker  # the SDK pulls in requests: imported only when the engine is used

        return docker.APIClient(base_url=f"unix://{self.path}", version=API_VERSION, timeout=self.timeout)

    def _call(self, what: str, method, *args, **kwargs):
        """One SDK call, its failures as EngineErrors naming `what`."""
        import docker.errors
        import requests.exceptions

        try:
            return method(*args, **kwargs)
        except docker.errors.NotFound as exc:
            raise NotFound(f"{what}: {exc.explanation or exc}") from None
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "is not running" in str(exc.explanation):
                raise NotRunning(f"{what}: {exc.explanation}") from None
            raise EngineError(f"{what}: {exc.explanation or exc}") from None
        except requests.exceptions.Timeout:
            raise EngineError(f"{what}: no answer from the Docker engine within {self.timeout:g} s") from None
        except (requests.exceptions.ConnectionError, docker.errors.DockerException, FileNotFoundError) as exc:
            raise EngineUnreachable(f"{what}: no Docker engine answers at {self.path} ({exc}); `make up` "
                                    "installs and starts one (or start dockerd)") from None

    # ------------------------------------------------------------ the engine itself

    def reachable(self) -> bool:
        """Whether an engine answers `GET /_ping` on the socket within a few seconds."""
        try:
            status, conn = self._request("GET", "/_ping", b"", {}, PING_TIMEOUT)
        except (OSError, EngineError):
            return False
        conn.close()
        return " 200 " in status

    # ------------------------------------------------------------ objects by label

    def containers(self, label: str) -> list[dict]:
        """Every container (running or not) carrying `label`, as the engine lists them."""
        return self._call("list containers", self.api.containers, all=True, filters={"label": label})

    def networks(self, label: str | None = None) -> list[dict]:
        filters = {"label": label} if label else None
        return self._call("list networks", self.api.networks, filters=filters)

    def volumes(self, label: str) -> list[str]:
        found = self._call("list volumes", self.api.volumes, filters={"label": label})
        return [v["Name"] for v in (found or {}).get("Volumes") or []]

    def inspect(self, container: str) -> dict:
        return self._call(f"inspect container {container}", self.api.inspect_container, container)

    def logs(self, container: str, tail: int = 15) -> str:
        out = self._call(f"logs of {container}", self.api.logs, container, tail=tail)
        return out.decode(errors="replace")

    # ------------------------------------------------------------ changing containers

    def start(self, container: str) -> None:
        self._call(f"start {container}", self.api.start, container)

    def stop(self, container: str, timeout: float) -> None:
        self._call(f"stop {container}", self.api.stop, container, timeout=int(timeout))

    def remove_container(self, container: str) -> None:
        self._call(f"remove container {container}", self.api.remove_container, container, v=True, force=True)

    def remove_network(self, network: str) -> None:
        self._call(f"remove network {network}", self.api.remove_network, network)

    def remove_volume(self, volume: str) -> None:
        self._call(f"remove volume {volume}", self.api.remove_volume, volume, force=True)

    # ------------------------------------------------------------ images

    def image(self, name: str) -> dict | None:
        try:
            return self._call(f"inspect image {name}", self.api.inspect_image, name)
        except NotFound:
            return None

    def image_id(self, name: str) -> str | None:
        found = self.image(name)
        return found["Id"] if found else None

    def image_label(self, name: str, label: str) -> str | None:
        found = self.image(name)
        return ((found.get("Config") or {}).get("Labels") or {}).get(label) if found else None

    def images(self, label: str | None = None, reference: str | None = None, dangling: bool = False) -> list[dict]:
        """The images carrying `label`, matching `reference` (a tag), or with no tag left
        (`dangling`), as the engine lists them."""
        filters = {**({"label": label} if label else {}), **({"reference": reference} if reference else {}),
                   **({"dangling": True} if dangling else {})}
        return self._call("list images", self.api.images, filters=filters) or []

    def image_history(self, image: str) -> list[dict]:
        """An image's build steps, newest first (`CreatedBy` says what each did)."""
        return self._call(f"history of image {image}", self.api.history, image)

    def remove_image(self, image: str) -> None:
        """Remove an image (a tag: untag it, and remove it when it was the last). Never forced:
        an image a container uses stays, and the engine says so."""
        self._call(f"remove image {image}", self.api.remove_image, image)

    # ------------------------------------------------------------ events

    def events(self, label: str) -> "EventStream":
        """Container events of objects carrying `label`, from now on, until closed."""
        return EventStream(self, {"type": "container", "label": label})

    # ------------------------------------------------------------ exec

    def run(self, container: str, argv: list[str], timeout: float, input: str | None = None
            ) -> subprocess.CompletedProcess:
        """Run a command in a running container, feeding it `input`, and capture its output,
        as subprocess.run does; subprocess.TimeoutExpired after `timeout` seconds."""
        exec_id = self._exec_create(container, argv, stdin=input is not None, tty=False)
        deadline = time.monotonic() + timeout
        stream = self._exec_start(exec_id, tty=False, deadline=deadline)
        out, err = bytearray(), bytearray()
        try:
            if input is not None:
                stream.sendall(input.encode())
                stream.shutdown(socket.SHUT_WR)
            for kind, data in _frames(stream, deadline):
                (err if kind == _STDERR else out).extend(data)
        except (TimeoutError, socket.timeout):
            raise subprocess.TimeoutExpired(argv, timeout, bytes(out).decode(errors="replace"),
                                            bytes(err).decode(errors="replace")) from None
        finally:
            stream.close()
        return subprocess.CompletedProcess(argv, self._exit_code(exec_id), bytes(out).decode(errors="replace"),
                                           bytes(err).decode(errors="replace"))

    def attach(self, container: str, argv: list[str], interactive: bool) -> int:
        """Run a command in a container with this process's standard streams, as `docker exec
        -i` (with `-t` too when `interactive`); returns its exit status."""
        exec_id = self._exec_create(container, argv, stdin=True, tty=interactive)
        stream = self._exec_start(exec_id, tty=interactive, deadline=None)
        stdin = sys.stdin.fileno()
        saved = termios.tcgetattr(stdin) if interactive else None
        resize = None
        try:
            if interactive:
                tty.setraw(stdin)
                resize = signal.signal(signal.SIGWINCH, lambda *_: self._resize(exec_id))
                self._resize(exec_id)
            _pump(stream, stdin, interactive)
        finally:
            stream.close()
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
                signal.signal(signal.SIGWINCH, resize or signal.SIG_DFL)
        return self._exit_code(exec_id)

    def _resize(self, exec_id: str) -> None:
        size = os.get_terminal_size(sys.stdout.fileno())
        try:
            self._call("resize", self.api.exec_resize, exec_id, height=size.lines, width=size.columns)
        except EngineError:
            pass  # the command may have ended meanwhile

    def _exec_create(self, container: str, argv: list[str], stdin: bool, tty: bool) -> str:
        created = self._call(f"exec in {container}", self.api.exec_create, container, argv, stdin=stdin, tty=tty)
        return created["Id"]

    def _exit_code(self, exec_id: str) -> int:
        # The stream ends when the process has; the engine records its status a moment later.
        for _ in range(100):
            state = self._call("exec inspect", self.api.exec_inspect, exec_id)
            if not state.get("Running"):
                return state.get("ExitCode") or 0
            time.sleep(0.02)
        raise EngineError(f"exec {exec_id[:12]}: still running after its output ended")

    def _exec_start(self, exec_id: str, tty: bool, deadline: float | None) -> socket.socket:
        """Start an exec and return the hijacked connection, read past the HTTP response."""
        body = json.dumps({"Detach": False, "Tty": tty}).encode()
        status, conn = self._request("POST", f"/exec/{exec_id}/start", body,
                                     {"Connection": "Upgrade", "Upgrade": "tcp"}, self.timeout)
        if " 101 " not in status and " 200 " not in status:
            conn.close()
            raise EngineError(f"exec {exec_id[:12]}: the engine answered {status!r}")
        conn.settimeout(None if deadline is None else max(0.001, deadline - time.monotonic()))
        return conn

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str], timeout: float
                 ) -> tuple[str, socket.socket]:
        """One HTTP request written by hand on a new connection; returns the status line and the
        connection, read exactly to the end of the response head. For the two calls where that
        matters: an exec's stream starts right after the head (no byte of it may sit in an HTTP
        library's read buffer, and every read needs a deadline), and the ping wants a short one."""
        head = [f"{method} /v{API_VERSION}{path} HTTP/1.1", "Host: docker", "Content-Type: application/json",
                *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {len(body)}", "", ""]
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(timeout)
            conn.connect(self.path)
            conn.sendall("\r\n".join(head).encode() + body)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = conn.recv(1)  # byte by byte: what follows the head belongs to the caller
                if not chunk:
                    raise EngineError(f"{method} {path}: the engine closed the connection")
                answer += chunk
        except OSError as exc:
            conn.close()
            raise EngineUnreachable(f"{method} {path}: no Docker engine at {self.path} ({exc})") from None
        except EngineError:
            conn.close()
            raise
        return answer.split(b"\r\n", 1)[0].decode(errors="replace"), conn


class EventStream:
    """The engine's event stream as an iterator that another thread may close. A stream that
    falls silent longer than the call timeout is asked again from the last event seen."""

    def __init__(self, engine: Engine, filters: dict):
        self.engine, self.filters = engine, filters
        self.since = time.time()
        self.closed = False
        self._current = None

    def __iter__(self) -> Iterator[dict]:
        while not self.closed:
            self._current = self.engine._call("events", self.engine.api.events, since=self.since,
                                              filters=self.filters, decode=True)
            try:
                for event in self._current:
                    self.since = event.get("time", self.since)
                    yield event
            except Exception:  # a quiet stream timed out, or close() cut it
                pass

    def close(self) -> None:
        self.closed = True
        if self._current is not None:
            self._current.close()


class _Demux:
    """Splits a non-TTY exec stream into (stream, data) frames: an 8-byte header (stream, three
    zero bytes, big-endian length), then the data."""

    def __init__(self):
        self.pending = b""

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        self.pending += chunk
        while len(self.pending) >= 8:
            kind, length = struct.unpack(">BxxxL", self.pending[:8])
            if len(self.pending) < 8 + length:
                return
            yield kind, self.pending[8:8 + length]
            self.pending = self.pending[8 + length:]


def _frames(conn: socket.socket, deadline: float) -> Iterator[tuple[int, bytes]]:
    demux = _Demux()
    while True:
        conn.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = conn.recv(65536)
        if not chunk:
            return
        yield from demux.feed(chunk)


def _pump(conn: socket.socket, stdin: int, tty: bool) -> None:
    """Copy stdin to the exec and its output to stdout/stderr until the command ends."""
    out = {_STDOUT: sys.stdout.buffer, _STDERR: sys.stderr.buffer}
    sources, demux = [conn, stdin], _Demux()
    while True:
        readable, _, _ = select.select(sources, [], [])
        if stdin in readable:
            data = os.read(stdin, 65536)
            if data:
                conn.sendall(data)
            else:
                conn.shutdown(socket.SHUT_WR)
                sources.remove(stdin)
        if conn in readable:
            chunk = conn.recv(65536)
            if not chunk:
                return
            for kind, data in ([(_STDOUT, chunk)] if tty else demux.feed(chunk)):
                stream = out.get(kind, out[_STDOUT])
                stream.write(data)
                stream.flush()


class Compose:
    """`docker compose` (Compose v2, the venv's `docker-compose` binary from PyPI when there is
    one), run as a child that dies with this process."""

    def __init__(self, command: list[str] | None = None):
        self._command = command

    @property
    def command(self) -> list[str]:
        if self._command is None:
            beside = Path(sys.executable).parent / "docker-compose"
            found = str(beside) if beside.exists() else shutil.which("docker-compose")
            self._command = [found] if found else [shutil.which("docker") or "docker", "compose"]
        return self._command

    def start(self, project: str, compose_file: Path | None, *args: str) -> subprocess.Popen:
        argv = [*self.command, "-p", project]
        if compose_file is not None:
            argv += ["-f", str(compose_file)]
        return subprocess.Popen([*argv, *args], text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

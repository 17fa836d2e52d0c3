"""The agent in every node: dials the control service over the management network, announces
its node and data-plane interfaces, and runs the bounded captures it is told to, streaming
the kernel's blocks of packets as they are (the collector reads and decodes them, once). While nothing is traced it only
holds an idle stream open, on grpc.aio: nothing in it wakes up until a message comes or goes
(grpcio's synchronous client polls its call every 0.1 s, which cost every idle node ~1.3 ms of
CPU a second).

It survives anything it raises: the failure is logged, it backs off (1 s, doubling up to
MAX_BACKOFF_S while failures follow each other), attaches again and reports the failure to the
hub (AgentError), which keeps the node's last error for ListNodes, `hoplab status` and the
completeness of the traces it touched.

    python3 -m hoplab.control.agent      (started by `hoplab.node start`)
"""

from __future__ import annotations

import asyncio
import json
import queue
import sys
import threading
import time
import traceback

import grpc

from hoplab import bounded
from hoplab.control import conntrack, sockets
from hoplab.control.capture import Block, CaptureError, CaptureStats, run_capture
from hoplab.node import ACCESS_LOG, NodeContext
from hoplab.v1 import control_pb2 as pb
from hoplab.v1 import control_pb2_grpc as rpc

RETRY_S = 1.0  # between attempts to attach while the control service is not there
MAX_BACKOFF_S = 30.0  # after failures that follow each other
STABLE_S = 60.0  # an attachment that lasted this long resets the backoff
MAX_ERROR_CHARS = 2000
COMMAND_TIMEOUT_S = 10  # `ip -j addr show`


def interfaces(names: list[str]) -> list[pb.Interface]:
    links = json.loads(bounded.run(["ip", "-j", "addr", "show"], capture_output=True, text=True,
                                   timeout=COMMAND_TIMEOUT_S).stdout or "[]")
    found = []
    for link in links:
        if link["ifname"] in names:
            v4 = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"]
            found.append(pb.Interface(name=link["ifname"], address=v4[0] if v4 else "", mac=link.get("address", "")))
    return found


def batch(capture_id: str, blocks: list[Block]) -> pb.AgentMessage:
    """What the agent ships for some blocks of a capture: one message, each block as the kernel
    wrote it (no work per packet: building a message per frame cost the agent ~8 us a frame,
    and reading each frame out of its block ~3 us more). The collector makes them Records
    (`server.records_of`)."""
    interfaces: dict[str, int] = {}
    where = [interfaces.setdefault(block.iface, len(interfaces)) for block in blocks]
    return pb.AgentMessage(batch=pb.RecordBatch(
        capture_id=capture_id, interfaces=list(interfaces), blocks=[block.data for block in blocks],
        block_packets=[block.count for block in blocks], block_interface=where))


def socket_view() -> str:
    """This node's TCP sockets now (listeners, connections, counters) as JSON; "" when the
    kernel will not say (the trace then names no accepting process here)."""
    try:
        return json.dumps(sockets.snapshot())
    except OSError:
        return ""


MAX_LOG_BYTES = 4 << 20  # of one capture's access log, at most


def access_log_since(path, offset: int) -> list[pb.LogLine]:
    """The service's access log lines written since `offset` (see hoplab.node.ACCESS_LOG)."""
    if not path.exists():
        return []
    with open(path, "rb") as handle:
        handle.seek(offset if offset <= path.stat().st_size else 0)
        chunk = handle.read(MAX_LOG_BYTES)
    lines = []
    for raw in chunk.splitlines():
        try:
            entry = json.loads(raw)
            lines.append(pb.LogLine(src=str(entry["src"]), dst=str(entry["dst"]),
                                    traceparent=str(entry.get("traceparent", "")), text=str(entry.get("text", ""))))
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: skip it
    return lines


class Agent:
    def __init__(self, node: NodeContext):
        self.node = node
        self.data_ifaces = [i["network"] for i in node.interfaces]
        management = node.lab["management"]
        self.target = f"{management['control']}:{management['port']}"
        self.outbox: queue.Queue = queue.Queue()
        self.captures: dict[str, threading.Event] = {}
        self.restarts = 0  # failures started over from
        self.pending_error: pb.AgentError | None = None  # told to the hub at the next attachment
        self.stream_error: BaseException | None = None  # raised while producing the request stream
        self.loop: asyncio.AbstractEventLoop | None = None  # grpc.aio's, one for every attachment

    def hello(self) -> pb.AgentMessage:
        return pb.AgentMessage(hello=pb.Hello(node=self.node.name, service=self.node.config["service"],
                                              interfaces=interfaces(self.data_ifaces)))

    def messages(self, hello: pb.AgentMessage, outbox: queue.Queue):
        """The request stream. gRPC consumes it on a thread of its own, where an exception would
        only cancel the call: it is kept for run_forever to report."""
        try:
            yield hello
            if self.pending_error is not None:
                error, self.pending_error = self.pending_error, None
                yield pb.AgentMessage(error=error)
            while True:
                message = outbox.get()
                if message is None:
                    return
                yield message
        except Exception as exc:
            self.stream_error = exc
            raise

    def start(self, command: pb.StartCommand) -> None:
        stop = threading.Event()
        self.captures[command.capture_id] = stop

        def emit(blocks: list[Block]) -> None:
            self.outbox.put(batch(command.capture_id, blocks))

        log = self.node.run_dir / ACCESS_LOG
        log_start = log.stat().st_size if log.exists() else 0

        def work() -> None:
            error, total, stats = "", 0, CaptureStats()
            try:
                armed = pb.AgentMessage(armed=pb.CaptureArmed(capture_id=command.capture_id))
                total = run_capture(self.data_ifaces, command.filter, command.max_seconds, command.max_packets,
                                    stop, emit, on_armed=lambda: self.outbox.put(armed), stats=stats,
                                    arrivals_only=frozenset(command.arrivals_only))
            except Exception as exc:  # whatever it is, the hub must hear that this node's capture failed
                error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (CaptureError, OSError)) else str(exc)
            self.captures.pop(command.capture_id, None)
            nat = conntrack.translations() if self.node.config.get("nat") else []
            self.outbox.put(pb.AgentMessage(ended=pb.CaptureEnded(
                capture_id=command.capture_id, records=total, error=error, translations=nat,
                logs=access_log_since(log, log_start), kernel_drops=stats.kernel_drops,
                hit_packet_bound=stats.hit_bound, sockets=socket_view())))

        threading.Thread(target=work, name=f"capture-{command.capture_id}", daemon=True).start()

    def attach(self, hello: pb.AgentMessage, outbox: queue.Queue):
        """The hub's commands for one attachment (a stream; tests put a fake here), on grpc.aio,
        its event loop run from here while a command is awaited. The request stream is
        `messages`, each message taken on an executor thread that blocks on the outbox (no
        timeout, so no wake-up) until a capture puts one there."""
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        loop, requests = self.loop, self.messages(hello, outbox)

        async def request_stream():
            while (message := await loop.run_in_executor(None, next, requests, None)) is not None:
                yield message

        async def open_call():
            channel = grpc.aio.insecure_channel(self.target)
            return channel, rpc.AgentHubStub(channel).Attach(request_stream())

        channel, call = loop.run_until_complete(open_call())
        try:
            while True:
                try:
                    command = loop.run_until_complete(call.read())
                except asyncio.CancelledError:  # grpc.aio cancels the call when the request stream raised
                    raise grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                               "the request stream ended the call") from None
                if command is grpc.aio.EOF:
                    return
                yield command
        finally:
            loop.run_until_complete(channel.close())

    def serve_once(self) -> None:
        self.stream_error = None
        hello = self.hello()  # here, not in the stream: a failure is raised where it is caught
        for command in self.attach(hello, self.outbox):
            if command.HasField("start"):
                self.start(command.start)
            elif command.HasField("stop"):
                stop = self.captures.get(command.stop.capture_id)
                if stop:
                    stop.set()

    def failed(self, what: str, detail: str = "") -> None:
        """Log a failure of the agent itself (with `detail`, a traceback) and keep it for the hub."""
        self.restarts += 1
        self.node.log(f"agent: {what} (starting over, #{self.restarts})" + (f"\n{detail}" if detail else ""))
        self.pending_error = pb.AgentError(message=what[-MAX_ERROR_CHARS:], ts_ns=time.time_ns(),
                                           restarts=self.restarts)

    def run_once(self) -> bool:
        """One attachment, whatever it raises; True when it ended in a failure of the agent's own
        (an unreachable or restarted control service is none)."""
        try:
            self.serve_once()
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if self.stream_error is not None:
                exc = self.stream_error
                self.failed(f"{type(exc).__name__}: {exc}")
                return True
            if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                self.failed(f"RPC {getattr(code, 'name', code)}: {exc.details() if hasattr(exc, 'details') else exc}")
                return True
            return False
        except Exception as exc:  # noqa: BLE001 -- whatever it was, the agent starts over
            self.failed(f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=-3).rstrip())
            return True
        finally:
            for stop in list(self.captures.values()):
                stop.set()
            self.outbox.put(None)  # ends the old stream's request iterator
            self.outbox = queue.Queue()
        return False

    def run_forever(self, sleep=time.sleep, clock=time.monotonic, rounds: int | None = None) -> None:
        """Attach, and again after whatever ends the attachment; `rounds` bounds it (tests)."""
        failures = 0
        while rounds is None or rounds > 0:
            started = clock()
            if self.run_once():
                failures = 1 if clock() - started >= STABLE_S else failures + 1
                sleep(min(RETRY_S * 2 ** (failures - 1), MAX_BACKOFF_S))
            else:
                failures = 0
                sleep(RETRY_S)
            if rounds is not None:
                rounds -= 1


def main() -> None:
    while True:  # even a node context that cannot be read yet is tried again
        try:
            Agent(NodeContext.from_environment()).run_forever()
        except Exception as exc:  # noqa: BLE001
            print(f"hoplab agent: {type(exc).__name__}: {exc} (starting over in {MAX_BACKOFF_S:g} s)",
                  file=sys.stderr, flush=True)
            time.sleep(MAX_BACKOFF_S)


if __name__ == "__main__":
    main()

"""The agent in every node: dials the control service over the management network, announces
its node and data-plane interfaces, and runs the bounded captures it is told to, streaming
the frames raw in batches (the collector decodes them, once). While nothing is traced it only
holds an idle stream open.

    python3 -m hoplab.control.agent      (started by `hoplab.node start`)
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

import grpc

from hoplab.control import conntrack, sockets
from hoplab.control.capture import CaptureError, CaptureStats, Frame, run_capture
from hoplab.node import ACCESS_LOG, NodeContext
from hoplab.v1 import control_pb2 as pb
from hoplab.v1 import control_pb2_grpc as rpc

RETRY_S = 1.0


def interfaces(names: list[str]) -> list[pb.Interface]:
    links = json.loads(subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True).stdout or "[]")
    found = []
    for link in links:
        if link["ifname"] in names:
            v4 = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"]
            found.append(pb.Interface(name=link["ifname"], address=v4[0] if v4 else "", mac=link.get("address", "")))
    return found


def raw_record(frame: Frame) -> pb.Record:
    """A frame as the agent ships it: where and when it was seen, its bytes (at most the snap
    length) and its length on the wire. Node and capture are the stream's and the batch's; the
    collector reads everything else (addresses, summary, correlation keys) from the frame."""
    return pb.Record(iface=frame.iface, direction=frame.direction, ts_ns=frame.ts_ns, frame=frame.data,
                     length=frame.length)


def batch(capture_id: str, frames: list[Frame]) -> pb.AgentMessage:
    """What the agent ships for some frames of a capture: one message."""
    return pb.AgentMessage(batch=pb.RecordBatch(capture_id=capture_id, records=[raw_record(f) for f in frames]))


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

    def messages(self):
        yield pb.AgentMessage(hello=pb.Hello(node=self.node.name, service=self.node.config["service"],
                                             interfaces=interfaces(self.data_ifaces)))
        while True:
            message = self.outbox.get()
            if message is None:
                return
            yield message

    def start(self, command: pb.StartCommand) -> None:
        stop = threading.Event()
        self.captures[command.capture_id] = stop

        def emit(frames: list[Frame]) -> None:
            self.outbox.put(batch(command.capture_id, frames))

        log = self.node.run_dir / ACCESS_LOG
        log_start = log.stat().st_size if log.exists() else 0

        def work() -> None:
            error, total, stats = "", 0, CaptureStats()
            try:
                armed = pb.AgentMessage(armed=pb.CaptureArmed(capture_id=command.capture_id))
                total = run_capture(self.data_ifaces, command.filter, command.max_seconds, command.max_packets,
                                    stop, emit, on_armed=lambda: self.outbox.put(armed), stats=stats)
            except Exception as exc:  # whatever it is, the hub must hear that this node's capture failed
                error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (CaptureError, OSError)) else str(exc)
            self.captures.pop(command.capture_id, None)
            nat = conntrack.translations() if self.node.config.get("nat") else []
            self.outbox.put(pb.AgentMessage(ended=pb.CaptureEnded(
                capture_id=command.capture_id, records=total, error=error, translations=nat,
                logs=access_log_since(log, log_start), kernel_drops=stats.kernel_drops,
                hit_packet_bound=stats.hit_bound, sockets=socket_view())))

        threading.Thread(target=work, name=f"capture-{command.capture_id}", daemon=True).start()

    def serve_once(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = rpc.AgentHubStub(channel)
            for command in stub.Attach(self.messages()):
                if command.HasField("start"):
                    self.start(command.start)
                elif command.HasField("stop"):
                    stop = self.captures.get(command.stop.capture_id)
                    if stop:
                        stop.set()

    def run_forever(self) -> None:
        while True:
            try:
                self.serve_once()
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    self.node.log(f"agent: {exc}")
            for stop in self.captures.values():
                stop.set()
            self.outbox.put(None)  # ends the old stream's request iterator
            self.outbox = queue.Queue()
            time.sleep(RETRY_S)


def main() -> None:
    Agent(NodeContext.from_environment()).run_forever()


if __name__ == "__main__":
    main()

"""The control service: agents attach to it (AgentHub), users ask it to capture and for
assembled traces (Control). Also serves grpc.health.v1 and server reflection, so grpcurl
works against it.

    python3 -m hoplab.control.server [--listen 0.0.0.0:50051]
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import subprocess
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hoplab.control.capture import MAX_PACKETS, MAX_SECONDS
from hoplab.trace.assemble import assemble
from hoplab.trace.tls import KeyLog, KeyLogError
from hoplab.v1 import control_pb2 as pb
from hoplab.v1 import control_pb2_grpc as rpc

MAX_FILTER_CHARS = 1000
MAX_RECORDS_PER_CAPTURE = 200_000
KEPT_CAPTURES = 64
ARM_TIMEOUT_S = 10
GRACE_S = 5  # after its deadline, how long a capture waits for agents to report their end
TRACE_ID = re.compile(r"[0-9a-f]{32}")  # fullmatch: "$" would let a final newline through


@dataclass
class AgentSession:
    node: str
    service: str
    interfaces: list
    commands: queue.Queue = field(default_factory=queue.Queue)


@dataclass
class CaptureState:
    id: str
    nodes: list[str]
    filter: str
    trace_id: str
    url: str
    max_seconds: int
    started_ns: int
    stopped_ns: int = 0
    state: str = "running"
    records: list = field(default_factory=list)
    dropped: int = 0
    status: int = 0  # the visit's HTTP status, as its client reported it
    waiting: set = field(default_factory=set)  # nodes whose agent has not reported the end yet
    services: dict = field(default_factory=dict)  # node -> service, as attached at the start
    unarmed: set = field(default_factory=set)  # nodes whose sockets are not open yet
    translations: list = field(default_factory=list)  # NAT routers' conntrack entries
    logs: dict = field(default_factory=dict)  # node -> its service's access log lines
    gaps: dict = field(default_factory=dict)  # node -> why its part of the capture is incomplete
    sockets: dict = field(default_factory=dict)  # node -> its socket snapshot at the end (JSON text)
    drops: list = field(default_factory=list)  # the host kernel tracer's, as the caller reported them
    accepts: list = field(default_factory=list)  # the host kernel tracer's accepted connections, likewise
    kernel_view: str = "not reported"  # "" when the caller's kernel tracer ran
    key_log: KeyLog = field(default_factory=KeyLog)  # the TLS session keys the visit's client logged

    def gap(self, node: str, reason: str) -> None:
        self.gaps[node] = f"{self.gaps[node]}; {reason}" if node in self.gaps else reason

    def gap_list(self) -> list[pb.Gap]:
        gaps = dict(self.gaps)
        if self.dropped:
            gaps["control"] = (f"the collector kept {MAX_RECORDS_PER_CAPTURE} records of this capture and dropped "
                               f"{self.dropped} more")
        return [pb.Gap(node=node, reason=reason) for node, reason in sorted(gaps.items())]

    def message(self) -> pb.Capture:
        return pb.Capture(id=self.id, nodes=self.nodes, filter=self.filter, state=self.state,
                          started_ns=self.started_ns, stopped_ns=self.stopped_ns, records=len(self.records),
                          trace_id=self.trace_id)


def check_filter(expression: str) -> str | None:
    """Compile the filter here first, so a bad one is refused before any agent sees it."""
    result = subprocess.run(["tcpdump", "-i", "lo", "-ddd", expression], capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["invalid"])[-1]


class Hub:
    """The state both services share: attached agents and captures."""

    def __init__(self):
        self.lock = threading.Condition()
        self.agents: dict[str, AgentSession] = {}
        self.captures: dict[str, CaptureState] = {}

    def attach(self, session: AgentSession) -> None:
        with self.lock:
            old = self.agents.get(session.node)
            if old:
                old.commands.put(None)
            self.agents[session.node] = session

    def detach(self, session: AgentSession) -> None:
        with self.lock:
            if self.agents.get(session.node) is session:
                del self.agents[session.node]
            for capture in self.captures.values():
                if capture.state == "running" and session.node in capture.waiting:
                    capture.gap(session.node, "its agent went away during the capture")
                capture.waiting.discard(session.node)
                capture.unarmed.discard(session.node)
                self._maybe_finish(capture)
            self.lock.notify_all()

    def add_records(self, records) -> None:
        with self.lock:
            for record in records:
                capture = self.captures.get(record.capture_id)
                if capture is None:
                    continue
                if len(capture.records) < MAX_RECORDS_PER_CAPTURE:
                    capture.records.append(record)
                else:
                    capture.dropped += 1
            self.lock.notify_all()

    def armed(self, node: str, capture_id: str) -> None:
        with self.lock:
            capture = self.captures.get(capture_id)
            if capture:
                capture.unarmed.discard(node)
            self.lock.notify_all()

    def ended(self, node: str, capture_id: str, translations=(), logs=(), error: str = "",
              kernel_drops: int = 0, hit_bound: bool = False, sockets: str = "") -> None:
        with self.lock:
            capture = self.captures.get(capture_id)
            if capture:
                if error:
                    capture.gap(node, f"its capture failed: {error}")
                if kernel_drops:
                    capture.gap(node, f"the kernel dropped {kernel_drops} packet(s) before its agent read them")
                if hit_bound:
                    capture.gap(node, "its capture stopped at its packet bound")
                capture.translations.extend(translations)
                capture.logs[node] = list(logs)
                if sockets:
                    capture.sockets[node] = sockets
                capture.waiting.discard(node)
                capture.unarmed.discard(node)  # one that failed to start never arms
                self._maybe_finish(capture)
            self.lock.notify_all()

    @staticmethod
    def _give_up_waiting(capture: CaptureState) -> None:
        for node in capture.waiting:
            capture.gap(node, "its agent never reported the end of its capture (its last records may be missing)")
        capture.waiting.clear()

    def _maybe_finish(self, capture: CaptureState, state: str = "stopped") -> None:
        if capture.state == "running" and not capture.waiting:
            capture.state = state
            capture.stopped_ns = time.time_ns()

    def expire(self) -> None:
        """Captures past their deadline (plus grace) end even if an agent never reports."""
        with self.lock:
            now = time.time_ns()
            for capture in self.captures.values():
                if capture.state == "running" and now > capture.started_ns + (capture.max_seconds + GRACE_S) * 10**9:
                    self._give_up_waiting(capture)
                    self._maybe_finish(capture, "expired")
            self.lock.notify_all()


class AgentHubService(rpc.AgentHubServicer):
    def __init__(self, hub: Hub):
        self.hub = hub

    def Attach(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or not first.HasField("hello") or not first.hello.node:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an agent's first message must be a Hello naming its node")
        session = AgentSession(first.hello.node, first.hello.service, list(first.hello.interfaces))
        self.hub.attach(session)

        def receive():
            try:
                for message in request_iterator:
                    if message.HasField("batch"):
                        self.hub.add_records(message.batch.records)
                    elif message.HasField("armed"):
                        self.hub.armed(session.node, message.armed.capture_id)
                    elif message.HasField("ended"):
                        ended = message.ended
                        self.hub.ended(session.node, ended.capture_id, ended.translations, ended.logs, ended.error,
                                       ended.kernel_drops, ended.hit_packet_bound, ended.sockets)
            except grpc.RpcError:
                pass
            finally:
                session.commands.put(None)

        threading.Thread(target=receive, daemon=True, name=f"agent-{session.node}").start()
        try:
            while context.is_active():
                try:
                    command = session.commands.get(timeout=1)
                except queue.Empty:
                    continue
                if command is None:
                    return
                yield command
        finally:
            self.hub.detach(session)


class ControlService(rpc.ControlServicer):
    def __init__(self, hub: Hub):
        self.hub = hub

    def ListNodes(self, request, context):
        with self.hub.lock:
            nodes = [pb.Node(name=a.node, service=a.service, interfaces=a.interfaces)
                     for a in sorted(self.hub.agents.values(), key=lambda a: a.node)]
        return pb.ListNodesResponse(nodes=nodes)

    def StartCapture(self, request, context):
        def invalid(message):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

        expression = request.filter.strip()
        if not expression:
            invalid("filter: empty; give a pcap filter expression, e.g. 'ip or arp'")
        if len(expression) > MAX_FILTER_CHARS:
            invalid(f"filter: longer than {MAX_FILTER_CHARS} characters")
        if not 1 <= request.max_seconds <= MAX_SECONDS:
            invalid(f"max_seconds: {request.max_seconds} is outside 1..{MAX_SECONDS}")
        if not 1 <= request.max_packets <= MAX_PACKETS:
            invalid(f"max_packets: {request.max_packets} is outside 1..{MAX_PACKETS}")
        if request.trace_id and not TRACE_ID.fullmatch(request.trace_id):
            invalid("trace_id: must be 32 lowercase hex digits (W3C trace-id)")
        problem = check_filter(expression)
        if problem:
            invalid(f"filter: {problem}")
        with self.hub.lock:
            nodes = list(request.nodes) or sorted(self.hub.agents)
            missing = [n for n in nodes if n not in self.hub.agents]
            if missing:
                context.abort(grpc.StatusCode.NOT_FOUND, f"nodes: no agent attached for {', '.join(missing)}")
            if not nodes:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no agent is attached yet")
            capture = CaptureState(uuid.uuid4().hex[:12], nodes, expression, request.trace_id, request.url,
                                   request.max_seconds, time.time_ns(), waiting=set(nodes),
                                   services={n: self.hub.agents[n].service for n in nodes}, unarmed=set(nodes))
            self.hub.captures[capture.id] = capture
            for old in list(self.hub.captures)[:-KEPT_CAPTURES]:
                del self.hub.captures[old]
            command = pb.AgentCommand(start=pb.StartCommand(capture_id=capture.id, filter=expression,
                                                            max_seconds=request.max_seconds,
                                                            max_packets=request.max_packets))
            for node in nodes:
                self.hub.agents[node].commands.put(command)
            deadline = time.monotonic() + ARM_TIMEOUT_S
            while capture.unarmed and capture.state == "running" and time.monotonic() < deadline:
                self.hub.lock.wait(0.1)
            if capture.unarmed == set(nodes):
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              f"nodes {', '.join(sorted(capture.unarmed))} did not start capturing in {ARM_TIMEOUT_S} s")
            # The others capture: the trace goes ahead and says what it misses.
            for node in capture.unarmed:
                capture.gap(node, f"it did not start capturing within {ARM_TIMEOUT_S} s")
            return capture.message()

    def _capture(self, capture_id: str, context) -> CaptureState:
        capture = self.hub.captures.get(capture_id)
        if capture is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"capture {capture_id!r} is unknown")
        return capture

    def StopCapture(self, request, context):
        key_log = self._key_log(request.tls_keylog, context)
        with self.hub.lock:
            capture = self._capture(request.id, context)
            capture.key_log = capture.key_log.merged(key_log)
            capture.status = request.status or capture.status
            capture.drops.extend(request.drops)
            capture.accepts.extend(request.accepts)
            capture.kernel_view = request.kernel_view
            for node in capture.waiting:
                agent = self.hub.agents.get(node)
                if agent:
                    agent.commands.put(pb.AgentCommand(stop=pb.StopCommand(capture_id=capture.id)))
        # Wait (bounded) for the agents to flush and report their end.
        deadline = time.monotonic() + GRACE_S
        with self.hub.lock:
            while capture.state == "running" and time.monotonic() < deadline:
                self.hub.lock.wait(0.2)
            if capture.state == "running":
                self.hub._give_up_waiting(capture)
                self.hub._maybe_finish(capture)
            return capture.message()

    @staticmethod
    def _key_log(text: str, context) -> KeyLog:
        try:
            return KeyLog.parse(text, source="tls_keylog")
        except KeyLogError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def StreamRecords(self, request, context):
        capture = self._capture(request.capture_id, context)
        sent = 0
        while context.is_active():
            with self.hub.lock:
                batch = capture.records[sent:]
                done = capture.state != "running"
                if not batch and not done:
                    self.hub.lock.wait(0.5)
                    continue
            for record in batch:
                yield record
            sent += len(batch)
            if done and sent >= len(capture.records):
                return

    def _trace_capture(self, trace_id: str, context) -> CaptureState:
        if not TRACE_ID.fullmatch(trace_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "trace_id: must be 32 lowercase hex digits")
        with self.hub.lock:
            found = [c for c in self.hub.captures.values() if c.trace_id == trace_id]
        if not found:
            context.abort(grpc.StatusCode.NOT_FOUND, f"trace {trace_id} is unknown (or no longer kept)")
        return found[-1]

    def GetTrace(self, request, context):
        capture = self._trace_capture(request.trace_id, context)
        more_keys = self._key_log(request.tls_keylog, context)
        with self.hub.lock:
            records, translations, logs = list(capture.records), list(capture.translations), dict(capture.logs)
            gaps, views, drops = capture.gap_list(), dict(capture.sockets), list(capture.drops)
            key_log = capture.key_log.merged(more_keys)
            accepts = list(capture.accepts)
        clients = {node for node, service in capture.services.items() if service == "client"}
        trace = assemble(capture.trace_id, capture.url, capture.id, records, clients, translations, logs,
                         {node: json.loads(view) for node, view in views.items()}, drops, accepts, key_log)
        trace.kernel_view = capture.kernel_view
        trace.status = capture.status or trace.status
        trace.gaps.extend(gaps)
        return trace

    def ListTraces(self, request, context):
        with self.hub.lock:
            captures = [c for c in self.hub.captures.values() if c.trace_id]
            summaries = [pb.TraceSummary(trace_id=c.trace_id, url=c.url, status=c.status, started_ns=c.started_ns,
                                         hops=len(c.records)) for c in captures]
        return pb.ListTracesResponse(traces=summaries)


def serve(listen: str) -> grpc.Server:
    hub = Hub()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    rpc.add_ControlServicer_to_server(ControlService(hub), server)
    rpc.add_AgentHubServicer_to_server(AgentHubService(hub), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", "hoplab.v1.Control", "hoplab.v1.AgentHub"):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([
        pb.DESCRIPTOR.services_by_name["Control"].full_name,
        pb.DESCRIPTOR.services_by_name["AgentHub"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ], server)
    server.add_insecure_port(listen)
    server.start()

    def expire_forever():
        while True:
            time.sleep(1)
            hub.expire()

    threading.Thread(target=expire_forever, daemon=True, name="expire").start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="0.0.0.0:50051")
    args = parser.parse_args()
    serve(args.listen).wait_for_termination()


if __name__ == "__main__":
    main()

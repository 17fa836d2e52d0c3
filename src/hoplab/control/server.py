"""The control service: agents attach to it (AgentHub), the host asks it to capture and for
assembled traces (Control). Two doors on one state (`Hub`): agents attach on `--listen`; the
Control API, with grpc.health.v1 and server reflection (so grpcurl works, given the token), is
served on `--api-listen` to the host only (`HostOnly`: the lab's token, from the host's address).

    python3 -m hoplab.control.server --listen 0.0.0.0:50051 --api-listen 0.0.0.0:50052 \
        --token-file /etc/hoplab/control.token --host 172.31.254.254
"""

from __future__ import annotations

import argparse
import hmac
import json
import queue
import re
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hoplab import bounded
from hoplab.control.capture import (COMPILE_TIMEOUT_S, MAX_PACKETS, MAX_SECONDS, PACKET_BROADCAST,
                                    PACKET_HOST, PACKET_MULTICAST, packets)
from hoplab.trace.assemble import assemble, assemble_request, complete
from hoplab.trace.credentials import Masker
from hoplab.trace.tls import KeyLog, KeyLogError
from hoplab.v1 import control_pb2 as pb
from hoplab.v1 import control_pb2_grpc as rpc

MAX_FILTER_CHARS = 1000
MAX_RECORDS_PER_CAPTURE = 200_000
# A frame one node sent to all (ARP, DHCP) arrives at every neighbour within microseconds: its
# arrivals that close together are one departure.
SAME_FRAME_NS = 1_000_000
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
    binds: list = field(default_factory=list)  # and the bind() calls it saw refused
    departures: Departures | None = None  # the nodes whose frames are taken where they arrive
    kernel_view: str = "not reported"  # "" when the caller's kernel tracer ran
    key_log: KeyLog = field(default_factory=KeyLog)  # the TLS session keys the visit's client logged
    decoded: int = 0  # records[:decoded] have what their frames say (agents ship them raw)
    # (node, RecordBatch) as agents shipped them: read into `records` when a reader needs them,
    # so taking a batch in costs the collector nothing per packet
    shipped: list = field(default_factory=list)
    shipped_packets: int = 0
    decode_lock: threading.Lock = field(default_factory=threading.Lock)

    def gap(self, node: str, reason: str) -> None:
        self.gaps[node] = f"{self.gaps[node]}; {reason}" if node in self.gaps else reason

    def gap_list(self) -> list[pb.Gap]:
        gaps = dict(self.gaps)
        if self.dropped:
            gaps["control"] = (f"the collector kept {MAX_RECORDS_PER_CAPTURE} records of this capture and dropped "
                               f"{self.dropped} more")
        return [pb.Gap(node=node, reason=reason) for node, reason in sorted(gaps.items())]

    @property
    def count(self) -> int:
        """Records kept: those read and those still in shipped blocks."""
        return len(self.records) + self.shipped_packets

    def read_shipped(self) -> None:
        """The shipped blocks' packets as Records (the hub's lock held); a batch that does not
        hold what it says is a gap of its node."""
        for node, batch in self.shipped:
            try:
                self.records.extend(records_of(batch, node, self.departures))
            except ValueError as exc:  # an agent's bug: the capture says it lost frames
                self.gap(node, f"a batch of its frames was refused: {exc}")
        self.shipped.clear()
        self.shipped_packets = 0

    def message(self) -> pb.Capture:
        return pb.Capture(id=self.id, nodes=self.nodes, filter=self.filter, state=self.state,
                          started_ns=self.started_ns, stopped_ns=self.stopped_ns, records=self.count,
                          trace_id=self.trace_id)


def check_filter(expression: str) -> str | None:
    """Compile the filter here first, so a bad one is refused before any agent sees it."""
    try:
        result = bounded.run(["tcpdump", "-i", "lo", "-ddd", expression], capture_output=True, text=True,
                             timeout=COMPILE_TIMEOUT_S)
    except bounded.Timeout as exc:
        return str(exc)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["invalid"])[-1]


def records_of(batch: pb.RecordBatch, node: str, departures: Departures | None = None) -> list[pb.Record]:
    """The Records of an agent's batch of ring blocks, raw (iface, direction, ts_ns, frame,
    length) and named after `node` (its stream's) and the batch's capture. ValueError for a
    batch whose blocks do not hold what it says. With `departures`, each arrival from a node
    that took arrivals only there comes after its departure from that node."""
    interfaces, capture_id = list(batch.interfaces), batch.capture_id
    counts = (len(batch.blocks), len(batch.block_packets), len(batch.block_interface))
    if len(set(counts)) != 1 or any(where >= len(interfaces) for where in batch.block_interface):
        raise ValueError(f"RecordBatch from {node}: {counts} blocks/packet counts/interfaces "
                         f"for {len(interfaces)} interface names")
    records = []
    for data, count, where in zip(batch.blocks, batch.block_packets, batch.block_interface):
        iface = interfaces[where]
        for p in packets(data, count):
            sender = departures.sender_of(iface, p) if departures and p.direction == "in" else None
            if sender:
                records.append(pb.Record(capture_id=capture_id, node=sender, iface=iface, direction="out",
                                         ts_ns=p.ts_ns - 1, frame=p.frame, length=p.length))
            records.append(pb.Record(capture_id=capture_id, node=node, iface=iface, direction=p.direction,
                                     ts_ns=p.ts_ns, frame=p.frame, length=p.length))
    return records


def arrivals_plan(interfaces: dict[str, list], members: dict[str, set[str]],
                  nodes: list[str]) -> dict[str, list[str]]:
    """Node -> the networks on which it need capture only what arrives: those where every other
    node the hub has known there (`members`) captures too, so that whatever it sends there is
    taken where it arrives. `interfaces`: each capturing node's, as its agent said."""
    capturing = set(nodes)

    def covered(node: str, network: str) -> bool:
        peers = members.get(network, set()) - {node}
        return bool(peers) and peers <= capturing

    return {node: [i.name for i in interfaces[node] if covered(node, i.name)] for node in nodes}


class Departures:
    """What the collector makes of arrivals when their senders took arrivals only: each one's
    departure, the same bytes, at the sender, 1 ns before the arrival (a veth hands a frame to
    its peer in the same softirq, a bridge within microseconds)."""

    _TO_A_NEIGHBOUR = (PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST)

    def __init__(self, senders: dict[tuple[str, str], str]):
        """`senders`: (network, MAC "aa:bb:..") -> the node that took arrivals only there."""
        self.senders = {(network, bytes.fromhex(mac.replace(":", ""))): node
                        for (network, mac), node in senders.items()}
        self.broadcasts: dict[tuple, int] = {}  # (node, network, frame) -> its last departure's ns

    @classmethod
    def of(cls, plan: dict[str, list[str]], interfaces: dict[str, list]) -> Departures:
        """For an `arrivals_plan` and each planned node's interfaces, as its agent said."""
        return cls({(i.name, i.mac.lower()): node for node, networks in plan.items()
                    for i in interfaces[node] if i.name in networks})

    def sender_of(self, network: str, arrival) -> str | None:
        """The node whose departure `arrival` (a Packet taken on `network`) is, found by its
        source MAC. A frame to all is one departure however many neighbours took it; a frame a
        neighbour took that was for another MAC (PACKET_OTHERHOST, a bridge's flood) is none."""
        sender = self.senders.get((network, arrival.frame[6:12]))
        if sender is None or arrival.pkttype not in self._TO_A_NEIGHBOUR:
            return None
        if arrival.frame[0] & 1:  # to all, or to a group
            key = (sender, network, arrival.frame)
            last = self.broadcasts.get(key)
            self.broadcasts[key] = arrival.ts_ns
            if last is not None and abs(arrival.ts_ns - last) < SAME_FRAME_NS:
                return None
        return sender


class Hub:
    """The state both services share: attached agents and captures."""

    def __init__(self):
        self.lock = threading.Condition()
        self.agents: dict[str, AgentSession] = {}
        # network -> every node an agent has attached for there, kept after it detaches: a ring
        # takes arrivals only where all of them capture (`arrivals_plan`)
        self.members: dict[str, set[str]] = {}
        self.captures: dict[str, CaptureState] = {}
        self.agent_errors: dict[str, pb.AgentError] = {}  # node -> its agent's last failure, kept across attachments

    def agent_error(self, node: str, error: pb.AgentError) -> None:
        """An agent failed, started over and says so: kept for ListNodes, and a gap in every
        capture of that node that was running when it happened."""
        with self.lock:
            self.agent_errors[node] = error
            for capture in self.captures.values():
                if node in capture.nodes and capture.started_ns <= error.ts_ns <= (capture.stopped_ns or time.time_ns()):
                    capture.gap(node, f"its agent failed during the capture and started over: {error.message}")
            self.lock.notify_all()

    def attach(self, session: AgentSession) -> None:
        with self.lock:
            old = self.agents.get(session.node)
            if old:
                old.commands.put(None)
            self.agents[session.node] = session
            for interface in session.interfaces:
                self.members.setdefault(interface.name, set()).add(session.node)

    def detach(self, session: AgentSession) -> None:
        with self.lock:
            if self.agents.get(session.node) is session:
                del self.agents[session.node]
            for capture in self.captures.values():
                if capture.state == "running" and session.node in capture.waiting:
                    capture.gap(session.node, "its agent went away during the capture: what it received after, "
                                              "and what its neighbours sent it, is not in the trace")
                capture.waiting.discard(session.node)
                capture.unarmed.discard(session.node)
                self._maybe_finish(capture)
            self.lock.notify_all()

    def add_batch(self, batch: pb.RecordBatch, node: str) -> None:
        """An agent's batch, kept as shipped (read into Records when a reader needs them), up to
        the capture's bound: the blocks past it are counted as dropped."""
        with self.lock:
            capture = self.captures.get(batch.capture_id)
            if capture is None:
                return
            room, kept, blocks = MAX_RECORDS_PER_CAPTURE - capture.count, 0, 0
            for count in batch.block_packets:
                if kept + count > room:
                    break
                kept, blocks = kept + count, blocks + 1
            capture.dropped += sum(batch.block_packets) - kept
            if blocks < len(batch.blocks):
                batch = pb.RecordBatch(capture_id=batch.capture_id, interfaces=batch.interfaces,
                                       blocks=batch.blocks[:blocks], block_packets=batch.block_packets[:blocks],
                                       block_interface=batch.block_interface[:blocks])
            if blocks:
                capture.shipped.append((node, batch))
                capture.shipped_packets += kept
            self.lock.notify_all()

    def decode(self, capture: CaptureState) -> None:
        """Every record of the capture that came raw gets what its frame says, once, in arrival
        order (a second reader finds them done)."""
        with capture.decode_lock:
            with self.lock:
                capture.read_shipped()
                fresh = capture.records[capture.decoded:]
            for record in fresh:
                complete(record)
            capture.decoded += len(fresh)

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
                        self.hub.add_batch(message.batch, session.node)
                    elif message.HasField("armed"):
                        self.hub.armed(session.node, message.armed.capture_id)
                    elif message.HasField("error"):
                        self.hub.agent_error(session.node, message.error)
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
            errors = self.hub.agent_errors
            nodes = [pb.Node(name=a.node, service=a.service, interfaces=a.interfaces,
                             last_error=errors[a.node].message if a.node in errors else "",
                             last_error_ns=errors[a.node].ts_ns if a.node in errors else 0,
                             restarts=errors[a.node].restarts if a.node in errors else 0)
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
            interfaces = {n: self.hub.agents[n].interfaces for n in nodes}
            plan = arrivals_plan(interfaces, self.hub.members, nodes)
            capture = CaptureState(uuid.uuid4().hex[:12], nodes, expression, request.trace_id, request.url,
                                   request.max_seconds, time.time_ns(), waiting=set(nodes),
                                   services={n: self.hub.agents[n].service for n in nodes}, unarmed=set(nodes),
                                   departures=Departures.of(plan, interfaces))
            self.hub.captures[capture.id] = capture
            for old in list(self.hub.captures)[:-KEPT_CAPTURES]:
                del self.hub.captures[old]
            for node in nodes:
                self.hub.agents[node].commands.put(pb.AgentCommand(start=pb.StartCommand(
                    capture_id=capture.id, filter=expression, max_seconds=request.max_seconds,
                    max_packets=request.max_packets, arrivals_only=plan[node])))
            deadline = time.monotonic() + ARM_TIMEOUT_S
            while capture.unarmed and capture.state == "running" and time.monotonic() < deadline:
                self.hub.lock.wait(0.1)
            if capture.unarmed == set(nodes):
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              f"nodes {', '.join(sorted(capture.unarmed))} did not start capturing in {ARM_TIMEOUT_S} s")
            # The others capture: the trace goes ahead and says what it misses.
            for node in capture.unarmed:
                capture.gap(node, f"it did not start capturing within {ARM_TIMEOUT_S} s: neither what it received "
                                  "nor what its neighbours sent it is in the trace")
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
            capture.binds.extend(request.binds)
            capture.kernel_view = request.kernel_view
            for node in capture.waiting:
                agent = self.hub.agents.get(node)
                if agent:
                    agent.commands.put(pb.AgentCommand(stop=pb.StopCommand(capture_id=capture.id)))
        # Wait (bounded) for the agents to flush and report their end.
        # A node that never started is not waited for: its gap says so, and a silent agent
        # would cost every stop the whole GRACE_S.
        deadline = time.monotonic() + GRACE_S
        with self.hub.lock:
            while capture.state == "running" and capture.waiting - capture.unarmed and time.monotonic() < deadline:
                self.hub.lock.wait(0.2)
            if capture.state == "running":
                capture.waiting -= capture.unarmed
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
        """Records as they arrive; their frames' credentials masked (and the record marked so)
        unless the caller asks for `raw`."""
        capture = self._capture(request.capture_id, context)
        masker = None if request.raw else Masker()
        sent = 0
        while context.is_active():
            with self.hub.lock:
                capture.read_shipped()
                batch = capture.records[sent:]
                done = capture.state != "running"
                if not batch and not done:
                    self.hub.lock.wait(0.5)
                    continue
            self.hub.decode(capture)
            for record in batch:
                if masker is not None:
                    original = record.frame
                    frame = masker.frame(original, (record.node, record.iface))
                    if frame != original:  # a copy: the capture keeps what was captured
                        record = _copy(record)
                        record.frame, record.masked = frame, True
                yield record
            sent += len(batch)
            if done and sent >= capture.count:
                return

    def _trace_capture(self, trace_id: str, context) -> CaptureState:
        if not TRACE_ID.fullmatch(trace_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "trace_id: must be 32 lowercase hex digits")
        with self.hub.lock:
            found = [c for c in self.hub.captures.values() if c.trace_id == trace_id]
        if not found:
            context.abort(grpc.StatusCode.NOT_FOUND, f"trace {trace_id} is unknown (or no longer kept)")
        return found[-1]

    def _sample_capture(self, request, context) -> CaptureState:
        """The capture a load run's sampled request was seen in (GetTraceRequest.capture_id)."""
        if not TRACE_ID.fullmatch(request.trace_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "trace_id: must be 32 lowercase hex digits")
        if not 0 < request.start_ns <= request.end_ns:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"start_ns, end_ns: {request.start_ns}..{request.end_ns} is not a request's time span")
        with self.hub.lock:
            return self._capture(request.capture_id, context)

    def GetTrace(self, request, context):
        sampled = bool(request.capture_id)
        capture = self._sample_capture(request, context) if sampled else self._trace_capture(request.trace_id, context)
        more_keys = self._key_log(request.tls_keylog, context)
        with self.hub.lock:
            capture.read_shipped()
            records, translations, logs = list(capture.records), list(capture.translations), dict(capture.logs)
            gaps, views, drops = capture.gap_list(), dict(capture.sockets), list(capture.drops)
            key_log = capture.key_log.merged(more_keys)
            accepts, binds = list(capture.accepts), list(capture.binds)
        self.hub.decode(capture)  # all of `records`, and any that came since
        clients = {node for node, service in capture.services.items() if service == "client"}
        views = {node: json.loads(view) for node, view in views.items()}
        if sampled:
            trace = assemble_request(request.trace_id, "", capture.id, records, (request.start_ns, request.end_ns),
                                     clients, translations, logs, views, key_log)
        else:
            trace = assemble(capture.trace_id, capture.url, capture.id, records, clients, translations, logs,
                             views, drops, accepts, key_log, binds)
            trace.status = capture.status or trace.status
        trace.kernel_view = capture.kernel_view
        trace.gaps.extend(gaps)
        if request.raw:
            trace.raw = True
        else:  # in time order: a challenge comes before its answer
            masker = Masker()
            for hop in trace.hops:
                original = hop.record.frame
                frame = masker.frame(original, (hop.record.node, hop.record.iface))
                if frame != original:
                    hop.record.frame, hop.record.masked = frame, True
            trace.masked_frames = masker.masked
        return trace

    def ListTraces(self, request, context):
        with self.hub.lock:
            captures = [c for c in self.hub.captures.values() if c.trace_id]
            summaries = [pb.TraceSummary(trace_id=c.trace_id, url=c.url, status=c.status, started_ns=c.started_ns,
                                         hops=c.count) for c in captures]
        return pb.ListTracesResponse(traces=summaries)


# ------------------------------------------------------------ two doors

OPEN_METHODS = ("/grpc.health.v1.Health/",)  # answered to anyone on either door


def _copy(record: pb.Record) -> pb.Record:
    copy = pb.Record()
    copy.CopyFrom(record)
    return copy


class HostOnly(grpc.ServerInterceptor):
    """The Control API's door: every call but health must carry the lab's token (metadata
    `authorization: Bearer TOKEN`; UNAUTHENTICATED otherwise) and come from the host's own
    address on the management network (PERMISSION_DENIED otherwise). The token is read from its
    file at each call, so a missing or unreadable file refuses everything."""

    def __init__(self, token_file: str, host: str):
        self.token_file, self.host = token_file, host

    def _token(self) -> str:
        try:
            with open(self.token_file) as handle:
                return handle.read().strip()
        except OSError:
            return ""

    def _refusal(self, metadata) -> tuple[grpc.StatusCode, str] | None:
        token = self._token()
        given = dict(metadata or ()).get("authorization", "")
        if not token:
            return grpc.StatusCode.UNAUTHENTICATED, "the control service has no token: the Control API is closed"
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return grpc.StatusCode.UNAUTHENTICATED, "the Control API is for the lab's host: no valid token"
        return None

    def _peer_refusal(self, context) -> tuple[grpc.StatusCode, str] | None:
        peer = context.peer()  # "ipv4:A.B.C.D:PORT"
        if self.host and peer.rpartition(":")[0] != f"ipv4:{self.host}":
            return grpc.StatusCode.PERMISSION_DENIED, f"the Control API answers the host ({self.host}) only"
        return None

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_METHODS):
            return handler
        refusal = self._refusal(handler_call_details.invocation_metadata)
        return _guarded(handler, lambda context: refusal or self._peer_refusal(context))


def _guarded(handler, refusal):
    """The same handler, first asking `refusal(context)`: a (code, details) aborts the call."""
    def check(context):
        reason = refusal(context)
        if reason:
            context.abort(*reason)

    def unary_unary(request, context):
        check(context)
        return handler.unary_unary(request, context)

    def unary_stream(request, context):
        check(context)
        yield from handler.unary_stream(request, context)

    def stream_unary(requests, context):
        check(context)
        return handler.stream_unary(requests, context)

    def stream_stream(requests, context):
        check(context)
        yield from handler.stream_stream(requests, context)

    kinds = {(False, False): (grpc.unary_unary_rpc_method_handler, unary_unary),
             (False, True): (grpc.unary_stream_rpc_method_handler, unary_stream),
             (True, False): (grpc.stream_unary_rpc_method_handler, stream_unary),
             (True, True): (grpc.stream_stream_rpc_method_handler, stream_stream)}
    make, behaviour = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(behaviour, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


def _health(server: grpc.Server, services: tuple[str, ...]) -> None:
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *services):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


def serve(listen: str, api_listen: str, token_file: str, host: str = "",
          hub: Hub | None = None) -> tuple[grpc.Server, grpc.Server]:
    """Two servers on one Hub (a new one unless given). `listen`: the agents' door (AgentHub and
    health, for every node of the management network). `api_listen`: the Control API (Control,
    health, and reflection -- reflection behind the token too), for the host only (`HostOnly`)."""
    hub = hub if hub is not None else Hub()
    agents = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    rpc.add_AgentHubServicer_to_server(AgentHubService(hub), agents)
    _health(agents, ("hoplab.v1.AgentHub",))
    agents.add_insecure_port(listen)
    api = grpc.server(futures.ThreadPoolExecutor(max_workers=32), interceptors=[HostOnly(token_file, host)])
    rpc.add_ControlServicer_to_server(ControlService(hub), api)
    _health(api, ("hoplab.v1.Control",))
    reflection.enable_server_reflection([
        pb.DESCRIPTOR.services_by_name["Control"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ], api)
    api.add_insecure_port(api_listen)
    agents.start()
    api.start()

    def expire_forever():
        while True:
            time.sleep(1)
            hub.expire()

    threading.Thread(target=expire_forever, daemon=True, name="expire").start()
    return agents, api


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="0.0.0.0:50051", help="the agents' door")
    parser.add_argument("--api-listen", default="0.0.0.0:50052", help="the Control API's door (host only)")
    parser.add_argument("--token-file", default="/etc/hoplab/control.token")
    parser.add_argument("--host", default="", help="the host's management address: the only caller of Control")
    args = parser.parse_args()
    agents, api = serve(args.listen, args.api_listen, args.token_file, args.host)
    agents.wait_for_termination()


if __name__ == "__main__":
    main()

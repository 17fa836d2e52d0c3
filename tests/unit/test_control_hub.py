"""The collector's state without a gRPC server: `Hub` (attached agents, captures, their records,
limits and drops) built directly, and the servicers' methods called with a fake context whose
`abort` raises, as gRPC's does. Agents are threads that answer the hub's commands the way the
real agent does (arm on start, report the end on stop). No tcpdump: the filter compiler is
replaced, so nothing here opens a socket or runs a program."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from hoplab.control import server
from hoplab.control.agent import batch
from hoplab.control.capture import MAX_PACKETS, MAX_SECONDS, Packet, pack, packets
from hoplab.control.server import (GRACE_S, MAX_FILTER_CHARS, AgentHubService, AgentSession, CaptureState,
                                   ControlService, Departures, Hub, records_of)
from hoplab.trace.assemble import complete
from hoplab.trace.decode import decode
from hoplab.v1 import control_pb2 as pb

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class FakeContext:
    def __init__(self):
        self.active = True

    def abort(self, code, details):
        raise Aborted(code, details)

    def is_active(self) -> bool:
        return self.active


class FakeAgent:
    """An attached node that answers commands in a thread: arms on start (unless told not
    to), reports its end on stop (unless told not to)."""

    def __init__(self, hub: Hub, node: str, service: str = "web", arms: bool = True, ends: bool = True,
                 translations=(), logs=(), interfaces=None):
        self.hub, self.node = hub, node
        self.arms, self.ends, self.translations, self.logs = arms, ends, translations, logs
        self.session = AgentSession(node, service, interfaces or [pb.Interface(name="origin", address="172.31.50.11/24")])
        self.received: list[pb.AgentCommand] = []
        hub.attach(self.session)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            command = self.session.commands.get()
            if command is None:
                return
            self.received.append(command)
            if command.HasField("start") and self.arms:
                self.hub.armed(self.node, command.start.capture_id)
            if command.HasField("stop") and self.ends:
                self.hub.ended(self.node, command.stop.capture_id, self.translations, self.logs)

    def close(self):
        self.session.commands.put(None)
        self.thread.join(2)


@pytest.fixture
def hub():
    return Hub()


@pytest.fixture
def control(hub, monkeypatch):
    calls = []

    def check_filter(expression):
        calls.append(expression)
        return "syntax error in filter expression" if "bogus" in expression else None

    monkeypatch.setattr(server, "check_filter", check_filter)
    service = ControlService(hub)
    service.filter_checks = calls
    return service


@pytest.fixture
def agents(hub):
    made = []

    def attach(node, **kwargs):
        agent = FakeAgent(hub, node, **kwargs)
        made.append(agent)
        return agent

    yield attach
    for agent in made:
        agent.close()


def start_request(**fields) -> pb.StartCaptureRequest:
    values = {"filter": "ip or arp", "max_seconds": 10, "max_packets": 1000, **fields}
    return pb.StartCaptureRequest(**values)


def capture(id="c1", nodes=("web1",), trace_id="", started_ns=10**18, max_seconds=10, **kwargs) -> CaptureState:
    nodes = list(nodes)
    return CaptureState(id, nodes, "ip", trace_id, "https://www.example.test/", max_seconds, started_ns,
                        waiting=set(nodes), unarmed=set(nodes), **kwargs)


def record(capture_id="c1", node="web1", **fields) -> pb.Record:
    return pb.Record(capture_id=capture_id, node=node, **fields)


def aborted(call) -> Aborted:
    with pytest.raises(Aborted) as caught:
        result = call()
        if hasattr(result, "__next__"):  # a streaming method aborts on its first item
            next(result)
    return caught.value


# ------------------------------------------------------------ records: limits and drops


def read(c: CaptureState) -> list[pb.Record]:
    c.read_shipped()
    return c.records


def test_records_go_to_their_own_capture_and_unknown_captures_are_ignored(hub):
    hub.captures["c1"] = capture("c1")
    hub.captures["c2"] = capture("c2")
    for capture_id, stamps in (("c1", [1]), ("c2", [2]), ("gone", [9]), ("c1", [3])):
        hub.add_batch(shipped(capture_id, stamps), "web1")
    assert hub.captures["c1"].count == 2 and not hub.captures["c1"].records, "read before anyone asked"
    assert [r.ts_ns for r in read(hub.captures["c1"])] == [1, 3]
    assert [r.ts_ns for r in read(hub.captures["c2"])] == [2]
    assert hub.captures["c1"].dropped == hub.captures["c2"].dropped == 0
    assert set(hub.captures) == {"c1", "c2"}, "a record for an unknown capture created one"


def test_a_capture_keeps_at_most_its_limit_and_counts_the_rest_as_dropped(hub, monkeypatch):
    monkeypatch.setattr(server, "MAX_RECORDS_PER_CAPTURE", 3)
    hub.captures["c1"] = capture("c1")
    hub.captures["c2"] = capture("c2")
    hub.add_batch(shipped("c1", [0, 1, 2, 3]), "web1")
    hub.add_batch(shipped("c1", [4]), "web1")
    hub.add_batch(shipped("c2", [5]), "web1")
    full = hub.captures["c1"]
    assert full.message().records == 3
    assert [r.ts_ns for r in read(full)] == [0, 1, 2], "the first records are the ones kept"
    assert full.dropped == 2
    assert [r.ts_ns for r in read(hub.captures["c2"])] == [5] and hub.captures["c2"].dropped == 0


def test_one_nodes_full_capture_fits_under_the_per_capture_limit():
    assert server.MAX_RECORDS_PER_CAPTURE >= MAX_PACKETS


# ------------------------------------------------------------ agents and the end of a capture


def test_a_reattaching_node_replaces_its_old_session_and_ends_its_stream(hub):
    old = AgentSession("web1", "web", [])
    new = AgentSession("web1", "web", [])
    hub.attach(old)
    hub.attach(new)
    assert hub.agents["web1"] is new
    assert old.commands.get_nowait() is None, "the old stream was not told to end"
    assert new.commands.empty()
    hub.detach(old)  # the old stream's own cleanup must not remove the new session
    assert hub.agents["web1"] is new
    hub.detach(new)
    assert "web1" not in hub.agents


def test_arming_is_per_node_and_per_capture(hub):
    hub.captures["c1"] = capture("c1", nodes=("web1", "web2"))
    hub.armed("web1", "c1")
    hub.armed("web2", "unknown")
    assert hub.captures["c1"].unarmed == {"web2"}
    assert hub.captures["c1"].state == "running"


def test_a_capture_stops_when_its_last_node_reports_its_end(hub):
    hub.captures["c1"] = capture("c1", nodes=("router", "web1"))
    translation = pb.Translation(before=pb.Tuple(src="192.168.50.142:40000", dst="198.51.100.80:443", proto="tcp"),
                                 after=pb.Tuple(src="198.51.100.1:40000", dst="198.51.100.80:443", proto="tcp"))
    hub.ended("router", "c1", translations=[translation])
    c = hub.captures["c1"]
    assert c.state == "running" and c.waiting == {"web1"} and c.stopped_ns == 0
    hub.ended("web1", "c1", logs=[pb.LogLine(src="a:1", dst="b:2", traceparent=TRACE, text="GET /")])
    assert c.state == "stopped" and c.stopped_ns > 0 and c.waiting == set()
    assert list(c.translations) == [translation]
    assert [line.text for line in c.logs["web1"]] == ["GET /"] and c.logs["router"] == []
    hub.ended("web1", "unknown")  # an end for a capture nobody keeps is ignored
    assert set(hub.captures) == {"c1"}


def test_an_agent_that_fails_to_start_never_arms_but_its_end_counts(hub):
    hub.captures["c1"] = capture("c1", nodes=("web1", "web2"))
    hub.ended("web2", "c1")
    assert hub.captures["c1"].unarmed == {"web1"} and hub.captures["c1"].waiting == {"web1"}


def test_a_detached_agent_no_longer_holds_a_capture_open(hub):
    session = AgentSession("web1", "web", [])
    hub.attach(session)
    hub.captures["c1"] = capture("c1", nodes=("web1", "web2"))
    hub.captures["c2"] = capture("c2", nodes=("web1",))
    hub.detach(session)
    assert hub.captures["c1"].state == "running" and hub.captures["c1"].waiting == {"web2"}
    assert hub.captures["c1"].unarmed == {"web2"}
    assert hub.captures["c2"].state == "stopped"


def test_captures_past_their_deadline_and_grace_expire(hub, monkeypatch):
    now = 10**18
    monkeypatch.setattr(server, "time", SimpleNamespace(time_ns=lambda: now))
    second = 10**9
    hub.captures["late"] = capture("late", max_seconds=10, started_ns=now - (10 + GRACE_S) * second - 1)
    hub.captures["on-time"] = capture("on-time", max_seconds=10, started_ns=now - (10 + GRACE_S) * second)
    hub.captures["done"] = capture("done", max_seconds=10, started_ns=now - 3600 * second)
    hub.captures["done"].state = "stopped"
    hub.expire()
    assert hub.captures["late"].state == "expired" and hub.captures["late"].stopped_ns == now
    assert hub.captures["late"].waiting == set()
    assert hub.captures["on-time"].state == "running"
    assert hub.captures["done"].state == "stopped"
    # an agent reporting after the expiry changes nothing
    hub.ended("web1", "late")
    assert hub.captures["late"].state == "expired" and hub.captures["late"].stopped_ns == now


def test_capture_message_reports_the_state():
    c = capture("c9", nodes=("client", "router"), trace_id=TRACE, started_ns=5, records=[record("c9")] * 4)
    c.state, c.stopped_ns, c.dropped = "stopped", 9, 7
    message = c.message()
    assert (message.id, list(message.nodes), message.filter, message.state) == ("c9", ["client", "router"], "ip",
                                                                                  "stopped")
    assert (message.started_ns, message.stopped_ns, message.records, message.trace_id) == (5, 9, 4, TRACE)


# ------------------------------------------------------------ StartCapture: validation


@pytest.mark.parametrize("fields, prefix", [
    ({"filter": ""}, "filter: empty"),
    ({"filter": "   "}, "filter: empty"),
    ({"filter": "ip " * (MAX_FILTER_CHARS // 3 + 1)}, f"filter: longer than {MAX_FILTER_CHARS}"),
    ({"max_seconds": 0}, f"max_seconds: 0 is outside 1..{MAX_SECONDS}"),
    ({"max_seconds": MAX_SECONDS + 1}, f"max_seconds: {MAX_SECONDS + 1} is outside"),
    ({"max_packets": 0}, f"max_packets: 0 is outside 1..{MAX_PACKETS}"),
    ({"max_packets": MAX_PACKETS + 1}, f"max_packets: {MAX_PACKETS + 1} is outside"),
    ({"trace_id": TRACE.upper()}, "trace_id: must be 32 lowercase hex digits"),
    ({"trace_id": TRACE[:-1]}, "trace_id: "),
    ({"trace_id": TRACE + "0"}, "trace_id: "),
    ({"trace_id": "g" + TRACE[1:]}, "trace_id: "),
    ({"trace_id": "00-" + TRACE + "-00f067aa0ba902b7-01"}, "trace_id: "),  # a whole traceparent is not an id
])
def test_a_bad_capture_request_is_refused_before_the_filter_is_compiled(control, agents, fields, prefix):
    agents("web1")
    error = aborted(lambda: control.StartCapture(start_request(**fields), FakeContext()))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details.startswith(prefix), error.details
    assert control.filter_checks == [], "the filter compiler ran for a request already known to be bad"
    assert control.hub.captures == {}


def test_a_filter_the_compiler_refuses_is_refused_with_its_message(control, agents):
    agents("web1")
    error = aborted(lambda: control.StartCapture(start_request(filter="bogus and"), FakeContext()))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details == "filter: syntax error in filter expression"
    assert control.filter_checks == ["bogus and"] and control.hub.captures == {}


def test_bounds_are_inclusive(control, agents):
    a = agents("web1")
    longest = "ip" + " " * (MAX_FILTER_CHARS - 2)  # surrounding blanks are trimmed
    for fields in ({"max_seconds": 1, "max_packets": 1}, {"max_seconds": MAX_SECONDS, "max_packets": MAX_PACKETS},
                   {"filter": "x" * MAX_FILTER_CHARS}, {"filter": longest}):
        message = control.StartCapture(start_request(**fields), FakeContext())
        assert message.state == "running"
    assert [c.start.max_seconds for c in a.received[:2]] == [1, MAX_SECONDS]
    assert control.hub.captures[message.id].filter == "ip", "the filter is stored trimmed"


def test_capturing_on_a_node_without_an_agent_is_not_found(control, agents):
    agents("web1")
    error = aborted(lambda: control.StartCapture(start_request(nodes=["web1", "db", "mail"]), FakeContext()))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.details == "nodes: no agent attached for db, mail"
    assert control.hub.captures == {}


def test_capturing_with_no_agent_at_all_is_a_failed_precondition(control):
    error = aborted(lambda: control.StartCapture(start_request(), FakeContext()))
    assert (error.code, error.details) == (grpc.StatusCode.FAILED_PRECONDITION, "no agent is attached yet")


def test_a_trace_id_with_a_trailing_newline_is_refused(control, agents):
    agents("web1")
    try:
        control.StartCapture(start_request(trace_id=TRACE + "\n"), FakeContext())
    except Aborted as error:
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        return
    assert False, "a trace id with a trailing newline was accepted"


# ------------------------------------------------------------ StartCapture / StopCapture


def test_start_tells_every_agent_and_returns_once_all_have_armed(control, agents):
    web1, web2, client = agents("web1"), agents("web2"), agents("client", service="client")
    message = control.StartCapture(start_request(filter=" tcp port 443 ", max_seconds=30, max_packets=500,
                                                 trace_id=TRACE, url="https://www.example.test/"), FakeContext())
    assert message.state == "running" and list(message.nodes) == ["client", "web1", "web2"]  # every agent, sorted
    assert message.trace_id == TRACE and message.filter == "tcp port 443"
    c = control.hub.captures[message.id]
    assert c.unarmed == set() and c.waiting == {"client", "web1", "web2"}
    assert c.services == {"client": "client", "web1": "web", "web2": "web"}
    for agent in (web1, web2, client):
        (command,) = agent.received
        assert (command.start.capture_id, command.start.filter, command.start.max_seconds,
                command.start.max_packets) == (message.id, "tcp port 443", 30, 500)


def test_start_on_named_nodes_only_tells_those(control, agents):
    web1, web2 = agents("web1"), agents("web2")
    message = control.StartCapture(start_request(nodes=["web2"]), FakeContext())
    assert list(message.nodes) == ["web2"]
    assert web1.received == [] and len(web2.received) == 1


def test_a_node_that_never_arms_leaves_a_gap_and_the_others_capture(control, agents, monkeypatch):
    monkeypatch.setattr(server, "ARM_TIMEOUT_S", 0.2)
    agents("web1")
    agents("web2", arms=False)
    started = control.StartCapture(start_request(), FakeContext())
    gaps = {g.node: g.reason for g in control.hub.captures[started.id].gap_list()}
    assert gaps == {"web2": "it did not start capturing within 0.2 s: neither what it received "
                    "nor what its neighbours sent it is in the trace"}


def test_the_stop_does_not_wait_for_a_node_that_never_armed_but_still_tells_it_to_stop(control, agents, monkeypatch):
    monkeypatch.setattr(server, "ARM_TIMEOUT_S", 0.2)
    monkeypatch.setattr(server, "GRACE_S", 30)  # a wait for the silent one would show
    web1, web2 = agents("web1"), agents("web2", arms=False)
    started = control.StartCapture(start_request(), FakeContext())
    begun = time.monotonic()
    stopped = control.StopCapture(pb.StopCaptureRequest(id=started.id), FakeContext())
    assert stopped.state == "stopped" and time.monotonic() - begun < 5
    told = time.monotonic() + 5  # the fake agent takes its commands in a thread of its own
    while len(web2.received) < 2 and time.monotonic() < told:
        time.sleep(0.01)
    assert [c.WhichOneof("body") for c in web2.received] == ["start", "stop"]  # should it start late
    gaps = {g.node: g.reason for g in control.hub.captures[started.id].gap_list()}
    assert gaps == {"web2": "it did not start capturing within 0.2 s: neither what it received "
                    "nor what its neighbours sent it is in the trace"}


def test_no_node_arming_makes_the_start_unavailable(control, agents, monkeypatch):
    monkeypatch.setattr(server, "ARM_TIMEOUT_S", 0.2)
    agents("web2", arms=False)
    error = aborted(lambda: control.StartCapture(start_request(), FakeContext()))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.details.startswith("nodes web2 did not start capturing")


def test_what_an_agent_missed_is_a_gap_of_the_trace(control, agents, monkeypatch):
    monkeypatch.setattr(server, "GRACE_S", 0.2)
    agents("web1"), agents("web2"), agents("db", ends=False)
    started = control.StartCapture(start_request(trace_id=TRACE), FakeContext())
    control.hub.ended("web1", started.id, error="filter: syntax error")
    control.hub.ended("web2", started.id, kernel_drops=3, hit_bound=True)
    control.StopCapture(pb.StopCaptureRequest(id=started.id), FakeContext())  # db never reports
    gaps = {g.node: g.reason for g in control.GetTrace(pb.GetTraceRequest(trace_id=TRACE), FakeContext()).gaps}
    assert gaps["web1"] == "its capture failed: filter: syntax error"
    assert "dropped 3 packet(s)" in gaps["web2"] and "packet bound" in gaps["web2"]
    assert "never reported the end" in gaps["db"]


def test_a_trace_everyone_captured_whole_has_no_gap(control, agents):
    agents("web1")
    started = control.StartCapture(start_request(trace_id=TRACE), FakeContext())
    control.hub.ended("web1", started.id)
    control.StopCapture(pb.StopCaptureRequest(id=started.id), FakeContext())
    assert list(control.GetTrace(pb.GetTraceRequest(trace_id=TRACE), FakeContext()).gaps) == []


def test_the_kernels_drops_accepts_and_refused_binds_reach_the_assembly(control, agents, monkeypatch):
    given = {}
    monkeypatch.setattr(server, "assemble", lambda *args: given.setdefault("args", args) and pb.Trace())
    agents("web1")
    started = control.StartCapture(start_request(trace_id=TRACE), FakeContext())
    control.hub.ended("web1", started.id)
    drop = pb.KernelDrop(node="web1", reason="NO_SOCKET")
    accept = pb.KernelAccept(node="web1", pid=7, process="gunicorn", local="172.31.50.11:8080",
                             remote="172.31.50.10:40000")
    refused = pb.KernelBind(node="web1", pid=9, process="python3", address="0.0.0.0:8080", proto="tcp",
                            error="EADDRINUSE", words="address already in use")
    control.StopCapture(pb.StopCaptureRequest(id=started.id, drops=[drop], accepts=[accept], binds=[refused]),
                        FakeContext())
    control.GetTrace(pb.GetTraceRequest(trace_id=TRACE), FakeContext())
    *_, drops, accepts, key_log, binds = given["args"]
    assert (drops, accepts, binds) == ([drop], [accept], [refused]) and not key_log  # no keys were sent


def test_only_the_newest_captures_are_kept(control, agents, monkeypatch):
    monkeypatch.setattr(server, "KEPT_CAPTURES", 2)
    agents("web1")
    ids = [control.StartCapture(start_request(), FakeContext()).id for _ in range(3)]
    assert len(set(ids)) == 3
    assert list(control.hub.captures) == ids[1:]
    error = aborted(lambda: control.StopCapture(pb.StopCaptureRequest(id=ids[0]), FakeContext()))
    assert error.code == grpc.StatusCode.NOT_FOUND and ids[0] in error.details


def test_stop_asks_the_waiting_agents_and_returns_once_they_reported(control, agents):
    web1, web2 = agents("web1"), agents("web2")
    started = control.StartCapture(start_request(trace_id=TRACE), FakeContext())
    control.hub.ended("web2", started.id)  # web2 already finished by itself (its packet bound)
    stopped = control.StopCapture(pb.StopCaptureRequest(id=started.id, status=200), FakeContext())
    assert stopped.state == "stopped" and stopped.stopped_ns >= stopped.started_ns
    assert [c.WhichOneof("body") for c in web1.received] == ["start", "stop"]
    assert [c.WhichOneof("body") for c in web2.received] == ["start"], "a finished agent was asked to stop"
    assert control.hub.captures[started.id].status == 200


def test_stop_without_a_status_keeps_the_one_recorded(control, agents):
    agents("web1")
    started = control.StartCapture(start_request(), FakeContext())
    control.StopCapture(pb.StopCaptureRequest(id=started.id, status=503), FakeContext())
    control.StopCapture(pb.StopCaptureRequest(id=started.id), FakeContext())
    assert control.hub.captures[started.id].status == 503


def test_stop_gives_up_on_a_silent_agent_after_the_grace(control, agents, monkeypatch):
    monkeypatch.setattr(server, "GRACE_S", 0.2)
    agents("web1", ends=False)
    started = control.StartCapture(start_request(), FakeContext())
    stopped = control.StopCapture(pb.StopCaptureRequest(id=started.id), FakeContext())
    assert stopped.state == "stopped"
    assert control.hub.captures[started.id].waiting == set()


def test_list_nodes_is_sorted_with_interfaces(control, agents):
    agents("web2")
    agents("cache", service="cache")
    nodes = control.ListNodes(pb.ListNodesRequest(), FakeContext()).nodes
    assert [(n.name, n.service) for n in nodes] == [("cache", "cache"), ("web2", "web")]
    assert nodes[0].interfaces[0].name == "origin"


# ------------------------------------------------------------ StreamRecords


def test_stream_records_of_a_finished_capture_sends_each_once(control):
    c = capture("c1", records=[record(summary=str(i)) for i in range(5)])
    c.state = "stopped"
    control.hub.captures["c1"] = c
    sent = list(control.StreamRecords(pb.StreamRecordsRequest(capture_id="c1"), FakeContext()))
    assert [r.summary for r in sent] == ["0", "1", "2", "3", "4"]


def test_stream_records_follows_a_running_capture_until_it_ends(control):
    control.hub.captures["c1"] = capture("c1", records=[record(summary="first")])
    stream = control.StreamRecords(pb.StreamRecordsRequest(capture_id="c1"), FakeContext())
    assert next(stream).summary == "first"

    def agent():
        control.hub.add_batch(shipped("c1", [2, 3]), "web1")
        control.hub.ended("web1", "c1")

    threading.Timer(0.05, agent).start()
    assert [r.ts_ns for r in stream] == [2, 3]


def test_stream_records_of_an_unknown_capture_is_not_found(control):
    error = aborted(lambda: control.StreamRecords(pb.StreamRecordsRequest(capture_id="nope"), FakeContext()))
    assert error.code == grpc.StatusCode.NOT_FOUND and "'nope'" in error.details


# ------------------------------------------------------------ traces


def test_get_trace_validates_the_id_and_finds_only_kept_traces(control):
    control.hub.captures["c1"] = capture("c1", trace_id=TRACE)
    bad = aborted(lambda: control.GetTrace(pb.GetTraceRequest(trace_id="not-a-trace"), FakeContext()))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.details.startswith("trace_id: ")
    unknown = aborted(lambda: control.GetTrace(pb.GetTraceRequest(trace_id=OTHER_TRACE), FakeContext()))
    assert unknown.code == grpc.StatusCode.NOT_FOUND and OTHER_TRACE in unknown.details


def test_get_trace_assembles_the_newest_capture_of_that_trace(control):
    hub = control.hub
    older = capture("old", nodes=("client",), trace_id=TRACE, services={"client": "client"},
                    records=[record("old", "client", src="192.168.50.142:1", dst="198.51.100.80:443",
                                    tcp_flags="S", ts_ns=1)])
    newer = capture("new", nodes=("client", "web1"), trace_id=TRACE, services={"client": "client", "web1": "web"},
                    records=[record("new", "client", src="192.168.50.142:2", dst="198.51.100.80:443", tcp_flags="S",
                                    tcp_seq=100, ts_ns=2, summary="client syn"),
                             record("new", "web1", src="172.31.50.10:3", dst="172.31.50.11:8080", tcp_flags="PA",
                                    tcp_seq=200, payload_hash="aa", ts_ns=3, summary="traced",
                                    keys={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}),
                             record("new", "web1", src="172.31.50.10:4", dst="172.31.50.11:8080", tcp_flags="PA",
                                    tcp_seq=300, payload_hash="bb", ts_ns=4, summary="someone else")])
    newer.status = 201
    hub.captures.update({"old": older, "new": newer, "x": capture("x", trace_id=OTHER_TRACE)})
    trace = control.GetTrace(pb.GetTraceRequest(trace_id=TRACE), FakeContext())
    assert (trace.trace_id, trace.capture_id, trace.status, trace.url) == (TRACE, "new", 201,
                                                                            "https://www.example.test/")
    # the client's own packets and the ones carrying the trace id; not another visit's
    assert [h.record.summary for h in trace.hops] == ["client syn", "traced"]


def test_list_traces_lists_only_captures_made_for_a_trace(control):
    hub = control.hub
    hub.captures["plain"] = capture("plain")
    traced = capture("t", trace_id=TRACE, started_ns=7, records=[record("t")] * 3)
    traced.status = 200
    hub.captures["t"] = traced
    (summary,) = control.ListTraces(pb.ListTracesRequest(), FakeContext()).traces
    assert (summary.trace_id, summary.url, summary.status, summary.started_ns) == (
        TRACE, "https://www.example.test/", 200, 7)
    assert summary.hops == 3  # every record of the capture (the CLI prints it as "records")


# ------------------------------------------------------------ AgentHub.Attach, driven in process


def test_attach_needs_a_hello_naming_the_node(hub):
    service = AgentHubService(hub)
    for first in ([], [pb.AgentMessage(armed=pb.CaptureArmed(capture_id="c1"))],
                  [pb.AgentMessage(hello=pb.Hello(service="web"))]):
        error = aborted(lambda: service.Attach(iter(first), FakeContext()))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "Hello" in error.details
    assert hub.agents == {}


def test_attach_feeds_the_hub_and_detaches_when_the_agent_hangs_up(hub):
    hub.captures["c1"] = capture("c1", nodes=("web1",))
    messages = [pb.AgentMessage(hello=pb.Hello(node="web1", service="web")),
                pb.AgentMessage(armed=pb.CaptureArmed(capture_id="c1")),
                raw_batch("c1", visit_frames()[:2]),
                pb.AgentMessage(ended=pb.CaptureEnded(capture_id="c1", logs=[pb.LogLine(text="GET /order")]))]
    commands = list(AgentHubService(hub).Attach(iter(messages), FakeContext()))
    assert commands == []
    c = hub.captures["c1"]
    assert c.unarmed == set() and c.state == "stopped" and [r.node for r in read(c)] == ["web1", "web1"]
    assert [line.text for line in c.logs["web1"]] == ["GET /order"]
    assert hub.agents == {}, "the session outlived its stream"


def test_attach_forwards_the_hubs_commands_to_the_agent(hub):
    hang_up = threading.Event()

    def requests():
        yield pb.AgentMessage(hello=pb.Hello(node="web1", service="web"))
        hang_up.wait(2)

    stream = AgentHubService(hub).Attach(requests(), FakeContext())
    command = pb.AgentCommand(stop=pb.StopCommand(capture_id="c1"))

    def hub_side():
        for _ in range(200):
            if "web1" in hub.agents:
                hub.agents["web1"].commands.put(command)
                return
            threading.Event().wait(0.01)

    threading.Thread(target=hub_side, daemon=True).start()
    assert next(stream) == command
    assert hub.agents["web1"].service == "web"
    hang_up.set()
    assert list(stream) == []
    assert hub.agents == {}



# ------------------------------------------------------------ raw records: decoded once, at the collector


def visit_frames() -> list[bytes]:
    """The frames of a real traced visit (tests/data/captures), in file order."""
    from test_decoder_agreement import frames

    return frames(Path(__file__).parents[1] / "data" / "captures" / "visit-miss.pcapng")


def raw_batch(capture_id: str, frames: list[bytes]) -> pb.AgentMessage:
    """What an agent ships for these frames (one block): hoplab.control.agent.batch itself."""
    return batch(capture_id, [pack("home", [Packet(1000 + i, "out", f, len(f) + 7) for i, f in enumerate(frames)])])


def shipped(capture_id: str, stamps: list[int]) -> pb.RecordBatch:
    """A batch of one-packet blocks, the packets stamped `stamps` (real frames of a visit)."""
    frames = visit_frames()
    return batch(capture_id, [pack("home", [Packet(ts, "out", frames[i % len(frames)], 60)])
                              for i, ts in enumerate(stamps)]).batch


def test_an_agents_blocks_become_records_named_after_their_stream_and_batch(hub):
    hub.captures["c1"] = capture("c1", nodes=("client",))
    frames = visit_frames()[:3]
    blocks = [pack("home", [Packet(1000, "out", frames[0], len(frames[0]) + 7)]),
              pack("internet", [Packet(1001, "in", frames[1], len(frames[1]) + 7)]),
              pack("home", [Packet(1002, "in", frames[2], len(frames[2]) + 7)])]
    message = pb.AgentMessage.FromString(batch("c1", blocks).SerializeToString())
    assert list(message.batch.interfaces) == ["home", "internet"] and list(message.batch.block_interface) == [0, 1, 0]
    hub.add_batch(message.batch, "client")
    kept = read(hub.captures["c1"])
    assert [(r.node, r.capture_id, r.iface, r.direction, r.ts_ns, r.frame) for r in kept] == [
        ("client", "c1", "home", "out", 1000, frames[0]), ("client", "c1", "internet", "in", 1001, frames[1]),
        ("client", "c1", "home", "in", 1002, frames[2])]
    assert [r.length - len(r.frame) for r in kept] == [7, 7, 7], "the length on the wire is the agent's"
    assert all(not r.proto for r in kept), "not raw"
    hub.add_batch(raw_batch("gone", visit_frames()[:2]).batch, "client")
    assert len(kept) == 3 and set(hub.captures) == {"c1"}


def test_a_block_cut_after_some_packets_keeps_them_whole():
    frames = visit_frames()[:5]
    block = pack("home", [Packet(i, "in", f, len(f)) for i, f in enumerate(frames)])
    cut = block.first(2)
    assert cut.count == 2 and [p.frame for p in packets(cut.data, cut.count)] == frames[:2]


def test_a_batch_that_does_not_hold_what_it_says_is_a_gap_of_its_capture(hub):
    hub.captures["c1"] = capture("c1", nodes=("client",))
    message = raw_batch("c1", visit_frames()[:3])
    message.batch.block_packets[0] += 1
    with pytest.raises(ValueError, match=r"ends before its 4 packets"):
        records_of(message.batch, "client")
    message.batch.block_interface[0] = 5
    with pytest.raises(ValueError, match=r"RecordBatch from client: .* for 1 interface names"):
        records_of(message.batch, "client")
    hub.add_batch(message.batch, "client")
    assert read(hub.captures["c1"]) == []
    assert hub.captures["c1"].gaps["client"].startswith("a batch of its frames was refused: RecordBatch from client")


def test_a_batch_beyond_the_capture_limit_is_counted_as_dropped(hub, monkeypatch):
    monkeypatch.setattr(server, "MAX_RECORDS_PER_CAPTURE", 4)
    hub.captures["c1"] = capture("c1", nodes=("client",))
    for _ in range(2):
        hub.add_batch(shipped("c1", [1, 2, 3]), "client")
    assert (len(read(hub.captures["c1"])), hub.captures["c1"].dropped) == (4, 2)


def test_raw_records_are_decoded_once_when_first_read(control, monkeypatch):
    decoded = []
    monkeypatch.setattr(server, "complete", lambda r: (decoded.append(r.ts_ns), complete(r)))
    frames = visit_frames()
    c = capture("c1", nodes=("client",), trace_id=TRACE, services={"client": "client"})
    control.hub.captures["c1"] = c
    control.hub.add_batch(raw_batch("c1", frames).batch, "client")
    assert decoded == [] and not c.records, "read or decoded on arrival"
    c.state = "stopped"
    trace = control.GetTrace(pb.GetTraceRequest(trace_id=TRACE), FakeContext())
    assert len(decoded) == len(frames)
    wire = [decode(f) for f in frames]
    assert [h.record.summary for h in trace.hops] == [p.summary for p in wire]
    assert [h.record.proto for h in trace.hops] == [p.proto for p in wire]
    syn = next(h.record for h, p in zip(trace.hops, wire) if p.tcp_flags == "SYN")
    assert syn.src.count(".") == 3 and ":" in syn.src and syn.tcp_seq, "addresses and TCP fields filled in"
    assert [dict(h.record.keys) for h in trace.hops] == [p.keys for p in wire]
    assert any("dns_id" in p.keys for p in wire), "the visit has correlation keys to fill in"
    streamed = list(control.StreamRecords(pb.StreamRecordsRequest(capture_id="c1", raw=True), FakeContext()))
    control.GetTrace(pb.GetTraceRequest(trace_id=TRACE), FakeContext())
    assert len(decoded) == len(frames), "decoded again"
    assert [r.summary for r in streamed] == [p.summary for p in wire]


def test_records_decoded_by_their_agent_are_left_as_they_are(control):
    """A record that came with its protocol (an older agent's) is not decoded again."""
    frame = visit_frames()[0]
    c = capture("c1", records=[record(proto="arp", summary="as the agent said", frame=frame)])
    c.state = "stopped"
    control.hub.captures["c1"] = c
    [sent] = control.StreamRecords(pb.StreamRecordsRequest(capture_id="c1"), FakeContext())
    assert (sent.proto, sent.summary) == ("arp", "as the agent said")



def started_with(agent: FakeAgent, capture_id: str) -> list[str] | None:
    """The interfaces the agent was told to take arrivals only on, for that capture."""
    for command in agent.received:
        if command.HasField("start") and command.start.capture_id == capture_id:
            return list(command.start.arrivals_only)
    return None


def test_a_ring_takes_arrivals_only_on_networks_where_every_neighbour_captures(control, agents):
    webs = [agents("web1"), agents("web2")]
    lb = agents("lb")
    alone = agents("client", interfaces=[pb.Interface(name="home", mac="02:42:c0:a8:32:f8")])
    everyone = control.StartCapture(start_request(), FakeContext())
    webs_only = control.StartCapture(start_request(nodes=["web1", "web2"]), FakeContext())
    time.sleep(0.1)  # the fake agents take their commands in their threads
    assert {a.node: started_with(a, everyone.id) for a in (*webs, lb, alone)} == {
        "web1": ["origin"], "web2": ["origin"], "lb": ["origin"],
        "client": []}, "a node alone on its network: what it sends arrives where nobody captures"
    assert {a.node: started_with(a, webs_only.id) for a in webs} == {"web1": [], "web2": []}, \
        "lb does not capture: what the webs send it would be lost"
    lb.close()
    control.hub.detach(lb.session)
    later = control.StartCapture(start_request(), FakeContext())
    time.sleep(0.1)
    assert started_with(webs[0], later.id) == [], "lb left, and may come back: a departure to it is taken where it leaves"


ROUTER, EDGE, DNS = "02:42:c6:33:64:01", "02:42:c6:33:64:50", "02:42:c6:33:64:35"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def ethernet(dst: str, src: str, body: bytes = b"\x45" + bytes(40)) -> bytes:
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x08\x00" + body


def arrivals(capture_id: str, *taken: tuple[int, bytes, int]) -> pb.RecordBatch:
    """A batch of arrivals on `internet`: (ts, frame, pkttype) each."""
    return batch(capture_id, [pack("internet", [Packet(ts, "in", f, len(f), kind) for ts, f, kind in taken])]).batch


def test_an_arrival_from_a_node_taking_arrivals_only_there_is_its_departure_too():
    departures = Departures({("internet", ROUTER): "router"})
    to_edge, flooded, stranger = ethernet(EDGE, ROUTER), ethernet(DNS, ROUTER, b"\x45" + bytes(41)), ethernet(EDGE, DNS)
    records = records_of(arrivals("c1", (1000, to_edge, 0), (2000, flooded, 3), (3000, stranger, 0)), "cache",
                         departures)
    assert [(r.node, r.direction, r.ts_ns, r.frame) for r in records] == [
        ("router", "out", 999, to_edge), ("cache", "in", 1000, to_edge),
        ("cache", "in", 2000, flooded),  # a bridge's flood of a frame for dns: dns's arrival is its departure
        ("cache", "in", 3000, stranger)]  # dns takes its departures itself
    assert all(r.iface == "internet" and r.capture_id == "c1" and r.length == len(r.frame) for r in records)
    assert [r.direction for r in records_of(arrivals("c1", (1000, to_edge, 0)), "cache")] == ["in"], \
        "no departures to make: arrivals only"


def test_a_frame_to_all_is_one_departure_however_many_neighbours_took_it():
    departures = Departures({("internet", ROUTER): "router"})
    who_has = ethernet(BROADCAST, ROUTER)
    first = records_of(arrivals("c1", (5_000, who_has, 1)), "cache", departures)
    second = records_of(arrivals("c1", (4_800, who_has, 1)), "dns", departures)
    again = records_of(arrivals("c1", (1_000_005_000, who_has, 1)), "dns", departures)
    assert [(r.node, r.direction) for r in first + second + again] == [
        ("router", "out"), ("cache", "in"), ("dns", "in"), ("router", "out"), ("dns", "in")], \
        "a second who-has a second later is a departure of its own"

"""The capture agent survives whatever it raises: it logs, backs off, attaches again and reports
the failure to the hub (AgentError), which keeps the node's last error (ListNodes, `hoplab
status`) and marks the captures it touched as incomplete. The agent's stream is a fake here
(`Agent.attach` replaced): each round either raises or hands back what the agent sent."""

from __future__ import annotations

import queue
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from hoplab import cli, spec
from hoplab.backends.base import NodeStatus, ensure_control_token
from hoplab.control import agent as agent_module
from hoplab.control.agent import MAX_BACKOFF_S, RETRY_S, Agent
from hoplab.control import server
from hoplab.control.server import AgentHubService, AgentSession, ControlService, Hub
from hoplab.paths import TOPOLOGY_DIR
from hoplab.v1 import control_pb2 as pb


class FakeNode:
    name = "web1"
    interfaces = [{"network": "origin", "address": "172.31.50.11"}]
    lab = {"management": {"control": "172.31.254.2", "port": 50051}}
    config = {"service": "web"}
    run_dir = Path("/nonexistent")

    def __init__(self):
        self.logged: list[str] = []

    def log(self, message: str) -> None:
        self.logged.append(message)


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = ""):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class ScriptedAgent(Agent):
    """An agent whose attachments follow a script: each entry is an exception to raise while
    attached, or None (the hub ends the stream). What the agent sent on each is kept."""

    def __init__(self, script):
        super().__init__(FakeNode())
        self.script = list(script)
        self.sent: list[list[pb.AgentMessage]] = []

    def hello(self):
        return pb.AgentMessage(hello=pb.Hello(node="web1", service="web"))

    def attach(self, hello, outbox):
        stream = self.messages(hello, outbox)
        sent = [next(stream)]
        if self.pending_error is not None:
            sent.append(next(stream))
        self.sent.append(sent)
        step = self.script.pop(0)
        if callable(step):
            step(self)
        elif step is not None:
            raise step
        yield from ()


def run(agent: Agent, rounds: int) -> list[float]:
    slept = []
    agent.run_forever(sleep=slept.append, clock=lambda: 0.0, rounds=rounds)
    return slept


def test_any_exception_is_survived_logged_and_reported_at_the_next_attachment():
    agent = ScriptedAgent([ValueError("no such interface"), None])
    assert run(agent, 2) == [RETRY_S, RETRY_S]
    assert "agent: ValueError: no such interface (starting over, #1)" in agent.node.logged[0]
    assert "Traceback" in agent.node.logged[0]  # the log has the where; the hub gets the what
    first, second = agent.sent
    assert [m.WhichOneof("body") for m in first] == ["hello"]
    assert [m.WhichOneof("body") for m in second] == ["hello", "error"]
    error = second[1].error
    assert (error.message, error.restarts) == ("ValueError: no such interface", 1)
    assert abs(error.ts_ns - time.time_ns()) < 60 * 10**9
    assert agent.pending_error is None  # told once


def test_failures_in_a_row_back_off_doubling_up_to_the_cap_and_a_good_attachment_resets_it():
    failures = [RuntimeError(f"boom {i}") for i in range(7)]
    agent = ScriptedAgent([*failures, None, KeyError("x")])
    slept = run(agent, 9)
    assert slept == [1, 2, 4, 8, 16, MAX_BACKOFF_S, MAX_BACKOFF_S, RETRY_S, RETRY_S]
    assert agent.restarts == 8
    assert agent.pending_error.message == "KeyError: 'x'"


def test_a_control_service_that_is_not_there_is_no_failure_of_the_agent():
    agent = ScriptedAgent([RpcError(grpc.StatusCode.UNAVAILABLE, "connect failed"),
                           RpcError(grpc.StatusCode.CANCELLED), None])
    assert run(agent, 3) == [RETRY_S] * 3
    assert agent.restarts == 0 and agent.pending_error is None and agent.node.logged == []


def test_other_rpc_errors_are_failures():
    agent = ScriptedAgent([RpcError(grpc.StatusCode.INTERNAL, "stream reset"), None])
    run(agent, 2)
    assert agent.sent[1][1].error.message == "RPC INTERNAL: stream reset"


def test_an_exception_in_the_request_stream_is_reported_as_itself():
    # gRPC consumes the request stream on its own thread: an exception there only cancels the call.
    def stream_fails(agent):
        agent.stream_error = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        raise RpcError(grpc.StatusCode.CANCELLED, "Cancelled")

    agent = ScriptedAgent([stream_fails, None])
    run(agent, 2)
    assert agent.sent[1][1].error.message.startswith("UnicodeDecodeError: 'utf-8' codec can't decode")


def test_running_captures_are_stopped_when_the_agent_starts_over():
    stop = threading.Event()

    def failing_with_a_capture(agent):
        agent.captures["c1"] = stop
        raise OSError("network is down")

    agent = ScriptedAgent([failing_with_a_capture])
    run(agent, 1)
    assert stop.is_set()


def test_a_long_attachment_before_a_failure_resets_the_backoff(monkeypatch):
    agent = ScriptedAgent([RuntimeError("a"), RuntimeError("b"), RuntimeError("c")])
    times = iter([0.0, 0.0, 10.0, 10.0, 20.0, 20.0 + agent_module.STABLE_S])
    slept = []
    agent.run_forever(sleep=slept.append, clock=lambda: next(times), rounds=3)
    assert slept == [1, 2, 1]


def test_main_starts_over_even_when_the_agent_cannot_be_built(monkeypatch):
    built = []

    def from_environment():
        built.append(1)
        if len(built) == 1:
            raise KeyError("HOPLAB_NODE")
        raise SystemExit(0)  # the second round ends the test

    monkeypatch.setattr(agent_module.NodeContext, "from_environment", staticmethod(from_environment))
    monkeypatch.setattr(agent_module.time, "sleep", lambda s: None)
    with pytest.raises(SystemExit):
        agent_module.main()
    assert len(built) == 2


# ------------------------------------------------------------ the real stream (grpc.aio), on loopback

class LoopbackAgent(Agent):
    def __init__(self, port: int):
        super().__init__(FakeNode())
        self.target = f"127.0.0.1:{port}"

    def hello(self):
        return pb.AgentMessage(hello=pb.Hello(node="web1", service="web"))


class FailingQueue(queue.Queue):
    """An outbox whose next message cannot be had: the request stream raises."""

    def get(self, *args, **kwargs):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_agent_attaches_for_real_takes_commands_sends_messages_and_survives_its_stream_failing(tmp_path):
    token = tmp_path / "control.token"
    ensure_control_token(token)
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    hub = Hub()
    agents, api = server.serve(f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}", str(token), "127.0.0.1", hub)
    agent = LoopbackAgent(ports[0])
    try:
        stop = threading.Event()
        agent.captures["c1"] = stop
        ended: list[bool] = []
        thread = threading.Thread(target=lambda: ended.append(agent.run_once()), daemon=True)
        thread.start()
        assert wait_for(lambda: "web1" in hub.agents)
        hub.agents["web1"].commands.put(pb.AgentCommand(stop=pb.StopCommand(capture_id="c1")))
        assert stop.wait(5)  # the hub's command reached the agent
        agent.outbox.put(error("OSError: sent", 7))  # what a capture thread puts there reaches the hub
        assert wait_for(lambda: "web1" in hub.agent_errors)
        assert hub.agent_errors["web1"].message == "OSError: sent"
        hub.attach(AgentSession("web1", "web", []))  # a newer attachment of the node ends this one
        thread.join(5)
        assert ended == [False] and agent.restarts == 0

        agent.outbox = FailingQueue()
        assert agent.run_once() is True  # the stream raised: a failure of the agent's own, reported as itself
        assert agent.pending_error.message.startswith("UnicodeDecodeError: 'utf-8' codec can't decode")
    finally:
        agents.stop(0)
        api.stop(0)


# ------------------------------------------------------------ the hub's side

def error(message: str, ts_ns: int, restarts: int = 1) -> pb.AgentMessage:
    return pb.AgentMessage(error=pb.AgentError(message=message, ts_ns=ts_ns, restarts=restarts))


class FakeContext:
    def __init__(self):
        self.active = True

    def abort(self, code, details):
        raise AssertionError(f"{code}: {details}")

    def is_active(self):
        return self.active


def attach(hub: Hub, *messages: pb.AgentMessage):
    """An agent's attachment through the servicer, sending `messages` after its Hello; returns
    the function that ends it (once the hub has them all)."""
    done, context = threading.Event(), FakeContext()

    def requests():
        yield pb.AgentMessage(hello=pb.Hello(node="web1", service="web"))
        yield from messages
        done.set()
        time.sleep(5)  # an idle stream, as the real agent's, until the test ends it

    commands = AgentHubService(hub).Attach(requests(), context)
    thread = threading.Thread(target=lambda: list(commands), daemon=True)
    thread.start()
    assert done.wait(5)
    time.sleep(0.05)  # the receiving thread handles the last message

    def finish():
        context.active = False
        thread.join(5)

    return finish


def test_the_hub_keeps_the_last_error_and_lists_it_with_the_node():
    hub = Hub()
    attach(hub, error("ValueError: boom", 123, restarts=2))()
    assert "web1" not in hub.agents and hub.agent_errors["web1"].message == "ValueError: boom"
    finish = attach(hub)  # a later attachment with nothing to report: the error is kept
    listed = ControlService(hub).ListNodes(pb.ListNodesRequest(), FakeContext()).nodes
    finish()
    assert [(n.name, n.last_error, n.last_error_ns, n.restarts) for n in listed] == [("web1", "ValueError: boom", 123, 2)]


def test_a_failure_during_a_capture_is_a_gap_of_that_capture_only():
    from hoplab.control.server import CaptureState

    hub = Hub()
    now = time.time_ns()
    during = CaptureState("c1", ["web1", "lb"], "ip", "", "", 10, started_ns=now - 10**9)
    before = CaptureState("c0", ["web1"], "ip", "", "", 10, started_ns=now - 5 * 10**9, stopped_ns=now - 4 * 10**9,
                          state="stopped")
    other = CaptureState("c2", ["lb"], "ip", "", "", 10, started_ns=now - 10**9)
    hub.captures = {c.id: c for c in (before, during, other)}
    hub.agent_error("web1", pb.AgentError(message="OSError: gone", ts_ns=now, restarts=1))
    assert during.gaps == {"web1": "its agent failed during the capture and started over: OSError: gone"}
    assert before.gaps == {} and other.gaps == {}


# ------------------------------------------------------------ hoplab status

LAB = spec.load(TOPOLOGY_DIR / "lab.yaml")


def statuses(*down: str) -> list[NodeStatus]:
    return [NodeStatus(n, LAB.nodes[n].service, "exited" if n in down else "running", "healthy")
            for n in LAB.nodes]


def test_status_names_agents_that_failed_or_are_not_attached(monkeypatch):
    now = 1_000 * 10**9
    listed = [SimpleNamespace(name=n, last_error="", last_error_ns=0, restarts=0) for n in LAB.nodes
              if n not in ("control", "db", "web2")]
    listed[0] = SimpleNamespace(name=listed[0].name, last_error="ValueError: boom", last_error_ns=now - 42 * 10**9,
                                restarts=3)

    class Client:
        def nodes(self, timeout):
            return listed

        def close(self):
            pass

    monkeypatch.setattr("hoplab.control.client.ControlClient.of", classmethod(lambda cls, b, t: Client()))
    report = cli.agent_report(object(), LAB, statuses("web2"), now_ns=now)
    assert report == {listed[0].name: "started over 3 time(s); last failure 42 s ago: ValueError: boom",
                      "db": "not attached to the control service (no trace sees this node)"}


def test_status_asks_nothing_when_the_control_node_is_down(monkeypatch):
    monkeypatch.setattr("hoplab.control.client.ControlClient.of", classmethod(lambda cls, b, t: pytest.fail("asked")))
    assert cli.agent_report(object(), LAB, statuses("control")) == {}


def test_status_says_when_the_control_service_does_not_answer(monkeypatch):
    def refuse(cls, backend, topology):
        raise cli.BackendError("control service at 172.31.254.2:50052: UNAVAILABLE: connect failed")

    monkeypatch.setattr("hoplab.control.client.ControlClient.of", classmethod(refuse))
    assert cli.agent_report(object(), LAB, statuses()) == {
        "control": "the control service did not list its agents: control service at 172.31.254.2:50052: "
                   "UNAVAILABLE: connect failed"}

"""`hoplab status`'s balancers: each running balancer's own read-back (services/lb/balancing,
HAProxy's `show stat`) asked once, its answer shown as it came, and a balancer that does not
answer said so by name, never dropped."""

from __future__ import annotations

import json
import subprocess

from hoplab import balancing
from hoplab.backends.base import NodeStatus
from hoplab.paths import TOPOLOGY_DIR
from hoplab.spec import load

DUO = load(TOPOLOGY_DIR / "duo.yaml")


def seen(algorithm: str, haproxy: str, weights: dict[str, int]) -> str:
    return json.dumps({"algorithm": algorithm, "haproxy": haproxy, "servers": [
        {"name": name, "address": f"172.30.78.2{i}:8080", "weight": weight, "status": "UP"}
        for i, (name, weight) in enumerate(weights.items(), 1)]})


class FakeBackend:
    """A backend's `run`, answered per node from a table; records what ran."""

    def __init__(self, answers: dict[str, object]):
        self.answers = answers
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def run(self, topology, node, argv, timeout=60, input=None):
        self.calls.append((node, tuple(argv)))
        answer = self.answers[node]
        if isinstance(answer, Exception):
            raise answer
        code, out, err = answer
        return subprocess.CompletedProcess(argv, code, out, err)


def statuses(*stopped: str) -> list[NodeStatus]:
    return [NodeStatus(n.name, n.service, "exited" if n.name in stopped else "running", "healthy")
            for n in DUO.nodes.values()]


def test_each_running_balancer_is_asked_through_its_own_script():
    backend = FakeBackend({"balancer": (0, seen("weighted", "roundrobin", {"app1": 3, "app2": 1, "app3": 1}), ""),
                           "sticky": (0, seen("source-hash", "source", {"app1": 1, "app2": 1, "app3": 1}), "")})
    found = balancing.read(backend, DUO, statuses("least"))
    assert [node for node, _ in backend.calls] == ["balancer", "sticky"]  # not the stopped one, nor any other node
    assert all(argv == ("sh", "-c", balancing.READ_BACK) for _, argv in backend.calls)
    assert found["balancer"]["haproxy"] == "roundrobin"
    assert [s["weight"] for s in found["balancer"]["servers"]] == [3, 1, 1]
    assert balancing.lines(found) == [
        "balancer: weighted (HAProxy: balance roundrobin): app1 weight 3 UP, app2 weight 1 UP, app3 weight 1 UP",
        "sticky: source-hash (HAProxy: balance source): app1 weight 1 UP, app2 weight 1 UP, app3 weight 1 UP"]


def test_a_balancer_that_does_not_answer_is_named_with_why():
    backend = FakeBackend({
        "balancer": (1, "", "HAProxy's admin socket /run/haproxy/admin.sock does not answer: [Errno 111]\n"),
        "sticky": subprocess.TimeoutExpired(["sh"], 10),
        "least": (0, "show stat: unknown command", ""),
    })
    found = balancing.read(backend, DUO, statuses())
    assert found["balancer"] == {"algorithm": "weighted",
                                 "error": "HAProxy's admin socket /run/haproxy/admin.sock does not answer: [Errno 111]"}
    assert found["sticky"]["algorithm"] == "source-hash" and "TimeoutExpired" in found["sticky"]["error"]
    assert found["least"]["error"].startswith("not JSON: 'show stat")
    assert balancing.lines(found)[0] == ("balancer: weighted (HAProxy does not say: HAProxy's admin socket "
                                         "/run/haproxy/admin.sock does not answer: [Errno 111])")

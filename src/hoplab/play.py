"""`hoplab play`: the lab's online game from a client node (hoplab.node.game, over UDP): moves
out, the game state back, through the home's NAT. Reports the round trips, the moves whose answer
never came (nobody sends a datagram again), and the address the server saw the player as (the
router's, after the NAT). With a trace: every node capturing meanwhile, and the host's kernel
naming the drops (a packet-loss fault's) and the bind() it refused the server (its port taken),
the first of which is the lost moves' cause."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from hoplab.backends.base import Backend, BackendError
from hoplab.node.game import PORT
from hoplab.spec import Topology
from hoplab.visit import BENIGN_DROPS, SETTLE_S, Traced, new_trace_id, tell

TARGET = re.compile(r"udp://(?P<host>[a-z0-9.-]+)(?::(?P<port>\d{1,5}))?/?")


@dataclass
class Play:
    node: str
    target: str
    server: str = ""
    local: str = ""
    seen_as: str = ""  # the player's address as the server saw it (after the NAT)
    sent: int = 0
    answered: int = 0
    lost: int = 0
    lost_seqs: list[int] = field(default_factory=list)
    refused: int = 0  # ICMP port unreachable answers
    errors: list[str] = field(default_factory=list)
    rtt_ms: dict | None = None
    error: str = ""  # the client could not play at all (a name that does not resolve, no route)
    trace_id: str = ""
    cause: str = ""  # with a trace, when moves were lost: the kernel's word (a refused bind, a drop)

    @property
    def ok(self) -> bool:
        return not self.error and self.answered > 0

    def to_json(self) -> dict:
        return {**self.__dict__, "ok": self.ok}

    def render(self) -> str:
        if self.error:
            return f"{self.node} -> {self.target}: {self.error}"
        rtt = self.rtt_ms or {}
        lines = [f"{self.node} ({self.local}) -> {self.target} ({self.server}), UDP",
                 f"  moves sent {self.sent}, answered {self.answered}, lost {self.lost}"
                 + (f" (moves {', '.join(map(str, self.lost_seqs[:20]))}{' ...' if len(self.lost_seqs) > 20 else ''};"
                    " nobody sends them again)" if self.lost else ""),
                 f"  round trip ms: min {rtt.get('min', '-')}, median {rtt.get('median', '-')}, max {rtt.get('max', '-')}",
                 f"  the server saw this player as {self.seen_as or '-'}"
                 + (f" (the NAT's rewrite of {self.local})" if self.seen_as and self.seen_as != self.local else "")]
        if self.refused:
            lines.append(f"  {self.refused} ICMP port unreachable: nothing listens on the server's port")
        lines += [f"  server said: {e}" for e in self.errors[:5]]
        if self.cause:
            lines.append(f"  caused by: {self.cause}")
        return "\n".join(lines)


def parse_target(text: str, topology: Topology) -> tuple[str, int]:
    """(host, port) of udp://HOST[:PORT], HOST a name of the lab's domain; ValueError otherwise."""
    match = TARGET.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not udp://HOST[:PORT]")
    host, port = match["host"], int(match["port"] or PORT)
    domain = topology.domain.name
    if host != domain and not host.endswith(f".{domain}"):
        raise ValueError(f"{host!r} is not a name of the lab's domain ({domain})")
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1..65535")
    return host, port


def default_target(topology: Topology) -> str:
    return f"udp://game.{topology.domain.name}:{PORT}"


def play(backend: Backend, topology: Topology, node: str, target: str, moves: int = 20, interval: float = 0.05,
         wait: float = 1.0) -> Play:
    host, port = parse_target(target, topology)
    argv = ["python3", "-m", "hoplab.node.game", "play", host, "--port", str(port), "--moves", str(moves),
            "--interval", f"{interval:g}", "--wait", f"{wait:g}"]
    result = backend.run(topology, node, argv, timeout=moves * interval + wait + 30)
    try:
        said = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BackendError(f"the game client in {node} said nothing readable (exit {result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-500:]}") from None
    known = {k: v for k, v in said.items() if k in Play.__dataclass_fields__}
    return Play(node=node, target=target, **known)


def traced_play(backend: Backend, topology: Topology, node: str, target: str, **bounds) -> tuple[Play, object]:
    """A game with every node capturing and the host's kernel watching for drops."""
    trace_id = new_trace_id()
    with Traced(backend, topology, target, trace_id) as traced:
        result = play(backend, topology, node, target, **bounds)
        time.sleep(SETTLE_S)
    result.trace_id = trace_id
    trace = traced.trace()
    result.cause = cause(trace, result)
    return result, trace


def cause(trace, result: Play) -> str:
    """Why moves were lost, as the trace saw it: the server's refused bind() (its port held by
    another process, which reads the moves and answers none), else the kernel's first drop."""
    if not result.lost or not trace.hops:
        return ""
    hops = list(trace.hops)
    refused = next((h for h in hops if h.record.direction == "bind"), None)
    dropped = next((h for h in hops if h.record.direction == "drop"
                    and h.record.keys.get("drop_reason") not in BENIGN_DROPS), None)
    found = refused or dropped
    return tell(trace, found) if found is not None else ""

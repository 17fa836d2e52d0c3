"""The fault catalogue. A fault is data: what to run in which node to break something, and
what to run to put it back. Nothing here acts; `hoplab.chaos.journal` records the undo before
the act runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from hoplab.spec import Topology


class FaultError(Exception):
    """A fault that cannot be planned: bad target or parameter (exit 2)."""


@dataclass(frozen=True)
class Step:
    node: str
    argv: tuple[str, ...]

    def to_json(self) -> dict:
        return {"node": self.node, "argv": list(self.argv)}


@dataclass
class Plan:
    act: list[Step]
    undo: list[Step]
    symptom: str


@dataclass(frozen=True)
class Fault:
    name: str
    family: str
    description: str
    params: dict = field(default_factory=dict)  # name -> default
    needs_iface: bool = False
    service: str | None = None  # the target must run this service

    def plan(self, topology: Topology, node: str, iface: str | None, params: dict) -> Plan:
        return PLANNERS[self.name](topology, node, iface, params)


def _sh(node: str, script: str) -> Step:
    return Step(node, ("sh", "-c", script))


def _chain_rule(iface: str, action: str, extra: str) -> list[str]:
    return [f"iptables -w {action} INPUT -i {iface} {extra}", f"iptables -w {action} OUTPUT -o {iface} {extra}"]


def _packet_loss(topology, node, iface, params) -> Plan:
    rate = float(params["percent"]) / 100
    if not 0 < rate <= 1:
        raise FaultError(f"percent: {params['percent']} is outside (0, 100]")
    match = f"-m statistic --mode random --probability {rate:.4f} -j DROP -m comment --comment hoplab-chaos"
    return Plan([_sh(node, "; ".join(_chain_rule(iface, "-I", match)))],
                [_sh(node, "; ".join(_chain_rule(iface, "-D", match)))],
                f"about {params['percent']}% of packets through {node}:{iface} are lost")


def _rate_limit(topology, node, iface, params) -> Plan:
    rate = str(params["rate"])
    return Plan([_sh(node, f"tc qdisc replace dev {iface} root tbf rate {rate} burst 2kb latency 200ms")],
                [_sh(node, f"tc qdisc del dev {iface} root 2>/dev/null || true")],
                f"{node}:{iface} sends at most {rate}")


def _delay(topology, node, iface, params) -> Plan:
    return Plan([_sh(node, f"tc qdisc replace dev {iface} root netem delay {params['ms']}ms {params['jitter_ms']}ms "
                           f"2>/dev/null || {{ echo 'netem is not supported on this kernel (no sch_netem)' >&2; exit 3; }}")],
                [_sh(node, f"tc qdisc del dev {iface} root 2>/dev/null || true")],
                f"{node}:{iface} delays every packet by {params['ms']} ms")


def _link_down(topology, node, iface, params) -> Plan:
    saved = f"/run/hoplab/chaos-routes-{iface}"
    return Plan([_sh(node, f"ip route save dev {iface} > {saved}; ip link set dev {iface} down")],
                [_sh(node, f"ip link set dev {iface} up; ip route restore < {saved} 2>/dev/null; rm -f {saved}; true")],
                f"{node}:{iface} is down")


def _port_block(topology, node, iface, params) -> Plan:
    port = int(params["port"])
    if not 0 < port < 65536:
        raise FaultError(f"port: {port} is not a port")
    rule = f"INPUT -p tcp --dport {port} -j REJECT --reject-with tcp-reset -m comment --comment hoplab-chaos"
    return Plan([_sh(node, f"iptables -w -I {rule}")], [_sh(node, f"iptables -w -D {rule}")],
                f"{node} refuses TCP port {port}")


def _process_stop(topology, node, iface, params) -> Plan:
    # The service's main process is docker-init's (or the namespace's) child: the start
    # script exec'd the daemon.
    main = "$(pgrep -P 1 | head -n 1)"
    return Plan([_sh(node, f"kill -STOP {main}")], [_sh(node, f"kill -CONT {main}")],
                f"{node}'s service is frozen (SIGSTOP)")


def _ip_forward_off(topology, node, iface, params) -> Plan:
    # /proc/sys is read-only in a container, so the sysctl cannot be flipped at run time; a
    # DROP at the head of FORWARD stops forwarding the same way for every packet.
    rule = "FORWARD -j DROP -m comment --comment hoplab-chaos"
    return Plan([_sh(node, f"iptables -w -I {rule}")], [_sh(node, f"iptables -w -D {rule}")],
                f"{node} no longer forwards packets")


def _masquerade_removed(topology, node, iface, params) -> Plan:
    nat = topology.nodes[node].nat
    rules = [f"POSTROUTING -s {topology.networks[n].subnet} -o {nat.outside} -j MASQUERADE" for n in nat.inside]
    return Plan([_sh(node, "; ".join(f"iptables -w -t nat -D {r}" for r in rules))],
                [_sh(node, "; ".join(f"iptables -w -t nat -A {r}" for r in rules))],
                f"{node} forwards without NAT: replies cannot find their way back")


def _lb_backend_down(topology, node, iface, params) -> Plan:
    server = str(params["server"])
    if server not in {n.name for n in topology.nodes_of("web")}:
        raise FaultError(f"server: {server!r} is not a web node")
    admin = "socat stdio /run/haproxy/admin.sock"
    return Plan([_sh(node, f"echo 'disable server web/{server}' | {admin}")],
                [_sh(node, f"echo 'enable server web/{server}' | {admin}")],
                f"the balancer sends nothing to {server}")


PLANNERS = {
    "packet-loss": _packet_loss, "rate-limit": _rate_limit, "delay": _delay, "link-down": _link_down,
    "port-block": _port_block, "process-stop": _process_stop, "ip-forward-off": _ip_forward_off,
    "masquerade-removed": _masquerade_removed, "lb-backend-down": _lb_backend_down,
}

CATALOGUE = {f.name: f for f in [
    Fault("process-stop", "process", "freeze a node's service with SIGSTOP"),
    Fault("link-down", "link", "take an interface down", needs_iface=True),
    Fault("packet-loss", "link", "drop a share of packets (iptables statistic match)", {"percent": 30},
          needs_iface=True),
    Fault("rate-limit", "link", "limit an interface's sending rate (tc tbf)", {"rate": "64kbit"}, needs_iface=True),
    Fault("delay", "link", "delay and jitter (tc netem, where the kernel has it)", {"ms": 200, "jitter_ms": 20},
          needs_iface=True),
    Fault("port-block", "filtering", "refuse a TCP port (iptables REJECT)", {"port": 80}),
    Fault("ip-forward-off", "routing", "stop forwarding (DROP at the head of FORWARD; /proc/sys is read-only)",
          service="router"),
    Fault("masquerade-removed", "routing", "remove the NAT masquerade rules", service="router"),
    Fault("lb-backend-down", "services", "mark a web replica down in the balancer (runtime socket)",
          {"server": "web1"}, service="lb"),
]}

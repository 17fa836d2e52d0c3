"""Faults of the network itself: links, filtering, routing and NAT. Each planner turns a
target and parameters into the commands that break something and the commands that put it
back exactly as it was (idempotent: a drill's repair may have fixed it already)."""

from __future__ import annotations

from hoplab.chaos.model import (RUN, FaultError, Plan, Target, ipt_add, ipt_remove, sh, static_addresses,
                                unused_address)

ICMP_FRAG_NEEDED = "-p icmp --icmp-type fragmentation-needed -j DROP"


def link_down(t: Target, p: dict) -> Plan:
    saved = f"{RUN}/chaos-routes-{t.iface}"  # the routes the kernel drops with the link
    return Plan([sh(t.node, f"ip route save dev {t.iface} > {saved}", f"ip link set dev {t.iface} down")],
                [sh(t.node, f"ip link set dev {t.iface} up",
                    f"ip route restore < {saved} 2>/dev/null || true", f"rm -f {saved}")],
                f"{t.node}:{t.iface} is down")


def _both_ways(iface: str, match: str) -> list[str]:
    return [f"INPUT -i {iface} {match}", f"OUTPUT -o {iface} {match}"]


def packet_loss(t: Target, p: dict) -> Plan:
    rate = float(p["percent"]) / 100
    if not 0 < rate <= 1:
        raise FaultError(f"percent: {p['percent']} is outside (0, 100]")
    rules = _both_ways(t.iface, f"-m statistic --mode random --probability {rate:.4f} -j DROP")
    return Plan([sh(t.node, *map(ipt_add, rules))], [sh(t.node, *map(ipt_remove, rules))],
                f"about {p['percent']}% of packets through {t.node}:{t.iface} are lost")


def rate_limit(t: Target, p: dict) -> Plan:
    rate = str(p["rate"])
    return Plan([sh(t.node, f"tc qdisc replace dev {t.iface} root tbf rate {rate} burst 2kb latency 200ms")],
                [sh(t.node, f"tc qdisc del dev {t.iface} root 2>/dev/null || true")],
                f"{t.node}:{t.iface} sends at most {rate}")


def delay(t: Target, p: dict) -> Plan:
    return Plan([sh(t.node, f"tc qdisc replace dev {t.iface} root netem delay {p['ms']}ms {p['jitter_ms']}ms "
                            f"2>/dev/null || {{ echo 'netem is not supported on this kernel (no sch_netem)' >&2; exit 3; }}")],
                [sh(t.node, f"tc qdisc del dev {t.iface} root 2>/dev/null || true")],
                f"{t.node}:{t.iface} delays every packet by {p['ms']} ms")


def port_block(t: Target, p: dict) -> Plan:
    port = int(p["port"])
    if not 0 < port < 65536:
        raise FaultError(f"port: {port} is not a port")
    rule = f"INPUT -p tcp --dport {port} -j REJECT --reject-with tcp-reset"
    return Plan([sh(t.node, ipt_add(rule))], [sh(t.node, ipt_remove(rule))], f"{t.node} refuses TCP port {port}")


def _peer(t: Target, p: dict) -> list[str]:
    peer = str(p["peer"])
    if peer not in t.topology.nodes or peer == t.node:
        raise FaultError(f"peer: {peer!r} is not another node (nodes: {', '.join(t.topology.nodes)})")
    addresses = static_addresses(t.topology, peer)
    if not addresses:
        raise FaultError(f"peer: {peer} has no fixed address to filter (a DHCP client)")
    return addresses


def partition_one_way(t: Target, p: dict) -> Plan:
    # Packets from the target to the peer are dropped; the peer's still arrive, so the peer
    # sees its requests go out and never answered, and the target sees traffic it cannot answer.
    rules = [f"OUTPUT -d {a} -j DROP" for a in _peer(t, p)]
    return Plan([sh(t.node, *map(ipt_add, rules))], [sh(t.node, *map(ipt_remove, rules))],
                f"nothing {t.node} sends reaches {p['peer']} (the other way still works)")


def partition_two_way(t: Target, p: dict) -> Plan:
    rules = [r for a in _peer(t, p) for r in (f"OUTPUT -d {a} -j DROP", f"INPUT -s {a} -j DROP")]
    return Plan([sh(t.node, *map(ipt_add, rules))], [sh(t.node, *map(ipt_remove, rules))],
                f"{t.node} and {p['peer']} cannot reach each other")


def ip_forward_off(t: Target, p: dict) -> Plan:
    # /proc/sys is read-only in a container, so the sysctl cannot be flipped at run time; a
    # DROP at the head of FORWARD stops forwarding the same way for every packet.
    rule = "FORWARD -j DROP"
    return Plan([sh(t.node, ipt_add(rule))], [sh(t.node, ipt_remove(rule))], f"{t.node} no longer forwards packets")


def masquerade_removed(t: Target, p: dict) -> Plan:
    nat = t.topology.nodes[t.node].nat
    rules = [f"POSTROUTING -s {t.topology.networks[n].subnet} -o {nat.outside} -j MASQUERADE" for n in nat.inside]
    return Plan([sh(t.node, *(f"iptables -w -t nat -D {r}" for r in rules))],
                [sh(t.node, *(f"iptables -w -t nat -C {r} 2>/dev/null || iptables -w -t nat -A {r}" for r in rules))],
                f"{t.node} forwards without NAT: replies cannot find their way back")


def wrong_default_route(t: Target, p: dict) -> Plan:
    network = t.iface
    via = str(p["via"]) or unused_address(t.topology, network)
    saved = f"{RUN}/chaos-default-route"
    return Plan([sh(t.node, f"ip route show default | grep -q . || {{ echo '{t.node} has no default route' >&2; exit 3; }}",
                    f"ip route show default > {saved}", f"ip route replace default via {via} dev {network}")],
                [sh(t.node, f"test -s {saved} || exit 0", f"ip route replace $(head -n 1 {saved})", f"rm -f {saved}")],
                f"{t.node}'s default route points at {via}, which does not route")


def mtu_blackhole(t: Target, p: dict) -> Plan:
    # A link with a smaller MTU and no "fragmentation needed" ICMP: big packets (with DF set,
    # as TCP sends them) vanish, small ones pass. Handshakes work; big responses hang.
    mtu = int(p["mtu"])
    if not 576 <= mtu < 1500:
        raise FaultError(f"mtu: {mtu} is outside 576..1499")
    saved = f"{RUN}/chaos-mtu-{t.iface}"
    rule = f"OUTPUT {ICMP_FRAG_NEEDED}"
    return Plan([sh(t.node, f"cat /sys/class/net/{t.iface}/mtu > {saved}", ipt_add(rule),
                    f"ip link set dev {t.iface} mtu {mtu}")],
                [sh(t.node, f"ip link set dev {t.iface} mtu $(cat {saved} 2>/dev/null || echo 1500)", ipt_remove(rule),
                    f"rm -f {saved}")],
                f"{t.node}:{t.iface} carries at most {mtu} bytes and hides the ICMP that would say so")

"""Faults of the network itself: links, filtering, routing and NAT. Each planner turns a
target and checked, typed parameters (`hoplab.chaos.params`) into the commands that break
something and the commands that put it back exactly as it was (idempotent: a drill's repair
may have fixed it already). Parameters reach commands as arguments, never as script text."""

from __future__ import annotations

import ipaddress

from hoplab.chaos.model import (MAX_DURATION_S, RUN, XTABLES_WAIT, Context, FaultError, Plan, Target, ipt_add,
                                ipt_remove, run, sh, static_addresses, unused_address)

ICMP_FRAG_NEEDED = ("-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP")


def link_down(t: Target, p: dict) -> Plan:
    saved = f"{RUN}/chaos-routes-{t.iface}"  # the routes the kernel drops with the link
    return Plan([sh(t.node, f"ip route save dev {t.iface} > {saved}", f"ip link set dev {t.iface} down")],
                [sh(t.node, f"ip link set dev {t.iface} up",
                    f"ip route restore < {saved} 2>/dev/null || true", f"rm -f {saved}")],
                f"{t.node}:{t.iface} is down")


def _both_ways(iface: str, *match: str) -> list[tuple[str, ...]]:
    return [("INPUT", "-i", iface, *match), ("OUTPUT", "-o", iface, *match)]


def _rules(node: str, rules: list[tuple[str, ...]], table: str = "filter") -> tuple[list, list]:
    return ([ipt_add(node, *r, table=table) for r in rules], [ipt_remove(node, *r, table=table) for r in rules])


def packet_loss(t: Target, p: dict) -> Plan:
    rules = _both_ways(t.iface, "-m", "statistic", "--mode", "random", "--probability", f"{p['percent'] / 100:.4f}",
                       "-j", "DROP")
    return Plan(*_rules(t.node, rules), f"about {p['percent']:g}% of packets through {t.node}:{t.iface} are lost")


def rate_limit(t: Target, p: dict) -> Plan:
    return Plan([run(t.node, "tc", "qdisc", "replace", "dev", t.iface, "root", "tbf", "rate", p["rate"],
                     "burst", "2kb", "latency", "200ms")],
                [sh(t.node, f"tc qdisc del dev {t.iface} root 2>/dev/null || true")],
                f"{t.node}:{t.iface} sends at most {p['rate']}")


def delay(t: Target, p: dict) -> Plan:
    # netem where the kernel has it, else the NFQUEUE delayer (hoplab.node.impair), which lives
    # no longer than the longest fault even if no undo runs. HOPLAB_PYTHON: the Python that has
    # NetfilterQueue in a netns node (the venv's); an image's python3 has it.
    if p["jitter_ms"] > p["ms"]:
        raise FaultError(f"--param jitter_ms: {p['jitter_ms']:g} is more than ms ({p['ms']:g}): a packet cannot "
                         "leave before it came", "--param")
    impair = '"${HOPLAB_PYTHON:-python3}" -m hoplab.node.impair'
    return Plan([sh(t.node, f'{impair} apply "$1" --delay-ms "$2" --jitter-ms "$3" --seconds {MAX_DURATION_S + 60} '
                            "--owner chaos", args=(t.iface, p["ms"], p["jitter_ms"]))],
                [sh(t.node, f'{impair} clear "$1" --owner chaos', args=(t.iface,))],
                f"{t.node}:{t.iface} delays every packet by {p['ms']} ms (± {p['jitter_ms']} ms)")


def port_block(t: Target, p: dict) -> Plan:
    rule = ("INPUT", "-p", "tcp", "--dport", str(p["port"]), "-j", "REJECT", "--reject-with", "tcp-reset")
    return Plan(*_rules(t.node, [rule]), f"{t.node} refuses TCP port {p['port']}")


def another_node_with_an_address(ctx: Context, peer: str) -> str | None:
    """The check of a `peer` parameter: another node, with a fixed address to filter."""
    if peer == ctx.node:
        return "expected another node than the target"
    if not static_addresses(ctx.topology, peer):
        return f"{peer} has no fixed address to filter (a DHCP client)"
    return None


def partition_one_way(t: Target, p: dict) -> Plan:
    # Packets from the target to the peer are dropped; the peer's still arrive, so the peer
    # sees its requests go out and never answered, and the target sees traffic it cannot answer.
    rules = [("OUTPUT", "-d", a, "-j", "DROP") for a in static_addresses(t.topology, p["peer"])]
    return Plan(*_rules(t.node, rules), f"nothing {t.node} sends reaches {p['peer']} (the other way still works)")


def partition_two_way(t: Target, p: dict) -> Plan:
    rules = [r for a in static_addresses(t.topology, p["peer"])
             for r in (("OUTPUT", "-d", a, "-j", "DROP"), ("INPUT", "-s", a, "-j", "DROP"))]
    return Plan(*_rules(t.node, rules), f"{t.node} and {p['peer']} cannot reach each other")


def ip_forward_off(t: Target, p: dict) -> Plan:
    # /proc/sys is read-only in a container, so the sysctl cannot be flipped at run time; a
    # DROP at the head of FORWARD stops forwarding the same way for every packet.
    return Plan(*_rules(t.node, [("FORWARD", "-j", "DROP")]), f"{t.node} no longer forwards packets")


def masquerade_removed(t: Target, p: dict) -> Plan:
    nat = t.topology.nodes[t.node].nat
    rules = [("POSTROUTING", "-s", str(t.topology.networks[n].subnet), "-o", nat.outside, "-j", "MASQUERADE")
             for n in nat.inside]
    restore = 'iptables -w 5 -t nat -C "$@" 2>/dev/null || iptables -w 5 -t nat -A "$@"'
    return Plan([run(t.node, "iptables", *XTABLES_WAIT, "-t", "nat", "-D", *r) for r in rules],
                [sh(t.node, restore, args=r) for r in rules],
                f"{t.node} forwards without NAT: replies cannot find their way back")


def on_the_target_link(ctx: Context, via: str) -> str | None:
    """The check of a `via` parameter: a gateway must be on the link the route leaves by."""
    network = ctx.topology.networks.get(ctx.iface or "")
    if network and ipaddress.IPv4Address(via) not in network.subnet:
        return f"not on {ctx.iface} ({network.subnet}), the link the route leaves by"
    return None


def wrong_default_route(t: Target, p: dict) -> Plan:
    network = t.iface
    via = p["via"] or unused_address(t.topology, network)
    saved = f"{RUN}/chaos-default-route"
    return Plan([sh(t.node, f"ip route show default | grep -q . || {{ echo '{t.node} has no default route' >&2; exit 3; }}",
                    f"ip route show default > {saved}", f'ip route replace default via "$1" dev {network}', args=(via,))],
                [sh(t.node, f"test -s {saved} || exit 0", f"ip route replace $(head -n 1 {saved})", f"rm -f {saved}")],
                f"{t.node}'s default route points at {via}, which does not route")


def mtu_blackhole(t: Target, p: dict) -> Plan:
    # A link with a smaller MTU and no "fragmentation needed" ICMP: big packets (with DF set,
    # as TCP sends them) vanish, small ones pass. Handshakes work; big responses hang.
    saved = f"{RUN}/chaos-mtu-{t.iface}"
    rule = ("OUTPUT", *ICMP_FRAG_NEEDED)
    return Plan([sh(t.node, f"cat /sys/class/net/{t.iface}/mtu > {saved}"), ipt_add(t.node, *rule),
                 sh(t.node, f'ip link set dev {t.iface} mtu "$1"', args=(p["mtu"],))],
                [sh(t.node, f"ip link set dev {t.iface} mtu $(cat {saved} 2>/dev/null || echo 1500)"),
                 ipt_remove(t.node, *rule), sh(t.node, f"rm -f {saved}")],
                f"{t.node}:{t.iface} carries at most {p['mtu']} bytes and hides the ICMP that would say so")

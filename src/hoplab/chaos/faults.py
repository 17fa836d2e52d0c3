"""The fault catalogue: every fault hoplab can inject, by family. A fault is data (see
`hoplab.chaos.model`); its planner, in `net_faults` or `service_faults`, says what to run in
which node to break something and to put it back."""

from __future__ import annotations

from dataclasses import dataclass

from hoplab.chaos import net_faults as net
from hoplab.chaos import service_faults as svc
from hoplab.chaos.model import MAX_DURATION_S, Fault, FaultError, Param, Plan, Step, Target
from hoplab.spec import Topology

__all__ = ["CATALOGUE", "FAMILIES", "Fault", "FaultError", "Param", "Plan", "Request", "Step", "Target", "prepare"]

FAMILIES = ("process", "link", "filtering", "routing", "dns", "dhcp", "services")

CATALOGUE = {f.name: f for f in [
    # process: the service's main process, its whole tree, or its death
    Fault("process-stop", "process", "freeze the service's main process (SIGSTOP)", svc.process_stop,
          resource="process"),
    Fault("process-pause", "process", "pause every process of the service (SIGSTOP to the tree)", svc.process_pause,
          resource="process"),
    Fault("process-kill", "process", "kill the service (SIGKILL); the revert starts the node again",
          svc.process_kill, resource="process"),
    Fault("port-squat", "process", "another process takes the game's port as its server restarts: every "
          "restart fails at bind() (EADDRINUSE)", svc.port_squat, service="game", resource="process"),
    # link
    Fault("link-down", "link", "take an interface down", net.link_down, needs_iface=True),
    Fault("packet-loss", "link", "drop a share of packets (iptables statistic match)", net.packet_loss,
          {"percent": Param("percent", 30, 0, 100)}, needs_iface=True),
    Fault("rate-limit", "link", "limit an interface's sending rate (tc tbf)", net.rate_limit,
          {"rate": Param("rate", "64kbit", 1000, 10 * 1000**3)},
          needs_iface=True, resource="qdisc"),
    Fault("delay", "link", "delay and jitter (tc netem where the kernel has it, else a delayer on NFQUEUE)", net.delay,
          {"ms": Param("ms", 200, 1, 5000), "jitter_ms": Param("ms", 20, 0, 5000)}, needs_iface=True, resource="qdisc"),
    # filtering
    Fault("port-block", "filtering", "refuse a TCP port (iptables REJECT)", net.port_block, {"port": Param("port", 80, 1, 65535)}),
    Fault("partition-one-way", "filtering", "drop what the target sends to a peer; the peer's packets still arrive",
          net.partition_one_way, {"peer": Param("node", "web1", check=net.another_node_with_an_address)}),
    Fault("partition-two-way", "filtering", "the target and a peer cannot reach each other", net.partition_two_way,
          {"peer": Param("node", "lb", check=net.another_node_with_an_address)}),
    # routing and NAT
    Fault("ip-forward-off", "routing", "stop forwarding (DROP at the head of FORWARD; /proc/sys is read-only)",
          net.ip_forward_off, service="router"),
    Fault("masquerade-removed", "routing", "remove the NAT masquerade rules", net.masquerade_removed,
          service="router"),
    Fault("wrong-default-route", "routing", "point the default route at an address that does not route",
          net.wrong_default_route, {"via": Param("address", "", optional=True, check=net.on_the_target_link)}, needs_iface=True),
    Fault("mtu-blackhole", "routing", "lower a link's MTU and drop the ICMP 'fragmentation needed' it sends",
          net.mtu_blackhole, {"mtu": Param("mtu", 1200, 576, 1499)}, needs_iface=True),
    # DNS: the lab's zone as named serves it
    Fault("dns-nxdomain", "dns", "remove a name from the zone (NXDOMAIN)", svc.dns_nxdomain, {"name": Param("record", "www", check=svc.a_record)},
          service="dns", resource="zone"),
    Fault("dns-servfail", "dns", "the zone fails to load (SERVFAIL for every name)", svc.dns_servfail,
          service="dns", resource="zone"),
    Fault("dns-wrong-a", "dns", "a name resolves to an address where nothing answers", svc.dns_wrong_a,
          {"name": Param("record", "www", check=svc.a_record),
           "address": Param("address", "", optional=True)}, service="dns", resource="zone"),
    Fault("dns-slow", "dns", "every answer comes late (a delaying relay in front of named)", svc.dns_slow,
          {"ms": Param("ms", 700, 1, 5000)}, service="dns"),
    # DHCP: what dnsmasq hands out; clients renew at once
    Fault("dhcp-pool-exhausted", "dhcp", "every pool address is reserved: renewals are refused", svc.dhcp_pool_exhausted,
          service="dhcp", resource="dhcp"),
    Fault("dhcp-wrong-gateway", "dhcp", "leases name a gateway that does not route", svc.dhcp_wrong_gateway,
          {"address": Param("address", "", optional=True)}, service="dhcp", resource="dhcp"),
    Fault("dhcp-wrong-dns", "dhcp", "leases name a DNS server that does not answer", svc.dhcp_wrong_dns,
          {"address": Param("address", "", optional=True)}, service="dhcp", resource="dhcp"),
    # services
    Fault("lb-backend-down", "services", "mark a web replica down in the balancer (runtime socket)",
          svc.lb_backend_down, {"server": Param("node", "web1", check=svc.a_web_node)}, service="lb"),
    Fault("stale-cache", "services", "the edge caches every page, ignoring the origin's no-store", svc.stale_cache,
          {"ttl": Param("seconds", 3600, 1, 86400)}, service="cache"),
    Fault("edge-rate-limit", "services", "the edge refuses a client address's requests past a low rate (nginx "
          "limit_req, 429)", svc.edge_rate_limit,
          {"requests_per_second": Param("requests", 1, 1, 10000), "burst": Param("requests", 2, 0, 10000)},
          service="cache"),
    Fault("db-connection-limit", "services", "the app's database role may open no connection", svc.db_connection_limit,
          {"role": Param("role", "shop_app")}, service="db"),
    Fault("smtp-refuse", "services", "the mail server refuses every client (554)", svc.smtp_refuse, service="mail"),
]}


@dataclass(frozen=True)
class Request:
    """An injection, every argument checked and the plan made: nothing has run yet."""

    fault: Fault
    node: str
    iface: str | None
    duration: float
    values: dict
    plan: Plan


def prepare(topology: Topology, fault_name: str, target: str, duration: float, params: dict) -> Request:
    """Check an injection's every argument against the catalogue and the lab, and plan it.
    Pure (nothing runs, nothing is written): the CLI calls it before any other work, the
    journal before it records anything, an experiment file's loader for each of its faults."""
    fault = CATALOGUE.get(fault_name)
    if fault is None:
        raise FaultError(f"FAULT: unknown fault {fault_name!r} (faults: {', '.join(CATALOGUE)})", "FAULT")
    node, colon, iface = target.partition(":")
    if colon and not iface:
        raise FaultError(f"--target: {target!r}: expected NODE or NODE:IFACE", "--target")
    spec_node = topology.nodes.get(node)
    if spec_node is None:
        raise FaultError(f"--target: unknown node {node!r} (nodes: {', '.join(topology.nodes)})", "--target")
    if fault.service and spec_node.service != fault.service:
        raise FaultError(f"--target: {fault_name} needs a {fault.service} node; {node} runs {spec_node.service}",
                         "--target")
    networks = [i.network for i in spec_node.interfaces]
    if fault.needs_iface:
        iface = iface or (networks[0] if len(networks) == 1 else "")
        if iface not in networks:
            raise FaultError(f"--target: {fault_name} needs NODE:IFACE with IFACE one of {', '.join(networks)}",
                             "--target")
    elif iface:
        raise FaultError(f"--target: {fault_name} acts on a node, not an interface: give NODE", "--target")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration <= MAX_DURATION_S:
        raise FaultError(f"--duration: {duration!r} is outside (0, {MAX_DURATION_S}] seconds", "--duration")
    where = Target(node, iface or None, topology)
    values = fault.check(where, params)
    return Request(fault, node, iface or None, float(duration), values, fault.planner(where, values))

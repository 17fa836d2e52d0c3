"""The fault catalogue: every fault hoplab can inject, by family. A fault is data (see
`hoplab.chaos.model`); its planner, in `net_faults` or `service_faults`, says what to run in
which node to break something and to put it back."""

from __future__ import annotations

from hoplab.chaos import net_faults as net
from hoplab.chaos import service_faults as svc
from hoplab.chaos.model import Fault, FaultError, Plan, Step, Target

__all__ = ["CATALOGUE", "FAMILIES", "Fault", "FaultError", "Plan", "Step", "Target"]

FAMILIES = ("process", "link", "filtering", "routing", "dns", "dhcp", "services")

CATALOGUE = {f.name: f for f in [
    # process: the service's main process, its whole tree, or its death
    Fault("process-stop", "process", "freeze the service's main process (SIGSTOP)", svc.process_stop,
          resource="process"),
    Fault("process-pause", "process", "pause every process of the service (SIGSTOP to the tree)", svc.process_pause,
          resource="process"),
    Fault("process-kill", "process", "kill the service (SIGKILL); the revert starts the node again",
          svc.process_kill, resource="process"),
    # link
    Fault("link-down", "link", "take an interface down", net.link_down, needs_iface=True),
    Fault("packet-loss", "link", "drop a share of packets (iptables statistic match)", net.packet_loss,
          {"percent": 30}, needs_iface=True),
    Fault("rate-limit", "link", "limit an interface's sending rate (tc tbf)", net.rate_limit, {"rate": "64kbit"},
          needs_iface=True, resource="qdisc"),
    Fault("delay", "link", "delay and jitter (tc netem, where the kernel has it)", net.delay,
          {"ms": 200, "jitter_ms": 20}, needs_iface=True, resource="qdisc"),
    # filtering
    Fault("port-block", "filtering", "refuse a TCP port (iptables REJECT)", net.port_block, {"port": 80}),
    Fault("partition-one-way", "filtering", "drop what the target sends to a peer; the peer's packets still arrive",
          net.partition_one_way, {"peer": "web1"}),
    Fault("partition-two-way", "filtering", "the target and a peer cannot reach each other", net.partition_two_way,
          {"peer": "lb"}),
    # routing and NAT
    Fault("ip-forward-off", "routing", "stop forwarding (DROP at the head of FORWARD; /proc/sys is read-only)",
          net.ip_forward_off, service="router"),
    Fault("masquerade-removed", "routing", "remove the NAT masquerade rules", net.masquerade_removed,
          service="router"),
    Fault("wrong-default-route", "routing", "point the default route at an address that does not route",
          net.wrong_default_route, {"via": ""}, needs_iface=True),
    Fault("mtu-blackhole", "routing", "lower a link's MTU and drop the ICMP 'fragmentation needed' it sends",
          net.mtu_blackhole, {"mtu": 1200}, needs_iface=True),
    # DNS: the lab's zone as named serves it
    Fault("dns-nxdomain", "dns", "remove a name from the zone (NXDOMAIN)", svc.dns_nxdomain, {"name": "www"},
          service="dns", resource="zone"),
    Fault("dns-servfail", "dns", "the zone fails to load (SERVFAIL for every name)", svc.dns_servfail,
          service="dns", resource="zone"),
    Fault("dns-wrong-a", "dns", "a name resolves to an address where nothing answers", svc.dns_wrong_a,
          {"name": "www", "address": ""}, service="dns", resource="zone"),
    Fault("dns-slow", "dns", "every answer comes late (a delaying relay in front of named)", svc.dns_slow,
          {"ms": 700}, service="dns"),
    # DHCP: what dnsmasq hands out; clients renew at once
    Fault("dhcp-pool-exhausted", "dhcp", "every pool address is reserved: renewals are refused", svc.dhcp_pool_exhausted,
          service="dhcp", resource="dhcp"),
    Fault("dhcp-wrong-gateway", "dhcp", "leases name a gateway that does not route", svc.dhcp_wrong_gateway,
          {"address": ""}, service="dhcp", resource="dhcp"),
    Fault("dhcp-wrong-dns", "dhcp", "leases name a DNS server that does not answer", svc.dhcp_wrong_dns,
          {"address": ""}, service="dhcp", resource="dhcp"),
    # services
    Fault("lb-backend-down", "services", "mark a web replica down in the balancer (runtime socket)",
          svc.lb_backend_down, {"server": "web1"}, service="lb"),
    Fault("stale-cache", "services", "the edge caches every page, ignoring the origin's no-store", svc.stale_cache,
          {"ttl": 3600}, service="cache"),
    Fault("db-connection-limit", "services", "the app's database role may open no connection", svc.db_connection_limit,
          {"role": "shop_app"}, service="db"),
    Fault("smtp-refuse", "services", "the mail server refuses every client (554)", svc.smtp_refuse, service="mail"),
]}

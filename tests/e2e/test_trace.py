"""Per-hop traces through the control plane: one page load, packet by packet, on every node."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
import uuid

import grpc
import pytest

from helpers import hoplab
from hoplab.v1 import control_pb2 as pb
from hoplab.v1 import control_pb2_grpc as rpc


def traced(lab, url, *flags):
    out = hoplab("visit", url, "--trace", "--json", *flags, "--topology", lab.path).stdout
    data = json.loads(out)
    return data["visit"], data["trace"]


def first(hops, start, **match):
    """Index of the first hop at or after `start` whose fields contain the given values."""
    for i in range(start, len(hops)):
        hop = hops[i]
        if all(value in str(hop.get(field, "")) for field, value in match.items()):
            return i
    raise AssertionError(f"no hop after #{start} with {match}:\n" +
                         "\n".join(f"{h['node']}:{h['iface']} {h['direction']} {h['summary']}" for h in hops))


def connections(lab, node: str, to_service: str) -> int:
    """How many TCP connections `node` has established to the nodes of `to_service`, from the
    node's own /proc/net/tcp (its network namespace's)."""
    peers = {f"{int.from_bytes(iface.address.packed, 'little'):08X}" for peer in lab.topology.nodes_of(to_service)
             for iface in peer.interfaces if iface.address}
    rows = [line.split() for line in lab.exec(node, "cat", "/proc/net/tcp").stdout.splitlines()[1:]]
    return sum(1 for row in rows if row[3] == "01" and row[2].split(":")[0] in peers)


@pytest.fixture(scope="module")
def miss(lab):
    # The edge keeps idle connections to the balancer (nginx `keepalive 16`) until HAProxy closes
    # them (10 s idle: its `timeout http-request`). A page load on one of them opens no
    # connection at lb, so nothing there to see accepted: wait until they are gone.
    deadline = time.monotonic() + 20
    while connections(lab, "cache", "lb") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert connections(lab, "cache", "lb") == 0, "the edge still holds a connection to the balancer after 20 s"
    # The replicas pool their pages' database connections: end those sessions (as a database
    # restart would), so this page load opens a new one and the postmaster's accept is in it.
    db = lab.topology.nodes_of("db")[0].name
    lab.exec(db, "psql", "-X", "-q", "-U", "postgres", "-d", "postgres", "-c",
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE '%-pages'")
    url = f"{lab.www}/?trace={uuid.uuid4().hex}"  # nobody fetched it: a cache MISS
    visit, trace = traced(lab, url, "--renew")
    assert visit["ok"] and visit["cache"] == "MISS"
    return url, visit, trace


def test_a_miss_crosses_every_hop_in_order(lab, miss):
    _, visit, trace = miss
    hops = trace["hops"]
    assert trace["trace_id"] == visit["trace_id"] and trace["status"] == 200
    assert [h["ts_ns"] for h in hops] == sorted(h["ts_ns"] for h in hops)
    router_wan = lab.address("router", "internet")
    www = f"www.{lab.topology.domain.name}"
    edge = f"{lab.topology.domain.records['www']}:443"
    home = lab.topology.networks["home"].subnet
    i = first(hops, 0, node="client", summary="DHCP REQUEST")
    i = first(hops, i, node="client", summary="DHCP ACK")
    # DNS out through the NAT: the router rewrites the client's source to its WAN address
    i = first(hops, i, node="client", direction="out", summary=f"DNS query A {www}")
    nat = first(hops, i, node="router", direction="out", summary=f"DNS query A {www}")
    before_nat = hops[nat]["translated"]["before"]["src"].rsplit(":", 1)[0]
    assert ipaddress.IPv4Address(before_nat) in home
    assert hops[nat]["translated"]["after"]["src"].startswith(router_wan + ":")
    i = first(hops, nat, node="dns", direction="in", summary=f"DNS query A {www}")
    i = first(hops, i, node="client", direction="in", summary=f"DNS response NOERROR A {www}")
    # TCP and TLS, seen at the client and at the edge
    i = first(hops, i, node="client", direction="out", summary="SYN", dst=edge)
    i = first(hops, i, node="cache", direction="in", summary="SYN", src=router_wan)
    i = first(hops, i, node="client", summary=f"TLS ClientHello SNI {www}")
    i = first(hops, i, node="cache", summary=f"TLS ClientHello SNI {www}")
    # the proxies' hand-offs carry the visit's trace id
    i = first(hops, i, node="cache", direction="out", summary="HTTP GET /?trace=")
    assert visit["trace_id"] in hops[i]["keys"]["traceparent"]
    i = first(hops, i, node="lb", direction="out", summary="HTTP GET /?trace=")
    assert visit["trace_id"] in hops[i]["keys"]["traceparent"]
    web = visit["served_by"]
    i = first(hops, i, node=web, direction="in", summary="HTTP GET /?trace=")
    # the page's query carries the trace id (the outbox sender's own SELECTs, every 2 s, do not)
    i = first(hops, i, node=web, direction="out", summary="SQL SELECT", keys=visit["trace_id"])
    i = first(hops, i, node="db", direction="in", summary="SQL SELECT", keys=visit["trace_id"])
    i = first(hops, i, node=web, direction="out", summary="HTTP 200")
    i = first(hops, i, node="cache", direction="in", summary="HTTP 200")
    first(hops, i, node="client", direction="in", summary="TLS application data")


def test_the_request_and_response_are_read_inside_tls_at_every_hop_of_the_client_leg(lab, miss):
    """curl logs its session keys; the trace decrypts the client<->edge leg wherever it was seen:
    the client, the router on both sides of its NAT, the edge."""
    url, visit, trace = miss
    path = url.split(lab.www, 1)[1]
    hops = trace["hops"]
    hello = first(hops, 0, node="cache", direction="out", summary="ServerHello TLS1.3")  # the edge offers TLS 1.3
    www = f"www.{lab.topology.domain.name}"
    read = [h for h in hops if "decrypted" in h]
    requests = [h for h in read if h["decrypted"]["summary"].endswith(f"HTTP GET {path}")]
    assert {(h["node"], h["iface"], h["direction"]) for h in requests} == {
        ("client", "home", "out"), ("router", "home", "in"), ("router", "internet", "out"), ("cache", "internet", "in")}
    for hop in requests:
        keys = hop["decrypted"]["keys"]
        assert keys["http_host"] == www and visit["trace_id"] in keys["traceparent"]
        assert hop["decrypted"]["cipher"].startswith("TLS1.3 TLS_")
    responses = [h for h in read if "HTTP 200 OK" in h["decrypted"]["summary"]]
    assert {(h["node"], h["direction"]) for h in responses} >= {("cache", "out"), ("client", "in")}
    assert all(h["decrypted"]["keys"]["x_cache"] == "MISS" for h in responses)
    assert hops.index(requests[0]) > hello
    # and the table says it in words
    table = hoplab("trace", "show", visit["trace_id"], "--topology", lab.path).stdout
    assert f"[decrypted: HTTP GET {path}]" in table


def test_a_malformed_key_log_is_refused_by_name(lab, miss, control, tmp_path):
    _, visit, _ = miss
    bad = tmp_path / "keys.log"
    bad.write_text("CLIENT_RANDOM 0011 2233\n")
    result = hoplab("trace", "show", visit["trace_id"], "--keylog", str(bad), "--topology", lab.path, check=False)
    assert result.returncode == 2 and f"--keylog {bad}: line 1: the client random must be 32 bytes" in result.stderr
    assert result.stdout == ""
    with pytest.raises(grpc.RpcError) as error:
        control.GetTrace(pb.GetTraceRequest(trace_id=visit["trace_id"], tls_keylog="x y z"), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "tls_keylog: line 1" in error.value.details()


def test_an_uncached_page_queries_on_a_pooled_database_connection(lab, miss):
    """Once the replicas' pools hold connections, an uncached page's SQL reaches the database
    on one of them: no new TCP handshake and no login in its trace."""
    for _ in range(8):  # every worker of every replica gets a page, so each pool holds a connection
        lab.exec("client", "curl", "-sS", "-o", "/dev/null", f"{lab.www}/order")
    seen = []
    for _ in range(4):  # the next page lands on one of those workers
        _, trace = traced(lab, f"{lab.www}/order")
        at_db = [h["summary"] for h in trace["hops"] if h["node"] == "db"]
        seen.append(at_db)
        if any(s.startswith("SQL SELECT") for s in at_db) and not any(
                s.startswith("SQL startup") or " SYN " in s for s in at_db):
            return
    raise AssertionError(f"every uncached page opened a new database connection: {seen}")


def test_a_repeat_is_a_hit_that_ends_at_the_edge(lab, miss):
    url, _, _ = miss
    visit, trace = traced(lab, url)
    assert visit["cache"] == "HIT"
    nodes = {h["node"] for h in trace["hops"]}
    assert {"client", "router", "cache"} <= nodes
    assert not nodes & {"lb", "web1", "web2", "db"}, nodes


def tshark(pcap, *args) -> list[str]:
    return subprocess.run(["tshark", "-n", "-r", str(pcap), *args], capture_output=True, text=True,
                          check=True).stdout.split("\n")[:-1]


def test_pcapng_opens_cleanly_and_keeps_the_per_node_views(lab, miss, tmp_path):
    _, visit, trace = miss
    wire, every = tmp_path / "trace.pcapng", tmp_path / "every.pcapng"
    hoplab("trace", "show", visit["trace_id"], "--format", "pcapng", "-o", str(wire), "--topology", lab.path)
    hoplab("trace", "show", visit["trace_id"], "--format", "pcapng", "--every-hop", "-o", str(every),
           "--topology", lab.path)
    # Each wire packet once: what Wireshark's TCP analysis flags is a packet the kernel really
    # sent twice (a new IP id: e.g. a FIN probed again while the peer was slow to ack), never a
    # second sighting of one packet (the same IP id).
    fields = ["-T", "fields", "-e", "frame.number", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport", "-e",
              "tcp.dstport", "-e", "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.len", "-e", "tcp.flags", "-e", "ip.id"]
    flagged = tshark(wire, "-Y", "tcp.analysis.retransmission or tcp.analysis.duplicate_ack", *fields)
    sightings = {}
    for number, *packet in (line.split("\t") for line in tshark(wire, "-Y", "tcp", *fields)):
        sightings.setdefault(tuple(packet), []).append(number)
    copies = [numbers for numbers in sightings.values() if len(numbers) > 1]
    assert copies == [], f"the same packet (same IP id) more than once: frames {copies}; flagged: {flagged}"
    assert 0 < len(tshark(wire, "-T", "fields", "-e", "frame.number")) < len(trace["hops"])
    # The session keys ride along (a Decryption Secrets Block): Wireshark reads the client leg's
    # HTTP with no set-up, at the client and past the NAT
    path = miss[0].split(lab.www, 1)[1]
    legs = tshark(wire, "-Y", "http.request and tcp.dstport == 443", "-T", "fields", "-e", "ip.src", "-e",
                  "http.request.uri")
    assert {(lab.address("router", "internet"), path)} < {tuple(line.split("\t")) for line in legs}, legs
    # Every sighting (every captured hop: a kernel drop has no frame), one interface block per node:iface
    captured = [h for h in trace["hops"] if h["direction"] != "drop"]
    assert len(tshark(every, "-T", "fields", "-e", "frame.number")) == len(captured)
    interfaces = set(tshark(every, "-T", "fields", "-e", "frame.interface_name"))
    assert {"router:internet", "client:home", "cache:internet"} <= interfaces
    # the file says what it holds (its section header's comment)
    assert b"credentials masked with '*'" in wire.read_bytes()


def test_html_has_a_lane_per_node_stages_and_the_hop_table(lab, miss, tmp_path):
    _, visit, trace = miss
    page = tmp_path / "trace.html"
    hoplab("trace", "show", visit["trace_id"], "--format", "html", "-o", str(page), "--topology", lab.path)
    text = page.read_text()
    assert "<svg" in text and "NAT at router" in text and "routed at router: TTL" in text
    for node in {h["node"] for h in trace["hops"]}:
        assert f">{node}</text>" in text
    assert text.count("<tr>") == len(trace["hops"]) + len(trace["stages"]) + 2  # two header rows


def test_the_router_rewrites_the_macs_and_takes_one_off_the_ttl(lab, miss):
    _, _, trace = miss
    mac = {iface: lab.exec("router", "cat", f"/sys/class/net/{iface}/address").stdout.strip()
           for iface in ("home", "internet")}
    routed = [h for h in trace["hops"] if h["node"] == "router" and h["direction"] == "out" and "forwarded" in h]
    assert routed, "no routed hop at the router"
    for hop in routed:
        came_in, went_out = hop["forwarded"], hop
        assert went_out["ttl"] == came_in["ttl"] - 1, hop
        assert came_in["eth_dst"] == mac[came_in["iface"]]  # addressed to the router on the way in
        assert went_out["eth_src"] == mac[hop["iface"]]  # from the router's other side on the way out
    # the client's DNS query: routed and translated, both shown on the one hop
    query = next(h for h in routed if h["proto"] == "dns")
    assert "translated" in query and query["forwarded"]["iface"] == "home" and query["iface"] == "internet"


def test_a_renewed_visit_starts_with_arp_for_the_gateway(lab, miss):
    _, _, trace = miss
    gateway = lab.address("router", "home")
    client = [h for h in trace["hops"] if h["node"] == "client"]
    asked = next(i for i, h in enumerate(client) if h["summary"].startswith(f"ARP who-has {gateway}"))
    answered = next(i for i, h in enumerate(client) if h["summary"].startswith(f"ARP {gateway} is-at"))
    first_lookup = next(i for i, h in enumerate(client) if h["proto"] == "dns")
    assert asked < answered < first_lookup


def test_the_trace_tells_its_story_in_stages(lab, miss):
    _, _, trace = miss
    names = [s["name"] for s in trace["stages"]]
    for name in ("lease", "arp", "lookup", "connect", "tls", "request", "server work", "response"):
        assert name in names, names
    start = {s["name"]: s["start_ns"] for s in trace["stages"]}
    assert start["lease"] <= start["lookup"] < start["connect"] < start["tls"] < start["request"] \
        <= start["server work"] < start["response"]
    assert trace["complete"] and trace["gaps"] == []


def test_a_silent_agent_makes_the_trace_incomplete(lab):
    web = lab.topology.nodes_of("web")[-1].name
    lab.sh(web, "kill -STOP $(cat /run/hoplab/agent.pid)")
    try:
        result = hoplab("visit", f"{lab.www}/?paused={uuid.uuid4().hex}", "--trace", "--json",
                        "--topology", lab.path, check=False)
    finally:
        lab.sh(web, "kill -CONT $(cat /run/hoplab/agent.pid)")
    assert result.returncode == 1, result.stdout + result.stderr
    trace = json.loads(result.stdout)["trace"]
    assert not trace["complete"] and [g["node"] for g in trace["gaps"]] == [web]
    assert "did not start capturing" in trace["gaps"][0]["reason"]
    assert f"INCOMPLETE: {web}" in result.stderr


def test_trace_list_names_the_visit(lab, miss):
    _, visit, _ = miss
    assert visit["trace_id"] in hoplab("trace", "list", "--topology", lab.path).stdout


class Authorized:
    """A ControlStub whose every call carries the lab's token, as the host's CLI sends it."""

    def __init__(self, stub, token):
        self.stub, self.metadata = stub, (("authorization", f"Bearer {token}"),)

    def __getattr__(self, method):
        return lambda request, **kw: getattr(self.stub, method)(request, metadata=self.metadata, **kw)


@pytest.fixture
def control(lab):
    management = lab.topology.management
    with grpc.insecure_channel(f"{management.control}:{management.api_port}") as channel:
        yield Authorized(rpc.ControlStub(channel), lab.driver.control_token(lab.topology))


@pytest.mark.parametrize("request_, code", [
    (pb.StartCaptureRequest(filter="", max_seconds=5, max_packets=10), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.StartCaptureRequest(filter="ip", max_seconds=10**6, max_packets=10), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.StartCaptureRequest(filter="ip", max_seconds=5, max_packets=2**31), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.StartCaptureRequest(filter="ip and and", max_seconds=5, max_packets=10), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.StartCaptureRequest(filter="ip", max_seconds=5, max_packets=10, nodes=["nosuch"]), grpc.StatusCode.NOT_FOUND),
])
def test_hostile_capture_requests_are_refused(control, request_, code):
    with pytest.raises(grpc.RpcError) as error:
        control.StartCapture(request_, timeout=10)
    assert error.value.code() == code and error.value.details()


def test_unknown_or_malformed_traces_are_refused(control):
    with pytest.raises(grpc.RpcError) as error:
        control.GetTrace(pb.GetTraceRequest(trace_id="0" * 32), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        control.GetTrace(pb.GetTraceRequest(trace_id="'; DROP"), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as error:
        control.StreamRecords(pb.StreamRecordsRequest(capture_id="nope"), timeout=10).next()
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    # and the service is still there
    assert control.ListNodes(pb.ListNodesRequest(), timeout=10).nodes


IMAP_LOGIN = """
import imaplib, sys
box = imaplib.IMAP4(sys.argv[1], 143)
box.login("buyer", "hoplab")
box.logout()
"""


def test_an_imap_password_is_masked_in_streamed_records_unless_raw(lab, control):
    """The client logs in to its mailbox while the control service captures on it: the stream
    hands the LOGIN frame out with the password blanked (and the record marked), or as captured
    when the caller asks for raw frames."""
    mail = f"mail.{lab.topology.domain.name}"
    capture = control.StartCapture(pb.StartCaptureRequest(nodes=["client"], filter="tcp port 143", max_seconds=30,
                                                          max_packets=200), timeout=20)
    lab.exec("client", "python3", "-c", IMAP_LOGIN, mail)
    time.sleep(0.5)
    control.StopCapture(pb.StopCaptureRequest(id=capture.id), timeout=20)

    def login_frames(raw: bool) -> list[pb.Record]:
        records = control.StreamRecords(pb.StreamRecordsRequest(capture_id=capture.id, raw=raw), timeout=20)
        return [r for r in records if b" LOGIN buyer " in r.frame]

    [masked] = login_frames(raw=False)
    assert masked.masked and b'"hoplab"' not in masked.frame and b"LOGIN buyer ********" in masked.frame
    assert masked.summary.endswith("LOGIN buyer ***")
    [raw] = login_frames(raw=True)
    assert not raw.masked and b'LOGIN buyer "hoplab"' in raw.frame and len(raw.frame) == len(masked.frame)


def test_health_and_reflection_answer(lab):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    management = lab.topology.management
    token = (("authorization", f"Bearer {lab.driver.control_token(lab.topology)}"),)
    with grpc.insecure_channel(f"{management.control}:{management.api_port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="hoplab.v1.Control"),
                                                          timeout=10)  # health needs no token
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10, metadata=token)
        services = {s.name for s in next(answers).list_services_response.service}
        assert {"hoplab.v1.Control", "grpc.health.v1.Health"} <= services
        with pytest.raises(grpc.RpcError) as refused:  # reflection only with the token
            next(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


# A lab node's own attempt at the Control API, with the node's Python and the hoplab stubs the
# node runs its agent with: prints the status code it got.
CALL_CONTROL = """
import sys, grpc
from hoplab.v1 import control_pb2 as pb, control_pb2_grpc as rpc
target, token = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(target) as channel:
    metadata = (("authorization", "Bearer " + token),) if token else None
    try:
        rpc.ControlStub(channel).ListNodes(pb.ListNodesRequest(), timeout=5, metadata=metadata)
        print("ANSWERED")
    except grpc.RpcError as exc:
        print(exc.code().name)
"""


@pytest.mark.parametrize("node", ["client", "web1"])
def test_a_lab_node_calling_control_is_refused_and_the_host_is_answered(lab, node):
    import sys

    management = lab.topology.management
    python = "python3" if lab.driver.name == "docker" else sys.executable  # netns: the runtime's Python
    token = lab.driver.control_token(lab.topology)

    def attempt(port, given):
        return lab.exec(node, python, "-c", CALL_CONTROL, f"{management.control}:{port}", given).stdout.strip()

    assert attempt(management.api_port, "") == "UNAUTHENTICATED"
    assert attempt(management.api_port, "0" * 64) == "UNAUTHENTICATED"
    assert attempt(management.api_port, token) == "PERMISSION_DENIED"  # even a stolen token: not the host
    assert attempt(management.port, token) == "UNIMPLEMENTED"  # the agents' door has no Control API
    # the agents are attached all the same, and the host's CLI is answered
    result = hoplab("trace", "list", "--topology", lab.path)
    assert result.returncode == 0, result.stderr
    from hoplab.control.client import ControlClient

    assert {n.name for n in ControlClient.of(lab.driver, lab.topology).nodes()} >= {"client", "web1"}


def test_the_edge_logs_which_connection_carried_the_trace(lab, miss):
    _, visit, trace = miss
    lines = [json.loads(line) for line in lab.exec("cache", "cat", "/run/hoplab/access.json").stdout.splitlines()]
    (line,) = [entry for entry in lines if visit["trace_id"] in entry["traceparent"]]
    # the client's connection as the edge saw it: from the router's WAN address, the NAT's doing
    assert line["src"].startswith(lab.address("router", "internet") + ":")
    assert line["dst"] == f"{lab.topology.domain.records['www']}:443" and "MISS" in line["text"]
    edge_hops = [h for h in trace["hops"] if h["node"] == "cache" and h["iface"] == "internet"]
    assert any(h["src"] == line["src"] for h in edge_hops)


DAEMONS = {"cache": "nginx", "lb": "haproxy", "web": "gunicorn", "db": "postgres"}


def test_each_server_names_its_listener_and_the_process_behind_it(lab, miss):
    _, _, trace = miss
    taken = {}
    for hop in trace["hops"]:
        node = lab.topology.nodes.get(hop["node"])
        service = node.service if node else None
        if "accepted" in hop and service in DAEMONS:
            taken.setdefault(service, hop["accepted"])
    assert set(taken) == set(DAEMONS), taken
    for service, accepted in taken.items():
        assert DAEMONS[service] in accepted["listeners"], accepted  # the kernel's own view of the socket
        assert accepted["backlog"] > 0 and accepted["status"] in ("accepted", "not_seen", "in_accept_queue")
        if accepted["pid"]:
            assert DAEMONS[service] in accepted["process"], accepted


def test_the_kernel_names_the_process_that_accepted_each_servers_connection(lab, miss):
    """The host's eBPF tracer saw each server's accept(): the edge's nginx worker, HAProxy, a
    gunicorn worker and the postmaster (postgres accepts in the postmaster, then forks the
    backend). The pid it names is that daemon's process in the node, and holds the listener."""
    _, _, trace = miss
    assert trace["kernel_view"] == "on", trace["kernel_view"]  # root on the host: eBPF runs (see test_chaos)
    taken = {}
    for hop in trace["hops"]:
        node = lab.topology.nodes.get(hop["node"])
        if node and node.service in DAEMONS and "accepted" in hop:
            taken.setdefault(node.service, (hop["node"], hop["accepted"]))
    assert set(taken) == set(DAEMONS), taken
    for service, (node, accepted) in taken.items():
        pid, process = accepted["pid"], accepted["process"]
        print(f"{node}: {process} {pid} (thread {accepted['tid']}) on {accepted['listener']}; listeners "
              f"{accepted['listeners']}")
        assert accepted["source"] == "kernel accept probe" and accepted["status"] == "accepted", accepted
        assert pid > 0 and 0 <= accepted["after_syn_ms"] < 5000 and accepted["tid"] > 0, accepted
        # what the node itself says about that pid: its command name, and the daemon's command line
        comm = lab.exec(node, "cat", f"/proc/{pid}/comm").stdout.strip()
        cmdline = lab.exec(node, "cat", f"/proc/{pid}/cmdline").stdout.replace("\0", " ")
        assert comm == process and DAEMONS[service] in cmdline, (node, accepted, comm, cmdline)
        # the socket snapshot agrees: that process holds the listening socket the SYN came to
        assert f"{process} {pid}" in accepted["listeners"].split(", "), (node, accepted)
        assert accepted["backlog"] > 0 and accepted["accept_queue"] >= 0, accepted
    # postgres: the postmaster, not the backend that served the query (a child it forked for it)
    db_node, db = taken["db"]
    parent = lab.sh(db_node, f"awk '/^PPid:/ {{print $2}}' /proc/{db['pid']}/status").stdout.strip()
    assert lab.exec(db_node, "cat", f"/proc/{parent}/comm").stdout.strip() != "postgres", db


def test_a_closed_port_is_refused_with_a_rst_and_says_why(lab):
    result = hoplab("visit", f"https://www.{lab.topology.domain.name}:8443/", "--trace", "--json",
                    "--topology", lab.path, check=False)
    assert result.returncode == 1  # the visit failed: connection refused
    data = json.loads(result.stdout)
    # the visit names the socket's error and the packet that caused it: the edge's RST
    assert data["visit"]["failure"] == "connection refused (ECONNREFUSED)", data["visit"]
    assert data["visit"]["cause"].split()[2:4] == ["cache:internet", "out"], data["visit"]["cause"]
    assert "RST" in data["visit"]["cause"] and data["visit"]["cause"].endswith("[refused: no listener on 8443]")
    resets = [h for h in data["trace"]["hops"] if h["node"] == "cache" and "RST" in h["summary"]]
    assert resets and resets[0]["refused"] == "no listener on 8443", resets

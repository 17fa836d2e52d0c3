"""Trace v2 on frames shaped like a real page load (no lab needed): each hop's layers decoded
from its frame, the router's MAC rewrite and TTL decrement, the story's stages, each wire
packet once in the pcapng (tshark reads it back with no retransmission or duplicate-ACK flag),
and what makes a trace incomplete."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from hoplab.trace import render
from hoplab.trace.assemble import assemble
from hoplab.trace.decode import decode
from hoplab.v1 import control_pb2 as pb
from test_decode import client_hello, dns_msg, eth, ip, ipv4, tcp, udp

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MAC = {"client": bytes.fromhex("020000000190"), "router.home": bytes.fromhex("020000000001"),
       "router.internet": bytes.fromhex("02000000fe01"), "dns": bytes.fromhex("020000000053"),
       "cache": bytes.fromhex("020000000080")}
CLIENT_IP, WAN_IP, DNS_IP, EDGE_IP = "192.168.50.190", "198.51.100.1", "198.51.100.53", "198.51.100.80"


def record(node, iface, direction, ts, frame) -> pb.Record:
    """A record as an agent makes it: decoded fields plus the frame itself."""
    p = decode(frame)
    end = lambda address, port, mac: f"{address}:{port}" if address and port is not None else (address or mac or "")
    return pb.Record(node=node, iface=iface, direction=direction, ts_ns=ts, proto=p.proto,
                     src=end(p.src_ip, p.src_port, p.eth_src), dst=end(p.dst_ip, p.dst_port, p.eth_dst),
                     summary=p.summary, tcp_flags=p.tcp_flags or "", tcp_seq=p.tcp_seq or 0, ip_id=p.ip_id or 0,
                     payload_hash=p.payload_hash or "", keys=p.keys, frame=frame, length=len(frame))


def arp(op: int, sender_mac: bytes, sender: str, target: str, dst_mac: bytes) -> bytes:
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sender_mac + ip(sender) + b"\0" * 6 + ip(target)
    return eth(body, ethertype=0x0806, src=sender_mac, dst=dst_mac)


def leg(src_mac, dst_mac, src, dst, sport, dport, ttl, ident, **tcp_fields) -> bytes:
    return eth(ipv4(src, dst, 6, tcp(sport, dport, **tcp_fields), ident=ident, ttl=ttl), src=src_mac, dst=dst_mac)


def routed(node_records, name, ts, frame_home, frame_internet):
    """The same packet leaving the client, crossing the router (NAT) and reaching the edge."""
    node_records += [record("client", "home", "out", ts, frame_home), record("router", "home", "in", ts + 1, frame_home),
                     record("router", "internet", "out", ts + 2, frame_internet),
                     record("cache", "internet", "in", ts + 3, frame_internet)]


def page_load() -> list[pb.Record]:
    c, rh, ri, d, e = MAC["client"], MAC["router.home"], MAC["router.internet"], MAC["dns"], MAC["cache"]
    records = [record("client", "home", "out", 100, arp(1, c, CLIENT_IP, "192.168.50.1", b"\xff" * 6)),
               record("client", "home", "in", 110, arp(2, rh, "192.168.50.1", CLIENT_IP, c))]
    query = dns_msg(0x1a2b, "www.example.test", 1)
    records += [record("client", "home", "out", 200, eth(ipv4(CLIENT_IP, DNS_IP, 17, udp(5353, 53, query), ttl=64,
                                                            ident=1), src=c, dst=rh)),
                record("router", "home", "in", 201, eth(ipv4(CLIENT_IP, DNS_IP, 17, udp(5353, 53, query), ttl=64,
                                                           ident=1), src=c, dst=rh)),
                record("router", "internet", "out", 202, eth(ipv4(WAN_IP, DNS_IP, 17, udp(5353, 53, query), ttl=63,
                                                                ident=1), src=ri, dst=d))]
    hello = client_hello("www.example.test")
    data, page = bytes([23, 3, 3, 0, 5]) + b"hello", bytes([23, 3, 3, 0, 4]) + b"page"
    # the client's side of one TCP connection, with consistent sequence and acknowledgement numbers
    steps = [("SYN", b"", 300, 1000, 0), ("ACK", b"", 400, 1001, 5001), ("PSH,ACK", hello, 500, 1001, 5001),
             ("PSH,ACK", data, 700, 1001 + len(hello), 5001),
             ("FIN,ACK", b"", 900, 1001 + len(hello) + len(data), 5001 + len(page))]
    for ident, (flags, payload, ts, seq, ack) in enumerate(steps, start=10):
        routed(records, flags, ts,
               leg(c, rh, CLIENT_IP, EDGE_IP, 40000, 443, 64, ident, payload=payload, seq=seq, ack=ack, flags=flags),
               leg(ri, e, WAN_IP, EDGE_IP, 41000, 443, 63, ident, payload=payload, seq=seq, ack=ack, flags=flags))
    back = [("SYN,ACK", b"", 350, 5000, 1001), ("PSH,ACK", page, 800, 5001, 1001 + len(hello) + len(data))]
    for ident, (flags, payload, ts, seq, ack) in enumerate(back, start=50):
        to_wan = leg(e, ri, EDGE_IP, WAN_IP, 443, 41000, 64, ident, payload=payload, seq=seq, ack=ack, flags=flags)
        to_client = leg(rh, c, EDGE_IP, CLIENT_IP, 443, 40000, 63, ident, payload=payload, seq=seq, ack=ack,
                        flags=flags)
        records += [record("cache", "internet", "out", ts, to_wan), record("router", "internet", "in", ts + 1, to_wan),
                    record("router", "home", "out", ts + 2, to_client), record("client", "home", "in", ts + 3, to_client)]
    # behind the edge: its request to the balancer, tied by the trace id
    request = f"GET / HTTP/1.1\r\nHost: www.example.test\r\ntraceparent: 00-{TRACE}-00f067aa0ba902b7-01\r\n\r\n"
    origin = eth(ipv4("172.31.50.80", "172.31.50.10", 6, tcp(5000, 80, request.encode(), flags="PSH,ACK"), ident=7),
                 src=e, dst=bytes.fromhex("020000000010"))
    records += [record("cache", "origin", "out", 720, origin), record("lb", "origin", "in", 721, origin)]
    return records


@pytest.fixture
def trace() -> pb.Trace:
    return assemble(TRACE, "https://www.example.test/", "c1", page_load(), {"client"})


def test_every_hop_carries_its_macs_ttl_and_ip_id(trace):
    dns_out = next(h for h in trace.hops if h.record.node == "client" and h.record.proto == "dns")
    assert (dns_out.layers.eth_src, dns_out.layers.eth_dst) == ("02:00:00:00:01:90", "02:00:00:00:00:01")
    assert (dns_out.layers.ttl, dns_out.layers.ip_id) == (64, 1)
    assert render.to_json(trace)["hops"][0]["eth_src"] == "02:00:00:00:01:90"


def test_the_router_rewrites_the_macs_and_takes_one_off_the_ttl(trace):
    out = next(h for h in trace.hops if h.record.node == "router" and h.record.iface == "internet"
               and h.record.direction == "out" and h.record.proto == "dns")
    assert out.forwarded.iface == "home" and out.forwarded.ttl == 64 and out.layers.ttl == 63
    assert (out.forwarded.eth_src, out.forwarded.eth_dst) == ("02:00:00:00:01:90", "02:00:00:00:00:01")
    assert (out.layers.eth_src, out.layers.eth_dst) == ("02:00:00:00:fe:01", "02:00:00:00:00:53")
    assert out.HasField("translated")  # the NAT rewrite beside it
    note = render.notes(out)
    assert "TTL 64 => 63" in note and "routed home > internet" in note and "[NAT" in note
    table = render.to_table(trace)
    assert "TTL 64 => 63" in table and "02:00:00:00:fe:01 > 02:00:00:00:00:53" in table
    assert "routed at router: TTL 64" in render.to_html(trace)


def test_arp_for_the_gateway_is_part_of_the_story(trace):
    arp_hops = [h.record.summary for h in trace.hops if h.record.proto == "arp"]
    assert arp_hops == ["ARP who-has 192.168.50.1 tell 192.168.50.190", "ARP 192.168.50.1 is-at 02:00:00:00:00:01"]


def test_stages_follow_the_page_load_in_order(trace):
    names = [s.name for s in trace.stages]
    assert names == ["arp", "lookup", "connect", "tls", "request", "server work", "response", "close"]
    by_name = {s.name: s for s in trace.stages}
    assert by_name["connect"].start_ns == 300 and by_name["connect"].note == f"to {EDGE_IP}:443"
    assert by_name["arp"].note == "who has 192.168.50.1" and by_name["arp"].hops == 2
    assert by_name["request"].start_ns == 700 and by_name["server work"].start_ns == 721
    assert by_name["response"].end_ns == 803 and by_name["close"].start_ns == 900
    for stage in trace.stages:
        assert trace.hops[stage.first_hop].record.ts_ns == stage.start_ns <= stage.end_ns
    text = render.to_table(trace)
    assert text.index("stages") < text.index("NODE:IFACE") and "server work" in text
    assert [s["name"] for s in render.to_json(trace)["stages"]] == names


def test_a_cached_page_has_no_server_work():
    records = [r for r in page_load() if r.node != "lb" and r.iface != "origin"]
    trace = assemble(TRACE, "", "c1", records, {"client"})
    assert "server work" not in [s.name for s in trace.stages]


def test_the_pcapng_holds_each_wire_packet_once(trace):
    every = {h.record.node for h in trace.hops}
    once = render.wire_packets(trace)
    assert len(once) < len(trace.hops) and {h.record.node for h in once} <= every
    keys = [(h.record.src, h.record.dst, h.layers.ip_id, h.record.tcp_seq, h.record.tcp_flags) for h in once
            if h.layers.ttl]
    assert len(keys) == len(set(keys))


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is the reference")
def test_tshark_flags_no_retransmission_or_duplicate_ack(trace, tmp_path):
    def flagged(data: bytes) -> list[str]:
        path = tmp_path / "t.pcapng"
        path.write_bytes(data)
        out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y",
                              "tcp.analysis.retransmission or tcp.analysis.duplicate_ack", "-T", "fields",
                              "-e", "frame.number"],
                             capture_output=True, text=True, check=True).stdout
        return out.split()

    assert flagged(render.to_pcapng(trace)) == []
    assert flagged(render.to_pcapng(trace, every_hop=True))  # what every sighting looks like to Wireshark


def test_gaps_make_a_trace_incomplete_in_every_format(trace):
    trace.gaps.add(node="web2", reason="its capture failed: no such device")
    assert render.to_json(trace)["complete"] is False
    assert "INCOMPLETE: web2: its capture failed" in render.to_table(trace)
    assert "Incomplete trace" in render.to_html(trace)


def edge_sockets(with_connection: bool = True) -> dict:
    """The edge's socket snapshot (hoplab.control.sockets.snapshot's shape) at the capture's end."""
    owners = [{"pid": 10, "command": "nginx", "cmdline": "nginx: master"},
              {"pid": 11, "command": "nginx", "cmdline": "nginx: worker process"}]
    connections = [{"state": "ESTABLISHED", "local_address": EDGE_IP, "local_port": 443, "remote_address": WAN_IP,
                    "remote_port": 41000, "inode": 77, "uid": 33, "owners": [owners[1]]}] if with_connection else []
    return {"source": "netlink", "listeners": [{"address": "0.0.0.0", "port": 443, "backlog": 511, "accept_queue": 0,
                                                "syn_queue": 0, "inode": 5, "uid": 0, "v6only": False,
                                                "owners": owners}],
            "connections": connections, "counters": {"ListenOverflows": 2}}


def test_the_syn_a_server_took_names_the_process_that_accepted_it():
    trace = assemble(TRACE, "", "c1", page_load(), {"client"}, sockets={"cache": edge_sockets()})
    syn = next(h for h in trace.hops if h.record.node == "cache" and h.record.tcp_flags == "SYN")
    a = syn.accepted
    assert (a.listener, a.backlog, a.pid, a.process, a.status) == ("0.0.0.0:443", 511, 11, "nginx", "accepted")
    assert a.listeners == "nginx 10, nginx 11" and a.listen_overflows == 2
    assert "accepted by nginx pid 11 on 0.0.0.0:443, backlog 511" in render.to_table(trace)
    assert any(h.get("accepted", {}).get("process") == "nginx" for h in render.to_json(trace)["hops"])
    gone = assemble(TRACE, "", "c1", page_load(), {"client"}, sockets={"cache": edge_sockets(False)})
    syn = next(h for h in gone.hops if h.record.node == "cache" and h.record.tcp_flags == "SYN")
    assert syn.accepted.status == "not_seen" and "one of nginx 10, nginx 11" in render.notes(syn)


def edge_accept(pid: int, ts: int = 405, **fields) -> pb.KernelAccept:
    """The kernel tracer's word on the edge taking the page load's connection (its SYN came in at
    303, the handshake's ACK at 403)."""
    values = dict(ts_ns=ts, node="cache", pid=pid, host_pid=3000 + pid, tid=pid, process="nginx",
                  local=f"{EDGE_IP}:443", remote=f"{WAN_IP}:41000", listener="0.0.0.0:443", backlog=511,
                  accept_queue=0)
    return pb.KernelAccept(**{**values, **fields})


def test_the_kernels_accept_names_the_process_over_the_snapshots_guess():
    # The connection was closed when the capture ended: the snapshot names only the listener's
    # owners; the kernel saw worker 12 call accept(). A later accept of the same tuple, or one of
    # another connection or node, is not this SYN's.
    accepts = [edge_accept(13, ts=5_000_000), edge_accept(12), edge_accept(14, remote=f"{WAN_IP}:41001"),
               edge_accept(15, node="lb")]
    trace = assemble(TRACE, "", "c1", page_load(), {"client"}, sockets={"cache": edge_sockets(False)},
                     accepts=accepts)
    syn = next(h for h in trace.hops if h.record.node == "cache" and h.record.tcp_flags == "SYN")
    a = syn.accepted
    assert (a.pid, a.tid, a.process, a.status, a.source, a.accepted_ns) == (12, 12, "nginx", "accepted",
                                                                           "kernel accept probe", 405)
    assert (a.listener, a.backlog, a.accept_queue) == ("0.0.0.0:443", 511, 0)
    assert a.listeners == "nginx 10, nginx 11" and a.listen_overflows == 2  # still the snapshot's
    table = render.to_table(trace)
    assert ("accepted by nginx pid 12 (thread 12, 0.000 ms after the SYN) on 0.0.0.0:443, backlog 511, "
            "accept queue 0, SYN queue 0, listen overflows 2; kernel accept probe]") in table
    (taken,) = [h["accepted"] for h in render.to_json(trace)["hops"] if "accepted" in h]
    assert (taken["pid"], taken["source"], taken["tid"], taken["after_syn_ms"]) == (12, "kernel accept probe", 12,
                                                                                   0.0)
    assert "kernel accept probe" in render.to_html(trace)
    # Even where the snapshot held the socket, the kernel's accept is the word taken.
    both = assemble(TRACE, "", "c1", page_load(), {"client"}, sockets={"cache": edge_sockets()}, accepts=accepts)
    assert next(h for h in both.hops if h.HasField("accepted")).accepted.pid == 12


def test_without_the_kernels_accept_the_snapshot_names_it_and_says_so():
    trace = assemble(TRACE, "", "c1", page_load(), {"client"}, sockets={"cache": edge_sockets()},
                     accepts=[edge_accept(12, node="lb")])
    a = next(h for h in trace.hops if h.HasField("accepted")).accepted
    assert (a.pid, a.source, a.accepted_ns) == (11, "socket snapshot", 0)
    assert "socket snapshot]" in render.to_table(trace)


def test_the_kernels_accept_alone_names_the_process_when_the_node_sent_no_snapshot():
    # The agent's snapshot never came (its node's agent failed), and the thread was already in
    # accept() when the tracer attached, so the kernel did not see the listener either.
    trace = assemble(TRACE, "", "c1", page_load(), {"client"},
                     accepts=[edge_accept(12, listener="", backlog=-1, accept_queue=-1)])
    a = next(h for h in trace.hops if h.HasField("accepted")).accepted
    assert (a.pid, a.process, a.source, a.listener, a.listeners) == (12, "nginx", "kernel accept probe", "", "")
    note = render.notes(next(h for h in trace.hops if h.HasField("accepted")))
    assert note == "  [accepted by nginx pid 12 (thread 12, 0.000 ms after the SYN); kernel accept probe]"


def test_a_rst_for_a_port_nobody_listens_on_says_so():
    c, rh, ri, e = MAC["client"], MAC["router.home"], MAC["router.internet"], MAC["cache"]
    records = []
    routed(records, "SYN", 100, leg(c, rh, CLIENT_IP, EDGE_IP, 40001, 9, 64, 90, flags="SYN"),
           leg(ri, e, WAN_IP, EDGE_IP, 41001, 9, 63, 90, flags="SYN"))
    records.append(record("cache", "internet", "out", 110,
                          leg(e, ri, EDGE_IP, WAN_IP, 9, 41001, 64, 0, flags="RST,ACK", seq=0, ack=1)))
    trace = assemble(TRACE, "", "c1", records, {"client"}, sockets={"cache": edge_sockets()})
    rst = next(h for h in trace.hops if "RST" in h.record.tcp_flags)
    assert rst.refused == "no listener on 9"
    assert not next(h for h in trace.hops if h.record.node == "cache" and h.record.tcp_flags == "SYN").HasField(
        "accepted")
    assert "[refused: no listener on 9]" in render.to_table(trace)


def test_a_rst_that_closes_an_open_connection_is_no_refusal():
    # HAProxy ends its server-side connection with a RST once the reply is in: the connection
    # was accepted (SYN, SYN-ACK), so nothing was refused, whatever listens on its port now.
    c, rh, ri, e = MAC["client"], MAC["router.home"], MAC["router.internet"], MAC["cache"]
    records = []
    routed(records, "SYN", 100, leg(c, rh, CLIENT_IP, EDGE_IP, 40001, 9, 64, 90, flags="SYN"),
           leg(ri, e, WAN_IP, EDGE_IP, 41001, 9, 63, 90, flags="SYN"))
    records.append(record("cache", "internet", "out", 105,
                          leg(e, ri, EDGE_IP, WAN_IP, 9, 41001, 64, 0, flags="SYN,ACK", seq=0, ack=1)))
    records.append(record("cache", "internet", "out", 110,
                          leg(e, ri, EDGE_IP, WAN_IP, 9, 41001, 64, 0, flags="RST,ACK", seq=1, ack=1)))
    trace = assemble(TRACE, "", "c1", records, {"client"}, sockets={"cache": edge_sockets()})
    rst = next(h for h in trace.hops if "RST" in h.record.tcp_flags)
    assert rst.refused == "" and "refused" not in render.to_table(trace)


def test_a_proxys_failed_upstream_attempt_and_its_drop_join_the_trace():
    # The edge cannot reach the balancer (a firewall drops its SYN): no trace id ever crosses,
    # but the edge opened that connection while serving the trace's request.
    records = [r for r in page_load() if r.iface != "origin"]
    syn = eth(ipv4("172.31.50.80", "172.31.50.10", 6, tcp(5001, 80, flags="SYN"), ident=8), src=MAC["cache"],
              dst=bytes.fromhex("020000000010"))
    health = eth(ipv4("172.31.50.10", "172.31.50.11", 6, tcp(6000, 8080, seq=777, flags="SYN"), ident=9),
                 src=bytes.fromhex("020000000010"), dst=bytes.fromhex("020000000011"))
    records += [record("cache", "origin", "out", 720, syn), record("lb", "origin", "out", 725, health)]
    drops = [pb.KernelDrop(ts_ns=721, node="cache", iface="origin", src="172.31.50.80:5001", dst="172.31.50.10:80",
                           proto="tcp", reason="NETFILTER_DROP", location="nft_do_chain",
                           words="dropped by a firewall rule (netfilter)"),
             pb.KernelDrop(ts_ns=726, node="web1", src="172.31.50.10:6000", dst="172.31.50.11:8080", proto="tcp",
                           reason="NO_SOCKET", words="no socket is listening there")]
    trace = assemble(TRACE, "", "c1", records, {"client"}, drops=drops)
    dropped = [h for h in trace.hops if h.record.direction == "drop"]
    assert [(h.record.node, h.record.keys["drop_reason"]) for h in dropped] == [("cache", "NETFILTER_DROP")]
    assert "firewall" in dropped[0].record.summary
    assert any(h.record.node == "cache" and h.record.iface == "origin" for h in trace.hops)  # the attempt itself
    assert not any(h.record.node == "lb" for h in trace.hops)  # the balancer's own health check is not the trace's
    assert trace.stages[-1].name == "drop" or "drop" in [s.name for s in trace.stages]


def test_a_drop_on_the_way_out_was_never_captured_but_joins_the_trace_by_time():
    # The firewall drops the edge's packet in OUTPUT, before any capture could see it.
    records = [r for r in page_load() if r.iface != "origin"]
    drop = pb.KernelDrop(ts_ns=721, node="cache", src="172.31.50.80:5002", dst="172.31.50.10:80", proto="tcp",
                         reason="NETFILTER_DROP", words="dropped by a firewall rule (netfilter)")
    late = pb.KernelDrop(ts_ns=5000, node="cache", src="172.31.50.80:5003", dst="172.31.50.10:80", proto="tcp",
                         reason="NETFILTER_DROP", words="dropped by a firewall rule (netfilter)")
    trace = assemble(TRACE, "", "c1", records, {"client"}, drops=[drop, late])
    assert [h.record.ts_ns for h in trace.hops if h.record.direction == "drop"] == [721]  # not after it served


def test_a_connection_tied_by_timing_alone_is_named_on_its_stage():
    # A service that does not forward traceparent (here the edge, whose upstream SYN carries
    # none): the trace still ties the connection, and says how it knows.
    records = [r for r in page_load() if r.iface != "origin"]
    syn = eth(ipv4("172.31.50.80", "172.31.50.10", 6, tcp(5001, 80, seq=4242, flags="SYN"), ident=8), src=MAC["cache"],
              dst=bytes.fromhex("020000000010"))
    records.append(record("cache", "origin", "out", 720, syn))
    trace = assemble(TRACE, "", "c1", records, {"client"})
    noted = [s for s in trace.stages if "tied by timing" in s.note]
    assert len(noted) == 1 and "cache 172.31.50.80:5001 -> 172.31.50.10:80" in noted[0].note
    assert noted[0].name == "request"  # no stage spans it (an edge hop is no server work): the one before
    assert "tied by timing, no traceparent" in render.to_table(trace)
    plain = assemble(TRACE, "", "c1", [r for r in page_load() if r.iface != "origin"], {"client"})
    assert not any("tied by timing" in s.note for s in plain.stages)


def test_a_refused_bind_at_the_server_joins_the_trace_of_the_datagrams_it_should_have_taken():
    # The game's port is held by another process: the moves arrive, nothing answers, and each
    # restart of the real server is refused its port. Only the refusal on the port the trace's
    # datagrams went to, at the node they reached, belongs to the trace.
    game, move = "198.51.100.70", b'{"seq": 0, "move": "up"}'
    c, rh, ri = MAC["client"], MAC["router.home"], MAC["router.internet"]
    home = eth(ipv4(CLIENT_IP, game, 17, udp(40000, 7777, move), ident=5), src=c, dst=rh)
    internet = eth(ipv4(WAN_IP, game, 17, udp(40000, 7777, move), ident=5, ttl=63), src=ri,
                   dst=bytes.fromhex("020000000070"))
    records = [record("client", "home", "out", 100, home), record("router", "home", "in", 101, home),
               record("router", "internet", "out", 102, internet), record("game", "internet", "in", 103, internet)]

    def refused(ts, node, address, proto="udp"):
        return pb.KernelBind(ts_ns=ts, node=node, pid=41, host_pid=4100, process="python3", address=address,
                             proto=proto, error="EADDRINUSE", words="address already in use")

    binds = [refused(150, "game", "0.0.0.0:7777"), refused(160, "game", "0.0.0.0:9999"),
             refused(170, "web1", "0.0.0.0:7777"), refused(180, "game", "0.0.0.0:7777", "tcp")]
    trace = assemble(TRACE, "udp://game.example.test:7777", "c1", records, {"client"}, binds=binds)
    (hop,) = [h for h in trace.hops if h.record.direction == "bind"]
    assert (hop.record.node, hop.record.ts_ns, hop.record.src, hop.record.keys["bind_error"]) == (
        "game", 150, "0.0.0.0:7777", "EADDRINUSE")
    assert hop.record.summary == "REFUSED: address already in use (EADDRINUSE) for 0.0.0.0:7777/udp, asked by python3 (pid 41)"
    stage = next(s for s in trace.stages if s.name == "bind")
    assert "EADDRINUSE on 0.0.0.0:7777" in stage.note
    assert next(s for s in trace.stages if s.name == "datagrams").hops == 4  # the refusal is no datagram
    (row,) = [line for line in render.to_table(trace).splitlines() if "REFUSED" in line]
    assert row.split()[1:3] == ["game", "bind"] and "0.0.0.0:7777/udp" in row
    assert "REFUSED" in render.to_html(trace) and render.to_pcapng(trace)  # no frame: left out of the capture file

    from hoplab.play import Play, cause

    lost = Play(node="client", target="udp://game.example.test:7777", sent=1, answered=0, lost=1, lost_seqs=[0])
    assert "game bind REFUSED: address already in use (EADDRINUSE) for 0.0.0.0:7777/udp" in cause(trace, lost)
    assert cause(trace, Play(node="client", target="", sent=1, answered=1)) == ""  # nothing lost, no cause

"""Trace assembly on records shaped like the agents' (no lab needed)."""

from hoplab.control.conntrack import parse
from hoplab.trace.assemble import assemble
from hoplab.v1 import control_pb2 as pb

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT, WAN, EDGE = "192.168.50.190:40000", "198.51.100.1:40000", "198.51.100.80:443"


def rec(node, iface, direction, ts, src, dst, seq, payload="h1", summary="", **keys):
    return pb.Record(node=node, iface=iface, direction=direction, ts_ns=ts, src=src, dst=dst, proto="tcp",
                     tcp_flags="PSH,ACK", tcp_seq=seq, payload_hash=payload, summary=summary, keys=keys)


def visit_records():
    return [
        # the client's request, through the NAT, to the edge
        rec("client", "home", "out", 10, CLIENT, EDGE, 1),
        rec("router", "home", "in", 11, CLIENT, EDGE, 1),
        rec("router", "internet", "out", 12, WAN, EDGE, 1),
        rec("cache", "internet", "in", 13, WAN, EDGE, 1),
        # the edge's hand-off to the balancer: another connection, tied by the trace id
        rec("cache", "origin", "out", 20, "172.31.50.80:5000", "172.31.50.10:80", 7, "h2",
            traceparent=f"00-{TRACE}-00f067aa0ba902b7-01"),
        rec("lb", "origin", "in", 21, "172.31.50.80:5000", "172.31.50.10:80", 7, "h2",
            traceparent=f"00-{TRACE}-00f067aa0ba902b7-01"),
        # the balancer's own health check: not part of the visit
        rec("lb", "origin", "out", 15, "172.31.50.10:6000", "172.31.50.11:8080", 9, "h3"),
        rec("web1", "origin", "in", 16, "172.31.50.10:6000", "172.31.50.11:8080", 9, "h3"),
    ]


def test_flows_are_joined_across_the_nat_and_by_trace_id():
    trace = assemble(TRACE, "https://www.example.test/", "c1", visit_records(), {"client"})
    seen = [(h.record.node, h.record.iface, h.record.direction) for h in trace.hops]
    assert seen == [("client", "home", "out"), ("router", "home", "in"), ("router", "internet", "out"),
                    ("cache", "internet", "in"), ("cache", "origin", "out"), ("lb", "origin", "in")]
    nat = trace.hops[2]
    assert (nat.translated.before.src, nat.translated.after.src) == (CLIENT, WAN)
    assert not trace.hops[0].HasField("translated")


def test_conntrack_is_taken_first_hand():
    translation = pb.Translation(before=pb.Tuple(src=CLIENT, dst=EDGE, proto="tcp"),
                                 after=pb.Tuple(src=WAN, dst=EDGE, proto="tcp"))
    records = [r for r in visit_records() if not (r.node == "router" and r.direction == "in")]
    trace = assemble(TRACE, "", "c1", records, {"client"}, [translation])
    nat = next(h for h in trace.hops if h.record.node == "router")
    assert nat.translated.before.src == CLIENT and nat.translated.after.src == WAN


CONNTRACK_XML = """<?xml version="1.0" encoding="utf-8"?>
<conntrack>
<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>192.168.50.190</src>
<dst>198.51.100.80</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>40000</sport><dport>443</dport>
</layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>198.51.100.80</src>
<dst>198.51.100.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>443</sport><dport>40000</dport>
</layer4></meta></flow>
<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>198.51.100.53</src>
<dst>198.51.100.1</dst></layer3><layer4 protonum="17" protoname="udp"><sport>53</sport><dport>999</dport>
</layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>198.51.100.1</src>
<dst>198.51.100.53</dst></layer3><layer4 protonum="17" protoname="udp"><sport>999</sport><dport>53</dport>
</layer4></meta></flow>
</conntrack>"""


def test_conntrack_xml_gives_only_translated_connections():
    (only,) = parse(CONNTRACK_XML)
    assert (only.before.src, only.before.dst) == (CLIENT, EDGE)
    assert (only.after.src, only.after.dst, only.after.proto) == (WAN, EDGE, "tcp")
    assert parse("not xml") == []


def test_a_proxys_log_ties_an_opaque_connection_to_the_trace():
    tls_side = [rec("cache", "internet", "in", 13, WAN, EDGE, 1, "tls"),
                rec("cache", "internet", "out", 14, EDGE, WAN, 5, "tls2")]
    other = [rec("cache", "internet", "in", 30, "198.51.100.1:41000", EDGE, 3, "tls3")]
    logs = {"cache": [pb.LogLine(src=WAN, dst=EDGE, traceparent=f"00-{TRACE}-00f067aa0ba902b7-01"),
                      pb.LogLine(src="198.51.100.1:41000", dst=EDGE, traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01")]}
    trace = assemble(TRACE, "", "c1", tls_side + other, set(), (), logs)
    assert [h.record.ts_ns for h in trace.hops] == [13, 14]

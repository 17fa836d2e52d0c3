"""The frame decoder: real frames built byte by byte, decoded field by field; and the promise
that no input, however broken, makes it raise or hang."""

from __future__ import annotations

import hashlib
import ipaddress
import random
import struct

import pytest

from hoplab.trace.decode import decode

CLIENT_MAC = bytes.fromhex("020000000190")
ROUTER_MAC = bytes.fromhex("aabbccddeeff")
BCAST = b"\xff" * 6


# ---------------------------------------------------------------------------- frame builders

def ip(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def eth(payload: bytes, ethertype: int = 0x0800, src: bytes = CLIENT_MAC, dst: bytes = ROUTER_MAC,
        vlan: int | None = None) -> bytes:
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return dst + src + tag + struct.pack("!H", ethertype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 0x1234, ttl: int = 64,
         frag: int = 0, ihl: int = 5, total: int | None = None) -> bytes:
    options = b"\x01" * (max(ihl, 5) * 4 - 20)  # NOPs
    total = 20 + len(options) + len(payload) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, ident, frag, ttl, proto, 0,
                      ip(src), ip(dst))
    return hdr + options + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


TCP_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20}


def tcp(sport: int, dport: int, payload: bytes = b"", seq: int = 1000, ack: int = 0,
        flags: str = "PSH,ACK") -> bytes:
    bits = sum(TCP_BITS[f] for f in flags.split(",") if f)
    return struct.pack("!HHIIHHHH", sport, dport, seq, ack, (5 << 12) | bits, 65535, 0, 0) + payload


def udp_frame(src, dst, sport, dport, payload, **kw) -> bytes:
    return eth(ipv4(src, dst, 17, udp(sport, dport, payload), **kw))


def tcp_frame(src, dst, sport, dport, payload=b"", **kw) -> bytes:
    return eth(ipv4(src, dst, 6, tcp(sport, dport, payload, **kw)))


def sha16(b: bytes) -> str:
    return hashlib.sha1(b).hexdigest()[:16]


# ---------------------------------------------------------------------------- protocol payloads

def dhcp_msg(op: int, xid: int, options: list[tuple[int, bytes]], yiaddr: str = "0.0.0.0") -> bytes:
    bootp = struct.pack("!BBBBIHH4s4s4s4s", op, 1, 6, 0, xid, 0, 0x8000, ip("0.0.0.0"),
                        ip(yiaddr), ip("0.0.0.0"), ip("0.0.0.0"))
    bootp += CLIENT_MAC + b"\0" * 10 + b"\0" * 64 + b"\0" * 128
    opts = b"".join(bytes([code, len(val)]) + val for code, val in options)
    return bootp + b"\x63\x82\x53\x63" + opts + b"\xff"


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def dns_msg(dns_id: int, name: str, qtype: int, flags: int = 0x0100,
            answers: list[tuple[int, bytes]] = ()) -> bytes:
    """Answers use a compression pointer (0xc00c) back to the question name."""
    msg = struct.pack("!HHHHHH", dns_id, flags, 1, len(answers), 0, 0)
    msg += dns_name(name) + struct.pack("!HH", qtype, 1)
    for rtype, rdata in answers:
        msg += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 300, len(rdata)) + rdata
    return msg


def client_hello(sni: str) -> bytes:
    name = sni.encode()
    sni_ext = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    alpn_ext = b"\x00\x03\x02h2"  # protocol list length, then one length-prefixed name
    exts = (struct.pack("!HH", 0, len(sni_ext)) + sni_ext
            + struct.pack("!HH", 16, len(alpn_ext)) + alpn_ext
            + struct.pack("!HH", 43, 3) + b"\x02\x03\x04")  # supported_versions: TLS1.3
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x20" + b"\x22" * 32
            + struct.pack("!H", 4) + b"\x13\x01\x13\x02" + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_hello() -> bytes:
    exts = struct.pack("!HHH", 43, 2, 0x0304)
    body = (b"\x03\x03" + b"\x33" * 32 + b"\x20" + b"\x22" * 32 + b"\x13\x01" + b"\x00"
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x02" + struct.pack("!I", len(body))[1:] + body
    ccs = b"\x14\x03\x03\x00\x01\x01"
    app = b"\x17\x03\x03\x00\x05" + b"\xaa" * 5
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs + ccs + app


# ---------------------------------------------------------------------------- sample frames

DHCP_DISCOVER = udp_frame("0.0.0.0", "255.255.255.255", 68, 67,
                          dhcp_msg(1, 0x1A2B3C4D, [(53, b"\x01"), (50, ip("192.168.50.190"))]),
                          ident=0)
DHCP_ACK = udp_frame("192.168.50.2", "192.168.50.190", 67, 68, dhcp_msg(2, 0x1A2B3C4D, [
    (53, b"\x05"), (54, ip("192.168.50.2")), (51, struct.pack("!I", 3600)),
    (1, ip("255.255.255.0")), (3, ip("192.168.50.1")),
    (6, ip("203.0.113.53") + ip("203.0.113.54")), (15, b"example.test")],
    yiaddr="192.168.50.190"))
DNS_QUERY = udp_frame("192.168.50.190", "203.0.113.53", 40000, 53,
                      dns_msg(0x1A2B, "www.example.test", 1))
DNS_A = udp_frame("203.0.113.53", "192.168.50.190", 53, 40000,
                  dns_msg(0x1A2B, "www.example.test", 1, flags=0x8180,
                          answers=[(1, ip("203.0.113.80"))]))
DNS_MX = udp_frame("203.0.113.53", "192.168.50.190", 53, 40001, dns_msg(
    0x0042, "example.test", 15, flags=0x8180,
    answers=[(15, struct.pack("!H", 10) + b"\x04mail\xc0\x0c")]))  # pointer inside rdata too
DNS_NX = udp_frame("203.0.113.53", "192.168.50.190", 53, 40002,
                   dns_msg(0x0007, "nope.example.test", 1, flags=0x8183))
DNS_REFUSED = udp_frame("203.0.113.53", "192.168.50.190", 53, 40003,
                        dns_msg(0x0008, "www.example.invalid", 1, flags=0x8185))
_TCP_DNS = dns_msg(0x0909, "mail.example.test", 1)
DNS_TCP = tcp_frame("192.168.50.190", "203.0.113.53", 40100, 53,
                    struct.pack("!H", len(_TCP_DNS)) + _TCP_DNS)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HTTP_REQ = tcp_frame("192.168.50.190", "203.0.113.80", 50320, 80, (
    "GET /order?id=7 HTTP/1.1\r\nHost: www.example.test\r\n"
    f"traceparent: {TRACEPARENT}\r\nUser-Agent: curl/8\r\n\r\n").encode(), seq=5000, ack=9000)
HTTP_RESP = tcp_frame("203.0.113.80", "192.168.50.190", 80, 50320, (
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Cache: HIT\r\nX-Served-By: web2\r\n\r\nok").encode())
TLS_CH = tcp_frame("192.168.50.190", "203.0.113.80", 50321, 443, client_hello("www.example.test"))
TLS_SH = tcp_frame("203.0.113.80", "192.168.50.190", 443, 50321, server_hello())
TLS_APP = tcp_frame("203.0.113.80", "192.168.50.190", 443, 50321, b"\x17\x03\x03\x00\x04abcd")
SMTP_CMD = tcp_frame("203.0.113.25", "172.31.50.25", 41000, 25, b"MAIL FROM:<alice@example.test>\r\n")
SMTP_REPLY = tcp_frame("172.31.50.25", "203.0.113.25", 25, 41000,
                       b"250-mail.example.test Hello\r\n250-SIZE 10240000\r\n250 HELP\r\n")
IMAP_LOGIN = tcp_frame("192.168.50.190", "203.0.113.25", 41001, 143, b"a1 LOGIN alice s3cret\r\n")
TCP_SYN = tcp_frame("192.168.50.190", "198.51.100.80", 50320, 443, seq=123, flags="SYN")
ICMP_ECHO = eth(ipv4("192.168.50.190", "203.0.113.53", 1,
                     struct.pack("!BBHHH", 8, 0, 0, 0x0101, 3) + b"pingdata"))
_QUOTED = ipv4("192.168.50.190", "192.0.2.1", 17, udp(40000, 53, b""))
ICMP_NET_UNREACH = eth(ipv4("192.168.50.1", "192.168.50.190", 1,
                            struct.pack("!BBHI", 3, 0, 0, 0) + _QUOTED))
ICMP_TTL = eth(ipv4("192.168.50.1", "192.168.50.190", 1, struct.pack("!BBHI", 11, 0, 0, 0) + _QUOTED))
ARP_REQ = eth(struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + CLIENT_MAC + ip("192.168.50.190")
              + b"\0" * 6 + ip("192.168.50.1") + b"\0" * 18, ethertype=0x0806, dst=BCAST)
ARP_REPLY = eth(struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + ROUTER_MAC + ip("192.168.50.1")
                + CLIENT_MAC + ip("192.168.50.190"), ethertype=0x0806, src=ROUTER_MAC, dst=CLIENT_MAC)
VLAN_UDP = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1111, 2222, b"hello")), vlan=0x2000 | 42)

SAMPLES = {name: value for name, value in globals().items()
           if name.isupper() and isinstance(value, bytes) and len(value) > 14 and name != "BCAST"}


# ---------------------------------------------------------------------------- protocols

def test_dhcp_discover():
    p = decode(DHCP_DISCOVER)
    assert p.error is None and p.proto == "dhcp"
    assert (p.src_ip, p.dst_ip, p.src_port, p.dst_port) == ("0.0.0.0", "255.255.255.255", 68, 67)
    assert p.eth_src == "02:00:00:00:01:90" and p.ethertype == 0x0800
    assert p.keys["dhcp_xid"] == "0x1a2b3c4d" and p.keys["dhcp_type"] == "DISCOVER"
    assert p.keys["dhcp_chaddr"] == "02:00:00:00:01:90"
    assert p.summary == "DHCP DISCOVER xid 0x1a2b3c4d 192.168.50.190"


def test_dhcp_ack_options():
    p = decode(DHCP_ACK)
    assert p.error is None and p.proto == "dhcp" and p.keys["dhcp_type"] == "ACK"
    assert p.summary == ("DHCP ACK xid 0x1a2b3c4d 192.168.50.190 router 192.168.50.1 "
                         "dns 203.0.113.53,203.0.113.54 domain example.test lease 3600s "
                         "server 192.168.50.2")


def test_dns_query():
    p = decode(DNS_QUERY)
    assert p.error is None and p.proto == "dns"
    assert p.keys["dns_id"] == "0x1a2b" and p.keys["dns_name"] == "www.example.test"
    assert p.summary == "DNS query A www.example.test id 0x1a2b"
    payload = DNS_QUERY[14 + 20 + 8:]
    assert p.payload_len == len(payload) and p.payload_hash == sha16(payload)


def test_dns_response_compressed_a():
    p = decode(DNS_A)
    assert p.error is None and p.keys["dns_rcode"] == "NOERROR"
    assert p.summary == "DNS response NOERROR A www.example.test id 0x1a2b: A 203.0.113.80"


def test_dns_response_mx():
    p = decode(DNS_MX)
    assert p.error is None
    assert p.summary == "DNS response NOERROR MX example.test id 0x0042: MX 10 mail.example.test"


@pytest.mark.parametrize("frame, rcode", [(DNS_NX, "NXDOMAIN"), (DNS_REFUSED, "REFUSED")])
def test_dns_rcodes(frame, rcode):
    p = decode(frame)
    assert p.error is None and p.proto == "dns" and p.keys["dns_rcode"] == rcode
    assert p.summary.startswith(f"DNS response {rcode} A ")


def test_dns_over_tcp():
    p = decode(DNS_TCP)
    assert p.error is None and p.proto == "dns" and p.tcp_flags == "PSH,ACK"
    assert p.keys["dns_id"] == "0x0909" and p.keys["dns_name"] == "mail.example.test"


def test_dns_pointer_loop_is_an_error():
    msg = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\x01\0\x01"
    p = decode(udp_frame("192.168.50.190", "203.0.113.53", 40000, 53, msg))
    assert p.error == "DNS compression pointer loop" and p.proto == "dns"
    # a two-step loop too
    msg = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x01a\xc0\x0e\x01b\xc0\x0c"
    assert "loop" in decode(udp_frame("198.51.100.10", "198.51.100.20", 40000, 53, msg)).error


def test_http_request_with_traceparent():
    p = decode(HTTP_REQ)
    assert p.error is None and p.proto == "http"
    assert p.keys["http_method"] == "GET" and p.keys["http_path"] == "/order?id=7"
    assert p.keys["traceparent"] == TRACEPARENT and p.keys["http_host"] == "www.example.test"
    assert p.summary == "HTTP GET /order?id=7"
    assert (p.tcp_seq, p.tcp_ack, p.ip_id, p.ttl) == (5000, 9000, 0x1234, 64)


def test_http_response_with_cache_headers():
    p = decode(HTTP_RESP)
    assert p.proto == "http" and p.keys["http_status"] == "200"
    assert p.keys["x_cache"] == "HIT" and p.keys["x_served_by"] == "web2"
    assert p.summary == "HTTP 200 OK"


def test_http_on_any_port_by_content():
    frame = tcp_frame("172.31.50.10", "172.31.50.11", 41234, 8080, b"POST /api HTTP/1.1\r\n\r\n")
    assert decode(frame).summary == "HTTP POST /api"


def test_tls_client_hello_sni():
    p = decode(TLS_CH)
    assert p.error is None and p.proto == "tls"
    assert p.keys["sni"] == "www.example.test" and p.keys["alpn"] == "h2"
    assert p.summary == "TLS ClientHello SNI www.example.test"


def test_tls_server_hello_and_app_data():
    p = decode(TLS_SH)
    assert p.proto == "tls"
    assert p.summary == "TLS ServerHello TLS1.3 cipher 0x1301 + ChangeCipherSpec + application data"
    assert decode(TLS_APP).summary == "TLS application data"


def test_tls_client_hello_split_across_segments():
    hello = client_hello("www.example.test")
    p = decode(tcp_frame("192.168.50.190", "203.0.113.80", 50321, 443, hello[:60]))
    assert p.error is None and p.summary == "TLS ClientHello" and "sni" not in p.keys


def test_smtp_command_and_reply():
    p = decode(SMTP_CMD)
    assert p.proto == "smtp" and p.summary == "SMTP MAIL FROM:<alice@example.test>"
    assert p.keys["mail_from"] == "<alice@example.test>"
    p = decode(SMTP_REPLY)
    assert p.proto == "smtp" and p.summary == "SMTP 250-mail.example.test Hello"
    assert p.keys["smtp_code"] == "250"
    long_line = tcp_frame("198.51.100.10", "198.51.100.20", 41000, 587, b"EHLO " + b"x" * 300 + b"\r\n")
    assert decode(long_line).summary == "SMTP EHLO " + "x" * 95


def test_starttls_on_smtp_port_is_tls():
    frame = tcp_frame("203.0.113.25", "172.31.50.25", 41000, 25, client_hello("mail.example.test"))
    assert decode(frame).keys["sni"] == "mail.example.test"


def test_imap_hides_password():
    p = decode(IMAP_LOGIN)
    assert p.proto == "imap" and p.summary == "IMAP a1 LOGIN alice ***"


def test_plain_tcp_syn():
    p = decode(TCP_SYN)
    assert p.proto == "tcp" and p.tcp_flags == "SYN" and p.tcp_seq == 123
    assert p.payload_len == 0 and p.payload_hash is None
    assert p.summary == "TCP 192.168.50.190:50320 > 198.51.100.80:443 SYN seq 123"


@pytest.mark.parametrize("flags, expected", [("SYN,ACK", "SYN,ACK"), ("ACK,FIN", "FIN,ACK"),
                                             ("ACK,PSH", "PSH,ACK"), ("RST", "RST"), ("", "")])
def test_tcp_flag_order(flags, expected):
    p = decode(tcp_frame("198.51.100.10", "198.51.100.20", 1, 2, flags=flags, ack=7))
    assert p.tcp_flags == expected


def test_icmp_echo():
    p = decode(ICMP_ECHO)
    assert p.error is None and p.proto == "icmp"
    assert p.keys["icmp_id"] == "0x0101" and p.keys["icmp_seq"] == "3"
    assert p.summary == "ICMP 192.168.50.190 > 203.0.113.53 echo request id 0x0101 seq 3"
    assert p.payload_len == 8 and p.payload_hash == sha16(b"pingdata")


def test_icmp_net_unreachable_quotes_the_flow():
    p = decode(ICMP_NET_UNREACH)
    assert p.error is None and p.proto == "icmp"
    assert p.summary == ("ICMP 192.168.50.1 > 192.168.50.190 net unreachable "
                         "(for UDP 192.168.50.190:40000 > 192.0.2.1:53)")
    assert "TTL exceeded in transit" in decode(ICMP_TTL).summary


def test_arp():
    p = decode(ARP_REQ)
    assert p.error is None and p.proto == "arp" and p.ethertype == 0x0806
    assert p.summary == "ARP who-has 192.168.50.1 tell 192.168.50.190"
    assert decode(ARP_REPLY).summary == "ARP 192.168.50.1 is-at aa:bb:cc:dd:ee:ff"


def test_vlan_tagged_frame():
    p = decode(VLAN_UDP)
    assert p.error is None and p.proto == "udp" and p.ethertype == 0x0800
    assert p.keys["vlan"] == "42"
    assert p.summary == "UDP 10.0.0.1:1111 > 10.0.0.2:2222 len 5"
    assert p.payload_hash == sha16(b"hello")


def test_ethernet_padding_is_not_payload():
    frame = udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"x") + b"\0" * 20  # padded to 60 bytes
    p = decode(frame)
    assert p.error is None and p.payload_len == 1 and p.payload_hash == sha16(b"x")


def test_fragments_decode_only_first_l4():
    first = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 53, b"a" * 100)[:40], frag=0x2000))
    p = decode(first)
    assert p.error is None and p.proto == "udp" and p.src_port == 1 and p.keys["ip_frag"] == "offset 0 MF"
    later = eth(ipv4("10.0.0.1", "10.0.0.2", 17, b"b" * 40, frag=5))
    p = decode(later)
    assert p.error is None and p.src_port is None and p.proto == "ipv4"
    assert "fragment offset 40" in p.summary


def test_ipv6_udp_and_icmpv6():
    def ipv6(nxt, payload):
        return (struct.pack("!IHBB", 0x60000000, len(payload), nxt, 255)
                + ip("fd00::190") + ip("fd00::53") + payload)
    p = decode(eth(ipv6(17, udp(40000, 53, dns_msg(0x0a0b, "www.example.test", 28))), 0x86DD))
    assert p.error is None and p.proto == "dns" and p.src_ip == "fd00::190" and p.ttl == 255
    assert p.summary == "DNS query AAAA www.example.test id 0x0a0b"
    p = decode(eth(ipv6(58, struct.pack("!BBHI", 135, 0, 0, 0) + ip("fd00::1")), 0x86DD))
    assert p.proto == "icmp" and "neighbor solicitation" in p.summary


def test_tso_total_length_zero_uses_captured_length():
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, b"z" * 3000), total=0)))
    assert p.error is None and p.payload_len == 3000


def test_smtp_auth_is_masked():
    frame = tcp_frame("198.51.100.10", "198.51.100.20", 41000, 587, b"AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n")
    assert decode(frame).summary == "SMTP AUTH PLAIN ***"


def test_wrong_content_on_dhcp_port_is_flagged():
    p = decode(udp_frame("198.51.100.10", "198.51.100.20", 68, 67, b"hello"))
    assert p.proto == "udp" and p.error == "malformed DHCP message"


# ---------------------------------------------------------------------------- malformed input

def test_ipv4_ihl_below_five_is_flagged():
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x"), ihl=4)))
    assert p.error == "bad IPv4 header length 16" and p.src_port is None


def test_ipv4_total_length_beyond_frame_is_flagged():
    p = decode(eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x"), total=1500)))
    assert p.error.startswith("IPv4 total length 1500 beyond frame")
    assert p.src_ip == "10.0.0.1" and p.ip_id == 0x1234  # layers so far are kept
    assert "beyond frame" in p.summary


def test_truncated_keeps_lower_layers():
    p = decode(DNS_A[:50])
    assert p.error and p.eth_src == "02:00:00:00:01:90"
    p = decode(b"\x01\x02")
    assert p.error == "truncated Ethernet header" and p.summary
    assert decode(b"").length == 0


def test_summary_is_one_printable_line():
    msg = dns_msg(0x0101, "a", 16, flags=0x8180, answers=[(16, b"\x05x\ny\rz")])
    p = decode(udp_frame("198.51.100.10", "198.51.100.20", 53, 4000, msg))
    assert p.error is None and p.summary.isprintable() and p.summary.endswith('TXT "x?y?z"')


def test_non_bytes_input():
    assert decode("not bytes").error == "not bytes"  # type: ignore[arg-type]
    assert decode(bytearray(DNS_QUERY)).proto == "dns"
    assert decode(memoryview(DNS_QUERY)).proto == "dns"


def _check(p, n):
    """Invariants for any input: a one-line summary, string keys, and no exception that only
    the decoder's last-resort handler caught (that would be a decoder bug)."""
    assert isinstance(p.summary, str) and p.summary and p.summary.isprintable(), n
    assert not (p.error or "").startswith("decoder error"), p.error
    assert p.length == n
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in p.keys.items())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_prefix_decodes(name):
    frame = SAMPLES[name]
    for n in range(len(frame)):
        _check(decode(frame[:n]), n)
    full = decode(frame)
    assert full.error is None, (name, full.error)


def test_random_bytes_never_raise():
    rng = random.Random(20261121)
    for _ in range(3000):
        n = rng.randrange(0, 1601)
        frame = rng.randbytes(n)
        _check(decode(frame), n)


def test_random_bodies_behind_valid_headers_never_raise():
    """Random bytes reach the deeper layers only behind plausible headers."""
    rng = random.Random(7)
    heads = [eth(b"", 0x0800)[:14], eth(b"", 0x0806)[:14], eth(b"", 0x86DD)[:14],
             eth(b"", 0x0800, vlan=5)[:18]]
    for _ in range(2000):
        body = rng.randbytes(rng.randrange(0, 400))
        proto = rng.choice([1, 6, 17])
        port = rng.choice([25, 53, 67, 68, 80, 143, 443, 587, 5353])
        l4 = (udp(port, port, body) if proto == 17 else tcp(port, port, body) if proto == 6 else body)
        frame = rng.choice([eth(ipv4("198.51.100.10", "198.51.100.20", proto, l4)), rng.choice(heads) + body])
        _check(decode(frame), len(frame))


def test_mutated_samples_never_raise():
    rng = random.Random(99)
    frames = list(SAMPLES.values())
    for _ in range(3000):
        frame = bytearray(rng.choice(frames))
        for _ in range(rng.randrange(1, 6)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        _check(decode(bytes(frame)), len(frame))


def test_tagged_sql_carries_the_traceparent_and_reads_as_sql():
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    sql = f"SELECT name FROM products /*traceparent='{traceparent}'*/".encode() + b"\0"
    message = b"Q" + struct.pack("!I", len(sql) + 4) + sql
    frame = tcp_frame("172.31.50.11", "172.31.50.20", 40000, 5432, message)
    packet = decode(frame)
    assert packet.proto == "pgsql"
    assert packet.summary == "SQL SELECT name FROM products"
    assert packet.keys["traceparent"] == traceparent
    reply = b"C" + struct.pack("!I", 14) + b"SELECT 10\0" + b"Z" + struct.pack("!I", 5) + b"I"
    assert decode(tcp_frame("172.31.50.20", "172.31.50.11", 5432, 40000, reply)).summary == "SQL result SELECT 10"

"""Decode one captured Ethernet II frame (AF_PACKET on Linux, so no FCS) into a `Packet`.

Standard library only: this runs inside every lab node. `decode` never raises: each layer
function raises `_Bad` on malformed or truncated input, `decode` turns that into
`Packet.error`, and whatever the lower layers filled in stays in the Packet.

Conventions (shared by every caller, keep them stable):
- `tcp_flags` lists the set flags in the fixed order SYN,FIN,RST,PSH,ACK,URG,ECE,CWR
  ("SYN,ACK", "PSH,ACK", "FIN,ACK"), "" when none is set.
- `proto` is the highest layer understood: arp, icmp, udp, tcp, dhcp, dns, http, tls, smtp,
  imap; "ipv4"/"ipv6" for IP carrying something else (or a non-first fragment); "unknown"
  below that.
- `keys` values are strings; ids are zero-padded hex (dns_id 0x%04x, dhcp_xid 0x%08x).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import struct

from hoplab.trace.packet import Packet

ETH_IPV4, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8)  # 802.1Q and 802.1ad outer tag
SUMMARY_MAX = 200


class _Bad(Exception):
    """A layer that cannot be decoded; the message becomes Packet.error."""


# ---------------------------------------------------------------------------- byte helpers
# Every read goes through these so that a short buffer is a _Bad, never an IndexError.

def _take(buf: bytes, off: int, n: int, what: str) -> bytes:
    if off < 0 or n < 0 or off + n > len(buf):
        raise _Bad(f"truncated {what}")
    return buf[off:off + n]


def _u8(buf: bytes, off: int, what: str) -> int:
    return _take(buf, off, 1, what)[0]


def _u16(buf: bytes, off: int, what: str) -> int:
    return struct.unpack("!H", _take(buf, off, 2, what))[0]


def _u32(buf: bytes, off: int, what: str) -> int:
    return struct.unpack("!I", _take(buf, off, 4, what))[0]


def _mac(b: bytes) -> str:
    return b.hex(":")


def _ip4(b: bytes) -> str:
    return str(ipaddress.IPv4Address(b))


def _ip6(b: bytes) -> str:
    return str(ipaddress.IPv6Address(b))


def _hash(payload: bytes) -> str | None:
    return hashlib.sha1(payload).hexdigest()[:16] if payload else None


def _first_line(payload: bytes, limit: int = 100) -> str | None:
    """The first line as text, or None when the payload does not look like a text protocol
    (so that e.g. TLS after STARTTLS is not shown as SMTP garbage)."""
    line = payload.split(b"\n", 1)[0].rstrip(b"\r")
    if not line or any(c < 0x20 and c != 0x09 or c > 0x7E for c in line[:limit]):
        return None
    return line[:limit].decode("ascii").strip()


# ---------------------------------------------------------------------------- entry point

def decode(frame: bytes) -> Packet:
    """Decode one frame. Never raises: problems end up in `error`."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        return Packet(length=0, summary="not a byte string", error="not bytes")
    try:
        data = bytes(frame)
    except Exception:  # e.g. a non-contiguous memoryview
        return Packet(length=0, summary="unreadable buffer", error="unreadable buffer")
    pkt = Packet(length=len(data))
    try:
        _ethernet(pkt, data)
    except _Bad as exc:
        pkt.error = str(exc)
    except Exception as exc:  # a decoder bug must not kill the capture agent
        pkt.error = f"decoder error: {type(exc).__name__}"
    _finish_summary(pkt)
    return pkt


def _finish_summary(pkt: Packet) -> None:
    if not pkt.summary:
        pkt.summary = f"frame {pkt.length} bytes"
    if pkt.error:
        pkt.summary += f" ({pkt.error})"
    text = pkt.summary if len(pkt.summary) <= SUMMARY_MAX else pkt.summary[:SUMMARY_MAX - 3] + "..."
    # one printable line whatever the payload held (newlines, C1 controls from latin-1)
    pkt.summary = "".join(c if c.isprintable() else "?" for c in text)


# ---------------------------------------------------------------------------- L2

def _ethernet(pkt: Packet, frame: bytes) -> None:
    if len(frame) < 14:
        pkt.summary = f"frame {len(frame)} bytes"
        raise _Bad("truncated Ethernet header")
    pkt.eth_dst, pkt.eth_src = _mac(frame[0:6]), _mac(frame[6:12])
    ethertype, off = _u16(frame, 12, "Ethernet header"), 14
    if ethertype in VLAN_TPIDS:
        pkt.summary = f"Ethernet {pkt.eth_src} > {pkt.eth_dst} VLAN"
        tci = _u16(frame, off, "802.1Q tag")
        pkt.keys["vlan"] = str(tci & 0x0FFF)  # no Packet field for it; keys keep it visible
        ethertype, off = _u16(frame, off + 2, "802.1Q tag"), off + 4
    pkt.ethertype = ethertype
    pkt.summary = f"Ethernet {pkt.eth_src} > {pkt.eth_dst} type 0x{ethertype:04x}"
    if ethertype < 0x0600:  # an 802.3 length field, not a type (STP, LLC...)
        pkt.summary = f"802.3 {pkt.eth_src} > {pkt.eth_dst} len {ethertype}"
        return
    decoder = _BY_ETHERTYPE.get(ethertype)
    if decoder:
        decoder(pkt, frame[off:])


def _arp(pkt: Packet, buf: bytes) -> None:
    pkt.summary = "ARP"
    htype, ptype, hlen, plen, oper = struct.unpack("!HHBBH", _take(buf, 0, 8, "ARP header"))
    if (htype, ptype, hlen, plen) != (1, ETH_IPV4, 6, 4):
        pkt.proto, pkt.summary = "arp", f"ARP htype {htype} ptype 0x{ptype:04x} op {oper}"
        return
    body = _take(buf, 8, 20, "ARP body")
    sha, spa, tpa = _mac(body[0:6]), _ip4(body[6:10]), _ip4(body[16:20])
    pkt.proto, pkt.src_ip, pkt.dst_ip = "arp", spa, tpa  # sender/target protocol addresses
    if oper == 1:
        pkt.summary = f"ARP who-has {tpa} tell {spa}"
    elif oper == 2:
        pkt.summary = f"ARP {spa} is-at {sha}"
    else:
        pkt.summary = f"ARP op {oper} {spa} > {tpa}"


# ---------------------------------------------------------------------------- L3

IP_PROTOS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6",
             89: "OSPF", 112: "VRRP", 132: "SCTP"}


def _ipv4(pkt: Packet, buf: bytes) -> None:
    pkt.summary = "IPv4"
    b0 = _u8(buf, 0, "IPv4 header")
    if b0 >> 4 != 4:
        raise _Bad(f"IPv4 version {b0 >> 4}")
    ihl = (b0 & 0x0F) * 4
    if ihl < 20:
        raise _Bad(f"bad IPv4 header length {ihl}")
    hdr = _take(buf, 0, 20, "IPv4 header")
    total, ip_id, frag, ttl, proto = struct.unpack("!HHHBB", hdr[2:10])
    pkt.ip_id, pkt.ttl = ip_id, ttl
    pkt.src_ip, pkt.dst_ip = _ip4(hdr[12:16]), _ip4(hdr[16:20])
    name = IP_PROTOS.get(proto, str(proto))
    pkt.proto, pkt.summary = "ipv4", f"IPv4 {pkt.src_ip} > {pkt.dst_ip} proto {name}"
    _take(buf, 0, ihl, "IPv4 options")
    if total == 0:
        total = len(buf)  # TSO/BIG TCP packets are captured with total length 0
    elif total < ihl:
        raise _Bad(f"IPv4 total length {total} < header {ihl}")
    elif total > len(buf):
        raise _Bad(f"IPv4 total length {total} beyond frame ({len(buf)})")
    payload = buf[ihl:total]  # drops Ethernet padding of short frames
    offset, more = (frag & 0x1FFF) * 8, bool(frag & 0x2000)
    if offset or more:
        pkt.keys["ip_frag"] = f"offset {offset}{' MF' if more else ''}"
    if offset:  # only the first fragment carries the L4 header
        pkt.summary += f" fragment offset {offset} len {len(payload)}"
        return
    decoder = _BY_IP_PROTO.get(proto)
    if decoder:
        decoder(pkt, payload, more)


def _ipv6(pkt: Packet, buf: bytes) -> None:
    """Fixed header plus the common extension headers; the lab is IPv4 but Docker and the
    kernel still emit router/neighbour solicitations that should read sensibly."""
    pkt.summary = "IPv6"
    hdr = _take(buf, 0, 40, "IPv6 header")
    if hdr[0] >> 4 != 6:
        raise _Bad(f"IPv6 version {hdr[0] >> 4}")
    plen, nxt, hlim = struct.unpack("!HBB", hdr[4:8])
    pkt.ttl, pkt.src_ip, pkt.dst_ip = hlim, _ip6(hdr[8:24]), _ip6(hdr[24:40])
    pkt.proto = "ipv6"
    if 40 + plen > len(buf):
        raise _Bad(f"IPv6 payload length {plen} beyond frame")
    payload, off = buf[40:40 + plen], 0
    for _ in range(8):  # bounded: a chain of extension headers cannot loop us
        if nxt in (0, 43, 60):  # hop-by-hop, routing, destination options
            nxt, units = _take(payload, off, 2, "IPv6 extension")
            off += 8 + units * 8
        elif nxt == 44:  # fragment
            frag = _u16(payload, off + 2, "IPv6 fragment header")
            nxt, off = _u8(payload, off, "IPv6 fragment header"), off + 8
            if frag >> 3:
                pkt.summary = f"IPv6 {pkt.src_ip} > {pkt.dst_ip} fragment offset {(frag >> 3) * 8}"
                return
        else:
            break
    pkt.summary = f"IPv6 {pkt.src_ip} > {pkt.dst_ip} next header {IP_PROTOS.get(nxt, str(nxt))}"
    decoder = _BY_IP_PROTO.get(nxt)
    if decoder:
        _take(payload, 0, off, "IPv6 extension")
        decoder(pkt, payload[off:], False)


# ---------------------------------------------------------------------------- L4

ICMP_TYPES = {0: "echo reply", 3: "dest unreachable", 4: "source quench", 5: "redirect",
              8: "echo request", 11: "time exceeded", 12: "parameter problem",
              13: "timestamp request", 14: "timestamp reply"}
ICMP_UNREACH = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable",
                3: "port unreachable", 4: "fragmentation needed", 5: "source route failed",
                6: "dest net unknown", 7: "dest host unknown", 9: "net prohibited",
                10: "host prohibited", 13: "admin prohibited"}
ICMP_TIME = {0: "TTL exceeded in transit", 1: "fragment reassembly time exceeded"}
ICMP6_TYPES = {1: "dest unreachable", 2: "packet too big", 3: "time exceeded",
               4: "parameter problem", 128: "echo request", 129: "echo reply",
               133: "router solicitation", 134: "router advertisement",
               135: "neighbor solicitation", 136: "neighbor advertisement",
               143: "MLDv2 report"}


def _icmp_name(icmp_type: int, code: int, v6: bool) -> str:
    if v6:
        return ICMP6_TYPES.get(icmp_type, f"type {icmp_type} code {code}")
    if icmp_type == 3:
        return ICMP_UNREACH.get(code, f"dest unreachable code {code}")
    if icmp_type == 11:
        return ICMP_TIME.get(code, f"time exceeded code {code}")
    name = ICMP_TYPES.get(icmp_type, f"type {icmp_type}")
    return name if code == 0 else f"{name} code {code}"


def _icmp(pkt: Packet, buf: bytes, _more: bool, v6: bool = False) -> None:
    hdr = _take(buf, 0, 8, "ICMP header")
    icmp_type, code = hdr[0], hdr[1]
    payload = buf[8:]
    pkt.proto, pkt.payload_len, pkt.payload_hash = "icmp", len(payload), _hash(payload)
    pkt.keys["icmp_type"], pkt.keys["icmp_code"] = str(icmp_type), str(code)
    name = _icmp_name(icmp_type, code, v6)
    text = f"{'ICMPv6' if v6 else 'ICMP'} {pkt.src_ip} > {pkt.dst_ip} {name}"
    if icmp_type in ((128, 129) if v6 else (0, 8, 13, 14)):
        ident, seq = struct.unpack("!HH", hdr[4:8])
        pkt.keys["icmp_id"], pkt.keys["icmp_seq"] = f"0x{ident:04x}", str(seq)
        text += f" id 0x{ident:04x} seq {seq}"
    elif not v6 and icmp_type in (3, 5, 11, 12):
        quoted = _quoted_ipv4(payload)  # the offending packet: ties the error to its flow
        if quoted:
            pkt.keys["icmp_orig"] = quoted
            text += f" (for {quoted})"
    pkt.summary = text


def _icmp6(pkt: Packet, buf: bytes, more: bool) -> None:
    _icmp(pkt, buf, more, v6=True)


def _quoted_ipv4(buf: bytes) -> str | None:
    """'UDP 1.2.3.4:5 > 6.7.8.9:53' from the IPv4 header an ICMP error quotes, or None."""
    if len(buf) < 20 or buf[0] >> 4 != 4 or (buf[0] & 0x0F) < 5:
        return None
    ihl, proto = (buf[0] & 0x0F) * 4, buf[9]
    src, dst = _ip4(buf[12:16]), _ip4(buf[16:20])
    name = IP_PROTOS.get(proto, str(proto))
    if proto in (6, 17) and len(buf) >= ihl + 4:
        sport, dport = struct.unpack("!HH", buf[ihl:ihl + 4])
        return f"{name} {src}:{sport} > {dst}:{dport}"
    return f"{name} {src} > {dst}"


def _udp(pkt: Packet, buf: bytes, more_frags: bool) -> None:
    hdr = _take(buf, 0, 8, "UDP header")
    pkt.src_port, pkt.dst_port, length = struct.unpack("!HHH", hdr[0:6])
    pkt.proto = "udp"
    payload = buf[8:]
    if not more_frags:  # a first fragment's UDP length covers data still to come
        payload = buf[8:length] if 8 <= length <= len(buf) else payload
    pkt.payload_len, pkt.payload_hash = len(payload), _hash(payload)
    pkt.summary = (f"UDP {pkt.src_ip}:{pkt.src_port} > {pkt.dst_ip}:{pkt.dst_port} "
                   f"len {len(payload)}")
    if more_frags:
        pkt.summary += " (first fragment)"
        return
    if length < 8:
        raise _Bad(f"bad UDP length {length}")
    if length > len(buf):
        raise _Bad(f"UDP length {length} beyond IP payload ({len(buf)})")
    _application(pkt, payload, _UDP_APPS, ())


TCP_FLAG_ORDER = (("SYN", 0x02), ("FIN", 0x01), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10),
                  ("URG", 0x20), ("ECE", 0x40), ("CWR", 0x80))


def _tcp(pkt: Packet, buf: bytes, more_frags: bool) -> None:
    hdr = _take(buf, 0, 20, "TCP header")
    sport, dport, seq, ack, off_flags = struct.unpack("!HHIIH", hdr[0:14])
    pkt.src_port, pkt.dst_port, pkt.tcp_seq, pkt.tcp_ack = sport, dport, seq, ack
    flags = off_flags & 0xFF
    pkt.tcp_flags = ",".join(name for name, bit in TCP_FLAG_ORDER if flags & bit)
    pkt.proto = "tcp"
    text = f"TCP {pkt.src_ip}:{sport} > {pkt.dst_ip}:{dport} {pkt.tcp_flags or 'none'} seq {seq}"
    if flags & 0x10:
        text += f" ack {ack}"
    pkt.summary = text
    doff = (off_flags >> 12) * 4
    if doff < 20:
        raise _Bad(f"bad TCP data offset {doff}")
    _take(buf, 0, doff, "TCP options")
    payload = buf[doff:]
    pkt.payload_len, pkt.payload_hash, pkt.payload = len(payload), _hash(payload), payload
    if payload:
        pkt.summary += f" len {len(payload)}"
    if more_frags:
        pkt.summary += " (first fragment)"
        return
    _application(pkt, payload, _TCP_APPS, _TCP_SNIFFERS)
    if "traceparent" not in pkt.keys:  # e.g. a tagged SQL statement (sqlcommenter)
        found = _TRACEPARENT.search(payload)
        if found:
            pkt.keys["traceparent"] = found.group(1).decode()


# ---------------------------------------------------------------------------- L7 dispatch

def _application(pkt: Packet, payload: bytes, by_port: dict, sniffers: tuple) -> None:
    """Well-known port first (destination, then source), then content sniffing. A decoder
    returns False when the payload is not its protocol after all (e.g. TLS after STARTTLS
    on port 25); a _Bad from it means the protocol matched but the content is broken."""
    if not payload:
        return
    tried = []
    for port in (pkt.dst_port, pkt.src_port):
        decoder = by_port.get(port)
        if decoder and decoder not in tried:
            tried.append(decoder)
            if decoder(pkt, payload):
                return
    for sniffer in sniffers:
        if sniffer not in tried and sniffer(pkt, payload):
            return


# ---------------------------------------------------------------------------- DHCP

DHCP_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
              7: "RELEASE", 8: "INFORM"}
DHCP_MAGIC = b"\x63\x82\x53\x63"


def _dhcp_options(buf: bytes) -> dict[int, bytes]:
    opts: dict[int, bytes] = {}
    off = 0
    while off < len(buf):
        code = buf[off]
        if code == 255:
            break
        if code == 0:  # pad
            off += 1
            continue
        n = _u8(buf, off + 1, "DHCP option")
        opts.setdefault(code, _take(buf, off + 2, n, f"DHCP option {code}"))
        off += 2 + n
    return opts


def _ip_list(b: bytes) -> list[str]:
    return [_ip4(b[i:i + 4]) for i in range(0, len(b) - len(b) % 4, 4)]


def _dhcp(pkt: Packet, payload: bytes) -> bool:
    if len(payload) < 240 or payload[0] not in (1, 2) or payload[236:240] != DHCP_MAGIC:
        if len(payload) >= 236 and payload[0] in (1, 2):  # plain BOOTP, no options
            xid = struct.unpack("!I", payload[4:8])[0]
            pkt.proto, pkt.keys["dhcp_xid"] = "dhcp", f"0x{xid:08x}"
            pkt.summary = f"BOOTP {'request' if payload[0] == 1 else 'reply'} xid 0x{xid:08x}"
            return True
        raise _Bad("malformed DHCP message")
    xid = struct.unpack("!I", payload[4:8])[0]
    ciaddr, yiaddr = _ip4(payload[12:16]), _ip4(payload[16:20])
    hlen = min(payload[2], 16)
    pkt.proto = "dhcp"
    pkt.keys["dhcp_xid"] = f"0x{xid:08x}"
    pkt.keys["dhcp_chaddr"] = _mac(payload[28:28 + hlen])
    pkt.summary = f"DHCP xid 0x{xid:08x}"
    opts = _dhcp_options(payload[240:])
    mtype = opts.get(53, b"")[:1]
    name = DHCP_TYPES.get(mtype[0], f"type {mtype[0]}") if mtype else "BOOTP"
    pkt.keys["dhcp_type"] = name
    # the address the message is about: what the client asks for, is given, or holds
    ip = (_ip_list(opts[50])[:1] or [None])[0] if 50 in opts else None
    ip = ip or next((a for a in (yiaddr, ciaddr) if a != "0.0.0.0"), None)
    parts = [f"DHCP {name} xid 0x{xid:08x}"]
    if ip:
        parts.append(ip)
        pkt.keys["dhcp_ip"] = ip
    if 3 in opts and _ip_list(opts[3]):
        parts.append("router " + ",".join(_ip_list(opts[3])))
    if 6 in opts and _ip_list(opts[6]):
        parts.append("dns " + ",".join(_ip_list(opts[6])))
    if 15 in opts:
        parts.append("domain " + opts[15].rstrip(b"\0").decode("ascii", "replace"))
    if len(opts.get(51, b"")) == 4:
        parts.append(f"lease {struct.unpack('!I', opts[51])[0]}s")
    if len(opts.get(54, b"")) == 4:
        parts.append("server " + _ip4(opts[54]))
    pkt.summary = " ".join(parts)
    return True


# ---------------------------------------------------------------------------- DNS

DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
             33: "SRV", 41: "OPT", 64: "SVCB", 65: "HTTPS", 255: "ANY"}
DNS_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
DNS_MAX_RRS = 32  # enough for a summary; bounds work on hostile counts


def _dns_label(raw: bytes) -> str:
    return "".join(chr(c) if 0x21 <= c <= 0x7E and c not in (0x2E, 0x5C) else f"\\{c:03d}"
                   for c in raw)


def _dns_name(msg: bytes, off: int) -> tuple[str, int]:
    """(name, offset just past the name where it started). Compression pointers are
    followed with a guard: revisiting any offset is a loop, and names cap at 255 bytes."""
    labels, seen, total, end = [], set(), 0, None
    while True:
        if off in seen:
            raise _Bad("DNS compression pointer loop")
        seen.add(off)
        n = _u8(msg, off, "DNS name")
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            ptr = _u16(msg, off, "DNS name") & 0x3FFF
            if end is None:
                end = off + 2
            off = ptr
            continue
        if n & 0xC0:
            raise _Bad("bad DNS label type")
        labels.append(_dns_label(_take(msg, off + 1, n, "DNS label")))
        total += n + 1
        if total > 255:
            raise _Bad("DNS name too long")
        off += 1 + n
    return ".".join(labels) or ".", (end if end is not None else off)


def _dns_rdata(msg: bytes, rtype: int, off: int, rdlen: int) -> str:
    rdata = _take(msg, off, rdlen, "DNS rdata")
    if rtype == 1 and rdlen == 4:
        return _ip4(rdata)
    if rtype == 28 and rdlen == 16:
        return _ip6(rdata)
    if rtype in (2, 5, 12):
        return _dns_name(msg, off)[0]
    if rtype == 15:
        return f"{_u16(msg, off, 'DNS MX')} {_dns_name(msg, off + 2)[0]}"
    if rtype == 6:
        return _dns_name(msg, off)[0]
    if rtype == 33:
        prio, weight, port = struct.unpack("!HHH", _take(msg, off, 6, "DNS SRV"))
        return f"{prio} {weight} {port} {_dns_name(msg, off + 6)[0]}"
    if rtype == 16 and rdata:
        return '"' + rdata[1:1 + rdata[0]].decode("ascii", "replace") + '"'
    return f"{rdlen} bytes"


def _dns_message(pkt: Packet, msg: bytes) -> None:
    dns_id, flags, qd, an = struct.unpack("!HHHH", _take(msg, 0, 12, "DNS header")[:8])
    is_resp, rcode = bool(flags & 0x8000), flags & 0x000F
    pkt.proto, pkt.keys["dns_id"] = "dns", f"0x{dns_id:04x}"
    head = "DNS response " + DNS_RCODES.get(rcode, f"RCODE{rcode}") if is_resp else "DNS query"
    pkt.summary = f"{head} id 0x{dns_id:04x}"
    if is_resp:
        pkt.keys["dns_rcode"] = DNS_RCODES.get(rcode, str(rcode))
    off, question = 12, ""
    if qd:
        name, off = _dns_name(msg, off)
        qtype = _u16(msg, off, "DNS question")
        _take(msg, off, 4, "DNS question")
        off += 4
        tname = DNS_TYPES.get(qtype, f"TYPE{qtype}")
        pkt.keys["dns_name"], pkt.keys["dns_qtype"] = name.rstrip(".") or ".", tname
        question = f" {tname} {pkt.keys['dns_name']}"
        pkt.summary = f"{head}{question} id 0x{dns_id:04x}"
        for _ in range(min(qd, DNS_MAX_RRS) - 1):  # rarely more than one: skip the rest
            off = _dns_name(msg, off)[1] + 4
    answers: list[str] = []
    try:
        for _ in range(min(an, DNS_MAX_RRS)):
            off = _dns_name(msg, off)[1]
            rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", _take(msg, off, 10, "DNS answer"))
            rdata = _dns_rdata(msg, rtype, off + 10, rdlen)
            answers.append(f"{DNS_TYPES.get(rtype, f'TYPE{rtype}')} {rdata}")
            off += 10 + rdlen
    finally:  # keep the answers read so far even when a later one is broken
        if answers:
            more = f", +{len(answers) - 4} more" if len(answers) > 4 else ""
            shown = ", ".join(answers[:4]) + more
            pkt.summary = f"{head}{question} id 0x{dns_id:04x}: {shown}"


def _dns_udp(pkt: Packet, payload: bytes) -> bool:
    _dns_message(pkt, payload)
    return True


def _dns_tcp(pkt: Packet, payload: bytes) -> bool:
    if len(payload) < 14:  # a lone length prefix or a continuation: nothing to read
        return False
    length = struct.unpack("!H", payload[:2])[0]
    _dns_message(pkt, payload[2:2 + length])
    return True


# ---------------------------------------------------------------------------- HTTP

HTTP_METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT",
                b"TRACE")
HTTP_KEY_HEADERS = {"traceparent": "traceparent", "x-cache": "x_cache",
                    "x-served-by": "x_served_by", "x-request-id": "request_id", "host": "http_host"}


def describe_http(payload: bytes) -> Packet | None:
    """An HTTP/1 request or response head as the decoder describes it on the wire (summary and
    keys), for a payload that came another way (decrypted from TLS); None when it is not one."""
    pkt = Packet(length=len(payload))
    return pkt if _http(pkt, payload) else None


def _http(pkt: Packet, payload: bytes) -> bool:
    first = payload[:8].split(b" ", 1)[0]
    is_request = first in HTTP_METHODS and payload[len(first):len(first) + 1] == b" "
    if not (is_request or payload.startswith(b"HTTP/1.")):
        return False
    head = payload.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ", 2)
    pkt.proto = "http"
    if payload.startswith(b"HTTP/1."):
        status = parts[1] if len(parts) > 1 else ""
        reason = parts[2] if len(parts) > 2 else ""
        pkt.keys["http_status"] = status
        pkt.summary = f"HTTP {status} {reason}".rstrip()
    else:
        path = parts[1] if len(parts) > 1 else ""
        pkt.keys["http_method"], pkt.keys["http_path"] = parts[0], path[:500]
        pkt.summary = f"HTTP {parts[0]} {path}"
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        key = HTTP_KEY_HEADERS.get(name.strip().lower())
        if sep and key and key not in pkt.keys:
            pkt.keys[key] = value.strip()[:200]
    return True


# ---------------------------------------------------------------------------- TLS

TLS_RECORDS = {20: "ChangeCipherSpec", 21: "alert", 22: "handshake", 23: "application data"}
TLS_HANDSHAKES = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket",
                  8: "EncryptedExtensions", 11: "Certificate", 12: "ServerKeyExchange",
                  13: "CertificateRequest", 14: "ServerHelloDone", 15: "CertificateVerify",
                  16: "ClientKeyExchange", 20: "Finished"}
TLS_VERSIONS = {0x0301: "TLS1.0", 0x0302: "TLS1.1", 0x0303: "TLS1.2", 0x0304: "TLS1.3"}


def tls_extensions(body: bytes, off: int) -> dict[int, bytes]:
    """Extensions present in this segment; a ClientHello with big key shares can span TCP
    segments, so a short read simply ends the list."""
    exts: dict[int, bytes] = {}
    if off + 2 > len(body):
        return exts
    end = min(len(body), off + 2 + struct.unpack("!H", body[off:off + 2])[0])
    off += 2
    while off + 4 <= end:
        etype, elen = struct.unpack("!HH", body[off:off + 4])
        if off + 4 + elen > end:
            break
        exts[etype] = body[off + 4:off + 4 + elen]
        off += 4 + elen
    return exts


def _tls_sni(ext: bytes) -> str | None:
    off = 2  # skip server_name_list length
    while off + 3 <= len(ext):
        kind, n = ext[off], struct.unpack("!H", ext[off + 1:off + 3])[0]
        if kind == 0 and off + 3 + n <= len(ext):
            return ext[off + 3:off + 3 + n].decode("ascii", "replace")
        off += 3 + n
    return None


def _tls_hello(pkt: Packet, msg_type: int, body: bytes) -> str:
    """Describe a Client/ServerHello from whatever part of it this segment holds."""
    name = TLS_HANDSHAKES[msg_type]
    off = 2 + 32  # legacy_version, random
    if off >= len(body):
        return name
    off += 1 + body[off]  # session id
    if msg_type == 1:
        if off + 2 > len(body):
            return name
        off += 2 + struct.unpack("!H", body[off:off + 2])[0]  # cipher suites
        if off >= len(body):
            return name
        off += 1 + body[off]  # compression methods
        exts = tls_extensions(body, off)
        text = name
        sni = _tls_sni(exts[0]) if 0 in exts else None
        if sni:
            pkt.keys["sni"] = sni
            text += f" SNI {sni}"
        if 16 in exts and len(exts[16]) > 3:  # ALPN: first protocol offered
            pkt.keys["alpn"] = exts[16][3:3 + exts[16][2]].decode("ascii", "replace")
        return text
    if off + 3 > len(body):
        return name
    cipher = struct.unpack("!H", body[off:off + 2])[0]
    version = struct.unpack("!H", body[0:2])[0]
    exts = tls_extensions(body, off + 3)
    if len(exts.get(43, b"")) == 2:  # TLS 1.3 hides its version in supported_versions
        version = struct.unpack("!H", exts[43])[0]
    return f"{name} {TLS_VERSIONS.get(version, hex(version))} cipher 0x{cipher:04x}"


def _tls_handshakes(pkt: Packet, record: bytes, length: int) -> list[str]:
    """The handshake messages a record of `length` bytes holds, as far as this segment has
    them (TLS 1.2 sends ServerHello, Certificate, ServerKeyExchange and ServerHelloDone in one
    record). A whole record its messages do not fill end to end is TLS 1.2's encrypted Finished."""
    names, off = [], 0
    while off + 4 <= len(record) and len(names) < 6:
        kind, size = record[off], int.from_bytes(record[off + 1:off + 4], "big")
        if kind not in TLS_HANDSHAKES:
            break
        body = record[off + 4:off + 4 + size]
        names.append(_tls_hello(pkt, kind, body) if kind in (1, 2) else TLS_HANDSHAKES[kind])
        off += 4 + size
    if len(record) == length and off != length:
        return ["encrypted handshake"]
    return names or ["handshake"]


def _tls(pkt: Packet, payload: bytes) -> bool:
    if len(payload) < 5 or payload[0] not in TLS_RECORDS or payload[1] != 3 or payload[2] > 4:
        return False
    pkt.proto = "tls"
    parts: list[str] = []
    off = 0
    while off + 5 <= len(payload) and len(parts) < 8:
        rtype, rlen = payload[off], struct.unpack("!H", payload[off + 3:off + 5])[0]
        if rtype not in TLS_RECORDS:
            break
        record = payload[off + 5:off + 5 + rlen]
        if rtype == 22 and record and (off == 0 or len(record) == rlen):
            parts += _tls_handshakes(pkt, record, rlen)
        else:
            parts.append(TLS_RECORDS[rtype])
        off += 5 + rlen
    pkt.summary = "TLS " + " + ".join(dict.fromkeys(parts))  # dedupe repeated record kinds
    return True


# ---------------------------------------------------------------------------- SMTP / IMAP

def _mask_secret(line: str) -> str:
    """Traces are shown to people: hide credentials of the lab's test accounts anyway."""
    words = line.split(" ")
    upper = [w.upper() for w in words]
    if upper[:1] == ["AUTH"] and len(words) > 2:
        return " ".join(words[:2] + ["***"])
    if len(words) > 3 and upper[1] == "LOGIN":  # IMAP: tag LOGIN user password
        return " ".join(words[:3] + ["***"])
    return line


def _smtp(pkt: Packet, payload: bytes) -> bool:
    line = _first_line(payload)
    if line is None:
        return False
    line = _mask_secret(line)
    pkt.proto, pkt.summary = "smtp", f"SMTP {line}"
    upper = line.upper()
    if upper.startswith("MAIL FROM:"):
        pkt.keys["mail_from"] = line[10:].strip()
    elif upper.startswith("RCPT TO:"):
        pkt.keys["rcpt_to"] = line[8:].strip()
    elif line[:3].isdigit():
        pkt.keys["smtp_code"] = line[:3]
    return True


def _imap(pkt: Packet, payload: bytes) -> bool:
    line = _first_line(payload)
    if line is None:
        return False
    pkt.proto, pkt.summary = "imap", f"IMAP {_mask_secret(line)}"
    return True


# ---------------------------------------------------------------------------- dispatch tables

_BY_ETHERTYPE = {ETH_IPV4: _ipv4, ETH_ARP: _arp, ETH_IPV6: _ipv6}
_BY_IP_PROTO = {1: _icmp, 6: _tcp, 17: _udp, 58: _icmp6}
_UDP_APPS = {53: _dns_udp, 5353: _dns_udp, 67: _dhcp, 68: _dhcp}
PGSQL_PORT = 5432
PGSQL_STARTUP_CODES = {196608: "startup", 80877103: "SSL request", 80877104: "GSS encryption request",
                       80877102: "cancel request"}
# Message types by direction (the same letter means different things each way: 'D', 'C', 'E', 'S').
PGSQL_FRONTEND = {b"Q": "query", b"P": "parse", b"B": "bind", b"E": "execute", b"S": "sync", b"X": "terminate",
                  b"p": "password", b"D": "describe", b"C": "close", b"H": "flush", b"F": "function call",
                  b"d": "copy data", b"c": "copy done", b"f": "copy fail"}
PGSQL_BACKEND = {b"R": "auth", b"S": "parameter status", b"K": "backend key", b"Z": "ready", b"T": "row description",
                 b"D": "data row", b"C": "command complete", b"E": "error", b"N": "notice", b"1": "parse complete",
                 b"2": "bind complete", b"3": "close complete", b"n": "no data", b"s": "portal suspended",
                 b"t": "parameter description", b"A": "notification", b"I": "empty query", b"G": "copy in",
                 b"H": "copy out", b"W": "copy both", b"V": "function result", b"v": "protocol version"}
PGSQL_AUTH = {0: "ok", 3: "cleartext password", 5: "MD5 password", 10: "SASL", 11: "SASL continue", 12: "SASL final"}


def _pgsql_messages(payload: bytes, kinds: dict) -> list[tuple[bytes, bytes]] | None:
    """The (type, body) messages of a segment, or None when it is not PostgreSQL's framing. The
    last message may run past the segment (a long result continues in the next)."""
    messages, off = [], 0
    while off + 5 <= len(payload):
        kind, length = payload[off:off + 1], struct.unpack("!I", payload[off + 1:off + 5])[0]
        if kind not in kinds or length < 4:
            return None
        messages.append((kind, payload[off + 5:off + 1 + length]))
        off += 1 + length
    return messages if messages and off >= len(payload) - 4 else None


def _pgsql(pkt: Packet, payload: bytes) -> bool:
    """PostgreSQL's wire protocol, both ways (the server's port tells which): the start-up and
    authentication exchange, queries (a simple Query's text), and the server's answers (the
    CommandComplete tag, e.g. "SELECT 10")."""
    to_server = pkt.dst_port == PGSQL_PORT
    if to_server and len(payload) >= 8:
        length, code = struct.unpack("!II", payload[:8])
        if code in PGSQL_STARTUP_CODES and length == len(payload):
            pkt.proto = "pgsql"
            words = [PGSQL_STARTUP_CODES[code]]
            if code == 196608:
                fields = payload[8:].split(b"\0")
                params = dict(zip(fields[0::2], fields[1::2]))
                words += [f"{k.decode(errors='replace')}={params[k].decode(errors='replace')}"
                          for k in (b"user", b"database") if k in params]
            pkt.summary = "SQL " + " ".join(words)
            return True
    messages = _pgsql_messages(payload, PGSQL_FRONTEND if to_server else PGSQL_BACKEND)
    if messages is None:
        return False
    pkt.proto = "pgsql"
    kinds = PGSQL_FRONTEND if to_server else PGSQL_BACKEND
    kind, body = messages[0]
    if to_server and kind == b"Q":
        sql = body.split(b"\0", 1)[0].decode("utf-8", "replace")
        pkt.summary = "SQL " + " ".join(_TRACEPARENT_COMMENT.sub("", sql).split())[:100]
        return True
    tags = [b.split(b"\0", 1)[0].decode(errors="replace") for k, b in messages if k == b"C" and not to_server]
    if tags:
        pkt.summary = "SQL result " + ", ".join(tags)
        return True
    if kind == b"R" and len(body) >= 4:
        pkt.summary = "SQL auth " + PGSQL_AUTH.get(struct.unpack("!I", body[:4])[0], "request")
        return True
    names = list(dict.fromkeys(kinds[k] for k, _ in messages))
    pkt.summary = "SQL " + " + ".join(names[:4]) + (" ..." if len(names) > 4 else "")
    return True


def _http_port(pkt: Packet, payload: bytes) -> bool:
    """On an HTTP port, a segment that starts no request or response is the rest of one (a
    long body), as Wireshark calls it: a continuation."""
    if _http(pkt, payload) or _tls(pkt, payload):
        return True
    pkt.proto = "http"
    pkt.summary = f"HTTP continuation ({len(payload)} bytes)"
    return True


_TRACEPARENT = re.compile(rb"traceparent='?(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})")
_TRACEPARENT_COMMENT = re.compile(r"\s*/\*traceparent='[^']*'\*/")

_TCP_APPS = {53: _dns_tcp, 25: _smtp, 587: _smtp, 143: _imap, PGSQL_PORT: _pgsql, 80: _http_port, 8080: _http_port}
_TCP_SNIFFERS = (_tls, _http)  # recognised by content on any port

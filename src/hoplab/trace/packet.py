"""What the decoder makes of one captured frame. Standard library only: agents run it inside
every node. Every field a frame does not have stays None; a malformed or truncated frame still
gives a Packet (with `error` set), never an exception."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Packet:
    length: int  # bytes on the wire (as captured)
    eth_src: str | None = None
    eth_dst: str | None = None
    ethertype: int | None = None
    proto: str = "unknown"  # the highest layer understood: arp, icmp, udp, tcp, dhcp, dns, http, tls, smtp, imap
    src_ip: str | None = None
    dst_ip: str | None = None
    ip_id: int | None = None
    ttl: int | None = None
    src_port: int | None = None
    dst_port: int | None = None
    tcp_flags: str | None = None  # e.g. "SYN", "SYN,ACK", "ACK", "PSH,ACK", "FIN,ACK", "RST"
    tcp_seq: int | None = None
    tcp_ack: int | None = None
    payload_len: int = 0  # L4 payload bytes
    payload_hash: str | None = None  # first 16 hex of sha1(L4 payload), None when empty
    summary: str = ""  # one human line: "DNS query A www.example.test id 0x1a2b", "TLS ClientHello SNI www.example.test"
    keys: dict[str, str] = field(default_factory=dict)  # correlation keys: dns_id, dhcp_xid, traceparent, sni, ...
    error: str | None = None  # "truncated IPv4 header", ...
    payload: bytes = field(default=b"", repr=False)  # the TCP payload (for TLS decryption at the collector)

    def to_json(self) -> dict:
        out = asdict(self)
        del out["payload"]
        return out

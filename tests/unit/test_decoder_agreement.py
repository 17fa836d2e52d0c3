"""hoplab's decoder against Wireshark's, frame by frame, on a real traced visit of this lab (a
renewed page load that missed the cache: DHCP, ARP, DNS through the NAT, TLS to the edge, HTTP
to the balancer and a replica, SQL to the database), stored as `hoplab trace show --format
pcapng` wrote it. Both dissect each frame alone (tshark with TCP reassembly off), and the
highest protocol each names must agree on at least 99% of the frames. A capture that carries the
client's TLS session keys (a Decryption Secrets Block) is read through them by both: Wireshark
shows HTTP inside the TLS records it can open, and so must hoplab's decryption."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from hoplab.trace.decode import decode
from hoplab.trace.render import DSB_TLS_KEY_LOG
from hoplab.trace.tls import KeyLog, decrypt
from hoplab.v1 import control_pb2 as pb

CAPTURES = sorted((Path(__file__).parents[1] / "data" / "captures").glob("*.pcapng"))
# Wireshark's layers that name a payload's format rather than a protocol hoplab summarises
PAYLOAD_FORMATS = {"data", "data-text-lines", "x509ce", "x509af", "x509sat", "pkcs-1", "pkix1explicit",
                   "pkix1implicit", "ber", "media", "urlencoded-form", "json", "xml", "png", "image-gif", "image-jfif"}


def frames(path: Path) -> list[bytes]:
    """The packet data of every Enhanced Packet Block, in file order."""
    data, off, found = path.read_bytes(), 0, []
    while off < len(data):
        kind, length = struct.unpack_from("<II", data, off)
        if kind == 6:
            captured = struct.unpack_from("<I", data, off + 20)[0]
            found.append(data[off + 28:off + 28 + captured])
        off += length
    return found


def key_log(path: Path) -> KeyLog:
    """The TLS key logs of every Decryption Secrets Block in the file."""
    data, off, text = path.read_bytes(), 0, ""
    while off < len(data):
        kind, length = struct.unpack_from("<II", data, off)
        if kind == 0x0A:
            secrets_type, size = struct.unpack_from("<II", data, off + 8)
            if secrets_type == DSB_TLS_KEY_LOG:
                text += data[off + 16:off + 16 + size].decode()
        off += length
    return KeyLog.parse(text, str(path))


def hoplab_layers(path: Path) -> list[str]:
    """hoplab's highest layer per frame; where the file's keys open a TLS record that ends in
    the frame and holds HTTP, http (what the trace's `decrypted` says at that hop)."""
    packets = [decode(frame) for frame in frames(path)]
    hops = [pb.Hop(record=pb.Record(node="file", direction="out", frame=frame, tcp_flags=p.tcp_flags or "",
                                    src=f"{p.src_ip}:{p.src_port}", dst=f"{p.dst_ip}:{p.dst_port}"))
            for frame, p in zip(frames(path), packets)]
    readout = decrypt(hops, key_log(path))
    return ["http" if i in readout.hops and "HTTP" in readout.hops[i].summary else p.proto
            for i, p in enumerate(packets)]


def wireshark_layers(path: Path) -> list[str]:
    out = subprocess.run(["tshark", "-n", "-o", "tcp.desegment_tcp_streams:FALSE", "-r", str(path), "-T", "fields",
                          "-e", "frame.protocols"], capture_output=True, text=True, check=True).stdout
    layers = []
    for line in out.splitlines():
        stack = [p for p in line.split(":") if p not in PAYLOAD_FORMATS]
        layers.append("icmp" if "icmp" in stack else stack[-1])  # an ICMP error quotes the packet it is about
    return layers


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is the reference")
@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_hoplab_and_wireshark_name_the_same_protocol(path):
    ours = hoplab_layers(path)
    theirs = wireshark_layers(path)
    assert len(ours) == len(theirs) > 50
    disagree = [(i + 1, mine, other) for i, (mine, other) in enumerate(zip(ours, theirs)) if mine != other]
    assert len(disagree) <= len(ours) // 100, f"{len(disagree)} of {len(ours)} frames disagree: {disagree}"
    assert {"dhcp", "arp", "dns", "tls", "http", "pgsql"} <= set(ours)

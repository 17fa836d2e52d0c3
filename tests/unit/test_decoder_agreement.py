"""hoplab's decoder against Wireshark's, frame by frame, on a real traced visit of this lab (a
renewed page load that missed the cache: DHCP, ARP, DNS through the NAT, TLS to the edge, HTTP
to the balancer and a replica, SQL to the database), stored as `hoplab trace show --format
pcapng` wrote it. Both dissect each frame alone (tshark with TCP reassembly off), and the
highest protocol each names must agree on at least 99% of the frames."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from hoplab.trace.decode import decode

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
    ours = [decode(frame).proto for frame in frames(path)]
    theirs = wireshark_layers(path)
    assert len(ours) == len(theirs) > 50
    disagree = [(i + 1, mine, other) for i, (mine, other) in enumerate(zip(ours, theirs)) if mine != other]
    assert len(disagree) <= len(ours) // 100, f"{len(disagree)} of {len(ours)} frames disagree: {disagree}"
    assert {"dhcp", "arp", "dns", "tls", "http", "pgsql"} <= set(ours)

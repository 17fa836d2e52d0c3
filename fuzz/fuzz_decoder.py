"""Fuzz the packet decoder with raw Ethernet frames, as a capture point hands them to the agent.

Per input, what the lab does with one captured frame: `decode` it (which must never raise, and
must not reach its last-resort handler: that is a decoder bug it hid), ship it as the agent does
(`control.agent.batch`), make the collector's raw `Record` of it (`control.server.records_of`)
and fill it in as the collector does (`trace.assemble.complete`), mask its credentials
(`credentials.Masker`, which keeps the frame's length), and cut TLS records and hellos from its TCP payload and try to decrypt it with
the captures' key log (`trace.tls`).
Seeds: every frame of tests/data/captures/*.pcapng; decoder.dict gives libFuzzer the values the
decoder dispatches on. Run by `fuzz/harness.py decoder` (make fuzz).
"""

from __future__ import annotations

import json

from harness import BrokenContract, expect
from hoplab.control.agent import batch
from hoplab.control import capture
from hoplab.control.server import records_of
from hoplab.trace import decode as decoder
from hoplab.trace import tls
from hoplab.trace.assemble import complete
from hoplab.trace.credentials import Masker
from hoplab.trace.packet import Packet
from hoplab.v1 import control_pb2 as pb
from seeds import CAPTURES, capture_key_log

# The sessions of the captures' own TLS connections: a mutated frame of theirs still finds its keys.
KEY_LOG = tls.KeyLog.parse("".join(capture_key_log(path) for path in CAPTURES), "captures")


def check_decode(frame: bytes) -> Packet:
    packet = decoder.decode(frame)
    if (packet.error or "").startswith("decoder error"):
        # decode turned an exception into Packet.error so that an agent survives it: raise it
        # again, from the layers decode runs, for its traceback
        try:
            decoder._ethernet(Packet(length=len(frame)), frame)
        except decoder._Bad:
            pass
        raise BrokenContract(f"decode's last-resort handler caught it: {packet.error}")
    expect(packet.length == len(frame), f"length: {packet.length} for {len(frame)} bytes")
    expect(bool(packet.summary) and packet.summary.isprintable() and len(packet.summary) <= decoder.SUMMARY_MAX,
           f"summary: not one printable line of at most {decoder.SUMMARY_MAX}: {packet.summary!r}")
    expect(all(isinstance(k, str) and isinstance(v, str) for k, v in packet.keys.items()),
           f"keys: not all strings: {packet.keys!r}")
    json.dumps(packet.to_json())
    return packet


def check_frame(frame: bytes) -> None:
    """Raise on any input that breaks the contract of the code a captured frame goes through."""
    packet = check_decode(frame)
    record, = records_of(batch("c1", [capture.pack("eth0", [capture.Packet(0, "in", frame, len(frame))])]).batch, "node")
    complete(record)
    record.SerializeToString()
    masked = Masker().frame(frame, ("node", "eth0"))
    expect(len(masked) == len(frame), f"masking: the frame's length changed ({len(frame)} to {len(masked)})")
    if packet.payload and packet.tcp_seq is not None:
        records, _ = tls._records([(0, packet.tcp_seq, packet.payload)])
        tls._hello(records, 1)
        tls._hello(records, 2)
        hop = pb.Hop(record=pb.Record(node="node", iface="eth0", direction="out", frame=frame,
                                      tcp_flags=packet.tcp_flags or "none", src=record.src, dst=record.dst))
        tls.decrypt([hop], KEY_LOG)

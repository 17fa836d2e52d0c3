"""Packet capture inside a node: one AF_PACKET socket per data-plane interface, with the
filter compiled to classic BPF by tcpdump and attached in the kernel (SO_ATTACH_FILTER), so
only matching packets ever reach the agent, cut to SNAPLEN by the filter itself. The kernel writes
them into a TPACKET_V3 ring shared with the agent (mmap): blocks of packets, each handed over
when full or within 2 x RETIRE_MS of its first packet; the agent reads them every POLL_S,
however many packets it sees. The agent ships each block as the kernel wrote
it (one copy, no work per packet): the collector reads its packets (`packets`) when a trace
needs them. Where every neighbour on a network captures too, a ring takes only what arrives
(PACKET_IGNORE_OUTGOING: the kernel does not even copy what leaves for it), and the collector
makes each departure out of its arrival at the peer: each frame on a link is taken once. The
ring's timestamps (the kernel's, in ns) put every node's packets on the one clock all
namespaces share. Nothing is decoded here; the collector does that, once."""

from __future__ import annotations

import ctypes
import mmap
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from hoplab import bounded

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6  # struct tpacket_stats_v3 {tp_packets, tp_drops, ...}: reading it resets it
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20; before it, the filter drops them (`inbound`)
TPACKET_V3 = 2
TP_STATUS_KERNEL, TP_STATUS_USER = 0, 1
# sockaddr_ll.sll_pkttype: a frame to this host, to all, to a group, to another host's MAC, or sent
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = 0, 1, 2, 3, 4
SNAPLEN = 4096  # enough for every header and the start of any payload we decode
MAX_SECONDS = 600
MAX_PACKETS = 200_000
COMPILE_TIMEOUT_S = 10  # tcpdump -ddd compiling a filter
# The ring of one interface: BLOCKS blocks of BLOCK_SIZE bytes (4 MiB, only while capturing).
# The kernel hands a block over when it is full or its retire timer (RETIRE_MS) fires, so at a
# trickle (a database node's health checks, 250 packets/s) each block holds a few dozen packets
# and the number of blocks sets how long an agent may be descheduled before the kernel drops:
# 8 blocks of 256 KiB lasted 0.75 s (a CI run on a loaded machine dropped), 128 of 32 KiB last
# about 9 s (agent stopped with SIGSTOP meanwhile). A block of 32 KiB still holds 7 full frames.
BLOCK_SIZE = 1 << 15
BLOCKS = 128
FRAME_SIZE = 2048  # TPACKET_V3 packs packets of any size into a block; the kernel checks this one
RETIRE_MS = 20
POLL_S = 0.1  # how often a capture reads its rings (a stop reads them at once)
# Bytes of blocks in one batch at most: well under gRPC's 4 MiB message bound.
BATCH_BYTES = 3 << 20


class CaptureError(Exception):
    pass


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def compile_filter(expression: str, iface: str) -> bytes:
    """The filter as classic BPF instructions (struct sock_filter[]), compiled by tcpdump; what it
    returns for a match is SNAPLEN, the bytes the kernel keeps of the packet."""
    result = bounded.run(["tcpdump", "-i", iface, "-s", str(SNAPLEN), "-ddd", expression], capture_output=True,
                         text=True, timeout=COMPILE_TIMEOUT_S)
    if result.returncode != 0:
        raise CaptureError(f"filter {expression!r}: {result.stderr.strip().splitlines()[-1]}")
    lines = result.stdout.split("\n")
    count = int(lines[0])
    code = b""
    for line in lines[1:count + 1]:
        op, jt, jf, k = (int(x) for x in line.split())
        code += struct.pack("HBBI", op, jt, jf, k)
    return code


class Ring:
    """One interface's socket and the TPACKET_V3 ring the kernel fills for it."""

    # struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status,
    # num_pkts, offset_to_first_pkt, blk_len, ...
    _BLOCK = struct.Struct("IIII")

    def __init__(self, iface: str, expression: str, arrivals_only: bool = False):
        self.iface = iface
        # Protocol 0: nothing reaches the socket before bind(), when the filter and ring are set.
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            if arrivals_only:
                try:  # the kernel skips this socket for what leaves: no copy of it is made
                    self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                except OSError:  # an older kernel: the filter refuses them instead
                    expression = f"inbound and ({expression})"
            bpf = compile_filter(expression, iface)
            program = ctypes.create_string_buffer(bpf)
            fprog = _SockFprog(len(bpf) // 8, ctypes.addressof(program))
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, struct.pack(
                "7I", BLOCK_SIZE, BLOCKS, FRAME_SIZE, BLOCK_SIZE // FRAME_SIZE * BLOCKS, RETIRE_MS, 0, 0))
            self.ring = mmap.mmap(self.sock.fileno(), BLOCK_SIZE * BLOCKS)
            self.sock.bind((iface, ETH_P_ALL))
        except BaseException:
            self.sock.close()
            raise
        self.block = 0  # the next block to read: the kernel fills them in turn

    def read(self) -> list[Block]:
        """Every block the kernel has handed over, copied whole (its packets as the kernel
        wrote them), each given back after."""
        ring, read = self.ring, []
        while True:
            base = self.block * BLOCK_SIZE
            status, count, first, used = self._BLOCK.unpack_from(ring, base + 8)
            if not status & TP_STATUS_USER:
                return read
            if count:
                read.append(Block(self.iface, ring[base + first:base + used], count))
            struct.pack_into("I", ring, base + 8, TP_STATUS_KERNEL)
            self.block = (self.block + 1) % BLOCKS

    def filling(self) -> bool:
        """Whether the block the kernel fills now (the first after those handed over) holds
        packets it has not handed over yet."""
        for step in range(BLOCKS):
            status, count, _, _ = self._BLOCK.unpack_from(self.ring, (self.block + step) % BLOCKS * BLOCK_SIZE + 8)
            if not status & TP_STATUS_USER:
                return count > 0
        return False

    def close(self) -> None:
        self.ring.close()
        self.sock.close()


@dataclass
class CaptureStats:
    """What a capture missed: packets its sockets' buffers overflowed with (the kernel's count),
    and whether it stopped at its packet bound rather than its end."""

    kernel_drops: int = 0
    hit_bound: bool = False


def kernel_drops(sock: socket.socket) -> int:
    """Packets the kernel dropped for this socket since the last reading (PACKET_STATISTICS)."""
    try:
        _, dropped = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    except OSError:
        return 0
    return dropped


# struct tpacket3_hdr: tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status, tp_mac
_PACKET = struct.Struct("IIIIIIH")
_PKTTYPE = 48 + 10  # sockaddr_ll.sll_pkttype, after the header (TPACKET_ALIGN(48))
_MAC = 80  # where `pack` puts a frame: TPACKET_ALIGN(48 + sizeof(struct sockaddr_ll)), as the kernel does


@dataclass(slots=True)
class Block:
    """Packets of one interface as the kernel wrote them in its ring: `count` packets, each a
    struct tpacket3_hdr, a struct sockaddr_ll and the frame, from offset 0 of `data`."""

    iface: str
    data: bytes
    count: int

    def first(self, count: int) -> "Block":
        """The block cut after its first `count` packets."""
        end = 0
        for _ in range(min(count, self.count)):
            step, _, _, captured, _, _, mac = _PACKET.unpack_from(self.data, end)
            end = end + step if step else end + mac + captured
        return Block(self.iface, self.data[:end], min(count, self.count))


@dataclass(slots=True)
class Packet:
    ts_ns: int
    direction: str  # "in" or "out"
    frame: bytes  # the first SNAPLEN bytes
    length: int  # the frame's length on the wire
    pkttype: int = PACKET_HOST  # the kernel's word on whom it was for (PACKET_*)


def packets(data: bytes, count: int) -> Iterator[Packet]:
    """The packets of a block's `data` (Block.data): ValueError when it does not hold `count`."""
    at = 0
    for _ in range(count):
        if at + _MAC > len(data):
            raise ValueError(f"a block of {len(data)} bytes ends before its {count} packets")
        step, sec, nsec, captured, length, _, mac = _PACKET.unpack_from(data, at)
        if at + mac + captured > len(data):
            raise ValueError(f"a packet of {captured} bytes at {at + mac} runs past its block's {len(data)}")
        kind = data[at + _PKTTYPE]
        yield Packet(sec * 1_000_000_000 + nsec, "out" if kind == PACKET_OUTGOING else "in",
                     data[at + mac:at + mac + captured], length, kind)
        at = at + step if step else len(data)  # the kernel's last packet may say 0: nothing follows


def pack(iface: str, shipped: list[Packet]) -> Block:
    """Packets laid out as the kernel lays them in a block (tests, and the ingest benchmark's
    fake agents)."""
    data = bytearray()
    for p in shipped:
        step = (_MAC + len(p.frame) + 15) // 16 * 16
        header = bytearray(_MAC)
        _PACKET.pack_into(header, 0, step, p.ts_ns // 1_000_000_000,
                          p.ts_ns % 1_000_000_000, len(p.frame), p.length, 0, _MAC)
        header[_PKTTYPE] = PACKET_OUTGOING if p.direction == "out" else p.pkttype
        data += header + p.frame + bytes(step - _MAC - len(p.frame))
    return Block(iface, bytes(data), len(shipped))


def batches(ifaces: list[str], expression: str, max_seconds: int, max_packets: int,
            stop: threading.Event, on_armed: Callable[[], None] = lambda: None,
            stats: CaptureStats | None = None, arrivals_only: frozenset[str] = frozenset()) -> Iterator[list[Block]]:
    """Blocks of packets matching `expression` on `ifaces`, until max_seconds, max_packets or
    `stop`: one list per wake-up, all that the rings handed over (empty when a short wait passed
    with none, so the consumer can flush what it holds); at the end, what the rings still held.
    `stats`, when given, says afterwards what the capture missed. On the interfaces named in
    `arrivals_only`, only what arrives."""
    stats = stats if stats is not None else CaptureStats()
    rings: list[Ring] = []
    try:
        for iface in ifaces:
            rings.append(Ring(iface, expression, iface in arrivals_only))
        for ring in rings:
            kernel_drops(ring.sock)  # from here on: the counter starts when the capture does
        on_armed()
        deadline = time.monotonic() + max_seconds
        count = 0
        while True:
            left = deadline - time.monotonic()
            done = stop.is_set() or left <= 0
            if done:  # a block still filling is handed over within 2 x RETIRE_MS: wait, then read all
                last = time.monotonic() + 2 * RETIRE_MS / 1000 + 0.005
                while any(ring.filling() for ring in rings) and time.monotonic() < last:
                    time.sleep(0.002)
            else:
                # A wake-up every POLL_S for every ring at once, not one per block: each wake-up
                # costs the agent more than the blocks it reads (select() woke it up to 50 times a
                # second per interface); the rings hold seconds of packets meanwhile.
                stop.wait(min(left, POLL_S))
            read: list[Block] = []
            for ring in rings:
                read += ring.read()
            got = sum(block.count for block in read)
            if count + got >= max_packets:
                stats.hit_bound = True
                yield _first(read, max_packets - count)
                return
            count += got
            yield read
            if done:
                return
    finally:
        for ring in rings:
            stats.kernel_drops += kernel_drops(ring.sock)
            ring.close()


def _first(blocks: list[Block], count: int) -> list[Block]:
    """The blocks holding the first `count` packets, the last one cut."""
    kept = []
    for block in blocks:
        if count <= 0:
            break
        kept.append(block if block.count <= count else block.first(count))
        count -= block.count
    return kept


def run_capture(ifaces: list[str], expression: str, max_seconds: int, max_packets: int,
                stop: threading.Event, emit: Callable[[list[Block]], None], flush_s: float = 0.1,
                batch_bytes: int = BATCH_BYTES, on_armed: Callable[[], None] = lambda: None,
                stats: CaptureStats | None = None, arrivals_only: frozenset[str] = frozenset()) -> int:
    """Capture and hand blocks over in batches (every `flush_s` or `batch_bytes`); the packets
    captured."""
    pending: list[Block] = []
    size, last, total = 0, time.monotonic(), 0
    for read in batches(ifaces, expression, max_seconds, max_packets, stop, on_armed, stats, arrivals_only):
        for block in read:
            if pending and size + len(block.data) > batch_bytes:
                emit(pending)
                pending, size, last = [], 0, time.monotonic()
            pending.append(block)
            size += len(block.data)
            total += block.count
        if pending and time.monotonic() - last >= flush_s:
            emit(pending)
            pending, size, last = [], 0, time.monotonic()
    if pending:
        emit(pending)
    return total

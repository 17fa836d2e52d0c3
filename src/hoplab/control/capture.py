"""Packet capture inside a node: one AF_PACKET socket per data-plane interface, with the
filter compiled to classic BPF by tcpdump and attached in the kernel (SO_ATTACH_FILTER), so
only matching packets ever reach Python. Kernel timestamps (SO_TIMESTAMPNS) put every node's
packets on the one clock all namespaces share. Each wake-up drains every ready socket (it is
non-blocking) and hands over what it read as one batch, and a busy capture lets packets gather
for COALESCE_S between wake-ups: the cost per packet is one recvmsg and a copy of at most
SNAPLEN bytes, not a wake-up of the agent. Nothing is decoded here; the collector does that, once."""

from __future__ import annotations

import ctypes
import select
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SOL_PACKET = 263
PACKET_STATISTICS = 6  # struct tpacket_stats {tp_packets, tp_drops}: reading it resets it
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
PACKET_OUTGOING = 4
SNAPLEN = 4096  # enough for every header and the start of any payload we decode
MAX_SECONDS = 600
MAX_PACKETS = 200_000


class CaptureError(Exception):
    pass


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def compile_filter(expression: str, iface: str) -> bytes:
    """The filter as classic BPF instructions (struct sock_filter[]), compiled by tcpdump."""
    result = subprocess.run(["tcpdump", "-i", iface, "-ddd", expression], capture_output=True, text=True)
    if result.returncode != 0:
        raise CaptureError(f"filter {expression!r}: {result.stderr.strip().splitlines()[-1]}")
    lines = result.stdout.split("\n")
    count = int(lines[0])
    code = b""
    for line in lines[1:count + 1]:
        op, jt, jf, k = (int(x) for x in line.split())
        code += struct.pack("HBBI", op, jt, jf, k)
    return code


def open_socket(iface: str, bpf: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    program = ctypes.create_string_buffer(bpf)
    fprog = _SockFprog(len(bpf) // 8, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((iface, 0))
    # Packets queued between socket() and the filter being attached are not filtered: drain.
    sock.setblocking(False)
    try:
        while True:
            sock.recv(SNAPLEN)
    except BlockingIOError:
        pass
    return sock


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


@dataclass(slots=True)
class Frame:
    iface: str
    direction: str  # "in" or "out"
    ts_ns: int
    data: bytes  # the first SNAPLEN bytes
    length: int  # the frame's length on the wire


COALESCE_S = 0.02  # after a wake-up that found packets, how long the next one waits: busy, a
# capture reads its sockets ~50 times a second, not once a packet (their 4 MiB buffers hold them)
DRAIN_MAX = 1024  # packets read from one socket per wake-up, at most: the others get their turn


def _read(sock: socket.socket, iface: str, buffer: bytearray, view: memoryview, limit: int) -> list[Frame]:
    """What `sock` holds now, up to `limit` frames: each its first SNAPLEN bytes, its length on
    the wire (MSG_TRUNC makes recvmsg say it), its kernel timestamp and direction."""
    read = []
    while len(read) < limit:
        try:
            length, ancillary, _, address = sock.recvmsg_into((buffer,), socket.CMSG_SPACE(16), socket.MSG_TRUNC)
        except BlockingIOError:
            break
        ts_ns = 0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(value) >= 16:
                seconds, nanos = _TIMESPEC.unpack_from(value)
                ts_ns = seconds * 1_000_000_000 + nanos
        read.append(Frame(iface, "out" if address[2] == PACKET_OUTGOING else "in", ts_ns or time.time_ns(),
                          bytes(view[:min(length, SNAPLEN)]), length))
    return read


_TIMESPEC = struct.Struct("qq")


def batches(ifaces: list[str], expression: str, max_seconds: int, max_packets: int,
            stop: threading.Event, on_armed: Callable[[], None] = lambda: None,
            stats: CaptureStats | None = None) -> Iterator[list[Frame]]:
    """Frames matching `expression` on `ifaces`, until max_seconds, max_packets or `stop`: one
    list per wake-up, all that every ready socket held (empty when a short wait passed with
    none, so the consumer can flush what it holds). `stats`, when given, says afterwards what
    the capture missed."""
    stats = stats if stats is not None else CaptureStats()
    sockets = {open_socket(i, compile_filter(expression, i)): i for i in ifaces}
    for sock in sockets:
        kernel_drops(sock)  # from here on: the counter starts when the capture does
    on_armed()
    deadline = time.monotonic() + max_seconds
    buffer = bytearray(SNAPLEN)
    view = memoryview(buffer)
    count = 0
    try:
        while count < max_packets and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select(list(sockets), [], [], min(left, 0.1))
            read: list[Frame] = []
            for sock in ready:
                read += _read(sock, sockets[sock], buffer, view, min(DRAIN_MAX, max_packets - count - len(read)))
            count += len(read)
            yield read
            if count >= max_packets:
                stats.hit_bound = True
                return
            if read:  # busy: let packets gather in the sockets' buffers, then read them in one go
                stop.wait(COALESCE_S)
    finally:
        for sock in sockets:
            stats.kernel_drops += kernel_drops(sock)
            sock.close()


def run_capture(ifaces: list[str], expression: str, max_seconds: int, max_packets: int,
                stop: threading.Event, emit: Callable[[list[Frame]], None], flush_s: float = 0.1,
                batch: int = 256, on_armed: Callable[[], None] = lambda: None,
                stats: CaptureStats | None = None) -> int:
    """Capture and hand frames over in batches (every `flush_s` or `batch` frames)."""
    pending: list[Frame] = []
    last = time.monotonic()
    total = 0
    for read in batches(ifaces, expression, max_seconds, max_packets, stop, on_armed, stats):
        pending += read
        total += len(read)
        if pending and (len(pending) >= batch or time.monotonic() - last >= flush_s):
            emit(pending)
            pending, last = [], time.monotonic()
    if pending:
        emit(pending)
    return total

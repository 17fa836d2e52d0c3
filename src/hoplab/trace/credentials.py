"""Credentials in captured frames, overwritten before a frame leaves the control service.

Summaries never show a password (decode's `_mask_secret`); the frames themselves go out too, in
pcapng files and streamed records, so the same secrets are blanked there: each secret byte
becomes `*`, the frame keeps its length (TCP sequence numbers still add up; Wireshark shows the
segment with a bad checksum, which it does not check by default). What is masked, client to
server only:

- SMTP (25, 587): `AUTH MECH INITIAL-RESPONSE`'s response, and every line the client sends after
  the server's `334` challenge (AUTH LOGIN's user and password lines).
- IMAP (143): `TAG LOGIN USER PASSWORD`'s password, `TAG AUTHENTICATE MECH INITIAL`'s response,
  and every line the client sends after the server's `+` continuation.
- PostgreSQL (5432): the body of every PasswordMessage / SASL response (`p`).

A conversation's state (a challenge pending, until the server speaks again) is kept per TCP
connection as each capture point saw it (node and interface: one socket, its own time order),
so one `Masker` serves a whole trace, or a stream whose nodes' batches interleave. A
retransmitted answer is masked like the first. Standard library only."""

from __future__ import annotations

import re

from hoplab.trace.decode import decode

SMTP_PORTS = (25, 587)
IMAP_PORT = 143
PGSQL_PORT = 5432
MASK = ord("*")
_SMTP_AUTH = re.compile(rb"^(AUTH[ \t]+\S+[ \t]+)(.+)$", re.IGNORECASE)
_IMAP_LOGIN = re.compile(rb"^(\S+[ \t]+LOGIN[ \t]+(?:\"[^\"]*\"|\S+)[ \t]+)(.+)$", re.IGNORECASE)
_IMAP_AUTHENTICATE = re.compile(rb"^(\S+[ \t]+AUTHENTICATE[ \t]+\S+[ \t]+)(.+)$", re.IGNORECASE)


def _blank(data: bytearray, start: int, end: int) -> None:
    data[start:end] = bytes([MASK]) * (end - start)


def _lines(payload: bytes):
    """(start, end) of each line's text, without its CR LF."""
    start = 0
    while start < len(payload):
        newline = payload.find(b"\n", start)
        stop = len(payload) if newline < 0 else newline + 1
        end = newline if newline >= 0 else len(payload)
        if end > start and payload[end - 1:end] == b"\r":
            end -= 1
        yield start, end
        start = stop


class Masker:
    """Masks the credentials of frames given in capture order; `masked` counts the frames changed."""

    def __init__(self):
        self.challenged: set[tuple] = set()  # connections whose server asked for a credential line
        self.masked = 0

    def frame(self, frame: bytes, seen_at: tuple[str, str] = ("", "")) -> bytes:
        """The frame with its credentials blanked (the same object when it holds none);
        `seen_at`: the (node, interface) that captured it."""
        if not frame:
            return frame
        pkt = decode(frame)
        if not pkt.payload or pkt.src_port is None:
            return frame
        server_port = pkt.dst_port if pkt.dst_port in (*SMTP_PORTS, IMAP_PORT, PGSQL_PORT) else None
        connection = (*seen_at, pkt.src_ip, pkt.src_port, pkt.dst_ip, pkt.dst_port)
        if server_port is None:
            if pkt.src_port in (*SMTP_PORTS, IMAP_PORT):
                self._server_said(pkt.payload, (*seen_at, pkt.dst_ip, pkt.dst_port, pkt.src_ip, pkt.src_port),
                                  pkt.src_port)
            return frame
        offset = frame.rfind(pkt.payload)  # Ethernet padding, if any, comes after it
        if offset < 0:
            return frame
        payload = bytearray(pkt.payload)
        if server_port == PGSQL_PORT:
            self._pgsql(payload)
        else:
            self._text(payload, connection, server_port)
        if payload == pkt.payload:
            return frame
        self.masked += 1
        return frame[:offset] + bytes(payload) + frame[offset + len(payload):]

    def _server_said(self, payload: bytes, connection: tuple, port: int) -> None:
        last = [payload[s:e] for s, e in _lines(payload)][-1:]
        if not last:
            return
        asks = last[0].startswith(b"334") if port in SMTP_PORTS else last[0].startswith(b"+")
        if asks:
            self.challenged.add(connection)
        else:
            self.challenged.discard(connection)

    def _text(self, payload: bytearray, connection: tuple, port: int) -> None:
        patterns = (_SMTP_AUTH,) if port in SMTP_PORTS else (_IMAP_LOGIN, _IMAP_AUTHENTICATE)
        for start, end in list(_lines(bytes(payload))):
            line = bytes(payload[start:end])
            if connection in self.challenged:  # the answer to a challenge is the credential itself
                if line != b"*":  # "*" is how a client cancels an exchange
                    _blank(payload, start, end)
                continue
            for pattern in patterns:
                found = pattern.match(line)
                if found:
                    _blank(payload, start + found.start(2), start + found.end(2))
                    break

    @staticmethod
    def _pgsql(payload: bytearray) -> None:
        """Frontend messages: a type byte and a length that counts itself; a start-up message
        (no type byte) carries no secret."""
        off = 0
        while off + 5 <= len(payload):
            kind, length = payload[off:off + 1], int.from_bytes(payload[off + 1:off + 5], "big")
            if length < 4 or not kind.isalpha():
                return
            if kind == b"p":
                _blank(payload, off + 5, min(off + 1 + length, len(payload)))
            off += 1 + length

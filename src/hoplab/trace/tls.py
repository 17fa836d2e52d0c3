"""TLS you can read: the lab's clients log their TLS session keys (SSLKEYLOGFILE, the NSS key
log format that curl, Python's ssl module, browsers and Wireshark share), and the trace
decrypts what those sessions carried, at every hop that saw them (the client, the router on
both sides of its NAT, the edge).

Per capture point (node, interface) and connection, each direction's TCP payload is put back in
order by sequence number (a retransmission counted once); the TLS records are cut from it; the
ClientHello's random names the session in the key log and the ServerHello gives the version and
cipher suite. Then:
  - TLS 1.3 (RFC 8446 §7): handshake traffic secrets until each side's Finished, then the
    application traffic secrets; key and IV by HKDF-Expand-Label; nonce = IV xor record number;
    the inner content type is the last non-zero byte of the plaintext.
  - TLS 1.2 (RFC 5246 §6.3, RFC 5288, RFC 7905): the master secret (CLIENT_RANDOM) expanded by
    the PRF into write keys and IVs; encrypted from each side's ChangeCipherSpec on.
AEAD suites only (AES-GCM, ChaCha20-Poly1305): the only ones the lab's edge offers, and the
only ones TLS 1.3 has. The record that ends in a packet is described at that packet's hop (an
HTTP request or response, a Finished, an alert), so a request shows where it completes.

Key log lines are checked (`KeyLog.parse`): a malformed one is refused with its line number."""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections import defaultdict
from dataclasses import dataclass, field

from hoplab.trace.decode import TLS_HANDSHAKES, decode, describe_http, tls_extensions

MAX_KEY_LOG_BYTES = 1 << 20
MAX_KEY_LOG_LINES = 10_000
_LINE = re.compile(r"([A-Z][A-Z0-9_]*) ([0-9A-Fa-f]+) ([0-9A-Fa-f]+)")
# label -> secret length in bytes (None: a TLS 1.3 secret, the length of the suite's hash)
KNOWN_LABELS = {"CLIENT_RANDOM": 48, "CLIENT_EARLY_TRAFFIC_SECRET": None, "CLIENT_HANDSHAKE_TRAFFIC_SECRET": None,
                "SERVER_HANDSHAKE_TRAFFIC_SECRET": None, "CLIENT_TRAFFIC_SECRET_0": None,
                "SERVER_TRAFFIC_SECRET_0": None, "EARLY_EXPORTER_SECRET": None, "EXPORTER_SECRET": None}
ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure",
          42: "bad_certificate", 46: "certificate_unknown", 48: "unknown_ca", 50: "decode_error",
          51: "decrypt_error", 70: "protocol_version", 80: "internal_error", 90: "user_canceled",
          112: "unrecognized_name", 116: "certificate_required", 120: "no_application_protocol"}


class KeyLogError(ValueError):
    """A key log that is not in the NSS key log format; the message names the line."""


@dataclass(frozen=True)
class KeyLog:
    """client random -> label -> secret, and the lines as given (for a pcapng's Decryption
    Secrets Block)."""

    secrets: dict[bytes, dict[str, bytes]] = field(default_factory=dict)
    text: str = ""

    @classmethod
    def parse(cls, text: str, source: str = "key log") -> "KeyLog":
        if len(text.encode()) > MAX_KEY_LOG_BYTES:
            raise KeyLogError(f"{source}: larger than {MAX_KEY_LOG_BYTES} bytes")
        secrets: dict[bytes, dict[str, bytes]] = defaultdict(dict)
        kept = []
        lines = text.splitlines()
        if len(lines) > MAX_KEY_LOG_LINES:
            raise KeyLogError(f"{source}: more than {MAX_KEY_LOG_LINES} lines")
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            found = _LINE.fullmatch(line)
            if not found:
                raise KeyLogError(f"{source}: line {number}: expected 'LABEL <client random> <secret>' "
                                  f"in hex (the NSS key log format), got {line[:60]!r}")
            label, random_hex, secret_hex = found.groups()
            if len(random_hex) != 64:
                raise KeyLogError(f"{source}: line {number}: the client random must be 32 bytes "
                                  f"(64 hex digits), not {len(random_hex)} digits")
            if len(secret_hex) % 2:
                raise KeyLogError(f"{source}: line {number}: the secret has an odd number of hex digits")
            secret = bytes.fromhex(secret_hex)
            size = KNOWN_LABELS.get(label, 0)
            if size and len(secret) != size:
                raise KeyLogError(f"{source}: line {number}: a {label} secret is {size} bytes, not {len(secret)}")
            if size is None and len(secret) not in (32, 48):
                raise KeyLogError(f"{source}: line {number}: a {label} secret is 32 or 48 bytes "
                                  f"(SHA-256 or SHA-384), not {len(secret)}")
            secrets[bytes.fromhex(random_hex)][label] = secret
            kept.append(line)
        return cls(dict(secrets), "\n".join(kept) + ("\n" if kept else ""))

    def merged(self, other: "KeyLog") -> "KeyLog":
        secrets = {random: dict(labels) for random, labels in self.secrets.items()}
        for random, labels in other.secrets.items():
            secrets.setdefault(random, {}).update(labels)
        lines = dict.fromkeys(self.text.splitlines() + other.text.splitlines())
        return KeyLog(secrets, "".join(f"{line}\n" for line in lines))

    def __bool__(self) -> bool:
        return bool(self.secrets)


# ------------------------------------------------------------------ cipher suites

@dataclass(frozen=True)
class Suite:
    name: str
    aead: str  # "aes-gcm" or "chacha20"
    key_len: int
    hash: str  # the suite's hash: HKDF (1.3) or PRF (1.2)


SUITES = {
    0x1301: Suite("TLS_AES_128_GCM_SHA256", "aes-gcm", 16, "sha256"),
    0x1302: Suite("TLS_AES_256_GCM_SHA384", "aes-gcm", 32, "sha384"),
    0x1303: Suite("TLS_CHACHA20_POLY1305_SHA256", "chacha20", 32, "sha256"),
    0xC02B: Suite("ECDHE-ECDSA-AES128-GCM-SHA256", "aes-gcm", 16, "sha256"),
    0xC02F: Suite("ECDHE-RSA-AES128-GCM-SHA256", "aes-gcm", 16, "sha256"),
    0xC02C: Suite("ECDHE-ECDSA-AES256-GCM-SHA384", "aes-gcm", 32, "sha384"),
    0xC030: Suite("ECDHE-RSA-AES256-GCM-SHA384", "aes-gcm", 32, "sha384"),
    0xCCA8: Suite("ECDHE-RSA-CHACHA20-POLY1305", "chacha20", 32, "sha256"),
    0xCCA9: Suite("ECDHE-ECDSA-CHACHA20-POLY1305", "chacha20", 32, "sha256"),
    0x009C: Suite("AES128-GCM-SHA256", "aes-gcm", 16, "sha256"),
    0x009D: Suite("AES256-GCM-SHA384", "aes-gcm", 32, "sha384"),
}


def _hkdf_expand_label(secret: bytes, label: str, length: int, hash_name: str) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hash_name).digest()
        out += block
        counter += 1
    return out[:length]


def _prf(secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str) -> bytes:
    """TLS 1.2's PRF: P_hash(secret, label + seed)."""
    seed = label + seed
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, hash_name).digest()
        out += hmac.new(secret, a + seed, hash_name).digest()
    return out[:length]


class _Keys:
    """One direction's record protection: AEAD key, IV, and the record number."""

    def __init__(self, suite: Suite, key: bytes, iv: bytes, version: int):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

        self.aead = (AESGCM if suite.aead == "aes-gcm" else ChaCha20Poly1305)(key)
        self.iv, self.version, self.chacha = iv, version, suite.aead == "chacha20"
        self.seq = 0

    def open(self, header: bytes, body: bytes) -> tuple[int, bytes]:
        """(content type, plaintext) of one protected record; raises on a bad tag."""
        seq = self.seq.to_bytes(8, "big")
        if self.version == 0x0304:
            nonce = bytes(a ^ b for a, b in zip(self.iv, b"\0\0\0\0" + seq))
            inner = self.aead.decrypt(nonce, body, header).rstrip(b"\0")
            self.seq += 1
            if not inner:
                raise ValueError("empty inner plaintext")
            return inner[-1], inner[:-1]
        if self.chacha:
            nonce, ciphertext = bytes(a ^ b for a, b in zip(self.iv, b"\0\0\0\0" + seq)), body
        else:
            nonce, ciphertext = self.iv + body[:8], body[8:]
        aad = seq + header[:3] + struct.pack("!H", len(ciphertext) - 16)
        plain = self.aead.decrypt(nonce, ciphertext, aad)
        self.seq += 1
        return header[0], plain


def _keys_13(suite: Suite, secret: bytes) -> _Keys:
    return _Keys(suite, _hkdf_expand_label(secret, "key", suite.key_len, suite.hash),
                 _hkdf_expand_label(secret, "iv", 12, suite.hash), 0x0304)


def _keys_12(suite: Suite, master: bytes, client_random: bytes, server_random: bytes) -> tuple[_Keys, _Keys]:
    iv_len = 12 if suite.aead == "chacha20" else 4
    block = _prf(master, b"key expansion", server_random + client_random, 2 * (suite.key_len + iv_len), suite.hash)
    k = suite.key_len
    client_key, server_key = block[:k], block[k:2 * k]
    client_iv, server_iv = block[2 * k:2 * k + iv_len], block[2 * k + iv_len:]
    return _Keys(suite, client_key, client_iv, 0x0303), _Keys(suite, server_key, server_iv, 0x0303)


# ------------------------------------------------------------------ streams and records

@dataclass
class _Record:
    hop: int  # index of the hop whose packet held the record's last byte
    header: bytes
    body: bytes


def _records(segments: list[tuple[int, int, bytes]]) -> tuple[list[_Record], str]:
    """TLS records of one direction from its segments (hop index, TCP seq, payload), put in
    sequence order, retransmissions counted once. Returns the records and, when the stream
    could not be followed, why."""
    segments = sorted(segments, key=lambda s: ((s[1] - segments[0][1]) % (1 << 32), s[0]))
    base = segments[0][1]
    stream, ends, problem = bytearray(), [], ""
    for hop, seq, payload in segments:
        offset = (seq - base) % (1 << 32)
        if offset > len(stream):
            problem = f"{offset - len(stream)} bytes missing from the capture"
            break
        new = payload[len(stream) - offset:]
        if new:
            stream += new
            ends.append((len(stream), hop))
    records, off, end_index = [], 0, 0
    while off + 5 <= len(stream):
        length = struct.unpack("!H", stream[off + 3:off + 5])[0]
        if stream[off] not in (20, 21, 22, 23) or stream[off + 1] != 3:
            return records, "not a TLS record stream"
        if off + 5 + length > len(stream):
            break
        last = off + 5 + length
        while ends[end_index][0] < last:
            end_index += 1
        records.append(_Record(ends[end_index][1], bytes(stream[off:off + 5]), bytes(stream[off + 5:last])))
        off = last
    return records, problem


@dataclass
class _Hello:
    random: bytes
    suite: int = 0
    version: int = 0


def _hello(records: list[_Record], kind: int) -> _Hello | None:
    """The Client (1) or Server (2) Hello at the start of one direction's records."""
    for record in records[:4]:
        body = record.body
        if record.header[0] != 22 or len(body) < 38 or body[0] != kind:
            continue
        hello = _Hello(body[6:38], version=struct.unpack("!H", body[4:6])[0])
        if kind == 2:
            off = 38
            if off >= len(body):  # cut before its session id
                return None
            off += 1 + body[off]  # session id
            if off + 3 > len(body):
                return None
            hello.suite = struct.unpack("!H", body[off:off + 2])[0]
            versions = tls_extensions(body[4:], off + 3 - 4)
            if len(versions.get(43, b"")) == 2:
                hello.version = struct.unpack("!H", versions[43])[0]
        return hello
    return None


@dataclass
class Readout:
    """What decrypting one trace gave: a description per hop, and what could not be read."""

    hops: dict[int, "Plain"] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (node, "home 192.168.50.190:43224 > ...: why")
    sessions: int = 0  # connections decrypted


@dataclass
class Plain:
    summary: str
    keys: dict[str, str]
    cipher: str


def _handshake_types(plain: bytes) -> list[int]:
    types, off = [], 0
    while off + 4 <= len(plain):
        types.append(plain[off])
        off += 4 + int.from_bytes(plain[off + 1:off + 4], "big")
    return types


def _describe(content: int, plain: bytes) -> tuple[str, dict[str, str]]:
    if content == 23:
        packet = describe_http(plain)
        if packet is not None:
            return packet.summary, packet.keys
        return f"application data ({len(plain)} bytes)", {}
    if content == 22:
        return " + ".join(TLS_HANDSHAKES.get(t, f"handshake {t}") for t in _handshake_types(plain)), {}
    if content == 21 and len(plain) >= 2:
        return f"alert {ALERTS.get(plain[1], plain[1])}", {}
    return f"content type {content} ({len(plain)} bytes)", {}


def _decrypt_direction(records: list[_Record], keys: list[_Keys], version: int, out: dict[int, list]) -> str:
    """Decrypt one direction's protected records with `keys` in turn (TLS 1.3: handshake
    keys, then application keys after Finished; TLS 1.2: one key set after ChangeCipherSpec).
    Returns why it stopped early, or ""."""
    current, after_change = 0, False
    for record in records:
        rtype = record.header[0]
        if rtype == 20:  # ChangeCipherSpec: TLS 1.2 protects what follows; TLS 1.3 sends it for middleboxes
            after_change = True
            continue
        # TLS 1.3 protects every record it sends as application data; the rest are in clear
        # (the hellos); TLS 1.2 protects every record after ChangeCipherSpec
        if (rtype != 23) if version == 0x0304 else not after_change:
            continue
        if current >= len(keys):
            return "no key for the records after the handshake"
        try:
            content, plain = keys[current].open(record.header, record.body)
        except Exception as exc:  # an InvalidTag: the wrong keys, or a record we did not fully see
            return f"record {keys[current].seq} would not decrypt ({type(exc).__name__})"
        out[record.hop].append(_describe(content, plain))
        if version == 0x0304 and content == 22 and 20 in _handshake_types(plain) and current == 0:
            current = 1  # after this side's Finished: application traffic keys
    return ""


def decrypt(hops, key_log: KeyLog) -> Readout:
    """Decrypt every TLS connection among the hops (pb.Hop) whose session the key log holds."""
    readout = Readout()
    if not key_log:
        return readout
    # capture point and connection -> direction (src, dst) -> segments
    streams: dict[tuple, dict[tuple[str, str], list]] = defaultdict(lambda: defaultdict(list))
    for index, hop in enumerate(hops):
        r = hop.record
        if not r.tcp_flags or not r.frame or r.direction == "drop":
            continue
        packet = decode(r.frame)
        if packet.payload:
            streams[(r.node, r.iface, frozenset((r.src, r.dst)))][(r.src, r.dst)].append(
                (index, packet.tcp_seq, packet.payload))
    for (node, iface, _), directions in streams.items():
        cut = {direction: _records(segments) for direction, segments in directions.items()}
        client = next((d for d, (recs, _) in cut.items() if _hello(recs, 1)), None)
        if client is None:
            continue  # not TLS, or its start was not captured here
        server = (client[1], client[0])
        where = f"{iface} {client[0]} > {client[1]}"
        client_hello = _hello(cut[client][0], 1)
        server_hello = _hello(cut.get(server, ([], ""))[0], 2)
        labels = key_log.secrets.get(client_hello.random)
        if labels is None:
            readout.problems.append((node, f"{where}: the key log has no keys for this session"))
            continue
        if server_hello is None:
            readout.problems.append((node, f"{where}: the ServerHello was not captured"))
            continue
        suite = SUITES.get(server_hello.suite)
        if suite is None:
            readout.problems.append((node, f"{where}: cipher suite 0x{server_hello.suite:04x} is not one hoplab decrypts"))
            continue
        try:
            if server_hello.version == 0x0304:
                need = ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                        "SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0")
                missing = [label for label in need if label not in labels]
                if missing:
                    readout.problems.append((node, f"{where}: the key log lacks {', '.join(missing)}"))
                    continue
                client_keys = [_keys_13(suite, labels[need[0]]), _keys_13(suite, labels[need[1]])]
                server_keys = [_keys_13(suite, labels[need[2]]), _keys_13(suite, labels[need[3]])]
            else:
                if "CLIENT_RANDOM" not in labels:
                    readout.problems.append((node, f"{where}: the key log lacks the master secret (CLIENT_RANDOM)"))
                    continue
                c, s = _keys_12(suite, labels["CLIENT_RANDOM"], client_hello.random, server_hello.random)
                client_keys, server_keys = [c], [s]
        except ImportError as exc:
            readout.problems.append((node, f"{where}: cannot decrypt here: {exc}"))
            continue
        described: dict[int, list] = defaultdict(list)
        cipher = f"{'TLS1.3' if server_hello.version == 0x0304 else 'TLS1.2'} {suite.name}"
        for direction, keys in ((client, client_keys), (server, server_keys)):
            records, problem = cut.get(direction, ([], ""))
            stopped = _decrypt_direction(records, keys, server_hello.version, described)
            if problem or stopped:
                readout.problems.append((node, f"{where}: {direction[0]} > {direction[1]}: {problem or stopped}"))
        readout.sessions += 1
        for index, parts in described.items():
            keys: dict[str, str] = {}
            for _, found in parts:
                keys.update(found)
            readout.hops[index] = Plain(" + ".join(dict.fromkeys(text for text, _ in parts)), keys, cipher)
    return readout

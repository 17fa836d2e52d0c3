"""The fuzzers' seed corpora, made at fuzz time from files the repository already holds, so
nothing large is committed: every frame of the real lab captures (tests/data/captures/*.pcapng,
as `hoplab trace show --format pcapng` wrote them) for the packet decoder, and every topology
file (the labs, the worked example, the invalid ones) for the topology loader."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = sorted((ROOT / "tests" / "data" / "captures").glob("*.pcapng"))
TOPOLOGY_FILES = sorted([*(ROOT / "topology").glob("*.yaml"), *(ROOT / "examples" / "own-service").glob("*.yaml"),
                         *(ROOT / "tests" / "data" / "invalid").glob("*.yaml")])
EXAMPLE_DIR = ROOT / "examples" / "own-service"

SECTION_HEADER, ENHANCED_PACKET, DECRYPTION_SECRETS = 0x0A0D0D0A, 6, 0x0A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
DSB_TLS_KEY_LOG = 0x544C534B  # "TLSK", as hoplab.trace.render writes it


def pcapng_blocks(path: Path):
    """(block type, body) of each block of a little-endian pcapng file (what hoplab writes)."""
    data, off = path.read_bytes(), 0
    if struct.unpack_from("<II", data, 0)[0] != SECTION_HEADER or struct.unpack_from("<I", data, 8)[0] != BYTE_ORDER_MAGIC:
        raise ValueError(f"{path}: not a little-endian pcapng file")
    while off + 12 <= len(data):
        kind, length = struct.unpack_from("<II", data, off)
        if length < 12 or off + length > len(data):
            raise ValueError(f"{path}: block at byte {off} has a bad length {length}")
        yield kind, data[off + 8:off + length - 4]
        off += length


def capture_frames(path: Path) -> list[bytes]:
    """The packet data of every Enhanced Packet Block, in file order."""
    frames = []
    for kind, body in pcapng_blocks(path):
        if kind == ENHANCED_PACKET:
            captured = struct.unpack_from("<I", body, 12)[0]
            frames.append(body[20:20 + captured])
    return frames


def capture_key_log(path: Path) -> str:
    """The NSS key log lines of the file's Decryption Secrets Blocks."""
    text = ""
    for kind, body in pcapng_blocks(path):
        if kind == DECRYPTION_SECRETS:
            secrets_type, size = struct.unpack_from("<II", body, 0)
            if secrets_type == DSB_TLS_KEY_LOG:
                text += body[8:8 + size].decode()
    return text


def frame_seeds() -> list[bytes]:
    """Every distinct frame of the captures (a packet seen at several hops repeats)."""
    return list(dict.fromkeys(frame for path in CAPTURES for frame in capture_frames(path)))


def topology_seeds() -> list[bytes]:
    return list(dict.fromkeys(path.read_bytes() for path in TOPOLOGY_FILES))


def write_corpus(directory: Path, seeds: list[bytes]) -> Path:
    """One file per seed, named by its SHA-1 as libFuzzer names its own corpus files."""
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return directory

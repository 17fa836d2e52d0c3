"""The fuzzers' checks (fuzz/, `make fuzz`) on every seed of their corpora, once and unmutated:
each frame of the lab captures through the decoder's, each topology file through the loader's.
A seed that breaks a check is a regression, caught here in a second instead of minutes into
`make fuzz`. Neither check needs atheris."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))

import fuzz_decoder  # noqa: E402
import fuzz_topology  # noqa: E402
import seeds  # noqa: E402


def test_every_frame_of_the_lab_captures_passes_the_decoder_check():
    frames = seeds.frame_seeds()
    assert len(frames) > 100 and len(seeds.CAPTURES) >= 2
    for frame in frames:
        fuzz_decoder.check_frame(frame)


def test_every_topology_file_passes_the_loader_check():
    files = seeds.topology_seeds()
    assert len(files) >= len(list((seeds.ROOT / "tests" / "data" / "invalid").glob("*.yaml"))) + 2
    for text in files:
        fuzz_topology.check_topology(text)


def test_the_decoder_check_catches_what_decode_only_survived(monkeypatch):
    """decode turns a bug into Packet.error "decoder error: ..." so that an agent lives on; the
    check raises it again with its traceback."""
    def broken(pkt, frame):
        raise IndexError("a decoder bug")

    monkeypatch.setattr(fuzz_decoder.decoder, "_ethernet", broken)
    with pytest.raises(IndexError, match="a decoder bug"):
        fuzz_decoder.check_frame(seeds.frame_seeds()[0])

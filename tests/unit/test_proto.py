"""The committed gRPC stubs match proto/: regenerating them changes nothing."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_current(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) is not installed")
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", *protos], check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated
    for rel in generated:
        committed = ROOT / "src" / rel
        assert committed.exists(), f"{committed} is missing: run `make proto`"
        assert committed.read_text() == (tmp_path / rel).read_text(), f"{committed} is stale: run `make proto`"

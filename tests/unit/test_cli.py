"""The `hoplab` command: bad input exits 2 and says what is wrong, and `up` refuses an invalid
topology before it goes near a backend. The CLI runs in process (`cli.main`, as the installed
script calls it); two tests run the installed script itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hoplab import cli, spec

ROOT = Path(__file__).resolve().parents[2]
HOPLAB = Path(sys.executable).parent / "hoplab"
LAB = ROOT / "topology" / "lab.yaml"
INVALID = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))
EXPECT_LINE = re.compile(r"^# expect: (?P<field>.+?) :: (?P<reason>.+)$")


def expectation(path: Path) -> tuple[str, str]:
    match = EXPECT_LINE.match(path.read_text().splitlines()[0])
    assert match, f"{path}: no '# expect: FIELD :: REASON' first line"
    return match["field"].strip(), match["reason"].strip()


NO_ENGINE = "unix:///nonexistent/hoplab-unit-tests.sock"


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    # A Docker endpoint that does not exist: should a bug let a command past validation, it
    # fails to reach an engine instead of touching a real lab.
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


@pytest.fixture
def hoplab(capsys):
    """`hoplab ARGS...` in this process: (exit status, stdout, stderr) as a CompletedProcess."""
    def run(*args: str) -> subprocess.CompletedProcess:
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["hoplab", *args], code, out, err)

    return run


def installed(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": NO_ENGINE}
    return subprocess.run([str(HOPLAB), *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_the_cli_is_installed():
    assert HOPLAB.exists(), f"{HOPLAB} is missing: install the project into the venv"
    result = installed("validate", "--topology", str(LAB))
    assert result.returncode == 0 and "valid: lab 'lab'" in result.stdout, result.stderr


def test_the_installed_cli_refuses_a_bad_file_with_exit_2():
    path = INVALID[0]
    field, reason = expectation(path)
    result = installed("up", "--topology", str(path))
    assert result.returncode == 2 and f"{path}: {field}" in result.stderr and reason in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


@pytest.mark.parametrize("verb", ["validate", "up"])
@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_topology_exits_2_naming_file_and_field(hoplab, verb, path):
    field, reason = expectation(path)
    if verb == "up":
        # never hand `up` a file the validator accepts: that would start a lab
        with pytest.raises(spec.TopologyError):
            spec.load(path)
    result = hoplab(verb, "--topology", str(path))
    assert result.returncode == 2, result.stderr
    assert "invalid topology" in result.stderr
    assert f"{path}: {field}" in result.stderr, result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    if verb == "up":
        assert result.stdout == ""  # no progress: it stopped before doing anything


def test_validate_accepts_lab(hoplab):
    result = hoplab("validate", "--topology", str(LAB))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{LAB}: valid: lab 'lab', 3 networks, 12 nodes\n"
    assert result.stderr == ""


def test_exec_unknown_node_exits_2(hoplab):
    result = hoplab("exec", "--topology", str(LAB), "--backend", "docker", "nosuchnode", "--", "true")
    assert result.returncode == 2
    assert "NODE" in result.stderr and "'nosuchnode'" in result.stderr, result.stderr
    assert "router" in result.stderr  # it lists the nodes there are


def test_exec_without_command_exits_2(hoplab):
    result = hoplab("exec", "--topology", str(LAB), "--backend", "docker", "router")
    assert result.returncode == 2
    assert "CMD" in result.stderr, result.stderr


def test_graph_unknown_suffix_exits_2(hoplab, tmp_path):
    out = tmp_path / "file.xyz"
    result = hoplab("graph", "--topology", str(LAB), "-o", str(out))
    assert result.returncode == 2
    assert "file.xyz" in result.stderr and "-o" in result.stderr, result.stderr
    assert not out.exists()


def test_unknown_verb_exits_2(hoplab):
    result = hoplab("frobnicate")
    assert result.returncode == 2
    assert "frobnicate" in result.stderr


def test_unknown_backend_exits_2_naming_the_argument(hoplab):
    result = hoplab("status", "--backend", "vbox")
    assert result.returncode == 2
    assert "--backend" in result.stderr and "vbox" in result.stderr and "netns" in result.stderr


@pytest.mark.parametrize("argv, field", [(["stop", "nosuch"], "NODE"), (["restart", "web1", "--time", "-1"], "--time")])
def test_node_verbs_refuse_bad_arguments(hoplab, argv, field):
    result = hoplab(*argv, "--backend", "netns")
    assert result.returncode == 2, result.stderr
    assert f"{field}:" in result.stderr

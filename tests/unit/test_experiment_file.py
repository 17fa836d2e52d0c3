"""Experiment files: the shipped examples load; a bad file is refused naming the file and the
field, and the CLI exits 2 without touching a lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hoplab import spec
from hoplab.chaos.experiment import ExperimentError, FaultStep, Pause, load
from hoplab.paths import PROJECT_ROOT, TOPOLOGY_DIR

LAB = spec.load(TOPOLOGY_DIR / "lab.yaml")
EXAMPLES = sorted((PROJECT_ROOT / "experiments").glob("*.yaml"))
GOOD = """title: t
steady-state:
  - probe: page
    samples: 2
    tolerance: {success: 0.5, max_seconds: 3}
method:
  - fault: port-block
    target: cache
    duration: 10
    params: {port: 443}
  - pause: 1
rollbacks:
  - revert: faults
  - exec: {node: cache, command: [iptables, -S]}
"""


def test_examples_ship_and_load():
    for path in EXAMPLES:
        experiment = load(path, LAB)
        assert experiment.steady_state and experiment.method and experiment.rollbacks


def test_a_good_file_loads_every_part(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    experiment = load(path, LAB)
    assert experiment.steady_state[0].success == 0.5 and experiment.steady_state[0].max_seconds == 3
    assert experiment.method == [FaultStep("port-block", "cache", 10.0, {"port": 443}), Pause(1.0)]
    assert experiment.rollbacks[0].revert and experiment.rollbacks[1].command == ("iptables", "-S")


@pytest.mark.parametrize("old, new, field", [
    ("title: t", "titel: t", "titel"),
    ("probe: page", "probe: nosuch", "steady-state[0].probe"),
    ("samples: 2", "samples: 0", "steady-state[0].samples"),
    ("success: 0.5", "success: 2", "steady-state[0].tolerance.success"),
    ("max_seconds: 3", "max_secs: 3", "steady-state[0].tolerance.max_secs"),
    ("fault: port-block", "fault: nosuch", "method[0].fault"),
    ("target: cache", "target: nowhere", "method[0].target"),
    ("duration: 10", "duration: 100000", "method[0].duration"),
    ("params: {port: 443}", "params: {colour: red}", "method[0].params.colour"),
    ("pause: 1", "pause: -1", "method[1].pause"),
    ("revert: faults", "revert: everything", "rollbacks[0].revert"),
    ("command: [iptables, -S]", "command: iptables -S", "rollbacks[1].exec.command"),
    ("node: cache", "node: nowhere", "rollbacks[1].exec.node"),
])
def test_bad_field_is_named(tmp_path, old, new, field):
    assert old in GOOD
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(ExperimentError) as caught:
        load(path, LAB)
    assert str(caught.value).startswith(f"{path}: {field}: "), caught.value


def test_not_yaml_and_missing_parts(tmp_path):
    path = tmp_path / "bad.yaml"
    for text, field in (("title: [", "FILE"), ("title: t\n", "method"), ("- a\n", ": expected a mapping")):
        path.write_text(text)
        with pytest.raises(ExperimentError, match=field):
            load(path, LAB)


def test_cli_exits_2_naming_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("fault: port-block", "fault: nosuch"))
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/hoplab-unit-tests.sock"}
    result = subprocess.run([str(Path(sys.executable).parent / "hoplab"), "chaos", "run", str(path), "--topology",
                             str(TOPOLOGY_DIR / "lab.yaml")], capture_output=True, text=True, env=env,
                            cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"{path}: method[0].fault: unknown fault 'nosuch'" in result.stderr

"""Experiment files: the shipped examples load, and a good file loads every part. Bad files, each
refused by the CLI with its `FILE: FIELD: REASON` line: test_user_files."""

from __future__ import annotations

from pathlib import Path

from hoplab import spec
from hoplab.chaos.experiment import FaultStep, Pause, load
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

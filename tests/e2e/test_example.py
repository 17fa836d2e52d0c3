"""The worked example (examples/own-service) as a team runs it: its own pytest scenarios through
hoplab's pytest plugin, in a pytest of their own, on each backend. Here, inside the suite, each
backend's run goes to that backend's worker, beside its lab (the netns run on a twin of the
example's topology, so the two runs may overlap)."""

import subprocess
import sys

from helpers import EXAMPLE, EXAMPLE_TOPOLOGY, suite_topology

SCENARIOS = 5  # examples/own-service/tests/test_notes.py
TIMEOUT_S = 600


def test_the_examples_scenarios_pass_through_the_plugin(backend):
    topology = suite_topology(EXAMPLE_TOPOLOGY, backend)
    argv = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-p", "hoplab.pytest_plugin", str(EXAMPLE / "tests"),
            "--hoplab-topology", str(topology), "--hoplab-backend", backend]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=EXAMPLE)
    said = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, said
    assert f"{SCENARIOS} passed" in result.stdout, said

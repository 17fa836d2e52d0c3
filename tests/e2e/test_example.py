"""The worked example (examples/own-service) as a team runs it: its own pytest scenarios through
hoplab's pytest plugin, in a pytest of their own, on each backend. Here, inside the suite, each
backend's run goes to that backend's worker, beside its lab (the netns run on a twin of the
example's topology, so the two runs may overlap)."""

import os
import subprocess
import sys

import pytest

from helpers import EXAMPLE, EXAMPLE_IMAGE_TOPOLOGY, EXAMPLE_TOPOLOGY, missing_prerequisite, suite_topology

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


EXAMPLE_IMAGE = "own-service/notes:1"
IMAGE_SCENARIOS = "resolves or round_trips or spreads"  # the ones that cross the image node


# The image variant is Docker's, but run from the netns worker (the id's first word picks the
# worker: tests/e2e/conftest.py), which finishes its own tests well before the Docker worker.
@pytest.mark.parametrize("from_worker", ["netns"], ids=["netns-docker-lab"])
def test_the_image_variant_crosses_the_image_node(from_worker):
    reason = missing_prerequisite("docker")
    if reason:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"docker backend: {reason}")
    # the team's image, from the example's Dockerfile on hoplab's own Debian image (never a registry)
    build = subprocess.run(["docker", "build", "-q", "-t", EXAMPLE_IMAGE, "-f", str(EXAMPLE / "image" / "Dockerfile"),
                            str(EXAMPLE)], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert build.returncode == 0, build.stderr[-2000:]
    argv = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-p", "hoplab.pytest_plugin", str(EXAMPLE / "tests"), "-k", IMAGE_SCENARIOS,
            "--hoplab-topology", str(EXAMPLE_IMAGE_TOPOLOGY), "--hoplab-backend", "docker"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=EXAMPLE)
    said = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, said
    assert "3 passed" in result.stdout, said

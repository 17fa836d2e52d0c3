"""The worked example (examples/own-service) as a team runs it: its own pytest scenarios through
hoplab's pytest plugin, in a pytest of their own, on each backend, and its image variant on
Docker. Inside the suite they run beside the suite's labs (the netns run on a twin of the
example's topology, so it may overlap the Docker one of `make test-example`)."""

import subprocess
import sys

import pytest

from helpers import EXAMPLE, EXAMPLE_IMAGE_TOPOLOGY, EXAMPLE_TOPOLOGY, require, suite_topology

SCENARIOS = 5  # examples/own-service/tests/test_notes.py
TIMEOUT_S = 600


# Every run goes from the netns worker (a test id's first word picks the worker:
# tests/e2e/conftest.py), which finishes its own tests well before the Docker worker; the Docker
# runs' labs are the example's own, beside the suite's.
@pytest.mark.parametrize("lab_backend", [pytest.param("netns", id="netns"),
                                         pytest.param("docker", id="netns-docker-lab")])
def test_the_examples_scenarios_pass_through_the_plugin(lab_backend):
    require(lab_backend)
    topology = suite_topology(EXAMPLE_TOPOLOGY, lab_backend)
    argv = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-p", "hoplab.pytest_plugin", str(EXAMPLE / "tests"),
            "--hoplab-topology", str(topology), "--hoplab-backend", lab_backend]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=EXAMPLE)
    said = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, said
    assert f"{SCENARIOS} passed" in result.stdout, said


EXAMPLE_IMAGE = "own-service/notes:1"
IMAGE_SCENARIOS = "resolves or round_trips or spreads"  # the ones that cross the image node


@pytest.mark.parametrize("lab_backend", [pytest.param("docker", id="netns-docker-lab")])
def test_the_image_variant_crosses_the_image_node(lab_backend):
    require(lab_backend)
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

"""The worked example (examples/own-service) as a team runs it: its own pytest scenarios through
hoplab's pytest plugin, in a pytest of their own, on each backend, and its image variant on
Docker. Inside the suite they run beside the suite's labs (the netns run on a twin of the
example's topology, so it may overlap the Docker one of `make test-example`). On Docker the
suite runs the image variant, whose Redis is still the team's service folder."""

import subprocess
import sys

import pytest

from helpers import EXAMPLE, EXAMPLE_IMAGE_TOPOLOGY, EXAMPLE_TOPOLOGY, require, suite_topology

SCENARIOS = 5  # examples/own-service/tests/test_notes.py
TIMEOUT_S = 600


# Every run goes from the netns worker (a test id's first word picks the worker:
# tests/e2e/conftest.py), which finishes its own tests well before the Docker worker; the Docker
# run's lab is the example's own, beside the suite's.
@pytest.mark.parametrize("lab_backend", [pytest.param("netns", id="netns")])
def test_the_examples_scenarios_pass_through_the_plugin(lab_backend):
    run_scenarios(lab_backend, suite_topology(EXAMPLE_TOPOLOGY, lab_backend))


EXAMPLE_IMAGE = "own-service/notes:1"


@pytest.mark.parametrize("lab_backend", [pytest.param("docker", id="netns-docker-lab")])
def test_the_examples_scenarios_pass_on_docker_with_the_api_as_the_teams_own_image(lab_backend):
    """On Docker, the image variant: the API as the team's image (with a hoplab sidecar), Redis
    still a service folder of the team's (so a team's service folder on Docker is crossed too);
    `make test-example` also runs notes.yaml on Docker."""
    require(lab_backend)
    # the team's image, from the example's Dockerfile on hoplab's own Debian image (never a registry)
    build = subprocess.run(["docker", "build", "-q", "-t", EXAMPLE_IMAGE, "-f", str(EXAMPLE / "image" / "Dockerfile"),
                            str(EXAMPLE)], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert build.returncode == 0, build.stderr[-2000:]
    run_scenarios("docker", EXAMPLE_IMAGE_TOPOLOGY)


def run_scenarios(backend: str, topology) -> None:
    """The team's pytest, as they run it: every scenario passes."""
    require(backend)
    argv = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-p", "hoplab.pytest_plugin", str(EXAMPLE / "tests"),
            "--hoplab-topology", str(topology), "--hoplab-backend", backend]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=EXAMPLE)
    said = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, said
    assert f"{SCENARIOS} passed" in result.stdout, said

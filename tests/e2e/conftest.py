"""The default lab, brought up once per backend with `hoplab up`, as a user would: every
test that takes `lab` runs on Docker and on network namespaces (Mininet). A lab that was
already running is left running; one this session started is taken down after its backend's
tests (the two backends' default labs share subnets, so they take turns)."""

import pytest

from helpers import BACKENDS, LAB_TOPOLOGY, OTHER, load_lab, missing_prerequisite



def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    reason = missing_prerequisite(request.param)
    if reason:
        pytest.skip(f"{request.param} backend: {reason}")
    return request.param


@pytest.fixture(scope="session")
def lab(backend):
    lab = load_lab(LAB_TOPOLOGY, backend)
    # The default lab running on the other backend (after `make up`, say) holds the same
    # subnets: it makes way for these tests and is brought back after them.
    other = load_lab(LAB_TOPOLOGY, OTHER[backend])
    other_running = (missing_prerequisite(other.backend) is None
                     and any(n["state"] == "running" for n in other.status().values()))
    if other_running:
        other.hoplab("down")
    was_running = all(n["health"] == "healthy" for n in lab.status().values())
    lab.hoplab("up", "--quiet")
    yield lab
    if not was_running:
        lab.hoplab("down")
    if other_running:
        other.hoplab("up", "--quiet")

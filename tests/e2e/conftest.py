"""The default lab, brought up once per session with `hoplab up`, as a user would. A lab that
was already running is left running; one this session started is taken down at the end."""

import pytest

from helpers import LAB_TOPOLOGY, engine_reachable, hoplab, load_lab


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def engine():
    if not engine_reachable():
        pytest.skip("no Docker engine reachable (`make up` or scripts/setup-host starts one)")


@pytest.fixture(scope="session")
def lab(engine):
    lab = load_lab(LAB_TOPOLOGY)
    was_running = all(n["health"] == "healthy" for n in lab.status().values())
    hoplab("up", "--quiet", "--topology", lab.path)
    yield lab
    if not was_running:
        hoplab("down", "--topology", lab.path)

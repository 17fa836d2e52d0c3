"""The end-to-end fixtures: one lab per backend per test session, brought up the way each
backend's users would. The Docker lab through pytest-docker (`docker_compose_file`,
`docker_setup`, `docker_cleanup`, `docker_services`, `wait_until_responsive`) on the Compose
project `hoplab` renders and prepares; the netns lab through fixtures of the same shape
(`netns_topology_file`, `netns_setup`, `netns_cleanup`, `netns_services`). Every test that takes
`lab` runs on both backends; `make test` runs the two backends' tests at the same time, one
pytest-xdist worker each (`--dist loadgroup`: one group per backend, `pytest_xdist_make_scheduler`).

A lab that was already running (after `make up`) is used and left running; the same lab
running on the other backend makes way for the tests and comes back after them. When `CI` is
set, a backend that cannot run here fails the suite instead of being skipped."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable

import pytest

from helpers import (BACKENDS, LAB_TOPOLOGY, OTHER, Lab, all_lab_subnets, load_lab, missing_prerequisite, require,
                     suite_topology)
from hoplab import compose
from hoplab.backends.docker import COMPOSE_UP, DockerBackend
from hoplab.backends.engine import Compose
from hoplab.backends.netns import NetnsBackend
from hoplab.paths import BUILD_DIR
from hoplab.progress import Progress
from hoplab.uplink import UplinkWatch

UP_TIMEOUT = 300.0  # seconds for a lab to answer a page load once its nodes are up


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.e2e)


def backend_of(nodeid: str) -> str | None:
    """The backend a test runs on, from its id: `test_x[docker]`, `test_y[netns-process-stop]`."""
    if not nodeid.endswith("]"):
        return None
    first = nodeid.rpartition("[")[2].rstrip("]").split("-")[0]
    return first if first in BACKENDS else None


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup`, one group per backend: every test of a backend goes to the same
    worker, so each worker brings up one lab and the two backends run side by side. (The
    `xdist_group` mark cannot do it here: pytest-xdist 3.8 renames items in a way pytest 9 no
    longer sees.) Tests without a backend are grouped by module."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class BackendScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return backend_of(nodeid) or super()._split_scope(nodeid)

    return BackendScheduling(config, log)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    require(request.param)
    return request.param


def page_loads(lab: Lab) -> bool:
    """The readiness a user means: every node healthy and the shop's page served to a client."""
    try:
        if not lab.healthy():
            return False
        result = lab.exec(lab.clients()[0], "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                          f"{lab.www}/", check=False, timeout=10)
        return result.stdout == "200"
    except Exception:  # a node still starting: not yet
        return False


@pytest.fixture(scope="session")
def lab(backend, request) -> Lab:
    return request.getfixturevalue(f"{backend}_lab")


def _running(lab: Lab) -> bool:
    try:
        return any(s["state"] == "running" for s in lab.status().values())
    except Exception:
        return False


def _make_way(backend: str):
    """The suite's lab running on the other backend (after `make up` there) holds the same
    name and subnets: it goes down for the tests and comes back after them."""
    other = load_lab(suite_topology(LAB_TOPOLOGY, backend), OTHER[backend])
    moved = missing_prerequisite(other.backend) is None and _running(other)
    if moved:
        other.driver.down(other.topology, Progress(quiet=True))
    return other if moved else None


# ------------------------------------------------------------ Docker, through pytest-docker


@pytest.fixture(scope="session")
def docker_lab_topology():
    return load_lab(suite_topology(LAB_TOPOLOGY, "docker"), "docker").topology


@pytest.fixture(scope="session")
def docker_lab_was_running(docker_lab_topology) -> bool:
    return Lab(docker_lab_topology, "docker").healthy() if DockerBackend().require_engine(soft=True) else False


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    return shlex.join(Compose().command)


@pytest.fixture(scope="session")
def docker_compose_project_name(docker_lab_topology) -> str:
    return compose.project_name(docker_lab_topology)


@pytest.fixture(scope="session")
def docker_compose_file(docker_lab_topology, docker_lab_was_running):
    """The Compose file `hoplab up` would start, prepared as `up` prepares it (images, host
    guard and bridge rules); after the session, and after Compose's own `down`, what Compose does
    not remove (the host's rules) goes too."""
    moved = _make_way("docker")
    backend = DockerBackend()
    yield str(backend.prepare(docker_lab_topology, Progress(quiet=True)))
    if not docker_lab_was_running:
        backend.clean(docker_lab_topology.name, Progress(quiet=True))
    if moved:
        moved.driver.up(moved.topology, Progress(quiet=True))


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return [shlex.join(COMPOSE_UP)]


@pytest.fixture(scope="session")
def docker_cleanup(docker_lab_was_running) -> list[str]:
    return [] if docker_lab_was_running else ["down --volumes --remove-orphans --timeout 3"]


@pytest.fixture(scope="session")
def docker_lab(docker_services, docker_lab_topology) -> Lab:
    lab = Lab(docker_lab_topology, "docker")
    lab.driver.check_healthy(lab.topology)  # what `up` checks and does after Compose
    lab.driver.finish(lab.topology)
    docker_services.wait_until_responsive(check=lambda: page_loads(lab), timeout=UP_TIMEOUT, pause=0.5)
    return lab


# ------------------------------------------------------------ netns, fixtures of the same shape


class NetnsServices:
    """What pytest-docker's `Services` is to a Compose project, for a netns lab."""

    def __init__(self, lab: Lab):
        self.lab = lab

    @staticmethod
    def wait_until_responsive(check: Callable[[], bool], timeout: float, pause: float,
                              clock: Callable[[], float] = time.monotonic) -> None:
        start = clock()
        while clock() - start < timeout:
            if check():
                return
            time.sleep(pause)
        raise TimeoutError(f"not responsive after {timeout:g} s")


@pytest.fixture(scope="session")
def netns_topology_file() -> str:
    return str(suite_topology(LAB_TOPOLOGY, "netns"))


@pytest.fixture(scope="session")
def netns_lab_was_running(netns_topology_file) -> bool:
    return load_lab(netns_topology_file, "netns").healthy()


@pytest.fixture(scope="session")
def netns_setup() -> bool:
    return True


@pytest.fixture(scope="session")
def netns_cleanup(netns_lab_was_running) -> bool:
    return not netns_lab_was_running


@pytest.fixture(scope="session")
def netns_services(netns_topology_file, netns_setup, netns_cleanup):
    moved = _make_way("netns")
    lab = load_lab(netns_topology_file, "netns")
    backend = NetnsBackend()
    if netns_setup:
        backend.up(lab.topology, Progress(quiet=True))
    yield NetnsServices(lab)
    if netns_cleanup:
        backend.down(lab.topology, Progress(quiet=True))
    if moved:
        moved.driver.up(moved.topology, Progress(quiet=True))


@pytest.fixture(scope="session")
def netns_lab(netns_services) -> Lab:
    lab = netns_services.lab
    netns_services.wait_until_responsive(check=lambda: page_loads(lab), timeout=UP_TIMEOUT, pause=0.5)
    return lab


# ------------------------------------------------------------ the host's uplink


@pytest.fixture(scope="module")
def uplink_silent(lab, request):
    """Captures on the host's uplink for a whole test module; fails it if a single packet to
    or from a lab subnet went out (or came in) there."""
    capture = BUILD_DIR / "test-uplink" / f"{lab.name}-{request.module.__name__}.pcapng"
    with UplinkWatch(all_lab_subnets(), capture) as watch:
        yield watch
    assert watch.leaks == [], f"lab traffic on the host's uplink ({watch.capture}):\n" + "\n".join(watch.leaks)

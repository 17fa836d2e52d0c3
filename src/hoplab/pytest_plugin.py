"""hoplab's pytest plugin: your own scenarios against your own service on the lab's path.

Installed with hoplab (entry point `pytest11`: `hoplab = hoplab.pytest_plugin`). It does nothing
until a test asks for one of its fixtures: no lab is started, no option is required, no report
is changed. A test that does ask:

    pytest --hoplab-topology my/topology.yaml [--hoplab-backend docker|netns] [--hoplab-keep]

gets one lab for the whole session (brought up through pytest-docker on Docker, as
`hoplab up` would; through the netns backend otherwise; a lab already running is used and left
running, one started for the session is removed after it unless `--hoplab-keep`), and:

| fixture | what |
| --- | --- |
| `hoplab_lab` | the session's `Lab`: `.topology`, `.backend`, and the methods below |
| `visit` | `visit(url, method="GET", json=None, headers=None, node=None, trace=True)` -> `Answer` (status, body, `.json()`, served_by, timings, `.trace`); traced by default |
| `trace` | `trace(trace_id)` -> the assembled `hoplab.v1.Trace` (`.stages`, `.hops`) |
| `exec` | `exec(node, *argv, timeout=60, input=None)` -> `subprocess.CompletedProcess` |
| `load` | `load(users=5, seconds=10, rate=5, locustfile=None, shape=None, slo=None, host=None)` -> `LoadResult` (summary, breaches, report_dir) |
| `fault` | `with fault(name, target, duration=60, **params):` a chaos fault, reverted when the block ends, whatever happens in it (and bounded by `duration` should the process die) |

When a test fails, the stage waterfall of the last trace it took (`visit` or `trace`) is added
to its report, as a section "hoplab trace"."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TRACES = pytest.StashKey[list]()  # the traces a test took, for its failure report
UP_TIMEOUT_S = 300.0


def pytest_addoption(parser):
    group = parser.getgroup("hoplab", "hoplab: your scenarios on a lab")
    group.addoption("--hoplab-topology", metavar="FILE",
                    help="the topology whose lab the hoplab fixtures use (one lab per session)")
    group.addoption("--hoplab-backend", choices=("docker", "netns"), default=None,
                    help="where the lab runs (default: docker)")
    group.addoption("--hoplab-keep", action="store_true",
                    help="leave a lab the session started running after it")
    parser.addini("hoplab_topology", "the topology the hoplab fixtures use (--hoplab-topology wins)")
    parser.addini("hoplab_backend", "docker or netns (--hoplab-backend wins)")


@dataclass
class Answer:
    """What a client got: the HTTP status, the body, who served it, curl's phase timings, and
    the trace of every packet (when traced)."""

    url: str
    status: int
    body: str
    served_by: str | None
    timings_ms: dict
    trace_id: str
    error: str = ""
    trace: object = None  # hoplab.v1.Trace

    def json(self):
        return json.loads(self.body)


@dataclass
class Lab:
    topology: object  # hoplab.spec.Topology
    backend: object  # hoplab.backends.base.Backend
    traces: list = field(default_factory=list)

    @property
    def client(self) -> str:
        clients = [n.name for n in self.topology.nodes_of("client")]
        if not clients:
            raise pytest.UsageError(f"{self.topology.source}: the topology has no client node")
        return clients[0]

    def exec(self, node: str, *argv: str, timeout: float = 60, input: str | None = None):
        return self.backend.run(self.topology, node, list(argv), timeout=timeout, input=input)

    def visit(self, url: str, method: str = "GET", json_body=None, headers: dict | None = None,
              node: str | None = None, trace: bool = True) -> Answer:
        from hoplab import cli, visit as visits

        cli.check_url(url)
        node = cli.check_node(self.topology, node or self.client, "node")
        args = ["-X", method]
        for name, value in {**({"Content-Type": "application/json"} if json_body is not None else {}),
                            **(headers or {})}.items():
            args += ["-H", f"{name}: {value}"]
        if json_body is not None:
            args += ["--data-binary", json.dumps(json_body)]
        body_path = f"/tmp/hoplab-answer-{visits.new_trace_id()}"
        if trace:
            result, found = visits.traced_visit(self.backend, self.topology, url, node, curl_args=tuple(args),
                                                body_path=body_path)
            self.traces.append(found)
        else:
            result, found = visits.visit(self.backend, self.topology, url, node, curl_args=tuple(args),
                                         body_path=body_path), None
        body = self.exec(node, "sh", "-c", f"cat {shlex.quote(body_path)} 2>/dev/null; rm -f {shlex.quote(body_path)}")
        return Answer(url, result.status, body.stdout, result.served_by, result.timings_ms, result.trace_id,
                      result.error, found)

    def trace(self, trace_id: str):
        from hoplab import cli
        from hoplab.control.client import ControlClient

        control = ControlClient(self.topology)
        try:
            found = control.trace(cli.check_trace_id(trace_id))
        finally:
            control.close()
        self.traces.append(found)
        return found

    def load(self, users: int = 5, seconds: int = 10, rate: float = 5, locustfile: str | Path | None = None,
             shape: str | None = None, slo: str | Path | None = None, host: str | None = None, workers: int = 0):
        from hoplab import cli
        from hoplab.load import DEFAULT_SLO, LoadOptions, run_load
        from hoplab.progress import Progress

        if host is not None:
            cli.check_lab_url(self.topology, host, "host")
        options = LoadOptions(users=users, rate=rate, seconds=seconds, shape=shape, workers=workers,
                              slo=Path(slo) if slo else DEFAULT_SLO,
                              locustfile=Path(locustfile) if locustfile else self.topology.locustfile, host=host)
        return run_load(self.backend, self.topology, options, Progress(quiet=True))

    @contextlib.contextmanager
    def fault(self, name: str, target: str, duration: float = 60, **params):
        """A fault from hoplab's catalogue (`hoplab chaos list`), journaled with its undo before
        it acts; reverted when the block ends, however it ends. A detached reaper reverts it at
        `duration` should this process die first."""
        from hoplab.chaos.journal import Chaos

        chaos = Chaos(self.backend, self.topology)
        entry = chaos.inject(name, target, duration, {k: str(v) for k, v in params.items()})
        chaos.start_reaper()
        try:
            yield entry
        finally:
            chaos.revert(entry.id)


def _setting(config, option: str, ini: str) -> str | None:
    value = config.getoption(option)
    if value:
        return value
    value = config.getini(ini)
    if value:
        return str(Path(config.rootpath) / value) if ini == "hoplab_topology" else value
    return None


def _answers(lab: Lab) -> bool:
    """Ready as a user means it: every node running and healthy."""
    try:
        return all((s.state, s.health) == ("running", "healthy") for s in lab.backend.status(lab.topology, addresses=False))
    except Exception:  # a node still starting
        return False


def _wait(check, timeout: float, pause: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not responsive after {timeout:g} s")
        time.sleep(pause)


def _removed(cleaned) -> None:
    """A lab's removal that left something behind fails the session, naming what."""
    from hoplab.backends.base import BackendError

    if cleaned.failed:
        raise BackendError("could not remove:\n" + "\n".join(f"  {f}" for f in cleaned.failed))


@pytest.fixture(scope="session")
def hoplab_lab(pytestconfig):
    """One lab per session, for the topology --hoplab-topology names."""
    from hoplab import cli, compose, spec
    from hoplab.backends.base import BackendError
    from hoplab.progress import Progress
    from hoplab.services import CatalogError

    path = _setting(pytestconfig, "hoplab_topology", "hoplab_topology")
    if not path:
        raise pytest.UsageError("the hoplab fixtures need a lab: pass --hoplab-topology FILE "
                                "(or set hoplab_topology in the pytest ini file)")
    name = _setting(pytestconfig, "hoplab_backend", "hoplab_backend") or "docker"
    if name not in cli.BACKENDS:
        raise pytest.UsageError(f"--hoplab-backend: unknown backend {name!r} (backends: {', '.join(cli.BACKENDS)})")
    try:
        topology = spec.load(path)
    except (spec.TopologyError, CatalogError) as exc:
        raise pytest.UsageError(f"--hoplab-topology: invalid topology:\n{exc}") from None
    backend = cli.make_backend(name)
    lab = Lab(topology, backend)
    keep = pytestconfig.getoption("hoplab_keep")
    was_running = _answers(lab)
    quiet = Progress(quiet=True)
    try:
        if was_running:
            yield lab
        elif name == "docker":  # pytest-docker runs Compose, on the project `hoplab up` prepares
            from pytest_docker.plugin import get_docker_services

            from hoplab.backends.docker import COMPOSE_UP
            from hoplab.backends.engine import Compose

            compose_file = backend.prepare(topology, quiet)
            try:
                with get_docker_services(shlex.join(Compose().command), str(compose_file),
                                         compose.project_name(topology), [shlex.join(COMPOSE_UP)],
                                         [] if keep else ["down --volumes --remove-orphans --timeout 3"]) as services:
                    backend.check_healthy(topology)
                    backend.finish(topology)
                    services.wait_until_responsive(check=lambda: _answers(lab), timeout=UP_TIMEOUT_S, pause=0.5)
                    yield lab
            finally:
                if not keep:
                    _removed(backend.clean(topology.name, quiet))
        else:
            try:
                backend.up(topology, quiet)
                _wait(lambda: _answers(lab), UP_TIMEOUT_S)
                yield lab
            finally:
                if not keep:
                    _removed(backend.down(topology, quiet))
    except BackendError as exc:
        pytest.fail(f"hoplab lab {topology.name!r} on {name}: {exc}", pytrace=False)


@pytest.fixture
def _hoplab_test(hoplab_lab, request):
    """The lab, with the traces this test takes kept for its report."""
    hoplab_lab.traces = request.node.stash.setdefault(TRACES, [])
    return hoplab_lab


@pytest.fixture
def visit(_hoplab_test):
    return _hoplab_test.visit


@pytest.fixture
def trace(_hoplab_test):
    return _hoplab_test.trace


@pytest.fixture
def exec(_hoplab_test):  # noqa: A001 (the name users type)
    return _hoplab_test.exec


@pytest.fixture
def load(_hoplab_test):
    return _hoplab_test.load


@pytest.fixture
def fault(_hoplab_test):
    return _hoplab_test.fault


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    traces = item.stash.get(TRACES, None)
    if not traces:  # not a test of this plugin's fixtures, or no trace taken: nothing to add
        return
    report = outcome.get_result()
    if report.failed and call.when == "call":
        from hoplab.trace import render

        last = traces[-1]
        lines = [f"trace {last.trace_id}  {last.url}  status {last.status or '-'}  {len(last.hops)} hops",
                 *render.gaps_text(last), *render.waterfall(last)]
        lines.append(f"(the whole trace: hoplab trace show {last.trace_id} --topology ...)")
        report.sections.append(("hoplab trace", "\n".join(lines)))

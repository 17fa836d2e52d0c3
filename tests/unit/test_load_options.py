"""`hoplab load --locustfile` / `--host` and the topology's `load: locustfile:`: bad values exit 2
before any lab is touched; a user's locustfile reaches the node with the project's shapes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hoplab import cli, load, spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own-service" / "notes.yaml"


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/hoplab-unit-tests.sock")


@pytest.mark.parametrize("args, said", [
    (["--locustfile", "/nonexistent/x.py"], "--locustfile: /nonexistent/x.py is not a file"),
    (["--locustfile", str(ROOT / "loadtests" / "slo.yaml")], "is not a Python file"),
    (["--host", "https://www.example.com"], "--host: 'www.example.com' is not a name of the lab's domain"),
    (["--host", "ftp://api.notes.test"], "--host: 'ftp://api.notes.test' is not an http"),
])
def test_bad_load_options_exit_2(capsys, args, said):
    assert cli.main(["load", "--backend", "docker", "--topology", str(EXAMPLE), *args]) == 2
    assert said in capsys.readouterr().err


def test_the_topology_names_its_locustfile_relative_to_itself(tmp_path):
    assert spec.load(EXAMPLE).locustfile == EXAMPLE.parent / "locustfile.py"
    assert spec.load(ROOT / "topology" / "lab.yaml").locustfile is None
    broken = tmp_path / "t.yaml"
    broken.write_text(EXAMPLE.read_text().replace("service_dirs: [services]",
                                                  f"service_dirs: [{EXAMPLE.parent / 'services'}]")
                      .replace("locustfile: locustfile.py", "locustfile: nope.py"))
    with pytest.raises(spec.TopologyError, match="load.locustfile: 'nope.py' is not a file"):
        spec.load(broken)


class Files:
    """A backend whose nodes are folders: `sh -c 'mkdir ...; cat > F'` writes there."""

    def __init__(self, root: Path):
        self.root = root
        self.written: dict[str, str] = {}

    def run(self, topology, node, argv, timeout=60, input=None):
        target = argv[-1].rsplit("cat > ", 1)[1]
        self.written[Path(target).name] = input
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_a_users_locustfile_goes_with_the_shapes_and_an_entry(tmp_path):
    backend = Files(tmp_path)
    topology = spec.load(EXAMPLE)
    load._put(backend, topology, "client", topology.locustfile)
    assert backend.written["user_locustfile.py"] == topology.locustfile.read_text()
    assert backend.written["shapes.py"] == (load.LOADTESTS / "shapes.py").read_text()
    entry = backend.written["locustfile.py"]
    assert "from user_locustfile import *" in entry and "SHAPES.get" in entry
    compile(entry, "locustfile.py", "exec")
    project = Files(tmp_path)
    load._put(project, topology, "client")
    assert project.written["locustfile.py"] == (load.LOADTESTS / "locustfile.py").read_text()


def test_the_entry_makes_a_users_sessions_trust_the_lab_ca(tmp_path):
    """Run the entry as Locust would import it: the user's classes are there and an HttpUser's
    session verifies with the system bundle (which holds the lab CA), not certifi's. In a
    Python of its own: importing Locust monkey-patches the process (gevent), which a test
    runner's threads do not survive."""
    for name in load.FILES:  # what `hoplab load` copies beside the entry
        (tmp_path / name).write_text((load.LOADTESTS / name).read_text())
    (tmp_path / "user_locustfile.py").write_text(
        "from locust import HttpUser, task\n\nclass Mine(HttpUser):\n    host = 'https://api.notes.test'\n\n"
        "    @task\n    def t(self):\n        pass\n")
    (tmp_path / "hoplab_entry.py").write_text(load.USER_ENTRY)
    check = ("import hoplab_entry as entry\n"
             "from locust.clients import HttpSession\n"
             "assert entry.Mine.host == 'https://api.notes.test' and not hasattr(entry, 'Shape')\n"
             "print(HttpSession('https://api.notes.test', request_event=None, user=None).verify)\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == load.SYSTEM_CA


@pytest.mark.parametrize("text, seconds", [("90", 90), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1h2m3s", 3723),
                                           ("2h", 7200), (" 10s ", 10)])
def test_run_time_takes_locusts_units(text, seconds):
    assert load.parse_timespan(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "10x", "1.5m", "-10s", "10s5m", "1h 30m", "١٠", "10 s", "m5", "0x10"])
def test_a_run_time_locust_would_not_take_is_refused(text):
    with pytest.raises(ValueError, match="is not a time span"):
        load.parse_timespan(text)


@pytest.mark.parametrize("args, said", [
    (["--time", "10x"], "argument --run-time/--time: '10x' is not a time span"),
    (["--run-time", "2h"], "--run-time: 7200 s is outside 1 s..1h"),
    (["--spawn-rate", "0"], "--spawn-rate: 0.0 is outside (0, 1000]"),
    (["--rate", "0"], "--spawn-rate: 0.0 is outside (0, 1000]"),
    (["--shape", "open"], "--arrival-rate: the open shape needs a rate in (0, 10000] tasks/s (given 0)"),
    (["--arrival-rate", "5"], "--arrival-rate: only the open shape (--shape open) takes it"),
])
def test_locust_option_names_and_their_errors(capsys, args, said):
    try:
        status = cli.main(["load", "--backend", "docker", *args])
    except SystemExit as exc:  # argparse's own refusal of a value its type rejects
        status = exc.code
    assert status == 2
    assert said in capsys.readouterr().err


def test_the_open_shape_paces_every_user_class_to_the_arrival_rate(tmp_path):
    """The open model as Locust imports it (a Python of its own: gevent): all users at once,
    each starting a task every USERS / ARRIVAL_RATE seconds; closed shapes keep the classes'
    own waits."""
    for name in load.FILES:  # what `hoplab load` copies beside the entry
        (tmp_path / name).write_text((load.LOADTESTS / name).read_text())
    (tmp_path / "user_locustfile.py").write_text(
        "from locust import HttpUser, between, task\n\nclass Mine(HttpUser):\n    wait_time = between(1, 2)\n"
        "    @task\n    def t(self):\n        pass\n")
    (tmp_path / "hoplab_entry.py").write_text(load.USER_ENTRY)
    check = ("import hoplab_entry as entry\n"  # constant_pacing(s) and between(a, b) keep their figures in a closure (b, a)
             "wait = entry.Mine.wait_time\n"
             "print(wait.__qualname__.split('.')[0], *[c.cell_contents for c in wait.__closure__ or ()\n"
             "      if isinstance(c.cell_contents, (int, float))], getattr(entry, 'Shape', type).__name__)\n")

    def run(**env):
        import os
        result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120, env={**os.environ, **env})
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert run(HOPLAB_SHAPE="open", HOPLAB_USERS="8", HOPLAB_ARRIVAL_RATE="4") == ["constant_pacing", "2.0", "Open"]
    assert run(HOPLAB_SHAPE="steady", HOPLAB_USERS="8", HOPLAB_ARRIVAL_RATE="0") == ["between", "2", "1", "Steady"]


def test_the_report_says_which_model_ran():
    assert load.load_model(load.LoadOptions(shape="open", users=20, arrival_rate=10))["model"] == "open"
    closed = load.load_model(load.LoadOptions(shape="spike", users=20))
    assert closed["model"] == "closed" and "waiting for its answer" in closed["said"]


@pytest.mark.parametrize("value", ["0", "0.5", "121", "nan"])
def test_a_visits_max_time_out_of_bounds_is_refused(capsys, value):
    assert cli.main(["visit", "--backend", "docker", "https://www.example.test/", "--max-time", value]) == 2
    assert f"--max-time: {float(value):g} is outside 1..120 seconds" in capsys.readouterr().err

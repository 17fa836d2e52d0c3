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
    (tmp_path / "shapes.py").write_text((load.LOADTESTS / "shapes.py").read_text())
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

"""A topology's own service folders (`service_dirs:`): searched before the project's, the same
service.yaml contract (services/service.schema.json), and a bad folder named as
`FILE: FIELD: REASON` with exit 2 before anything is made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from hoplab import cli, compose, spec
from hoplab.backends.base import BackendError
from hoplab.backends.netns import NetnsBackend
from hoplab.paths import TOPOLOGY_DIR
from hoplab.services import CatalogError, load_catalog


def service(root: Path, name: str, yaml_text: str, scripts: bool = True, executable: bool = True) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "service.yaml").write_text(yaml_text)
    if scripts:
        (folder / "start").write_text("#!/usr/bin/env python3\n")
        (folder / "health").write_text("#!/bin/sh\nexit 0\n")
        for script in ("start", "health"):
            os.chmod(folder / script, 0o755 if executable else 0o644)
    return folder


def topology_with(tmp_path: Path, dirs: list[str], **node_services) -> Path:
    data = yaml.safe_load((TOPOLOGY_DIR / "lab.yaml").read_text())
    data["service_dirs"] = dirs
    for node, name in node_services.items():
        data["nodes"][node]["service"] = name
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_project_service_follows_the_schema():
    catalog = load_catalog()
    assert {"web", "lb", "cache", "db"} <= set(catalog)
    assert all(not s.user and s.image == f"hoplab/{s.name}:latest" for s in catalog.values())


def test_a_users_folder_comes_first_and_gets_an_image_of_its_own(tmp_path):
    service(tmp_path / "svc", "api", "description: mine\npackages: [sqlite3]\nafter: [db]\n")
    service(tmp_path / "svc", "web", "description: my own web\n")
    topology = spec.load(topology_with(tmp_path, ["svc"], web="web", mail="api"))
    assert topology.service_dirs == ((tmp_path / "svc").resolve(),)
    api, web = topology.services["api"], topology.services["web"]
    assert api.user and api.packages == ("sqlite3",) and api.directory == (tmp_path / "svc" / "api").resolve()
    assert web.user and web.description == "my own web"  # before the project's web
    assert api.image.startswith("hoplab/api-") and web.image != "hoplab/web:latest"
    rendered = yaml.safe_load(compose.render(topology, topology.services, "x.json"))
    assert rendered["services"]["mail"]["image"] == api.image
    assert rendered["services"]["web1"]["image"] == web.image
    assert rendered["services"]["lb"]["image"] == "hoplab/lb:latest"
    assert "db" in rendered["services"]["mail"]["depends_on"]


@pytest.mark.parametrize("text, scripts, executable, field, reason", [
    ("description: x\npackage: [a]\n", True, True, "(top level)", "unknown field(s) package"),
    ("packages: curl\n", True, True, "packages", "is not of type 'array'"),
    ("volumes: {data: var/lib}\n", True, True, "volumes.data", "does not match"),
    ("after: [nosuch]\n", True, True, "after", "unknown service 'nosuch'"),
    ("wheels: [flask]\n", True, True, "wheels.0", "does not match"),
    ("packages: [a\n", True, True, "(yaml, line 2 column 1)", ""),
    ("description: x\n", False, True, "start", "missing"),
    ("description: x\n", True, False, "(mode)", "not executable"),
])
def test_a_bad_service_yaml_names_file_field_and_reason(tmp_path, capsys, text, scripts, executable, field, reason):
    folder = service(tmp_path / "svc", "api", text, scripts, executable)
    path = topology_with(tmp_path, ["svc"], mail="api")
    with pytest.raises(CatalogError) as caught:
        spec.load(path)
    assert any(f == field and reason in r for _, f, r in caught.value.problems), caught.value.problems
    assert all(str(folder) in f for f, _, _ in caught.value.problems)
    assert cli.main(["validate", "--topology", str(path)]) == 2
    err = capsys.readouterr().err
    assert f": {field}: " in err and str(folder) in err


def test_every_problem_of_every_folder_at_once(tmp_path):
    service(tmp_path / "svc", "api", "packages: curl\nbogus: 1\n")
    service(tmp_path / "svc", "kv", "description: x\n", scripts=False)
    with pytest.raises(CatalogError) as caught:
        spec.load(topology_with(tmp_path, ["svc"]))
    fields = {f for _, f, _ in caught.value.problems}
    assert {"packages", "(top level)", "start", "health"} <= fields


def test_a_folder_name_that_cannot_be_a_service(tmp_path):
    service(tmp_path / "svc", "My_API", "description: x\n")
    with pytest.raises(CatalogError, match=r"My_API/service.yaml: \(folder name\): "):
        spec.load(topology_with(tmp_path, ["svc"]))


def test_service_dirs_must_be_folders_of_services(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(spec.TopologyError) as caught:
        spec.load(topology_with(tmp_path, ["nowhere", "empty"]))
    assert [f for f, _ in caught.value.problems] == ["service_dirs.0", "service_dirs.1"]
    assert "is not a folder" in caught.value.problems[0][1]


def test_a_node_of_an_unknown_service_lists_the_users_ones_too(tmp_path):
    service(tmp_path / "svc", "api", "description: x\n")
    with pytest.raises(spec.TopologyError, match=r"nodes.mail.service: unknown service 'apx' \(known: api, "):
        spec.load(topology_with(tmp_path, ["svc"], mail="apx"))


def test_netns_names_a_users_missing_packages_and_the_command(tmp_path):
    service(tmp_path / "svc", "api", "packages: [hoplab-no-such-package, sqlite3]\n")
    topology = spec.load(topology_with(tmp_path, ["svc"], mail="api"))
    with pytest.raises(BackendError) as caught:
        NetnsBackend().require_user_packages(topology)
    message = str(caught.value)
    assert "hoplab-no-such-package" in message and str(tmp_path / "svc" / "api" / "service.yaml") in message
    assert "apt-get install --no-install-recommends hoplab-no-such-package" in message
    assert "sqlite3" not in message.split("Install them with")[1].split("(")[0]  # installed here: not asked for


def test_a_folder_fixed_in_a_running_process_is_read_again(tmp_path):
    """The catalogue is read once per state of a folder's files: a user who makes a script
    executable, or edits service.yaml, is heard by the same process (the UI, a test session)."""
    folder = service(tmp_path / "svc", "api", "description: x\n", executable=False)
    with pytest.raises(CatalogError) as caught:
        load_catalog(extra=[tmp_path / "svc"])
    assert any(f == "(mode)" for _, f, _ in caught.value.problems), caught.value.problems
    os.chmod(folder / "start", 0o755)
    os.chmod(folder / "health", 0o755)
    assert load_catalog(extra=[tmp_path / "svc"])["api"].description == "x"
    (folder / "service.yaml").write_text("description: y\n")
    os.utime(folder / "service.yaml", ns=(1, 1))  # a different time, whatever the clock's grain
    assert load_catalog(extra=[tmp_path / "svc"])["api"].description == "y"
